"""JWT bearer auth of the sample, shared by the FastAPI dependency and the Django views.

Tokens are HS256 JWTs signed with `settings.SECRET_KEY` with claims `sub` (user pk as a
string), `iat` and `exp`. async-request verifies the same tokens (its `JWT_SECRET` defaults to
`SECRET_KEY`), so the owner it records for a background request is `user:<sub>`.

An internal replay (the worker running a request accepted earlier) may arrive after the token
expired; the middleware checked `exp` when it accepted the request, so replays only check the
signature. The replay marker is a scope key, which HTTP clients cannot set.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse

from async_request.dependencies import is_internal
from async_request.problems import Problem, django_response

ALGORITHM = "HS256"


class AuthError(Exception):
    """The request carries no usable bearer token; the message is safe to show the client."""


def issue_token(user: AbstractBaseUser, ttl: int | None = None) -> str:
    """Return a signed JWT for `user` valid for `ttl` seconds (default DEMO_JWT_TTL_SEC)."""
    now = int(time.time())
    lifetime = settings.DEMO_JWT_TTL_SEC if ttl is None else ttl
    claims = {"sub": str(user.pk), "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, settings.SECRET_KEY, algorithm=ALGORITHM)


def decode_token(token: str, *, verify_exp: bool = True) -> dict[str, Any]:
    """Return the verified claims of `token`; raise AuthError if it is bad or expired."""
    try:
        return jwt.decode(
            token,
            settings.SECRET_KEY,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"], "verify_exp": verify_exp},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid token") from exc


def bearer_token(authorization: str | None) -> str:
    """Return the token of an `Authorization: Bearer <token>` value; raise AuthError if none."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing bearer token")
    return token.strip()


def user_id_from_header(authorization: str | None, scope: Mapping[str, Any]) -> str:
    """Return the `sub` of the bearer token in `authorization`; raise AuthError."""
    claims = decode_token(bearer_token(authorization), verify_exp=not is_internal(scope))
    return str(claims["sub"])


def user_for_id(user_id: str) -> AbstractBaseUser:
    """Return the active user with primary key `user_id`; raise AuthError if there is none."""
    user_model = get_user_model()
    try:
        return user_model.objects.get(pk=user_id, is_active=True)
    except (user_model.DoesNotExist, ValueError) as exc:
        raise AuthError("unknown or inactive user") from exc


def unauthorized_response(detail: str) -> HttpResponse:
    """Return the 401 problem response both frameworks send."""
    return django_response(Problem(401, detail, (("WWW-Authenticate", "Bearer"),)))


def bearer_required(
    view: Callable[..., HttpResponse],
) -> Callable[..., HttpResponse]:
    """Decorate a sync Django view: set `request.user` from the bearer token or answer 401."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            scope = getattr(request, "scope", {})
            request.user = user_for_id(
                user_id_from_header(request.headers.get("Authorization"), scope)
            )
        except AuthError as exc:
            return unauthorized_response(str(exc))
        return view(request, *args, **kwargs)

    return wrapper
