"""The Java client (org.apache.kafka:kafka-clients) against the broker: runs
the Interop program scripts/setup compiled (java/src/.../Interop.java), which
creates a topic with Admin, produces with acks=all + idempotence, consumes in
a group, checks offsets and per-key order, and commits."""

from __future__ import annotations

import pytest

from conftest import CACHE, run_tool

LAUNCHER = CACHE / "java-interop" / "run"


@pytest.mark.timeout(180)
def test_java_client_produce_and_consume_in_group(broker, topic_name):
    assert LAUNCHER.exists(), f"{LAUNCHER} is missing: run scripts/setup"
    proc = run_tool([str(LAUNCHER), broker, topic_name, "3000", "16", "3"], timeout=150)
    assert proc.returncode == 0, f"Java interop program exited {proc.returncode}:\n{proc.stdout[-4000:]}"
    assert "java-interop OK" in proc.stdout
