"""The sample's /demo/ page used as a person would, in a real Chromium, on the live stack.

Each test clicks and types in the page (sample_project/demo/templates/demo/index.html) and
checks what it shows: the operations table's rows (`tr[data-id]`, a `.state` cell, a
`<progress>` bar, a `.result`), `#who` and `#connection`. Window internals are read only to
tell which transport carried an event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.demo_ui import (
    TERMINAL,
    ended,
    history,
    no_page_errors,
    record_rows,
    row,
    sign_in,
    start_report,
    start_slow,
    status,
    task_id,
)
from tests.integration.stack import IntegrationStack

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow,
              pytest.mark.timeout(120)]

def test_page_loads(demo_page: Page) -> None:
    page = demo_page
    expect(page).to_have_title("async-request demo")
    expect(page.locator("#login-button")).to_be_visible()
    expect(page.locator("#start-report")).to_be_disabled()
    expect(page.locator("#operations tr")).to_have_count(0)
    assert page.evaluate("window.demo.client") is None
    no_page_errors(page)


def test_sign_in_as_the_demo_user(stack: IntegrationStack, demo_page: Page) -> None:
    # The form comes filled in with the demo user that `make run` creates: one click.
    stack.create_user("demo", "demo")
    page = demo_page
    expect(page.locator("#login [name=username]")).to_have_value("demo")
    page.click("#login-button")
    expect(page.locator("#who")).to_have_text("logged in as demo")
    expect(page.locator("#start-report")).to_be_enabled()
    no_page_errors(page)


def test_wrong_password_says_so(stack: IntegrationStack, demo_page: Page) -> None:
    stack.create_user("ui_wrong", "pw")
    page = demo_page
    page.fill("#login [name=username]", "ui_wrong")
    page.fill("#login [name=password]", "not-the-password")
    page.click("#login-button")
    expect(page.locator("#who")).to_have_text(re.compile(r"login failed \(HTTP 4\d\d\)"))
    expect(page.locator("#start-report")).to_be_disabled()


def test_report_runs_to_completion_with_progress(stack: IntegrationStack,
                                                 demo_page: Page) -> None:
    page = demo_page
    sign_in(page, stack, "ui_report")
    record_rows(page)
    tr = start_report(page, 3)
    expect(tr.locator(".state")).to_have_text("completed")
    expect(tr.locator("progress")).to_have_attribute("value", "100")
    expect(tr.locator(".cancel")).to_be_hidden()
    steps = history(page, tr)
    running = [s["value"] for s in steps if s["state"] not in TERMINAL and s["value"] is not None]
    # The bar moved while it ran (ten steps reported, pushed at most twice a second), forward.
    assert len(set(running)) >= 2, steps
    assert running == sorted(running), steps
    assert steps[-1] == {"value": 100, "state": "completed"}, steps
    assert "running" in [s["state"] for s in steps], steps
    no_page_errors(page)


def test_open_a_result(stack: IntegrationStack, demo_page: Page, http: httpx.Client) -> None:
    page = demo_page
    token = sign_in(page, stack, "ui_result")
    tr = start_report(page, 0.5, kind="orders")
    expect(tr.locator(".state")).to_have_text("completed")
    expect(tr.locator(".result")).not_to_be_empty()
    shown = json.loads(tr.locator(".result").inner_text())
    # What the page shows is the route's own answer, the one the status endpoint stores.
    stored = status(http, token, task_id(tr))
    assert stored["state"] == "completed" and stored["status"] == 201
    assert shown == stored["response"]
    assert shown["kind"] == "orders"


def test_cancel_slow_analytics_ends_cancelled(stack: IntegrationStack, demo_page: Page,
                                              http: httpx.Client) -> None:
    page = demo_page
    token = sign_in(page, stack, "ui_cancel")
    tr = start_slow(page, 20)
    cancel = tr.locator(".cancel")
    expect(cancel).to_be_visible()
    cancel.click()
    # Well before its 20 s: an end other than "cancelled" would fail this wait.
    expect(tr.locator(".state")).to_have_text("cancelled")
    expect(tr.locator(".state")).to_have_class(re.compile(r"\bstate-cancelled\b"))
    expect(cancel).to_be_hidden()
    assert status(http, token, task_id(tr))["state"] == "cancelled"
    no_page_errors(page)


def test_reconnect_mid_run_still_shows_the_end(stack: IntegrationStack, demo_page: Page,
                                               context: BrowserContext,
                                               http: httpx.Client) -> None:
    page = demo_page
    token = sign_in(page, stack, "ui_reconnect")
    tr = start_report(page, 4)
    connection = page.locator("#connection")
    expect(connection).to_have_text("websocket: connected")
    expect(tr.locator(".state")).to_have_text("running")
    op = task_id(tr)
    # The network goes away and the socket with it; the operation ends while the page is
    # offline, so its terminal event can only come from the catch-up (or a status read).
    context.set_offline(True)
    page.evaluate("window.demo.client._debugDrop()")
    expect(connection).to_have_text(re.compile(r"reconnecting$"))
    assert ended(http, token, op)["state"] == "completed"
    expect(tr.locator(".state")).not_to_have_text("completed")
    context.set_offline(False)
    expect(tr.locator(".state")).to_have_text("completed")
    expect(tr.locator("progress")).to_have_attribute("value", "100")
    expect(tr.locator(".result")).to_contain_text('"kind": "sales"')
    expect(connection).to_have_text(re.compile(r": connected$"))
    assert status(http, token, op)["state"] == "completed"


def test_my_operations_list_shows_states(stack: IntegrationStack,
                                         open_demo: Callable[[], Page]) -> None:
    page = open_demo()
    sign_in(page, stack, "ui_list")
    done = start_report(page, 0.5)
    expect(done.locator(".state")).to_have_text("completed")
    cancelled = start_slow(page, 20)
    cancelled.locator(".cancel").click()
    expect(cancelled.locator(".state")).to_have_text("cancelled")
    running = start_slow(page, 25)
    expect(running.locator(".state")).to_have_text(re.compile(r"pending|running"))
    ids = {"completed": task_id(done), "cancelled": task_id(cancelled),
           "live": task_id(running)}

    # A new visit: the table is rebuilt from the server's "my operations" list.
    open_demo()
    expect(page.locator("#operations tr")).to_have_count(0)
    sign_in(page, stack, "ui_list")
    expect(page.locator("#operations tr")).to_have_count(3)
    expect(row(page, ids["completed"]).locator(".state")).to_have_text("completed")
    expect(row(page, ids["cancelled"]).locator(".state")).to_have_text("cancelled")
    live = row(page, ids["live"])
    expect(live.locator(".state")).to_have_text(re.compile(r"pending|running"))
    # The live one is followed again: its Cancel works from the rebuilt list.
    live.locator(".cancel").click()
    expect(live.locator(".state")).to_have_text("cancelled")
    page.click("#reload-list")
    expect(live.locator(".state")).to_have_text("cancelled")
    expect(page.locator("#operations tr")).to_have_count(3)
    no_page_errors(page)
