"""The Java client (org.apache.kafka:kafka-clients) against the broker: runs
the Interop program scripts/setup compiled (java/src/.../Interop.java), which
creates a topic with Admin, produces with acks=all + idempotence, consumes in
a group, checks offsets and per-key order, and commits; and the FetchSessions
program: incremental fetch sessions (KIP-227) over 500 partitions."""

from __future__ import annotations

import re

import pytest

from conftest import CACHE, run_tool

LAUNCHER = CACHE / "java-interop" / "run"


@pytest.mark.timeout(180)
def test_java_client_produce_and_consume_in_group(broker, topic_name):
    assert LAUNCHER.exists(), f"{LAUNCHER} is missing: run scripts/setup"
    proc = run_tool([str(LAUNCHER), broker, topic_name, "3000", "16", "3"], timeout=150)
    assert proc.returncode == 0, f"Java interop program exited {proc.returncode}:\n{proc.stdout[-4000:]}"
    assert "java-interop OK" in proc.stdout


FETCH_SESSIONS_LAUNCHER = CACHE / "java-interop" / "run-fetch-sessions"


@pytest.mark.timeout(330)
def test_java_consumer_uses_incremental_fetch_sessions_over_500_partitions(broker, topic_name):
    """KIP-227: the Java consumer reading 500 partitions gets a fetch session
    and incremental fetch responses (counted from its FetchSessionHandler's
    DEBUG log by the FetchSessions program), and reads every record once."""
    assert FETCH_SESSIONS_LAUNCHER.exists(), f"{FETCH_SESSIONS_LAUNCHER} is missing: run scripts/setup"
    proc = run_tool([str(FETCH_SESSIONS_LAUNCHER), broker, topic_name, "500", "5000"], timeout=300)
    assert proc.returncode == 0, f"FetchSessions exited {proc.returncode}:\n{proc.stdout[-4000:]}"
    assert "java-fetch-sessions OK" in proc.stdout
    match = re.search(r"fetch sessions created=(\d+) incremental=(\d+)", proc.stdout)
    assert match, proc.stdout[-2000:]
    created, incremental = int(match.group(1)), int(match.group(2))
    assert created >= 1, "the broker never answered with a session id"
    assert incremental > created, f"too few incremental fetches: {proc.stdout[-2000:]}"
