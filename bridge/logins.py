"""Logins: each Matrix user's puppet on each network, its channels, its outbox, its idle timer."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from connectors.api import ChatRef, LoginInfo, LoginState, NetworkClient, OutgoingMessage, SendError

from bridge.db.models import Login, MatrixUser

if TYPE_CHECKING:
    from bridge.networks import NetworkRuntime

log = logging.getLogger("rapture.logins")


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
        for row in rows:
            channels = set((row.meta or {}).get("channels", []))
            if channels:
                self._channels[row.mxid] = channels
                await self.client_for(row.mxid)

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
        row = await self._load_row(mxid)
        channels = self._channels.setdefault(mxid, set((row.meta or {}).get("channels", [])))
        displayname = await self._displayname(mxid)
        localpart = mxid[1:].split(":", 1)[0]
        client = self.runtime.connector.make_client(
            LoginInfo(mxid=mxid, localpart=localpart, displayname=displayname, nick=row.nick)
        )
        self.clients[mxid] = client
        for chat_id in channels:
            await client.join(chat_id)
        await client.connect()
        return client

    async def _displayname(self, mxid: str) -> str:
        try:
            name = await self.bridge.az.intent.get_displayname(mxid)
        except Exception:
            name = None
        return name or mxid[1:].split(":", 1)[0]

    async def join(self, mxid: str, chat_id: str) -> None:
        client = await self.client_for(mxid)
        channels = self._channels.setdefault(mxid, set())
        if chat_id not in channels:
            channels.add(chat_id)
            await self._save_channels(mxid)
        await client.join(chat_id)

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
