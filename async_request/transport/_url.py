"""Broker URLs: the broker list of `kafka://[user:password@]h1[:p1],h2[:p2]` and its masked form.

kombu's URL parser knows one host and port per URL; a Kafka cluster is a list of brokers, so
the transport parses the URL itself (`Transport.can_parse_url`) and hands librdkafka the whole
list as `bootstrap.servers`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

DEFAULT_PORT = 9092


def parse_servers(client: Any) -> tuple[str, str | None, str | None]:
    """bootstrap.servers, user and password from a kombu Connection."""
    host = client.hostname or "localhost"
    port = client.port or DEFAULT_PORT
    if "://" not in host:
        return f"{host}:{port}", client.userid, client.password
    netloc = urlsplit(host).netloc
    userinfo, _, hosts = netloc.rpartition("@")
    user = password = None
    if userinfo:
        user, _, password = userinfo.partition(":")
        user, password = unquote(user), unquote(password)
    servers = []
    for item in (hosts or "localhost").split(","):
        item = item.strip()
        servers.append(item if ":" in item.rsplit("]", 1)[-1] else f"{item}:{port}")
    return ",".join(servers), user or client.userid, password or client.password


def masked_uri(uri: str, include_password: bool = False, mask: str = "**") -> str:
    """`uri` as a `kafka://` URL, its password replaced by `mask` unless asked for."""
    parts = urlsplit(uri if "://" in uri else f"kafka://{uri}")
    netloc = parts.netloc
    if "@" in netloc and not include_password:
        userinfo, _, hosts = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{mask}@{hosts}"
    return f"kafka://{netloc}"
