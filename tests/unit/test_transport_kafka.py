"""Transport class of the Kafka transport: selection, URL parsing, capabilities, shutdown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.signals import worker_shutting_down
from kombu import Connection
from kombu.transport import TRANSPORT_ALIASES, _transport_cache

from async_request.transport.errors import KafkaConfigError, KafkaConnectionError
from async_request.transport.kafka import (
    TRANSPORT_PATH,
    Channel,
    Transport,
    register_alias,
)


@pytest.fixture
def restore_aliases() -> Iterator[None]:
    saved = dict(TRANSPORT_ALIASES)
    yield
    TRANSPORT_ALIASES.clear()
    TRANSPORT_ALIASES.update(saved)
    _transport_cache.clear()


def test_explicit_transport_wins_over_the_url_scheme() -> None:
    conn = Connection("kafka://127.0.0.1:1", transport=TRANSPORT_PATH)
    assert isinstance(conn.transport, Transport)
    assert conn.transport.bootstrap == "127.0.0.1:1"


def test_register_alias_makes_bare_kafka_urls_ours(restore_aliases: None) -> None:
    register_alias()
    assert isinstance(Connection("kafka://h:1").transport, Transport)
    assert isinstance(Connection("asynckafka://h:1").transport, Transport)


def test_url_with_several_brokers_and_credentials() -> None:
    conn = Connection("kafka://u%40x:p%2Fw@h1:1,h2", transport=TRANSPORT_PATH)
    transport = conn.transport
    assert transport.bootstrap == "h1:1,h2:9092"
    assert transport.options.kafka_config["sasl.username"] == "u@x"
    assert transport.options.kafka_config["sasl.password"] == "p/w"
    assert "p%2Fw" not in conn.as_uri()
    assert conn.as_uri().startswith("kafka://")


def test_the_settings_broker_list_is_one_connection_with_every_broker() -> None:
    """No kombu failover alternates: switching to one loaded kombu's own Kafka transport."""
    from async_request.settings import load_settings

    url = load_settings({"BS_KAFKA_BOOTSTRAP_SERVERS": "h1:1, h2:2,h3:3",
                         "BS_ENV_FILE": "/nonexistent"}, django_settings=None).broker_url
    conn = Connection(url, transport=TRANSPORT_PATH)
    assert not conn.alt
    conn.maybe_switch_next()
    assert isinstance(conn.transport, Transport)
    assert conn.transport.bootstrap == "h1:1,h2:2,h3:3"


def test_capabilities_enable_remote_control() -> None:
    assert Transport.implements.exchange_type >= {"direct", "topic", "fanout"}
    assert Channel.supports_fanout is True
    assert KafkaConnectionError in Transport.connection_errors
    assert KafkaConnectionError in Transport.recoverable_connection_errors
    assert Transport.driver_type == "kafka"


def test_bad_option_fails_when_the_transport_is_built() -> None:
    conn = Connection("kafka://h:1", transport=TRANSPORT_PATH,
                      transport_options={"publish_timeout": -1})
    with pytest.raises(KafkaConfigError, match="'publish_timeout'"):
        conn.transport  # noqa: B018


def test_worker_shutting_down_tells_the_connections_that_consume() -> None:
    """Celery's signal reaches the work consumer: it then stays in the group until close."""
    consuming = Connection("kafka://127.0.0.1:1", transport=TRANSPORT_PATH).transport
    publishing = Connection("kafka://127.0.0.1:1", transport=TRANSPORT_PATH).transport
    try:
        consuming.consumes_work()  # what its first work queue does
        assert not consuming.io.fetcher.member.exiting
        worker_shutting_down.send(sender="w@h", sig="SIGTERM", how="Warm", exitcode=0)
        assert consuming.io.fetcher.member.exiting
        assert not publishing.io.fetcher.member.exiting
    finally:
        consuming.io.close()
        publishing.io.close()


def test_a_connection_told_before_its_clients_exist_tells_them() -> None:
    transport = Connection("kafka://127.0.0.1:1", transport=TRANSPORT_PATH).transport
    transport.worker_exiting()
    try:
        assert transport.io.fetcher.member.exiting
    finally:
        transport.io.close()


def test_an_active_declare_asks_the_broker_nothing() -> None:
    """The count of a declare is the group's backlog (an admin request librdkafka can crash
    on, docs/transport.md Known issues): only a passive declare asks for it. No broker
    listens on port 1, so any request would fail."""
    conn = Connection("kafka://127.0.0.1:1", transport=TRANSPORT_PATH,
                      transport_options={"connect_timeout": 0.2})
    transport = conn.transport
    channel = Channel(transport)  # as establish_connection() does, without its ping
    try:
        ok = channel.queue_declare("q")
        assert (ok.queue, ok.message_count, ok.consumer_count) == ("q", 0, 0)
    finally:
        channel.close()
        conn.release()
