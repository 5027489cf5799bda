"""A Matrix user's puppet: a JID on the bridge's component, as a `NetworkClient`.

The puppet has no connection of its own: it is "connected" while the component is. It joins
rooms as an occupant with its own JID and nick, sends as that occupant, and receives its
DMs. Room traffic is bridged from the bot's occupant (see rooms.py), never from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from connectors.api import (
    ChatKind,
    ChatRef,
    LoginInfo,
    LoginState,
    NetworkClient,
    OutgoingMessage,
    RemoteMessage,
    RemoteNotice,
    RemoteUser,
    SendError,
)
from connectors.xmpp import stanzas, wire
from connectors.xmpp.jids import clean_nick, normalize_user, parse
from connectors.xmpp.stanzas import Message, Presence
from connectors.xmpp.styling import styling_to_html
from connectors.xmpp.text import parse_body, render_body

if TYPE_CHECKING:
    from connectors.xmpp.connector import XMPPConnector

log = logging.getLogger("rapture.xmpp")
JOIN_TIMEOUT = 15.0  # seconds a send waits for the puppet's join to complete
MAX_NICK_ATTEMPTS = 5


@dataclass
class Membership:
    room: str
    nick: str
    password: str = ""
    joined: bool = False
    failed: str = ""
    attempts: int = 0
    waiter: asyncio.Future[None] | None = field(default=None, repr=False)

    def settle(self, error: SendError | None = None) -> None:
        if self.waiter is not None and not self.waiter.done():
            if error is None:
                self.waiter.set_result(None)
            else:
                self.waiter.set_exception(error)
                self.waiter.exception()  # retrieved: nobody may be waiting
        self.waiter = None


class XMPPPuppet(NetworkClient):
    def __init__(self, connector: XMPPConnector, login: LoginInfo, jid: str, nick: str) -> None:
        self.connector = connector
        self.mxid = login.mxid
        self.jid = jid
        self.nick = nick
        self.active = False  # connect() called and not disconnected since
        self.rooms: dict[str, Membership] = {}  # wanted rooms, joined or not

    # -- NetworkClient ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.nick

    @property
    def connected(self) -> bool:
        return self.active and self.connector.online

    async def connect(self) -> None:
        self.active = True
        if self.connector.online:
            self.on_online()
        else:
            self._state(LoginState.CONNECTING, "waiting for the XMPP component")

    async def disconnect(self, reason: str = "") -> None:
        self.leave_all(reason)
        self.active = False
        self._state(LoginState.DISCONNECTED, reason)

    async def join(self, chat_id: str, key: str = "") -> None:
        wire.jid(chat_id)  # a room that is no JID is refused before it is remembered (and rejoined)
        mem = self.rooms.get(chat_id)
        if mem is None:
            mem = self.rooms[chat_id] = Membership(chat_id, self.nick, key)
        if self.connected and not mem.joined:
            self._send_join(mem)

    async def part(self, chat_id: str, reason: str = "") -> None:
        mem = self.rooms.pop(chat_id, None)
        if mem is None:
            return
        mem.settle(SendError("left the room", retriable=False))
        self.connector.forget_nick(chat_id, mem.nick, self.mxid)
        if self.connector.online:
            self.connector.component.leave(frm=self.jid, room=chat_id, nick=mem.nick, status=reason)

    def chats(self) -> Sequence[str]:
        return list(self.rooms)

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> None:
        if not self.connected:
            raise SendError("not connected to XMPP", retriable=True)
        body = render_body(message)
        edit_of = getattr(message, "edit_of", None) or None
        component = self.connector.component
        if chat.kind is ChatKind.DM:
            await component.send_message(frm=self.jid, to=chat.id, type="chat", body=body,
                                         message_id=message.event_id, replace_id=edit_of, nick=self.nick)
            return
        await self._joined(chat.id)
        await component.send_message(frm=self.jid, to=chat.id, type="groupchat", body=body,
                                     message_id=message.event_id, replace_id=edit_of, wait_echo=True)

    async def set_topic(self, chat_id: str, topic: str) -> None:
        if not self.connected:
            raise SendError("not connected to XMPP", retriable=True)
        await self._joined(chat_id)
        await self.connector.component.send_message(frm=self.jid, to=chat_id, type="groupchat",
                                                    subject=topic, wait_echo=True)

    async def kick(self, chat_id: str, user_id: str, reason: str = "") -> None:
        nick = self.connector.tracker.nick_of(chat_id, user_id)
        if nick is None:
            raise SendError(f"{user_id} is not in {chat_id}", retriable=False)
        await self.connector.component.kick(frm=self.jid, room=chat_id, nick=nick, reason=reason)

    async def set_name(self, name: str) -> None:
        self.nick = clean_nick(name, self.nick)
        for mem in self.rooms.values():
            if mem.joined and mem.nick != self.nick:
                self.connector.remember_nick(mem.room, self.nick, self.mxid)
                self.connector.component.send_presence(frm=self.jid, to=f"{mem.room}/{self.nick}")
            elif not mem.joined:
                mem.nick = self.nick
        if self.connector.ctx is not None:
            self.connector.ctx.login_renamed(self.mxid, self.nick)

    async def whois(self, name: str) -> list[str]:
        tracker = self.connector.tracker
        target = normalize_user(name, self.connector.options.get("domain") or "")
        lines: list[str] = []
        for room, state in tracker.rooms.items():
            for nick, occ in state.occupants.items():
                uid = tracker.user(room, nick, occ.real_jid).id
                if nick == name or uid == target:
                    who = occ.real_jid or "a hidden JID"
                    lines.append(f"{nick} is {who} in {room} ({occ.role.name.lower()})")
        return lines or [f"{name}: not in any bridged room"]

    async def reconnect(self, reason: str) -> None:
        self.leave_all(reason)
        if self.connected:
            self.on_online()

    # -- from the connector ------------------------------------------------------------------
    def on_online(self) -> None:
        if not self.active:
            return
        for mem in self.rooms.values():
            mem.joined, mem.failed, mem.attempts, mem.nick = False, "", 0, self.nick
            try:
                self._send_join(mem)
            except SendError as exc:  # this room only; the others still rejoin
                mem.failed = str(exc)
                mem.settle(exc)
        self._state(LoginState.CONNECTED, "")
        if self.connector.ctx is not None:
            self.connector.ctx.login_renamed(self.mxid, self.nick)

    def on_offline(self, reason: str) -> None:
        for mem in self.rooms.values():
            mem.joined = False
            mem.settle(SendError("connection to XMPP lost", retriable=True))
        if self.active:
            self._state(LoginState.DISCONNECTED, reason)

    def leave_all(self, reason: str) -> None:
        """Unavailable presence in every room (Prosody keeps occupants a component forgot)."""
        for mem in self.rooms.values():
            mem.settle(SendError("left the room", retriable=True))
            if mem.joined and self.connector.online:
                try:
                    self.connector.component.leave(frm=self.jid, room=mem.room, nick=mem.nick, status=reason)
                except SendError as exc:
                    log.warning("%s cannot leave %s: %s", self.jid, mem.room, exc)
            mem.joined = False
            self.connector.forget_nick(mem.room, mem.nick, self.mxid)

    def on_presence(self, p: Presence) -> None:
        mem = self.rooms.get(p.room)
        if mem is None:
            return
        if p.type == "error":
            self._join_error(mem, p)
            return
        if p.muc is None or stanzas.SELF not in p.codes:
            return
        if p.available:
            if mem.nick != p.nick:
                self.connector.forget_nick(mem.room, mem.nick, self.mxid)
            mem.nick, mem.joined, mem.failed = p.nick, True, ""
            self.connector.remember_nick(mem.room, p.nick, self.mxid)
            mem.settle()
            return
        if stanzas.NICK_CHANGED in p.codes and p.muc.nick:
            self.connector.forget_nick(mem.room, p.nick, self.mxid)
            mem.nick = p.muc.nick
            self.connector.remember_nick(mem.room, mem.nick, self.mxid)
            return
        mem.joined = False
        self.connector.forget_nick(mem.room, p.nick, self.mxid)
        if p.codes & {stanzas.KICKED, stanzas.BANNED, stanzas.REMOVED_AFFILIATION, stanzas.REMOVED_MEMBERS_ONLY}:
            # The bot reports it (RemoteLeave with is_puppet_of); the core then parts us.
            self.rooms.pop(mem.room, None)
            mem.settle(SendError("removed from the room", retriable=False))

    def on_message(self, m: Message) -> None:
        if m.type == "groupchat":
            return  # room traffic comes through the bot; our own echoes were matched already
        if m.type == "error":
            self._dm_error(m)
            return
        if m.body is None or m.type == "headline" or not m.body.strip():
            return
        sender = self._dm_sender(m)
        if sender is None:
            return
        kind, text = parse_body(m.body)
        chat = ChatRef(sender.id, ChatKind.DM, self.mxid)
        remote_id = m.id or m.origin_id or None
        edit = self.connector.edit_event
        html = styling_to_html(text)
        if m.replace_id and edit is not None:
            self.connector.emit(edit(chat=chat, sender=sender, target_id=m.replace_id, kind=kind, text=text,
                                     html=html, timestamp_ms=m.timestamp_ms, remote_id=remote_id))
            return
        if m.replace_id:
            text = f"* {text}"
            html = f"* {html}" if html else None
        self.connector.emit(RemoteMessage(chat=chat, sender=sender, kind=kind, text=text, html=html,
                                          timestamp_ms=m.timestamp_ms, remote_id=remote_id))

    # -- internals -----------------------------------------------------------------------------
    def _state(self, state: LoginState, message: str) -> None:
        if self.connector.ctx is not None:
            self.connector.ctx.login_state(self.mxid, state, message)

    def _send_join(self, mem: Membership) -> None:
        if mem.waiter is None or mem.waiter.done():
            mem.waiter = asyncio.get_running_loop().create_future()
        self.connector.remember_nick(mem.room, mem.nick, self.mxid)
        self.connector.component.join(frm=self.jid, room=mem.room, nick=mem.nick, password=mem.password)

    async def _joined(self, room: str) -> None:
        """Wait (bounded) until the puppet is in `room`, joining it first if needed."""
        mem = self.rooms.get(room)
        if mem is None:
            await self.join(room)
            mem = self.rooms[room]
        if mem.joined:
            return
        if mem.waiter is None or mem.waiter.done():
            self._send_join(mem)  # an earlier attempt failed or was lost: try again
        assert mem.waiter is not None
        try:
            await asyncio.wait_for(asyncio.shield(mem.waiter), JOIN_TIMEOUT)
        except TimeoutError:
            raise SendError(f"joining {room} timed out", retriable=True) from None

    def _join_error(self, mem: Membership, p: Presence) -> None:
        error = p.error
        condition = error.condition if error else "undefined-condition"
        self.connector.forget_nick(mem.room, p.nick or mem.nick, self.mxid)
        if condition == "conflict" and mem.attempts < MAX_NICK_ATTEMPTS:
            mem.attempts += 1
            mem.nick = f"{self.nick}{'_' * mem.attempts}"
            self._send_join(mem)
            return
        why = error.describe() if error else condition
        mem.failed = why
        mem.settle(SendError(f"could not join {mem.room}: {why}", retriable=False))
        if self.connector.ctx is not None:
            self.connector.ctx.notify_user(self.mxid, f"{self.connector.network}: could not join {mem.room}: {why}")

    def _dm_sender(self, m: Message) -> RemoteUser | None:
        jid = parse(m.frm)
        if jid is None or not jid.user:
            return None
        bare = jid.bare
        if bare in self.connector.tracker.rooms or (m.muc_user and jid.resource):
            if not jid.resource:
                return None
            return RemoteUser(f"{bare}/{jid.resource}", jid.resource)  # a MUC private message
        name = m.nick or self.connector.tracker.last_nick(bare) or bare
        return RemoteUser(bare, name)

    def _dm_error(self, m: Message) -> None:
        sender = self._dm_sender(m)
        if sender is None or sender.id in self.connector.tracker.rooms:
            log.info("%s: error from %s: %s", self.jid, m.frm, m.error)
            return
        why = m.error.describe() if m.error else "unknown error"
        self.connector.emit(RemoteNotice(chat=ChatRef(sender.id, ChatKind.DM, self.mxid),
                                         text=f"A message to {sender.id} was not delivered: {why}."))
