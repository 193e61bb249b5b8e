#!/usr/bin/env python3
"""The cluster benchmark behind `scripts/bench --cluster`: a three-node
sluiced cluster against a three-node Apache Kafka (KRaft), replication
factor 3, acks=all, same client, same box, in one run.

scripts/bench builds and installs everything and then runs this file with
the paths in the environment (bench.Tools.from_env). Three systems, one
after the other, each started fresh on 127.0.0.1 and stopped (and its data
deleted) before the next:

- sluiced, follower fsync on: `flush.policy=always` (sluiced's default: the
  leader fdatasyncs before it acknowledges, each follower fdatasyncs what it
  fetched before its next fetch, so the high watermark counts only records
  durable on every ISR member);
- sluiced, fsync off: `flush.policy=interval` (no fsync on the produce
  path, leader or follower; a background flush every log.flush.interval.ms);
- Apache Kafka, three combined broker+controller nodes (kafka_cluster.py),
  Kafka's defaults otherwise (no fsync: it acknowledges from page caches).

Every node of both: `broker.session.timeout.ms=3000` and
`broker.heartbeat.interval.ms=500` (the settings of tests/interop/test_cluster.py),
three combined-mode voters. sluiced runs through scripts/cluster
(tests/interop/cluster_harness.py `Cluster`: one shard per node, shards not
pinned); each Kafka JVM has -Xmx1g -Xms1g.

Per system:
1. start the three nodes (seconds until each serves), then a warm-up
   produce that is not measured (a fresh cluster's first producer id, the
   JVM's compilation);
2. throughput: per record size (100 B and 1 KiB), a topic with 6 partitions,
   replication factor 3, min.insync.replicas=2, and N records produced by
   benches/e2e/rdkafka_bench.c (librdkafka, as bench.py): acks=all,
   enable.idempotence=true, linger.ms=5, batch.size=1,000,000, one producer;
   records/s and MB/s, and the peak RSS summed over the three nodes;
3. latency: per size, the same kind of topic and rdkafka_bench's latency
   mode at a fixed rate (acks=all, idempotent; latency from each record's
   scheduled send time, so stalls count): produce and end-to-end
   p50/p99/p99.9;
4. failover: a topic with one partition per node (RF 3,
   min.insync.replicas=2); a confluent-kafka producer (the same librdkafka)
   sends 100 B records at a fixed moderate rate to one partition,
   idempotent acks=all, librdkafka's defaults otherwise (linger.ms=5,
   message.timeout.ms=120000); once acks flow, that partition's leader is
   killed with SIGKILL. Measured: the time from the kill to the first
   successful acknowledgement of a record *sent after* the kill, and the
   longest gap between consecutive acknowledgements. Then the node is
   started again and every ISR awaited full before the next try. Three
   tries kill a leader that is not the active controller (the partition is
   chosen so; DescribeQuorum names the controller), one more kills a leader
   that is also the active controller (a quorum election on top), reported
   apart.

Before each throughput and latency measurement the box's dirty pages are
written back (os.sync), so no run pays for an earlier one's write-back.

Writes bench/results/<date>-cluster/results.json, results.md (tables with
sluiced/Kafka ratios and the issue's targets) and cluster.png. A benchmark,
not a test: nothing asserts a timing. Every process (brokers, client)
shares the machine's cores; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "interop"))

from bench import Plan, RssSampler, Steps, Tools, flatten_latency, fms, rdkafka, say, topic_name  # noqa: E402
from cluster_harness import Cluster, active_controller, leader_port, wait_for  # noqa: E402
from kafka_cluster import KafkaCluster  # noqa: E402

NODES = 3
PARTITIONS = 6
MIN_ISR = 2
SESSION_TIMEOUT_MS = 3000
HEARTBEAT_MS = 500
FAILOVER_TIE_S = 0.1
COMMON_SETTINGS = {"broker.session.timeout.ms": SESSION_TIMEOUT_MS, "broker.heartbeat.interval.ms": HEARTBEAT_MS}

# ----------------------------------------------------------------- systems


def process_alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class SluicedCluster:
    """Three sluiced nodes through scripts/cluster (cluster_harness.Cluster)."""

    def __init__(self, tools: Tools, work: Path, name: str, label: str, flush_policy: str) -> None:
        self.name, self.label, self.flush_policy = name, label, flush_policy
        self.root = work / name
        self.settings = {**COMMON_SETTINGS, "flush.policy": flush_policy}
        extra = "\n".join(f'"{k}" = {json.dumps(v)}' for k, v in self.settings.items())
        self.cluster = Cluster(self.root, Path(tools.sluiced), extra, NODES, log_level="info")
        self.killed: dict[int, int] = {}  # node -> pid of a process killed and not started again yet
        self.version = subprocess.run([tools.sluiced, "--version"], capture_output=True, text=True).stdout.strip()
        self.describe = (f"scripts/cluster (combined broker+controller, num.shards=1, shards.pin.cores=false), "
                         f"flush.policy={flush_policy}")

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def start(self) -> float:
        t = time.monotonic()
        self.cluster.run("up", str(NODES), timeout=180)
        return time.monotonic() - t

    def pids(self) -> list[int]:
        return [p for p in (self.cluster.pid(i) for i in range(1, NODES + 1)) if p]

    def kill(self, node: int) -> float | None:
        """SIGKILL of one node; the time right after the signal went out
        (None if the node did not run). Returns before the process is gone."""
        pid = self.cluster.pid(node)
        if pid is None:
            return None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        t = time.monotonic()
        self.killed[node] = pid
        return t

    def start_node(self, node: int) -> float:
        # scripts/cluster starts nothing while the old process still exits
        # (a killed io_uring process can take a moment): wait for it first.
        pid = self.killed.pop(node, None)
        if pid is not None:
            wait_for(f"node {node} (pid {pid}) gone", lambda: not process_alive(pid), timeout=60, interval=0.05)
        t = time.monotonic()
        self.cluster.run("start", str(node), timeout=180)
        return time.monotonic() - t

    def logs(self) -> str:
        return self.cluster.logs(10)

    def log_files(self) -> list[Path]:
        return [self.root / f"n{i}" / "sluiced.log" for i in range(1, NODES + 1)]

    def stop(self) -> None:
        self.cluster.teardown()

    def remove_data(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class KafkaSystem:
    """Three Apache Kafka KRaft nodes (kafka_cluster.KafkaCluster)."""

    name, label = "kafka", "Kafka 3-node"

    def __init__(self, tools: Tools, work: Path) -> None:
        self.settings = dict(COMMON_SETTINGS)
        self.kc = KafkaCluster(work / "kafka", NODES, sets=[f"{k}={v}" for k, v in self.settings.items()],
                               heap="-Xmx1g -Xms1g")
        self.version = self.kc.version
        self.describe = ("kafka_cluster.py (combined broker+controller, Kafka's defaults otherwise: "
                         "3 network / 8 I/O threads, no fsync), -Xmx1g -Xms1g each")

    @property
    def bootstrap(self) -> str:
        return self.kc.bootstrap

    def start(self) -> float:
        try:
            return self.kc.start()
        except RuntimeError as e:
            # Once more on fresh ports and data: ports picked free can be taken
            # by another process on a busy box before the JVMs bind them.
            say(f"  Kafka did not start ({str(e)[:1500]}); once more on other ports")
            for i in range(1, NODES + 1):
                say(f"  node {i} errors: {self.kc.errors(i) or '(none logged)'}")
            self.kc.stop()
            self.kc.remove_data()
            self.kc = KafkaCluster(self.kc.root, NODES, sets=self.kc.sets, heap=" ".join(self.kc.heap))
            return self.kc.start()

    def pids(self) -> list[int]:
        return [p for p in (self.kc.pid(i) for i in range(1, NODES + 1)) if p]

    def kill(self, node: int) -> float | None:
        return self.kc.kill(node)

    def start_node(self, node: int) -> float:
        return self.kc.start_node(node)

    def logs(self) -> str:
        return "\n".join(f"--- node {i} ---\n{self.kc.log_tail(i, 10)}" for i in range(1, NODES + 1))

    def log_files(self) -> list[Path]:
        return [self.kc.node_dir(i) / "kafka.log" for i in range(1, NODES + 1)]

    def stop(self) -> None:
        self.kc.stop()

    def remove_data(self) -> None:
        self.kc.remove_data()


# ----------------------------------------------------------------- topics


def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


def isr_full(bootstrap: str, topic: str, partitions: int) -> bool:
    """Every partition of `topic` has a leader and all NODES replicas in sync."""
    try:
        md = admin(bootstrap).list_topics(topic, timeout=10)
    except Exception:  # noqa: BLE001 - not yet: polled again
        return False
    t = md.topics.get(topic)
    if t is None or t.error is not None or len(t.partitions) != partitions:
        return False
    return all(p.leader >= 0 and len(p.isrs) == NODES for p in t.partitions.values())


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """RF 3, min.insync.replicas=2; returns once every partition's ISR is full."""
    from confluent_kafka.admin import NewTopic

    client = admin(bootstrap)  # kept alive until the answer is in: its futures die with it
    fs = client.create_topics(
        [NewTopic(topic, partitions, NODES, config={"min.insync.replicas": str(MIN_ISR)})], operation_timeout=30)
    fs[topic].result(60)
    wait_for(f"{topic}: a full ISR on every partition", lambda: isr_full(bootstrap, topic, partitions), timeout=60,
             interval=0.2)


