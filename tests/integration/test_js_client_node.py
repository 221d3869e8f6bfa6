"""clients/js under Node against the session's live stack: asyncFetch, listOperations, abort.

`clients/js/integration/live.mjs` runs the client (transport "auto": polling on Node 20, which
has no WebSocket nor EventSource; the WebSocket on Node 22+) against the sample's routes and
prints what it saw; this module checks it. Skipped when no Node.js >= 18 is on PATH.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.integration.stack import IntegrationStack
from tests.unit.test_async_request_js import ROOT, node_binary

pytestmark = pytest.mark.integration
SCRIPT = ROOT / "clients" / "js" / "integration" / "live.mjs"


@pytest.fixture(scope="module")
def seen(stack: IntegrationStack) -> dict[str, Any]:
    """What live.mjs saw, run once for the module's tests."""
    node = node_binary()
    if node is None:
        pytest.skip("no Node.js >= 18 on PATH (apt-get install nodejs)")
    token = stack.create_user("js_node_live")
    done = subprocess.run([node, str(SCRIPT), stack.base_url, token], capture_output=True,
                          text=True, timeout=150, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_async_fetch_gives_what_fetch_gives(seen: dict[str, Any], stack: IntegrationStack
                                            ) -> None:
    orders = seen["orders"]
    assert orders["status"] == 200
    assert orders["body"] == orders["direct"]
    assert orders["type"].startswith("application/json")
    assert orders["url"] == f"{stack.base_url}/api/v1/orders/"


def test_report_progress_states_and_response(seen: dict[str, Any]) -> None:
    report = seen["report"]
    assert report["status"] == 201 and report["body"]["kind"] == "sales"
    assert report["states"][0] == "pending" and report["states"][-1] == "completed"
    assert report["progress"], report  # polled while it ran: at least one report
    assert report["progress"] == sorted(report["progress"])


def test_binary_bytes_are_exact(seen: dict[str, Any]) -> None:
    assert seen["binary"] == {"status": 200, "length": 1000, "exact": True}


def test_a_routes_own_error_resolves_and_a_refusal_rejects(seen: dict[str, Any]) -> None:
    assert seen["missing"]["status"] == 404
    assert "not found" in json.dumps(seen["missing"]["body"])
    assert seen["refused"] == {"rejected": True, "name": "AsyncRequestError", "status": 401,
                               "type": "string"}


def test_abort_rejects_and_cancels(seen: dict[str, Any]) -> None:
    aborted = seen["aborted"]
    assert aborted["rejected"] and aborted["name"] == "AbortError" and aborted["isDomException"]
    assert aborted["state"] == "cancelled"


def test_list_operations(seen: dict[str, Any]) -> None:
    listed = seen["list"]
    assert seen["report"]["id"] in listed["completed"]
    assert listed["completedStates"] == ["completed"]
    assert seen["aborted"]["id"] in listed["cancelled"]
    first, second = listed["pages"]
    assert len(first) == 1 and len(second) == 1 and first != second


def test_transport_and_no_errors(seen: dict[str, Any]) -> None:
    assert seen["transport"] in ("websocket", "poll")
    assert seen["errors"] == []
