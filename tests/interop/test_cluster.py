"""A three-node sluiced cluster (scripts/cluster, combined broker+controller
nodes on 127.0.0.1) driven by Apache Kafka's own tools and by real clients
under faults.

- kafka-topics (TopicCommand from Kafka's jars) runs the seed command of the
  replicated-cluster issue, describes Leader/Replicas/Isr, lists
  under-replicated partitions while a broker is down and none once it is back;
  kafka-leader-election then moves its leaderships back to the preferred
  replicas; kafka-metadata-quorum describes the controller quorum.
  kafka-topics creates a topic from a manual --replica-assignment and
  kafka-reassign-partitions (--generate, --execute, --list, --verify) moves
  its replicas while its records stay readable; kafka-cluster unregister
  retires a stopped broker, which registers anew when started again.
- An idempotent acks=all confluent-kafka producer writes under steady load
  while the leader of a partition is killed with SIGKILL five times (the
  third time the active controller instead, while topics are being created:
  every create reported done exists, fully led; and restarted each time),
  then stopped with SIGTERM (controlled shutdown: the
  application sees no error); readers then read everything and the history checker
  (history.py, proven on planted faults in test_history_checker.py) must find
  no lost, duplicated or reordered acknowledged record. The same judges a
  rolling restart followed by two of three brokers down, and a leader paused
  with SIGSTOP (isolated: fenced, replaced, resumed, truncated to the new
  leader, replicas byte-identical).
- A group's coordinator killed: the new one answers the same committed
  offsets. A transaction coordinator killed with a transaction open: the
  producer's new instance aborts it through the new coordinator and commits
  its own; read_committed readers see exactly the committed records.
  kafka-python, KafkaJS, the Java client and the Sluice client
  (Rust CLI, Python, Node) write to one partition together while its
  leader is killed: every acks=all send succeeds, each value lands once,
  in order.

The cluster, the load producer and the waits come from cluster_harness.py
(shared with the randomised fault suite, tests/faults/fault_suite.py).
The cluster uses broker.session.timeout.ms = 3000 (Kafka's default is 9000)
so a dead leader is fenced quickly; failover times are printed, not asserted.
Only for sluiced: SLUICE_INTEROP_BROKER=kafka skips this module.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cluster_harness import Cluster, LoadProducer, TopicCreator, active_controller, leader_port, wait_for
from conftest import BROKER_KIND, CACHE, REPO_ROOT, SLUICED_BIN
from history import History, check
from test_history_checker import ReaderThread

pytestmark = pytest.mark.skipif(BROKER_KIND != "sluiced", reason="the cluster is sluiced's")

NODES = 3
SESSION_TIMEOUT_MS = 3000
EXTRA = f"""
"broker.session.timeout.ms" = {SESSION_TIMEOUT_MS}
"broker.heartbeat.interval.ms" = 500
"group.initial.rebalance.delay.ms" = 0
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not SLUICED_BIN.exists():
        pytest.fail(f"{SLUICED_BIN} is missing: build it first (cargo build --release -p sluice-broker)")
    c = Cluster(tmp_path_factory.mktemp("cluster"), SLUICED_BIN, EXTRA, NODES)
    try:
        c.run("up", str(NODES))
        yield c
    finally:
        c.teardown()


def kafka_tool(main_class: str, *args: str, timeout: float = 120) -> str:
    libs = CACHE / "kafka-4.1.1" / "libs"
    jars = sorted(CACHE.glob("kafka-*/libs"))
    if not libs.exists() and jars:
        libs = jars[-1]
    r = subprocess.run(["java", "-Xmx256m", "-cp", f"{libs}/*", main_class, *args],
                       capture_output=True, text=True, timeout=timeout)
    return r.stdout + r.stderr


def topics_tool(cluster: Cluster, *args: str) -> str:
    return kafka_tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", cluster.bootstrap, *args)


QUORUM_LEADER = re.compile(r"LeaderId:\s+(\d+)")
PARTITION_LINE = re.compile(
    r"Partition: (\d+)\s+Leader: (-?\d+)\s+Replicas: ([\d,]+)\s+Isr: ([\d,]*)")


