"""Throughput through the bridge, with loss, duplicates and order checked line by line.

1. IRC -> Matrix, one portal: one IRC user sends N lines back to back; a Matrix client's
   /sync collects the ghost's events. Beside it, the floor: a Matrix client sending N
   messages sequentially (each send awaited, as a bridge must to keep order).
2. IRC -> Matrix, P portals at once: P IRC users, one per channel, N lines each.
3. Matrix -> IRC with flood control off: U Matrix users send N/U messages each, concurrently;
   one IRC client counts what arrives from every puppet.

Usage: python -m bench.throughput [--lines 1000] [--portals 10] [--users 10]
"""

from __future__ import annotations

import asyncio
import time
import uuid

from bench import cli
from bench.common import Bench, CpuMeter, MatrixUser, TimedIrc, bench_stack, print_result

IDLE_GIVE_UP = 20.0  # seconds without progress before counting the rest as lost


def check(expected: list[str], got: list[str]) -> dict:
    """Delivered / lost / doubled / out of order, comparing two sequences of unique lines."""
    seen: dict[str, int] = {}
    for line in got:
        seen[line] = seen.get(line, 0) + 1
    delivered = [line for line in got if line in set(expected)]
    first_seen = list(dict.fromkeys(delivered))
    positions = {line: i for i, line in enumerate(expected)}
    out_of_order = sum(1 for a, b in zip(first_seen, first_seen[1:]) if positions[a] > positions[b])
    return {
        "sent": len(expected),
        "delivered": len(first_seen),
        "lost": len(set(expected) - set(first_seen)),
        "doubled": sum(count - 1 for count in seen.values() if count > 1),
        "out_of_order": out_of_order,
    }


def _last_first_arrival(got: list[tuple[float, str]]) -> float:
    """When the last distinct line arrived (a late duplicate does not stretch the run)."""
    first: dict[str, float] = {}
    for t, body in got:
        first.setdefault(body, t)
    return max(first.values())


async def _collect(observer: MatrixUser, prefix: str, want: int,
                   meter: CpuMeter) -> tuple[list[tuple[float, str]], dict]:
    """Bodies starting with `prefix`, in the order /sync delivered them, repeats included (so
    a doubled line is counted), until `want` distinct ones arrived or nothing came for a while;
    and the CPU used until then."""
    last_count, last_change = 0, time.perf_counter()
    while True:
        got = [(t, body) for t, body in observer.timeline if body.startswith(prefix)]
        distinct = len({body for _, body in got})
        if distinct >= want:
            break
        if len(got) != last_count:
            last_count, last_change = len(got), time.perf_counter()
        elif time.perf_counter() - last_change > IDLE_GIVE_UP:
            break
        await asyncio.sleep(0.05)
    cpu = meter.stop(distinct)
    await asyncio.sleep(0.5)  # a late duplicate still counts
    return [(t, body) for t, body in observer.timeline if body.startswith(prefix)], cpu


async def irc_to_matrix(bench: Bench, portals: int, lines: int) -> dict:
    observer = bench.user()
    senders: list[tuple[TimedIrc, str, str]] = []
    for p in range(portals):
        channel = f"#tp{uuid.uuid4().hex[:6]}"
        irc = TimedIrc(f"tp{uuid.uuid4().hex[:6]}")
        await irc.connect(bench.stack.inspircd.port)
        await irc.join(channel)
        room = await observer.join(f"#local_{channel}:localhost")
        senders.append((irc, channel, room))
    await observer.start_sync()
    await asyncio.sleep(2)  # ghosts of the senders join first
    run = uuid.uuid4().hex[:6]
    expected = {irc.nick: [f"{run} {irc.nick} {n}" for n in range(lines)] for irc, _, _ in senders}
    meter = CpuMeter(bench.stack)
    meter.start()
    t0 = time.perf_counter()
    for irc, channel, _ in senders:
        for text in expected[irc.nick]:
            irc.send(f"PRIVMSG {channel} :{text}")
    got, cpu = await _collect(observer, run, portals * lines, meter)
    elapsed = (_last_first_arrival(got) - t0) if got else float("nan")
    per_portal = [check(expected[irc.nick], [b for _, b in got if b.split(" ")[1] == irc.nick])
                  for irc, _, _ in senders]
    await observer.stop()
    for irc, _, _ in senders:
        await irc.close()
    totals = {k: sum(p[k] for p in per_portal) for k in per_portal[0]}
    return {**totals, "seconds": round(elapsed, 2), "lines_per_second": round(totals["delivered"] / elapsed, 1),
            "cpu": cpu}


