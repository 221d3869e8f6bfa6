"""`/analytics/slow/`: a slow read-only endpoint, the simplest thing to send in the background.

It waits in short steps and stops early once its owner cancels it (`is_cancelled`): the way a
route ends cleanly on DELETE instead of being stopped after ASYNC_REQUEST_CANCEL_GRACE_SEC.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from async_request.dependencies import is_cancelled
from demo.api.deps import CurrentUser
from demo.summaries import sales_summary

router = APIRouter(prefix="/analytics", tags=["analytics"])


@router.get("/slow/")
async def slow_analytics(
    request: Request, user: CurrentUser, seconds: Annotated[float, Query(ge=0, le=30)] = 1.5
) -> dict[str, Any]:
    """Wait `seconds` (less when cancelled), then return the caller's order totals."""
    left = seconds
    while left > 0 and not is_cancelled(request):
        step = min(left, 0.05)
        await asyncio.sleep(step)
        left -= step
    return {"seconds": seconds, **await sales_summary(user.pk)}
