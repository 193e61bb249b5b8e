"""The Rust examples (examples/rust/producer.rs and consumer.rs) run against
the broker under test: the producer sends keyed JSON events to
`application-events` with acks=all and gzip, and the consumer group reads
every one back."""
import json
import os
from pathlib import Path

import pytest

from conftest import run_tool

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = Path(os.environ.get("SLUICE_EXAMPLES_DIR", ROOT / "target" / "release" / "examples"))


@pytest.mark.timeout(180)
def test_rust_producer_and_consumer_examples(broker):
    for name in ("producer", "consumer"):
        if not (EXAMPLES / name).exists():
            pytest.fail(f"{EXAMPLES / name} is not built (cargo build --release -p sluice-client --examples)")
    p = run_tool([str(EXAMPLES / "producer"), broker, "500"], timeout=120)
    assert p.returncode == 0, p.stderr
    c = run_tool([str(EXAMPLES / "consumer"), broker, "500"], timeout=120)
    assert c.returncode == 0, c.stderr
    events = [json.loads(line.split(" ", 2)[2]) for line in c.stdout.splitlines()
              if line.startswith("application-events-")]
    assert sorted(e["seq"] for e in events) == list(range(500))
    # Per key (user), events arrive in the order they were sent.
    last = {}
    for e in events:
        assert e["seq"] > last.get(e["user"], -1)
        last[e["user"]] = e["seq"]
