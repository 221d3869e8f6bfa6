"""The sample stack as a library: web app, Celery workers and Flower on one broker and Redis.

`Stack` starts the processes of one stack (each in its own process group, logging to
`<log_dir>/<name>.log`) and waits until each answers; `private_stack` is a throw-away stack for
benchmarks. Users: `make run` (tools/devstack.py), the test fixtures (tests/integration/stack.py)
and bench/. Broker and Redis come from tools/services.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools import logfilter
from tools.services import (
    Service,
    ensure_redis,
    free_port,
    port_open,
    python,
    redis_url_with_db,
    spawn,
    start_tansu,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "sample_project"
SETTINGS_MODULE = "sample_project.settings"
ASGI_APP = "sample_project.asgi:application"
CELERY_APP = "celery_app"
HEALTH_PATH = "/api/v1/health/"
RESULTS_PATH = "/api/v1/async_background_response/"
WORKER_READY = re.compile(r"@\S+ ready\.")


class StartError(RuntimeError):
    """A component did not come up; the message ends with the tail of its log."""


@contextlib.contextmanager
def private_stack(name: str, redis_db: int, root: Path = ROOT,
                  database_url: str | None = None, broker: str = "tansu",
                  extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A throw-away stack for benchmarks: own broker and temp dir, Redis DB `redis_db` flushed.

    `root`: the source tree whose `celery_app.py`, `sample_project/` and `async_request/` the
    stack's processes run (another checkout of the project, for a before/after comparison).
    `database_url`: the sample's database (PostgreSQL); default a fresh SQLite file. The stack
    is migrated; the caller starts the web app and workers it needs; `stack.backing` holds the
    broker and Redis. `broker`: "tansu", or "apache" for one Apache Kafka node
    (tools/apache_kafka.py). `extra_env`: more environment for the stack's processes.
    Everything is stopped on exit.
    """
    import tempfile

    import redis

    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    broker_service = start_broker(broker, workdir / "kafka.log")
    redis_service = ensure_redis(log_path=workdir / "redis.log")
    redis_url = redis_url_with_db(redis_service.url, redis_db)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    stack = Stack(kafka=broker_service.url, redis_url=redis_url, log_dir=workdir / "logs",
                  database_url=database_url,
                  sqlite_path=None if database_url else workdir / "db.sqlite3",
                  # One bench user sends every request: no per-owner in-flight cap (429s).
                  extra_env={"BS_KAFKA_TOPIC_ASYNC_BG": name, "BS_KAFKA_GROUP_ID": name,
                             "BS_ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER": "0", **(extra_env or {})},
                  root=root, backing=[broker_service, redis_service])
    try:
        stack.migrate()
        yield stack
    finally:
        stack.stop()
        broker_service.stop()
        redis_service.stop()


def start_broker(kind: str, log_path: Path) -> Service:
    """A broker of our own: "tansu" (no Java) or "apache" (one Apache Kafka 4.x node)."""
    if kind == "tansu":
        return start_tansu(log_path=log_path)
    if kind == "apache":
        from tools.apache_kafka import start_single

        return start_single(log_path=log_path)
    raise ValueError(f"broker {kind!r}: use 'tansu' or 'apache'")


