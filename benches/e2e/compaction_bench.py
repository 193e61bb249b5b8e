#!/usr/bin/env python3
"""The compaction benchmark behind `scripts/bench --compaction`: sluiced's
log cleaner against Apache Kafka's, single node each, same client, same box,
one broker after the other (issue 14's three compaction targets).

scripts/bench builds and installs everything and then runs this file with
the paths in the environment (bench.Tools.from_env). Both brokers get the
same cleaner settings: log.cleaner.dedupe.buffer.size 128 MiB,
log.cleaner.io.max.bytes.per.second unlimited (both defaults),
log.cleaner.backoff.ms 1000, log.cleaner.min.cleanable.ratio 0.5, and for
Kafka log.cleaner.threads=1 (sluiced has one cleaner per shard; every
compacted log here has one partition, so one cleaner works on it at a time
in both). sluiced runs with its defaults otherwise (fsync before ack, one
shard per core), Kafka with its own (no fsync, -Xmx1G).

0. Warm-up, not measured: a fifth of step 1's records (at least three
   segments' worth) written and cleaned as in step 1, so that Kafka's JIT has compiled its
   produce and cleaner paths before anything is measured.
1. Cleaner throughput. A topic with one partition, segment.bytes 16 MiB,
   created with cleanup.policy=delete (so nothing is cleaned while it is
   written) gets N keyed records of 100 B over K keys (record i has key
   i % K: each key updated N/K times) from benches/e2e/rdkafka_bench.c
   (librdkafka, acks=all, idempotent, linger 5 ms). Then its policy becomes
   compact and the clock runs. Measured: the size of the segments below the
   active one (the dirty section: what the clean reads), the broker's own
   report of the pass (sluiced: the cleaner's "cleaned log" debug line,
   took_ms, and the sluice_log_cleaner_* metrics; Kafka: its LogCleaner
   statistics lines, "... MB of log processed in X seconds"), and the wall
   time from the policy change until the partition's live .log files stop
   shrinking (the broker's cleaner-offset-checkpoint has the pass). Cleaner
   throughput = dirty section bytes / the broker's reported pass time, the
   same numerator for both.
2. Produce latency while a clean runs: rdkafka_bench's fixed-rate latency
   mode (bench.py's: 100 B, acks=all, idempotent, 12 partitions; latency
   from each record's scheduled send time) on a new topic, once with no
   clean running (after step 1's clean and an unmeasured 3 s run on
   another topic, which warms Kafka's produce path), and once started right after the
   policy change of another keyed topic written like step 1's,
   sized from step 1's throughput so its clean lasts the whole run. The
   overlap of the clean (its end from the checkpoint, its length from the
   broker's report) with the producing window is reported.
3. `__consumer_offsets` restart: M offset commits (OffsetCommit v2 over a
   few pipelined connections: G simple groups, generation -1, each commit
   covering all P partitions of one topic, R rounds, so M = G * P * R and
   G * P distinct keys) to a broker whose `__consumer_offsets` has 1 MiB
   segments (sluiced: segment.bytes altered on the topic before the
   commits; Kafka: offsets.topic.segment.bytes; 1 MiB is Kafka 4's
   minimum; 50 partitions in both, Kafka's default). sluiced commits with
   its cleaner disabled, is stopped (SIGTERM) and started again, still
   without a cleaner: "no compaction"; then started with the cleaner, which
   compacts the topic, stopped and started again: "compacted". Kafka
   (reference) commits with its cleaner on, compacts, restarts. Measured
   per start: seconds from spawning the process to the first OffsetFetch
   (v2) returning the last committed offset of a sample group, and to all
   of 20 sample groups (spread over the offsets partitions) doing so.

Writes bench/results/<date>-compaction/results.json, results.md (tables,
ratios, the issue's targets) and compaction.png. A benchmark, not a test:
nothing asserts a timing. Brokers and clients share the machine's cores;
compare ratios within one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import (  # noqa: E402
    Kafka,
    Sluiced,
    Steps,
    Tools,
    cli,
    flatten_latency,
    fms,
    free_port,
    run_json,
    say,
    topic_name,
)

MIB = 1 << 20
# Both brokers' cleaner settings (Kafka also gets log.cleaner.threads=1).
CLEANER_SETTINGS = {
    "log.cleaner.dedupe.buffer.size": str(128 * MIB),
    "log.cleaner.backoff.ms": "1000",
    "log.cleaner.min.cleanable.ratio": "0.5",
}
LATENCY_PARTITIONS = 12
OFFSETS_PARTITIONS = 50
SAMPLE_GROUPS = 20
# How long the live size must stay put after the checkpoint has the pass.
SETTLE_S = 2.0
CLEAN_TIMEOUT_S = 1800.0

# ----------------------------------------------------------------- brokers


class CleanerBroker:
    """What the suite needs of a broker beyond bench.Broker: where a
    partition's files are, the cleaner checkpoint, the cleaner's own report
    of its passes, and a start that only spawns (for the restart probe)."""

    log_root: Path

    def partition_dir(self, topic: str, p: int = 0) -> Path:
        return self.log_root / f"{topic}-{p}"

    def checkpoint(self) -> dict[tuple[str, int], int]:
        """The broker's cleaner-offset-checkpoint (Kafka's format, which
        sluiced shares): (topic, partition) -> first dirty offset."""
        try:
            lines = (self.log_root / "cleaner-offset-checkpoint").read_text().splitlines()
        except OSError:
            return {}
        out = {}
        for line in lines[2:]:
            parts = line.split()
            if len(parts) == 3:
                out[(parts[0], int(parts[1]))] = int(parts[2])
        return out

    def spawn(self) -> float:
        """Starts the process without waiting; returns its spawn time
        (time.monotonic)."""
        log = open(self.work / f"{self.name}.log", "ab")
        t = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env()}, start_new_session=True)
        return t

    def log_text(self) -> str:
        try:
            return (self.work / f"{self.name}.log").read_text(errors="replace")
        except OSError:
            return ""


class CleanSluiced(CleanerBroker, Sluiced):
    """sluiced with its metrics endpoint and the cleaner's pass lines
    (debug level) in its log; `sets` are --set NAME=VALUE properties."""

    def __init__(self, tools: Tools, work: Path, name: str, sets: dict[str, str]) -> None:
        Sluiced.__init__(self, tools, work)
        self.name, self.label, self.sets = name, "sluiced", dict(sets)
        self.data = work / f"{name}-data"
        self.log_root = self.data
        self.metrics_port = free_port()

    def command(self) -> list[str]:
        cmd = super().command() + ["--metrics", f"127.0.0.1:{self.metrics_port}"]
        for k, v in self.sets.items():
            cmd += ["--set", f"{k}={v}"]
        return cmd

    def env(self) -> dict:
        return {"SLUICE_LOG": "warn,sluice_broker::log::cleaner=debug"}

    def metrics(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line.startswith("sluice_log_cleaner_"):
                name, _, v = line.partition(" ")
                try:
                    out[name] = float(v)
                except ValueError:
                    pass
        return out

    def passes(self, topic: str) -> list[dict]:
        return sluiced_passes(self.log_text(), topic)


class CleanKafka(CleanerBroker, Kafka):
    def __init__(self, tools: Tools, work: Path, name: str, sets: dict[str, str]) -> None:
        merged = {**CLEANER_SETTINGS, "log.cleaner.threads": "1",
                  "offsets.topic.num.partitions": str(OFFSETS_PARTITIONS), **sets}
        Kafka.__init__(self, tools, work, name, "Kafka", [f"{k}={v}" for k, v in merged.items()])
        self.log_root = self.data / "logs"

    def passes(self, topic: str) -> list[dict]:
        return kafka_passes(self.log_text(), topic)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def sluiced_passes(log: str, topic: str) -> list[dict]:
    """sluiced's "cleaned log" lines (log/cleaner `run`, debug) for `topic`:
    took_ms, bytes read and written, records removed."""
    out = []
    for line in ANSI.sub("", log).splitlines():
        if "cleaned log" not in line or f"topic={topic} " not in line + " ":
            continue
        f = dict(re.findall(r"(\w+)=(\S+)", line))
        try:
            out.append({"partition": int(f["partition"]), "seconds": int(f["took_ms"]) / 1000,
                        "bytes_read": int(f["read"]), "bytes_written": int(f["written"]),
                        "records_removed": int(f["removed"])})
        except (KeyError, ValueError):
            continue
    return out


KAFKA_NUM = r"([\d,]+(?:\.\d+)?)"


def kafka_num(s: str) -> float:
    return float(s.replace(",", ""))


KAFKA_TS = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")


def kafka_time(line: str) -> float | None:
    """Seconds since the epoch (local time) of a Kafka log line's "[date
    time,ms]" stamp."""
    m = KAFKA_TS.match(line)
    if not m:
        return None
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


