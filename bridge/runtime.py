"""The running bridge: wires the appservice endpoint, storage, per-room queues and the bot."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from typing import Any

from mautrix.errors import MatrixError
from mautrix.types import Event, EventType, MessageEvent, StateEvent
from mautrix.types.util.serializable import SerializerError
from sqlalchemy import select

from bridge.appservice.dispatch import RoomDispatcher
from bridge.appservice.inbox import StoredEvent, TransactionInbox
from bridge.appservice.server import RaptureAppService
from bridge.bot import BridgeBot, is_bot_invite
from bridge.config import Config
from bridge.db.engine import make_engine, make_sessionmaker
from bridge.db.models import Ghost

log = logging.getLogger("rapture.bridge")


class Bridge:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.engine = make_engine(config.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.inbox = TransactionInbox(self.sessions)
        self.dispatcher: RoomDispatcher[StoredEvent] = RoomDispatcher(self._handle_stored)
        self.az = RaptureAppService(
            server=config.homeserver_address,
            domain=config.homeserver_domain,
            as_token=config.as_token,
            hs_token=config.hs_token,
            bot_localpart=config.bot_username,
            appservice_id=config.appservice_id,
            max_body_size=config.max_body_size,
            inbox=self.inbox,
            sink=self._accept,
            query_user=self.query_user,
            query_alias=self.query_alias,
        )
        self.bot = BridgeBot(self)
        self._ghost_patterns = [
            re.compile(net.ghost_regex(config.homeserver_domain)) for net in config.networks.values()
        ]
        self._background: set[asyncio.Task[Any]] = set()
        self.ready = asyncio.Event()

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self.az.start(self.config.appservice_hostname, self.config.appservice_port)
        log.info("appservice listening on %s:%d", self.config.appservice_hostname,
                 self.config.appservice_port)
        # Serve first, then reach the homeserver: a homeserver that starts after us (or is
        # briefly down) only delays the bot's profile, never the intake of transactions.
        for event in await self.inbox.pending():
            await self.dispatcher.submit(event.room_id, event)
        self._spawn(self._connect_homeserver())
        self._spawn(self._prune_periodically())

    async def stop(self) -> None:
        await self.dispatcher.drain(timeout=10)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.dispatcher.stop()
        await self.az.stop()
        await self.engine.dispose()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _connect_homeserver(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.az.intent.ensure_registered()
                await self.az.intent.set_displayname(self.config.bot_displayname)
                break
            except Exception as exc:  # network errors and Matrix errors alike: retry
                log.warning("homeserver not ready (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay + random.uniform(0, delay / 4))
                delay = min(delay * 2, 30.0)
        self.az.ready = True
        self.ready.set()
        log.info("bot %s registered on %s", self.config.bot_mxid, self.config.homeserver_address)

    async def _prune_periodically(self) -> None:
        while True:
            try:
                await self.inbox.prune()
            except Exception:
                log.exception("pruning old transactions failed")
            await asyncio.sleep(3600)

    # -- intake ----------------------------------------------------------------------------
    async def _accept(self, event: StoredEvent) -> None:
        await self.dispatcher.submit(event.room_id, event)

    async def _handle_stored(self, stored: StoredEvent) -> None:
        try:
            try:
                event = Event.deserialize(stored.raw)
            except (SerializerError, KeyError, TypeError, ValueError):
                log.warning("cannot parse event %s of type %s", stored.event_id, stored.raw.get("type"))
                return
            await self.az.state_store.update_state(event)
            await self.handle_event(event)
        finally:
            await self.inbox.mark_done(stored.seq)

    def is_bridge_user(self, mxid: str) -> bool:
        """The bot or a ghost: users whose events we never bridge back."""
        return mxid == self.config.bot_mxid or any(p.fullmatch(mxid) for p in self._ghost_patterns)

    async def handle_event(self, event: Event) -> None:
        if isinstance(event, StateEvent):
            if is_bot_invite(event, self.config.bot_mxid):
                await self.bot.handle_invite(event)
            elif event.type == EventType.ROOM_ENCRYPTION and await self.bot.is_control_room(event.room_id):
                await self.bot.handle_encryption_enabled(event)
            return
        if isinstance(event, MessageEvent) and event.type == EventType.ROOM_MESSAGE:
            if self.is_bridge_user(event.sender):
                return
            body = getattr(event.content, "body", None)
            if not isinstance(body, str):
                return
            if await self.bot.is_control_room(event.room_id):
                command = self.bot.strip_prefix(body)
                await self.bot.handle_command(event.room_id, event.sender, event.event_id,
                                              command if command is not None else body)

    # -- homeserver queries ----------------------------------------------------------------
    async def query_user(self, mxid: str) -> dict[str, Any] | None:
        """200 for ghosts we know (registering them first), 404 for everything else."""
        if not any(p.fullmatch(mxid) for p in self._ghost_patterns):
            return None
        async with self.sessions() as session:
            ghost = (await session.execute(select(Ghost).where(Ghost.mxid == mxid))).scalar_one_or_none()
        if ghost is None:
            return None
        try:
            await self.az.intent.user(mxid).ensure_registered()
        except MatrixError:
            log.exception("could not register ghost %s", mxid)
            return None
        return {}

    async def query_alias(self, alias: str) -> dict[str, Any] | None:
        """Portals are created by connectors (dynamic portals); without one, 404."""
        return None


