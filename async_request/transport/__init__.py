"""Kombu transports of async-request; `async_request.transport.kafka` is the Kafka one."""
