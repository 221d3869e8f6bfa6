#!/usr/bin/env python3
"""Soak: many async order creations from concurrent clients while the worker is SIGKILLed.

Every accepted request (202) must end with exactly one result, and the number of orders
created (the side effect) must equal the number of accepted requests. Prints:

    accepted / completed / failed / lost / side effects / duplicated / kills

The soak itself is `tools.soak.run_soak` (tests/integration/test_soak.py runs a shorter one).

    .venv/bin/python bench/soak.py [--requests 10000] [--clients 16] [--kill-every 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.soak import order_counter, run_soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--max-kills", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=1800,
                        help="seconds to wait for results after the last request")
    args = parser.parse_args()

    from tools.stack import private_stack

    with private_stack("soak", redis_db=8) as stack:
        stack.create_user("soak", "soak")
        token = stack.issue_token("soak")
        web = stack.start_web()
        holder = {"worker": stack.start_worker()}

        def kill() -> None:
            holder["worker"].kill()
            stack.services.remove(holder["worker"])
            holder["worker"] = stack.start_worker()

        report = run_soak(web.url, token, requests=args.requests, clients=args.clients,
                          kill_every=args.kill_every, max_kills=args.max_kills, kill=kill,
                          count_orders=order_counter(stack.manage, stack.log_dir.parent),
                          settle_timeout=args.settle)
    print(report.line())
    for failure in report.failures[:10]:
        print("  failed:", failure)
    ok = (report.lost == 0 and report.duplicated == 0 and report.failed == 0
          and report.side_effects == report.accepted == report.completed)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
