"""Per-portal ordered queues: items of one key are handled in order, keys in parallel.

A worker task exists only while its key has work (it ends after `idle_seconds` without any),
so ten thousand quiet rooms cost no tasks. Queues are unbounded so that connectors, which
report from synchronous callbacks, can always hand an event over without dropping it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger("rapture.dispatch")
BURST_YIELD_EVERY = 32
T = TypeVar("T")


class RoomDispatcher(Generic[T]):
    def __init__(self, handler: Callable[[T], Awaitable[None]], *, idle_seconds: float = 30.0) -> None:
        self._handler = handler
        self._idle = idle_seconds
        self._queues: dict[str, asyncio.Queue[T]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    def depth(self) -> dict[str, int]:
        return {key: q.qsize() for key, q in self._queues.items()}

    def submit(self, key: str, item: T) -> None:
        """Queue `item` behind everything queued for `key` before it."""
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
        queue.put_nowait(item)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._work(key, queue), name=f"queue:{key}")

    async def _work(self, key: str, queue: asyncio.Queue[T]) -> None:
        burst = 0
        try:
            while True:
                if queue.empty():
                    try:
                        item = await asyncio.wait_for(queue.get(), self._idle)
                    except TimeoutError:
                        if queue.empty():
                            return
                        continue
                else:  # a burst: no timer (wait_for makes a task) per item...
                    item = queue.get_nowait()
                    burst += 1
                    if burst % BURST_YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # ...but other rooms still get their turn
                try:
                    await self._handler(item)
                except Exception:
                    # One bad event must not stop the queue: log it and go on with the next.
                    log.exception("handling an event for %s failed", key)
                finally:
                    queue.task_done()
        finally:
            # No await between the emptiness check above and this: no item can slip in unseen.
            self._workers.pop(key, None)
            if queue.empty():
                self._queues.pop(key, None)

    async def drain(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, for every queued item to be handled."""
        joins = [q.join() for q in self._queues.values()]
        if joins:
            try:
                await asyncio.wait_for(asyncio.gather(*joins), timeout)
            except TimeoutError:
                log.warning("stopping with %d events still queued", sum(self.depth().values()))

    async def stop(self) -> None:
        for task in list(self._workers.values()):
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()
