"""Ghosts: the Matrix users that stand for remote users.

A ghost's MXID comes from its network's `ghost_template` and the remote id, escaped to the
localpart grammar, so it can always be mapped back. Registration and display names are
cached in memory, so a busy channel costs no extra homeserver calls per line.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from mautrix.appservice import IntentAPI
from sqlalchemy import select

from connectors.api import RemoteUser

from bridge.db.models import Ghost
from bridge.identity import escape_localpart, ghost_template, unescape_localpart

if TYPE_CHECKING:
    from bridge.runtime import Bridge

log = logging.getLogger("rapture.ghosts")


class GhostManager:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        domain = bridge.config.homeserver_domain
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        for net in bridge.config.networks.values():
            prefix, suffix = ghost_template(net.ghost_template).split(network=net.name)
            pattern = re.compile(f"@{re.escape(prefix)}(.+){re.escape(suffix)}:{re.escape(domain)}")
            self._patterns.append((net.name, pattern))
        self._ready: dict[str, str] = {}  # MXID -> display name set on the homeserver

    def mxid(self, network: str, remote_id: str) -> str:
        net = self.bridge.config.networks[network]
        return f"@{net.ghost_localpart(escape_localpart(remote_id))}:{self.bridge.config.homeserver_domain}"

    def parse(self, mxid: str) -> tuple[str, str] | None:
        """(network, remote id) of a ghost MXID, or None when it is not a ghost's."""
        for network, pattern in self._patterns:
            match = pattern.fullmatch(mxid)
            if match:
                try:
                    return network, unescape_localpart(match.group(1))
                except ValueError:
                    return None
        return None

    def is_ghost(self, mxid: str) -> bool:
        return any(p.fullmatch(mxid) for _, p in self._patterns)

    def intent(self, mxid: str) -> IntentAPI:
        return self.bridge.az.intent.user(mxid)

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
