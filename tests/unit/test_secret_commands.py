"""Secret commands are recognised before the intake stores them, and stored without the secret."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.appservice.inbox import TransactionInbox
from bridge.bot import BridgeBot
from bridge.commands.registry import CommandRegistry
from bridge.commands.sensitive import (
    SECRET_REMOVED,
    find_secret_command,
    message_secret,
    secret_was_removed,
    without_secret,
)
from bridge.db.engine import make_engine
from bridge.db.migrate import upgrade


@pytest.mark.parametrize("body, name, secret", [
    ("storepass libera hunter2 with spaces", "storepass", "hunter2 with spaces"),
    ("  StorePass libera hunter2", "storepass", "hunter2"),
    ("!rapture storepass libera hunter2", "storepass", "hunter2"),
    ("!RAPTURE   storepass\tlibera hunter2", "storepass", "hunter2"),
    ("'storepass' libera hunter2", "storepass", "hunter2"),
    ('sto"re"pass libera hunter2', "storepass", "hunter2"),
    ("storecert tls\n-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----",
     "storecert", "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----"),
    ("join libera #chan s3cretkey", "join", "s3cretkey"),
    ("!rapture join libera '#chan' \"s3cret key\"", "join", "s3cret key"),
])
def test_secret_commands_are_recognised(body: str, name: str, secret: str) -> None:
    found = find_secret_command(body)
    assert found is not None and found.name == name and found.secret == secret
    assert found.credential is (name != "join")


@pytest.mark.parametrize("body", [
    "hello", "join libera #chan", "!rapture join libera #chan", "storepassword is a word",
    "please storepass libera x", "!rapture help", "", "   ",
])
def test_other_messages_are_not_secret(body: str) -> None:
    assert find_secret_command(body) is None


_words = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(head=st.sampled_from(["", "!rapture ", "!Rapture  ", " "]),
       name=st.sampled_from(["storepass", "STORECERT", "'storepass'", 'store"pass"', "join"]),
       rest=st.lists(_words, max_size=5).map(" ".join))
def test_whatever_the_bot_would_run_as_a_secret_command_is_recognised(head: str, name: str, rest: str) -> None:
    body = f"{head}{name} {rest}"
    text = BridgeBot.strip_prefix(body)
    text = body if text is None else text
    words = CommandRegistry.split(text)
    dispatched = words[0].lower() if words else ""
    carries_secret = dispatched in ("storepass", "storecert") or (dispatched == "join" and len(words) >= 4)
    if carries_secret:
        assert find_secret_command(body) is not None


# Pieces the two parsers may disagree on: every kind of whitespace str.split() knows and
# shlex does not (and back), quotes, backslashes, the prefix in any case, look-alike letters.
_pieces = st.sampled_from([
    "storepass", "STOREPASS", "storecert", "join", "!rapture", "!RAPTURE", "libera", "#c", "pw",
    " ", "  ", "\t", "\n", "\r", "\x0b", "\x0c", "\xa0", "\u2003", "\x1c", "\x85", "\u200b",
    "'", '"', "\\", "ſ", "K",
])


@settings(max_examples=200, deadline=None)
@given(body=st.lists(_pieces, max_size=10).map("".join))
def test_the_bot_runs_no_secret_command_the_intake_misses(body: str) -> None:
    """Any text (not only well-formed commands): what the bot's own parser would dispatch as
    storepass/storecert, or join with a key, the intake recognises."""
    text = BridgeBot.strip_prefix(body)
    text = body if text is None else text
    words = CommandRegistry.split(text)
    dispatched = words[0].lower() if words else ""
    if dispatched in ("storepass", "storecert") or (dispatched == "join" and len(words) >= 4):
        assert find_secret_command(body) is not None


def _event(body: str, event_id: str = "$e1", **extra: object) -> dict:
    return {"type": "m.room.message", "event_id": event_id, "room_id": "!dm:hs", "sender": "@u:hs",
            "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": body, **extra}}


def test_stored_copy_keeps_no_copy_of_the_text() -> None:
    password = "pw-" + "x" * 40
    raw = _event(f"storepass libera {password}", formatted_body=f"<b>storepass libera {password}</b>",
                 **{"m.new_content": {"body": f"storepass libera {password}"}})
    found = message_secret(raw)
    assert found is not None
    stored = without_secret(raw, found)
    assert password not in json.dumps(stored)
    assert secret_was_removed(stored["content"]) and stored["content"]["body"] == "storepass"
    assert raw["content"]["body"].endswith(password)  # the original is untouched
    # An edit that turns a message into a command is a copy of the secret too.
    edit = _event("* fixed", **{"m.new_content": {"body": f"!rapture storepass libera {password}"}})
    assert message_secret(edit) is not None
    assert message_secret({**_event("storepass a b"), "type": "m.room.topic"}) is None


async def test_intake_stores_the_command_without_its_secret(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'rapture.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    password = "unit-" + "p" * 300
    try:
        inbox = TransactionInbox(engine)
        events = await inbox.record("t1", [_event(f"storepass libera {password}"), _event("hi", "$e2")])
        # The handler gets the secret, in memory.
        assert events[0].raw["content"]["body"] == f"storepass libera {password}"
        assert not secret_was_removed(events[0].raw["content"])
        # Nothing stored holds it: not the rows, not any file SQLite wrote (db, -wal, -shm).
        async with engine.connect() as conn:
            rows = (await conn.exec_driver_sql("SELECT payload FROM as_event")).all()
        assert len(rows) == 2 and not any(password in row[0] for row in rows)
        for file in tmp_path.iterdir():
            assert password[:40].encode() not in file.read_bytes(), file
        # A replay after a crash finds the command, marked, without the secret.
        pending = await inbox.pending()
        assert pending[0].raw["content"] == {"msgtype": "m.text", "body": "storepass", SECRET_REMOVED: True}
        assert pending[1].raw["content"]["body"] == "hi"
    finally:
        await engine.dispose()
    for file in tmp_path.iterdir():
        assert password[:40].encode() not in file.read_bytes(), file


async def test_rows_stored_by_an_older_version_lose_their_secret(tmp_path: Path) -> None:
    """An upgrade: `storepass` rows written as received are rewritten, and SQLite's old bytes
    (free space in the database file, pages in the WAL) are gone with them."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'rapture.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    password = "legacy-" + "q" * 300
    try:
        async with engine.begin() as conn:
            for i, body in enumerate([f"!rapture StorePass libera {password}", "hello", "storepass"]):
                await conn.exec_driver_sql(
                    "INSERT INTO as_event (event_id, room_id, txn_id, payload, done) VALUES (?, ?, ?, ?, ?)",
                    (f"$old{i}", "!dm:hs", "t0", json.dumps(_event(body, f"$old{i}")), i == 0))
        assert any(password[:40].encode() in f.read_bytes() for f in tmp_path.iterdir())
        inbox = TransactionInbox(engine)
        assert await inbox.scrub_secrets() == 1
        assert await inbox.scrub_secrets() == 0  # once is enough
        async with engine.connect() as conn:
            payloads = [row[0] for row in (await conn.exec_driver_sql(
                "SELECT payload FROM as_event ORDER BY seq")).all()]
        assert json.loads(payloads[0])["content"] == {"msgtype": "m.text", "body": "storepass",
                                                       SECRET_REMOVED: True}
        assert json.loads(payloads[1])["content"]["body"] == "hello"
        for file in tmp_path.iterdir():
            assert password[:40].encode() not in file.read_bytes(), file
    finally:
        await engine.dispose()


def test_help_says_where_credential_commands_are_taken() -> None:
    """`help` is shown in portals too: it must not invite a password where it will be refused."""
    from bridge.commands.network import register_network_commands
    from bridge.commands.sensitive import CREDENTIAL_COMMANDS
    from bridge.permissions import Level

    registry = CommandRegistry()
    register_network_commands(registry)
    shown = {command.name: command.summary for command in registry.visible_to(Level.USER)}
    for name in CREDENTIAL_COMMANDS:
        assert "only in your private chat with the bot" in shown[name], shown[name]
