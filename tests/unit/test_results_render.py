"""render_body and task id parsing of the results endpoint."""

from __future__ import annotations

import base64

import pytest

from async_request.results.status import parse_task_id, render_body


def test_json_is_parsed() -> None:
    assert render_body(b'{"a": 1}', [["content-type", "application/json"]]) == ({"a": 1}, "json")
    assert render_body(b'[1]', [["Content-Type", "application/problem+json"]]) == ([1], "json")


def test_text_is_decoded_with_its_charset() -> None:
    assert render_body("é".encode("latin-1"), [["content-type", "text/plain; charset=latin-1"]]
                       ) == ("é", "text")
    assert render_body(b"a,b\n", [["content-type", "text/csv"]]) == ("a,b\n", "text")


@pytest.mark.parametrize("headers", [[["content-type", "application/octet-stream"]],
                                     [["content-type", "image/png"]],
                                     [["content-type", "text/plain; charset=utf-8"]]])
def test_binary_is_base64(headers: list[list[str]]) -> None:
    body = b"\xff\xfe\x00binary"
    response, encoding = render_body(body, headers)
    assert encoding == "base64"
    assert base64.b64decode(response) == body


def test_broken_json_falls_back_to_base64() -> None:
    assert render_body(b"{nope", [["content-type", "application/json"]])[1] == "base64"


@pytest.mark.parametrize("value", ["", "abc", "../../etc", "celery-task-meta-1", "1" * 40])
def test_non_uuid_ids_are_refused(value: str) -> None:
    assert parse_task_id(value) is None


def test_uuid_is_canonical() -> None:
    assert parse_task_id("8C0B6C2E-2D1C-4C8B-9E6A-1F2E3D4C5B6A") == (
        "8c0b6c2e-2d1c-4c8b-9e6a-1f2e3d4c5b6a")
