"""`/reports/`: slow report builds and a CSV export that only runs in the background."""

from __future__ import annotations

import asyncio

from django.utils import timezone
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from async_request.dependencies import require_async
from async_request.progress import report_progress
from demo.api.deps import CurrentUser
from demo.api.schemas import ReportIn, ReportOut
from demo.models import Report
from demo.summaries import build_report, orders_csv

router = APIRouter(prefix="/reports", tags=["reports"])
#: A report build reports its progress in this many steps.
REPORT_STEPS = 10


@router.post("/", response_model=ReportOut, status_code=201)
async def create_report(body: ReportIn, user: CurrentUser, request: Request) -> Report:
    """Build a report in `seconds` seconds and return it ready: the kind of call to defer.

    In the background it reports its progress in ten steps (the status body's `progress`, the
    WebSocket's `running` frames); called directly, `report_progress` does nothing.
    """
    report = await Report.objects.acreate(
        owner_id=user.pk, kind=body.kind, params=body.model_dump()
    )
    for step in range(REPORT_STEPS):
        report_progress(request, step, REPORT_STEPS, f"building the {body.kind} report")
        await asyncio.sleep(body.seconds / REPORT_STEPS)
    report_progress(request, REPORT_STEPS, REPORT_STEPS, "saving")
    report.content = await build_report(body.kind, user.pk)
    report.status = Report.Status.READY
    report.finished_at = timezone.now()
    await report.asave(update_fields=["content", "status", "finished_at"])
    return report


@router.post("/export/", dependencies=[Depends(require_async)])
async def export_orders(user: CurrentUser) -> Response:
    """Return the caller's orders as CSV; 409 unless sent with `X-Async-Request`."""
    return Response(
        await orders_csv(user.pk),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="orders.csv"'},
    )


@router.get("/{report_id}/", response_model=ReportOut)
async def get_report(report_id: int, user: CurrentUser) -> Report:
    """Return one of the caller's reports."""
    try:
        return await Report.objects.aget(pk=report_id, owner_id=user.pk)
    except Report.DoesNotExist as exc:
        raise HTTPException(404, f"report {report_id} not found") from exc
