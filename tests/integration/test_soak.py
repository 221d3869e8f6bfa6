"""A short soak: ~1000 async order creations, the worker SIGKILLed once mid-run.

Every accepted request has exactly one result and exactly one order (bench/soak.py runs the
long version: 10,000 requests, a kill every few seconds).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.stack import IntegrationStack, module_stack
from tools.services import Service
from tools.soak import order_counter, run_soak

pytestmark = [pytest.mark.integration, pytest.mark.long]


@pytest.fixture(scope="module")
def soak_stack(kafka: Service, redis_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[IntegrationStack]:
    """Its own web app, worker and consumer group, with the default settings but one: no
    per-owner in-flight cap, as one user sends all 1,000 requests faster than they run.

    Sixteen clients, uvicorn, the worker, tansu and Redis saturate 2 cores, right when a
    worker is killed and its replacement joins the group: what a rebalance must survive.
    """
    with module_stack(kafka.url, redis_url, tmp_path_factory.mktemp("soak"), 14,
                      {"BS_ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER": "0"}) as stack:
        yield stack


@pytest.mark.timeout(600)
def test_short_soak_with_one_kill(soak_stack: IntegrationStack) -> None:
    stack = soak_stack
    token = stack.create_user("soak_user")

    def kill() -> None:
        stack.kill_worker()
        stack.restart_worker()

    try:
        report = run_soak(stack.base_url, token, requests=1000, clients=16, kill_every=1,
                          max_kills=1, first_kill_after=300, kill=kill, settle_timeout=180,
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
