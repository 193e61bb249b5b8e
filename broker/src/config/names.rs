//! Kafka's property names, each spelled once. The topic-level ones are what
//! CreateTopics, DescribeConfigs and (Incremental)AlterConfigs carry and what
//! a topic's overrides are keyed by; the broker-level ones are the config
//! file's keys and what DescribeConfigs reports for the broker. Code that
//! reads, validates or reports a property names it through these constants;
//! [`super::topic::TOPIC_CONFIGS`] describes each topic-level one.

// Topic-level properties (min.insync.replicas is also a broker property).
pub const CLEANUP_POLICY: &str = "cleanup.policy";
pub const COMPRESSION_TYPE: &str = "compression.type";
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";
pub const FILE_DELETE_DELAY_MS: &str = "file.delete.delay.ms";
pub const FLUSH_MESSAGES: &str = "flush.messages";
pub const FLUSH_MS: &str = "flush.ms";
pub const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
pub const LOCAL_RETENTION_BYTES: &str = "local.retention.bytes";
pub const LOCAL_RETENTION_MS: &str = "local.retention.ms";
pub const MAX_COMPACTION_LAG_MS: &str = "max.compaction.lag.ms";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const MESSAGE_TIMESTAMP_AFTER_MAX_MS: &str = "message.timestamp.after.max.ms";
pub const MESSAGE_TIMESTAMP_BEFORE_MAX_MS: &str = "message.timestamp.before.max.ms";
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
pub const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
pub const PREALLOCATE: &str = "preallocate";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const RETENTION_MS: &str = "retention.ms";
pub const SEGMENT_BYTES: &str = "segment.bytes";
pub const SEGMENT_INDEX_BYTES: &str = "segment.index.bytes";
pub const SEGMENT_MS: &str = "segment.ms";
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

// Broker-level properties.
pub const NODE_ID: &str = "node.id";
pub const BROKER_ID: &str = "broker.id";
pub const LISTENERS: &str = "listeners";
pub const ADVERTISED_LISTENERS: &str = "advertised.listeners";
pub const LISTENER_SECURITY_PROTOCOL_MAP: &str = "listener.security.protocol.map";
pub const SSL_KEYSTORE_TYPE: &str = "ssl.keystore.type";
pub const SSL_TRUSTSTORE_TYPE: &str = "ssl.truststore.type";
pub const SSL_KEYSTORE_LOCATION: &str = "ssl.keystore.location";
pub const SSL_KEY_LOCATION: &str = "ssl.key.location";
pub const SSL_TRUSTSTORE_LOCATION: &str = "ssl.truststore.location";
pub const SSL_CLIENT_AUTH: &str = "ssl.client.auth";
pub const SASL_ENABLED_MECHANISMS: &str = "sasl.enabled.mechanisms";
pub const SASL_MECHANISM_INTER_BROKER_PROTOCOL: &str = "sasl.mechanism.inter.broker.protocol";
pub const SASL_MECHANISM_CONTROLLER_PROTOCOL: &str = "sasl.mechanism.controller.protocol";
pub const CONNECTIONS_MAX_REAUTH_MS: &str = "connections.max.reauth.ms";
pub const SASL_SERVER_MAX_RECEIVE_SIZE: &str = "sasl.server.max.receive.size";
pub const LOG_DIRS: &str = "log.dirs";
pub const LOG_DIR: &str = "log.dir";
pub const NUM_SHARDS: &str = "num.shards";
pub const CLUSTER_ID: &str = "cluster.id";
pub const NUM_PARTITIONS: &str = "num.partitions";
pub const DEFAULT_REPLICATION_FACTOR: &str = "default.replication.factor";
pub const AUTO_CREATE_TOPICS_ENABLE: &str = "auto.create.topics.enable";
pub const DELETE_TOPIC_ENABLE: &str = "delete.topic.enable";
pub const MESSAGE_MAX_BYTES: &str = "message.max.bytes";
pub const SOCKET_REQUEST_MAX_BYTES: &str = "socket.request.max.bytes";
pub const LOG_SEGMENT_BYTES: &str = "log.segment.bytes";
pub const LOG_ROLL_MS: &str = "log.roll.ms";
pub const LOG_ROLL_HOURS: &str = "log.roll.hours";
pub const LOG_RETENTION_MS: &str = "log.retention.ms";
pub const LOG_RETENTION_MINUTES: &str = "log.retention.minutes";
pub const LOG_RETENTION_HOURS: &str = "log.retention.hours";
pub const LOG_RETENTION_BYTES: &str = "log.retention.bytes";
pub const LOG_RETENTION_CHECK_INTERVAL_MS: &str = "log.retention.check.interval.ms";
pub const LOG_INDEX_INTERVAL_BYTES: &str = "log.index.interval.bytes";
pub const LOG_CLEANUP_POLICY: &str = "log.cleanup.policy";
pub const LOG_CLEANER_ENABLE: &str = "log.cleaner.enable";
pub const LOG_CLEANER_DEDUPE_BUFFER_SIZE: &str = "log.cleaner.dedupe.buffer.size";
pub const LOG_CLEANER_IO_MAX_BYTES_PER_SECOND: &str = "log.cleaner.io.max.bytes.per.second";
pub const LOG_CLEANER_BACKOFF_MS: &str = "log.cleaner.backoff.ms";
pub const LOG_CLEANER_MIN_CLEANABLE_RATIO: &str = "log.cleaner.min.cleanable.ratio";
pub const LOG_CLEANER_MIN_COMPACTION_LAG_MS: &str = "log.cleaner.min.compaction.lag.ms";
pub const LOG_CLEANER_MAX_COMPACTION_LAG_MS: &str = "log.cleaner.max.compaction.lag.ms";
pub const LOG_CLEANER_DELETE_RETENTION_MS: &str = "log.cleaner.delete.retention.ms";
pub const LOG_MESSAGE_TIMESTAMP_TYPE: &str = "log.message.timestamp.type";
pub const FLUSH_POLICY: &str = "flush.policy";
pub const LOG_FLUSH_INTERVAL_MS: &str = "log.flush.interval.ms";
pub const OFFSETS_TOPIC_NUM_PARTITIONS: &str = "offsets.topic.num.partitions";
pub const OFFSETS_TOPIC_REPLICATION_FACTOR: &str = "offsets.topic.replication.factor";
pub const TRANSACTION_STATE_LOG_REPLICATION_FACTOR: &str =
    "transaction.state.log.replication.factor";
