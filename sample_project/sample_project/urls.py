"""Django URLs of the sample; `/api/...` never reaches Django (see `sample_project.dispatch`)."""

from __future__ import annotations

from demo.page import client_script, demo_page
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("django/", include("demo.urls")),
    path("demo/", demo_page, name="demo-page"),
    path("demo/async-request.js", client_script, name="demo-client"),
]
