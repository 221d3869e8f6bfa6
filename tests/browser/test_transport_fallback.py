"""The demo page's client on "auto" where WebSockets (and then Server-Sent Events) fail.

Real failures, in a real Chromium: every WebSocket the page opens is sent to a port where
nothing listens (the handshake fails, as behind a proxy that drops upgrades), and the event
stream's requests are answered 503 by a Playwright route. The client must move on to SSE, then
to polling, and the operation's end must still show.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.browser.demo_ui import sign_in, start_report, task_id
from tests.integration.stack import IntegrationStack
from tools.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow,
              pytest.mark.timeout(120)]

BREAK_WEBSOCKETS = """
(port) => {
  const Native = window.WebSocket;
  window.webSocketsTried = 0;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      const dead = new URL(url);
      dead.port = String(port);
      super(dead, protocols);
      window.webSocketsTried += 1;
    }
  };
}
"""

# What the client got pushed (not read from the status URL): "<status> <task id>".
RECORD_PUSHED = """
() => {
  window.pushed = [];
  window.demo.client.on("event", (e) => window.pushed.push(`${e.status} ${e.task_id}`));
}
"""

EVENTS_URL = re.compile(r"/async_background_response/events/\?")


def break_websockets(page: Page) -> None:
    """Make every WebSocket of the page (from its next load on) fail to connect."""
    page.add_init_script(f"({BREAK_WEBSOCKETS})({free_port()})")


def test_no_websocket_falls_back_to_sse(stack: IntegrationStack, page: Page,
                                        open_demo: Callable[[], Page]) -> None:
    break_websockets(page)
    streams: list[str] = []
    page.on("request", lambda request: streams.append(request.url)
            if EVENTS_URL.search(request.url) else None)
    open_demo()
    sign_in(page, stack, "ui_sse_fallback")
    page.evaluate(RECORD_PUSHED)
    first = start_report(page, 0.5)
    # The first report starts the connection: three failed sockets, then the event stream.
    expect(page.locator("#connection")).to_have_text("sse: connected")
    expect(first.locator(".state")).to_have_text("completed")
    assert page.evaluate("window.webSocketsTried") >= 3
    assert streams and all("ticket=" in url for url in streams), streams
    tr = start_report(page, 2)
    expect(tr.locator(".state")).to_have_text("completed")
    expect(tr.locator("progress")).to_have_attribute("value", "100")
    # Its end was pushed over the event stream, not only read by polling.
    page.wait_for_function("id => window.pushed.includes(`completed ${id}`)", arg=task_id(tr))
    assert page.evaluate("window.demo.client.active") == "sse"


def test_no_websocket_nor_sse_falls_back_to_polling(stack: IntegrationStack, page: Page,
                                                    open_demo: Callable[[], Page]) -> None:
    break_websockets(page)
    page.route(EVENTS_URL, lambda route: route.fulfill(status=503, body="no streams here"))
    polled: list[str] = []
    page.on("request", lambda request: polled.append(request.url)
            if "/async_background_response/" in request.url and request.method == "GET"
            else None)
    open_demo()
    sign_in(page, stack, "ui_poll_fallback")
    page.evaluate(RECORD_PUSHED)
    tr = start_report(page, 2)
    page.wait_for_function("window.demo.client.active === 'poll'")
    expect(page.locator("#connection")).to_have_text(re.compile(r"^poll"))
    expect(tr.locator(".state")).to_have_text("completed")
    expect(tr.locator("progress")).to_have_attribute("value", "100")
    op = task_id(tr)
    assert any(f"/async_background_response/{op}/" in url for url in polled), polled
    assert page.evaluate("window.pushed") == []
    assert page.evaluate("window.webSocketsTried") >= 3
