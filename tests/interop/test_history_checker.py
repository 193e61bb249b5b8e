"""The history checker (history.py) proven on planted faults, then on a real run.

Owns the evidence that `check()` can be trusted before the cluster's fault
tests rely on it (issue 13):
- a clean hand-built history passes, and each anomaly planted alone (a dropped
  acknowledged read, one value at two offsets, consumers disagreeing at an
  offset, a producer's acknowledged offsets reordered, a poll going backwards,
  a definitely failed write that is read, ...) is reported as exactly that
  anomaly with the planted example; unknown outcomes are never "lost"; a
  history saved to JSON lines and loaded again gets the same verdict;
- the recorder keeps a consistent history when several producer and consumer
  threads call it at once (against an in-memory log);
- a fault-free run against the broker under test (the `broker` fixture: two
  idempotent acks=all confluent-kafka producers, a consumer tailing the topic
  while they write and one reading it afterwards, both to the end) checks ok,
  as Jepsen's Bufstream report recommends. Only this last test needs a broker;
  `-k 'not sluiced'` leaves it out (it runs against whichever broker the suite
  targets, SLUICE_INTEROP_BROKER).
"""

from __future__ import annotations

import functools
import json
import threading
import time

import pytest

from history import ANOMALIES, History, check, classify_error, main

TOPIC = "events"
N = 10  # records per partition in the hand-built histories

Rec = tuple  # (offset, key, value)


def recs(partition: int, n: int = N) -> list[Rec]:
    """What producer p<partition> sends to `partition`, acknowledged at offsets 0..n-1."""
    return [(i, f"k{i % 3}", f"p{partition}-v{i}") for i in range(n)]


def make(acks: dict[int, list[Rec]] | None = None, reads: dict[tuple[str, int], list[Rec]] | None = None,
         extra=None, consumers=("c0", "c1"), caught_up: bool = True) -> History:
    """A clean history unless told otherwise: p0 and p1 each send N records to
    partitions 0 and 1 (acknowledged in order); `extra(h)` may add sends; then
    consumers c0 and c1 each read both partitions to the end. `acks[partition]`
    replaces what a producer was acknowledged, in its send order;
    `reads[(consumer, partition)]` what a consumer read, in its read order."""
    h = History(meta={"test": "planted"})
    for part in (0, 1):
        for off, key, value in (acks or {}).get(part, recs(part)):
            op = h.invoke(f"p{part}", TOPIC, key=key, value=value, partition=part)
            h.ok(op, part, off)
    if extra is not None:
        extra(h)
    for c in consumers:
        for part in (0, 1):
            got = (reads or {}).get((c, part), recs(part))
            for off, key, value in got:
                h.read(c, TOPIC, part, off, key, value)
            if caught_up:
                h.caught_up(c, TOPIC, part, max([N] + [off + 1 for off, _, _ in got]))
    return h


def only(report, kind: str, count: int = 1) -> dict:
    """Asserts that the report found exactly `count` of `kind` and nothing
    else; returns the first example."""
    assert report.anomalies == {kind}, report.summary()
    assert report.counts[kind] == count, report.summary()
    assert not report.ok
    assert kind in report.summary()
    return report.examples[kind][0]


def without(records: list[Rec], *offsets: int) -> list[Rec]:
    return [r for r in records if r[0] not in offsets]


# --- planted faults ---------------------------------------------------------------------

def test_clean_history_passes():
    report = check(make())
    assert report.ok, report.summary()
    assert all(report.counts[k] == 0 for k in ANOMALIES)
    assert report.stats["sends"] == report.stats["acked"] == 2 * N
    assert report.stats["reads"] == 4 * N and report.stats["distinct_read"] == 2 * N
    assert (report.stats["producers"], report.stats["consumers"], report.stats["partitions"]) == (2, 2, 2)
    assert report.summary().startswith("history check: OK")


def test_lost_write_dropped_from_reads():
    # Nobody read p0-v4, but both consumers read past offset 4.
    ex = only(check(make(reads={("c0", 0): without(recs(0), 4), ("c1", 0): without(recs(0), 4)})), "lost_write")
    assert (ex["value"], ex["partition"], ex["offset"], ex["process"]) == ("p0-v4", 0, 4, "p0")
    assert "'p0-v4'" in ex["what"] and "read up to offset 9" in ex["what"]


