# mypy: disable-error-code="no-untyped-call"
"""The kombu channel of the Kafka transport: queues are topics, exchange topics cross processes.

`Channel` is kombu's list of hooks (`_put`, `_get`, `_size`, `_purge`, `_delete`, ...); what
each hook needs from Kafka goes through the connection's `KafkaIO` (`_io.py`). Publishing
to an exchange that other processes must see (fanout, the configured event and reply
exchanges) goes to that exchange's topic (`_exchange.py`) instead of kombu's in-process
routing. The manual is the module docstring of `kafka.py`, whose `Transport` uses this
channel.
"""

from __future__ import annotations

import asyncio
from queue import Empty
from typing import Any, Protocol

from amqp.protocol import queue_declare_ok_t
from kombu.transport import virtual
from kombu.transport.virtual.exchange import (
    DirectExchange,
    ExchangeType,
    FanoutExchange,
    TopicExchange,
)
from kombu.utils.json import dumps
from kombu.utils.uuid import uuid

from ._exchange import EXCHANGE_HEADER, ROUTING_KEY_HEADER, Binding, topic_name
from ._io import KafkaIO
from ._options import KafkaOptions


class ChannelOwner(Protocol):
    """What a channel uses of its kombu transport (`kafka.Transport`)."""

    options: KafkaOptions
    queue_channels: dict[str, Channel]
    _io: KafkaIO | None  # None until first used and after close: acks then go nowhere

    @property
    def io(self) -> KafkaIO:
        """The connection's Kafka clients (created on first use)."""

    def consumes_work(self) -> None:
        """The connection starts consuming a work queue."""


class _RoutedExchange(ExchangeType):
    """Exchange type whose routed exchanges (`Channel._is_routed`) go through their
    exchange topic instead of kombu's in-process delivery."""

    def deliver(self, message: Any, exchange: str, routing_key: str, **kwargs: Any) -> None:
        if self.channel._is_routed(exchange):
            self.channel._put_exchange(exchange, message, routing_key)
        else:  # the exchange type after this mixin (ExchangeType itself has no deliver)
            super().deliver(message, exchange, routing_key, **kwargs)  # type: ignore[misc]


class _RoutedDirect(_RoutedExchange, DirectExchange):
    """Direct exchange; the configured reply exchanges go through their exchange topic."""


class _RoutedTopic(_RoutedExchange, TopicExchange):
    """Topic exchange; the configured event exchanges go through their exchange topic."""


class QoS(virtual.QoS):
    """Prefetch window; acks go to the consumer thread, requeue re-produces."""

    #: Never re-publish unacked messages at shutdown: their offsets were not committed, so
    #: the partition's next owner redelivers them (re-publishing would duplicate them).
    restore_at_shutdown = False

    def ack(self, delivery_tag: Any) -> None:
        """Settle a message: its offset may now be committed."""
        super().ack(delivery_tag)
        transport = self.channel.connection
        if transport is not None and transport._io is not None:
            transport._io.ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        """Settle a message; with requeue, produce it again first (never seek back)."""
        if requeue:
            self.channel._requeue(self._delivered[delivery_tag])
        self.ack(delivery_tag)


