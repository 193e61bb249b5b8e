"""The randomised fault suite of the replicated sluiced cluster (issue 13): many
seeded, replayable runs, each a fresh three-node cluster under load and faults,
judged by the history checker. Run it with scripts/faults (outside CI).

This module owns one run (`run_one(seed, ...)`): a fresh 3-node cluster
(scripts/cluster through cluster_harness.Cluster: own folder, free ports,
broker.session.timeout.ms 3000), a load topic with RF 3 and
min.insync.replicas 2, two idempotent acks=all confluent-kafka producers under
steady load, and a fault schedule drawn from random.Random(seed) before the
run starts (`draw_schedule`): kill -9 of a random node / of a partition's
leader / of the active controller (DescribeQuorum's leader), SIGTERM and restart, SIGSTOP for a random
time then SIGCONT, two nodes down at once, a rolling restart, and topic
creation plus CreatePartitions while the active controller is killed (every
create the admin client reports done must exist afterwards with all its
partitions). Then it heals everything, waits for every partition's ISR to be
3 again, reads everything with two readers, judges the history with
history.check, and compares the replicas' segment bytes. It also owns the
suite around runs (`main`): the command line, the per-run and final tables,
the JSON under the output folder, and keeping a failed run's history and
node logs. `--plant acks1` proves the suite: acks=1 producers without
idempotence and followers made to lag must lose acknowledged records.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))

from cluster_harness import REPO_ROOT, Cluster, LoadProducer, active_controller, wait_for  # noqa: E402
from history import History, Report, check  # noqa: E402

NODES = 3
LOAD_TOPIC = "load"
LOAD_PARTITIONS = 6
PRODUCERS = 2
SESSION_TIMEOUT_MS = 3000
EXTRA = f"""
"broker.session.timeout.ms" = {SESSION_TIMEOUT_MS}
"broker.heartbeat.interval.ms" = 500
"group.initial.rebalance.delay.ms" = 0
"""
# The planted bug: followers fetch at most every 2 s (a fetch waits for 10 MB
# or 2 s), so a leader holds an unreplicated tail that acks=1 acknowledged.
PLANT_EXTRA = """
"replica.fetch.min.bytes" = 10485760
"replica.fetch.wait.max.ms" = 2000
"""
PLANT_PRODUCER = {"acks": "1", "enable.idempotence": False, "max.in.flight.requests.per.connection": 5}
# librdkafka logs every disconnect to stderr; faults make many: errors only.
QUIET = {"log_level": 2}

KINDS = ("kill_random", "kill_leader", "kill_controller", "sigterm_restart", "pause", "two_down",
         "rolling_restart", "create_under_controller_kill")
# Relative weights of the kinds in a schedule (the rolling restart is long).
WEIGHTS = (3, 4, 3, 2, 3, 2, 2, 2)
# Rough seconds each kind takes beyond its drawn waits, to fit a schedule into --duration.
OVERHEAD_S = {"kill_random": 4, "kill_leader": 4, "kill_controller": 4, "sigterm_restart": 6, "pause": 1,
              "two_down": 8, "rolling_restart": 30, "create_under_controller_kill": 6}

WAIT_ISR_S = 120.0  # every wait for the ISR back to three
READ_DEADLINE_S = 300.0


def log(msg: str) -> None:
    print(msg, flush=True)


# --- the schedule ------------------------------------------------------------------------------

@dataclass
class Fault:
    """One step of a schedule: wait `gap_s`, apply `kind` with `params`, then
    (when `wait_isr`) wait until every partition is back in sync."""

    gap_s: float
    kind: str
    params: dict[str, Any]
    wait_isr: bool

    def describe(self) -> str:
        ps = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"after {self.gap_s:.1f}s {self.kind} {ps}{' (then ISR=3)' if self.wait_isr else ''}"


def draw_params(kind: str, rng: random.Random) -> dict[str, Any]:
    r2 = lambda a, b: round(rng.uniform(a, b), 2)  # noqa: E731
    nodes = list(range(1, NODES + 1))
    if kind == "kill_random":
        return {"node": rng.choice(nodes), "down_s": r2(0.5, 5)}
    if kind == "kill_leader":
        return {"partition": rng.randrange(LOAD_PARTITIONS), "down_s": r2(0.5, 5)}
    if kind == "kill_controller":
        return {"down_s": r2(0.5, 5)}
    if kind == "sigterm_restart":
        return {"node": rng.choice(nodes), "down_s": r2(0, 3)}
    if kind == "pause":
        # Sometimes shorter than the session timeout (no fencing), sometimes longer.
        target = rng.choice(["leader", "controller", "random"])
        return {"target": target, "partition": rng.randrange(LOAD_PARTITIONS), "node": rng.choice(nodes),
                "pause_s": r2(0.5, 9)}
    if kind == "two_down":
        return {"nodes": rng.sample(nodes, 2), "how": rng.choice(["kill", "stop"]), "down_s": r2(1, 6),
                "first_back_s": r2(0, 4)}
    if kind == "rolling_restart":
        return {"order": rng.sample(nodes, NODES), "how": rng.choice(["stop", "kill"])}
    if kind == "create_under_controller_kill":
        return {"topics": rng.randint(1, 4), "partitions": rng.randint(1, 6), "grow_by": rng.randint(1, 3),
                "kill_after_s": r2(0, 0.6), "down_s": r2(0.5, 4)}
    raise ValueError(kind)


def draw_schedule(seed: int, duration_s: float) -> list[Fault]:
    """The run's faults, drawn from random.Random(seed) alone: the same seed
    and duration give the same schedule."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    t = 0.0
    while True:
        gap = round(rng.uniform(1, 5), 2)
        kind = rng.choices(KINDS, WEIGHTS)[0]
        params = draw_params(kind, rng)
        wait_isr = rng.random() < 0.6
        cost = gap + OVERHEAD_S[kind] + float(params.get("down_s", 0)) + float(params.get("pause_s", 0))
        if faults and t + cost > duration_s:
            break
        faults.append(Fault(gap, kind, params, wait_isr))
        t += cost
        if t >= duration_s:
            break
    return faults


