"""Push that loses nothing, counted: operations while the owner's socket keeps dropping.

`run_chaos` sends `operations` async `GET /api/v1/orders/` from a few clients while one
listener holds the owner's WebSocket, drops it after a random 0.2–1 s, reconnects with
`?after=<seq>` and so on; `restart_web` (once, after `restart_after` accepted) restarts the
web server under everyone. The listener keeps, per operation, the seqs of its terminal events
after de-duplicating by seq; at the end every accepted operation must have exactly one.

It resumes after the highest seq *below which it has every one*, not the highest it has seen:
the web app and each worker process send to the channel layer on their own, so seq 11 can
arrive before seq 10, and a drop between the two must not skip 10.

Used by tests/integration/test_resume_chaos.py (a short run) and bench/resume.py (2,000
operations, the catch-up times as a table).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

ORDERS = "/api/v1/orders/"
TERMINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass
class ChaosReport:
    """What the listener got: terminal seqs per operation, reconnects, catch-up times."""

    accepted: list[str] = field(default_factory=list)
    terminal: dict[str, set[int]] = field(default_factory=dict)
    reconnects: int = 0
    failed_connects: int = 0
    catch_up_ms: list[float] = field(default_factory=list)
    caught_up: list[int] = field(default_factory=list)
    gaps: int = 0
    restarts: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        return [task_id for task_id in self.accepted if task_id not in self.terminal]

    @property
    def twice(self) -> list[str]:
        return [task_id for task_id, seqs in self.terminal.items() if len(seqs) > 1]

    def line(self) -> str:
        return (f"accepted {len(self.accepted)}, with a terminal event {len(self.terminal)}, "
                f"missing {len(self.missing)}, twice {len(self.twice)}, reconnects "
                f"{self.reconnects} ({self.failed_connects} refused), gaps {self.gaps}, "
                f"web restarts {self.restarts}, errors {self.errors}")


class Listener:
    """The owner's socket, dropped and resumed at random until `stop` is set."""

    def __init__(self, ws_url: str, report: ChaosReport, drop_every: tuple[float, float],
                 rng: random.Random) -> None:
        self.ws_url = ws_url
        self.report = report
        self.drop_every = drop_every
        self.rng = rng
        self.seen: set[int] = set()
        self.contiguous = 0  # every seq up to it has been seen
        self.ready = threading.Event()
        self.stop = threading.Event()

    def _take(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "gap":
            self.report.gaps += 1
            return
        if frame.get("type") != "data":
            return
        data = json.loads(frame["data"])
        seq = data.get("seq")
        if seq is None or seq in self.seen:
            return
        self.seen.add(seq)
        while self.contiguous + 1 in self.seen:
            self.contiguous += 1
        if data["status"] in TERMINAL:
            self.report.terminal.setdefault(data["task_id"], set()).add(seq)

    def run(self) -> None:
        first = True
        while not self.stop.is_set():
            url = self.ws_url + (f"&after={self.contiguous}" if not first else "")
            started = time.perf_counter()
            try:
                with connect(url, open_timeout=5, close_timeout=1) as ws:
                    hello = json.loads(ws.recv(timeout=10))
                    if hello != {"type": "subscribed"}:
                        raise WebSocketException(f"not subscribed: {hello}")
                    if not first:
                        self.report.reconnects += 1
                        while True:  # the catch-up, up to its `resumed` frame
                            frame = json.loads(ws.recv(timeout=30))
                            if frame.get("type") == "resumed":
                                self.report.catch_up_ms.append(
                                    (time.perf_counter() - started) * 1000)
                                self.report.caught_up.append(int(frame["count"]))
                                break
                            self._take(frame)
                    first = False
                    self.ready.set()
                    until = time.monotonic() + self.rng.uniform(*self.drop_every)
                    while not self.stop.is_set() and (left := until - time.monotonic()) > 0:
                        try:
                            self._take(json.loads(ws.recv(timeout=left)))
                        except TimeoutError:
                            break
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.report.failed_connects += 1
                name = type(exc).__name__
                self.report.errors[name] = self.report.errors.get(name, 0) + 1
                time.sleep(0.2)


def run_chaos(base_url: str, token: str, *, operations: int, clients: int = 8,
              drop_every: tuple[float, float] = (0.2, 1.0),
              restart_web: Callable[[], None] | None = None, restart_after: int = 0,
              settle_timeout: float = 180, seed: int = 7) -> ChaosReport:
    """Send `operations`, chaos on; wait until the listener has every terminal event."""
    report = ChaosReport()
    ws_url = base_url.replace("http://", "ws://", 1) + f"/ws/?token={token}"
    listener = Listener(ws_url, report, drop_every, random.Random(seed))
    thread = threading.Thread(target=listener.run, name="chaos-listener", daemon=True)
    thread.start()
    listener.ready.wait(30)
    restarted = threading.Event()
    headers = {"authorization": f"Bearer {token}", "x-async-request": "true"}

    async def client(count: int) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            sent = 0
            while sent < count:
                try:
                    response = await http.get(ORDERS, headers=headers)
                except httpx.TransportError:  # the web server is restarting: send again
                    await asyncio.sleep(0.2)
                    continue
                if response.status_code != 202:
                    await asyncio.sleep(0.2)
                    continue
                report.accepted.append(response.json()["meta"]["async_request_id"])
                sent += 1
                if (restart_web is not None and not restarted.is_set()
                        and len(report.accepted) >= restart_after):
                    restarted.set()
                    # In this (the main) thread, not a worker thread: the web server is spawned
                    # with PR_SET_PDEATHSIG, so it would die with a short-lived thread.
                    restart_web()
                    report.restarts += 1

    async def send_all() -> None:
        share = [operations // clients + (1 if i < operations % clients else 0)
                 for i in range(clients)]
        await asyncio.gather(*(client(n) for n in share))

    try:
        asyncio.run(send_all())
        deadline = time.monotonic() + settle_timeout
        while report.missing and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # one more drop-and-resume: late duplicates would show now
    finally:
        listener.stop.set()
        thread.join(15)
    return report
