"""Schemathesis against the sample's OpenAPI schema, in-process, through the full ASGI app.

Requests go through `sample_project.asgi:application` (AsyncRequestMiddleware → path dispatcher
→ FastAPI), WITHOUT `X-Async-Request`: the middleware must pass every request through untouched
and no route may answer 5xx, whatever the data (positive and negative modes, coverage phase).
"""

from __future__ import annotations

import asyncio
import importlib
import types
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fuzz._openapi import load_schema

schema = load_schema(max_examples=30, coverage=True)
# Calls go in-process to the full ASGI app (middleware included), not over the network.
schema.app = importlib.import_module("sample_project.asgi").application


@pytest.fixture
def fast_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the sample's deliberate sleeps instant; the values are still validated."""
    import demo.api.analytics
    import demo.api.files
    import demo.api.reports

    async def sleep(_seconds: float) -> None:
        await asyncio.sleep(0)

    for module in (demo.api.analytics, demo.api.files, demo.api.reports):
        monkeypatch.setattr(module, "asyncio", types.SimpleNamespace(sleep=sleep))


@pytest.fixture
def token(transactional_db: None) -> str:
    from django.contrib.auth import get_user_model

    from demo.auth import issue_token

    user = get_user_model().objects.create_user(username="fuzzer", password="fuzzer-pw")
    return issue_token(user)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.django_db(transaction=True)
def test_no_server_error_without_async_header(case: Any, token: str, fast_sleeps: None) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
