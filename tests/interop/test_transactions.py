"""Transactions (KIP-98) with real clients and Kafka's own tool:

- the Java client's transactional producer (java/.../Transactions.java):
  commit and abort seen exactly by read_committed and wholly by
  read_uncommitted consumers; a second instance with the same
  transactional.id fences the first and aborts what it left open; a
  transaction left open past its timeout is aborted by the broker;
- confluent-kafka (librdkafka): init/begin/commit/abort, and librdkafka's
  read_committed consumer sees exactly the committed records;
- `kafka-transactions list` and `describe` (TransactionsCommand from Kafka's
  jars) show an open transaction, its partitions, then its abort;
- Kafka Streams' word count with exactly_once_v2 (java/.../EosWordCount.java),
  killed with SIGKILL mid-run and restarted, ends with exact counts.

Runs against sluiced, and against Apache Kafka with
SLUICE_INTEROP_BROKER=kafka to check the tests themselves.
"""

from __future__ import annotations

import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from conftest import CACHE, run_tool

BROKER_CONFIG = {
    # A single broker: the transaction log cannot have three replicas.
    "transaction.state.log.replication.factor": 1,
    "transaction.state.log.min.isr": 1,
    # Timed-out transactions are found within a second (the timeout test).
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": 500,
}

JAVA = CACHE / "java-interop"


