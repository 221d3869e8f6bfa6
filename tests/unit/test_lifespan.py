"""The replay target's lifespan: started once, its state handed to replays, shut down at exit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from async_request.exceptions import ConfigurationError
from async_request.lifespan import Lifespan
from tests.asgi_apps import echo_app


class App:
    """A tiny ASGI app with a lifespan that records what happened."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[str] = []
        self.fail = fail

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.events.append("startup")
                if self.fail:
                    await send({"type": "lifespan.startup.failed", "message": "no database"})
                    return
                scope["state"]["pool"] = "ready"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.events.append("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return


def test_startup_fills_the_state_and_shutdown_runs_once() -> None:
    app = App()

    async def run() -> Lifespan:
        lifespan = Lifespan(app)
        await lifespan.startup()
        assert lifespan.supported and lifespan.state == {"pool": "ready"}
        await lifespan.shutdown()
        await lifespan.shutdown()
        return lifespan

    asyncio.run(run())
    assert app.events == ["startup", "shutdown"]


def test_a_failed_startup_names_the_setting() -> None:
    async def run() -> None:
        await Lifespan(App(fail=True)).startup()

    with pytest.raises(ConfigurationError, match="ASYNC_REQUEST_ASGI_APP.*no database"):
        asyncio.run(run())


@pytest.mark.parametrize("app", [echo_app])
def test_an_app_without_lifespan_is_replayed_without_it(app: Any) -> None:
    async def run() -> Lifespan:
        lifespan = Lifespan(app, timeout=2)
        await lifespan.startup()
        await lifespan.shutdown()
        return lifespan

    assert asyncio.run(run()).supported is False
