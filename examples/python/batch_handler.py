"""An AWS Lambda function for an MSK trigger, run outside Lambda: the
function below is Lambda code, unchanged; sluice's ``run_batches`` plays
the event source mapping. Each call gets one partition's records in offset
order; the batch is committed when the function returns, and when it
raises nothing is committed and the same batch is delivered again (here
after a backoff, as Lambda retries it).

    python examples/python/batch_handler.py [BOOTSTRAP] [EXPECTED] [TOPIC] [GROUP]

Handles the keyed JSON events examples/python/producer.py sends until
EXPECTED arrived (0: until Ctrl-C). BOOTSTRAP defaults to
$KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092.
"""

import base64
import json
import os
import sys
import threading

from sluice import KafkaConsumer

bootstrap = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
expected = int(sys.argv[2]) if len(sys.argv) > 2 else 0
topic = sys.argv[3] if len(sys.argv) > 3 else "application-events"
group = sys.argv[4] if len(sys.argv) > 4 else "events-lambda"

per_user: dict[str, int] = {}
handled = 0


def lambda_handler(event, context):
    """What the function behind an MSK trigger receives: records per
    "<topic>-<partition>", keys and values base64-encoded."""
    global handled
    for records in event["records"].values():
        for record in records:
            payload = json.loads(base64.b64decode(record["value"]))
            per_user[payload["user"]] = per_user.get(payload["user"], 0) + 1
            handled += 1
    return {"batchSize": sum(len(r) for r in event["records"].values())}


consumer = KafkaConsumer(
    topic,
    bootstrap_servers=bootstrap.split(","),
    group_id=group,
    client_id="events-lambda",
    auto_offset_reset="earliest",
    enable_auto_commit=False,  # run_batches commits each handled batch itself
    max_poll_records=100,  # the mapping's BatchSize
)
# Nothing after 60 s: stop rather than wait forever.
idle = threading.Event()
watchdog = threading.Timer(60, idle.set)
watchdog.start()


def on_batch(batch):
    global watchdog
    lambda_handler(batch.to_lambda_event(bootstrap_servers=bootstrap), None)
    watchdog.cancel()
    watchdog = threading.Timer(60, idle.set)
    watchdog.start()
    if expected and handled >= expected:
        consumer.stop_batches()


try:
    batches = consumer.run_batches(on_batch, stop=idle, on_error="retry")
except KeyboardInterrupt:
    batches = None
finally:
    watchdog.cancel()
    consumer.close()
print(f"handled {handled} events from {topic} for {len(per_user)} users in {batches} batches")
sys.exit(0 if not expected or handled >= expected else 1)
