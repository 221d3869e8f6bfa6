"""Django URL patterns of the results endpoint.

Mount with `path("api/v1/", include("async_request.results.urls"))`.
"""

from __future__ import annotations

from django.urls import path

from async_request.results.django import task_result_view

urlpatterns = [
    path("async_background_response/<str:task_id>/", task_result_view,
         name="async_background_response"),
]
