"""A short soak: ~1000 async order creations, the worker SIGKILLed once mid-run.

Every accepted request has exactly one result and exactly one order (bench/soak.py runs the
long version: 10,000 requests, a kill every few seconds).
"""

from __future__ import annotations

import pytest

from bench.soak import order_counter, run_soak
from tests.integration.stack import IntegrationStack

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
def test_short_soak_with_one_kill(stack: IntegrationStack) -> None:
    token = stack.create_user("soak_user")

    def kill() -> None:
        stack.kill_worker()
        stack.restart_worker()

    try:
        report = run_soak(stack.base_url, token, requests=1000, clients=16, kill_every=3,
                          max_kills=1, kill=kill,
                          count_orders=order_counter(stack.manage, stack.workdir))
    finally:
        stack.ensure_worker()
    print(report.line())
    assert report.kills == 1
    assert report.refused == 0
    assert report.lost == 0, report.line()
    assert report.failed == 0, report.failures[:5]
    assert report.duplicated == 0
    assert report.side_effects == report.accepted == report.completed == 1000