async def matrix_clients_floor(bench: Bench, rooms: int, lines: int) -> dict:
    """The homeserver's own rate: `rooms` clients, one room each, sending at once, each one
    message after another (each send awaited, as a bridge must to keep order); with one room,
    the floor of a single portal."""
    observer = bench.user()
    senders = []
    for _ in range(rooms):
        sender = bench.user()
        room = (await sender.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        await observer.join(room)
        senders.append((sender, room))
    await observer.start_sync()
    run = uuid.uuid4().hex[:6]

    async def talk(sender: MatrixUser, room: str, index: int) -> None:
        for n in range(lines):
            await sender.send(room, f"{run} {index} {n}")

    meter = CpuMeter(bench.stack)
    meter.start()
    t0 = time.perf_counter()
    await asyncio.gather(*(talk(s, r, i) for i, (s, r) in enumerate(senders)))
    got, cpu = await _collect(observer, run, rooms * lines, meter)
    await observer.stop()
    elapsed = _last_first_arrival(got) - t0
    delivered = len({body for _, body in got})
    return {"delivered": delivered, "seconds": round(elapsed, 2), "lines_per_second": round(delivered / elapsed, 1),
            "cpu": cpu}


async def matrix_to_irc(bench: Bench, users: int, lines: int) -> dict:
    channel = f"#tm{uuid.uuid4().hex[:6]}"
    irc = TimedIrc(f"tm{uuid.uuid4().hex[:6]}")
    await irc.connect(bench.stack.inspircd.port)
    await irc.join(channel)
    people = [bench.user() for _ in range(users)]
    joins_from = len(irc.received)
    room = await people[0].join(f"#local_{channel}:localhost")
    for person in people[1:]:
        await person.join(room)
    puppets = {p.user_id: f"{p.user_id[1:].split(':')[0]}[m]" for p in people}
    for nick in puppets.values():
        await irc.wait(lambda line, n=nick: line.startswith(f":{n}!") and " JOIN " in line, 60, since=joins_from)
    run = uuid.uuid4().hex[:6]
    each = lines // users
    expected = {puppets[p.user_id]: [f"{run} {n}" for n in range(each)] for p in people}

    async def talk(person: MatrixUser) -> None:
        for text in expected[puppets[person.user_id]]:
            await person.send(room, text)

    start = len(irc.received)
    meter = CpuMeter(bench.stack)
    meter.start()
    t0 = time.perf_counter()
    await asyncio.gather(*(talk(p) for p in people))
    last_count, last_change = 0, time.perf_counter()
    while True:
        lines_in = [ln for _, ln in irc.received[start:] if f" PRIVMSG {channel} :{run} " in ln]
        if len(lines_in) >= users * each:
            break
        if len(lines_in) != last_count:
            last_count, last_change = len(lines_in), time.perf_counter()
        elif time.perf_counter() - last_change > IDLE_GIVE_UP:
            break
        await asyncio.sleep(0.05)
    cpu = meter.stop(len(lines_in))
    stamps = [t for t, ln in irc.received[start:] if f" PRIVMSG {channel} :{run} " in ln]
    elapsed = (stamps[-1] - t0) if stamps else float("nan")
    results = []
    for nick, texts in expected.items():
        got = [ln.split(" :", 1)[1] for _, ln in irc.received[start:] if ln.startswith(f":{nick}!")
               and f" PRIVMSG {channel} :" in ln]
        results.append(check(texts, got))
    await irc.close()
    totals = {k: sum(r[k] for r in results) for k in results[0]}
    return {**totals, "seconds": round(elapsed, 2), "lines_per_second": round(totals["delivered"] / elapsed, 1),
            "cpu": cpu}


async def run(lines: int, portals: int, users: int, postgres: bool) -> dict:
    async with bench_stack(network_options={"flood_rate": 0}, synapse_on_postgres=postgres,
                           floor_appservice=False) as bench:
        floor = await matrix_clients_floor(bench, 1, lines)
        one = await irc_to_matrix(bench, 1, lines)
        # The same number of lines, spread over many portals at once.
        many = await irc_to_matrix(bench, portals, lines // portals)
        parallel_floor = await matrix_clients_floor(bench, portals, lines // portals)
        m2i = await matrix_to_irc(bench, users, lines)
    return {
        "benchmark": "throughput",
        "synapse_database": "postgresql" if postgres else "sqlite",
        "matrix_client_sequential_floor": floor,
        "irc_to_matrix_one_portal": one,
        "irc_to_matrix_one_portal_vs_floor": round(one["lines_per_second"] / floor["lines_per_second"], 2),
        f"irc_to_matrix_{portals}_portals": many,
        f"irc_to_matrix_{portals}_portals_vs_one": round(many["lines_per_second"] / one["lines_per_second"], 2),
        f"matrix_clients_{portals}_rooms_parallel_floor": parallel_floor,
        f"irc_to_matrix_{portals}_portals_vs_parallel_floor": round(
            many["lines_per_second"] / parallel_floor["lines_per_second"], 2),
        # How many times the one-portal rate this machine could carry at all, with every core
        # busy at the cost per line measured across the portals (homeserver, its database,
        # the IRC server and the bridge together).
        f"machine_ceiling_{portals}_portals_vs_one": round(
            many["cpu"].get("machine_ceiling_lines_per_second", 0) / one["lines_per_second"], 2),
        f"matrix_to_irc_{users}_users_flood_off": m2i,
    }


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--portals", type=int, default=10)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--synapse-sqlite", action="store_true",
                        help="Synapse on SQLite (default: PostgreSQL, as homeservers run in production)")
    args = parser.parse_args()
    print_result(asyncio.run(run(args.lines, args.portals, args.users, not args.synapse_sqlite)))


if __name__ == "__main__":
    main()
