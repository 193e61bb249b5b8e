"""KafkaJS (Node) against the broker: runs node/kafkajs_interop.js, which
creates a topic, produces keyed records with an idempotent producer, reads
them back in a consumer group and checks offsets and per-key order."""

from __future__ import annotations

import shutil

import pytest

from conftest import INTEROP_DIR, run_tool

NODE_DIR = INTEROP_DIR / "node"


@pytest.mark.timeout(180)
def test_kafkajs_produce_and_consume_in_group(broker, topic_name):
    node = shutil.which("node")
    assert node, "node is not on PATH"
    assert (NODE_DIR / "node_modules" / "kafkajs").is_dir(), "kafkajs is not installed: run scripts/setup"
    proc = run_tool([node, str(NODE_DIR / "kafkajs_interop.js"), broker, topic_name, "2000", "10", "3"],
                    timeout=150, cwd=NODE_DIR)
    assert proc.returncode == 0, f"kafkajs_interop.js exited {proc.returncode}:\n{proc.stdout[-4000:]}"
    assert "kafkajs-interop OK" in proc.stdout
