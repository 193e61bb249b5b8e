"""KafkaConsumer: groups, poll shape, iteration, offsets, seeks, pauses,
listeners, GIL release and Ctrl-C."""

import os
import signal
import threading
import time
import uuid

import pytest

from sluice import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition, errors

WAIT = 30


def produce(broker, topic, n, partition=None):
    p = KafkaProducer(bootstrap_servers=broker, linger_ms=5)
    fs = [p.send(topic, f"v{i}".encode(), key=f"k{i}".encode(), partition=partition) for i in range(n)]
    p.flush(WAIT)
    for f in fs:
        f.get(WAIT)
    p.close()


def poll_until(consumer, n, **kw):
    """Polls until n records arrived (bounded by WAIT seconds)."""
    got = []
    deadline = time.monotonic() + WAIT
    while len(got) < n and time.monotonic() < deadline:
        for tp, recs in consumer.poll(timeout_ms=500, **kw).items():
            assert all(isinstance(tp, TopicPartition) and r.topic == tp.topic and r.partition == tp.partition
                       for r in recs)
            got.extend(recs)
    return got


def group():
    return "g-" + uuid.uuid4().hex[:10]


@pytest.mark.core
def test_group_consume_commit_and_resume(broker, topic):
    produce(broker, topic, 30)
    g = group()
    c = KafkaConsumer(topic, bootstrap_servers=broker, group_id=g, auto_offset_reset="earliest",
                      enable_auto_commit=False)
    got = poll_until(c, 30)
    assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(30))
    assert c.subscription() == {topic}
    assert c.assignment() == {TopicPartition(topic, p) for p in range(3)}
    c.commit()
    for p in range(3):
        tp = TopicPartition(topic, p)
        assert c.committed(tp) == c.position(tp)
        assert c.committed(tp, metadata=True).offset == c.position(tp)
    c.close()
    # Same group again: starts from the commit, nothing left.
    produce(broker, topic, 3)
    c2 = KafkaConsumer(topic, bootstrap_servers=broker, group_id=g, auto_offset_reset="earliest")
    more = poll_until(c2, 3)
    assert sorted(r.value for r in more) == [b"v0", b"v1", b"v2"]
    c2.close()


@pytest.mark.core
def test_iteration_stops_after_consumer_timeout(broker, topic):
    produce(broker, topic, 5)
    c = KafkaConsumer(topic, bootstrap_servers=broker, group_id=group(), auto_offset_reset="earliest",
                      consumer_timeout_ms=3000, value_deserializer=bytes.decode, key_deserializer=bytes.decode)
    records = list(c)
    assert sorted(r.value for r in records) == [f"v{i}" for i in range(5)]
    assert all(r.key == "k" + r.value[1:] for r in records)
    c.close()


def test_max_records_and_max_poll_records(broker, topic):
    produce(broker, topic, 50, partition=0)
    c = KafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest", max_poll_records=7)
    c.assign([TopicPartition(topic, 0)])
    deadline = time.monotonic() + WAIT
    first = {}
    while not first and time.monotonic() < deadline:
        first = c.poll(timeout_ms=500, max_records=3)
    assert sum(len(v) for v in first.values()) <= 3
    rest = poll_until(c, 47 if sum(len(v) for v in first.values()) == 3 else 1)
    c.close()
    assert rest


def test_manual_assign_seek_pause_resume(broker, topic):
    produce(broker, topic, 20, partition=1)
    tp = TopicPartition(topic, 1)
    c = KafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest")
    c.assign([tp])
    assert c.assignment() == {tp}
    assert len(poll_until(c, 20)) == 20
    assert c.position(tp) == 20
    c.seek(tp, 15)
    assert [r.offset for r in poll_until(c, 5)] == [15, 16, 17, 18, 19]
    c.seek_to_beginning(tp)
    assert c.position(tp) == 0
    c.seek_to_end()
    assert c.position(tp) == 20
    c.pause(tp)
    assert c.paused() == {tp}
    produce(broker, topic, 2, partition=1)
    assert c.poll(timeout_ms=300) == {}
    c.resume(tp)
    assert c.paused() == set()
    assert [r.offset for r in poll_until(c, 2)] == [20, 21]
    with pytest.raises(errors.KafkaError):
        c.pause(TopicPartition(topic, 2))
    c.close()


