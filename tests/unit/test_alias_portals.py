"""Alias queries (which name no user and may come over federation) make a bounded number of
rooms: at most so many at once, and at most so many an hour, since an abandoned room stays on
the homeserver. The bridge is faked: only what AliasPortals uses."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from bridge.alias_portals import AliasPortals


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _aliases(clock: Clock, made: list[str]) -> AliasPortals:
    async def create_room(network: str, name: str, localpart: str) -> str:
        made.append(name)
        return f"!r{len(made)}:hs"

    async def nothing(*args: object, **kwargs: object) -> None:
        pass

    net = SimpleNamespace(dynamic_portals=True, alias_localpart=lambda name: f"libera_{name}")
    bridge = SimpleNamespace(
        config=SimpleNamespace(networks={"libera": net}),
        portals=SimpleNamespace(create_room=create_room),
        az=SimpleNamespace(intent=SimpleNamespace(remove_room_alias=nothing, leave_room=nothing)),
        spawn=lambda coro: asyncio.ensure_future(coro),
    )
    return AliasPortals(bridge, dormant_seconds=3600, max_dormant=5, max_per_hour=20, clock=clock)  # type: ignore[arg-type]


async def test_a_stranger_resolving_aliases_in_a_loop_makes_a_bounded_number_of_rooms() -> None:
    clock, made = Clock(), []
    aliases = _aliases(clock, made)
    try:
        for n in range(100):
            # Each room is abandoned at once (nobody joins, or a stranger joins first): the cap on
            # rooms waiting at the same time never bites, the hourly one must.
            if await aliases.query("libera", f"#c{n}", f"#c{n}", f"#libera_#c{n}:hs"):
                await aliases._abandon(f"!r{len(made)}:hs", "test")
        assert len(made) == 20
        clock.now += 3600
        assert await aliases.query("libera", "#later", "#later", "#libera_#later:hs")
    finally:
        aliases.close()
