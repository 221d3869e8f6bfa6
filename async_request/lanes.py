"""Lanes: a route's requests get a queue (a Kafka topic) of their own, so a slow route cannot
hold up fast ones.

With one queue, a flood of 30-second reports sits in front of every quick request behind it;
the workers that would run the quick ones are busy with reports or waiting behind them in the
same partitions. ASYNC_REQUEST_LANES maps routes to lanes::

    ASYNC_REQUEST_LANES = ["GET ^/api/v1/reports/.*$ slow", "POST ^/api/v1/exports/$ slow"]

- `"METHOD path-regex lane"` entries, first match wins (as ASYNC_REQUEST_ROUTE_TIMEOUTS: the
  method exactly, the regex on the whole path); a lane's name holds letters, digits, `_`, `-`.
- Every other route goes to the lane `default`, whose queue is KAFKA_TOPIC_ASYNC_BG (what it
  was before lanes); the lane `slow` is the queue (and topic) `<KAFKA_TOPIC_ASYNC_BG>.slow`,
  created by the transport like the default one (KAFKA_TOPIC_PARTITIONS partitions).
- The lane is decided when a request is accepted and kept in its operation record: a re-run
  and the sweep's re-publish go to the same lane (the route's lane now, if that lane is no
  longer configured: no worker would serve it).
- A worker serves every lane unless told otherwise: `kafka_consumer_single --lanes default`,
  `async-request worker --lanes slow`, or Celery's own `celery -A app worker -Q <queues>`
  with queue names (`lane_queues` prints them). A lane name or a lane queue that is not
  configured stops the worker at start with an error naming it; queues outside the lanes'
  names (a project's own tasks) are left alone.
- A worker logs the lanes it serves when it starts; Flower's worker page (Queues) and
  `celery inspect active_queues` show the queues.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from async_request.exceptions import ConfigurationError
from async_request.settings import Settings

logger = logging.getLogger(__name__)

#: The lane of every route ASYNC_REQUEST_LANES does not name; its queue is KAFKA_TOPIC_ASYNC_BG.
DEFAULT_LANE = "default"


def lane_names(settings: Settings) -> tuple[str, ...]:
    """Every lane: `default` first, then those ASYNC_REQUEST_LANES names, in its order."""
    names = [DEFAULT_LANE]
    for _method, _pattern, lane in settings.lanes:
        if lane not in names:
            names.append(lane)
    return tuple(names)


def lane_for(settings: Settings, method: str, path: str) -> str:
    """The lane of a request: the first ASYNC_REQUEST_LANES entry matching it, else `default`."""
    method = method.upper()
    for route_method, pattern, lane in settings.lanes:
        if method == route_method and pattern.fullmatch(path):
            return lane
    return DEFAULT_LANE


def resolve(settings: Settings, stored: str | None, method: str, path: str) -> str:
    """The lane to publish an operation to again: the one it was accepted on (`stored`) while
    that lane is configured, else the route's lane now."""
    if stored and stored in lane_names(settings):
        return stored
    lane = lane_for(settings, method, path)
    if stored:
        logger.warning("lane %r of ASYNC_REQUEST_LANES is gone: %s %s goes to lane %r",
                       stored, method, path, lane)
    return lane


def queue_name(settings: Settings, lane: str) -> str:
    """The Celery queue (Kafka topic) of `lane`."""
    base = settings.kafka_topic_async_bg
    return base if lane == DEFAULT_LANE else f"{base}.{lane}"


def lane_queues(settings: Settings, lanes: Iterable[str] | None = None) -> list[str]:
    """The queues of `lanes` (default: every lane), as `celery worker -Q` takes them."""
    return [queue_name(settings, lane) for lane in (lanes or lane_names(settings))]


def parse_lanes(settings: Settings, value: str) -> tuple[str, ...]:
    """The lanes of a `--lanes a,b` value; ConfigurationError naming what is not a lane."""
    wanted = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    known = lane_names(settings)
    unknown = [lane for lane in wanted if lane not in known]
    if not wanted or unknown:
        what = f"{unknown[0]!r} is not a lane" if unknown else "no lane named"
        raise ConfigurationError(
            f"--lanes {value!r}: {what}; the lanes are {', '.join(known)} "
            "(`default` and those of ASYNC_REQUEST_LANES)")
    return wanted


def lanes_of_queues(settings: Settings, queues: Sequence[str]) -> tuple[str, ...]:
    """The lanes a worker consuming `queues` serves; ConfigurationError naming a queue that
    looks like a lane's (`<KAFKA_TOPIC_ASYNC_BG>.<name>`) and is none (a typo in `-Q`)."""
    by_queue = {queue_name(settings, lane): lane for lane in lane_names(settings)}
    prefix = settings.kafka_topic_async_bg + "."
    for queue in queues:
        if queue not in by_queue and queue.startswith(prefix):
            raise ConfigurationError(
                f"-Q {queue!r}: no lane has this queue; the lanes' queues are "
                f"{', '.join(by_queue)} (ASYNC_REQUEST_LANES)")
    return tuple(by_queue[queue] for queue in queues if queue in by_queue)


def describe(settings: Settings, lanes: Sequence[str]) -> str:
    """`default (queue q), slow (queue q.slow)`: what a worker says it serves."""
    if not lanes:
        return "no lane (none of its queues is a lane's)"
    return ", ".join(f"{lane} (queue {queue_name(settings, lane)})" for lane in lanes)
