"""What a worker does with one queued request: claim → replay → store → notify.

The claim (see `store.OperationStore.claim`) keeps a redelivered request from running twice: a
run that finished hands back its stored outcome. A run that died mid-way (worker killed, its
lease expired) leaves the outcome unknown; the rule for it (`may_run_again`):

- idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE: RFC 9110 §9.2.2) run again;
- a request carrying an `Idempotency-Key` header runs again (the app promised to honour it);
- a route listed in ASYNC_REQUEST_IDEMPOTENT_ROUTES runs again: it deduplicates on the task id
  that `dependencies.replay_of()` gives it (the sample's order creation does);
- anything else (a plain POST or PATCH) is not run a second time: the operation ends `failed`
  with an "interrupted" error, and the client decides.

A replay has a time limit (`time_limit`): the first ASYNC_REQUEST_ROUTE_TIMEOUTS entry that
matches its method and path, else ASYNC_REQUEST_REPLAY_TIMEOUT_SEC. Over it, the operation
ends `failed` with a reason naming the limit, and the worker takes its next task: an async
route is cancelled; a thread running a sync route is left to finish in the background; a
route that blocks the event loop itself is given up on a moment later (the next replay of that
process then starts when it returns).

Every outcome, failures included, is written to the store first and then told to the owner;
the owner is the one the store recorded at accept time, never one named by the message. A
route's progress (`progress.report_progress`) is written and told by the lease thread while the
run holds its lease, so it always comes before the outcome.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from async_request._dotted import import_object
from async_request._loop import process_loop, run
from async_request.auth import Owner
from async_request.cancel_watch import get_watch
from async_request.envelope import RequestEnvelope
from async_request.exceptions import (
    AsyncRequestError,
    ConfigurationError,
    EnvelopeError,
    ReplayCancelledError,
    ReplayInterruptedError,
    ReplayTimeoutError,
)
from async_request.lifespan import Lifespan
from async_request.notifications import logged, publish
from async_request.progress import Progress, ProgressReporter
from async_request.records import Claim
from async_request.replay import Cancel, ReplayResult, replay, wait_for_tails
from async_request.results.status import progress_body
from async_request.settings import Settings, get_settings
from async_request.store import OperationStore, get_store
from async_request.types import ASGIApp

logger = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Past its limit (and a cancel's grace) a replay gets this long before the worker stops
#: waiting for an event loop that a route blocks.
LOOP_MARGIN_SEC = 1.0
#: How long a stopping worker waits for what its replays run after their answer.
TAILS_GRACE_SEC = 10.0


def may_run_again(envelope: RequestEnvelope, settings: Settings) -> bool:
    """True when a request whose earlier run died mid-way may safely run again."""
    method = envelope.method.upper()
    if method in IDEMPOTENT_METHODS:
        return True
    if any(name == "idempotency-key" for name, _ in envelope.headers):
        return True
    return any(method == route_method and pattern.fullmatch(envelope.path)
               for route_method, pattern in settings.idempotent_routes)


def time_limit(envelope: RequestEnvelope, settings: Settings) -> tuple[float, str]:
    """The replay's time limit in seconds and where it comes from: the first entry of
    ASYNC_REQUEST_ROUTE_TIMEOUTS matching method and path, else ASYNC_REQUEST_REPLAY_TIMEOUT_SEC."""
    method = envelope.method.upper()
    for route_method, pattern, seconds in settings.route_timeouts:
        if method == route_method and pattern.fullmatch(envelope.path):
            return seconds, (f"ASYNC_REQUEST_ROUTE_TIMEOUTS: {route_method} "
                             f"{pattern.pattern} {seconds:g}")
    return settings.replay_timeout_sec, "ASYNC_REQUEST_REPLAY_TIMEOUT_SEC"


@lru_cache(maxsize=4)
def load_asgi_app(path: str) -> ASGIApp:
    """Import the ASGI app named by ASYNC_REQUEST_ASGI_APP ('module:attribute')."""
    if not path:
        raise ConfigurationError(
            "setting ASYNC_REQUEST_ASGI_APP is empty: the worker needs the dotted path of the "
            "ASGI app to replay requests into, e.g. 'myproject.asgi:application'"
        )
    app: ASGIApp = import_object(path, "application", "ASYNC_REQUEST_ASGI_APP")
    return app


#: The started replay target of this process: (pid, path) -> its lifespan.
_started: dict[tuple[int, str], Lifespan] = {}
#: A threads pool's first tasks arrive together: one of them starts the lifespan.
_starting = threading.Lock()


def replay_target(path: str) -> tuple[ASGIApp, dict[str, Any]]:
    """The replay target and its lifespan state, started once in this process (on its loop)."""
    app = load_asgi_app(path)
    key = (os.getpid(), path)
    lifespan = _started.get(key)
    if lifespan is None:
        with _starting:
            lifespan = _started.get(key)
            if lifespan is None:
                lifespan = Lifespan(app)
                run(lifespan.startup())
                _started[key] = lifespan
    return app, lifespan.state


def preload_asgi_app(**_: Any) -> None:
    """Import the replay target when a worker starts, not on its first task."""
    path = get_settings().asgi_app
    if path:
        load_asgi_app(path)


def start_replay_target(**_: Any) -> None:
    """Start the replay target (its lifespan) in a pool process that replays, at its start."""
    path = get_settings().asgi_app
    if path:
        replay_target(path)


def stop_replay_target(**_: Any) -> None:
    """Run the lifespan shutdown of this process's replay target (worker or pool exit), once
    what replays left running after their answer (`replay.wait_for_tails`) ended or had
    TAILS_GRACE_SEC."""
    started = [k for k in _started if k[0] == os.getpid()]
    if started:  # else nothing replayed here
        run(wait_for_tails(TAILS_GRACE_SEC), timeout=TAILS_GRACE_SEC + 5)
    for key in started:
        run(_started.pop(key).shutdown(), timeout=70)


def short_error(exc: BaseException) -> str:
    """A one-line reason for a failed operation, never a traceback."""
    if isinstance(exc, AsyncRequestError) and not isinstance(exc, ConfigurationError):
        return str(exc)[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


@contextlib.contextmanager
def _lease(store: OperationStore, task_id: str, worker: str, cancel: Cancel,
           progress: ProgressReporter,
           write: Callable[[Progress, bool], None]) -> Iterator[None]:
    """Keep renewing our claim while the replay runs (so others know we are alive), flip
    the replay's cancel switch when the renewal says its owner cancelled it, and `write` the
    route's progress when it is due; at the end, write what was not written yet (unsent).

    One thread per run however often the route reports: it sleeps until the next renewal or
    the next progress write, whichever is first, and `progress.wake` rouses it early.
    """
    stop = threading.Event()
    period = store.lease_sec / 3

    def beat() -> None:
        renew_at = time.monotonic() + period
        while not stop.is_set():
            now = time.monotonic()
            if now >= renew_at:
                renew_at = now + period
                if store.renew(task_id, worker) and not cancel.is_set():
                    logger.info("task %s: its owner cancelled it; telling the replay", task_id)
                    cancel.request()
            due = progress.due(now)
            if due == 0:
                taken = progress.take(now)
                if taken is not None:
                    write(taken, True)
                continue
            progress.wake.wait(renew_at - now if due is None else min(due, renew_at - now))
            # A report that lands between the wait and this clear is seen by the next due().
            progress.wake.clear()

    thread = threading.Thread(target=beat, name=f"lease-{task_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        progress.wake.set()
        thread.join()
        last = progress.close()
        if last is not None:  # the outcome follows at once: stored, not sent
            write(last, False)


def execute(envelope_data: dict[str, Any], *, task_id: str, worker: str) -> dict[str, Any]:
    """Run one queued request exactly once; return a summary {task_id, state, status}.

    Raises (after recording the failure and telling the owner) when the operation failed, so
    Celery and Flower see the task as failed too.
    """
    wire_id = envelope_data.get("task_id") if isinstance(envelope_data, dict) else None
    if wire_id != task_id:
        raise EnvelopeError(f"envelope of task {wire_id} delivered as task {task_id}")
    store = get_store()
    # The owner the message names, only to log `running` in the claim's own call: the claim
    # logs it only when that is the stored owner (see OperationStore.claim).
    named = str(envelope_data.get("owner", ""))
    claim = store.claim(task_id, worker, logged(named, task_id, "running") if named else None)
    if claim.action == "unknown":
        # Withdrawn after a failed publish (the client got 503), or older than the result expiry.
        raise EnvelopeError(f"task {task_id} is unknown to the store (withdrawn or expired)")
    owner = Owner.parse(claim.owner)
    if claim.action == "done":
        logger.info("task %s already ran; its stored outcome stands", task_id)
        publish(owner, task_id, "completed")
        return {"task_id": task_id, "state": "completed",
                "status": (claim.result or {}).get("status")}
    if claim.action == "failed":
        publish(owner, task_id, "failed", error=claim.error)
        raise ReplayInterruptedError(claim.error or "an earlier run of this task failed")
    if claim.action == "cancelled":
        # Cancelled while it waited: the store said so before anything ran (its owner was
        # told when it cancelled); the message is acknowledged and nothing is replayed.
        logger.info("task %s was cancelled before it ran; not replayed", task_id)
        return {"task_id": task_id, "state": "cancelled", "status": None}
    # Started: its owner hears `running` (logged once per operation, so a resumed run says it
    # again with the same seq); a short try, the run does not wait for a slow layer.
    publish(owner, task_id, "running", deadline_sec=0, timeout_sec=5, seq=claim.seq,
            told=claim.told)
    try:
        # Opened after the claim, so an envelope that cannot be opened (the secret changed)
        # ends as a recorded failure its owner hears about.
        envelope = RequestEnvelope.from_dict(envelope_data, get_settings().secret_key)
        result = _replay(envelope, claim, store, worker)
    # Each outcome is stored and logged in one call (its seq), then pushed.
    except ReplayCancelledError as exc:
        ended = store.cancelled(task_id, str(exc),
                                logged(owner, task_id, "cancelled", str(exc)))
        publish(owner, task_id, "cancelled", error=str(exc), seq=ended.seq, told=ended.told)
        return {"task_id": task_id, "state": "cancelled", "status": None}
    except Exception as exc:
        error = short_error(exc)
        ended = store.fail(task_id, error, logged(owner, task_id, "failed", error))
        publish(owner, task_id, "failed", error=error, seq=ended.seq, told=ended.told)
        raise
    ended = store.finish(task_id, result.to_dict(), logged(owner, task_id, "completed"))
    publish(owner, task_id, "completed", seq=ended.seq, told=ended.told)
    return {"task_id": task_id, "state": "completed", "status": result.status}


def check_resume(envelope: RequestEnvelope, claim: Claim, settings: Settings) -> None:
    """A run after one that died mid-way (`claim.action == "resume"`) goes on only when the
    request may run again (`may_run_again`); else ReplayInterruptedError. Both pools' replays."""
    if claim.action != "resume":
        return
    if not may_run_again(envelope, settings):
        raise ReplayInterruptedError(
            f"an earlier run of this {envelope.method} request stopped mid-way; it is not "
            "run again because the method is not idempotent")
    logger.warning("task %s: earlier run died mid-way; running attempt %d", envelope.task_id,
                   claim.attempt)


