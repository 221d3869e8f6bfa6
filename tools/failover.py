"""Broker failover: a burst of async requests while Apache Kafka brokers are SIGKILLed.

`run_failover()` sends `requests` async order creations (the sample's POST /api/v1/orders/,
whose side effect, one `Order` row per request, can be counted) from concurrent clients at a
capped rate to a sample stack (web app + workers) on a 3-broker Apache Kafka cluster
(`tools.apache_kafka.start_cluster`). After 20 % of the answers it SIGKILLs the broker that
leads the most partitions of the task topic, restarts it 12 s later (Kafka has fenced it by
then) and waits until its replicas are in sync again (two dead nodes of three would stop the
KRaft quorum and `min.insync.replicas=2`); after 60 % it SIGKILLs the group coordinator of the
workers' group (restarted 12 s later too). The web app and the workers are never restarted.
Then it waits for every accepted request's result and counts:

- accepted (202), 503s (and any other status), completed, failed, lost (accepted, never
  completed), side effects (orders), side effects run twice, orders of requests that got no
  202 ("refused but run"), and which web app or worker processes died;
- per kill: until when after it 503s came, the longest time without a 202, the slowest
  answer, and the longest pause in completed work (orders' `created_at`).

With `kill_coordinator=False` one kill only, of the coordinator, which leads task partitions
too (4 partitions on 3 brokers: each broker leads one at least): the test's shorter run.

CLI (what docs/reliability.md records)::

    .venv/bin/python tools/failover.py [--requests 5000] [--rate 70] [--clients 16]

Uses Redis DB 18 (the test, tests/integration/test_failover.py, uses 19).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

if __package__ in (None, ""):  # `python tools/failover.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.apache_kafka import KafkaCluster, start_cluster, version  # noqa: E402
from tools.soak import collect_outcomes  # noqa: E402
from tools.stack import Stack  # noqa: E402

REDIS_DB = 18
#: The cluster's brokers fence a dead one after this (Kafka's default 9000 ms).
BROKER_SESSION_MS = 9000


@dataclass
class Kill:
    """One SIGKILLed broker and what the clients saw after it."""

    what: str
    node: int
    at: float
    unavailable_until: float = 0.0  # last 503 after the kill, seconds after it (0: none)
    slowest_answer: float = 0.0
    accepts_paused: float = 0.0     # longest time without a 202 after the kill
    work_paused: float = 0.0        # longest gap between orders created after the kill

    def line(self) -> str:
        """One line per kill."""
        return (f"kill {self.what} (node {self.node}): 503s until +{self.unavailable_until:.1f}s"
                f", no 202 for {self.accepts_paused:.1f}s, slowest answer "
                f"{self.slowest_answer:.1f}s, work paused "
                f"{self.work_paused:.1f}s")


@dataclass
class FailoverReport:
    """Counts of one run."""

    requests: int = 0
    accepted: int = 0
    unavailable: int = 0
    other: dict[int, int] = field(default_factory=dict)
    completed: int = 0
    failed: int = 0
    lost: int = 0
    side_effects: int = 0
    duplicated: int = 0
    refused_but_ran: int = 0  # orders of requests that were answered 503 (or never answered)
    kills: list[Kill] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)  # web app / workers that died (no restart)
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The printed summary."""
        return [f"requests {self.requests} / accepted (202) {self.accepted} / 503 "
                f"{self.unavailable} / other {self.other or 0} / completed {self.completed} / "
                f"failed {self.failed} / lost {self.lost} / side effects {self.side_effects} "
                f"/ run twice {self.duplicated} / refused but run {self.refused_but_ran} / "
                f"exited {self.exited or 'none'} / {self.seconds:.0f}s",
                *(kill.line() for kill in self.kills)]

    @property
    def ok(self) -> bool:
        """Nothing accepted was lost, nothing ran twice, every accepted request completed."""
        return (self.lost == 0 and self.duplicated == 0 and self.failed == 0
                and not self.exited and self.refused_but_ran == 0
                and self.side_effects == self.accepted == self.completed)


def task_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> leader broker id of `topic`."""
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p: info.leader for p, info in metadata.topics[topic].partitions.items()}


def coordinator(bootstrap: str, group: str) -> int:
    """Broker id of `group`'s coordinator."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(10)
    return int(described.coordinator.id)


