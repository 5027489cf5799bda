"""Ghosts: the Matrix users that stand for remote users.

A ghost's MXID comes from its network's `ghost_template` and the remote id, escaped to the
localpart grammar, so it can always be mapped back. Registration and display names are
cached in memory, so a busy channel costs no extra homeserver calls per line.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mautrix.appservice import IntentAPI
from sqlalchemy import select

from connectors.api import RemoteUser

from bridge.db.models import Ghost
from bridge.identity import GhostNamer

if TYPE_CHECKING:
    from bridge.runtime import Bridge

log = logging.getLogger("rapture.ghosts")
INTENT_CACHE_SIZE = 256


class GhostManager:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        domain = bridge.config.homeserver_domain
        self._namers = {
            net.name: GhostNamer(net.name, net.ghost_template, domain)
            for net in bridge.config.networks.values()
        }
        self._patterns = [(name, namer.pattern()) for name, namer in self._namers.items()]
        self._ready: dict[str, str] = {}  # MXID -> display name set on the homeserver
        self._intents: dict[str, IntentAPI] = {}

    def mxid(self, network: str, remote_id: str) -> str:
        return self._namers[network].mxid(remote_id)

    def parse(self, mxid: str) -> tuple[str, str] | None:
        """(network, remote id) of a ghost MXID, or None when it is not a ghost's."""
        for network, pattern in self._patterns:
            if pattern.fullmatch(mxid):
                remote_id = self._namers[network].parse(mxid)
                return (network, remote_id) if remote_id is not None else None
        return None

    def is_ghost(self, mxid: str) -> bool:
        return any(p.fullmatch(mxid) for _, p in self._patterns)

    def intent(self, mxid: str) -> IntentAPI:
        # mautrix builds an IntentAPI with dozens of wrapper closures each time: keep the
        # recently active ghosts' ones (bounded, so 100k ghosts do not all stay in memory).
        intent = self._intents.pop(mxid, None)
        if intent is None:
            intent = self.bridge.az.intent.user(mxid)
            if len(self._intents) >= INTENT_CACHE_SIZE:
                del self._intents[next(iter(self._intents))]
        self._intents[mxid] = intent  # re-inserted: the dict's order is least recently used first
        return intent

    async def ensure(self, network: str, user: RemoteUser) -> IntentAPI:
        """The ghost's intent, registered and named; cheap after the first call."""
        mxid = self.mxid(network, user.id)
        intent = self.intent(mxid)
        if self._ready.get(mxid) == user.name:
            return intent
        await intent.ensure_registered()
        if mxid not in self._ready:
            await self._store(network, user, mxid)
        try:
            await intent.set_displayname(user.name, check_current=False)
        except Exception:
            log.warning("could not set the display name of %s", mxid)
        self._ready[mxid] = user.name
        return intent

    async def _store(self, network: str, user: RemoteUser, mxid: str) -> None:
        async with self.bridge.sessions() as session, session.begin():
            row = (await session.execute(select(Ghost).where(Ghost.mxid == mxid))).scalar_one_or_none()
            if row is None:
                session.add(Ghost(network=network, remote_id=user.id, mxid=mxid, displayname=user.name, meta={}))
            else:
                row.displayname = user.name

    async def known(self, mxid: str) -> bool:
        if mxid in self._ready:
            return True
        async with self.bridge.sessions() as session:
            row = await session.execute(select(Ghost.id).where(Ghost.mxid == mxid))
            return row.first() is not None
