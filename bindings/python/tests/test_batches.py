"""KafkaConsumer.run_batches and AIOKafkaConsumer.run_batches: the
Lambda-style loop over ordered per-partition batches, each committed only
after its handler returned; failures, redelivery, stopping, Ctrl-C."""

import asyncio
import base64
import os
import signal
import threading
import uuid

import pytest

from sluice import ConsumerRecord, KafkaConsumer, KafkaProducer, PartitionBatch, TopicPartition, errors
from sluice.aio import AIOKafkaConsumer

WAIT = 30


def produce(broker, topic, per_partition, partitions=(0, 1, 2)):
    p = KafkaProducer(bootstrap_servers=broker, linger_ms=5)
    fs = [p.send(topic, f"p{part}-{i}".encode(), key=f"k{i}".encode(), partition=part)
          for i in range(per_partition) for part in partitions]
    p.flush(WAIT)
    for f in fs:
        f.get(WAIT)
    p.close()


def group():
    return "batches-" + uuid.uuid4().hex[:10]


def batch_consumer(broker, topic, g, **kw):
    return KafkaConsumer(topic, bootstrap_servers=broker, group_id=g, auto_offset_reset="earliest",
                         enable_auto_commit=False, **kw)


class Deadline:
    """A stop event that fires after WAIT seconds, so a loop that never
    gets what it waits for ends and the test fails on its assertions
    instead of hanging."""

    def __enter__(self):
        self.event = threading.Event()
        self.timer = threading.Timer(WAIT, self.event.set)
        self.timer.start()
        return self.event

    def __exit__(self, *exc):
        self.timer.cancel()


@pytest.mark.core
def test_ordered_per_partition_exactly_once_and_committed_batch_by_batch(broker, topic):
    produce(broker, topic, 20)
    g = group()
    c = batch_consumer(broker, topic, g, max_poll_records=7)
    probe = KafkaConsumer(bootstrap_servers=broker, group_id=g, enable_auto_commit=False)
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    committed_before = []
    threads = set()

    def handler(batch: PartitionBatch) -> None:
        threads.add(threading.get_ident())
        assert all(r.topic == topic and r.partition == batch.partition for r in batch)
        offsets = [r.offset for r in batch.records]
        assert offsets == list(range(batch.first_offset, batch.last_offset + 1))
        assert [r.value for r in batch] == [f"p{batch.partition}-{o}".encode() for o in offsets]
        # What is committed while the handler runs is where this batch starts:
        # the previous batch was committed, this one not yet.
        committed_before.append((batch.first_offset, probe.committed(batch.topic_partition)))
        seen[batch.partition].extend(offsets)
        if sum(len(v) for v in seen.values()) == 60:
            c.stop_batches()

    with Deadline() as stop:
        handled = c.run_batches(handler, stop=stop)
    assert seen == {p: list(range(20)) for p in range(3)}
    assert handled == len(committed_before) >= 9  # at most 7 records a poll
    assert threads == {threading.get_ident()}, "the handler runs on the calling thread"
    for first, committed in committed_before:
        assert committed == (None if first == 0 else first), committed_before
    for p in range(3):
        assert probe.committed(TopicPartition(topic, p)) == 20
    c.close()
    probe.close()


@pytest.mark.core
def test_a_raising_handler_commits_nothing_and_the_batch_comes_again(broker, topic):
    produce(broker, topic, 10, partitions=(0,))
    tp = TopicPartition(topic, 0)
    g = group()
    c1 = batch_consumer(broker, topic, g, max_poll_records=4)
    firsts = []

    def ok(batch):
        firsts.append(batch.first_offset)

    with Deadline() as stop:
        assert c1.run_batches(ok, max_batches=1, stop=stop) == 1
    assert firsts == [0]
    assert c1.committed(tp) == 4

    def boom(batch):
        firsts.append(batch.first_offset)
        raise ValueError(f"cannot handle {batch.first_offset}")

    with Deadline() as stop, pytest.raises(ValueError, match="cannot handle 4"):
        c1.run_batches(boom, stop=stop)
    assert c1.committed(tp) == 4, "the failed batch was not committed"
    # The same consumer gets the failed batch again ...
    with Deadline() as stop:
        with pytest.raises(ValueError, match="cannot handle 4"):
            c1.run_batches(boom, stop=stop)
    assert firsts == [0, 4, 4]
    c1.close()

    # ... and so does the next member of the group after a restart, which
    # resumes after the last committed batch.
    c2 = batch_consumer(broker, topic, g, max_poll_records=4)
    got = []

    def rest(batch):
        got.extend(r.offset for r in batch)
        if got[-1] == 9:
            c2.stop_batches()

    with Deadline() as stop:
        c2.run_batches(rest, stop=stop)
    assert got == list(range(4, 10))
    assert c2.committed(tp) == 10
    c2.close()


