# mypy: disable-error-code="no-untyped-call"
"""Exchange topics: how fanout, event (topic) and reply exchanges cross process boundaries.

kombu's virtual transport keeps its binding table in the memory of each process, so a
`celery inspect` client, a worker and Flower never see each other's bindings (over kombu's
own Kafka transport, `inspect` gets no reply and Flower lists no worker).
Here an exchange that must reach other processes gets one Kafka topic of its own. Publishers
produce once to it with the routing key in a record header; every process that has a queue
bound to the exchange reads that topic with `assign()` (no consumer group) from the high
watermark it saw when the queue was bound, and keeps the records whose routing key matches
the binding. Pure logic lives here; the exchange reader (`_reader.py`, run by the fetcher
thread) does the Kafka calls.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from kombu.transport.virtual.exchange import TopicExchange

#: Record header carrying the routing key of a message published to an exchange topic.
ROUTING_KEY_HEADER = "kombu.routing_key"
#: Record header carrying the exchange name (diagnostics only).
EXCHANGE_HEADER = "kombu.exchange"

_INVALID = re.compile(r"[^A-Za-z0-9._-]")
_MAX_TOPIC = 249
_topic_patterns = TopicExchange(None)


def topic_name(name: str, prefix: str = "") -> str:
    """Map a queue or exchange name to a legal Kafka topic name.

    Characters outside `[A-Za-z0-9._-]` become `_`; names too long get a hash suffix.
    """
    topic = _INVALID.sub("_", f"{prefix}{name}")
    if topic in ("", ".", ".."):
        topic = f"_{topic}"
    if len(topic) > _MAX_TOPIC:
        digest = hashlib.sha1(topic.encode()).hexdigest()[:16]
        topic = f"{topic[:_MAX_TOPIC - 17]}-{digest}"
    return topic


@dataclass(frozen=True)
class Binding:
    """A local queue bound to an exchange topic with a routing key (or pattern)."""

    queue: str
    exchange: str
    kind: str  # "fanout", "topic" or "direct"
    routing_key: str

    def matches(self, routing_key: str) -> bool:
        """True when a record with `routing_key` belongs to this binding's queue."""
        if self.kind == "fanout":
            return True
        if self.kind == "topic":
            pattern = _topic_patterns.key_to_pattern(self.routing_key)
            return bool(_topic_patterns._match(pattern, routing_key))
        return self.routing_key == routing_key


@dataclass
class ExchangeTopic:
    """The local view of one exchange topic: bindings and each queue's start offsets."""

    topic: str
    bindings: set[Binding] = field(default_factory=set)
    #: queue -> {partition: first offset this queue may see}
    starts: dict[str, dict[int, int]] = field(default_factory=dict)

    def bind(self, binding: Binding, start: dict[int, int]) -> None:
        """Add a binding; the queue sees records from `start` on (kept from its first bind)."""
        self.bindings.add(binding)
        self.starts.setdefault(binding.queue, dict(start))

    def unbind_queue(self, queue: str) -> None:
        """Remove every binding of `queue`."""
        self.bindings = {b for b in self.bindings if b.queue != queue}
        self.starts.pop(queue, None)

    def route(self, partition: int, offset: int, routing_key: str) -> list[str]:
        """Queues that get a copy of the record at (partition, offset) with `routing_key`."""
        queues: list[str] = []
        for binding in self.bindings:
            if binding.queue in queues:
                continue
            start = self.starts.get(binding.queue, {}).get(partition, 0)
            if offset >= start and binding.matches(routing_key):
                queues.append(binding.queue)
        return queues

    def lowest_start(self, partition: int) -> int | None:
        """Where the shared assignment of `partition` must start to serve every queue."""
        found = [s[partition] for s in self.starts.values() if partition in s]
        return min(found) if found else None