class Channel(virtual.Channel):
    """Kafka channel: queues are topics, exchange topics carry fanout/events/replies."""

    QoS = QoS
    supports_fanout = True
    do_restore = False
    exchange_types = {"direct": _RoutedDirect, "topic": _RoutedTopic,
                      "fanout": FanoutExchange}
    connection: ChannelOwner

    def __init__(self, connection: ChannelOwner, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.options: KafkaOptions = connection.options

    # -- naming ------------------------------------------------------------------------------
    def _topic(self, queue: str) -> str:
        return topic_name(queue, self.options.topic_prefix)

    def _exchange_topic(self, exchange: str) -> str:
        return topic_name(exchange, self.options.topic_prefix + self.options.exchange_topic_prefix)

    def _exchange_kind(self, exchange: str) -> str:
        try:
            return str(self.state.exchanges[exchange]["type"])
        except KeyError:
            return "direct"

    def _is_routed(self, exchange: str) -> bool:
        if not exchange:
            return False
        opts = self.options
        return (exchange in opts.reply_exchanges or exchange in opts.event_exchanges
                or self._exchange_kind(exchange) == "fanout")

    @property
    def io(self) -> KafkaIO:
        return self.connection.io

    # -- publishing --------------------------------------------------------------------------
    def _send(self, topic: str, message: dict[str, Any], partitions: int, config: dict[str, str],
              headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        persistent = message.get("properties", {}).get("delivery_mode", 2) != 1
        self.io.publish(topic, dumps(message).encode(), partitions, config, headers,
                        wait=persistent and self.options.confirm_publish)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """Produce `message` to the queue's topic; wait for the broker if persistent."""
        self._send(self._topic(queue), message, self.options.partitions_for(queue),
                   self.options.topic_config)

    async def put_async(self, queue: str, message: dict[str, Any]) -> None:
        """`_put` for a coroutine (the web process' event loop): produce `message` to the
        queue's topic and wait for the broker's acknowledgement without blocking the loop.

        When that would block (a request to the cluster comes first: it is known to be away,
        or the topic is not cached or stale) or publishes are not confirmed, `_put` runs in
        a thread instead: the first publish to each topic, and every one during an outage.
        """
        topic = self._topic(queue)
        future = (self.io.try_send(topic, dumps(message).encode())
                  if self.options.confirm_publish else None)
        if future is None:
            await asyncio.get_running_loop().run_in_executor(None, self._put, queue, message)
            return
        await self.io.acknowledged(topic, future)

    def _put_exchange(self, exchange: str, message: dict[str, Any], routing_key: str) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            (ROUTING_KEY_HEADER, (routing_key or "").encode()),
            (EXCHANGE_HEADER, exchange.encode())]
        self._send(self._exchange_topic(exchange), message, 1,
                   self.options.exchange_topic_config, headers)

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str,
                    **kwargs: Any) -> None:
        """Produce once to the fanout exchange's topic."""
        self._put_exchange(exchange, message, routing_key)

    def _requeue(self, message: virtual.Message) -> None:
        delivery = self.io.delivery(message.delivery_tag)
        if delivery is None:
            return  # exchange copy (at-most-once) or partition revoked: nothing to requeue
        payload = message.serializable()
        payload["redelivered"] = True
        payload["properties"].setdefault("delivery_info", {})["redelivered"] = True
        self.io.resend(delivery.key[0], dumps(payload).encode())

    # -- bindings and queues -----------------------------------------------------------------
    def _queue_bind(self, exchange: str, routing_key: str, pattern: Any, queue: str) -> None:
        if not self._is_routed(exchange):
            return
        kind = self._exchange_kind(exchange)
        if exchange in self.options.event_exchanges:
            kind = "topic"
        self.io.bind(Binding(queue, exchange, kind, routing_key or ""),
                     self._exchange_topic(exchange))

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        # Topics are created on first publish or consume: declared queues that turn out to be
        # bound to an exchange topic (pidbox, replies, events) never get a topic of their own.
        return None

    def queue_declare(self, queue: str | None = None, passive: bool = False,
                      **kwargs: Any) -> Any:
        """Declare `queue`; only a passive declare (a question) reports its message count.

        kombu declares on the first publish and on every (re)connect of a consumer, and the
        count is the group's backlog: a ListConsumerGroupOffsets through the admin client,
        which librdkafka 2.16 crashes on when the group coordinator has just moved (a broker
        died: SIGSEGV, confluentinc/librdkafka#5040, or an assertion in
        `rd_kafka_enq_once_del_source_return`; both seen in tools/failover.py, killing web
        app and workers). Nobody reads the count of an active declare.
        """
        if passive:
            return super().queue_declare(queue, passive=True, **kwargs)
        queue = queue or f"amq.gen-{uuid()}"
        self._new_queue(queue, **kwargs)
        return queue_declare_ok_t(queue, 0, 0)

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.io.is_bound(queue) or self.io.admin.partitions(self._topic(queue)) is not None

    def _size(self, queue: str) -> int:
        io = self.io
        if io.is_bound(queue):
            return io.inbox.size(queue)
        if io.admin.partitions(self._topic(queue)) is None:
            return 0
        return io.admin.backlog(self.options.group_id, self._topic(queue))

    def _purge(self, queue: str) -> int:
        io = self.io
        if io.is_bound(queue):
            return len(io.inbox.remove(lambda rec: True, queue))
        return io.admin.skip_to_end(self.options.group_id, self._topic(queue))

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        io = self.io
        if io.is_bound(queue):
            io.unbind(queue)
            return
        io.cancel_queue(queue)
        io.admin.delete(self._topic(queue))

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        io = self.io
        io.check()
        if not io.is_bound(queue) and queue not in io.work_queues:
            self._start_work_queue(queue)
        record = io.inbox.pop(queue)
        if record is None:
            raise Empty()
        return record.payload

    def _start_work_queue(self, queue: str) -> None:
        self.connection.consumes_work()
        self.io.consume_queue(queue, self._topic(queue))

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str,
                      **kwargs: Any) -> Any:
        """Consume `queue`: exchange-bound queues are already assigned, others join the group."""
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        self.connection.queue_channels[queue] = self
        if not self.io.is_bound(queue) and queue not in self.io.work_queues:
            self._start_work_queue(queue)
        return result

    def basic_cancel(self, consumer_tag: str) -> Any:
        """Stop consuming; a work queue leaves the subscription (one rebalance)."""
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and self.connection._io is not None:
            self.connection.queue_channels.pop(queue, None)
            self.io.cancel_queue(queue)
        return result
