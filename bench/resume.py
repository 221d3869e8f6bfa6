#!/usr/bin/env python3
"""Benchmark of push that loses nothing: catch-up after reconnects, under chaos.

`--operations` async `GET /api/v1/orders/` from 8 clients while the owner's WebSocket is
dropped after a random 0.2–1 s and resumed with `?after=<seq>` (tools/chaos.py), and the web
server (uvicorn) is restarted once, a third of the way in. Prints, per round: operations,
with a terminal event, missing, delivered twice (after de-duplication by seq), reconnects,
and the catch-up of each reconnect (connect → `resumed` frame): p50 / p99 / max and the
events it carried. A fresh private stack (tools.stack.private_stack) per round.

    .venv/bin/python bench/resume.py [--operations 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stats import median_range, percentile  # noqa: E402
from bench.pipeline import step  # noqa: E402
from tools.chaos import ChaosReport, run_chaos  # noqa: E402
from tools.stack import private_stack  # noqa: E402


def one_round(operations: int, concurrency: int) -> ChaosReport:
    with private_stack("bench-resume", redis_db=7) as stack:
        stack.create_user("bench", "bench")
        token = stack.issue_token("bench")
        web = stack.start_web()
        stack.start_worker(concurrency=concurrency)
        port = int(web.url.rsplit(":", 1)[1])
        current = [web]

        def restart() -> None:
            stack.stop_service(current[0])
            current[0] = stack.start_web(port=port)

        return run_chaos(web.url, token, operations=operations, clients=8,
                         restart_web=restart, restart_after=operations // 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operations", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool size")
    args = parser.parse_args()
    rows = ["| round | operations | with a terminal event | missing | twice | reconnects | "
            "catch-up p50 ms | p99 ms | max ms | events per catch-up, median (max) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    p50s: list[float] = []
    p99s: list[float] = []
    for run in range(args.repeat):
        step(f"round {run + 1}/{args.repeat}: {args.operations} operations")
        report = one_round(args.operations, args.concurrency)
        ms, carried = report.catch_up_ms, sorted(report.caught_up)
        p50, p99 = percentile(ms, 50), percentile(ms, 99)
        p50s.append(p50)
        p99s.append(p99)
        rows.append(f"| {run + 1} | {len(report.accepted)} | {len(report.terminal)} | "
                    f"{len(report.missing)} | {len(report.twice)} | {report.reconnects} | "
                    f"{p50:.0f} | {p99:.0f} | {max(ms):.0f} | "
                    f"{carried[len(carried) // 2]} ({carried[-1]}) |")
    mid50, lo50, hi50 = median_range(p50s)
    rows += ["", f"catch-up p50 median {mid50:.0f} ms (range {lo50:.0f}–{hi50:.0f}), "
             f"p99 median {median_range(p99s)[0]:.0f} ms, over {args.repeat} rounds"]
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