@pytest.mark.core
def test_retry_mode_retries_the_failed_batch_while_other_partitions_carry_on(broker, topic):
    produce(broker, topic, 5)
    c = batch_consumer(broker, topic, group(), retry_backoff_ms=50)
    attempts = []
    done: dict[int, list[int]] = {0: [], 1: [], 2: []}
    failed = []

    def handler(batch):
        attempts.append((batch.partition, batch.first_offset))
        if batch.partition == 0 and len(failed) < 2:
            failed.append(batch.first_offset)
            raise RuntimeError("partition 0 is not ready")
        done[batch.partition].extend(r.offset for r in batch)
        if sum(len(v) for v in done.values()) == 15:
            c.stop_batches()

    with Deadline() as stop:
        c.run_batches(handler, on_error="retry", stop=stop)
    assert done == {p: list(range(5)) for p in range(3)}, attempts
    assert failed == [0, 0]
    p0 = [a for a in attempts if a[0] == 0]
    assert p0[:3] == [(0, 0)] * 3, "the failed batch came again from its first record"
    for p in range(3):
        assert c.committed(TopicPartition(topic, p)) == 5
    c.close()


def test_a_handler_may_use_a_producer_but_not_its_own_consumer(broker, topic):
    produce(broker, topic, 2, partitions=(1,))
    sink = topic + "-out"
    c = batch_consumer(broker, topic, group())
    out = KafkaProducer(bootstrap_servers=broker)

    def forward(batch):
        # Waiting on another client from inside the handler works ...
        for r in batch:
            out.send(sink, r.value.upper(), partition=0).get(WAIT)
        if batch.last_offset == 1:
            c.stop_batches()

    with Deadline() as stop:
        assert c.run_batches(forward, stop=stop) >= 1
    out.close()
    check = KafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest")
    check.assign([TopicPartition(sink, 0)])
    vals = []
    with Deadline() as stop:
        while len(vals) < 2 and not stop.is_set():
            vals += [r.value for rs in check.poll(timeout_ms=500).values() for r in rs]
    assert vals == [b"P1-0", b"P1-1"]
    check.close()

    # ... calling the consumer that runs the loop does not (it holds it).
    produce(broker, topic, 1, partitions=(1,))

    def reenter(batch):
        c.position(batch.topic_partition)

    with Deadline() as stop, pytest.raises(RuntimeError, match="only stop_batches"):
        c.run_batches(reenter, stop=stop)
    assert c.committed(TopicPartition(topic, 1)) == 2
    c.close()


def test_gil_is_released_while_the_loop_waits(broker, topic):
    """Records produced by another Python thread while the loop waits can
    only arrive if the loop released the GIL."""
    c = batch_consumer(broker, topic, group())
    got = []

    def handler(batch):
        got.extend(r.value for r in batch)
        if len(got) == 3:
            c.stop_batches()

    t = threading.Timer(0.5, produce, args=(broker, topic, 1))
    t.start()
    with Deadline() as stop:
        c.run_batches(handler, stop=stop)
    t.join(WAIT)
    assert sorted(got) == [b"p0-0", b"p1-0", b"p2-0"]
    c.close()


def test_stop_event_and_ctrl_c_end_the_loop_and_leave_the_consumer_usable(broker, topic, sigint_raises):
    produce(broker, topic, 3, partitions=(2,))
    c = batch_consumer(broker, topic, group())
    stop = threading.Event()
    stop.set()
    assert c.run_batches(lambda b: None, stop=stop) == 0, "a set event stops the loop before any batch"

    calls = []
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))

    def handler(batch):
        # Ctrl-C comes while the loop waits for more, after this batch.
        calls.append(batch)
        timer.start()

    try:
        with Deadline() as stop, pytest.raises(KeyboardInterrupt):
            c.run_batches(handler, stop=stop)
    finally:
        timer.cancel()
    assert [b.first_offset for b in calls] == [0]
    assert c.committed(TopicPartition(topic, 2)) == 3
    produce(broker, topic, 1, partitions=(2,))
    with Deadline() as stop:
        assert c.run_batches(calls.append, max_batches=1, stop=stop) == 1
    assert calls[-1].first_offset == 3
    c.close()


