"""One IRC connection (the bridge bot's or a puppet's), on `irc.client_aio`.

What this adds to the library, and why:
- CAP negotiation before registration: the library sends NICK/USER at once, so we send
  `CAP LS 302` first; the server then holds registration until our `CAP END`;
- flood control with a priority queue (`FloodControl`), and PONG that never waits;
- keep-alive: a PING when the server has been quiet, a reconnect when it stays quiet;
- reconnects with exponential backoff and jitter, bounded by a limiter shared by all
  connections of a network (no reconnect storm after a netsplit or a server restart);
- channels are remembered and rejoined after every reconnect;
- nick collisions (433) during registration try variants;
- services login during CAP: SASL EXTERNAL with a client certificate presented over TLS,
  else (or when that is refused) SASL PLAIN; NickServ IDENTIFY where SASL is not offered.
Invalid UTF-8 from the server is decoded leniently (latin-1 fallback), never fatal.

Every outgoing line is a `wire.Line`, built and checked by `wire.irc_line`; `_Connection.put`
is the only place bytes reach the transport. Incoming lines are bounded (`BoundedLineBuffer`):
a server that never ends a line cannot grow our memory.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import random
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from irc.client import Event, NickMask
from irc.client_aio import AioConnection, AioReactor
from irc.connection import AioFactory
from jaraco.stream.buffer import LineBuffer

from connectors.irc.flood import URGENT, ConnectionGone, FloodControl
from connectors.irc.lines import clean_line
from connectors.irc.nicks import (
    DEFAULT_NICK_LENGTH,
    casefold,
    is_channel_name,
    is_valid_channel,
    nick_variants,
)
from connectors.irc.tls import tls_context
from connectors.irc.wire import Line, LineRejected, fit_trailing, irc_line, line_from_text

log = logging.getLogger("rapture.irc")

# The IRCv3 capabilities we use when the server offers them.
WANTED_CAPS = frozenset({
    "server-time", "message-tags", "echo-message", "multi-prefix", "away-notify",
    "account-tag", "chghost", "extended-join", "userhost-in-names", "cap-notify",
})
PING_AFTER = 60.0  # seconds of silence before we ask the server if it is still there
DEAD_AFTER = 150.0  # seconds of silence after which the connection is considered dead
REGISTRATION_TIMEOUT = 30.0
MAX_RECONNECT_DELAY = 300.0
# The longest incoming line we keep: 8191 bytes of IRCv3 tags plus a 512-byte message.
MAX_INCOMING_LINE = 8191 + 512
# A channel key: no space, comma or control character (they would end or split the JOIN).
_BAD_KEY = re.compile(r"[\x00-\x20,\x7f]")
MAX_KEY_BYTES = 64


class _SlimFeatures:
    """The ISUPPORT values we use. The library's FeatureSet keeps every token of 005 for
    every connection: kilobytes per puppet, times thousands of puppets."""

    __slots__ = ("casemapping", "nicklen")

    def __init__(self) -> None:
        self.casemapping: str | None = None
        self.nicklen: int | None = None

    def load(self, arguments: list[str]) -> None:
        for token in arguments[:-1]:  # the last argument is "are supported by this server"
            name, _, value = token.partition("=")
            if name == "CASEMAPPING" and value:
                self.casemapping = sys.intern(value.lower())
            elif name == "NICKLEN" and value.isdecimal() and len(value) <= 4:
                # (a hostile server's 5000-digit NICKLEN would raise in int(), every reconnect)
                self.nicklen = int(value)


_CHAT_COMMANDS = frozenset(("PRIVMSG", "NOTICE"))
# Replies a puppet never uses: server info, LUSERS, the MOTD, and a channel's topic and names
# on joining (the bot's connection keeps track of channels).
_PUPPET_UNUSED_NUMERICS = frozenset((
    "002", "003", "004", "250", "251", "252", "253", "254", "255", "265", "266",
    "372", "375", "376", "329", "332", "333", "353", "366",
))


def puppet_can_skip(line: str) -> bool:
    """A line a puppet's connection can drop unparsed: chat in a channel (bridged from the
    bot's connection; `[@tags ]:prefix PRIVMSG #chan :text`) or a reply it never uses."""
    parts = line.split(" ", 4)
    first = 1 if parts[0][:1] == "@" else 0
    if len(parts) < first + 3 or parts[first][:1] != ":":
        return False
    command = parts[first + 1]
    if command in _CHAT_COMMANDS:
        return is_channel_name(parts[first + 2])
    return command in _PUPPET_UNUSED_NUMERICS


