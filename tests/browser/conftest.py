"""Fixtures of the browser tests: the system's headless Chromium (tools/browser.py).

Skipped, with the reason, when no Chromium is on PATH (`apt-get install chromium`, or set
AR_CHROMIUM); nothing is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.stack import IntegrationStack
from tools.browser import Browser, Page, chromium_binary


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the session."""
    if chromium_binary() is None:
        pytest.skip("no chromium on PATH (apt-get install chromium, or set AR_CHROMIUM)")
    with Browser.start() as started:
        yield started


@pytest.fixture
def demo_page(browser: Browser, stack: IntegrationStack) -> Iterator[Page]:
    """The sample's /demo/ page, loaded, with its module script run."""
    page = browser.new_page(f"{stack.base_url}/demo/")
    page.wait_for("document.readyState === 'complete' && typeof window.demo === 'object'")
    yield page
    page.evaluate("window.demo.client?.close(); true")
    page.close()
