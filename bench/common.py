"""What every benchmark needs: a stack of real servers, a floor appservice, and timed clients.

Everything runs on 127.0.0.1. Times are `time.perf_counter()` seconds in this process; both
ends of every measured path are observed from here, so no clock is compared across processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import quote

import aiohttp
from aiohttp import web

from bridge.devstack.ports import free_port
from bridge.devstack.stack import LocalStack, start_local_stack

DOMAIN = "localhost"


# -- a plain appservice: the floor of Matrix -> anything -------------------------------------
class FloorAppService:
    """The least an appservice can do: answer 200 and note when each message arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hs_token = secrets.token_urlsafe(24)
        self.as_token = secrets.token_urlsafe(24)
        self.arrivals: dict[str, float] = {}  # message body -> arrival time
        self._runner: web.AppRunner | None = None

    def registration(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "id": "floor", "url": f"http://127.0.0.1:{self.port}", "as_token": self.as_token,
            "hs_token": self.hs_token, "sender_localpart": "floorbot", "rate_limited": False,
            "namespaces": {"users": [{"exclusive": True, "regex": "@floor_.*:localhost"}],
                           "aliases": [], "rooms": [{"exclusive": False, "regex": ".*"}]},
        }))
        return path

    async def _txn(self, request: web.Request) -> web.Response:
        now = time.perf_counter()
        body = await request.json()
        for event in body.get("events", []):
            text = event.get("content", {}).get("body")
            if isinstance(text, str):
                self.arrivals.setdefault(text, now)
        return web.json_response({})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/_matrix/app/v1/transactions/{txn}", self._txn)
        app.router.add_put("/transactions/{txn}", self._txn)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# -- an IRC client that time-stamps what it receives ------------------------------------------
class TimedIrc:
    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.received: list[tuple[float, str]] = []
        self._waiters: list[tuple[Callable[[str], bool], asyncio.Future[str]]] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, port: int) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        self._task = asyncio.create_task(self._read())
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick} 0 * :{self.nick}")
        await self.wait(lambda line: f" 001 {self.nick} " in line, 30)

    def send(self, line: str) -> None:
        assert self._writer is not None
        self._writer.write(line.encode() + b"\r\n")

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            raw = await self._reader.readline()
            if not raw:
                return
            now = time.perf_counter()
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("PING"):
                self.send("PONG" + line[4:])
                continue
            self.received.append((now, line))
            for waiter in list(self._waiters):
                match, future = waiter
                if not future.done() and match(line):
                    future.set_result(line)
                    self._waiters.remove(waiter)

    async def wait(self, match: Callable[[str], bool], timeout: float, since: int | None = None) -> str:
        """The next line that matches; with `since`, lines already received from that index on
        count too (so a line that arrived while we waited for another is not missed)."""
        if since is not None:
            for _, line in self.received[since:]:
                if match(line):
                    return line
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append((match, future))
        return await asyncio.wait_for(future, timeout)

    async def join(self, channel: str) -> None:
        self.send(f"JOIN {channel}")
        await self.wait(lambda line: f" 366 {self.nick} {channel} " in line, 30)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()


