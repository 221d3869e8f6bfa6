"""Soak helpers: concurrent async order creations against a sample stack, and the bookkeeping.

`run_soak()` sends order creations from concurrent clients while a `kill` callback (SIGKILL of a
worker) runs every few seconds, then waits for every accepted request's result and counts
the orders created (the side effect). Used by bench/soak.py (the long run), bench/churn.py and
tests/integration/test_soak.py (a short run, one kill).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from tools.stack import RESULTS_PATH

#: The result of one task: GET RESULTS.format(task_id).
RESULTS = RESULTS_PATH + "{}/"


@dataclass
class SoakReport:
    """What came back: counts of accepted, completed, failed, lost requests and side effects."""

    accepted: int = 0
    refused: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    side_effects: int = 0
    duplicated: int = 0
    kills: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line with every count."""
        return (f"accepted {self.accepted} / completed {self.completed} / failed {self.failed}"
                f" / lost {self.lost} / side effects {self.side_effects} / duplicated "
                f"{self.duplicated} / refused {self.refused} / kills {self.kills} / "
                f"{self.seconds:.0f}s")


class Outcomes(Protocol):
    """What `collect_outcomes` counts into (the soak's and the failover's reports)."""

    completed: int
    failed: int
    failures: list[str]


def collect_outcomes(base_url: str, token: str, pending: set[str], report: Outcomes,
                     timeout: float, stop: Callable[[], bool] = lambda: False) -> None:
    """Read the result of every operation in `pending` (order creations) until none is left,
    `timeout` passed or `stop()` says the stack broke: a 201 counts as completed, anything
    else as failed (named in `report.failures`); what never ended stays in `pending`."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=30) as http:
        while pending and time.monotonic() < deadline and not stop():
            for task_id in list(pending):
                try:
                    response = http.get(RESULTS.format(task_id),
                                        headers={"authorization": f"Bearer {token}"})
                except httpx.HTTPError:  # the web app went away: look again next round
                    break
                if response.status_code != 200:
                    continue
                pending.discard(task_id)
                body = response.json()
                if body["state"] == "completed" and body["status"] == 201:
                    report.completed += 1
                else:
                    report.failed += 1
                    report.failures.append(f"{task_id}: {body}")
            if pending:
                time.sleep(1)


def run_soak(base_url: str, token: str, *, requests: int, clients: int,
             kill_every: float, max_kills: int, kill: Callable[[], None],
             count_orders: Callable[[list[str]], tuple[int, int]],
             settle_timeout: float = 300, first_kill_after: int = 0) -> SoakReport:
    """Send `requests` order creations, killing the worker every `kill_every` s (≤ max_kills).

    `first_kill_after`: the first kill waits until that many requests were accepted too, so a
    short run on a fast machine cannot finish sending before its kill.
    """
    report = SoakReport()
    accepted: list[str] = []
    sending = threading.Event()
    sending.set()

    finished = threading.Event()

    def killer() -> None:
        while sending.is_set() and report.kills < max_kills:
            time.sleep(kill_every)
            while not report.kills and len(accepted) < first_kill_after and sending.is_set():
                time.sleep(0.01)
            if sending.is_set():
                kill()
                report.kills += 1
        # Children started here die with this thread (PR_SET_PDEATHSIG is per thread): stay.
        finished.wait()

    async def client(n: int, offset: int) -> None:
        headers = {"authorization": f"Bearer {token}", "x-async-request": "true"}
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            for i in range(n):
                body = {"title": f"soak {offset + i}", "amount": "1.00"}
                response = await http.post("/api/v1/orders/", json=body, headers=headers)
                if response.status_code == 202:
                    accepted.append(response.json()["meta"]["async_request_id"])
                else:
                    report.refused += 1

    async def send_all() -> None:
        share = [requests // clients + (1 if i < requests % clients else 0)
                 for i in range(clients)]
        offsets = [sum(share[:i]) for i in range(clients)]
        await asyncio.gather(*(client(n, o) for n, o in zip(share, offsets, strict=True)))

    started = time.monotonic()
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    asyncio.run(send_all())
    sending.clear()
    report.accepted = len(accepted)
    pending = set(accepted)
    collect_outcomes(base_url, token, pending, report, settle_timeout)
    report.lost = len(pending)
    report.side_effects, distinct = count_orders(accepted)
    report.duplicated = report.side_effects - distinct
    report.seconds = time.monotonic() - started
    finished.set()
    return report


ORDER_COUNT = (
    "import json,sys; from demo.models import Order; ids=json.load(open(sys.argv[-1])); "
    "qs=Order.objects.filter(request_id__in=ids); "
    "print(qs.count(), qs.values('request_id').distinct().count())"
)


def order_counter(manage: Callable[..., object],
                  workdir: Path) -> Callable[[list[str]], tuple[int, int]]:
    """A `count_orders` that asks the sample's database through `manage.py shell`."""

    def count(ids: list[str]) -> tuple[int, int]:
        path = workdir / "soak-ids.json"
        path.write_text(json.dumps(ids))
        script = ORDER_COUNT.replace("sys.argv[-1]", repr(str(path)))
        out = manage("shell", "-c", script).stdout  # type: ignore[attr-defined]
        total, distinct = out.strip().splitlines()[-1].split()
        return int(total), int(distinct)

    return count
