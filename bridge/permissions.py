"""Who may do what: `bridge.permissions` maps `*`, a server name or an MXID to a level.

The most specific entry wins: an exact MXID beats the user's server name, which beats `*`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Level(enum.IntEnum):
    NONE = 0  # nothing; also how an admin blocks one user or server under a wider rule
    RELAY = 10  # may be relayed by the bot, nothing else
    USER = 20  # gets puppets and user commands
    ADMIN = 30  # everything

    @property
    def label(self) -> str:
        return self.name.lower()


LEVEL_NAMES = ("none", "relay", "user", "admin")


class Permissions:
    def __init__(self, mapping: Mapping[str, str] | None) -> None:
        self._rules: dict[str, Level] = {
            str(key): Level[str(value).upper()] for key, value in (mapping or {}).items()
        }

    def level_for(self, mxid: str) -> Level:
        if mxid in self._rules:
            return self._rules[mxid]
        _, _, domain = mxid.partition(":")
        if domain and domain in self._rules:
            return self._rules[domain]
        return self._rules.get("*", Level.NONE)

    def allows(self, mxid: str, needed: Level) -> bool:
        return self.level_for(mxid) >= needed
