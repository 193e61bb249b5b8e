"""Exactly-once consume-transform-produce with kafka-python's transactional
API; only the import line says sluice. Each polled batch is written,
upper-cased, to the output topic in one transaction together with the
consumer's offsets, so a crash never leaves half a batch visible or its
offsets committed.

    python examples/python/transactional.py [BOOTSTRAP] [EXPECTED] [INPUT] [OUTPUT] [GROUP]

Stops after EXPECTED records (0: forever) or when nothing came for 30 s.
BOOTSTRAP defaults to $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092.
"""

import os
import sys

from sluice import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from sluice.errors import ProducerFencedError

bootstrap = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
expected = int(sys.argv[2]) if len(sys.argv) > 2 else 0
source = sys.argv[3] if len(sys.argv) > 3 else "application-events"
sink = sys.argv[4] if len(sys.argv) > 4 else "application-events-upper"
group = sys.argv[5] if len(sys.argv) > 5 else "events-transformers"

consumer = KafkaConsumer(
    source,
    bootstrap_servers=bootstrap.split(","),
    group_id=group,
    auto_offset_reset="earliest",
    enable_auto_commit=False,  # offsets are committed by the transactions
    isolation_level="read_committed",
    consumer_timeout_ms=30000,
)
# One transactional_id per instance of the application: a restarted
# instance with the same id fences the old one.
producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), transactional_id=f"{group}-transformer")
producer.init_transactions()

done = transactions = idle = 0
while (expected == 0 or done < expected) and idle < 60:
    batches = consumer.poll(timeout_ms=500)
    if not batches:
        idle += 1
        continue
    idle = 0
    producer.begin_transaction()
    offsets, first = {}, {}
    count = 0
    for tp, records in batches.items():
        for r in records:
            producer.send(sink, r.value.upper(), key=r.key)
        key = TopicPartition(tp.topic, tp.partition)
        first[key] = records[0].offset
        offsets[key] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        count += len(records)
    try:
        producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
        producer.commit_transaction()
    except ProducerFencedError:
        raise  # a newer instance took over: stop
    except Exception as e:  # the transaction failed: nothing of it is visible
        print(f"transaction failed ({e}); aborting and retrying the batch", file=sys.stderr)
        producer.abort_transaction()
        for tp, offset in first.items():
            consumer.seek(tp, offset)
        continue
    done += count
    transactions += 1

consumer.close()
producer.close()
print(f"transformed {done} events in {transactions} transactions")
