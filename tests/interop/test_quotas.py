"""Client quotas driven by Apache Kafka's own kafka-configs tool.

`kafka.admin.ConfigCommand` (what bin/kafka-configs.sh runs), unchanged, sets,
describes and deletes quotas for users, client ids, both, and the defaults,
through AlterClientQuotas / DescribeClientQuotas, and gets Kafka's errors for
bad input. Then a kafka-python producer under a client id with a
producer_byte_rate quota is held to that rate within 10%, while a producer
with another client id, running at the same time, is not slowed.

The rate is measured as a least-squares slope of acknowledged bytes over
time, after a warm-up (a fresh quota lets a first burst through: Kafka
measures the rate over at least quota.window.num - 1 windows). The module
runs the broker with quota.window.num=2 so that burst is one second's
worth and the test stays short; the maths is the same as with Kafka's
default of 11 (broker/src/quota/rate.rs tests that too).
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from kafka import KafkaProducer

from conftest import CACHE

BROKER_CONFIG = {"quota.window.num": 2, "quota.window.size.seconds": 1}

QUOTA = 400_000  # bytes/s
RECORD = 4096
WARM_UP = 3.0
MEASURE = 9.0


def kafka_configs(bootstrap: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    libs = CACHE / "kafka-4.1.1" / "libs"
    jars = sorted(CACHE.glob("kafka-*/libs"))
    if not libs.exists() and jars:
        libs = jars[-1]
    if not libs.exists():
        pytest.fail(f"no Kafka jars under {CACHE}: run scripts/setup")
    cmd = ["java", "-Xmx256m", "-cp", f"{libs}/*", "kafka.admin.ConfigCommand",
           "--bootstrap-server", bootstrap, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    print(" ".join(args), "->", r.returncode, r.stdout, r.stderr)
    return r


def describe(bootstrap: str, *entity: str) -> str:
    r = kafka_configs(bootstrap, "--describe", *entity)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.timeout(240)
def test_kafka_configs_alters_describes_and_deletes_quotas(broker):
    user = ["--entity-type", "users", "--entity-name", "alice"]
    r = kafka_configs(broker, "--alter", *user, "--add-config",
                      "producer_byte_rate=1048576,consumer_byte_rate=2097152,request_percentage=50")
    assert r.returncode == 0, r.stderr
    out = describe(broker, *user)
    for kv in ("producer_byte_rate=1048576", "consumer_byte_rate=2097152", "request_percentage=50"):
        assert kv in out, out

    both = ["--entity-type", "users", "--entity-name", "alice", "--entity-type", "clients",
            "--entity-name", "app"]
    assert kafka_configs(broker, "--alter", *both, "--add-config",
                         "controller_mutation_rate=10").returncode == 0
    assert "controller_mutation_rate=10" in describe(broker, *both)

    default_client = ["--entity-type", "clients", "--entity-default"]
    assert kafka_configs(broker, "--alter", *default_client, "--add-config",
                         "consumer_byte_rate=123456").returncode == 0
    out = describe(broker, *default_client)
    assert "consumer_byte_rate=123456" in out and "default" in out, out

    # Removing a key leaves the others; removing all removes the entity.
    assert kafka_configs(broker, "--alter", *user, "--delete-config",
                         "request_percentage").returncode == 0
    out = describe(broker, *user)
    assert "request_percentage" not in out and "producer_byte_rate=1048576" in out, out
    assert kafka_configs(broker, "--alter", *user, "--delete-config",
                         "producer_byte_rate,consumer_byte_rate").returncode == 0
    assert "producer_byte_rate" not in describe(broker, *user)
    for entity in (both, default_client):
        kafka_configs(broker, "--alter", *entity, "--delete-config",
                      "controller_mutation_rate" if entity is both else "consumer_byte_rate")

    # Bad input is refused with the broker's reason and changes nothing.
    bad = kafka_configs(broker, "--alter", "--entity-type", "clients", "--entity-name", "app",
                        "--add-config", "producer_byte_rate=-5")
    assert bad.returncode != 0
    assert "producer_byte_rate" not in describe(broker, "--entity-type", "clients", "--entity-name", "app")


def _run_producer(bootstrap: str, topic: str, client_id: str, seconds: float,
                  acked: list[tuple[float, int]], errors: list[BaseException]) -> None:
    try:
        _produce_for(bootstrap, topic, client_id, seconds, acked, errors)
    except BaseException as e:  # noqa: BLE001 - reported by the test
        errors.append(e)


def _produce_for(bootstrap: str, topic: str, client_id: str, seconds: float,
                 acked: list[tuple[float, int]], errors: list[BaseException]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, acks=1,
                             linger_ms=5, batch_size=64 * 1024, max_block_ms=60_000,
                             request_timeout_ms=60_000, retries=5)
    # At most 1 MiB unacknowledged: what is acknowledged follows what the
    # broker lets through, and the final flush is short.
    window = threading.Semaphore(256)
    value = b"x" * RECORD
    lock = threading.Lock()

    def ok(_md):
        with lock:
            acked.append((time.monotonic(), RECORD))
        window.release()

    def failed(e):
        errors.append(e)
        window.release()

    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not window.acquire(timeout=0.5):
                continue
            producer.send(topic, value=value).add_callback(ok).add_errback(failed)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def slope(points: list[tuple[float, int]], start: float, end: float) -> float:
    """Least-squares rate (bytes/s) of the cumulative acknowledged bytes."""
    xs, ys, total = [], [], 0
    for t, n in sorted(points):
        total += n
        if start <= t <= end:
            xs.append(t)
            ys.append(total)
    assert len(xs) >= 10, f"only {len(xs)} acknowledgements in the window"
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    num = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    den = sum((x - mx) ** 2 for x in xs)
    return num / den


@pytest.mark.timeout(180)
def test_producer_is_held_to_its_byte_rate_and_others_are_not(broker, admin, topic_name):
    admin.create_topic(topic_name, 1)
    limited = ["--entity-type", "clients", "--entity-name", "quota-limited"]
    r = kafka_configs(broker, "--alter", *limited, "--add-config", f"producer_byte_rate={QUOTA}")
    assert r.returncode == 0, r.stderr
    assert f"producer_byte_rate={QUOTA}" in describe(broker, *limited)
    # Kafka's brokers apply quota changes asynchronously: give it a moment.
    time.sleep(1.0)
    try:
        slow: list[tuple[float, int]] = []
        fast: list[tuple[float, int]] = []
        errors: list[BaseException] = []
        started = time.monotonic()
        threads = [
            threading.Thread(target=_run_producer,
                             args=(broker, topic_name, "quota-limited", WARM_UP + MEASURE, slow, errors)),
            threading.Thread(target=_run_producer,
                             args=(broker, topic_name, "quota-free", WARM_UP, fast, errors)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a producer did not finish"
        assert not errors, f"producers failed instead of slowing down: {errors[:3]}"

        rate = slope(slow, started + WARM_UP, started + WARM_UP + MEASURE)
        print(f"quota {QUOTA} B/s, limited producer {rate:.0f} B/s")
        assert abs(rate - QUOTA) <= 0.10 * QUOTA, f"held at {rate:.0f} B/s, quota {QUOTA}"

        fast_bytes = sum(n for _, n in fast)
        fast_rate = fast_bytes / max(fast[-1][0] - started, 1e-3)
        print(f"unlimited producer {fast_rate:.0f} B/s")
        assert fast_rate > 3 * QUOTA, f"the other client was slowed: {fast_rate:.0f} B/s"
    finally:
        kafka_configs(broker, "--alter", *limited, "--delete-config", "producer_byte_rate")