def kafka_passes(log: str, topic: str) -> list[dict]:
    """Kafka's LogCleaner statistics for `topic` (one message of several
    lines per pass): "Log cleaner thread 0 cleaned log T-0 (dirty section =
    [a, b])", "X MB of log processed in Y seconds (Z MB/sec).", "Start
    size: ...", "End size: ..." (Kafka's MB is 2^20 bytes). Its seconds
    have one decimal; "seconds" is taken from the log stamps of "Beginning
    cleaning of log T-0" and of the statistics instead when both are there
    (millisecond stamps), "reported_seconds" is Kafka's figure."""
    out = []
    lines = log.splitlines()
    began: dict[str, float] = {}
    for i, line in enumerate(lines):
        b = re.search(r"Beginning cleaning of log (\S+)", line)
        if b and kafka_time(line) is not None:
            began[b.group(1)] = kafka_time(line)
        m = re.search(r"cleaned log (\S+)-(\d+) \(dirty section = \[(-?\d+), (-?\d+)\]\)", line)
        if not m or m.group(1) != topic:
            continue
        stamp = next((kafka_time(x) for x in reversed(lines[max(0, i - 2):i + 1]) if kafka_time(x) is not None),
                     None)
        block = "\n".join(lines[i:i + 12])
        p = re.search(KAFKA_NUM + r" MB of log processed in " + KAFKA_NUM + r" seconds \(" + KAFKA_NUM
                      + r" MB/sec\)", block)
        start = re.search(r"Start size: " + KAFKA_NUM + r" MB \(" + KAFKA_NUM + " messages\\)", block)
        end = re.search(r"End size: " + KAFKA_NUM + r" MB \(" + KAFKA_NUM + " messages\\)", block)
        idx = re.search(r"Indexed " + KAFKA_NUM + r" MB in " + KAFKA_NUM + r" seconds", block)
        if not p:
            continue
        row = {"partition": int(m.group(2)), "dirty_section": [int(m.group(3)), int(m.group(4))],
               "processed_mb": kafka_num(p.group(1)), "seconds": kafka_num(p.group(2)),
               "reported_seconds": kafka_num(p.group(2)), "reported_mb_per_s": kafka_num(p.group(3))}
        start_stamp = began.pop(f"{m.group(1)}-{m.group(2)}", None)
        if stamp is not None and start_stamp is not None and stamp >= start_stamp:
            row["seconds"] = round(stamp - start_stamp, 3)
        if start:
            row["start_bytes"] = int(kafka_num(start.group(1)) * MIB)
            row["start_records"] = int(kafka_num(start.group(2)))
        if end:
            row["end_bytes"] = int(kafka_num(end.group(1)) * MIB)
            row["end_records"] = int(kafka_num(end.group(2)))
        if idx:
            row["index_seconds"] = kafka_num(idx.group(2))
        out.append(row)
    return out


def segments(d: Path) -> list[tuple[int, int]]:
    """(base offset, size) of a partition directory's live segments."""
    out = []
    try:
        for f in d.iterdir():
            if f.name.endswith(".log") and f.name[:-4].isdigit():
                try:
                    out.append((int(f.name[:-4]), f.stat().st_size))
                except OSError:
                    pass
    except OSError:
        pass
    return sorted(out)


def live_bytes(d: Path) -> int:
    return sum(s for _, s in segments(d))


def dirty_bytes(d: Path) -> tuple[int, int]:
    """Bytes of the segments below the active one, and the active
    segment's base offset."""
    segs = segments(d)
    if not segs:
        return 0, 0
    return sum(s for _, s in segs[:-1]), segs[-1][0]


# ----------------------------------------------------------------- workloads


def create(tools: Tools, b, topic: str, partitions: int, configs: dict[str, str]) -> None:
    args = ["topics", "create", topic, "--partitions", str(partitions), "--replication-factor", "1"]
    for k, v in configs.items():
        args += ["-c", f"{k}={v}"]
    if not cli(tools, b.bootstrap, *args):
        raise RuntimeError(f"cannot create topic {topic} on {b.label}")


def alter(tools: Tools, b, topic: str, configs: dict[str, str]) -> None:
    args = ["topics", "alter", topic]
    for k, v in configs.items():
        args += ["--set", f"{k}={v}"]
    if not cli(tools, b.bootstrap, *args):
        raise RuntimeError(f"cannot alter topic {topic} on {b.label}")


def produce_keyed(tools: Tools, b, topic: str, records: int, keys: int, size: int) -> dict:
    r = run_json([tools.rdkafka_bench, "--bootstrap", b.bootstrap, "--topic", topic, "--records", str(records),
                  "--size", str(size), "--partitions", "1", "--keys", str(keys), "--acks", "all",
                  "--idempotence", "true", "--linger-ms", "5", "--batch-bytes", "1000000", "--no-consume",
                  "--timeout-s", "1500"], timeout=1800)
    p = r.get("produce", r)
    if "failed" in p:
        raise RuntimeError(f"producing {topic}: {p['failed']}")
    say(f"  wrote {p['records']:,} keyed records at {p['records_per_s']:,.0f}/s")
    return p


