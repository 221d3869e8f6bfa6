"""The full sample stack for end-to-end tests: web app, worker(s), Flower, own database.

Built on `tools.stack.Stack`; the `stack` fixture in tests/live_fixtures.py makes one
per test session. Kafka and Redis come from the `kafka` and `redis_url` fixtures.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlparse

from tools.services import Service, redis_url_with_db
from tools.stack import Stack, log_tails

if TYPE_CHECKING:
    import psycopg


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_stale_databases(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    # A session killed before its teardown (SIGKILL, CI timeout) leaves its database behind;
    # the name holds the host and pid of its creator, so a later session on the same host
    # drops those whose creator is gone.
    from psycopg import sql

    prefix = f"test_ar_{_host_tag()}_"
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
    ).fetchall()
    for row in rows:
        name = str(row[0])
        pid = name[len(prefix):].split("_", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def create_postgres_database(url: str) -> tuple[str, Callable[[], None]]:
    """Create a fresh database `test_ar_<host>_<pid>_<random>` on url's server; URL and drop."""
    import psycopg
    from psycopg import sql

    name = f"test_ar_{_host_tag()}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        _drop_stale_databases(conn)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    return urlparse(url)._replace(path=f"/{name}").geturl(), drop


def own_redis_db(redis_url: str, db: int) -> str:
    """`redis_url` on database `db`, emptied: a stack of a test module of its own.

    The sample's owners are `user:<pk>`, so two stacks with their own databases of users share
    owner names; on one Redis database they would share in-flight counts and event logs.
    Taken: 2 (in-process tests, `local_redis_url`), 3 (the CLI project), 4 (the own project),
    5 (the session), 6 (the sweep, and bench/sweep.py), 10 (transport tests), 11–14 (limits,
    chaos, webhooks, soak), 15 (the push matrix), 16 (lanes), 19 (the failover test,
    test_failover.py), 20–21 (the asyncio pool); benches and tools: 7 (pipeline), 8
    (screenshot), 9 (push), 17 (bench/lanes.py), 18 (tools/failover.py), 22 and 23
    (bench/scaleout.py: stack, route records; bench/transport.py: results, Redis broker).
    The test Redis has 32 databases
    (`tools.services.start_redis`).
    """
    import redis

    url = redis_url_with_db(redis_url, db)
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@contextlib.contextmanager
def module_stack(kafka: str, redis_url: str, workdir: Path, db: int,
                 env: dict[str, str], *,
                 worker: tuple[str, int] = ("prefork", 2)) -> Iterator[IntegrationStack]:
    """A started stack of a test module's own: the session's broker, its own Redis database
    (`own_redis_db`), work directory, consumer group and settings (`env`), its default worker
    of `worker` (pool, concurrency); stopped after."""
    stack = IntegrationStack(kafka=kafka, redis_url=own_redis_db(redis_url, db),
                             workdir=workdir,
                             database_url=os.environ.get("DATABASE_URL") or None,
                             extra_env=env)
    stack._worker_options = (*worker, ())
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def auth(token: str, **extra: str) -> dict[str, str]:
    """Headers of a request as the user of `token` (plus `extra` headers)."""
    return {"authorization": f"Bearer {token}", **extra}


