"""The header protocol: how a request asks to be deferred, and how headers are read from a scope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from async_request._casts import FALSE_WORDS, TRUE_WORDS

#: The request header that defers a request: true/1 for the token's user, or a channel name.
ASYNC_HEADER = "x-async-request"


def headers_from_scope(scope: Mapping[str, Any]) -> dict[str, str]:
    """Lower-cased header names to latin-1 values; the first occurrence wins."""
    result: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        result.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return result


def async_mode(value: str | None) -> Literal["sync", "token", "channel"]:
    """Classify an `X-Async-Request` value: run now, async as the token's user, or a channel."""
    if value is None:
        return "sync"
    text = value.strip().lower()
    if not text or text in FALSE_WORDS:
        return "sync"
    if text in TRUE_WORDS:
        return "token"
    return "channel"


def preferences(scope: Mapping[str, Any]) -> dict[str, str]:
    """The preferences of the request's `Prefer` headers (RFC 7240), names lower-cased.

    `Prefer: respond-async, wait=5` gives {"respond-async": "", "wait": "5"}. Parameters after
    `;` are dropped; a malformed preference is ignored, as RFC 7240 says; the first of a name
    wins.
    """
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name.decode("latin-1").lower() != "prefer":
            continue
        for item in value.decode("latin-1").split(","):
            token, _, rest = item.split(";", 1)[0].strip().partition("=")
            token = token.strip().lower()
            if token and all(c.isalnum() or c in "-_." for c in token):
                found.setdefault(token, rest.strip().strip('"'))
    return found
