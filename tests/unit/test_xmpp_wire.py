"""Whatever Matrix users type, every stanza the XMPP connector writes is well-formed XML.

The connector runs with its real `Component` and slixmpp stream; only the TCP connection is
fake: `FakeServer` is the server's end of it. It parses every byte the component writes with
expat (as Prosody does: one bad character and the stream is dead) and plays a tiny MUC
service (self-presences for joins, echoes of groupchat messages, results for iq sets), so
the connector's own waits (join, echo, iq result) complete as against a real server.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slixmpp.jid import JID, InvalidJID

from connectors.api import (
    ChatKind,
    ChatRef,
    LoginInfo,
    LoginState,
    MessageKind,
    OutgoingMessage,
    Role,
    SendError,
)
from connectors.xmpp import XMPPConnector, wire
from connectors.xmpp import component as component_module
from connectors.xmpp import puppet as puppet_module
from connectors.xmpp.component import Component
from connectors.xmpp.jids import clean_nick
from connectors.xmpp.rooms import Occupant

NS = "jabber:component:accept"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
CORRECT = "urn:xmpp:message-correct:0"
DOMAIN = "matrix.test"
ROOM = "room@muc.test"
PUPPET = f"alice@{DOMAIN}"
SERVER_HEADER = (f"<stream:stream xmlns='{NS}' xmlns:stream='http://etherx.jabber.org/streams' "
                 f"id='sid1' from='{DOMAIN}'>")
STEP_TIMEOUT = 5.0


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _nl(text: str) -> str:
    """Text as an XML parser returns it (CR and CRLF read as LF)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


class FakeServer:
    """The server's end of the component's TCP connection (an asyncio transport)."""

    def __init__(self, xmpp: Any) -> None:
        self.xmpp = xmpp
        self.parser: Any = ET.XMLPullParser(events=("start", "end"))  # expat underneath
        self.depth = 0
        self.raw = bytearray()
        self.stanzas: list[ET.Element] = []
        self.error: str | None = None  # the first parse error: Prosody would close the stream here
        self.nicks: dict[tuple[str, str], str] = {}  # (room, occupant's real JID) -> nick
        self._pending: set[asyncio.Task[None]] = set()

    # -- the part of asyncio.Transport slixmpp uses ----------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.raw += data
        if self.error is not None:
            return
        try:
            self.parser.feed(data)
            for event, elem in cast(Iterator[tuple[str, ET.Element]], self.parser.read_events()):
                if event == "start":
                    self.depth += 1
                    if self.depth == 1:
                        self._deliver(SERVER_HEADER)
                    continue
                self.depth -= 1
                if self.depth == 1:
                    self.stanzas.append(elem)
                    self._answer(elem)
        except ET.ParseError as exc:
            self.error = f"{exc} in {bytes(self.raw[-400:])!r}"

    # -- the server's side -------------------------------------------------------------------------
    def _deliver(self, data: str) -> None:
        async def deliver() -> None:
            self.xmpp.data_received(data.encode())
        task = asyncio.get_running_loop().create_task(deliver())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _answer(self, elem: ET.Element) -> None:
        tag, kind = _local(elem.tag), elem.get("type", "")
        frm, to = elem.get("from", ""), elem.get("to", "")
        if tag == "handshake":
            self._deliver("<handshake/>")
        elif tag == "presence" and "/" in to and kind in ("", "unavailable"):
            room, nick = to.split("/", 1)
            self.nicks[(room, frm)] = nick
            reply = ET.Element("presence", {"from": to, "to": frm, **({"type": kind} if kind else {})})
            x = ET.SubElement(reply, f"{{{MUC_USER}}}x")
            ET.SubElement(x, f"{{{MUC_USER}}}item", {"jid": frm, "affiliation": "none",
                                                     "role": "none" if kind else "moderator"})
            ET.SubElement(x, f"{{{MUC_USER}}}status", {"code": "110"})
            self._deliver(ET.tostring(reply, encoding="unicode"))
        elif tag == "message" and kind == "groupchat":
            echo = copy.deepcopy(elem)  # `elem` is the record of what was written: keep it
            echo.set("from", f"{to}/{self.nicks.get((to, frm), 'someone')}")
            echo.set("to", frm)
            self._deliver(ET.tostring(echo, encoding="unicode"))
        elif tag == "iq" and kind in ("get", "set"):
            reply = ET.Element("iq", {"type": "result", "id": elem.get("id", ""), "from": to, "to": frm})
            self._deliver(ET.tostring(reply, encoding="unicode"))

    async def settle(self) -> None:
        """Until everything queued is written and every answer to it has been read."""
        async def drain() -> None:
            while True:
                await self.xmpp.waiting_queue.join()
                if not self._pending:
                    return
                await asyncio.gather(*list(self._pending))
        await asyncio.wait_for(drain(), STEP_TIMEOUT)


