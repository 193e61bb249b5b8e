"""Bad input over raw sockets: the broker answers what Kafka answers, closes
only the offending connection, and keeps serving everyone else.

Requests are written by hand (kafka_wire.py). Every case here was checked
against Apache Kafka 4.1 (SLUICE_INTEROP_BROKER=kafka) and behaves the same
there, so none is skipped for Kafka. What Kafka does, for the record:
- size prefix > socket.request.max.bytes: InvalidReceiveException, connection closed;
- unparseable header or body: InvalidRequestException, connection closed;
- unknown API key: connection closed (no response: the header cannot be parsed);
- ApiVersions at an unsupported version: an ApiVersions *v0* response with
  UNSUPPORTED_VERSION and ApiVersions' own version range, so the client can retry;
- batch with a bad CRC: Produce answers CORRUPT_MESSAGE for that partition;
- Produce to an unknown topic: UNKNOWN_TOPIC_OR_PARTITION (Produce never
  auto-creates; auto-create is off here anyway).
"""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import kafka_wire as w

BROKER_CONFIG = {"auto.create.topics.enable": False}

pytestmark = pytest.mark.timeout(120)


def assert_serves_api_versions(conn: w.Conn, correlation_id: int) -> None:
    resp = w.parse_api_versions_v0(conn.request(w.api_versions_v0_request(correlation_id)))
    assert resp.correlation_id == correlation_id
    assert resp.error_code == w.NONE
    for key in (w.API_PRODUCE, w.API_METADATA, w.API_VERSIONS):
        assert key in resp.api_keys, f"ApiVersions does not list API key {key}"


def assert_closed(conn: w.Conn, what: str) -> None:
    assert conn.wait_closed(), f"broker did not close the connection after {what}"


def assert_new_client_works(bootstrap: str, admin) -> None:
    """A fresh kafka-python client can produce and read back a record."""
    topic = admin.create_topic(f"after-bad-input-{time.monotonic_ns()}", 1)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=20000)
    try:
        md = producer.send(topic, key=b"k", value=b"still alive").get(timeout=30)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=20000, request_timeout_ms=30000)
    try:
        tp = TopicPartition(topic, md.partition)
        consumer.assign([tp])
        consumer.seek(tp, md.offset)
        got = next(iter(consumer))
        assert (got.key, got.value) == (b"k", b"still alive")
    finally:
        consumer.close(autocommit=False)


def test_oversized_frame_closes_only_that_connection(broker, admin):
    with w.Conn(broker) as bystander:
        assert_serves_api_versions(bystander, 1)
        with w.Conn(broker) as bad:
            bad.send(w.i32(104857600 + 1))  # one byte over socket.request.max.bytes' default
            bad.send_until_closed(b"\x00" * 64)
            assert_closed(bad, "a size prefix over 100 MiB")
        with w.Conn(broker) as bad:
            bad.send_until_closed(w.i32(2**31 - 1))
            assert_closed(bad, "a 2 GiB size prefix")
        assert_serves_api_versions(bystander, 2)
    with w.Conn(broker) as fresh:
        assert_serves_api_versions(fresh, 3)
    assert_new_client_works(broker, admin)


@pytest.mark.parametrize("payload", [
    pytest.param(b"\x00\x03", id="truncated-header"),
    pytest.param(w.request_header_v2(w.API_METADATA, 12, 5) + b"\xde\xad\xbe\xef" * 8, id="metadata-garbage-body"),
    pytest.param(w.request_header_v1(w.API_PRODUCE, 8, 6) + b"\xff" * 40, id="produce-garbage-body"),
])
def test_garbage_in_a_valid_frame_closes_the_connection(broker, admin, payload):
    with w.Conn(broker) as bystander:
        assert_serves_api_versions(bystander, 1)
        with w.Conn(broker) as bad:
            bad.send_frame(payload)
            assert_closed(bad, "garbage inside a frame")
        assert_serves_api_versions(bystander, 2)
    assert_new_client_works(broker, admin)


def test_api_versions_unknown_version_gets_v0_error_response(broker):
    with w.Conn(broker) as conn:
        # v99 uses the flexible (v3+) request layout, header v2.
        raw = conn.request(w.api_versions_flexible_request(99, 42))
        resp = w.parse_api_versions_v0(raw)
        assert resp.correlation_id == 42
        assert resp.error_code == w.UNSUPPORTED_VERSION, f"error code {resp.error_code}, raw {raw.hex()}"
        # Kafka lists ApiVersions' own supported range so the client can pick one.
        assert w.API_VERSIONS in resp.api_keys, f"no ApiVersions entry in {resp.api_keys}"
        lo, hi = resp.api_keys[w.API_VERSIONS]
        assert lo == 0 and hi >= 3, (lo, hi)
        # The connection stays usable for a supported version.
        assert_serves_api_versions(conn, 43)


def test_unknown_api_key_closes_the_connection(broker):
    with w.Conn(broker) as bystander:
        with w.Conn(broker) as bad:
            bad.send_frame(w.request_header_v1(12345, 0, 9))
            assert_closed(bad, "an unknown API key")
        assert_serves_api_versions(bystander, 1)


def _log_end(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        tp = TopicPartition(topic, 0)
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close(autocommit=False)


@pytest.mark.parametrize("version", [3, 8])
def test_produce_with_corrupt_crc_gets_corrupt_message(broker, admin, topic_name, version):
    topic = admin.create_topic(topic_name, 1)
    values = [json.dumps({"n": i}).encode() for i in range(5)]
    batch = w.record_batch([(b"key", v) for v in values])
    with w.Conn(broker) as conn:
        # Control: the same batch, intact, is accepted (so the encoder is right).
        corr, parts = w.parse_produce_response(version, conn.request(w.produce_request(version, 10, topic, 0, batch)))
        assert corr == 10
        assert [(p.topic, p.partition, p.error_code, p.base_offset) for p in parts] == [(topic, 0, w.NONE, 0)]

        corrupt = bytearray(batch)
        corrupt[-5] ^= 0x5A  # inside the last record's value: covered by the CRC
        corr, parts = w.parse_produce_response(version, conn.request(
            w.produce_request(version, 11, topic, 0, bytes(corrupt))))
        assert corr == 11
        assert [(p.partition, p.error_code) for p in parts] == [(0, w.CORRUPT_MESSAGE)], parts

        # The connection is still good, and the log did not grow.
        assert_serves_api_versions(conn, 12)
    assert _log_end(broker, topic) == len(values)
    consumer = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, consumer_timeout_ms=20000,
                             auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition(topic, 0)])
        got = [m.value for _, m in zip(range(len(values)), consumer)]
        assert got == values
    finally:
        consumer.close(autocommit=False)


def test_produce_to_unknown_topic(broker):
    topic = f"no-such-topic-{time.monotonic_ns()}"
    batch = w.record_batch([(b"k", b"v")])
    with w.Conn(broker) as conn:
        corr, parts = w.parse_produce_response(8, conn.request(w.produce_request(8, 20, topic, 0, batch)))
        assert corr == 20
        assert [(p.topic, p.partition, p.error_code) for p in parts] == [(topic, 0, w.UNKNOWN_TOPIC_OR_PARTITION)]
        assert_serves_api_versions(conn, 21)
