"""Steps of a person using the sample's /demo/ page, shared by the browser tests' modules.

The page's structure (sample_project/demo/templates/demo/index.html): a `#login` form, the
`#actions` fieldset, the `#operations` table with one `tr[data-id=<task id>]` per operation
(its `.state`, `<progress>`, `.cancel`, `.result`), `#who` and `#connection`.
"""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.integration.stack import IntegrationStack, auth

TERMINAL = ("completed", "failed", "cancelled")

# Records, per row, each change of (progress value, state) the table shows: a progress bar
# can move and end between two looks from the test, a MutationObserver sees every step.
RECORD_ROWS = """
() => {
  const seen = window.rowHistory = {};
  const record = () => {
    for (const tr of document.querySelectorAll("#operations tr")) {
      const bar = tr.querySelector("progress");
      const value = bar.hasAttribute("value") ? bar.value : null;
      const state = tr.querySelector(".state").textContent;
      const steps = (seen[tr.dataset.id] ??= []);
      const last = steps[steps.length - 1];
      if (!last || last.value !== value || last.state !== state) steps.push({ value, state });
    }
  };
  new MutationObserver(record).observe(document.querySelector("#operations"),
    { subtree: true, childList: true, attributes: true, characterData: true });
}
"""


def sign_in(page: Page, stack: IntegrationStack, username: str,
            transport: str = "auto") -> str:
    """Create `username` (password "pw"), log in through the form; return a JWT for the user."""
    token = stack.create_user(username, "pw")
    page.fill("#login [name=username]", username)
    page.fill("#login [name=password]", "pw")
    page.select_option("#login [name=transport]", transport)
    page.click("#login-button")
    expect(page.locator("#who")).to_have_text(f"logged in as {username}")
    expect(page.locator("#start-report")).to_be_enabled()
    return token


def start_report(page: Page, seconds: float, kind: str = "sales") -> Locator:
    """Click "Build a report"; the row of the new operation."""
    page.select_option("#report-kind", kind)
    page.fill("#report-seconds", str(seconds))
    return _new_row(page, "#start-report", f"{kind} report")


def start_slow(page: Page, seconds: float) -> Locator:
    """Click "Slow analytics"; the row of the new operation."""
    page.fill("#slow-seconds", str(seconds))
    return _new_row(page, "#start-slow", "slow analytics")


def _new_row(page: Page, button: str, label: str) -> Locator:
    before = set(row_ids(page))
    page.click(button)
    page.wait_for_function(
        "([label, before]) => [...document.querySelectorAll('#operations tr')].some("
        "tr => !before.includes(tr.dataset.id) && tr.textContent.includes(label))",
        arg=[label, sorted(before)])
    fresh = [i for i in row_ids(page) if i not in before]
    return row(page, fresh[0])


def row_ids(page: Page) -> list[str]:
    """The task ids of the table's rows, top (newest) first."""
    ids: list[str] = page.eval_on_selector_all("#operations tr",
                                               "rows => rows.map(r => r.dataset.id)")
    return ids


def row(page: Page, task_id: str) -> Locator:
    """The operations table's row of `task_id`."""
    return page.locator(f"#operations tr[data-id='{task_id}']")


def task_id(tr: Locator) -> str:
    """The task id of a row."""
    value = tr.get_attribute("data-id")
    assert value, "a row without data-id"
    return value


def record_rows(page: Page) -> None:
    """From now on, note each change of every row's progress value and state (`history`)."""
    page.evaluate(RECORD_ROWS)


def history(page: Page, tr: Locator) -> list[dict[str, Any]]:
    """What `record_rows` saw of the row: [{value, state}, ...] in order."""
    steps: list[dict[str, Any]] = page.evaluate("id => window.rowHistory[id] ?? []", task_id(tr))
    return steps


def status(http: httpx.Client, token: str, op: str, wait: int = 0) -> dict[str, Any]:
    """The server's status body of an operation (`wait`: long-poll up to that many seconds)."""
    answer = http.get(f"/api/v1/async_background_response/{op}/",
                      params={"wait": wait} if wait else None, headers=auth(token))
    body: dict[str, Any] = answer.json()
    return body


def ended(http: httpx.Client, token: str, op: str) -> dict[str, Any]:
    """The status body of `op` once it ended (long-polls; fails after about 30 s)."""
    for _ in range(10):
        body = status(http, token, op, wait=3)
        if body["state"] in TERMINAL:
            return body
    raise AssertionError(f"{op} did not end: {body}")


def no_page_errors(page: Page) -> None:
    """The page reported no error of its own (demo.errors: failed calls, client errors)."""
    assert page.evaluate("window.demo.errors") == []
