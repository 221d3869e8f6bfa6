#!/usr/bin/env python3
"""Churn: async requests while `kafka_consumer_multiple` retires and replaces workers.

Each retirement and each replacement rebalances the consumer group. This script shows whether
the group keeps consuming under that churn, and whether it recovers once the churn stops: it
sends `--requests` order creations from 8 clients to the sample on uvicorn while N workers
live `--lifetime` + random(0..`--jitter`) seconds each, waits `--settle` seconds, then stops the
supervisor, starts one worker without a lifetime and counts how long the rest takes.

    .venv/bin/python bench/churn.py [--requests 3000] [--lifetime 5] [--jitter 3]
                                    [--consumers 3] [--leave-group]

Figures and what they showed (a tansu group wedge): docs/transport.md, Known issues.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.soak import RESULTS, order_counter, run_soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--lifetime", type=int, default=5)
    parser.add_argument("--jitter", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--settle", type=float, default=60)
    parser.add_argument("--leave-group", action="store_true",
                        help="KAFKA_LEAVE_GROUP_ON_SHUTDOWN=true for the churning workers")
    args = parser.parse_args()

    from tools.services import python
    from tools.stack import private_stack

    os.environ["BS_KAFKA_CONSUMER_LIFETIME_SEC"] = str(args.lifetime)
    os.environ["BS_KAFKA_CONSUMER_LIFETIME_JITTER_SEC"] = str(args.jitter)
    if args.leave_group:
        os.environ["BS_KAFKA_LEAVE_GROUP_ON_SHUTDOWN"] = "true"
    with private_stack("churn", redis_db=8) as stack:
        stack.create_user("churn", "churn")
        token = stack.issue_token("churn")
        web = stack.start_web()
        command = [python(), str(stack.root / "sample_project" / "manage.py"),
                   "kafka_consumer_multiple", f"--consumers-count={args.consumers}",
                   "--concurrency=1"]
        supervisor = stack.start("consumers", command, "consumers", lambda _svc: True, 10)
        accepted: list[str] = []
        count_orders = order_counter(stack.manage, stack.log_dir.parent)

        def remember(ids: list[str]) -> tuple[int, int]:
            accepted[:] = ids
            return count_orders(ids)

        report = run_soak(web.url, token, requests=args.requests, clients=8, kill_every=1e9,
                          max_kills=0, kill=lambda: None, count_orders=remember,
                          settle_timeout=args.settle)
        log = supervisor.log.read_text() if supervisor.log else ""
        print(f"during churn: {report.line()}; retirements {log.count('lifetime of')}, "
              f"exits without LeaveGroup {log.count('not leaving group')}", flush=True)
        assert supervisor.process is not None
        os.killpg(supervisor.process.pid, signal.SIGTERM)
        supervisor.process.wait(60)
        for name in ("BS_KAFKA_CONSUMER_LIFETIME_SEC", "BS_KAFKA_LEAVE_GROUP_ON_SHUTDOWN"):
            os.environ.pop(name, None)
        started = time.monotonic()
        stack.start_worker()
        pending = set(accepted)
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=web.url, timeout=30) as http:
            while pending and time.monotonic() - started < 180:
                for task_id in list(pending):
                    state = http.get(RESULTS.format(task_id), headers=headers).json()
                    if state.get("state") in ("completed", "failed"):
                        pending.discard(task_id)
                time.sleep(2)
        took = time.monotonic() - started
        print(f"after the churn: a steady worker left {len(pending)} of {len(accepted)} "
              f"requests unfinished after {took:.0f} s")
    return 0 if not pending else 1


if __name__ == "__main__":
    raise SystemExit(main())
