"""WebSocket URL patterns for Channels: include them in your `URLRouter`."""

from __future__ import annotations

from django.urls import path

from async_request.consumers import TaskStatusConsumer

websocket_urlpatterns = [path("ws/", TaskStatusConsumer.as_asgi())]
