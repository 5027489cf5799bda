"""Per-room queues: order within a room, parallelism across rooms, failures contained."""

from __future__ import annotations

import asyncio

from bridge.appservice.dispatch import RoomDispatcher


async def test_order_per_room_and_rooms_in_parallel() -> None:
    seen: list[tuple[str, int]] = []
    gate = asyncio.Event()

    async def handle(item: tuple[str, int]) -> None:
        room, n = item
        if room == "slow" and n == 0:
            await gate.wait()  # room "slow" is stuck; room "fast" must not wait for it
        if room == "fast" and n == 2:
            gate.set()
        seen.append(item)

    dispatcher: RoomDispatcher[tuple[str, int]] = RoomDispatcher(handle, idle_seconds=0.05)
    for n in range(3):
        dispatcher.submit("slow", ("slow", n))
        dispatcher.submit("fast", ("fast", n))
    await dispatcher.drain(timeout=5)
    assert [n for r, n in seen if r == "slow"] == [0, 1, 2]
    assert [n for r, n in seen if r == "fast"] == [0, 1, 2]
    assert seen.index(("fast", 2)) < seen.index(("slow", 0))
    await asyncio.sleep(0.2)
    assert dispatcher.depth() == {}  # idle workers and queues are gone


async def test_a_failing_event_does_not_stop_its_room() -> None:
    done: list[int] = []

    async def handle(n: int) -> None:
        if n == 1:
            raise RuntimeError("boom")
        done.append(n)

    dispatcher: RoomDispatcher[int] = RoomDispatcher(handle, idle_seconds=0.05)
    for n in range(3):
        dispatcher.submit("room", n)
    await dispatcher.drain(timeout=5)
    assert done == [0, 2]