class IntegrationStack:
    """Web app + default worker of one test session; more workers and Flower on demand."""

    def __init__(self, *, kafka: str, redis_url: str, workdir: Path,
                 database_url: str | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.session = secrets.token_hex(4)
        self._drop_database: Callable[[], None] | None = None
        sqlite_path: Path | None = None
        if database_url:
            database_url, self._drop_database = create_postgres_database(database_url)
        else:
            sqlite_path = workdir / "db.sqlite3"
        self.database_url = database_url
        self.redis_url = redis_url
        self.kafka = kafka
        self._stack = Stack(
            kafka=kafka, redis_url=redis_url, log_dir=self.logs, database_url=database_url,
            sqlite_path=sqlite_path,
            extra_env={
                # A unique topic and group per session: nothing left over from another run.
                "BS_KAFKA_TOPIC_ASYNC_BG": f"ar_test_{self.session}",
                "BS_KAFKA_GROUP_ID": f"ar_test_{self.session}",
                "DJANGO_SECRET_KEY": f"test-secret-{secrets.token_hex(16)}",
                **(extra_env or {}),
            },
        )
        self.base_url = ""
        self.web: Service | None = None
        self.worker: Service | None = None
        self._worker_options: tuple[str, int, tuple[str, ...]] = ("prefork", 2, ())

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Migrate, start the web app on a free port and the default worker."""
        self._stack.migrate()
        self.web = self._stack.start_web()
        self.base_url = self.web.url
        pool, concurrency, extra = self._worker_options
        self.worker = self.start_worker(pool, concurrency, extra)

    def restart_web(self) -> None:
        """Stop the web server and start it again on the same port (clients see it go away)."""
        assert self.web is not None
        port = int(self.base_url.rsplit(":", 1)[1])
        self._stack.stop_service(self.web)
        self.web = self._stack.start_web(port=port)

    def stop(self) -> None:
        """Stop every process and drop the session's PostgreSQL database."""
        try:
            self._stack.stop()
        finally:
            if self._drop_database is not None:
                self._drop_database()
                self._drop_database = None

    # -- what tests use ------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Environment for child processes pointing at this session's broker, Redis and DB."""
        return self._stack.env()

    def ws_url(self, token: str | None = None, channel: str | None = None) -> str:
        """WebSocket URL of the notification consumer, with ?token= or ?channel=."""
        query = {k: v for k, v in (("token", token), ("channel", channel)) if v is not None}
        base = self.base_url.replace("http://", "ws://", 1) + "/ws/"
        return f"{base}?{urlencode(query)}" if query else base

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run sample_project/manage.py with the session's env (raises on failure if check)."""
        return self._stack.manage(*args, check=check)

    def create_user(self, username: str, password: str = "pw") -> str:
        """Create a user of the sample in the session database; return a JWT for it."""
        self._stack.create_user(username, password)
        return self._stack.issue_token(username)

    def start_worker(self, pool: str = "prefork", concurrency: int = 2,
                     extra_args: Sequence[str] = ()) -> Service:
        """Start one more Celery worker (stopped at session end); waits until it is ready."""
        return self._stack.start_worker(pool, concurrency, tuple(extra_args))

    def kill_worker(self) -> None:
        """SIGKILL the default worker and its pool (a crash, no warm shutdown)."""
        if self.worker is not None:
            self.worker.kill()

    def stop_worker(self) -> None:
        """Stop the default worker (warm shutdown); `restart_worker` starts a new one."""
        if self.worker is not None:
            self._stack.stop_service(self.worker)
            self.worker = None

    def restart_worker(self) -> Service:
        """Stop the default worker (gracefully, if still alive) and start a new default one."""
        if self.worker is not None:
            self._stack.stop_service(self.worker)
            self.worker = None
        pool, concurrency, extra = self._worker_options
        self.worker = self.start_worker(pool, concurrency, extra)
        return self.worker

    def ensure_worker(self) -> Service:
        """The default worker, restarted first if an earlier test left it dead or missing."""
        worker = self.worker
        if worker is None or worker.process is None or worker.process.poll() is not None:
            return self.restart_worker()
        return worker

    @property
    def flower_auth(self) -> tuple[str, str]:
        """Flower's basic-auth user and password."""
        return self._stack.flower_auth

    def start_flower(self) -> str:
        """Start Flower on a free port; return its base URL."""
        return self._stack.start_flower().url

    def celery_ping(self) -> bool:
        """True when a worker answers `celery inspect ping`."""
        return self._stack.celery_ping()

    def log_tails(self, lines: int = 60) -> str:
        """Tail of every log of this session (printed when a test fails)."""
        return log_tails(self.logs, lines)
