"""The path dispatcher and the DATABASE_URL parser of the sample's project package."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from sample_project.dburl import parse_database_url
from sample_project.dispatch import PathDispatcher


async def api_app(scope: Any, receive: Any, send: Any) -> None:
    """Marker app standing for FastAPI."""


async def django_app(scope: Any, receive: Any, send: Any) -> None:
    """Marker app standing for Django."""


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"type": "http", "path": "/api/v1/orders/"}, api_app),
        ({"type": "http", "path": "/api"}, api_app),
        ({"type": "http", "path": "/apix/"}, django_app),
        ({"type": "http", "path": "/django/echo/"}, django_app),
        ({"type": "http", "path": "/"}, django_app),
        ({"type": "lifespan"}, api_app),
    ],
)
def test_dispatcher_routes_by_path(scope: dict[str, Any], expected: Any) -> None:
    assert PathDispatcher(api_app, django_app).app_for(scope) is expected


def test_dispatcher_checks_its_prefix() -> None:
    with pytest.raises(ValueError, match="'api'"):
        PathDispatcher(api_app, django_app, prefix="api")


def test_postgres_url_becomes_a_django_database() -> None:
    db = parse_database_url("postgresql://ro%40ot:p%2Fw@db.local:6543/shop?sslmode=require")
    assert db == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "USER": "ro@ot",
        "PASSWORD": "p/w",
        "HOST": "db.local",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require"},
    }


def test_minimal_postgres_url() -> None:
    db = parse_database_url("postgres://root@127.0.0.1/test")
    assert (db["USER"], db["PASSWORD"], db["PORT"], db["OPTIONS"]) == ("root", "", "", {})


@pytest.mark.parametrize(
    ("url", "message"),
    [("mysql://u@h/db", "unsupported scheme 'mysql'"), ("postgresql://u@h/", "database name")],
)
def test_unusable_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        parse_database_url(url)
