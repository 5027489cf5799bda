"""Per-room ordered queues: events of one room are handled in order, rooms in parallel.

A worker task exists only while its room has work (it ends after `idle_seconds` without any),
so ten thousand quiet rooms cost no tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger("rapture.dispatch")
T = TypeVar("T")


class RoomDispatcher(Generic[T]):
    def __init__(
        self,
        handler: Callable[[T], Awaitable[None]],
        *,
        max_queue: int = 1000,
        idle_seconds: float = 30.0,
    ) -> None:
        self._handler = handler
        self._max_queue = max_queue
        self._idle = idle_seconds
        self._queues: dict[str, asyncio.Queue[T]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    def depth(self) -> dict[str, int]:
        return {room: q.qsize() for room, q in self._queues.items()}

    async def submit(self, room_id: str, item: T) -> None:
        """Queue `item` for its room; waits (back-pressure) when that room's queue is full."""
        queue = self._queues.get(room_id)
        if queue is None:
            queue = self._queues[room_id] = asyncio.Queue(self._max_queue)
        await queue.put(item)
        if room_id not in self._workers:
            self._workers[room_id] = asyncio.create_task(self._work(room_id, queue), name=f"room:{room_id}")

    async def _work(self, room_id: str, queue: asyncio.Queue[T]) -> None:
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), self._idle)
                except TimeoutError:
                    if queue.empty():
                        return
                    continue
                try:
                    await self._handler(item)
                except Exception:
                    # One bad event must not stop the room: log it and go on with the next.
                    log.exception("handling an event in %s failed", room_id)
                finally:
                    queue.task_done()
        finally:
            # No await between the emptiness check above and this: no item can slip in unseen.
            self._workers.pop(room_id, None)
            if queue.empty():
                self._queues.pop(room_id, None)

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
