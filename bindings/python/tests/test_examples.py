"""examples/python/producer.py and consumer.py, run as a user runs them,
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
