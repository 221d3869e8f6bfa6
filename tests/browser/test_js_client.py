"""clients/js/async-request.js in a real Chromium, against the session's live stack.

Each test runs a script in the sample's /demo/ page (so same-origin, as a real front end):
it imports the client, submits requests to the sample's routes and returns what it saw. The
page's own UI is tested by test_demo_page.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from tests.integration.stack import IntegrationStack

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow,
              pytest.mark.timeout(120)]

# A test's body runs in this function: `client` is a fresh AsyncRequestClient, the WebSocket
# URLs it opens are recorded, and a body that does not settle in `timeoutMs` rejects (a
# Playwright evaluate has no timeout of its own).
PRELUDE = """
async ({ token, transport, timeoutMs }) => {
  const { AsyncRequestClient } = await import("/demo/async-request.js");
  const urls = [];
  const Recording = class extends WebSocket {
    constructor(url, protocols) { super(url, protocols); urls.push(url); }
  };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const client = new AsyncRequestClient({
    token, transport, WebSocket: Recording, backoff: { min: 100, max: 1000 },
  });
  const terminal = {};
  client.on("event", (e) => {
    if (["completed", "failed", "cancelled"].includes(e.status)) {
      terminal[e.task_id] = (terminal[e.task_id] ?? 0) + 1;
    }
  });
  const report = (seconds) => client.submit("/api/v1/reports/", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ kind: "sales", seconds }),
  });
  const body = async () => { /*BODY*/ };
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result in ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([body(), late]);
  } finally {
    clearTimeout(timer);
    client.close();
  }
}
"""


def run(page: Page, token: str | None, body: str, transport: str = "websocket",
        timeout: float = 60) -> Any:
    """Run `body` (JavaScript returning a JSON value) inside PRELUDE in the page."""
    return page.evaluate(PRELUDE.replace("/*BODY*/", body),
                         {"token": token, "transport": transport, "timeoutMs": timeout * 1000})


REPORT_WITH_PROGRESS = """
    const op = await report(2);
    const progress = [op.progress].filter(Boolean), states = [op.state];
    op.on("progress", (p) => progress.push(p));
    op.on("state", (s) => states.push(s));
    const body = await op.done;
    return { id: op.id, progress, states, body, active: client.active, urls,
             terminal: terminal[op.id] ?? 0, state: op.state };
"""


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_report_progress_then_done(stack: IntegrationStack, demo_page: Page,
                                   transport: str) -> None:
    token = stack.create_user(f"js_report_{transport}")
    seen = run(demo_page, token, REPORT_WITH_PROGRESS, transport)
    assert seen["active"] == transport
    assert seen["state"] == "completed" and seen["states"][-1] == "completed"
    assert seen["body"]["state"] == "completed" and seen["body"]["status"] == 201
    assert seen["body"]["response"]["kind"] == "sales"
    percents = [p["percent"] for p in seen["progress"] if p]
    assert len(percents) >= 3, seen["progress"]
    assert percents == sorted(percents)
    assert seen["terminal"] == 1
    if transport == "websocket":
        assert seen["urls"] and all("ticket=art1." in url for url in seen["urls"])
        assert token not in " ".join(seen["urls"])


def test_cancel_slow_analytics(stack: IntegrationStack, demo_page: Page) -> None:
    token = stack.create_user("js_cancel")
    seen = run(demo_page, token, """
    const op = await client.submit("/api/v1/analytics/slow/?seconds=20");
    const started = Date.now();
    // This route reports no progress, so no push says "running" before the end: ask.
    while (op.state !== "running") { await sleep(200); await op.refresh(); }
    const before = op.state;
    const answer = await op.cancel();
    const body = await op.done;
    return { before, answer, body, took: Date.now() - started };
    """)
    assert seen["before"] == "running"
    assert seen["answer"]["state"] in ("cancelled", "running")
    assert seen["body"]["state"] == "cancelled"
    assert seen["took"] < 15000


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_drops_resume_without_loss_or_repeat(stack: IntegrationStack, demo_page: Page,
                                             transport: str) -> None:
    token = stack.create_user(f"js_drop_{transport}")
    seen = run(demo_page, token, """
    const ops = await Promise.all([report(2), report(3), report(4)]);
    const stateEvents = {};
    for (const op of ops) op.on("state", (s) => {
      (stateEvents[op.id] ??= []).push(s);
    });
    const drops = [];
    for (let i = 0; i < 4; i++) {
      await sleep(700);
      drops.push(client._debugDrop());
    }
    const bodies = await Promise.all(ops.map((op) => op.done));
    return { ids: ops.map((op) => op.id), states: bodies.map((b) => b.state), terminal,
             stateEvents, drops, urls, last: client.seq.last };
    """, transport, timeout=90)
    assert seen["states"] == ["completed"] * 3
    assert any(seen["drops"])
    for task_id in seen["ids"]:
        assert seen["terminal"].get(task_id) == 1, seen
        assert seen["stateEvents"][task_id].count("completed") == 1, seen
    if transport == "websocket":
        assert any("after=" in url for url in seen["urls"]), seen["urls"]


def test_list_and_poll(stack: IntegrationStack, demo_page: Page) -> None:
    token = stack.create_user("js_poll")
    seen = run(demo_page, token, """
    const op = await report(1);
    const body = await op.done;
    const page = await client.list({ state: "completed", limit: 5 });
    return { body, active: client.active, listed: page.data.map((o) => o.task_id), id: op.id,
             urls };
    """, "poll")
    assert seen["active"] == "poll" and seen["urls"] == []
    assert seen["body"]["state"] == "completed"
    assert seen["id"] in seen["listed"]


def test_anonymous_channel(stack: IntegrationStack, demo_page: Page) -> None:
    seen = run(demo_page, None, """
    const op = await client.submit("/django/echo/", {
      method: "POST", headers: { "content-type": "text/plain" }, body: "hello, background",
    });
    const body = await op.done;
    return { body, channel: client.channel, connected: client.connected };
    """)
    assert seen["body"]["state"] == "completed"
    assert seen["body"]["response"]["length"] == len("hello, background")
    assert len(seen["channel"]) >= 22


def test_rerun(stack: IntegrationStack, demo_page: Page, http: httpx.Client) -> None:
    if "/rerun/" not in http.get("/api/v1/openapi.json").text:
        pytest.skip("no rerun route on this server yet")
    token = stack.create_user("js_rerun")
    seen = run(demo_page, token, """
    const op = await client.submit("/api/v1/analytics/slow/?seconds=2");
    while (op.state !== "running") { await sleep(200); await op.refresh(); }
    await op.cancel();
    const first = await op.done;
    const again = await op.rerun();   // a failed or cancelled one may be queued again
    const body = await again.done;
    return { first: op.id, firstState: first.state, second: again.id, state: body.state,
             rerunOf: body.rerun_of };
    """)
    assert seen["firstState"] == "cancelled"
    assert seen["first"] != seen["second"] and seen["state"] == "completed"
    assert seen["rerunOf"] in (None, seen["first"])
