"""Flood control: a token bucket per connection with a two-class priority queue.

Urgent lines (PONG, QUIT, CAP and SASL during registration) are written at once and never
wait behind messages, so a long queue of PRIVMSGs can never make the server time us out.
Everything else is FIFO. There is no task per connection: when the bucket is empty a single
timer is scheduled for the next token, which keeps ten thousand idle puppets free.

Never the `irc` library's `set_rate_limit`: it sleeps with `time.sleep`, blocking the loop.

Only checked `Line`s (see `wire.irc_line`) enter the queue, so writing one can fail only
because the connection is gone: a bad line is refused to its caller before it is queued,
and can never take the lines queued behind it down with it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

from connectors.irc.wire import Line

log = logging.getLogger("rapture.irc")

URGENT = 0
NORMAL = 1


class ConnectionGone(Exception):
    """The connection closed before a queued line could be written."""


class FloodControl:
    __slots__ = ("_write", "burst", "rate", "_tokens", "_stamp", "_queue", "_timer")

    def __init__(self, write: Callable[[Line], None], *, burst: int, rate: float) -> None:
        """`rate` lines per second after a burst of `burst`; rate <= 0 turns control off."""
        self._write = write
        self.burst = max(1, burst)
        self.rate = rate
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        # Created on first use: an empty deque costs ~600 bytes, times thousands of puppets.
        self._queue: collections.deque[tuple[Line, asyncio.Future[None] | None]] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> int:
        return len(self._queue) if self._queue else 0

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def send(self, line: Line, priority: int = NORMAL, *, done: asyncio.Future[None] | None = None) -> None:
        """Write now if allowed, else queue. `done` is resolved once the line is written."""
        if not isinstance(line, Line):  # a str would skip the wire guard
            raise TypeError("FloodControl sends Lines made by irc_line()")
        if priority == URGENT or self.rate <= 0:
            self._write(line)
            _resolve(done)
            return
        self._refill()
        if not self._queue and self._tokens >= 1:
            self._tokens -= 1
            self._write(line)
            _resolve(done)
            return
        if self._queue is None:
            self._queue = collections.deque()
        self._queue.append((line, done))
        self._schedule()

    async def send_and_wait(self, line: Line) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.send(line, done=future)
        await future

    def _schedule(self) -> None:
        if self._timer is not None or not self._queue:
            return
        wait = max(0.0, (1 - self._tokens) / self.rate)
        self._timer = asyncio.get_running_loop().call_later(wait, self._drain)

    def _drain(self) -> None:
        self._timer = None
        self._refill()
        while self._queue and self._tokens >= 1:
            line, done = self._queue.popleft()
            self._tokens -= 1
            try:
                self._write(line)
            except ConnectionGone as exc:  # the transport went away: fail this and the rest
                if done is not None and not done.done():
                    done.set_exception(exc)
                self.fail_all(str(exc))
                return
            except Exception as exc:  # not expected: this line fails, the queue goes on
                log.exception("writing a queued IRC line failed")
                if done is not None and not done.done():
                    done.set_exception(ConnectionGone(str(exc)))
                continue
            _resolve(done)
        self._schedule()

    def fail_all(self, reason: str) -> None:
        """The connection is gone: every waiting line fails (its message goes to the outbox)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            _line, done = self._queue.popleft()
            if done is not None and not done.done():
                done.set_exception(ConnectionGone(reason))
        self._tokens = float(self.burst)


def _resolve(done: asyncio.Future[None] | None) -> None:
    if done is not None and not done.done():
        done.set_result(None)