# --- cluster views -------------------------------------------------------------------------------

class Views:
    """Metadata answers for the run, through one admin client (every call
    bounded; None or -1 when the cluster does not answer)."""

    def __init__(self, cluster: Cluster):
        from confluent_kafka.admin import AdminClient

        self.cluster = cluster
        self.admin = AdminClient({"bootstrap.servers": cluster.bootstrap, "socket.timeout.ms": 5000, **QUIET})

    def metadata(self, timeout: float = 5.0) -> Any:
        try:
            return self.admin.list_topics(timeout=timeout)
        except Exception:  # noqa: BLE001 - a node is down: the caller retries
            return None

    def leader(self, topic: str, partition: int) -> int:
        md = self.metadata()
        try:
            return md.topics[topic].partitions[partition].leader if md else -1
        except KeyError:
            return -1

    def controller(self) -> int:
        return active_controller(self.cluster)

    def out_of_sync(self, topics: dict[str, int]) -> list[str]:
        """Partitions of `topics` (name -> partition count expected at least)
        without a leader or with an ISR below three; ['metadata'] if none came."""
        md = self.metadata()
        if md is None:
            return ["metadata"]
        bad = []
        for name, count in topics.items():
            t = md.topics.get(name)
            if t is None or t.error is not None:
                bad.append(f"{name}: {getattr(t, 'error', 'missing')}")
                continue
            for p in range(count):
                part = t.partitions.get(p)
                if part is None or part.leader < 0 or len(part.isrs) < NODES:
                    bad.append(f"{name}/{p}: " + ("missing" if part is None else f"leader {part.leader} "
                                                                                   f"isr {part.isrs}"))
        return bad


# --- readers ---------------------------------------------------------------------------------------

