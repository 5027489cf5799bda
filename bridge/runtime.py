"""The running bridge: wires the appservice endpoint, storage, per-portal queues, the bot,
and one `NetworkRuntime` per configured network."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from typing import Any

from mautrix.errors import MatrixError
from mautrix.types import EncryptedEvent, Event, EventType, Membership, MessageEvent, StateEvent
from mautrix.types.util.serializable import SerializerError
from sqlalchemy import func, select

from connectors.api import ChatKind, ChatRef, ConsentAsker, RemoteEvent, RemoteUser

from bridge.alias_portals import AliasPortals
from bridge.appservice.dispatch import RoomDispatcher
from bridge.appservice.inbox import EPHEMERAL, StoredEvent, TransactionInbox
from bridge.appservice.server import RaptureAppService
from bridge.bot import BridgeBot, is_bot_invite
from bridge.config import Config
from bridge.db.engine import make_engine, make_sessionmaker
from bridge.db.models import Login, MatrixUser
from bridge.doors import Doors
from bridge.encrypted_rooms import message_notice, portal_notice
from bridge.limits import check_open_file_budget
from bridge.memory import trim_due, trim_memory
from bridge.ghosts import GhostManager
from bridge.link_requests import LinkRequests
from bridge.matrix_to_remote import MatrixToRemote
from bridge.networks import NetworkRuntime
from bridge.notice_limiter import NoticeLimiter
from bridge.outbox import Outbox
from bridge.portals import PortalInfo, PortalStore
from bridge.provisioning import ProvisioningAPI
from bridge.remote_to_matrix import RemoteToMatrix
from bridge.secrets import SecretBox

log = logging.getLogger("rapture.bridge")
OUTBOX_CHECK_SECONDS = 2.0
TRIM_CHECK_SECONDS = 5.0


class Bridge:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.engine = make_engine(config.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.inbox = TransactionInbox(self.engine, is_ours=lambda mxid: self.is_bridge_user(mxid))
        self.dispatcher: RoomDispatcher[Any] = RoomDispatcher(self._handle_item)
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
        # One permission check for every door (bot, provisioning, aliases, ghost invites, DMs).
        self.doors = Doors(config.permissions, config.networks,
                           asks_consent=lambda net: isinstance(self.networks[net].connector, ConsentAsker))
        self.link_requests = LinkRequests(self)
        self.alias_portals = AliasPortals(self)
        self.ghosts = GhostManager(self)
        self.portals = PortalStore(self)
        self.to_remote = MatrixToRemote(self)
        self.to_matrix = RemoteToMatrix(self)
        self.outbox = Outbox(self.sessions, self.to_remote.report_failure)
        if config.provisioning_enabled:
            ProvisioningAPI(self).register(self.az.app)
        self.networks: dict[str, NetworkRuntime] = {
            name: NetworkRuntime(self, net) for name, net in config.networks.items()
        }
        self._alias_patterns = [
            (net.name, re.compile(net.alias_regex(config.homeserver_domain)))
            for net in config.networks.values()
        ]
        self._background: set[asyncio.Task[Any]] = set()
        self._secret_box: SecretBox | None = None
        self.ready = asyncio.Event()
        self.last_login_change = time.monotonic()  # when a puppet last connected, dropped...
        self.login_changes = 0
        self._encrypted_notices = NoticeLimiter()

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self.portals.load()
        await self.outbox.load()
        await self.az.start(self.config.appservice_hostname, self.config.appservice_port)
        log.info("appservice listening on %s:%d", self.config.appservice_hostname,
                 self.config.appservice_port)
        # Serve first, then reach the homeserver: a homeserver that starts after us (or is
        # briefly down) only delays the bot, never the intake of transactions.
        for event in await self.inbox.pending():
            self.dispatcher.submit(event.room_id, event)
        # Rows an older version stored with their secret: a scan of the intake log, so it
        # runs beside the replay, not before it.
        self.spawn(self.inbox.scrub_secrets())
        self.spawn(self._connect_homeserver())
        self.spawn(self._prune_periodically())

    async def stop(self) -> None:
        await self.dispatcher.drain(timeout=10)
        self.alias_portals.close()
        for runtime in self.networks.values():
            await runtime.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.dispatcher.stop()
        await self.az.stop()
        await self.inbox.close()
        await self.engine.dispose()

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A background failure must be seen, not lost with the task.
            log.error("background task failed", exc_info=task.exception())

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
        log.info("bot %s registered on %s", self.config.bot_mxid, self.config.homeserver_address)
        check_open_file_budget(await self._login_count() + len(self.networks))
        for runtime in self.networks.values():
            try:
                await runtime.start()
            except Exception:
                log.exception("network %s failed to start", runtime.config.name)
        self.spawn(self._expire_outbox_periodically())
        self.spawn(self._trim_memory_periodically())
        self.az.ready = True
        self.ready.set()

    async def _login_count(self) -> int:
        async with self.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(Login))).scalar_one())

    def note_login_change(self) -> None:
        self.last_login_change = time.monotonic()
        self.login_changes += 1

    async def _trim_memory_periodically(self) -> None:
        # Start-up and reconnect waves leave freed memory inside the process; hand it back
        # once a wave is over (not at a fixed time, which a long wave outlasts), with a full
        # collection; now and then, only trim the C heap, which does not stop the event loop
        # (see bridge/memory.py).
        trimmed_at = time.monotonic()
        changes_at_trim = 0
        while True:
            await asyncio.sleep(TRIM_CHECK_SECONDS)
            wave_over = trim_due(time.monotonic(), self.last_login_change,
                                 self.login_changes - changes_at_trim, trimmed_at)
            if wave_over is not None:
                started = time.perf_counter()
                await asyncio.to_thread(trim_memory, wave_over)
                trimmed_at, changes_at_trim = time.monotonic(), self.login_changes
                took_ms = (time.perf_counter() - started) * 1000
                # A full collection holds the interpreter lock: say so when it was long enough
                # to delay messages.
                level = logging.INFO if wave_over and took_ms >= 50 else logging.DEBUG
                log.log(level, "memory trimmed in %.0f ms (full collection: %s)", took_ms, wave_over)

    async def _prune_periodically(self) -> None:
        while True:
            try:
                await self.inbox.prune()
            except Exception:
                log.exception("pruning old transactions failed")
            await asyncio.sleep(3600)

    async def _expire_outbox_periodically(self) -> None:
        timeouts = {name: float(net.delivery_timeout) for name, net in self.config.networks.items()}
        while True:
            await asyncio.sleep(OUTBOX_CHECK_SECONDS)
            if self.outbox.depth():
                try:
                    await self.outbox.expire(timeouts)
                except Exception:
                    log.exception("expiring the outbox failed")

    # -- queues ----------------------------------------------------------------------------
    async def _accept(self, event: StoredEvent) -> None:
        if event.seq == EPHEMERAL and "state_key" not in event.raw:
            # Our own message echoed back (every line the bridge relays comes back once):
            # only state events teach the state cache anything, so this one ends here.
            return
        self.dispatcher.submit(event.room_id, event)

    def queue_remote(self, network: str, event: RemoteEvent) -> None:
        chat = event.chat
        self.dispatcher.submit(f"{network}\x00{chat.id}\x00{chat.receiver}", (network, event))

    async def _handle_item(self, item: Any) -> None:
        if isinstance(item, StoredEvent):
            await self._handle_stored(item)
        else:
            network, event = item
            await self.to_matrix.handle(network, event)

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
            self.inbox.mark_done(stored.seq)

    def is_bridge_user(self, mxid: str) -> bool:
        """The bot or a ghost: users whose events we never bridge back."""
        return mxid == self.config.bot_mxid or self.ghosts.is_ghost(mxid)

    # -- Matrix events ---------------------------------------------------------------------
    async def handle_event(self, event: Event) -> None:
        portal = self.portals.by_room(event.room_id)
        if isinstance(event, StateEvent):
            await self._state_event(event, portal)
            return
        if isinstance(event, MessageEvent) and event.type == EventType.ROOM_MESSAGE:
            if self.is_bridge_user(event.sender):
                return
            if portal is not None:
                await self.to_remote.message(event, portal)
                return
            body = getattr(event.content, "body", None)
            if isinstance(body, str) and await self.bot.is_control_room(event.room_id):
                command = self.bot.strip_prefix(body)
                await self.bot.handle_command(event.room_id, event.sender, event.event_id,
                                              command if command is not None else body,
                                              content=event.content.serialize())
        elif isinstance(event, EncryptedEvent) and portal is not None and not self.is_bridge_user(event.sender):
            # A client that encrypts although the portal's state does not say so: silence would
            # look like delivery.
            if self._encrypted_notices.should_tell(event.room_id, event.sender):
                await self.notify(portal, message_notice(event.sender, portal.network), reply_to=event.event_id)

    async def _state_event(self, event: StateEvent, portal: PortalInfo | None) -> None:
        if is_bot_invite(event, self.config.bot_mxid):
            await self.bot.handle_invite(event)
            return
        if event.type == EventType.ROOM_MEMBER:
            membership = event.content.membership
            if portal is None and self.alias_portals.is_dormant(event.room_id):
                portal = await self.alias_portals.member(event)  # the first permitted join wakes it
            if (membership == Membership.INVITE and self.ghosts.is_ghost(event.state_key)
                    and not self.is_bridge_user(event.sender) and portal is None):
                await self.to_remote.ghost_invite(event)
            elif portal is not None:
                await self.to_remote.member(event, portal)
        elif event.type == EventType.ROOM_TOPIC and portal is not None:
            await self.to_remote.topic(event, portal)
        elif event.type == EventType.ROOM_ENCRYPTION and portal is not None:
            await self.stop_bridging_encrypted(portal)
        elif event.type == EventType.ROOM_ENCRYPTION and await self.bot.is_control_room(event.room_id):
            await self.bot.handle_encryption_enabled(event)

    # -- helpers for the handlers ----------------------------------------------------------
    def secret_box(self) -> SecretBox:
        """The credential key, read on first use (a missing key only matters to storepass)."""
        if self._secret_box is None:
            self._secret_box = SecretBox.from_file(self.config.key_file)
        return self._secret_box

    async def tell_user(self, mxid: str, text: str) -> None:
        """A notice in the user's latest control room, if they have one."""
        async with self.sessions() as session:
            user = await session.get(MatrixUser, mxid)
        if user is not None and user.control_room:
            await self.bot.send_notice_as(self.az.intent, user.control_room, text)

    def remote_user(self, network: str, remote_id: str) -> RemoteUser:
        return RemoteUser(remote_id, remote_id)

    async def notify(self, portal: PortalInfo, text: str, reply_to: str | None = None) -> None:
        """A notice in a portal: from the bot in channels, from the ghost in private chats."""
        if portal.chat.kind is ChatKind.DM:
            intent = self.ghosts.intent(self.ghosts.mxid(portal.network, portal.chat.id))
        else:
            intent = self.az.intent
        await self.bot.send_notice_as(intent, portal.room_id, text, reply_to)

    async def stop_bridging_encrypted(self, portal: PortalInfo) -> None:
        """Encryption was turned on in a portal: say why, then leave it (see encrypted_rooms)."""
        if self.portals.by_room(portal.room_id) is None:
            return  # already handled (the state event and a message can both find it)
        log.info("%s turned on encryption: no longer bridged to %s on %s", portal.room_id, portal.chat.id,
                 portal.network)
        await self.notify(portal, portal_notice(portal.name or portal.chat.id, portal.network))
        if portal.chat.kind is ChatKind.DM:
            await self.close_dm(portal)
        else:
            await self.unlink(portal)

    async def close_dm(self, portal: PortalInfo) -> None:
        await self.portals.remove(portal)
        ghost = self.ghosts.intent(self.ghosts.mxid(portal.network, portal.chat.id))
        try:
            await ghost.leave_room(portal.room_id)
        except MatrixError:
            pass

    # -- homeserver queries ----------------------------------------------------------------
    async def query_user(self, mxid: str) -> dict[str, Any] | None:
        """200 for any valid ghost ID, 404 for everything else.

        The homeserver asks this before an invite and names no inviter, so an unknown ghost is
        not registered here: that waits for the invite, where the inviter's permission is
        checked first (MatrixToRemote.ghost_invite). Known ghosts are refreshed."""
        parsed = self.ghosts.parse(mxid)
        if parsed is None:
            return None
        network, remote_id = parsed
        if not await self.ghosts.known(mxid):
            valid = self.networks[network].connector.normalize_user(remote_id) == remote_id
            return {} if valid else None
        try:
            await self.ghosts.ensure(network, self.remote_user(network, remote_id))
        except MatrixError:
            log.exception("could not register ghost %s", mxid)
            return None
        return {}

    async def query_alias(self, alias: str) -> dict[str, Any] | None:
        """Joining `#<alias_template>:domain` may create the channel's portal: see alias_portals.py
        (the query names no user, so the room stays dormant until a permitted user joins it)."""
        for network, pattern in self._alias_patterns:
            match = pattern.fullmatch(alias)
            if not match:
                continue
            runtime = self.networks[network]
            channel = match.group(1)
            chat_id = runtime.connector.normalize_chat(channel)
            if chat_id is None:
                return None
            if self.portals.by_chat(network, ChatRef(chat_id)) is not None:
                return None  # it exists, under another alias; not ours to re-create
            return {} if await self.alias_portals.query(network, chat_id, channel, alias) else None
        return None

    # -- portals: creating, linking, unlinking ------------------------------------------------
    @staticmethod
    def channel_ref(chat_id: str) -> ChatRef:
        return ChatRef(chat_id)

    async def create_channel_portal(self, network: str, chat_id: str, name: str) -> PortalInfo:
        """A new room for a channel, with its alias, and the bridge present in the channel."""
        localpart = self.config.networks[network].alias_localpart(name)
        portal = await self.portals.create_channel_room(network, ChatRef(chat_id), name, localpart)
        await self.networks[network].connector.open_chat(chat_id)
        return portal

    async def link(self, room_id: str, network: str, chat_id: str, name: str) -> PortalInfo:
        """Bridge an existing room to a channel. Raises ValueError when either is bridged."""
        if self.portals.by_room(room_id) is not None:
            raise ValueError(f"{room_id} is already bridged")
        if self.portals.by_chat(network, ChatRef(chat_id)) is not None:
            raise ValueError(f"{name} on {network} is already bridged")
        await self.az.intent.join_room(room_id)
        portal = await self.portals.add(network, ChatRef(chat_id), room_id, name)
        await self.networks[network].connector.open_chat(chat_id)
        return portal

    async def unlink(self, portal: PortalInfo) -> None:
        """Stop bridging: ghosts leave the room, puppets leave the channel, the bot leaves both."""
        await self.portals.remove(portal)
        runtime = self.networks[portal.network]
        await runtime.connector.close_chat(portal.chat.id)
        members = await self.az.intent.get_room_members(portal.room_id)
        for mxid in members:
            if self.ghosts.is_ghost(mxid):
                try:
                    await self.ghosts.intent(mxid).leave_room(portal.room_id, reason="Unlinked")
                except MatrixError:
                    pass
            elif portal.chat.id in runtime.logins.channels_of(mxid):
                await runtime.logins.part(mxid, portal.chat.id, "Unlinked from Matrix")
        try:
            await self.az.intent.leave_room(portal.room_id, reason="Unlinked")
        except MatrixError:
            pass



