"""A tiny Chrome DevTools Protocol driver for the browser tests: the system's Chromium, no download.

    with Browser.start() as browser:         # `chromium` (or $AR_CHROMIUM) from PATH, headless
        page = browser.new_page(url)
        page.wait_for("document.readyState === 'complete'")
        value = page.evaluate("fetch('/x').then(r => r.status)")   # promises are awaited

Chromium is started with `--remote-debugging-port=0` and a scratch profile; the port it picked
is read from `<profile>/DevToolsActivePort`. A page target is opened with `PUT /json/new?<url>`
and driven over its `webSocketDebuggerUrl` (the `websockets` package, synchronous client).
Console messages and uncaught exceptions of the page are collected in `Page.console`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from websockets.sync.client import ClientConnection, connect

BINARIES = ("chromium", "chromium-browser", "google-chrome", "chrome")


class BrowserError(RuntimeError):
    """Chromium did not start, or a page's script threw."""


def chromium_binary() -> str | None:
    """Path of the Chromium to use: $AR_CHROMIUM, else the first of BINARIES on PATH."""
    explicit = os.environ.get("AR_CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    return next((found for name in BINARIES if (found := shutil.which(name))), None)


class Page:
    """One page target: `evaluate()` JavaScript in it, `wait_for()` a condition."""

    def __init__(self, ws_url: str) -> None:
        self._ws: ClientConnection = connect(ws_url, max_size=None, open_timeout=10)
        self._next_id = 0
        self.console: list[str] = []
        self.send("Runtime.enable")

    def send(self, method: str, params: dict[str, Any] | None = None,
             timeout: float = 30) -> dict[str, Any]:
        """Send one CDP command; return its `result` (raises BrowserError on an error)."""
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{method}: no answer in {timeout} s")
            message = json.loads(self._ws.recv(timeout=left))
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._note(message)

    def _note(self, message: dict[str, Any]) -> None:
        params = message.get("params", {})
        if message.get("method") == "Runtime.consoleAPICalled":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append(f"{params.get('type')}: {args}")
        elif message.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.console.append(f"exception: {text}")

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        """The JSON value of `expression` (a promise is awaited); BrowserError if it throws."""
        result = self.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
            "timeout": int(timeout * 1000),
        }, timeout=timeout + 5)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{text}\n-- page console:\n" + "\n".join(self.console[-30:]))
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30, interval: float = 0.1) -> Any:
        """Evaluate `expression` until it is truthy; return it (BrowserError after timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still falsy after {timeout} s: {expression}\n-- console:\n"
                                   + "\n".join(self.console[-30:]))
            time.sleep(interval)

    def close(self) -> None:
        """Close the DevTools connection of this page."""
        self._ws.close()


class Browser:
    """A headless Chromium with a scratch profile; `new_page(url)`; `stop()` kills it."""

    def __init__(self, process: subprocess.Popen[bytes], profile: Path, port: int) -> None:
        self.process, self.profile, self.port = process, profile, port
        self.pages: list[Page] = []

    @classmethod
    def start(cls, binary: str | None = None, timeout: float = 30) -> Browser:
        """Start Chromium headless; BrowserError if there is none or it does not come up."""
        binary = binary or chromium_binary()
        if binary is None:
            raise BrowserError("no chromium on PATH (apt-get install chromium)")
        profile = Path(tempfile.mkdtemp(prefix="ar-chromium-"))
        log = (profile / "chromium.log").open("wb")
        process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
             "--remote-debugging-port=0", "--remote-allow-origins=*",
             f"--user-data-dir={profile}", "about:blank"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (active.exists() and active.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = (profile / "chromium.log").read_text(errors="replace")[-2000:]
                shutil.rmtree(profile, ignore_errors=True)
                raise BrowserError(f"chromium did not start:\n{tail}")
            time.sleep(0.05)
        port = int(active.read_text().splitlines()[0])
        return cls(process, profile, port)

    def new_page(self, url: str) -> Page:
        """Open `url` in a new page target and return it (not waiting for the load)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?{url}",
                                         method="PUT")
        with urllib.request.urlopen(request, timeout=10) as answer:
            target = json.load(answer)
        page = Page(target["webSocketDebuggerUrl"])
        self.pages.append(page)
        return page

    def stop(self) -> None:
        """Close the pages, stop Chromium, delete its profile."""
        for page in self.pages:
            page.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
