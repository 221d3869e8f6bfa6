"""Channel-layer notifications: group names per owner, the message, and `publish()`.

Group names: `async_request.user.<sub>` and `async_request.anon.<channel>`; both fit the channel
layer's rule (ASCII letters, digits, `-_.`, under 100 characters) because `sub` is checked here
and channel names are validated before they get here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from collections.abc import Coroutine
from typing import Any

from async_request.auth import Owner

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "async_request.task"  # handled by TaskStatusConsumer.async_request_task
ACTION = "async_request"
_GROUP_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
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
    ident = _GROUP_SAFE.sub("_", owner.ident)[:64]
    return f"async_request.{owner.kind}.{ident}"


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
    deadline = time.monotonic() + deadline_sec
    delay = 0.2
    while True:
        try:
            _run(layer.group_send(group_for(owner), layer_message(task_id, status)), 30)
            return True
        except (OSError, ConnectionError, TimeoutError) as exc:
            error: Exception = exc
        except Exception as exc:  # redis errors are not OSError subclasses
            if type(exc).__module__.split(".")[0] != "redis":
                raise
            error = exc
        if time.monotonic() >= deadline:
            logger.error("gave up notifying %s about task %s: %r", owner, task_id, error)
            return False
        logger.warning("notify %s about %s failed (%r); retrying in %.1fs", owner, task_id,
                       error, delay)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
