"""confluent-kafka (librdkafka) against the broker: idempotent producing,
consumer-group rebalancing and committed offsets, and each compression codec.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

DEADLINE = 90.0


def produce(bootstrap: str, topic: str, messages: list[tuple[str | None, str, int | None]],
            **conf) -> dict[tuple[int, int], str]:
    """Produces (key, value, partition-or-None) messages; returns
    {(partition, offset): value} from the delivery reports. Fails the test on
    any delivery error."""
    acked: dict[tuple[int, int], str] = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{err} for {msg.value()!r}")
            return
        where = (msg.partition(), msg.offset())
        if where in acked:
            errors.append(f"two records acknowledged at {where}")
        acked[where] = msg.value().decode()

    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 60000,
        **conf,
    })
    for key, value, partition in messages:
        kwargs = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(DEADLINE)
    assert remaining == 0, f"{remaining} messages not delivered within {DEADLINE:.0f} s"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert len(acked) == len(messages)
    return acked


def keyed(n: int, keys: int, tag: str = "") -> list[tuple[str, str, None]]:
    seq = [0] * keys
    out = []
    for i in range(n):
        k = i % keys
        out.append((f"key-{k}", f"key-{k}|{seq[k]}|{tag}{i}", None))
        seq[k] += 1
    return out


def check_order(records: list[tuple[int, int, str, str]]) -> None:
    """records: (partition, offset, key, value) in arrival order: per-key
    sequence numbers ascend by one, a key stays on one partition."""
    last: dict[str, int] = {}
    where: dict[str, int] = {}
    for p, o, key, value in records:
        vkey, seq, _ = value.split("|")
        assert vkey == key, f"record at {p}/{o}: key {key} but value {value}"
        assert where.setdefault(key, p) == p, f"{key} on partitions {where[key]} and {p}"
        want = last.get(key, -1) + 1
        assert int(seq) == want, f"{key}: seq {seq} after {want - 1} (at {p}/{o})"
        last[key] = int(seq)


class Member:
    """A group member whose messages are tracked per assignment generation."""

    def __init__(self, name: str, bootstrap: str, group: str, topic: str):
        self.name = name
        self.topic = topic
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "range",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
        })
        self.generation = 0
        self.current: list[tuple[int, int, str]] = []  # since the last assignment
        self.all: list[tuple[int, int, str]] = []
        self.errors: list[str] = []
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer, partitions):
        self.generation += 1
        self.current = []

    def _on_revoke(self, consumer, partitions):
        self.current = []

    def assigned(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def poll(self, timeout: float = 0.2) -> None:
        msg = self.consumer.poll(timeout)
        if msg is None:
            return
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                self.errors.append(str(msg.error()))
            return
        rec = (msg.partition(), msg.offset(), msg.value().decode())
        self.current.append(rec)
        self.all.append(rec)

    def max_seen(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for p, o, _ in self.current:
            out[p] = max(out.get(p, -1), o)
        return out


def wait_until(cond, members: list[Member], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            state = {m.name: (sorted(m.assigned()), m.max_seen(), m.errors[-3:]) for m in members}
            pytest.fail(f"timed out waiting for {what}; members: {state}")
        for m in members:
            m.poll(0.1)


@pytest.mark.timeout(300)
def test_idempotent_producer_group_rebalance_and_resume(broker, admin, topic_name):
    partitions = 4
    topic = admin.create_topic(topic_name, partitions)
    acked = produce(broker, topic, keyed(2000, 20),
                    **{"enable.idempotence": True, "compression.type": "gzip"})
    ends = {p: 0 for p in range(partitions)}
    for p, o in acked:
        ends[p] = max(ends[p], o + 1)
    for p in range(partitions):
        offsets = sorted(o for (q, o) in acked if q == p)
        assert offsets == list(range(len(offsets))), f"partition {p}: acknowledged offsets not 0..n-1"
        assert offsets, f"partition {p} got no records (keys did not spread over the partitions)"

    group = f"ck-group-{topic}"
    c1 = Member("c1", broker, group, topic)
    c2 = Member("c2", broker, group, topic)
    members = [c1, c2]
    try:
        # Both members split the partitions, and each has read its share to the end.
        def split_and_caught_up() -> bool:
            a1, a2 = c1.assigned(), c2.assigned()
            if not a1 or not a2 or a1 & a2 or a1 | a2 != set(range(partitions)):
                return False
            return all(m.max_seen().get(p) == ends[p] - 1 for m in members for p in m.assigned())
        wait_until(split_and_caught_up, members, "two members splitting the partitions")
        a2 = c2.assigned()
        for m in members:
            for p, o, value in m.current:
                assert acked[(p, o)] == value, f"{m.name} read {value!r} at {p}/{o}, acked {acked[(p, o)]!r}"

        # c2 commits what it read and leaves; c1 takes over all partitions.
        res = c2.consumer.commit(offsets=[TopicPartition(topic, p, ends[p]) for p in sorted(a2)],
                                 asynchronous=False)
        assert all(tp.error is None for tp in res), f"commit errors: {res}"
        c2.consumer.close()
        members = [c1]
        wait_until(lambda: c1.assigned() == set(range(partitions)), members, "c1 taking all partitions")

        # One marker per partition c2 owned: c1 reaches it, having read nothing
        # before it there, so it resumed at c2's committed offsets.
        markers = produce(broker, topic, [(None, f"marker|{p}", p) for p in sorted(a2)],
                          **{"enable.idempotence": True})
        for (p, o) in markers:
            assert o == ends[p], f"marker on partition {p} at offset {o}, expected {ends[p]}"
        wait_until(lambda: all(any(q == p and o == mo for q, o, _ in c1.current) for (p, mo) in markers),
                   members, "c1 reading the markers")
        early = [(p, o) for p, o, _ in c1.current if p in a2 and o < ends[p]]
        assert not early, f"c1 re-read records before c2's committed offsets: {early[:5]}"
        assert not c1.errors, c1.errors

        new_ends = dict(ends)
        for (p, o) in markers:
            new_ends[p] = o + 1
        # c1's own partitions: it may not have re-read them to the end yet; commit the ends anyway.
        res = c1.consumer.commit(offsets=[TopicPartition(topic, p, new_ends[p]) for p in range(partitions)],
                                 asynchronous=False)
        assert all(tp.error is None for tp in res), f"commit errors: {res}"
        committed = c1.consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        assert {tp.partition: tp.offset for tp in committed} == new_ends
        c1.consumer.close()
        members = []

        # A restarted member resumes at the committed offsets: it gets exactly
        # what is produced afterwards.
        later = produce(broker, topic, keyed(200, 20, tag="later-"), **{"enable.idempotence": True})
        c3 = Member("c3", broker, group, topic)
        members = [c3]
        wait_until(lambda: {(p, o) for p, o, _ in c3.all} >= set(later), members, "c3 reading the new records")
        old = [(p, o, v) for p, o, v in c3.all if (p, o) not in later]
        assert not old, f"restarted member read records before the committed offsets: {old[:5]}"
        for p, o, v in c3.all:
            assert later[(p, o)] == v
        assert len(c3.all) == len(later), "a record was delivered twice"
        assert not c3.errors, c3.errors
    finally:
        for m in members:
            m.consumer.close()


def read_all(bootstrap: str, topic: str, partitions: int, expect: int) -> list[tuple[int, int, str, str]]:
    """Reads from the beginning of every partition, without a group commit."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{topic}",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    })
    out = []
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + DEADLINE
        while len(out) < expect and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, f"consume error: {msg.error()}"
            out.append((msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode()))
    finally:
        c.close()
    return out


@pytest.mark.timeout(180)
@pytest.mark.parametrize("codec", ["lz4", "snappy", "zstd"])
def test_compression_round_trip(broker, admin, topic_name, codec):
    partitions = 2
    topic = admin.create_topic(topic_name, partitions)
    msgs = keyed(600, 6, tag=f"{codec}-" + "x" * 40)  # compressible values
    acked = produce(broker, topic, msgs, **{"compression.type": codec, "linger.ms": 20,
                                            "enable.idempotence": True})
    got = read_all(broker, topic, partitions, len(msgs))
    assert len(got) == len(msgs), f"read {len(got)} of {len(msgs)} records"
    for p, o, _key, value in got:
        assert acked[(p, o)] == value, f"{p}/{o}: read {value!r}, acked {acked[(p, o)]!r}"
    check_order(got)
