"""Fixtures for the sample project's tests: users, tokens and clients of the full ASGI app.

The suite-wide tests/conftest.py sets DJANGO_SETTINGS_MODULE; the default below only matters
when this folder is run on its own (`pytest tests/sample`). The tests run the sample in sync
mode (no `X-Async-Request` header), so no broker, Redis or worker is needed.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_project.settings")

BASE_URL = "http://testserver"
TASK_ID = "00000000-0000-4000-8000-000000000001"


def replaying(app: Any, task_id: str = TASK_ID) -> Any:
    """Wrap `app` so every request looks like async-request's internal replay of `task_id`."""

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app({**scope, "async_request.internal": {"task_id": task_id}}, receive, send)

    return wrapper


@pytest.fixture
def task_id() -> str:
    """The task id the `replay_client` puts in its scope marker."""
    return TASK_ID


@pytest.fixture
def application() -> Any:
    """The sample's full ASGI application, as uvicorn serves it."""
    from sample_project.asgi import application

    return application


class Client:
    """Sync facade over `httpx.AsyncClient` + `ASGITransport`, one event loop per request.

    Sync, so tests can use the ORM directly; the app's async ORM calls run in asgiref's
    executor thread, hence `django_db(transaction=True)` in the tests.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request to the app and return the whole response."""

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
                return await http.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)


@pytest.fixture
def client(application: Any, transactional_db: None) -> Client:
    """A client of the full app (overrides pytest-django's Django test client).

    Always with a database: the app's connection cleanup touches it even on DB-free routes.
    """
    return Client(application)


@pytest.fixture
def replay_client(application: Any, transactional_db: None) -> Client:
    """A client whose requests carry the replay scope marker, as the worker's do."""
    return Client(replaying(application))


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    """Hash passwords cheaply: the default PBKDF2 costs about a second per user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _user(username: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username=username, password=f"{username}-pw")


@pytest.fixture
def alice(transactional_db: None) -> Any:
    """A user with password `alice-pw`."""
    return _user("alice")


@pytest.fixture
def bob(transactional_db: None) -> Any:
    """Another user, to check nobody sees alice's data."""
    return _user("bob")


def bearer(user: Any, ttl: int | None = None) -> dict[str, str]:
    """Return an Authorization header with a fresh token of `user`."""
    from demo.auth import issue_token

    return {"Authorization": f"Bearer {issue_token(user, ttl)}"}


@pytest.fixture
def auth_for() -> Any:
    """Return `bearer`, to build headers for other users or token lifetimes."""
    return bearer


@pytest.fixture
def alice_auth(alice: Any) -> dict[str, str]:
    """Headers authenticating as alice."""
    return bearer(alice)


@pytest.fixture
def bob_auth(bob: Any) -> dict[str, str]:
    """Headers authenticating as bob."""
    return bearer(bob)
