"""`POST /auth/token/`: trade a username and password for a bearer JWT."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import authenticate
from fastapi import APIRouter, HTTPException

from demo.api.schemas import TokenIn, TokenOut
from demo.auth import issue_token

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token/", response_model=TokenOut)
async def token(body: TokenIn) -> TokenOut:
    """Return a token for valid credentials of an active user; 401 otherwise."""
    user = await sync_to_async(authenticate)(username=body.username, password=body.password)
    if user is None:
        raise HTTPException(401, "bad username or password", headers={"WWW-Authenticate": "Bearer"})
    ttl = settings.DEMO_JWT_TTL_SEC
    return TokenOut(access_token=issue_token(user, ttl), expires_in=ttl)
