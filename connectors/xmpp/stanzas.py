"""Stanzas as plain values: parsing what arrives, building what we send.

Parsing works on the ElementTree element of a stanza, so it does not depend on which
slixmpp stanza plugins are registered, and tests can feed XML text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

from connectors.xmpp.jids import parse

NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
NS_DELAY = "urn:xmpp:delay"
NS_CORRECT = "urn:xmpp:message-correct:0"
NS_SID = "urn:xmpp:sid:0"
NS_NICK = "http://jabber.org/protocol/nick"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

# MUC status codes (XEP-0045 §15.6)
SELF = 110
NICK_CHANGED = 303
KICKED = 307
BANNED = 301
NICK_ASSIGNED = 210
REMOVED_AFFILIATION = 321
REMOVED_MEMBERS_ONLY = 322
REMOVED_SHUTDOWN = 332


@dataclass(frozen=True, slots=True)
class StanzaError:
    type: str  # cancel, modify, auth, wait
    condition: str  # e.g. conflict, forbidden, not-acceptable
    text: str = ""

    def describe(self) -> str:
        return f"{self.condition}: {self.text}" if self.text else self.condition


@dataclass(frozen=True, slots=True)
class MucItem:
    real_jid: str | None  # bare, normalised; None when the room does not show it
    role: str = ""
    affiliation: str = ""
    nick: str = ""  # the new nick of a 303 nick change
    reason: str = ""
    actor: str = ""  # nick of who kicked or banned


@dataclass(frozen=True, slots=True)
class Presence:
    frm: str
    to: str
    type: str  # "" (available), "unavailable", "error", "subscribe", ...
    status: str = ""
    muc: MucItem | None = None  # present when the presence carries muc#user
    codes: frozenset[int] = frozenset()
    error: StanzaError | None = None

    @property
    def room(self) -> str:
        jid = parse(self.frm)
        return jid.bare if jid is not None else ""

    @property
    def nick(self) -> str:
        return self.frm.split("/", 1)[1] if "/" in self.frm else ""

    @property
    def available(self) -> bool:
        return self.type in ("", "available")


@dataclass(frozen=True, slots=True)
class Message:
    frm: str
    to: str
    type: str  # chat, groupchat, normal, headline, error
    id: str = ""
    body: str | None = None
    subject: str | None = None  # None when there is no <subject/>; "" for an empty one
    replace_id: str | None = None  # XEP-0308: the id of the message this one corrects
    origin_id: str | None = None  # XEP-0359
    timestamp_ms: int | None = None  # XEP-0203 delay
    nick: str | None = None  # XEP-0172 user nickname
    muc_user: bool = False  # carries <x xmlns=muc#user/> (MUC private message, invite...)
    error: StanzaError | None = None

    @property
    def from_bare(self) -> str:
        jid = parse(self.frm)
        return jid.bare if jid is not None else ""

    @property
    def resource(self) -> str:
        return self.frm.split("/", 1)[1] if "/" in self.frm else ""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ns(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _child(elem: ET.Element, ns: str, name: str) -> ET.Element | None:
    return elem.find(f"{{{ns}}}{name}")


def _text_child(elem: ET.Element, name: str) -> ET.Element | None:
    """A direct child in the stanza's own namespace (jabber:client or jabber:component:accept)."""
    for child in elem:
        if _local(child.tag) == name and _ns(child.tag) in ("", "jabber:client", "jabber:component:accept",
                                                            _ns(elem.tag)):
            return child
    return None


def parse_error(elem: ET.Element) -> StanzaError | None:
    err = _text_child(elem, "error")
    if err is None:
        return None
    condition, text = "undefined-condition", ""
    for child in err:
        if _ns(child.tag) != NS_STANZAS:
            continue
        if _local(child.tag) == "text":
            text = child.text or ""
        else:
            condition = _local(child.tag)
    return StanzaError(err.get("type", ""), condition, text)


def parse_stamp(stamp: str) -> int | None:
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _bare(value: str | None) -> str | None:
    if not value:
        return None
    jid = parse(value)
    return jid.bare if jid is not None else None


def parse_presence(elem: ET.Element) -> Presence:
    x = _child(elem, NS_MUC_USER, "x")
    muc = None
    codes: frozenset[int] = frozenset()
    if x is not None:
        codes = frozenset(int(s.get("code", "0")) for s in x.findall(f"{{{NS_MUC_USER}}}status")
                          if (s.get("code") or "").isdigit())
        item = _child(x, NS_MUC_USER, "item")
        if item is not None:
            reason = _child(item, NS_MUC_USER, "reason")
            actor = _child(item, NS_MUC_USER, "actor")
            muc = MucItem(
                real_jid=_bare(item.get("jid")), role=item.get("role", ""),
                affiliation=item.get("affiliation", ""), nick=item.get("nick", ""),
                reason=(reason.text or "") if reason is not None else "",
                actor=(actor.get("nick") or "") if actor is not None else "",
            )
        else:
            muc = MucItem(real_jid=None)
    status = _text_child(elem, "status")
    return Presence(
        frm=elem.get("from", ""), to=elem.get("to", ""), type=elem.get("type", ""),
        status=(status.text or "") if status is not None else "", muc=muc, codes=codes,
        error=parse_error(elem) if elem.get("type") == "error" else None,
    )


def parse_message(elem: ET.Element) -> Message:
    body = _text_child(elem, "body")
    subject = _text_child(elem, "subject")
    replace = _child(elem, NS_CORRECT, "replace")
    origin = _child(elem, NS_SID, "origin-id")
    delay = _child(elem, NS_DELAY, "delay")
    nick = _child(elem, NS_NICK, "nick")
    return Message(
        frm=elem.get("from", ""), to=elem.get("to", ""), type=elem.get("type", "normal") or "normal",
        id=elem.get("id", ""),
        body=(body.text or "") if body is not None else None,
        subject=(subject.text or "") if subject is not None else None,
        replace_id=replace.get("id") if replace is not None else None,
        origin_id=origin.get("id") if origin is not None else None,
        timestamp_ms=parse_stamp(delay.get("stamp", "")) if delay is not None else None,
        nick=(nick.text or None) if nick is not None else None,
        muc_user=_child(elem, NS_MUC_USER, "x") is not None,
        error=parse_error(elem) if elem.get("type") == "error" else None,
    )


# -- building --------------------------------------------------------------------------------
def muc_join_x(*, password: str = "") -> ET.Element:
    """`<x xmlns=muc>` for a join presence: no history (the bridge is there to see it live)."""
    x = ET.Element(f"{{{NS_MUC}}}x")
    ET.SubElement(x, f"{{{NS_MUC}}}history", {"maxstanzas": "0"})
    if password:
        ET.SubElement(x, f"{{{NS_MUC}}}password").text = password
    return x


def replace_el(message_id: str) -> ET.Element:
    return ET.Element(f"{{{NS_CORRECT}}}replace", {"id": message_id})


def origin_id_el(message_id: str) -> ET.Element:
    return ET.Element(f"{{{NS_SID}}}origin-id", {"id": message_id})


def nick_el(nick: str) -> ET.Element:
    el = ET.Element(f"{{{NS_NICK}}}nick")
    el.text = nick
    return el


def kick_query(nick: str, reason: str) -> ET.Element:
    query = ET.Element(f"{{{NS_MUC_ADMIN}}}query")
    item = ET.SubElement(query, f"{{{NS_MUC_ADMIN}}}item", {"nick": nick, "role": "none"})
    if reason:
        ET.SubElement(item, f"{{{NS_MUC_ADMIN}}}reason").text = reason
    return query
