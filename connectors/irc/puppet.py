"""A Matrix user's puppet: their own IRC connection, as a `NetworkClient`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from irc.client import Event, NickMask

from connectors.api import (
    ChatKind,
    ChatRef,
    LoginInfo,
    LoginState,
    MessageKind,
    NetworkClient,
    OutgoingMessage,
    RemoteMessage,
    SendError,
)
from connectors.irc.channels import message_id, server_time_ms
from connectors.irc.connection import IRCConnection
from connectors.irc.flood import ConnectionGone
from connectors.irc.formatting import irc_to_matrix
from connectors.irc.lines import clean_line
from connectors.irc.render import render_lines

if TYPE_CHECKING:
    from connectors.irc.connector import IRCConnector

_STATES = {"connecting": LoginState.CONNECTING, "connected": LoginState.CONNECTED,
           "disconnected": LoginState.DISCONNECTED}


class IRCPuppet(NetworkClient):
    def __init__(self, connector: IRCConnector, login: LoginInfo, nick: str) -> None:
        self.connector = connector
        self.mxid = login.mxid
        self.conn = IRCConnection(
            settings=connector.settings_for(login.localpart, login.displayname),
            nick=nick,
            reactor=connector.reactor,
            limiter=connector.limiter,
            on_event=self._on_event,
            on_state=self._on_state,
        )

    @property
    def name(self) -> str:
        return self.conn.nick

    @property
    def connected(self) -> bool:
        return self.conn.connected

    async def connect(self) -> None:
        self.conn.start()

    async def disconnect(self, reason: str = "") -> None:
        self.connector.forget_puppet_nick(self)
        await self.conn.stop(reason)

    async def join(self, chat_id: str) -> None:
        self.conn.join(chat_id)

    async def part(self, chat_id: str, reason: str = "") -> None:
        self.conn.part(chat_id, reason)

    def chats(self) -> Sequence[str]:
        return list(self.conn.channels)

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> None:
        if not self.conn.connected:
            raise SendError("not connected to IRC", retriable=True)
        lines = render_lines(message, target=chat.id, nick=self.conn.nick, mask_bytes=self.conn.mask_bytes)
        if not lines:
            return
        try:
            for line in lines[:-1]:
                self.conn.send(line)
            await self.conn.send_wait(lines[-1])
        except ConnectionGone as exc:
            raise SendError(f"connection lost: {exc}", retriable=True) from exc

    async def set_topic(self, chat_id: str, topic: str) -> None:
        self._send_or_fail(f"TOPIC {chat_id} :{clean_line(topic)}")

    async def kick(self, chat_id: str, user_id: str, reason: str = "") -> None:
        self._send_or_fail(f"KICK {chat_id} {user_id} :{clean_line(reason)}")

    def _send_or_fail(self, line: str) -> None:
        try:
            self.conn.send(line)
        except ConnectionGone as exc:
            raise SendError(str(exc), retriable=True) from exc

    # -- events from this connection ----------------------------------------------------------
    def _on_state(self, conn: IRCConnection, state: str, message: str) -> None:
        if state == "connected":
            self.connector.remember_puppet_nick(self)
        ctx = self.connector.ctx
        if ctx is not None:
            ctx.login_state(self.mxid, _STATES[state], message)
            if state == "connected":
                ctx.login_renamed(self.mxid, conn.nick)

    def _on_event(self, conn: IRCConnection, event: Event) -> None:
        kind = event.type
        if kind == "nick" and conn.folded(event.target) == conn.folded(conn.nick):
            self.connector.remember_puppet_nick(self)
            if self.connector.ctx is not None:
                self.connector.ctx.login_renamed(self.mxid, conn.nick)
            return
        # Channel traffic is bridged from the bot's connection; a puppet only brings DMs.
        kinds = {"privmsg": MessageKind.TEXT, "privnotice": MessageKind.NOTICE, "action": MessageKind.EMOTE}
        if kind not in kinds or "!" not in str(event.source or ""):
            return
        if conn.folded(event.target or "") != conn.folded(conn.nick):
            return  # to a channel, or our own echo of a message we sent
        sender = NickMask(event.source).nick
        if self.connector.puppet_of(conn.folded(sender)) is not None:
            return  # another Matrix user's puppet: they talk on Matrix
        text, html = irc_to_matrix(event.arguments[0] if event.arguments else "")
        self.connector.emit(RemoteMessage(
            chat=ChatRef(conn.folded(sender), ChatKind.DM, self.mxid),
            sender=self.connector.user(sender), kind=kinds[kind], text=text, html=html,
            timestamp_ms=server_time_ms(event), remote_id=message_id(event),
        ))
