"""Fixtures of the browser tests: the system's headless Chromium under Playwright.

Every test here is skipped, with the reason and the fix, when no Chromium can be driven
(`tools.browser.unavailable()`: `apt-get install chromium` or AR_CHROMIUM), or not collected
when the playwright package is missing (`make install`); nothing is ever downloaded. Either
way the session's last lines say so; the decision is taken at collection, so without a
browser the live stack is not even started. A failing test's report ends with what
its page printed to the console and the errors it did not catch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.stack import IntegrationStack
from tools.browser import VIEWPORT, PageLog, chromium, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

HERE = Path(__file__).resolve().parent
# Without the package the test modules cannot even be imported: not collected, said at the end.
if importlib.util.find_spec("playwright") is None:
    collect_ignore_glob = ["test_*.py"]
#: Every wait of a browser test: the machine is shared and slow; a pass takes far less.
WAIT_MS = 30_000
_PAGE_LOG = pytest.StashKey[PageLog]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this directory's tests, saying how to get a browser, when none can be driven."""
    reason = unavailable()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(skip)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say once, at the end, why the browser tests did not run and how to make them."""
    reason = unavailable()
    if reason is not None:
        terminalreporter.write_line(f"tests/browser did not run: {reason}", yellow=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Add the page's console and uncaught errors to a failing test's report."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    log = item.stash.get(_PAGE_LOG, None)
    if report.failed and log is not None:
        report.sections.append(("browser page console", log.text()))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per module (Playwright's sync API keeps its own event loop)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    with chromium() as started:
        yield started


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (cookies, storage) for one test."""
    fresh = browser.new_context(viewport=VIEWPORT)
    fresh.set_default_timeout(WAIT_MS)
    yield fresh
    fresh.close()


@pytest.fixture
def page_log(request: pytest.FixtureRequest) -> PageLog:
    """The console of this test's page, shown when the test fails."""
    log = PageLog()
    request.node.stash[_PAGE_LOG] = log
    return log


@pytest.fixture
def page(context: BrowserContext, page_log: PageLog) -> Iterator[Page]:
    """A blank page of the test's context, its console collected in `page_log`; an exception
    its scripts did not catch fails the test at teardown."""
    blank = context.new_page()
    page_log.watch(blank)
    yield blank
    assert not page_log.uncaught, "the page threw:\n" + "\n".join(page_log.uncaught)


@pytest.fixture
def open_demo(page: Page, stack: IntegrationStack) -> Iterator[Callable[[], Page]]:
    """Call to (re)load the sample's /demo/ page, once its module script has run; its client
    is closed after the test. Init scripts and routes set on the page before apply."""
    def load() -> Page:
        page.goto(f"{stack.base_url}/demo/", wait_until="load")
        page.wait_for_function("typeof window.demo === 'object'")
        return page

    yield load
    if not page.is_closed():
        page.evaluate("window.demo?.client?.close()")


@pytest.fixture
def demo_page(open_demo: Callable[[], Page]) -> Page:
    """The sample's /demo/ page, loaded."""
    return open_demo()
