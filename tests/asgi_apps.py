"""Tiny raw ASGI apps and test doubles for the middleware, the replay and the channel layer."""

from __future__ import annotations

from typing import Any


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 with the request body; records that it ran in scope['state']."""
    body = await _read_body(receive)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"x-method", scope["method"].encode())]})
    await send({"type": "http.response.body", "body": body})


def scope_echo(seen: list[dict[str, Any]]) -> Any:
    """An ASGI app that appends its scope to `seen` and answers 200 with the body it received."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)
        body = await _read_body(receive)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.body", "body": body})

    return app


async def streaming_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers in three chunks with binary bytes."""
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/octet-stream")]})
    for chunk in (b"\x00\x01", b"\xff\xfe", b"end"):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def crashing_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise RuntimeError("boom")


async def silent_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    return None


async def sleepy_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    import asyncio

    await asyncio.sleep(10)


async def progress_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reports progress 1..10 of 10, 40 ms apart, each step 100 times; answers 200 "done"."""
    import asyncio

    from async_request.progress import report_progress

    await _read_body(receive)
    for step in range(1, 11):
        for _ in range(100):
            report_progress(scope, step, 10, f"step {step}")
        await asyncio.sleep(0.04)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"done"})


class CapturingDispatcher:
    """The dispatch step with the broker publish replaced by a list (the network edge)."""

    def __init__(self) -> None:
        self.published: list[Any] = []
        self.lanes: list[str] = []

    async def enqueue(self, envelope: Any, *, secret: str, lane: str = "default",
                      sealed: Any = None) -> None:
        self.published.append(envelope)
        self.lanes.append(lane)


async def drain(layer: Any, channel: str, wait: float = 0.2) -> list[dict[str, Any]]:
    """Every message a channel-layer channel holds, until `wait` seconds pass with none."""
    import asyncio

    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(layer.receive(channel), wait))
        except TimeoutError:
            return got
