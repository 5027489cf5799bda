"""Telling someone something once per period, not once per event that calls for it."""

from __future__ import annotations

import time
from collections import OrderedDict


class NoticeLimiter:
    """True for a key once per `every` seconds (a sender told about their encrypted messages
    per room, a user told about refused private chats, a cap logged per network), not once per
    event: those come in bursts. Bounded: beyond `capacity` keys the least recently told go
    first (they are told again rather than never)."""

    def __init__(self, every: float = 600.0, capacity: int = 1024) -> None:
        self.every = every
        self.capacity = capacity
        self._told: OrderedDict[tuple[str, ...], float] = OrderedDict()

    def should_tell(self, *key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        last = self._told.get(key)
        if last is not None and now - last < self.every:
            return False
        self._told[key] = now
        self._told.move_to_end(key)
        while len(self._told) > self.capacity:
            self._told.popitem(last=False)
        return True
