"""Fetch and start real Apache Kafka 4.x brokers (KRaft, loopback) for tests and benchmarks.

tansu (tools/services.py `start_tansu`) is the project's everyday broker; this module gives the
tools and tests the real thing:

- `fetch()` – resolve `org.apache.kafka:kafka_2.13:<version>` and a log4j2 backend with Maven
  (`mvn dependency:copy-dependencies` on a generated pom) into a cache outside the repository,
  once: `$AR_KAFKA_HOME`, else `~/.cache/async-request/kafka-<version>/lib/*.jar`.
  `$AR_KAFKA_VERSION` picks the version (default `DEFAULT_VERSION`).
- `start_single()` – one combined broker+controller node; returns a `tools.services.Service`.
- `start_cluster(3)` – three combined broker+controller nodes (a 3-voter KRaft quorum, so any
  one node may die); returns a `KafkaCluster` (same `name`, `url`, `process`, `log`, `stop()`
  as `Service`, plus `kill_node(id)`, `stop_node(id)`, `restart_node(id)` for failover tests).
- `start_test_broker()` – the broker the test fixtures use: tansu, or a single Apache Kafka
  node when env `AR_TEST_KAFKA=apache`.

Every start gets free ports, its own temp data dir (removed on `stop()`), a log file per node,
and returns once a client sees every broker in the metadata, a produce is acknowledged and the
group coordinator takes an offset commit.

CLI: `python tools/apache_kafka.py fetch|single|cluster` (foreground; Ctrl-C stops).

Broker settings differ from Kafka's built-in defaults only where Kafka's own shipped
`config/server.properties` does for development (`group.initial.rebalance.delay.ms=0`,
replication factors that fit the node count) and in `offsets.topic.num.partitions` (10, not
50: faster first group on 2 cores). `group.min.session.timeout.ms` stays at Kafka's 6000.
Pass `config={...}` to override or add any broker property.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python tools/apache_kafka.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.services import Service, free_port, spawn, start_tansu, wait_for_port  # noqa: E402

DEFAULT_VERSION = "4.4.0"
#: log4j2 is Kafka 4.x's logging backend; kafka_2.13 brings slf4j-api 1.7 and no binding.
LOG4J_VERSION = "2.26.1"
SLF4J_VERSION = "2.0.20"
#: JVM options of every node: quick start on 2 shared cores.
JVM_OPTS = ["-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true"]
#: Heap of a single node, and of each node of a cluster (three JVMs on 2 shared cores);
#: env KAFKA_HEAP_OPTS (as Kafka's own scripts read it) overrides both.
SINGLE_HEAP = "-Xms128m -Xmx512m"
CLUSTER_HEAP = "-Xms64m -Xmx320m"
START_TIMEOUT = 90.0

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.async-request</groupId>
  <artifactId>apache-kafka-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.raft.name = org.apache.kafka.raft
logger.raft.level = INFO
"""


def version() -> str:
    """The Apache Kafka version to use: env AR_KAFKA_VERSION, else DEFAULT_VERSION."""
    return os.environ.get("AR_KAFKA_VERSION") or DEFAULT_VERSION


def home(kafka_version: str | None = None) -> Path:
    """The cache directory: env AR_KAFKA_HOME, else ~/.cache/async-request/kafka-<version>."""
    explicit = os.environ.get("AR_KAFKA_HOME")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "async-request" / f"kafka-{kafka_version or version()}"


def _complete(lib: Path, kafka_version: str) -> bool:
    return (lib / ".complete").is_file() and (lib / f"kafka_2.13-{kafka_version}.jar").is_file()