def test_lost_write_at_the_tail_needs_a_read_to_the_end():
    # The last acknowledged record of partition 1 is missing from every read.
    reads = {("c0", 1): without(recs(1), 9), ("c1", 1): without(recs(1), 9)}
    # Consumers that read to the end (high watermark 10) prove it lost...
    ex = only(check(make(reads=reads)), "lost_write")
    assert (ex["value"], ex["offset"]) == ("p1-v9", 9)
    assert "to offset 10" in ex["what"]
    # ... without that, no read reached offset 9: unseen, an anomaly unless allowed.
    report = check(make(reads=reads, caught_up=False))
    assert only(report, "unseen_write")["value"] == "p1-v9"
    allowed = check(make(reads=reads, caught_up=False), allow_unseen=True)
    assert allowed.ok and allowed.counts["unseen_write"] == 1
    assert "allowed: 1 unseen_write" in allowed.summary()


def test_duplicate_one_value_at_two_offsets():
    # c0 reads p0-v3 a second time, at offset 10 (as a retried append would leave it).
    ex = only(check(make(reads={("c0", 0): recs(0) + [(10, "k0", "p0-v3")]})), "duplicate")
    assert ex["value"] == "p0-v3"
    assert ex["positions"] == [[TOPIC, 0, 3], [TOPIC, 0, 10]]


def test_inconsistent_offset_two_consumers_disagree():
    # c1 sees p2-x (a send whose outcome is unknown) where c0 and the ack put p0-v5.
    def p2(h):
        h.unknown(h.invoke("p2", TOPIC, key="k2", value="p2-x"), "REQUEST_TIMED_OUT")

    c1 = [(5, "k2", "p2-x") if off == 5 else (off, k, v) for off, k, v in recs(0)]
    report = check(make(extra=p2, reads={("c1", 0): c1}))
    ex = only(report, "inconsistent_offset")
    assert (ex["partition"], ex["offset"]) == (0, 5)
    assert ex["values"] == {"p0-v5": ["ack to p0", "read by c0"], "p2-x": ["read by c1"]}
    assert report.stats["unknown_read"] == 1


def test_acknowledged_offset_holding_another_value():
    # Every consumer reads p2-x where p0-v5 was acknowledged: the offset is
    # inconsistent and the acknowledged value is lost.
    def p2(h):
        h.unknown(h.invoke("p2", TOPIC, key="k2", value="p2-x"), "NOT_ENOUGH_REPLICAS_AFTER_APPEND")

    log = [(5, "k2", "p2-x") if off == 5 else (off, k, v) for off, k, v in recs(0)]
    report = check(make(extra=p2, reads={("c0", 0): log, ("c1", 0): log}))
    assert report.anomalies == {"inconsistent_offset", "lost_write"}, report.summary()
    assert report.examples["inconsistent_offset"][0]["values"] == \
        {"p0-v5": ["ack to p0"], "p2-x": ["read by c0", "read by c1"]}
    assert report.examples["lost_write"][0]["value"] == "p0-v5"


def test_reordered_send():
    # p0 sent v3 before v4 but was acknowledged v3 at offset 4 and v4 at offset 3;
    # the log agrees with the acks, so only the order is wrong.
    acked = recs(0)
    acked[3], acked[4] = (4, "k0", "p0-v3"), (3, "k1", "p0-v4")
    log = sorted(acked)
    h = make(acks={0: acked}, reads={("c0", 0): log, ("c1", 0): log})
    ex = only(check(h), "reordered_send")
    assert (ex["process"], ex["partition"], ex["values"], ex["offsets"]) == ("p0", 0, ["p0-v3", "p0-v4"], [4, 3])
    # A producer noted as unordered (no idempotence) may do that.
    h.note_process("p0", ordered=False)
    assert check(h).ok