def latency_run(tools: Tools, b, topic: str, rate: int, seconds: int) -> dict:
    r = run_json([tools.rdkafka_bench, "--bootstrap", b.bootstrap, "--topic", topic, "--rate", str(rate),
                  "--duration-s", str(seconds), "--size", "100", "--partitions", str(LATENCY_PARTITIONS),
                  "--acks", "all", "--idempotence", "true", "--linger-ms", "5", "--batch-bytes", "1000000",
                  "--timeout-s", "120"], timeout=seconds + 300)
    row = flatten_latency(r.get("latency", r))
    if "failed" in r:
        row["failed"] = r["failed"]
        say(f"  FAILED: {r['failed']}")
    else:
        say(f"  achieved {row.get('achieved_rate') or 0:,.0f}/s; produce p50 {fms(row.get('produce_p50_ms'))} ms, "
            f"p99 {fms(row.get('produce_p99_ms'))} ms, p99.9 {fms(row.get('produce_p99_9_ms'))} ms")
    return row


class CleanWatch(threading.Thread):
    """Polls one partition's live size and the cleaner checkpoint every
    50 ms: when the checkpoint first reaches the dirty section's end
    (`target`), and when the live size last changed."""

    def __init__(self, b: CleanerBroker, topic: str, target: int) -> None:
        super().__init__(daemon=True)
        self.b, self.topic, self.target = b, topic, target
        self.dir = b.partition_dir(topic)
        self.size = live_bytes(self.dir)
        self.t0 = time.monotonic()
        self.last_change: float | None = None
        self.done_at: float | None = None
        self.stop_ev = threading.Event()

    def run(self) -> None:
        while not self.stop_ev.is_set():
            now = time.monotonic()
            size = live_bytes(self.dir)
            if size != self.size:
                self.size, self.last_change = size, now
            if self.done_at is None and self.b.checkpoint().get((self.topic, 0), -1) >= self.target:
                self.done_at = now
            self.stop_ev.wait(0.05)

    def wait(self, timeout: float) -> bool:
        """Until the pass is checkpointed and the size held still for
        SETTLE_S; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.b.proc is None or self.b.proc.poll() is not None:
                raise RuntimeError(f"{self.b.label} exited during the clean")
            now = time.monotonic()
            if self.done_at is not None and now - max(self.done_at, self.last_change or 0) >= SETTLE_S:
                return True
            time.sleep(0.1)
        return False

    def finish(self) -> None:
        self.stop_ev.set()
        self.join()


def pass_report(b, topic: str, before: dict, after: dict) -> dict:
    """The broker's own account of the passes over `topic`."""
    ps = b.passes(topic)
    rep: dict = {"passes": ps, "seconds": sum(p["seconds"] for p in ps) if ps else None}
    if isinstance(b, CleanSluiced):
        rep["metrics"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return rep


def topic_config(a) -> dict[str, str]:
    """A cleaned topic as created: not compacted yet (policy delete, no
    retention), so nothing is cleaned while it is written."""
    return {"cleanup.policy": "delete", "segment.bytes": str(a.segment_bytes), "retention.ms": "-1",
            "min.cleanable.dirty.ratio": "0.5"}


def write_dirty(tools: Tools, b, a, what: str, records: int) -> str:
    topic = topic_name(b.name, what)
    create(tools, b, topic, 1, topic_config(a))
    produce_keyed(tools, b, topic, records, a.keys, a.size)
    # Written back now, so the clean does not pay for the write's dirty pages.
    os.sync()
    return topic


def clean_once(tools: Tools, b, a, topic: str, records: int) -> dict:
    """Switches `topic` to compact and waits for its clean; what was cleaned,
    how fast by the broker's report and by the wall clock."""
    d = b.partition_dir(topic)
    dirty, active_base = dirty_bytes(d)
    if dirty == 0:
        raise RuntimeError(f"{topic} has only its active segment, which is never cleaned: write more records or "
                           "lower --segment-bytes")
    size_before = live_bytes(d)
    metrics_before = b.metrics() if isinstance(b, CleanSluiced) else {}
    watch = CleanWatch(b, topic, active_base)
    watch.start()
    alter(tools, b, topic, {"cleanup.policy": "compact"})
    finished = watch.wait(CLEAN_TIMEOUT_S)
    watch.finish()
    metrics_after = b.metrics() if isinstance(b, CleanSluiced) else {}
    clean = {"records": records, "keys": a.keys, "size": a.size, "segment_bytes": a.segment_bytes,
             "size_before": size_before, "dirty_bytes": dirty, "size_after": live_bytes(d),
             "finished": finished,
             "wall_s": (max(watch.done_at or 0, watch.last_change or 0) - watch.t0) if finished else None,
             "checkpointed_s": (watch.done_at - watch.t0) if watch.done_at else None}
    clean.update(pass_report(b, topic, metrics_before, metrics_after))
    if clean["seconds"]:
        clean["cleaned_mb_per_s"] = dirty / clean["seconds"] / 1e6
    if clean["wall_s"]:
        clean["cleaned_mb_per_s_wall"] = dirty / clean["wall_s"] / 1e6
    if not finished:
        raise RuntimeError(f"the clean of {topic} did not finish within {CLEAN_TIMEOUT_S:.0f} s")
    return clean


def cleaner_suite(b, tools: Tools, a, steps: Steps) -> dict:
    """Steps 1 and 2 of the docstring against one broker."""
    out: dict = {"broker": b.name, "label": b.label, "version": b.version}
    # Enough for three closed segments (a record takes about its value and
    # key plus 20 bytes in a batch), a fifth of the records at least.
    warm = min(a.records, max(a.records // 5, 3 * a.segment_bytes // (a.size + 20)))
    steps.begin(f"{b.label}: start; warm-up (not measured): write {warm:,} keyed records and clean them")
    out["start_to_serving_s"] = b.start()
    topic = write_dirty(tools, b, a, "warmup", warm)
    w = clean_once(tools, b, a, topic, warm)
    out["warmup_clean"] = {k: w.get(k) for k in ("dirty_bytes", "seconds", "cleaned_mb_per_s")}
    say(f"  warm-up clean of {w['dirty_bytes'] / 1e6:,.0f} MB: {fms(w['seconds'])} s")

    steps.begin(f"{b.label}: write {a.records:,} keyed records of {a.size} B over {a.keys:,} keys (one partition, "
                "cleanup.policy=delete for now), then cleanup.policy=compact and wait until the clean is done")
    big = write_dirty(tools, b, a, "compact", a.records)
    clean = clean_once(tools, b, a, big, a.records)
    out["clean"] = clean
    say(f"  dirty section {clean['dirty_bytes'] / 1e6:,.0f} MB -> live size {clean['size_after'] / 1e6:,.1f} MB; "
        f"pass {fms(clean['seconds'])} s by the broker's report ({fms(clean.get('cleaned_mb_per_s'))} MB/s), "
        f"{fms(clean['wall_s'])} s from the policy change to the last shrink")

    steps.begin(f"{b.label}: produce latency at {a.latency_rate:,}/s for {a.latency_seconds} s, no clean running "
                "(after an unmeasured 3 s run)")
    warm_topic = topic_name(b.name, "lat-warmup")
    create(tools, b, warm_topic, LATENCY_PARTITIONS, {})
    latency_run(tools, b, warm_topic, a.latency_rate, 3)
    lat_topic = topic_name(b.name, "lat-idle")
    create(tools, b, lat_topic, LATENCY_PARTITIONS, {})
    idle = latency_run(tools, b, lat_topic, a.latency_rate, a.latency_seconds)
    idle["kind"] = "no clean"
    out["latency"] = [idle]

    # The same again, the latency run alongside: enough dirty data for the
    # clean to outlast it (the consumer's start and a margin included).
    rate_bps = clean["dirty_bytes"] / (clean["seconds"] or clean["wall_s"])
    per_record = clean["size_before"] / a.records
    need = int(rate_bps * (a.latency_seconds + 3) * 1.3 / per_record)
    records2 = min(max(need, a.records), a.records * a.during_cap)
    steps.begin(f"{b.label}: write {records2:,} keyed records more, then produce latency at {a.latency_rate:,}/s "
                f"for {a.latency_seconds} s while the cleaner cleans them")
    big2 = write_dirty(tools, b, a, "compact2", records2)
    d2 = b.partition_dir(big2)
    dirty2, active2 = dirty_bytes(d2)
    lat_topic2 = topic_name(b.name, "lat-clean")
    create(tools, b, lat_topic2, LATENCY_PARTITIONS, {})
    watch2 = CleanWatch(b, big2, active2)
    watch2.start()
    alter(tools, b, big2, {"cleanup.policy": "compact"})
    t_launch = time.monotonic()
    during = latency_run(tools, b, lat_topic2, a.latency_rate, a.latency_seconds)
    t_exit = time.monotonic()
    watch2.wait(CLEAN_TIMEOUT_S)
    watch2.finish()
    ps2 = b.passes(big2)
    pass_s = sum(p["seconds"] for p in ps2) if ps2 else None
    during.update({"kind": "during a clean", "dirty_bytes": dirty2, "records_cleaned": records2,
                   "clean_pass_s": pass_s})
    if watch2.done_at and pass_s and during.get("produce_span_s"):
        # The producing window, approximately: it ends when the run exits.
        w_end = t_exit - watch2.t0
        w_start = w_end - during["produce_span_s"]
        c_end = watch2.done_at - watch2.t0
        c_start = c_end - pass_s
        overlap = max(0.0, min(c_end, w_end) - max(c_start, w_start))
        during["clean_overlap"] = overlap / during["produce_span_s"]
        during["clean_window_s"] = [round(c_start, 3), round(c_end, 3)]
        during["produce_window_s"] = [round(w_start, 3), round(w_end, 3)]
        say(f"  the clean ({pass_s:.1f} s) covered {during['clean_overlap']:.0%} of the producing window "
            f"(launched {t_launch - watch2.t0:.1f} s after the policy change)")
    out["latency"].append(during)
    return out


# ----------------------------------------------------------------- offsets


def kafka_request(api_key: int, version: int, corr: int, body: bytes) -> bytes:
    client = b"sluice-compaction-bench"
    head = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    return struct.pack(">i", len(head) + len(body)) + head + body


def kstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def offset_commit_body(group: str, topic: str, offsets: list[tuple[int, int]]) -> bytes:
    """OffsetCommit v2, a simple commit (generation -1, no member)."""
    parts = b"".join(struct.pack(">iqh", p, o, -1) for p, o in offsets)
    return (kstr(group) + struct.pack(">i", -1) + kstr("") + struct.pack(">q", -1) + struct.pack(">i", 1)
            + kstr(topic) + struct.pack(">i", len(offsets)) + parts)


def offset_fetch_body(group: str, topic: str, partitions: list[int]) -> bytes:
    """OffsetFetch v2."""
    return (kstr(group) + struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", len(partitions))
            + b"".join(struct.pack(">i", p) for p in partitions))


class Reader:
    def __init__(self, data: bytes) -> None:
        self.d, self.i = data, 0

    def take(self, fmt: str):
        v = struct.unpack_from(fmt, self.d, self.i)
        self.i += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.d[self.i:self.i + n].decode()
        self.i += n
        return s


def recv_frame(s: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed")
            buf += chunk
        return bytes(buf)

    (n,) = struct.unpack(">i", exact(4))
    return exact(n)


def commit_errors(frame: bytes) -> list[int]:
    """The non-zero error codes of an OffsetCommit v2 response."""
    r = Reader(frame)
    r.take(">i")  # correlation id
    errs = []
    for _ in range(r.take(">i")):
        r.string()
        for _ in range(r.take(">i")):
            _p, err = r.take(">ih")
            if err:
                errs.append(err)
    return errs


def fetched_offsets(frame: bytes) -> tuple[dict[int, int], int]:
    """OffsetFetch v2 response: partition -> offset (partitions without an
    error), and the first error code met (0 if none)."""
    r = Reader(frame)
    r.take(">i")
    got, first_err = {}, 0
    for _ in range(r.take(">i")):
        r.string()
        for _ in range(r.take(">i")):
            p, off = r.take(">iq")
            r.string()
            err = r.take(">h")
            if err:
                first_err = first_err or err
            else:
                got[p] = off
    top = r.take(">h")
    return got, first_err or top


def coordinator_error(frame: bytes) -> int:
    """The error code of a FindCoordinator v1 response."""
    r = Reader(frame)
    r.take(">i")  # correlation id
    r.take(">i")  # throttle time
    return r.take(">h")


def await_coordinators(b, topic: str, groups: int, partitions: int, timeout: float = 120) -> float:
    """Asks FindCoordinator (which makes Kafka create __consumer_offsets)
    and then OffsetFetch for every group until each answers without error,
    so that no commit meets a coordinator still loading. Returns seconds."""
    t0 = time.monotonic()
    pending = list(range(groups))
    corr = 0
    with socket.create_connection(("127.0.0.1", b.port), timeout=30) as s:
        while pending:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{len(pending)} groups still had no ready coordinator after {timeout:.0f} s")
            waiting = []
            for g in pending:
                corr += 1
                s.sendall(kafka_request(10, 1, corr, kstr(group_name(g)) + struct.pack(">b", 0)))
                err = coordinator_error(recv_frame(s))
                if not err:
                    corr += 1
                    s.sendall(kafka_request(9, 2, corr, offset_fetch_body(group_name(g), topic, [0])))
                    err = fetched_offsets(recv_frame(s))[1]
                if err:
                    waiting.append(g)
            pending = waiting
            if pending:
                time.sleep(0.2)
    return time.monotonic() - t0


def group_name(g: int) -> str:
    return f"bench-group-{g:06d}"


def committed(rnd: int, p: int) -> int:
    """The offset round `rnd` commits for partition p."""
    return rnd * 100_000 + p


def commit_all(b, topic: str, groups: int, partitions: int, rounds: int, connections: int) -> dict:
    """R rounds of one commit per group (all P partitions each), groups
    spread over `connections` sockets with a few requests in flight each.
    A group's next round is sent only after its previous one was answered
    (each connection has more groups than requests in flight)."""
    per_conn = [list(range(c, groups, connections)) for c in range(connections)]
    window = max(1, min(8, min(len(x) for x in per_conn) - 1))
    errors: list[int] = []
    done = [0] * connections
    lock = threading.Lock()

    def worker(c: int) -> None:
        mine = per_conn[c]
        todo = [(rnd, g) for rnd in range(rounds) for g in mine]
        with socket.create_connection(("127.0.0.1", b.port), timeout=60) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sent = recvd = 0
            while recvd < len(todo):
                while sent < len(todo) and sent - recvd < window:
                    rnd, g = todo[sent]
                    body = offset_commit_body(group_name(g), topic,
                                              [(p, committed(rnd, p)) for p in range(partitions)])
                    s.sendall(kafka_request(8, 2, sent, body))
                    sent += 1
                errs = commit_errors(recv_frame(s))
                recvd += 1
                done[c] = recvd
                if errs:
                    with lock:
                        errors.extend(errs)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(connections)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    total = groups * rounds
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=5)
        if any(t.is_alive() for t in threads):
            say(f"    {sum(done) * partitions:,} of {total * partitions:,} offsets committed")
    secs = time.monotonic() - t0
    n = sum(done)
    if n < total:
        raise RuntimeError(f"only {n} of {total} commit requests were answered")
    return {"commits": n * partitions, "requests": n, "seconds": secs, "commits_per_s": n * partitions / secs,
            "errors": len(errors), "first_error": errors[0] if errors else None}


def sample_groups(groups: int) -> list[int]:
    return sorted({g * groups // SAMPLE_GROUPS for g in range(SAMPLE_GROUPS)})


def probe_restart(b, topic: str, groups: int, partitions: int, rounds: int, timeout: float = 300) -> dict:
    """Spawns the broker and asks OffsetFetch for the sample groups until
    each returns its last committed offsets; seconds from the spawn."""
    want = {g: {0: committed(rounds - 1, 0), partitions - 1: committed(rounds - 1, partitions - 1)}
            for g in sample_groups(groups)}
    t0 = b.spawn()
    first_conn = first_group = None
    served: dict[int, float] = {}
    last_err = None
    corr = 0
    s = None
    deadline = t0 + timeout
    while len(served) < len(want) and time.monotonic() < deadline:
        if b.proc.poll() is not None:
            raise RuntimeError(f"{b.label} exited during start-up (exit {b.proc.returncode})")
        try:
            if s is None:
                s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                first_conn = first_conn or time.monotonic() - t0
            for g, exp in want.items():
                if g in served:
                    continue
                corr += 1
                s.sendall(kafka_request(9, 2, corr, offset_fetch_body(group_name(g), topic, sorted(exp))))
                got, err = fetched_offsets(recv_frame(s))
                if got == exp:
                    served[g] = time.monotonic() - t0
                    first_group = first_group or served[g]
                else:
                    last_err = err or f"offsets {got}"
                    break
        except (OSError, ConnectionError, struct.error):
            if s is not None:
                s.close()
            s = None
        if len(served) < len(want):
            time.sleep(0.005)
    if s is not None:
        s.close()
    if len(served) < len(want):
        raise RuntimeError(f"{b.label} served only {len(served)} of {len(want)} sample groups within {timeout:.0f} s "
                           f"(last answer: {last_err})")
    return {"first_connection_s": first_conn, "first_group_s": first_group, "all_groups_s": max(served.values()),
            "sample_groups": len(want)}


def offsets_dirs(b) -> list[Path]:
    return [b.partition_dir("__consumer_offsets", p) for p in range(OFFSETS_PARTITIONS)]


def offsets_size(b) -> dict:
    segs = [segments(d) for d in offsets_dirs(b)]
    return {"bytes": sum(s for x in segs for _, s in x), "segments": sum(len(x) for x in segs)}


def wait_offsets_clean(b, timeout: float = CLEAN_TIMEOUT_S) -> dict:
    """Until every offsets partition with a closed segment is checkpointed
    up to its active segment, and the topic's size held for SETTLE_S."""
    targets = {}
    for p, d in enumerate(offsets_dirs(b)):
        segs = segments(d)
        if len(segs) > 1:
            targets[p] = segs[-1][0]
    t0 = time.monotonic()
    size, changed = offsets_size(b)["bytes"], t0
    done_at = None
    while time.monotonic() - t0 < timeout:
        now = time.monotonic()
        cp = b.checkpoint()
        cur = offsets_size(b)["bytes"]
        if cur != size:
            size, changed = cur, now
        if done_at is None and all(cp.get(("__consumer_offsets", p), -1) >= t for p, t in targets.items()):
            done_at = now
        if done_at is not None and now - max(done_at, changed) >= SETTLE_S:
            return {"partitions_cleaned": len(targets), "seconds": max(done_at, changed) - t0, "finished": True}
        time.sleep(0.2)
    return {"partitions_cleaned": len(targets), "seconds": None, "finished": False}


def offsets_suite(tools: Tools, work: Path, a, steps: Steps, system: str) -> list[dict]:
    """Step 3 of the docstring for one broker; one row per measured start."""
    groups = a.commits // (a.commit_partitions * a.commit_rounds)
    if groups < 2 * a.commit_connections:
        raise SystemExit("--commits is too small for --commit-partitions x --commit-rounds x 2 connections")
    topic = "bench-committed"
    rows: list[dict] = []
    seg = str(a.offsets_segment_bytes)
    if system == "sluiced":
        off = {**CLEANER_SETTINGS, "log.cleaner.enable": "false"}
        b = CleanSluiced(tools, work, "sluiced-offsets", off)
    else:
        b = CleanKafka(tools, work, "kafka-offsets", {"offsets.topic.segment.bytes": seg})
    what = "cleaner disabled" if system == "sluiced" else "cleaner on"
    try:
        steps.begin(f"{b.label}: {groups * a.commit_partitions * a.commit_rounds:,} offset commits ({groups:,} groups "
                    f"x {a.commit_partitions} partitions x {a.commit_rounds} rounds), {what}")
        b.start()
        create(tools, b, topic, a.commit_partitions, {})
        if system == "sluiced":
            # sluiced has no offsets.topic.segment.bytes: the topic's own config.
            alter(tools, b, "__consumer_offsets", {"segment.bytes": seg})
        ready = await_coordinators(b, topic, groups, a.commit_partitions)
        say(f"  every group's coordinator ready after {ready:.1f} s")
        c = commit_all(b, topic, groups, a.commit_partitions, a.commit_rounds, a.commit_connections)
        say(f"  {c['commits']:,} offsets committed at {c['commits_per_s']:,.0f}/s, {c['errors']} errors")
        if c["errors"]:
            raise RuntimeError(f"{c['errors']} offset commits failed (first error code {c['first_error']})")
        before = offsets_size(b)
        if system == "kafka":
            cleaned = wait_offsets_clean(b)
            say(f"  __consumer_offsets cleaned in {fms(cleaned['seconds'])} s")
        b.stop()
        if system == "sluiced":
            steps.begin(f"{b.label}: restart, cleaner disabled: time until {SAMPLE_GROUPS} groups are served")
            r = probe_restart(b, topic, groups, a.commit_partitions, a.commit_rounds)
            rows.append({"system": "sluiced", "label": "sluiced, no compaction", "compacted": False, **r,
                         "offsets_topic": before, "commit": c})
            show_restart(rows[-1])
            b.stop()
            steps.begin(f"{b.label}: start with the cleaner, let it compact __consumer_offsets")
            b.sets["log.cleaner.enable"] = "true"
            b.start()
            cleaned = wait_offsets_clean(b)
            say(f"  cleaned {cleaned['partitions_cleaned']} partitions in {fms(cleaned['seconds'])} s")
            b.stop()
        after = offsets_size(b)
        steps.begin(f"{b.label}: restart after compaction: time until {SAMPLE_GROUPS} groups are served")
        r = probe_restart(b, topic, groups, a.commit_partitions, a.commit_rounds)
        rows.append({"system": system, "label": f"{'sluiced' if system == 'sluiced' else 'Kafka'}, compacted",
                     "compacted": True, **r, "offsets_topic": after, "offsets_topic_before_clean": before,
                     "clean": cleaned, "commit": c})
        show_restart(rows[-1])
    finally:
        b.stop()
        if a.keep_logs:
            keep_log(b, a.out_dir)
        b.remove_data()
    return rows


def keep_log(b, out: Path) -> None:
    """Copies a broker's log (its process output) to <out>/logs/."""
    src = b.work / f"{b.name}.log"
    if src.exists():
        (out / "logs").mkdir(exist_ok=True)
        shutil.copy(src, out / "logs" / src.name)


def show_restart(row: dict) -> None:
    say(f"  {row['label']}: __consumer_offsets {row['offsets_topic']['bytes'] / 1e6:,.1f} MB in "
        f"{row['offsets_topic']['segments']} segments; first group served {row['first_group_s']:.3f} s after "
        f"spawn, all {row['sample_groups']} sample groups {row['all_groups_s']:.3f} s")


# ----------------------------------------------------------------- report


def ratio(a, b) -> float | None:
    return a / b if a and b else None


def fx(x: float | None) -> str:
    return f"{x:.2f}x" if x else "-"


def targets(res: dict) -> list[dict]:
    by = {b["broker"]: b for b in res["brokers"]}
    ts: list[dict] = []

    def add(target: str, value, desc: str, met) -> None:
        ts.append({"target": target, "measured": desc, "value": value, "met": met})

    s, k = by.get("sluiced"), by.get("kafka")
    sv = (s or {}).get("clean", {}).get("cleaned_mb_per_s")
    kv = (k or {}).get("clean", {}).get("cleaned_mb_per_s")
    x = ratio(sv, kv)
    add("cleaner throughput >= Kafka's", x,
        f"{fms(sv)} MB/s vs {fms(kv)} MB/s ({fx(x)})" if x else "not run", None if x is None else x >= 1.0)
    if s and len(s.get("latency", [])) == 2:
        idle, during = s["latency"]
        x = ratio(during.get("produce_p99_ms"), idle.get("produce_p99_ms"))
        cov = during.get("clean_overlap")
        add("sluiced produce p99 during a clean <= 1.5x without", x,
            f"{fms(during.get('produce_p99_ms'))} ms vs {fms(idle.get('produce_p99_ms'))} ms ({fx(x)})"
            + (f"; the clean covered {cov:.0%} of the window" if cov is not None else ""),
            None if x is None else x <= 1.5)
    row = next((r for r in res.get("offsets", []) if r["system"] == "sluiced" and r["compacted"]), None)
    if row:
        commits = row["commit"]["commits"]
        add(f"sluiced serves groups < 1 s after start ({commits:,} commits, compacted)", row["all_groups_s"],
            f"{row['all_groups_s']:.3f} s (first group {row['first_group_s']:.3f} s)", row["all_groups_s"] < 1.0)
    return ts


def report(res: dict, out: Path) -> str:
    md = [f"# Compaction benchmark, {res['date']}", ""]
    m = res["machine"]
    md.append(f"`{res['command']}` on {m['cpus']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}; "
              f"load average at the end {m['loadavg_end']}; {res['elapsed_min']:.0f} min. Every broker and "
              "client process shares these cores: the load generators (librdkafka, the Python committer and "
              "prober) take CPU from the broker they measure, for both brokers alike. Compare ratios within "
              "this run, not across runs.")
    md.append("")
    versions = "; ".join(f"{b['label']}: {b['version']}" for b in res["brokers"])
    md.append(f"Brokers: {versions}. Client: librdkafka {res['librdkafka']} (benches/e2e/rdkafka_bench.c). "
              "Cleaner settings on both: " + ", ".join(f"{k}={v}" for k, v in CLEANER_SETTINGS.items())
              + ", io.max.bytes.per.second unlimited; Kafka log.cleaner.threads=1 (sluiced: one cleaner per "
              "shard, one partition per compacted topic here).")
    md.append("")

    if res["brokers"]:
        cleaner_sections(res, md)
    offsets_section(res, md)
    md.append("## Targets (issue 14)")
    md.append("")
    md.append("| target | measured | met |")
    md.append("|---|---|---|")
    for t in res.get("targets", []):
        md.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'NO' if t['met'] is False else '-'} |")
    md.append("")
    md.append("Plot: compaction.png. Raw numbers: results.json.")
    text = "\n".join(md) + "\n"
    (out / "results.md").write_text(text)
    return text


def cleaner_sections(res: dict, md: list[str]) -> None:
    """Sections 1 and 2 of results.md."""
    plan = res["plan"]
    md.append(f"## 1. Cleaner throughput ({plan['records']:,} records of {plan['size']} B over "
              f"{plan['keys']:,} keys, one partition, segment.bytes {plan['segment_bytes'] // MIB} MiB)")
    md.append("")
    md.append("| broker | dirty section | live size after | pass (broker's report) | cleaned MB/s | "
              "policy change -> last shrink | MB/s by that | broker's own figure |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for b in res["brokers"]:
        c = b.get("clean")
        if not c:
            md.append(f"| {b['label']} | FAILED: {b.get('failed', '?')[:200]} | | | | | | |")
            continue
        own = "-"
        if b["broker"] == "kafka" and c.get("passes"):
            own = "; ".join(f"{p['processed_mb']:,.1f} MiB processed in {p['seconds']:.1f} s "
                            f"({p['reported_mb_per_s']:,.1f} MiB/s)" for p in c["passes"])
        elif c.get("passes"):
            own = "; ".join(f"read {p['bytes_read'] / 1e6:,.0f} MB, wrote {p['bytes_written'] / 1e6:,.1f} MB, "
                            f"removed {p['records_removed']:,} records in {p['seconds']:.2f} s" for p in c["passes"])
        md.append(f"| {b['label']} | {c['dirty_bytes'] / 1e6:,.1f} MB | {c['size_after'] / 1e6:,.1f} MB | "
                  f"{fms(c.get('seconds'))} s | {fms(c.get('cleaned_mb_per_s'))} | {fms(c.get('wall_s'))} s | "
                  f"{fms(c.get('cleaned_mb_per_s_wall'))} | {own} |")
    by = {b["broker"]: b for b in res["brokers"]}
    x = ratio(by.get("sluiced", {}).get("clean", {}).get("cleaned_mb_per_s"),
              by.get("kafka", {}).get("clean", {}).get("cleaned_mb_per_s"))
    md.append("")
    md.append(f"sluiced / Kafka cleaned MB/s: **{fx(x)}**. Cleaned MB/s = the dirty section's bytes on disk (the "
              "segments below the active one when the policy changed: what the clean reads and rewrites) / the "
              "pass time the broker reports (sluiced: `took_ms` of its \"cleaned log\" line; Kafka: the seconds "
              "of its LogCleaner statistics). The wall time runs from the policy change (either cleaner wakes "
              "within log.cleaner.backoff.ms, 1 s) until the live .log files stopped shrinking.")
    md.append("")

    md.append(f"## 2. Produce latency while the cleaner cleans ({plan['latency_rate']:,} records/s of 100 B for "
              f"{plan['latency_seconds']} s, acks=all, {LATENCY_PARTITIONS} partitions)")
    md.append("")
    md.append("| broker | run | produce p50 ms | p99 ms | p99.9 ms | max ms | e2e p99 ms | achieved/s | "
              "p99 vs no clean | clean overlap |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for b in res["brokers"]:
        lats = b.get("latency") or []
        base = lats[0].get("produce_p99_ms") if lats else None
        for r in lats:
            if "failed" in r:
                md.append(f"| {b['label']} | {r.get('kind')} | FAILED: {r['failed'][:150]} | | | | | | | |")
                continue
            ov = r.get("clean_overlap")
            ovs = (f"{ov:.0%} of the producing window ({r['dirty_bytes'] / 1e6:,.0f} MB cleaned in "
                   f"{fms(r.get('clean_pass_s'))} s)") if ov is not None else "-"
            md.append(f"| {b['label']} | {r['kind']} | {fms(r.get('produce_p50_ms'))} | "
                      f"{fms(r.get('produce_p99_ms'))} | {fms(r.get('produce_p99_9_ms'))} | "
                      f"{fms(r.get('produce_max_ms'))} | {fms(r.get('e2e_p99_ms'))} | "
                      f"{r.get('achieved_rate') or 0:,.0f} | "
                      f"{fx(ratio(r.get('produce_p99_ms'), base)) if r is not lats[0] else ''} | {ovs} |")
    md.append("")
    md.append("The run during a clean starts right after the policy change of a freshly written keyed topic, "
              "sized from section 1's throughput so that its clean lasts the whole run; the overlap is that "
              "clean's span (its end from the cleaner checkpoint, its length from the broker's report) over "
              "the producing window (approximate: it ends when the load generator exits).")
    md.append("")



def offsets_section(res: dict, md: list[str]) -> None:
    """Section 3 of results.md."""
    plan = res["plan"]
    offs = res.get("offsets") or []
    for name, why in (res.get("offsets_failed") or {}).items():
        md.append(f"Restart test against {name} FAILED: {why[:300]}")
        md.append("")
    if offs:
        c0 = offs[0]["commit"]
        md.append(f"## 3. Restart after {c0['commits']:,} offset commits "
                  f"({plan['commit_groups']:,} groups x {plan['commit_partitions']} partitions x "
                  f"{plan['commit_rounds']} rounds; __consumer_offsets with {OFFSETS_PARTITIONS} partitions and "
                  f"{plan['offsets_segment_bytes'] // MIB} MiB segments)")
        md.append("")
        md.append("| broker | __consumer_offsets on disk | segments | first connection s | first group served s | "
                  f"all {SAMPLE_GROUPS} sample groups s | commits/s while committing |")
        md.append("|---|---:|---:|---:|---:|---:|---:|")
        for r in offs:
            md.append(f"| {r['label']} | {r['offsets_topic']['bytes'] / 1e6:,.1f} MB | "
                      f"{r['offsets_topic']['segments']} | {fms(r.get('first_connection_s'))} | "
                      f"{r['first_group_s']:.3f} | {r['all_groups_s']:.3f} | {r['commit']['commits_per_s']:,.0f} |")
        md.append("")
        md.append("Times from spawning the process; a group is served when OffsetFetch v2 returns the offsets of "
                  "its last commit. Kafka's include the JVM's start.")
        md.append("")


def plot(res: dict, out: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed: no plot")
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    brokers = [b for b in res["brokers"] if b.get("clean")]
    ax = axes[0]
    ax.bar([b["label"] for b in brokers], [b["clean"].get("cleaned_mb_per_s") or 0 for b in brokers],
           color=["tab:blue" if b["broker"] == "sluiced" else "tab:gray" for b in brokers])
    ax.set_ylabel("MB/s cleaned (dirty section / pass time)")
    ax.set_title("Cleaner throughput")
    ax = axes[1]
    width = 0.35
    for i, kind in enumerate(("no clean", "during a clean")):
        ys = []
        for b in res["brokers"]:
            r = next((x for x in b.get("latency", []) if x.get("kind") == kind), {})
            ys.append(r.get("produce_p99_ms") or 0)
        ax.bar([j + i * width for j in range(len(res["brokers"]))], ys, width, label=kind)
    ax.set_xticks([j + width / 2 for j in range(len(res["brokers"]))])
    ax.set_xticklabels([b["label"] for b in res["brokers"]])
    ax.set_ylabel("produce p99, ms")
    ax.set_title(f"Produce p99 at {res['plan']['latency_rate']:,}/s")
    ax.legend(fontsize=8)
    ax = axes[2]
    offs = res.get("offsets") or []
    ax.bar([r["label"] for r in offs], [r["all_groups_s"] for r in offs],
           color=["tab:blue" if r["system"] == "sluiced" else "tab:gray" for r in offs])
    ax.axhline(1.0, color="tab:red", linestyle="--", linewidth=1)
    ax.set_ylabel("s from spawn to all sample groups served")
    ax.set_title("Restart after the offset commits")
    ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"Compaction, {res['date']} ({res['machine']['cpus']} cores shared by brokers and clients)")
    fig.tight_layout()
    fig.savefig(out / "compaction.png", dpi=110)
    plt.close(fig)
    return "compaction.png"


# ----------------------------------------------------------------- main


def interrupted(signum, frame) -> None:
    """SIGTERM handled as Ctrl-C: the `finally` blocks stop the broker."""
    raise KeyboardInterrupt


BROKERS = ("sluiced", "kafka")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=5_000_000, help="keyed records in the cleaned topic (default 5M)")
    ap.add_argument("--keys", type=int, default=100_000, help="distinct keys among them (default 100k)")
    ap.add_argument("--size", type=int, default=100, help="value size in bytes (default 100)")
    ap.add_argument("--segment-bytes", type=int, default=16 * MIB, help="segment.bytes of the cleaned topics")
    ap.add_argument("--latency-rate", type=int, default=20_000, help="records/s of the latency runs")
    ap.add_argument("--latency-seconds", type=int, default=15)
    ap.add_argument("--during-cap", type=int, default=5,
                    help="the topic cleaned during the latency run holds at most this many times --records")
    ap.add_argument("--commits", type=int, default=1_000_000, help="offset commits of the restart test")
    ap.add_argument("--commit-partitions", type=int, default=50, help="partitions per commit")
    ap.add_argument("--commit-rounds", type=int, default=10, help="commits per group")
    ap.add_argument("--commit-connections", type=int, default=8)
    ap.add_argument("--offsets-segment-bytes", type=int, default=MIB, help="__consumer_offsets segment size")
    ap.add_argument("--brokers", default=",".join(BROKERS), help="subset of sluiced,kafka")
    ap.add_argument("--skip", default="", help="parts to leave out: a comma list of cleaner (1 and 2), offsets (3)")
    ap.add_argument("--keep-logs", action="store_true", help="copy each broker's log to <out>/logs/")
    ap.add_argument("--out", default=None, help="results folder (default bench/results/<date>-compaction)")
    ap.add_argument("--command", default="scripts/bench --compaction", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.brokers = [x for x in a.brokers.split(",") if x]
    for x in a.brokers:
        if x not in BROKERS:
            ap.error(f"unknown broker {x} (known: {', '.join(BROKERS)})")
    a.skip = {x for x in a.skip.split(",") if x}
    if a.skip - {"cleaner", "offsets"}:
        ap.error(f"--skip takes cleaner and/or offsets, not {','.join(sorted(a.skip))}")
    if a.keys < 1 or a.records < a.keys:
        ap.error("--keys must be between 1 and --records")
    if a.commits < a.commit_partitions * a.commit_rounds * 2 * a.commit_connections:
        ap.error("--commits must be at least --commit-partitions x --commit-rounds x 2 x --commit-connections")
    return a


def machine() -> dict:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem), "kernel": platform.release(),
            "loadavg_end": " ".join(open("/proc/loadavg").read().split()[:3])}


def write_results(res: dict, out: Path) -> str:
    """results.json, results.md and the plot; returns the report text."""
    res["targets"] = targets(res)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    text = report(res, out)
    made = plot(res, out)
    say(f"wrote {out}/results.json, results.md" + (f", {made}" if made else ""))
    return text


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    tools = Tools.from_env()
    today = datetime.date.today().isoformat()
    out = Path(a.out) if a.out else tools.root / "bench/results" / f"{today}-compaction"
    out.mkdir(parents=True, exist_ok=True)
    a.out_dir = out
    groups = a.commits // (a.commit_partitions * a.commit_rounds)
    plan = {"records": a.records, "keys": a.keys, "size": a.size, "segment_bytes": a.segment_bytes,
            "latency_rate": a.latency_rate, "latency_seconds": a.latency_seconds, "commits": a.commits,
            "commit_groups": groups, "commit_partitions": a.commit_partitions, "commit_rounds": a.commit_rounds,
            "commit_connections": a.commit_connections, "offsets_segment_bytes": a.offsets_segment_bytes,
            "cleaner_settings": CLEANER_SETTINGS}
    n_steps = (0 if "cleaner" in a.skip else 4 * len(a.brokers)) + \
        (0 if "offsets" in a.skip else sum(4 if x == "sluiced" else 2 for x in a.brokers))
    steps = Steps(max(n_steps, 1))
    work = Path(tempfile.mkdtemp(prefix="sluice-compaction-bench."))
    say(f"work dir {work}; results to {out}")
    res: dict = {"date": today, "command": a.command, "plan": plan,
                 "librdkafka": os.environ.get("BENCH_LIBRDKAFKA", "?"), "brokers": [], "offsets": []}
    current = None
    try:
        if "cleaner" not in a.skip:
            for name in a.brokers:
                if name == "sluiced":
                    current = CleanSluiced(tools, work, "sluiced", CLEANER_SETTINGS)
                else:
                    current = CleanKafka(tools, work, "kafka", {})
                try:
                    res["brokers"].append(cleaner_suite(current, tools, a, steps))
                except (RuntimeError, OSError) as e:
                    say(f"{current.label}: FAILED: {e}")
                    res["brokers"].append({"broker": current.name, "label": current.label,
                                           "version": current.version, "failed": str(e)[:2000]})
                finally:
                    current.stop()
                    if a.keep_logs:
                        keep_log(current, out)
                    current.remove_data()
                    current = None
        if "offsets" not in a.skip:
            for name in a.brokers:
                try:
                    res["offsets"].extend(offsets_suite(tools, work, a, steps, name))
                except (RuntimeError, OSError) as e:
                    say(f"{name}: offsets restart FAILED: {e}")
                    res.setdefault("offsets_failed", {})[name] = str(e)[:2000]
    except KeyboardInterrupt:
        say("interrupted: stopping what runs")
    finally:
        if current is not None:
            current.stop()
            current.remove_data()
        shutil.rmtree(work, ignore_errors=True)
        res["elapsed_min"] = (time.monotonic() - T0_MAIN) / 60
        res["machine"] = machine()
        if res["brokers"] or res["offsets"]:
            print(write_results(res, out))
    return 0


T0_MAIN = time.monotonic()

if __name__ == "__main__":
    sys.exit(main())
