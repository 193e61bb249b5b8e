"""sluice.aio: aiokafka-shaped asyncio producer and consumer."""

import asyncio
import json
import uuid

import pytest

from sluice import TopicPartition
from sluice.aio import AIOKafkaConsumer, AIOKafkaProducer


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.mark.core
def test_produce_and_consume_with_asyncio(broker, topic):
    async def main():
        async with AIOKafkaProducer(bootstrap_servers=broker, value_serializer=lambda v: json.dumps(v).encode(),
                                    linger_ms=5) as producer:
            futs = [await producer.send(topic, {"i": i}, key=b"k%d" % i) for i in range(20)]
            md = await producer.send_and_wait(topic, {"i": 20}, key=b"k20")
            assert md.topic == topic and md.offset >= 0
            mds = await asyncio.gather(*futs)
            assert all(m.offset >= 0 for m in mds)
            await producer.flush()

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, group_id="aio-" + uuid.uuid4().hex[:8],
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    value_deserializer=json.loads)
        await consumer.start()
        try:
            first = await consumer.getone()
            seen = {first.value["i"]}
            while len(seen) < 21:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, recs in batch.items():
                    assert isinstance(tp, TopicPartition)
                    seen.update(r.value["i"] for r in recs)
            assert seen == set(range(21))
            await consumer.commit()
            for tp in consumer.assignment():
                assert await consumer.committed(tp) == await consumer.position(tp)
        finally:
            await consumer.stop()

    run(main())


def test_async_iteration_and_cancelled_getone_loses_nothing(broker, topic):
    async def main():
        producer = AIOKafkaProducer(bootstrap_servers=broker)
        await producer.start()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest")
        await consumer.start()
        consumer.assign([TopicPartition(topic, 0)])
        # A getone that times out (nothing there yet) must not lose records it fetched later.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(consumer.getone(), 0.2)
        for i in range(5):
            await producer.send_and_wait(topic, b"%d" % i, partition=0)
        await producer.stop()
        got = []
        async for r in consumer:
            got.append(r.value)
            if len(got) == 5:
                break
        assert got == [b"0", b"1", b"2", b"3", b"4"]
        await consumer.stop()

    run(main())


def test_errors_reach_the_awaiting_task(broker, topic):
    from sluice import errors

    async def main():
        async with AIOKafkaProducer(bootstrap_servers=broker, max_request_size=4_000_000, batch_size=4_000_000) as p:
            with pytest.raises(errors.MessageSizeTooLargeError):
                await p.send_and_wait(topic, b"x" * 2_000_000, partition=0)

    run(main())