def test_nonmonotonic_poll():
    # After reading partition 0 to offset 9, c0 is handed offsets 5 and 6 again.
    h = make()
    for off, key, value in recs(0)[5:7]:
        h.read("c0", TOPIC, 0, off, key, value)
    ex = only(check(h), "nonmonotonic_poll")
    assert (ex["process"], ex["partition"], ex["offsets"]) == ("c0", 0, [9, 5])
    # A seek on another partition does not excuse it...
    h = make()
    h.seek("c0", TOPIC, 1, offset=5)
    for off, key, value in recs(0)[5:7]:
        h.read("c0", TOPIC, 0, off, key, value)
    assert only(check(h), "nonmonotonic_poll")["offsets"] == [9, 5]
    # ... a seek (or rebalance) on this one does.
    h = make()
    h.seek("c0", TOPIC, 0, offset=5, reason="rebalance")
    for off, key, value in recs(0)[5:7]:
        h.read("c0", TOPIC, 0, off, key, value)
    assert check(h).ok


def test_failed_write_visible():
    # p2's send failed definitely, yet both consumers read it at offset 10.
    def p2(h):
        assert h.error(h.invoke("p2", TOPIC, key="k0", value="p2-f"), "INVALID_RECORD") == "fail"

    log = recs(0) + [(10, "k0", "p2-f")]
    report = check(make(extra=p2, reads={("c0", 0): log, ("c1", 0): log}))
    ex = only(report, "failed_write_visible")
    assert (ex["value"], ex["process"], ex["error"], ex["read_at"]) == ("p2-f", "p2", "INVALID_RECORD", [TOPIC, 0, 10])
    assert report.stats["failed"] == report.stats["failed_read"] == 1


def test_failed_write_not_read_is_fine():
    def p2(h):
        h.fail(h.invoke("p2", TOPIC, key="k0", value="p2-f"), "MESSAGE_TOO_LARGE")

    report = check(make(extra=p2))
    assert report.ok, report.summary()
    assert (report.stats["failed"], report.stats["failed_read"]) == (1, 0)


def test_unknown_outcomes_are_never_lost():
    # Three sends of unknown outcome (a timeout, NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    # one with no outcome at all); only the first is read, by both consumers.
    def p2(h):
        assert h.error(h.invoke("p2", TOPIC, key="k1", value="u-read"), "_MSG_TIMED_OUT") == "unknown"
        h.unknown(h.invoke("p2", TOPIC, key="k1", value="u-unread"), "NOT_ENOUGH_REPLICAS_AFTER_APPEND")
        h.invoke("p2", TOPIC, key="k1", value="u-pending")

    log = recs(0) + [(10, "k1", "u-read")]
    report = check(make(extra=p2, reads={("c0", 0): log, ("c1", 0): log}))
    assert report.ok, report.summary()
    s = report.stats
    assert (s["unknown"], s["unknown_read"], s["unknown_unread"]) == (3, 1, 2)
    assert "2 never read: lost but allowed" in report.summary()


def test_poll_skip():
    # c1 jumps from offset 3 to 5 of partition 0; c0 read offset 4, so it exists.
    ex = only(check(make(reads={("c1", 0): without(recs(0), 4)})), "poll_skip")
    assert (ex["process"], ex["offsets"], ex["skipped"]) == ("c1", [3, 5], [4])


def test_unexpected_reads():
    # A value nobody sent, and a sent value read with another key.
    h = make(reads={("c0", 0): recs(0) + [(10, "k0", "ghost")], ("c0", 1): [
        (off, "wrong" if off == 2 else k, v) for off, k, v in recs(1)]})
    report = check(h)
    assert report.anomalies == {"unexpected_read"}, report.summary()
    assert report.counts["unexpected_read"] == 2
    assert {ex["value"] for ex in report.examples["unexpected_read"]} == {"ghost", "p1-v2"}


def test_examples_are_capped_and_counts_are_not():
    report = check(make(reads={("c0", 0): [recs(0)[-1]], ("c1", 0): []}), max_examples=3)
    assert report.anomalies == {"lost_write"}
    assert report.counts["lost_write"] == N - 1
    assert len(report.examples["lost_write"]) == 3
    assert f"lost_write ({N - 1}, 3 shown)" in report.summary()


