"""Charts from the benchmarks' JSON: latency distributions beside their floors, throughput
beside the homeserver's own rates, memory against the number of puppets.

Usage: python -m bench.report RESULT.json [RESULT.json ...] -o bench-report.png
(each file holds the JSON object one benchmark printed; needs `pip install -e '.[bench]'`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402

from bench import cli


def _latency(ax: Any, data: dict[str, Any]) -> None:
    samples = data["samples"]
    series = [samples["m2i_floor"], samples["m2i_total"], samples["i2m_floor"], samples["i2m_total"]]
    ax.boxplot(series, showfliers=False)
    ax.set_xticks([1, 2, 3, 4], ["Matrix→AS\n(floor)", "Matrix→IRC\n(bridge)", "Matrix→Matrix\n(floor)",
                                 "IRC→Matrix\n(bridge)"])
    ax.set_ylabel("ms")
    added = data["matrix_to_irc"]["bridge_added_ms"]["p50"], data["irc_to_matrix"]["bridge_added_ms"]["p50"]
    ax.set_title(f"Latency (p50 added: {added[0]} ms → IRC, {added[1]} ms → Matrix)")


def _throughput(ax: Any, data: dict[str, Any]) -> None:
    bars = {k: v["lines_per_second"] for k, v in data.items()
            if isinstance(v, dict) and "lines_per_second" in v}
    ax.barh([k.replace("_", " ") for k in bars], list(bars.values()))
    ax.set_xlabel("lines per second")
    ceilings = [v["cpu"]["machine_ceiling_lines_per_second"] for k, v in data.items()
                if k.endswith("_portals") and isinstance(v, dict)
                and "machine_ceiling_lines_per_second" in v.get("cpu", {})]
    if ceilings:  # the most this machine could carry across the portals, every core busy
        ax.axvline(ceilings[0], color="red", linestyle="--", label="machine ceiling, portals")
        ax.legend(loc="lower right")
    lost = sum(v.get("lost", 0) + v.get("doubled", 0) + v.get("out_of_order", 0)
               for v in data.values() if isinstance(v, dict))
    ax.set_title(f"Throughput (lost + doubled + reordered: {lost})")


def _memory(ax: Any, data: dict[str, Any]) -> None:
    points = [(0, data["idle_kb"])] + [(p["puppets"], p["rss_kb"]) for p in data["points"]]
    xs, ys = zip(*points)
    ax.plot(xs, [y / 1024 for y in ys], marker="o", label="bridge RSS")
    ax.axhline(data["import_floor_kb"] / 1024, color="grey", linestyle="--", label="imports alone")
    ax.set_xlabel("connected idle puppets")
    ax.set_ylabel("MB")
    ax.set_title(f"Memory ({data.get('slope_kb_per_puppet', '?')} KB per puppet)")
    ax.legend()


def _startup(ax: Any, data: dict[str, Any]) -> None:
    curve = data["reconnect_curve"]
    ax.plot([t for t, _ in curve], [n for _, n in curve])
    ax.axvline(data["seconds_to_serving_transactions"], color="green", linestyle="--", label="serving")
    ax.set_xlabel("seconds after `rapture run`")
    ax.set_ylabel("puppets online")
    ax.set_title(f"Start-up: serving after {data['seconds_to_serving_transactions']} s")
    ax.legend()


DRAW = {"latency": _latency, "throughput": _throughput, "memory": _memory, "startup": _startup}


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("bench-report.png"))
    args = parser.parse_args()
    results = [json.loads(p.read_text().strip().splitlines()[-1]) for p in args.results]
    results = [r for r in results if r.get("benchmark") in DRAW]
    fig, axes = plt.subplots(len(results), 1, figsize=(9, 4 * len(results)), squeeze=False)
    for ax, result in zip(axes[:, 0], results):
        DRAW[result["benchmark"]](ax, result)
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(json.dumps({"report": str(args.output), "charts": [r["benchmark"] for r in results]}))


if __name__ == "__main__":
    main()
