"""One phase of a Python client benchmark: produce or consume N records of
SIZE bytes with one client, in this process, and print one JSON line.

    python benches/e2e/python_clients.py --client sluice|confluent|kafka-python
        --phase produce|consume --bootstrap HOST:PORT --topic T --records N
        --size S [--acks 1|all] [--group G] [--idempotence true|false]
        [--timeout-s SEC]

The topic must exist (the orchestrator creates it). Clients:
  sluice        this repo's package (bindings/python, `import sluice`), its
                kafka-python-compatible KafkaProducer / KafkaConsumer
  confluent     confluent-kafka (librdkafka inside the wheel): Producer /
                Consumer
  kafka-python  kafka-python (pure Python): KafkaProducer / KafkaConsumer

Produce: N keyless records whose value is S bytes (b"x" * S), no compression,
acks as given (default all), linger.ms 5, batch size 1,000,000 B for all
three (librdkafka's default; kafka-python's is 16384), and each client's own
default for everything else:
  sluice        idempotence on with acks=all, off with acks=1 (as the Java
                client)
  confluent     batch.num.messages 10000 (librdkafka); idempotence off
  kafka-python  idempotence on with acks=all, off with acks=1
--idempotence true|false overrides the idempotence default for all three.
Every record's delivery is waited for (flush). Each client runs its
fire-and-forget idiom: sluice and kafka-python drop the future send()
returns (kafka-python's own perf script does; holding a million futures
alive costs both far more than sending them: ~20% of the time goes to the
garbage collector), confluent reports errors only
(delivery.report.only.error). "errors": confluent's error reports plus any
left unflushed; sluice and kafka-python: whether the last record's future
failed. A lost record cannot hide either way: the consume phase that
follows must read all N. Timed from the first send to flush returning.

Consume: with --group G, subscribes as a member of group G
(auto offset reset earliest, the client's default auto-commit); without,
assigns every partition of the topic from the beginning (no group
coordination, no commits). Polls up to 5000 records at a time (sluice and
kafka-python max_poll_records, confluent consume(min(5000, still missing))). Timed from before
the metadata look-up and subscribe/assign to the Nth record; "first_record_s"
is the time from the same start to the first record (group join included).

Output, exactly one JSON line on stdout:
  {"client", "phase", "records", "seconds", "records_per_s", "errors"}
plus "first_record_s" for consume. Progress goes to stderr once a second.
Exit status 0 when all N records were delivered (produce, no errors) or read
(consume); 1 otherwise (the JSON line still comes, with what was done, and
"error" saying why); 2 for bad arguments or a client that is not installed.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
import threading
import time
from typing import Any, Callable

CLIENTS = ("sluice", "confluent", "kafka-python")
MAX_POLL = 5000
# One batch size for all three: librdkafka's default. kafka-python's (and the
# sluice package's, which follows it) is 16384 B, at which the sluice package
# sends ~0.55x as fast as with this (per-batch overhead; see the README).
BATCH_SIZE = 1_000_000


class Progress:
    """Prints `label: <what()>` to stderr once a second until stopped."""

    def __init__(self, label: str, what: Callable[[], str]) -> None:
        self._label, self._what = label, what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Progress:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                msg = self._what()
            except Exception as e:  # a progress line must never kill the run
                msg = f"({e})"
            print(f"  {self._label} {time.perf_counter() - self._t0:5.1f} s: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ produce
# Each returns (seconds, errors, error message or None); `state` is shared
# with the progress thread ({"sent": n}).


def produce_kafka_api(module: str, a: argparse.Namespace, state: dict[str, int]) -> tuple:
    """sluice and kafka-python: the same kafka-python code, only the import differs."""
    KafkaProducer = importlib.import_module(module).KafkaProducer

    cfg: dict[str, Any] = dict(bootstrap_servers=a.bootstrap, acks="all" if a.acks == "all" else 1, linger_ms=5,
                               batch_size=BATCH_SIZE)
    if a.idempotence is not None:
        cfg["enable_idempotence"] = a.idempotence
    p = KafkaProducer(**cfg)
    p.partitions_for(a.topic)  # metadata before the clock starts
    payload, topic, n = b"x" * a.size, a.topic, a.records
    send = p.send
    t = time.perf_counter()
    for i in range(n - 1):
        send(topic, payload)
        if i % 1000 == 0:
            state["sent"] = i
    last = send(topic, payload)
    state["sent"] = n
    p.flush()
    dt = time.perf_counter() - t
    errors = [last.exception] if last.failed() else []
    p.close()
    return dt, len(errors), (str(errors[0]) if errors else None)


def produce_confluent(a: argparse.Namespace, state: dict[str, int]) -> tuple:
    from confluent_kafka import Producer

    failed = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    cfg: dict[str, Any] = {
        "bootstrap.servers": a.bootstrap,
        "acks": "all" if a.acks == "all" else "1",
        "linger.ms": 5,
        "batch.size": BATCH_SIZE,
        "delivery.report.only.error": True,
        "on_delivery": on_delivery,
    }
    if a.idempotence is not None:
        cfg["enable.idempotence"] = a.idempotence
    p = Producer(cfg)
    p.list_topics(a.topic, timeout=30)
    payload, topic, n = b"x" * a.size, a.topic, a.records
    produce, poll = p.produce, p.poll
    t = time.perf_counter()
    for i in range(n):
        while True:
            try:
                produce(topic, payload)
                break
            except BufferError:  # queue.buffering.max.* reached: let it drain
                poll(0.005)
        if i % 1000 == 0:
            poll(0)
            state["sent"] = i
    state["sent"] = n
    left = p.flush(a.timeout_s)
    dt = time.perf_counter() - t
    errors = len(failed) + left
    msg = str(failed[0]) if failed else (f"{left} records not delivered within {a.timeout_s} s" if left else None)
    return dt, errors, msg


# ------------------------------------------------------------------ consume
# Each returns (seconds, first_record_s, records read, error or None), timed
# from its own start; `state` is shared with the progress thread.


def consume_kafka_api(module: str, a: argparse.Namespace, state: dict[str, int]) -> tuple:
    """sluice and kafka-python: the same kafka-python code, only the import differs."""
    m = importlib.import_module(module)
    KafkaConsumer, TopicPartition = m.KafkaConsumer, m.TopicPartition

    cfg: dict[str, Any] = dict(bootstrap_servers=a.bootstrap, auto_offset_reset="earliest", max_poll_records=MAX_POLL)
    if a.group:
        cfg["group_id"] = a.group
    else:
        cfg["enable_auto_commit"] = False
    c = KafkaConsumer(**cfg)
    t = time.perf_counter()
    if a.group:
        c.subscribe([a.topic])
    else:
        parts = c.partitions_for_topic(a.topic)
        if not parts:
            c.close()
            return 0.0, None, 0, f"topic {a.topic} not found"
        c.assign([TopicPartition(a.topic, p) for p in sorted(parts)])
    return _poll_loop(a, state, t, lambda _want: sum(len(r) for r in c.poll(timeout_ms=1000).values()), c.close)


def consume_confluent(a: argparse.Namespace, state: dict[str, int]) -> tuple:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    cfg: dict[str, Any] = {"bootstrap.servers": a.bootstrap, "auto.offset.reset": "earliest"}
    if a.group:
        cfg["group.id"] = a.group
    else:
        # librdkafka wants a group.id even for assign(); nothing is committed.
        cfg["group.id"] = f"bench-assign-{time.time_ns()}"
        cfg["enable.auto.commit"] = False
    c = Consumer(cfg)
    t = time.perf_counter()
    if a.group:
        c.subscribe([a.topic])
    else:
        md = c.list_topics(a.topic, timeout=30).topics.get(a.topic)
        if md is None or md.error is not None or not md.partitions:
            c.close()
            return 0.0, None, 0, f"topic {a.topic} not found ({md.error if md else 'no metadata'})"
        c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in sorted(md.partitions)])
    errors: list = []

    def batch(want: int) -> int:
        # consume(n, timeout) returns only once it has n messages or the
        # timeout passed: never ask for more than are still missing.
        got = 0
        for m in c.consume(min(MAX_POLL, want), 1.0):
            if m.error() is None:
                got += 1
            elif not errors:
                errors.append(str(m.error()))
        return got

    return _poll_loop(a, state, t, batch, c.close, errors)


def _poll_loop(a: argparse.Namespace, state: dict[str, int], t: float, poll: Callable[[int], int],
               close: Callable[[], Any], errors: list | None = None) -> tuple:
    n, first, err = 0, None, None
    last_progress = time.perf_counter()
    while n < a.records:
        got = poll(a.records - n)
        now = time.perf_counter()
        if got:
            if first is None:
                first = now - t
            n += got
            state["read"] = n
            last_progress = now
        elif now - last_progress > a.timeout_s:
            err = f"no record for {a.timeout_s} s after {n} of {a.records}"
            if errors:
                err += f" (first client error: {errors[0]})"
            break
    dt = time.perf_counter() - t
    close()
    return dt, first, n, err


PRODUCE = {"sluice": functools.partial(produce_kafka_api, "sluice"), "confluent": produce_confluent,
           "kafka-python": functools.partial(produce_kafka_api, "kafka")}
CONSUME = {"sluice": functools.partial(consume_kafka_api, "sluice"), "confluent": consume_confluent,
           "kafka-python": functools.partial(consume_kafka_api, "kafka")}


def parse_args(argv: list | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client", required=True, choices=CLIENTS)
    ap.add_argument("--phase", required=True, choices=("produce", "consume"))
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--acks", choices=("1", "all", "-1"), default="all", help="producer acks (-1 = all); default all")
    ap.add_argument("--group", help="consume as a member of this group (default: assign all partitions, no group)")
    ap.add_argument("--idempotence", choices=("true", "false"),
                    help="producer enable.idempotence (default: each client's own default)")
    ap.add_argument("--timeout-s", type=float, default=120.0,
                    help="consume: give up after this long without a record; produce: confluent flush limit (120)")
    a = ap.parse_args(argv)
    if a.acks == "-1":
        a.acks = "all"
    if a.idempotence is not None:
        a.idempotence = a.idempotence == "true"
    if a.records <= 0 or a.size < 0:
        ap.error("--records must be > 0 and --size >= 0")
    return a


def main(argv: list | None = None) -> int:
    a = parse_args(argv)
    state: dict[str, int] = {"sent": 0, "read": 0}
    label = f"{a.client} {a.phase}"
    out: dict[str, Any] = {"client": a.client, "phase": a.phase}
    try:
        if a.phase == "produce":
            with Progress(label, lambda: f"{state['sent']:,} of {a.records:,} sent"):
                seconds, errors, err = PRODUCE[a.client](a, state)
            out.update(records=a.records, seconds=round(seconds, 4),
                       records_per_s=round(a.records / seconds, 1) if seconds > 0 else None, errors=errors)
            ok = errors == 0
        else:
            with Progress(label, lambda: f"{state['read']:,} of {a.records:,} read"):
                seconds, first, n, err = CONSUME[a.client](a, state)
            out.update(records=n, seconds=round(seconds, 4),
                       records_per_s=round(n / seconds, 1) if seconds > 0 else None,
                       errors=0 if n >= a.records else a.records - n,
                       first_record_s=None if first is None else round(first, 4))
            ok = n >= a.records
    except ImportError as e:
        print(f"{label}: client not installed: {e}", file=sys.stderr)
        return 2
    if err:
        out["error"] = err
    print(json.dumps(out), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
