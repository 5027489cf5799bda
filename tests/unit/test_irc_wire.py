"""The IRC wire guard, tried as an attacker would: arbitrary Unicode in every field.

The real IRCConnection / IRCPuppet / IRCConnector code runs against a fake transport that
records the bytes written (this is the pure wire layer; the e2e test
`tests/e2e/test_irc_injection.py` does the same through Synapse and InspIRCd). For every
operation, either every line written ends with its one CRLF, holds no other CR, LF or NUL,
is at most 512 bytes and parses back to the intended command and target, or the operation
raised `SendError` and wrote nothing.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from irc.client import Event

from connectors.api import ChatKind, ChatRef, LoginInfo, MessageKind, OutgoingMessage, SendError
from connectors.irc.connection import ConnectionSettings, IRCConnection, _Connection
from connectors.irc.connector import IRCConnector
from connectors.irc.flood import FloodControl
from connectors.irc.puppet import IRCPuppet

CHANNEL = "#chan"
HOSTILE = st.sampled_from([
    "\r", "\n", "\r\n", "\x00", "\x01", "\ud800", "\udfff", " ", ":", ",", "é", "😀", "\u2028",
    "QUIT :bye", "\rQUIT :bye", "\rJOIN #evil", "\u202e", "\x03", "\t",
])
PIECE = st.lists(st.one_of(st.characters(), HOSTILE), max_size=40).map("".join)
# Short hostile text, or the same tiled past 10 KB.
TEXT = st.one_of(PIECE, PIECE.map(lambda s: (s or "\r") * (10_240 // max(len(s), 1) + 1)))
FAST = settings(max_examples=200, deadline=None)


# -- the fake transport and an independent parser --------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def wire_up(conn: IRCConnection) -> Recorder:
    """Make `conn` registered on a fake link; every written byte lands in the Recorder."""
    recorder = Recorder()
    link = _Connection.__new__(_Connection)
    link.transport = recorder  # type: ignore[assignment]
    link.connected = True
    link.owner = conn
    conn._conn = link
    conn.registered = True
    conn._flood = FloodControl(conn._write, burst=1_000_000, rate=0)  # type: ignore[arg-type]
    return recorder


def parse(raw: bytes) -> tuple[str, list[str]]:
    """`COMMAND p1 p2 :trailing` -> (command, params), checking what a server would."""
    assert b"\x00" not in raw and b"\r" not in raw and b"\n" not in raw, raw
    assert len(raw) + 2 <= 512, len(raw)
    text = raw.decode("utf-8")  # strict: valid UTF-8
    assert not text.startswith((":", "@")), text  # we send no prefix and no tags
    head, sep, trailing = text.partition(" :")
    words = head.split(" ")
    assert all(words), text  # no empty middle parameter (a double space)
    return words[0], words[1:] + ([trailing] if sep else [])


def written_lines(data: bytes) -> list[tuple[str, list[str]]]:
    if not data:
        return []
    assert data.endswith(b"\r\n")
    raws = data.split(b"\r\n")[:-1]
    # Exactly one CR and one LF per line, both at its end.
    assert data.count(b"\r") == data.count(b"\n") == len(raws)
    return [parse(raw) for raw in raws]


def run_op(recorder: Recorder, op: Callable[[], Awaitable[Any]]) -> list[tuple[str, list[str]]] | None:
    """Run one operation: its lines, or None when it raised SendError having written nothing."""
    before = len(recorder.data)

    async def go() -> None:
        await op()

    try:
        asyncio.run(go())
    except SendError:
        assert len(recorder.data) == before, "an operation that failed still wrote"
        return None
    return written_lines(bytes(recorder.data[before:]))


# -- the objects under test ---------------------------------------------------------------------------
def connector() -> IRCConnector:
    return IRCConnector("libera", {"host": "irc.test", "services_host": "services.test"})


def puppet(displayname: str = "Alice", password: str | None = None, account: str | None = None) -> tuple[IRCPuppet, Recorder]:
    c = connector()
    p = c.make_client(LoginInfo(mxid="@alice:hs", localpart="alice", displayname=displayname,
                                username=account, password=password))
    assert isinstance(p, IRCPuppet)
    recorder = wire_up(p.conn)
    return p, recorder


def bot_connector() -> tuple[IRCConnector, Recorder]:
    c = connector()
    c.bot = IRCConnection(settings=c.settings_for("rapture", "Rapture bridge"), nick="rapture",
                          reactor=None, limiter=asyncio.Semaphore(1),  # type: ignore[arg-type]
                          on_event=lambda conn, e: None, on_state=lambda conn, s, m: None)
    return c, wire_up(c.bot)


def _no_controls(text: str) -> bool:
    return not any(unicodedata.category(c) == "Cc" for c in text)


# -- properties ---------------------------------------------------------------------------------------
KINDS = st.sampled_from([MessageKind.TEXT, MessageKind.NOTICE, MessageKind.EMOTE])


@FAST
@given(text=TEXT, kind=KINDS)
def test_a_puppets_message_is_only_ever_chat_to_its_target(text: str, kind: MessageKind) -> None:
    p, rec = puppet()
    lines = run_op(rec, lambda: p.send(ChatRef(CHANNEL), OutgoingMessage(kind=kind, text=text, max_lines=None)))
    for command, params in lines or []:
        assert command in ("PRIVMSG", "NOTICE") and params[0] == CHANNEL and len(params) == 2


@FAST
@given(name=TEXT, text=TEXT, kind=KINDS)
def test_a_relayed_message_shows_the_display_name_without_control_characters(
        name: str, text: str, kind: MessageKind) -> None:
    c, rec = bot_connector()
    message = OutgoingMessage(kind=kind, text=text, sender_name=name)
    lines = run_op(rec, lambda: c.relay(ChatRef(CHANNEL), message))
    for command, params in lines or []:
        assert command in ("PRIVMSG", "NOTICE") and params[0] == CHANNEL and len(params) == 2
        if kind is not MessageKind.EMOTE:
            assert params[1].startswith("<")
            assert _no_controls(params[1].split("> ", 1)[0])


@FAST
@given(key=TEXT)
def test_join_with_any_key_is_one_join_of_the_channel_or_refused(key: str) -> None:
    p, rec = puppet()
    lines = run_op(rec, lambda: p.join(CHANNEL, key))
    if lines is not None:
        assert lines == [("JOIN", [CHANNEL, key] if key else [CHANNEL])]


@FAST
@given(topic=TEXT)
def test_topic(topic: str) -> None:
    p, rec = puppet()
    lines = run_op(rec, lambda: p.set_topic(CHANNEL, topic))
    if lines is not None:
        assert [(c, ps[0], len(ps)) for c, ps in lines] == [("TOPIC", CHANNEL, 2)]


@FAST
@given(reason=TEXT)
def test_part_with_reason(reason: str) -> None:
    p, rec = puppet()
    p.conn.channels[CHANNEL] = SimpleNamespace(name=CHANNEL, key="")  # type: ignore[assignment]
    p.conn.joined.add(CHANNEL)
    lines = run_op(rec, lambda: p.part(CHANNEL, reason))
    if lines is not None:
        assert [(c, ps[0], len(ps)) for c, ps in lines] == [("PART", CHANNEL, 2)]


@FAST
@given(target=st.one_of(TEXT, st.just("x \rquit")), reason=TEXT)
def test_kick_target_and_reason(target: str, reason: str) -> None:
    p, rec = puppet()
    lines = run_op(rec, lambda: p.kick(CHANNEL, target, reason))
    if lines is not None:
        assert [(c, ps[:2], len(ps)) for c, ps in lines] == [("KICK", [CHANNEL, target], 3)]


def test_a_crafted_ghost_id_never_kicks_anyone() -> None:
    # @libera_x=20=0dquit:hs unescapes to "x \rquit"
    p, rec = puppet()
    assert run_op(rec, lambda: p.kick(CHANNEL, "x \rquit", "bye")) is None
    assert rec.data == b""


@FAST
@given(nick=TEXT)
def test_nick_change(nick: str) -> None:
    p, rec = puppet()
    lines = run_op(rec, lambda: p.set_name(nick))
    if lines is not None:
        assert lines == [("NICK", [nick])]


@FAST
@given(displayname=TEXT, username=TEXT)
def test_registration_real_name_from_the_display_name(displayname: str, username: str) -> None:
    c = connector()
    s = c.settings_for(username, displayname)
    rec = Recorder()
    link = _Connection.__new__(_Connection)
    link.reactor = SimpleNamespace(loop=None, _on_connect=lambda protocol, transport: None)  # type: ignore[assignment]

    async def factory(protocol: object, address: object) -> tuple[Recorder, object]:
        return rec, protocol

    async def op() -> None:
        await link.open(s.host, s.port, "alice", s.username, s.realname, s.password, factory)  # type: ignore[arg-type]

    lines = run_op(rec, op)
    assert lines is not None  # the bridge's own cleaning makes any display name fit
    assert [c for c, _ in lines] == ["CAP", "NICK", "USER"]
    user = lines[2][1]
    assert user[:3] == [s.username, "0", "*"] and len(user) == 4 and _no_controls(user[3])


@FAST
@given(account=st.one_of(st.none(), TEXT), password=TEXT)
def test_nickserv_identify_goes_to_nickserv_only(account: str | None, password: str) -> None:
    states: list[str] = []
    p, rec = puppet(password=password or "x", account=account)
    p.conn.on_state = lambda conn, state, message: states.append(state)
    p.conn._identify_with_nickserv()
    assert written_lines(bytes(rec.data)) == [("USERHOST", ["NickServ"])]
    rec.data.clear()
    p.conn.handle(Event("userhost", "irc.test", p.conn.nick, ["NickServ=+NickServ@services.test"]))
    lines = written_lines(bytes(rec.data))
    if lines:
        assert [(c, ps[0], len(ps)) for c, ps in lines] == [("PRIVMSG", "NickServ", 2)]
        assert lines[0][1][1].startswith("IDENTIFY ")
    else:
        assert states == ["auth_failed"]


@FAST
@given(account=st.one_of(st.none(), TEXT), password=TEXT)
def test_sasl_plain_with_any_account_and_password(account: str | None, password: str) -> None:
    states: list[str] = []
    p, rec = puppet(password=password or "x", account=account)
    conn = p.conn
    conn.on_state = lambda c, state, message: states.append(state)
    conn.registered = False
    conn._sasl_busy, conn._sasl_mech = True, "PLAIN"
    conn.handle(Event("authenticate", "irc.test", "+", []))
    lines = written_lines(bytes(rec.data))
    assert lines and all(c == "AUTHENTICATE" and len(ps) == 1 for c, ps in lines)
    if lines == [("AUTHENTICATE", ["*"])]:
        assert states == ["auth_failed"]


# -- the flood queue ------------------------------------------------------------------------------
async def test_a_bad_line_never_reaches_the_flood_queue_nor_empties_it() -> None:
    """A `\\n` used to raise inside FloodControl._drain, and fail_all dropped every queued line."""
    c, rec = bot_connector()
    assert c.bot is not None
    c.bot._flood = FloodControl(c.bot._write, burst=1, rate=200)
    sends = [asyncio.ensure_future(c.relay(ChatRef(CHANNEL), OutgoingMessage(
        kind=MessageKind.TEXT, text=f"line {n}", sender_name=name)))
        for n, name in enumerate(["ann", "bob", "x\nQUIT :bye", "y\rJOIN #evil", "dan"])]
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 5)
    assert results == [None] * 5
    lines = written_lines(bytes(rec.data))
    assert [ps[1] for _, ps in lines] == [
        "<ann> line 0", "<bob> line 1", "<x QUIT :bye> line 2", "<y JOIN #evil> line 3", "<dan> line 4"]


def test_only_checked_lines_enter_the_flood_queue() -> None:
    flood = FloodControl(lambda line: None, burst=1, rate=0)
    with pytest.raises(TypeError):
        flood.send("PRIVMSG #c :raw text")  # type: ignore[arg-type]


async def test_an_unexpected_write_error_fails_one_line_not_the_queue() -> None:
    from connectors.irc.flood import ConnectionGone
    from connectors.irc.wire import irc_line

    written: list[str] = []

    def write(line: Any) -> None:
        if "boom" in line.text:
            raise RuntimeError("boom")
        written.append(line.text)

    flood = FloodControl(write, burst=1, rate=500)
    futures = []
    for text in ("a", "boom", "b", "c"):
        future = asyncio.get_running_loop().create_future()
        flood.send(irc_line("PRIVMSG", "#c", trailing=text), done=future)
        futures.append(future)
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5)
    assert isinstance(results[1], ConnectionGone) and results[0] is results[2] is results[3] is None
    assert written == ["PRIVMSG #c :a", "PRIVMSG #c :b", "PRIVMSG #c :c"]


# -- the guard itself ---------------------------------------------------------------------------------
@FAST
@given(params=st.lists(TEXT, max_size=3), trailing=st.one_of(st.none(), TEXT))
def test_irc_line_refuses_or_writes_exactly_what_was_asked(params: list[str], trailing: str | None) -> None:
    from connectors.irc.wire import LineRejected, irc_line

    try:
        line = irc_line("PRIVMSG", *params, trailing=trailing)
    except LineRejected:
        return
    assert written_lines(line.data) == [("PRIVMSG", [*params, *([trailing] if trailing is not None else [])])]


def test_irc_line_refusals() -> None:
    from connectors.irc.wire import Line, LineRejected, irc_line

    for bad in ("a\rb", "a\nb", "a\x00b"):
        with pytest.raises(LineRejected):
            irc_line("PRIVMSG", "#c", trailing=bad)
        with pytest.raises(LineRejected):
            irc_line("JOIN", bad)
    for bad_middle in ("", "a b", ":x"):
        with pytest.raises(LineRejected):
            irc_line("KICK", "#c", bad_middle)
    with pytest.raises(LineRejected):
        irc_line("PRIVMSG", "#c", trailing="x" * 499)
    assert irc_line("PRIVMSG", "#c", trailing="x" * 498).data.endswith(b"x\r\n")
    assert len(irc_line("PRIVMSG", "#c", trailing="x" * 498).data) == 512
    with pytest.raises(TypeError):
        Line(b"QUIT\r\n", "QUIT")  # no way around the checks


def test_an_overlong_reason_is_cut_on_a_character_boundary() -> None:
    p, rec = puppet()
    asyncio.run(p.set_topic(CHANNEL, "é" * 400))
    (command, params), = written_lines(bytes(rec.data))
    assert command == "TOPIC" and set(params[1]) == {"é"} and len(rec.data) >= 511
