"""Route one ASGI server to two apps by path: `/api/...` to FastAPI, the rest to Django."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class PathDispatcher:
    """Pure ASGI app sending paths under `prefix` to `api` and all others to `fallback`.

    Lifespan events go to `api`: Django's ASGI handler rejects them, FastAPI handles them.
    """

    def __init__(self, api: ASGIApp, fallback: ASGIApp, *, prefix: str = "/api/") -> None:
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ValueError(f"prefix must start and end with '/', got {prefix!r}")
        self.api = api
        self.fallback = fallback
        self.prefix = prefix

    def app_for(self, scope: Scope) -> ASGIApp:
        """Return the app that serves `scope`."""
        if scope["type"] == "lifespan":
            return self.api
        path: str = scope.get("path", "")
        if path.startswith(self.prefix) or path == self.prefix[:-1]:
            return self.api
        return self.fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app_for(scope)(scope, receive, send)