def tail(path: Path | None, lines: int = 40) -> str:
    """The last `lines` lines of a log file ('' when there is none)."""
    if path is None or not path.exists():
        return ""
    data = path.read_bytes()[-64 * 1024:]
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def log_tails(log_dir: Path, lines: int = 60) -> str:
    """`tail` of every `*.log` in log_dir, each under a header line (for failure reports)."""
    parts = [f"logs in {log_dir}"]
    for path in sorted(log_dir.glob("*.log")):
        parts.append(f"----- {path.name} (last {lines} lines) -----\n{tail(path, lines)}")
    return "\n".join(parts)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of GET url, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local URL
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class Stack:
    """The processes of one sample stack, all pointing at one broker, Redis and database."""

    kafka: str
    redis_url: str
    log_dir: Path
    database_url: str | None = None
    sqlite_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    root: Path = ROOT
    #: Flower's basic-auth user and password (a random password unless given).
    flower_auth: tuple[str, str] = field(
        default_factory=lambda: ("admin", secrets.token_urlsafe(18)))
    services: list[Service] = field(default_factory=list)
    #: Services the stack runs on but does not own (private_stack: broker, Redis).
    backing: list[Service] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """Environment for every child process (web, worker, Flower, manage.py)."""
        env = dict(os.environ)
        path = [str(self.root), str(self.root / "sample_project")]
        if env.get("PYTHONPATH"):
            path.append(env["PYTHONPATH"])
        env.update(
            PYTHONPATH=os.pathsep.join(path),
            PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE=SETTINGS_MODULE,
            KAFKA_BOOTSTRAP_SERVERS=self.kafka,
            BS_KAFKA_BOOTSTRAP_SERVERS=self.kafka,
            REDIS_URL=self.redis_url,
            BS_ASYNC_REQUEST_REDIS_URL=self.redis_url,
        )
        env.pop("DATABASE_URL", None)
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.sqlite_path is not None:
            env["SQLITE_PATH"] = str(self.sqlite_path)
        # Flower runs with basic auth (start_flower); its unauthenticated API stays off.
        env.pop("FLOWER_UNAUTHENTICATED_API", None)
        env.update(self.extra_env)
        return env

    # -- one-shot commands -------------------------------------------------------------

    def manage(self, *args: str, check: bool = True,
               timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run `manage.py *args` with the stack's env; raise StartError on failure if check."""
        argv = [python(), str(self.root / "sample_project" / "manage.py"), *args]
        done = subprocess.run(
            argv, env=self.env(), cwd=self.root, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=timeout, check=False,
        )
        if check and done.returncode != 0:
            raise StartError(
                f"manage.py {shlex.join(args)} failed with code {done.returncode}:\n"
                f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        return done

    def migrate(self) -> None:
        """Apply the sample's migrations."""
        self.manage("migrate", "--noinput")

    def create_user(self, username: str, password: str) -> None:
        """Create (or keep) a user of the sample with `create_demo_user`."""
        self.manage("create_demo_user", username, "--password", password)

    def issue_token(self, username: str) -> str:
        """A JWT for username, from `manage.py issue_token`."""
        out = self.manage("issue_token", username).stdout
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if not lines:
            raise StartError(f"issue_token {username} printed nothing")
        return lines[-1]

    # -- long-running processes ----------------------------------------------------------

    def _log(self, name: str) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{name}.log"

    def unique_name(self, base: str) -> str:
        """`base` the first time, then base-2, base-3, ... (log files and worker node names)."""
        self._counts[base] = self._counts.get(base, 0) + 1
        count = self._counts[base]
        return base if count == 1 else f"{base}-{count}"

    def start(self, name: str, argv: Sequence[str], url: str,
              ready: Callable[[Service], bool], timeout: float,
              env: dict[str, str] | None = None) -> Service:
        """Spawn argv (own process group, log in log_dir) and wait until ready(service)."""
        log = self._log(name)
        log.write_bytes(b"")
        proc = spawn(list(argv), log, env={**self.env(), **(env or {})}, cwd=self.root)
        service = Service(name, url, proc, log=log)
        self.services.append(service)
        wait_until(service, ready, timeout)
        return service

    def start_web(self, port: int | None = None, timeout: float = 60) -> Service:
        """uvicorn serving the sample (HTTP + WebSocket); ready when the health check is 200."""
        port = port or free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [python(), "-m", "uvicorn", ASGI_APP, "--host", "127.0.0.1", "--port", str(port)]
        # Access and WebSocket log lines without query strings: those carry credentials. (A
        # checkout older than the filter, a bench baseline, runs uvicorn as it did.)
        if (self.root / "tools" / "logfilter.py").exists():
            log_config = self._log("web-logging").with_suffix(".json")
            log_config.write_text(json.dumps(logfilter.log_config()))
            argv += ["--log-config", str(log_config)]
        return self.start(
            "web", argv, base, lambda _svc: http_status(base + HEALTH_PATH) == 200, timeout
        )

    def start_worker(self, pool: str = "prefork", concurrency: int = 2,
                     extra_args: Sequence[str] = (), timeout: float = 90) -> CeleryProcess:
        """A Celery worker (events on); ready when its log says `ready.`."""
        from async_request.workers import celery_pool  # `asyncio` is ours: `-P custom` + env

        name = self.unique_name("worker")
        pool, pool_env = celery_pool(pool)
        env = {**self.env(), **pool_env}
        args = ["worker", "-E", "-l", "INFO", "-P", pool, "-c", str(concurrency),
                "-n", f"{name}@%h", *extra_args]
        worker = CeleryProcess.start(name, CELERY_APP, args, self._log(name), env,
                                     cwd=self.root)
        self.services.append(worker)
        worker.wait_ready(timeout, interval=0.2)
        return worker

    def start_flower(self, port: int | None = None, timeout: float = 60) -> Service:
        """Flower on port with basic auth (`flower_auth`); ready when the port accepts connections.

        With authentication on, Flower sends no `Access-Control-Allow-Origin: *` and checks its
        XSRF cookie on every POST: a page of another site can neither read nor steer it.
        """
        port = port or free_port()
        user, password = self.flower_auth
        argv = [python(), "-m", "celery", "-A", CELERY_APP, "flower", f"--port={port}",
                "--address=127.0.0.1"]
        # From the environment, not argv: any local user can read a process's arguments.
        return self.start(
            "flower", argv, f"http://127.0.0.1:{port}",
            lambda _svc: port_open("127.0.0.1", port), timeout,
            env={"FLOWER_BASIC_AUTH": f"{user}:{password}"},
        )

    def celery_ping(self, timeout: float = 10) -> bool:
        """True when some worker answers `celery inspect ping` (needs broadcast support)."""
        done = subprocess.run(
            [python(), "-m", "celery", "-A", CELERY_APP, "inspect", "ping", "-t", "5"],
            env=self.env(), cwd=self.root, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=timeout, check=False,
        )
        return done.returncode == 0 and "pong" in done.stdout

    def stop(self) -> None:
        """Stop every process this stack started, newest first."""
        while self.services:
            service = self.services.pop()
            service.stop(timeout=15 if service.name.startswith("worker") else 5)

    def stop_service(self, service: Service) -> None:
        """Stop one process of this stack and forget it."""
        service.stop(timeout=15)
        with contextlib.suppress(ValueError):
            self.services.remove(service)

    def logs(self) -> Iterator[Path]:
        """The log files of this stack."""
        return iter(sorted(self.log_dir.glob("*.log")))


def worker_ready(service: Service) -> bool:
    """True once a Celery worker's log has its `celery@host ready.` line."""
    return service.log is not None and bool(
        WORKER_READY.search(service.log.read_text(errors="replace")))


def wait_until(service: Service, ready: Callable[[Service], bool], timeout: float,
               interval: float = 0.2, needle: str | None = None) -> None:
    """Poll ready(service); raise StartError (with the log's tail) on exit or timeout.

    `needle`: what `ready` looks for in the log, named in the error.
    """
    proc = service.process
    deadline = time.monotonic() + timeout
    while not ready(service):
        if proc is not None and proc.poll() is not None:
            waiting = "while starting" if needle is None else f"before logging {needle!r}"
            raise StartError(f"{service.name} exited with code {proc.returncode} {waiting}; "
                             f"log {service.log}:\n{tail(service.log)}")
        if time.monotonic() > deadline:
            missing = "not ready" if needle is None else f"{needle!r} not logged"
            raise StartError(f"{service.name} {missing} after {timeout:.0f}s; "
                             f"log {service.log}:\n{tail(service.log)}")
        time.sleep(interval)


@dataclass
class CeleryProcess(Service):
    """A `celery -A <app> ...` command (a worker, Flower) in its own process group.

    Its output goes to `log`; `started` is the monotonic time of the spawn. `stop()` (SIGTERM
    to the group, then SIGKILL) and `kill()` (SIGKILL to the group) come from `Service`.
    """

    started: float = 0.0

    @classmethod
    def start(cls, name: str, app: str, args: Sequence[str], log: Path, env: dict[str, str],
              cwd: Path = ROOT) -> CeleryProcess:
        """Spawn `celery -A app *args` with a fresh log; return at once (see `wait_ready`)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")
        started = time.monotonic()
        proc = spawn([python(), "-m", "celery", "-A", app, *args], log, env=env, cwd=cwd)
        return cls(name, f"{name}@", proc, log=log, started=started)

    def text(self) -> str:
        """The log so far."""
        return self.log.read_text(errors="replace") if self.log is not None else ""

    def wait_for(self, needle: str | re.Pattern[str], timeout: float = 30.0,
                 interval: float = 0.05) -> float:
        """Wait until `needle` (a substring or a pattern) is in the log; seconds since spawn.

        Raises StartError, with the log's tail, when the process exits first or on timeout.
        """
        def seen(_service: Service) -> bool:
            text = self.text()
            return needle in text if isinstance(needle, str) else bool(needle.search(text))

        named = needle if isinstance(needle, str) else needle.pattern
        wait_until(self, seen, timeout, interval, None if needle is WORKER_READY else named)
        return time.monotonic() - self.started

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.05) -> float:
        """Wait for a worker's `name@host ready.` line; seconds since spawn."""
        return self.wait_for(WORKER_READY, timeout, interval)

    def term(self, timeout: float = 20.0) -> float:
        """SIGTERM the main process (a warm shutdown); seconds until it exited.

        Raises TimeoutError (after a SIGKILL to the group) when it is still running after
        `timeout`.
        """
        proc = self.process
        if proc is None:
            return 0.0
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"{self.name}: warm shutdown took > {timeout:.0f}s; log "
                               f"{self.log}:\n{tail(self.log)}") from None
        return time.monotonic() - start
