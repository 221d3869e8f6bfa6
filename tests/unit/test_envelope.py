"""RequestEnvelope: byte-exact capture, sealed credentials, JSON round trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_request.envelope import RequestEnvelope
from async_request.exceptions import EnvelopeError
from async_request.types import INTERNAL_SCOPE_KEY

SECRET = "test-secret-key"


def make_scope(headers: list[tuple[bytes, bytes]], path: str = "/api/v1/x/",
               raw_path: bytes = b"/api/v1/x/") -> dict[str, object]:
    return {"type": "http", "method": "POST", "path": path, "raw_path": raw_path,
            "query_string": b"a=1&b=%20c", "headers": headers, "scheme": "https",
            "http_version": "1.1", "root_path": "", "client": ("10.0.0.1", 5555),
            "server": ("127.0.0.1", 8000)}


def test_credentials_are_sealed_and_markers_dropped() -> None:
    scope = make_scope([(b"authorization", b"Bearer abc.def.ghi"), (b"cookie", b"s=1"),
                        (b"x-async-request", b"true"), (b"x-async-request-internal", b"1"),
                        (b"content-type", b"application/json"), (b"connection", b"close")])
    env = RequestEnvelope.from_scope(scope, b"{}", task_id="t", owner="user:1", secret=SECRET)
    wire = json.dumps(env.to_dict())
    assert "abc.def.ghi" not in wire and "s=1" not in wire
    assert "x-async-request" not in wire and "connection" not in wire
    restored = RequestEnvelope.from_dict(json.loads(wire))
    replay_scope = restored.to_scope(SECRET, {"task_id": "t"})
    assert (b"authorization", b"Bearer abc.def.ghi") in replay_scope["headers"]
    assert (b"cookie", b"s=1") in replay_scope["headers"]
    assert replay_scope[INTERNAL_SCOPE_KEY] == {"task_id": "t"}
    assert replay_scope["raw_path"] == b"/api/v1/x/"
    assert replay_scope["query_string"] == b"a=1&b=%20c"


def test_wrong_secret_cannot_unseal() -> None:
    scope = make_scope([(b"authorization", b"Bearer t")])
    env = RequestEnvelope.from_scope(scope, b"", task_id="t", owner="user:1", secret=SECRET)
    with pytest.raises(EnvelopeError):
        env.to_scope("another-secret", {})


def test_percent_encoding_in_path_survives() -> None:
    scope = make_scope([], path="/files/a b/ü", raw_path=b"/files/a%20b/%C3%BC")
    env = RequestEnvelope.from_scope(scope, b"", task_id="t", owner="user:1", secret=SECRET)
    restored = RequestEnvelope.from_dict(json.loads(json.dumps(env.to_dict())))
    assert restored.raw_path == b"/files/a%20b/%C3%BC"
    assert restored.path == "/files/a b/ü"


@pytest.mark.parametrize("bad", [
    None, [], {"version": 99}, {"version": 1, "task_id": "x"},
    {"version": 1, "task_id": "x", "owner": "user:1", "method": "GET", "path": "/",
     "raw_path": "!!!", "query_string": "", "headers": []},
])
def test_malformed_envelopes_raise_envelope_error(bad: object) -> None:
    with pytest.raises(EnvelopeError):
        RequestEnvelope.from_dict(bad)  # type: ignore[arg-type]


header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20).filter(
    lambda name: name != "connection")  # its value names more hop-by-hop headers
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=40)


@given(body=st.binary(max_size=4096),
       headers=st.lists(st.tuples(header_names, header_values), max_size=12))
def test_round_trip_of_any_body_and_headers(body: bytes, headers: list[tuple[str, str]]) -> None:
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    env = RequestEnvelope.from_scope(make_scope(raw), body, task_id="t", owner="anon:x",
                                     secret=SECRET)
    restored = RequestEnvelope.from_dict(json.loads(json.dumps(env.to_dict())))
    assert restored.body == body
    expected = [(n, v) for n, v in raw
                if n.decode() not in {"connection", "keep-alive", "proxy-connection",
                                      "transfer-encoding", "te", "trailer", "upgrade",
                                      "x-async-request", "x-async-request-internal"}]
    assert sorted(restored.to_scope(SECRET, {})["headers"]) == sorted(expected)