# --- the recorder ---------------------------------------------------------------------------

def test_recorder_refuses_misuse():
    h = History()
    op = h.invoke("p0", TOPIC, value="v")
    with pytest.raises(ValueError, match="already sent"):
        h.invoke("p1", TOPIC, value="v")
    with pytest.raises(ValueError, match="no send"):
        h.ok(op + 100, 0, 0)
    h.ok(op, 0, 0)
    with pytest.raises(ValueError, match="already has an outcome"):
        h.unknown(op, "REQUEST_TIMED_OUT")
    with pytest.raises(ValueError, match="without an offset"):
        h.ok(h.invoke("p0", TOPIC, value="w"), 0, -1)


def test_bytes_and_numbers_are_recorded_as_text():
    h = History()
    h.ok(h.invoke("p0", TOPIC, key=b"k", value=b"\xff\x00v"), 0, 0)
    h.read("c0", TOPIC, 0, 0, b"k", b"\xff\x00v")
    h.ok(h.invoke("p0", TOPIC, key=7, value=8), 0, 1)
    h.read("c0", TOPIC, 0, 1, "7", "8")
    assert check(History.loads(h.dumps())).ok


@pytest.mark.parametrize("name, kind", [
    ("REQUEST_TIMED_OUT", "unknown"),
    ("_MSG_TIMED_OUT", "unknown"),
    ("_TRANSPORT", "unknown"),
    ("NOT_ENOUGH_REPLICAS_AFTER_APPEND", "unknown"),
    ("NotEnoughReplicasAfterAppendError", "unknown"),
    ("NOT_LEADER_OR_FOLLOWER", "unknown"),
    ("KafkaTimeoutError", "unknown"),
    ("SomethingNew", "unknown"),
    ("NOT_ENOUGH_REPLICAS", "fail"),
    ("NotEnoughReplicasError", "fail"),
    ("MSG_SIZE_TOO_LARGE", "fail"),
    ("RecordListTooLargeError", "fail"),
    ("TOPIC_AUTHORIZATION_FAILED", "fail"),
    ("InvalidTopicException", "fail"),
])
def test_classify_error(name, kind):
    assert classify_error(name) == kind


def test_json_round_trip_keeps_the_verdict(tmp_path, capsys):
    faulty = make(reads={("c0", 0): without(recs(0), 4) + [(10, "k0", "p0-v3")], ("c1", 0): without(recs(0), 4)})
    faulty.note_process("p1", ordered=False, client="test")
    faulty.seek("c0", TOPIC, reason="rebalance")
    for h, name in ((make(), "clean.jsonl"), (faulty, "faulty.jsonl.gz")):
        before = check(h)
        path = h.save(tmp_path / name)
        loaded = History.load(path)
        assert loaded.events == h.events
        assert loaded.meta == h.meta
        after = check(loaded)
        assert (after.counts, after.examples, after.stats) == (before.counts, before.examples, before.stats)
        assert after.summary() == before.summary()
        assert check(path).summary() == before.summary()
        assert main([str(path)]) == (0 if before.ok else 1)
        assert capsys.readouterr().out.strip() == before.summary()
    assert check(faulty).anomalies == {"lost_write", "duplicate"}
    assert json.loads((tmp_path / "clean.jsonl").read_text().splitlines()[0])["type"] == "history"


def test_load_rejects_a_broken_history():
    lines = make().dumps().splitlines()
    with pytest.raises(ValueError, match="header"):
        History.loads("\n".join(lines[1:]))
    with pytest.raises(ValueError, match="index"):
        History.loads("\n".join(lines[:3] + lines[4:]))


class FakeLog:
    """An in-memory partitioned log shared by the threads of the recorder test."""

    def __init__(self, partitions: int):
        self.lock = threading.Lock()
        self.logs: list[list[tuple[str, str]]] = [[] for _ in range(partitions)]

    def append(self, partition: int, key: str, value: str) -> int:
        with self.lock:
            self.logs[partition].append((key, value))
            return len(self.logs[partition]) - 1

    def fetch(self, partition: int, offset: int, limit: int = 7) -> list[tuple[str, str]]:
        with self.lock:
            return self.logs[partition][offset:offset + limit]

    def ends(self) -> list[int]:
        with self.lock:
            return [len(log) for log in self.logs]


