"""Errors raised by the Kafka transport; callers catch `KafkaConnectionError` to answer 503."""

from __future__ import annotations


class KafkaTransportError(Exception):
    """Base class of the Kafka transport's own errors."""


class KafkaConfigError(KafkaTransportError, ValueError):
    """A transport option has a bad value; the message names the key and the value."""


class KafkaConnectionError(KafkaTransportError, ConnectionError):
    """The broker cannot be reached or did not acknowledge in time (retryable)."""


class PublishTimeout(KafkaConnectionError):
    """The broker did not acknowledge a message within `publish_timeout` seconds."""


class DeliveryFailed(KafkaConnectionError):
    """The broker refused or lost a message (the delivery report carried an error)."""


class KafkaChannelError(KafkaTransportError):
    """A request about one topic failed for a reason retrying will not fix."""


class MessageTooLarge(KafkaChannelError):
    """The broker (or the producer's ``message.max.bytes``) refuses a message this large."""

    def __init__(self, detail: str, *, size: int, limit: int) -> None:
        super().__init__(detail)
        self.size = size
        self.limit = limit
