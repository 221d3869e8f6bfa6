"""Give FastAPI routes the database connection hygiene Django's own handler has.

Django closes stale connections on `request_started`/`request_finished`; FastAPI never sends
those signals, so without this a connection dropped by PostgreSQL would break every later
request, and test databases could not be dropped while a connection stays open.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from starlette.types import ASGIApp, Receive, Scope, Send


class DjangoConnections:
    """Pure ASGI middleware calling `close_old_connections` around each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # thread_sensitive: the async ORM runs in that same thread, so this closes its connection.
        await sync_to_async(close_old_connections)()
        try:
            await self.app(scope, receive, send)
        finally:
            await sync_to_async(close_old_connections)()
