"""A Matrix user's puppet: their own IRC connection, as a `NetworkClient`."""

from __future__ import annotations

import asyncio
import time
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
    RemoteNotice,
    SendError,
)
from connectors.irc.channels import message_id, server_time_ms
from connectors.irc.connection import IRCConnection
from connectors.irc.flood import ConnectionGone
from connectors.irc.formatting import irc_to_matrix
from connectors.irc.lines import clean_line
from connectors.irc.nicks import is_channel_name, is_valid_channel, is_valid_nick
from connectors.irc.refusals import (
    NOT_ON_IRC,
    Refusal,
    RefusalFilter,
    as_send_if_joined,
    refusal,
)
from connectors.irc.render import cut_notice, render
from connectors.irc.wire import Line, LineRejected, fit_trailing, irc_line

if TYPE_CHECKING:
    from connectors.irc.connector import IRCConnector

WHOIS_TIMEOUT = 10.0
DM_REFUSAL_SECONDS = 60.0  # a "no such nick" this soon after a private line is about it
_WHOIS_LINES = {
    "whoisuser": lambda a: f"{a[0]} is {a[1]}@{a[2]} ({a[-1]})",
    "whoisserver": lambda a: f"{a[0]} is on {a[1]}" + (f" ({a[2]})" if len(a) > 2 else ""),
    "whoischannels": lambda a: f"{a[0]} is in {a[-1].strip()}",
    "whoisaccount": lambda a: f"{a[0]} is logged in as {a[1]}",
    "away": lambda a: f"{a[0]} is away: {a[-1]}",
    "whoisidle": lambda a: f"{a[0]} has been idle for {a[1]} seconds",
    "whoisoperator": lambda a: f"{a[0]} {a[-1]}",
}

_STATES = {"connecting": LoginState.CONNECTING, "connected": LoginState.CONNECTED,
           "disconnected": LoginState.DISCONNECTED}


