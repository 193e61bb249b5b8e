"""``KafkaProducer`` with kafka-python's keywords and behaviour, over the
native producer: serializers run in the calling thread, ``send`` returns a
``FutureRecordMetadata``, callbacks run on the sluice callback thread. The
producer is thread-safe."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from . import _callbacks, _config, _sluice
from .errors import KafkaError, KafkaTimeoutError
from .structs import ConsumerGroupMetadata, OffsetAndMetadata, RecordMetadata, TopicPartition

log = logging.getLogger("sluice")

_PYTHON_ONLY = {"key_serializer": None, "value_serializer": None}

# Guards callback registration against the callback thread firing them
# (one lock for all futures: taken only when callbacks are added or run).
_CALLBACK_LOCK = threading.Lock()


class FutureRecordMetadata:
    """The outcome of ``KafkaProducer.send`` (kafka-python's future)."""

    # Built by the native send (no __init__ call per record): `_delivery` is
    # the native Delivery (outcome, sizes), `_cb` None until a callback is
    # added, then [fired, [(on_success, f, args, kwargs), ...]].
    __slots__ = ("_delivery", "_cb")

    def __init__(self, delivery: _sluice.Delivery) -> None:
        self._delivery = delivery
        self._cb: list | None = None

    def _metadata(self, m: tuple[str, int, int, int]) -> RecordMetadata:
        topic, partition, offset, timestamp = m
        return RecordMetadata(topic, partition, TopicPartition(topic, partition), offset, timestamp, None,
                              *self._delivery.sizes())

    @property
    def is_done(self) -> bool:
        return self._delivery.is_done()

    def succeeded(self) -> bool:
        o = self._delivery.outcome()
        return o is not None and o[0]

    def failed(self) -> bool:
        o = self._delivery.outcome()
        return o is not None and not o[0]

    @property
    def value(self) -> RecordMetadata | None:
        o = self._delivery.outcome()
        return self._metadata(o[1]) if o is not None and o[0] else None

    @property
    def exception(self) -> BaseException | None:
        o = self._delivery.outcome()
        return o[1] if o is not None and not o[0] else None

    def get(self, timeout: float | None = None) -> RecordMetadata:
        """Waits up to ``timeout`` seconds for the record's metadata; raises
        its delivery error, or ``KafkaTimeoutError``."""
        return self._metadata(self._delivery.wait(timeout))

    def add_callback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> FutureRecordMetadata:
        """Calls ``f(*args, record_metadata, **kwargs)`` on success."""
        return self._add(True, f, args, kwargs)

    def add_errback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> FutureRecordMetadata:
        """Calls ``f(*args, exception, **kwargs)`` on failure."""
        return self._add(False, f, args, kwargs)

    def add_both(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> FutureRecordMetadata:
        self.add_callback(f, *args, **kwargs)
        return self.add_errback(f, *args, **kwargs)

    def _add(self, on_success: bool, f: Callable[..., Any], args: tuple, kwargs: dict) -> FutureRecordMetadata:
        with _CALLBACK_LOCK:
            cb = self._cb
            run_now = cb is not None and cb[0]
            if not run_now:
                if cb is None:
                    cb = self._cb = [False, []]
                    _callbacks.ensure_started()
                    self._delivery.watch(self._fire)
                cb[1].append((on_success, f, args, kwargs))
        if run_now:
            o = self._delivery.outcome()
            if o is not None and o[0] == on_success:
                f(*args, self._metadata(o[1]) if o[0] else o[1], **kwargs)
        return self

    def _fire(self, _arg: Any) -> None:
        with _CALLBACK_LOCK:
            cb = self._cb
            if cb is None:
                cb = self._cb = [False, []]
            cb[0] = True
            callbacks, cb[1] = cb[1], []
        o = self._delivery.outcome()
        if o is None:
            return
        value = self._metadata(o[1]) if o[0] else o[1]
        for on_success, f, args, kwargs in callbacks:
            if on_success == o[0]:
                f(*args, value, **kwargs)


class KafkaProducer:
    """A Kafka producer with kafka-python's constructor keywords
    (``bootstrap_servers``, ``acks``, ``linger_ms``, ``compression_type``,
    ``key_serializer``, ...). Thread-safe."""

    def __init__(self, **configs: Any) -> None:
        props, local, token_provider = _config.build("KafkaProducer", configs, _config.PRODUCER, _PYTHON_ONLY)
        names = {k for k, _ in props}
        if "enable.idempotence" not in names:
            # As the Java client: idempotence is on by default, but turned off
            # (not an error) when other settings conflict with it.
            d = dict(props)
            in_flight = int(d.get("max.in.flight.requests.per.connection", "5"))
            if d.get("acks", "all") != "all" or d.get("retries") == "0" or in_flight > 5:
                props.append(("enable.idempotence", "false"))
        d = dict(props)
        if "delivery.timeout.ms" not in d:
            # As the Java client: an unset delivery.timeout.ms grows to cover
            # linger.ms + request.timeout.ms instead of failing validation.
            floor = int(d.get("linger.ms", "5")) + int(d.get("request.timeout.ms", "30000"))
            if floor > 120000:
                props.append(("delivery.timeout.ms", str(floor)))
        self._key_serializer: Callable[[Any], bytes | None] | None = local["key_serializer"]
        self._value_serializer: Callable[[Any], bytes | None] | None = local["value_serializer"]
        self._native = _sluice.Producer(props, token_provider)
        self._native.set_future_type(FutureRecordMetadata)
        self._closed = False

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: list[tuple[str, bytes | None]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> FutureRecordMetadata:
        """Queues a record; returns a future of its ``RecordMetadata``."""
        if value is None and key is None:
            raise AssertionError("Need at least one: key or value")
        if key is not None:
            if self._key_serializer is not None:
                key = self._key_serializer(key)
            if key is not None and type(key) is not bytes:
                key = bytes(key)
        if value is not None:
            if self._value_serializer is not None:
                value = self._value_serializer(value)
            if value is not None and type(value) is not bytes:
                value = bytes(value)
        hs: list[tuple[str, bytes | None]] | None = None
        header_size = -1
        if headers:
            hs = list(headers)
            header_size = sum(len(k.encode()) + len(v or b"") for k, v in hs)
        # The native send returns the FutureRecordMetadata itself.
        return self._native.send(topic, key, value, partition, timestamp_ms, hs, header_size)

    def flush(self, timeout: float | None = None) -> None:
        """Waits until every record sent so far is delivered or failed;
        ``KafkaTimeoutError`` after ``timeout`` seconds."""
        self._native.flush(timeout)

    def close(self, timeout: float | None = None, null_logger: bool = False) -> None:
        """Delivers what is queued (for up to ``timeout`` seconds), then stops."""
        if self._closed:
            return
        self._closed = True
        try:
            self._native.close(timeout)
        except KafkaTimeoutError as e:
            # As kafka-python: close gives up on what is left, it does not raise.
            log.warning("sluice: %s", e)

    def partitions_for(self, topic: str) -> set[int]:
        return set(self._native.partitions_for(topic))

    # --- transactions (with transactional_id) --------------------------------

    def init_transactions(self) -> None:
        """Registers the ``transactional_id`` with its coordinator (waiting up
        to ``max_block_ms``): fences older producers with the same id and
        finishes any transaction they left open. Call once, before the first
        transaction; after a ``KafkaTimeoutError`` it may be called again."""
        self._native.init_transactions()

    def begin_transaction(self) -> None:
        """Starts a transaction: records sent until ``commit_transaction`` or
        ``abort_transaction`` belong to it."""
        self._native.begin_transaction()

    def send_offsets_to_transaction(
        self,
        offsets: dict[TopicPartition, OffsetAndMetadata | int],
        group_metadata: ConsumerGroupMetadata | str | None = None,
        consumer_group_id: str | None = None,
    ) -> None:
        """Adds consumed ``offsets`` ({TopicPartition: OffsetAndMetadata}, the
        next offsets to read) to the transaction: committed for the group when
        the transaction commits, never if it aborts. ``group_metadata`` is
        ``consumer.group_metadata()`` (lets the broker fence a consumer a
        rebalance replaced, KIP-447) or a bare group id, as kafka-python
        takes; ``consumer_group_id=`` is kafka-python 2.x's keyword."""
        if group_metadata is None:
            group_metadata = consumer_group_id
        if isinstance(group_metadata, str):
            group_metadata = ConsumerGroupMetadata(group_id=group_metadata)
        group_id = getattr(group_metadata, "group_id", None)
        if not isinstance(group_metadata, tuple) or not isinstance(group_id, str) or not group_id:
            raise TypeError(
                "send_offsets_to_transaction needs consumer.group_metadata() or a group id, "
                f"not {group_metadata!r}"
            )
        native = []
        for tp, om in offsets.items():
            if isinstance(om, int):
                om = OffsetAndMetadata(om)
            metadata = om[1] if len(om) > 1 and om[1] else ""
            epoch = om[2] if len(om) > 2 and om[2] is not None else -1
            native.append((tp[0], int(tp[1]), int(om[0]), metadata, int(epoch)))
        g = group_metadata
        self._native.send_offsets_to_transaction(
            native, group_id, int(g.generation_id), g.member_id or "", g.group_instance_id
        )

    def commit_transaction(self) -> None:
        """Sends what is buffered and commits the transaction. If a send of
        the transaction failed, raises that error and the transaction must be
        aborted; ``ProducerFencedError`` means this producer is done."""
        self._native.commit_transaction()

    def abort_transaction(self) -> None:
        """Aborts the transaction: unsent records fail with
        ``TransactionAbortedError`` and read_committed consumers never see
        its records."""
        self._native.abort_transaction()

    def metrics(self, raw: bool = False) -> dict:
        return {}

    def __enter__(self) -> KafkaProducer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["KafkaProducer", "FutureRecordMetadata", "KafkaError", "KafkaTimeoutError"]
