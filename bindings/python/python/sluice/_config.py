"""kafka-python keyword arguments -> Kafka property names for the Rust client.

Each client accepts kafka-python's keywords; each keyword maps onto the Kafka
property the Rust client reads (``linger_ms`` -> ``linger.ms``) with its value
turned into the property's string form. The Rust client validates values and
combinations and names the property in its error. Keywords kafka-python has
that mean nothing here (socket buffer sizes, metrics, api_version) are
accepted and ignored; ones whose meaning cannot be honoured raise
``KafkaConfigurationError``; anything else raises ``TypeError`` naming it, as
Python does for an unexpected keyword argument.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import KafkaConfigurationError

Conv = Callable[[Any], str]


def _ms(v: Any) -> str:
    return str(int(v))


def _int(v: Any) -> str:
    return str(int(v))


def _bool(v: Any) -> str:
    return "true" if v else "false"


def _str(v: Any) -> str:
    return str(v)


def _servers(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        servers = [str(s) for s in v]
    else:
        servers = [s.strip() for s in str(v).split(",")]
    return ",".join(s if ":" in s else s + ":9092" for s in servers if s)


def _acks(v: Any) -> str:
    return "all" if v in ("all", -1, "-1") else str(int(v))


def _compression(v: Any) -> str:
    return "none" if v is None else str(v)


def _assignors(v: Any) -> str:
    items = v if isinstance(v, (list, tuple)) else [v]
    names: list[str] = []
    for a in items:
        name = a if isinstance(a, str) else str(getattr(a, "name", None) or getattr(a, "__name__", a))
        names.append({"RangePartitionAssignor": "range", "RoundRobinPartitionAssignor": "roundrobin",
                      "StickyPartitionAssignor": "cooperative-sticky"}.get(name, name))
    return ",".join(names)


def _hostname_check(v: Any) -> str:
    return "https" if v else ""


COMMON: dict[str, tuple[str, Conv]] = {
    "bootstrap_servers": ("bootstrap.servers", _servers),
    "client_id": ("client.id", _str),
    "request_timeout_ms": ("request.timeout.ms", _ms),
    "retry_backoff_ms": ("retry.backoff.ms", _ms),
    "reconnect_backoff_ms": ("reconnect.backoff.ms", _ms),
    "reconnect_backoff_max_ms": ("reconnect.backoff.max.ms", _ms),
    "metadata_max_age_ms": ("metadata.max.age.ms", _ms),
    "bootstrap_timeout_ms": ("socket.connection.setup.timeout.ms", _ms),
    "security_protocol": ("security.protocol", _str),
    "ssl_cafile": ("ssl.ca.location", _str),
    "ssl_certfile": ("ssl.certificate.location", _str),
    "ssl_keyfile": ("ssl.key.location", _str),
    "ssl_check_hostname": ("ssl.endpoint.identification.algorithm", _hostname_check),
    "sasl_mechanism": ("sasl.mechanism", _str),
    "sasl_plain_username": ("sasl.username", _str),
    "sasl_plain_password": ("sasl.password", _str),
    "sasl_aws_msk_iam_region": ("aws.region", _str),
    "sasl_aws_msk_iam_profile": ("aws.profile", _str),
    "sasl_aws_msk_iam_role_arn": ("aws.role.arn", _str),
    "sasl_aws_msk_iam_role_session_name": ("aws.role.session.name", _str),
    "sasl_aws_msk_iam_role_external_id": ("aws.role.external.id", _str),
    "sasl_aws_msk_iam_sts_region": ("aws.sts.region", _str),
    "allow_auto_create_topics": ("allow.auto.create.topics", _bool),
}

PRODUCER: dict[str, tuple[str, Conv]] = {
    "acks": ("acks", _acks),
    "retries": ("retries", _int),
    "batch_size": ("batch.size", _int),
    "linger_ms": ("linger.ms", _ms),
    "compression_type": ("compression.type", _compression),
    "enable_idempotence": ("enable.idempotence", _bool),
    "max_in_flight_requests_per_connection": ("max.in.flight.requests.per.connection", _int),
    "delivery_timeout_ms": ("delivery.timeout.ms", _ms),
    "buffer_memory": ("buffer.memory", _int),
    "max_block_ms": ("max.block.ms", _ms),
    "max_request_size": ("max.request.size", _int),
    "transactional_id": ("transactional.id", _str),
    "transaction_timeout_ms": ("transaction.timeout.ms", _ms),
}

CONSUMER: dict[str, tuple[str, Conv]] = {
    "group_id": ("group.id", _str),
    "group_instance_id": ("group.instance.id", _str),
    "auto_offset_reset": ("auto.offset.reset", _str),
    "enable_auto_commit": ("enable.auto.commit", _bool),
    "auto_commit_interval_ms": ("auto.commit.interval.ms", _ms),
    "max_poll_records": ("max.poll.records", _int),
    "max_poll_interval_ms": ("max.poll.interval.ms", _ms),
    "session_timeout_ms": ("session.timeout.ms", _ms),
    "heartbeat_interval_ms": ("heartbeat.interval.ms", _ms),
    "fetch_min_bytes": ("fetch.min.bytes", _int),
    "fetch_max_bytes": ("fetch.max.bytes", _int),
    "fetch_max_wait_ms": ("fetch.max.wait.ms", _ms),
    "max_partition_fetch_bytes": ("max.partition.fetch.bytes", _int),
    "partition_assignment_strategy": ("partition.assignment.strategy", _assignors),
    "isolation_level": ("isolation.level", _str),
    "check_crcs": ("check.crcs", _bool),
}

# kafka-python keywords with no effect on this client (socket tuning, metrics,
# version probing: the Rust client negotiates versions itself).
IGNORED = {
    "api_version", "api_version_auto_timeout_ms", "client_dns_lookup", "connections_max_idle_ms",
    "receive_buffer_bytes", "send_buffer_bytes", "socket_options", "receive_message_max_bytes",
    "metric_reporters", "metrics_enabled", "metrics_num_samples", "metrics_sample_window_ms",
    "metric_group_prefix", "selector", "exclude_internal_topics", "enable_incremental_fetch_sessions",
    "client_rack", "kafka_client", "ssl_crlfile", "ssl_ciphers", "sasl_kerberos_name",
    "sasl_kerberos_service_name", "sasl_kerberos_domain_name", "default_offset_commit_callback",
}

# Keywords this client cannot honour: using them is an error, not a silent change.
UNSUPPORTED = {
    "partitioner": "custom partitioners are not supported (the Java client's murmur2 partitioner is used)",
    "ssl_context": "pass ssl_cafile / ssl_certfile / ssl_keyfile instead of an ssl.SSLContext",
    "ssl_password": "encrypted private keys are not supported",
    "proxy_url": "proxies are not supported",
    "socks5_proxy": "proxies are not supported",
}


def build(
    kind: str,
    configs: dict[str, Any],
    extra: dict[str, tuple[str, Conv]],
    python_only: dict[str, Any],
) -> tuple[list[tuple[str, str]], dict[str, Any], Any | None]:
    """Splits ``configs`` into Kafka properties for the native client, the
    Python-only settings (serializers, consumer_timeout_ms ...; defaults from
    ``python_only``) and the OAUTHBEARER token provider."""
    props: list[tuple[str, str]] = []
    local = dict(python_only)
    token_provider = None
    for name, value in configs.items():
        if name in python_only:
            local[name] = value
        elif name == "sasl_oauth_token_provider":
            token_provider = value
        elif name in COMMON or name in extra:
            if value is None:
                continue
            prop, conv = COMMON.get(name) or extra[name]
            props.append((prop, conv(value)))
        elif name in IGNORED:
            continue
        elif name in UNSUPPORTED:
            if value is not None:
                raise KafkaConfigurationError(f"{name}: {UNSUPPORTED[name]}")
        else:
            raise TypeError(f"{kind}() got an unexpected keyword argument '{name}'")
    if token_provider is not None and not callable(getattr(token_provider, "token", None)):
        raise KafkaConfigurationError("sasl_oauth_token_provider must have a token() method")
    return props, local, token_provider
