"""Nothing lost across reconnects: operations while the owner's socket drops every 0.2–1 s
and the web server is restarted once; every operation's terminal event arrives exactly once
after de-duplication by seq (tools/chaos.py; bench/resume.py runs 2,000 and times catch-ups).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.stack import IntegrationStack, module_stack
from tools.chaos import run_chaos
from tools.services import Service

pytestmark = [pytest.mark.integration, pytest.mark.long]
OPERATIONS = 400


@pytest.fixture(scope="module")
def chaos_stack(kafka: Service, redis_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[IntegrationStack]:
    """Its own web server (restarted by the test), worker and consumer group."""
    with module_stack(kafka.url, redis_url, tmp_path_factory.mktemp("chaos"), 12,
                      {"BS_ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER": "0"}) as stack:
        yield stack


@pytest.mark.timeout(600)
def test_every_terminal_event_arrives_once_across_drops_and_a_web_restart(
        chaos_stack: IntegrationStack) -> None:
    token = chaos_stack.create_user("chaos_user")
    report = run_chaos(chaos_stack.base_url, token, operations=OPERATIONS, clients=8,
                       restart_web=chaos_stack.restart_web, restart_after=OPERATIONS // 3)
    print(report.line())
    assert report.restarts == 1 and report.reconnects >= 5, report.line()
    assert report.missing == [], report.line()
    assert report.twice == [], report.line()
    assert len(report.accepted) == OPERATIONS
