"""Transport options: validation and the librdkafka configurations built from them.

The option names and defaults are documented in `async_request.transport.kafka` (the manual;
`tests/unit/test_transport_manual.py` keeps the two in step). Each option is declared once, as
a field of `KafkaOptions`: its type, its default and the reader that validates it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from functools import partial
from typing import Any

from .errors import KafkaConfigError

_OFFSET_RESETS = frozenset({"earliest", "latest", "smallest", "largest", "beginning", "end",
                            "error"})

#: Consumer settings that suit tansu and Apache Kafka; user config wins.
CONSUMER_DEFAULTS: dict[str, Any] = {
    # tansu parks a JoinGroup for session/2 (1 s steps, at least 1 s) and evicts a dead
    # member after a session: with 1.5 s a replacement's first join (>= 0.5 s boot + 1 s)
    # ends after the killed member is gone, so it leads at once (1.6 s to its first task;
    # 2 s sessions: 4.6 s, the join finds the dead member still leading)
    "session.timeout.ms": 1500,
    "heartbeat.interval.ms": 500,      # at most session.timeout.ms / 3
    "max.poll.interval.ms": 300000,
    "partition.assignment.strategy": "range,roundrobin",
    "group.protocol": "classic",       # tansu has no KIP-848
    "fetch.wait.max.ms": 5,            # tansu answers an empty fetch after ~wait/2; 0 never
    "fetch.min.bytes": 1,
    "socket.nagle.disable": True,
    "enable.partition.eof": False,
}
_LIBRDKAFKA_LOG = logging.getLogger("async_request.transport.librdkafka")
#: How often partition counts are read again, so that partitions added to a live topic are
#: published to (`TopicAdmin`) and, on a broker that can add them (Apache Kafka, found by
#: `detect_broker`), consumed: the work consumer's `topic.metadata.refresh.interval.ms`
#: (librdkafka: 300000). tansu cannot add partitions, and its consumers keep librdkafka's.
METADATA_REFRESH_MS = 30000
#: The work consumer's `fetch.wait.max.ms` on a broker that holds an empty fetch until a record
#: arrives (Apache Kafka, found by `detect_broker`). There the 5 ms of CONSUMER_DEFAULTS buys no
#: latency (a record is answered at once either way) and costs ~200 empty fetches a second:
#: 15-20 % of a core of the broker per worker that is not idle, measured; at 100 ms the broker
#: idles as without a consumer. Not longer: a partition that becomes fetchable while a fetch
#: is in flight (after an assignment, a seek) waits for that fetch to end. tansu looks again
#: only after half the wait, so there the short wait is what keeps the hop short.
HELD_FETCH_WAIT_MS = 100

PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 0,
    "socket.nagle.disable": True,
    "acks": "all",
}


def _dict(options: Mapping[str, Any], key: str, default: Mapping[str, Any] | None = None
          ) -> dict[str, Any]:
    value = options.get(key, default if default is not None else {})
    if value is None:
        return dict(default or {})
    if not isinstance(value, Mapping):
        raise KafkaConfigError(f"transport option {key!r} must be a dict, got {value!r}")
    return dict(value)


def _int(options: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = options.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise KafkaConfigError(f"transport option {key!r} must be an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise KafkaConfigError(
            f"transport option {key!r} must be an integer, got {value!r}") from None
    if number < minimum:
        raise KafkaConfigError(f"transport option {key!r} must be >= {minimum}, got {value!r}")
    return number


def _float(options: Mapping[str, Any], key: str, default: float, minimum: float,
           allow_minimum: bool = False) -> float:
    value = options.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool):
        raise KafkaConfigError(f"transport option {key!r} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise KafkaConfigError(
            f"transport option {key!r} must be a number, got {value!r}") from None
    if number < minimum or (number == minimum and not allow_minimum):
        relation = ">=" if allow_minimum else ">"
        raise KafkaConfigError(
            f"transport option {key!r} must be {relation} {minimum}, got {value!r}")
    return number


def _bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise KafkaConfigError(f"transport option {key!r} must be a boolean, got {value!r}")


def _names(options: Mapping[str, Any], key: str, default: frozenset[str]) -> frozenset[str]:
    value = options.get(key, default)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple | set | frozenset) or not all(
            isinstance(v, str) for v in value):
        raise KafkaConfigError(f"transport option {key!r} must be a list of names, got {value!r}")
    return frozenset(value)


def _str(options: Mapping[str, Any], key: str, default: str, allow_empty: bool = True) -> str:
    value = options.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or (not allow_empty and not value):
        raise KafkaConfigError(f"transport option {key!r} must be a string, got {value!r}")
    return value


def _str_dict(options: Mapping[str, Any], key: str, default: Mapping[str, Any]
              ) -> dict[str, str]:
    return {k: str(v) for k, v in _dict(options, key, default).items()}


def _partition_counts(options: Mapping[str, Any], key: str, default: Mapping[str, int]
                      ) -> dict[str, int]:
    counts = _dict(options, key, default)
    for queue, count in counts.items():
        _int({queue: count}, queue, 1, 1)
    return {queue: int(count) for queue, count in counts.items()}


def _offset_reset(options: Mapping[str, Any], key: str, default: str) -> str:
    value = _str(options, key, default)
    if value not in _OFFSET_RESETS:
        raise KafkaConfigError(
            f"transport option {key!r} must be one of {sorted(_OFFSET_RESETS)}, got {value!r}")
    return value


#: Reads one option: (transport_options, key, default) -> validated value.
_Reader = Callable[[Mapping[str, Any], str, Any], Any]


def _read(reader: Callable[..., Any], **bounds: Any) -> dict[str, _Reader]:
    """Field metadata: how `from_transport_options` reads the option (`bounds`: its limits)."""
    return {"read": partial(reader, **bounds) if bounds else reader}


def _default(option: Field[Any]) -> Any:
    factory = option.default_factory
    return factory() if callable(factory) else option.default


@dataclass(frozen=True)
class KafkaOptions:
    """Validated transport options (see the module docstring of `kafka.py` for each)."""

    group_id: str = field(default="celery", metadata=_read(_str, allow_empty=False))
    num_partitions: int = field(default=4, metadata=_read(_int, minimum=1))
    queue_partitions: dict[str, int] = field(default_factory=dict,
                                             metadata=_read(_partition_counts))
    replication_factor: int = field(default=0, metadata=_read(_int, minimum=-1))
    min_insync_replicas: int = field(default=0, metadata=_read(_int, minimum=0))
    topic_config: dict[str, str] = field(default_factory=dict, metadata=_read(_str_dict))
    exchange_topic_config: dict[str, str] = field(default_factory=dict,
                                                  metadata=_read(_str_dict))
    topic_prefix: str = field(default="", metadata=_read(_str))
    exchange_topic_prefix: str = field(default="kombu.exchange.", metadata=_read(_str))
    auto_offset_reset: str = field(default="earliest", metadata=_read(_offset_reset))
    enable_auto_commit: bool = field(default=False, metadata=_read(_bool))
    auto_commit_interval_ms: int = field(default=1000, metadata=_read(_int, minimum=1))
    kafka_config: dict[str, Any] = field(default_factory=dict, metadata=_read(_dict))
    kafka_consumer_config: dict[str, Any] = field(default_factory=dict, metadata=_read(_dict))
    kafka_producer_config: dict[str, Any] = field(default_factory=dict, metadata=_read(_dict))
    kafka_admin_config: dict[str, Any] = field(default_factory=dict, metadata=_read(_dict))
    bootstrap_servers: str = field(default="", metadata=_read(_str))
    publish_timeout: float = field(default=10.0, metadata=_read(_float, minimum=0.0))
    max_message_bytes: int = field(default=1_000_000, metadata=_read(_int, minimum=1000))
    confirm_publish: bool = field(default=True, metadata=_read(_bool))
    connect_timeout: float = field(default=5.0, metadata=_read(_float, minimum=0.0))
    unreachable_timeout: float = field(default=0.5, metadata=_read(_float, minimum=0.0))
    poll_timeout: float = field(default=0.05, metadata=_read(_float, minimum=0.0))
    broadcast_fetch_wait_ms: int = field(default=50, metadata=_read(_int, minimum=1))
    max_buffered: int = field(default=32, metadata=_read(_int, minimum=1))
    idle_after: float = field(default=1.0, metadata=_read(_float, minimum=0.0,
                                                          allow_minimum=True))
    offset_gap_wait: float = field(default=1.0, metadata=_read(_float, minimum=0.0,
                                                               allow_minimum=True))
    leave_group_on_shutdown: bool = field(default=False, metadata=_read(_bool))
    detect_broker: bool = field(default=True, metadata=_read(_bool))
    event_exchanges: frozenset[str] = field(default=frozenset({"celeryev"}),
                                            metadata=_read(_names))
    reply_exchanges: frozenset[str] = field(default=frozenset({"reply.celery.pidbox"}),
                                            metadata=_read(_names))

    @classmethod
    def from_transport_options(cls, options: Mapping[str, Any]) -> KafkaOptions:
        """Validate kombu `transport_options`; raise KafkaConfigError naming the bad key."""
        opts = cls(**{option.name: option.metadata["read"](options, option.name,
                                                           _default(option))
                      for option in fields(cls)})
        fetch_wait = opts.consumer_config("x:1").get("fetch.wait.max.ms")
        if str(fetch_wait) == "0":
            raise KafkaConfigError(
                "transport option 'kafka_consumer_config' sets fetch.wait.max.ms=0: tansu "
                "then never returns data; use 1 or more")
        return opts

    def _common(self, bootstrap: str) -> dict[str, Any]:
        # librdkafka logs go to Python logging instead of raw lines on stderr. Reconnects back
        # off to 1 s at most (librdkafka: 10 s), so a broker that is back is seen within ~1 s
        # and publishing resumes (the fail-fast answers of `_health.py` end then).
        return {"bootstrap.servers": self.bootstrap_servers or bootstrap, "logger": _LIBRDKAFKA_LOG,
                "reconnect.backoff.max.ms": 1000, **self.kafka_config}

    def consumer_config(self, bootstrap: str) -> dict[str, Any]:
        """librdkafka config of the work consumer (group member)."""
        return {
            **CONSUMER_DEFAULTS,
            "group.id": self.group_id,
            "auto.offset.reset": self.auto_offset_reset,
            # Offsets are committed by librdkafka's timer, on revoke and on close; with
            # enable_auto_commit=False only positions we stored (the acked prefix) are committed.
            "enable.auto.commit": True,
            "enable.auto.offset.store": self.enable_auto_commit,
            "auto.commit.interval.ms": self.auto_commit_interval_ms,
            **self._common(bootstrap),
            **self.kafka_consumer_config,
        }

    def broadcast_config(self, bootstrap: str, group_id: str) -> dict[str, Any]:
        """librdkafka config of the exchange-topic reader (assign only, never commits)."""
        return {
            **CONSUMER_DEFAULTS,
            **self._common(bootstrap),
            **self.kafka_consumer_config,
            "group.id": group_id,  # required by the client; never joined (assign only)
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": self.broadcast_fetch_wait_ms,
        }

    def producer_config(self, bootstrap: str) -> dict[str, Any]:
        """librdkafka config of the shared producer."""
        return {
            **PRODUCER_DEFAULTS,
            # librdkafka gives up on a message by itself when we stop waiting for it, so a
            # publish that raised PublishTimeout is not delivered behind the caller's back.
            "message.timeout.ms": max(1, int(self.publish_timeout * 1000)),
            "message.max.bytes": self.max_message_bytes,
            **self._common(bootstrap),
            **self.kafka_producer_config,
        }

    def admin_config(self, bootstrap: str) -> dict[str, Any]:
        """librdkafka config of the AdminClient (topic creation, sizes).

        `allow.auto.create.topics` off: librdkafka's admin client (a producer handle) asks
        for broker auto-creation in every metadata request naming a topic, so on Apache Kafka
        (`auto.create.topics.enable=true` by default) the existence check before the explicit
        CreateTopics would create the topic with the broker's `num.partitions` (1)."""
        return {**self._common(bootstrap), "allow.auto.create.topics": False,
                **self.kafka_admin_config}

    @property
    def metadata_refresh_configured(self) -> bool:
        """True when the user set topic.metadata.refresh.interval.ms for the consumers."""
        return "topic.metadata.refresh.interval.ms" in {**self.kafka_config,
                                                        **self.kafka_consumer_config}

    @property
    def fetch_wait_configured(self) -> bool:
        """True when the user set fetch.wait.max.ms for the consumers."""
        return "fetch.wait.max.ms" in {**self.kafka_config, **self.kafka_consumer_config}

    @property
    def session_configured(self) -> bool:
        """True when the user set session.timeout.ms (then it is never changed for them)."""
        return "session.timeout.ms" in {**self.kafka_config, **self.kafka_consumer_config}

    def partitions_for(self, queue: str) -> int:
        """Partition count for a new work-queue topic."""
        return self.queue_partitions.get(queue, self.num_partitions)
