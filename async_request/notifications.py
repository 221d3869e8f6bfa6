"""Channel-layer notifications: group names per owner, the message, and `publish()`.

Every update is first appended to the owner's event log (`events.py`, `record`), which gives
it its per-owner `seq`, and then sent live with that `seq`: a client that missed frames asks
the log for what followed the last seq it has.

Group names: `async_request.user.<h>` and `async_request.anon.<h>`, where `<h>` is the SHA-256
of the `sub` or channel name in hex: always a valid group name for the channel layer (ASCII
letters, digits, `-_.`, under 100 characters), and two owners never share a group (rewriting
unsafe characters, as an earlier version did, let `alice@x.io` and `alice_x.io` hear each
other's task ids).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

import redis

from async_request._loop import run
from async_request._retry import aretry, retry
from async_request.auth import Owner
from async_request.layers import Fold, Tell

if TYPE_CHECKING:
    from async_request.events import Append, Logged

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "async_request.task"  # handled by TaskStatusConsumer.async_request_task
ACTION = "async_request"
#: Optional members of an event, in the order frames carry them.
EXTRAS = ("seq", "progress", "error")
#: What "the channel layer is unreachable now" looks like (retried, then given up).
_LAYER_DOWN = (OSError, ConnectionError, TimeoutError, redis.RedisError)
_warned_no_layer = False
_folding: Fold | None = None


def group_for(owner: Owner) -> str:
    """The channel-layer group of an owner."""
    digest = hashlib.sha256(owner.ident.encode("utf-8", "surrogatepass")).hexdigest()
    return f"async_request.{owner.kind}.{digest}"


def event_data(task_id: str, status: str, progress: dict[str, Any] | None = None,
               **extra: Any) -> dict[str, Any]:
    """The JSON object of one event: `task_id`, `status`, `action` as in the original, then
    whichever of EXTRAS apply (`seq` from the event log, `progress` of a running route,
    `error` of a failed or cancelled one)."""
    data: dict[str, Any] = {"task_id": task_id, "status": status, "action": ACTION}
    extra["progress"] = progress
    data.update((name, extra[name]) for name in EXTRAS if extra.get(name) is not None)
    return data


def client_payload(task_id: str, status: str, progress: dict[str, Any] | None = None,
                   **extra: Any) -> dict[str, Any]:
    """What the WebSocket client receives (the `data` string is JSON, as in the original);
    a `running` update of a route that reports progress adds `progress`."""
    return {"type": "data", "data": json.dumps(event_data(task_id, status, progress, **extra))}


def layer_message(task_id: str, status: str, progress: dict[str, Any] | None = None,
                  **extra: Any) -> dict[str, Any]:
    """The channel-layer event sent to the owner's group."""
    return {"type": MESSAGE_TYPE, **event_data(task_id, status, progress, **extra)}


def record(owner: Owner, task_id: str, status: str, progress: dict[str, Any] | None = None,
           error: str | None = None) -> int | None:
    """Append the event to the owner's log (events.py); its seq, None if Redis is down.

    A state is recorded once per operation (a redelivery that tells the outcome again gets
    the first seq back), progress every time.
    """
    from async_request.events import event_log
    from async_request.store import get_store

    data = event_data(task_id, status, progress, error=error)
    try:
        return event_log().append(get_store().client, owner, task_id, data,
                                  once=None if progress is not None else status)
    except _LAYER_DOWN as exc:
        logger.warning("could not log the %s event of task %s: %r", status, task_id, exc)
        return None


def logged(owner: Owner | str, task_id: str, status: str,
           error: str | None = None) -> Append:
    """The append of a state event, for the store to log in the call that makes the change
    (`OperationStore.claim`, `finish`, `fail`, `cancelled`): what `record` would log; with
    the live send when the channel layer can be folded into that call (`layers.Fold`)."""
    from async_request.events import event_log

    entry = event_log().entry(owner, task_id, event_data(task_id, status, error=error),
                              once=status)
    parsed = owner if isinstance(owner, Owner) else Owner.parse(owner)
    tell = _tell(parsed, task_id, status, error=error)
    return entry if tell is None else dataclasses.replace(entry, tell=tell)


def _tell(owner: Owner, task_id: str, status: str, progress: dict[str, Any] | None = None,
          error: str | None = None) -> Tell | None:
    """The event's send for a script to run, when the layer can be folded (`layers.Fold`)."""
    fold = _fold()
    return None if fold is None else fold.tell(
        group_for(owner), layer_message(task_id, status, progress, error=error))


