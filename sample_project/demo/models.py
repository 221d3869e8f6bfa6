"""Orders and reports: per-user data that makes slow requests worth moving to the background."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Order(models.Model):
    """An order of one user; the list and analytics endpoints only ever show the owner's."""

    class Status(models.TextChoices):
        NEW = "new"
        PAID = "paid"
        SHIPPED = "shipped"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orders"
    )
    title = models.CharField(max_length=200)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    created_at = models.DateTimeField(auto_now_add=True)
    # Task id of the background request that created it: a replay that runs again after a
    # worker crash finds its order instead of creating a second one.
    request_id = models.CharField(max_length=36, null=True, blank=True, unique=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Order #{self.pk} {self.title} ({self.status})"


class Report(models.Model):
    """A report built slowly from the owner's orders; `pending` until the build finishes."""

    class Kind(models.TextChoices):
        SALES = "sales"
        ORDERS = "orders"

    class Status(models.TextChoices):
        PENDING = "pending"
        READY = "ready"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reports"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.SALES)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    content = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Report #{self.pk} {self.kind} ({self.status})"
