"""Permission at every door: the one check that says who may open a portal, and how.

Every way into a network goes through `Doors.check`, *before* any side effect (no room
joined or created, no ghost registered, no remote JOIN):

- `Door.LINK`: bridge an existing Matrix room to a channel (the bot's `link`, provisioning
  `POST link`). Needs level `user`; a bridge admin links at once, anyone else only with the
  consent of one of the channel's operators on the remote network (asked by the connector's
  `ConsentAsker`; a network without one refuses), and only where `dynamic_portals` is on.
- `Door.PORTAL`: a new portal for a channel nobody bridged yet (an alias query, the bot's
  `join`). Needs `user`, or `relay` on a network with `relay: true` (a relay user is spoken
  for by the bot, so a channel room is of use to them); with `dynamic_portals: false`, admins
  only.
- `Door.DM`: a private chat with a remote user (a Matrix user invites a ghost, or a remote
  user writes to a Matrix user's puppet). Needs `user` everywhere: a relay user has no puppet
  to carry a private line.

Federated users get the level of their server's rule, or `*`, like everyone else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config.model import NetworkConfig
from bridge.permissions import Level, Permissions

# Room versions in which the creators hold unlimited power without being listed (MSC4289).
ROOM_VERSIONS_WITH_CREATOR_POWER = frozenset({"12", "org.matrix.hydra.11"})
MODERATOR = 50


class Door(enum.Enum):
    LINK = "link"
    PORTAL = "portal"
    DM = "dm"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    allowed: bool
    level: Level
    needs_consent: bool = False  # allowed once the channel's operators agree
    reason: str = ""  # why not, in words for the user

    def __bool__(self) -> bool:
        return self.allowed


def _have(level: Level) -> str:
    return "no permission" if level == Level.NONE else f"level '{level.label}'"


class Doors:
    def __init__(self, permissions: Permissions, networks: Mapping[str, NetworkConfig],
                 asks_consent: Callable[[str], bool]) -> None:
        self.permissions = permissions
        self.networks = networks
        self._asks_consent = asks_consent  # network -> its connector can ask operators

    def needed(self, door: Door, network: str) -> Level:
        net = self.networks[network]
        if door is Door.PORTAL:
            if not net.dynamic_portals:
                return Level.ADMIN
            return Level.RELAY if net.relay else Level.USER
        return Level.USER

    def check(self, mxid: str, door: Door, network: str) -> Verdict:
        level = self.permissions.level_for(mxid)
        net = self.networks[network]
        if level >= Level.ADMIN:
            return Verdict(allowed=True, level=level)
        needed = self.needed(door, network)
        if level < needed:
            if door is Door.PORTAL and not net.dynamic_portals and level >= Level.USER:
                why = f"only bridge admins may bridge new channels on {network}"
            else:
                what = {Door.LINK: "linking a room to a channel", Door.PORTAL: "bridging a new channel",
                        Door.DM: "a private chat"}[door]
                why = f"{what} on {network} needs permission level '{needed.label}', and {mxid} has {_have(level)}"
            return Verdict(allowed=False, level=level, reason=why)
        if door is Door.LINK:
            if not net.dynamic_portals:
                return Verdict(allowed=False, level=level,
                               reason=f"only bridge admins may link rooms to channels on {network}")
            if not self._asks_consent(network):
                return Verdict(allowed=False, level=level,
                               reason=f"{network} cannot ask a channel's operators for consent, so only "
                                      "bridge admins may link rooms to its channels")
            return Verdict(allowed=True, level=level, needs_consent=True)
        return Verdict(allowed=True, level=level)


def power_in(state: list[Any], user_id: str) -> float:
    """A user's power level from a room's state; room creators in version 12 rooms are unbounded."""
    users: dict[str, Any] = {}
    default = 0
    for event in state:
        if event.type.t == "m.room.create":
            content = event.content.serialize()
            creators = {event.sender, *content.get("additional_creators", [])}
            if str(content.get("room_version", "1")) in ROOM_VERSIONS_WITH_CREATOR_POWER and user_id in creators:
                return float("inf")
        elif event.type.t == "m.room.power_levels":
            content = event.content.serialize()
            users = content.get("users", {}) or {}
            default = content.get("users_default", 0) or 0
    return float(users.get(user_id, default))