def describe(cluster: Cluster, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    out = topics_tool(cluster, "--describe", "--topic", topic)
    parts = {}
    for m in PARTITION_LINE.finditer(out):
        ids = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
        parts[int(m.group(1))] = (int(m.group(2)), ids(m.group(3)), ids(m.group(4)))
    assert parts, out
    return parts


def test_kafka_tools_see_replicas_isr_and_the_quorum(cluster):
    out = topics_tool(cluster, "--create", "--topic", "application-events", "--partitions", "6",
                      "--replication-factor", "3", "--config", "retention.ms=604800000",
                      "--config", "cleanup.policy=delete")
    assert "Created topic application-events." in out, out
    parts = describe(cluster, "application-events")
    assert sorted(parts) == list(range(6))
    for p, (leader, replicas, isr) in parts.items():
        assert len(set(replicas)) == 3 and set(replicas) <= {1, 2, 3}, (p, replicas)
        assert sorted(isr) == sorted(replicas), (p, isr)
        assert leader == replicas[0], (p, leader, replicas)
    assert not PARTITION_LINE.search(topics_tool(cluster, "--describe", "--under-replicated-partitions"))

    status = kafka_tool("org.apache.kafka.tools.MetadataQuorumCommand", "--bootstrap-server",
                        cluster.bootstrap, "describe", "--status")
    leader = QUORUM_LEADER.search(status)
    assert leader and int(leader.group(1)) in (1, 2, 3), status
    voters = re.search(r"CurrentVoters:\s+(.*)", status)
    assert voters and all(f'"id": {i}' in voters.group(1) for i in (1, 2, 3)), status

    # A broker down: its replicas are under-replicated, and back in sync once
    # it returns and its fetchers catch up.
    cluster.run("kill", "3")
    wait_for("partitions under-replicated", lambda: len(PARTITION_LINE.findall(
        topics_tool(cluster, "--describe", "--topic", "application-events",
                    "--under-replicated-partitions"))) == 6, cluster=cluster)
    for _, (leader, _, isr) in describe(cluster, "application-events").items():
        assert leader != 3 and 3 not in isr
    cluster.run("start", "3")
    wait_for("the ISR to include broker 3 again", lambda: all(
        3 in isr for _, (_, _, isr) in describe(cluster, "application-events").items()),
        timeout=90, cluster=cluster)

    # Its leaderships stay elsewhere (auto rebalance waits 300 s) until
    # kafka-leader-election moves them back to the preferred replicas.
    displaced = [p for p, (leader, replicas, _) in describe(cluster, "application-events").items()
                 if leader != replicas[0]]
    assert displaced, "broker 3 led nothing it prefers"
    out = kafka_tool("org.apache.kafka.tools.LeaderElectionCommand", "--bootstrap-server",
                     cluster.bootstrap, "--election-type", "PREFERRED", "--all-topic-partitions")
    assert "Successfully completed leader election (PREFERRED)" in out, out
    for p in displaced:
        assert f"application-events-{p}" in out, (p, out)
    for p, (leader, replicas, _) in describe(cluster, "application-events").items():
        assert leader == replicas[0], (p, leader, replicas)


REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"


def test_kafka_reassign_partitions_moves_replicas(cluster, tmp_path):
    from confluent_kafka import Producer

    out = topics_tool(cluster, "--create", "--topic", "relocated", "--replica-assignment", "1:2,2:3,3:1")
    assert "Created topic relocated." in out, out
    before = {0: [1, 2], 1: [2, 3], 2: [3, 1]}
    parts = describe(cluster, "relocated")
    for p, replicas in before.items():
        assert parts[p][0] == replicas[0] and parts[p][1] == replicas, (p, parts)
        assert sorted(parts[p][2]) == sorted(replicas), (p, parts)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})
    for p in before:
        for i in range(50):
            producer.produce("relocated", value=f"r{p}-{i}".encode(), partition=p)
    assert producer.flush(30) == 0

    topics = tmp_path / "topics.json"
    topics.write_text('{"version": 1, "topics": [{"topic": "relocated"}]}')
    out = kafka_tool(REASSIGN, "--bootstrap-server", cluster.bootstrap, "--generate",
                     "--topics-to-move-json-file", str(topics), "--broker-list", "1,2,3")
    assert "Current partition replica assignment" in out and "Proposed partition reassignment" in out, out

    # Every partition moves to the broker it did not have, one of them off
    # its leader.
    after = {0: [3, 1], 1: [1, 2], 2: [2, 3]}
    plan = tmp_path / "plan.json"
    plan.write_text('{"version": 1, "partitions": [' + ", ".join(
        f'{{"topic": "relocated", "partition": {p}, "replicas": [{r[0]}, {r[1]}]}}'
        for p, r in after.items()) + "]}")
    out = kafka_tool(REASSIGN, "--bootstrap-server", cluster.bootstrap, "--execute",
                     "--reassignment-json-file", str(plan))
    assert "Successfully started partition reassignment" in out, out

    def verified() -> bool:
        out = kafka_tool(REASSIGN, "--bootstrap-server", cluster.bootstrap, "--verify",
                         "--reassignment-json-file", str(plan))
        done = all(f"Reassignment of partition relocated-{p} is completed." in out for p in after)
        assert "Error" not in out and "Exception" not in out, out
        return done

    wait_for("kafka-reassign-partitions --verify to report every move completed", verified,
             timeout=90, cluster=cluster)
    out = kafka_tool(REASSIGN, "--bootstrap-server", cluster.bootstrap, "--list")
    assert "No partition reassignments found." in out, out
    parts = describe(cluster, "relocated")
    for p, replicas in after.items():
        assert parts[p][1] == replicas, (p, parts)
        assert sorted(parts[p][2]) == sorted(replicas), (p, parts)
        assert parts[p][0] in replicas, (p, parts)
    for p in before:
        assert read_partition(cluster, "relocated", 50, partition=p) == [f"r{p}-{i}" for i in range(50)]

    # kafka-cluster unregister: refused while the broker runs; once it is
    # stopped its registration goes, and started again it registers anew
    # and rejoins every ISR.
    def unregister() -> str:
        return kafka_tool("org.apache.kafka.tools.ClusterTool", "unregister",
                          "--bootstrap-server", cluster.bootstrap, "--id", "3")

    out = unregister()
    assert "running" in out and "Broker 3 is no longer registered" not in out, out
    cluster.run("stop", "3")
    out = unregister()
    assert "Broker 3 is no longer registered." in out, out
    cluster.run("start", "3")
    wait_for("broker 3 to register again and rejoin every ISR", lambda: all(
        3 in isr for _, (_, replicas, isr) in describe(cluster, "relocated").items() if 3 in replicas),
        timeout=90, cluster=cluster)


