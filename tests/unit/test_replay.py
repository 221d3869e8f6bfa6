"""replay(): status, headers and every body chunk captured, exactly."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from async_request.exceptions import ReplayTimeoutError
from async_request.replay import replay
from async_request.types import INTERNAL_SCOPE_KEY
from tests.asgi_apps import crashing_app, echo_app, silent_app, sleepy_app, streaming_app

SCOPE = {"type": "http", "method": "PUT", "path": "/x", "raw_path": b"/x", "query_string": b"",
         "headers": [], INTERNAL_SCOPE_KEY: {"task_id": "t"}}


def run(app: object, body: bytes = b"", timeout: float = 5) -> object:
    return asyncio.run(replay(app, dict(SCOPE), body, task_id="t", endpoint="/x",  # type: ignore[arg-type]
                              timeout=timeout))


def test_body_is_fed_and_captured_byte_exact() -> None:
    body = bytes(range(256)) * 3
    result = run(echo_app, body)
    assert result.status == 200  # type: ignore[attr-defined]
    assert result.body == body  # type: ignore[attr-defined]
    assert ["x-method", "PUT"] in result.to_dict()["headers"]  # type: ignore[attr-defined]
    assert base64.b64decode(result.to_dict()["body"]) == body  # type: ignore[attr-defined]


def test_streamed_chunks_are_all_kept() -> None:
    result = run(streaming_app)
    assert result.status == 201  # type: ignore[attr-defined]
    assert result.body == b"\x00\x01\xff\xfeend"  # type: ignore[attr-defined]


def test_crash_before_response_is_a_500() -> None:
    assert run(crashing_app).status == 500  # type: ignore[attr-defined]


def test_no_response_is_a_500() -> None:
    assert run(silent_app).status == 500  # type: ignore[attr-defined]


def test_timeout_raises() -> None:
    with pytest.raises(ReplayTimeoutError):
        run(sleepy_app, timeout=0.2)


def test_a_cancelled_replay_hears_disconnect_and_is_stopped_after_the_grace() -> None:
    import asyncio

    from async_request.exceptions import ReplayCancelledError
    from async_request.replay import Cancel

    heard: list[str] = []

    async def polite(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        heard.append((await receive())["type"])  # the disconnect of a cancel

    async def stubborn(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(30)
        finally:
            heard.append("stopped")

    async def run(app: Any) -> float:
        loop = asyncio.get_running_loop()
        cancel = Cancel(loop, grace=0.2)
        loop.call_later(0.1, cancel.request)
        started = loop.time()
        with pytest.raises(ReplayCancelledError):
            await replay(app, {"type": "http"}, b"", task_id="t", endpoint="/x/", timeout=10,
                         cancel=cancel)
        return loop.time() - started

    assert asyncio.run(run(polite)) < 1 and heard == ["http.disconnect"]
    assert asyncio.run(run(stubborn)) < 1 and heard[-1] == "stopped"


def test_the_answer_is_returned_before_what_the_app_does_after_it() -> None:
    """The outcome is the response as a client has it; the rest of the app (a middleware's
    cleanup, background tasks) runs on as a tail, and a stopping worker waits for it."""
    from async_request.replay import wait_for_tails

    events: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        await asyncio.sleep(0.2)  # a background task
        events.append("tail ended")
        raise RuntimeError("raised after answering: logged, the response stands")

    async def main() -> None:
        result = await replay(app, dict(SCOPE), b"", task_id="t", endpoint="/x", timeout=5)
        events.append(f"answered {result.status} {result.body!r}")
        await wait_for_tails(5)

    asyncio.run(main())
    assert events == ["answered 200 b'done'", "tail ended"]


def test_a_tail_is_stopped_at_the_replay_limit() -> None:
    from async_request.replay import _tails

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        await asyncio.sleep(60)

    async def main() -> None:
        result = await replay(app, dict(SCOPE), b"", task_id="t", endpoint="/x", timeout=0.2)
        assert result.status == 204 and len(_tails) == 1
        await asyncio.sleep(0.4)
        assert not _tails

    asyncio.run(main())
