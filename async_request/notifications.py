"""Channel-layer notifications: group names per owner, the message, and `publish()`.

Group names: `async_request.user.<h>` and `async_request.anon.<h>`, where `<h>` is the SHA-256
of the `sub` or channel name in hex: always a valid group name for the channel layer (ASCII
letters, digits, `-_.`, under 100 characters), and two owners never share a group (rewriting
unsafe characters, as an earlier version did, let `alice@x.io` and `alice_x.io` hear each
other's task ids).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any

import redis

from async_request._retry import retry
from async_request.auth import Owner

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "async_request.task"  # handled by TaskStatusConsumer.async_request_task
ACTION = "async_request"
#: What "the channel layer is unreachable now" looks like (retried, then given up).
_LAYER_DOWN = (OSError, ConnectionError, TimeoutError, redis.RedisError)
_warned_no_layer = False
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0
_loop_lock = threading.Lock()


def _run(coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
    """Run `coro` on this process's notification loop (one thread, kept for reuse).

    `async_to_sync` would build a new event loop, and so a new channel-layer connection, for
    every notification; one long-lived loop per process reuses them. Created lazily and per
    PID, so a forked pool process gets its own.
    """
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():
            _loop = asyncio.new_event_loop()
            _loop_pid = os.getpid()
            threading.Thread(target=_loop.run_forever, name="async-request-notify",
                             daemon=True).start()
        loop = _loop
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


def group_for(owner: Owner) -> str:
    """The channel-layer group of an owner."""
    digest = hashlib.sha256(owner.ident.encode("utf-8", "surrogatepass")).hexdigest()
    return f"async_request.{owner.kind}.{digest}"


def client_payload(task_id: str, status: str) -> dict[str, Any]:
    """What the WebSocket client receives (the `data` string is JSON, as in the original)."""
    return {"type": "data",
            "data": json.dumps({"task_id": task_id, "status": status, "action": ACTION})}


def layer_message(task_id: str, status: str) -> dict[str, Any]:
    """The channel-layer event sent to the owner's group."""
    return {"type": MESSAGE_TYPE, "task_id": task_id, "status": status}


def publish(owner: Owner, task_id: str, status: str, *, deadline_sec: float = 120) -> bool:
    """Send a task update to the owner's group; retried while the layer is unreachable.

    Returns False when no channel layer is configured (warned once) or the deadline passed.
    """
    global _warned_no_layer
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        if not _warned_no_layer:
            logger.warning("no channel layer configured (CHANNEL_LAYERS): notifications are off")
            _warned_no_layer = True
        return False
    message = layer_message(task_id, status)
    try:
        retry(lambda: _run(layer.group_send(group_for(owner), message), 30),
              what=f"notify {owner} about {task_id}", errors=_LAYER_DOWN,
              deadline_sec=deadline_sec)
    except _LAYER_DOWN as exc:
        logger.error("gave up notifying %s about task %s: %r", owner, task_id, exc)
        return False
    return True
