"""Reports, slow analytics and the routes guarded by `require_async`."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from demo.models import Order, Report

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice_orders(alice: Any) -> list[Order]:
    """Three orders of alice: two new, one paid."""
    return [
        Order.objects.create(owner=alice, title="Desk", amount="100.00"),
        Order.objects.create(owner=alice, title="Lamp", amount="20.50"),
        Order.objects.create(owner=alice, title="Chair", amount="30.00", status="paid"),
    ]


def test_report_is_built_and_stored_ready(
    client: Any, alice_orders: list[Order], alice_auth: dict[str, str], bob_auth: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/reports/", json={"kind": "sales", "seconds": 0}, headers=alice_auth
    )
    assert response.status_code == 201
    report = response.json()
    assert report["status"] == "ready"
    assert report["params"] == {"kind": "sales", "seconds": 0}
    assert report["finished_at"] is not None
    assert report["content"] == {
        "orders": 3,
        "total": "150.50",
        "by_status": {
            "new": {"orders": 2, "total": "120.50"},
            "paid": {"orders": 1, "total": "30.00"},
        },
    }
    stored = Report.objects.get(pk=report["id"])
    assert stored.status == Report.Status.READY
    url = f"/api/v1/reports/{report['id']}/"
    assert client.get(url, headers=alice_auth).json() == report
    assert client.get(url, headers=bob_auth).status_code == 404


def test_orders_report_lists_orders(
    client: Any, alice_orders: list[Order], alice_auth: dict[str, str]
) -> None:
    body = {"kind": "orders", "seconds": 0}
    content = client.post("/api/v1/reports/", json=body, headers=alice_auth).json()["content"]
    assert sorted(o["title"] for o in content["orders"]) == ["Chair", "Desk", "Lamp"]


@pytest.mark.parametrize(
    "body", [{"seconds": 31}, {"seconds": -1}, {"kind": "weather"}, {"seconds": "soon"}]
)
def test_bad_report_bodies_are_422(
    client: Any, alice_auth: dict[str, str], body: dict[str, Any]
) -> None:
    assert client.post("/api/v1/reports/", json=body, headers=alice_auth).status_code == 422


def test_slow_analytics_totals_the_callers_orders(
    client: Any, alice_orders: list[Order], alice_auth: dict[str, str], bob_auth: dict[str, str]
) -> None:
    mine = client.get("/api/v1/analytics/slow/?seconds=0", headers=alice_auth).json()
    assert (mine["seconds"], mine["orders"], mine["total"]) == (0, 3, "150.50")
    theirs = client.get("/api/v1/analytics/slow/?seconds=0", headers=bob_auth).json()
    assert (theirs["orders"], theirs["total"], theirs["by_status"]) == (0, "0.00", {})


def test_export_is_409_when_called_directly(
    client: Any, alice_orders: list[Order], alice_auth: dict[str, str]
) -> None:
    assert client.post("/api/v1/reports/export/", headers=alice_auth).status_code == 409


def test_export_returns_csv_inside_a_replay(
    replay_client: Any, alice_orders: list[Order], alice_auth: dict[str, str]
) -> None:
    response = replay_client.post("/api/v1/reports/export/", headers=alice_auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["id", "title", "amount", "status", "created_at"]
    assert [row[1:4] for row in rows[1:]] == [
        ["Desk", "100.00", "new"],
        ["Lamp", "20.50", "new"],
        ["Chair", "30.00", "paid"],
    ]


def test_django_guarded_view_is_409_when_called_directly(client: Any) -> None:
    assert client.get("/django/guarded/").status_code == 409


def test_django_guarded_view_runs_inside_a_replay(replay_client: Any, task_id: str) -> None:
    response = replay_client.get("/django/guarded/")
    assert response.status_code == 200
    assert response.json() == {"status": "ran in background", "task_id": task_id}
