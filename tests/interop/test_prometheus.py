"""A real Prometheus (Debian's `prometheus` package, installed by scripts/setup)
scrapes a running sluiced and the series MSK open monitoring dashboards read
are queried through Prometheus's HTTP API, checked against the test's own
accounting: bytes and messages in per topic and in total, request counts and
latencies, the ReplicaManager and KafkaController gauges, log flushes,
network processor idle, and consumer lag (sum, max, per partition, estimated
time lag) of a group that committed part of what was produced.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

import kafka_wire as wire
from conftest import _die_with_parent, free_port, port_accepts

pytestmark = pytest.mark.sluiced_only("sluiced's own metrics endpoint; Kafka needs the JMX exporter")

PROMETHEUS = Path("/usr/bin/prometheus")
DEADLINE = 25.0


@pytest.fixture(scope="module")
def prometheus(broker_process):
    """Prometheus scraping the broker's metrics endpoint every second."""
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} is missing: run scripts/setup (it installs Debian's prometheus package)")
    workdir = Path(tempfile.mkdtemp(prefix="sluice-prometheus-"))
    port = free_port()
    (workdir / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: sluiced\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{broker_process.aux_port}']\n"
    )
    log = open(workdir / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
        start_new_session=True, preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 20
        while not port_accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("prometheus did not start:\n" + (workdir / "prometheus.log").read_text(errors="replace"))
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def value_of(base: str, promql: str) -> float | None:
    """The single sample `promql` selects now, None while there is none."""
    result = query(base, promql)
    assert len(result) <= 1, f"{promql} selects {len(result)} series: {result}"
    return float(result[0]["value"][1]) if result else None


def wait_for(base: str, promql: str, ok, what: str) -> float:
    deadline = time.monotonic() + DEADLINE
    last = None
    while time.monotonic() < deadline:
        last = value_of(base, promql)
        if last is not None and ok(last):
            return last
        time.sleep(0.5)
    pytest.fail(f"{what}: {promql} = {last} after {DEADLINE:.0f} s")


def produce_batches(bootstrap: str, topic: str, batches: list[bytes]) -> None:
    conn = wire.Conn(bootstrap)
    try:
        for i, batch in enumerate(batches):
            _, parts = wire.parse_produce_response(7, conn.request(wire.produce_request(7, i, topic, 0, batch)))
            assert [p.error_code for p in parts] == [wire.NONE], parts
    finally:
        conn.sock.close()


def test_prometheus_reads_msk_series_and_consumer_lag(broker, admin, topic_name, prometheus):
    admin.create_topic(topic_name, 1)
    # Batches of known size: BytesInPerSec counts the record batches
    # appended, byte for byte.
    first = [wire.record_batch([(None, b"v%03d-%d" % (i, j)) for j in range(5)]) for i in range(8)]
    second = [wire.record_batch([(None, b"w%03d-%d" % (i, j)) for j in range(3)]) for i in range(4)]
    produce_batches(broker, topic_name, first)
    committed = 8 * 5

    group = f"{topic_name}-group"
    consumer = KafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=15000)
    try:
        consumer.subscribe([topic_name])
        got = 0
        for _ in consumer:
            got += 1
            if got == committed:
                break
        assert got == committed
        consumer.commit()
        assert consumer.committed(TopicPartition(topic_name, 0)) == committed
    finally:
        consumer.close()  # the group is Empty now: MSK reports lag for it
    produce_batches(broker, topic_name, second)
    lag = 4 * 3
    total_bytes = sum(map(len, first)) + sum(map(len, second))
    total_records = committed + lag

    t = f'topic="{topic_name}"'
    wait_for(prometheus, f'kafka_server_BrokerTopicMetrics_Count{{name="BytesInPerSec",{t}}}',
             lambda v: v == total_bytes, f"bytes in for {topic_name} = {total_bytes}")
    wait_for(prometheus, f'kafka_server_BrokerTopicMetrics_Count{{name="MessagesInPerSec",{t}}}',
             lambda v: v == total_records, f"messages in = {total_records}")
    # The consumer read the first batches at least once.
    wait_for(prometheus, f'kafka_server_BrokerTopicMetrics_Count{{name="BytesOutPerSec",{t}}}',
             lambda v: v >= sum(map(len, first)), "bytes out")
    # Broker totals: no other topic takes client writes in this module, but
    # __consumer_offsets takes the commit.
    wait_for(prometheus, 'kafka_server_BrokerTopicMetrics_Count{name="MessagesInPerSec",topic=""}',
             lambda v: v >= total_records, "messages in, all topics")
    # Rates: a meter's first tick (every 5 s) sets the EWMA from its count.
    wait_for(prometheus, f'kafka_server_BrokerTopicMetrics_OneMinuteRate{{name="BytesInPerSec",{t}}}',
             lambda v: v > 0, "bytes-in one-minute rate")

    wait_for(prometheus, 'kafka_network_RequestMetrics_Count{name="RequestsPerSec",request="Produce"}',
             lambda v: v >= len(first) + len(second), "Produce requests")
    p99 = wait_for(prometheus, 'kafka_network_RequestMetrics_99thPercentile{name="TotalTimeMs",request="Produce"}',
                   lambda v: v > 0, "Produce p99 TotalTimeMs")
    mean = value_of(prometheus, 'kafka_network_RequestMetrics_Mean{name="TotalTimeMs",request="Produce"}')
    assert mean is not None and 0 < mean < 5000 and p99 < 5000, (mean, p99)
    # Fetches count under Fetch and, as dashboards chart them, FetchConsumer;
    # one node has no follower, so no FetchFollower and no replication out.
    wait_for(prometheus, 'kafka_network_RequestMetrics_Count{name="RequestsPerSec",request="FetchConsumer"}',
             lambda v: v >= 1, "FetchConsumer requests")
    wait_for(prometheus, 'kafka_network_RequestMetrics_Mean{name="TotalTimeMs",request="FetchConsumer"}',
             lambda v: v >= 0, "FetchConsumer TotalTimeMs")
    assert value_of(prometheus, 'kafka_network_RequestMetrics_Count{name="RequestsPerSec",request="FetchFollower"}') \
        is None
    wait_for(prometheus, 'kafka_server_BrokerTopicMetrics_Count{name="ReplicationBytesOutPerSec",topic=""}',
             lambda v: v == 0, "no replication bytes out on one node")

    # One node: it leads every partition it hosts, none under-replicated,
    # and as its own controller sees no offline partition.
    partitions = wait_for(prometheus, 'kafka_server_ReplicaManager_Value{name="PartitionCount"}',
                          lambda v: v >= 1, "PartitionCount")
    assert value_of(prometheus, 'kafka_server_ReplicaManager_Value{name="LeaderCount"}') == partitions
    assert value_of(prometheus, 'kafka_server_ReplicaManager_Value{name="UnderReplicatedPartitions"}') == 0
    assert value_of(prometheus, 'kafka_controller_KafkaController_Value{name="OfflinePartitionsCount"}') == 0
    assert value_of(prometheus, 'kafka_controller_KafkaController_Value{name="ActiveControllerCount"}') == 1
    wait_for(prometheus, 'kafka_log_LogFlushStats_Count{name="LogFlushRateAndTimeMs"}',
             lambda v: v >= 1, "log flushes")
    wait_for(prometheus, 'kafka_network_SocketServer_Value{name="NetworkProcessorAvgIdlePercent"}',
             lambda v: 0 <= v <= 1, "network processor idle ratio")

    g = f'groupId="{group}",{t}'
    wait_for(prometheus, f'kafka_consumer_group_ConsumerLagMetrics_Value{{name="SumOffsetLag",{g}}}',
             lambda v: v == lag, f"SumOffsetLag = produced - committed = {lag}")
    assert value_of(prometheus, f'kafka_consumer_group_ConsumerLagMetrics_Value{{name="MaxOffsetLag",{g}}}') == lag
    assert value_of(prometheus,
                    f'kafka_consumer_group_ConsumerLagMetrics_Value{{name="OffsetLag",{g},partition="0"}}') == lag
    # The group consumed before and stopped: at any positive rate the lag
    # drains in a positive time; with no progress it never does (+Inf).
    time_lag = value_of(prometheus,
                        f'kafka_consumer_group_ConsumerLagMetrics_Value{{name="EstimatedMaxTimeLag",{g}}}')
    assert time_lag is not None and (time_lag > 0 or math.isinf(time_lag)), time_lag
