"""examples/python/producer.py, consumer.py, batch_handler.py and
transactional.py, run as a user runs them,
against sluiced and (when SLUICE_TEST_KAFKA_BOOTSTRAP is set) Apache Kafka."""

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"


@pytest.mark.core
def test_examples_round_trip(broker):
    topic = "events-" + uuid.uuid4().hex[:8]
    group = "events-processor-" + uuid.uuid4().hex[:6]
    prod = subprocess.run([sys.executable, str(EXAMPLES / "producer.py"), broker, "2000", topic],
                          capture_output=True, text=True, timeout=120)
    assert prod.returncode == 0, prod.stderr
    assert "sent 2000 events" in prod.stdout
    cons = subprocess.run([sys.executable, str(EXAMPLES / "consumer.py"), broker, "2000", topic, group],
                          capture_output=True, text=True, timeout=120)
    assert cons.returncode == 0, cons.stdout + cons.stderr
    assert "consumed 2000 events" in cons.stdout and "for 50 users" in cons.stdout


@pytest.mark.core
def test_batch_handler_example(broker):
    topic = "events-" + uuid.uuid4().hex[:8]
    prod = subprocess.run([sys.executable, str(EXAMPLES / "producer.py"), broker, "500", topic],
                          capture_output=True, text=True, timeout=120)
    assert prod.returncode == 0, prod.stderr
    group = "events-lambda-" + uuid.uuid4().hex[:6]
    run = subprocess.run([sys.executable, str(EXAMPLES / "batch_handler.py"), broker, "500", topic, group],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "handled 500 events" in run.stdout and "for 50 users" in run.stdout


@pytest.mark.core
def test_transactional_example(broker):
    from test_transactions import serves_transactions

    if not serves_transactions(broker):
        pytest.skip("this broker does not serve transactions yet (no EndTxn in ApiVersions)")
    source = "events-" + uuid.uuid4().hex[:8]
    sink = source + "-upper"
    prod = subprocess.run([sys.executable, str(EXAMPLES / "producer.py"), broker, "500", source],
                          capture_output=True, text=True, timeout=120)
    assert prod.returncode == 0, prod.stderr
    txn = subprocess.run([sys.executable, str(EXAMPLES / "transactional.py"), broker, "500", source, sink,
                          "transformers-" + uuid.uuid4().hex[:6]],
                         capture_output=True, text=True, timeout=120)
    assert txn.returncode == 0, txn.stdout + txn.stderr
    assert "transformed 500 events" in txn.stdout
    cons = subprocess.run([sys.executable, str(EXAMPLES / "consumer.py"), broker, "500", sink,
                           "check-" + uuid.uuid4().hex[:6]],
                          capture_output=True, text=True, timeout=120)
    assert cons.returncode == 0, cons.stdout + cons.stderr
    assert "consumed 500 events" in cons.stdout