# -- Matrix clients ----------------------------------------------------------------------------
class MatrixUser:
    def __init__(self, base: str, user_id: str, token: str, http: aiohttp.ClientSession) -> None:
        self.base, self.user_id, self.token, self.http = base, user_id, token, http
        self.headers = {"Authorization": f"Bearer {token}"}
        self.arrivals: dict[str, tuple[float, str]] = {}  # body -> (time first seen, sender)
        self.timeline: list[tuple[float, str]] = []  # every body seen, repeats included, in order
        self._since: str | None = None
        self._sync_task: asyncio.Task[None] | None = None

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        url = f"{self.base}/_matrix/client/v3{path}"
        async with self.http.request(method, url, json=body, params=params or None, headers=self.headers) as r:
            data = await r.json(content_type=None)
            if r.status >= 400:
                raise RuntimeError(f"{method} {path}: {r.status} {data}")
            return data

    async def join(self, room: str) -> str:
        return (await self.call("POST", f"/join/{quote(room, safe='')}", {}))["room_id"]

    async def send(self, room_id: str, body: str) -> None:
        await self.call("PUT", f"/rooms/{quote(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                        {"msgtype": "m.text", "body": body})

    async def start_sync(self) -> None:
        data = await self.call("GET", "/sync", timeout="0")
        self._since = data["next_batch"]
        self._sync_task = asyncio.create_task(self._sync_loop())

    async def _sync_loop(self) -> None:
        while True:
            data = await self.call("GET", "/sync", since=self._since or "", timeout="30000")
            now = time.perf_counter()
            self._since = data["next_batch"]
            for room in data.get("rooms", {}).get("join", {}).values():
                for event in room.get("timeline", {}).get("events", []):
                    body = event.get("content", {}).get("body")
                    if isinstance(body, str):
                        self.arrivals.setdefault(body, (now, event.get("sender", "")))
                        self.timeline.append((now, body))

    async def wait_for(self, body: str, timeout: float) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if body in self.arrivals:
                return self.arrivals[body][0]
            await asyncio.sleep(0.001)
        raise TimeoutError(f"{self.user_id} never saw {body!r}")

    async def stop(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()


# -- where the CPU goes ------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def _process_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _postgres_seconds() -> dict[int, float]:
    """CPU seconds of each PostgreSQL process (one per connection), for Synapse's database."""
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    seconds[int(entry.name)] = _process_seconds(int(entry.name))
            except OSError:
                continue
    return seconds


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / _TICK


class CpuMeter:
    """CPU used during one phase: by the whole machine and by each server of the stack.

    On a small machine the homeserver, its database, the IRC server and the bridge share the
    cores; this says which of them limits a rate, and how fast the machine could go at all
    (`machine_ceiling_lines_per_second`: the rate if every core were busy at the same cost
    per line), so a target that needs more CPU than the machine has is told apart from one
    the bridge misses.
    """

    def __init__(self, stack: LocalStack) -> None:
        self._pids = {"synapse": stack.synapse.process, "bridge": stack.bridge.process,
                      "inspircd": stack.inspircd.process if stack.inspircd else None}
        self._start: dict[str, float] = {}
        self._postgres_start: dict[int, float] = {}
        self._t0 = 0.0

    def _now(self) -> dict[str, float]:
        values = {name: _process_seconds(proc.pid) for name, proc in self._pids.items() if proc}
        values["machine"] = _machine_busy_seconds()
        return values

    def start(self) -> None:
        self._start, self._postgres_start = self._now(), _postgres_seconds()
        self._t0 = time.perf_counter()

    def stop(self, lines: int) -> dict[str, Any]:
        end, postgres_end, elapsed = self._now(), _postgres_seconds(), time.perf_counter() - self._t0
        used = {name: end[name] - self._start[name] for name in end}
        # Per process: a connection that ended during the phase must not subtract what it
        # had used before (its time in the phase is lost either way, so this is a floor).
        used["postgres"] = sum(t - self._postgres_start.get(pid, 0.0) for pid, t in postgres_end.items())
        cores = os.cpu_count() or 1
        busy = used["machine"] / elapsed
        result: dict[str, Any] = {f"{name}_cores": round(value / elapsed, 2) for name, value in used.items()}
        result["machine_cores"] = cores
        if lines:
            for name in ("bridge", "synapse", "postgres", "inspircd"):
                if name in used:
                    result[f"{name}_cpu_ms_per_line"] = round(used[name] * 1000 / lines, 2)
            if busy > 0:
                result["machine_ceiling_lines_per_second"] = round(lines / elapsed * cores / busy, 1)
        return result


@dataclass
class Bench:
    stack: LocalStack
    floor: FloorAppService
    http: aiohttp.ClientSession
    _counter: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def user(self) -> MatrixUser:
        self._counter += 1
        name = f"bench{self._counter}{uuid.uuid4().hex[:4]}"
        user_id, token = self.stack.synapse.register_user(name, "pw")
        return MatrixUser(self.stack.synapse.url, user_id, token, self.http)


async def _postgres(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def bench_stack(network_options: dict[str, Any] | None = None, workdir: Path | None = None,
                      synapse_on_postgres: bool = False, floor_appservice: bool = True) -> AsyncIterator[Bench]:
    """A fresh stack; Synapse on PostgreSQL (as in production) when asked, else on SQLite.

    The floor appservice (interested in every room) is registered unless told not to: where
    no figure needs it, it would only add a transaction per event to the homeserver's work.
    """
    workdir = workdir or Path(tempfile.mkdtemp(prefix="rapture-bench-"))
    floor = FloorAppService()
    await floor.start()
    registrations = [floor.registration(workdir / "floor-registration.json")] if floor_appservice else []
    database = None
    stack: LocalStack | None = None
    try:
        if synapse_on_postgres:
            database = f"synapse_bench_{uuid.uuid4().hex[:8]}"
            await _postgres(f"CREATE DATABASE {database} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
                            "TEMPLATE template0")
        stack = await asyncio.to_thread(
            start_local_stack, workdir, permissions={DOMAIN: "admin"}, log_level="INFO",
            network_options=network_options or {}, extra_registrations=registrations,
            synapse_postgres_database=database,
        )
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
            yield Bench(stack, floor, http)
    finally:  # also when the stack never came up: no server and no database is left behind
        if stack is not None:
            await asyncio.to_thread(stack.stop)
        await floor.stop()
        if database:
            await _postgres(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p95": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 2),
        "mean": round(statistics.fmean(ordered), 2),
    }


def measured_commit() -> str:
    """The commit the code under measure is at ("+dirty" with uncommitted changes), so that a
    stored result names what it measured."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def print_result(result: dict[str, Any]) -> None:
    print(json.dumps({"commit": measured_commit(), **result}, indent=None, sort_keys=False))
