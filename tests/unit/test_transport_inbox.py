"""The inbox between the fetcher thread and the delivering thread."""

from __future__ import annotations

import threading

from async_request.transport._inbox import EXCHANGE_BACKLOG, Inbox, Record
from async_request.transport._wakeup import Wakeup


def record(tag: int | str, key: tuple[str, int] | None = ("t", 0)) -> Record:
    return Record(tag, {"body": tag, "properties": {"delivery_tag": tag}}, key)


def make() -> Inbox:
    return Inbox(Wakeup())


def test_put_wakes_and_pop_is_fifo() -> None:
    inbox = make()
    inbox.open("q", work=True)
    assert inbox.put("q", [record(1), record(2)])
    assert inbox.wakeup.wait(0)
    assert [inbox.pop("q").tag, inbox.pop("q").tag] == [1, 2]  # type: ignore[union-attr]
    assert inbox.pop("q") is None


def test_put_to_a_closed_queue_is_refused() -> None:
    inbox = make()
    assert inbox.put("never-opened", [record(1)]) is False
    inbox.open("q", work=True)
    inbox.put("q", [record(1)])
    assert [r.tag for r in inbox.close("q")] == [1]
    assert inbox.put("q", [record(2)]) is False


def test_work_backlog_counts_work_queues_only() -> None:
    inbox = make()
    inbox.open("work", work=True)
    inbox.open("pidbox", work=False)
    inbox.put("work", [record(1), record(2)])
    inbox.put("pidbox", [record("x1", None)])
    assert inbox.work_backlog() == 2
    assert sorted(inbox.ready()) == ["pidbox", "work"]
    assert inbox.size("pidbox") == 1


def test_exchange_queues_keep_only_the_newest() -> None:
    inbox = make()
    inbox.open("pidbox", work=False)
    inbox.put("pidbox", [record(f"x{i}", None) for i in range(EXCHANGE_BACKLOG + 5)])
    assert inbox.size("pidbox") == EXCHANGE_BACKLOG
    assert inbox.pop("pidbox").tag == "x5"  # type: ignore[union-attr]


def test_remove_takes_a_revoked_partitions_records_out() -> None:
    inbox = make()
    inbox.open("a", work=True)
    inbox.open("b", work=True)
    inbox.put("a", [record(1, ("t", 0)), record(2, ("t", 1)), record(3, ("t", 0))])
    inbox.put("b", [record(4, ("u", 0))])
    removed = inbox.remove(lambda r: r.key == ("t", 0))
    assert sorted(r.tag for r in removed) == [1, 3]  # type: ignore[type-var]
    assert [inbox.pop("a").tag] == [2]  # type: ignore[union-attr]
    assert inbox.size("b") == 1
    assert [r.tag for r in inbox.remove(lambda r: True, "b")] == [4]


def test_concurrent_put_and_pop_lose_nothing() -> None:
    inbox = make()
    inbox.open("q", work=True)
    got: list[int | str] = []

    def consume() -> None:
        while len(got) < 5000:
            rec = inbox.pop("q")
            if rec is not None:
                got.append(rec.tag)

    thread = threading.Thread(target=consume)
    thread.start()
    for start in range(0, 5000, 50):
        inbox.put("q", [record(i) for i in range(start, start + 50)])
    thread.join(10)
    assert got == list(range(5000))
