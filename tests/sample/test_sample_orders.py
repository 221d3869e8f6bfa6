"""Orders: each user sees and changes only their own, bodies are validated."""

from __future__ import annotations

from typing import Any

import pytest
from demo.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_and_list_only_own_orders(
    client: Any, alice_auth: dict[str, str], bob_auth: dict[str, str]
) -> None:
    created = client.post(
        "/api/v1/orders/", json={"title": "Desk", "amount": "120.50"}, headers=alice_auth
    )
    assert created.status_code == 201
    order = created.json()
    assert order["title"] == "Desk"
    assert order["amount"] == "120.50"
    assert order["status"] == "new"
    client.post("/api/v1/orders/", json={"title": "Lamp", "amount": 9}, headers=bob_auth)

    mine = client.get("/api/v1/orders/", headers=alice_auth).json()
    assert [o["title"] for o in mine] == ["Desk"]
    django_mine = client.get("/django/orders/", headers=alice_auth).json()
    assert [(o["id"], o["amount"]) for o in django_mine] == [(order["id"], "120.50")]


def test_another_users_order_is_not_found(
    client: Any, alice: Any, alice_auth: dict[str, str], bob_auth: dict[str, str]
) -> None:
    order = Order.objects.create(owner=alice, title="Desk", amount="10.00")
    url = f"/api/v1/orders/{order.pk}/"
    assert client.get(url, headers=alice_auth).status_code == 200
    for response in (
        client.get(url, headers=bob_auth),
        client.patch(url, json={"status": "paid"}, headers=bob_auth),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"] == f"order {order.pk} not found"
    order.refresh_from_db()
    assert order.status == "new"


def test_patch_changes_only_sent_fields(
    client: Any, alice: Any, alice_auth: dict[str, str]
) -> None:
    order = Order.objects.create(owner=alice, title="Desk", amount="10.00")
    response = client.patch(
        f"/api/v1/orders/{order.pk}/", json={"status": "shipped"}, headers=alice_auth
    )
    assert response.status_code == 200
    assert response.json()["status"] == "shipped"
    order.refresh_from_db()
    assert (order.title, str(order.amount), order.status) == ("Desk", "10.00", "shipped")


@pytest.mark.parametrize(
    "body",
    [
        {"title": "", "amount": "1.00"},
        {"title": "Desk", "amount": "-1"},
        {"title": "Desk", "amount": "1.001"},
        {"title": "Desk", "amount": "1", "status": "lost"},
        {"title": "Desk", "amount": "1", "owner": 2},
        {"amount": "1"},
    ],
)
def test_bad_order_bodies_are_422(
    client: Any, alice_auth: dict[str, str], body: dict[str, Any]
) -> None:
    assert client.post("/api/v1/orders/", json=body, headers=alice_auth).status_code == 422
    assert not Order.objects.exists()


def test_patch_refuses_null(client: Any, alice: Any, alice_auth: dict[str, str]) -> None:
    order = Order.objects.create(owner=alice, title="Desk", amount="10.00")
    response = client.patch(f"/api/v1/orders/{order.pk}/", json={"title": None}, headers=alice_auth)
    assert response.status_code == 422
