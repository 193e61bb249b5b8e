"""KafkaProducer: futures, callbacks, flush/close, threads, errors."""

import json
import threading

import pytest

from sluice import KafkaConsumer, KafkaProducer, TopicPartition, errors

WAIT = 30


def read_all(broker, topic, n, **kw):
    c = KafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest", consumer_timeout_ms=WAIT * 1000, **kw)
    c.assign([TopicPartition(topic, p) for p in range(3)])
    out = []
    for r in c:
        out.append(r)
        if len(out) >= n:
            break
    c.close()
    return out


@pytest.mark.core
def test_send_get_and_read_back(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker, key_serializer=str.encode,
                      value_serializer=lambda v: json.dumps(v).encode(), acks="all", retries=5, batch_size=16384,
                      linger_ms=10, compression_type="gzip")
    md = p.send(topic, {"n": 1}, key="user-1", headers=[("h", b"v"), ("none", None)]).get(timeout=WAIT)
    assert md.topic == topic and 0 <= md.partition < 3 and md.offset >= 0
    assert md.topic_partition == TopicPartition(topic, md.partition)
    p.close(timeout=WAIT)
    (r,) = read_all(broker, topic, 1, value_deserializer=json.loads)
    assert (r.key, r.value, r.partition, r.offset) == (b"user-1", {"n": 1}, md.partition, md.offset)
    assert r.headers == [("h", b"v"), ("none", None)]


@pytest.mark.core
def test_same_key_same_partition(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker)
    parts = {p.send(topic, b"v", key=b"same-key").get(WAIT).partition for _ in range(10)}
    p.close()
    assert len(parts) == 1


def test_callbacks_run_on_a_python_thread(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker, linger_ms=5)
    done = threading.Event()
    seen = []

    def ok(tag, md):
        seen.append((tag, md.offset, threading.current_thread().name))
        if len(seen) == 20:
            done.set()

    futures = [p.send(topic, b"x", partition=0).add_callback(ok, "ok").add_errback(lambda e: seen.append(e))
               for _ in range(20)]
    p.flush(WAIT)
    assert done.wait(WAIT)
    assert all(f.succeeded() and f.is_done and not f.failed() for f in futures)
    assert all(isinstance(s, tuple) and s[0] == "ok" for s in seen)
    assert all(s[2] == "sluice-callbacks" for s in seen)
    # A callback added after completion runs at once.
    late = []
    futures[0].add_callback(late.append)
    assert late and late[0].offset == futures[0].value.offset


def test_invalid_partition_raises_at_send(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker)
    with pytest.raises(errors.RecordRejectedError, match="partition 99"):
        p.send(topic, b"x", partition=99)
    p.close()


@pytest.mark.core
def test_errback_gets_the_broker_error(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker, max_request_size=4_000_000, batch_size=4_000_000)
    got = []
    ev = threading.Event()
    f = p.send(topic, b"x" * 2_000_000, partition=0).add_errback(lambda e: (got.append(e), ev.set()))
    with pytest.raises(errors.MessageSizeTooLargeError, match="MESSAGE_TOO_LARGE"):
        f.get(WAIT)
    assert ev.wait(WAIT)
    assert f.failed() and isinstance(f.exception, errors.MessageSizeTooLargeError)
    assert isinstance(got[0], errors.MessageSizeTooLargeError)
    p.close()


def test_producer_is_thread_safe(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker, linger_ms=5)
    futures = []
    lock = threading.Lock()

    def worker(n):
        mine = [p.send(topic, f"{n}-{i}".encode(), key=str(n).encode()) for i in range(200)]
        with lock:
            futures.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    p.flush(WAIT)
    assert len(futures) == 800
    offsets = {(f.get(WAIT).partition, f.get(WAIT).offset) for f in futures}
    assert len(offsets) == 800
    p.close()


def test_send_after_close_fails(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker)
    p.close()
    with pytest.raises(errors.KafkaError):
        p.send(topic, b"x").get(WAIT)


def test_partitions_for_and_context_manager(broker, topic):
    with KafkaProducer(bootstrap_servers=broker) as p:
        assert p.partitions_for(topic) == {0, 1, 2}


def test_acks_1_turns_idempotence_off_as_java_does(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker, acks=1, retries=0)
    assert p.send(topic, b"x").get(WAIT).offset >= 0
    p.close()
    with pytest.raises(errors.KafkaConfigurationError, match="acks"):
        KafkaProducer(bootstrap_servers=broker, acks=1, enable_idempotence=True)


def test_close_with_zero_timeout_does_not_raise(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker, linger_ms=60000, batch_size=1_000_000)
    f = p.send(topic, b"lingering", partition=0)
    p.close(timeout=0)
    # Delivered in the close, or failed by it: either way settled.
    try:
        f.get(WAIT)
    except errors.KafkaError:
        pass
    assert f.is_done


def test_ctrl_c_interrupts_a_send_waiting_for_metadata(broker, sigint_raises):
    import os
    import signal

    p = KafkaProducer(bootstrap_servers=broker, allow_auto_create_topics=False, max_block_ms=120_000)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            p.send("no-such-topic-" + threading.current_thread().name.replace(" ", "") + "-x", b"v")
    finally:
        timer.cancel()
    p.close(timeout=5)