def read_all_and_check(cluster: Cluster, topic: str, h: History, keep_as: str):
    """Two readers read every partition of `topic` to its high watermark
    into `h`; the checker's report (the history is kept under the cluster's
    folder when it finds anomalies)."""
    import test_history_checker as thc

    ends = thc.high_watermarks(cluster.bootstrap, topic)
    assert len(ends) == thc.PARTITIONS  # ReaderThread reads that many
    readers = [ReaderThread(cluster.bootstrap, topic, h, f"c{n}") for n in range(2)]
    for r in readers:
        r.ends = ends
        r.start()
    for r in readers:
        r.join(240)
        assert r.exc is None, r.exc
    report = check(h)
    if not report.ok:
        h.save(cluster.root / keep_as)
    return report


def test_killing_leaders_loses_no_acknowledged_record(cluster):
    from confluent_kafka.admin import AdminClient, NewTopic

    topic, partitions = "faults", 4
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    fs = admin.create_topics([NewTopic(topic, partitions, 3, config={"min.insync.replicas": "2"})])
    fs[topic].result(30)
    h = History(meta={"test": "leader kill -9 x5", "session_timeout_ms": SESSION_TIMEOUT_MS})
    producer = LoadProducer(cluster.bootstrap, topic, h, "p0", partitions)
    producer.start()
    wait_for("first acknowledgements", lambda: producer.acked > 200, cluster=cluster)
    failovers = []
    creator = None
    for kill in range(5):
        leader, _ = wait_for("a leader of partition 0",
                             lambda: (lambda r: r if r[0] >= 0 else None)(leader_port(cluster.bootstrap, topic, 0)),
                             cluster=cluster)
        if kill == 2:
            # This time the active controller dies, in the middle of topic
            # creations (and of the load, whichever partitions it leads).
            leader = active_controller(cluster)
            creator = TopicCreator(cluster.bootstrap, "created-under-faults")
            creator.start()
            wait_for("topics being created", lambda c=creator: len(c.created) >= 3, cluster=cluster)
        before = producer.acked
        killed_at = time.monotonic()
        cluster.run("kill", str(leader))
        wait_for("produce to resume",
                 lambda before=before, killed_at=killed_at: producer.acked > before + 100
                 and producer.last_ack > killed_at,
                 timeout=90, cluster=cluster)
        failovers.append(round(producer.last_ack - killed_at, 2))
        if creator is not None and creator.is_alive():
            creator.stop.set()
            creator.join(120)
            assert not creator.is_alive()
        cluster.run("start", str(leader))
        wait_for("the ISR back to three", lambda: all(
            len(leader_port(cluster.bootstrap, topic, p)[1]) == 3 for p in range(partitions)),
            timeout=90, cluster=cluster)
        assert producer.exc is None, producer.exc
    # A controlled shutdown (SIGTERM): leaderships move first, so the
    # producer sees no error that reaches the application.
    leader, _ = leader_port(cluster.bootstrap, topic, 0)
    before = producer.acked
    cluster.run("stop", str(leader))
    assert leader_port(cluster.bootstrap, topic, 0)[0] not in (leader, -1)
    wait_for("produce after a controlled shutdown", lambda: producer.acked > before + 100,
             timeout=60, cluster=cluster)
    cluster.run("start", str(leader))
    producer.stop.set()
    producer.join(240)
    assert not producer.is_alive() and producer.exc is None, producer.exc

    assert creator is not None
    creator.check(cluster)
    report = read_all_and_check(cluster, topic, h, "history-kills.jsonl")
    print(f"leader kills (the third one the active controller's, during topic creation: "
          f"{len(creator.created)} created, {len(creator.failed)} failed then retried): "
          f"failover (kill to next acknowledgement) {failovers} s; "
          f"producer errors {sorted(set(producer.errors))}; {report.summary()}")
    assert report.ok, report.summary()
    assert report.stats["acked"] == producer.acked > 0


