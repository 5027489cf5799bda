"""Latency, Matrix -> IRC and IRC -> Matrix, each beside its floor measured in the same run.

Matrix -> IRC: a Matrix client's send until the IRC client reads the line; floor: the same
send until a plain appservice (which answers nothing but 200) receives the transaction. Both
see the very same message, so `bridge_added` is exact per message.
IRC -> Matrix: an IRC client's PRIVMSG until a Matrix client's /sync sees the ghost's event;
floor: a Matrix client's send until another client's /sync sees it, right after each line, so
`bridge_added` is the median of per-pair differences.

Usage: python -m bench.latency [--count 200] [--spacing 0.6]   (prints one JSON object)
"""

from __future__ import annotations

import asyncio
import time
import uuid

from bench import cli
from bench.common import TimedIrc, bench_stack, print_result, summary


# One line per 1/flood_rate seconds passes flood control at once (the IRC connector's default
# flood_rate is 2 lines per second, which the benchmark stack keeps).
FLOOD_WINDOW = 0.5


async def run(count: int, spacing: float) -> dict:
    async with bench_stack() as bench:
        channel = f"#lat{uuid.uuid4().hex[:6]}"
        irc = TimedIrc("ircbench")
        await irc.connect(bench.stack.inspircd.port)
        await irc.join(channel)
        alice, observer = bench.user(), bench.user()
        room = await alice.join(f"#local_{channel}:localhost")
        await observer.join(room)
        puppet = f"{alice.user_id[1:].split(':')[0]}[m]"
        await irc.wait(lambda line: f":{puppet}!" in line and " JOIN " in line, 30)
        await observer.start_sync()
        await asyncio.sleep(1)

        m2i_total, m2i_floor, m2i_added = [], [], []
        for n in range(count + 5):
            body = f"m2i {n} {uuid.uuid4().hex}"
            arrived = asyncio.create_task(irc.wait(lambda line, b=body: line.endswith(b), 30))
            t0 = time.perf_counter()
            await alice.send(room, body)
            t_irc = (await arrived, irc.received[-1][0])[1]
            t_floor = bench.floor.arrivals.get(body)
            for _ in range(1000):
                if t_floor is not None:
                    break
                await asyncio.sleep(0.001)
                t_floor = bench.floor.arrivals.get(body)
            if n >= 5 and t_floor is not None:  # the first few warm caches up
                m2i_total.append((t_irc - t0) * 1000)
                m2i_floor.append((t_floor - t0) * 1000)
                m2i_added.append((t_irc - t_floor) * 1000)
            await asyncio.sleep(spacing)

        i2m_total, i2m_floor = [], []
        for n in range(count + 5):
            body = f"i2m {n} {uuid.uuid4().hex}"
            t0 = time.perf_counter()
            irc.send(f"PRIVMSG {channel} :{body}")
            t1 = await observer.wait_for(body, 30)
            floor_body = f"floor {n} {uuid.uuid4().hex}"
            f0 = time.perf_counter()
            await alice.send(room, floor_body)
            f1 = await observer.wait_for(floor_body, 30)
            if n >= 5:
                i2m_total.append((t1 - t0) * 1000)
                i2m_floor.append((f1 - f0) * 1000)
            await asyncio.sleep(spacing)
        await observer.stop()
        await irc.close()

    m2i, i2m = summary(m2i_total), summary(i2m_total)
    m2i_f, i2m_f = summary(m2i_floor), summary(i2m_floor)
    return {
        "benchmark": "latency",
        "matrix_to_irc": {"total_ms": m2i, "floor_ms": m2i_f, "bridge_added_ms": summary(m2i_added),
                          "ratio_to_floor_p50": round(m2i["p50"] / m2i_f["p50"], 2)},
        # Each IRC line is followed by a floor message in the same room, so the two are
        # paired: the bridge-added time is taken per pair, not as a difference of percentiles.
        "irc_to_matrix": {"total_ms": i2m, "floor_ms": i2m_f,
                          "bridge_added_ms": summary([t - f for t, f in zip(i2m_total, i2m_floor)]),
                          "ratio_to_floor_p50": round(i2m["p50"] / i2m_f["p50"], 2)},
        "samples": {"m2i_total": m2i_total, "m2i_floor": m2i_floor, "i2m_total": i2m_total,
                    "i2m_floor": i2m_floor},
    }


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--count", type=int, default=200, help="messages each way (5 more warm up)")
    parser.add_argument("--spacing", type=float, default=0.6,
                        help=f"seconds between sends; more than the flood window ({FLOOD_WINDOW} s)")
    args = parser.parse_args()
    if args.spacing <= FLOOD_WINDOW:
        parser.error(f"--spacing {args.spacing} is within the flood window ({FLOOD_WINDOW} s): lines would "
                     "wait in flood control, and the figures would measure that, not the bridge")
    print_result(asyncio.run(run(args.count, args.spacing)))


if __name__ == "__main__":
    main()
