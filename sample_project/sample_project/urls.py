"""Django URLs of the sample; `/api/...` never reaches Django (see `sample_project.dispatch`)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("django/", include("demo.urls")),
]
