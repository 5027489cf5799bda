"""No Matrix text becomes an IRC command: checked on the bytes the bridge writes.

InspIRCd silently drops a bare CR inside a line (Libera's Solanum ends the line there), so
watching another IRC client proves little: a recording TCP proxy sits between the bridge and
InspIRCd and keeps every byte the bridge writes. Through real Synapse + InspIRCd:
a relayed user whose display name is `x\\rQUIT :bye`, a puppet whose display name (its IRC
real name) is `y\\rJOIN #evil`, a `join` key `k\\rPRIVMSG NickServ :DROP x`, a topic and a
part reason with `\\r`. Also `bridge.max_message_lines`: a 200-line message reaches IRC as
10 lines and one saying what was left out.

Found on Synapse 1.163: it stores a display name with `\\r` as given, both in the global
profile and in a room member event's content (no control-character check), so both are
set through the ordinary client API here.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from bridge.devstack import ServerUnavailable
from bridge.devstack.inspircd import start_inspircd
from bridge.devstack.stack import start_local_stack
from tests.e2e.conftest import PERMISSIONS, Stack
from tests.e2e.irc import IrcUser, command, sender_nick
from tests.e2e.matrix import TestClient, notice_from
from tests.e2e.test_irc_portal import _login
from tests.servers import require

pytestmark = pytest.mark.e2e
BOT_NICK = "rapture"


class RecordingProxy:
    """A TCP proxy on 127.0.0.1 that records every byte its clients (the bridge) send."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.streams: list[bytearray] = []  # one per connection, bridge -> server
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="recording-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> None:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def recorded(self) -> list[bytes]:
        return [bytes(stream) for stream in list(self.streams)]

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = bytearray()
        self.streams.append(record)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pump(reader, up_writer, record), self._pump(up_reader, writer, None))

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bytearray | None) -> None:
        try:
            while data := await src.read(65536):
                if record is not None:
                    record += data
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()


@dataclass
class Proxied:
    stack: Stack
    proxy: RecordingProxy
    irc_port: int  # InspIRCd itself, for observers


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    base = tmp_path_factory.mktemp("injection")
    try:
        ircd = start_inspircd(base / "inspircd")
    except ServerUnavailable as exc:
        require(exc)
    proxy = RecordingProxy(ircd.port)
    proxy.start()
    try:
        local = start_local_stack(
            base / "stack", permissions=PERMISSIONS, inspircd=ircd,
            network_options={"relay": True, "port": proxy.port},  # the bridge reaches IRC through the proxy
        )
    except ServerUnavailable as exc:
        proxy.stop()
        ircd.stop()
        require(exc)
    except BaseException:
        proxy.stop()
        ircd.stop()
        raise
    yield Proxied(Stack(local), proxy, ircd.port)
    local.stop()
    proxy.stop()
    ircd.stop()


def wire_problems(streams: list[bytes]) -> list[str]:
    """Every way the recorded bytes break the IRC framing rules (empty: none)."""
    problems = []
    for n, data in enumerate(streams):
        if data and not data.endswith(b"\r\n"):
            problems.append(f"connection {n}: ends inside a line: {data[-80:]!r}")
        for raw in data.split(b"\r\n")[:-1]:
            if b"\r" in raw or b"\n" in raw or b"\x00" in raw:
                problems.append(f"connection {n}: bare CR/LF or NUL in {raw!r}")
            if len(raw) + 2 > 512:
                problems.append(f"connection {n}: {len(raw) + 2} bytes: {raw[:60]!r}...")
    return problems


def wire_commands(streams: list[bytes]) -> list[str]:
    """Each line the bridge wrote, as text, split where a server would split it (at any CR or LF)."""
    lines = []
    for data in streams:
        for raw in data.replace(b"\r", b"\n").split(b"\n"):
            if raw:
                lines.append(raw.decode("utf-8", "replace"))
    return lines


async def set_displayname(client: TestClient, name: str) -> None:
    await client.request("PUT", f"/profile/{quote(client.user_id)}/displayname", {"displayname": name})


@dataclass
class Portal:
    name: str
    room_id: str
    matrix: TestClient
    observer: IrcUser
    puppet: str


@pytest.fixture
async def portal(proxied: Proxied) -> AsyncIterator[Portal]:
    """A channel with an IRC observer (its op) and a Matrix user whose display name is hostile."""
    stack = proxied.stack
    name = f"#j{uuid.uuid4().hex[:8]}"
    observer = IrcUser(proxied.irc_port, f"o{uuid.uuid4().hex[:6]}")
    await observer.registered()
    await observer.join(name)
    account = stack.account()
    puppet = f"{account.user_id[1:].split(':')[0]}[m]"
    async with TestClient(stack.homeserver, account.user_id, account.token) as matrix:
        # The puppet's IRC real name comes from this (set before its connection exists).
        await set_displayname(matrix, "y\rJOIN #evil")
        room_id = await matrix.join(f"#local_{name}:localhost")
        await observer.wait_for(command("JOIN", name, nick=BOT_NICK))
        await observer.wait_for(command("JOIN", name, nick=puppet))
        yield Portal(name, room_id, matrix, observer, puppet)
    observer.close()


