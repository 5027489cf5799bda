"""The bridge's one XMPP stream: an external component (XEP-0114) on slixmpp.

It owns the component domain: the bot is the bare domain, each puppet a JID on it, so one
TCP connection carries every Matrix user. This module knows streams, reconnects and
stanzas; what the stanzas mean is the connector's business (it gets them parsed).

It is the only code that builds outgoing stanzas, and every user-given value goes through
`wire` on the way in (see wire.py: cleaned and capped text, checked JIDs and ids, and a guard
on every byte the stream writes). A value that cannot be sent raises `SendError`, permanent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from connectors.api import SendError
from connectors.xmpp import stanzas, wire
from connectors.xmpp.stanzas import Message, Presence, StanzaError

log = logging.getLogger("rapture.xmpp")
MAX_RECONNECT_DELAY = 60.0
ECHO_TIMEOUT = 10.0  # seconds to wait for a room to reflect (or refuse) a message
IQ_TIMEOUT = 10.0


class Component:
    def __init__(self, *, jid: str, secret: str, host: str, port: int, reconnect_delay: float,
                 on_online: Callable[[], None], on_offline: Callable[[str], None],
                 on_presence: Callable[[Presence], None], on_message: Callable[[Message], None]) -> None:
        self.jid = jid
        self.host = host
        self.port = port
        self.base_delay = reconnect_delay
        self._delay = reconnect_delay
        self._on_online = on_online
        self._on_offline = on_offline
        self._on_presence = on_presence
        self._on_message = on_message
        self.online = False
        self.last_error = ""
        self._stopping = False
        self._reconnect: asyncio.TimerHandle | None = None
        # (our JID, stanza id) -> future: resolved by the room's echo, failed by an error reply
        self._echoes: dict[tuple[str, str], asyncio.Future[None]] = {}
        self.xmpp = wire.GuardedComponentXMPP(jid, secret, host, port)
        self.xmpp.register_plugin("xep_0030")  # disco#info answers
        self.xmpp.register_plugin("xep_0199")  # answers pings
        ns = self.xmpp.default_ns
        self.xmpp.register_handler(Callback("RapturePresence", MatchXPath(f"{{{ns}}}presence"), self._presence))
        self.xmpp.register_handler(Callback("RaptureMessage", MatchXPath(f"{{{ns}}}message"), self._message))
        self.xmpp.add_event_handler("session_start", self._session_start)
        self.xmpp.add_event_handler("disconnected", self._disconnected)
        self.xmpp.add_event_handler("connection_failed", self._connection_failed)
        self.xmpp.add_event_handler("stream_error", self._stream_error)

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
        self.xmpp.connect(self.host, self.port)

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the stream once what is queued (goodbye presences) has gone out."""
        self._stopping = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None
        self.xmpp.cancel_connection_attempt()
        self._fail_echoes("the bridge is shutting down")
        try:
            await asyncio.wait_for(asyncio.ensure_future(self.xmpp.disconnect(wait=2.0)), timeout)
        except Exception as exc:  # noqa: BLE001 - stopping must not raise
            log.debug("XMPP disconnect: %s", exc)
            self.xmpp.abort()
        self.online = False

    def _session_start(self, _event: Any) -> None:
        log.info("XMPP component %s connected to %s:%d", self.jid, self.host, self.port)
        self.online = True
        self.last_error = ""
        self._delay = self.base_delay
        self._on_online()

    def _disconnected(self, reason: Any) -> None:
        was_online, self.online = self.online, False
        self._fail_echoes("connection lost")
        if was_online:
            log.warning("XMPP component disconnected: %s", reason or "connection closed")
            self._on_offline(str(reason or "connection closed"))
        self._schedule_reconnect()

    def _connection_failed(self, error: Any) -> None:
        self.last_error = str(error)
        log.warning("XMPP component cannot connect to %s:%d: %s", self.host, self.port, error)
        # slixmpp would retry on its own schedule (up to 5 minutes apart); ours is bounded.
        self.xmpp.cancel_connection_attempt()
        self._schedule_reconnect()

    def _stream_error(self, error: Any) -> None:
        self.last_error = f"stream error: {error['condition'] if hasattr(error, '__getitem__') else error}"
        log.error("XMPP %s (wrong component secret or domain?)", self.last_error)

    def _schedule_reconnect(self) -> None:
        if self._stopping or self._reconnect is not None:
            return
        delay = self._delay * random.uniform(1.0, 1.25)
        self._delay = min(self._delay * 2, MAX_RECONNECT_DELAY)
        log.info("XMPP component reconnecting in %.1f s", delay)
        self._reconnect = asyncio.get_running_loop().call_later(delay, self._reconnect_now)

    def _reconnect_now(self) -> None:
        self._reconnect = None
        if not self._stopping and not self.online:
            self.xmpp.connect(self.host, self.port)

    # -- incoming --------------------------------------------------------------------------------
    def _presence(self, stanza: Any) -> None:
        try:
            self._on_presence(stanzas.parse_presence(stanza.xml))
        except Exception:
            log.exception("handling presence %s", stanza)

    def _message(self, stanza: Any) -> None:
        try:
            message = stanzas.parse_message(stanza.xml)
            self._resolve_echo(message)
            self._on_message(message)
        except Exception:
            log.exception("handling message %s", stanza)

    def _resolve_echo(self, m: Message) -> None:
        to = m.to.split("/", 1)[0]
        future = self._echoes.get((to, m.id))
        if future is None and m.type == "groupchat" and m.subject is not None and not m.body:
            # A room rebuilds subject changes when it broadcasts them: the id is not kept.
            future = self._echoes.get((to, _subject_key(m.from_bare, m.subject)))
        if future is None or future.done():
            return
        if m.type == "error":
            error = m.error or StanzaError("cancel", "undefined-condition")
            future.set_exception(SendError(f"refused by the XMPP server: {error.describe()}",
                                           retriable=error.type == "wait"))
        elif m.type == "groupchat":
            future.set_result(None)

    def _fail_echoes(self, why: str) -> None:
        for future in self._echoes.values():
            if not future.done():
                future.set_exception(SendError(why, retriable=True))
        self._echoes.clear()

    # -- outgoing --------------------------------------------------------------------------------
    def _require_online(self) -> None:
        if not self.online:
            raise SendError("the bridge is not connected to the XMPP server", retriable=True)

    def send_presence(self, *, frm: str, to: str, type: str | None = None, status: str = "",
                      extra: ET.Element | None = None) -> None:
        """Send a presence (nothing while offline: rejoining resends what matters)."""
        frm, to, status = wire.jid(frm), wire.jid(to), wire.text(status, wire.MAX_REASON)
        if not self.online:
            return
        presence = self.xmpp.make_presence(pto=to, pfrom=frm, ptype=type, pstatus=status or None)
        if extra is not None:
            presence.append(extra)
        presence.send()

    def join(self, *, frm: str, room: str, nick: str, password: str = "") -> None:
        self.send_presence(frm=frm, to=f"{room}/{nick}",
                           extra=stanzas.muc_join_x(password=wire.text(password, wire.MAX_PASSWORD)))

    def leave(self, *, frm: str, room: str, nick: str, status: str = "") -> None:
        self.send_presence(frm=frm, to=f"{room}/{nick}", type="unavailable", status=status)

    async def send_message(self, *, frm: str, to: str, type: str, body: str | None = None,
                           subject: str | None = None, message_id: str = "", replace_id: str | None = None,
                           nick: str | None = None, wait_echo: bool = False) -> str:
        """Send a message; with `wait_echo`, return once the room reflected it (raise if it refused).

        An id (own or `replace_id`) that is no id is refused for good: an edit naming a message
        that cannot exist is not retried on every reconnect.
        """
        frm, to = wire.jid(frm), wire.jid(to)
        body = wire.xml_safe(body) if body is not None else None
        subject = wire.text(subject, wire.MAX_SUBJECT) if subject is not None else None
        message_id = wire.stanza_id(message_id) if message_id else uuid.uuid4().hex
        replace_id = wire.stanza_id(replace_id) if replace_id else None
        nick = wire.text(nick, wire.MAX_NICK) if nick else None
        self._require_online()
        msg = self.xmpp.make_message(mto=to, mbody=body, msubject=subject, mtype=type, mfrom=frm)
        msg["id"] = message_id
        msg.append(stanzas.origin_id_el(message_id))
        if replace_id:
            msg.append(stanzas.replace_el(replace_id))
        if nick:
            msg.append(stanzas.nick_el(nick))
        keys = [(frm, message_id)]
        if subject is not None and body is None:
            keys.append((frm, _subject_key(to, subject)))
        future: asyncio.Future[None] | None = None
        if wait_echo:
            future = asyncio.get_running_loop().create_future()
            for key in keys:
                self._echoes[key] = future
        try:
            msg.send()
            if future is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(future), ECHO_TIMEOUT)
                except TimeoutError:
                    # Handed to the server; the room is slow to answer. Not a failure we can prove.
                    log.warning("no echo of %s from %s within %.0f s", message_id, to, ECHO_TIMEOUT)
        finally:
            if future is not None:
                for key in keys:
                    self._echoes.pop(key, None)
        return message_id

    async def kick(self, *, frm: str, room: str, nick: str, reason: str = "") -> None:
        """Kick the occupant `nick` (XEP-0045 muc#admin role none) with a cleaned, capped reason."""
        await self.iq_set(frm=frm, to=room,
                          payload=stanzas.kick_query(nick, wire.text(reason, wire.MAX_REASON)))

    def bounce(self, m: Message, condition: str, text: str) -> None:
        """Answer a message with an error (never a message: two bridges must not talk forever)."""
        if not self.online or m.type == "error":
            return
        reply = self.xmpp.make_message(mto=m.frm, mfrom=m.to, mtype="error")
        reply["id"] = m.id
        reply["error"]["type"] = "cancel"
        reply["error"]["condition"] = condition
        reply["error"]["text"] = text
        reply.send()

    async def iq_set(self, *, frm: str, to: str, payload: ET.Element) -> None:
        frm, to = wire.jid(frm), wire.jid(to)
        self._require_online()
        iq = self.xmpp.make_iq_set(ito=to, ifrom=frm)
        iq.append(payload)
        try:
            await iq.send(timeout=IQ_TIMEOUT)
        except IqError as exc:
            error = stanzas.parse_error(exc.iq.xml) or StanzaError("cancel", "undefined-condition")
            raise SendError(error.describe(), retriable=False) from None
        except IqTimeout:
            raise SendError("the XMPP server did not answer", retriable=True) from None


def _subject_key(room: str, subject: str) -> str:
    # A parser reads CR and CRLF in text as LF: compare the subject as the room reflects it.
    subject = subject.replace("\r\n", "\n").replace("\r", "\n")
    return f"subject\0{room.lower()}\0{subject}"
