"""The XMPP `NetworkConnector`: configuration, the component stream, the bot occupant, puppets.

Mapping (see docs in rooms.py and puppet.py):
- MUC (XEP-0045) <-> channel portal; chat id = bare room JID, lower-cased.
- occupants <-> ghosts; remote id = the real bare JID when the room shows it, else the
  occupant JID `room@muc/nick`; presence <-> membership, nick change <-> rename,
  subject <-> topic, `/me` <-> emote, XEP-0308 corrections <-> edits (once the contract has
  `RemoteEdit` / `OutgoingMessage.edit_of`; until then `* text`).
- A Matrix user <-> a puppet JID `<localpart>@<component_domain>`; 1:1 chats with it are DMs
  (`ChatRef(<bare jid>, DM, <mxid>)`; a MUC private message uses the occupant JID).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from connectors import api
from connectors.api import (
    ChatKind,
    ChatRef,
    ConfigKey,
    ConnectorInfo,
    LoginInfo,
    MessageKind,
    NetworkClient,
    NetworkConnector,
    OutgoingMessage,
    RemoteEvent,
    RemoteNotice,
    SendError,
)
from connectors.xmpp.component import Component
from connectors.xmpp.jids import (
    clean_nick,
    domain_error,
    nick_template_error,
    normalize_room,
    normalize_user,
    parse,
    puppet_jid,
)
from connectors.xmpp.puppet import XMPPPuppet
from connectors.xmpp.rooms import RoomTracker
from connectors.xmpp.stanzas import Message, Presence
from connectors.xmpp.text import render_body

log = logging.getLogger("rapture.xmpp")
NICK_GRACE = 30.0  # seconds a puppet's old nick still counts as ours (late presences)
BOT_REJOIN_DELAY = 10.0


def _port(value: int) -> str | None:
    return None if 0 < value < 65536 else f"{value} is not a TCP port (1-65535)"


def _host(value: str) -> str | None:
    return None if value.strip() and " " not in value else "must be a host name or address"


def _optional_domain(value: str) -> str | None:
    return domain_error(value) if value else None


def _secret(value: str) -> str | None:
    return None if value else "must not be empty"


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _nick(value: str) -> str | None:
    return None if clean_nick(value, "") == value else f"{value!r} is not a usable MUC nick"


class XMPPConnector(NetworkConnector):
    info: ClassVar[ConnectorInfo] = ConnectorInfo(name="xmpp", display_name="XMPP")
    supports_edits: ClassVar[bool] = True

    @classmethod
    def config_schema(cls) -> Sequence[ConfigKey]:
        return (
            ConfigKey(path="host", kind=str, required=True, check=_host,
                      doc="XMPP server that accepts the bridge's component (XEP-0114)"),
            ConfigKey(path="component_port", kind=int, default=5347, check=_port,
                      doc="the server's component port"),
            ConfigKey(path="component_domain", kind=str, required=True, check=domain_error,
                      doc="the domain the bridge's component owns; puppets are <localpart>@ it"),
            ConfigKey(path="component_secret", kind=str, required=True, check=_secret, secret=True,
                      doc="the component's shared secret, as in the server's config"),
            ConfigKey(path="muc_domain", kind=str, default="", check=_optional_domain,
                      doc="MUC service for room names given without a domain (#xmpp_lobby)"),
            ConfigKey(path="domain", kind=str, default="", check=_optional_domain,
                      doc="the server's user domain, for user names given without one"),
            ConfigKey(path="bot_nick", kind=str, default="rapture", check=_nick,
                      doc="the nick of the bridge's own occupant (listens in every room, relays)"),
            ConfigKey(path="nick_template", kind=str, default="{localpart}[m]",
                      check=nick_template_error,
                      doc="MUC nick of a Matrix user's puppet; {localpart} and {displayname}"),
            ConfigKey(path="reconnect_delay", kind=(int, float), default=1.0, check=_positive,
                      doc="seconds before the first reconnect attempt; doubles up to a minute"),
        )

    def __init__(self, network: str, options: dict[str, Any], ctx: Any = None) -> None:
        super().__init__(network, options, ctx)
        self.component_domain = str(options.get("component_domain") or "").lower()
        self.bot_jid = self.component_domain
        self.component: Component = None  # type: ignore[assignment]  # made in start()
        self.edit_event = api.RemoteEdit
        self.tracker = RoomTracker(emit=self.emit, component_domain=self.component_domain,
                                   puppet_of=self.puppet_of, edit_event=self.edit_event,
                                   on_bot_removed=self._bot_removed)
        self.open_rooms: set[str] = set()
        self._puppets: dict[str, XMPPPuppet] = {}  # MXID -> puppet
        self._by_jid: dict[str, XMPPPuppet] = {}  # puppet bare JID -> puppet
        self._nicks: dict[tuple[str, str], str] = {}  # (room, nick) -> MXID of the puppet
        self._timers: set[asyncio.TimerHandle] = set()
        self._bot_attempts: dict[str, int] = {}

    # -- helpers -------------------------------------------------------------------------------
    @property
    def online(self) -> bool:
        return self.component is not None and self.component.online

    def emit(self, event: RemoteEvent) -> None:
        if self.ctx is not None:
            self.ctx.queue_remote_event(event)

    def puppet_of(self, room: str, nick: str, real_jid: str | None) -> str | None:
        if real_jid is not None:
            puppet = self._by_jid.get(real_jid)
            return puppet.mxid if puppet is not None else None
        return self._nicks.get((room, nick))

    def remember_nick(self, room: str, nick: str, mxid: str) -> None:
        """Count `nick` in `room` as the puppet's (from the moment it asks to join with it)."""
        existing = self.tracker.occupant(room, nick)
        real = parse(existing.real_jid) if existing is not None and existing.real_jid else None
        if (existing is None or self._nicks.get((room, nick)) == mxid
                or (real is not None and real.domain == self.component_domain)):
            self._nicks[(room, nick)] = mxid

    def forget_nick(self, room: str, nick: str, mxid: str) -> None:
        """Stop counting `nick` as the puppet's, after a grace period for late presences."""
        def forget() -> None:
            self._timers.discard(handle)
            puppet = self._puppets.get(mxid)
            mem = puppet.rooms.get(room) if puppet is not None else None
            if mem is not None and mem.nick == nick and (puppet is not None and puppet.active):
                return  # it is the puppet's nick again
            if self._nicks.get((room, nick)) == mxid:
                del self._nicks[(room, nick)]

        handle = asyncio.get_running_loop().call_later(NICK_GRACE, forget)
        self._timers.add(handle)

    # -- NetworkConnector ------------------------------------------------------------------------
    async def start(self) -> None:
        o = self.options
        self.component = Component(
            jid=self.bot_jid, secret=str(o["component_secret"]), host=str(o["host"]),
            port=int(o.get("component_port") or 5347), reconnect_delay=float(o.get("reconnect_delay") or 1.0),
            on_online=self._online, on_offline=self._offline,
            on_presence=self._presence, on_message=self._message,
        )
        self.component.start()

    async def stop(self) -> None:
        try:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            if self.component is None:
                return
            if self.online:
                for puppet in list(self._puppets.values()):
                    puppet.leave_all("Bridge shutting down")
                for room, state in list(self.tracker.rooms.items()):
                    try:
                        self.component.leave(frm=self.bot_jid, room=room, nick=state.nick,
                                             status="Bridge shutting down")
                    except SendError as exc:  # the other rooms still get their goodbye
                        log.warning("%s: the bot cannot leave %s: %s", self.network, room, exc)
            await self.component.stop()
        except Exception:
            log.exception("stopping the XMPP connector")

    def status(self) -> str:
        if self.component is None:
            return "not started"
        if self.online:
            return f"connected as {self.bot_jid} ({len(self.tracker.rooms)} rooms)"
        return "disconnected" + (f" ({self.component.last_error})" if self.component.last_error else "")

    def normalize_chat(self, name: str) -> str | None:
        return normalize_room(name, str(self.options.get("muc_domain") or ""))

    def normalize_user(self, name: str) -> str | None:
        return normalize_user(name, str(self.options.get("domain") or ""))

    async def open_chat(self, chat_id: str) -> None:
        self.open_rooms.add(chat_id)
        if self.online and chat_id not in self.tracker.rooms:
            self._bot_join(chat_id)

    async def close_chat(self, chat_id: str) -> None:
        self.open_rooms.discard(chat_id)
        state = self.tracker.rooms.get(chat_id)
        if state is not None:
            self.component.leave(frm=self.bot_jid, room=chat_id, nick=state.nick, status="Unlinked from Matrix")
            self.tracker.forget(chat_id)

    def make_client(self, login: LoginInfo) -> NetworkClient:
        existing = self._puppets.get(login.mxid)
        if existing is not None:
            return existing
        jid = puppet_jid(login.localpart, self.component_domain)
        if jid is None:
            raise ValueError(f"no JID can be made for {login.mxid}")
        template = self.options.get("nick_template") or "{localpart}[m]"
        wanted = login.nick or template.format(localpart=login.localpart, displayname=login.displayname)
        puppet = XMPPPuppet(self, login, jid, clean_nick(wanted, login.localpart))
        self._puppets[login.mxid] = puppet
        self._by_jid[jid] = puppet
        return puppet

    def drop_client(self, mxid: str) -> None:
        puppet = self._puppets.pop(mxid, None)
        if puppet is not None:
            self._by_jid.pop(puppet.jid, None)

    async def relay(self, chat: ChatRef, message: OutgoingMessage) -> None:
        if chat.kind is not ChatKind.CHANNEL:
            raise SendError("private chats are not relayed", retriable=False)
        if not self.online or not self.tracker.joined(chat.id):
            raise SendError("the bridge is not in this XMPP room", retriable=True)
        if message.kind is MessageKind.EMOTE:
            plain = OutgoingMessage(kind=MessageKind.TEXT, text=message.text, html=message.html,
                                    mentions=message.mentions, event_id=message.event_id)
            body = render_body(plain, prefix=f"* {message.sender_name} ")
        else:
            body = render_body(message, prefix=f"<{message.sender_name}> ")
        await self.component.send_message(frm=self.bot_jid, to=chat.id, type="groupchat", body=body,
                                          message_id=message.event_id,
                                          replace_id=getattr(message, "edit_of", None) or None, wait_echo=True)

    # -- the stream ------------------------------------------------------------------------------
    def _online(self) -> None:
        self._bot_attempts.clear()
        for room in sorted(self.open_rooms):
            self._bot_join(room)
        for puppet in list(self._puppets.values()):
            puppet.on_online()

    def _offline(self, reason: str) -> None:
        self.tracker.reset()
        for puppet in list(self._puppets.values()):
            puppet.on_offline(reason)

    def _bot_join(self, room: str) -> None:
        attempt = self._bot_attempts.get(room, 0)
        base = str(self.options.get("bot_nick") or "rapture")
        nick = base + "_" * attempt
        try:
            self.component.join(frm=self.bot_jid, room=room, nick=nick)
        except SendError as exc:  # one unusable room id must not stop the others from joining
            log.warning("%s: the bot cannot join %s: %s", self.network, room, exc)
            return
        self.tracker.joining(room, nick)

    def _bot_join_error(self, p: Presence) -> None:
        room = p.room
        if room not in self.open_rooms:
            return
        self.tracker.forget(room)
        condition = p.error.condition if p.error else "undefined-condition"
        attempt = self._bot_attempts.get(room, 0) + 1
        self._bot_attempts[room] = attempt
        if condition == "conflict" and attempt <= 5:
            self._bot_join(room)
            return
        why = p.error.describe() if p.error else condition
        log.warning("%s: the bot cannot join %s: %s", self.network, room, why)
        self.emit(RemoteNotice(chat=ChatRef(room), text=f"The bridge cannot join {room}: {why}"))

    def _bot_removed(self, room: str, why: str) -> None:
        self.emit(RemoteNotice(chat=ChatRef(room), text=f"The bridge was {why}; it will try to rejoin."))

        def rejoin() -> None:
            self._timers.discard(handle)
            if self.online and room in self.open_rooms and room not in self.tracker.rooms:
                self._bot_join(room)

        handle = asyncio.get_running_loop().call_later(BOT_REJOIN_DELAY, rejoin)
        self._timers.add(handle)

    def _presence(self, p: Presence) -> None:
        to = _bare(p.to)
        if to == self.bot_jid:
            if p.type == "error":
                self._bot_join_error(p)
            else:
                was_joined = self.tracker.joined(p.room)
                self.tracker.presence(p)
                if not was_joined and self.tracker.joined(p.room):
                    self._bot_joined(p.room)
            return
        puppet = self._by_jid.get(to)
        if puppet is not None:
            puppet.on_presence(p)

    def _bot_joined(self, room: str) -> None:
        """Occupants on our domain nobody here stands for are left over from a crash: remove them."""
        self._bot_attempts.pop(room, None)
        state = self.tracker.rooms[room]
        for nick, occ in list(state.occupants.items()):
            jid = parse(occ.real_jid) if occ.real_jid else None
            if jid is None or jid.domain != self.component_domain or occ.real_jid == self.bot_jid:
                continue
            puppet = self._by_jid.get(occ.real_jid or "")
            if puppet is not None and puppet.active and room in puppet.rooms:
                continue
            log.info("%s: removing leftover occupant %s (%s) from %s", self.network, nick, occ.real_jid, room)
            try:
                self.component.leave(frm=occ.real_jid or "", room=room, nick=nick, status="Gone")
            except SendError as exc:  # the next leftover still goes
                log.warning("%s: cannot remove %s from %s: %s", self.network, nick, room, exc)

    def _message(self, m: Message) -> None:
        to = _bare(m.to)
        if to == self.bot_jid:
            if m.type == "groupchat":
                self.tracker.message(m)
            return
        puppet = self._by_jid.get(to)
        if puppet is not None:
            puppet.on_message(m)
        elif m.type in ("chat", "normal") and m.body and self.online:
            # A JID on our domain that is no Matrix user we know (yet): say so, never drop silently.
            self.component.bounce(m, "recipient-unavailable",
                                  "This Matrix user is not reachable through the bridge right now.")


def _bare(jid: str) -> str:
    return jid.split("/", 1)[0].lower()
