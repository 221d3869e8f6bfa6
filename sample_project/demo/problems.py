"""RFC 9457 problem documents, the error shape shared with the async-request package."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem(status: int, detail: str, title: str | None = None) -> dict[str, Any]:
    """Return a problem dict; the title defaults to the HTTP reason phrase."""
    return {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
