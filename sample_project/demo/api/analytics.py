"""`/analytics/slow/`: a slow read-only endpoint, the simplest thing to send in the background."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query

from demo.api.deps import CurrentUser
from demo.summaries import sales_summary

router = APIRouter(prefix="/analytics", tags=["analytics"])


@router.get("/slow/")
async def slow_analytics(
    user: CurrentUser, seconds: Annotated[float, Query(ge=0, le=30)] = 1.5
) -> dict[str, Any]:
    """Sleep `seconds`, then return the caller's order totals."""
    await asyncio.sleep(seconds)
    return {"seconds": seconds, **await sales_summary(user.pk)}
