"""Portals made by joining an alias (`#net_#chan:domain`), and who may make them.

Deviation, and why: the homeserver asks the appservice about an unknown alias with no user in
the query (`GET /_matrix/app/v1/rooms/{alias}` carries only the alias, and the query may come
over federation), yet the join that follows only succeeds if the room exists by the time we
answer. So the permission check cannot happen at the query. What happens instead:

- `dynamic_portals: false`: the query is refused for everyone, so it creates nothing. Admins
  bridge new channels with the bot's `join` or `link` (both check the admin by name).
- otherwise the query creates a *dormant* room: a Matrix room with the alias, nothing more. No
  portal is stored, the bridge does not JOIN the channel, no ghost is made. The first join of
  the room by a user decides: a user the permission check (`Door.PORTAL`) admits wakes it up
  (the portal is stored, the bridge JOINs the channel, their puppet follows); anyone else is
  kicked, the alias deleted and the room abandoned by the bot, so it is as if it never was.
  A dormant room nobody joins within `DORMANT_SECONDS` is abandoned the same way, and at
  most `MAX_DORMANT` exist at once and `MAX_DORMANT_PER_HOUR` are made in any hour (more
  queries are refused): a stranger resolving aliases in a loop costs a bounded number of
  empty rooms, and nothing on the remote network. (An abandoned room stays on the homeserver:
  only its admin can purge it, so the hourly cap is what bounds them, not the one at a time.)

Dormant rooms live in memory: after a restart, a dormant room's alias stays (pointing at a room
with only the bot in it) until an admin removes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mautrix.errors import MatrixError
from mautrix.types import Membership, StateEvent

from connectors.api import ChatRef

from bridge.doors import Door

if TYPE_CHECKING:
    from bridge.portals import PortalInfo
    from bridge.runtime import Bridge

log = logging.getLogger("rapture.alias")
DORMANT_SECONDS = 120.0
MAX_DORMANT = 50
MAX_DORMANT_PER_HOUR = 200


@dataclass(frozen=True, slots=True)
class Dormant:
    network: str
    chat_id: str
    name: str
    alias: str
    since: float


class AliasPortals:
    def __init__(self, bridge: Bridge, *, dormant_seconds: float = DORMANT_SECONDS,
                 max_dormant: int = MAX_DORMANT, max_per_hour: int = MAX_DORMANT_PER_HOUR,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bridge = bridge
        self.dormant_seconds = dormant_seconds
        self.max_dormant = max_dormant
        self.max_per_hour = max_per_hour
        self._clock = clock
        self._made: deque[float] = deque()  # when each dormant room of the last hour was made
        self._dormant: dict[str, Dormant] = {}  # room id -> what it would bridge
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    def is_dormant(self, room_id: str) -> bool:
        return room_id in self._dormant

    def waiting_for(self, network: str, chat_id: str) -> bool:
        return any(d.network == network and d.chat_id == chat_id for d in self._dormant.values())

    async def query(self, network: str, chat_id: str, name: str, alias: str) -> bool:
        """The homeserver asks for an unknown alias of a valid, unbridged channel: True if made."""
        if not self.bridge.config.networks[network].dynamic_portals:
            return False  # admins use `join` or `link`
        if self.waiting_for(network, chat_id):
            return False  # its room exists under another alias
        if len(self._dormant) >= self.max_dormant:
            log.warning("alias %s refused: %d portal rooms already wait for a first permitted user",
                        alias, len(self._dormant))
            return False
        now = self._clock()
        while self._made and now - self._made[0] >= 3600:
            self._made.popleft()
        if len(self._made) >= self.max_per_hour:
            log.warning("alias %s refused: %d portal rooms were made for aliases in the last hour",
                        alias, len(self._made))
            return False
        self._made.append(now)
        localpart = self.bridge.config.networks[network].alias_localpart(name)
        room_id = await self.bridge.portals.create_room(network, name, localpart)
        self._dormant[room_id] = Dormant(network, chat_id, name, alias, now)
        loop = asyncio.get_running_loop()
        self._expiry[room_id] = loop.call_later(
            self.dormant_seconds, lambda: self.bridge.spawn(self._abandon(room_id, "nobody joined")))
        log.info("alias %s: room %s waits for a permitted user before %s on %s is bridged",
                 alias, room_id, name, network)
        return True

    async def member(self, event: StateEvent) -> PortalInfo | None:
        """A membership event in a dormant room: the portal, if this join woke it up."""
        dormant = self._dormant.get(event.room_id)
        if dormant is None or event.content.membership != Membership.JOIN:
            return None
        user = event.state_key
        if self.bridge.is_bridge_user(user) or event.sender != user:
            return None
        verdict = self.bridge.doors.check(user, Door.PORTAL, dormant.network)
        if not verdict.allowed:
            log.info("%s may not open %s on %s by its alias: %s", user, dormant.name, dormant.network,
                     verdict.reason)
            try:
                await self.bridge.az.intent.kick_user(event.room_id, user, f"Not permitted: {verdict.reason}")
            except MatrixError as exc:
                log.warning("could not remove %s from %s: %s", user, event.room_id, exc)
            await self._abandon(event.room_id, f"first joined by {user}, who is not permitted")
            return None
        if self.bridge.portals.by_chat(dormant.network, ChatRef(dormant.chat_id)) is not None:
            await self._abandon(event.room_id, "the channel was bridged to another room meanwhile")
            return None
        self._forget(event.room_id)
        portal = await self.bridge.portals.add(dormant.network, ChatRef(dormant.chat_id), event.room_id,
                                               dormant.name)
        await self.bridge.networks[dormant.network].connector.open_chat(dormant.chat_id)
        log.info("%s opened %s on %s by its alias", user, dormant.name, dormant.network)
        return portal

    def _forget(self, room_id: str) -> Dormant | None:
        timer = self._expiry.pop(room_id, None)
        if timer is not None:
            timer.cancel()
        return self._dormant.pop(room_id, None)

    async def _abandon(self, room_id: str, why: str) -> None:
        dormant = self._forget(room_id)
        if dormant is None:
            return
        intent = self.bridge.az.intent
        try:
            await intent.remove_room_alias(dormant.alias.split(":", 1)[0][1:])
        except MatrixError as exc:
            log.warning("could not delete the alias %s: %s", dormant.alias, exc)
        try:
            await intent.leave_room(room_id, reason="Not bridged")
        except MatrixError:
            pass
        log.info("alias %s abandoned (%s): nothing bridged", dormant.alias, why)

    def close(self) -> None:
        for timer in self._expiry.values():
            timer.cancel()
        self._expiry.clear()