def _replay(envelope: RequestEnvelope, claim: Claim, store: OperationStore,
            worker: str) -> ReplayResult:
    settings = get_settings()
    task_id = envelope.task_id
    check_resume(envelope, claim, settings)
    body = envelope.body if envelope.body is not None else store.load_body(task_id)
    if body is None:
        raise EnvelopeError(f"the stored body of task {task_id} has expired")
    app, state = replay_target(settings.asgi_app)
    cancel = Cancel(process_loop(), settings.cancel_grace_sec)
    progress = ProgressReporter(settings.progress_interval_sec, threading.Event())
    scope = envelope.to_scope({"task_id": task_id, "attempt": claim.attempt, "cancel": cancel,
                               "progress": progress})
    scope["state"] = dict(state)  # what the lifespan set up, as a server passes it on
    owner = Owner.parse(claim.owner)

    def write(report: Progress, tell: bool) -> None:
        # Told only once stored: the store refuses a write after the run ended; one short
        # try only, so a slow channel layer never holds up the lease renewals.
        if store.progress(task_id, worker, report) and tell:
            publish(owner, task_id, "running", progress=progress_body(report), deadline_sec=0,
                    timeout_sec=store.lease_sec / 3)

    timeout, limit = time_limit(envelope, settings)
    with get_watch(settings.redis_url).watching(task_id, cancel), \
            _lease(store, task_id, worker, cancel, progress, write):
        try:
            # The replay keeps its own limit; this one is for a route that blocks the event
            # loop (sync code in an async route), where no asyncio timeout can fire.
            return run(replay(app, scope, body, task_id=task_id, endpoint=envelope.path,
                              timeout=timeout, cancel=cancel, limit=limit),
                       timeout=timeout + settings.cancel_grace_sec + LOOP_MARGIN_SEC)
        except TimeoutError as exc:
            logger.error("task %s: %s %s blocks the event loop of this worker process; the "
                         "next replay starts when it returns", task_id, envelope.method,
                         envelope.path)
            raise ReplayTimeoutError(
                f"the request did not finish within {timeout:g}s ({limit}); it blocked the "
                "worker's event loop") from exc
