"""ASGI entry point: `uvicorn sample_project.asgi:application` (PYTHONPATH=.:sample_project).

HTTP goes through async-request's middleware, then by path to FastAPI (`/api/`) or Django;
WebSockets go to async-request's consumer at `/ws/`. The worker replays deferred requests into
this same `application` (settings.ASYNC_REQUEST_ASGI_APP), so they see the same routes.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_project.settings")
# Set Django up before anything below imports models.
django_asgi = get_asgi_application()
if settings.DEBUG:
    # Admin CSS/JS under uvicorn, which has no runserver to serve static files.
    django_asgi = ASGIStaticFilesHandler(django_asgi)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from fastapi_app import api  # noqa: E402

from async_request.middleware import AsyncRequestMiddleware  # noqa: E402
from async_request.routing import websocket_urlpatterns  # noqa: E402
from sample_project.dispatch import PathDispatcher  # noqa: E402

dispatcher = PathDispatcher(api, django_asgi)
http = AsyncRequestMiddleware(dispatcher)

application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": URLRouter(websocket_urlpatterns),
        "lifespan": dispatcher,
    }
)
