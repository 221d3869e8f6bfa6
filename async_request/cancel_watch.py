"""Hear a cancel the moment its owner asks, not at the next lease renewal.

The store's CANCEL script publishes the id of a running operation on `CHANNEL`; each worker
process keeps one subscription (a daemon thread, started with its first replay) and flips the
cancel switch of the replay it runs under that id. Without it a cancel waited for the lease
renewal (every lease_sec / 3 = 2 s). The renewal still reads `cancel_requested`, so a message
missed while the subscription reconnects delays a cancel by at most that long, never loses it.

One channel for all operations (not one per id): a worker subscribes once, whatever it runs,
and cancels are rare enough that every worker hearing every one costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Protocol

import redis

from async_request.records import PREFIX

logger = logging.getLogger(__name__)

#: Where the CANCEL script announces "operation <id> was asked to stop".
CHANNEL = f"{PREFIX}:cancels"


class Switch(Protocol):
    """What a watched replay exposes: `replay.Cancel`."""

    def request(self) -> None: ...

    def is_set(self) -> bool: ...


class CancelWatch:
    """The replays this process runs, by id, and the one subscription that cancels them."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._running: dict[str, Switch] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.subscribed = threading.Event()

    @contextlib.contextmanager
    def watching(self, task_id: str, switch: Switch) -> Iterator[None]:
        """While the block runs, a cancel of `task_id` announced on CHANNEL flips `switch`."""
        self._ensure_thread()
        with self._lock:
            self._running[task_id] = switch
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(task_id, None)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._listen, name="cancel-watch",
                                            daemon=True)
            self._thread.start()

    def _heard(self, task_id: str) -> None:
        with self._lock:
            switch = self._running.get(task_id)
        if switch is not None and not switch.is_set():
            logger.info("task %s: its owner cancelled it; telling the replay", task_id)
            switch.request()

    def _listen(self) -> None:
        backoff = 0.5
        while True:
            client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2,
                                          health_check_interval=10)
            pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
            try:
                pubsub.subscribe(CHANNEL)
                self.subscribed.set()
                backoff = 0.5
                while True:
                    message = pubsub.get_message(timeout=5.0)
                    if message and message.get("type") == "message":
                        data = message["data"]
                        self._heard(data.decode() if isinstance(data, bytes) else str(data))
            except (redis.RedisError, OSError) as exc:
                self.subscribed.clear()
                logger.debug("cancel watch: subscription lost (%r); retrying", exc)
                threading.Event().wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
                    client.close()


_watch: CancelWatch | None = None
_watch_lock = threading.Lock()


def get_watch(redis_url: str) -> CancelWatch:
    """This process's watch: one subscription per process (its thread is started again in a
    forked pool child, where the parent's is not running)."""
    global _watch
    with _watch_lock:
        if _watch is None or _watch.redis_url != redis_url:
            _watch = CancelWatch(redis_url)
        return _watch
