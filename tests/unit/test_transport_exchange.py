"""Exchange-topic routing of the Kafka transport: topic names and local binding matches."""

from __future__ import annotations

from async_request.transport._exchange import Binding, ExchangeTopic, topic_name


def test_topic_name_keeps_legal_names() -> None:
    assert topic_name("celery") == "celery"
    assert topic_name("a.b-c_D9", "pre.") == "pre.a.b-c_D9"


def test_topic_name_maps_illegal_characters() -> None:
    assert topic_name("worker@host.celery.pidbox") == "worker_host.celery.pidbox"
    assert topic_name("") == "_"


def test_topic_name_hashes_long_names_stably() -> None:
    long = "q" * 300
    name = topic_name(long)
    assert len(name) <= 249
    assert name == topic_name(long)
    assert name != topic_name("q" * 301)


def test_fanout_binding_matches_everything() -> None:
    assert Binding("q", "x", "fanout", "").matches("anything")


def test_topic_binding_patterns() -> None:
    everything = Binding("q", "celeryev", "topic", "#")
    tasks = Binding("q", "celeryev", "topic", "task.*")
    assert everything.matches("worker.heartbeat")
    assert tasks.matches("task.succeeded")
    assert not tasks.matches("worker.heartbeat")
    assert not tasks.matches("task.a.b")


def test_direct_binding_needs_equal_key() -> None:
    reply = Binding("oid.reply", "reply.celery.pidbox", "direct", "oid")
    assert reply.matches("oid")
    assert not reply.matches("other")


def test_route_respects_each_queue_start_offset() -> None:
    view = ExchangeTopic("kombu.exchange.celeryev")
    view.bind(Binding("early", "celeryev", "topic", "#"), {0: 5})
    view.bind(Binding("late", "celeryev", "topic", "task.#"), {0: 9})
    assert view.route(0, 4, "task.x") == []
    assert view.route(0, 5, "task.x") == ["early"]
    assert sorted(view.route(0, 9, "task.x")) == ["early", "late"]
    assert view.route(0, 9, "worker.heartbeat") == ["early"]
    assert view.lowest_start(0) == 5


def test_unbind_queue_removes_its_bindings() -> None:
    view = ExchangeTopic("t")
    view.bind(Binding("a", "x", "fanout", ""), {0: 0})
    view.bind(Binding("b", "x", "fanout", ""), {0: 0})
    view.unbind_queue("a")
    assert view.route(0, 1, "") == ["b"]
