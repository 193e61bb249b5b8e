"""Sluice's Kafka client for Python: kafka-python's API over a Rust core.

    from sluice import KafkaProducer, KafkaConsumer, KafkaAdminClient

``sluice.errors`` mirrors ``kafka.errors``; ``sluice.aio`` has asyncio
clients shaped like aiokafka's.
"""

from . import errors
from ._sluice import __version__
from .admin import KafkaAdminClient
from .consumer import ConsumerRebalanceListener, KafkaConsumer
from .oauth import AbstractTokenProvider
from .producer import FutureRecordMetadata, KafkaProducer
from .structs import (
    ConsumerGroupMetadata,
    ConsumerRecord,
    MemberState,
    NewPartitions,
    NewTopic,
    OffsetAndMetadata,
    OffsetAndTimestamp,
    PartitionBatch,
    RecordMetadata,
    TopicPartition,
)

__all__ = [
    "AbstractTokenProvider",
    "ConsumerGroupMetadata",
    "ConsumerRebalanceListener",
    "ConsumerRecord",
    "FutureRecordMetadata",
    "KafkaAdminClient",
    "KafkaConsumer",
    "KafkaProducer",
    "MemberState",
    "NewPartitions",
    "NewTopic",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
    "PartitionBatch",
    "RecordMetadata",
    "TopicPartition",
    "__version__",
    "errors",
]
