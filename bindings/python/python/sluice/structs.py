"""Value types with kafka-python's names and fields."""

from __future__ import annotations

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
