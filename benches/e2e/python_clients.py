"""Produce then consume N records of SIZE bytes with sluice, kafka-python
and confluent-kafka against the same broker, one client after the other,
and print records/s for each (a benchmark, not a test).

    python bindings/python/bench/clients.py BOOTSTRAP [N] [SIZE] [PARTITIONS]

Each client produces to its own fresh topic (acks=all, linger_ms=5, no
compression, keyless) and waits for every delivery, then a consumer (no
group, assigned all partitions, from the beginning) reads the same topic
back. Clients that are not installed are skipped.
"""

from __future__ import annotations

import sys
import time
import uuid

bootstrap = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
SIZE = int(sys.argv[3]) if len(sys.argv) > 3 else 100
PARTS = int(sys.argv[4]) if len(sys.argv) > 4 else 6
PAYLOAD = b"x" * SIZE


def create_topic() -> str:
    from sluice import KafkaAdminClient, NewTopic

    name = "bench-py-" + uuid.uuid4().hex[:8]
    KafkaAdminClient(bootstrap_servers=bootstrap).create_topics([NewTopic(name, PARTS, 1)])
    return name


def sluice_produce(topic: str) -> float:
    from sluice import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=65536)
    t = time.perf_counter()
    send = p.send
    for _ in range(N):
        send(topic, PAYLOAD)
    p.flush()
    dt = time.perf_counter() - t
    p.close()
    return dt


def sluice_consume(topic: str) -> float:
    from sluice import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", max_poll_records=5000)
    c.assign([TopicPartition(topic, p) for p in range(PARTS)])
    t = time.perf_counter()
    n = 0
    while n < N:
        for recs in c.poll(timeout_ms=1000).values():
            n += len(recs)
    dt = time.perf_counter() - t
    c.close()
    return dt


def kafka_python_produce(topic: str) -> float:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=65536)
    t = time.perf_counter()
    for _ in range(N):
        p.send(topic, PAYLOAD)
    p.flush()
    dt = time.perf_counter() - t
    p.close()
    return dt


def kafka_python_consume(topic: str) -> float:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", max_poll_records=5000,
                      enable_auto_commit=False)
    c.assign([TopicPartition(topic, p) for p in range(PARTS)])
    t = time.perf_counter()
    n = 0
    while n < N:
        for recs in c.poll(timeout_ms=1000).values():
            n += len(recs)
    dt = time.perf_counter() - t
    c.close()
    return dt


def confluent_produce(topic: str) -> float:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 65536})
    t = time.perf_counter()
    for _ in range(N):
        while True:
            try:
                p.produce(topic, PAYLOAD)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush()
    return time.perf_counter() - t


def confluent_consume(topic: str) -> float:
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + uuid.uuid4().hex[:6], "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTS)])
    t = time.perf_counter()
    n = 0
    while n < N:
        n += sum(1 for m in c.consume(5000, 1.0) if not m.error())
    dt = time.perf_counter() - t
    c.close()
    return dt


CLIENTS = [
    ("sluice", sluice_produce, sluice_consume),
    ("confluent-kafka", confluent_produce, confluent_consume),
    ("kafka-python", kafka_python_produce, kafka_python_consume),
]

print(f"{N:,} records x {SIZE} B, {PARTS} partitions, broker {bootstrap}")
print("| client | produce rec/s | consume rec/s |")
print("|---|---:|---:|")
for name, produce, consume in CLIENTS:
    try:
        topic = create_topic()
        p = produce(topic)
        c = consume(topic)
    except ImportError as e:
        print(f"| {name} | skipped ({e}) | |")
        continue
    print(f"| {name} | {N / p:,.0f} | {N / c:,.0f} |", flush=True)
