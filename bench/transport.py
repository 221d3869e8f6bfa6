"""Benchmark our Kafka transport against kombu's stock one, Celery on Redis and raw Kafka.

Plain script: `python bench/transport.py [--repeat 3] [--broker tansu] [--broker apache]`. It
starts its own brokers (tansu by default; `--broker apache`: one Apache Kafka 4.x node,
tools/apache_kafka.py; give both to measure our transport on each), uses Redis (127.0.0.1:6379
or its own) DB 22 for results and DB 23 as the Redis broker, runs every configuration once per
round (rounds interleave configurations, so machine noise hits all of them alike) and prints a
Markdown table of medians with (min-max) ranges. kombu's stock transport runs on tansu only.

Measured per Celery configuration (worker: prefork -c2, prefetch multiplier 4):
ready (spawn to "ready."), first task (sent at "ready."), sequential `delay().get()` p50/p99,
the same with the worker on 3 queues, 1000 no-op tasks/s (publish all, then join) and the
CPU seconds they cost the worker and the servers (broker + Redis, which also holds results),
the rate at which a fresh worker drains a backlog of 2000 no-ops (the worker alone), CPU% of
worker (incl. children) + broker over 10 idle seconds (from 2 s after the last task), the
round trip of a task sent after 2 s without tasks (median of 3), the first task after a
SIGKILLed worker's replacement starts, and how long a warm shutdown (SIGTERM) takes. Our
transport also: the partition handover when one of two workers retires (SIGTERM to it, then 8
tasks sent at once, spread over the 4 partitions: seconds until the last is done), without a
LeaveGroup (the default) and with `leave_group_on_shutdown`.
Raw: confluent-kafka produce->consume p50.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._stats import median_range, percentile  # noqa: E402
from tools.services import Service, ensure_redis, redis_url_with_db, start_tansu  # noqa: E402
from tools.stack import CeleryProcess, start_broker  # noqa: E402

APP = textwrap.dedent('''
    import json, os
    from celery import Celery
    app = Celery("bt")
    app.conf.update(json.loads(os.environ["BT_CONF"]))
    @app.task(name="bt.noop")
    def noop(x=None):
        return x
''')

#: Idle CPU: measured over IDLE_WINDOW seconds, starting IDLE_SETTLE seconds after the last task.
IDLE_SETTLE, IDLE_WINDOW = 2.0, 10.0

STOCK_TUNED = {
    "kafka_consumer_config": {"fetch.wait.max.ms": 10, "session.timeout.ms": 2000,
                              "heartbeat.interval.ms": 500, "socket.nagle.disable": True},
    "kafka_producer_config": {"linger.ms": 0, "socket.nagle.disable": True},
    "wait_time_seconds": 0.01, "polling_interval": 0.005, "num_partitions": 4,
}


def start_worker(workdir: Path, conf: dict[str, Any], queues: str, log: Path) -> CeleryProcess:
    """A prefork -c2 worker of the bench app on `queues` (comma-separated)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(BT_CONF=json.dumps(conf), PYTHONPATH=f"{workdir}:{ROOT}")
    args = ["worker", "-P", "prefork", "-c", "2", "-Q", queues, "--without-mingle",
            "--without-gossip", "-l", "info"]
    return CeleryProcess.start(log.stem, "btapp", args, log, env, cwd=workdir)


def ready(worker: CeleryProcess) -> float:
    """Seconds from spawn to the worker's "ready." line."""
    return worker.wait_ready(timeout=120, interval=0.01)


