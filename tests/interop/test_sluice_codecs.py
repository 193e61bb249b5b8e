"""The Sluice client and librdkafka read each other's records with every
codec: `sluice produce` (Rust producer) -> confluent-kafka consumer, and
confluent-kafka producer -> `sluice consume` (Rust consumer)."""
import os
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

ROOT = Path(__file__).resolve().parents[2]
SLUICE = Path(os.environ.get("SLUICE_BIN", ROOT / "target" / "release" / "sluice"))
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
N = 300


def lines():
    return [f"user-{i % 7}:{{\"seq\":{i}}}" for i in range(N)]


def check_per_key_order(pairs):
    last = {}
    for key, value in pairs:
        seq = int(value.split(":")[1].rstrip("}"))
        assert seq > last.get(key, -1), f"{key}: {seq} after {last.get(key)}"
        last[key] = seq
    assert sorted(int(v.split(":")[1].rstrip("}")) for _, v in pairs) == list(range(N))


def sluice(*args, stdin=None, timeout=120):
    if not SLUICE.exists():
        pytest.fail(f"{SLUICE} is not built (cargo build --release -p sluice-cli)")
    return subprocess.run([str(SLUICE), *args], input=stdin, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("codec", CODECS)
def test_sluice_producer_to_librdkafka_consumer(broker, admin, topic_name, codec):
    admin.create_topic(topic_name, 3)
    p = sluice("-b", broker, "produce", topic_name, "--key-separator", ":", "--compression", codec,
               stdin="\n".join(lines()) + "\n")
    assert p.returncode == 0, p.stderr
    c = Consumer({"bootstrap.servers": broker, "group.id": topic_name, "auto.offset.reset": "earliest"})
    c.subscribe([topic_name])
    got = []
    try:
        for _ in range(200):
            for m in c.consume(500, 0.5):
                assert m.error() is None, m.error()
                got.append((m.key().decode(), m.value().decode()))
            if len(got) >= N:
                break
    finally:
        c.close()
    assert len(got) == N
    check_per_key_order(got)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("codec", CODECS)
def test_librdkafka_producer_to_sluice_consumer(broker, admin, topic_name, codec):
    admin.create_topic(topic_name, 3)
    prod = Producer({"bootstrap.servers": broker, "compression.type": codec, "linger.ms": 5,
                     "enable.idempotence": True})
    for line in lines():
        k, v = line.split(":", 1)
        prod.produce(topic_name, key=k, value=v)
    assert prod.flush(30) == 0
    c = sluice("-b", broker, "consume", topic_name, "--from-beginning", "--max-messages", str(N),
               "--print-key", "--key-separator", ":")
    assert c.returncode == 0, c.stderr
    got = [tuple(line.split(":", 1)) for line in c.stdout.splitlines() if line]
    assert len(got) == N
    check_per_key_order(got)
