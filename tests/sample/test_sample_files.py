"""Health, uploads, binary and streamed replies, and the Django echo view."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from demo.api.files import binary_payload


def test_health_needs_no_auth(client: Any) -> None:
    response = client.get("/api/v1/health/")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_openapi_docs_are_served_under_api(client: Any) -> None:
    assert client.get("/api/v1/docs").status_code == 200
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/orders/" in schema["paths"]
    assert "/api/v1/async_background_response/{task_id}/" in schema["paths"]


def test_unknown_api_path_is_a_problem_404(client: Any) -> None:
    response = client.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_upload_reports_size_and_sha256(client: Any) -> None:
    data = os.urandom(200_000) + b"\r\n--boundary-lookalike\r\n\x00"
    response = client.post(
        "/api/v1/uploads/", files={"file": ("blob.bin", data, "application/octet-stream")}
    )
    assert response.status_code == 200
    assert response.json() == {
        "filename": "blob.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_upload_without_file_is_422(client: Any) -> None:
    assert client.post("/api/v1/uploads/", data={"x": "1"}).status_code == 422


@pytest.mark.parametrize("n", [0, 1, 1000, 70_000])
def test_binary_is_deterministic(client: Any, n: int) -> None:
    response = client.get(f"/api/v1/binary/?n={n}")
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == binary_payload(n)
    assert len(response.content) == n
    assert response.content[:3] == bytes([0, 1, 2])[:n]


def test_stream_sends_every_chunk(client: Any) -> None:
    response = client.get("/api/v1/stream/?chunks=3&delay=0")
    assert response.status_code == 200
    assert response.text == "chunk 0\nchunk 1\nchunk 2\n"


def test_django_echo_describes_the_body(client: Any) -> None:
    body = bytes(range(256)) * 4
    response = client.post(
        "/django/echo/", content=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "method": "POST",
        "content_type": "application/octet-stream",
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def test_django_echo_refuses_get(client: Any) -> None:
    assert client.get("/django/echo/").status_code == 405
