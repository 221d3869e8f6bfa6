"""FastAPI dependencies: the caller as a Django user, from the same JWT the Django views take."""

from __future__ import annotations

from typing import Annotated

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractBaseUser
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from demo.auth import AuthError, user_for_id, user_id_from_header

# Declares the scheme for the OpenAPI "Authorize" button; the header is parsed in demo.auth.
_bearer = HTTPBearer(auto_error=False)


async def current_user(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> AbstractBaseUser:
    """Return the active user of the bearer token; raise 401 (a problem response) otherwise."""
    try:
        user_id = user_id_from_header(request.headers.get("authorization"), request.scope)
        return await sync_to_async(user_for_id)(user_id)
    except AuthError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


CurrentUser = Annotated[AbstractBaseUser, Depends(current_user)]
