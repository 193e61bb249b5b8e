"""Errors and configuration: exception classes per Kafka error code, Rust
errors arriving as the matching exception, keyword validation."""

import pytest

import sluice
from sluice import KafkaAdminClient, KafkaConsumer, KafkaProducer, _sluice, errors


def test_every_kafka_error_code_has_a_class():
    for code, name, retriable in _sluice.kafka_error_codes():
        cls = errors.for_code(code)
        assert cls.errno == code, name
        assert cls.message == name
        assert cls.retriable == retriable, name
        assert issubclass(cls, errors.BrokerResponseError)


def test_kafka_python_names():
    assert errors.for_code(3) is errors.UnknownTopicOrPartitionError
    assert errors.for_code(29) is errors.TopicAuthorizationFailedError
    assert issubclass(errors.TopicAuthorizationFailedError, errors.AuthorizationError)
    assert errors.for_code(6) is errors.NotLeaderForPartitionError
    assert errors.NotLeaderOrFollowerError is errors.NotLeaderForPartitionError
    assert errors.for_code(36) is errors.TopicAlreadyExistsError
    assert errors.UnknownTopicOrPartitionError.retriable
    assert errors.KafkaTimeoutError.retriable
    assert issubclass(errors.NoBrokersAvailable, errors.KafkaError)


def test_unknown_keyword_is_named():
    with pytest.raises(TypeError, match="linger_mss"):
        KafkaProducer(bootstrap_servers="127.0.0.1:1", linger_mss=5)
    with pytest.raises(TypeError, match="group_idd"):
        KafkaConsumer(bootstrap_servers="127.0.0.1:1", group_idd="g")
    with pytest.raises(TypeError, match="acks"):
        KafkaAdminClient(bootstrap_servers="127.0.0.1:1", acks="all")


def test_invalid_value_names_the_property():
    with pytest.raises(errors.KafkaConfigurationError, match="compression.type"):
        KafkaProducer(bootstrap_servers="127.0.0.1:1", compression_type="brotli")
    with pytest.raises(errors.KafkaConfigurationError, match="auto.offset.reset"):
        KafkaConsumer(bootstrap_servers="127.0.0.1:1", auto_offset_reset="sometimes")
    # transactional_id is supported now; transactions without idempotence are not.
    with pytest.raises(errors.KafkaConfigurationError, match="transactional.id"):
        KafkaProducer(bootstrap_servers="127.0.0.1:1", transactional_id="t", enable_idempotence=False)
    with pytest.raises(errors.KafkaConfigurationError, match="partitioner"):
        KafkaProducer(bootstrap_servers="127.0.0.1:1", partitioner=object())
    with pytest.raises(errors.KafkaConfigurationError, match="sasl.oauthbearer.token.provider|token"):
        KafkaProducer(bootstrap_servers="127.0.0.1:1", security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
                      sasl_oauth_token_provider=object())


def test_no_brokers_available():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the client connects
    with pytest.raises(errors.NoBrokersAvailable):
        KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=2000, bootstrap_timeout_ms=1000)


@pytest.mark.core
def test_broker_error_arrives_as_its_class(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker)
    with pytest.raises(errors.UnknownTopicOrPartitionError) as e:
        admin.delete_topics(["no-such-topic-here"])
    assert "UNKNOWN_TOPIC_OR_PARTITION" in str(e.value)
    assert e.value.errno == 3


def test_version_and_exports():
    assert isinstance(sluice.__version__, str)
    for name in ["KafkaProducer", "KafkaConsumer", "KafkaAdminClient", "NewTopic", "NewPartitions", "TopicPartition",
                 "OffsetAndMetadata", "ConsumerRecord", "RecordMetadata"]:
        assert hasattr(sluice, name)


def test_java_client_adjustments(broker):
    # An unset delivery.timeout.ms grows with request_timeout_ms, as in Java.
    p = KafkaProducer(bootstrap_servers=broker, request_timeout_ms=150000)
    p.close()
    with pytest.raises(errors.KafkaConfigurationError, match="delivery.timeout.ms"):
        KafkaProducer(bootstrap_servers=broker, request_timeout_ms=150000, delivery_timeout_ms=120000)
    c = KafkaConsumer(bootstrap_servers=broker, consumer_timeout_ms=None, group_id=None)
    c.close()