class Context:
    network = "xmpp"

    def __init__(self) -> None:
        self.states: list[tuple[str, LoginState]] = []

    def queue_remote_event(self, event: Any) -> None:
        pass

    def login_state(self, mxid: str, state: LoginState, message: str = "") -> None:
        self.states.append((mxid, state))

    def login_renamed(self, mxid: str, name: str) -> None:
        pass

    def is_puppet(self, mxid: str) -> bool:
        return True

    def notify_user(self, mxid: str, text: str) -> None:
        pass


class GuardLog(logging.Handler):
    """Counts the wire guard's warnings: each one is a field the stanza builders missed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "wire guard" in record.getMessage():
            self.records.append(record.getMessage())


@contextmanager
def guard_log() -> Iterator[GuardLog]:
    handler = GuardLog()
    logger = logging.getLogger("rapture.xmpp")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@dataclass
class Wire:
    connector: XMPPConnector
    server: FakeServer
    component: Component
    seen: int = 0

    def new(self) -> list[ET.Element]:
        out = self.server.stanzas[self.seen:]
        self.seen = len(self.server.stanzas)
        return out


async def connected(nick_template: str = "{displayname}") -> Wire:
    ctx = Context()
    connector = XMPPConnector("xmpp", {"host": "127.0.0.1", "component_domain": DOMAIN, "component_secret": "s",
                                       "muc_domain": "muc.test", "domain": "x.test",
                                       "nick_template": nick_template}, ctx)
    component = Component(jid=DOMAIN, secret="s", host="127.0.0.1", port=5347, reconnect_delay=1.0,
                          on_online=connector._online, on_offline=connector._offline,
                          on_presence=connector._presence, on_message=connector._message)
    connector.component = component
    server = FakeServer(component.xmpp)
    xmpp = component.xmpp
    xmpp._run_out_filters = asyncio.ensure_future(xmpp.run_filters())
    xmpp.connection_made(cast(Any, server))
    for _ in range(3):
        await server.settle()
    assert component.online, server.error
    return Wire(connector, server, component)


async def close(w: Wire) -> None:
    for timer in w.connector._timers:
        timer.cancel()
    task = w.component.xmpp._run_out_filters
    if task is not None:
        task.cancel()
    w.component.xmpp._session_started = False


async def attempt(w: Wire, what: str, call: Awaitable[Any]) -> bool:
    """Run one outgoing operation: True when it went out, False when it was refused with
    SendError (the only exception the core may see). Either way, what was written parses."""
    try:
        await asyncio.wait_for(call, STEP_TIMEOUT)
        ok = True
    except SendError:
        ok = False
    await w.server.settle()
    assert w.server.error is None, f"{what}: the server cannot parse the stream: {w.server.error}"
    return ok


def one(stanzas: list[ET.Element], tag: str, kind: str, to: str) -> ET.Element:
    """The one stanza of `stanzas` with this tag, type and recipient; nothing else was written."""
    matching = [s for s in stanzas if _local(s.tag) == tag and s.get("type", "") == kind and s.get("to") == to]
    others = [(_local(s.tag), s.get("type"), s.get("to")) for s in stanzas if s not in matching]
    assert len(matching) == 1 and not others, (tag, kind, to, others, len(matching))
    return matching[0]


def text_of(elem: ET.Element, path: str) -> str:
    child = elem.find(path)
    assert child is not None, path
    return child.text or ""


def full(room: str, nick: str) -> str:
    """The occupant JID as the wire carries it (resourceprep may normalise the nick)."""
    return str(JID(f"{room}/{nick}"))


def jid_or_none(value: str) -> str | None:
    try:
        return str(JID(value))
    except (InvalidJID, ValueError, UnicodeError):
        return None


# -- strategies ---------------------------------------------------------------------------------
NASTY = ["\x00", "\x0c", "\x01", "\x1b", "\r", "\n", "\t", "\ud800", "\udfff", "\ufffe", "\uffff",
         "<", ">", "&", "'", '"', "]]>", "&#0;", "</message>", "\U0001f600", " "]
chars = st.one_of(st.sampled_from(NASTY), st.characters(exclude_categories=()))
short = st.lists(chars, max_size=24).map("".join)
# Some fields get 10 KB of it: caps must cut, on a character boundary.
text = st.one_of(short, short, short.map(lambda s: ((s or "\x0c") * 10240)[:10240]))
ident = st.one_of(st.just("$event:hs"), short)


@dataclass(frozen=True)
class Fields:
    display: str
    body: str
    html: str | None
    event_id: str
    edit_of: str
    relay_name: str
    dm_to: str
    topic: str
    password: str
    part_reason: str
    kick_reason: str
    kick_target: str
    new_name: str


fields = st.builds(Fields, display=text, body=text, html=st.none() | text, event_id=ident,
                   edit_of=st.one_of(st.just(""), ident), relay_name=text,
                   dm_to=st.one_of(st.just("bob@x.test"), st.just("bob@x.test/res"), short),
                   topic=text, password=text, part_reason=text, kick_reason=text,
                   kick_target=st.one_of(st.just("bob@x.test"), st.just(f"{ROOM}/carol"), short), new_name=text)


async def every_operation(f: Fields) -> None:
    w = await connected()
    try:
        with guard_log() as guard:
            await operations(w, f)
        assert guard.records == [], "a field reached the wire guard uncleaned"
    finally:
        await close(w)


async def operations(w: Wire, f: Fields) -> None:
    connector = w.connector
    puppet = connector.make_client(LoginInfo(mxid="@alice:hs", localpart="alice", displayname=f.display))
    nick = clean_nick(f.display, "alice")
    assert await attempt(w, "connect", puppet.connect())
    w.new()

    # join with a password: a presence to room/nick, the password cleaned and capped
    assert await attempt(w, "join", puppet.join(ROOM, f.password))
    join = one(w.new(), "presence", "", full(ROOM, nick))
    password = join.find(f"{{{MUC}}}x/{{{MUC}}}password")
    assert (password.text or "" if password is not None else "") == _nl(wire.text(f.password, wire.MAX_PASSWORD))

    # a message, maybe an edit: a groupchat to the room, or refused (an id that is no id)
    message = OutgoingMessage(kind=MessageKind.TEXT, text=f.body, html=f.html, event_id=f.event_id,
                              edit_of=f.edit_of, sender_name=f.relay_name)
    if await attempt(w, "message", puppet.send(ChatRef(ROOM), message)):
        sent = one(w.new(), "message", "groupchat", ROOM)
        assert sent.get("id") == f.event_id or not f.event_id
        replace = sent.find(f"{{{CORRECT}}}replace")
        assert (replace.get("id") if replace is not None else "") == f.edit_of
    else:
        assert w.new() == []

    # the same through the relay (the bot speaks, `<display name> text`)
    connector.tracker.joining(ROOM, "rapture")
    connector.tracker.rooms[ROOM].joined = True
    if await attempt(w, "relay", connector.relay(ChatRef(ROOM), message)):
        one(w.new(), "message", "groupchat", ROOM)
    else:
        assert w.new() == []

    # a DM to whatever JID the chat id names: to exactly that JID, or refused
    dm = OutgoingMessage(kind=MessageKind.TEXT, text=f.body, event_id="$dm:hs")
    target = jid_or_none(f.dm_to)
    if await attempt(w, "dm", puppet.send(ChatRef(f.dm_to, ChatKind.DM, "@alice:hs"), dm)):
        assert target is not None
        one(w.new(), "message", "chat", target)
    else:
        assert w.new() == []

    # the topic: a subject, cleaned and capped
    assert await attempt(w, "topic", puppet.set_topic(ROOM, f.topic))
    subject = one(w.new(), "message", "groupchat", ROOM)
    assert text_of(subject, f"{{{NS}}}subject") == _nl(wire.text(f.topic, wire.MAX_SUBJECT))

    # a kick with a reason: an iq set to the room, the reason cleaned and capped
    # (the target is a user id the core decoded from a ghost's MXID: only one in the room is kicked)
    state = connector.tracker.rooms[ROOM]
    state.occupants["bob"] = Occupant("bob", "bob@x.test", Role.MEMBER)
    state.occupants["carol"] = Occupant("carol", None, Role.MEMBER)
    known = {"bob@x.test": "bob", f"{ROOM}/carol": "carol"}
    if await attempt(w, "kick", puppet.kick(ROOM, f.kick_target, f.kick_reason)):
        kick = one(w.new(), "iq", "set", ROOM)
        item = kick.find(f"{{{MUC_ADMIN}}}query/{{{MUC_ADMIN}}}item")
        assert item is not None and item.get("nick") == known[f.kick_target]
        reason = item.find(f"{{{MUC_ADMIN}}}reason")
        assert (reason.text or "" if reason is not None else "") == _nl(wire.text(f.kick_reason, wire.MAX_REASON))
    else:
        assert f.kick_target not in known and w.new() == []

    # a new display name: a presence to room/<new nick>
    new_nick = clean_nick(f.new_name, nick)
    assert await attempt(w, "rename", puppet.set_name(f.new_name))
    renamed = w.new()
    if full(ROOM, new_nick) != full(ROOM, nick):
        one(renamed, "presence", "", full(ROOM, new_nick))
    else:  # the same occupant JID once resourceprep is done: a change is harmless, not needed
        assert renamed == [] or one(renamed, "presence", "", full(ROOM, new_nick)) is not None

    # part with a reason: an unavailable presence, the status cleaned and capped
    assert await attempt(w, "part", puppet.part(ROOM, f.part_reason))
    leave = one(w.new(), "presence", "unavailable", full(ROOM, new_nick))
    status = leave.find(f"{{{NS}}}status")
    assert (status.text or "" if status is not None else "") == _nl(wire.text(f.part_reason, wire.MAX_REASON))


@pytest.fixture(autouse=True)
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stanza the fake server could not read is never answered: fail fast, not after 15 s.
    monkeypatch.setattr(component_module, "ECHO_TIMEOUT", 1.0)
    monkeypatch.setattr(component_module, "IQ_TIMEOUT", 1.0)
    monkeypatch.setattr(puppet_module, "JOIN_TIMEOUT", 1.0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(fields)
def test_every_stanza_parses_and_keeps_its_type_and_recipient(f: Fields) -> None:
    asyncio.run(every_operation(f))


# -- examples worth keeping in plain sight --------------------------------------------------------
def test_the_control_characters_prosody_chokes_on() -> None:
    asyncio.run(every_operation(Fields(
        display="al\x00ice", body="a\x0cb", html="<b>\x01</b>", event_id="$e:hs", edit_of="", relay_name="x\x00y",
        dm_to="bob@x.test", topic="top\x0cic\x00", password="p\x00w", part_reason="bye\x0c\x00",
        kick_reason="out\x00\x0c", kick_target="bob@x.test", new_name="new\ud800name")))


def test_a_poisoned_edit_id_is_refused_for_good() -> None:
    async def run() -> None:
        w = await connected()
        try:
            puppet = connector_puppet(w)
            await puppet.connect()
            await puppet.join(ROOM)
            await w.server.settle()
            message = OutgoingMessage(kind=MessageKind.TEXT, text="fixed", event_id="$e2:hs", edit_of="$e1\x0c:hs")
            with pytest.raises(SendError) as refused:
                await puppet.send(ChatRef(ROOM), message)
            assert refused.value.retriable is False  # not retried on every reconnect
            await w.server.settle()
            assert w.server.error is None
            assert [s for s in w.server.stanzas if _local(s.tag) == "message"] == []
        finally:
            await close(w)
    asyncio.run(run())


def connector_puppet(w: Wire) -> Any:
    return w.connector.make_client(LoginInfo(mxid="@alice:hs", localpart="alice", displayname="Alice"))


def test_the_guard_cleans_what_bypasses_the_builders() -> None:
    """A stanza made straight on the slixmpp stream, sent without filters, still parses."""
    async def run() -> None:
        w = await connected()
        try:
            with guard_log() as guard:
                msg = w.component.xmpp.make_message(mto=ROOM, mbody="raw\x00\x0c\ud800body", mtype="groupchat",
                                                    mfrom=PUPPET)
                msg["id"] = "id\x01"
                w.component.xmpp.send(msg, use_filters=False)
                await w.server.settle()
            assert w.server.error is None
            sent = one(w.new()[-1:], "message", "groupchat", ROOM)
            assert (text_of(sent, f"{{{NS}}}body"), sent.get("id")) == ("rawbody", "id")
            assert len(guard.records) == 1  # and it says that a builder missed a field
        finally:
            await close(w)
    asyncio.run(run())


def test_a_room_that_is_no_jid_is_refused_not_remembered() -> None:
    async def run() -> None:
        w = await connected()
        try:
            puppet = connector_puppet(w)
            await puppet.connect()
            with pytest.raises(SendError) as refused:
                await puppet.join("room\x00@muc.test")
            assert refused.value.retriable is False and puppet.chats() == []
        finally:
            await close(w)
    asyncio.run(run())
