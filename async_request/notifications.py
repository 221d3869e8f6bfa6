"""Channel-layer notifications: group names per owner, the message, and `publish()`.

Group names: `async_request.user.<h>` and `async_request.anon.<h>`, where `<h>` is the SHA-256
of the `sub` or channel name in hex: always a valid group name for the channel layer (ASCII
letters, digits, `-_.`, under 100 characters), and two owners never share a group (rewriting
unsafe characters, as an earlier version did, let `alice@x.io` and `alice_x.io` hear each
other's task ids).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import redis

from async_request._loop import run
from async_request._retry import retry
from async_request.auth import Owner

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "async_request.task"  # handled by TaskStatusConsumer.async_request_task
ACTION = "async_request"
#: What "the channel layer is unreachable now" looks like (retried, then given up).
_LAYER_DOWN = (OSError, ConnectionError, TimeoutError, redis.RedisError)
_warned_no_layer = False


def group_for(owner: Owner) -> str:
    """The channel-layer group of an owner."""
    digest = hashlib.sha256(owner.ident.encode("utf-8", "surrogatepass")).hexdigest()
    return f"async_request.{owner.kind}.{digest}"


def client_payload(task_id: str, status: str,
                   progress: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the WebSocket client receives (the `data` string is JSON, as in the original);
    a `running` update of a route that reports progress adds `progress`."""
    data: dict[str, Any] = {"task_id": task_id, "status": status, "action": ACTION}
    if progress is not None:
        data["progress"] = progress
    return {"type": "data", "data": json.dumps(data)}


def layer_message(task_id: str, status: str,
                  progress: dict[str, Any] | None = None) -> dict[str, Any]:
    """The channel-layer event sent to the owner's group."""
    message: dict[str, Any] = {"type": MESSAGE_TYPE, "task_id": task_id, "status": status}
    if progress is not None:
        message["progress"] = progress
    return message


def publish(owner: Owner, task_id: str, status: str, *, deadline_sec: float = 120,
            progress: dict[str, Any] | None = None, timeout_sec: float = 30) -> bool:
    """Send a task update to the owner's group; retried while the layer is unreachable, each
    try given up (and cancelled) after `timeout_sec`.

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
    message = layer_message(task_id, status, progress)
    try:
        retry(lambda: run(layer.group_send(group_for(owner), message), timeout_sec),
              what=f"notify {owner} about {task_id}", errors=_LAYER_DOWN,
              deadline_sec=deadline_sec)
    except _LAYER_DOWN as exc:
        logger.error("gave up notifying %s about task %s: %r", owner, task_id, exc)
        return False
    return True


async def apublish(owner: Owner, task_id: str, status: str) -> bool:
    """`publish` from async code (the web app): one try, False when the layer is unreachable."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        await layer.group_send(group_for(owner), layer_message(task_id, status))
    except _LAYER_DOWN as exc:
        logger.warning("could not notify %s about task %s: %r", owner, task_id, exc)
        return False
    return True
