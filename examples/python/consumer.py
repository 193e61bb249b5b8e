"""A consumer group reading keyed JSON events, as an MSK user writes it with
kafka-python; only the import line says sluice.

    python examples/python/consumer.py [BOOTSTRAP] [EXPECTED] [TOPIC] [GROUP]

Reads until EXPECTED events arrived (0: forever) or nothing came for 30 s.
BOOTSTRAP defaults to $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092.
"""

import json
import os
import sys

from sluice import KafkaConsumer

bootstrap = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
expected = int(sys.argv[2]) if len(sys.argv) > 2 else 0
topic = sys.argv[3] if len(sys.argv) > 3 else "application-events"
group = sys.argv[4] if len(sys.argv) > 4 else "events-processor"

consumer = KafkaConsumer(
    topic,
    bootstrap_servers=bootstrap.split(","),
    group_id=group,
    client_id="events-consumer",
    auto_offset_reset="earliest",
    enable_auto_commit=True,
    auto_commit_interval_ms=1000,
    max_poll_records=500,
    key_deserializer=lambda k: k.decode("utf-8") if k is not None else None,
    value_deserializer=lambda v: json.loads(v.decode("utf-8")),
    consumer_timeout_ms=30000,
)

seen = 0
per_user = {}
for message in consumer:
    event = message.value
    per_user[message.key] = per_user.get(message.key, 0) + 1
    seen += 1
    if expected and seen >= expected:
        break

consumer.commit()
consumer.close()
print(f"consumed {seen} events from {topic} for {len(per_user)} users")
sys.exit(0 if not expected or seen >= expected else 1)
