"""Admin pages to look at what background requests created."""

from __future__ import annotations

from django.contrib import admin

from demo.models import Order, Report


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Orders with owner and status filters."""

    list_display = ("id", "owner", "title", "amount", "status", "created_at")
    list_filter = ("status", "owner")
    search_fields = ("title",)


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    """Reports; `finished_at - created_at` shows how long a build took."""

    list_display = ("id", "owner", "kind", "status", "created_at", "finished_at")
    list_filter = ("kind", "status")
