"""Property tests of request capture through the real `AsyncRequestMiddleware`.

What a client sends with `X-Async-Request` → the envelope the middleware builds → `to_dict()` →
JSON text (what travels in Kafka) → `from_dict()` → `to_scope()` → `replay.replay()` into an
echo app: the app must see the same method, raw path, query string, body and headers, minus the
documented dropped ones, and credentials must never be readable in the JSON.

Only the dispatch step is replaced (`enqueue` keeps the envelope in a list): that is the network
edge. The operation store is real, on the session's Redis, so bodies above the inline limit
really go there and
come back (as `execution.py` loads them in the worker).
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_from_bytes, unquote

import jwt
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from async_request.envelope import RequestEnvelope
from async_request.middleware import AsyncRequestMiddleware
from async_request.replay import replay
from async_request.seal import keyed_hash, unseal
from async_request.settings import Settings
from async_request.store import OperationStore, body_key
from tests.asgi_apps import CapturingDispatcher, scope_echo
from tests.fuzz import _asgi

SECRET = "fuzz-secret-0123456789abcdef0123456789abcdef"
MAX_BODY = 64 * 1024
INLINE = 4 * 1024  # small, so that bodies above it take the Redis side path
RESULTS_PATH = "/api/v1/async_background_response/"
TEST_SETTINGS = Settings(secret_key=SECRET, jwt_secret=SECRET, max_body_bytes=MAX_BODY,
                         inline_body_bytes=INLINE, results_path=RESULTS_PATH)

#: Documented in envelope.py: hop-by-hop headers and our own markers never reach the replay.
DROPPED = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
                     "trailer", "upgrade", "x-async-request", "x-async-request-internal"})
#: Credentials: sealed in the envelope, restored in the replay, never readable in the JSON.
SECRET_NAMES = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
#: Headers the test sets itself (owner, length); generated sets leave them out.
RESERVED = DROPPED | SECRET_NAMES | {"content-length"}


class CapturingMiddleware(AsyncRequestMiddleware):
    """The real middleware with a capturing dispatcher."""

    def __init__(self, app: Any, *, registry: OperationStore) -> None:
        self.capture = CapturingDispatcher()
        super().__init__(app, settings=TEST_SETTINGS, store=registry,
                         dispatcher=self.capture)  # type: ignore[arg-type]

    @property
    def published(self) -> list[RequestEnvelope]:
        return self.capture.published


async def _never_called(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError(f"the middleware passed a deferred request through: {scope['path']}")


@pytest.fixture(scope="module")
def registry(local_redis_url: str) -> Iterator[OperationStore]:
    """The operation store on this session's Redis (DB 5, flushed at session start)."""
    reg = OperationStore(local_redis_url, expires_sec=120, secret=SECRET)
    yield reg
    if reg._sync is not None:
        reg._sync.close()



# -- strategies ---------------------------------------------------------------------------------

_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
header_names = st.text(_TCHAR, min_size=1, max_size=24).filter(lambda n: n not in RESERVED)
#: Any latin-1 character a server passes in a header value (no control characters).
header_values = st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)),
                        max_size=60)
headers = st.lists(st.tuples(header_names, header_values), max_size=12)
#: Includes the dropped ones, which must vanish, and near-misses, which must stay.
extra_headers = st.lists(st.tuples(
    st.sampled_from(sorted(DROPPED - {"x-async-request"}) + [
        "x-async-request-id", "x-async", "connections", "te-x"]),
    header_values), max_size=4)

_PCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
_segment = st.lists(st.one_of(
    st.text(_PCHAR, min_size=1, max_size=8),
    st.binary(min_size=1, max_size=4).map(lambda b: quote_from_bytes(b, safe="")),
), max_size=4).map("".join)
raw_paths = st.lists(_segment, min_size=1, max_size=5).map(
    lambda parts: ("/" + "/".join(parts)).encode("ascii")
).filter(lambda p: not unquote(p.decode()).startswith(RESULTS_PATH))


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Small shrinkable bodies, or big pseudo-random ones up to 64 KiB (beyond Hypothesis'
    buffer, so they are drawn from a seed)."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=512))
    size = draw(st.integers(0, MAX_BODY))
    return random.Random(draw(st.integers(0, 2**32))).randbytes(size)


def chunked(body: bytes, cuts: list[int]) -> list[bytes]:
    """Split `body` at the given offsets (as a server delivers it: any chunking)."""
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(body[start:point])
        start = point
    pieces.append(body[start:])
    return pieces


def token_for(sub: str) -> str:
    """A JWT the middleware accepts (signed with the test settings' JWT secret)."""
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


# -- the round trip -------------------------------------------------------------------------------

