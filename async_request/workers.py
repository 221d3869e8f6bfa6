"""Run Celery workers for async-request: one with a lifetime, or a supervised pool of them.

Why our own supervisor rather than `celery multi`: `multi` daemonizes and does not replace a
worker that retires at the end of its lifetime (KAFKA_CONSUMER_LIFETIME_SEC), and it does not
forward SIGTERM/SIGINT to foreground children; this ~80-line loop does exactly those things.
A retiring worker gets SIGTERM (Celery's warm shutdown): it finishes the task it holds, and any
message it had fetched but not acknowledged is redelivered, so nothing is lost.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from celery import Celery

from async_request.celery_config import get_celery_app
from async_request.lanes import lane_queues, parse_lanes
from async_request.settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: Below this lifetime the consumer group spends much of its time rebalancing: each retirement
#: and each replacement is a rebalance of a few seconds, and on tansu a group whose membership
#: changes every ~2 s (3 workers living 5-8 s) wedged within minutes (docs/transport.md).
SHORT_LIFETIME_SEC = 60
#: Celery worker pools that work with our transport; `asyncio` is ours (pool.py).
POOLS = ("prefork", "threads", "solo", "asyncio")
#: Our pools by name, with their dotted paths: Celery's `-P` takes only its own names, so
#: they go as `-P custom` with the path in CELERY_CUSTOM_WORKER_POOL (Celery's hook for it).
OWN_POOLS = {"asyncio": "async_request.pool:AsyncioPool"}
CUSTOM_POOL_ENV = "CELERY_CUSTOM_WORKER_POOL"
#: The help of every command's `--lanes`.
LANES_HELP = ("lanes to serve, comma separated (`default` and those of ASYNC_REQUEST_LANES); "
              "default: every lane")


def celery_pool(pool: str) -> tuple[str, dict[str, str]]:
    """Celery's `-P` value for `pool` (one of POOLS) and the environment a worker needs for it."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if pool in OWN_POOLS:
        return "custom", {CUSTOM_POOL_ENV: OWN_POOLS[pool]}
    return pool, {}


def lifetime_seconds(settings: Settings, rng: random.Random | None = None) -> float:
    """This worker's lifetime: LIFETIME + random(0..JITTER) seconds, or 0 for forever."""
    if settings.kafka_consumer_lifetime_sec <= 0:
        return 0.0
    jitter = settings.kafka_consumer_lifetime_jitter_sec
    return float(settings.kafka_consumer_lifetime_sec + (rng or random).randint(0, jitter))


def run_single_worker(app: Celery, settings: Settings, argv: Sequence[str] = ()) -> None:
    """Run one worker in this process; it retires (warm shutdown) after its lifetime."""
    lifetime = lifetime_seconds(settings)
    if 0 < settings.kafka_consumer_lifetime_sec < SHORT_LIFETIME_SEC:
        logger.warning("KAFKA_CONSUMER_LIFETIME_SEC=%d is short: every retirement rebalances "
                       "the consumer group; under %d s the group is rebalancing much of the "
                       "time (and on tansu constant churn can wedge it)",
                       settings.kafka_consumer_lifetime_sec, SHORT_LIFETIME_SEC)
    if lifetime:
        def retire() -> None:
            logger.info("worker lifetime of %.0fs reached: warm shutdown", lifetime)
            os.kill(os.getpid(), signal.SIGTERM)

        timer = threading.Timer(lifetime, retire)
        timer.daemon = True
        timer.start()
    app.worker_main(["worker", "-E", "-l", settings.kafka_log_level, *argv])


