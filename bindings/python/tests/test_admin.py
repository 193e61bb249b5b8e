"""KafkaAdminClient: topics, partitions, groups, cluster."""

import time
import uuid

import pytest

from sluice import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewPartitions, NewTopic, TopicPartition, errors


@pytest.mark.core
def test_topic_lifecycle(broker):
    name = "adm-" + uuid.uuid4().hex[:10]
    admin = KafkaAdminClient(bootstrap_servers=broker, client_id="py-admin")
    assert admin.create_topics([NewTopic(name, 2, 1, topic_configs={"retention.ms": "3600000"})]) == {name: None}
    with pytest.raises(errors.TopicAlreadyExistsError, match="TOPIC_ALREADY_EXISTS"):
        admin.create_topics([NewTopic(name, 2, 1)])
    res = admin.create_topics([NewTopic(name, 2, 1)], raise_errors=False)
    assert isinstance(res[name], errors.TopicAlreadyExistsError)
    assert name in admin.list_topics()
    admin.create_partitions({name: NewPartitions(4)})
    deadline = time.monotonic() + 30  # Kafka propagates the new count asynchronously
    while True:
        (desc,) = admin.describe_topics([name])
        if len(desc["partitions"]) == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert desc["topic"] == name and desc["error_code"] == 0 and len(desc["partitions"]) == 4
    cluster = admin.describe_cluster()
    assert cluster["brokers"] and "host" in cluster["brokers"][0]
    assert admin.delete_topics([name]) == {name: None}
    admin.close()


def test_groups(broker, topic):
    g = "adm-g-" + uuid.uuid4().hex[:8]
    p = KafkaProducer(bootstrap_servers=broker)
    p.send(topic, b"x", partition=0).get(30)
    p.close()
    c = KafkaConsumer(bootstrap_servers=broker, group_id=g, auto_offset_reset="earliest", enable_auto_commit=False)
    c.assign([TopicPartition(topic, 0)])
    while not c.poll(timeout_ms=500):
        pass
    c.commit()
    admin = KafkaAdminClient(bootstrap_servers=broker)
    assert g in [gid for gid, _ in admin.list_consumer_groups()]
    offsets = admin.list_consumer_group_offsets(g)
    assert offsets[TopicPartition(topic, 0)].offset == 1
    (d,) = admin.describe_consumer_groups([g])
    assert d["group_id"] == g
    c.close()
