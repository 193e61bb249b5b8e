"""``KafkaConsumer`` with kafka-python's keywords and methods over the native
consumer: deserializers run in the calling thread, ``poll`` answers
``{TopicPartition: [ConsumerRecord]}``, iteration honours
``consumer_timeout_ms``, rebalance listeners get ``TopicPartition`` sets.
``run_batches`` is the Lambda-style handler loop (ordered per-partition
batches, each committed after the handler returns)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from re import Pattern
from typing import Any, Callable

from . import _callbacks, _config, _sluice
from .structs import (
    ConsumerGroupMetadata,
    ConsumerRecord,
    MemberState,
    OffsetAndMetadata,
    OffsetAndTimestamp,
    PartitionBatch,
    TopicPartition,
)

_log = logging.getLogger("sluice")

_PYTHON_ONLY = {"key_deserializer": None, "value_deserializer": None, "consumer_timeout_ms": float("inf")}


class ConsumerRebalanceListener:
    """kafka-python's rebalance callback interface: subclass it and pass it
    to ``subscribe(listener=...)``. Called inside ``poll``."""

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.on_partitions_revoked(lost)


class _ListenerBridge:
    """What the native consumer calls: turns (topic, partition) tuples into
    ``TopicPartition``s for the user's listener."""

    def __init__(self, listener: Any) -> None:
        self.listener = listener

    def on_partitions_revoked(self, parts: list[tuple]) -> None:
        self.listener.on_partitions_revoked({TopicPartition(*p) for p in parts})

    def on_partitions_assigned(self, parts: list[tuple]) -> None:
        self.listener.on_partitions_assigned({TopicPartition(*p) for p in parts})

    def on_partitions_lost(self, parts: list[tuple]) -> None:
        f = getattr(self.listener, "on_partitions_lost", None)
        if f is None:
            f = self.listener.on_partitions_revoked
        f({TopicPartition(*p) for p in parts})


def _tps(partitions: Iterable[Any]) -> list[tuple]:
    return [(p[0], int(p[1])) for p in partitions]


