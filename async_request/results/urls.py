"""Django URL patterns of the results endpoint.

Mount with `path("api/v1/", include("async_request.results.urls"))`.
"""

from __future__ import annotations

from django.urls import path, re_path

from async_request.results.django import (
    events_view,
    new_channel_view,
    openapi_view,
    operations_view,
    rerun_view,
    task_result_view,
    ticket_view,
)
from async_request.settings import RESULTS_ROUTE

urlpatterns = [
    path(f"{RESULTS_ROUTE}/", operations_view, name="async_request_operations"),
    path(f"{RESULTS_ROUTE}/channels/", new_channel_view, name="async_request_new_channel"),
    path(f"{RESULTS_ROUTE}/openapi.json", openapi_view, name="async_request_openapi"),
    path(f"{RESULTS_ROUTE}/tickets/", ticket_view, name="async_request_ticket"),
    path(f"{RESULTS_ROUTE}/events/", events_view, name="async_request_events"),
    path(f"{RESULTS_ROUTE}/<str:task_id>/", task_result_view, name="async_background_response"),
    # With or without the trailing slash, as the FastAPI router: APPEND_SLASH cannot redirect
    # a POST.
    re_path(rf"^{RESULTS_ROUTE}/(?P<task_id>[^/]+)/rerun/?$", rerun_view,
            name="async_request_rerun"),
]
