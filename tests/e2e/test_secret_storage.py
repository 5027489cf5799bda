"""Secrets never at rest in the clear, through real Synapse + InspIRCd + the bridge process.

A `storepass` password is in no file of the bridge's directory (the database, its -wal and
-shm, the log, ...) while the bridge runs and after it checkpoints at a clean stop, and in no
`as_event` row; a credential command anywhere but the user's private DM with the bot is
refused, redacted where the bot may, and stores nothing.
"""

from __future__ import annotations

import sqlite3
import stat
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bridge.appservice.inbox import TransactionInbox
from bridge.db.engine import make_engine
from tests.e2e.conftest import Account, Stack
from tests.e2e.irc import IrcUser, command
from tests.e2e.matrix import TestClient, member_event, notice_from


def _password() -> str:
    """300 bytes, unique to the test: any copy of it anywhere is ours."""
    return ("Pw-" + uuid.uuid4().hex * 10)[:300]


def _pieces(secret: str) -> list[bytes]:
    """The secret and every 40-byte slice of it: a copy split over two pages is still found."""
    data = secret.encode()
    return [data] + [data[i:i + 40] for i in range(0, len(data) - 40, 20)]


def _files_holding(directory: Path, secret: str) -> list[str]:
    """Every file directly in `directory` (the database, -wal, -shm, log, config, key...)
    whose bytes hold any piece of `secret`."""
    hits = []
    for path in sorted(directory.iterdir()):
        if path.is_file():
            data = path.read_bytes()
            if any(piece in data for piece in _pieces(secret)):
                hits.append(path.name)
    return hits


def _db(stack: Stack) -> Path:
    return stack.local.workdir / "rapture.db"


