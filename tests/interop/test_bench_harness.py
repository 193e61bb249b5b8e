"""A small run of the benchmark harness (benches/e2e/bench.py, behind
scripts/bench) against sluiced, so the one-command benchmark cannot rot:
every workload of the broker suite and the Rust client suite must complete
with all its records, and the report, JSON and plots must be written.

It checks counts and shapes only, never a timing: throughput is whatever
this machine gives. The librdkafka load generator is compiled as scripts/bench
does (against the librdkafka inside the confluent-kafka wheel, Debian's
header from scripts/setup).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BROKER_KIND, REPO_ROOT, SLUICED_BIN

pytestmark = pytest.mark.skipif(BROKER_KIND != "sluiced", reason="the harness starts its own brokers")

RECORDS = 20_000


@pytest.fixture(scope="module")
def rdkafka_bench(tmp_path_factory) -> Path:
    libs = glob.glob(str(Path(sys.prefix) / "lib/python3*/site-packages/confluent_kafka.libs/librdkafka*.so*"))
    assert libs, "no librdkafka inside the confluent-kafka wheel (scripts/setup installs it)"
    out = tmp_path_factory.mktemp("rdkb") / "rdkafka_bench"
    subprocess.run(
        ["bash", "-c", 'set -e; . scripts/lib/bench.sh; build_rdkafka_bench "$1"', "build", str(out)],
        cwd=REPO_ROOT, env={**os.environ, "ROOT": str(REPO_ROOT), "RDKAFKA_SO": libs[0]}, check=True, timeout=120,
    )
    return out


def test_bench_harness_small_run(rdkafka_bench: Path, tmp_path: Path) -> None:
    sluice_cli = REPO_ROOT / "target/release/sluice"
    assert sluice_cli.exists(), f"{sluice_cli} is not built (cargo build --release -p sluice-cli)"
    out = tmp_path / "results"
    env = {**os.environ, "SLUICE_ROOT": str(REPO_ROOT), "BENCH_SLUICED": str(SLUICED_BIN),
           "BENCH_SLUICE": str(sluice_cli), "BENCH_RDKAFKA": str(rdkafka_bench), "BENCH_TANSU": "",
           "BENCH_PYTHON": sys.executable, "BENCH_LIBRDKAFKA": "wheel"}
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benches/e2e/bench.py"), "--brokers", "sluiced", "--clients", "rust",
         "--records", str(RECORDS), "--client-records", str(RECORDS), "--sizes", "100",
         "--latency-rate", "2000", "--latency-seconds", "2", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())

    (sluiced,) = res["brokers"]
    assert "failed" not in sluiced, sluiced.get("failed")
    assert sluiced["start_to_serving_s"] > 0 and sluiced["rss_idle_kb"] > 0 and sluiced["rss_peak_kb"] > 0
    produced = {(r["acks"], r["producers"]) for r in sluiced["produce"]}
    assert produced == {("1", 1), ("1", 4), ("all", 1), ("all", 4)}
    for r in sluiced["produce"]:
        assert "failed" not in r, r
        assert r["records"] == RECORDS and r["errors"] == 0 and r["records_per_s"] > 0, r
    consumed = {(r["client"], r["consumers"]) for r in sluiced["consume"]}
    assert consumed == {("librdkafka", 1), ("librdkafka", 4), ("sluice-rust", 1)}, consumed
    for r in sluiced["consume"]:
        assert "failed" not in r, r
        assert r["records"] == RECORDS and r["complete"], r
        if r["client"] == "librdkafka":
            assert r["duplicates"] == 0 and sum(r["per_consumer"]) == RECORDS, r
    # Four consumers started together share the first generation (the
    # initial rebalance delay), so each reads some of the records.
    (group,) = [r for r in sluiced["consume"] if r["consumers"] == 4]
    assert all(n > 0 for n in group["per_consumer"]), group
    assert [r["rate_kind"] for r in sluiced["latency"]] == ["fixed", "80% of sluiced's peak"]
    for r in sluiced["latency"]:
        assert "failed" not in r, r
        assert r["errors"] == 0 and r["missing"] == 0 and r["received"] == r["delivered"] > 0, r
        assert 0 < r["produce_p50_ms"] <= r["produce_p99_ms"] <= r["produce_max_ms"], r
        assert 0 < r["e2e_p50_ms"] <= r["e2e_p99_9_ms"] <= r["e2e_max_ms"], r

    (rust,) = res["clients"]["rust"][:1]
    for phase in ("produce", "consume"):
        for client in ("sluice", "librdkafka"):
            m = rust[phase][client]
            assert "failed" not in m, (phase, client, m)
            assert m["records"] == RECORDS and m["records_per_s"] > 0, (phase, client, m)

    md = (out / "results.md").read_text()
    assert "| produce 100 B, acks=all, 4 producers |" in md and "## Targets" in md
    for png in ("throughput.png", "latency.png", "clients.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


# --- the compaction suite (benches/e2e/compaction_bench.py): no broker, only
# its argument checks, its readers of the brokers' cleaner reports and the
# results it writes, so a change to any of them shows here cheaply.

sys.path.insert(0, str(REPO_ROOT / "benches" / "e2e"))
import compaction_bench  # noqa: E402


def test_compaction_bench_arguments() -> None:
    a = compaction_bench.parse_args([])
    assert (a.records, a.keys, a.segment_bytes, a.commits) == (5_000_000, 100_000, 16 << 20, 1_000_000)
    assert a.brokers == ["sluiced", "kafka"] and a.skip == set()
    a = compaction_bench.parse_args(["--records", "1000", "--keys", "10", "--brokers", "sluiced", "--skip", "offsets",
                                     "--commits", "8000"])
    assert (a.records, a.keys, a.brokers, a.skip) == (1000, 10, ["sluiced"], {"offsets"})
    for bad in (["--brokers", "tansu"], ["--skip", "latency"], ["--records", "10", "--keys", "11"],
                ["--commits", "100"]):
        with pytest.raises(SystemExit):
            compaction_bench.parse_args(bad)
    # The two suites are one at a time; refused before anything is installed.
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts/bench"), "--compaction", "--cluster"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "one at a time" in proc.stderr, proc.stderr


def test_compaction_bench_reads_cleaner_reports() -> None:
    sluiced_log = (
        "\x1b[2m2026-12-08T10:00:01.5Z\x1b[0m \x1b[34mDEBUG\x1b[0m sluice_broker::log::cleaner: cleaned log "
        "topic=bench-sluiced-compact-1f partition=0 plan.reason=DirtyRatio end=900000 read=250000000 "
        "written=12000000 removed=800000 took_ms=1234\n"
        "DEBUG sluice_broker::log::cleaner: cleaned log topic=other partition=0 end=1 read=1 written=1 removed=0 "
        "took_ms=1\n")
    (p,) = compaction_bench.sluiced_passes(sluiced_log, "bench-sluiced-compact-1f")
    assert p == {"partition": 0, "seconds": 1.234, "bytes_read": 250_000_000, "bytes_written": 12_000_000,
                 "records_removed": 800_000}
    kafka_log = (
        "[2026-12-08 10:00:01,130] INFO [kafka-log-cleaner-thread-0]: Beginning cleaning of log t-0 (x)\n"
        "[2026-12-08 10:00:03,500] INFO [kafka-log-cleaner-thread-0]: \n"
        "\tLog cleaner thread 0 cleaned log t-0 (dirty section = [0, 900000])\n"
        "\t1,024.0 MB of log processed in 2.5 seconds (409.6 MB/sec).\n"
        "\tIndexed 1,024.0 MB in 1.0 seconds (1,024.0 Mb/sec, 40.0% of total time)\n"
        "\tBuffer utilization: 1.5%\n"
        "\tCleaned 1,024.0 MB in 1.5 seconds (682.7 Mb/sec, 60.0% of total time)\n"
        "\tStart size: 1,024.0 MB (9,000,000 messages)\n"
        "\tEnd size: 10.0 MB (100,000 messages)\n"
        "\t99.0% size reduction (98.9% fewer messages)\n"
        " (org.apache.kafka.storage.internals.log.LogCleaner)\n")
    (k,) = compaction_bench.kafka_passes(kafka_log, "t")
    assert k["dirty_section"] == [0, 900000] and k["processed_mb"] == 1024.0 and k["reported_mb_per_s"] == 409.6
    assert k["start_bytes"] == 1024 << 20 and k["end_records"] == 100_000 and k["index_seconds"] == 1.0
    # Kafka's seconds have one decimal; its millisecond log stamps say more.
    assert (k["reported_seconds"], k["seconds"]) == (2.5, 2.37)
    assert compaction_bench.kafka_passes(kafka_log, "t-1") == []


def test_compaction_bench_writes_results(tmp_path: Path) -> None:
    a = compaction_bench.parse_args(["--records", "1000000", "--commits", "200000", "--out", str(tmp_path)])
    plan = {"records": a.records, "keys": a.keys, "size": a.size, "segment_bytes": a.segment_bytes,
            "latency_rate": a.latency_rate, "latency_seconds": a.latency_seconds, "commits": a.commits,
            "commit_groups": 400, "commit_partitions": 50, "commit_rounds": 10, "commit_connections": 8,
            "offsets_segment_bytes": a.offsets_segment_bytes}

    def broker(name: str, label: str, mbps: float, p99_idle: float, p99_clean: float) -> dict:
        lat = [{"kind": "no clean", "produce_p50_ms": 1.0, "produce_p99_ms": p99_idle, "produce_p99_9_ms": 9.0,
                "produce_max_ms": 20.0, "e2e_p99_ms": 5.0, "achieved_rate": 20000},
               {"kind": "during a clean", "produce_p50_ms": 1.0, "produce_p99_ms": p99_clean, "produce_p99_9_ms": 9.0,
                "produce_max_ms": 30.0, "e2e_p99_ms": 6.0, "achieved_rate": 20000, "clean_overlap": 1.0,
                "dirty_bytes": 500_000_000, "clean_pass_s": 9.0}]
        clean = {"dirty_bytes": 100_000_000, "size_after": 12_000_000, "seconds": 100 / mbps,
                 "cleaned_mb_per_s": mbps, "wall_s": 2.0, "cleaned_mb_per_s_wall": 50.0, "passes": []}
        return {"broker": name, "label": label, "version": "v", "clean": clean, "latency": lat}

    commit = {"commits": 200_000, "commits_per_s": 50_000.0}
    offsets = [{"system": "sluiced", "label": "sluiced, no compaction", "compacted": False, "first_connection_s": 0.1,
                "first_group_s": 0.3, "all_groups_s": 0.4, "offsets_topic": {"bytes": 14_000_000, "segments": 80},
                "commit": commit},
               {"system": "sluiced", "label": "sluiced, compacted", "compacted": True, "first_connection_s": 0.1,
                "first_group_s": 0.2, "all_groups_s": 0.25, "offsets_topic": {"bytes": 4_000_000, "segments": 80},
                "commit": commit}]
    res = {"date": "2026-12-08", "command": "scripts/bench --compaction --quick", "plan": plan, "librdkafka": "2.x",
           "brokers": [broker("sluiced", "sluiced", 200.0, 2.0, 2.6), broker("kafka", "Kafka", 100.0, 3.0, 9.0)],
           "offsets": offsets, "elapsed_min": 3.0, "machine": compaction_bench.machine()}
    text = compaction_bench.write_results(res, tmp_path)

    saved = json.loads((tmp_path / "results.json").read_text())
    met = {t["target"].split(" (")[0]: t["met"] for t in saved["targets"]}
    assert met == {"cleaner throughput >= Kafka's": True, "sluiced produce p99 during a clean <= 1.5x without": True,
                   "sluiced serves groups < 1 s after start": True}, saved["targets"]
    assert (tmp_path / "results.md").read_text() == text
    assert "sluiced / Kafka cleaned MB/s: **2.00x**" in text and "shares these cores" in text
    assert "| sluiced | during a clean |" in text and "| 1.30x |" in text
    assert "| sluiced, compacted | 4.0 MB | 80 |" in text
    assert (tmp_path / "compaction.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the transactions suite (benches/e2e/txn_bench.py)

import txn_bench  # noqa: E402


def test_rdkafka_bench_commits_transactions_that_read_committed_sees(rdkafka_bench: Path, broker: str) -> None:
    """rdkafka_bench --txn-records against the broker under test: every
    record goes out in transactions of 100 and the read_committed consumer
    phase reads them all back."""
    r = subprocess.run(
        [str(rdkafka_bench), "--bootstrap", broker, "--topic", "txn-bench-smoke", "--records", "2000",
         "--partitions", "3", "--acks", "all", "--idempotence", "true", "--txn-records", "100", "--timeout-s", "60"],
        capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    p, c = out["produce"], out["consume"]
    assert (p["records"], p["errors"], p["transactions"], p["txn_records"]) == (2000, 0, 20, 100), p
    assert p["commit_p50_ms"] > 0 and p["commit_max_ms"] >= p["commit_p99_ms"] >= p["commit_p50_ms"], p
    assert c["complete"] and c["records"] == 2000, c
    bad = subprocess.run([str(rdkafka_bench), "--bootstrap", broker, "--topic", "t", "--txn-records", "10"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--acks all" in bad.stderr, bad.stderr


def test_txn_bench_writes_results(tmp_path: Path) -> None:
    a = txn_bench.parse_args(["--out", str(tmp_path)])
    assert (a.txn_sizes, a.txn_records, a.brokers) == ([100, 10000], [200_000, 1_000_000],
                                                        ["sluiced", "kafka-flush1", "kafka"])
    with pytest.raises(SystemExit):
        txn_bench.parse_args(["--txn-sizes", "100,1000", "--txn-records", "5"])

    def row(t: int, rps: float) -> dict:
        return {"txn_records": t, "records": 1000, "records_per_s": rps, "mb_per_s": rps / 1e4, "seconds": 1.0,
                "transactions": 1000 // t if t else None, "commit_p50_ms": 2.0 if t else None,
                "commit_p99_ms": 5.0 if t else None, "commit_max_ms": 9.0 if t else None,
                "delivery_p99_ms": 3.0, "read_committed": 1000}

    res = {"date": "2026-12-08", "command": "scripts/bench --transactions --quick", "librdkafka": "2.x",
           "plan": {"txn_sizes": [100, 10000], "txn_records": [1000, 1000], "records_plain": 1000},
           "brokers": [{"broker": "sluiced", "label": "sluiced", "version": "v",
                        "rows": [row(0, 90_000), row(100, 20_000), row(10000, 80_000)]},
                       {"broker": "kafka", "label": "Kafka defaults", "version": "v",
                        "rows": [row(0, 100_000), row(100, 10_000), row(10000, 100_000)]}],
           "elapsed_min": 1.0, "machine": txn_bench.machine()}
    res["targets"] = txn_bench.targets(res)
    assert [(round(t["ratio"], 2), t["met"]) for t in res["targets"]] == [(2.0, True), (0.8, False)]
    text = txn_bench.report(res)
    assert "| Kafka defaults | 100 | 1,000 | 10,000 |" in text and "| 2.00x |" in text, text
    assert "a commit every 10000 records: at least Kafka's (defaults): sluiced/Kafka = 0.80x (MISSED)" in text
    assert txn_bench.plot(res, tmp_path) == "transactions.png"
    assert (tmp_path / "transactions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
