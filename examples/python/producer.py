"""Keyed JSON events to Kafka, as an MSK user writes them with kafka-python;
only the import line says sluice.

    python examples/python/producer.py [BOOTSTRAP] [COUNT] [TOPIC]

BOOTSTRAP defaults to $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092. For MSK with
IAM add: security_protocol="SASL_SSL", sasl_mechanism="AWS_MSK_IAM" (region
from AWS_REGION), or sasl_mechanism="OAUTHBEARER" with
sasl_oauth_token_provider=<an aws-msk-iam-sasl-signer provider>.
"""

import json
import os
import sys
import time

from sluice import KafkaProducer
from sluice.errors import KafkaError

bootstrap = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
topic = sys.argv[3] if len(sys.argv) > 3 else "application-events"

producer = KafkaProducer(
    bootstrap_servers=bootstrap.split(","),
    client_id="events-producer",
    key_serializer=lambda k: k.encode("utf-8"),
    value_serializer=lambda v: json.dumps(v).encode("utf-8"),
    acks="all",
    retries=5,
    batch_size=65536,
    linger_ms=10,
    compression_type="gzip",
)


def on_error(exc):
    print(f"delivery failed: {exc}", file=sys.stderr)


futures = []
for i in range(count):
    user = f"user-{12345 + i % 50}"
    event = {"user": user, "action": "page_view", "seq": i, "at": int(time.time() * 1000)}
    futures.append(producer.send(topic, key=user, value=event).add_errback(on_error))

producer.flush(timeout=60)
failed = 0
for f in futures:
    try:
        f.get(timeout=60)
    except KafkaError as e:
        failed += 1
last = futures[-1].get(timeout=60) if futures else None
producer.close(timeout=30)
if last is not None:
    print(f"sent {count - failed} events to {topic}; last at partition {last.partition} offset {last.offset}")
sys.exit(1 if failed else 0)