def _query(stack: Stack, sql: str, *args: object) -> list[tuple]:
    db = sqlite3.connect(f"file:{_db(stack)}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def _nothing_stored(stack: Stack, account: Account) -> bool:
    rows = _query(stack, "SELECT credentials FROM login WHERE mxid = ?", account.user_id)
    return all(credentials is None for (credentials,) in rows)


async def _dm(client: TestClient, stack: Stack) -> str:
    room = await client.create_room(invite=[stack.bot], is_direct=True)
    await client.wait_for_membership(room, stack.bot, "join")
    return room


async def _ask(client: TestClient, room: str, bot: str, text: str) -> tuple[str, str]:
    asked = await client.send_text(room, text)
    reply = await client.wait_for_event(room, notice_from(bot, reply_to=asked), what="the bot's answer")
    return reply["content"]["body"], asked


async def _is_redacted(client: TestClient, room: str, event_id: str) -> bool:
    event = [e for e in await client.messages(room) if e.get("event_id") == event_id]
    return bool(event) and "body" not in event[0]["content"]


@dataclass
class Joined:
    """A new Matrix user, in their DM with the bot, whose puppet joined a fresh channel that
    an IRC user watches."""

    account: Account
    m: TestClient
    dm: str
    watcher: IrcUser
    channel: str
    puppet: str


@asynccontextmanager
async def _joined_channel(stack: Stack, letter: str) -> AsyncIterator[Joined]:
    account = stack.account()
    channel = f"#{letter}{uuid.uuid4().hex[:7]}"
    watcher = IrcUser(stack.local.inspircd.port, f"w{uuid.uuid4().hex[:6]}")
    await watcher.registered()
    await watcher.join(channel)
    puppet = f"{account.user_id[1:].split(':')[0]}[m]"
    try:
        async with TestClient(stack.homeserver, account.user_id, account.token) as m:
            dm = await _dm(m, stack)
            await _ask(m, dm, stack.bot, f"join local {channel}")
            await watcher.wait_for(command("JOIN", channel, nick=puppet))
            yield Joined(account, m, dm, watcher, channel, puppet)
    finally:
        watcher.close()


async def test_storepass_password_is_in_no_file_row_or_log(stack: Stack) -> None:
    password = _password()
    workdir = stack.local.workdir
    async with _joined_channel(stack, "s") as j:
        account, m, room, watcher, channel, puppet = j.account, j.m, j.dm, j.watcher, j.channel, j.puppet
        answer, asked = await _ask(m, room, stack.bot, f"storepass local {password}")
        assert "stored, encrypted" in answer, answer
        # The password passes through: unsealed, and sent (NickServ IDENTIFY) on reconnect.
        await _ask(m, room, stack.bot, "reconnect local")
        await watcher.wait_for(command("QUIT", nick=puppet))
        await watcher.wait_for(command("JOIN", channel, nick=puppet), timeout=30)

        # While the bridge runs, before any clean-stop checkpoint: the WAL is there.
        assert Path(f"{_db(stack)}-wal").exists()
        # ...and, like every file of the bridge's that holds a secret, private.
        modes = {name: stat.S_IMODE((workdir / name).stat().st_mode) for name in (
            "rapture.db", "rapture.db-wal", "rapture.db-shm", "rapture.key", "config.yaml",
            "registration.yaml")}
        assert modes == {"rapture.db": 0o600, "rapture.db-wal": 0o600, "rapture.db-shm": 0o600,
                         "rapture.key": 0o600, "config.yaml": 0o600, "registration.yaml": 0o640}
        assert _files_holding(workdir, password) == []
        (payload,), = _query(stack, "SELECT payload FROM as_event WHERE event_id = ?", asked)
        assert password not in payload and '"org.rapture.secret_removed": true' in payload
        sealed = _query(stack, "SELECT credentials FROM login WHERE mxid = ? AND network = 'local'",
                        account.user_id)
        assert sealed and sealed[0][0] and password.encode() not in sealed[0][0]
        assert password not in stack.local.bridge.log_path.read_text(errors="replace")

        # A clean stop checkpoints the WAL into the database file: still nowhere.
        stack.local.bridge.stop()
        try:
            assert _files_holding(workdir, password) == []
            # A crash between the 200 and the handling: the replay finds the command without
            # its secret, and the user is asked to send it again.
            url = f"sqlite+aiosqlite:///{_db(stack)}"
            engine = make_engine(url)
            try:
                await TransactionInbox(engine).record(f"crash-{uuid.uuid4().hex}", [{
                    "type": "m.room.message", "event_id": f"$crash{uuid.uuid4().hex}",
                    "room_id": room, "sender": account.user_id, "origin_server_ts": 1,
                    "content": {"msgtype": "m.text", "body": f"storepass local {password}x"},
                }])
            finally:
                await engine.dispose()
            assert _files_holding(workdir, password) == []
        finally:
            stack.local.bridge.start()
        await m.wait_for_event(room, notice_from(stack.bot, contains="send it again"),
                               what="the replayed command's answer")
        assert _files_holding(workdir, password) == []
        assert password not in stack.local.bridge.log_path.read_text(errors="replace")


async def test_storepass_in_a_portal_is_refused_redacted_and_not_sent(stack: Stack) -> None:
    password = _password()
    async with _joined_channel(stack, "p") as j:
        account, m, watcher, channel, puppet = j.account, j.m, j.watcher, j.channel, j.puppet
        portal = await m.wait_for_invite()
        await m.join(portal)
        for text in (f"!rapture storepass local {password}", f"storepass local {password}",
                     f"!rapture storecert local {password}"):
            answer, asked = await _ask(m, portal, stack.bot, text)
            assert "was refused here" in answer and "this room is bridged" in answer, answer
            assert "Nothing was stored" in answer and "Your message was removed" in answer, answer
            # Commands are not relayed: the refusal must not say it reached IRC, but others in
            # the room saw it before the redaction.
            assert "reaches the other network" not in answer and "others may have seen it" in answer, answer
            assert await _is_redacted(m, portal, asked)
        # An edit that turns a message into the command: its body is "* storepass ...", the
        # command is in `m.new_content`, and it would be relayed as a correction.
        typo = await m.send_text(portal, "typo")
        await watcher.wait_for(command("PRIVMSG", channel, nick=puppet, text="typo"))
        edit = await m.send_content(portal, {
            "msgtype": "m.text", "body": f"* storepass local {password}",
            "m.new_content": {"msgtype": "m.text", "body": f"storepass local {password}"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": typo},
        })
        reply = await m.wait_for_event(portal, notice_from(stack.bot, reply_to=edit), what="the refusal")
        assert "was refused here" in reply["content"]["body"], reply
        assert await _is_redacted(m, portal, edit)
        # Ordered behind the refusals: once this line is on IRC, they would have been too.
        marker = f"after-{uuid.uuid4().hex[:8]}"
        await m.send_text(portal, marker)
        await watcher.wait_for(command("PRIVMSG", channel, nick=puppet, text=marker))
        assert not any(password[:40] in line for line in watcher.seen())
        assert _nothing_stored(stack, account)
        assert _files_holding(stack.local.workdir, password) == []


async def test_storepass_in_a_shared_room_is_refused_and_nothing_stored(stack: Stack) -> None:
    account, other = stack.account(), stack.account()
    password = _password()
    async with TestClient(stack.homeserver, account.user_id, account.token) as m:
        # The bot is invited along with another user: the bot joins, but it is no private DM.
        room = await m.create_room(invite=[stack.bot, other.user_id])
        await m.wait_for_membership(room, stack.bot, "join")
        answer, asked = await _ask(m, room, stack.bot, f"storepass local {password}")
        assert "'storepass' was refused here" in answer and "other people are in this room" in answer, answer
        # The bot has no power to redact in the user's room: it says so instead.
        assert "could not be removed" in answer and "delete it yourself" in answer, answer
        assert not await _is_redacted(m, room, asked)
        assert _nothing_stored(stack, account)
        # The same user's real DM, with nobody else in it, still takes the command.
        dm = await _dm(m, stack)
        answer, _ = await _ask(m, dm, stack.bot, f"storepass local {password}")
        assert "stored, encrypted" in answer, answer
        # Someone else invited into the DM makes it shared: refused again.
        await m.request("POST", f"/rooms/{dm}/invite", {"user_id": other.user_id})
        await m.wait_for_event(dm, member_event(other.user_id, "invite"))
        answer, _ = await _ask(m, dm, stack.bot, f"storepass local {password}")
        assert "other people are in this room" in answer, answer
    assert _files_holding(stack.local.workdir, password) == []


async def test_storepass_in_a_private_chat_with_an_irc_user_is_refused_and_not_sent(stack: Stack) -> None:
    """The bot is not in a DM with a remote user: the ghost answers, and nothing reaches IRC."""
    account = stack.account()
    password = _password()
    erin = IrcUser(stack.local.inspircd.port, f"e{uuid.uuid4().hex[:6]}")
    puppet = f"{account.user_id[1:].split(':')[0]}[m]"
    try:
        await erin.registered()
        erin_mxid = f"@local_{erin.nick}:localhost"
        async with TestClient(stack.homeserver, account.user_id, account.token) as m:
            dm = await m.create_room(invite=[erin_mxid], is_direct=True)
            await m.wait_for_membership(dm, erin_mxid, "join")
            asked = await m.send_text(dm, f"storepass local {password}")
            notice = await m.wait_for_event(dm, notice_from(erin_mxid, reply_to=asked), what="the refusal")
            answer = notice["content"]["body"]
            assert "'storepass' was refused here" in answer and "this room is bridged" in answer, answer
            assert "Nothing was stored" in answer and stack.bot in answer, answer
            marker = f"after-{uuid.uuid4().hex[:8]}"
            await m.send_text(dm, marker)
            await erin.wait_for(command("PRIVMSG", erin.nick, nick=puppet, text=marker))
            assert not any(password[:40] in line for line in erin.seen())
            assert _nothing_stored(stack, account)
            assert _files_holding(stack.local.workdir, password) == []
    finally:
        erin.close()