class BoundedLineBuffer(LineBuffer):
    """Lines from the server, decoded leniently (UTF-8, else latin-1), each at most
    `max_line` bytes. jaraco's buffer keeps an unfinished line without limit, so a server
    that never sends a newline would grow it forever: the overlong line is dropped (up to
    its newline) with a log line instead, and the connection goes on."""

    max_line = MAX_INCOMING_LINE
    buffer: bytes

    def __init__(self) -> None:
        super().__init__()
        self._skipping = False  # inside an overlong line: drop bytes up to its newline

    def feed(self, data: bytes) -> None:
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return
            data, self._skipping = data[end + 1:], False
        super().feed(data)
        start = self.buffer.rfind(b"\n") + 1  # where the unfinished line begins
        if len(self.buffer) - start > self.max_line:
            log.warning("dropped an incoming IRC line longer than %d bytes", self.max_line)
            self.buffer, self._skipping = self.buffer[:start], True

    def lines(self) -> Iterator[str]:  # type: ignore[override]  # decoded, as the library wants
        for line in super().lines():
            if len(line) > self.max_line:
                log.warning("dropped an incoming IRC line longer than %d bytes", self.max_line)
                continue
            try:
                yield line.decode("utf-8", "strict")
            except UnicodeDecodeError:
                yield line.decode("latin-1")


