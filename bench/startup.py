"""Start-up: from `rapture run` to serving transactions, with a big database; then the pace
of the puppets' reconnects (they must follow `max_concurrent_connects`, not storm).

The database gets 10,000 portals, 100,000 ghosts and 1,000 logins (`bench.generate_db`).
Usage: python -m bench.startup [--portals 10000] [--ghosts 100000] [--logins 1000]
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

from ruamel.yaml import YAML

from bench import cli
from bench.common import TimedIrc, bench_stack, print_result
from bench.generate_db import generate
from bench.memory import users_on_server
from bridge.devstack.process import spawn, wait_until


def _status(url: str, method: str = "GET", body: bytes | None = None, token: str | None = None) -> int | None:
    request = urllib.request.Request(url, data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=2) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


async def run(portals: int, ghosts: int, logins: int, concurrency: int) -> dict:
    options = {"flood_rate": 0, "max_concurrent_connects": concurrency, "max_connections": 0}
    async with bench_stack(network_options=options) as bench:
        stack = bench.stack
        watcher = TimedIrc("startwatch")
        await watcher.connect(stack.inspircd.port)
        base_users = await users_on_server(watcher)
        await asyncio.to_thread(stack.bridge.stop)
        config = YAML(typ="safe").load(stack.config_path.read_text())
        await generate(config["database"]["url"], network="local", domain="localhost",
                       portals=portals, ghosts=ghosts, logins=logins)
        hs_token = config["appservice"]["hs_token"]
        base = stack.bridge.url
        txn = json.dumps({"events": []}).encode()

        t0 = time.perf_counter()
        stack.bridge.process = spawn([stack.bridge.python, "-m", "bridge", "run", "-c", str(stack.config_path)],
                                     cwd=stack.workdir, log_path=stack.bridge.log_path)
        marks: dict[str, float] = {}

        def probe() -> bool:
            now = time.perf_counter() - t0
            if "live" not in marks and _status(f"{base}/_matrix/mau/live") == 200:
                marks["live"] = now
            if "live" in marks and "transaction" not in marks and _status(
                    f"{base}/_matrix/app/v1/transactions/startup-{time.time_ns()}", "PUT", txn, hs_token) == 200:
                marks["transaction"] = time.perf_counter() - t0
            if "transaction" in marks and _status(f"{base}/_matrix/mau/ready") == 200:
                marks["ready"] = time.perf_counter() - t0
                return True
            return False

        await asyncio.to_thread(wait_until, probe, proc=stack.bridge.process, what="the bridge",
                                logs=[stack.bridge.log_path], timeout=120, interval=0.02)
        # The pace of reconnects: puppets online over time.
        curve: list[tuple[float, int]] = []
        for _ in range(600):
            # base_users counted the bridge's own connection: until it is back, that is -1.
            online = max(0, await users_on_server(watcher) - base_users)
            curve.append((round(time.perf_counter() - t0, 2), online))
            if online >= logins:
                break
            await asyncio.sleep(0.5)
        await watcher.close()
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(curve, curve[1:]) if b[0] > a[0]]
    return {
        "benchmark": "startup",
        "database": {"portals": portals, "ghosts": ghosts, "logins": logins},
        "seconds_to_live": round(marks["live"], 3),
        "seconds_to_serving_transactions": round(marks["transaction"], 3),
        "seconds_to_ready": round(marks["ready"], 3),
        "max_concurrent_connects": concurrency,
        "seconds_until_all_puppets_online": curve[-1][0] if curve and curve[-1][1] >= logins else None,
        "peak_reconnects_per_second": round(max(rates), 1) if rates else None,
        "reconnect_curve": curve,
    }


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--portals", type=int, default=10_000)
    parser.add_argument("--ghosts", type=int, default=100_000)
    parser.add_argument("--logins", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=20, help="max_concurrent_connects")
    args = parser.parse_args()
    print_result(asyncio.run(run(args.portals, args.ghosts, args.logins, args.concurrency)))


if __name__ == "__main__":
    main()