class Supervisor:
    """Keep `count` worker processes running; stop them all on SIGTERM/SIGINT."""

    def __init__(self, command: Sequence[str], count: int, *, restart_delay: float = 1.0,
                 grace_sec: float = 60.0) -> None:
        if count < 1:
            raise ValueError(f"consumers count must be >= 1, got {count}")
        self.command = list(command)
        self.count = count
        self.restart_delay = restart_delay
        self.grace_sec = grace_sec
        self.children: list[subprocess.Popen[bytes] | None] = [None] * count
        self._stopping = threading.Event()

    def _spawn(self, slot: int) -> None:
        self.children[slot] = subprocess.Popen(self.command)
        logger.info("worker %d started (pid %d)", slot, self.children[slot].pid)  # type: ignore[union-attr]

    def _on_signal(self, signum: int, _frame: object) -> None:
        logger.info("received %s: stopping %d workers", signal.Signals(signum).name, self.count)
        self._stopping.set()

    def run(self) -> None:
        """Supervise until a signal arrives, then stop every worker."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self.count):
            self._spawn(slot)
        while not self._stopping.wait(0.5):
            for slot, child in enumerate(self.children):
                if child is not None and child.poll() is not None:
                    code = child.returncode
                    logger.info("worker %d (pid %d) exited with %s; replacing it", slot,
                                child.pid, code)
                    if code != 0:
                        time.sleep(self.restart_delay)
                    if not self._stopping.is_set():
                        self._spawn(slot)
        self._stop_all()

    def _stop_all(self) -> None:
        alive = [c for c in self.children if c is not None and c.poll() is None]
        for child in alive:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_sec
        for child in alive:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker pid %d did not stop in %.0fs: killing", child.pid,
                               self.grace_sec)
                child.kill()
                child.wait()


def single_worker_command(extra: Sequence[str] = ()) -> list[str]:
    """The command that runs one worker in a child, like the current process.

    Under a manage.py: `manage.py kafka_consumer_single`. Otherwise (`async-request workers`,
    `django-admin`, a FastAPI-only project with no manage.py): the package's own entry point,
    `python -m async_request worker`, with the settings module of this process; it needs no
    manage.py and no command lookup through INSTALLED_APPS.
    """
    script = os.path.abspath(sys.argv[0])
    if script.endswith("manage.py"):
        return [sys.executable, script, "kafka_consumer_single", *extra]
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
    settings_args = ["--settings", settings_module] if settings_module else []
    return [sys.executable, "-m", "async_request", "worker", *settings_args, *extra]


def worker_options(pool: str = "prefork", concurrency: int | None = None,
                   hostname: str | None = None, lanes: str | None = None,
                   settings: Settings | None = None) -> list[str]:
    """Celery worker options for a pool (one of POOLS), a concurrency, a node name and the
    lanes to serve (`--lanes a,b`, as `-Q` with their queues; None: every lane).

    Raises ValueError for an unknown pool, ConfigurationError for a name that is no lane.
    """
    name, _ = celery_pool(pool)
    argv = ["-P", name]
    if concurrency:
        argv += ["-c", str(concurrency)]
    if hostname:
        argv += ["-n", hostname]
    if lanes is not None:
        settings = settings or get_settings()
        argv += ["-Q", ",".join(lane_queues(settings, parse_lanes(settings, lanes)))]
    return argv


def run_worker(pool: str = "prefork", concurrency: int | None = None,
               hostname: str | None = None, lanes: str | None = None) -> None:
    """Run one worker of the project's Celery app here (`kafka_consumer_single`), serving
    `lanes` (`a,b`; None: every lane)."""
    _, env = celery_pool(pool)
    if env:  # Celery read the variable when it was imported: tell its table too
        from celery.concurrency import ALIASES

        os.environ.update(env)
        ALIASES["custom"] = env[CUSTOM_POOL_ENV]
    settings = get_settings()
    run_single_worker(get_celery_app(), settings,
                      worker_options(pool, concurrency, hostname, lanes, settings))


def run_workers(count: int, pool: str = "prefork", concurrency: int = 1,
                restart_delay: float = 1.0, lanes: str | None = None) -> None:
    """Supervise `count` worker processes serving `lanes` (None: every lane) until
    SIGTERM/SIGINT (`kafka_consumer_multiple`).

    Raises ValueError for a count below 1 or an unknown pool, ConfigurationError for a name
    that is no lane.
    """
    worker_options(pool, concurrency, lanes=lanes)  # validate here, not in each child
    extra = ["--pool", pool, "--concurrency", str(concurrency)]
    if lanes is not None:
        extra += ["--lanes", lanes]
    Supervisor(single_worker_command(extra), count, restart_delay=restart_delay).run()
