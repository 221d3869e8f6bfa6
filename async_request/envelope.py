"""`RequestEnvelope`: everything a replay needs, JSON-safe, framework-free.

The body travels byte for byte (base64), the path exactly as received (`raw_path`), the query
string raw. Secret headers are sealed (see `seal.py`); hop-by-hop headers and our own markers are
dropped. Large bodies do not travel in the Kafka message: `body_ref` names where they are kept.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

from async_request.exceptions import EnvelopeError
from async_request.seal import seal_headers, unseal_headers
from async_request.types import Scope

ENVELOPE_VERSION = 1

#: Headers never carried to the replay: connection-level ones and our own markers.
DROPPED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
    "upgrade", "x-async-request", "x-async-request-internal",
})
#: Headers that carry credentials: sealed, never stored in plain text.
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})


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
    sealed_headers: str | None
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
        cls, scope: Scope, body: bytes, *, task_id: str, owner: str, secret: str,
        body_ref: str | None = None,
    ) -> RequestEnvelope:
        """Capture an HTTP scope and its body; `body_ref` set means the body is stored aside."""
        plain: list[tuple[str, str]] = []
        secret_pairs: list[tuple[str, str]] = []
        pairs = [(n.decode("latin-1").lower(), v.decode("latin-1"))
                 for n, v in scope.get("headers", ())]
        # Headers named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
        dropped = DROPPED_HEADERS | {token.strip().lower() for name, value in pairs
                                     if name == "connection" for token in value.split(",")}
        for name, value in pairs:
            if name in dropped and name not in SECRET_HEADERS:
                continue
            (secret_pairs if name in SECRET_HEADERS else plain).append((name, value))
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
            headers=tuple(plain),
            sealed_headers=seal_headers(secret_pairs, secret) if secret_pairs else None,
            body=None if body_ref else body,
            body_ref=body_ref,
            body_size=len(body),
            scheme=scope.get("scheme", "http"),
            http_version=scope.get("http_version", "1.1"),
            root_path=scope.get("root_path", ""),
            client=(str(client[0]), int(client[1])) if client else None,
            server=(str(server[0]), int(server[1] or 0)) if server else None,
        )

    def all_headers(self, secret: str) -> list[tuple[str, str]]:
        """Plain headers plus the unsealed secret ones, in capture order per group."""
        sealed = unseal_headers(self.sealed_headers, secret) if self.sealed_headers else []
        return [*self.headers, *sealed]

    def to_scope(self, secret: str, marker: dict[str, Any]) -> dict[str, Any]:
        """Build the ASGI HTTP scope of the replay, marked internal with `marker`."""
        from async_request.types import INTERNAL_SCOPE_KEY

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
            "headers": [(n.encode("latin-1"), v.encode("latin-1"))
                        for n, v in self.all_headers(secret)],
            "client": self.client,
            "server": self.server,
            "state": {},
            INTERNAL_SCOPE_KEY: marker,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (bytes as base64) for the Celery message."""
        return {
            "version": self.version,
            "task_id": self.task_id,
            "owner": self.owner,
            "method": self.method,
            "path": self.path,
            "raw_path": _b64(self.raw_path),
            "query_string": _b64(self.query_string),
            "headers": [list(pair) for pair in self.headers],
            "sealed_headers": self.sealed_headers,
            "body": None if self.body is None else _b64(self.body),
            "body_ref": self.body_ref,
            "body_size": self.body_size,
            "scheme": self.scheme,
            "http_version": self.http_version,
            "root_path": self.root_path,
            "client": list(self.client) if self.client else None,
            "server": list(self.server) if self.server else None,
            "accepted_at": self.accepted_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestEnvelope:
        """Inverse of `to_dict`; raise EnvelopeError naming what is wrong."""
        if not isinstance(data, dict):
            raise EnvelopeError(f"envelope must be an object, got {type(data).__name__}")
        if data.get("version") != ENVELOPE_VERSION:
            raise EnvelopeError(f"unsupported envelope version {data.get('version')!r}")
        try:
            body = data.get("body")
            client = data.get("client")
            server = data.get("server")
            return cls(
                task_id=str(data["task_id"]),
                owner=str(data["owner"]),
                method=str(data["method"]),
                path=str(data["path"]),
                raw_path=_unb64(data["raw_path"]),
                query_string=_unb64(data["query_string"]),
                headers=tuple((str(n), str(v)) for n, v in data["headers"]),
                sealed_headers=data.get("sealed_headers"),
                body=None if body is None else _unb64(body),
                body_ref=data.get("body_ref"),
                body_size=int(data.get("body_size", 0)),
                scheme=str(data.get("scheme", "http")),
                http_version=str(data.get("http_version", "1.1")),
                root_path=str(data.get("root_path", "")),
                client=(str(client[0]), int(client[1])) if client else None,
                server=(str(server[0]), int(server[1])) if server else None,
                accepted_at=float(data.get("accepted_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeError(f"malformed envelope: {exc!r}") from exc