def test_recorder_from_several_threads():
    partitions, producers, sends = 3, 4, 400
    log = FakeLog(partitions)
    h = History()
    producing = threading.Event()
    producing.set()
    errors: list[BaseException] = []

    def guarded(fn):
        @functools.wraps(fn)
        def run(*args):
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
                errors.append(e)
        return run

    @guarded
    def produce(n: int):
        for i in range(sends):
            key, value, part = f"k{i % 5}", f"p{n}-{i}", (i + n) % partitions
            op = h.invoke(f"p{n}", TOPIC, key=key, value=value, partition=part)
            if i % 50 == 49:
                h.fail(op, "INVALID_RECORD")  # rejected: never appended
                continue
            off = log.append(part, key, value)
            if i % 40 == 39:
                h.unknown(op, "REQUEST_TIMED_OUT")  # appended, acknowledgement lost
            else:
                h.ok(op, part, off)

    @guarded
    def consume(name: str):
        pos = [0] * partitions
        while True:
            done = not producing.is_set()  # read before fetching: then the ends below are final
            ends = log.ends()
            for part in range(partitions):
                for key, value in log.fetch(part, pos[part]):
                    h.read(name, TOPIC, part, pos[part], key, value)
                    pos[part] += 1
            if done and pos == ends:
                for part in range(partitions):
                    h.caught_up(name, TOPIC, part, ends[part])
                return

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
    threads += [threading.Thread(target=consume, args=(f"c{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads[:producers]:
        t.join(60)
    producing.clear()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors

    events = h.events
    assert [e["index"] for e in events] == list(range(len(events)))
    assert all(a["time"] <= b["time"] for a, b in zip(events, events[1:]))
    for n in range(producers):  # each producer's sends in its own order
        mine = [e["value"] for e in events if e["type"] == "send" and e["process"] == f"p{n}"]
        assert mine == [f"p{n}-{i}" for i in range(sends)]

    report = check(h)
    assert report.ok, report.summary()
    total = producers * sends
    failed, unknown = producers * (sends // 50), producers * (sends // 40 - sends // 200)
    s = report.stats
    assert (s["sends"], s["failed"], s["unknown"], s["unknown_read"]) == (total, failed, unknown, unknown)
    assert s["acked"] == total - failed - unknown
    assert s["reads"] == 2 * (total - failed) and s["consumers"] == 2
    assert check(History.loads(h.dumps())).summary() == report.summary()


# --- a fault-free run against the broker under test ---------------------------------------

PARTITIONS = 4
RECORDS = 2000  # per producer
DEADLINE = 120.0


class ProducerThread(threading.Thread):
    """An idempotent acks=all confluent-kafka producer recording into `h`;
    keyed: the client's partitioner picks partitions, else round robin."""

    def __init__(self, bootstrap: str, topic: str, h: History, name: str, keyed: bool):
        super().__init__(name=name, daemon=True)
        self.bootstrap, self.topic, self.h, self.keyed = bootstrap, topic, h, keyed
        self.unflushed = -1
        self.exc: BaseException | None = None

    def _delivered(self, op: int, err, msg) -> None:
        if err is None:
            self.h.ok(op, msg.partition(), msg.offset())
        else:
            self.h.error(op, err.name())

    def run(self) -> None:
        from confluent_kafka import Producer

        try:
            p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
                          "linger.ms": 5, "message.timeout.ms": 60000})
            for i in range(RECORDS):
                key, value = f"k{i % 16}", f"{self.name}-{i}"
                part = None if self.keyed else i % PARTITIONS
                op = self.h.invoke(self.name, self.topic, key=key, value=value, partition=part)
                kwargs = {"on_delivery": functools.partial(self._delivered, op)}
                if part is not None:
                    kwargs["partition"] = part
                while True:
                    try:
                        p.produce(self.topic, key=key, value=value, **kwargs)
                        break
                    except BufferError:
                        p.poll(0.05)
                p.poll(0)
            self.unflushed = p.flush(DEADLINE)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            self.exc = e


class ReaderThread(threading.Thread):
    """A consumer assigned every partition from the beginning, recording each
    record into `h`; it stops once `ends` is set and it has read up to them,
    and then notes that it caught up."""

    def __init__(self, bootstrap: str, topic: str, h: History, name: str):
        super().__init__(name=name, daemon=True)
        self.bootstrap, self.topic, self.h = bootstrap, topic, h
        self.ends: dict[int, int] | None = None
        self.stop = threading.Event()  # give up (the test failed elsewhere)
        self.errors: list[str] = []
        self.exc: BaseException | None = None

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        try:
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"{self.name}-{self.topic}",
                          "enable.auto.commit": False, "auto.offset.reset": "earliest"})
            try:
                c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
                self.h.seek(self.name, self.topic, reason="assign from the beginning")
                pos = dict.fromkeys(range(PARTITIONS), 0)
                deadline = time.monotonic() + 2 * DEADLINE
                while not self.stop.is_set():
                    ends = self.ends
                    if ends is not None and all(pos[p] >= ends[p] for p in range(PARTITIONS)):
                        for p in range(PARTITIONS):
                            self.h.caught_up(self.name, self.topic, p, ends[p])
                        break
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{self.name}: read to {pos}, ends {ends}")
                    msg = c.poll(0.2)
                    if msg is None:
                        continue
                    if msg.error():
                        self.errors.append(str(msg.error()))
                        if not msg.error().retriable():
                            raise AssertionError(f"{self.name}: consume error {msg.error()}")
                        continue
                    self.h.read(self.name, self.topic, msg.partition(), msg.offset(), msg.key(), msg.value())
                    pos[msg.partition()] = msg.offset() + 1
            finally:
                c.close()
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            self.exc = e


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watermarks-{topic}"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)}
    finally:
        c.close()