def delete_topic(bootstrap: str, topic: str) -> None:
    client = admin(bootstrap)
    try:
        client.delete_topics([topic], operation_timeout=30)[topic].result(60)
    except Exception as e:  # noqa: BLE001 - the data goes with the cluster anyway
        say(f"  deleting {topic}: {e}")


def partition_leaders(bootstrap: str, topic: str) -> dict[int, int] | None:
    """Partition -> leader of `topic`, or None unless every partition has a
    leader and a full ISR."""
    try:
        md = admin(bootstrap).list_topics(topic, timeout=10)
    except Exception:  # noqa: BLE001 - polled again
        return None
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        return None
    if any(p.leader < 0 or len(p.isrs) != NODES for p in t.partitions.values()):
        return None
    return {p.id: p.leader for p in t.partitions.values()}


# ----------------------------------------------------------------- failover


class AckTimeline(threading.Thread):
    """A confluent-kafka producer sending `rate` records/s of 100 B to one
    partition of `topic` (idempotent, acks=all, librdkafka's defaults
    otherwise), keeping every record's send time and the time of its
    delivery report. Delivery reports are served while the sender waits
    for the next record's turn, so they are timestamped within about a
    millisecond of arriving."""

    def __init__(self, bootstrap: str, topic: str, partition: int, rate: int) -> None:
        super().__init__(name="failover-producer", daemon=True)
        self.bootstrap, self.topic, self.partition, self.rate = bootstrap, topic, partition, rate
        self.sent: list[float] = []
        self.acks: list[tuple[float, int]] = []  # (time, record number), in arrival order
        self.failures: list[tuple[float, int, str]] = []
        self.halt = threading.Event()
        self.unflushed = 0
        self.exc: BaseException | None = None

    def _report(self, i: int, err) -> None:
        t = time.monotonic()
        if err is None:
            self.acks.append((t, i))
        else:
            self.failures.append((t, i, err.name()))

    def run(self) -> None:
        from confluent_kafka import Producer

        try:
            p = Producer({"bootstrap.servers": self.bootstrap, "client.id": "sluice-cluster-bench-failover",
                          "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                          "message.timeout.ms": 120000})
            value = b"f" * 100
            t0, i = time.monotonic(), 0
            while not self.halt.is_set():
                wait = t0 + i / self.rate - time.monotonic()
                if wait > 0:
                    p.poll(wait)
                    continue
                try:
                    p.produce(self.topic, value=value, partition=self.partition,
                              on_delivery=lambda err, msg, i=i: self._report(i, err))
                except BufferError:
                    p.poll(0.01)
                    continue
                self.sent.append(time.monotonic())
                i += 1
                p.poll(0)
            self.unflushed = p.flush(120)
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            self.exc = e

    def acked(self) -> int:
        return len(self.acks)

    def first_ack_of_a_send_after(self, t_kill: float) -> float | None:
        """The earliest acknowledgement time of a record sent at or after t_kill."""
        ts = [t for t, i in list(self.acks) if i < len(self.sent) and self.sent[i] >= t_kill]
        return min(ts) if ts else None

    def max_gap_after(self, since: float) -> float:
        """The longest time between consecutive acknowledgements after `since`
        (the first gap counts from `since`)."""
        ts = sorted(t for t, _ in self.acks if t >= since)
        prev, gap = since, 0.0
        for t in ts:
            gap, prev = max(gap, t - prev), t
        return gap


def pick_victim(bootstrap: str, topic: str, with_controller: bool) -> tuple[int, int, int] | None:
    """(partition, its leader, the active controller) for a partition whose
    leader is (with_controller) or is not the active controller, all ISRs full;
    None when there is no such partition now."""
    leaders = partition_leaders(bootstrap, topic)
    if leaders is None:
        return None
    try:
        controller = active_controller(SimpleNamespace(bootstrap=bootstrap))
    except Exception:  # noqa: BLE001 - polled again
        return None
    if controller < 0:
        return None
    for p, leader in sorted(leaders.items()):
        if (leader == controller) == with_controller:
            return p, leader, controller
    return None


def failover_try(sys_: SluicedCluster | KafkaSystem, topic: str, with_controller: bool, rate: int) -> dict:
    """One kill -9 of a partition leader (that is, or is not, also the active
    controller) under a producer at `rate`/s to that partition; the node is
    started again and every ISR full again before this returns."""
    b = sys_.bootstrap
    kind = WITH_CONTROLLER if with_controller else LEADER_ONLY
    try:
        partition, leader, controller = wait_for(f"{topic}: a partition for a {kind} kill",
                                                 lambda: pick_victim(b, topic, with_controller), timeout=60,
                                                 interval=0.5)
    except AssertionError:
        return {"kind": kind, "skipped": f"no partition whose leader is {'' if with_controller else 'not '}"
                                         "the active controller"}
    row: dict = {"kind": kind, "partition": partition, "killed_node": leader, "active_controller": controller}
    probe = AckTimeline(b, topic, partition, rate)
    probe.start()
    try:
        wait_for("acknowledgements flowing", lambda: probe.acked() >= 2 * rate or probe.exc, timeout=60)
        if probe.exc:
            raise RuntimeError(f"failover producer: {probe.exc!r}")
        before = probe.acked()
        # The clock starts once the signal is out: a record sent just before
        # can still be acknowledged by the leader (a busy box may delay this
        # thread between reading the clock and the kill).
        t_kill = sys_.kill(leader)
        if t_kill is None:
            raise RuntimeError(f"node {leader} did not run when it was to be killed")
        try:
            wait_for("an acknowledgement of a record sent after the kill",
                     lambda: probe.first_ack_of_a_send_after(t_kill) is not None or probe.exc, timeout=90,
                     interval=0.05)
        except AssertionError:
            row["failed"] = "no record sent after the kill was acknowledged within 90 s"
        time.sleep(2)  # acknowledgements after the recovery, for the gap
    finally:
        probe.halt.set()
        probe.join(150)
    first = probe.first_ack_of_a_send_after(t_kill)
    if first is not None and first - t_kill < 0.3 and "failed" not in row:
        # No failover: the killed node was not leading the partition (yet) then.
        row["failed"] = (f"a record sent after the kill was acknowledged {first - t_kill:.3f} s later: node "
                         f"{leader} did not lead partition {partition} at the kill")
    row.update({
        "kill_to_first_ack_s": round(first - t_kill, 4) if first else None,
        "max_ack_gap_s": round(probe.max_gap_after(t_kill - 1.0), 4),
        "acked_before_kill": before,
        "acked": probe.acked(),
        "sent": len(probe.sent),
        "failed_deliveries": len(probe.failures),
        "first_failure": probe.failures[0][2] if probe.failures else None,
        "unflushed": probe.unflushed,
    })
    try:
        row["new_leader"] = leader_port(b, topic, partition)[0]
    except Exception:  # noqa: BLE001 - informative only
        row["new_leader"] = None
    # Until the session timeout has passed the metadata may still list the
    # dead node in every ISR: the "ISR full again" wait below must not see that.
    time.sleep(max(0.0, t_kill + SESSION_TIMEOUT_MS / 1000 + 1 - time.monotonic()))
    row["restart_s"] = round(sys_.start_node(leader), 2)
    t = time.monotonic()
    wait_for(f"{topic}: every ISR back to {NODES}", lambda: partition_leaders(b, topic) is not None, timeout=180,
             interval=0.2)
    row["isr_full_again_s"] = round(time.monotonic() - t, 2)
    return row


# ----------------------------------------------------------------- the suite


def new_result(sys_) -> dict:
    return {"system": sys_.name, "label": sys_.label, "version": sys_.version, "settings": sys_.settings,
            "describe": sys_.describe, "throughput": [], "latency": [], "failover": []}


def settle() -> None:
    """Writes back every dirty page on the box (os.sync) and pauses a moment,
    so that one measurement does not pay for the write-back of the one before
    (Kafka leaves its writes in the page cache)."""
    os.sync()
    time.sleep(2)


def run_system(sys_, tools: Tools, plan: Plan, a, steps: Steps, out: dict) -> None:
    """Every measurement of one system, into `out` (which keeps what was
    measured when a later step raises)."""
    steps.begin(f"{sys_.label}: start {NODES} nodes")
    out["start_s"] = round(sys_.start(), 2)
    b = sys_.bootstrap
    wait_for(f"{NODES} brokers in the metadata",
             lambda: len(admin(b).list_topics(timeout=10).brokers) == NODES, timeout=120)
    say(f"  {sys_.label}: {NODES} nodes serving after {out['start_s']:.1f} s on {b}")
    # Not measured: the first idempotent producer of a fresh cluster waits for
    # its producer id (Kafka answers COORDINATOR_LOAD_IN_PROGRESS at first), a
    # JVM compiles its hot paths; one small run gets both out of the way.
    steps.begin(f"{sys_.label}: warm-up, {a.warmup_records:,} x 100 B (not measured)")
    topic = topic_name(sys_.name, "warmup")
    create_topic(b, topic, PARTITIONS)
    r = rdkafka(tools, b, topic, replace(plan, records=a.warmup_records), "--no-consume", size=100, acks="all")
    if "failed" in r:
        raise RuntimeError(f"the warm-up produce failed: {r['failed']}")
    delete_topic(b, topic)
    for size in plan.sizes:
        n = a.records if size <= 100 else a.records_large
        steps.begin(f"{sys_.label}: throughput, {n:,} x {size} B, acks=all, idempotent, RF {NODES}, "
                    f"{PARTITIONS} partitions")
        topic = topic_name(sys_.name, "tput", size)
        create_topic(b, topic, PARTITIONS)
        settle()
        with ExitStack() as stack:
            samplers = [stack.enter_context(RssSampler(pid)) for pid in sys_.pids()]
            r = rdkafka(tools, b, topic, replace(plan, records=n), "--no-consume", size=size, acks="all")
        row = {"size": size, "rss_peak_sum_kb": sum(s.peak_kb for s in samplers)}
        row.update(r.get("produce", r))
        out["throughput"].append(row)
        if "failed" in row:
            say(f"  FAILED: {row['failed']}")
        else:
            say(f"  {row['records_per_s']:,.0f} records/s, {row['mb_per_s']:.1f} MB/s "
                f"(delivery p99 {fms(row.get('p99_ms'))} ms)")
        delete_topic(b, topic)
    for size in plan.sizes:
        steps.begin(f"{sys_.label}: latency at {a.latency_rate:,} records/s for {a.latency_seconds} s, {size} B, "
                    "acks=all")
        topic = topic_name(sys_.name, "lat", size)
        create_topic(b, topic, PARTITIONS)
        settle()
        r = rdkafka(tools, b, topic, plan, "--rate", str(a.latency_rate), "--duration-s", str(a.latency_seconds),
                    size=size, acks="all")
        row = {"size": size, "target_rate": a.latency_rate}
        row.update(flatten_latency(r.get("latency", r)))
        out["latency"].append(row)
        if "failed" in row:
            say(f"  FAILED: {row['failed']}")
        else:
            say(f"  achieved {row.get('achieved_rate') or 0:,.0f}/s; produce p50 {fms(row.get('produce_p50_ms'))} "
                f"p99 {fms(row.get('produce_p99_ms'))} ms; end-to-end p99 {fms(row.get('e2e_p99_ms'))} ms")
        delete_topic(b, topic)
    # One partition per node, so that some partition's leader is not the
    # active controller (the fair comparison) and some partition's is.
    topic = topic_name(sys_.name, "failover")
    create_topic(b, topic, NODES)
    kinds = [False] * a.failover_tries + [True] * a.failover_controller_tries
    retries = 2  # extra tries for ones that measured no failover (see failover_try)
    k = 0
    while k < len(kinds):
        with_controller = kinds[k]
        k += 1
        what = "a partition leader that is also the active controller" if with_controller else \
            "a partition leader (not the active controller)"
        steps.begin(f"{sys_.label}: failover {k}/{len(kinds)}: kill -9 {what} under {a.failover_rate:,} "
                    "records/s")
        try:
            row = failover_try(sys_, topic, with_controller, a.failover_rate)
        except Exception as e:  # noqa: BLE001 - reported; the system is stopped next
            out["failover"].append({"kind": WITH_CONTROLLER if with_controller else LEADER_ONLY,
                                    "failed": str(e)[:2000]})
            say(f"  FAILED: {str(e)[:300]}")
            raise
        out["failover"].append(row)
        if "skipped" in row:
            say(f"  skipped: {row['skipped']}")
            continue
        say(("  FAILED: " + row["failed"] + "; " if "failed" in row else "  ")
            + f"killed node {row['killed_node']} (leader of partition {row['partition']}; active controller "
            f"{row['active_controller']}): first ack of a new record {fms(row['kill_to_first_ack_s'])} s after "
            f"the kill, longest gap between acks {fms(row['max_ack_gap_s'])} s, {row['failed_deliveries']} failed "
            f"deliveries; new leader {row['new_leader']}; restarted in {row['restart_s']} s, every ISR full "
            f"{row['isr_full_again_s']} s later")
        if "failed" in row and retries > 0:
            retries -= 1
            kinds.insert(k, with_controller)
            steps.total += 1
            say("  one more try in its place")
        time.sleep(2)


# ----------------------------------------------------------------- report


def ratio(a, b) -> float | None:
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a and b else None


def fx(x: float | None) -> str:
    if not x:
        return "-"
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.3f}x"


def tput(res_sys: dict | None, size: int) -> dict | None:
    if not res_sys:
        return None
    r = next((x for x in res_sys["throughput"] if x["size"] == size), None)
    return None if r is None or "failed" in r else r


def lat(res_sys: dict | None, size: int) -> dict | None:
    if not res_sys:
        return None
    r = next((x for x in res_sys["latency"] if x["size"] == size), None)
    return None if r is None or "failed" in r else r


LEADER_ONLY, WITH_CONTROLLER = "leader only", "leader and active controller"


def failover_values(res_sys: dict | None, kind: str = LEADER_ONLY, key: str = "kill_to_first_ack_s") -> list[float]:
    if not res_sys:
        return []
    return [r[key] for r in res_sys["failover"]
            if r.get("kind") == kind and r.get(key) is not None and "failed" not in r]


def failover_median(res_sys: dict | None, kind: str = LEADER_ONLY) -> float | None:
    xs = failover_values(res_sys, kind)
    return statistics.median(xs) if xs else None


def targets(res: dict) -> list[dict]:
    by = {s["system"]: s for s in res["systems"]}
    k, ts = by.get("kafka"), []

    def add(target: str, value: float | None, measured: str, goal: float, lower: bool = False) -> None:
        met = None if value is None else (value <= goal if lower else value >= goal)
        ts.append({"target": target, "measured": measured, "value": value, "met": met})

    for name in ("sluiced-fsync", "sluiced-nofsync"):
        s = by.get(name)
        if not s or not k:
            continue
        # The targets are for fsync on; fsync off is the reference for what the fsyncs cost.
        label = s["label"] if name == "sluiced-fsync" else f"(reference) {s['label']}"
        for size in res["plan"]["sizes"]:
            rs, rk = tput(s, size), tput(k, size)
            x = ratio(rs and rs["records_per_s"], rk and rk["records_per_s"])
            add(f"{label}: throughput >= 1.3x Kafka, {size} B", x,
                f"{rs['records_per_s']:,.0f} vs {rk['records_per_s']:,.0f} records/s ({fx(x)})" if x else "failed",
                1.3)
        for size in res["plan"]["sizes"]:
            ls, lk = lat(s, size), lat(k, size)
            x = ratio(ls and ls.get("produce_p99_ms"), lk and lk.get("produce_p99_ms"))
            add(f"{label}: produce p99 <= 1/3 of Kafka's at {res['plan']['latency_rate']:,}/s, {size} B", x,
                f"{fms(ls.get('produce_p99_ms'))} vs {fms(lk.get('produce_p99_ms'))} ms ({fx(x)})" if x else "failed",
                1 / 3, lower=True)
        fs, fk = failover_median(s), failover_median(k)
        x = ratio(fs, fk)
        add(f"{label}: failover (kill -9 of a leader to the first ack) below Kafka's (leader-only medians)", x,
            f"{fms(fs)} vs {fms(fk)} s ({fx(x)})" if x else "failed", 1.0, lower=True)
        if x is not None:
            # Both sides move in steps of the client's retry and metadata timers:
            # a difference under FAILOVER_TIE_S is no difference.
            if abs(fs - fk) < FAILOVER_TIE_S:
                ts[-1]["met"] = None
                ts[-1]["measured"] += f", a tie (within {FAILOVER_TIE_S} s)"
            else:
                ts[-1]["met"] = fs < fk
    return ts


def report(res: dict, out: Path) -> str:
    systems = res["systems"]
    by = {s["system"]: s for s in systems}
    kafka = by.get("kafka")
    m = res["machine"]
    md = [f"# Sluice cluster benchmark, {res['date']}", ""]
    md.append(f"`{res['command']}` on {m['cpus']} cores ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}. "
              f"**All three brokers of a cluster and the client (load generator) share these {m['cpus']} cores** "
              "in every measurement, so the figures are ratios on one box, not capacity statements. Load average "
              f"at the start {m['loadavg_start']}, at the end {m['loadavg_end']} (anything else running on the box "
              f"shows there). Took {res['elapsed_min']:.0f} min.")
    md.append("")
    md.append(f"Setup: {NODES} nodes per cluster on 127.0.0.1, combined broker+controller (3 voters); topics with "
              f"replication factor {NODES}, min.insync.replicas={MIN_ISR}; producers acks=all, "
              "enable.idempotence=true. Both clusters: broker.session.timeout.ms="
              f"{SESSION_TIMEOUT_MS}, broker.heartbeat.interval.ms={HEARTBEAT_MS}. Client: librdkafka "
              f"{res.get('librdkafka', '?')} for every measurement.")
    md.append("")
    for s in systems:
        md.append(f"- **{s['label']}** ({s['version']}): {s['describe']}; started in {s.get('start_s', 0):.1f} s"
                  + (f" — FAILED: {s['failed']}" if s.get("failed") else ""))
    md.append("")
    cols = list(systems)
    sl = [s for s in systems if s["system"] != "kafka"]

    md.append(f"## Throughput (one producer, {PARTITIONS} partitions, linger.ms={res['plan']['linger_ms']}, "
              f"batch.size={res['plan']['batch_bytes']:,})")
    md.append("")
    md.append("Records/s (MB/s of values, 10^6 B); ratio = sluiced / Kafka.")
    md.append("")
    rat_heads = [f"{s['label']} / Kafka" for s in sl] if kafka else []
    md.append("| " + " | ".join(["size", "records", *(s["label"] for s in cols), *rat_heads]) + " |")
    md.append("|---|---:|" + "---:|" * (len(cols) + len(rat_heads)))
    for size in res["plan"]["sizes"]:
        rk = tput(kafka, size)
        n = next((x.get("records") for s in cols for x in s["throughput"] if x["size"] == size and x.get("records")),
                 None)
        cells = []
        for s in cols:
            r = tput(s, size)
            cells.append(f"{r['records_per_s']:,.0f} ({r['mb_per_s']:.1f})" if r else "FAILED")
        rat = [fx(ratio((tput(s, size) or {}).get("records_per_s"), rk and rk["records_per_s"])) for s in sl]
        md.append("| " + " | ".join([f"{size} B", f"{n or 0:,}", *cells, *(rat if kafka else [])]) + " |")
    md.append("")
    peaks = [f"{s['label']} {max((x.get('rss_peak_sum_kb', 0) for x in s['throughput']), default=0) / 1024:.0f} MB"
             for s in cols]
    md.append("Peak RSS summed over the three nodes during these runs: " + ", ".join(peaks) + ".")
    md.append("")

    md.append(f"## Latency at {res['plan']['latency_rate']:,} records/s for {res['plan']['latency_seconds']} s "
              "(one producer, acks=all)")
    md.append("")
    md.append("Milliseconds from each record's scheduled send time (coordinated omission corrected): produce = "
              "delivery report, end-to-end = an assigned consumer in the same process holds the record. "
              "p99 ratio = sluiced / Kafka (lower is better).")
    md.append("")
    md.append("| size | system | achieved/s | produce p50 / p99 / p99.9 | end-to-end p50 / p99 / p99.9 | "
              "p99 ratio |")
    md.append("|---|---|---:|---:|---:|---:|")
    for size in res["plan"]["sizes"]:
        lk = lat(kafka, size)
        for s in cols:
            r = lat(s, size)
            if not r:
                md.append(f"| {size} B | {s['label']} | FAILED | - | - | - |")
                continue
            x = ratio(r.get("produce_p99_ms"), lk and lk.get("produce_p99_ms")) if s is not kafka else None
            md.append(f"| {size} B | {s['label']} | {r.get('achieved_rate') or 0:,.0f} | "
                      f"{fms(r.get('produce_p50_ms'))} / {fms(r.get('produce_p99_ms'))} / "
                      f"{fms(r.get('produce_p99_9_ms'))} | {fms(r.get('e2e_p50_ms'))} / {fms(r.get('e2e_p99_ms'))} / "
                      f"{fms(r.get('e2e_p99_9_ms'))} | {fx(x) if s is not kafka else ''} |")
    md.append("")

    md.append(f"## Failover (kill -9 of a partition leader, a producer at {res['plan']['failover_rate']:,} "
              "records/s to that partition)")
    md.append("")
    md.append("Seconds from the SIGKILL to the first acknowledgement of a record sent after it (and, in brackets, "
              "the longest gap between two acknowledgements around the kill). The failover topic has one "
              "partition per node; a *leader only* try kills the leader of a partition whose leader is not the "
              "active controller (the fair comparison: a broker dies, the quorum does not lose its leader), a "
              "*leader and controller* try kills the leader of the partition the active controller leads "
              "(a controller election on top). After each try the node is started again and every ISR awaited "
              "full. Failed deliveries: records the client gave up on (message.timeout.ms=120000). Median ratio = "
              "sluiced / Kafka over the leader-only tries.")
    md.append("")
    md.append("| system | leader only, per try | median | leader and controller | failed deliveries | "
              "median ratio |")
    md.append("|---|---|---:|---|---:|---:|")
    fk = failover_median(kafka)

    def tries(rows: list[dict], kind: str) -> str:
        cells = []
        for r in rows:
            if r.get("kind") != kind:
                continue
            if "skipped" in r:
                cells.append("skipped")
            elif r.get("kill_to_first_ack_s") is None or "failed" in r:
                cells.append("FAILED")
            else:
                cells.append(f"{r['kill_to_first_ack_s']:.2f} ({r['max_ack_gap_s']:.2f})")
        return ", ".join(cells) or "-"

    for s in cols:
        rows = s["failover"]
        med = failover_median(s)
        x = ratio(med, fk) if s is not kafka else None
        md.append(f"| {s['label']} | {tries(rows, LEADER_ONLY)} | {fms(med)} | {tries(rows, WITH_CONTROLLER)} | "
                  f"{sum(r.get('failed_deliveries', 0) for r in rows)} | {fx(x) if s is not kafka else ''} |")
    md.append("")

    md.append("## Targets (issue 13; ratios from this run)")
    md.append("")
    md.append("| target | measured | met |")
    md.append("|---|---|---|")
    for t in res.get("targets", []):
        md.append(f"| {t['target']} | {t['measured']} | "
                  f"{'yes' if t['met'] else 'NO' if t['met'] is False else 'tie' if 'tie' in t['measured'] else '-'} |")
    md.append("")
    md.append("The issue's targets apply to sluiced with follower fsync on; the fsync-off rows say what the fsyncs "
              "cost. Plot: cluster.png. Raw numbers: results.json.")
    text = "\n".join(md) + "\n"
    (out / "results.md").write_text(text)
    return text


def plot(res: dict, out: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed: no plot")
        return None
    systems = res["systems"]
    sizes = res["plan"]["sizes"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    width = 0.8 / max(1, len(systems))
    colors = {"sluiced-fsync": "tab:blue", "sluiced-nofsync": "tab:cyan", "kafka": "tab:gray"}
    ax = axes[0]
    for i, s in enumerate(systems):
        ys = [(tput(s, size) or {}).get("mb_per_s", 0) for size in sizes]
        ax.bar([j + i * width for j in range(len(sizes))], ys, width, label=s["label"], color=colors.get(s["system"]))
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(sizes))])
    ax.set_xticklabels([f"{size} B" for size in sizes])
    ax.set_ylabel("MB/s (acks=all, RF 3)")
    ax.set_title("Produce throughput")
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, s in enumerate(systems):
        ys = [(lat(s, size) or {}).get("produce_p99_ms", 0) or 0 for size in sizes]
        ax.bar([j + i * width for j in range(len(sizes))], ys, width, label=s["label"], color=colors.get(s["system"]))
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(sizes))])
    ax.set_xticklabels([f"{size} B" for size in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("produce p99, ms (log)")
    ax.set_title(f"p99 at {res['plan']['latency_rate']:,} records/s")
    ax = axes[2]
    for i, s in enumerate(systems):
        xs, cs = failover_values(s), failover_values(s, WITH_CONTROLLER)
        med = failover_median(s)
        ax.bar(i, med or 0, 0.6, color=colors.get(s["system"]), label=s["label"])
        ax.scatter([i] * len(xs), xs, color="black", s=12, zorder=3, label="leader only" if i == 0 else None)
        ax.scatter([i] * len(cs), cs, color="red", marker="x", s=20, zorder=3,
                   label="leader and controller" if i == 0 else None)
    ax.set_xticks(range(len(systems)))
    ax.set_xticklabels([s["label"] for s in systems], fontsize=8)
    ax.set_ylabel("seconds, kill -9 -> first ack")
    top = max([x for s in systems for kind in (LEADER_ONLY, WITH_CONTROLLER) for x in failover_values(s, kind)],
              default=1.0)
    ax.set_ylim(0, top * 1.5)  # room for the legend above the points
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.set_title(f"Failover (session timeout {SESSION_TIMEOUT_MS} ms)")
    fig.suptitle(f"3-node sluiced vs 3-node Kafka, same box ({res['machine']['cpus']} cores shared with the "
                 f"client), {res['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "cluster.png", dpi=110)
    plt.close(fig)
    return "cluster.png"


# ----------------------------------------------------------------- main


def keep_logs(sys_, out: Path) -> None:
    """Copies a failed system's node logs to out/logs-<system>/ (its data
    folder is deleted next)."""
    dest = out / f"logs-{sys_.name}"
    dest.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(sys_.log_files(), 1):
        if f.exists():
            shutil.copy(f, dest / f"n{i}-{f.name}")
    say(f"  node logs kept in {dest}")


def interrupted(signum, frame) -> None:
    """SIGTERM handled as Ctrl-C: the `finally` blocks stop every node."""
    raise KeyboardInterrupt


SYSTEMS = ("sluiced-fsync", "sluiced-nofsync", "kafka")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=5_000_000, help="records of 100 B per throughput run")
    ap.add_argument("--records-large", type=int, default=1_000_000,
                    help="records per throughput run for sizes above 100 B")
    ap.add_argument("--sizes", default="100,1024", help="record sizes in bytes (default 100,1024)")
    ap.add_argument("--latency-rate", type=int, default=5_000, help="the fixed rate of the latency runs, records/s")
    ap.add_argument("--latency-seconds", type=int, default=20)
    ap.add_argument("--failover-rate", type=int, default=1_000, help="records/s of the failover producer")
    ap.add_argument("--warmup-records", type=int, default=200_000,
                    help="records of 100 B produced after each start, not measured")
    ap.add_argument("--failover-tries", type=int, default=3,
                    help="kills of a partition leader that is not the active controller")
    ap.add_argument("--failover-controller-tries", type=int, default=1,
                    help="kills of a partition leader that is also the active controller")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"subset of {','.join(SYSTEMS)}")
    ap.add_argument("--keep-logs", action="store_true",
                    help="copy every node's log to <out>/logs-<system>/ (always done for a system that failed)")
    ap.add_argument("--out", default=None, help="results folder (default bench/results/<date>-cluster)")
    ap.add_argument("--command", default="scripts/bench --cluster", help=argparse.SUPPRESS)
    a = ap.parse_args()
    wanted = [x for x in a.systems.split(",") if x]
    for x in wanted:
        if x not in SYSTEMS:
            ap.error(f"unknown system {x} (known: {', '.join(SYSTEMS)})")
    signal.signal(signal.SIGTERM, interrupted)
    # A script's background job starts with SIGINT ignored: Ctrl-C (and kill -INT) still stop every node.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    tools = Tools.from_env()
    today = datetime.date.today().isoformat()
    out = Path(a.out) if a.out else tools.root / "bench/results" / f"{today}-cluster"
    out.mkdir(parents=True, exist_ok=True)
    plan = Plan(records=a.records, sizes=[int(x) for x in a.sizes.split(",")], partitions=PARTITIONS, acks=["all"],
                producers=[1], consumers=[], latency_low_rate=a.latency_rate, latency_seconds=a.latency_seconds,
                client_records=0)
    steps = Steps(len(wanted) * (2 + 2 * len(plan.sizes) + a.failover_tries + a.failover_controller_tries))
    work = Path(tempfile.mkdtemp(prefix="sluice-cluster-bench."))
    say(f"work dir {work}; results to {out}")
    res: dict = {"date": today, "command": a.command,
                 "plan": {**plan.__dict__, "failover_rate": a.failover_rate, "failover_tries": a.failover_tries,
                          "failover_controller_tries": a.failover_controller_tries,
                          "records_large": a.records_large, "latency_rate": a.latency_rate},
                 "librdkafka": os.environ.get("BENCH_LIBRDKAFKA", "?"), "systems": []}
    load_start = " ".join(open("/proc/loadavg").read().split()[:3])
    current = None
    try:
        for name in wanted:
            if name == "kafka":
                current = KafkaSystem(tools, work)
            else:
                fsync = name == "sluiced-fsync"
                current = SluicedCluster(tools, work, name, "sluiced, fsync on" if fsync else "sluiced, fsync off",
                                         "always" if fsync else "interval")
            r = new_result(current)
            res["systems"].append(r)
            try:
                run_system(current, tools, plan, a, steps, r)
            except Exception as e:  # noqa: BLE001 - one system failing leaves the others to run
                say(f"{current.label}: FAILED: {str(e)[:2000]}")
                r["failed"] = str(e)[:2000]
                keep_logs(current, out)
            else:
                if a.keep_logs:
                    keep_logs(current, out)
            finally:
                say(f"{current.label}: stopping")
                current.stop()
                current.remove_data()
                current = None
    except KeyboardInterrupt:
        say("interrupted: stopping what runs")
    finally:
        if current is not None:
            current.stop()
            current.remove_data()
        shutil.rmtree(work, ignore_errors=True)
        res["elapsed_min"] = (time.monotonic() - T0_MAIN) / 60
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   "?")
        res["machine"] = {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem), "kernel": platform.release(),
                          "loadavg_start": load_start,
                          "loadavg_end": " ".join(open("/proc/loadavg").read().split()[:3])}
        if res["systems"]:
            res["targets"] = targets(res)
            (out / "results.json").write_text(json.dumps(res, indent=2))
            text = report(res, out)
            made = plot(res, out)
            print(text)
            say(f"wrote {out}/results.json, results.md" + (f", {made}" if made else ""))
    return 0


T0_MAIN = time.monotonic()

if __name__ == "__main__":
    sys.exit(main())
