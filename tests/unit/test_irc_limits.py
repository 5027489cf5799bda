"""Limits: long Matrix messages on IRC, and what a hostile server can make the bridge remember.

Also the NickServ rule: a stored password goes only to the configured services nick, once
the server has shown that nick at the configured services host.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from irc.client import Event

from connectors.api import ChatRef, LoginInfo, MessageKind, OutgoingMessage
from connectors.irc import channels as channels_module
from connectors.irc.channels import ChannelTracker
from connectors.irc.connection import BoundedLineBuffer
from connectors.irc.flood import FloodControl
from connectors.irc.connector import IRCConnector
from connectors.irc.nicks import casefold
from connectors.irc.puppet import IRCPuppet
from connectors.irc.render import render_lines
from tests.unit.test_irc_wire import bot_connector, written_lines, wire_up


# -- bridge.max_message_lines -------------------------------------------------------------------
def texts(message: OutgoingMessage, prefix: str = "") -> list[str]:
    return [line.text for line in render_lines(message, target="#c", nick="alice", mask_bytes=None, prefix=prefix)]


def test_a_long_message_is_cut_with_a_line_saying_how_much_was_left_out() -> None:
    body = "\n".join(f"line {n}" for n in range(200))
    lines = texts(OutgoingMessage(kind=MessageKind.TEXT, text=body, max_lines=10))
    assert lines == [f"PRIVMSG #c :line {n}" for n in range(10)] + ["PRIVMSG #c :(… 190 more lines not sent)"]
    relayed = texts(OutgoingMessage(kind=MessageKind.TEXT, text=body, max_lines=10), prefix="<bob> ")
    assert relayed[-1] == "PRIVMSG #c :<bob> (… 190 more lines not sent)" and len(relayed) == 11


def test_lines_are_counted_after_splitting_and_a_2kb_message_arrives_whole() -> None:
    text = " ".join(f"word{n:04d}" for n in range(230))  # ~2 KB on one Matrix line
    whole = texts(OutgoingMessage(kind=MessageKind.TEXT, text=text, max_lines=10))
    assert 4 <= len(whole) <= 10 and " ".join(t.split(" :", 1)[1] for t in whole) == text
    cut = texts(OutgoingMessage(kind=MessageKind.TEXT, text=text * 3, max_lines=10))
    assert len(cut) == 11 and cut[-1].endswith("more lines not sent)")
    assert texts(OutgoingMessage(kind=MessageKind.TEXT, text="a\nb", max_lines=1)) == [
        "PRIVMSG #c :a", "PRIVMSG #c :(… 1 more line not sent)"]


def test_without_a_limit_everything_is_sent() -> None:
    body = "\n".join(str(n) for n in range(50))
    assert len(texts(OutgoingMessage(kind=MessageKind.TEXT, text=body))) == 50


def test_the_relay_keeps_the_limit_for_emotes() -> None:
    c, rec = bot_connector()
    body = "\n".join(f"dances {n}" for n in range(30))
    asyncio.run(c.relay(ChatRef("#c"), OutgoingMessage(kind=MessageKind.EMOTE, text=body, sender_name="bob",
                                                        max_lines=3)))
    lines = [params[1] for _, params in written_lines(bytes(rec.data))]
    assert lines == ["\x01ACTION bob dances 0\x01", "\x01ACTION dances 1\x01", "\x01ACTION dances 2\x01",
                     "(… 27 more lines not sent)"]


# -- incoming line buffer -------------------------------------------------------------------------
def test_a_line_without_end_does_not_grow_the_buffer(caplog: pytest.LogCaptureFixture) -> None:
    buffer = BoundedLineBuffer()
    with caplog.at_level(logging.WARNING, "rapture.irc"):
        buffer.feed(b":srv NOTICE me :ok\r\n:srv PRIVMSG me :")
        for _ in range(1000):  # 1 MB, no newline
            buffer.feed(b"x" * 1024)
            assert len(buffer) <= BoundedLineBuffer.max_line
        buffer.feed(b"still the long line\r\n:srv PING :after\r\n")
    assert list(buffer) == [":srv NOTICE me :ok", ":srv PING :after"]
    assert "longer than" in caplog.text


def test_a_complete_overlong_line_is_dropped_and_lenient_decoding_stays() -> None:
    buffer = BoundedLineBuffer()
    buffer.feed(b"PING :" + b"y" * 20_000 + b"\r\nPRIVMSG me :caf\xe9\r\nPRIVMSG me :caf\xc3\xa9\n")
    assert list(buffer) == ["PRIVMSG me :café", "PRIVMSG me :café"]


# -- member lists and channels ------------------------------------------------------------------
def test_names_and_joins_are_capped_per_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channels_module, "MAX_MEMBERS", 50)
    events: list = []
    tracker = ChannelTracker(emit=events.append, fold=casefold, own_nick=lambda: "rapture",
                             puppet_of=lambda nick: None, netsplit_grace=1)
    tracker.handle(Event("join", "rapture!r@h", "#c", []))
    for batch in range(100):  # a NAMES that never ends
        names = " ".join(f"n{batch}_{i}" for i in range(100))
        tracker.handle(Event("namreply", "srv", "rapture", ["=", "#c", names]))
    channel = tracker.channels["#c"]
    assert channel.names is not None and len(channel.names) == 50
    tracker.handle(Event("endofnames", "srv", "rapture", ["#c", "End"]))
    for n in range(100):
        tracker.handle(Event("join", f"j{n}!u@h", "#c", []))
    assert len(channel.members) == 50


def test_channels_tracked_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channels_module, "MAX_CHANNELS", 20)
    tracker = ChannelTracker(emit=lambda e: None, fold=casefold, own_nick=lambda: "rapture",
                             puppet_of=lambda nick: None, netsplit_grace=1)
    for n in range(100):
        tracker.handle(Event("join", "rapture!r@h", f"#c{n}", []))
    assert len(tracker.channels) == 20


# -- NickServ -----------------------------------------------------------------------------------------
def nickserv_puppet(services_host: str | None) -> tuple[IRCPuppet, list[str], list[tuple[str, str]]]:
    options = {"host": "irc.test", "services_nick": "NickServ", "services_host": services_host}
    c = IRCConnector("libera", options)
    p = c.make_client(LoginInfo(mxid="@a:hs", localpart="a", displayname="A", username="acct", password="s3cret"))
    assert isinstance(p, IRCPuppet)
    rec = wire_up(p.conn)
    states: list[tuple[str, str]] = []
    p.conn.on_state = lambda conn, state, message: states.append((state, message))
    p.conn.handle(Event("welcome", "irc.test", "a[m]", ["Welcome"]))
    if p.conn._keepalive is not None:
        p.conn._keepalive.cancel()
    lines = [" ".join([cmd, *params]) for cmd, params in written_lines(bytes(rec.data))]
    rec.data.clear()
    return p, lines, states


def identify_sent(p: IRCPuppet) -> bool:
    assert p.conn._conn is not None
    return b"s3cret" in bytes(p.conn._conn.transport.data)  # type: ignore[attr-defined]


async def test_identify_only_after_the_server_shows_nickserv_at_the_services_host() -> None:
    p, lines, states = nickserv_puppet("services.test")
    assert lines == ["USERHOST NickServ"]  # asked first; no password yet
    assert not identify_sent(p)
    p.conn.handle(Event("userhost", "irc.test", "a[m]", ["NickServ*=+NickServ@services.test "]))
    assert identify_sent(p)
    data = bytes(p.conn._conn.transport.data)  # type: ignore[union-attr]
    assert data == b"PRIVMSG NickServ :IDENTIFY acct s3cret\r\n"


@pytest.mark.parametrize("reply", [
    "NickServ=+evil@attacker.example",  # someone else holds the nick
    "",  # NickServ is not on the network at all
])
async def test_an_impostor_or_absent_nickserv_gets_no_password(reply: str) -> None:
    p, _lines, states = nickserv_puppet("services.test")
    p.conn.handle(Event("userhost", "irc.test", "a[m]", [reply]))
    assert not identify_sent(p)
    assert [s for s, _ in states] == ["connected", "auth_failed"]
    assert "not sent to NickServ" in states[-1][1]
    # ... and what can be done: the user cannot fix the network or the bridge's config.
    assert "try 'reconnect' later" in states[-1][1] or "a bridge admin can update" in states[-1][1], states


async def test_without_a_configured_services_host_no_password_is_sent() -> None:
    p, _lines, states = nickserv_puppet(None)
    p.conn.handle(Event("userhost", "irc.test", "a[m]", ["NickServ=+NickServ@services.test"]))
    assert not identify_sent(p)
    assert states[-1][0] == "auth_failed" and "services_host" in states[-1][1]
    assert "a bridge admin can set it" in states[-1][1]


async def test_with_sasl_no_nickserv_at_all() -> None:
    options = {"host": "irc.test", "services_host": "services.test"}
    c = IRCConnector("libera", options)
    p = c.make_client(LoginInfo(mxid="@a:hs", localpart="a", displayname="A", username="acct", password="pw"))
    assert isinstance(p, IRCPuppet)
    rec = wire_up(p.conn)
    p.conn.caps.add("sasl")
    p.conn.authenticated = True
    p.conn.handle(Event("welcome", "irc.test", "a[m]", ["Welcome"]))
    if p.conn._keepalive is not None:
        p.conn._keepalive.cancel()
    assert b"NickServ" not in bytes(rec.data)



async def test_capabilities_the_server_acknowledges_unasked_are_not_kept() -> None:
    from connectors.irc.connection import ConnectionSettings, IRCConnection

    conn = IRCConnection(
        settings=ConnectionSettings(host="h", port=1, tls=False, username="u", realname="r"),
        nick="alice", reactor=None, limiter=asyncio.Semaphore(1),  # type: ignore[arg-type]
        on_event=lambda c, e: None, on_state=lambda c, s, m: None,
    )
    conn._flood = FloodControl(lambda line: None, burst=1000, rate=0)
    for n in range(200):
        conn.handle(Event("cap", "irc.test", "*", ["ACK", " ".join(f"x-{n}-{i}" for i in range(50))]))
    conn.handle(Event("cap", "irc.test", "*", ["ACK", "server-time -echo-message"]))
    assert conn.caps == {"server-time"}


def test_puppet_connections_are_capped_per_network() -> None:
    """Every permitted Matrix user joining a portal would get a connection from the bridge's
    host: a crowd of them (federated users too) makes it a clone farm, and the network bans it."""
    from connectors.api import SendError

    c = IRCConnector("libera", {"host": "irc.test", "max_connections": 2})
    logins = [LoginInfo(mxid=f"@u{n}:hs", localpart=f"u{n}", displayname=f"U{n}") for n in range(3)]
    first, second = c.make_client(logins[0]), c.make_client(logins[1])
    with pytest.raises(SendError) as refused:
        c.make_client(logins[2])
    assert not refused.value.retriable and "2 connections" in str(refused.value)
    assert c.make_client(logins[0]) is first  # those who have one keep it
    c.drop_client("@u1:hs")  # an idle puppet is dropped: its place is free again
    assert c.make_client(logins[2]) is not second
    # The default is a limit too (0 means none).
    c = IRCConnector("libera", {"host": "irc.test"})
    with pytest.raises(SendError):
        for n in range(1000):
            c.make_client(LoginInfo(mxid=f"@v{n}:hs", localpart=f"v{n}", displayname="V"))


def test_a_hostile_isupport_value_is_ignored_not_fatal() -> None:
    from connectors.irc.connection import _SlimFeatures

    features = _SlimFeatures()
    features.load(["NICKLEN=" + "9" * 5000, "NICKLEN=²", "CASEMAPPING=ascii", "are supported by this server"])
    assert features.nicklen is None and features.casemapping == "ascii"
    features.load(["NICKLEN=30", "are supported by this server"])
    assert features.nicklen == 30


def test_the_sender_is_told_in_the_room_when_a_message_was_cut() -> None:
    c, rec = bot_connector()
    told: list[Any] = []
    c.ctx = SimpleNamespace(queue_remote_event=told.append)
    body = "\n".join(f"line {n}" for n in range(30))
    chat = ChatRef("#c")
    asyncio.run(c.relay(chat, OutgoingMessage(kind=MessageKind.TEXT, text=body, sender_name="bob", max_lines=3)))
    assert len(written_lines(bytes(rec.data))) == 4  # three lines, then the "not sent" line
    assert [(type(e).__name__, e.chat) for e in told] == [("RemoteNotice", chat)]
    assert told[0].text.startswith("bob: your message was too long for IRC: 27 of its 30 lines were not sent")
    # A message that fits says nothing more.
    told.clear()
    asyncio.run(c.relay(chat, OutgoingMessage(kind=MessageKind.TEXT, text="short", sender_name="bob", max_lines=3)))
    assert told == []
