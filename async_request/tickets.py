"""Subscription tickets: a short-lived credential for a browser's WebSocket or EventSource.

Why not the bearer token in the URL: browsers cannot set `Authorization` on `new WebSocket()`
or `new EventSource()` (whatwg/html#2177), so clients put the token in the query string, where
access logs, proxies and browser history keep it for as long as it lives, and it opens the
whole API. A ticket is minted by `POST .../tickets/` with the bearer token and is good only for
subscribing (its purpose is sealed in), only to its owner's events, and only for
ASYNC_REQUEST_TICKET_TTL_SEC: one read from a log soon opens nothing, and never an API call.

Format: `TICKET_PREFIX` + a Fernet token (`seal.py`, with a key of its own, so no other sealed
value can pass for a ticket) of `{"purpose": "subscribe", "owner": "user:<sub>", "exp": <epoch>}`:
sealed, not only signed, so the owner's id is not readable in a URL either.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from async_request.auth import Owner
from async_request.exceptions import AuthenticationError, EnvelopeError
from async_request.seal import seal, unseal
from async_request.settings import Settings

TICKET_PREFIX = "art1."
PURPOSE = "subscribe"
_INFO = b"async-request subscription ticket v1"


@dataclass(frozen=True)
class Ticket:
    """A minted ticket and when it stops being accepted (epoch seconds)."""

    value: str
    expires_at: float


def issue(owner: Owner, settings: Settings, *, now: float | None = None) -> Ticket:
    """A subscription ticket for `owner` (a user: anonymous clients subscribe by channel)."""
    if owner.kind != "user":
        raise AuthenticationError("tickets are issued for a Bearer token; an anonymous client "
                                  "subscribes with its channel name")
    expires_at = (time.time() if now is None else now) + settings.ticket_ttl_sec
    claims = {"purpose": PURPOSE, "owner": str(owner), "exp": round(expires_at, 3)}
    value = TICKET_PREFIX + seal(json.dumps(claims).encode(), settings.secret_key, info=_INFO)
    return Ticket(value, expires_at)


def ticket_owner(value: str, settings: Settings, *, now: float | None = None) -> Owner:
    """The owner a ticket subscribes as; AuthenticationError (401) naming what is wrong."""
    if not value.startswith(TICKET_PREFIX):
        raise AuthenticationError("the ticket is not one this server issued")
    try:
        claims = json.loads(unseal(value.removeprefix(TICKET_PREFIX), settings.secret_key,
                                   info=_INFO))
    except (EnvelopeError, ValueError) as exc:
        raise AuthenticationError(
            "the ticket is forged, altered or was issued with another secret key") from exc
    if not isinstance(claims, dict) or claims.get("purpose") != PURPOSE:
        raise AuthenticationError("the ticket is not for subscribing")
    expires_at = claims.get("exp")
    if not isinstance(expires_at, (int, float)) or expires_at <= (
            time.time() if now is None else now):
        raise AuthenticationError("the ticket has expired: ask for a new one")
    try:
        owner = Owner.parse(str(claims.get("owner", "")))
    except ValueError as exc:
        raise AuthenticationError("the ticket is not for subscribing") from exc
    if owner.kind != "user":
        raise AuthenticationError("the ticket is not for subscribing")
    return owner