async def capture_and_replay(
    method: str, raw_path: bytes, query: bytes, sent: list[tuple[str, str]],
    chunks: list[bytes], registry: OperationStore,
) -> tuple[_asgi.Answer, str, RequestEnvelope, dict[str, Any], bytes]:
    """Send one deferred request; return the 202, the JSON, the envelope, replay scope, body."""
    middleware = CapturingMiddleware(_never_called, registry=registry)
    scope = _asgi.http_scope(method, raw_path, query_string=query, host=False, headers=[
        (n.encode("latin-1"), v.encode("latin-1")) for n, v in sent])
    try:
        answer = await _asgi.call(middleware, scope, chunks)
        assert answer.status == 202, (answer.status, answer.body)
        [envelope] = middleware.published
        text = json.dumps(envelope.to_dict(SECRET))  # what the Celery JSON serializer sends
        restored = RequestEnvelope.from_dict(json.loads(text), SECRET)
        body = restored.body
        if body is None:
            aside = await registry.aclient().get(body_key(restored.task_id))
            assert aside is not None, "a body stored aside is missing from Redis"
            body = unseal(aside.decode("ascii"), SECRET)
        seen: list[dict[str, Any]] = []
        marker = {"task_id": restored.task_id}
        result = await replay(scope_echo(seen), restored.to_scope(marker), body,
                              task_id=restored.task_id, endpoint=restored.path, timeout=5)
        assert result.status == 200
        [replayed] = seen
        return answer, text, envelope, replayed, result.body
    finally:
        await registry.aclient().aclose()


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    raw_path=raw_paths,
    query=st.binary(max_size=200),
    plain=headers,
    dropped=extra_headers,
    body=bodies(),
    cuts=st.lists(st.integers(0, MAX_BODY), max_size=3),
    with_length=st.booleans(),
    owner=st.one_of(
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
                min_size=22, max_size=64).filter(lambda c: len(set(c)) >= 10)
        .map(lambda c: ("channel", c)),
        st.text("0123456789", min_size=1, max_size=6).map(lambda s: ("user", s)),
    ),
    cookie=st.one_of(st.none(), st.text(st.characters(codec="latin-1",
                                                      exclude_categories=("Cc",)),
                                        min_size=12, max_size=60)),
    api_key=st.one_of(st.none(), st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=16,
                                         max_size=40)),
    seed=st.randoms(use_true_random=False),
)
def test_captured_request_replays_identically(
    registry: OperationStore, method: str, raw_path: bytes, query: bytes,
    plain: list[tuple[str, str]], dropped: list[tuple[str, str]], body: bytes, cuts: list[int],
    with_length: bool, owner: tuple[str, str], cookie: str | None, api_key: str | None,
    seed: random.Random,
) -> None:
    kind, ident = owner
    secrets: list[tuple[str, str]] = []
    if kind == "user":
        secrets.append(("authorization", f"Bearer {token_for(ident)}"))
        marker = ("x-async-request", "true")
    else:
        marker = ("x-async-request", ident)
    if cookie is not None:
        secrets.append(("cookie", f"session={cookie}"))
    if api_key is not None:
        secrets.append(("x-api-key", f"ak_{api_key}"))
    # A credential the client also sent in plain sight (path, header) would be readable anyway.
    visible = repr((raw_path, query, plain, dropped, ident))
    assume(not any(value in visible for _, value in secrets))
    length = [("content-length", str(len(body)))] if with_length else []
    sent = [*plain, *secrets, *dropped, *length]
    seed.shuffle(sent)
    sent.insert(seed.randrange(len(sent) + 1), marker)  # anywhere among the others

    answer, text, envelope, replayed, echoed = asyncio.run(capture_and_replay(
        method, raw_path, query, sent, chunked(body, cuts), registry))

    # The 202 is exactly the documented body, with a fresh uuid4 and the results Location.
    accepted = json.loads(answer.body)
    task_id = accepted["meta"]["async_request_id"]
    assert accepted == {"data": None, "meta": {"async_request_id": task_id}}
    assert uuid.UUID(task_id).version == 4 and str(uuid.UUID(task_id)) == task_id
    assert answer.header("location") == f"{RESULTS_PATH}{task_id}/"
    assert envelope.task_id == task_id
    # An anonymous owner is stored as a keyed hash: the channel name is its only credential.
    assert envelope.owner == (f"user:{ident}" if kind == "user"
                              else f"anon:{keyed_hash(ident, SECRET)}")

    # Byte-exact replay of everything the route can see.
    assert echoed == body
    assert replayed["method"] == method
    assert replayed["raw_path"] == raw_path
    assert replayed["path"] == unquote(raw_path.decode("ascii"))
    assert replayed["query_string"] == query
    assert replayed["async_request.internal"] == {"task_id": task_id}
    got = [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1"))
           for n, v in replayed["headers"]]
    # Headers named in a `Connection` header are hop-by-hop too (RFC 9110 §7.6.1).
    named = {t.strip().lower() for n, v in sent if n.lower() == "connection"
             for t in v.split(",")} - SECRET_NAMES
    kept = [(n, v) for n, v in sent if n not in DROPPED and n.lower() not in named]
    # Every header keeps its place: they all travel in one sealed token.
    assert got == kept
    assert not any(n in DROPPED for n, _ in got)

    # Large bodies travel beside the message, not in it.
    data = json.loads(text)
    event("body stored aside in Redis" if len(body) > INLINE else "body inline")
    event(f"owner: {kind}")
    if len(body) > INLINE:
        assert envelope.body is None and data["body_ref"] == task_id
    else:
        assert envelope.body == body and data["body_ref"] is None

    # Only routing fields are readable: credentials, query and body are in the sealed token.
    assert set(data) == {"version", "task_id", "owner", "method", "path", "body_ref",
                         "accepted_at", "sealed"}
    for _, value in secrets:
        for form in {value, json.dumps(value)[1:-1], value.removeprefix("Bearer ")}:
            assert form not in text, "a credential is readable in the queued message"
    for private in (query, body):
        if len(private) >= 8 and private not in raw_path:
            assert private.decode("latin-1") not in text
            assert base64.b64encode(private).decode()[:8] not in text


