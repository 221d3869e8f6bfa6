"""Transport options of the Kafka transport: validation names the key and the value."""

from __future__ import annotations

import pytest

from async_request.transport._options import KafkaOptions
from async_request.transport.errors import KafkaConfigError


def test_defaults_suit_tansu() -> None:
    opts = KafkaOptions.from_transport_options({})
    consumer = opts.consumer_config("h:1")
    assert consumer["group.id"] == "celery"
    assert consumer["session.timeout.ms"] == 1500
    assert consumer["heartbeat.interval.ms"] == 500
    assert consumer["fetch.wait.max.ms"] == 5
    assert consumer["group.protocol"] == "classic"
    assert consumer["enable.auto.offset.store"] is False
    assert opts.producer_config("h:1")["message.timeout.ms"] == 10000
    assert opts.leave_group_on_shutdown is False
    assert KafkaOptions.from_transport_options(
        {"leave_group_on_shutdown": "true"}).leave_group_on_shutdown is True


def test_options_reach_librdkafka_configs() -> None:
    opts = KafkaOptions.from_transport_options({
        "group_id": "g", "num_partitions": "3", "auto_offset_reset": "latest",
        "enable_auto_commit": "true", "auto_commit_interval_ms": 250,
        "kafka_config": {"security.protocol": "SASL_SSL"},
        "kafka_consumer_config": {"fetch.wait.max.ms": 2},
        "kafka_producer_config": {"linger.ms": 1}, "publish_timeout": 2.5,
    })
    consumer = opts.consumer_config("h:1")
    assert (consumer["group.id"], consumer["auto.offset.reset"]) == ("g", "latest")
    assert consumer["enable.auto.offset.store"] is True
    assert consumer["auto.commit.interval.ms"] == 250
    assert consumer["security.protocol"] == "SASL_SSL"
    assert consumer["fetch.wait.max.ms"] == 2
    producer = opts.producer_config("h:1")
    assert producer["linger.ms"] == 1 and producer["security.protocol"] == "SASL_SSL"
    assert producer["message.timeout.ms"] == 2500
    assert opts.partitions_for("any") == 3
    assert opts.admin_config("h:1")["bootstrap.servers"] == "h:1"


def test_the_admin_client_never_asks_the_broker_to_auto_create_topics() -> None:
    # Apache Kafka auto-creates (num.partitions=1) a topic that a metadata request names
    # unless the client says not to; the transport creates its topics explicitly
    assert KafkaOptions.from_transport_options({}).admin_config("h:1")[
        "allow.auto.create.topics"] is False


@pytest.mark.parametrize(("key", "value"), [
    ("num_partitions", 0), ("num_partitions", "many"), ("auto_offset_reset", "sometimes"),
    ("enable_auto_commit", "perhaps"), ("publish_timeout", 0), ("publish_timeout", "soon"),
    ("kafka_config", ["a"]), ("group_id", ""), ("auto_commit_interval_ms", -1),
    ("event_exchanges", 5), ("leave_group_on_shutdown", "sometimes"),
])
def test_bad_values_name_key_and_value(key: str, value: object) -> None:
    with pytest.raises(KafkaConfigError) as info:
        KafkaOptions.from_transport_options({key: value})
    assert repr(key) in str(info.value)
    assert repr(value) in str(info.value)


def test_zero_fetch_wait_is_refused() -> None:
    with pytest.raises(KafkaConfigError, match="fetch.wait.max.ms"):
        KafkaOptions.from_transport_options({"kafka_consumer_config": {"fetch.wait.max.ms": 0}})
