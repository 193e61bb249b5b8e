"""``KafkaProducer`` with kafka-python's keywords and behaviour, over the
native producer: serializers run in the calling thread, ``send`` returns a
``FutureRecordMetadata``, callbacks run on the sluice callback thread. The
producer is thread-safe."""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional, Set, Tuple

from . import _callbacks, _config, _sluice
from .errors import KafkaError, KafkaTimeoutError
from .structs import RecordMetadata, TopicPartition

_PYTHON_ONLY = {"key_serializer": None, "value_serializer": None}


class FutureRecordMetadata:
    """The outcome of ``KafkaProducer.send`` (kafka-python's future)."""

    def __init__(self, delivery: "_sluice.Delivery", key_size: int, value_size: int, header_size: int) -> None:
        self._delivery = delivery
        self._sizes = (key_size, value_size, header_size)
        self._lock = threading.Lock()
        self._callbacks: List[Tuple[bool, Callable[..., Any], tuple, dict]] = []
        self._watched = False
        self._fired = False

    def _metadata(self, m: Tuple[str, int, int, int]) -> RecordMetadata:
        topic, partition, offset, timestamp = m
        return RecordMetadata(topic, partition, TopicPartition(topic, partition), offset, timestamp, None, *self._sizes)

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
    def value(self) -> Optional[RecordMetadata]:
        o = self._delivery.outcome()
        return self._metadata(o[1]) if o is not None and o[0] else None

    @property
    def exception(self) -> Optional[BaseException]:
        o = self._delivery.outcome()
        return o[1] if o is not None and not o[0] else None

    def get(self, timeout: Optional[float] = None) -> RecordMetadata:
        """Waits up to ``timeout`` seconds for the record's metadata; raises
        its delivery error, or ``KafkaTimeoutError``."""
        return self._metadata(self._delivery.wait(timeout))

    def add_callback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> "FutureRecordMetadata":
        """Calls ``f(*args, record_metadata, **kwargs)`` on success."""
        return self._add(True, f, args, kwargs)

    def add_errback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> "FutureRecordMetadata":
        """Calls ``f(*args, exception, **kwargs)`` on failure."""
        return self._add(False, f, args, kwargs)

    def add_both(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> "FutureRecordMetadata":
        self.add_callback(f, *args, **kwargs)
        return self.add_errback(f, *args, **kwargs)

    def _add(self, on_success: bool, f: Callable[..., Any], args: tuple, kwargs: dict) -> "FutureRecordMetadata":
        with self._lock:
            if self._fired:
                run_now = True
            else:
                self._callbacks.append((on_success, f, args, kwargs))
                run_now = False
                if not self._watched:
                    self._watched = True
                    _callbacks.ensure_started()
                    self._delivery.watch(self._fire)
        if run_now:
            o = self._delivery.outcome()
            if o is not None and o[0] == on_success:
                f(*args, self._metadata(o[1]) if o[0] else o[1], **kwargs)
        return self

    def _fire(self, _arg: Any) -> None:
        with self._lock:
            self._fired = True
            callbacks, self._callbacks = self._callbacks, []
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
            if d.get("acks", "all") != "all" or d.get("retries") == "0" or int(d.get("max.in.flight.requests.per.connection", "5")) > 5:
                props.append(("enable.idempotence", "false"))
        self._key_serializer: Optional[Callable[[Any], Optional[bytes]]] = local["key_serializer"]
        self._value_serializer: Optional[Callable[[Any], Optional[bytes]]] = local["value_serializer"]
        self._native = _sluice.Producer(props, token_provider)
        self._closed = False

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: Optional[List[Tuple[str, Optional[bytes]]]] = None,
        partition: Optional[int] = None,
        timestamp_ms: Optional[int] = None,
    ) -> FutureRecordMetadata:
        """Queues a record; returns a future of its ``RecordMetadata``."""
        if value is None and key is None:
            raise AssertionError("Need at least one: key or value")
        k = self._key_serializer(key) if self._key_serializer is not None and key is not None else key
        v = self._value_serializer(value) if self._value_serializer is not None and value is not None else value
        if k is not None and not isinstance(k, bytes):
            k = bytes(k)
        if v is not None and not isinstance(v, bytes):
            v = bytes(v)
        hs = list(headers) if headers else None
        delivery = self._native.send(topic, k, v, partition, timestamp_ms, hs)
        header_size = sum(len(h[0].encode()) + len(h[1] or b"") for h in hs) if hs else -1
        return FutureRecordMetadata(delivery, len(k) if k is not None else -1, len(v) if v is not None else -1, header_size)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Waits until every record sent so far is delivered or failed;
        ``KafkaTimeoutError`` after ``timeout`` seconds."""
        self._native.flush(timeout)

    def close(self, timeout: Optional[float] = None, null_logger: bool = False) -> None:
        """Delivers what is queued (for up to ``timeout`` seconds), then stops."""
        if self._closed:
            return
        self._closed = True
        self._native.close(timeout)

    def partitions_for(self, topic: str) -> Set[int]:
        return set(self._native.partitions_for(topic))

    def metrics(self, raw: bool = False) -> dict:
        return {}

    def __enter__(self) -> "KafkaProducer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["KafkaProducer", "FutureRecordMetadata", "KafkaError", "KafkaTimeoutError"]
