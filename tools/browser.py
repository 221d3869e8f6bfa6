"""The system's Chromium under Playwright, for tests/browser and tools/screenshot.py.

    with chromium() as browser:              # $AR_CHROMIUM, else `chromium` ... from PATH
        page = browser.new_page()
        log = PageLog()
        log.watch(page)                      # console messages and uncaught errors

Playwright drives the binary given as `executable_path`: nothing downloads a browser (never
run `playwright install` for this project). `unavailable()` says why the browser tests cannot
run here, in words that tell how to fix it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page, ViewportSize

BINARIES = ("chromium", "chromium-browser", "google-chrome", "chrome")
# Root in containers and CI: Chromium's sandbox needs user namespaces those often lack.
# /dev/shm is small in containers: without the flag, big pages crash the renderer.
ARGS = ("--no-sandbox", "--disable-dev-shm-usage")
#: The page size of the browser tests and of docs/demo.png (tools/screenshot.py).
VIEWPORT: ViewportSize = {"width": 1100, "height": 700}


def chromium_binary() -> str | None:
    """Path of the Chromium to use: $AR_CHROMIUM, else the first of BINARIES on PATH."""
    explicit = os.environ.get("AR_CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    return next((found for name in BINARIES if (found := shutil.which(name))), None)


def unavailable() -> str | None:
    """Why no browser can be driven here (the fix included), None when one can."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (make install)"
    if chromium_binary() is None:
        wanted = os.environ.get("AR_CHROMIUM")
        if wanted:
            return (f"AR_CHROMIUM={wanted!r} is not an executable: point it to a Chromium "
                    "binary, or unset it and apt-get install chromium")
        return ("no Chromium on PATH: apt-get install chromium, "
                "or set AR_CHROMIUM to a Chromium binary")
    return None


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium (the system's, see chromium_binary) driven by Playwright."""
    from playwright.sync_api import sync_playwright

    reason = unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_binary(), headless=True, args=list(ARGS))
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """What a page printed to its console and the errors it did not catch, in order."""

    lines: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        """Collect from `page` too."""
        page.on("console", self._console)
        page.on("pageerror", self._error)

    def _console(self, message: ConsoleMessage) -> None:
        self.lines.append(f"console.{message.type}: {message.text}")

    def _error(self, error: Error) -> None:
        self.lines.append(f"uncaught: {error.stack or error.message}")

    @property
    def uncaught(self) -> list[str]:
        """The exceptions the page's scripts did not catch."""
        return [line for line in self.lines if line.startswith("uncaught:")]

    def text(self, last: int = 60) -> str:
        """The last `last` lines, one a line (for a failure report)."""
        return "\n".join(self.lines[-last:]) or "(nothing)"