pub const TRANSACTION_STATE_LOG_MIN_ISR: &str = "transaction.state.log.min.isr";
pub const TRANSACTION_STATE_LOG_NUM_PARTITIONS: &str = "transaction.state.log.num.partitions";
pub const TRANSACTION_STATE_LOG_SEGMENT_BYTES: &str = "transaction.state.log.segment.bytes";
pub const TRANSACTION_MAX_TIMEOUT_MS: &str = "transaction.max.timeout.ms";
pub const TRANSACTIONAL_ID_EXPIRATION_MS: &str = "transactional.id.expiration.ms";
pub const TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS: &str =
    "transaction.abort.timed.out.transaction.cleanup.interval.ms";
pub const TRANSACTION_REMOVE_EXPIRED_TRANSACTION_CLEANUP_INTERVAL_MS: &str =
    "transaction.remove.expired.transaction.cleanup.interval.ms";
pub const OFFSETS_RETENTION_MINUTES: &str = "offsets.retention.minutes";
pub const GROUP_INITIAL_REBALANCE_DELAY_MS: &str = "group.initial.rebalance.delay.ms";
pub const GROUP_MIN_SESSION_TIMEOUT_MS: &str = "group.min.session.timeout.ms";
pub const GROUP_MAX_SESSION_TIMEOUT_MS: &str = "group.max.session.timeout.ms";
pub const GROUP_MAX_SIZE: &str = "group.max.size";
pub const CONNECTIONS_MAX_IDLE_MS: &str = "connections.max.idle.ms";
pub const PRODUCER_ID_EXPIRATION_MS: &str = "producer.id.expiration.ms";
pub const MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS: &str =
    "max.incremental.fetch.session.cache.slots";
pub const MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS: &str =
    "min.incremental.fetch.session.eviction.ms";
pub const METRICS_LISTEN: &str = "metrics.listen";

// KRaft cluster properties.
pub const PROCESS_ROLES: &str = "process.roles";
pub const CONTROLLER_QUORUM_VOTERS: &str = "controller.quorum.voters";
pub const CONTROLLER_QUORUM_BOOTSTRAP_SERVERS: &str = "controller.quorum.bootstrap.servers";
pub const CONTROLLER_LISTENER_NAMES: &str = "controller.listener.names";
pub const INTER_BROKER_LISTENER_NAME: &str = "inter.broker.listener.name";
pub const BROKER_RACK: &str = "broker.rack";
pub const REPLICA_LAG_TIME_MAX_MS: &str = "replica.lag.time.max.ms";
pub const BROKER_SESSION_TIMEOUT_MS: &str = "broker.session.timeout.ms";
pub const BROKER_HEARTBEAT_INTERVAL_MS: &str = "broker.heartbeat.interval.ms";
pub const METADATA_LOG_DIR: &str = "metadata.log.dir";
pub const CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS: &str = "controller.quorum.election.timeout.ms";
pub const CONTROLLER_QUORUM_FETCH_TIMEOUT_MS: &str = "controller.quorum.fetch.timeout.ms";
pub const AUTO_LEADER_REBALANCE_ENABLE: &str = "auto.leader.rebalance.enable";
pub const LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS: &str = "leader.imbalance.check.interval.seconds";
pub const LEADER_IMBALANCE_PER_BROKER_PERCENTAGE: &str = "leader.imbalance.per.broker.percentage";
pub const SHARDS_PIN_CORES: &str = "shards.pin.cores";
pub const REPLICA_FETCH_WAIT_MAX_MS: &str = "replica.fetch.wait.max.ms";
pub const REPLICA_FETCH_MIN_BYTES: &str = "replica.fetch.min.bytes";
pub const REPLICA_FETCH_MAX_BYTES: &str = "replica.fetch.max.bytes";
pub const REPLICA_FETCH_RESPONSE_MAX_BYTES: &str = "replica.fetch.response.max.bytes";
pub const REPLICA_FETCH_BACKOFF_MS: &str = "replica.fetch.backoff.ms";
pub const REPLICA_SOCKET_TIMEOUT_MS: &str = "replica.socket.timeout.ms";
pub const REPLICA_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS: &str =
    "replica.high.watermark.checkpoint.interval.ms";
pub const QUOTA_WINDOW_NUM: &str = "quota.window.num";
pub const QUOTA_WINDOW_SIZE_SECONDS: &str = "quota.window.size.seconds";
// Sluice's own: cluster-wide caps an operator sets (MSK Serverless's limits).
pub const QUOTA_CLUSTER_PRODUCER_BYTE_RATE: &str = "quota.cluster.producer.byte.rate";
pub const QUOTA_CLUSTER_CONSUMER_BYTE_RATE: &str = "quota.cluster.consumer.byte.rate";
pub const QUOTA_CLUSTER_MAX_PARTITIONS: &str = "quota.cluster.max.partitions";