def _fold() -> Fold | None:
    """The configured layer's `Fold` against the store's Redis (made once per layer)."""
    global _folding
    from channels.layers import get_channel_layer

    from async_request.store import get_store

    layer = get_channel_layer()
    if layer is None:
        return None
    url = get_store().redis_url
    if _folding is None or _folding.layer is not layer or _folding.redis_url != url:
        _folding = Fold(layer, url)
    return _folding


async def arecord(owner: Owner, task_id: str, status: str,
                  error: str | None = None, progress: dict[str, Any] | None = None) -> Logged:
    """`record` from async code (the web app, the asyncio pool); when the layer can be folded
    (`layers.Fold`) the event is also sent in the same Redis call (`Logged.told`), one round
    trip instead of three. Not logged (seq None) when Redis is down."""
    from async_request.events import Logged, event_log
    from async_request.store import get_store

    data = event_data(task_id, status, progress, error=error)
    once = None if progress is not None else status
    tell = _tell(owner, task_id, status, progress, error)
    client = get_store().aclient()
    try:
        if tell is not None:
            return await event_log().aappend_and_tell(client, owner, task_id, data, tell,
                                                      once=once)
        return Logged(await event_log().aappend(client, owner, task_id, data, once=once))
    except _LAYER_DOWN as exc:
        logger.warning("could not log the %s event of task %s: %r", status, task_id, exc)
        return Logged()


def publish(owner: Owner, task_id: str, status: str, *, deadline_sec: float = 120,
            progress: dict[str, Any] | None = None, error: str | None = None,
            timeout_sec: float = 30, seq: int | None = None, told: bool = False) -> bool:
    """Log a task update (`record`) and send it to the owner's group; retried while the layer
    is unreachable, each try given up (and cancelled) after `timeout_sec`. `seq`: the update
    was already logged (in the store's call that made the change, see `logged`) as this seq;
    `told`: that call sent it too, nothing is left to do.

    Returns False when no channel layer is configured (warned once) or the deadline passed.
    """
    if told:
        return True
    layer = _configured_layer()
    if layer is None:
        return False
    if seq is None:
        seq = record(owner, task_id, status, progress, error)
    message = layer_message(task_id, status, progress, seq=seq, error=error)
    try:
        retry(lambda: run(layer.group_send(group_for(owner), message), timeout_sec),
              what=f"notify {owner} about {task_id}", errors=_LAYER_DOWN,
              deadline_sec=deadline_sec)
    except _LAYER_DOWN as exc:
        logger.error("gave up notifying %s about task %s: %r", owner, task_id, exc)
        return False
    return True


def _configured_layer() -> Any:
    """The channel layer, or None when CHANNEL_LAYERS names none (warned once per process:
    notifications are off, everything else works)."""
    global _warned_no_layer
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None and not _warned_no_layer:
        logger.warning("no channel layer configured (CHANNEL_LAYERS): notifications are off")
        _warned_no_layer = True
    return layer


async def apublish(owner: Owner, task_id: str, status: str, *,
                   error: str | None = None) -> bool:
    """`publish` from async code (the web app): one try, False when the layer is unreachable."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    logged = await arecord(owner, task_id, status, error)
    if logged.told:
        return True
    if layer is None:
        return False
    try:
        await layer.group_send(group_for(owner), layer_message(task_id, status, seq=logged.seq,
                                                               error=error))
    except _LAYER_DOWN as exc:
        logger.warning("could not notify %s about task %s: %r", owner, task_id, exc)
        return False
    return True


async def anotify(owner: Owner, task_id: str, status: str, *, deadline_sec: float = 120,
                  progress: dict[str, Any] | None = None, error: str | None = None,
                  timeout_sec: float = 30, seq: int | None = None, told: bool = False) -> bool:
    """`publish` from a coroutine on the worker's loop (the asyncio pool): the same log,
    retries and give-up rules, without a hop to another thread."""
    if told:
        return True
    layer = _configured_layer()
    if layer is None:
        return False
    if seq is None:
        logged = await arecord(owner, task_id, status, error, progress)
        if logged.told:
            return True
        seq = logged.seq
    message = layer_message(task_id, status, progress, seq=seq, error=error)
    try:
        await aretry(lambda: asyncio.wait_for(layer.group_send(group_for(owner), message),
                                              timeout_sec),
                     what=f"notify {owner} about {task_id}", errors=_LAYER_DOWN,
                     deadline_sec=deadline_sec)
    except _LAYER_DOWN as exc:
        logger.error("gave up notifying %s about task %s: %r", owner, task_id, exc)
        return False
    return True
