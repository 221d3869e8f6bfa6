"""Drive an ASGI app with a raw scope: any header bytes, any raw path, any body chunks.

httpx and the TestClient normalise what they send (header values, Content-Length, paths), so
the malformed-input tests build the scope themselves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    """Status, headers and body an ASGI app sent, and whether it raised."""

    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), latin-1 decoded."""
        wanted = name.lower().encode("latin-1")
        return next((v.decode("latin-1") for n, v in self.headers if n.lower() == wanted), None)


def http_scope(method: str, raw_path: bytes, *, query_string: bytes = b"",
               headers: list[tuple[bytes, bytes]] | None = None,
               host: bool = True) -> dict[str, Any]:
    """An HTTP scope as uvicorn builds it: `raw_path` is ASCII, `path` is
    `unquote(raw_path.decode("ascii"))` (UTF-8, bad sequences replaced)."""
    from urllib.parse import unquote

    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": "",
        "headers": [*([(b"host", b"testserver")] if host else []), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }


async def call(app: Any, scope: dict[str, Any], chunks: list[bytes] | None = None) -> Answer:
    """Run `app` once with `scope`, feeding `chunks` as the body; collect the answer."""
    pending = list(chunks if chunks is not None else [b""])
    answer = Answer()

    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pending:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(pending)}
        # Like a client that waits for its answer: disconnect only once the app is done
        # (Django and Starlette listen for a disconnect while they stream the response).
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = int(message["status"])
            answer.headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            answer.body += bytes(message.get("body", b""))

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    return answer