class Reader(threading.Thread):
    """A consumer assigned every partition of `topic` from the beginning,
    recording each record into `h`, until it has read below `ends`."""

    def __init__(self, bootstrap: str, topic: str, ends: dict[int, int], h: History, name: str):
        super().__init__(name=name, daemon=True)
        self.bootstrap, self.topic, self.ends, self.h = bootstrap, topic, ends, h
        self.exc: BaseException | None = None

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        try:
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"{self.name}-{self.topic}",
                          "enable.auto.commit": False, "auto.offset.reset": "earliest", **QUIET})
            try:
                c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self.ends])
                self.h.seek(self.name, self.topic, reason="assign from the beginning")
                pos = dict.fromkeys(self.ends, 0)
                deadline = time.monotonic() + READ_DEADLINE_S
                while not all(pos[p] >= end for p, end in self.ends.items()):
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{self.name}: read to {pos}, ends {self.ends}")
                    msg = c.poll(0.2)
                    if msg is None:
                        continue
                    if msg.error():
                        if not msg.error().retriable():
                            raise AssertionError(f"{self.name}: consume error {msg.error()}")
                        continue
                    self.h.read(self.name, self.topic, msg.partition(), msg.offset(), msg.key(), msg.value())
                    pos[msg.partition()] = msg.offset() + 1
                for p, end in self.ends.items():
                    self.h.caught_up(self.name, self.topic, p, end)
            finally:
                c.close()
        except BaseException as e:  # noqa: BLE001 - reported by the run
            self.exc = e


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watermarks-{topic}", **QUIET})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
    finally:
        c.close()


# --- one run -------------------------------------------------------------------------------------

@dataclass
class Applied:
    """A fault as it happened: what was hit, when (seconds since the load
    began), and the longest stretch any load partition went without an
    acknowledgement from its start until the next fault (filled in later)."""

    kind: str
    params: dict[str, Any]
    targets: list[int]
    start_s: float
    end_s: float = 0.0
    note: str = ""
    stall_s: float = 0.0


@dataclass
class RunResult:
    seed: int
    plant: str | None
    schedule: list[str]
    applied: list[dict[str, Any]] = field(default_factory=list)
    faults: int = 0
    acked: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    disagreements: int = 0
    other: list[str] = field(default_factory=list)
    max_stall_s: float = 0.0
    result: str = "ERROR"
    error: str = ""
    summary: str = ""
    examples: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    admin: dict[str, Any] = field(default_factory=dict)
    replicas_identical: bool | None = None
    producer_errors: dict[str, int] = field(default_factory=dict)
    acked_without_offset: int = 0
    elapsed_s: float = 0.0


class AdminOps:
    """Topic creations and CreatePartitions issued while a fault is under
    way; remembers what the admin client reported done."""

    def __init__(self, bootstrap: str):
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
        self.expected: dict[str, int] = {}  # topic -> partitions it must have at least
        self.grown_maybe: dict[str, int] = {}  # topic -> count a growth of unknown outcome may have reached
        self.outcomes: list[str] = []
        self.counter = 0

    def create_and_grow(self, topics: int, partitions: int, grow_by: int) -> None:
        from confluent_kafka.admin import NewPartitions, NewTopic

        names = [f"side-{self.counter + i}" for i in range(topics)]
        self.counter += topics
        fs = self.admin.create_topics([NewTopic(n, partitions, NODES, config={"min.insync.replicas": "2"})
                                       for n in names], operation_timeout=30, request_timeout=45)
        for n, f in fs.items():
            try:
                f.result(60)
                self.expected[n] = partitions
                self.outcomes.append(f"create {n} x{partitions}: done")
            except Exception as e:  # noqa: BLE001 - an unknown outcome: not checked
                self.outcomes.append(f"create {n}: {e}")
        # Grow one topic reported created earlier (or just now).
        if self.expected:
            n = list(self.expected)[-1]
            total = max(self.expected[n], self.grown_maybe.get(n, 0)) + grow_by
            fs = self.admin.create_partitions([NewPartitions(n, total)], operation_timeout=30,
                                              request_timeout=45)
            try:
                fs[n].result(60)
                self.expected[n] = total
                self.outcomes.append(f"grow {n} to {total}: done")
            except Exception as e:  # noqa: BLE001 - an unknown outcome: either count is fine
                self.grown_maybe[n] = total
                self.outcomes.append(f"grow {n} to {total}: {e}")

    def verify(self, views: Views) -> list[str]:
        """What the admin client reported done that the cluster does not hold."""
        md = views.metadata(15)
        if md is None:
            return ["no metadata"]
        missing = []
        for n, count in self.expected.items():
            t = md.topics.get(n)
            if t is None or t.error is not None:
                missing.append(f"{n} missing")
                continue
            have = len(t.partitions)
            if have < count or have > max(count, self.grown_maybe.get(n, 0)):
                missing.append(f"{n} has {have} partitions, expected {count}")
        return missing


