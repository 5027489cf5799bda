"""IRC connection logic that needs no server: PONG priority, keep-alive, CAP negotiation."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from irc.client import Event

from connectors.irc.connection import DEAD_AFTER, PING_AFTER, ConnectionSettings, IRCConnection
from connectors.irc.flood import FloodControl
from connectors.irc.wire import irc_line


def make_connection(written: list[str]) -> IRCConnection:
    conn = IRCConnection(
        settings=ConnectionSettings(host="h", port=1, tls=False, username="u", realname="r"),
        nick="alice", reactor=None, limiter=asyncio.Semaphore(1),  # type: ignore[arg-type]
        on_event=lambda c, e: None, on_state=lambda c, s, m: None,
    )
    conn._flood = FloodControl(lambda line: written.append(line.text), burst=1, rate=0.01)
    return conn


async def test_pong_never_waits_behind_queued_messages() -> None:
    written: list[str] = []
    conn = make_connection(written)
    for n in range(20):
        conn._flood.send(irc_line("PRIVMSG", "#c", trailing=str(n)))  # 19 of them now wait for tokens
    conn.handle(Event("ping", "irc.test", "token123", []))
    assert written == ["PRIVMSG #c :0", "PONG :token123"]


async def test_cap_negotiation_requests_what_is_offered_then_ends() -> None:
    written: list[str] = []
    conn = make_connection(written)
    conn.handle(Event("cap", "irc.test", "*", ["LS", "*", "sasl server-time multi-prefix"]))
    assert written == []  # more to come
    conn.handle(Event("cap", "irc.test", "*", ["LS", "echo-message account-tag draft/foo=bar"]))
    assert written == ["CAP REQ :account-tag echo-message multi-prefix server-time"]
    conn.handle(Event("cap", "irc.test", "*", ["ACK", "account-tag echo-message multi-prefix server-time"]))
    assert written[-1] == "CAP END"
    assert conn.caps == {"account-tag", "echo-message", "multi-prefix", "server-time"}


async def test_keepalive_pings_a_quiet_server_and_drops_a_dead_one() -> None:
    written: list[str] = []
    conn = make_connection(written)
    closed: list[bool] = []
    conn._conn = SimpleNamespace(transport=SimpleNamespace(close=lambda: closed.append(True)))  # type: ignore[assignment]
    conn.registered = True
    conn._last_rx = time.monotonic() - PING_AFTER - 1
    conn._check_alive()
    assert written[-1].startswith("PING :") and not closed
    conn._last_rx = time.monotonic() - DEAD_AFTER - 1
    conn._check_alive()
    assert closed == [True]
    if conn._keepalive is not None:
        conn._keepalive.cancel()


def test_many_channels_are_joined_several_per_line() -> None:
    from connectors.irc.connection import _ChannelWish, join_lines

    wishes = [_ChannelWish(f"#channel{n:04d}") for n in range(100)] + [_ChannelWish("#locked", "sesame")]
    lines = [line.text for line in join_lines(wishes)]
    assert "JOIN #locked sesame" in lines
    joined = [name for line in lines if line != "JOIN #locked sesame" for name in line[5:].split(",")]
    assert joined == [w.name for w in wishes[:100]]
    assert all(len(line) <= 405 for line in lines) and len(lines) < 10


def test_a_puppet_skips_channel_chat_and_unused_replies_without_parsing() -> None:
    from connectors.irc.connection import puppet_can_skip

    skipped = [
        ":bob!b@h PRIVMSG #room :hello there",
        "@time=2026-11-26T16:28:34.535Z;msgid=x :bob!b@h PRIVMSG #room :hi",
        ":bob!b@h NOTICE &local :note",
        ":bob!b@h PRIVMSG #room :\x01ACTION waves\x01",
        ":irc.test 372 alice :- the message of the day",
        ":irc.test 353 alice = #room :alice bob",
        ":irc.test 366 alice #room :End of /NAMES list.",
    ]
    kept = [
        ":bob!b@h PRIVMSG alice :a private line",  # a DM: the puppet must bring it
        "@time=x :bob!b@h NOTICE alice :private notice",
        ":irc.test NOTICE * :*** Looking up your hostname",
        ":bob!b@h JOIN #room",
        "PING :irc.test",
        ":irc.test 001 alice :Welcome",
        ":irc.test 005 alice CASEMAPPING=rfc1459 NICKLEN=30 :are supported by this server",
        ":irc.test 311 alice bob b h * :Bob",  # WHOIS replies answer the whois command
        ":irc.test 433 * alice :Nickname is already in use.",
        ":bob!b@h PRIVMSG",
        "",
    ]
    assert all(puppet_can_skip(line) for line in skipped)
    assert not any(puppet_can_skip(line) for line in kept)


def test_a_puppet_connection_parses_only_what_it_uses(monkeypatch: object) -> None:
    from irc.client_aio import AioConnection

    from connectors.irc.connection import _Connection

    parsed: list[str] = []
    monkeypatch.setattr(AioConnection, "_process_line", lambda self, line: parsed.append(line))  # type: ignore[attr-defined]
    lines = [":bob!b@h PRIVMSG #room :in the channel", ":bob!b@h PRIVMSG alice :private",
             ":irc.test 372 alice :- motd"]
    bot, puppet = _Connection.__new__(_Connection), _Connection.__new__(_Connection)
    puppet.is_puppet, puppet.owner = True, None
    for line in lines:
        bot._process_line(line)
        puppet._process_line(line)
    assert parsed == [lines[0], lines[1], lines[1], lines[2]]  # the bot all; the puppet the DM only


async def test_stop_while_connecting_leaves_no_socket_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop (a quick `reconnect`) that meets a connect just finishing: the new socket must be
    closed, or it registers our nick and the next connection comes back as `nick_`."""
    from connectors.irc import connection as module
    from connectors.irc.connection import make_reactor

    ended = asyncio.Event()
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            received.append(line)
        ended.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    gate = asyncio.Event()
    connecting = asyncio.Event()

    class GatedFactory:
        """Connects at once, then waits for the test before handing the socket over."""

        def __init__(self, **_kwargs: object) -> None:
            pass

        async def __call__(self, protocol: asyncio.BaseProtocol, address: tuple[str, int]) -> tuple:
            transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
            connecting.set()
            try:
                await gate.wait()
            except asyncio.CancelledError:
                transport.close()  # as asyncio's own connect does when cancelled
                raise
            return transport, protocol

    monkeypatch.setattr(module, "AioFactory", GatedFactory)
    conn = IRCConnection(
        settings=ConnectionSettings(host="127.0.0.1", port=port, tls=False, username="u", realname="r"),
        nick="alice", reactor=make_reactor(), limiter=asyncio.Semaphore(1),
        on_event=lambda c, e: None, on_state=lambda c, s, m: None,
    )
    try:
        conn.start()
        await asyncio.wait_for(connecting.wait(), 5)
        gate.set()  # the connect is done: its task runs again before it can see the stop
        await conn.stop("bye")
        await asyncio.wait_for(ended.wait(), 5)  # the server saw the socket close
        assert b"USER u 0 * :r\r\n" not in received or received[-1] == b"QUIT :bye\r\n"
    finally:
        server.close()
