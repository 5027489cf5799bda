"""Remote -> Matrix: what connectors report becomes ghost messages, memberships and state."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from mautrix.appservice import IntentAPI
from mautrix.errors import MatrixError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from mautrix.types import EventType, Format, MessageType, PowerLevelStateEventContent, RoomID, TextMessageEventContent

from connectors.api import (
    ChatKind,
    RemoteEdit,
    RemoteEvent,
    RemoteJoin,
    RemoteLeave,
    RemoteMembers,
    RemoteMessage,
    RemoteNotice,
    RemoteRename,
    RemoteRoleChange,
    RemoteTopic,
    RemoteUser,
    Role,
)

from bridge.db.models import Message
from bridge.dm_caps import NewDMCaps
from bridge.encrypted_rooms import new_dm_notice, room_is_encrypted
from bridge.doors import Door
from bridge.notice_limiter import NoticeLimiter
from bridge.portals import PortalInfo

if TYPE_CHECKING:
    from bridge.runtime import Bridge

log = logging.getLogger("rapture.remote")
MODERATOR_LEVEL = 50
MEMBER_SYNC_CONCURRENCY = 8
TELL_EVERY = 3600.0  # seconds between notices about refused private chats, per Matrix user
CAP_LOG_EVERY = 60.0  # seconds between warnings about a network's DM cap


class RemoteToMatrix:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._dm_caps: dict[str, NewDMCaps] = {}  # network -> caps on new DM rooms
        self._told = NoticeLimiter(every=TELL_EVERY)  # receivers told of a refused DM
        self._cap_logged = NoticeLimiter(every=CAP_LOG_EVERY)  # networks whose cap was logged

    async def handle(self, network: str, event: RemoteEvent) -> None:
        await self._leave_if_encrypted(network, event)
        if isinstance(event, RemoteMessage):
            await self.message(network, event)
            return
        if isinstance(event, RemoteEdit):
            await self.edit(network, event)
            return
        portal = self.bridge.portals.by_chat(network, event.chat)
        if portal is None:
            return  # nothing bridged there (anymore)
        if isinstance(event, RemoteJoin):
            await self.join(network, portal, event.user, event.role)
        elif isinstance(event, RemoteLeave):
            await self.leave(network, portal, event)
        elif isinstance(event, RemoteRename):
            await self.rename(network, portal, event)
        elif isinstance(event, RemoteTopic):
            await self.topic(network, portal, event)
        elif isinstance(event, RemoteRoleChange):
            await self.set_roles(network, portal, [(event.user, event.role)], event.is_puppet_of)
        elif isinstance(event, RemoteMembers):
            await self.members(network, portal, event)
        elif isinstance(event, RemoteNotice):
            await self.bridge.notify(portal, event.text)

    async def _leave_if_encrypted(self, network: str, event: RemoteEvent) -> None:
        """The last guard before plaintext goes out: a portal whose room is encrypted (as far as
        the state cache knows; the state event itself normally got there first) stops being
        bridged. A private message then opens a new, unencrypted chat instead."""
        portal = self.bridge.portals.by_chat(network, event.chat)
        if portal is None:
            return
        if await self.bridge.az.state_store.is_encrypted(RoomID(portal.room_id)) is False:
            return  # known and cached: the usual case, with nothing to build
        # Asked of the homeserver when the cache does not know (after a restart it knows
        # nothing): in a private chat the bot is no member, so its ghost asks.
        intent = (self.bridge.ghosts.intent(self.bridge.ghosts.mxid(network, portal.chat.id))
                  if portal.chat.kind is ChatKind.DM else self.bridge.az.intent)
        if await room_is_encrypted(intent, self.bridge.az.state_store, RoomID(portal.room_id)):
            await self.bridge.stop_bridging_encrypted(portal)

    async def _ghost_in(self, network: str, portal: PortalInfo, user: RemoteUser) -> IntentAPI:
        intent = await self.bridge.ghosts.ensure(network, user)
        await intent.ensure_joined(portal.room_id, bot=self.bridge.az.intent)
        return intent

    # -- messages ----------------------------------------------------------------------------
    async def message(self, network: str, event: RemoteMessage) -> None:
        portal = self.bridge.portals.by_chat(network, event.chat)
        if portal is None and event.chat.kind is ChatKind.DM:
            portal = await self._open_dm(network, event)
        if portal is None:
            return
        intent = await self._ghost_in(network, portal, event.sender)
        content = TextMessageEventContent(msgtype=MessageType(event.kind.value), body=event.text)
        if event.html:
            content.format = Format.HTML
            content.formatted_body = event.html
        event_id = await intent.send_message_event(portal.room_id, EventType.ROOM_MESSAGE, content,
                                                   timestamp=event.timestamp_ms)
        if event.remote_id and self.bridge.networks[network].connector.supports_edits:
            await self._remember(portal, event.remote_id, event_id, intent.mxid, event.timestamp_ms)

    async def _remember(self, portal: PortalInfo, remote_id: str, event_id: str, sender: str,
                        timestamp_ms: int | None) -> None:
        """Keep remote id -> event id, so a later correction can become a Matrix edit."""
        try:
            async with self.bridge.sessions() as session, session.begin():
                session.add(Message(portal_id=portal.id, remote_id=remote_id[:255], part_id="",
                                    event_id=event_id, sender=sender,
                                    timestamp=timestamp_ms or int(time.time() * 1000)))
        except IntegrityError:
            log.debug("message %s is already mapped", remote_id)

    async def _event_for(self, portal: PortalInfo, remote_id: str) -> str | None:
        async with self.bridge.sessions() as session:
            row = await session.execute(select(Message.event_id).where(
                Message.portal_id == portal.id, Message.remote_id == remote_id[:255]))
            return row.scalar_one_or_none()

    async def edit(self, network: str, event: RemoteEdit) -> None:
        """A correction: an `m.replace` of the original when we know it, else `* text`."""
        portal = self.bridge.portals.by_chat(network, event.chat)
        if portal is None:
            return
        intent = await self._ghost_in(network, portal, event.sender)
        msgtype = MessageType(event.kind.value)
        target = await self._event_for(portal, event.target_id)
        body = f"* {event.text}"
        content: dict[str, Any] = {"msgtype": msgtype.value, "body": body}
        if event.html:
            content.update(format="org.matrix.custom.html", formatted_body=f"* {event.html}")
        if target is not None:
            new_content: dict[str, Any] = {"msgtype": msgtype.value, "body": event.text}
            if event.html:
                new_content.update(format="org.matrix.custom.html", formatted_body=event.html)
            content["m.new_content"] = new_content
            content["m.relates_to"] = {"rel_type": "m.replace", "event_id": target}
        await intent.send_message_event(portal.room_id, EventType.ROOM_MESSAGE, content,
                                        timestamp=event.timestamp_ms)

    async def _open_dm(self, network: str, event: RemoteMessage) -> PortalInfo | None:
        """An IRC user wrote to a puppet: their ghost opens a private chat with its Matrix user.

        Before any ghost or room exists: the Matrix user must still be permitted private chats
        (`Door.DM`), and the network's caps on new DM rooms must allow one more; else the line
        is not bridged (the cap is logged, and the Matrix user told at most once an hour)."""
        receiver = event.chat.receiver
        verdict = self.bridge.doors.check(receiver, Door.DM, network)
        if not verdict.allowed:
            log.info("private message from %s on %s to %s not bridged: %s", event.sender.name, network,
                     receiver, verdict.reason)
            return None
        caps = self._caps(network)
        admitted = caps.admit(event.sender.id)
        if not admitted.allowed:
            limit = (f"{caps.per_hour} new private chats per hour on {network}" if admitted.reason == "network"
                     else f"{caps.per_sender} new private chats per hour from one user")
            # One warning a minute per network: a flood of refused DMs must not flood the log too.
            quiet = not self._cap_logged.should_tell(network)
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "new DM from %s on %s to %s refused: cap of %s reached", event.sender.name, network,
                    receiver, limit)
            # The cap is on chats remote users open; one the Matrix user starts is not counted.
            ghost = self.bridge.ghosts.mxid(network, event.sender.id)
            await self._tell_once(receiver, f"A private message from {event.sender.name} on {network} was not "
                                            f"bridged: this bridge opens at most {limit}. To talk to them, "
                                            f"start a chat with {ghost} yourself.")
            return None
        intent = await self.bridge.ghosts.ensure(network, event.sender)
        room_id = await intent.create_room(
            name=None, is_direct=True, invitees=[receiver],
            initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                            "content": {"history_visibility": "shared"}}],
        )
        if await room_is_encrypted(intent, self.bridge.az.state_store, room_id):
            # The homeserver encrypts new rooms by its own rule, whatever we asked for: the
            # message would be posted in the clear into an encrypted chat. Say so, and go.
            log.info("new DM %s from %s on %s to %s came out encrypted; not bridged", room_id,
                     event.sender.name, network, receiver)
            await self.bridge.bot.send_notice_as(intent, room_id, new_dm_notice(event.sender.name, network))
            await intent.leave_room(room_id, reason="Encrypted rooms are not supported yet")
            return None
        log.info("opened DM %s between %s and %s on %s", room_id, receiver, event.sender.name, network)
        return await self.bridge.portals.add(network, event.chat, room_id, event.sender.name)

    def _caps(self, network: str) -> NewDMCaps:
        caps = self._dm_caps.get(network)
        if caps is None:
            net = self.bridge.config.networks[network]
            caps = self._dm_caps[network] = NewDMCaps(net.max_new_dms_per_hour, net.max_new_dms_per_sender_per_hour)
        return caps

    async def _tell_once(self, receiver: str, text: str) -> None:
        """Tell a Matrix user about refused DMs once an hour, not once per refused line."""
        if not self._told.should_tell(receiver):
            return
        try:
            await self.bridge.tell_user(receiver, text)
        except Exception:
            log.exception("could not tell %s about a refused private chat", receiver)

    # -- membership --------------------------------------------------------------------------
    async def join(self, network: str, portal: PortalInfo, user: RemoteUser, role: Role) -> None:
        await self._ghost_in(network, portal, user)
        if role is not Role.MEMBER:
            await self.set_roles(network, portal, [(user, role)])

    async def leave(self, network: str, portal: PortalInfo, event: RemoteLeave) -> None:
        bridge = self.bridge
        if event.is_puppet_of is not None:
            # A Matrix user's puppet was kicked on IRC: they leave the room too.
            kicker = event.kicked_by.name if event.kicked_by else "someone"
            await bridge.networks[network].logins.part(event.is_puppet_of, portal.chat.id)
            try:
                await bridge.az.intent.kick_user(portal.room_id, event.is_puppet_of,
                                                 f"Kicked on {network} by {kicker}: {event.reason}".rstrip(": "))
            except MatrixError as exc:
                log.warning("could not kick %s from %s: %s", event.is_puppet_of, portal.room_id, exc)
            return
        mxid = bridge.ghosts.mxid(network, event.user.id)
        if event.kicked_by is not None:
            reason = f"Kicked by {event.kicked_by.name}: {event.reason}".rstrip(": ")
            kicker = await self._ghost_in(network, portal, event.kicked_by)
            try:
                await kicker.kick_user(portal.room_id, mxid, event.reason or "")
                return
            except MatrixError:
                await bridge.az.intent.kick_user(portal.room_id, mxid, reason)
                return
        await bridge.ghosts.intent(mxid).leave_room(portal.room_id, reason=event.reason or None)

    async def rename(self, network: str, portal: PortalInfo, event: RemoteRename) -> None:
        if event.old.id == event.new.id:
            # The network keeps the user's identity (e.g. an XMPP real JID): same ghost, new name.
            await self.bridge.ghosts.ensure(network, event.new)
            return
        old = self.bridge.ghosts.mxid(network, event.old.id)
        new_intent = await self._ghost_in(network, portal, event.new)
        await self.bridge.ghosts.intent(old).leave_room(portal.room_id, reason=f"Changed nick to {event.new.name}")
        await self._copy_level(portal, old, new_intent.mxid)

    async def _copy_level(self, portal: PortalInfo, old: str, new: str) -> None:
        bot = self.bridge.az.intent
        levels = await bot.get_power_levels(portal.room_id)
        level = levels.users.get(old)
        if level:
            levels.users[new] = level
            levels.users.pop(old, None)
            await bot.set_power_levels(portal.room_id, levels)

    async def members(self, network: str, portal: PortalInfo, event: RemoteMembers) -> None:
        """The first member list after joining: every remote user appears, ops get their level."""
        limit = asyncio.Semaphore(MEMBER_SYNC_CONCURRENCY)

        async def add(user: RemoteUser) -> None:
            async with limit:
                try:
                    await self._ghost_in(network, portal, user)
                except MatrixError as exc:
                    log.warning("could not add %s to %s: %s", user.name, portal.room_id, exc)

        await asyncio.gather(*(add(user) for user, _role in event.members))
        await self.set_roles(network, portal, [(u, r) for u, r in event.members if r is not Role.MEMBER])

    async def set_roles(self, network: str, portal: PortalInfo, roles: list[tuple[RemoteUser, Role]],
                        puppet_of: str | None = None) -> None:
        """Mirror channel roles as power levels (a puppet's role goes to its Matrix user)."""
        if not roles:
            return
        bot = self.bridge.az.intent
        levels: PowerLevelStateEventContent = await bot.get_power_levels(portal.room_id)
        voice = self.bridge.config.networks[network].voice_power_level
        changed = False
        for user, role in roles:
            mxid = puppet_of or self.bridge.ghosts.mxid(network, user.id)
            want = {Role.MODERATOR: MODERATOR_LEVEL, Role.VOICED: voice}.get(role, 0)
            if puppet_of and levels.users.get(mxid, 0) > MODERATOR_LEVEL:
                continue  # a Matrix admin's level is the room's business, not IRC's
            if levels.users.get(mxid, 0) != want:
                if want:
                    levels.users[mxid] = want
                else:
                    levels.users.pop(mxid, None)
                changed = True
        if changed:
            try:
                await bot.set_power_levels(portal.room_id, levels)
            except MatrixError as exc:  # e.g. a room creator, who may not be listed (v12)
                log.warning("could not update power levels in %s: %s", portal.room_id, exc)

    async def topic(self, network: str, portal: PortalInfo, event: RemoteTopic) -> None:
        if event.topic == (portal.topic or ""):
            return
        intent = self.bridge.az.intent
        if event.changed_by is not None:
            intent = await self._ghost_in(network, portal, event.changed_by)
        await intent.set_room_topic(portal.room_id, event.topic)
        await self.bridge.portals.set_topic(portal, event.topic)