class KafkaConsumer:
    """A Kafka consumer with kafka-python's keywords (``group_id``,
    ``auto_offset_reset``, ``enable_auto_commit``, ``max_poll_records``,
    ``value_deserializer``, ``consumer_timeout_ms``, ...). Iterate it, or
    call ``poll``. Not thread-safe (one thread at a time), as kafka-python."""

    def __init__(self, *topics: str, **configs: Any) -> None:
        props, local, token_provider = _config.build("KafkaConsumer", configs, _config.CONSUMER, _PYTHON_ONLY)
        self._key_deserializer: Callable[[bytes], Any] | None = local["key_deserializer"]
        self._value_deserializer: Callable[[bytes], Any] | None = local["value_deserializer"]
        timeout = local["consumer_timeout_ms"]
        self._consumer_timeout_ms: float = float("inf") if timeout is None else float(timeout)
        self._native = _sluice.Consumer(props, token_provider)
        # poll() builds ConsumerRecords and TopicPartitions natively.
        self._native.set_record_types(ConsumerRecord, TopicPartition, self._key_deserializer, self._value_deserializer)
        self._buffer: deque[ConsumerRecord] = deque()
        self._closed = False
        if topics:
            self.subscribe(topics=list(topics))

    # --- subscriptions ------------------------------------------------------

    def subscribe(
        self,
        topics: Iterable[str] = (),
        pattern: str | Pattern[str] | None = None,
        listener: Any | None = None,
    ) -> None:
        """Subscribes to topic names or a regex pattern (not both)."""
        topics = [topics] if isinstance(topics, str) else list(topics)
        if topics and pattern is not None:
            raise ValueError("You must choose topics or pattern, but not both")
        if not topics and pattern is None:
            raise ValueError("You must choose topics or pattern")
        if pattern is not None and not isinstance(pattern, str):
            pattern = pattern.pattern
        bridge = _ListenerBridge(listener) if listener is not None else None
        self._native.subscribe(topics if pattern is None else None, pattern, bridge)

    def unsubscribe(self) -> None:
        self._buffer.clear()
        self._native.unsubscribe()

    def subscription(self) -> set[str] | None:
        s = set(self._native.subscription())
        return s or None

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self._buffer.clear()
        self._native.assign(_tps(partitions))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(*p) for p in self._native.assignment()}

    # --- records ------------------------------------------------------------

    def poll(
        self, timeout_ms: float = 0, max_records: int | None = None, update_offsets: bool = True
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Fetches records, waiting up to ``timeout_ms`` for some; at most
        ``max_records`` (default ``max_poll_records``)."""
        if max_records is not None and max_records < 1:
            raise ValueError("max_records must be positive")
        return self._native.poll(max(0.0, timeout_ms) / 1000.0, max_records)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        return self

    def __next__(self) -> ConsumerRecord:
        if self._buffer:
            return self._buffer.popleft()
        timeout_ms = self._consumer_timeout_ms
        deadline = None if timeout_ms == float("inf") else time.monotonic() + timeout_ms / 1000.0
        while True:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            batch = self._native.poll(wait, None)
            if batch:
                self._buffer = deque(r for rs in batch.values() for r in rs)
                return self._buffer.popleft()
            if deadline is not None and time.monotonic() >= deadline:
                raise StopIteration

    # --- the batch handler loop ---------------------------------------------

    def run_batches(
        self,
        handler: Callable[[PartitionBatch], Any],
        *,
        max_batches: int | None = None,
        stop: Any | None = None,
        on_error: str = "raise",
    ) -> int:
        """Calls ``handler(batch)`` with each ``PartitionBatch`` (one
        partition's records in offset order; one partition's batches one
        after another) on this thread, and commits the batch's
        ``next_offset`` as soon as the handler returns: what an AWS Lambda
        function gets from an MSK trigger. Needs a ``group_id``; set
        ``enable_auto_commit=False`` so only handled batches are committed.

        A handler that raises gets nothing committed for that batch, and its
        partition is rewound to the batch's first record, so the batch comes
        again (here or to whichever member owns the partition next). With
        ``on_error="raise"`` (default) the loop then ends and the exception
        propagates; with ``on_error="retry"`` the batch is retried after a
        backoff (``retry_backoff_ms`` doubling up to 1 s) while other
        partitions carry on, as Lambda does; the failure is logged on the
        ``sluice`` logger. ``KeyboardInterrupt`` and other non-``Exception``
        errors always end the loop.

        The loop ends, after the batch in hand, when ``stop_batches()`` is
        called (from the handler or another thread), ``stop.is_set()`` (a
        ``threading.Event``) becomes true, ``max_batches`` batches were
        handled, or on Ctrl-C (``KeyboardInterrupt`` is raised after the
        loop has ended cleanly). Returns the number of batches handled.
        Inside the handler no other method of this consumer may be called
        except ``stop_batches()``."""
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int)
                                        or max_batches < 1):
            raise ValueError(f"max_batches must be a positive int or None, not {max_batches!r}")
        if on_error not in ("raise", "retry"):
            raise ValueError(f'on_error must be "raise" or "retry", not {on_error!r}')
        if stop is not None and not callable(getattr(stop, "is_set", None)):
            raise TypeError("stop must have an is_set() method (a threading.Event)")
        retry = on_error == "retry"
        self._rewind_buffered()

        def call(batch: PartitionBatch) -> None:
            try:
                handler(batch)
            except Exception:
                if retry:
                    _log.warning("batch handler failed on %s-%d at offsets %d..%d; the batch will be retried",
                                 batch.topic, batch.partition, batch.first_offset, batch.last_offset,
                                 exc_info=True)
                raise

        return self._native.run_batches(call, PartitionBatch, max_batches, retry, stop)

    def stop_batches(self) -> None:
        """Ends ``run_batches`` after the batch in hand (whose handler's
        return still commits it). Callable from the handler or any thread;
        does nothing when no loop runs."""
        self._native.stop_batches()

    def _rewind_buffered(self) -> None:
        """Puts records iteration fetched but did not hand out back in
        front of their partitions, so a batch loop sees them."""
        first: dict[tuple[str, int], int] = {}
        for r in self._buffer:
            first.setdefault((r.topic, r.partition), r.offset)
        self._buffer.clear()
        for (topic, partition), offset in first.items():
            self._native.seek(topic, partition, offset)

    # --- offsets ------------------------------------------------------------

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata] | None = None) -> None:
        """Commits ``offsets`` (next offset to read per partition), or the
        positions of every record returned so far."""
        self._native.commit(None if offsets is None else self._offsets(offsets))

    @staticmethod
    def _offsets(offsets: dict[TopicPartition, OffsetAndMetadata]) -> list[tuple[str, int, int, str]]:
        return [(tp[0], int(tp[1]), int(om[0]), (om[1] if len(om) > 1 and om[1] else "")) for tp, om in offsets.items()]

    def commit_async(
        self,
        offsets: dict[TopicPartition, OffsetAndMetadata] | None = None,
        callback: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        """Queues a commit of ``offsets`` (or of the positions of every record
        returned so far) and returns at once; ``callback(offsets,
        exception_or_None)`` runs on the sluice callback thread."""
        native = None if offsets is None else self._offsets(offsets)
        if callback is None:
            self._native.commit_async(native, None)
            return
        _callbacks.ensure_started()
        self._native.commit_async(native, lambda exc: callback(offsets, exc))

    def committed(self, partition: TopicPartition, metadata: bool = False) -> int | OffsetAndMetadata | None:
        (_, _, offset, md), = self._native.committed(_tps([partition]))
        if offset is None:
            return None
        return OffsetAndMetadata(offset, md, -1) if metadata else offset

    def group_metadata(self) -> ConsumerGroupMetadata:
        """This consumer's group membership, for
        ``KafkaProducer.send_offsets_to_transaction`` (``group_id`` None
        without a group)."""
        g = self._native.group_metadata()
        if g is None:
            return ConsumerGroupMetadata(group_id=None)
        group_id, generation_id, member_id, instance_id = g
        state = MemberState.STABLE if generation_id >= 0 else MemberState.UNJOINED
        return ConsumerGroupMetadata(group_id, generation_id, member_id, instance_id, state)

    def position(self, partition: TopicPartition) -> int:
        return self._native.position(partition[0], int(partition[1]))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._buffer = deque(r for r in self._buffer if (r.topic, r.partition) != tuple(partition))
        self._native.seek(partition[0], int(partition[1]), int(offset))

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._drop_buffered(partitions)
        self._native.seek_to_beginning(_tps(partitions))

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        self._drop_buffered(partitions)
        self._native.seek_to_end(_tps(partitions))

    def _drop_buffered(self, partitions: Iterable[TopicPartition]) -> None:
        ps = {tuple(p) for p in partitions}
        self._buffer = deque(r for r in self._buffer if ps and (r.topic, r.partition) not in ps)

    def pause(self, *partitions: TopicPartition) -> None:
        self._native.pause(_tps(partitions))

    def resume(self, *partitions: TopicPartition) -> None:
        self._native.resume(_tps(partitions))

    def paused(self) -> set[TopicPartition]:
        return {TopicPartition(*p) for p in self._native.paused()}

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The first offset of each partition."""
        return {TopicPartition(t, p): o for t, p, o, _ in self._native.list_offsets(_tps(partitions), -2)}

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset after the last record of each partition."""
        return {TopicPartition(t, p): o for t, p, o, _ in self._native.list_offsets(_tps(partitions), -1)}

    def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """The first offset with a timestamp at or after the given one (ms),
        per partition; None where no record is that recent."""
        by_ts: dict[int, list[tuple]] = {}
        for tp, ts in timestamps.items():
            if ts < 0:
                raise ValueError(f"timestamps must not be negative, got {ts} for {tp}")
            by_ts.setdefault(int(ts), []).append((tp[0], int(tp[1])))
        out: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for ts, parts in by_ts.items():
            for t, p, o, found in self._native.list_offsets(parts, ts):
                out[TopicPartition(t, p)] = OffsetAndTimestamp(o, found, None) if o >= 0 else None
        return out

    # --- metadata -----------------------------------------------------------

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        parts = self._native.partitions_for_topic(topic)
        return set(parts) if parts is not None else None

    def topics(self) -> set[str]:
        return set(self._native.topics())

    def metrics(self, raw: bool = False) -> dict:
        return {}

    def close(self, autocommit: bool = True, timeout_ms: float | None = None) -> None:
        """Commits (with auto commit), leaves the group and stops."""
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        self._native.close(None if timeout_ms is None else timeout_ms / 1000.0)

    def __enter__(self) -> KafkaConsumer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["KafkaConsumer", "ConsumerRebalanceListener"]
