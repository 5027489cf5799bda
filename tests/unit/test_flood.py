"""Flood control: a burst, then the configured rate; PONG never waits behind messages."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.irc.flood import URGENT, ConnectionGone, FloodControl
from connectors.irc.wire import Line, irc_line


def msg(text: str) -> Line:
    return irc_line("PRIVMSG", "#c", trailing=text)


async def test_burst_then_rate_and_urgent_lines_jump_the_queue() -> None:
    written: list[tuple[float, str]] = []
    start = time.monotonic()
    flood = FloodControl(lambda line: written.append((time.monotonic() - start, line.text)), burst=3, rate=20)
    for n in range(8):
        flood.send(msg(str(n)))
    assert [line for _, line in written] == [f"PRIVMSG #c :{n}" for n in range(3)]  # the burst
    flood.send(irc_line("PONG", trailing="x"), URGENT)
    assert written[-1][1] == "PONG :x"  # at once, ahead of the five waiting messages
    last = asyncio.get_running_loop().create_future()
    flood.send(msg("last"), done=last)
    await asyncio.wait_for(last, 2)
    lines = [line for _, line in written]
    assert lines[4:] == [f"PRIVMSG #c :{n}" for n in range(3, 8)] + ["PRIVMSG #c :last"]  # in order
    # Six queued lines at 20 per second take about 0.3 s: paced, not bursted.
    assert written[-1][0] >= 0.25


async def test_off_when_rate_is_zero() -> None:
    written: list[str] = []
    flood = FloodControl(written.append, burst=1, rate=0)
    for n in range(100):
        flood.send(msg(str(n)))
    assert len(written) == 100


async def test_waiting_lines_fail_when_the_connection_goes() -> None:
    flood = FloodControl(lambda line: None, burst=1, rate=1)
    flood.send(msg("first"))
    waiting = asyncio.get_running_loop().create_future()
    flood.send(msg("second"), done=waiting)
    flood.fail_all("connection closed")
    with pytest.raises(ConnectionGone):
        await waiting
    assert flood.pending == 0