class _SharedBufferProtocol(asyncio.BufferedProtocol):
    """Reads into one buffer shared by every connection, instead of asyncio's default of a
    fresh 256 KiB bytes object per read: with thousands of puppets those temporary blocks
    fragment the heap. Safe because each read is fully handled before the loop reads again."""

    _buffer = bytearray(64 * 1024)
    _view = memoryview(_buffer)

    def __init__(self, connection: AioConnection, loop: asyncio.AbstractEventLoop) -> None:
        self.connection = connection
        self.loop = loop

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self.connection.process_data(bytes(self._view[:nbytes]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.disconnect()


class _Connection(AioConnection):
    """The library's connection, decoding leniently and opening with CAP LS."""

    buffer_class = BoundedLineBuffer
    protocol_class = _SharedBufferProtocol
    owner: IRCConnection
    # A puppet's connection skips what it never uses before parsing it: in a portal with N
    # Matrix users each line reaches N puppets, and at start-up every puppet gets the MOTD.
    is_puppet = False
    abandoned = False  # its IRCConnection stopped and let go of it: it may not connect any more

    def _process_line(self, line: str) -> None:
        if self.is_puppet and puppet_can_skip(line):
            if self.owner is not None:
                self.owner._last_rx = time.monotonic()  # still a sign of a live link
            return
        super()._process_line(line)

    def __init__(self, reactor: AioReactor) -> None:
        super().__init__(reactor)
        self.features = _SlimFeatures()

    async def open(self, host: str, port: int, nick: str, username: str, realname: str,
                   password: str | None, factory: AioFactory) -> None:
        # What AioConnection.connect does, plus CAP LS before NICK/USER.
        # All checked before connecting: a bad one (LineRejected) writes nothing.
        lines = [irc_line("CAP", "LS", "302")]
        if password:
            lines.append(irc_line("PASS", trailing=password) if " " in password else irc_line("PASS", password))
        lines += [irc_line("NICK", nick), irc_line("USER", username, "0", "*", trailing=realname)]
        self.buffer = self.buffer_class()
        self.handlers = {}
        self.real_server_name = ""
        self.real_nickname = nick
        self.server, self.port, self.server_address = host, port, (host, port)
        self.nickname, self.username, self.ircname = nick, username, realname
        self.password = password
        self.connect_factory = factory
        protocol = self.protocol_class(self, self.reactor.loop)
        self.transport, self.protocol = await factory(protocol, self.server_address)
        if self.abandoned:
            # Stopped while connecting: `IRCConnection.stop` let go of us before this socket
            # existed, so nobody else would ever close it (a stray registration under our nick).
            self.transport.close()
            raise ConnectionGone("stopped while connecting")
        self.connected = True
        self.reactor._on_connect(self.protocol, self.transport)
        for line in lines:
            self.put(line)

    def put(self, line: Line) -> None:
        """The one place bytes reach the server: only a `Line` checked by `irc_line`."""
        if not isinstance(line, Line):
            raise TypeError("only Lines made by irc_line() are written")
        if self.transport is None or self.transport.is_closing():
            raise ConnectionGone("not connected")
        self.transport.write(line.data)

    def send_raw(self, string: str) -> None:
        # Only the library calls this (its QUIT, also while the link is already closing,
        # from connection_lost): checked like any other line, written if still possible.
        try:
            self.put(line_from_text(string))
        except (LineRejected, ConnectionGone) as exc:
            log.debug("not sent (a line of the irc library): %s", exc)

    def quit(self, message: str = "") -> None:
        try:
            self.put(fit_trailing("QUIT", text=clean_line(message)) if message else irc_line("QUIT"))
        except (LineRejected, ConnectionGone):
            pass


@dataclass
class ConnectionSettings:
    host: str
    port: int
    tls: bool
    username: str
    realname: str
    password: str | None = None
    burst: int = 10
    rate: float = 2.0
    reconnect_delay: float = 1.0  # first wait after a failed attempt; doubles each time
    account: str | None = None  # services account (SASL authcid / NickServ name)
    account_password: str | None = None  # when set: SASL PLAIN if offered, else NickServ
    services_nick: str = "NickServ"  # the only nick an IDENTIFY goes to
    services_host: str | None = None  # ... and only when that nick's host is this one
    tls_verify: bool = True  # check the server's certificate and host name
    client_cert: str | None = None  # PEM certificate + key: shown over TLS, for SASL EXTERNAL


@dataclass
class _ChannelWish:
    name: str
    key: str = ""


_CAP_END = irc_line("CAP", "END")
EventCallback = Callable[["IRCConnection", Event], None]
StateCallback = Callable[["IRCConnection", str, str], None]  # (conn, state, message)
SASL_CHUNK = 400
_ABORTED = "aborted"  # the SASL "mechanism" after we aborted it ourselves


@dataclass(eq=False, slots=True)
class IRCConnection:
    settings: ConnectionSettings
    nick: str
    reactor: AioReactor
    limiter: asyncio.Semaphore
    on_event: EventCallback
    on_state: StateCallback
    channels: dict[str, _ChannelWish] = field(default_factory=dict)  # folded -> wish
    joined: set[str] = field(default_factory=set)  # folded names we are in right now
    caps: set[str] = field(default_factory=set)
    registered: bool = False
    casemapping: str = "rfc1459"
    nick_length: int = DEFAULT_NICK_LENGTH
    mask_bytes: int | None = None  # len("!user@host") once known
    _conn: _Connection | None = None
    _flood: FloodControl | None = None
    _want: bool = False
    _task: asyncio.Task[None] | None = None
    # Only needed while registering; empty (shared) the rest of the time, to keep idle
    # connections small.
    _offered: frozenset[str] = frozenset()
    _nick_tries: tuple[str, ...] | None = None  # variants left after 433; None: none tried
    _last_rx: float = 0.0
    _keepalive: asyncio.TimerHandle | None = None
    _attempt: int = 0
    _registered_future: asyncio.Future[None] | None = None
    _sasl_busy: bool = False
    _services_pending: bool = False  # a USERHOST of the services nick is on its way
    _sasl_mech: str = ""  # the mechanism being tried
    _sasl_next: tuple[str, ...] = ()  # to try if the current one fails
    _sasl_offered: frozenset[str] | None = None  # `sasl=PLAIN,EXTERNAL`; None: no list given
    _tls: ssl.SSLContext | None = None
    _cert_ready: bool = False  # the client certificate is loaded into `_tls`
    wanted_nick: str = ""
    authenticated: bool = False  # logged in to services, by SASL or NickServ
    hears_channels: bool = True  # False for puppets: the bot's connection hears channels

    def __post_init__(self) -> None:
        self.wanted_nick = self.nick

    # -- life cycle ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.registered and self._conn is not None and bool(getattr(self._conn, "connected", False))

    def start(self) -> None:
        """Connect in the background (and keep reconnecting) until `stop`."""
        self._want = True
        if self._task is None or self._task.done():
            self._spawn_connect_loop()

    def _spawn_connect_loop(self) -> None:
        task = asyncio.create_task(self._connect_loop(), name=f"irc:{self.nick}")
        self._task = task
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        # A finished task still holds its result and callbacks: let an idle puppet drop it.
        if self._task is task:
            self._task = None

    async def stop(self, reason: str = "") -> None:
        self._want = False
        if self._task is not None and not self._task.done():
            self._task.cancel()
        conn = self._conn
        if conn is not None and getattr(conn, "connected", False):
            conn.quit(reason)
        if conn is not None and getattr(conn, "transport", None) is not None:
            # Also while registering (not yet `connected`, or the library's flag already gone):
            # a socket left open keeps our nick, and the next connection gets `nick_`.
            conn.transport.close()
        self._teardown("stopped")
        if conn is not None:
            self._conn = None
            conn.owner = None  # type: ignore[assignment]
            conn.abandoned = True
            try:
                self.reactor.connections.remove(conn)
            except ValueError:
                pass

    async def wait_registered(self, timeout: float) -> bool:
        try:
            if self._registered_future is None:
                return self.registered
            await asyncio.wait_for(asyncio.shield(self._registered_future), timeout)
            return True
        except TimeoutError:
            return False

    async def _connect_loop(self) -> None:
        while self._want and not self.connected:
            async with self.limiter:
                ok = await self._connect_once()
            if ok or not self._want:
                return
            self._attempt += 1
            # Exponential backoff, capped; jitter only upwards, so the configured delay is a
            # true minimum and a thousand puppets spread out instead of returning together.
            base = self.settings.reconnect_delay * 2 ** min(self._attempt - 1, 8)
            delay = min(MAX_RECONNECT_DELAY, base) * random.uniform(1.0, 1.25)
            log.info("%s: reconnecting in %.1f s", self.nick, delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> bool:
        s = self.settings
        self.on_state(self, "connecting", "")
        if self._conn is None:
            self._conn = self.reactor.server()
            self._conn.is_puppet = not self.hears_channels
            self._conn.owner = self
        self._registered_future = asyncio.get_running_loop().create_future()
        self._nick_tries = None
        self.nick = self.wanted_nick
        factory = AioFactory(ssl=self._tls_context()) if s.tls else AioFactory()
        conn = self._conn
        try:
            # `asyncio.timeout`, not `wait_for`: wait_for runs `open` as a task of its own, and
            # on Python 3.11 a `stop` (cancel) that meets a finished connect is swallowed, the
            # new socket outliving the stop. Here a cancel reaches the connect itself, which
            # closes its socket.
            async with asyncio.timeout(REGISTRATION_TIMEOUT):
                await conn.open(s.host, s.port, self.nick, s.username, s.realname, s.password, factory)
        except (OSError, TimeoutError, ConnectionGone, LineRejected) as exc:
            if isinstance(exc, LineRejected):
                self._close_transport()
            log.info("%s: cannot connect to %s:%d: %s", self.nick, s.host, s.port, exc)
            self.on_state(self, "disconnected", f"cannot connect: {exc}")
            return False
        self._flood = FloodControl(self._write, burst=s.burst, rate=s.rate)
        self._last_rx = time.monotonic()
        if await self.wait_registered(REGISTRATION_TIMEOUT):
            self._attempt = 0
            return True
        log.info("%s: registration did not finish in time", self.nick)
        self._close_transport()
        return False

    def _tls_context(self) -> ssl.SSLContext:
        """Built once per connection (the certificate is read once), reused by reconnects."""
        if self._tls is None:
            s = self.settings
            try:
                self._tls = tls_context(verify=s.tls_verify, client_cert=s.client_cert)
                self._cert_ready = bool(s.client_cert)
            except (ssl.SSLError, ValueError, OSError) as exc:
                log.warning("%s: the client certificate cannot be used: %s", self.nick, exc)
                self.on_state(self, "auth_failed", f"the stored client certificate cannot be used ({exc})")
                self._tls = tls_context(verify=s.tls_verify)
        return self._tls

    def _write(self, line: Line) -> None:
        conn = self._conn
        if conn is None:
            raise ConnectionGone("not connected")
        conn.put(line)

    def _close_transport(self) -> None:
        conn = self._conn
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    def _teardown(self, reason: str) -> None:
        was = self.registered
        self.registered = False
        self.authenticated = False
        self._services_pending = False
        self._sasl_busy = False
        self._sasl_next = ()
        self._sasl_offered = None
        self.caps.clear()
        self._offered = frozenset()
        self.joined.clear()
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._flood is not None:
            self._flood.fail_all(reason)
        if was:
            self.on_state(self, "disconnected", reason)

    # -- sending ---------------------------------------------------------------------------
    def send(self, line: Line, priority: int = 1) -> None:
        if self._flood is None:
            raise ConnectionGone("not connected")
        self._flood.send(line, priority)

    async def send_wait(self, line: Line) -> None:
        """Queue a line and wait until it is written (raises ConnectionGone)."""
        if self._flood is None or not self.connected:
            raise ConnectionGone("not connected")
        await self._flood.send_and_wait(line)

    @property
    def queued(self) -> int:
        return self._flood.pending if self._flood is not None else 0

    def join(self, channel: str, key: str = "") -> None:
        """Join now if connected, and after every reconnect. Raises `LineRejected` for a
        name or key IRC cannot carry (nothing is remembered or sent then)."""
        if not is_valid_channel(channel):
            raise LineRejected("not a valid IRC channel name")
        if key and (_BAD_KEY.search(key) or key[0] == ":" or len(key.encode("utf-8", "replace")) > MAX_KEY_BYTES):
            raise LineRejected(f"a channel key cannot hold spaces, commas or control characters, "
                               f"nor start with ':', and has at most {MAX_KEY_BYTES} bytes")
        line = irc_line("JOIN", channel, key) if key else irc_line("JOIN", channel)
        folded = casefold(channel, self.casemapping)
        self.channels[folded] = _ChannelWish(channel, key)
        if self.connected and folded not in self.joined:
            self.send(line)

    def part(self, channel: str, reason: str = "") -> None:
        folded = casefold(channel, self.casemapping)
        self.channels.pop(folded, None)
        if self.connected and folded in self.joined:
            self.send(fit_trailing("PART", channel, text=clean_line(reason)))

    def folded(self, name: str) -> str:
        return casefold(name, self.casemapping)

    # -- incoming --------------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        self._last_rx = time.monotonic()
        kind = event.type
        if kind == "all_raw_messages":
            return
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event)
        self.on_event(self, event)

    def _on_disconnect(self, event: Event) -> None:
        self._teardown("connection closed")
        if self._want and (self._task is None or self._task.done()):
            self._spawn_connect_loop()

    def _on_ping(self, event: Event) -> None:
        target = event.target or (event.arguments[0] if event.arguments else "")
        try:
            self._urgent(irc_line("PONG", trailing=target))
        except LineRejected:
            log.warning("%s: the server's PING token cannot be answered (too long)", self.nick)

    def _urgent(self, line: Line) -> None:
        if self._flood is not None:
            self._flood.send(line, URGENT)
        else:
            self._write(line)

    def _on_cap(self, event: Event) -> None:
        args = list(event.arguments)
        if not args:
            return
        sub = args[0].upper()
        if sub in ("LS", "NEW"):
            more = len(args) > 2 and args[1] == "*"
            offered = args[-1].split()
            # Only what we may ask for: a server listing endless capabilities cannot grow it.
            self._offered |= {sys.intern(name) for name in (cap.split("=", 1)[0] for cap in offered)
                              if name in WANTED_CAPS or name == "sasl"}
            for cap in offered:
                name, _, value = cap.partition("=")
                if name == "sasl":
                    self._sasl_offered = frozenset(m.upper() for m in value.split(",") if m) or None
            if more:
                return
            want_caps = WANTED_CAPS | ({"sasl"} if self._sasl_plan() else set())
            wanted = sorted(want_caps & self._offered - self.caps)
            if wanted:
                self._urgent(irc_line("CAP", "REQ", trailing=" ".join(wanted)))
            elif not self.registered:
                self._urgent(_CAP_END)
        elif sub == "ACK":
            # Only what we asked for: a server acknowledging endless capabilities cannot grow it.
            acked = {sys.intern(c) for c in args[-1].split() if c in WANTED_CAPS or c == "sasl"}
            self.caps |= acked
            plan = self._sasl_plan()
            if "sasl" in acked and plan and not self.registered:
                self._sasl_busy = True
                self._sasl_next = tuple(plan)
                self._next_sasl()
            elif not self.registered:
                self._urgent(_CAP_END)
        elif sub == "NAK":
            if not self.registered:
                self._urgent(_CAP_END)
        elif sub == "DEL":
            self.caps -= set(args[-1].split())

    # -- services login: SASL (EXTERNAL, PLAIN) during CAP, else NickServ after registration -----
    def _has_password(self) -> bool:
        return bool(self.settings.account_password)

    def _sasl_plan(self) -> list[str]:
        """The mechanisms to try, in order: EXTERNAL with a certificate shown, then PLAIN."""
        offered = self._sasl_offered
        plan = []
        if self._cert_ready and self.settings.tls and (offered is None or "EXTERNAL" in offered):
            plan.append("EXTERNAL")
        if self._has_password() and (offered is None or "PLAIN" in offered):
            plan.append("PLAIN")
        return plan

    def _next_sasl(self) -> None:
        self._sasl_mech, self._sasl_next = self._sasl_next[0], self._sasl_next[1:]
        self._urgent(irc_line("AUTHENTICATE", self._sasl_mech))

    def _on_authenticate(self, event: Event) -> None:
        challenge = event.target or (event.arguments[0] if event.arguments else "")
        if not self._sasl_busy or challenge != "+":
            return
        if self._sasl_mech == "EXTERNAL":
            self._urgent(irc_line("AUTHENTICATE", "+"))  # the identity is the certificate's (and its account's)
            return
        account = self.settings.account or self.wanted_nick
        password = self.settings.account_password or ""
        try:
            if "\0" in account or "\0" in password:  # NUL separates PLAIN's fields
                raise UnicodeError
            token = base64.b64encode(f"{account}\0{account}\0{password}".encode()).decode()
        except UnicodeError:
            self.on_state(self, "auth_failed", "the stored account name or password cannot be sent "
                          "(it holds a NUL or is not valid Unicode)")
            self._sasl_mech = _ABORTED
            self._urgent(irc_line("AUTHENTICATE", "*"))
            return
        chunks = [token[i:i + SASL_CHUNK] for i in range(0, len(token), SASL_CHUNK)] or ["+"]
        if len(chunks[-1]) == SASL_CHUNK:
            chunks.append("+")  # a full last chunk must be followed by an empty one
        for chunk in chunks:  # base64: nothing in it can break a line
            self._urgent(irc_line("AUTHENTICATE", chunk))

    def _on_sasl_done(self, event: Event) -> None:
        if not self._sasl_busy:
            return
        failed = event.type != "saslsuccess"
        if self._sasl_mech == _ABORTED:
            pass  # told already
        elif failed and self._sasl_mech == "EXTERNAL":
            then = "; trying the stored password" if self._sasl_next else ""
            self.on_state(self, "auth_failed",
                          f"the network refused the stored client certificate (SASL EXTERNAL){then}")
        elif failed:
            self.on_state(self, "auth_failed", "the network refused the stored password (SASL)")
        if failed and event.type == "saslfail" and self._sasl_next and not self.registered:
            self._next_sasl()  # still in CAP negotiation: the next mechanism may do
            return
        self._sasl_busy = False
        self._sasl_next = ()
        if not failed:
            self.authenticated = True
        if not self.registered:
            self._urgent(_CAP_END)

    def _on_loggedin(self, event: Event) -> None:
        self.authenticated = True

    # NickServ: the password goes only to the configured services nick, and only once the
    # server has shown that nick to be the network's services (its host is `services_host`).
    # Anyone can take the nick "NickServ" on a network without services, or while they are
    # split off: an unchecked IDENTIFY would hand them the password.
    def _identify_with_nickserv(self) -> None:
        if self._has_password() and not self.authenticated and "sasl" not in self.caps:
            self._services_pending = True
            self.send(irc_line("USERHOST", self.settings.services_nick))

    def _on_userhost(self, event: Event) -> None:
        if not self._services_pending:
            return
        self._services_pending = False
        s = self.settings
        host = None
        for entry in " ".join(event.arguments).split():
            nick, _, mask = entry.partition("=")
            if self.folded(nick.rstrip("*")) == self.folded(s.services_nick):
                host = mask.lstrip("+-").partition("@")[2]
        # Each reason says who can do something about it: the user can't change the config.
        if host is None:
            self._services_refused(f"{s.services_nick} is not on the network (its services may be down; "
                                   f"try 'reconnect' later)")
        elif not s.services_host:
            self._services_refused("the bridge's configuration names no services host for this network "
                                   "(services_host), so it cannot tell the real services from an impostor; "
                                   "a bridge admin can set it")
        elif host.lower() != s.services_host.lower():
            self._services_refused(f"{s.services_nick} is at {host}, not at the services host {s.services_host}, "
                                   f"so it may be an impostor; if the network moved its services, a bridge admin "
                                   f"can update services_host")
        else:
            self._send_identify()

    def _services_refused(self, why: str) -> None:
        log.warning("%s: not identifying to %s: %s", self.nick, self.settings.services_nick, why)
        self.on_state(self, "auth_failed", f"your password was not sent to {self.settings.services_nick}: {why}")

    def _send_identify(self) -> None:
        s = self.settings
        account = s.account or self.wanted_nick
        try:
            if not account or any(c.isspace() or ord(c) < 32 for c in account):
                raise LineRejected("the account name holds a space or control character")
            line = irc_line("PRIVMSG", s.services_nick, trailing=f"IDENTIFY {account} {s.account_password or ''}")
        except LineRejected as exc:
            self.on_state(self, "auth_failed", f"the stored password cannot be sent to {s.services_nick}: {exc}")
            return
        self.send(line)

    def _on_welcome(self, event: Event) -> None:
        self.registered = True
        self.nick = event.target or self.nick
        if self._registered_future is not None and not self._registered_future.done():
            self._registered_future.set_result(None)
        self._registered_future = None
        self._offered = frozenset()  # negotiation is over
        self._nick_tries = ()
        self._schedule_keepalive()
        self._identify_with_nickserv()
        for line in join_lines(list(self.channels.values())):
            self.send(line)
        self.on_state(self, "connected", "")

    def _on_featurelist(self, event: Event) -> None:
        features = self._conn.features if self._conn is not None else None
        if features is None:
            return
        self.casemapping = str(getattr(features, "casemapping", self.casemapping) or "rfc1459")
        self.nick_length = int(getattr(features, "nicklen", self.nick_length) or DEFAULT_NICK_LENGTH)

    def _on_nick_taken(self, event: Event) -> None:
        if self.registered:
            return  # a NICK command of ours failed; the server keeps our old nick
        if self._nick_tries is None:
            self._nick_tries = tuple(nick_variants(self.wanted_nick, self.nick_length))
        if not self._nick_tries:
            self._close_transport()
            return
        self.nick, self._nick_tries = self._nick_tries[0], self._nick_tries[1:]
        self._urgent(irc_line("NICK", self.nick))

    def _on_join(self, event: Event) -> None:
        source = NickMask(event.source)
        if self.folded(source.nick) == self.folded(self.nick):
            self.joined.add(self.folded(event.target))
            userhost = source.userhost
            if userhost:
                self.mask_bytes = len(f"!{userhost}".encode())

    def _on_part(self, event: Event) -> None:
        if self.folded(NickMask(event.source).nick) == self.folded(self.nick):
            self.joined.discard(self.folded(event.target))

    def _on_kick(self, event: Event) -> None:
        if event.arguments and self.folded(event.arguments[0]) == self.folded(self.nick):
            folded = self.folded(event.target)
            self.joined.discard(folded)
            self.channels.pop(folded, None)

    def _on_nick(self, event: Event) -> None:
        if self.folded(NickMask(event.source).nick) == self.folded(self.nick):
            self.nick = event.target
            self.wanted_nick = event.target

    def _schedule_keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        self._keepalive = loop.call_later(PING_AFTER / 2, self._check_alive)

    def _check_alive(self) -> None:
        self._keepalive = None
        if not self.registered:
            return
        silent = time.monotonic() - self._last_rx
        if silent > DEAD_AFTER:
            log.info("%s: no answer from the server for %.0f s; reconnecting", self.nick, silent)
            self._close_transport()
            return
        if silent > PING_AFTER:
            self._urgent(irc_line("PING", trailing=f"rapture-{int(time.time())}"))
        self._schedule_keepalive()


_HANDLERS: dict[str, Callable[[IRCConnection, Event], None]] = {
    "disconnect": IRCConnection._on_disconnect,
    "ping": IRCConnection._on_ping,
    "cap": IRCConnection._on_cap,
    "welcome": IRCConnection._on_welcome,
    "featurelist": IRCConnection._on_featurelist,
    "nicknameinuse": IRCConnection._on_nick_taken,
    "erroneusnickname": IRCConnection._on_nick_taken,
    "unavailresource": IRCConnection._on_nick_taken,
    "join": IRCConnection._on_join,
    "part": IRCConnection._on_part,
    "kick": IRCConnection._on_kick,
    "nick": IRCConnection._on_nick,
    "authenticate": IRCConnection._on_authenticate,
    "saslsuccess": IRCConnection._on_sasl_done,
    "saslfail": IRCConnection._on_sasl_done,
    "sasltoolong": IRCConnection._on_sasl_done,
    "saslaborted": IRCConnection._on_sasl_done,
    "saslalready": IRCConnection._on_sasl_done,
    "loggedin": IRCConnection._on_loggedin,
    "userhost": IRCConnection._on_userhost,
}


def join_lines(wishes: list[_ChannelWish], budget: int = 400) -> list[Line]:
    """JOIN commands for many channels, several per line (a bot may sit in thousands).
    Wishes were checked by `IRCConnection.join`."""
    lines: list[Line] = []
    names: list[str] = []
    for wish in wishes:
        if wish.key:
            lines.append(irc_line("JOIN", wish.name, wish.key))
            continue
        if names and len(",".join([*names, wish.name])) > budget:
            lines.append(irc_line("JOIN", ",".join(names)))
            names = []
        names.append(wish.name)
    if names:
        lines.append(irc_line("JOIN", ",".join(names)))
    return lines


def make_reactor() -> AioReactor:
    """A reactor whose events all go to the owning IRCConnection."""
    reactor = AioReactor(loop=asyncio.get_running_loop())
    # Our own PONG is urgent in the flood queue; the library's would bypass it unordered.
    for handler in list(reactor.handlers.get("ping", [])):
        reactor.handlers["ping"].remove(handler)

    def dispatch(connection: Any, event: Event) -> None:
        owner = getattr(connection, "owner", None)
        if owner is not None:
            try:
                owner.handle(event)
            except Exception:
                log.exception("error handling IRC %s", event.type)

    reactor.add_global_handler("all_events", dispatch)
    reactor.connection_class = _Connection
    return reactor