def tree_cpu_seconds(worker: CeleryProcess) -> float:
    """User + system CPU seconds of the worker and its pool children so far."""
    if worker.process is None:
        return 0.0
    try:
        main = psutil.Process(worker.process.pid)
        procs = [main, *main.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def fresh_names(conf: dict[str, Any], queue: str) -> dict[str, Any]:
    """`conf` on queue `queue`, in a consumer group of its own (our transport)."""
    conf = {**conf, "task_default_queue": queue}
    if "group_id" in conf.get("broker_transport_options", {}):
        conf["broker_transport_options"] = {**conf["broker_transport_options"],
                                            "group_id": f"bt-g-{queue}"}
    return conf


def drain_run(conf: dict[str, Any], workdir: Path, name: str, n: int) -> float:
    """Tasks/s of a worker started on a backlog of `n` no-ops (the worker alone, no client)."""
    from celery import Celery
    from celery.result import ResultSet

    conf = fresh_names(conf, f"bt-{uuid.uuid4().hex[:8]}-drain")
    client = Celery("bt")
    client.conf.update(conf)
    noop = client.signature("bt.noop")
    results = ResultSet([noop.delay(i) for i in range(n)])
    worker = start_worker(workdir, conf, conf["task_default_queue"], workdir / f"{name}-drain.log")
    try:
        ready(worker)
        results.results[0].get(timeout=120)
        t = time.perf_counter()
        results.join_native(timeout=120, interval=0.005)
        return (n - 1) / (time.perf_counter() - t)
    finally:
        worker.kill()
        client.close()


ASSIGNED = re.compile(r"partitions of this member of group '[^']*': (.*)$", re.M)


def holds_partitions(worker: CeleryProcess) -> bool:
    """True when the worker's transport last logged an assignment with partitions."""
    found = ASSIGNED.findall(worker.text())
    return bool(found) and found[-1].strip() != "none"


def handover_run(conf: dict[str, Any], workdir: Path, name: str, leave: bool) -> float:
    """Seconds from SIGTERM to one of two workers until 8 tasks sent then are all done: its
    partitions' tasks wait until the other worker owns them."""
    from celery import Celery
    from celery.result import ResultSet

    options = {**conf["broker_transport_options"], "leave_group_on_shutdown": leave}
    conf = fresh_names({**conf, "broker_transport_options": options},
                       f"bt-{uuid.uuid4().hex[:8]}-handover")
    client = Celery("bt")
    client.conf.update(conf)
    noop = client.signature("bt.noop")
    queue = conf["task_default_queue"]
    workers = [start_worker(workdir, conf, queue, workdir / f"{name}-{queue}-{i}.log")
               for i in range(2)]
    try:
        for worker in workers:
            ready(worker)
        deadline = time.monotonic() + 60
        while not all(holds_partitions(w) for w in workers):
            if time.monotonic() > deadline:
                raise RuntimeError(f"handover: both workers never held partitions ({queue})")
            time.sleep(0.05)
        ResultSet([noop.delay(i) for i in range(8)]).join_native(timeout=60, interval=0.005)
        retiring = workers[0].process
        assert retiring is not None
        t = time.monotonic()
        retiring.send_signal(signal.SIGTERM)
        ResultSet([noop.delay(i) for i in range(8)]).join_native(timeout=120, interval=0.005)
        return time.monotonic() - t
    finally:
        for worker in workers:
            worker.kill()
        client.close()


def process_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far."""
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def listening_pid(url: str) -> int | None:
    """The process listening on the port of `url` (redis://host:port/...), if visible."""
    port = int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                return conn.pid
    except psutil.AccessDenied:
        pass
    return None


def celery_run(name: str, conf: dict[str, Any], broker_pid: int | None, workdir: Path,
               n_seq: int, n_thru: int, kill_test: bool, n_drain: int,
               redis_pid: int | None = None, handover: bool = False) -> dict[str, Any]:
    """One round of one configuration. `broker_pid`: the broker process (idle CPU);
    `redis_pid`: Redis (results, and the broker of the Redis configuration)."""
    from celery import Celery
    from celery.result import ResultSet

    queue = f"bt-{uuid.uuid4().hex[:8]}"
    conf = fresh_names({**conf, "worker_prefetch_multiplier": 4,
                        "worker_hijack_root_logger": False,
                        "broker_connection_retry_on_startup": True}, queue)
    client = Celery("bt")
    client.conf.update(conf)
    noop = client.signature("bt.noop")
    out: dict[str, Any] = {"config": name}
    worker = start_worker(workdir, conf, queue, workdir / f"{name}-{queue}.log")
    try:
        out["ready_s"] = ready(worker)
        t = time.monotonic()
        noop.delay(1).get(timeout=120)
        out["first_task_s"] = time.monotonic() - t
        lat = []
        for i in range(n_seq):
            t = time.perf_counter()
            noop.delay(i).get(timeout=30)
            lat.append((time.perf_counter() - t) * 1000)
        out["seq_p50_ms"], out["seq_p99_ms"] = percentile(lat, 50), percentile(lat, 99)
        if n_thru:
            servers = sorted({pid for pid in (broker_pid, redis_pid) if pid})
            w0, s0 = tree_cpu_seconds(worker), process_cpu(servers)
            t = time.perf_counter()
            results = ResultSet([noop.delay(i) for i in range(n_thru)])
            out["publish_ms"] = (time.perf_counter() - t) * 1000 / n_thru
            # join_native polls every `interval` (0.5 s by default), which would round the
            # measured time up to the next half second
            results.join_native(timeout=120, interval=0.005)
            out["thru_per_s"] = n_thru / (time.perf_counter() - t)
            scale = 1000 / n_thru
            out["thru_worker_cpu_s"] = (tree_cpu_seconds(worker) - w0) * scale
            out["thru_server_cpu_s"] = (process_cpu(servers) - s0) * scale
        broker = [broker_pid] if broker_pid else []
        time.sleep(IDLE_SETTLE)
        w0, b0 = tree_cpu_seconds(worker), process_cpu(broker)
        time.sleep(IDLE_WINDOW)
        w1, b1 = tree_cpu_seconds(worker), process_cpu(broker)
        out["idle_cpu_pct"] = 100 * ((w1 - w0) + (b1 - b0)) / IDLE_WINDOW
        wake = []
        for i in range(3):  # the first task after an idle pause (ours: the wake-up path)
            time.sleep(IDLE_SETTLE)
            t = time.perf_counter()
            noop.delay(f"w{i}").get(timeout=30)
            wake.append((time.perf_counter() - t) * 1000)
        out["after_idle_ms"] = statistics.median(wake)
        if kill_test:
            worker.kill()
            worker = start_worker(workdir, conf, queue, workdir / f"{name}-{queue}-r.log")
            t = time.monotonic()
            noop.delay("k").get(timeout=120)
            out["after_kill_first_task_s"] = time.monotonic() - t
        # warm shutdown: SIGTERM to the main process, until it exited
        out["warm_shutdown_s"] = worker.term(timeout=60)
    finally:
        worker.kill()
    if n_drain:
        out["drain_per_s"] = drain_run(conf, workdir, name, n_drain)
    if handover:
        out["handover_stay_s"] = handover_run(conf, workdir, name, leave=False)
        out["handover_leave_s"] = handover_run(conf, workdir, name, leave=True)
    # a worker on 3 queues (the extra two stay empty), fresh queue and group: no dead members
    queue3 = f"{queue}-3q"
    conf = fresh_names(conf, queue3)
    client.conf.update(conf)
    worker = start_worker(workdir, conf, f"{queue3},{queue3}-x,{queue3}-y",
                          workdir / f"{name}-3q.log")
    try:
        ready(worker)
        noop.delay(0).get(timeout=120)
        lat = []
        for i in range(min(n_seq, 50) if n_seq > 20 else 3):  # stock: 10 s per task
            t = time.perf_counter()
            noop.delay(i).get(timeout=30)
            lat.append((time.perf_counter() - t) * 1000)
        out["seq3q_p50_ms"] = percentile(lat, 50)
    finally:
        worker.kill()
        client.close()
    return out


def raw_run(bootstrap: str, n: int, kind: str = "tansu") -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bt-raw-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0,
                         "socket.nagle.disable": True})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                         "fetch.wait.max.ms": 5, "socket.nagle.disable": True,
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    lat = []
    for i in range(n + 20):
        t = time.perf_counter()
        producer.produce(topic, str(i).encode())
        producer.poll(0)
        while True:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None and msg.value() == str(i).encode():
                break
        if i >= 20:
            lat.append((time.perf_counter() - t) * 1000)
    consumer.close()
    return {"config": f"raw confluent-kafka on {kind} (fetch.wait 5 ms)",
            "seq_p50_ms": percentile(lat, 50),
            "seq_p99_ms": percentile(lat, 99)}