def test_commit_explicit_offsets_and_commit_async(broker, topic):
    produce(broker, topic, 10, partition=2)
    tp = TopicPartition(topic, 2)
    c = KafkaConsumer(bootstrap_servers=broker, group_id=group(), auto_offset_reset="earliest",
                      enable_auto_commit=False)
    c.assign([tp])
    assert c.committed(tp) is None
    c.commit({tp: OffsetAndMetadata(4, "meta", -1)})
    assert c.committed(tp, metadata=True) == OffsetAndMetadata(4, "meta", -1)
    poll_until(c, 6)
    done = threading.Event()
    result = []
    c.commit_async(callback=lambda offsets, exc: (result.append(exc), done.set()))
    assert done.wait(WAIT)
    assert result == [None]
    assert c.committed(tp) == 10
    done.clear()
    c.commit_async({tp: OffsetAndMetadata(7, "", -1)},
                   callback=lambda offsets, exc: (result.append((offsets, exc)), done.set()))
    assert done.wait(WAIT)
    assert result[-1] == ({tp: OffsetAndMetadata(7, "", -1)}, None)
    assert c.committed(tp) == 7
    c.close()


def test_rebalance_listener_and_pattern(broker):
    prefix = "pat-" + uuid.uuid4().hex[:8]
    produce(broker, prefix + "-a", 3)
    events = []

    class Listener(ConsumerRebalanceListener):
        def on_partitions_assigned(self, assigned):
            events.append(("assigned", assigned))

        def on_partitions_revoked(self, revoked):
            events.append(("revoked", revoked))

    c = KafkaConsumer(bootstrap_servers=broker, group_id=group(), auto_offset_reset="earliest")
    c.subscribe(pattern=prefix + "-.*", listener=Listener())
    assert len(poll_until(c, 3)) == 3
    assigned = [e for e in events if e[0] == "assigned"]
    assert assigned and all(isinstance(tp, TopicPartition) for tp in assigned[-1][1])
    assert {tp.topic for tp in c.assignment()} == {prefix + "-a"}
    c.close()
    assert events[-1][0] == "revoked"


def test_partitions_for_topic_and_topics(broker, topic):
    c = KafkaConsumer(bootstrap_servers=broker)
    assert c.partitions_for_topic(topic) == {0, 1, 2}
    assert topic in c.topics()
    c.close()
    with pytest.raises(errors.KafkaError):
        c.poll(timeout_ms=10)


def test_gil_is_released_while_polling(broker, topic):
    """A Python thread produces while the main thread is blocked in poll:
    the poll can only see the record if the GIL was released."""
    tp = TopicPartition(topic, 0)
    c = KafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest")
    c.assign([tp])
    c.seek_to_end(tp)
    c.position(tp)
    t = threading.Thread(target=produce, args=(broker, topic, 1, 0))
    t.start()
    got = c.poll(timeout_ms=WAIT * 1000)
    while not got:
        got = c.poll(timeout_ms=WAIT * 1000)
    t.join(WAIT)
    assert got[tp][0].value == b"v0"
    c.close()


def test_ctrl_c_interrupts_a_blocking_poll(broker, topic, sigint_raises):
    c = KafkaConsumer(bootstrap_servers=broker)
    c.assign([TopicPartition(topic, 0)])
    c.seek_to_end()
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            c.poll(timeout_ms=120_000)
    finally:
        timer.cancel()
    c.close()


@pytest.mark.core
def test_beginning_end_offsets_and_offsets_for_times(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker)
    mds = [p.send(topic, b"v%d" % i, partition=0, timestamp_ms=1_700_000_000_000 + i * 1000).get(WAIT)
           for i in range(5)]
    p.close()
    tp = TopicPartition(topic, 0)
    c = KafkaConsumer(bootstrap_servers=broker)
    assert c.beginning_offsets([tp]) == {tp: 0}
    assert c.end_offsets([tp, TopicPartition(topic, 1)]) == {tp: 5, TopicPartition(topic, 1): 0}
    found = c.offsets_for_times({tp: 1_700_000_002_500})
    assert found[tp].offset == mds[3].offset and found[tp].timestamp == 1_700_000_003_000
    assert c.offsets_for_times({tp: 1_800_000_000_000}) == {tp: None}
    c.close()


def test_a_failing_listener_does_not_break_the_consumer(broker, topic, capsys):
    produce(broker, topic, 3)

    class Raises(ConsumerRebalanceListener):
        def on_partitions_assigned(self, assigned):
            raise RuntimeError("listener bug")

    c = KafkaConsumer(bootstrap_servers=broker, group_id=group(), auto_offset_reset="earliest")
    c.subscribe([topic], listener=Raises())
    assert len(poll_until(c, 3)) == 3
    c.close()
    assert "listener bug" in capsys.readouterr().err