def kafka_tool(main_class: str, *args: str, timeout: float = 120) -> str:
    jars = sorted(CACHE.glob("kafka-*/libs"))
    assert jars, "Kafka's jars are missing: run scripts/setup"
    r = subprocess.run(["java", "-Xmx256m", "-cp", f"{jars[-1]}/*", main_class, *args],
                       capture_output=True, text=True, timeout=timeout)
    return r.stdout + r.stderr


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["commit-abort", "zombie", "timeout"])
def test_java_transactional_producer(broker, admin, topic_name, mode):
    assert (JAVA / "classes").exists(), f"{JAVA} is missing: run scripts/setup"
    admin.create_topic(topic_name, 3)
    proc = run_tool(["java", "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                     "-cp", f"{JAVA / 'classes'}:{JAVA / 'libs'}/*", "sluice.interop.Transactions",
                     broker, topic_name, mode], timeout=200)
    assert proc.returncode == 0, f"Transactions {mode} exited {proc.returncode}:\n{proc.stdout[-4000:]}"
    assert "transactions OK" in proc.stdout


def read_keys(broker: str, topic: str, isolation: str, expected_min: int, timeout: float = 30) -> list[str]:
    c = Consumer({"bootstrap.servers": broker, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                  "isolation.level": isolation, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        keys: list[str] = []
        deadline = time.monotonic() + timeout
        idle_since = None
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                # Once enough arrived, a quiet second means nothing else will.
                if len(keys) >= expected_min:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 1.5:
                        break
                continue
            idle_since = None
            if m.error():
                continue
            keys.append(m.key().decode())
        return keys
    finally:
        c.close()


@pytest.mark.timeout(120)
def test_confluent_kafka_transactions_and_read_committed(broker, admin, topic_name):
    admin.create_topic(topic_name, 2)
    p = Producer({"bootstrap.servers": broker, "transactional.id": f"ck-{topic_name}"})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(40):
        p.produce(topic_name, key=f"kept-{i}", value=b"v")
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(25):
        p.produce(topic_name, key=f"dropped-{i}", value=b"v")
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    for i in range(40, 60):
        p.produce(topic_name, key=f"kept-{i}", value=b"v")
    p.commit_transaction(30)

    committed = read_keys(broker, topic_name, "read_committed", 60)
    assert sorted(committed) == sorted(f"kept-{i}" for i in range(60)), committed[:20]
    everything = read_keys(broker, topic_name, "read_uncommitted", 85)
    assert len(everything) == 85
    assert sum(k.startswith("dropped-") for k in everything) == 25


@pytest.mark.timeout(180)
def test_kafka_transactions_tool_lists_and_describes(broker, admin, topic_name):
    admin.create_topic(topic_name, 2)
    txn_id = f"tool-{topic_name}"
    p = Producer({"bootstrap.servers": broker, "transactional.id": txn_id})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic_name, key=f"k{i}", value=b"v", partition=i % 2)
    p.flush(30)

    listed = kafka_tool("org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", broker, "list")
    line = next((ln for ln in listed.splitlines() if ln.split()[:1] == [txn_id]), None)
    assert line is not None, listed
    assert "Ongoing" in line, listed

    described = kafka_tool("org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", broker,
                           "describe", "--transactional-id", txn_id)
    assert "Ongoing" in described, described
    assert f"{topic_name}-0" in described and f"{topic_name}-1" in described, described

    p.abort_transaction(30)
    deadline = time.monotonic() + 30
    while True:
        described = kafka_tool("org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", broker,
                               "describe", "--transactional-id", txn_id)
        if "CompleteAbort" in described or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "CompleteAbort" in described, described
    # Nothing of the aborted transaction is visible to read_committed.
    assert read_keys(broker, topic_name, "read_committed", 0, timeout=8) == []


def latest_counts(broker: str, topic: str, settle: float = 2.0, timeout: float = 20) -> tuple[dict[str, int], int]:
    """The last count per word in `topic` (read_committed), and the highest
    count any word ever showed."""
    c = Consumer({"bootstrap.servers": broker, "group.id": f"wc-{uuid.uuid4().hex[:8]}",
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    counts: dict[str, int] = {}
    highest = 0
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < settle:
            m = c.poll(0.3)
            if m is None or m.error():
                continue
            quiet_since = time.monotonic()
            n = struct.unpack(">q", m.value())[0]
            counts[m.key().decode()] = n
            highest = max(highest, n)
    finally:
        c.close()
    return counts, highest


@pytest.mark.timeout(420)
def test_kafka_streams_exactly_once_word_count_survives_kill9(broker, admin, topic_name, tmp_path):
    """Kafka Streams with processing.guarantee=exactly_once_v2: killed with
    SIGKILL mid-run and restarted with its local state wiped (so it restores
    from the changelog), it still ends with exact counts: every input line
    counted once, never more."""
    source, sink, app = f"{topic_name}-in", f"{topic_name}-out", f"wc-{topic_name}"
    admin.create_topic(source, 3)
    admin.create_topic(sink, 3)
    words = [f"w{i:02d}" for i in range(20)]
    expected = {w: 0 for w in words}
    p = Producer({"bootstrap.servers": broker, "enable.idempotence": True, "linger.ms": 5})
    for i in range(6000):
        line = " ".join(words[(i * 7 + j) % len(words)] for j in range(i % 3 + 1))
        for w in line.split():
            expected[w] += 1
        p.produce(source, key=str(i), value=line)
    assert p.flush(60) == 0

    def start_app() -> subprocess.Popen:
        return subprocess.Popen(
            ["java", "-Xmx384m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
             "-cp", f"{JAVA / 'classes'}:{JAVA / 'libs'}/*", "sluice.interop.EosWordCount",
             broker, source, sink, app, str(tmp_path / "state")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    app_proc = start_app()
    try:
        # Mid-run: some counts are out, the input is not all processed.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            counts, _ = latest_counts(broker, sink, settle=0.5, timeout=3)
            if counts:
                break
            assert app_proc.poll() is None, app_proc.stdout.read()[-3000:]
        assert counts, "the word count produced nothing within 120 s"
        app_proc.kill()
        app_proc.wait(10)
        subprocess.run(["rm", "-rf", str(tmp_path / "state")], check=True)
        app_proc = start_app()
        deadline = time.monotonic() + 180
        while True:
            counts, highest = latest_counts(broker, sink)
            if counts == expected or time.monotonic() > deadline:
                break
            assert app_proc.poll() is None, app_proc.stdout.read()[-3000:]
            time.sleep(1)
        assert counts == expected, {w: (counts.get(w), n) for w, n in expected.items() if counts.get(w) != n}
        assert highest <= max(expected.values()), "a count overshot: some input was counted twice"
    finally:
        if app_proc.poll() is None:
            app_proc.kill()
            app_proc.wait(10)
