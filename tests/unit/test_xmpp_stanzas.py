"""Parsing stanzas into values, whichever stream namespace they arrive in."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from connectors.xmpp.stanzas import MucItem, StanzaError, kick_query, muc_join_x, parse_message, parse_presence


@pytest.mark.parametrize("ns", ["jabber:component:accept", "jabber:client"])
def test_message_fields(ns: str) -> None:
    m = parse_message(ET.fromstring(
        f'<message xmlns="{ns}" from="r@muc.test/Bob" to="a@matrix.test" type="groupchat" id="x1">'
        '<body>hi</body><subject>topic</subject>'
        '<replace xmlns="urn:xmpp:message-correct:0" id="x0"/><origin-id xmlns="urn:xmpp:sid:0" id="o1"/>'
        '<delay xmlns="urn:xmpp:delay" stamp="2024-01-02T03:04:05.500Z"/>'
        '<nick xmlns="http://jabber.org/protocol/nick">Bobby</nick></message>'))
    assert (m.from_bare, m.resource, m.type, m.id, m.body, m.subject) == ("r@muc.test", "Bob", "groupchat", "x1",
                                                                         "hi", "topic")
    assert (m.replace_id, m.origin_id, m.timestamp_ms, m.nick) == ("x0", "o1", 1704164645500, "Bobby")


def test_empty_subject_is_not_no_subject() -> None:
    m = parse_message(ET.fromstring('<message xmlns="jabber:client" from="r@muc.test" type="groupchat">'
                                    "<subject/></message>"))
    assert m.subject == "" and m.body is None
    assert parse_message(ET.fromstring('<message xmlns="jabber:client"><body/></message>')).subject is None


def test_errors() -> None:
    m = parse_message(ET.fromstring(
        '<message xmlns="jabber:component:accept" type="error" id="e"><error type="auth">'
        '<forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
        '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">no subject for you</text></error></message>'))
    assert m.error == StanzaError("auth", "forbidden", "no subject for you")
    assert m.error.describe() == "forbidden: no subject for you"


def test_muc_presence() -> None:
    p = parse_presence(ET.fromstring(
        '<presence xmlns="jabber:component:accept" from="r@muc.test/old" to="matrix.test" type="unavailable">'
        '<status>bye</status><x xmlns="http://jabber.org/protocol/muc#user">'
        '<item role="none" affiliation="member" jid="Carol@X.test/res" nick="new"><actor nick="Op"/>'
        '<reason>why</reason></item><status code="303"/><status code="110"/></x></presence>'))
    assert (p.room, p.nick, p.available, p.status, p.codes) == ("r@muc.test", "old", False, "bye",
                                                                frozenset({303, 110}))
    assert p.muc == MucItem(real_jid="carol@x.test", role="none", affiliation="member", nick="new",
                            reason="why", actor="Op")


def test_plain_presence_has_no_muc_part() -> None:
    p = parse_presence(ET.fromstring('<presence xmlns="jabber:client" from="a@x.test/r"/>'))
    assert p.muc is None and p.available


def test_built_elements() -> None:
    assert ET.tostring(muc_join_x()) == (b'<ns0:x xmlns:ns0="http://jabber.org/protocol/muc">'
                                         b'<ns0:history maxstanzas="0" /></ns0:x>')
    item = kick_query("bob", "spam").find("{http://jabber.org/protocol/muc#admin}item")
    assert item is not None and item.get("role") == "none" and item.get("nick") == "bob"