def fetch(kafka_version: str | None = None, quiet: bool = False) -> Path:
    """Resolve Apache Kafka and log4j2 into `home()/lib` with Maven (once); return lib.

    Uses the machine's `mvn` (env MVN overrides) and its local repository (~/.m2).
    """
    kafka_version = kafka_version or version()
    root = home(kafka_version)
    lib = root / "lib"
    if _complete(lib, kafka_version):
        return lib
    mvn = os.environ.get("MVN") or shutil.which("mvn")
    if not mvn:
        raise RuntimeError("Apache Kafka is fetched with Maven: install `mvn` or set MVN")
    root.mkdir(parents=True, exist_ok=True)
    (root / "pom.xml").write_text(
        _POM.format(kafka=kafka_version, slf4j=SLF4J_VERSION, log4j=LOG4J_VERSION))
    staging = root / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    started = time.monotonic()
    if not quiet:
        print(f"fetching Apache Kafka {kafka_version} with Maven into {lib} ...", file=sys.stderr)
    result = subprocess.run(
        [mvn, "-B", "-q", "-f", str(root / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0 or not (staging / f"kafka_2.13-{kafka_version}.jar").is_file():
        raise RuntimeError(f"mvn could not fetch Apache Kafka {kafka_version}:\n"
                           + result.stdout.decode(errors="replace")[-4000:])
    # kafka_2.13 also pulls slf4j-api 1.7; keep only the 2.x the log4j2 binding needs
    for old in staging.glob("slf4j-api-1.*.jar"):
        old.unlink()
    (staging / "log4j2.properties").write_text(_LOG4J2)
    (staging / ".complete").write_text(f"{kafka_version}\n")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    if not quiet:
        print(f"fetched in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return lib


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise RuntimeError("Apache Kafka needs Java 17+: install a JDK or set JAVA_HOME")
    return found


def _java_argv(lib: Path, main: str, *args: str, heap: str = SINGLE_HEAP) -> list[str]:
    heap = os.environ.get("KAFKA_HEAP_OPTS") or heap
    return [_java(), *heap.split(), *JVM_OPTS,
            f"-Dlog4j2.configurationFile={lib / 'log4j2.properties'}",
            "-cp", f"{lib}/*", main, *args]


@dataclass
class KafkaNode(Service):
    """One Apache Kafka process (broker+controller); `url` is its own bootstrap address."""

    node_id: int = 0
    port: int = 0
    controller_port: int = 0
    config_path: Path | None = None
    lib: Path | None = None
    heap: str = SINGLE_HEAP

    def start(self) -> None:
        """(Re)start the process on its existing data dir and config (after stop/kill)."""
        assert self.lib is not None and self.config_path is not None
        if self.process is not None and self.process.poll() is None:
            return
        self.process = spawn(_java_argv(self.lib, "kafka.Kafka", str(self.config_path),
                                        heap=self.heap), self.log)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None


@dataclass
class KafkaCluster:
    """Several Apache Kafka nodes; quacks like `tools.services.Service` (name, url, stop)."""

    name: str
    url: str
    nodes: list[KafkaNode]
    workdir: Path
    cleanup: list[Path] = field(default_factory=list)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The first node's process (for code that expects one)."""
        return self.nodes[0].process

    @property
    def processes(self) -> list[subprocess.Popen[bytes] | None]:
        """Every node's process, by node id order."""
        return [node.process for node in self.nodes]

    @property
    def log(self) -> Path | None:
        """The first node's log (every node logs to `<workdir>/kafka-<id>.log`)."""
        return self.nodes[0].log

    @property
    def logs(self) -> list[Path]:
        """Every node's log file."""
        return [node.log for node in self.nodes if node.log is not None]

    def node(self, node_id: int) -> KafkaNode:
        """The node with `node_id` (1-based, as in the broker config)."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no Kafka node {node_id}: {[n.node_id for n in self.nodes]}")

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node (its data dir stays: `restart_node` brings it back).

        The controller fences it only after `broker.session.timeout.ms` (Kafka's 9 s unless
        `config` set it): until then metadata still lists it and leads its partitions.
        """
        self.node(node_id).kill()

    def stop_node(self, node_id: int, timeout: float = 20.0) -> None:
        """SIGTERM one node (controlled shutdown), SIGKILL after `timeout`; data dir stays."""
        node = self.node(node_id)
        cleanup, node.cleanup = node.cleanup, []
        try:
            node.stop(timeout)
        finally:
            node.cleanup = cleanup

    def restart_node(self, node_id: int, timeout: float = START_TIMEOUT) -> None:
        """Start a stopped/killed node again and wait until the cluster lists all nodes."""
        node = self.node(node_id)
        node.start()
        wait_for_port("127.0.0.1", node.port, timeout, node.process, f"Apache Kafka node {node_id}")
        wait_ready(self.url, len(self.nodes), timeout, self.nodes)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every node (SIGTERM to all at once, SIGKILL after `timeout`); remove data.

        With every controller going at once a node's controlled shutdown may wait for a
        quorum that is gone (seen: 20 s); the data is discarded, so do not wait long."""
        for node in self.nodes:
            if node.alive():
                assert node.process is not None
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.process.pid, signal.SIGTERM)
        for node in self.nodes:
            node.stop(timeout)
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL every node."""
        for node in self.nodes:
            node.kill()


def _properties(values: dict[str, object]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def _node_config(node_id: int, port: int, controller_port: int, voters: str, data: Path,
                 count: int, extra: dict[str, object] | None) -> dict[str, object]:
    replicas = min(3, count)
    config: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": data,
        "num.partitions": 1,
        "default.replication.factor": replicas,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min(2, replicas),
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min(2, replicas),
        "group.initial.rebalance.delay.ms": 0,
    }
    config.update(extra or {})
    return config


def _start_nodes(count: int, workdir: Path, lib: Path, logs: list[Path],
                 config: dict[str, object] | None, heap: str = SINGLE_HEAP) -> list[KafkaNode]:
    ports = [(free_port(), free_port()) for _ in range(count)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{cport}" for i, (_, cport) in enumerate(ports))
    cluster_id = _cluster_id()
    nodes: list[KafkaNode] = []
    formats: list[tuple[KafkaNode, subprocess.Popen[bytes]]] = []
    for index, (port, cport) in enumerate(ports):
        node_id = index + 1
        data = workdir / f"data-{node_id}"
        props = workdir / f"server-{node_id}.properties"
        props.write_text(_properties(
            _node_config(node_id, port, cport, voters, data, count, config)))
        log = logs[index]
        node = KafkaNode(f"kafka-{node_id}", f"127.0.0.1:{port}", log=log, node_id=node_id,
                         port=port, controller_port=cport, config_path=props, lib=lib,
                         heap=heap)
        nodes.append(node)
        # static quorum (controller.quorum.voters): `format` needs no --initial-controllers
        formats.append((node, spawn(_java_argv(
            lib, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
            f"--config={props}",
            "--ignore-formatted"), log)))
    for node, proc in formats:
        if proc.wait(120) != 0:
            raise RuntimeError(f"kafka-storage format of node {node.node_id} failed "
                               f"(exit {proc.returncode}); see {node.log}")
    for node in nodes:
        node.start()
    return nodes


def _cluster_id() -> str:
    import base64

    while True:  # like Kafka's Uuid.randomUuid(): never starting with "-" (an option to argparse)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def wait_ready(bootstrap: str, brokers: int, timeout: float,
               nodes: list[KafkaNode] | None = None) -> None:
    """Wait until metadata lists `brokers` brokers, a produce to a probe topic is acked and
    the group coordinator answers."""
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=_silent_logger())
    seen = 0
    while time.monotonic() < deadline:
        for node in nodes or []:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"Apache Kafka node {node.node_id} exited with code "
                                   f"{node.process.returncode}; see {node.log}")
        try:
            seen = len(admin.list_topics(timeout=2).brokers)
        except KafkaException:
            seen = 0
        if seen >= brokers:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"Apache Kafka at {bootstrap}: {seen} of {brokers} brokers after "
                           f"{timeout:.0f}s")
    left_ms = max(1000, int((deadline - time.monotonic()) * 1000))
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "message.timeout.ms": left_ms}, logger=_silent_logger())
    errors: list[object] = []
    producer.produce("__ar_ready", b"ready", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(max(1.0, deadline - time.monotonic()))
    if not errors or errors[0] is not None:
        raise RuntimeError(f"Apache Kafka at {bootstrap} listed {seen} brokers but did not "
                           f"acknowledge a produce: {errors or 'timeout'}")
    _wait_group_coordinator(bootstrap, deadline)


def _wait_group_coordinator(bootstrap: str, deadline: float) -> None:
    """Commit an offset for a probe group until the group coordinator takes it.

    A fresh broker creates `__consumer_offsets` on the first group request and answers
    COORDINATOR_NOT_AVAILABLE / NOT_COORDINATOR until it is loaded; librdkafka's admin client
    crashes on NOT_COORDINATOR (docs/transport.md, "Known issues"), so "ready" includes this.
    A consumer's own group code retries such errors: `commit()` returns once they are over.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "__ar_ready",
                         "enable.auto.commit": False}, logger=_silent_logger())
    try:
        while True:
            try:
                consumer.commit(offsets=[TopicPartition("__ar_ready", 0, 1)],
                                asynchronous=False)
                return
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Apache Kafka at {bootstrap}: the group coordinator "
                                       f"did not take an offset commit: {exc}") from exc
                time.sleep(0.2)
    finally:
        consumer.close()


def _silent_logger() -> logging.Logger:
    logger = logging.getLogger("tools.apache_kafka.client")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def start_cluster(count: int = 3, log_dir: Path | None = None,
                  config: dict[str, object] | None = None,
                  timeout: float = START_TIMEOUT) -> KafkaCluster:
    """Start `count` combined broker+controller nodes on loopback; wait until all serve."""
    lib = fetch(quiet=True)
    workdir = Path(tempfile.mkdtemp(prefix="async-request-kafka-"))
    log_dir = log_dir or workdir
    log_dir.mkdir(parents=True, exist_ok=True)
    nodes: list[KafkaNode] = []
    cluster = KafkaCluster("kafka", "", nodes, workdir, [workdir])
    try:
        logs = [log_dir / f"kafka-{node_id}.log" for node_id in range(1, count + 1)]
        nodes.extend(_start_nodes(count, workdir, lib, logs, config, CLUSTER_HEAP))
        cluster.url = ",".join(node.url for node in nodes)
        wait_ready(cluster.url, count, timeout, nodes)
    except BaseException:
        cluster.stop(5)
        raise
    return cluster


def start_single(log_path: Path | None = None, config: dict[str, object] | None = None,
                 timeout: float = START_TIMEOUT) -> Service:
    """Start one combined broker+controller node; a `Service` named "kafka" owning it."""
    lib = fetch(quiet=True)
    workdir = Path(tempfile.mkdtemp(prefix="async-request-kafka-"))
    try:
        (node,) = _start_nodes(1, workdir, lib, [log_path or workdir / "kafka.log"], config)
        node.name = "kafka"
        node.cleanup = [workdir]
        wait_ready(node.url, 1, timeout, [node])
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return node


def start_test_broker(log_path: Path | None = None) -> Service:
    """The broker of the test fixtures: tansu, or Apache Kafka when AR_TEST_KAFKA=apache."""
    choice = (os.environ.get("AR_TEST_KAFKA") or "tansu").lower()
    if choice == "apache":
        return start_single(log_path=log_path)
    if choice != "tansu":
        raise RuntimeError(f"AR_TEST_KAFKA={choice!r}: use 'tansu' (default) or 'apache'")
    return start_tansu(log_path=log_path)


def main(argv: list[str]) -> int:
    """CLI: fetch | single | cluster [N]."""
    command = argv[0] if argv else "single"
    started = time.monotonic()
    if command == "fetch":
        lib = fetch()
        print(f"{lib} ({len(list(lib.glob('*.jar')))} jars) in {time.monotonic() - started:.1f}s")
        return 0
    if command not in ("single", "cluster"):
        print("usage: python tools/apache_kafka.py fetch|single|cluster [N]", file=sys.stderr)
        return 2
    fetch()
    started = time.monotonic()
    broker: Service | KafkaCluster
    if command == "single":
        broker = start_single()
    else:
        broker = start_cluster(int(argv[1]) if len(argv) > 1 else 3)
    logs = broker.logs if isinstance(broker, KafkaCluster) else [broker.log]
    print(f"Apache Kafka {version()} ({command}) at {broker.url}, ready in "
          f"{time.monotonic() - started:.1f}s; logs {', '.join(map(str, logs))}; Ctrl-C stops",
          flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        stopping = time.monotonic()
        broker.stop()
        print(f"stopped in {time.monotonic() - stopping:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
