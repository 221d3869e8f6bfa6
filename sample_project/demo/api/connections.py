"""Give FastAPI routes the database connection hygiene Django's own handler has.

Django closes stale connections on `request_started`/`request_finished`; FastAPI never sends
those signals, so without this a connection dropped by PostgreSQL would break every later
request, and test databases could not be dropped while a connection stays open.

Only after the request, not before as well: with persistent connections (`CONN_MAX_AGE` > 0,
the sample's settings) `close_old_connections` closes one past its age or broken, and marks
the kept one for `CONN_HEALTH_CHECKS` at its next use, so a call before each request would
only repeat that, for one more thread hop per request (in the web app and in every replay).
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from starlette.types import ASGIApp, Receive, Scope, Send


class DjangoConnections:
    """Pure ASGI middleware calling `close_old_connections` after each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            # thread_sensitive: the async ORM runs in that thread, so this reaches its connection.
            await sync_to_async(close_old_connections)()
