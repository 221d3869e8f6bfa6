"""RequestEnvelope: byte-exact capture, sealed credentials, JSON round trip."""

from __future__ import annotations

import base64
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


def test_everything_but_routing_is_sealed_and_markers_dropped() -> None:
    scope = make_scope([(b"authorization", b"Bearer abc.def.ghi"), (b"cookie", b"s=1"),
                        (b"x-auth-token", b"XAUTHMARKER"), (b"x-csrftoken", b"CSRFMARKER"),
                        (b"x-async-request", b"true"), (b"x-async-request-internal", b"1"),
                        (b"content-type", b"application/json"), (b"connection", b"close")])
    scope["query_string"] = b"access_token=QUERYMARKER"
    env = RequestEnvelope.from_scope(scope, b'{"password": "BODYMARKER"}', task_id="t",
                                     owner="user:1")
    wire = json.dumps(env.to_dict(SECRET))
    for marker in ("abc.def.ghi", "s=1", "XAUTHMARKER", "CSRFMARKER", "QUERYMARKER",
                   "BODYMARKER", "application/json", "10.0.0.1"):
        assert marker not in wire
        assert len(marker) < 6 or base64.b64encode(marker.encode()).decode()[:-4] not in wire
    assert set(json.loads(wire)) == {"version", "task_id", "owner", "method", "path",
                                     "body_ref", "accepted_at", "sealed"}
    restored = RequestEnvelope.from_dict(json.loads(wire), SECRET)
    assert restored.body == b'{"password": "BODYMARKER"}'
    assert restored.query_string == b"access_token=QUERYMARKER"
    replay_scope = restored.to_scope({"task_id": "t"})
    assert (b"x-auth-token", b"XAUTHMARKER") in replay_scope["headers"]
    assert all(name not in (b"x-async-request", b"connection")
               for name, _ in replay_scope["headers"])
    assert (b"authorization", b"Bearer abc.def.ghi") in replay_scope["headers"]
    assert (b"cookie", b"s=1") in replay_scope["headers"]
    assert replay_scope[INTERNAL_SCOPE_KEY] == {"task_id": "t"}
    assert replay_scope["raw_path"] == b"/api/v1/x/"
    assert replay_scope["query_string"] == b"access_token=QUERYMARKER"


def test_wrong_secret_cannot_unseal() -> None:
    scope = make_scope([(b"authorization", b"Bearer t")])
    env = RequestEnvelope.from_scope(scope, b"", task_id="t", owner="user:1")
    with pytest.raises(EnvelopeError):
        RequestEnvelope.from_dict(env.to_dict(SECRET), "another-secret")


def test_percent_encoding_in_path_survives() -> None:
    scope = make_scope([], path="/files/a b/ü", raw_path=b"/files/a%20b/%C3%BC")
    env = RequestEnvelope.from_scope(scope, b"", task_id="t", owner="user:1")
    restored = RequestEnvelope.from_dict(json.loads(json.dumps(env.to_dict(SECRET))), SECRET)
    assert restored.raw_path == b"/files/a%20b/%C3%BC"
    assert restored.path == "/files/a b/ü"


@pytest.mark.parametrize("bad", [
    None, [], {"version": 99}, {"version": 1, "task_id": "x"}, {"version": 2, "task_id": "x"},
    {"version": 2, "task_id": "x", "owner": "user:1", "method": "GET", "path": "/",
     "sealed": "not-a-token"},
    {"version": 2, "task_id": "x", "owner": "user:1", "method": "GET", "path": "/",
     "sealed": 5},
])
def test_malformed_envelopes_raise_envelope_error(bad: object) -> None:
    with pytest.raises(EnvelopeError):
        RequestEnvelope.from_dict(bad, SECRET)  # type: ignore[arg-type]


header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20).filter(
    lambda name: name != "connection")  # its value names more hop-by-hop headers
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=40)


@given(body=st.binary(max_size=4096),
       headers=st.lists(st.tuples(header_names, header_values), max_size=12))
def test_round_trip_of_any_body_and_headers(body: bytes, headers: list[tuple[str, str]]) -> None:
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    env = RequestEnvelope.from_scope(make_scope(raw), body, task_id="t", owner="anon:x")
    restored = RequestEnvelope.from_dict(json.loads(json.dumps(env.to_dict(SECRET))), SECRET)
    assert restored.body == body
    expected = [(n, v) for n, v in raw
                if n.decode() not in {"connection", "keep-alive", "proxy-connection",
                                      "transfer-encoding", "te", "trailer", "upgrade",
                                      "x-async-request", "x-async-request-internal"}]
    assert sorted(restored.to_scope({})["headers"]) == sorted(expected)


@given(body=st.binary(max_size=5000), header=st.text(max_size=300))
def test_encoded_size_is_the_sealed_messages_length(body: bytes, header: str) -> None:
    """`encoded_size` (no encryption) is exactly the length of the sealed JSON."""
    scope = make_scope([(b"x-h", header.encode("utf-8"))])
    envelope = RequestEnvelope.from_scope(scope, body, task_id="t", owner="user:1")
    assert envelope.encoded_size() == len(json.dumps(envelope.to_dict(SECRET)))
