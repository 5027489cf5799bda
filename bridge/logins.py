"""Logins: each Matrix user's puppet on each network, its channels, its outbox, its idle timer."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from connectors.api import ChatRef, LoginInfo, LoginState, NetworkClient, OutgoingMessage, SendError

from bridge.db.models import Login, MatrixUser
from bridge.logs import redact_also
from bridge.secrets import SecretsError

if TYPE_CHECKING:
    from bridge.networks import NetworkRuntime

log = logging.getLogger("rapture.logins")


def login_localpart(mxid: str, home_domain: str) -> str:
    """The `LoginInfo.localpart` of a Matrix user: the MXID's localpart for users of this
    homeserver, `localpart:server` for users of another one (when the permissions let them
    in). A connector makes the puppet's identity from it (an XMPP puppet's JID is
    `<localpart>@component`): @alice:elsewhere.org must not become the same remote user as
    @alice of this server, and so receive her private messages and speak as her."""
    localpart, _, server = mxid[1:].partition(":")
    return localpart if server == home_domain else f"{localpart}:{server}"


class LoginManager:
    def __init__(self, runtime: NetworkRuntime) -> None:
        self.runtime = runtime
        self.bridge = runtime.bridge
        self.clients: dict[str, NetworkClient] = {}
        self.states: dict[str, LoginState] = {}
        self._channels: dict[str, set[str]] = {}
        self._idle: dict[str, asyncio.TimerHandle] = {}

    @property
    def network(self) -> str:
        return self.runtime.config.name

    async def start(self) -> None:
        """Reconnect every login that was in a bridged channel when the bridge stopped."""
        async with self.bridge.sessions() as session:
            rows = (await session.execute(select(Login).where(Login.network == self.network))).scalars().all()
        with_dms = {p.chat.receiver for p in self.bridge.portals.all()
                    if p.network == self.network and p.chat.receiver}
        for row in rows:
            channels = set((row.meta or {}).get("channels", []))
            if (channels or row.mxid in with_dms) and row.mxid not in self.clients:
                self._channels[row.mxid] = channels
                try:
                    await self._build(row)  # connects in the background, at the limiter's pace
                except SendError as exc:  # e.g. the connector's limit of connections: the others go on
                    log.warning("%s: %s has no connection: %s", self.network, row.mxid, exc)

    async def stop(self) -> None:
        for handle in self._idle.values():
            handle.cancel()

    async def _load_row(self, mxid: str) -> Login:
        async with self.bridge.sessions() as session, session.begin():
            row = (await session.execute(
                select(Login).where(Login.mxid == mxid, Login.network == self.network)
            )).scalar_one_or_none()
            if row is None:
                if await session.get(MatrixUser, mxid) is None:
                    session.add(MatrixUser(mxid=mxid, meta={}))
                    await session.flush()
                row = Login(mxid=mxid, network=self.network, state="disconnected", meta={})
                session.add(row)
            return row

    async def client_for(self, mxid: str) -> NetworkClient:
        """The user's connected (or connecting) client, created on first use."""
        client = self.clients.get(mxid)
        if client is not None:
            self._cancel_idle(mxid)
            return client
        return await self._build(await self._load_row(mxid))

    async def _build(self, row: Login) -> NetworkClient:
        mxid = row.mxid
        channels = self._channels.setdefault(mxid, set((row.meta or {}).get("channels", [])))
        # The display name only seeds the first nick and the IRC real name: ask the homeserver
        # once, then keep it, so a restart with thousands of logins makes no such requests.
        displayname = (row.meta or {}).get("displayname")
        if displayname is None:
            displayname = await self._displayname(mxid)
            await self._update_row(mxid, meta={**(row.meta or {}), "displayname": displayname})
        localpart = login_localpart(mxid, self.bridge.config.homeserver_domain)
        credentials = self._credentials(row)
        client = self.runtime.connector.make_client(LoginInfo(
            mxid=mxid, localpart=localpart, displayname=displayname, nick=row.nick,
            username=row.username, password=credentials.get("password"),
            client_cert=credentials.get("client_cert"),
        ))
        self.clients[mxid] = client
        for chat_id in channels:
            await client.join(chat_id)
        await client.connect()
        return client

    def _context(self, mxid: str) -> str:
        return f"{mxid}\0{self.network}"

    def _credentials(self, row: Login) -> dict[str, Any]:
        """The sealed credentials: {"password": ..., "client_cert": PEM}, each optional."""
        if not row.credentials:
            return {}
        try:
            credentials = self.bridge.secret_box().open(row.credentials, context=self._context(row.mxid))
        except SecretsError as exc:
            log.warning("cannot read the stored credentials of %s on %s: %s", row.mxid, self.network, exc)
            return {}
        for value in credentials.values():  # in memory now: keep them out of every log line
            if isinstance(value, str):
                redact_also(value)
        return credentials

    async def _update_row(self, mxid: str, **values: object) -> None:
        await self._load_row(mxid)
        async with self.bridge.sessions() as session, session.begin():
            row = (await session.execute(
                select(Login).where(Login.mxid == mxid, Login.network == self.network)
            )).scalar_one()
            for key, value in values.items():
                setattr(row, key, value)

    async def store_password(self, mxid: str, password: str | None) -> bool:
        """Encrypt and keep (or with None, forget) the user's password for this network.

        A stored client certificate stays. True if a password was stored before."""
        return await self._store_credential(mxid, "password", password)

    async def store_client_cert(self, mxid: str, pem: str | None) -> bool:
        """Encrypt and keep (or with None, forget) the user's client certificate and key (PEM,
        checked by `parse_client_cert`). A stored password stays. True if one was stored before."""
        return await self._store_credential(mxid, "client_cert", pem)

    async def _store_credential(self, mxid: str, name: str, value: str | None) -> bool:
        await self._load_row(mxid)
        async with self.bridge.sessions() as session, session.begin():
            row = (await session.execute(
                select(Login).where(Login.mxid == mxid, Login.network == self.network)
            )).scalar_one()
            credentials = self._credentials(row)  # unreadable ones (a new key) are lost anyway
            had = credentials.pop(name, None) is not None
            if value is not None:
                credentials[name] = value
            row.credentials = (self.bridge.secret_box().seal(credentials, context=self._context(mxid))
                               if credentials else None)
        await self.forget_client(mxid)  # the next connection uses the new credentials
        return had

    async def set_username(self, mxid: str, username: str) -> None:
        await self._update_row(mxid, username=username)
        await self.forget_client(mxid)

    async def forget_client(self, mxid: str) -> None:
        """Drop the built client (if idle) so the next one is built from fresh settings."""
        client = self.clients.get(mxid)
        if client is not None and not client.connected:
            self.clients.pop(mxid, None)
            drop = getattr(self.runtime.connector, "drop_client", None)
            if drop is not None:
                drop(mxid)

    async def reconnect(self, mxid: str, reason: str) -> None:
        """Reconnect with fresh settings (a stored password is used from now on)."""
        old = self.clients.pop(mxid, None)
        if old is not None:
            await old.disconnect(reason)
            drop = getattr(self.runtime.connector, "drop_client", None)
            if drop is not None:
                drop(mxid)
        await self.client_for(mxid)

    async def quit(self, mxid: str, reason: str) -> bool:
        client = self.clients.pop(mxid, None)
        if client is None:
            return False
        await client.disconnect(reason)
        drop = getattr(self.runtime.connector, "drop_client", None)
        if drop is not None:
            drop(mxid)
        return True

    async def current_nick(self, mxid: str) -> str | None:
        client = self.clients.get(mxid)
        if client is not None and client.connected:
            return client.name
        return (await self._load_row(mxid)).nick

    async def set_nick(self, mxid: str, nick: str) -> None:
        """Keep the nick for later connections, and change it now when connected."""
        await self._update_row(mxid, nick=nick)
        client = self.clients.get(mxid)
        if client is not None and client.connected:
            try:
                await client.set_name(nick)
            except NotImplementedError:
                pass
        elif client is not None:
            await self.forget_client(mxid)

    def channels_of(self, mxid: str) -> list[str]:
        return sorted(self._channels.get(mxid, set()))

    async def _displayname(self, mxid: str) -> str:
        try:
            name = await self.bridge.az.intent.get_displayname(mxid)
        except Exception:
            name = None
        return name or mxid[1:].split(":", 1)[0]

    async def join(self, mxid: str, chat_id: str, key: str = "") -> None:
        client = await self.client_for(mxid)
        await client.join(chat_id, key)  # first: a refused join (SendError) is not remembered
        channels = self._channels.setdefault(mxid, set())
        if chat_id not in channels:
            channels.add(chat_id)
            await self._save_channels(mxid)

    async def part(self, mxid: str, chat_id: str, reason: str = "") -> None:
        channels = self._channels.get(mxid, set())
        if chat_id in channels:
            channels.discard(chat_id)
            await self._save_channels(mxid)
        client = self.clients.get(mxid)
        if client is not None:
            await client.part(chat_id, reason)
            self._maybe_idle(mxid)

    async def _save_channels(self, mxid: str) -> None:
        async with self.bridge.sessions() as session, session.begin():
            row = (await session.execute(
                select(Login).where(Login.mxid == mxid, Login.network == self.network)
            )).scalar_one_or_none()
            if row is not None:
                row.meta = {**(row.meta or {}), "channels": sorted(self._channels.get(mxid, set()))}

    # -- idle disconnect -------------------------------------------------------------------
    def _maybe_idle(self, mxid: str) -> None:
        if self._channels.get(mxid) or self.bridge.portals.dms_of(self.network, mxid):
            return
        self._cancel_idle(mxid)
        delay = self.runtime.config.idle_timeout
        loop = asyncio.get_running_loop()
        self._idle[mxid] = loop.call_later(delay, lambda: self.bridge.spawn(self._disconnect_idle(mxid)))

    def _cancel_idle(self, mxid: str) -> None:
        handle = self._idle.pop(mxid, None)
        if handle is not None:
            handle.cancel()

    async def _disconnect_idle(self, mxid: str) -> None:
        self._idle.pop(mxid, None)
        if self._channels.get(mxid):
            return
        client = self.clients.pop(mxid, None)
        if client is not None:
            log.info("%s: disconnecting idle puppet of %s", self.network, mxid)
            await client.disconnect("No bridged rooms left")
            drop = getattr(self.runtime.connector, "drop_client", None)
            if drop is not None:
                drop(mxid)

    # -- state from the connector ------------------------------------------------------------
    def on_state(self, mxid: str, state: LoginState, message: str) -> None:
        self.states[mxid] = state
        self.bridge.note_login_change()
        if state is LoginState.CONNECTED and self.runtime.outbox_waiting(mxid):
            self.bridge.spawn(self.flush(mxid))

    async def flush(self, mxid: str) -> None:
        client = self.clients.get(mxid)
        if client is None:
            return

        async def send(chat: ChatRef, message: OutgoingMessage) -> None:
            await client.send(chat, message)

        await self.bridge.outbox.flush(mxid, self.network, send)

    async def on_renamed(self, mxid: str, name: str) -> None:
        async with self.bridge.sessions() as session, session.begin():
            row = (await session.execute(
                select(Login).where(Login.mxid == mxid, Login.network == self.network)
            )).scalar_one_or_none()
            if row is not None and row.nick != name:
                row.nick = name

    async def send(self, mxid: str, room_id: str, chat: ChatRef, message: OutgoingMessage) -> None:
        """Send now if possible, else keep it in the outbox (in order behind earlier ones)."""
        client = await self.client_for(mxid)
        outbox = self.bridge.outbox
        if client.connected and not outbox.has_waiting(mxid, self.network):
            try:
                await client.send(chat, message)
                return
            except SendError as exc:
                if not exc.retriable:
                    raise
        await outbox.add(mxid, self.network, room_id, chat, message)
        if client.connected:
            await self.flush(mxid)
