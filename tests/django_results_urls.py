"""A URLconf that mounts the Django results endpoints where the FastAPI router sits."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("api/v1/", include("async_request.results.urls"))]
