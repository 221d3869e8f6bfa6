"""`/orders/`: CRUD on the caller's orders; another user's order is a 404, never a 403."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from async_request.dependencies import replay_of
from demo.api.deps import CurrentUser
from demo.api.schemas import OrderIn, OrderOut, OrderPatch
from demo.models import Order

router = APIRouter(prefix="/orders", tags=["orders"])


async def _own_order(order_id: int, owner_id: int) -> Order:
    # Filtering on the owner makes someone else's order look missing, so ids leak nothing.
    try:
        return await Order.objects.aget(pk=order_id, owner_id=owner_id)
    except Order.DoesNotExist as exc:
        raise HTTPException(404, f"order {order_id} not found") from exc


@router.get("/", response_model=list[OrderOut])
async def list_orders(
    user: CurrentUser, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[Order]:
    """Return the caller's newest orders."""
    return [order async for order in Order.objects.filter(owner_id=user.pk)[:limit]]


@router.post("/", response_model=OrderOut, status_code=201)
async def create_order(body: OrderIn, user: CurrentUser, request: Request) -> Order:
    """Create an order owned by the caller; a background replay creates it at most once."""
    replay = replay_of(request.scope)
    if replay is None:
        return await Order.objects.acreate(owner_id=user.pk, **body.model_dump())
    # Listed in ASYNC_REQUEST_IDEMPOTENT_ROUTES: deduplicated on the task id, so it may run again.
    order, _ = await Order.objects.aget_or_create(
        request_id=replay["task_id"], defaults={"owner_id": user.pk, **body.model_dump()}
    )
    return order


@router.get("/{order_id}/", response_model=OrderOut)
async def get_order(order_id: int, user: CurrentUser) -> Order:
    """Return one of the caller's orders."""
    return await _own_order(order_id, user.pk)


@router.patch("/{order_id}/", response_model=OrderOut)
async def update_order(order_id: int, body: OrderPatch, user: CurrentUser) -> Order:
    """Change the fields sent in the body of one of the caller's orders."""
    order = await _own_order(order_id, user.pk)
    changes = body.model_dump(exclude_unset=True)
    for field, value in changes.items():
        setattr(order, field, value)
    if changes:
        await order.asave(update_fields=list(changes))
    return order