def test_group_coordinator_fails_over_with_its_committed_offsets(cluster):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic, group, partitions = "group-failover", "g-failover", 3
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 3)])[topic].result(30)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(30):
        p.produce(topic, value=f"v{i}", partition=i % partitions)
    assert p.flush(60) == 0

    def consumer() -> Consumer:
        return Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000})

    c = consumer()
    c.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 30 and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            seen += 1
    assert seen == 30
    c.commit(asynchronous=False)
    tps = [TopicPartition(topic, q) for q in range(partitions)]
    committed = [(t.partition, t.offset) for t in c.committed(tps, timeout=30)]
    assert all(off == 10 for _, off in committed), committed
    c.close()

    coordinator = admin.describe_consumer_groups([group])[group].result(30).coordinator.id
    cluster.run("kill", str(coordinator))
    c2 = consumer()
    try:
        def offsets_back():
            try:
                got = [(t.partition, t.offset) for t in c2.committed(tps, timeout=10)]
            except Exception:  # noqa: BLE001 - the coordinator is moving: retry
                return None
            return got if got == committed else None

        wait_for("the committed offsets from the new coordinator", offsets_back, timeout=60, cluster=cluster)
        new = admin.describe_consumer_groups([group])[group].result(30).coordinator.id
        assert new != coordinator
    finally:
        c2.close()
        cluster.run("start", str(coordinator))


def describe_transaction(cluster: Cluster, txn_id: str) -> tuple[int, str]:
    """(coordinator id, state) from `kafka-transactions describe`."""
    out = kafka_tool("org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", cluster.bootstrap,
                     "describe", "--transactional-id", txn_id)
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[0].isdigit() and cols[1] == txn_id:
            return int(cols[0]), cols[4]
    raise AssertionError(f"no transaction {txn_id} in:\n{out}")


