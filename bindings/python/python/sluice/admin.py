"""``KafkaAdminClient`` with kafka-python's keywords and method names over
the native admin client."""

from __future__ import annotations

from typing import Any

from . import _config, _sluice
from .structs import NewPartitions, NewTopic, OffsetAndMetadata, TopicPartition


class KafkaAdminClient:
    """Topics, partitions, consumer groups and cluster metadata."""

    def __init__(self, **configs: Any) -> None:
        props, _, token_provider = _config.build("KafkaAdminClient", configs, {}, {})
        self._native = _sluice.Admin(props, token_provider)

    @staticmethod
    def _raise_first(
        results: list[tuple[str, BaseException | None]], raise_errors: bool
    ) -> dict[str, BaseException | None]:
        if raise_errors:
            for _, err in results:
                if err is not None:
                    raise err
        return dict(results)

    def create_topics(self, new_topics: list[NewTopic], timeout_ms: int | None = None,
                      validate_only: bool = False, raise_errors: bool = True) -> dict[str, BaseException | None]:
        """Creates topics; raises the first failure (``TopicAlreadyExistsError``
        ...) unless ``raise_errors=False``. Returns {topic: exception or None}."""
        specs = [(t.name, t.num_partitions, t.replication_factor, [(k, str(v)) for k, v in t.topic_configs.items()])
                 for t in new_topics]
        return self._raise_first(self._native.create_topics(specs, validate_only), raise_errors)

    def delete_topics(self, topics: list[str], timeout_ms: int | None = None,
                      raise_errors: bool = True) -> dict[str, BaseException | None]:
        return self._raise_first(self._native.delete_topics(list(topics)), raise_errors)

    def create_partitions(self, topic_partitions: dict[str, NewPartitions], timeout_ms: int | None = None,
                          validate_only: bool = False, raise_errors: bool = True) -> dict[str, BaseException | None]:
        results: list[tuple[str, BaseException | None]] = []
        for topic, np in topic_partitions.items():
            try:
                self._native.create_partitions(topic, np.total_count)
                results.append((topic, None))
            except Exception as e:  # noqa: BLE001 - reported per topic like kafka-python
                results.append((topic, e))
        return self._raise_first(results, raise_errors)

    def list_topics(self) -> list[str]:
        return self._native.list_topics(False)

    def describe_topics(self, topics: list[str] | None = None) -> list[dict[str, Any]]:
        return self._native.describe_topics(list(topics or []))

    def describe_cluster(self) -> dict[str, Any]:
        d = self._native.describe_cluster()
        d["brokers"] = [{"node_id": n, "host": h, "port": p, "rack": r} for n, h, p, r in d["brokers"]]
        return d

    def list_consumer_groups(self, broker_ids: list[int] | None = None) -> list[tuple[str, str]]:
        return self._native.list_groups()

    def describe_consumer_groups(self, group_ids: list[str], group_coordinator_id: int | None = None,
                                 include_authorized_operations: bool = False) -> list[dict[str, Any]]:
        return self._native.describe_groups(list(group_ids))

    def list_consumer_group_offsets(
        self, group_id: str, group_coordinator_id: int | None = None, partitions: list[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        out = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for t, p, o in self._native.list_group_offsets(group_id)
        }
        if partitions is not None:
            wanted = {TopicPartition(*p) for p in partitions}
            out = {tp: om for tp, om in out.items() if tp in wanted}
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> KafkaAdminClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["KafkaAdminClient"]
