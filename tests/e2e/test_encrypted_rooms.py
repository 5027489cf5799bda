"""Until the bridge holds encryption keys, nothing of it posts plaintext into an encrypted room
(real Synapse + InspIRCd): a ghost invited to one says why it cannot stay and leaves, an encrypted
message in a portal is answered with a notice instead of silence, and a portal whose room turns
encryption on stops being bridged."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.irc import IrcUser, command
from tests.e2e.matrix import TestClient, message_from, notice_from

MEGOLM = "m.megolm.v1.aes-sha2"


@dataclass
class Portal:
    name: str
    room_id: str
    matrix: TestClient
    irc: IrcUser
    puppet: str


@pytest.fixture
async def portal(stack: Stack) -> AsyncIterator[Portal]:
    """A Matrix user in a fresh channel's portal (so their puppet is on IRC), and an IRC user there."""
    name = f"#e{uuid.uuid4().hex[:8]}"
    account = stack.account()
    irc = IrcUser(stack.local.inspircd.port, f"i{uuid.uuid4().hex[:6]}")
    await irc.registered()
    await irc.join(name)
    async with TestClient(stack.homeserver, account.user_id, account.token) as matrix:
        room_id = await matrix.join(f"#local_{name}:localhost")
        puppet = f"{account.user_id[1:].split(':')[0]}[m]"
        await irc.wait_for(command("JOIN", name, nick=puppet))
        yield Portal(name, room_id, matrix, irc, puppet)
    irc.close()


async def _send_encrypted(client: TestClient, room_id: str) -> str:
    """What Element sends in an encrypted room (the ciphertext is never read by anyone here)."""
    content: dict[str, Any] = {"algorithm": MEGOLM, "ciphertext": "AwgAEnB" + uuid.uuid4().hex,
                               "device_id": "TESTDEVICE", "sender_key": "k" * 43,
                               "session_id": "s" * 43}
    path = f"/rooms/{quote(room_id)}/send/m.room.encrypted/{uuid.uuid4().hex}"
    return (await client.request("PUT", path, content))["event_id"]


def _plaintext_from(sender: str, events: list[dict[str, Any]]) -> list[str]:
    return [e["content"].get("body", "") for e in events
            if e.get("sender") == sender and e.get("type") == "m.room.message"]


async def test_a_ghost_invited_to_an_encrypted_dm_says_why_and_leaves(stack: Stack, portal: Portal) -> None:
    m = portal.matrix
    ghost = f"@local_{portal.irc.nick}:localhost"
    dm = await m.create_room(invite=[ghost], is_direct=True, encrypted=True)
    notice = await m.wait_for_event(dm, notice_from(ghost, contains="encrypt"), what="the ghost's notice")
    assert "cannot read encrypted rooms" in notice["content"]["body"]
    await m.wait_for_membership(dm, ghost, "leave")
    await _send_encrypted(m, dm)

    # The IRC user answers the puppet: the answer goes to a new, unencrypted chat, never in the
    # clear into the encrypted one.
    portal.irc.send(f"PRIVMSG {portal.puppet} :reply in the clear")
    fresh = await m.wait_for_invite()
    assert fresh != dm
    await m.join(fresh)
    await m.wait_for_event(fresh, message_from(ghost, body="reply in the clear"), what="the IRC reply")
    history = await m.messages(dm)
    assert _plaintext_from(ghost, history) == [notice["content"]["body"]]
    assert not any(e.get("sender") == ghost and e.get("type") == "m.room.message"
                   and "clear" in e["content"].get("body", "") for e in history)


async def test_an_encrypted_message_in_a_portal_is_answered(stack: Stack, portal: Portal) -> None:
    sent = await _send_encrypted(portal.matrix, portal.room_id)
    notice = await portal.matrix.wait_for_event(
        portal.room_id, notice_from(stack.bot, reply_to=sent), what="a notice about the encrypted message")
    body = notice["content"]["body"]
    assert portal.matrix.user_id in body and "encrypted" in body
    # Nothing went to IRC for it; the next plain line still does.
    await portal.matrix.send_text(portal.room_id, "plain again")
    line = await portal.irc.wait_for(command("PRIVMSG", portal.name, nick=portal.puppet))
    assert line.endswith(":plain again")


async def test_a_private_chat_that_turns_on_encryption_stops_bridging(stack: Stack, portal: Portal) -> None:
    # Portals the bridge creates keep encryption for itself (power 100); a private chat opened
    # from Matrix belongs to the user, who may turn it on (Element offers to).
    m, irc = portal.matrix, portal.irc
    ghost = f"@local_{irc.nick}:localhost"
    dm = await m.create_room(invite=[ghost], is_direct=True)
    await m.wait_for_membership(dm, ghost, "join")
    irc.send(f"PRIVMSG {portal.puppet} :before")
    await m.wait_for_event(dm, message_from(ghost, body="before"))

    await m.set_state(dm, "m.room.encryption", {"algorithm": MEGOLM})
    await m.wait_for_event(dm, notice_from(ghost, contains="cannot read encrypted rooms"), what="the notice")
    await m.wait_for_membership(dm, ghost, "leave")
    # The IRC user keeps talking: it arrives in a new chat, none of it in the clear in the old one.
    irc.send(f"PRIVMSG {portal.puppet} :after")
    fresh = await m.wait_for_invite()
    assert fresh != dm
    await m.join(fresh)
    await m.wait_for_event(fresh, message_from(ghost, body="after"), what="the line after")
    bodies = _plaintext_from(ghost, await m.messages(dm))
    assert "before" in bodies and "after" not in bodies