def test_transaction_coordinator_fails_over_and_fences_the_old_producer(cluster):
    """A transaction commits across brokers (markers to remote leaders); the
    transaction coordinator is killed with a transaction open; a new
    instance of the producer, served by the new coordinator, aborts it and
    commits its own; read_committed readers see exactly the committed
    records."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic, txn_id, partitions = "txn-failover", "txn-failover-id", 3
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 3)])[topic].result(30)

    def producer() -> Producer:
        return Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": txn_id,
                         "transaction.timeout.ms": 60000})

    first = producer()
    first.init_transactions(60)
    first.begin_transaction()
    for i in range(30):
        first.produce(topic, key=f"first-{i}", value=b"v", partition=i % partitions)
    first.commit_transaction(60)
    first.begin_transaction()
    for i in range(20):
        first.produce(topic, key=f"open-{i}", value=b"v", partition=i % partitions)
    assert first.flush(60) == 0
    coordinator, state = describe_transaction(cluster, txn_id)
    assert state == "Ongoing"

    cluster.run("kill", str(coordinator))
    try:
        second = producer()
        # Retries inside until the new coordinator has loaded the id and
        # aborted what the first instance left open.
        second.init_transactions(120)
        second.begin_transaction()
        for i in range(10):
            second.produce(topic, key=f"after-{i}", value=b"v", partition=i % partitions)
        second.commit_transaction(60)
        new_coordinator, state = describe_transaction(cluster, txn_id)
        assert new_coordinator != coordinator
        assert state in ("PrepareCommit", "CompleteCommit"), state
    finally:
        cluster.run("start", str(coordinator))

    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "txn-failover-reader",
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    keys: list[str] = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(keys) < 40 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                keys.append(m.key().decode())
        end = time.monotonic() + 2
        while time.monotonic() < end:
            m = c.poll(0.2)
            if m is not None and not m.error():
                keys.append(m.key().decode())
    finally:
        c.close()
    expected = sorted([f"first-{i}" for i in range(30)] + [f"after-{i}" for i in range(10)])
    assert sorted(keys) == expected, sorted(keys)[:50]


def test_rolling_restart_and_two_brokers_down_lose_nothing(cluster):
    from confluent_kafka.admin import AdminClient, NewTopic

    topic, partitions = "rolling", 4
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
    h = History(meta={"test": "rolling restart, then two of three down"})
    producer = LoadProducer(cluster.bootstrap, topic, h, "p0", partitions)
    producer.start()
    wait_for("first acknowledgements", lambda: producer.acked > 200, cluster=cluster)

    def in_sync() -> bool:
        return all(len(leader_port(cluster.bootstrap, topic, p)[1]) == 3 for p in range(partitions))

    # Rolling restart: each node stopped (controlled) and started in turn.
    for node in (1, 2, 3):
        before = producer.acked
        cluster.run("stop", str(node))
        cluster.run("start", str(node))
        wait_for("the ISR back to three", in_sync, timeout=90, cluster=cluster)
        wait_for("acknowledgements", lambda before=before: producer.acked > before + 100, cluster=cluster)

    # Two of three down: below min.insync.replicas (and the controller quorum
    # lost), nothing may be acknowledged; writes resume when one returns.
    cluster.run("kill", "2")
    cluster.run("kill", "3")
    time.sleep(2)
    stalled_at = producer.acked
    time.sleep(5)
    acked_while_down = producer.acked - stalled_at
    cluster.run("start", "2")
    wait_for("writes to resume with two brokers", lambda: producer.acked > stalled_at + 100,
             timeout=120, cluster=cluster)
    cluster.run("start", "3")
    wait_for("the ISR back to three", in_sync, timeout=120, cluster=cluster)
    producer.stop.set()
    producer.join(240)
    assert not producer.is_alive() and producer.exc is None, producer.exc

    report = read_all_and_check(cluster, topic, h, "history-rolling.jsonl")
    print(f"rolling restart + two down: acknowledged while two were down: {acked_while_down}; "
          f"producer errors {sorted(set(producer.errors))}; {report.summary()}")
    assert report.ok, report.summary()


def read_partition(cluster: Cluster, topic: str, count: int, partition: int = 0) -> list[str]:
    """Up to `count` values of one partition of `topic`, from its start."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"check-{topic}",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, partition, 0)])
        read: list[str] = []
        deadline = time.monotonic() + 60
        while len(read) < count and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                read.append(msg.value().decode())
        return read
    finally:
        c.close()


