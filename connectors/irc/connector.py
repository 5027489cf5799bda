"""The IRC `NetworkConnector`: configuration, the bridge bot's own connection, puppets, relay."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from irc.client import Event
from irc.client_aio import AioReactor

from connectors.api import (
    ChatRef,
    ConfigKey,
    ConsentResult,
    ConnectorInfo,
    LoginInfo,
    NetworkClient,
    NetworkConnector,
    OutgoingMessage,
    RemoteEvent,
    RemoteNotice,
    RemoteUser,
    SendError,
    nick_template_error,
)
from connectors.irc.channels import ChannelTracker
from connectors.irc.connection import ConnectionSettings, IRCConnection, make_reactor
from connectors.irc.consent import OperatorConsent
from connectors.irc.flood import ConnectionGone
from connectors.irc.lines import clean_name
from connectors.irc.nicks import casefold, is_valid_channel, is_valid_nick, sanitize_nick
from connectors.irc.puppet import IRCPuppet
from connectors.irc.render import cut_notice, render

log = logging.getLogger("rapture.irc")
# Puppet connections per network. Every Matrix user who may use the bridge (federated users
# too, if the permissions say so) gets one on joining a portal: unbounded, a crowd joining
# makes the bridge's host a clone farm in the network's eyes, and it gets K-lined.
DEFAULT_MAX_CONNECTIONS = 100


def _port(value: int) -> str | None:
    return None if 0 < value < 65536 else f"{value} is not a TCP port (1-65535)"


def _host(value: str) -> str | None:
    return None if value.strip() and " " not in value else "must be a host name or address"


def _nick(value: str) -> str | None:
    return None if is_valid_nick(value) else f"{value!r} is not a valid IRC nick"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must not be negative"


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


class IRCConnector(NetworkConnector):
    info: ClassVar[ConnectorInfo] = ConnectorInfo(name="irc", display_name="IRC")

    @classmethod
    def config_schema(cls) -> Sequence[ConfigKey]:
        return (
            ConfigKey(path="host", kind=str, required=True, check=_host, doc="IRC server host name"),
            ConfigKey(path="port", kind=int, default=6667, check=_port, doc="IRC server port"),
            ConfigKey(path="tls", kind=bool, default=False, doc="connect with TLS"),
            ConfigKey(path="tls_verify", kind=bool, default=True,
                      doc="check the server's TLS certificate and host name (off: self-signed test servers)"),
            ConfigKey(path="password", kind=str, default=None, secret=True,
                      doc="server password (PASS), if any"),
            ConfigKey(path="nick_template", kind=str, default="{localpart}[m]", check=nick_template_error,
                      doc="nick of a Matrix user's puppet; {localpart} and {displayname}"),
            ConfigKey(path="bot_nick", kind=str, default="rapture", check=_nick,
                      doc="nick of the bridge's own connection (listens in every channel, relays)"),
            ConfigKey(path="flood_burst", kind=int, default=10, check=_positive,
                      doc="lines a connection may send at once before flood control slows it"),
            ConfigKey(path="flood_rate", kind=(int, float), default=2.0, check=_non_negative,
                      doc="lines per second after the burst; 0 turns flood control off"),
            ConfigKey(path="max_connections", kind=int, default=DEFAULT_MAX_CONNECTIONS, check=_non_negative,
                      doc="IRC connections opened for Matrix users' puppets, at most (0: no limit). Networks "
                          "ban a host that opens more than they allow (ask for an exemption, then raise this); "
                          "beyond it a Matrix user gets no puppet, and is told why"),
            ConfigKey(path="max_concurrent_connects", kind=int, default=20, check=_positive,
                      doc="connections (re)connecting at the same time, at most"),
            ConfigKey(path="reconnect_delay", kind=(int, float), default=1.0, check=_positive,
                      doc="seconds before the first reconnect attempt; doubles up to 5 minutes"),
            ConfigKey(path="netsplit_grace", kind=(int, float), default=30, check=_non_negative,
                      doc="seconds to wait for users lost in a netsplit to come back"),
            ConfigKey(path="services_nick", kind=str, default="NickServ", check=_nick,
                      doc="nick of the network's NickServ: the only one a stored password is sent to"),
            ConfigKey(path="services_host", kind=str, default=None, check=_host,
                      doc="host of the network's services (e.g. services.libera.chat): NickServ IDENTIFY "
                          "is sent only when the services nick has this host; unset: never (SASL only)"),
        )

    def __init__(self, network: str, options: dict[str, Any], ctx: Any = None) -> None:
        super().__init__(network, options, ctx)
        self.reactor: AioReactor | None = None
        self.limiter = asyncio.Semaphore(int(options.get("max_concurrent_connects") or 20))
        self.bot: IRCConnection | None = None
        self.tracker: ChannelTracker | None = None
        self.consent: OperatorConsent | None = None  # asks channel ops before a link (ConsentAsker)
        self._puppet_nicks: dict[str, str] = {}  # folded nick -> MXID
        self._puppets: dict[str, IRCPuppet] = {}  # MXID -> puppet

    # -- helpers for puppets and the tracker ---------------------------------------------------
    @property
    def casemapping(self) -> str:
        return self.bot.casemapping if self.bot is not None else "rfc1459"

    def fold(self, name: str) -> str:
        return casefold(name, self.casemapping)

    def user(self, nick: str) -> RemoteUser:
        return RemoteUser(self.fold(nick), nick)

    def emit(self, event: RemoteEvent) -> None:
        if self.ctx is not None:
            self.ctx.queue_remote_event(event)

    def puppet_of(self, folded_nick: str) -> str | None:
        return self._puppet_nicks.get(folded_nick)

    def remember_puppet_nick(self, puppet: IRCPuppet) -> None:
        self.forget_puppet_nick(puppet)
        self._puppet_nicks[self.fold(puppet.name)] = puppet.mxid

    def forget_puppet_nick(self, puppet: IRCPuppet) -> None:
        for nick, mxid in list(self._puppet_nicks.items()):
            if mxid == puppet.mxid:
                del self._puppet_nicks[nick]

    def settings_for(self, username: str, realname: str, *, account: str | None = None,
                     password: str | None = None, client_cert: str | None = None) -> ConnectionSettings:
        o = self.options
        ident = "".join(c for c in username.lower() if c.isascii() and c.isalnum())[:10] or "matrix"
        return ConnectionSettings(
            account=account, account_password=password, client_cert=client_cert,
            host=o["host"], port=int(o.get("port") or 6667), tls=bool(o.get("tls")),
            tls_verify=o.get("tls_verify") is not False,
            # The real name comes from a Matrix display name: shown without control characters.
            username=ident, realname=clean_name(realname) or ident, password=o.get("password"),
            services_nick=o.get("services_nick") or "NickServ", services_host=o.get("services_host") or None,
            burst=int(o.get("flood_burst") or 10),
            rate=float(o.get("flood_rate") if o.get("flood_rate") is not None else 2.0),
            reconnect_delay=float(o.get("reconnect_delay") or 1.0),
        )

    # -- NetworkConnector ------------------------------------------------------------------------
    async def start(self) -> None:
        self.reactor = make_reactor()
        nick = self.options.get("bot_nick") or "rapture"
        self.bot = IRCConnection(
            settings=self.settings_for("rapture", "Rapture bridge"), nick=nick, reactor=self.reactor,
            limiter=self.limiter, on_event=self._on_bot_event, on_state=self._on_bot_state,
        )
        self.tracker = ChannelTracker(
            emit=self.emit, fold=self.fold, own_nick=lambda: self.bot.nick if self.bot else nick,
            puppet_of=self.puppet_of, netsplit_grace=float(self.options.get("netsplit_grace") or 30),
        )
        bot = self.bot
        self.consent = OperatorConsent(send=lambda line: bot.send(line), fold=self.fold,
                                       is_ours=lambda folded: folded == self.fold(bot.nick)
                                       or self.puppet_of(folded) is not None)
        self.bot.start()

    async def stop(self) -> None:
        for puppet in list(self._puppets.values()):
            try:
                await puppet.disconnect("Bridge shutting down")
            except Exception:
                log.exception("stopping puppet %s", puppet.mxid)
        if self.bot is not None:
            await self.bot.stop("Bridge shutting down")

    def status(self) -> str:
        if self.bot is None:
            return "not started"
        return f"connected as {self.bot.nick}" if self.bot.connected else "disconnected"

    def normalize_chat(self, name: str) -> str | None:
        return self.fold(name) if is_valid_channel(name) else None

    def normalize_user(self, name: str) -> str | None:
        return self.fold(name) if is_valid_nick(name, 64) else None

    async def open_chat(self, chat_id: str) -> None:
        if self.bot is not None:
            self.bot.join(chat_id)

    async def close_chat(self, chat_id: str) -> None:
        if self.bot is not None:
            self.bot.part(chat_id, "Unlinked from Matrix")

    async def ask_operators(self, chat_id: str, request: str, timeout: float) -> ConsentResult:
        """`ConsentAsker`: see connectors/irc/consent.py."""
        if self.consent is None or self.bot is None or not self.bot.connected:
            return ConsentResult(granted=False, reason="the bridge is not connected to IRC")
        return await self.consent.ask(chat_id, request, timeout)

    def make_client(self, login: LoginInfo) -> NetworkClient:
        existing = self._puppets.get(login.mxid)
        if existing is not None:
            return existing
        limit = self.options.get("max_connections")
        limit = DEFAULT_MAX_CONNECTIONS if limit is None else int(limit)
        if limit and len(self._puppets) >= limit:  # idle puppets are dropped (drop_client): live ones
            log.warning("%s: no puppet for %s: the limit of %d connections is reached", self.network,
                        login.mxid, limit)
            raise SendError(f"the bridge already has {limit} connections to {self.network}, as many as it may "
                            "open (networks ban hosts that open more), so you have no IRC connection of your "
                            "own for now", retriable=False)
        template = self.options.get("nick_template") or "{localpart}[m]"
        wanted = login.nick or template.format(localpart=login.localpart, displayname=login.displayname)
        puppet = IRCPuppet(self, login, sanitize_nick(wanted))
        self._puppets[login.mxid] = puppet
        return puppet

    def drop_client(self, mxid: str) -> None:
        self._puppets.pop(mxid, None)

    async def relay(self, chat: ChatRef, message: OutgoingMessage) -> None:
        bot = self.bot
        if bot is None or not bot.connected:
            raise SendError("the bridge is not connected to IRC", retriable=True)
        # The display name is the sender's to choose: shown without control characters (a CR
        # in it would end the line on some servers), and short.
        name = clean_name(message.sender_name) or "?"
        prefix = "" if message.kind.value == "m.emote" else f"<{name}> "
        if message.kind.value == "m.emote":
            message = dataclasses.replace(message, text=f"{name} {message.text}", html=None)
        lines, left = render(message, target=chat.id, nick=bot.nick, mask_bytes=bot.mask_bytes, prefix=prefix)
        try:
            for line in lines[:-1]:
                bot.send(line)
            if lines:
                await bot.send_wait(lines[-1])
        except ConnectionGone as exc:
            raise SendError(f"connection lost: {exc}", retriable=True) from exc
        if left:
            self.emit(RemoteNotice(chat=chat, text=cut_notice(name, len(lines) - 1, left)))

    # -- the bot's connection ----------------------------------------------------------------------
    def _on_bot_state(self, conn: IRCConnection, state: str, message: str) -> None:
        if state != "connected" and self.tracker is not None:
            self.tracker.reset()
        log.info("%s: bridge connection %s %s", self.network, state, message)

    def _on_bot_event(self, conn: IRCConnection, event: Event) -> None:
        if self.consent is not None and self.consent.handle(event):
            return  # an operator's private answer to a link request
        if self.tracker is not None:
            self.tracker.handle(event)
