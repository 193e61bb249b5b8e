"""Transactions with kafka-python's API: KafkaProducer(transactional_id=...),
init/begin/commit/abort, send_offsets_to_transaction with
consumer.group_metadata(), and KafkaConsumer(isolation_level=...).

Every test here needs a transaction-capable broker: against a sluiced that
does not serve transactions yet (no EndTxn in its ApiVersions) they are
skipped, saying so, and run unchanged once it does."""

import socket
import struct
import time
import uuid

import pytest

from sluice import (
    ConsumerGroupMetadata,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
    errors,
)

WAIT = 60


def serves_transactions(bootstrap: str) -> bool:
    """Whether the broker lists EndTxn (api key 26) in ApiVersions v0."""
    host, port = bootstrap.rsplit(":", 1)
    client_id = b"sluice-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    (n,) = struct.unpack(">i", data[10:14])
    keys = {struct.unpack(">h", data[14 + 6 * i:16 + 6 * i])[0] for i in range(n)}
    return 26 in keys


@pytest.fixture
def txn_broker(broker):
    if not serves_transactions(broker):
        pytest.skip("this broker does not serve transactions yet (no EndTxn in ApiVersions)")
    return broker


def read_to_end(broker, topic, partitions, **kw):
    """Values read until an "end" value came from every partition."""
    c = KafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest", consumer_timeout_ms=WAIT * 1000, **kw)
    c.assign([TopicPartition(topic, p) for p in range(partitions)])
    values, ended = [], set()
    for r in c:
        if r.value == b"end":
            ended.add(r.partition)
            if len(ended) == partitions:
                break
        else:
            values.append(r.value.decode())
    c.close()
    assert len(ended) == partitions, f"no end record on {set(range(partitions)) - ended}"
    return sorted(values)


@pytest.mark.core
def test_commit_abort_and_isolation_levels(txn_broker, topic):
    p = KafkaProducer(bootstrap_servers=txn_broker, transactional_id="py-" + uuid.uuid4().hex,
                      transaction_timeout_ms=30000)
    p.init_transactions()
    p.begin_transaction()
    committed = [f"committed-{i}" for i in range(6)]
    for i, v in enumerate(committed):
        p.send(topic, v.encode(), partition=i % 3)
    p.commit_transaction()

    p.begin_transaction()
    aborted = [f"aborted-{i}" for i in range(3)]
    futures = [p.send(topic, v.encode(), partition=i) for i, v in enumerate(aborted)]
    for f in futures:
        f.get(WAIT)  # written, then aborted
    p.abort_transaction()

    with pytest.raises(errors.IllegalStateError):
        p.send(topic, b"outside a transaction").get(WAIT)

    p.begin_transaction()
    for part in range(3):
        p.send(topic, b"end", partition=part)
    p.commit_transaction()
    p.close()

    assert read_to_end(txn_broker, topic, 3, isolation_level="read_committed") == sorted(committed)
    assert read_to_end(txn_broker, topic, 3) == sorted(committed + aborted), "read_uncommitted (the default) sees all"


@pytest.mark.core
def test_fenced_producer_gets_producer_fenced(txn_broker, topic):
    tid = "py-" + uuid.uuid4().hex
    old = KafkaProducer(bootstrap_servers=txn_broker, transactional_id=tid)
    old.init_transactions()
    old.begin_transaction()
    old.send(topic, b"zombie", partition=0).get(WAIT)
    new = KafkaProducer(bootstrap_servers=txn_broker, transactional_id=tid)
    new.init_transactions()
    with pytest.raises(errors.ProducerFencedError):
        old.commit_transaction()
    old.close()
    new.close()


@pytest.mark.core
def test_send_offsets_to_transaction(txn_broker, topic):
    plain = KafkaProducer(bootstrap_servers=txn_broker)
    for i in range(10):
        plain.send(topic, f"in-{i}".encode(), partition=0)
    plain.flush(WAIT)
    plain.close()
    group = "py-txn-" + uuid.uuid4().hex[:8]
    c = KafkaConsumer(topic, bootstrap_servers=txn_broker, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, isolation_level="read_committed")
    got = 0
    deadline = time.monotonic() + WAIT
    while got < 10 and time.monotonic() < deadline:
        got += sum(len(v) for v in c.poll(timeout_ms=500).values())
    assert got == 10
    meta = c.group_metadata()
    assert isinstance(meta, ConsumerGroupMetadata)
    assert meta.group_id == group and meta.generation_id >= 1 and meta.member_id

    tp = TopicPartition(topic, 0)
    p = KafkaProducer(bootstrap_servers=txn_broker, transactional_id="py-" + uuid.uuid4().hex)
    p.init_transactions()
    p.begin_transaction()
    p.send(topic, b"out", partition=1)
    p.send_offsets_to_transaction({tp: OffsetAndMetadata(5, "", -1)}, meta)
    p.abort_transaction()
    time.sleep(1)
    assert c.committed(tp) is None, "an aborted transaction's offsets were committed"

    p.begin_transaction()
    p.send_offsets_to_transaction({tp: OffsetAndMetadata(10, "", -1)}, meta)
    p.commit_transaction()
    deadline = time.monotonic() + WAIT
    while c.committed(tp) != 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert c.committed(tp) == 10

    # kafka-python 2.x's form: a bare group id.
    p.begin_transaction()
    p.send_offsets_to_transaction({tp: OffsetAndMetadata(9, "", -1)}, consumer_group_id=group)
    p.commit_transaction()
    deadline = time.monotonic() + WAIT
    while c.committed(tp) != 9 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert c.committed(tp) == 9
    p.close()
    c.close()


def test_transactional_calls_need_a_transactional_id(broker):
    p = KafkaProducer(bootstrap_servers=broker)
    with pytest.raises(errors.IllegalStateError):
        p.begin_transaction()
    p.close()
