"""Publishing is confirmed: a broker that is down raises within about publish_timeout."""

from __future__ import annotations

import time
import uuid

import pytest
from kombu.exceptions import OperationalError

from tests.integration.transport.app import make_app
from tools.services import Service, free_port, start_tansu

pytestmark = pytest.mark.integration


def test_broker_down_raises_then_recovers_in_the_same_process(kt_redis_url: str) -> None:
    port = free_port()
    broker = start_tansu(port=port)
    suffix = uuid.uuid4().hex[:8]
    app = make_app(broker.url, kt_redis_url, f"kt-down-{suffix}", f"kt-g-{suffix}",
                   f"kt:{suffix}", {"publish_timeout": 2})
    try:
        app.send_task("kt.noop", args=["before"], retry=False)
        broker.kill()
        started = time.monotonic()
        with pytest.raises(OperationalError):
            app.send_task("kt.noop", args=["during"], retry=False)
        assert time.monotonic() - started < 30  # an error, not a hang (publish_timeout 2 s)
        broker = start_tansu(port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                app.send_task("kt.noop", args=["after"], retry=False)
                break
            except OperationalError:
                assert time.monotonic() < deadline, "publish never recovered"
                time.sleep(0.2)
    finally:
        app.close()
        broker.stop()


def test_a_message_above_the_size_limit_is_refused_at_once(kafka: Service,
                                                          kt_redis_url: str) -> None:
    """Too large is a channel error (never retried, never a 503) naming size and limit."""
    from async_request.transport.errors import MessageTooLarge

    suffix = uuid.uuid4().hex[:8]
    app = make_app(kafka.url, kt_redis_url, f"kt-big-{suffix}", f"kt-g-{suffix}",
                   f"kt:{suffix}", {"max_message_bytes": 10_000})
    try:
        with pytest.raises(MessageTooLarge) as caught:
            app.send_task("kt.noop", args=["x" * 20_000], retry=True)
        assert caught.value.limit == 10_000 and caught.value.size > 20_000
        app.send_task("kt.noop", args=["small"], retry=False)  # the connection still works
    finally:
        app.close()


def test_bad_option_fails_when_the_connection_is_built(kt_redis_url: str) -> None:
    from async_request.transport.errors import KafkaConfigError

    app = make_app("127.0.0.1:1", kt_redis_url, "q", "g", "ns", {"num_partitions": 0})
    with pytest.raises(KafkaConfigError, match="'num_partitions'"), \
            app.connection_for_write() as conn:
        conn.transport  # noqa: B018 - building the transport validates the options
    app.close()


def test_only_a_passive_declare_counts_the_backlog(kafka: Service, kt_redis_url: str) -> None:
    """A publisher's declare (Celery's, once per connection) does not ask the group
    coordinator for offsets (a round trip, and librdkafka#5040's crash after a broker
    restart); a passive declare still counts what is waiting."""
    suffix = uuid.uuid4().hex[:8]
    queue = f"kt-count-{suffix}"
    app = make_app(kafka.url, kt_redis_url, queue, f"kt-g-{suffix}", f"kt:{suffix}", {})
    try:
        for n in range(3):
            app.send_task("kt.noop", args=[n], retry=False)
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            assert channel.queue_declare(queue).message_count == 0  # not counted
            assert channel.queue_declare(queue, passive=True).message_count == 3
    finally:
        app.close()
