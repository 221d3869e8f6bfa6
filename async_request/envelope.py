"""`RequestEnvelope`: envelope. Everything a replay needs, JSON-safe, framework-free.

The body travels byte for byte, the path exactly as received (`raw_path`), the query string raw;
hop-by-hop headers and our own markers are dropped. On the wire (`to_dict`) only the routing
fields are readable: task id, owner, method, path (and `body_ref`, `accepted_at`); headers,
query string, body and addresses are one sealed token (see `seal.py`). Large bodies do not
travel in the Kafka message: `body_ref` names where they are kept (sealed too).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from async_request.exceptions import EnvelopeError
from async_request.seal import seal, sealed_length, unseal
from async_request.types import INTERNAL_SCOPE_KEY, Scope

ENVELOPE_VERSION = 2

#: Headers never carried to the replay: connection-level ones and our own markers.
DROPPED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
    "upgrade", "x-async-request", "x-async-request-internal",
})
#: Credential headers: kept even when `Connection` names them (a trick to strip them).
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass(frozen=True)
class RequestEnvelope:
    """A captured HTTP request, ready to travel through Kafka and be replayed."""

    task_id: str
    owner: str
    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    body_ref: str | None = None
    body_size: int = 0
    scheme: str = "http"
    http_version: str = "1.1"
    root_path: str = ""
    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None
    accepted_at: float = field(default_factory=time.time)
    version: int = ENVELOPE_VERSION

    @classmethod
    def from_scope(
        cls, scope: Scope, body: bytes, *, task_id: str, owner: str,
        body_ref: str | None = None,
    ) -> RequestEnvelope:
        """Capture an HTTP scope and its body; `body_ref` set means the body is stored aside."""
        pairs = [(n.decode("latin-1").lower(), v.decode("latin-1"))
                 for n, v in scope.get("headers", ())]
        # Headers named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
        dropped = DROPPED_HEADERS | {token.strip().lower() for name, value in pairs
                                     if name == "connection" for token in value.split(",")}
        headers = tuple((name, value) for name, value in pairs
                        if name not in dropped or name in CREDENTIAL_HEADERS)
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        client = scope.get("client")
        server = scope.get("server")
        return cls(
            task_id=task_id,
            owner=owner,
            method=scope["method"],
            path=scope["path"],
            raw_path=bytes(raw_path),
            query_string=bytes(scope.get("query_string", b"")),
            headers=headers,
            body=None if body_ref else body,
            body_ref=body_ref,
            body_size=len(body),
            scheme=scope.get("scheme", "http"),
            http_version=scope.get("http_version", "1.1"),
            root_path=scope.get("root_path", ""),
            client=(str(client[0]), int(client[1])) if client else None,
            server=(str(server[0]), int(server[1] or 0)) if server else None,
        )

    def to_scope(self, marker: dict[str, Any]) -> dict[str, Any]:
        """Build the ASGI HTTP scope of the replay, marked internal with `marker`."""
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.http_version,
            "method": self.method,
            "scheme": self.scheme,
            "path": self.path,
            "raw_path": self.raw_path,
            "query_string": self.query_string,
            "root_path": self.root_path,
            "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in self.headers],
            "client": self.client,
            "server": self.server,
            "state": {},
            INTERNAL_SCOPE_KEY: marker,
        }

    def to_dict(self, secret: str) -> dict[str, Any]:
        """The JSON-safe message: routing fields in clear, the rest sealed with `secret`."""
        return {**self._clear(),
                "sealed": seal(json.dumps(self._private()).encode(), secret)}

    def encoded_size(self) -> int:
        """Length of `json.dumps(self.to_dict(secret))`, without sealing (size checks)."""
        placeholder = "s" * sealed_length(len(json.dumps(self._private()).encode()))
        return len(json.dumps({**self._clear(), "sealed": placeholder}))

    def _clear(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "task_id": self.task_id,
            "owner": self.owner,
            "method": self.method,
            "path": self.path,
            "body_ref": self.body_ref,
            "accepted_at": self.accepted_at,
        }

    def _private(self) -> dict[str, Any]:
        return {
            "raw_path": _b64(self.raw_path),
            "query_string": _b64(self.query_string),
            "headers": [list(pair) for pair in self.headers],
            "body": None if self.body is None else _b64(self.body),
            "body_size": self.body_size,
            "scheme": self.scheme,
            "http_version": self.http_version,
            "root_path": self.root_path,
            "client": list(self.client) if self.client else None,
            "server": list(self.server) if self.server else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], secret: str) -> RequestEnvelope:
        """Inverse of `to_dict`; raise EnvelopeError naming what is wrong."""
        if not isinstance(data, dict):
            raise EnvelopeError(f"envelope must be an object, got {type(data).__name__}")
        if data.get("version") != ENVELOPE_VERSION:
            raise EnvelopeError(f"unsupported envelope version {data.get('version')!r}")
        try:
            sealed = data["sealed"]
            if not isinstance(sealed, str):
                raise TypeError("'sealed' must be a string")
            private = json.loads(unseal(sealed, secret))
            body = private.get("body")
            client = private.get("client")
            server = private.get("server")
            return cls(
                task_id=str(data["task_id"]),
                owner=str(data["owner"]),
                method=str(data["method"]),
                path=str(data["path"]),
                raw_path=_unb64(private["raw_path"]),
                query_string=_unb64(private["query_string"]),
                headers=tuple((str(n), str(v)) for n, v in private["headers"]),
                body=None if body is None else _unb64(body),
                body_ref=data.get("body_ref"),
                body_size=int(private.get("body_size", 0)),
                scheme=str(private.get("scheme", "http")),
                http_version=str(private.get("http_version", "1.1")),
                root_path=str(private.get("root_path", "")),
                client=(str(client[0]), int(client[1])) if client else None,
                server=(str(server[0]), int(server[1])) if server else None,
                accepted_at=float(data.get("accepted_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeError(f"malformed envelope: {exc!r}") from exc
