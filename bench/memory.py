"""Memory: the bridge's RSS idle, and with N connected idle puppets, each in a bridged channel.

Logins and portals are written straight into the bridge's database (the homeserver is not
needed to hold a puppet), then the bridge is restarted: at start it reconnects every login
that sits in a channel. We wait until the IRC server counts every puppet, let things settle,
and read VmRSS from /proc. Two figures per puppet: each point's `kb_per_puppet` is
(RSS - idle RSS) / puppets, so it still carries fixed costs (code paths warmed, caches, the
portals) and falls as puppets grow; `slope_kb_per_puppet`, between the first and the last
point, is what one more puppet costs, the figure the target is about.

Usage: python -m bench.memory [--counts 100,1000,10000]
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

from sqlalchemy import insert

from bench import cli
from bench.common import TimedIrc, bench_stack, print_result
from bridge.db.engine import make_engine
from bridge.db.models import Login, MatrixUser, Portal

PER_CHANNEL = 10  # puppets per channel: many channels, as in real use, not one huge one
IMPORT_PROBE = ("import aiohttp, irc.client_aio, ruamel.yaml, mautrix.appservice, aiosqlite, "
                "sqlalchemy.ext.asyncio, cryptography.hazmat.primitives.ciphers.aead")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def import_cost_kb() -> int:
    """RSS of a bare interpreter that has imported what the bridge imports (the floor)."""
    code = f"{IMPORT_PROBE}\nprint(open('/proc/self/status').read())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"VmRSS:\s+(\d+)", out).group(1))


async def seed(db_url: str, start: int, stop: int) -> None:
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            channels = range(start // PER_CHANNEL, (stop + PER_CHANNEL - 1) // PER_CHANNEL)
            await conn.execute(insert(Portal), [
                {"network": "local", "remote_id": f"#mem{k}", "receiver": "", "room_id": f"!mem{k}:localhost",
                 "kind": "channel", "name": f"#mem{k}", "metadata": {}} for k in channels])
            await conn.execute(insert(MatrixUser), [
                {"mxid": f"@mem{i}:localhost", "metadata": {}} for i in range(start, stop)])
            await conn.execute(insert(Login), [
                {"mxid": f"@mem{i}:localhost", "network": "local", "nick": f"mem{i}", "state": "disconnected",
                 "metadata": {"channels": [f"#mem{i // PER_CHANNEL}"], "displayname": f"mem {i}"}}
                for i in range(start, stop)])
    finally:
        await engine.dispose()


async def users_on_server(watcher: TimedIrc) -> int:
    watcher.send("LUSERS")
    line = await watcher.wait(lambda l: " 251 " in l, 30)
    numbers = [int(n) for n in re.findall(r"(\d+)", line.split(" :", 1)[1])]
    return numbers[0] + numbers[1]


async def run(counts: list[int]) -> dict:
    results: dict[str, object] = {"benchmark": "memory", "import_floor_kb": import_cost_kb()}
    # No cap on connections: this measures 10,000 puppets on our own server.
    options = {"flood_rate": 0, "max_concurrent_connects": 2000, "max_connections": 0}
    async with bench_stack(network_options=options) as bench:
        stack = bench.stack
        watcher = TimedIrc("memwatch")
        await watcher.connect(stack.inspircd.port)
        await asyncio.sleep(5)
        idle = rss_kb(stack.bridge.process.pid)
        results["idle_kb"] = idle
        base_users = await users_on_server(watcher)
        db_url = f"sqlite+aiosqlite:///{stack.workdir / 'rapture.db'}"
        points = []
        seeded = 0
        for count in counts:
            await asyncio.to_thread(stack.bridge.stop)
            await seed(db_url, seeded, count)
            seeded = count
            t0 = time.perf_counter()
            await asyncio.to_thread(stack.bridge.start)
            online = 0
            for _ in range(600):
                online = await users_on_server(watcher) - base_users
                if online >= count:
                    break
                await asyncio.sleep(1)
            connected_after = time.perf_counter() - t0
            await asyncio.sleep(20)  # settle: the bridge trims its heap 10-15 s after the wave
            rss = rss_kb(stack.bridge.process.pid)
            points.append({"puppets": count, "online": online, "rss_kb": rss,
                           "kb_per_puppet": round((rss - idle) / count, 2),
                           "seconds_to_connect_all": round(connected_after, 1)})
        await watcher.close()
    results["points"] = points
    if len(points) >= 2:
        a, b = points[0], points[-1]
        results["slope_kb_per_puppet"] = round((b["rss_kb"] - a["rss_kb"]) / (b["puppets"] - a["puppets"]), 2)
    results["idle_over_import_floor_mb"] = round((idle - results["import_floor_kb"]) / 1024, 1)
    return results


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--counts", default="100,1000,10000")
    args = parser.parse_args()
    print_result(asyncio.run(run([int(c) for c in args.counts.split(",")])))


if __name__ == "__main__":
    main()