async def test_no_display_name_key_topic_or_reason_injects_a_command(proxied: Proxied, portal: Portal) -> None:
    stack, m, chan, obs = proxied.stack, portal.matrix, portal.name, portal.observer

    # The puppet speaks; its real name (the display name) went out in USER.
    await m.send_text(portal.room_id, "hello from y")
    await obs.wait_for(command("PRIVMSG", chan, nick=portal.puppet, text="hello from y"))
    obs.send(f"WHOIS {portal.puppet}")
    whois = await obs.wait_for(lambda w: len(w) > 3 and w[1] == "311" and w[3].lower() == portal.puppet.lower())
    assert whois.endswith(":y JOIN #evil"), whois  # shown, without the CR

    # A relayed user whose room display name holds a CR.
    try:
        stack.account("relayer")
    except RuntimeError:
        pass
    async with TestClient(stack.homeserver, "@relayer:localhost", _login(stack, "relayer")) as relayer:
        await relayer.join(portal.room_id)
        await relayer.set_state(portal.room_id, "m.room.member",
                                {"membership": "join", "displayname": "x\rQUIT :bye"}, state_key=relayer.user_id)
        stored = await relayer.state(portal.room_id, "m.room.member", relayer.user_id)
        assert stored["displayname"] == "x\rQUIT :bye"  # Synapse keeps it as given
        await relayer.send_text(portal.room_id, "hi from x")
        await obs.wait_for(command("PRIVMSG", chan, nick=BOT_NICK, text="<x QUIT :bye> hi from x"))

    # IRC makes the puppet an op, so that its Matrix user may set the topic.
    obs.send(f"MODE {chan} +o {portal.puppet}")
    for _ in range(100):
        if (await m.state(portal.room_id, "m.room.power_levels")).get("users", {}).get(m.user_id) == 50:
            break
        await asyncio.sleep(0.2)
    await m.set_state(portal.room_id, "m.room.topic", {"topic": "new topic\rPRIVMSG NickServ :DROP y"})
    await obs.wait_for(command("TOPIC", chan, nick=portal.puppet, text="new topicPRIVMSG NickServ :DROP y"))

    # A join key with a CR is refused, and the user is told why.
    dm = await m.create_room(invite=[stack.bot], is_direct=True)
    await m.wait_for_membership(dm, stack.bot, "join")
    keyed = f"#k{uuid.uuid4().hex[:6]}"
    asked = await m.send_text(dm, f'join local {keyed} "k\rPRIVMSG NickServ :DROP x"')
    answer = await m.wait_for_event(dm, notice_from(stack.bot, reply_to=asked))
    assert "key" in answer["content"]["body"], answer["content"]["body"]

    # A part reason with a CR.
    await m.leave(portal.room_id, reason="bye\rQUIT :parted")
    await obs.wait_for(command("PART", chan, nick=portal.puppet, text="byeQUIT :parted"))

    # What the observer saw: only the intended QUIT/JOIN/PRIVMSG (none from an injection).
    ours = {BOT_NICK.lower(), portal.puppet.lower()}
    for line in obs.seen():
        words = line.split()
        words = words[1:] if words and words[0].startswith("@") else words
        if len(words) < 2 or sender_nick(words) not in ours:
            continue
        if words[1] == "QUIT":
            raise AssertionError(f"a bridge connection quit: {line}")
        if words[1] in ("JOIN", "PRIVMSG"):
            assert words[2].lstrip(":").lower() == chan.lower(), line

    # What the bridge wrote, byte for byte.
    streams = proxied.proxy.recorded()
    assert streams and not wire_problems(streams), wire_problems(streams)
    lines = wire_commands(streams)
    assert not [line for line in lines if line.startswith(("QUIT", "PRIVMSG NickServ", "JOIN #evil"))]
    # The refused key went nowhere (the bot's own JOIN of the new portal's channel has none).
    assert not [line for line in lines if "DROP x" in line or (line.startswith("JOIN") and keyed in line
                                                               and line != f"JOIN {keyed}")]
    assert not [line for line in lines if line.startswith("PRIVMSG") and chan not in line.split()[1]]


async def test_a_200_line_message_is_cut_to_max_message_lines(proxied: Proxied, portal: Portal) -> None:
    body = "\n".join(f"line {n}" for n in range(200))
    await portal.matrix.send_text(portal.room_id, body)
    for n in range(10):  # max_message_lines defaults to 10
        await portal.observer.wait_for(command("PRIVMSG", portal.name, nick=portal.puppet, text=f"line {n}"))
    await portal.observer.wait_for(
        command("PRIVMSG", portal.name, nick=portal.puppet, text="(… 190 more lines not sent)"))
    await portal.matrix.send_text(portal.room_id, "after")
    await portal.observer.wait_for(command("PRIVMSG", portal.name, nick=portal.puppet, text="after"))
    sent = [line for line in portal.observer.seen()
            if f" PRIVMSG {portal.name} :line " in line and portal.puppet in line]
    assert len(sent) == 10, sent
    assert not wire_problems(proxied.proxy.recorded())
    # The sender is told in the room what IRC did not get: nothing is dropped without a word.
    notice = await portal.matrix.wait_for_event(
        portal.room_id, notice_from(proxied.stack.bot, contains="too long for IRC"), what="the cut notice")
    assert portal.matrix.user_id in notice["content"]["body"]
    assert "190 of its 200 lines were not sent" in notice["content"]["body"]