class Run:
    """One seeded run; see the module docstring."""

    def __init__(self, seed: int, duration_s: float, out: Path, sluiced: Path, plant: str | None):
        self.seed, self.duration_s, self.plant = seed, duration_s, plant
        self.dir = out / f"run-{seed}"
        self.sluiced = sluiced
        self.schedule = draw_schedule(seed, duration_s)
        self.result = RunResult(seed=seed, plant=plant, schedule=[f.describe() for f in self.schedule])
        self.applied: list[Applied] = []
        self.t0 = time.monotonic()
        self.current = "warm-up"
        self.stop_progress = threading.Event()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    # --- faults -----------------------------------------------------------------------------------

    def down(self, node: int, how: str) -> None:
        self.cluster.run("kill" if how == "kill" else "stop", str(node), timeout=60)

    def up(self, node: int) -> None:
        self.cluster.signal(node, signal.SIGCONT)
        if self.cluster.pid(node) is None:
            self.cluster.run("start", str(node), timeout=120)

    def pick_leader(self, partition: int) -> int:
        leader = wait_for(f"a leader of {LOAD_TOPIC}/{partition}",
                          lambda: (lambda n: n if n > 0 else None)(self.views.leader(LOAD_TOPIC, partition)),
                          timeout=60, cluster=self.cluster)
        return int(leader)

    def pick_controller(self) -> int:
        return int(wait_for("the active controller", lambda: (lambda n: n if n > 0 else None)(
            self.views.controller()), timeout=60, cluster=self.cluster))

    def apply(self, f: Fault) -> Applied:
        p = f.params
        a = Applied(f.kind, p, [], self.now())
        self.current = f.kind
        if f.kind in ("kill_random", "kill_leader", "kill_controller"):
            node = p.get("node") or (self.pick_leader(p["partition"]) if f.kind == "kill_leader"
                                     else self.pick_controller())
            a.targets = [node]
            a.start_s = self.now()
            self.down(node, "kill")
            time.sleep(p["down_s"])
            self.up(node)
        elif f.kind == "sigterm_restart":
            a.targets = [p["node"]]
            self.down(p["node"], "stop")
            time.sleep(p["down_s"])
            self.up(p["node"])
        elif f.kind == "pause":
            node = {"leader": lambda: self.pick_leader(p["partition"]), "controller": self.pick_controller,
                    "random": lambda: p["node"]}[p["target"]]()
            a.targets = [node]
            a.start_s = self.now()
            self.cluster.signal(node, signal.SIGSTOP)
            try:
                time.sleep(p["pause_s"])
            finally:
                self.cluster.signal(node, signal.SIGCONT)
        elif f.kind == "two_down":
            a.targets = list(p["nodes"])
            for n in p["nodes"]:
                self.down(n, p["how"])
            time.sleep(p["down_s"])
            self.up(p["nodes"][0])
            time.sleep(p["first_back_s"])
            self.up(p["nodes"][1])
        elif f.kind == "rolling_restart":
            a.targets = list(p["order"])
            for n in p["order"]:
                self.down(n, p["how"])
                self.up(n)
                self.wait_in_sync(f"the ISR back to three after restarting node {n}")
        elif f.kind == "create_under_controller_kill":
            errors: list[BaseException] = []

            def admin_ops() -> None:
                try:
                    self.admin_ops.create_and_grow(p["topics"], p["partitions"], p["grow_by"])
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            node = self.pick_controller()
            a.targets = [node]
            ops = threading.Thread(target=admin_ops, daemon=True)
            a.start_s = self.now()
            ops.start()
            time.sleep(p["kill_after_s"])
            self.down(node, "kill")
            time.sleep(p["down_s"])
            self.up(node)
            ops.join(200)
            if ops.is_alive():
                raise AssertionError("admin operations did not finish within 200 s")
            if errors:
                raise errors[0]
            a.note = "; ".join(self.admin_ops.outcomes[-(p["topics"] + 1):])
        else:
            raise ValueError(f.kind)
        a.end_s = self.now()
        self.current = "between faults"
        return a

    def in_sync_topics(self) -> dict[str, int]:
        return {LOAD_TOPIC: LOAD_PARTITIONS, **self.admin_ops.expected}

    def wait_in_sync(self, what: str) -> None:
        deadline = time.monotonic() + WAIT_ISR_S
        while True:
            bad = self.views.out_of_sync(self.in_sync_topics())
            if not bad:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {bad[:8]}\n{self.cluster.logs()}")
            time.sleep(1.0)

    # --- progress ------------------------------------------------------------------------------------

    def progress(self) -> None:
        while not self.stop_progress.wait(10):
            acked = sum(p.acked for p in self.producers)
            up = [n for n in range(1, NODES + 1) if self.cluster.pid(n) is not None]
            errs = sum(len(p.errors) for p in self.producers)
            log(f"  [seed {self.seed} t={self.now():.0f}s] acked {acked}, producer errors {errs}, "
                f"nodes running {up}, {self.current}")

    # --- the run -------------------------------------------------------------------------------------

    def execute(self) -> RunResult:
        from confluent_kafka.admin import AdminClient, NewTopic

        res = self.result
        started = time.monotonic()
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        extra = EXTRA + (PLANT_EXTRA if self.plant == "acks1" else "")
        self.cluster = Cluster(self.dir / "cluster", self.sluiced, extra, NODES)
        self.producers: list[LoadProducer] = []
        self.h = History(meta={"suite": "faults", "seed": self.seed, "plant": self.plant,
                               "session_timeout_ms": SESSION_TIMEOUT_MS, "schedule": res.schedule})
        progress = threading.Thread(target=self.progress, daemon=True)
        try:
            self.cluster.run("up", str(NODES), timeout=180)
            self.views = Views(self.cluster)
            self.admin_ops = AdminOps(self.cluster.bootstrap)
            admin = AdminClient({"bootstrap.servers": self.cluster.bootstrap, **QUIET})
            admin.create_topics([NewTopic(LOAD_TOPIC, LOAD_PARTITIONS, NODES,
                                          config={"min.insync.replicas": "2"})])[LOAD_TOPIC].result(60)
            self.wait_in_sync("the load topic in sync")
            config = {**QUIET, **(PLANT_PRODUCER if self.plant == "acks1" else {})}
            for n in range(PRODUCERS):
                name = f"p{n}"
                if self.plant == "acks1":
                    self.h.note_process(name, ordered=False, acks=1, idempotent=False)
                self.producers.append(LoadProducer(self.cluster.bootstrap, LOAD_TOPIC, self.h, name,
                                                   LOAD_PARTITIONS, config=config, offsetless_ok=True))
            for p in self.producers:
                p.start()
            wait_for("first acknowledgements", lambda: all(p.acked > 100 for p in self.producers), timeout=60,
                     cluster=self.cluster)
            self.t0 = time.monotonic()
            self.load_start_ns = time.monotonic_ns()
            progress.start()
            for i, f in enumerate(self.schedule, 1):
                self.current = f"waiting {f.gap_s}s before fault {i}"
                time.sleep(f.gap_s)
                a = self.apply(f)
                self.applied.append(a)
                log(f"  [seed {self.seed} t={a.start_s:.1f}s] fault {i}/{len(self.schedule)}: {f.kind} "
                    f"on node(s) {a.targets} ({a.end_s - a.start_s:.1f}s){' ' + a.note if a.note else ''}")
                if f.wait_isr:
                    self.current = f"waiting for the ISR after fault {i}"
                    self.wait_in_sync(f"the ISR back to three after fault {i} ({f.kind})")
                for p in self.producers:
                    if p.exc is not None:
                        raise AssertionError(f"producer {p.name} failed: {p.exc!r}")
            # Heal: everything running and in sync, then let the load run on briefly.
            self.current = "healing"
            heal_start = self.now()
            for n in range(1, NODES + 1):
                self.up(n)
            self.wait_in_sync("every partition's ISR back to three after the faults")
            before = sum(p.acked for p in self.producers)
            wait_for("acknowledgements after healing", lambda: sum(p.acked for p in self.producers) > before + 200,
                     timeout=60, cluster=self.cluster)
            self.heal_end = self.now()
            log(f"  [seed {self.seed} t={self.now():.0f}s] healed in {self.heal_end - heal_start:.1f}s; "
                f"stopping the producers")
            self.current = "stopping producers"
            for p in self.producers:
                p.stop.set()
            for p in self.producers:
                p.join(240)
                if p.is_alive():
                    raise AssertionError(f"producer {p.name} did not finish within 240 s")
                if p.exc is not None:
                    raise AssertionError(f"producer {p.name} failed: {p.exc!r}")
            self.current = "reading"
            self.judge()
        except BaseException as e:  # noqa: BLE001 - an unfinished run is an error, reported
            res.error = f"{type(e).__name__}: {e}"
            res.result = "ERROR"
            log(f"  [seed {self.seed}] ERROR: {res.error[:2000]}")
            if isinstance(e, KeyboardInterrupt):
                raise
        finally:
            self.stop_progress.set()
            for p in self.producers:
                p.stop.set()
            self.cluster.teardown()
            for p in self.producers:
                p.join(10)
            res.elapsed_s = round(time.monotonic() - started, 1)
            self.finish()
        return res

    def judge(self) -> None:
        res = self.result
        ends = high_watermarks(self.cluster.bootstrap, LOAD_TOPIC, LOAD_PARTITIONS)
        readers = [Reader(self.cluster.bootstrap, LOAD_TOPIC, ends, self.h, f"c{n}") for n in range(2)]
        for r in readers:
            r.start()
        for r in readers:
            r.join(READ_DEADLINE_S + 30)
            if r.is_alive() or r.exc is not None:
                raise AssertionError(f"reader {r.name}: {r.exc!r}")
        report = check(self.h)
        self.fill_from_report(report)
        # Deliveries librdkafka reported without an offset must be in the log too.
        read = {ev["value"] for ev in self.h.events if ev["type"] == "read"}
        offsetless = [v for p in self.producers for v in p.acked_without_offset]
        res.acked_without_offset = len(offsetless)
        unread = [v for v in offsetless if v not in read]
        if unread:
            res.lost += len(unread)
            res.examples["acked_without_offset_unread"] = unread[:10]
        res.admin = {"expected": self.admin_ops.expected, "outcomes": self.admin_ops.outcomes,
                     "missing": self.admin_ops.verify(self.views)}
        if res.admin["missing"]:
            res.other.append(f"admin: {len(res.admin['missing'])} reported-done creations missing")
        res.replicas_identical = self.replicas_identical()
        if not res.replicas_identical:
            res.other.append("replicas differ below the high watermark")
        anomalies = res.lost + res.duplicates + res.reordered + res.disagreements + len(res.other)
        res.result = "OK" if anomalies == 0 else "ANOMALY"

    def fill_from_report(self, report: Report) -> None:
        res = self.result
        c = report.counts
        res.acked = report.stats["acked"]
        res.lost = c["lost_write"] + c["unseen_write"]
        res.duplicates = c["duplicate"]
        res.reordered = c["reordered_send"] + c["nonmonotonic_poll"]
        res.disagreements = c["inconsistent_offset"]
        res.other = [f"{c[k]} {k}" for k in ("poll_skip", "failed_write_visible", "unexpected_read") if c[k]]
        res.summary = report.summary()
        res.examples = {k: v for k, v in report.examples.items() if v}
        res.stats = report.stats

    def replicas_identical(self) -> bool:
        """Every load partition's segment bytes are the same on every node
        (producers are stopped and the ISR is full, so the high watermark is
        every replica's log end once the followers fetched it)."""
        def same() -> bool:
            for p in range(LOAD_PARTITIONS):
                logs = []
                for n in range(1, NODES + 1):
                    d = self.cluster.root / f"n{n}" / "data" / f"{LOAD_TOPIC}-{p}"
                    logs.append(b"".join(f.read_bytes() for f in sorted(d.glob("*.log"))))
                if any(b != logs[0] for b in logs[1:]):
                    return False
            return True

        try:
            wait_for("byte-identical replicas", same, timeout=60, interval=1.0)
            return True
        except AssertionError:
            return False

    def stalls(self) -> None:
        """Per fault: the longest time any load partition went without an
        acknowledgement, from the fault's start until the next fault starts
        (the last one: until healing ended)."""
        acks: dict[int, list[float]] = {}
        for ev in self.h.events:
            if ev["type"] == "ok":
                acks.setdefault(ev["partition"], []).append((ev["time"] - self.load_start_ns) / 1e9)
        end_of_load = getattr(self, "heal_end", None)
        for i, a in enumerate(self.applied):
            until = self.applied[i + 1].start_s if i + 1 < len(self.applied) else (end_of_load or a.end_s)
            worst = 0.0
            for times in acks.values():
                marks = [a.start_s] + [t for t in times if a.start_s < t <= until]
                # The stretch that spans the window's end lasts until the next
                # acknowledgement (or, if none came, at least to the end).
                marks.append(next((t for t in times if t > until), until))
                worst = max(worst, max(b - x for x, b in zip(marks, marks[1:])))
            a.stall_s = round(worst, 2)

    def finish(self) -> None:
        res = self.result
        if self.producers and hasattr(self, "load_start_ns"):
            self.stalls()
        res.applied = [asdict(a) for a in self.applied]
        res.faults = len(self.applied)
        res.max_stall_s = max((a.stall_s for a in self.applied), default=0.0)
        res.producer_errors = dict(Counter(e for p in self.producers for e in p.errors))
        if not res.acked:
            res.acked = sum(p.acked for p in self.producers)
        keep = res.result != "OK"
        if keep:
            self.h.save(self.dir / "history.jsonl")
        else:
            shutil.rmtree(self.dir / "cluster", ignore_errors=True)
        (self.dir / "run.json").write_text(json.dumps(asdict(res), indent=1, default=str) + "\n")
        log(f"  [seed {self.seed}] {res.result}: {res.faults} faults, acked {res.acked}, lost {res.lost}, "
            f"duplicates {res.duplicates}, reordered {res.reordered}, disagreements {res.disagreements}"
            f"{', ' + '; '.join(res.other) if res.other else ''}, longest stall {res.max_stall_s}s, "
            f"delivered without an offset {res.acked_without_offset} "
            f"({res.elapsed_s}s)")
        if res.result != "OK":
            if res.summary:
                log("\n".join("    " + line for line in res.summary.splitlines()))
            log(f"  kept: {self.dir}/history.jsonl and the node logs under {self.dir}/cluster/n*/sluiced.log")


