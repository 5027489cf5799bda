"""Puppets and the connector's routing, with a fake component in place of the XMPP stream."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from connectors.api import (
    ChatKind,
    ChatRef,
    LoginInfo,
    LoginState,
    MessageKind,
    OutgoingMessage,
    RemoteMessage,
    RemoteNotice,
    RemoteUser,
    SendError,
)
from connectors.xmpp import XMPPConnector, puppet as puppet_module
from connectors.xmpp.stanzas import parse_message, parse_presence

NS = 'xmlns="jabber:component:accept"'
MUC_USER = "http://jabber.org/protocol/muc#user"
ROOM = "room@muc.test"


class FakeComponent:
    def __init__(self) -> None:
        self.online = True
        self.last_error = ""
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.refuse: str | None = None

    def join(self, **kw: Any) -> None:
        self.sent.append(("join", kw))

    def leave(self, **kw: Any) -> None:
        self.sent.append(("leave", kw))

    def send_presence(self, **kw: Any) -> None:
        self.sent.append(("presence", kw))

    async def send_message(self, **kw: Any) -> str:
        if self.refuse:
            raise SendError(self.refuse, retriable=False)
        self.sent.append(("message", kw))
        return kw.get("message_id") or "generated"

    def bounce(self, m: Any, condition: str, text: str) -> None:
        self.sent.append(("bounce", {"to": m.frm, "frm": m.to, "condition": condition}))

    async def iq_set(self, **kw: Any) -> None:
        self.sent.append(("iq", kw))

    async def kick(self, **kw: Any) -> None:
        self.sent.append(("kick", kw))

    async def stop(self) -> None:
        self.online = False


class FakeContext:
    network = "xmpp"

    def __init__(self) -> None:
        self.events: list = []
        self.states: list = []
        self.notices: list = []
        self.renamed: list = []

    def queue_remote_event(self, event: Any) -> None:
        self.events.append(event)

    def login_state(self, mxid: str, state: LoginState, message: str = "") -> None:
        self.states.append((mxid, state))

    def login_renamed(self, mxid: str, name: str) -> None:
        self.renamed.append((mxid, name))

    def is_puppet(self, mxid: str) -> bool:
        return True

    def notify_user(self, mxid: str, text: str) -> None:
        self.notices.append((mxid, text))


def make() -> tuple[XMPPConnector, FakeComponent, FakeContext]:
    ctx = FakeContext()
    connector = XMPPConnector("xmpp", {"host": "127.0.0.1", "component_domain": "matrix.test",
                                       "component_secret": "s", "muc_domain": "muc.test",
                                       "domain": "x.test"}, ctx)
    component = FakeComponent()
    connector.component = component  # type: ignore[assignment]
    return connector, component, ctx


def login(localpart: str = "alice") -> LoginInfo:
    return LoginInfo(mxid=f"@{localpart}:hs", localpart=localpart, displayname=localpart.title())


def self_presence(nick: str, to: str = "alice@matrix.test", **extra: str) -> ET.Element:
    return ET.fromstring(
        f'<presence {NS} from="{ROOM}/{nick}" to="{to}"><x xmlns="{MUC_USER}">'
        f'<item role="participant" affiliation="none" jid="{to}"/><status code="110"/></x></presence>')


def text(body: str, event_id: str = "$e1") -> OutgoingMessage:
    return OutgoingMessage(kind=MessageKind.TEXT, text=body, event_id=event_id)


async def test_puppet_joins_with_its_nick_and_sends_once_joined() -> None:
    connector, component, ctx = make()
    puppet = connector.make_client(login())
    assert puppet.name == "alice[m]" and connector.make_client(login()) is puppet
    await puppet.join(ROOM)
    await puppet.connect()
    assert ("@alice:hs", LoginState.CONNECTED) in ctx.states and puppet.connected
    assert component.sent == [("join", {"frm": "alice@matrix.test", "room": ROOM, "nick": "alice[m]",
                                        "password": ""})]
    assert connector.puppet_of(ROOM, "alice[m]", None) == "@alice:hs"  # ours from the join on

    sending = asyncio.create_task(puppet.send(ChatRef(ROOM), text("hi")))
    await asyncio.sleep(0.05)
    assert not sending.done()  # waits for the join
    connector._presence(parse_presence(self_presence("alice[m]")))
    await asyncio.wait_for(sending, 1)
    kind, sent = component.sent[-1]
    assert kind == "message" and sent["type"] == "groupchat" and sent["body"] == "hi"
    assert sent["message_id"] == "$e1" and sent["wait_echo"] is True


async def test_nick_conflicts_get_a_variant_and_other_errors_fail_the_send() -> None:
    connector, component, ctx = make()
    puppet = connector.make_client(login())
    await puppet.connect()
    await puppet.join(ROOM)
    conflict = ET.fromstring(
        f'<presence {NS} from="{ROOM}/alice[m]" to="alice@matrix.test" type="error">'
        '<x xmlns="http://jabber.org/protocol/muc"/><error type="cancel">'
        '<conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></presence>')
    connector._presence(parse_presence(conflict))
    assert component.sent[-1][1]["nick"] == "alice[m]_"

    forbidden = ET.fromstring(
        f'<presence {NS} from="{ROOM}/alice[m]_" to="alice@matrix.test" type="error"><error type="auth">'
        '<forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
        '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">banned</text></error></presence>')
    connector._presence(parse_presence(forbidden))
    assert ctx.notices == [("@alice:hs", f"xmpp: could not join {ROOM}: forbidden: banned")]
    # A send tries the join once more; the room's refusal fails it for good.
    sending = asyncio.create_task(puppet.send(ChatRef(ROOM), text("hi")))
    await asyncio.sleep(0.05)
    assert component.sent[-1][0] == "join"
    connector._presence(parse_presence(forbidden))
    with pytest.raises(SendError) as failed:
        await asyncio.wait_for(sending, 1)
    assert not failed.value.retriable


async def test_a_join_that_never_completes_is_a_retriable_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(puppet_module, "JOIN_TIMEOUT", 0.1)
    connector, _component, _ctx = make()
    puppet = connector.make_client(login())
    await puppet.connect()
    with pytest.raises(SendError) as failed:
        await puppet.send(ChatRef(ROOM), text("hi"))
    assert failed.value.retriable


async def test_offline_sends_are_retriable_and_reconnects_rejoin() -> None:
    connector, component, ctx = make()
    puppet = connector.make_client(login())
    await puppet.join(ROOM)
    await puppet.connect()
    component.online = False
    connector._offline("gone")
    assert ctx.states[-1] == ("@alice:hs", LoginState.DISCONNECTED)
    with pytest.raises(SendError) as failed:
        await puppet.send(ChatRef(ROOM), text("hi"))
    assert failed.value.retriable
    component.online = True
    component.sent.clear()
    connector.open_rooms.add(ROOM)
    connector._online()
    assert [(k, kw["frm"]) for k, kw in component.sent] == [("join", "matrix.test"), ("join", "alice@matrix.test")]


async def test_dms_both_ways() -> None:
    connector, component, ctx = make()
    puppet = connector.make_client(login())
    await puppet.connect()
    await puppet.send(ChatRef("bob@x.test", ChatKind.DM, "@alice:hs"), text("psst"))
    kind, sent = component.sent[-1]
    assert sent["to"] == "bob@x.test" and sent["type"] == "chat" and sent["body"] == "psst"

    incoming = ET.fromstring(f'<message {NS} from="Bob@X.test/phone" to="alice@matrix.test" type="chat" id="b1">'
                             '<body>/me waves back</body><nick xmlns="http://jabber.org/protocol/nick">Bobby</nick>'
                             '</message>')
    connector._message(parse_message(incoming))
    assert ctx.events == [RemoteMessage(chat=ChatRef("bob@x.test", ChatKind.DM, "@alice:hs"),
                                        sender=RemoteUser("bob@x.test", "Bobby"), kind=MessageKind.EMOTE,
                                        text="waves back", remote_id="b1")]


async def test_muc_private_messages_use_the_occupant_jid() -> None:
    connector, _component, ctx = make()
    connector.make_client(login())
    pm = ET.fromstring(f'<message {NS} from="{ROOM}/Carol" to="alice@matrix.test" type="chat" id="c1">'
                       f'<body>hi</body><x xmlns="{MUC_USER}"/></message>')
    connector._message(parse_message(pm))
    (event,) = ctx.events
    assert event.chat == ChatRef(f"{ROOM}/Carol", ChatKind.DM, "@alice:hs")
    assert event.sender == RemoteUser(f"{ROOM}/Carol", "Carol")


async def test_undeliverable_dms_are_reported_in_the_dm() -> None:
    connector, _component, ctx = make()
    connector.make_client(login())
    error = ET.fromstring(f'<message {NS} from="nobody@x.test" to="alice@matrix.test" type="error" id="$e1">'
                          '<error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
                          '</error></message>')
    connector._message(parse_message(error))
    assert ctx.events == [RemoteNotice(chat=ChatRef("nobody@x.test", ChatKind.DM, "@alice:hs"),
                                       text="A message to nobody@x.test was not delivered: item-not-found.")]


async def test_edits_use_the_original_event_id_when_the_contract_has_edit_of() -> None:
    connector, component, _ctx = make()
    puppet = connector.make_client(login())
    await puppet.connect()

    message = text("fixed", "$e2")
    # The proposed `OutgoingMessage.edit_of` does not exist yet: a stand-in object carries it.
    stand_in = type("Edited", (), {"kind": MessageKind.TEXT, "text": "fixed", "html": None, "mentions": {},
                                   "event_id": "$e2", "sender_name": "", "edit_of": "$e1"})()
    await puppet.send(ChatRef("bob@x.test", ChatKind.DM, "@alice:hs"), stand_in)  # type: ignore[arg-type]
    assert component.sent[-1][1]["replace_id"] == "$e1" and component.sent[-1][1]["message_id"] == "$e2"
    await puppet.send(ChatRef("bob@x.test", ChatKind.DM, "@alice:hs"), message)
    assert component.sent[-1][1]["replace_id"] is None


async def test_relay_speaks_for_users_without_a_puppet() -> None:
    connector, component, _ctx = make()
    with pytest.raises(SendError):
        await connector.relay(ChatRef(ROOM), text("hi"))  # the bot is not in the room
    connector.tracker.joining(ROOM, "rapture")
    connector._presence(parse_presence(self_presence("rapture", to="matrix.test")))
    message = OutgoingMessage(kind=MessageKind.EMOTE, text="waves", sender_name="Relayer", event_id="$r")
    await connector.relay(ChatRef(ROOM), message)
    assert component.sent[-1][1]["body"] == "* Relayer waves"
    await connector.relay(ChatRef(ROOM), OutgoingMessage(kind=MessageKind.TEXT, text="hi", sender_name="Relayer"))
    assert component.sent[-1][1]["body"] == "<Relayer> hi" and component.sent[-1][1]["frm"] == "matrix.test"


async def test_stop_says_goodbye_for_puppets_and_the_bot() -> None:
    connector, component, _ctx = make()
    puppet = connector.make_client(login())
    await puppet.join(ROOM)
    await puppet.connect()
    connector._presence(parse_presence(self_presence("alice[m]")))
    connector.tracker.joining(ROOM, "rapture")
    connector._presence(parse_presence(self_presence("rapture", to="matrix.test")))
    component.sent.clear()
    await connector.stop()
    assert [(k, kw["frm"]) for k, kw in component.sent] == [("leave", "alice@matrix.test"), ("leave", "matrix.test")]


async def test_leftover_occupants_on_our_domain_are_removed_when_the_bot_joins() -> None:
    connector, component, _ctx = make()
    puppet = connector.make_client(login())
    await puppet.join(ROOM)
    await puppet.connect()
    connector.tracker.joining(ROOM, "rapture")
    component.sent.clear()
    for nick, jid in (("alice[m]", "alice@matrix.test"), ("gone[m]", "gone@matrix.test"), ("bob", "bob@x.test")):
        other = ET.fromstring(f'<presence {NS} from="{ROOM}/{nick}" to="matrix.test"><x xmlns="{MUC_USER}">'
                              f'<item role="participant" affiliation="none" jid="{jid}/r"/></x></presence>')
        connector._presence(parse_presence(other))
    connector._presence(parse_presence(self_presence("rapture", to="matrix.test")))
    assert component.sent == [("leave", {"frm": "gone@matrix.test", "room": ROOM, "nick": "gone[m]",
                                         "status": "Gone"})]


async def test_messages_to_unknown_puppets_bounce() -> None:
    connector, component, ctx = make()
    dm = ET.fromstring(f'<message {NS} from="bob@x.test/p" to="nobody@matrix.test" type="chat" id="z">'
                       '<body>hello?</body></message>')
    connector._message(parse_message(dm))
    assert component.sent == [("bounce", {"to": "bob@x.test/p", "frm": "nobody@matrix.test",
                                          "condition": "recipient-unavailable"})]
    assert ctx.events == []
