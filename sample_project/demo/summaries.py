"""Report building from a user's orders, shared by the reports, analytics and export routes."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from django.db.models import Count, Sum

from demo.models import Order

CENTS = Decimal("0.01")


def _money(value: Decimal | None) -> str:
    return str((value or Decimal(0)).quantize(CENTS))


async def sales_summary(owner_id: int) -> dict[str, Any]:
    """Return order count and totals of one owner, overall and per status (amounts as strings)."""
    rows = (
        Order.objects.filter(owner_id=owner_id)
        .values("status")
        .annotate(n=Count("id"), total=Sum("amount"))
        .order_by("status")
    )
    by_status: dict[str, dict[str, Any]] = {}
    count, total = 0, Decimal(0)
    async for row in rows:
        by_status[row["status"]] = {"orders": row["n"], "total": _money(row["total"])}
        count += row["n"]
        total += row["total"] or Decimal(0)
    return {"orders": count, "total": _money(total), "by_status": by_status}


async def orders_listing(owner_id: int, limit: int = 100) -> dict[str, Any]:
    """Return the owner's newest orders as JSON-safe rows."""
    orders = [
        {"id": o.pk, "title": o.title, "amount": _money(o.amount), "status": o.status}
        async for o in Order.objects.filter(owner_id=owner_id)[:limit]
    ]
    return {"orders": orders}


async def build_report(kind: str, owner_id: int) -> dict[str, Any]:
    """Return the content of a report of `kind` ("sales" or "orders")."""
    if kind == "orders":
        return await orders_listing(owner_id)
    return await sales_summary(owner_id)


async def orders_csv(owner_id: int) -> str:
    """Return all of the owner's orders as CSV text with a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "title", "amount", "status", "created_at"])
    async for o in Order.objects.filter(owner_id=owner_id).order_by("id"):
        writer.writerow([o.pk, o.title, _money(o.amount), o.status, o.created_at.isoformat()])
    return out.getvalue()
