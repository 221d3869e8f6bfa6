"""Shared pieces of the schemathesis fuzz tests: the sample's OpenAPI schema and its limits.

The schema is the FastAPI app's own (`fastapi_app.api.openapi()`), loaded once at collection.
It cannot be fetched through the full ASGI `application`: `/openapi.json` is outside `/api/`,
so the path dispatcher sends it to Django.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.schemas import OpenApiSchema

RESULTS_OPERATION = "GET /api/v1/async_background_response/{task_id}/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

#: Query/body values that make the sample sleep or send a lot; capped where a real clock runs.
_CAPS: dict[str, float] = {"seconds": 0.2, "delay": 0.01, "chunks": 20, "n": 100_000}


#: Paths left out of fuzzing: the event stream never ends for a valid caller (it has its own
#: live tests, tests/integration/test_events_live.py).
STREAMS = ("/api/v1/async_background_response/events/",)


def sample_openapi() -> dict[str, Any]:
    """The OpenAPI document of the sample's FastAPI app (includes the results endpoint)."""
    from fastapi_app import api  # needs Django set up: pytest-django did it before collection

    document = dict(api.openapi())
    document["paths"] = {path: item for path, item in document["paths"].items()
                         if path not in STREAMS}
    return document


def load_schema(*, max_examples: int, coverage: bool, seed: int = 20240601) -> OpenApiSchema:
    """The sample schema with both generation modes, bounded examples and a fixed seed.

    `with-security-parameters` is off: the tests send a valid Bearer token themselves (the
    fuzzer's own random tokens would make every protected route a 401 and test nothing else);
    bad tokens and other malformed headers have their own tests.
    """
    config = SchemathesisConfig.from_dict({
        "seed": seed,
        "generation": {
            "mode": "all",  # positive and negative data
            "max-examples": max_examples,
            "with-security-parameters": False,
            "database": "none",  # the same run every time; nothing written under .hypothesis
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": coverage},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
    })
    return schemathesis.openapi.from_dict(sample_openapi(), config=config)


def bound_case(case: Any) -> None:
    """Cap numbers that only set how long a route sleeps or how much it sends (live runs).

    In the worker the sleeps are real: an uncapped fuzz run would queue hours of `sleep(30)`.
    Values of the wrong type stay as generated, so validation is still fuzzed.
    """
    for container in (case.query, case.body):
        if not isinstance(container, dict):
            continue
        for name, cap in _CAPS.items():
            value = container.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > cap:
                container[name] = type(value)(cap) if isinstance(value, int) else cap