class PythonRideThrough(threading.Thread):
    """kafka-python, or the Sluice Python package with the same code: sends
    `prefix-<i>` one at a time to partition 0 (acks=all, idempotent), waiting
    for each acknowledgement; after the first half it sets `half` and waits
    for `go`."""

    def __init__(self, module: str, bootstrap: str, topic: str, records: int):
        super().__init__(name=f"ride-through-{module}", daemon=True)
        self.module, self.bootstrap, self.topic, self.records = module, bootstrap, topic, records
        self.half, self.go = threading.Event(), threading.Event()
        self.exc: BaseException | None = None

    def run(self) -> None:
        import importlib

        try:
            kafka_api = importlib.import_module(self.module)
            producer = kafka_api.KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", retries=100,
                                               retry_backoff_ms=200, request_timeout_ms=30000,
                                               enable_idempotence=True)
            try:
                for i in range(self.records):
                    if i == self.records // 2:
                        self.half.set()
                        if not self.go.wait(120):
                            raise AssertionError("no go-ahead")
                    producer.send(self.topic, value=f"{self.module}-{i}".encode(), partition=0).get(timeout=150)
            finally:
                producer.close()
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            self.exc = e
            self.half.set()


class ProcessRideThrough:
    """A client in its own process speaking the ride-through protocol of
    node/ride_through.js and java/.../RideThrough.java: prints "half", waits
    for a line on standard input, prints "ride-through OK"."""

    def __init__(self, prefix: str, cmd: list[str], cwd: Path | None = None):
        self.prefix = prefix
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.half = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if line.strip() == "half":
                self.half.set()
        self.half.set()  # exited early: the wait below must not hang

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()

    def finish(self, timeout: float) -> None:
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self.reader.join(10)
        assert rc == 0 and "ride-through OK" in self.lines, \
            f"{self.prefix} exited {rc}:\n" + "\n".join(self.lines[-40:])


