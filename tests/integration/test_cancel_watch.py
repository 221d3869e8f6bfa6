"""A cancel reaches the running replay through the cancels channel, not only the lease renewal.

Real Redis: the store's CANCEL script publishes, a `CancelWatch` subscription flips the switch
of the replay registered under that id, and of no other.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from async_request.cancel_watch import CancelWatch
from async_request.store import OperationStore

pytestmark = pytest.mark.integration


class Switch:
    """The two calls the watch makes on a replay's `replay.Cancel` (a plain flag here)."""

    def __init__(self) -> None:
        self.flag = threading.Event()

    def request(self) -> None:
        self.flag.set()

    def is_set(self) -> bool:
        return self.flag.is_set()


def running(store: OperationStore, owner: str) -> str:
    task_id = str(uuid.uuid4())
    asyncio.run(store.accept(task_id, owner, "/api/x/", "GET"))
    assert store.claim(task_id, "w1").action == "run"
    return task_id


def test_a_cancel_flips_only_the_switch_of_its_own_replay(local_redis_url: str) -> None:
    # A lease of a minute: no renewal happens during the test, only the channel can tell.
    store = OperationStore(local_redis_url, 60, secret="s" * 40, lease_sec=60)
    watch = CancelWatch(local_redis_url)
    mine, other = running(store, "user:w1"), running(store, "user:w2")
    mine_switch, other_switch = Switch(), Switch()
    with watch.watching(mine, mine_switch), watch.watching(other, other_switch):
        assert watch.subscribed.wait(10), "the cancel watch never subscribed"
        assert store.cancel(mine, "user:w1") == "running"
        assert mine_switch.flag.wait(10), "the cancel was not heard on the channel"
    assert not other_switch.is_set()
    # Another owner's cancel of my id changes nothing and announces nothing.
    third = running(store, "user:w1")
    third_switch = Switch()
    with watch.watching(third, third_switch):
        assert store.cancel(third, "user:w2") == "unknown"
        assert not third_switch.flag.wait(0.5)
