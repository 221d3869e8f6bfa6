"""Kombu transports of async-request; `async_request.transport.kafka` is the Kafka one."""

#: What Celery's `broker_transport` (kombu's `transport=`) takes to load the Kafka transport.
TRANSPORT_PATH = "async_request.transport.kafka:Transport"
