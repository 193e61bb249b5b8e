"""asyncio clients shaped like aiokafka's ``AIOKafkaProducer`` and
``AIOKafkaConsumer``, over the same native objects as the synchronous ones.

- Producer: ``send`` queues the record at once (it waits in the calling
  thread only when the producer's buffer is full, up to ``max_block_ms``)
  and returns an ``asyncio.Future`` completed from the delivery callback via
  ``loop.call_soon_threadsafe``: no thread is tied up per record.
- Consumer: the consumer is a one-thread object whose calls wait on the
  network, so each call runs in the consumer's own single-thread executor
  (the GIL is released while it waits); records a cancelled ``getone`` /
  ``getmany`` had already fetched are kept for the next call.
  ``run_batches`` runs the batch loop in that executor and each handler
  call on the event loop (``run_coroutine_threadsafe``), so the handler is
  an ordinary coroutine of the application's loop.
Keyword arguments are kafka-python's (which aiokafka shares).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
from typing import Any, Callable, TypeVar

from .consumer import KafkaConsumer
from .errors import IllegalStateError
from .producer import KafkaProducer
from .structs import ConsumerRecord, OffsetAndMetadata, PartitionBatch, RecordMetadata, TopicPartition

T = TypeVar("T")


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class AIOKafkaProducer:
    """``await start()``, ``await send(...)`` (a future of ``RecordMetadata``),
    ``await send_and_wait(...)``, ``await flush()``, ``await stop()``."""

    def __init__(self, **configs: Any) -> None:
        configs.pop("loop", None)
        self._configs = configs
        self._producer: KafkaProducer | None = None

    def _p(self) -> KafkaProducer:
        if self._producer is None:
            raise IllegalStateError("AIOKafkaProducer is not started (await start() first)")
        return self._producer

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._producer = await loop.run_in_executor(None, functools.partial(KafkaProducer, **self._configs))

    async def stop(self) -> None:
        if self._producer is not None:
            p, self._producer = self._producer, None
            await asyncio.get_running_loop().run_in_executor(None, p.close)

    async def send(self, topic: str, value: Any = None, key: Any = None, partition: int | None = None,
                   timestamp_ms: int | None = None, headers: list[Any] | None = None) -> asyncio.Future[RecordMetadata]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[RecordMetadata] = loop.create_future()
        frm = self._p().send(topic, value=value, key=key, partition=partition, timestamp_ms=timestamp_ms,
                             headers=headers)
        frm.add_callback(lambda md: loop.call_soon_threadsafe(_settle, fut, True, md))
        frm.add_errback(lambda exc: loop.call_soon_threadsafe(_settle, fut, False, exc))
        return fut

    async def send_and_wait(self, topic: str, value: Any = None, key: Any = None, partition: int | None = None,
                            timestamp_ms: int | None = None, headers: list[Any] | None = None) -> RecordMetadata:
        fut = await self.send(topic, value=value, key=key, partition=partition, timestamp_ms=timestamp_ms,
                              headers=headers)
        return await fut

    async def flush(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._p().flush)

    async def partitions_for(self, topic: str) -> set[int]:
        return await asyncio.get_running_loop().run_in_executor(None, self._p().partitions_for, topic)

    async def __aenter__(self) -> AIOKafkaProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


class AIOKafkaConsumer:
    """``await start()``, ``await getone()``, ``await getmany(timeout_ms=..)``,
    ``async for record in consumer``, ``await commit()``, ``await stop()``."""

    def __init__(self, *topics: str, **configs: Any) -> None:
        configs.pop("loop", None)
        self._topics = topics
        self._configs = configs
        self._consumer: KafkaConsumer | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-aio-consumer")
        self._pending: list[ConsumerRecord] = []
        self._batch_loop = False

    def _c(self) -> KafkaConsumer:
        if self._consumer is None:
            raise IllegalStateError("AIOKafkaConsumer is not started (await start() first)")
        if self._batch_loop:
            # The loop holds the consumer (and its executor) until it ends.
            raise IllegalStateError("run_batches() is running: only stop_batches() may be called until it returns")
        return self._consumer

    async def _run(self, f: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(f, *args))

    async def start(self) -> None:
        self._consumer = await self._run(functools.partial(KafkaConsumer, *self._topics, **self._configs))

    async def stop(self) -> None:
        if self._consumer is not None:
            c, self._consumer = self._consumer, None
            c.stop_batches()  # a run_batches in progress ends before the close runs
            await self._run(c.close)
        self._executor.shutdown(wait=False)

    def subscribe(self, topics: Any = (), pattern: str | None = None, listener: Any = None) -> None:
        self._c().subscribe(topics=topics, pattern=pattern, listener=listener)

    def assign(self, partitions: Any) -> None:
        self._pending.clear()
        self._c().assign(partitions)

    def assignment(self) -> set[TopicPartition]:
        return self._c().assignment()

    def subscription(self) -> set[str] | None:
        return self._c().subscription()

    def pause(self, *partitions: TopicPartition) -> None:
        self._c().pause(*partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._c().resume(*partitions)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._pending = [r for r in self._pending if (r.topic, r.partition) != tuple(partition)]
        self._c().seek(partition, offset)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._pending.clear()
        await self._run(self._c().seek_to_beginning, *partitions)

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        self._pending.clear()
        await self._run(self._c().seek_to_end, *partitions)

    async def position(self, partition: TopicPartition) -> int:
        return await self._run(self._c().position, partition)

    async def committed(self, partition: TopicPartition) -> int | None:
        c = self._c()

        def offset() -> int | None:
            o = c.committed(partition)
            return o if o is None or isinstance(o, int) else o.offset

        return await self._run(offset)

    async def commit(self, offsets: dict[TopicPartition, Any] | None = None) -> None:
        if offsets is not None:
            offsets = {tp: (om if isinstance(om, OffsetAndMetadata) else OffsetAndMetadata(int(om), "", -1))
                       for tp, om in offsets.items()}
        await self._run(self._c().commit, offsets)

    async def _fetch(self, timeout_ms: float, max_records: int | None) -> None:
        """One poll in the executor; its records land in ``_pending`` even if
        the awaiting task is cancelled meanwhile."""
        c = self._c()
        poll = functools.partial(c.poll, timeout_ms, max_records)
        fut = asyncio.get_running_loop().run_in_executor(self._executor, poll)

        def keep(f: asyncio.Future[dict[TopicPartition, list[ConsumerRecord]]]) -> None:
            if not f.cancelled() and f.exception() is None:
                for recs in f.result().values():
                    self._pending.extend(recs)

        fut.add_done_callback(keep)
        await asyncio.shield(fut)

    async def getone(self, *partitions: TopicPartition) -> ConsumerRecord:
        """The next record (of ``partitions`` if given), waiting as long as needed."""
        wanted = {tuple(p) for p in partitions}
        while True:
            for i, r in enumerate(self._pending):
                if not wanted or (r.topic, r.partition) in wanted:
                    return self._pending.pop(i)
            await self._fetch(1000, None)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: float = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records grouped by partition, waiting up to ``timeout_ms`` for some."""
        if not self._pending:
            await self._fetch(timeout_ms, max_records)
        wanted = {tuple(p) for p in partitions}
        out: dict[TopicPartition, list[ConsumerRecord]] = {}
        keep: list[ConsumerRecord] = []
        n = 0
        for r in self._pending:
            if (wanted and (r.topic, r.partition) not in wanted) or (max_records is not None and n >= max_records):
                keep.append(r)
                continue
            out.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
            n += 1
        self._pending = keep
        return out

    async def run_batches(
        self,
        handler: Callable[[PartitionBatch], Any],
        *,
        max_batches: int | None = None,
        on_error: str = "raise",
    ) -> int:
        """``KafkaConsumer.run_batches`` for asyncio: ``await handler(batch)``
        (a coroutine function, or a plain function) runs on this event loop
        for each ``PartitionBatch``; the batch is committed when it returns.
        Ends on ``stop_batches()``, after ``max_batches`` batches, when the
        handler raises (``on_error="raise"``, re-raised here; the batch is
        not committed and comes again) or when this task is cancelled (the
        batch in hand finishes first). Returns the number of batches handled."""
        c = self._c()
        loop = asyncio.get_running_loop()
        first: dict[tuple[str, int], int] = {}
        for r in self._pending:
            first.setdefault((r.topic, r.partition), r.offset)
        self._pending.clear()
        for (topic, partition), offset in first.items():
            c.seek(TopicPartition(topic, partition), offset)

        async def invoke(batch: PartitionBatch) -> None:
            result = handler(batch)
            if inspect.isawaitable(result):
                await result

        def call(batch: PartitionBatch) -> None:
            asyncio.run_coroutine_threadsafe(invoke(batch), loop).result()

        run = functools.partial(c.run_batches, call, max_batches=max_batches, on_error=on_error)
        fut = loop.run_in_executor(self._executor, run)
        self._batch_loop = True
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            c.stop_batches()
            # The loop ends after the batch in hand; its outcome is not ours to report.
            await asyncio.wait([fut])
            raise
        finally:
            if fut.done():
                self._batch_loop = False
            else:
                fut.add_done_callback(lambda _: setattr(self, "_batch_loop", False))

    def stop_batches(self) -> None:
        """Ends ``run_batches`` after the batch in hand (from its handler or
        another task)."""
        if self._consumer is not None:
            self._consumer.stop_batches()

    def __aiter__(self) -> AIOKafkaConsumer:
        return self

    async def __anext__(self) -> ConsumerRecord:
        if self._consumer is None:
            raise StopAsyncIteration
        return await self.getone()

    async def __aenter__(self) -> AIOKafkaConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


__all__ = ["AIOKafkaProducer", "AIOKafkaConsumer"]
