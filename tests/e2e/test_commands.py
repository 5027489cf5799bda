"""Control-room commands through real Synapse + InspIRCd: each one's success and refusal."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import Account, Stack
from tests.e2e.irc import IrcUser, command
from tests.e2e.matrix import TestClient, member_event, message_from, notice_from


@dataclass
class Control:
    client: TestClient
    room: str
    bot: str
    account: Account

    @property
    def puppet(self) -> str:
        return f"{self.account.user_id[1:].split(':')[0]}[m]"

    async def ask(self, text: str) -> str:
        asked = await self.client.send_text(self.room, text)
        reply = await self.client.wait_for_event(self.room, notice_from(self.bot, reply_to=asked),
                                                 what=f"answer to {text!r}")
        return reply["content"]["body"]


async def _control(stack: Stack, account: Account) -> AsyncIterator[Control]:
    async with TestClient(stack.homeserver, account.user_id, account.token) as client:
        room = await client.create_room(invite=[stack.bot], is_direct=True)
        await client.wait_for_membership(room, stack.bot, "join")
        yield Control(client, room, stack.bot, account)


@pytest.fixture
async def control(stack: Stack) -> AsyncIterator[Control]:
    async for c in _control(stack, stack.account()):
        yield c


@pytest.fixture
async def watcher(stack: Stack) -> AsyncIterator[IrcUser]:
    user = IrcUser(stack.local.inspircd.port, f"w{uuid.uuid4().hex[:6]}")
    await user.registered()
    yield user
    user.close()


def chan() -> str:
    return f"#c{uuid.uuid4().hex[:7]}"


async def test_usage_and_unknown_network(control: Control) -> None:
    assert "Usage: join <network> <#channel> [key]" in await control.ask("join")
    assert "Unknown network 'nope'" in await control.ask("join nope #x")
    assert "not a valid channel" in await control.ask("join local nochannel")
    assert "Usage: storepass <network> <password>" in await control.ask("storepass")
    assert "Usage: storepass <network> <password>" in await control.ask("storepass local")
    for text in ("listrooms nope", "reconnect nope", "quit nope", "removepass nope", "nick nope",
                 "username nope x", "whois nope x", "part nope #x"):
        assert "Unknown network 'nope'" in await control.ask(text), text
    assert "Usage: username <network> <name>" in await control.ask("username local")
    assert "Usage: whois <network> <nick|@mxid>" in await control.ask("whois local")
    assert "Usage: nick <network> [nick]" in await control.ask("nick")
    assert "Usage: part <network> <#channel>" in await control.ask("part local")
    assert "Usage: version" not in await control.ask("version")
    assert "local (irc)" in await control.ask("networks")


async def test_join_part_and_listrooms(stack: Stack, control: Control, watcher: IrcUser) -> None:
    name = chan()
    await watcher.join(name)
    answer = await control.ask(f"join local {name}")
    assert answer.startswith(f"Joining {name}")
    await watcher.wait_for(command("JOIN", name, nick=control.puppet))
    room = await control.client.wait_for_invite()
    await control.client.join(room)
    assert name in await control.ask("listrooms")
    assert name in await control.ask("listrooms local")

    assert f"You are not in #elsewhere on local" in await control.ask("part local #elsewhere")
    assert await control.ask(f"part local {name}") == f"Left {name} on local."
    await watcher.wait_for(command("PART", name, nick=control.puppet))
    await control.client.wait_for_event(room, member_event(control.account.user_id, "leave"))
    assert await control.ask("listrooms") == "You are in no bridged rooms."


async def test_nick_is_changed_and_kept(stack: Stack, control: Control, watcher: IrcUser) -> None:
    name = chan()
    await watcher.join(name)
    await control.ask(f"join local {name}")
    await watcher.wait_for(command("JOIN", name, nick=control.puppet))
    new = f"n{uuid.uuid4().hex[:6]}"
    assert "is not a valid nick" in await control.ask("nick local 1bad")
    assert await control.ask(f"nick local {new}") == f"Your nick on local is now {new}."
    await watcher.wait_for(command("NICK", nick=control.puppet))
    assert await control.ask("nick local") == f"Your nick on local is {new}."
    # Kept: after a reconnect the puppet comes back with the chosen nick.
    await control.ask("reconnect local")
    await watcher.wait_for(command("JOIN", name, nick=new), timeout=30)


async def test_whois_by_nick_and_by_mxid(stack: Stack, control: Control, watcher: IrcUser) -> None:
    name = chan()
    await watcher.join(name)
    await control.ask(f"join local {name}")
    await watcher.wait_for(command("JOIN", name, nick=control.puppet))
    by_nick = await control.ask(f"whois local {watcher.nick}")
    assert f"{watcher.nick} is {watcher.nick}@127.0.0.1" in by_nick and name in by_nick
    by_mxid = await control.ask(f"whois local @local_{watcher.nick}:localhost")
    assert f"{watcher.nick} is {watcher.nick}@127.0.0.1" in by_mxid
    assert "no such nick" in await control.ask("whois local nobodyhere42")


async def test_credentials_are_stored_encrypted_and_removed(stack: Stack, control: Control) -> None:
    password = "correct horse battery stäple " + "x" * 300
    answer = await control.ask(f"storepass local {password}")
    assert "stored, encrypted" in answer
    assert "Username set" not in answer
    assert await control.ask("username local someaccount") == (
        "Your user name on local is now someaccount; send 'reconnect local' to use it.")
    db = sqlite3.connect(stack.local.workdir / "rapture.db")
    try:
        row = db.execute("SELECT credentials, username FROM login WHERE mxid = ? AND network = 'local'",
                         (control.account.user_id,)).fetchone()
        assert row[1] == "someaccount"
        assert row[0] and password.encode() not in row[0] and b"correct horse" not in row[0]
        assert await control.ask("removepass local") == "Your password for local is forgotten."
        row = db.execute("SELECT credentials FROM login WHERE mxid = ?", (control.account.user_id,)).fetchone()
        assert row[0] is None
    finally:
        db.close()
    log = stack.local.bridge.log_path.read_text()
    assert "correct horse" not in log


async def test_reconnect_keeps_matrix_membership_and_quit_disconnects(
        stack: Stack, control: Control, watcher: IrcUser) -> None:
    name = chan()
    await watcher.join(name)
    await control.ask(f"join local {name}")
    await watcher.wait_for(command("JOIN", name, nick=control.puppet))
    room = await control.client.wait_for_invite()
    await control.client.join(room)
    assert await control.ask("reconnect") == "Reconnecting to local."
    quit_line = await watcher.wait_for(command("QUIT", nick=control.puppet))
    assert quit_line.endswith(":Quit: Reconnecting")
    await watcher.wait_for(command("JOIN", name, nick=control.puppet), timeout=30)
    members = await control.client.members(room)
    assert members[control.account.user_id] == "join"  # no kick from the Matrix room

    assert await control.ask("quit local") == "Disconnected from local."
    await watcher.wait_for(command("QUIT", nick=control.puppet))
    assert await control.ask("quit local") == "You were not connected."


async def test_commands_in_a_portal(stack: Stack, control: Control) -> None:
    name = chan()
    room = await control.client.join(f"#local_{name}:localhost")
    asked = await control.client.send_text(room, "!rapture version")
    reply = await control.client.wait_for_event(room, notice_from(stack.bot, reply_to=asked))
    assert reply["content"]["body"].startswith("Rapture ")


async def test_admin_commands_need_admin(control: Control) -> None:
    for text in ("status", "unlink !x:localhost"):
        assert "needs permission level 'admin'; you have 'user'" in await control.ask(text)
    help_text = await control.ask("help")
    assert "\n  unlink " not in help_text and "\n  status" not in help_text
    # `link` is for users too, with the consent of the channel's operators (tests/e2e/test_doors.py).
    assert "\n  link " in help_text


async def test_admin_link_status_and_unlink(stack: Stack, watcher: IrcUser) -> None:
    try:
        admin = stack.account("admin")
    except RuntimeError:
        pytest.skip("admin account made by an earlier run")  # pragma: no cover
    async for control in _control(stack, admin):
        assert "\n  status" in await control.ask("help")
        name = chan()
        await watcher.join(name)
        room = await control.client.create_room(invite=[stack.bot], name="existing room")
        assert "No room has the alias" in await control.ask(f"link #nosuchalias:localhost local {name}")
        assert await control.ask(f"link {room} local {name}") == f"Linked {room} to {name} on local."
        assert "already bridged" in await control.ask(f"link {room} local #other")
        await watcher.wait_for(command("JOIN", name, nick="rapture"))
        ghost = f"@local_{watcher.nick}:localhost"
        await control.client.wait_for_event(room, member_event(ghost, "join"))
        watcher.send(f"PRIVMSG {name} :into the linked room")
        await control.client.wait_for_event(room, message_from(ghost, body="into the linked room"))

        status = await control.ask("status")
        assert "Portals:" in status and "local (irc)" in status and "connected as rapture" in status

        assert await control.ask(f"unlink {room}") == f"Unlinked {room} from {name} on local."
        await control.client.wait_for_event(room, member_event(ghost, "leave"))
        await watcher.wait_for(command("PART", name, nick="rapture"))
        assert "is not bridged" in await control.ask(f"unlink {room}")
