"""What this process last learnt about a cluster's reachability, shared by its connections.

A publish to a broker that is down used to wait for the whole `publish_timeout` (librdkafka
queues the message and retries) and then, after kombu's retry rebuilt the connection, for
`connect_timeout` per metadata request of the new admin client: 20 s for the first 503,
5 s for each later one. Once librdkafka has reported that no broker is up
(`_ALL_BROKERS_DOWN`), or a metadata request failed, every publish and connection check of
this process waits at most `unreachable_timeout` instead, and within that long of the last
failure it does not ask again but fails at once (so a burst of requests does not hold the
web app's threads), until a metadata request or a delivery succeeds again: a 503 within
about a second while the cluster is away, and the first publish after it returns goes
through. Kept per bootstrap list and process, because
kombu replaces a failed connection (and its clients) with a new one that must not start
from "unknown" again.
"""

from __future__ import annotations

import threading
from time import monotonic

_LOCK = threading.Lock()
_BY_BOOTSTRAP: dict[str, Health] = {}


class Health:
    """Reachability of one cluster as this process last saw it (thread-safe flags)."""

    def __init__(self) -> None:
        self._down_since: float | None = None
        self._failed_at = 0.0
        #: How many outages this process has seen begin: what a cache of the cluster's
        #: state compares to know whether the cluster was away since it was filled.
        self.outages = 0

    @property
    def down(self) -> bool:
        """True from a report that no broker answers until something succeeds again."""
        return self._down_since is not None

    @property
    def down_since(self) -> float | None:
        """`monotonic()` of the first report of the current outage, or None."""
        return self._down_since

    def mark_down(self) -> None:
        """No broker answers (librdkafka's `_ALL_BROKERS_DOWN`, a failed metadata request)."""
        self._failed_at = monotonic()
        if self._down_since is None:
            self._down_since = self._failed_at
            self.outages += 1

    def mark_up(self) -> None:
        """A broker answered (a delivery or a metadata request succeeded)."""
        self._down_since = None

    def failed_within(self, seconds: float) -> bool:
        """True while down and the last failure is under `seconds` old: callers answer at
        once instead of asking again (one probe per window, however many requests wait)."""
        return self._down_since is not None and monotonic() - self._failed_at < seconds


def health_for(bootstrap: str) -> Health:
    """The process-wide `Health` of the cluster at `bootstrap`."""
    with _LOCK:
        found = _BY_BOOTSTRAP.get(bootstrap)
        if found is None:
            found = _BY_BOOTSTRAP[bootstrap] = Health()
        return found
