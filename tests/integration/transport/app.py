"""A tiny Celery app for the transport tests: tasks record what they run in Redis.

Workers import it as `tests.integration.transport.app`; the configuration comes from the
environment (`KT_*`, set by `conftest.WorkerProcess`), tests build their client with
`make_app()`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import Celery
from celery.exceptions import Reject

from async_request.transport.kafka import TRANSPORT_PATH


def make_app(broker: str, redis_url: str, queue: str, group: str, ns: str,
             options: dict[str, Any] | None = None) -> Celery:
    """A Celery app on our Kafka transport with results in Redis."""
    celery = Celery("kt")
    celery.conf.update(
        broker_url=f"kafka://{broker}",
        broker_transport=TRANSPORT_PATH,
        broker_transport_options={"group_id": group, "num_partitions": 2,
                                  "publish_timeout": 5, **(options or {})},
        broker_connection_retry_on_startup=True,
        result_backend=redis_url,
        task_default_queue=queue,
        worker_prefetch_multiplier=4,
        worker_hijack_root_logger=False,
        task_send_sent_event=False,
        result_expires=600,
        broker_heartbeat=0,
    )
    celery.conf.kt_ns = ns
    celery.conf.kt_redis = redis_url
    _register(celery)
    return celery


def _register(celery: Celery) -> None:
    clients: dict[int, redis.Redis] = {}

    def mark(what: str, tag: str) -> None:
        pid = os.getpid()
        if pid not in clients:  # one client per process (prefork children included)
            clients[pid] = redis.Redis.from_url(celery.conf.kt_redis)
        clients[pid].rpush(f"{celery.conf.kt_ns}:{what}", f"{tag}|{pid}")

    @celery.task(name="kt.noop")
    def noop(tag: str | None = None) -> str | None:
        if tag is not None:
            mark("done", tag)
        return tag

    @celery.task(name="kt.late", acks_late=True)
    def late(tag: str, seconds: float = 0.0) -> str:
        mark("start", tag)
        time.sleep(seconds)
        mark("done", tag)
        return tag

    @celery.task(name="kt.early", acks_late=False)
    def early(tag: str, seconds: float = 0.0) -> str:
        mark("start", tag)
        time.sleep(seconds)
        mark("done", tag)
        return tag

    @celery.task(name="kt.fail")
    def fail(tag: str) -> None:
        raise ValueError(f"failing on purpose: {tag}")

    @celery.task(name="kt.requeue_once", acks_late=True, bind=True)
    def requeue_once(self: Any, tag: str, seconds: float = 0.0) -> str:
        mark("start", tag)
        if not self.request.delivery_info.get("redelivered"):
            time.sleep(seconds)
            raise Reject("requeue on first delivery", requeue=True)
        mark("done", tag)
        return tag


def _from_env() -> Celery | None:
    if "KT_BROKER" not in os.environ:
        return None
    return make_app(os.environ["KT_BROKER"], os.environ["KT_REDIS"], os.environ["KT_QUEUE"],
                    os.environ["KT_GROUP"], os.environ["KT_NS"],
                    json.loads(os.environ.get("KT_OPTIONS", "{}")))


app = _from_env()
