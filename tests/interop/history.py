"""Produce/consume histories and a checker for them, after Jepsen's Kafka workload.

This module owns the record of what clients did during a test (a `History`)
and the verdict on it (`check(history) -> Report`). It talks to no broker: the
tests drive real clients and call the recorder; the fault tests of the
replicated cluster (issue 13) keep a failed run's history as a JSON-lines file
that can be checked again later (`python history.py FILE`).

Recording (thread-safe; every event gets a global index and a monotonic
timestamp in nanoseconds, and names a process: one producer client used from
one thread, or one consumer):

    h = History()
    op = h.invoke("p0", topic, key="k1", value="p0-17", partition=None)   # before handing it to the client
    h.ok(op, partition=2, offset=41)        # acknowledged
    h.fail(op, "INVALID_RECORD")            # definitely not written
    h.unknown(op, "REQUEST_TIMED_OUT")      # may or may not have been written
    h.error(op, name)                       # fail or unknown by classify_error(name)
    h.read("c0", topic, partition, offset, key, value)   # one consumed record
    h.seek("c0", topic, partition=None, reason="rebalance")  # position reset on purpose
    h.caught_up("c0", topic, partition, end)  # c0 read every record below offset `end`
    h.note_process("p1", ordered=False)     # p1's sends may reorder (not idempotent)
    h.save(path); History.load(path)        # JSON lines, gzip if the name ends in .gz

Values must be unique across the history (the recorder refuses a value sent
twice): the checker identifies records by value. Send a fresh value when an
application retries.

Checking (`check(h)`; Jepsen's names in brackets):
- lost_write [lost-write]: an acknowledged value nobody read, although some
  consumer read a later offset of its partition or read the partition to an end
  beyond it.
- unseen_write [unseen]: an acknowledged value nobody read and no read reached
  its offset. After a final read to the end this means the log ends before an
  acknowledged offset, so it counts as an anomaly unless check(...,
  allow_unseen=True) (for histories without a final read).
- duplicate [duplicate]: one value at two positions (topic, partition, offset),
  from reads and acknowledgements together.
- inconsistent_offset [inconsistent-offsets]: two values at one position: two
  consumers disagree, or an acknowledged offset holds another value.
- reordered_send [nonmonotonic-send]: within one producer's acknowledged sends
  to one partition, in the order it invoked them, an offset not above the
  previous one (idempotent producers guarantee order).
- nonmonotonic_poll [nonmonotonic-poll]: one consumer's reads of a partition
  going backwards or repeating an offset with no seek noted in between.
- poll_skip [poll-skip]: one consumer's consecutive reads of a partition jumping
  over an offset that another consumer read (a value nobody read is a
  lost_write instead). Not meaningful for compacted topics.
- failed_write_visible [aborted read]: a definitely failed send that was read.
- unexpected_read: a read value no recorded send produced, or read with
  another key or topic than it was sent with.
Unknown outcomes are not anomalies: read ones count as committed, unread ones
as lost-but-allowed; `Report.stats` counts them.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import threading
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1

ANOMALIES = (
    "lost_write",
    "unseen_write",
    "duplicate",
    "inconsistent_offset",
    "reordered_send",
    "nonmonotonic_poll",
    "poll_skip",
    "failed_write_visible",
    "unexpected_read",
)

# Errors after which a send was definitely not appended (normalised by
# _normalise_error). Everything else -- timeouts, disconnects,
# NOT_ENOUGH_REPLICAS_AFTER_APPEND, leadership changes, unknown names -- is an
# unknown outcome, as in Jepsen. With client retries on, a final definite error
# can follow an earlier attempt whose fate is unknown; record such sends with
# unknown() when the client cannot tell (librdkafka's "possibly persisted").
DEFINITE_FAILURES = frozenset({
    "CORRUPT_MESSAGE",
    "INVALID_RECORD",
    "INVALID_TIMESTAMP",
    "MESSAGE_TOO_LARGE",
    "MESSAGE_SIZE_TOO_LARGE",
    "MSG_SIZE_TOO_LARGE",
    "RECORD_LIST_TOO_LARGE",
    "INVALID_REQUIRED_ACKS",
    "INVALID_TOPIC",
    "INVALID_TOPIC_EXCEPTION",
    "TOPIC_EXCEPTION",
    "UNKNOWN_TOPIC",
    "UNKNOWN_PARTITION",
    "UNKNOWN_TOPIC_OR_PARTITION",
    "UNKNOWN_TOPIC_OR_PART",
    "TOPIC_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    "POLICY_VIOLATION",
    "UNSUPPORTED_VERSION",
    "UNSUPPORTED_FOR_MESSAGE_FORMAT",
    "NOT_ENOUGH_REPLICAS",
    "INVALID_ARG",
    "QUEUE_FULL",
})


def _normalise_error(name: str) -> str:
    """'_MSG_TIMED_OUT' -> 'MSG_TIMED_OUT', 'NotEnoughReplicasError' -> 'NOT_ENOUGH_REPLICAS'."""
    name = name.strip().lstrip("_")
    if not name.isupper():
        name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    name = name.upper()
    if name not in DEFINITE_FAILURES:
        for suffix in ("_ERROR", "_EXCEPTION"):  # kafka-python's and Java's class names
            if name.endswith(suffix):
                name = name[: -len(suffix)]
    return name


def classify_error(name: str) -> str:
    """'fail' when a send that ended with this error was definitely not
    written, else 'unknown'. Accepts Kafka protocol names, librdkafka names
    (KafkaError.name()) and kafka-python exception class names."""
    return "fail" if _normalise_error(name) in DEFINITE_FAILURES else "unknown"


def _text(v: Any) -> str | None:
    """Keys and values are kept as text: bytes are decoded as UTF-8 (invalid
    bytes survive as surrogate escapes, which JSON round-trips), other values
    go through str()."""
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "surrogateescape")
    return v if isinstance(v, str) else str(v)


class History:
    """A thread-safe, append-only list of events (plain dicts, JSON-ready).

    Event fields: index (global order), time (time.monotonic_ns()), type,
    process, and per type:
      send     op, topic, partition (None: the client's partitioner), key, value
      ok       op, partition, offset
      fail     op, error
      unknown  op, error
      read     topic, partition, offset, key, value
      seek     topic (None: all), partition (None: all of the topic), offset, reason
      caught_up topic, partition, end
      process  attrs (e.g. {"ordered": False})
    """

    def __init__(self, meta: dict[str, Any] | None = None):
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._sends: dict[int, dict[str, Any]] = {}  # op -> its send event
        self._done: set[int] = set()  # ops with an outcome
        self._values: set[str] = set()
        self.meta: dict[str, Any] = dict(meta or {})
        self.meta.setdefault("started_unix", time.time())

    # --- recording ----------------------------------------------------------------

    def _append(self, event: dict[str, Any]) -> dict[str, Any]:
        # Caller holds the lock, so index and time increase together.
        event = {"index": len(self._events), "time": time.monotonic_ns(), **event}
        self._events.append(event)
        return event

    def invoke(self, process: str, topic: str, *, key: Any = None, value: Any,
               partition: int | None = None) -> int:
        """Records a produce call before the record is handed to the client;
        returns the op id for ok/fail/unknown/error."""
        value = _text(value)
        if value is None:
            raise ValueError("a send needs a value (the checker identifies records by value)")
        with self._lock:
            if value in self._values:
                raise ValueError(f"value {value!r} was already sent: values must be unique")
            self._values.add(value)
            op = len(self._events)
            ev = self._append({"type": "send", "process": str(process), "op": op, "topic": topic,
                               "partition": partition, "key": _text(key), "value": value})
            self._sends[op] = ev
            return op

    def _outcome(self, op: int, event: dict[str, Any]) -> None:
        with self._lock:
            send = self._sends.get(op)
            if send is None:
                raise ValueError(f"no send with op id {op}")
            if op in self._done:
                raise ValueError(f"op {op} ({send['value']!r}) already has an outcome")
            self._done.add(op)
            self._append({"process": send["process"], "op": op, **event})

    def ok(self, op: int, partition: int, offset: int) -> None:
        """The send was acknowledged at partition/offset."""
        if int(offset) < 0:
            raise ValueError(f"op {op}: acknowledged without an offset ({offset})")
        self._outcome(op, {"type": "ok", "partition": int(partition), "offset": int(offset)})

    def fail(self, op: int, error: str) -> None:
        """The send definitely was not written."""
        self._outcome(op, {"type": "fail", "error": str(error)})

    def unknown(self, op: int, error: str) -> None:
        """The send may or may not have been written (timeout, disconnect,
        NOT_ENOUGH_REPLICAS_AFTER_APPEND, ...)."""
        self._outcome(op, {"type": "unknown", "error": str(error)})

    def error(self, op: int, error: str) -> str:
        """Records fail or unknown according to classify_error; returns which."""
        kind = classify_error(str(error))
        (self.fail if kind == "fail" else self.unknown)(op, error)
        return kind

    def read(self, process: str, topic: str, partition: int, offset: int, key: Any, value: Any) -> None:
        """One record handed to consumer `process`, in the order it got them."""
        with self._lock:
            self._append({"type": "read", "process": str(process), "topic": topic, "partition": int(partition),
                          "offset": int(offset), "key": _text(key), "value": _text(value)})

    def seek(self, process: str, topic: str | None = None, partition: int | None = None,
             offset: int | None = None, reason: str = "seek") -> None:
        """The consumer's position moved on purpose (seek, assign, rebalance):
        its next read of the partition (None: of every partition of the topic,
        or of every topic) may go anywhere."""
        with self._lock:
            self._append({"type": "seek", "process": str(process), "topic": topic, "partition": partition,
                          "offset": offset, "reason": reason})

    def caught_up(self, process: str, topic: str, partition: int, end: int) -> None:
        """Consumer `process` has read every record of the partition below
        offset `end` (a high watermark it fetched)."""
        with self._lock:
            self._append({"type": "caught_up", "process": str(process), "topic": topic,
                          "partition": int(partition), "end": int(end)})

    def note_process(self, process: str, **attrs: Any) -> None:
        """Facts about a process the checker uses: ordered=False exempts a
        producer from the reordered_send check (no idempotence, retries with
        several requests in flight)."""
        with self._lock:
            self._append({"type": "process", "process": str(process), "attrs": attrs})

    # --- reading back -----------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    # --- JSON lines -------------------------------------------------------------------

    def dumps(self) -> str:
        header = {"type": "history", "version": FORMAT_VERSION, "meta": self.meta}
        return "".join(json.dumps(e, sort_keys=True) + "\n" for e in [header, *self.events])

    def save(self, path: str | Path) -> Path:
        """Writes the history as JSON lines (gzip-compressed if the name ends in .gz)."""
        path = Path(path)
        data = self.dumps().encode()
        if path.suffix == ".gz":
            data = gzip.compress(data)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return path

    @classmethod
    def loads(cls, text: str | Iterable[str]) -> History:
        lines = text.splitlines() if isinstance(text, str) else text
        h: History | None = None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            ev = json.loads(line)
            if h is None:
                if ev.get("type") != "history" or ev.get("version") != FORMAT_VERSION:
                    raise ValueError(f"line {n}: not a version-{FORMAT_VERSION} history header: {line[:200]}")
                h = cls(meta=ev.get("meta"))
                continue
            h._load_event(ev, n)
        if h is None:
            raise ValueError("empty history")
        return h

    @classmethod
    def load(cls, path: str | Path) -> History:
        data = Path(path).read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return cls.loads(data.decode())

    def _load_event(self, ev: dict[str, Any], line: int) -> None:
        if ev.get("index") != len(self._events):
            raise ValueError(f"line {line}: event index {ev.get('index')}, expected {len(self._events)}")
        kind = ev.get("type")
        if kind == "send":
            if ev["value"] in self._values:
                raise ValueError(f"line {line}: value {ev['value']!r} sent twice")
            self._values.add(ev["value"])
            self._sends[ev["op"]] = ev
        elif kind in ("ok", "fail", "unknown"):
            if ev["op"] not in self._sends or ev["op"] in self._done:
                raise ValueError(f"line {line}: outcome for op {ev['op']} without a pending send")
            self._done.add(ev["op"])
        elif kind not in ("read", "seek", "caught_up", "process"):
            raise ValueError(f"line {line}: unknown event type {kind!r}")
        self._events.append(ev)


# --- the checker -------------------------------------------------------------------------

@dataclass
class Report:
    """The verdict on a history: counts and examples per anomaly, statistics."""

    counts: dict[str, int]
    examples: dict[str, list[dict[str, Any]]]
    stats: dict[str, int]
    allowed: frozenset[str] = field(default_factory=frozenset)

    @property
    def anomalies(self) -> set[str]:
        """The anomaly kinds found (allowed kinds excluded)."""
        return {k for k, n in self.counts.items() if n and k not in self.allowed}

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def summary(self) -> str:
        s = self.stats
        found = [k for k in ANOMALIES if k in self.anomalies]
        head = "history check: OK" if not found else \
            "history check: FAILED: " + ", ".join(f"{self.counts[k]} {k}" for k in found)
        lines = [
            head,
            f"  sends {s['sends']} by {s['producers']} producers: acknowledged {s['acked']}, "
            f"failed {s['failed']} ({s['failed_read']} read), unknown outcome {s['unknown']} "
            f"({s['unknown_read']} read: committed; {s['unknown_unread']} never read: lost but allowed)",
            f"  reads {s['reads']} ({s['distinct_read']} distinct values) by {s['consumers']} consumers "
            f"over {s['partitions']} partitions; seeks {s['seeks']}",
        ]
        for k in ANOMALIES:
            if self.counts.get(k) and k not in self.anomalies:
                lines.append(f"  allowed: {self.counts[k]} {k}")
        for k in found:
            shown = self.examples.get(k, [])
            lines.append(f"  {k} ({self.counts[k]}, {len(shown)} shown):")
            lines.extend(f"    - {ex['what']}" for ex in shown)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _where(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}@{offset}"


def check(history: History | str | Path, *, max_examples: int = 10, allow_unseen: bool = False) -> Report:
    """Checks a history (or a saved one, by path); see the module docstring."""
    if not isinstance(history, History):
        history = History.load(history)
    events = history.events

    counts = dict.fromkeys(ANOMALIES, 0)
    examples: dict[str, list[dict[str, Any]]] = {k: [] for k in ANOMALIES}

    def found(kind: str, what: str, **detail: Any) -> None:
        counts[kind] += 1
        if len(examples[kind]) < max_examples:
            examples[kind].append({"what": what, **detail})

    sends: dict[int, dict[str, Any]] = {}  # op -> send event + "outcome" (the outcome event or None)
    by_value: dict[str, dict[str, Any]] = {}
    reads: list[dict[str, Any]] = []
    per_process: dict[str, list[dict[str, Any]]] = defaultdict(list)  # consumers' reads and seeks, in order
    caught_up: dict[tuple[str, int], int] = {}  # (topic, partition) -> highest end read to
    ordered: dict[str, bool] = {}
    seeks = 0
    for ev in events:
        kind = ev["type"]
        if kind == "send":
            s = dict(ev, outcome=None)
            sends[ev["op"]] = s
            by_value[ev["value"]] = s
        elif kind in ("ok", "fail", "unknown"):
            sends[ev["op"]]["outcome"] = ev
        elif kind == "read":
            reads.append(ev)
            per_process[ev["process"]].append(ev)
        elif kind == "seek":
            seeks += 1
            per_process[ev["process"]].append(ev)
        elif kind == "caught_up":
            tp = (ev["topic"], ev["partition"])
            caught_up[tp] = max(caught_up.get(tp, 0), ev["end"])
        elif kind == "process":
            if "ordered" in ev["attrs"]:
                ordered[ev["process"]] = bool(ev["attrs"]["ordered"])

    # Every position (topic, partition, offset) each value was seen at, and
    # every value seen at each position, with who saw it there.
    at_position: dict[tuple[str, int, int], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    positions_of: dict[str, dict[tuple[str, int, int], list[str]]] = defaultdict(lambda: defaultdict(list))
    for s in sends.values():
        out = s["outcome"]
        if out is not None and out["type"] == "ok":
            pos = (s["topic"], out["partition"], out["offset"])
            at_position[pos][s["value"]].append(f"ack to {s['process']}")
            positions_of[s["value"]][pos].append(f"ack to {s['process']}")
    read_values: dict[str, list[dict[str, Any]]] = defaultdict(list)
    max_read: dict[tuple[str, int], tuple[int, str]] = {}  # (topic, partition) -> (offset, consumer)
    read_offsets: dict[tuple[str, int], dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in reads:
        pos = (r["topic"], r["partition"], r["offset"])
        tp = pos[:2]
        src = f"read by {r['process']}"
        if src not in at_position[pos][r["value"]]:
            at_position[pos][r["value"]].append(src)
            positions_of[r["value"]][pos].append(src)
        read_values[r["value"]].append(r)
        read_offsets[tp][r["offset"]].add(r["process"])
        if tp not in max_read or r["offset"] > max_read[tp][0]:
            max_read[tp] = (r["offset"], r["process"])

    # inconsistent_offset: two values at one position.
    for pos in sorted(at_position):
        values = at_position[pos]
        if len(values) > 1:
            desc = "; ".join(f"{v!r} ({', '.join(srcs)})" for v, srcs in values.items())
            found("inconsistent_offset", f"{_where(*pos)} holds {len(values)} values: {desc}",
                  topic=pos[0], partition=pos[1], offset=pos[2], values={v: list(s) for v, s in values.items()})

    # duplicate: one value at two positions.
    for value, where in positions_of.items():
        if len(where) > 1:
            desc = "; ".join(f"{_where(*pos)} ({', '.join(srcs)})" for pos, srcs in sorted(where.items()))
            found("duplicate", f"{value!r} at {len(where)} positions: {desc}",
                  value=value, positions=[list(pos) for pos in sorted(where)])

    # lost_write / unseen_write / failed_write_visible, and the outcome statistics.
    stats = dict.fromkeys(("sends", "acked", "failed", "failed_read", "unknown", "unknown_read",
                           "unknown_unread"), 0)
    for s in sorted(sends.values(), key=lambda s: s["index"]):
        stats["sends"] += 1
        out = s["outcome"]
        was_read = s["value"] in read_values
        kind = "unknown" if out is None else out["type"]
        if kind == "ok":
            stats["acked"] += 1
            if was_read:
                continue
            tp, off = (s["topic"], out["partition"]), out["offset"]
            furthest = max_read.get(tp)
            end = caught_up.get(tp, 0)
            where = _where(s["topic"], out["partition"], off)
            if furthest is not None and furthest[0] > off:
                found("lost_write", f"{s['value']!r} acknowledged to {s['process']} at {where}, never read; "
                                    f"{furthest[1]} read up to offset {furthest[0]}",
                      value=s["value"], process=s["process"], topic=tp[0], partition=tp[1], offset=off)
            elif end > off:
                found("lost_write", f"{s['value']!r} acknowledged to {s['process']} at {where}, never read; "
                                    f"a consumer read the partition to offset {end}",
                      value=s["value"], process=s["process"], topic=tp[0], partition=tp[1], offset=off)
            else:
                reach = "nothing" if furthest is None else f"up to offset {furthest[0]}"
                found("unseen_write", f"{s['value']!r} acknowledged to {s['process']} at {where}, never read; "
                                      f"consumers read {reach}, to end {end}",
                      value=s["value"], process=s["process"], topic=tp[0], partition=tp[1], offset=off)
        elif kind == "fail":
            stats["failed"] += 1
            if was_read:
                stats["failed_read"] += 1
                r = read_values[s["value"]][0]
                found("failed_write_visible",
                      f"{s['value']!r} sent by {s['process']} failed ({out['error']}) but {r['process']} read it "
                      f"at {_where(r['topic'], r['partition'], r['offset'])}",
                      value=s["value"], process=s["process"], error=out["error"],
                      read_at=[r["topic"], r["partition"], r["offset"]])
        else:
            stats["unknown"] += 1
            stats["unknown_read" if was_read else "unknown_unread"] += 1

    # reordered_send: a producer's acknowledged sends to one partition, in invocation order.
    per_producer: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for s in sorted(sends.values(), key=lambda s: s["index"]):
        out = s["outcome"]
        if out is not None and out["type"] == "ok" and ordered.get(s["process"], True):
            per_producer[(s["process"], s["topic"], out["partition"])].append(s)
    for (process, topic, partition), ss in per_producer.items():
        for a, b in zip(ss, ss[1:]):
            oa, ob = a["outcome"]["offset"], b["outcome"]["offset"]
            if ob <= oa:
                found("reordered_send", f"{process} sent {a['value']!r} then {b['value']!r} to {topic}/{partition}, "
                                        f"acknowledged at offsets {oa} then {ob}",
                      process=process, topic=topic, partition=partition, values=[a["value"], b["value"]],
                      offsets=[oa, ob])

    # nonmonotonic_poll / poll_skip: each consumer's reads of a partition, in order.
    sorted_offsets = {tp: sorted(offs) for tp, offs in read_offsets.items()}
    for process, evs in per_process.items():
        last: dict[tuple[str, int], int] = {}
        for ev in evs:
            if ev["type"] == "seek":
                for tp in list(last):
                    if (ev["topic"] is None or ev["topic"] == tp[0]) and \
                            (ev["partition"] is None or ev["partition"] == tp[1]):
                        del last[tp]
                continue
            tp, off = (ev["topic"], ev["partition"]), ev["offset"]
            prev = last.get(tp)
            last[tp] = off
            if prev is None:
                continue
            if off <= prev:
                found("nonmonotonic_poll", f"{process} read {_where(*tp, prev)} then {_where(*tp, off)} "
                                           f"({ev['value']!r}) with no seek in between",
                      process=process, topic=tp[0], partition=tp[1], offsets=[prev, off])
            elif off > prev + 1:
                offs = sorted_offsets[tp]
                skipped = [o for o in _between(offs, prev, off) if read_offsets[tp][o] - {process}]
                if skipped:
                    others = sorted(set().union(*(read_offsets[tp][o] for o in skipped)) - {process})
                    found("poll_skip", f"{process} read {_where(*tp, prev)} then {_where(*tp, off)}, skipping "
                                       f"{len(skipped)} offsets others read ({', '.join(others)}), first "
                                       f"{skipped[:5]}",
                          process=process, topic=tp[0], partition=tp[1], offsets=[prev, off], skipped=skipped[:20])

    # unexpected_read: values no send produced, or with another key or topic.
    for r in reads:
        s = by_value.get(r["value"])
        where = _where(r["topic"], r["partition"], r["offset"])
        if s is None:
            found("unexpected_read", f"{r['process']} read {r['value']!r} at {where}: no recorded send of it",
                  process=r["process"], value=r["value"], topic=r["topic"], partition=r["partition"],
                  offset=r["offset"])
        elif s["key"] != r["key"] or s["topic"] != r["topic"]:
            found("unexpected_read", f"{r['process']} read {r['value']!r} with key {r['key']!r} at {where}; "
                                     f"it was sent to {s['topic']} with key {s['key']!r}",
                  process=r["process"], value=r["value"], topic=r["topic"], partition=r["partition"],
                  offset=r["offset"])

    stats.update(
        producers=len({s["process"] for s in sends.values()}),
        reads=len(reads),
        distinct_read=len(read_values),
        consumers=len({r["process"] for r in reads}),
        partitions=len(set(read_offsets) | {(s["topic"], s["outcome"]["partition"]) for s in sends.values()
                                            if s["outcome"] is not None and s["outcome"]["type"] == "ok"}),
        seeks=seeks,
    )
    return Report(counts=counts, examples=examples, stats=stats,
                  allowed=frozenset({"unseen_write"} if allow_unseen else ()))


def _between(sorted_offsets: list[int], lo: int, hi: int) -> list[int]:
    """The offsets strictly between lo and hi."""
    return sorted_offsets[bisect_right(sorted_offsets, lo):bisect_left(sorted_offsets, hi)]


def main(argv: list[str]) -> int:
    """`python history.py FILE [--allow-unseen]`: checks a saved history; exit 1 on anomalies."""
    paths = [a for a in argv if not a.startswith("--")]
    if len(paths) != 1 or set(argv) - {*paths, "--allow-unseen"}:
        print("usage: history.py HISTORY.jsonl[.gz] [--allow-unseen]", file=sys.stderr)
        return 2
    report = check(paths[0], allow_unseen="--allow-unseen" in argv)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
