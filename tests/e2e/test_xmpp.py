"""A Matrix user and an XMPP user talk through the bridge (real Synapse + Prosody + the bridge).

The XMPP side is a real slixmpp client logged in to Prosody as a registered user. The
bridge reaches Prosody as an external component; rooms are MUCs on muc.xmpp.localhost,
portals are `#xmpp_<room JID>:localhost`, ghosts `@xmpp_<escaped JID>:localhost`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from slixmpp import ClientXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from bridge.devstack import ServerUnavailable
from bridge.devstack.prosody import ProsodyServer, start_prosody
from bridge.devstack.stack import LocalStack, start_local_stack
from bridge.identity import escape_localpart
from connectors.xmpp import stanzas
from connectors.xmpp.stanzas import Message, Presence
from tests.e2e.conftest import PERMISSIONS, Stack
from tests.e2e.matrix import TestClient, member_event, message_from
from tests.servers import require

pytestmark = pytest.mark.e2e
MUC = "muc.xmpp.localhost"
COMPONENT = "matrix.xmpp.localhost"
WAIT = 30.0


@dataclass
class XmppStack:
    stack: Stack
    prosody: ProsodyServer

    @property
    def local(self) -> LocalStack:
        return self.stack.local


@pytest.fixture(scope="module")
def xmpp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppStack]:
    workdir = tmp_path_factory.mktemp("xmpp")
    try:
        prosody = start_prosody(workdir / "prosody")
    except ServerUnavailable as exc:
        require(exc)
    try:
        local = start_local_stack(workdir, permissions=PERMISSIONS, with_irc=False,
                                  extra_networks={"xmpp": prosody.network_options(
                                      muc_domain=MUC, reconnect_delay=0.5, relay=True)})
    except BaseException:
        prosody.stop()
        raise
    yield XmppStack(Stack(local), prosody)
    local.stop()
    prosody.stop()


def ghost(jid: str) -> str:
    return f"@xmpp_{escape_localpart(jid)}:localhost"


class XmppUser:
    """A real XMPP client (slixmpp) for tests; every wait is bounded."""

    def __init__(self, prosody: ProsodyServer, name: str) -> None:
        self.prosody = prosody
        self.name = name
        self.jid = prosody.register_user(name, f"pw-{name}")
        self.client = ClientXMPP(f"{self.jid}/test", f"pw-{name}")
        self.client.enable_plaintext = True
        self.client.enable_starttls = False
        self.client.enable_direct_tls = False
        self.client.register_plugin("feature_mechanisms")
        self.client.plugin["feature_mechanisms"].unencrypted_scram = True
        self.messages: list[Message] = []
        self.presences: list[Presence] = []
        ns = self.client.default_ns
        self.client.register_handler(Callback("TestMessage", MatchXPath(f"{{{ns}}}message"),
                                              lambda s: self.messages.append(stanzas.parse_message(s.xml))))
        self.client.register_handler(Callback("TestPresence", MatchXPath(f"{{{ns}}}presence"),
                                              lambda s: self.presences.append(stanzas.parse_presence(s.xml))))
        self._started = asyncio.Event()
        self.client.add_event_handler("session_start", lambda _: self._started.set())

    async def __aenter__(self) -> XmppUser:
        self.client.connect("127.0.0.1", self.prosody.c2s_port)
        await asyncio.wait_for(self._started.wait(), WAIT)
        self.client.send_presence()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await asyncio.wait_for(asyncio.ensure_future(self.client.disconnect(wait=1.0)), 5)
        except Exception:
            self.client.abort()

    async def _wait(self, items: list[Any], match: Callable[[Any], bool], what: str, timeout: float,
                    since: int = 0) -> Any:
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            for item in items[since:]:
                if match(item):
                    return item
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name}: no {what} within {timeout} s; last: {items[-8:]}")

    async def wait_message(self, match: Callable[[Message], bool], what: str = "message",
                           timeout: float = WAIT) -> Message:
        return await self._wait(self.messages, match, what, timeout)

    async def wait_presence(self, match: Callable[[Presence], bool], what: str = "presence",
                            timeout: float = WAIT, since: int = 0) -> Presence:
        return await self._wait(self.presences, match, what, timeout, since)

    async def join(self, room: str, nick: str) -> None:
        presence = self.client.make_presence(pto=f"{room}/{nick}")
        presence.append(stanzas.muc_join_x())
        presence.send()
        await self.wait_presence(lambda p: p.frm == f"{room}/{nick}" and stanzas.SELF in p.codes,
                                 what=f"self-presence in {room}")

    def say(self, room: str, body: str, *, replace_id: str | None = None) -> str:
        msg = self.client.make_message(mto=room, mbody=body, mtype="groupchat")
        msg_id = uuid.uuid4().hex
        msg["id"] = msg_id
        if replace_id:
            msg.append(stanzas.replace_el(replace_id))
        msg.send()
        return msg_id

    def chat(self, to: str, body: str) -> None:
        self.client.make_message(mto=to, mbody=body, mtype="chat").send()

    def set_subject(self, room: str, subject: str) -> None:
        self.client.make_message(mto=room, msubject=subject, mtype="groupchat").send()


def groupchat(room: str, nick: str, body: str) -> Callable[[Message], bool]:
    return lambda m: m.type == "groupchat" and m.frm == f"{room}/{nick}" and m.body == body


@dataclass
class Portal:
    room: str  # MUC JID
    room_id: str
    matrix: TestClient
    xmpp: XmppUser
    puppet_nick: str
    puppet_jid: str
    ghost: str  # the XMPP user's MXID


@pytest.fixture
async def portal(xmpp_stack: XmppStack) -> AsyncIterator[Portal]:
    """A fresh MUC with one XMPP user in it, and a Matrix user joined through the alias."""
    room = f"r{uuid.uuid4().hex[:8]}@{MUC}"
    account = xmpp_stack.stack.account()
    localpart = account.user_id[1:].split(":")[0]
    async with XmppUser(xmpp_stack.prosody, f"x{uuid.uuid4().hex[:6]}") as xmpp:
        await xmpp.join(room, xmpp.name)
        async with TestClient(xmpp_stack.stack.homeserver, account.user_id, account.token) as matrix:
            room_id = await matrix.join(f"#xmpp_{room}:localhost")
            nick = f"{localpart}[m]"
            await xmpp.wait_presence(lambda p: p.frm == f"{room}/rapture" and p.available, what="the bot joining")
            await xmpp.wait_presence(lambda p: p.frm == f"{room}/{nick}" and p.available, what="the puppet joining")
            yield Portal(room, room_id, matrix, xmpp, nick, f"{localpart}@{COMPONENT}", ghost(xmpp.jid))


async def test_messages_both_ways(portal: Portal) -> None:
    p = portal
    name = await p.matrix.state(p.room_id, "m.room.name")
    assert name["name"] == p.room
    await p.matrix.wait_for_event(p.room_id, member_event(p.ghost, "join"), what="the XMPP user's ghost")
    member = await p.matrix.state(p.room_id, "m.room.member", p.ghost)
    assert member["displayname"] == p.xmpp.name

    event_id = await p.matrix.send_text(p.room_id, "hello from matrix")
    got = await p.xmpp.wait_message(groupchat(p.room, p.puppet_nick, "hello from matrix"))
    assert got.id == event_id  # the Matrix event id is the XMPP message id (edits refer to it)

    p.xmpp.say(p.room, "hello from xmpp")
    reply = await p.matrix.wait_for_event(p.room_id, message_from(p.ghost, body="hello from xmpp"))
    assert reply["content"]["msgtype"] == "m.text"
    # Neither the puppet's line nor the bot's view of it came back as a ghost message.
    events = await p.matrix.messages(p.room_id)
    assert not [e for e in events if e.get("sender", "").startswith("@xmpp_")
                and e.get("content", {}).get("body") == "hello from matrix"]


async def test_emotes_and_formatting(portal: Portal) -> None:
    p = portal
    await p.matrix.send_text(p.room_id, "waves", msgtype="m.emote")
    await p.xmpp.wait_message(groupchat(p.room, p.puppet_nick, "/me waves"))
    await p.matrix.send_content(p.room_id, {
        "msgtype": "m.text", "body": "bold and a link", "format": "org.matrix.custom.html",
        "formatted_body": '<b>bold</b> and a <a href="https://example.org/">link</a>',
    })
    await p.xmpp.wait_message(groupchat(p.room, p.puppet_nick, "*bold* and a link (https://example.org/)"))

    p.xmpp.say(p.room, "/me dances")
    emote = await p.matrix.wait_for_event(p.room_id, message_from(p.ghost, body="dances"))
    assert emote["content"]["msgtype"] == "m.emote"


async def test_subject_becomes_topic_and_back(portal: Portal) -> None:
    p = portal
    p.xmpp.set_subject(p.room, "the xmpp subject")
    for _ in range(100):
        try:
            topic = (await p.matrix.state(p.room_id, "m.room.topic")).get("topic")
        except Exception:
            topic = None
        if topic == "the xmpp subject":
            break
        await asyncio.sleep(0.2)
    assert topic == "the xmpp subject"

    await p.matrix.set_state(p.room_id, "m.room.topic", {"topic": "set from matrix"})
    subject = await p.xmpp.wait_message(lambda m: m.subject == "set from matrix", what="subject change")
    assert subject.frm == f"{p.room}/{p.puppet_nick}"


async def test_private_messages_both_ways(xmpp_stack: XmppStack, portal: Portal) -> None:
    p = portal
    # XMPP -> Matrix: the XMPP user writes to the puppet's JID; its ghost opens a DM.
    p.xmpp.chat(p.puppet_jid, "psst, private")
    invited = await p.matrix.wait_for_invite()
    await p.matrix.join(invited)
    await p.matrix.wait_for_event(invited, message_from(p.ghost, body="psst, private"))
    await p.matrix.send_text(invited, "private answer")
    await p.xmpp.wait_message(lambda m: m.type == "chat" and m.frm.split("/")[0] == p.puppet_jid
                              and m.body == "private answer", what="the DM answer")

    # Matrix -> XMPP: a DM opened from Matrix with another XMPP user's ghost.
    async with XmppUser(xmpp_stack.prosody, f"e{uuid.uuid4().hex[:6]}") as erin:
        dm = await p.matrix.create_room(invite=[ghost(erin.jid)], is_direct=True)
        await p.matrix.wait_for_membership(dm, ghost(erin.jid), "join")
        await p.matrix.send_text(dm, "hello erin")
        await erin.wait_message(lambda m: m.type == "chat" and m.frm.split("/")[0] == p.puppet_jid
                                and m.body == "hello erin", what="the DM from Matrix")
        erin.chat(p.puppet_jid, "hi back")
        await p.matrix.wait_for_event(dm, message_from(ghost(erin.jid), body="hi back"))


async def test_membership_and_nick_changes(xmpp_stack: XmppStack, portal: Portal) -> None:
    p = portal
    async with XmppUser(xmpp_stack.prosody, f"c{uuid.uuid4().hex[:6]}") as carol:
        carol_mxid = ghost(carol.jid)
        await carol.join(p.room, carol.name)
        await p.matrix.wait_for_event(p.room_id, member_event(carol_mxid, "join"), what="carol's ghost joining")
        # A nick change keeps the ghost (the room shows real JIDs); its display name follows.
        carol.client.make_presence(pto=f"{p.room}/carol-renamed").send()
        for _ in range(100):
            member = await p.matrix.state(p.room_id, "m.room.member", carol_mxid)
            if member.get("displayname") == "carol-renamed":
                break
            await asyncio.sleep(0.2)
        assert member["displayname"] == "carol-renamed" and member["membership"] == "join"
        leave = carol.client.make_presence(pto=f"{p.room}/carol-renamed", ptype="unavailable",
                                           pstatus="see you")
        leave.send()
        left = await p.matrix.wait_for_event(p.room_id, member_event(carol_mxid, "leave"), what="carol leaving")
        assert left["content"].get("reason") == "see you"


async def test_correction_from_xmpp_becomes_a_matrix_edit(portal: Portal) -> None:
    p = portal
    original = p.xmpp.say(p.room, "helo")
    first = await p.matrix.wait_for_event(p.room_id, message_from(p.ghost, body="helo"))
    p.xmpp.say(p.room, "hello", replace_id=original)
    edit = await p.matrix.wait_for_event(p.room_id, message_from(p.ghost, body="* hello"), what="the edit")
    assert edit["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": first["event_id"]}
    assert edit["content"]["m.new_content"]["body"] == "hello"


async def test_matrix_edit_becomes_an_xmpp_correction(portal: Portal) -> None:
    p = portal
    original = await p.matrix.send_text(p.room_id, "helo from matrix")
    await p.xmpp.wait_message(groupchat(p.room, p.puppet_nick, "helo from matrix"))
    await p.matrix.send_content(p.room_id, {
        "msgtype": "m.text", "body": "* hello from matrix",
        "m.new_content": {"msgtype": "m.text", "body": "hello from matrix"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    })
    correction = await p.xmpp.wait_message(groupchat(p.room, p.puppet_nick, "hello from matrix"),
                                           what="the correction")
    assert correction.replace_id == original


async def test_relay_users_are_spoken_for_by_the_bot(xmpp_stack: XmppStack, portal: Portal) -> None:
    p = portal
    relayer = xmpp_stack.stack.account("relayer")
    async with TestClient(xmpp_stack.stack.homeserver, relayer.user_id, relayer.token) as m:
        await m.join(p.room_id)
        await m.send_text(p.room_id, "relayed hello")
        await p.xmpp.wait_message(groupchat(p.room, "rapture", "<relayer> relayed hello"))
        await m.send_text(p.room_id, "waves", msgtype="m.emote")
        await p.xmpp.wait_message(groupchat(p.room, "rapture", "* relayer waves"))
    # A relay user gets no occupant of their own.
    assert not [pr for pr in p.xmpp.presences if pr.frm.startswith(f"{p.room}/relayer")]


async def test_bridge_restart_leaves_no_stale_occupants(xmpp_stack: XmppStack, portal: Portal) -> None:
    """Stopping says goodbye (Prosody would keep the component's occupants); starting rejoins."""
    p = portal
    bridge = xmpp_stack.local.bridge
    await asyncio.to_thread(bridge.stop)
    await p.xmpp.wait_presence(lambda pr: pr.frm == f"{p.room}/{p.puppet_nick}" and pr.type == "unavailable",
                               what="the puppet leaving on shutdown", timeout=10)
    await p.xmpp.wait_presence(lambda pr: pr.frm == f"{p.room}/rapture" and pr.type == "unavailable",
                               what="the bot leaving on shutdown", timeout=10)
    seen = len(p.xmpp.presences)
    await asyncio.to_thread(bridge.start)
    await p.xmpp.wait_presence(lambda pr: pr.frm == f"{p.room}/rapture" and pr.available,
                               what="the bot rejoining", since=seen)
    await p.xmpp.wait_presence(lambda pr: pr.frm == f"{p.room}/{p.puppet_nick}" and pr.available,
                               what="the puppet rejoining", since=seen)
    await p.matrix.send_text(p.room_id, "still here")
    await p.xmpp.wait_message(groupchat(p.room, p.puppet_nick, "still here"))


async def test_prosody_restart_reconnects_and_rejoins(xmpp_stack: XmppStack, portal: Portal) -> None:
    """The server goes away and comes back: the component reconnects, bot and puppet rejoin.

    Runs last: it cuts every XMPP client of the module off.
    """
    p = portal
    await asyncio.to_thread(xmpp_stack.prosody.restart)
    async with XmppUser(xmpp_stack.prosody, f"w{uuid.uuid4().hex[:6]}") as watcher:
        await watcher.join(p.room, watcher.name)
        await watcher.wait_presence(lambda pr: pr.frm == f"{p.room}/rapture" and pr.available,
                                    what="the bot back in the room")
        await watcher.wait_presence(lambda pr: pr.frm == f"{p.room}/{p.puppet_nick}" and pr.available,
                                    what="the puppet back in the room")
        await p.matrix.send_text(p.room_id, "after the restart")
        await watcher.wait_message(groupchat(p.room, p.puppet_nick, "after the restart"))
        watcher.say(p.room, "welcome back")
        await p.matrix.wait_for_event(p.room_id, message_from(ghost(watcher.jid), body="welcome back"))
