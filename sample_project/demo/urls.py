"""URLs of the demo's plain Django views, mounted under `/django/`."""

from __future__ import annotations

from django.urls import path

from demo import views

app_name = "demo"

urlpatterns = [
    path("orders/", views.orders, name="orders"),
    path("echo/", views.echo, name="echo"),
    path("guarded/", views.guarded, name="guarded"),
]