def test_real_clients_ride_through_a_leader_kill(cluster):
    """kafka-python, KafkaJS, the Java client, and the Sluice client through
    Rust (the `sluice` CLI), Python and Node, all writing to one partition
    (acks=all, idempotent) when its leader is killed: every send succeeds
    (retriable errors stay inside the clients) and the partition holds each
    client's values once, in the order sent."""
    import shutil

    from confluent_kafka.admin import AdminClient, NewTopic

    from conftest import INTEROP_DIR

    node = shutil.which("node")
    assert node, "node is not on PATH"
    sluice_cli = REPO_ROOT / "target" / "release" / "sluice"
    assert sluice_cli.exists(), f"{sluice_cli} is missing: cargo build --release -p sluice-cli"
    java_dir = CACHE / "java-interop"
    assert (java_dir / "classes").exists(), f"{java_dir} is missing: run scripts/setup"
    topic, records = "ride-through", 200
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
    wait_for("a leader", lambda: leader_port(cluster.bootstrap, topic, 0)[0] >= 0, cluster=cluster)

    threads = [PythonRideThrough(m, cluster.bootstrap, topic, records) for m in ("kafka", "sluice")]
    procs = [
        ProcessRideThrough("kafkajs", [node, "ride_through.js", "kafkajs", cluster.bootstrap, topic,
                                       str(records), "kafkajs"], cwd=INTEROP_DIR / "node"),
        ProcessRideThrough("sluice-node", [node, "ride_through.js", str(REPO_ROOT / "bindings" / "node"),
                                           cluster.bootstrap, topic, str(records), "sluice-node"],
                           cwd=INTEROP_DIR / "node"),
        ProcessRideThrough("java", ["java", "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                                    "-cp", f"{java_dir / 'classes'}:{java_dir / 'libs'}/*",
                                    "sluice.interop.RideThrough", cluster.bootstrap, topic, str(records),
                                    "java"]),
    ]
    # The Rust client (through the CLI) pipelines its sends: the first half
    # goes in before the kill, the rest after it.
    rust = subprocess.Popen([str(sluice_cli), "-b", cluster.bootstrap, "-X", "delivery.timeout.ms=150000",
                             "produce", topic, "-p", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    killed = None
    try:
        for t in threads:
            t.start()
        assert rust.stdin is not None
        rust.stdin.write("".join(f"sluice-rust-{i}\n" for i in range(records // 2)))
        rust.stdin.flush()
        for w in [*threads, *procs]:
            assert w.half.wait(120), f"{w} never reached half way"
        for t in threads:
            assert t.exc is None, f"{t.module}: {t.exc!r}"
        killed = leader_port(cluster.bootstrap, topic, 0)[0]
        cluster.run("kill", str(killed))
        for t in threads:
            t.go.set()
        for p in procs:
            p.go()
        rust.stdin.write("".join(f"sluice-rust-{i}\n" for i in range(records // 2, records)))
        rust.stdin.close()
        for t in threads:
            t.join(180)
            assert not t.is_alive() and t.exc is None, f"{t.module}: {t.exc!r}"
        for p in procs:
            p.finish(180)
        rc = rust.wait(180)
        assert rust.stdout is not None
        assert rc == 0, f"sluice produce exited {rc}:\n{rust.stdout.read()}"
    finally:
        for p in [*[w.proc for w in procs], rust]:
            if p.poll() is None:
                p.kill()
        if killed is not None:
            cluster.run("start", str(killed))
    prefixes = ["kafka", "sluice", "kafkajs", "sluice-node", "java", "sluice-rust"]
    read = read_partition(cluster, topic, records * len(prefixes))
    for prefix in prefixes:
        mine = [v for v in read if v.rsplit("-", 1)[0] == prefix]
        assert mine == [f"{prefix}-{i}" for i in range(records)], \
            f"{prefix}: {len(mine)} values, first differences: " \
            f"{[(i, v) for i, v in enumerate(mine) if v != f'{prefix}-{i}'][:5]}"
    assert len(read) == records * len(prefixes)


def test_a_paused_leader_acknowledges_nothing_and_rejoins_identical(cluster):
    """SIGSTOP isolates a partition leader (it can neither heartbeat nor
    serve): it is fenced and replaced; once resumed it acknowledges nothing
    it still held, follows the new leader, truncates whatever tail diverged,
    and every replica's log files end up byte-identical."""
    import signal

    from confluent_kafka.admin import AdminClient, NewTopic

    topic, partitions = "paused", 4
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
    h = History(meta={"test": "leader paused with SIGSTOP"})
    producer = LoadProducer(cluster.bootstrap, topic, h, "p0", partitions)
    producer.start()
    wait_for("first acknowledgements", lambda: producer.acked > 200, cluster=cluster)
    leader, _ = leader_port(cluster.bootstrap, topic, 0)
    pid = int((cluster.root / f"n{leader}" / "pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for("a new leader", lambda: leader_port(cluster.bootstrap, topic, 0)[0] not in (leader, -1),
                 timeout=60, cluster=cluster)
        before = producer.acked
        wait_for("acknowledgements from the new leaders", lambda: producer.acked > before + 200,
                 timeout=60, cluster=cluster)
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for("the ISR back to three", lambda: all(
        len(leader_port(cluster.bootstrap, topic, p)[1]) == 3 for p in range(partitions)),
        timeout=120, cluster=cluster)
    producer.stop.set()
    producer.join(240)
    assert not producer.is_alive() and producer.exc is None, producer.exc
    report = read_all_and_check(cluster, topic, h, "history-paused.jsonl")
    print(f"paused leader: producer errors {sorted(set(producer.errors))}; {report.summary()}")
    assert report.ok, report.summary()

    # Replicas hold the same bytes once the followers caught up.
    def identical() -> bool:
        for p in range(partitions):
            logs = []
            for n in range(1, NODES + 1):
                d = cluster.root / f"n{n}" / "data" / f"{topic}-{p}"
                logs.append(b"".join(f.read_bytes() for f in sorted(d.glob("*.log"))))
            if any(log != logs[0] for log in logs[1:]):
                return False
        return True

    wait_for("byte-identical replicas", identical, timeout=60, cluster=cluster)
