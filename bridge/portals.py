"""Portals: Matrix rooms bridged to remote chats. All portals are cached in memory."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mautrix.types import RoomCreatePreset, RoomDirectoryVisibility
from sqlalchemy import delete, select, update

from connectors.api import ChatKind, ChatRef

from bridge.db.models import Portal

if TYPE_CHECKING:
    from bridge.runtime import Bridge

log = logging.getLogger("rapture.portals")

PORTAL_POWER_LEVELS = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "invite": 0,
    "kick": 50,
    "ban": 50,
    "redact": 50,
    "events": {
        "m.room.name": 50,
        "m.room.topic": 0,  # the channel's own modes decide who may change it on IRC
        "m.room.avatar": 50,
        "m.room.power_levels": 100,
        "m.room.history_visibility": 100,
        "m.room.encryption": 100,  # the bridge cannot read encrypted rooms: keep it off
        "m.room.tombstone": 100,
        "m.room.server_acl": 100,
    },
}


@dataclass
class PortalInfo:
    id: int
    network: str
    chat: ChatRef
    room_id: str
    name: str | None
    topic: str | None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.network, self.chat.id, self.chat.receiver)


class PortalStore:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._by_room: dict[str, PortalInfo] = {}
        self._by_key: dict[tuple[str, str, str], PortalInfo] = {}

    async def load(self) -> None:
        async with self.bridge.sessions() as session:
            rows = (await session.execute(select(Portal).where(Portal.room_id.is_not(None)))).scalars()
            for row in rows:
                self._remember(_info(row))

    def _remember(self, info: PortalInfo) -> None:
        self._by_room[info.room_id] = info
        self._by_key[info.key] = info

    def all(self) -> list[PortalInfo]:
        return list(self._by_room.values())

    def by_room(self, room_id: str) -> PortalInfo | None:
        return self._by_room.get(room_id)

    def by_chat(self, network: str, chat: ChatRef) -> PortalInfo | None:
        return self._by_key.get((network, chat.id, chat.receiver))

    def dms_of(self, network: str, mxid: str) -> list[PortalInfo]:
        return [p for p in self._by_room.values() if p.network == network and p.chat.receiver == mxid]

    async def add(self, network: str, chat: ChatRef, room_id: str, name: str | None,
                  topic: str | None = None) -> PortalInfo:
        async with self.bridge.sessions() as session, session.begin():
            row = Portal(network=network, remote_id=chat.id, receiver=chat.receiver, room_id=room_id,
                         kind=chat.kind.value, name=name, topic=topic, meta={})
            session.add(row)
            await session.flush()
            info = _info(row)
        self._remember(info)
        return info

    async def set_topic(self, portal: PortalInfo, topic: str) -> None:
        portal.topic = topic
        async with self.bridge.sessions() as session, session.begin():
            await session.execute(update(Portal).where(Portal.id == portal.id).values(topic=topic))

    async def remove(self, portal: PortalInfo) -> None:
        self._by_room.pop(portal.room_id, None)
        self._by_key.pop(portal.key, None)
        async with self.bridge.sessions() as session, session.begin():
            await session.execute(delete(Portal).where(Portal.id == portal.id))

    async def create_channel_room(self, network: str, chat: ChatRef, name: str,
                                  alias_localpart: str | None) -> PortalInfo:
        """Create the Matrix room of a channel portal (as the bot) and store the portal."""
        room_id = await self.create_room(network, name, alias_localpart)
        return await self.add(network, chat, room_id, name)

    async def create_room(self, network: str, name: str, alias_localpart: str | None) -> str:
        """Create the Matrix room of a channel portal (as the bot), without storing a portal."""
        bot = self.bridge.az.intent
        room_id = await bot.create_room(
            alias_localpart=alias_localpart,
            visibility=RoomDirectoryVisibility.PRIVATE,
            preset=RoomCreatePreset.PUBLIC,
            name=name,
            # The creating bot has full power (and, in room version 12, must not be listed).
            power_level_override=PORTAL_POWER_LEVELS,
            initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                            "content": {"history_visibility": "shared"}}],
        )
        log.info("created room %s for %s on %s", room_id, name, network)
        return room_id


def _info(row: Portal) -> PortalInfo:
    kind = ChatKind(row.kind) if row.kind in ("channel", "dm") else ChatKind.CHANNEL
    return PortalInfo(
        id=row.id, network=row.network, chat=ChatRef(row.remote_id, kind, row.receiver or ""),
        room_id=row.room_id or "", name=row.name, topic=row.topic,
    )