# -- what the middleware must refuse, never with a 500 --------------------------------------------

def _one_request(headers: list[tuple[bytes, bytes]], chunks: list[bytes],
                 registry: OperationStore, method: str = "POST") -> tuple[_asgi.Answer, int]:
    async def run() -> tuple[_asgi.Answer, int]:
        middleware = CapturingMiddleware(_never_called, registry=registry)
        try:
            answer = await _asgi.call(middleware, _asgi.http_scope(method, b"/x/", headers=headers),
                                      chunks)
        finally:
            await registry.aclient().aclose()
        return answer, len(middleware.published)

    return asyncio.run(run())


def _assert_problem(answer: _asgi.Answer, status: int) -> None:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.header("content-type") == "application/problem+json"
    problem = json.loads(answer.body)
    assert problem["status"] == status and problem["type"] == "about:blank"
    assert problem["title"] and problem["detail"]


CHANNEL = [(b"x-async-request", b"fuzz-channel-0123456789")]


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=30)
       .filter(lambda v: not v.strip().isdigit()))
def test_malformed_content_length_is_400(registry: OperationStore, value: str) -> None:
    answer, queued = _one_request([*CHANNEL, (b"content-length", value.encode("latin-1"))],
                                  [b"{}"], registry)
    _assert_problem(answer, 400)
    assert queued == 0


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(declared=st.one_of(st.none(), st.integers(MAX_BODY + 1, 10**30), st.just(0)),
       extra=st.integers(1, 3 * MAX_BODY), pieces=st.integers(1, 8))
def test_body_over_the_limit_is_413(registry: OperationStore, declared: int | None, extra: int,
                                    pieces: int) -> None:
    """Declared too large, or declared small (or not at all) and sent too large: 413."""
    body = b"x" * (MAX_BODY + extra)
    size = -(-len(body) // pieces)
    chunks = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    headers = [*CHANNEL]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    answer, queued = _one_request(headers, chunks, registry)
    _assert_problem(answer, 413)
    assert queued == 0


_SYNC_OR_TOKEN = {"", "false", "0", "no", "off", "true", "1", "yes", "on"}


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=80)
       .filter(lambda n: n.strip().lower() not in _SYNC_OR_TOKEN)
       .filter(lambda n: not (22 <= len(n.strip()) <= 64 and len(set(n.strip())) >= 10 and all(
           c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
           for c in n.strip()))))
def test_invalid_channel_name_is_400(registry: OperationStore, name: str) -> None:
    answer, queued = _one_request([(b"x-async-request", name.encode("latin-1"))], [b""],
                                  registry, method="GET")
    _assert_problem(answer, 400)
    assert queued == 0


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(auth=st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=80),
       mode=st.sampled_from([b"true", b"fuzz-channel-0123456789"]))
def test_bad_credentials_are_401_never_queued(registry: OperationStore, auth: str,
                                              mode: bytes) -> None:
    answer, queued = _one_request(
        [(b"x-async-request", mode), (b"authorization", auth.encode("latin-1"))], [b"{}"],
        registry)
    _assert_problem(answer, 401)
    assert answer.header("www-authenticate") == "Bearer"
    assert queued == 0
