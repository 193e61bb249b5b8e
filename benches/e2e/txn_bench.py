#!/usr/bin/env python3
"""The transactions benchmark behind `scripts/bench --transactions`:
transactional produce throughput on sluiced against Apache Kafka, single
node each, same client (librdkafka through benches/e2e/rdkafka_bench.c),
same box, one broker after the other (issue 14's transaction target).

Every broker gets, on a fresh topic of 12 partitions each time:
0. Warm-up, not measured: 20k records in transactions of 1,000 (Kafka's
   JIT compiles its produce, coordinator and marker paths; both create
   __transaction_state here).
1. The same idempotent producer without transactions (acks=all,
   idempotent, linger.ms 5, 100 B values, record i to partition i % 12):
   what transactions cost is read against it.
2. Transactions of T records for each T of --txn-sizes (100 and 10,000 by
   default): one transactional producer (transactional.id per run),
   init_transactions before the clock starts, then begin, T records,
   commit_transaction (which waits for every delivery and the
   coordinator's answer), until N_T records are sent. Throughput = N_T
   over the time from the first send to the last commit's return; the
   commit_transaction durations give p50/p99. Each workload's consume
   phase (read_committed, librdkafka's default) then reads all N_T records
   back, so every measured record was committed; a run that cannot read
   them all is reported as failed.

Brokers: sluiced with its defaults (fsync before every acknowledgement,
including the coordinator's __transaction_state writes and the markers);
Kafka with log.flush.interval.messages=1 (an fsync per append, the closest
Kafka setting to sluiced's durability) and Kafka with its defaults (no
fsync: the page cache only). transaction.state.log.replication.factor and
min.isr are 1 on both (single node). The issue's target is throughput at
least Kafka's (defaults) at both T.

Writes bench/results/<date>-transactions/results.json, results.md and
transactions.png. A benchmark, not a test: nothing asserts a timing. Broker
and client share the machine's two cores; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import Kafka, Sluiced, Steps, Tools, fms, fx, ratio, run_json, say, topic_name  # noqa: E402
from compaction_bench import interrupted, machine  # noqa: E402

PARTITIONS = 12
WARMUP_RECORDS = 20_000
WARMUP_TXN = 1_000
KAFKA_SINGLE_NODE = ["transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1"]


def make_broker(name: str, tools: Tools, work: Path):
    if name == "sluiced":
        return Sluiced(tools, work)
    if name == "kafka-flush1":
        return Kafka(tools, work, "kafka-flush1", "Kafka, flush every message",
                     ["log.flush.interval.messages=1", *KAFKA_SINGLE_NODE])
    if name == "kafka":
        return Kafka(tools, work, "kafka", "Kafka defaults", list(KAFKA_SINGLE_NODE))
    raise SystemExit(f"unknown broker {name}: sluiced, kafka-flush1 or kafka")


def run_workload(tools: Tools, b, records: int, txn_records: int, tag: str) -> dict:
    """One rdkafka_bench run on a fresh topic; txn_records 0 produces
    without transactions. Returns its produce and consume figures."""
    topic = topic_name("txn", tag)
    cmd = [tools.rdkafka_bench, "--bootstrap", b.bootstrap, "--topic", topic, "--records", str(records),
           "--size", "100", "--partitions", str(PARTITIONS), "--acks", "all", "--idempotence", "true",
           "--linger-ms", "5", "--timeout-s", "600"]
    if txn_records:
        cmd += ["--txn-records", str(txn_records)]
    r = run_json(cmd, timeout=900)
    if "failed" in r:
        raise RuntimeError(f"{tag}: rdkafka_bench failed: {r['failed']}")
    produce, consume = r.get("produce", {}), r.get("consume", {})
    if not consume.get("complete"):
        raise RuntimeError(f"{tag}: the read_committed consumer got {consume.get('records')} of {records} records")
    return {"txn_records": txn_records, "records": records, "records_per_s": produce.get("records_per_s"),
            "mb_per_s": produce.get("mb_per_s"), "seconds": produce.get("seconds"),
            "transactions": produce.get("transactions"), "commit_p50_ms": produce.get("commit_p50_ms"),
            "commit_p99_ms": produce.get("commit_p99_ms"), "commit_max_ms": produce.get("commit_max_ms"),
            "delivery_p99_ms": produce.get("p99_ms"), "read_committed": consume.get("records")}


def broker_suite(b, tools: Tools, a, steps: Steps) -> dict:
    steps.begin(f"{b.label}: start")
    start_s = b.start()
    rows = []
    try:
        steps.begin(f"{b.label}: warm-up ({WARMUP_RECORDS} records in transactions of {WARMUP_TXN})")
        run_workload(tools, b, WARMUP_RECORDS, WARMUP_TXN, "warmup")
        steps.begin(f"{b.label}: {a.records_plain} records, idempotent, no transactions")
        rows.append(run_workload(tools, b, a.records_plain, 0, "plain"))
        say(f"  {rows[-1]['records_per_s']:.0f} records/s")
        for t, n in zip(a.txn_sizes, a.txn_records):
            steps.begin(f"{b.label}: {n} records in transactions of {t}")
            rows.append(run_workload(tools, b, n, t, f"t{t}"))
            r = rows[-1]
            say(f"  {r['records_per_s']:.0f} records/s, {r['transactions']} commits, "
                f"commit p50 {r['commit_p50_ms']:.2f} ms, p99 {r['commit_p99_ms']:.2f} ms")
    finally:
        b.stop()
        b.remove_data()
    return {"broker": b.name, "label": b.label, "version": b.version, "start_s": start_s, "rows": rows}


def row_of(res: dict, broker: str, t: int) -> dict | None:
    for br in res["brokers"]:
        if br["broker"] == broker:
            return next((r for r in br.get("rows", []) if r["txn_records"] == t), None)
    return None


def targets(res: dict) -> list[dict]:
    out = []
    for t in res["plan"]["txn_sizes"]:
        s, k = row_of(res, "sluiced", t), row_of(res, "kafka", t)
        r = ratio(s and s["records_per_s"], k and k["records_per_s"])
        out.append({"target": f"transactional produce, a commit every {t} records: at least Kafka's (defaults)",
                    "ratio": r, "met": r is not None and r >= 1.0})
    return out


def fcount(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def report(res: dict) -> str:
    lines = [f"# Transactions benchmark, {res['date']}", "",
             f"`{res['command']}`; librdkafka {res['librdkafka']}; {res['machine']['cpus']} cores "
             f"({res['machine']['cpu']}), shared by broker and client; {res['elapsed_min']:.1f} min.", "",
             "| broker | records per transaction | records | records/s | MB/s | commits | commit p50 ms "
             "| commit p99 ms | read_committed | vs sluiced |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for br in res["brokers"]:
        if "failed" in br:
            lines.append(f"| {br['label']} | FAILED: {br['failed'][:200]} |||||||||")
            continue
        for r in br["rows"]:
            s = row_of(res, "sluiced", r["txn_records"])
            vs = ratio(s and s["records_per_s"], r["records_per_s"])
            lines.append(
                f"| {br['label']} | {r['txn_records'] or 'none (idempotent)'} | {r['records']:,} "
                f"| {fcount(r['records_per_s'])} | {fms(r['mb_per_s'])} | {fcount(r['transactions'])} "
                f"| {fms(r['commit_p50_ms'])} | {fms(r['commit_p99_ms'])} "
                f"| {fcount(r['read_committed'])} | {fx(vs) if br['broker'] != 'sluiced' else ''} |")
    lines += ["", "Versions: " + "; ".join(f"{b['label']}: {b['version']}" for b in res["brokers"]), "",
              "## Targets", ""]
    for t in res.get("targets", []):
        lines.append(f"- {t['target']}: sluiced/Kafka = {fx(t['ratio'])} "
                     f"({'met' if t['met'] else 'MISSED'})")
    lines += ["", "'vs sluiced' is sluiced's throughput over that broker's at the same workload (above 1: sluiced "
              "is faster). One run, one machine; broker and client share its cores."]
    return "\n".join(lines) + "\n"


def plot(res: dict, out: Path) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sizes = [0, *res["plan"]["txn_sizes"]]
    brokers = [b for b in res["brokers"] if "failed" not in b]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(brokers), 1)
    for i, b in enumerate(brokers):
        ys = [(row_of(res, b["broker"], t) or {}).get("records_per_s") or 0 for t in sizes]
        ax.bar([x + i * width for x in range(len(sizes))], ys, width, label=b["label"])
    ax.set_xticks([x + width * (len(brokers) - 1) / 2 for x in range(len(sizes))])
    ax.set_xticklabels(["no transactions" if t == 0 else f"commit every {t:,}" for t in sizes])
    ax.set_ylabel("records/s (100 B, acks=all)")
    ax.set_title("Transactional produce throughput, librdkafka, one producer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "transactions.png", dpi=110)
    plt.close(fig)
    return "transactions.png"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--txn-sizes", default="100,10000", help="records per transaction, one workload each")
    ap.add_argument("--txn-records", default="200000,1000000",
                    help="records of each --txn-sizes workload (default 200k with 100, 1M with 10,000)")
    ap.add_argument("--records-plain", type=int, default=1_000_000, help="records of the no-transaction workload")
    ap.add_argument("--brokers", default="sluiced,kafka-flush1,kafka", help="subset of sluiced,kafka-flush1,kafka")
    ap.add_argument("--out", default=None, help="results folder (default bench/results/<date>-transactions)")
    ap.add_argument("--command", default="scripts/bench --transactions", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.txn_sizes = [int(x) for x in a.txn_sizes.split(",") if x]
    a.txn_records = [int(x) for x in a.txn_records.split(",") if x]
    if len(a.txn_sizes) != len(a.txn_records) or min(a.txn_sizes + a.txn_records, default=0) < 1:
        ap.error("--txn-sizes and --txn-records need as many positive numbers each")
    a.brokers = [x for x in a.brokers.split(",") if x]
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupted)
    tools = Tools.from_env()
    today = datetime.date.today().isoformat()
    out = Path(a.out) if a.out else tools.root / "bench/results" / f"{today}-transactions"
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(len(a.brokers) * (3 + len(a.txn_sizes)))
    work = Path(tempfile.mkdtemp(prefix="sluice-txn-bench."))
    say(f"work dir {work}; results to {out}")
    plan = {"txn_sizes": a.txn_sizes, "txn_records": a.txn_records, "records_plain": a.records_plain,
            "partitions": PARTITIONS, "size": 100, "linger_ms": 5}
    res: dict = {"date": today, "command": a.command, "plan": plan,
                 "librdkafka": os.environ.get("BENCH_LIBRDKAFKA", "?"), "brokers": []}
    t0 = time.monotonic()
    try:
        for name in a.brokers:
            b = make_broker(name, tools, work)
            try:
                res["brokers"].append(broker_suite(b, tools, a, steps))
            except (RuntimeError, OSError) as e:
                say(f"{b.label}: FAILED: {e}")
                res["brokers"].append({"broker": b.name, "label": b.label, "version": b.version,
                                       "failed": str(e)[:2000]})
    except KeyboardInterrupt:
        say("interrupted: the broker was stopped")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        res["elapsed_min"] = (time.monotonic() - t0) / 60
        res["machine"] = machine()
        if res["brokers"]:
            res["targets"] = targets(res)
            (out / "results.json").write_text(json.dumps(res, indent=2))
            text = report(res)
            (out / "results.md").write_text(text)
            made = plot(res, out)
            print(text)
            say(f"wrote {out}/results.json, results.md" + (f", {made}" if made else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