# --- the suite -------------------------------------------------------------------------------------

COLUMNS = ("seed", "faults", "acked", "lost", "duplicates", "reordered", "disagreements", "max_stall_s", "result")


def table(results: list[RunResult]) -> str:
    head = ["seed", "faults", "acked", "lost", "dup", "reord", "disagree", "stall s", "result"]
    rows = [[str(getattr(r, c)) for c in COLUMNS] for r in results]
    for r, row in zip(results, rows):
        if r.other:
            row[-1] += " (" + "; ".join(r.other) + ")"
        if r.error:
            row[-1] += " (" + r.error.splitlines()[0][:80] + ")"
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(x.rjust(w) if i < len(row) - 1 else x for i, (x, w) in  # noqa: E731
                                enumerate(zip(row, widths)))
    return "\n".join([fmt(head)] + [fmt(r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/faults", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="first seed (default: a random one, printed)")
    ap.add_argument("--runs", type=int, default=1, help="runs, seeds SEED..SEED+RUNS-1 (default 1)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of faults per run (default 60)")
    ap.add_argument("--out", type=Path, default=Path("fault-runs"), help="output folder (default ./fault-runs)")
    ap.add_argument("--plant", choices=["acks1"], default=None,
                    help="plant a bug the suite must find: acks1 = acks=1 producers, lagging followers")
    ap.add_argument("--print-schedule", action="store_true", help="print the runs' schedules and exit")
    args = ap.parse_args(argv)

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    seeds = list(range(seed, seed + args.runs))
    sluiced = Path(os.environ.get("SLUICED") or REPO_ROOT / "target" / "release" / "sluiced")
    if not args.print_schedule and not sluiced.exists():
        print(f"{sluiced} is missing: build it (cargo build --release -p sluice-broker) or set SLUICED",
              file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log(f"fault suite: seeds {seeds[0]}..{seeds[-1]}, {args.duration:.0f}s of faults each, sluiced {sluiced}, "
        f"output {out}{', plant ' + args.plant if args.plant else ''}")
    results: list[RunResult] = []
    for s in seeds:
        schedule = draw_schedule(s, args.duration)
        log(f"\n=== run seed {s} (replay: scripts/faults --seed {s} --runs 1 --duration {args.duration:g}"
            f"{' --plant ' + args.plant if args.plant else ''}) schedule:")
        for i, f in enumerate(schedule, 1):
            log(f"  {i:2}. {f.describe()}")
        if args.print_schedule:
            continue
        results.append(Run(s, args.duration, out, sluiced, args.plant).execute())
        write_summary(out, results, args)
    if args.print_schedule:
        return 0
    log("\n" + table(results))
    kinds = Counter(a["kind"] for r in results for a in r.applied)
    log(f"\nfaults by kind: {dict(sorted(kinds.items()))}")
    stall_by_kind: dict[str, float] = {}
    for r in results:
        for a in r.applied:
            stall_by_kind[a["kind"]] = max(stall_by_kind.get(a["kind"], 0.0), a["stall_s"])
    log(f"longest stall by kind (s): {dict(sorted(stall_by_kind.items()))}")
    log(f"acknowledged: {sum(r.acked for r in results)}; longest stall after a fault: "
        f"{max((r.max_stall_s for r in results), default=0)}s; results in {out / 'summary.json'}")
    return 0 if all(r.result == "OK" for r in results) else 1


def write_summary(out: Path, results: list[RunResult], args: argparse.Namespace) -> None:
    kinds = Counter(a["kind"] for r in results for a in r.applied)
    summary = {
        "args": {"seed": results[0].seed if results else None, "runs": args.runs, "duration": args.duration,
                 "plant": args.plant},
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "table": [{c: getattr(r, c) for c in COLUMNS} | {"other": r.other, "error": r.error} for r in results],
        "faults_by_kind": dict(sorted(kinds.items())),
        "acked": sum(r.acked for r in results),
        "max_stall_s": max((r.max_stall_s for r in results), default=0),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
