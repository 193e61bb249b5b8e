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
