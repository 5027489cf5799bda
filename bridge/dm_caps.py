"""Caps on new private chats opened by remote users, per network and per remote sender.

Every remote nick or JID that writes to a puppet would otherwise get a ghost and a DM room:
a bot on the remote network could make thousands an hour. `NewDMCaps` admits at most
`per_hour` new DM rooms per network and `per_sender` per remote user in any sliding hour.

Memory stays bounded: only admitted openings are remembered (a refused one costs nothing),
so there are never more than `per_hour` timestamps, and a sender's entry goes when its last
timestamp leaves the window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class CapVerdict:
    allowed: bool
    reason: str = ""  # "network" or "sender" when refused


class NewDMCaps:
    def __init__(self, per_hour: int, per_sender: int, *, clock: Callable[[], float] = time.monotonic,
                 window: float = WINDOW_SECONDS) -> None:
        self.per_hour = per_hour
        self.per_sender = per_sender
        self._clock = clock
        self._window = window
        self._all: deque[tuple[float, str]] = deque()  # (when, sender), oldest first
        self._by_sender: dict[str, int] = {}  # sender -> openings still in the window

    def _expire(self, now: float) -> None:
        while self._all and now - self._all[0][0] >= self._window:
            _, sender = self._all.popleft()
            left = self._by_sender[sender] - 1
            if left:
                self._by_sender[sender] = left
            else:
                del self._by_sender[sender]

    def would_admit(self, sender: str) -> bool:
        """Whether `admit` would admit `sender` now (nothing is counted)."""
        self._expire(self._clock())
        return len(self._all) < self.per_hour and self._by_sender.get(sender, 0) < self.per_sender

    def admit(self, sender: str) -> CapVerdict:
        """Count one new DM from `sender` if both caps allow it."""
        now = self._clock()
        self._expire(now)
        if len(self._all) >= self.per_hour:
            return CapVerdict(False, "network")
        if self._by_sender.get(sender, 0) >= self.per_sender:
            return CapVerdict(False, "sender")
        self._all.append((now, sender))
        self._by_sender[sender] = self._by_sender.get(sender, 0) + 1
        return CapVerdict(True)

    def __len__(self) -> int:
        """Openings remembered (for tests: never more than `per_hour`)."""
        return len(self._all)

    @property
    def senders(self) -> int:
        return len(self._by_sender)