@pytest.mark.timeout(420)
def test_sluiced_fault_free_run_checks_ok(broker_process, admin, topic_name):
    topic = admin.create_topic(topic_name, PARTITIONS)
    h = History(meta={"test": "fault-free run", "topic": topic, "partitions": PARTITIONS})
    path = broker_process.workdir / "history.jsonl"  # kept with the broker's work dir if the test fails
    tail = ReaderThread(broker_process.bootstrap, topic, h, "c-tail")
    producers = [ProducerThread(broker_process.bootstrap, topic, h, f"p{n}", keyed=n == 0) for n in range(2)]
    tail.start()
    for p in producers:
        p.start()
    for p in producers:
        p.join(DEADLINE + 60)
    try:
        assert not any(p.is_alive() for p in producers), "a producer did not finish"
        for p in producers:
            assert p.exc is None, f"{p.name}: {p.exc!r}"
            assert p.unflushed == 0, f"{p.name}: {p.unflushed} records still undelivered"

        # Every acknowledgement is in: the high watermarks now cover them all.
        ends = high_watermarks(broker_process.bootstrap, topic)
        tail.ends = ends
        final = ReaderThread(broker_process.bootstrap, topic, h, "c-final")
        final.ends = ends
        final.start()
        for r in (tail, final):
            r.join(2 * DEADLINE + 30)
            assert not r.is_alive(), f"{r.name} did not finish"
            assert r.exc is None, f"{r.name}: {r.exc!r} (errors: {r.errors[:5]})"
    finally:
        tail.stop.set()  # in case an assertion above left it running
        h.save(path)

    report = check(h)
    assert report.ok, f"{report.summary()}\n(history: {path})"
    total = len(producers) * RECORDS
    s = report.stats
    assert (s["sends"], s["acked"], s["failed"], s["unknown"]) == (total, total, 0, 0), report.summary()
    assert (s["reads"], s["distinct_read"], s["consumers"]) == (2 * total, total, 2), report.summary()
    assert sum(ends.values()) == total, f"high watermarks {ends} hold more than the {total} records sent"
    print(report.summary())