def wait_in_sync(bootstrap: str, topic: str, replicas: int, timeout: float = 120) -> None:
    """Wait until every partition of `topic` has `replicas` in-sync replicas again."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
        if all(len(p.isrs) >= replicas for p in parts):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{topic}: replicas not back in sync after {timeout:.0f}s")


USER = "failover"
#: Every order of the run's user: (request id, created_at) of accepted and refused requests.
ORDER_TIMES = (
    "import json; from demo.models import Order; "
    f"rows=Order.objects.filter(owner__username={USER!r}).values_list('request_id','created_at');"
    "print(json.dumps([[r, t.timestamp()] for r, t in rows]))"
)


def _orders(stack: Stack) -> list[tuple[str, float]]:
    out = stack.manage("shell", "-c", ORDER_TIMES).stdout
    return [(row[0], float(row[1])) for row in json.loads(out.strip().splitlines()[-1])]


def _exited(stack: Stack) -> list[str]:
    return [service.name for service in stack.services
            if service.process is not None and service.process.poll() is not None]


def _longest_gap(times: list[float], start: float, end: float) -> float:
    inside = sorted(t for t in times if start <= t <= end)
    points = [start, *inside]
    return max((b - a for a, b in zip(points, points[1:], strict=False)), default=end - start)


def run_failover(stack: Stack, cluster: KafkaCluster, base_url: str, token: str, *,
                 topic: str, group: str, requests: int, rate: float, clients: int,
                 kill_coordinator: bool = True, first_kill_at: float = 0.2,
                 settle_timeout: float = 300,
                 say: Callable[[str], None] = print) -> FailoverReport:
    """Send the burst, kill brokers mid-way (see the module docstring); return the counts."""
    report = FailoverReport(requests=requests)
    answers: list[tuple[float, float, int, str | None]] = []  # sent, answered, status, id
    done = threading.Event()      # the burst is over
    finished = threading.Event()  # the run is over: the killer thread may end
    # The first kill waits for this many answers; the coordinator's for 60 % of them.
    marks = [int(requests * first_kill_at), int(requests * 0.6)]

    def wait_answers(count: int) -> None:
        while len(answers) < count and not done.is_set():
            time.sleep(0.02)

    def kill(what: str, node: int) -> None:
        cluster.kill_node(node)
        report.kills.append(Kill(what, node, time.time()))
        say(f"SIGKILLed node {node} ({what}) after {len(answers)} answers")

    def killer() -> None:
        wait_answers(marks[0])
        if not kill_coordinator:
            kill("group coordinator + task partition leader", coordinator(cluster.url, group))
            finished.wait()
            return
        leaders = task_leaders(cluster.url, topic)
        busiest = max(set(leaders.values()), key=list(leaders.values()).count)
        kill(f"leader of partitions {sorted(p for p, n in leaders.items() if n == busiest)}",
             busiest)
        time.sleep(BROKER_SESSION_MS / 1000 + 3)  # fenced, leaders moved: bring it back
        cluster.restart_node(busiest)
        wait_in_sync(cluster.url, topic, len(cluster.nodes))
        say(f"node {busiest} back and in sync after {len(answers)} answers")
        wait_answers(marks[1])
        if not done.is_set():
            kill("group coordinator", coordinator(cluster.url, group))
            time.sleep(BROKER_SESSION_MS / 1000 + 3)
            cluster.restart_node(report.kills[-1].node)
            say(f"node {report.kills[-1].node} back")
        # Nodes restarted here die with this thread (PR_SET_PDEATHSIG is per thread): stay.
        finished.wait()

    async def send_all() -> None:
        headers = {"authorization": f"Bearer {token}", "x-async-request": "true"}
        started = time.monotonic()
        counter = iter(range(requests))

        async def client(http: httpx.AsyncClient) -> None:
            for i in counter:
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = time.time()
                body = {"title": f"failover {i}", "amount": "1.00"}
                try:
                    response = await http.post("/api/v1/orders/", json=body, headers=headers)
                    status = response.status_code
                    rid = response.json()["meta"]["async_request_id"] if status == 202 else None
                except httpx.HTTPError:
                    status, rid = 0, None
                answers.append((sent, time.time(), status, rid))

        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            await asyncio.gather(*(client(http) for _ in range(clients)))

    started = time.monotonic()
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        asyncio.run(send_all())
    finally:
        done.set()
    accepted = [rid for _, _, status, rid in answers if status == 202 and rid]
    report.accepted = len(accepted)
    for _, _, status, _ in answers:
        if status == 503:
            report.unavailable += 1
        elif status != 202:
            report.other[status] = report.other.get(status, 0) + 1
    say(f"burst sent in {time.monotonic() - started:.0f}s: {report.accepted} accepted, "
        f"{report.unavailable} 503; waiting for results")
    pending = set(accepted)
    # the web app or a worker died: what is pending then stays so
    collect_outcomes(base_url, token, pending, report, settle_timeout,
                     stop=lambda: bool(_exited(stack)))
    report.lost = len(pending)
    report.exited = _exited(stack)
    every = _orders(stack)
    orders = [(rid, t) for rid, t in every if rid in set(accepted)]
    report.side_effects = len(orders)
    report.duplicated = len(orders) - len({rid for rid, _ in orders})
    report.refused_but_ran = len(every) - len(orders)
    times = [t for _, t in every]
    for index, kill_ in enumerate(report.kills):
        until = report.kills[index + 1].at if index + 1 < len(report.kills) else float("inf")
        window = [a for a in answers if kill_.at <= a[1] < until]
        refused = [a[1] - kill_.at for a in window if a[2] != 202]
        kill_.unavailable_until = max(refused, default=0.0)
        kill_.slowest_answer = max((a[1] - a[0] for a in answers if a[1] >= kill_.at
                                    and a[0] < min(until, kill_.at + 60)), default=0.0)
        ok_times = [a[1] for a in answers if a[2] == 202]
        last_ok = min(until, max(ok_times, default=kill_.at))
        kill_.accepts_paused = _longest_gap(ok_times, kill_.at, last_ok) if last_ok > kill_.at \
            else 0.0
        end = min(until, max(times, default=kill_.at))
        kill_.work_paused = _longest_gap(times, kill_.at, end) if end > kill_.at else 0.0
    report.seconds = time.monotonic() - started
    finished.set()  # the cluster is stopped next; restarted nodes may die with the thread
    return report


@contextlib.contextmanager
def failover_stack(redis_url: str, workdir: Path, workers: int = 2) -> Iterator[
        tuple[KafkaCluster, Stack, str, str, str]]:
    """A 3-broker cluster and a sample stack on it (web + `workers` workers, Redis `redis_url`);
    yields (cluster, stack, web URL, token, topic); everything stopped on exit."""
    cluster = start_cluster(3, log_dir=workdir / "kafka")
    name = f"failover-{int(time.time())}"
    stack = Stack(kafka=cluster.url, redis_url=redis_url, log_dir=workdir / "logs",
                  sqlite_path=workdir / "db.sqlite3",
                  extra_env={"BS_KAFKA_TOPIC_ASYNC_BG": name, "BS_KAFKA_GROUP_ID": name,
                             # one user sends every request: no per-owner in-flight cap
                             "BS_ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER": "0"})
    try:
        stack.migrate()
        stack.create_user(USER, USER)
        token = stack.issue_token(USER)
        web = stack.start_web()
        for _ in range(workers):
            stack.start_worker()
        yield cluster, stack, web.url, token, name
    finally:
        try:
            stack.stop()
        finally:
            cluster.stop()


def main(argv: list[str]) -> int:
    """CLI: run the burst on a fresh cluster and stack; print the counts."""
    import tempfile

    import redis

    from tools.services import ensure_redis, redis_url_with_db

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=70.0, help="requests per second, at most")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="failover-"))
    redis_service = ensure_redis(log_path=workdir / "redis.log")
    redis_url = redis_url_with_db(redis_service.url, REDIS_DB)
    redis.Redis.from_url(redis_url).flushdb()
    try:
        with failover_stack(redis_url, workdir, args.workers) as (cluster, stack, web, token,
                                                                  topic):
            print(f"Apache Kafka {version()}, 3 brokers at {cluster.url}; logs in {workdir}",
                  flush=True)
            report = run_failover(stack, cluster, web, token, topic=topic, group=topic,
                                  requests=args.requests, rate=args.rate,
                                  clients=args.clients)
    finally:
        redis_service.stop()
    for line in report.lines():
        print(line)
    for failure in report.failures[:10]:
        print("  failed:", failure)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