def test_bad_arguments_are_refused(broker, topic):
    c = batch_consumer(broker, topic, group())
    with pytest.raises(TypeError):
        c.run_batches("not a function")
    with pytest.raises(ValueError):
        c.run_batches(print, max_batches=0)
    with pytest.raises(ValueError):
        c.run_batches(print, on_error="ignore")
    with pytest.raises(TypeError):
        c.run_batches(print, stop=object())
    c.close()
    with pytest.raises(errors.KafkaError):
        c.run_batches(print)
    nogroup = KafkaConsumer(bootstrap_servers=broker)
    nogroup.assign([TopicPartition(topic, 0)])
    with pytest.raises(errors.KafkaConfigurationError, match="group.id"):
        nogroup.run_batches(print)
    nogroup.close()


def test_records_fetched_by_iteration_are_not_skipped(broker, topic):
    produce(broker, topic, 4, partitions=(0,))
    c = batch_consumer(broker, topic, group())
    assert next(c).offset == 0  # the rest of that poll waits in the iterator's buffer
    got = []

    def handler(batch):
        got.extend(r.offset for r in batch)
        if got[-1] == 3:
            c.stop_batches()

    with Deadline() as stop:
        c.run_batches(handler, stop=stop)
    assert got == [1, 2, 3]
    c.close()


def test_aio_run_batches(broker, topic):
    produce(broker, topic, 6)

    async def main():
        loop_thread = threading.get_ident()
        g = group()
        c = AIOKafkaConsumer(topic, bootstrap_servers=broker, group_id=g, auto_offset_reset="earliest",
                             enable_auto_commit=False, max_poll_records=4)
        await c.start()
        seen: dict[int, list[int]] = {0: [], 1: [], 2: []}

        async def handler(batch):
            assert threading.get_ident() == loop_thread
            await asyncio.sleep(0)
            seen[batch.partition].extend(r.offset for r in batch)
            if sum(map(len, seen.values())) == 18:
                c.stop_batches()

        await asyncio.wait_for(c.run_batches(handler), WAIT)
        assert seen == {p: list(range(6)) for p in range(3)}
        assert await c.committed(TopicPartition(topic, 1)) == 6

        # A raising handler: re-raised here, nothing committed.
        produce(broker, topic, 1, partitions=(1,))

        async def boom(batch):
            raise KeyError(batch.first_offset)

        with pytest.raises(KeyError):
            await asyncio.wait_for(c.run_batches(boom), WAIT)
        assert await c.committed(TopicPartition(topic, 1)) == 6

        # Cancelling the awaiting task ends the loop; the consumer is usable after.
        called = asyncio.Event()

        async def note(batch):
            called.set()

        task = asyncio.ensure_future(c.run_batches(note, max_batches=5))
        await asyncio.wait_for(called.wait(), WAIT)
        with pytest.raises(errors.IllegalStateError):
            await c.committed(TopicPartition(topic, 1))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await c.committed(TopicPartition(topic, 1)) == 7
        await c.stop()

    asyncio.run(main())


def test_to_lambda_event_matches_the_msk_trigger_event():
    rec = ConsumerRecord("orders", 2, 5, 15, 1545084650987, 0, b"recordKey", b'{"key":"value"}',
                         [("headerKey", b"headerValue")], None, 9, 15, 20)
    batch = PartitionBatch("orders", 2, [rec, rec._replace(offset=16, key=None, headers=[], timestamp_type=1)])
    arn = "arn:aws:kafka:us-east-1:0123456789019:cluster/SalesCluster/abcd1234"
    ev = batch.to_lambda_event(event_source_arn=arn, bootstrap_servers="b-1:9092,b-2:9092")
    assert ev["eventSource"] == "aws:kafka" and ev["eventSourceArn"] == arn
    assert ev["bootstrapServers"] == "b-1:9092,b-2:9092"
    (key, records), = ev["records"].items()
    assert key == "orders-2"
    assert records[0] == {
        "topic": "orders", "partition": 2, "offset": 15, "timestamp": 1545084650987,
        "timestampType": "CREATE_TIME", "key": "cmVjb3JkS2V5", "value": "eyJrZXkiOiJ2YWx1ZSJ9",
        "headers": [{"headerKey": [104, 101, 97, 100, 101, 114, 86, 97, 108, 117, 101]}],
    }
    assert records[1]["key"] is None and records[1]["timestampType"] == "LOG_APPEND_TIME"
    assert base64.b64decode(records[1]["value"]) == b'{"key":"value"}'
    assert (batch.first_offset, batch.last_offset, batch.next_offset, len(batch)) == (15, 16, 17, 2)
    with pytest.raises(TypeError, match="offset 15"):
        PartitionBatch("orders", 2, [rec._replace(value={"decoded": True})]).to_lambda_event()
    with pytest.raises(ValueError):
        PartitionBatch("orders", 2, [])