COLUMNS = [("ready_s", "ready s"), ("first_task_s", "first task s"),
           ("seq_p50_ms", "seq p50 ms"), ("seq_p99_ms", "seq p99 ms"),
           ("seq3q_p50_ms", "3 queues p50 ms"), ("thru_per_s", "1000 tasks/s"),
           ("publish_ms", "of which publish ms/task"),
           ("thru_worker_cpu_s", "worker CPU s per 1000"),
           ("thru_server_cpu_s", "broker + Redis CPU s per 1000"),
           ("drain_per_s", "backlog drain tasks/s"),
           ("idle_cpu_pct", "idle CPU % (worker+broker)"),
           ("after_idle_ms", "first task after 2 s idle ms"),
           ("after_kill_first_task_s", "first task after kill -9 s"),
           ("warm_shutdown_s", "warm shutdown s"),
           ("handover_stay_s", "handover s, no LeaveGroup"),
           ("handover_leave_s", "handover s, LeaveGroup")]


def fmt(values: list[float]) -> str:
    if not values:
        return "–"
    med, low, high = median_range(values)
    digits = 0 if med >= 100 else 1 if med >= 10 else 2
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n-seq", type=int, default=100)
    parser.add_argument("--n-thru", type=int, default=1000)
    parser.add_argument("--n-drain", type=int, default=2000,
                        help="backlog a fresh worker drains (0: skip; kombu defaults skip it)")
    parser.add_argument("--skip-stock-default", action="store_true",
                        help="skip kombu's transport with defaults (23 s first task)")
    parser.add_argument("--only", action="append", default=[],
                        help="run only configurations whose name contains this (repeatable)")
    parser.add_argument("--json", type=Path, help="also write raw rows as JSON lines here")
    parser.add_argument("--broker", action="append", choices=("tansu", "apache"),
                        help="Kafka broker(s) for our transport (repeatable; default tansu)")
    parser.add_argument("--no-handover", action="store_true",
                        help="skip the two handover measurements")
    args = parser.parse_args(argv)
    kinds = list(dict.fromkeys(args.broker or ["tansu"]))

    workdir_brokers = Path(tempfile.mkdtemp(prefix="bench-transport-brokers-"))
    brokers: dict[str, Service] = {
        kind: start_broker(kind, workdir_brokers / f"{kind}.log") for kind in kinds}
    redis_service = ensure_redis()
    results_url = redis_url_with_db(redis_service.url, 22)
    redis_broker = redis_url_with_db(redis_service.url, 23)
    redis_pid = listening_pid(redis_service.url)
    configs: list[tuple[str, dict[str, Any], str, bool]] = []
    for kind, service in brokers.items():
        label = "tansu" if kind == "tansu" else "Apache Kafka"
        configs.append((f"ours on {label} (async_request.transport.kafka, defaults)",
                        {"broker_url": f"kafka://{service.url}",
                         "broker_transport": "async_request.transport.kafka:Transport",
                         "broker_transport_options": {"group_id": "x"}}, kind, True))
        if kind == "apache":  # the defaults before broker detection, for comparison
            configs.append((f"ours on {label}, detect_broker off (tansu's defaults)",
                            {"broker_url": f"kafka://{service.url}",
                             "broker_transport": "async_request.transport.kafka:Transport",
                             "broker_transport_options": {"group_id": "x",
                                                          "detect_broker": False}},
                            kind, True))
            # Apache Kafka answers a waiting fetch as soon as a record arrives: longer waits
            # should cost no latency and save the empty fetches' CPU
            configs.append((f"ours on {label}, fetch waits 500 ms",
                            {"broker_url": f"kafka://{service.url}",
                             "broker_transport": "async_request.transport.kafka:Transport",
                             "broker_transport_options": {
                                 "group_id": "x", "broadcast_fetch_wait_ms": 500,
                                 "kafka_consumer_config": {"fetch.wait.max.ms": 500}}},
                            kind, True))
    if "tansu" in brokers:
        stock = f"confluentkafka://{brokers['tansu'].url}"
        configs.append(("kombu confluentkafka on tansu, tuned (research §3.4)",
                        {"broker_url": stock, "broker_transport_options": STOCK_TUNED},
                        "tansu", False))
        if not args.skip_stock_default:
            configs.append(("kombu confluentkafka on tansu, defaults", {"broker_url": stock},
                            "tansu", False))
    configs.append(("Celery on Redis broker", {"broker_url": redis_broker}, "redis", True))
    if args.only:
        configs = [c for c in configs if any(word in c[0] for word in args.only)]
    rows: list[dict[str, Any]] = []
    alone: dict[str, float] = {}
    try:
        time.sleep(IDLE_SETTLE)
        for kind, service in brokers.items():  # each broker idle, no client connected yet
            if service.process is not None:
                c0 = process_cpu([service.process.pid])
                time.sleep(IDLE_WINDOW)
                alone[kind] = 100 * (process_cpu([service.process.pid]) - c0) / IDLE_WINDOW
        with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp:
            workdir = Path(tmp)
            (workdir / "btapp.py").write_text(APP)
            for round_ in range(args.repeat):
                for name, conf, broker, kill_test in configs:
                    conf = {**conf, "result_backend": results_url}
                    stock_default = "defaults" in name and "kombu" in name
                    n_seq = 20 if stock_default else args.n_seq
                    tansu = brokers.get("tansu")
                    if tansu and tansu.process is not None and tansu.process.poll() is not None:
                        print("tansu died; restarting it", file=sys.stderr)
                        brokers["tansu"] = start_tansu(port=int(tansu.url.rsplit(":", 1)[1]))
                    try:
                        service = brokers.get(broker)
                        broker_pid = (service.process.pid if service and service.process
                                      else redis_pid)
                        row = celery_run(name, conf, broker_pid,
                                         workdir, n_seq, args.n_thru, kill_test,
                                         0 if stock_default else args.n_drain, redis_pid,
                                         handover=name.startswith("ours")
                                         and not args.no_handover)
                    except Exception as exc:  # noqa: BLE001 - record the failure, keep going
                        row = {"config": name, "error": repr(exc)[:300]}
                    row["round"] = round_
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
                for kind, service in brokers.items():
                    rows.append({**raw_run(service.url, 200, kind), "round": round_})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    finally:
        for service in brokers.values():
            service.stop()
        redis_service.stop()
    if args.json:
        args.json.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    names = list(dict.fromkeys(r["config"] for r in rows))
    print(f"\n{args.repeat} round(s); median (min–max). Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores. Idle CPU of each broker alone (no client, "
          f"{IDLE_WINDOW:g} s): " + ", ".join(f"{k} {v:.1f} %" for k, v in alone.items()) + "\n")
    print("| configuration | " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name in names:
        mine = [r for r in rows if r["config"] == name]
        cells = [fmt([r[key] for r in mine if key in r]) for key, _ in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
