"""The replay target's ASGI lifespan, run once per worker process.

A web server runs an app's lifespan (`FastAPI(lifespan=...)`: pools, clients, models) before the
first request; a worker that replays requests into the same app must too, or a route that needs
app state works when called directly and breaks only when deferred. `Lifespan.startup()` sends
`lifespan.startup` and waits for the app's answer; the state it filled (ASGI lifespan `state`)
is copied into every replay's scope, as servers do. `shutdown()` runs at process exit. An app
that does not speak the lifespan protocol (it raises, or returns at once) is replayed without it,
as uvicorn's `--lifespan auto` does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from async_request.exceptions import ConfigurationError
from async_request.types import ASGIApp, Message

logger = logging.getLogger(__name__)


class Lifespan:
    """Drives one app's lifespan protocol on the loop it is awaited on."""

    def __init__(self, app: ASGIApp, timeout: float = 60.0) -> None:
        self.app = app
        self.timeout = timeout
        self.state: dict[str, Any] = {}
        self.supported = False
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self._inbox.get, self._outbox.put)
        except Exception as exc:
            if not self.supported:
                logger.info("the replay target has no lifespan (%r): replaying without it", exc)
            else:
                logger.exception("the replay target's lifespan failed")
        finally:
            await self._outbox.put({"type": "lifespan.ended"})

    async def startup(self) -> None:
        """Run the app's startup; ConfigurationError when the app says it failed."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        try:
            answer = await asyncio.wait_for(self._outbox.get(), self.timeout)
        except TimeoutError:
            logger.warning("the replay target did not answer lifespan.startup within %.0fs: "
                           "replaying without its lifespan", self.timeout)
            return
        if answer["type"] == "lifespan.startup.failed":
            raise ConfigurationError(
                "the replay target's lifespan startup failed (ASYNC_REQUEST_ASGI_APP): "
                f"{answer.get('message', '')}")
        self.supported = answer["type"] == "lifespan.startup.complete"
        if self.supported:
            logger.info("replay target started (lifespan)")

    async def shutdown(self) -> None:
        """Run the app's shutdown (once), if its startup ran."""
        if not self.supported or self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self._outbox.get(), self.timeout)
        except TimeoutError:
            logger.warning("the replay target's lifespan shutdown did not finish")
        self.supported = False
