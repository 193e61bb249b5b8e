"""kafka-python (pure Python) producer and consumer group against the broker.

Produces keyed JSON records (acks=all, gzip, linger 10 ms, 16 KiB batches) to
a 6-partition topic, reads all of them back in a consumer group with
auto-commit, and checks count, per-key order, key -> single partition, and
that the offsets the producer was acknowledged are where the records are.
A second member of the same group then starts at the committed offsets and
sees nothing new.
"""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

RECORDS = 5000
KEYS = 20
PARTITIONS = 6
DEADLINE = 120.0


def _consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=500,
        key_deserializer=lambda b: b.decode(),
        value_deserializer=lambda b: json.loads(b),
        request_timeout_ms=30000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )


@pytest.mark.timeout(240)
def test_produce_and_consume_in_group(broker, admin, topic_name):
    topic = admin.create_topic(topic_name, PARTITIONS)

    producer = KafkaProducer(
        bootstrap_servers=broker,
        acks="all",
        compression_type="gzip",
        linger_ms=10,
        batch_size=16384,
        key_serializer=lambda k: k.encode(),
        value_serializer=lambda v: json.dumps(v).encode(),
        request_timeout_ms=30000,
    )
    try:
        futures = []
        seq = {f"key-{k}": 0 for k in range(KEYS)}
        for i in range(RECORDS):
            key = f"key-{i % KEYS}"
            value = {"key": key, "seq": seq[key], "i": i}
            seq[key] += 1
            futures.append((value, producer.send(topic, key=key, value=value)))
        producer.flush(timeout=60)
        acked = {}  # (partition, offset) -> value
        for value, fut in futures:
            md = fut.get(timeout=60)
            assert (md.partition, md.offset) not in acked, f"two records acknowledged at {md.partition}/{md.offset}"
            acked[(md.partition, md.offset)] = value
    finally:
        producer.close(timeout=10)
    assert len(acked) == RECORDS

    group = f"kp-group-{topic}"
    consumer = _consumer(broker, topic, group)
    got = []
    try:
        deadline = time.monotonic() + DEADLINE
        while len(got) < RECORDS and time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=500).values():
                got.extend(msgs)
        assert len(got) == RECORDS, f"consumed {len(got)} of {RECORDS} records"

        last_seq: dict[str, int] = {}
        key_partition: dict[str, int] = {}
        seen = set()
        for m in got:
            assert m.value["key"] == m.key
            assert acked.get((m.partition, m.offset)) == m.value, \
                f"record at {m.partition}/{m.offset} is {m.value}, producer was acknowledged " \
                f"{acked.get((m.partition, m.offset))}"
            assert m.value["i"] not in seen, f"duplicate {m.value}"
            seen.add(m.value["i"])
            assert key_partition.setdefault(m.key, m.partition) == m.partition, \
                f"{m.key} on partitions {key_partition[m.key]} and {m.partition}"
            want = last_seq.get(m.key, -1) + 1
            assert m.value["seq"] == want, f"{m.key}: seq {m.value['seq']} after {want - 1}"
            last_seq[m.key] = m.value["seq"]
        assert len(key_partition) == KEYS
        assert all(last_seq[k] == RECORDS // KEYS - 1 for k in last_seq)

        # Auto-commit happens in poll() and on close(); close commits the consumed positions.
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = consumer.end_offsets(tps)  # before close(), which commits what was consumed
    finally:
        consumer.close(autocommit=True, timeout_ms=30000)

    # A second member of the same group resumes from the committed offsets.
    second = _consumer(broker, topic, group)
    try:
        for tp in tps:
            committed = second.committed(tp, timeout_ms=30000)
            assert committed == ends[tp], f"{tp}: committed {committed}, log end {ends[tp]}"
        stray = []
        deadline = time.monotonic() + DEADLINE
        while len(second.assignment()) < PARTITIONS and time.monotonic() < deadline:
            for msgs in second.poll(timeout_ms=500).values():
                stray.extend(msgs)
        assert len(second.assignment()) == PARTITIONS, f"assignment {second.assignment()}"
        for _ in range(4):  # a few more fetch rounds from the committed positions
            for msgs in second.poll(timeout_ms=250).values():
                stray.extend(msgs)
        assert stray == [], f"second member re-read {len(stray)} records, first: {stray[:3]}"
        for tp in tps:
            position = second.position(tp, timeout_ms=30000)
            assert position == ends[tp], f"{tp}: position {position}, end {ends[tp]}"
    finally:
        second.close(autocommit=False)