class IRCPuppet(NetworkClient):
    __slots__ = ("connector", "mxid", "conn", "_whois", "_refusals", "_dm_sent")
    def __init__(self, connector: IRCConnector, login: LoginInfo, nick: str) -> None:
        self.connector = connector
        self.mxid = login.mxid
        self._whois: dict[str, tuple[list[str], asyncio.Future[list[str]]]] = {}
        # Made on first use: most puppets are never refused anything.
        self._refusals: RefusalFilter | None = None
        self._dm_sent: dict[str, float] | None = None  # folded nick -> when we last wrote to it
        self.conn = IRCConnection(
            settings=connector.settings_for(login.username or login.localpart, login.displayname,
                                            account=login.username, password=login.password,
                                            client_cert=login.client_cert),
            nick=nick,
            reactor=connector.reactor,
            limiter=connector.limiter,
            on_event=self._on_event,
            on_state=self._on_state,
            hears_channels=False,
        )

    @property
    def name(self) -> str:
        return self.conn.nick

    @property
    def connected(self) -> bool:
        return self.conn.connected

    async def connect(self) -> None:
        if self.conn.settings.client_cert and not self.conn.settings.tls and self.connector.ctx is not None:
            self.connector.ctx.notify_user(
                self.mxid, f"{self.connector.network}: your client certificate is not used: the bridge "
                "does not connect to this network with TLS.")
        self.conn.start()

    async def disconnect(self, reason: str = "") -> None:
        self.connector.forget_puppet_nick(self)
        await self.conn.stop(reason)

    async def join(self, chat_id: str, key: str = "") -> None:
        if self._refusals is not None:
            self._refusals.joined_or_asked(self.conn.folded(chat_id))  # asked again: tell again
        self.conn.join(chat_id, key)  # LineRejected (a SendError) for a key IRC cannot carry

    async def part(self, chat_id: str, reason: str = "") -> None:
        self.conn.part(chat_id, reason)

    def chats(self) -> Sequence[str]:
        return list(self.conn.channels)

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> None:
        if not self.conn.connected:
            raise SendError("not connected to IRC", retriable=True)
        lines, left = render(message, target=chat.id, nick=self.conn.nick, mask_bytes=self.conn.mask_bytes)
        if not lines:
            return
        if chat.kind is ChatKind.DM:  # so that a "no such nick" can be told as this line's fate
            if self._dm_sent is None:
                self._dm_sent = {}
            elif len(self._dm_sent) >= 64:
                self._dm_sent.clear()
            self._dm_sent[self.conn.folded(chat.id)] = time.monotonic()
        try:
            for line in lines[:-1]:
                self.conn.send(line)
            await self.conn.send_wait(lines[-1])
        except ConnectionGone as exc:
            raise SendError(f"connection lost: {exc}", retriable=True) from exc
        if left:
            self.connector.emit(RemoteNotice(chat=chat, text=cut_notice(self.mxid, len(lines) - 1, left)))

    async def set_topic(self, chat_id: str, topic: str) -> None:
        self._send_or_fail(fit_trailing("TOPIC", _channel(chat_id), text=clean_line(topic)))

    async def kick(self, chat_id: str, user_id: str, reason: str = "") -> None:
        # The nick comes from a ghost's user ID, which anyone can make up (`@libera_x=20=0dquit`).
        if not is_valid_nick(user_id, 64):
            raise LineRejected(f"{user_id[:40]!r} is not an IRC nick")
        self._send_or_fail(fit_trailing("KICK", _channel(chat_id), user_id, text=clean_line(reason)))

    async def set_name(self, name: str) -> None:
        if not is_valid_nick(name, 64):
            raise LineRejected(f"{name[:40]!r} is not an IRC nick")
        line = irc_line("NICK", name)
        self.conn.wanted_nick = name
        self._send_or_fail(line)

    async def reconnect(self, reason: str) -> None:
        await self.conn.stop(reason)
        self.conn.start()

    async def whois(self, name: str) -> list[str]:
        """WHOIS through this connection, summarised as lines for a notice."""
        if not self.conn.connected:
            raise SendError("not connected to IRC", retriable=True)
        folded = self.conn.folded(name)
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._whois[folded] = ([], future)
        try:
            if not is_valid_nick(name, 64):
                raise LineRejected(f"{name[:40]!r} is not an IRC nick")
            self._send_or_fail(irc_line("WHOIS", name))
            return await asyncio.wait_for(future, WHOIS_TIMEOUT)
        except TimeoutError:
            raise SendError("the server did not answer the WHOIS", retriable=True) from None
        finally:
            self._whois.pop(folded, None)

    def _on_whois_reply(self, conn: IRCConnection, event: Event) -> bool:
        args = list(event.arguments)
        if not args or event.type not in _WHOIS_LINES and event.type not in ("endofwhois", "nosuchnick"):
            return False
        entry = self._whois.get(conn.folded(args[0]))
        if entry is None:
            return False
        lines, future = entry
        if event.type == "nosuchnick":
            lines.append(f"{args[0]}: no such nick")
        elif event.type == "endofwhois":
            pass
        else:
            lines.append(_WHOIS_LINES[event.type](args))
        if event.type in ("endofwhois", "nosuchnick") and not future.done():
            future.set_result(lines)
        return True

    def _report(self, conn: IRCConnection, refused: Refusal) -> None:
        """Tell the portal what the server would not do for this user."""
        folded = conn.folded(refused.subject)
        subject, reason = refused.subject, refused.reason
        if is_channel_name(subject):
            refused = as_send_if_joined(refused, folded in conn.joined)
            chat = ChatRef(folded, ChatKind.CHANNEL)
            if refused.what == "join":
                text = f"{conn.nick}, the IRC connection of {self.mxid}, could not join {subject}: {reason}"
            else:
                text = f"{subject} did not take a message from {conn.nick} ({self.mxid}): {reason}"
        else:
            # Only about a line this user sent lately: a 401 also answers a KICK, a late WHOIS
            # or the connection's own NickServ IDENTIFY.
            sent = self._dm_sent.get(folded) if self._dm_sent is not None else None
            if sent is None or time.monotonic() - sent > DM_REFUSAL_SECONDS:
                return
            chat = ChatRef(folded, ChatKind.DM, self.mxid)
            text = (f"Not delivered: {subject} is not on IRC ({reason})" if refused.code == NOT_ON_IRC
                    else f"Not delivered to {subject}: {reason}")
        if self._refusals is None:
            self._refusals = RefusalFilter()
        if self._refusals.worth_telling(folded, refused):
            self.connector.emit(RemoteNotice(chat=chat, text=text))

    def _send_or_fail(self, line: Line) -> None:
        try:
            self.conn.send(line)
        except ConnectionGone as exc:
            raise SendError(str(exc), retriable=True) from exc

    # -- events from this connection ----------------------------------------------------------
    def _on_state(self, conn: IRCConnection, state: str, message: str) -> None:
        ctx = self.connector.ctx
        if state == "auth_failed":
            if ctx is not None:
                ctx.notify_user(self.mxid, f"{self.connector.network}: {message}.")
            return
        if state == "connected":
            self.connector.remember_puppet_nick(self)
        ctx = self.connector.ctx
        if ctx is not None:
            ctx.login_state(self.mxid, _STATES[state], message)
            if state == "connected":
                ctx.login_renamed(self.mxid, conn.nick)

    def _on_event(self, conn: IRCConnection, event: Event) -> None:
        kind = event.type
        if self._whois and self._on_whois_reply(conn, event):
            return
        refused = refusal(event)
        if refused is not None:
            self._report(conn, refused)
            return
        if (kind == "join" and self._refusals is not None and event.target
                and conn.folded(NickMask(event.source).nick) == conn.folded(conn.nick)):
            self._refusals.joined_or_asked(conn.folded(event.target))
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


def _channel(chat_id: str) -> str:
    if not is_valid_channel(chat_id):
        raise LineRejected(f"{chat_id[:70]!r} is not an IRC channel")
    return chat_id
