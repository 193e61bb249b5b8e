"""Value types with kafka-python's names and fields, and ``PartitionBatch``
(what ``KafkaConsumer.run_batches`` hands its handler)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any, NamedTuple


class TopicPartition(NamedTuple):
    """A topic and partition tuple."""

    topic: str
    partition: int


class OffsetAndMetadata(NamedTuple):
    """An offset to commit (the next offset to read) with its metadata string."""

    offset: int
    metadata: str = ""
    leader_epoch: int = -1


class MemberState:
    """A consumer's place in its group (kafka-python's ``MemberState``)."""

    UNJOINED = "<unjoined>"
    REBALANCING = "<rebalancing>"
    STABLE = "<stable>"


class ConsumerGroupMetadata(NamedTuple):
    """A snapshot of a consumer's group membership (``KafkaConsumer.group_metadata()``),
    for ``KafkaProducer.send_offsets_to_transaction``: the group coordinator
    refuses offsets from a member a rebalance fenced (KIP-447). ``state`` is
    ``MemberState.STABLE`` once the consumer holds a generation, else
    ``MemberState.UNJOINED``; the producer ignores it."""

    group_id: str | None = None
    generation_id: int = -1
    member_id: str = ""
    group_instance_id: str | None = None
    state: str = MemberState.UNJOINED


class OffsetAndTimestamp(NamedTuple):
    """The first offset at or after a timestamp (``offsets_for_times``)."""

    offset: int
    timestamp: int
    leader_epoch: int | None = None


class ConsumerRecord(NamedTuple):
    """A single record consumed from a topic partition."""

    topic: str
    partition: int
    leader_epoch: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: Any
    value: Any
    headers: list[tuple[str, bytes | None]]
    checksum: int | None
    serialized_key_size: int
    serialized_value_size: int
    serialized_header_size: int


class RecordMetadata(NamedTuple):
    """Where an acknowledged record was written."""

    topic: str
    partition: int
    topic_partition: TopicPartition
    offset: int
    timestamp: int
    checksum: int | None
    serialized_key_size: int
    serialized_value_size: int
    serialized_header_size: int


class NewTopic:
    """A topic to create (kafka-python's ``NewTopic``)."""

    def __init__(
        self,
        name: str,
        num_partitions: int = -1,
        replication_factor: int = -1,
        replica_assignments: dict[int, list[int]] | None = None,
        topic_configs: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.num_partitions = num_partitions
        self.replication_factor = replication_factor
        self.replica_assignments = replica_assignments or {}
        self.topic_configs = topic_configs or {}

    def __repr__(self) -> str:
        return (
            f"NewTopic(name={self.name!r}, num_partitions={self.num_partitions}, "
            f"replication_factor={self.replication_factor})"
        )


class NewPartitions:
    """A topic's new total partition count (kafka-python's ``NewPartitions``)."""

    def __init__(self, total_count: int, new_assignments: list[list[int]] | None = None) -> None:
        self.total_count = total_count
        self.new_assignments = new_assignments

    def __repr__(self) -> str:
        return f"NewPartitions(total_count={self.total_count})"


class PartitionBatch:
    """Consecutive records of one partition, in offset order, as
    ``KafkaConsumer.run_batches`` hands them to its handler. ``records`` are
    ``ConsumerRecord``s (deserializers applied); ``next_offset`` is what is
    committed once the handler returns."""

    __slots__ = ("topic", "partition", "records")

    def __init__(self, topic: str, partition: int, records: list[ConsumerRecord]) -> None:
        if not records:
            raise ValueError("a PartitionBatch holds at least one record")
        self.topic = topic
        self.partition = partition
        self.records = records

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def first_offset(self) -> int:
        return self.records[0].offset

    @property
    def last_offset(self) -> int:
        return self.records[-1].offset

    @property
    def next_offset(self) -> int:
        """The offset committed after the handler returns (last + 1)."""
        return self.records[-1].offset + 1

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        return (
            f"PartitionBatch(topic={self.topic!r}, partition={self.partition}, "
            f"offsets={self.first_offset}..{self.last_offset}, records={len(self.records)})"
        )

    def to_lambda_event(
        self, event_source_arn: str = "", bootstrap_servers: str = "", event_source: str = "aws:kafka"
    ) -> dict[str, Any]:
        """The batch as the event an AWS Lambda function receives from an MSK
        (``aws:kafka``) or self-managed (``SelfManagedKafka``) Kafka trigger:
        ``{"records": {"<topic>-<partition>": [...]}}`` with base64 keys and
        values and headers as ``[{name: [byte, ...]}]``, so a Lambda handler
        can run unchanged. Keys and values must be ``bytes`` (no
        deserializer), ``str`` (encoded as UTF-8) or None."""

        def b64(v: Any, what: str, offset: int) -> str | None:
            if v is None:
                return None
            if isinstance(v, str):
                v = v.encode()
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"to_lambda_event needs bytes or str, but the {what} at offset {offset} is "
                    f"{type(v).__name__} (a deserializer turned it into that)"
                )
            return base64.b64encode(bytes(v)).decode("ascii")

        records = [
            {
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "timestampType": "LOG_APPEND_TIME" if r.timestamp_type == 1 else "CREATE_TIME",
                "key": b64(r.key, "key", r.offset),
                "value": b64(r.value, "value", r.offset),
                "headers": [{k: list(v) if v is not None else []} for k, v in r.headers],
            }
            for r in self.records
        ]
        return {
            "eventSource": event_source,
            "eventSourceArn": event_source_arn,
            "bootstrapServers": bootstrap_servers,
            "records": {f"{self.topic}-{self.partition}": records},
        }
