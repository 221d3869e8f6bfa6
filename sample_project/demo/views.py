"""Plain Django views: async-request works for Django routes as well as FastAPI ones."""

from __future__ import annotations

import hashlib
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from async_request.dependencies import replay_of, require_async_view
from demo.auth import bearer_required
from demo.models import Order


def order_dict(order: Order) -> dict[str, Any]:
    """Return the JSON form of an order, the same fields as the FastAPI `OrderOut`."""
    return {
        "id": order.pk,
        "title": order.title,
        "amount": str(order.amount),
        "status": order.status,
        "created_at": order.created_at.isoformat(),
    }


@require_GET
@bearer_required
def orders(request: HttpRequest) -> JsonResponse:
    """List the caller's orders, newest first."""
    rows = Order.objects.filter(owner_id=request.user.pk)[:100]
    return JsonResponse([order_dict(order) for order in rows], safe=False)


# No CSRF: the echo takes raw bodies from curl and from replays, and it changes nothing.
@csrf_exempt
@require_http_methods(["POST", "PUT", "PATCH"])
def echo(request: HttpRequest) -> JsonResponse:
    """Describe the received request so clients can check a replay kept the body byte-exact.

    Nothing here may differ between a direct call and its replay: tests compare the two.
    """
    body = request.body
    return JsonResponse(
        {
            "method": request.method,
            "content_type": request.content_type,
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    )


@require_GET
@require_async_view
def guarded(request: HttpRequest) -> JsonResponse:
    """Answer only inside a background replay; direct calls get 409 from the decorator."""
    marker = replay_of(getattr(request, "scope", {})) or {}
    return JsonResponse({"status": "ran in background", "task_id": marker.get("task_id")})
