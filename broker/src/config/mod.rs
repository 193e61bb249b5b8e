//! Broker configuration: one struct holding every setting `sluiced` reads,
//! named after Apache Kafka's property names wherever Kafka has one, plus the
//! per-topic configuration model (overrides on top of broker defaults) that
//! CreateTopics, DescribeConfigs and AlterConfigs speak.
//!
//! The config file is TOML whose keys are Kafka property names. Both the
//! quoted form (`"num.partitions" = 3`) and TOML's dotted form
//! (`num.partitions = 3`, which TOML reads as nested tables) are accepted: the
//! file is flattened back into dotted names before it is applied. An unknown
//! or ill-typed property is an error naming it.
//!
//! - [`jaas`]: the `sasl.jaas.config` properties (what this broker logs in
//!   to other brokers with), kept apart so their passwords are never listed.
//! - [`names`]: every Kafka property name, spelled once.
//! - [`topic`]: the topic-level properties' descriptors (type, broker
//!   synonym, default, validation).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

pub mod jaas;
pub mod names;
pub mod topic;

/// Kafka's four security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn from_name(s: &str) -> Option<SecurityProtocol> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
    /// Kafka's numeric id of the protocol (as in broker registrations).
    pub fn kafka_id(self) -> i16 {
        match self {
            SecurityProtocol::Plaintext => 0,
            SecurityProtocol::Ssl => 1,
            SecurityProtocol::SaslPlaintext => 2,
            SecurityProtocol::SaslSsl => 3,
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One `listeners` entry, `NAME://HOST:PORT`. NAME is a security protocol or
/// a name that `listener.security.protocol.map` maps onto one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub addr: SocketAddr,
}

/// One `advertised.listeners` entry: what Metadata tells clients that
/// connected on listener `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedListener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// `ssl.client.auth`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// TLS settings shared by the SSL and SASL_SSL listeners (Kafka's PEM
/// keystore form).
#[derive(Debug, Clone, Default)]
pub struct SslSettings {
    /// `ssl.keystore.location`: PEM file with the certificate chain, and the
    /// private key unless `ssl.key.location` names another file.
    pub keystore_location: Option<PathBuf>,
    /// `ssl.key.location`: PEM private key (when not in the keystore file).
    pub key_location: Option<PathBuf>,
    /// `ssl.truststore.location`: PEM CA certificates client certificates
    /// are verified against (mTLS).
    pub truststore_location: Option<PathBuf>,
    /// `ssl.client.auth`
    pub client_auth: Option<ClientAuth>,
}

/// How appends are made durable before produce requests are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fdatasync before acknowledging acks=1/all, with group commit.
    Always,
    /// Acknowledge after the write reaches the page cache; sync every
    /// `log.flush.interval.ms` in the background (Kafka's default behaviour).
    Interval,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("unknown configuration property `{0}`")]
    Unknown(String),
    #[error("invalid value for `{name}`: {reason}")]
    Invalid { name: String, reason: String },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

/// Every broker-level setting. Field docs name the Kafka property.
/// The transaction coordinator's settings, named after Kafka's.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionSettings {
    /// `transaction.state.log.num.partitions` (50).
    pub state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (3), capped at the
    /// brokers there are, like the offsets topic's.
    pub state_log_replication_factor: i16,
    /// `transaction.state.log.min.isr` (2), capped at the replication factor.
    pub state_log_min_isr: i32,
    /// `transaction.state.log.segment.bytes` (100 MiB).
    pub state_log_segment_bytes: i64,
    /// `transaction.max.timeout.ms` (900000).
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms` (7 days).
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (10000).
    pub abort_check_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms` (1 hour).
    pub expiry_check_interval_ms: i64,
}

impl Default for TransactionSettings {
    fn default() -> Self {
        TransactionSettings {
            state_log_num_partitions: 50,
            state_log_replication_factor: 3,
            state_log_min_isr: 2,
            state_log_segment_bytes: 100 << 20,
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_check_interval_ms: 10_000,
            expiry_check_interval_ms: 3_600_000,
        }
    }
}

/// Client quota settings: Kafka's quota windows and the operator's
/// cluster-wide caps (Sluice's own `quota.cluster.*`, after MSK
/// Serverless's per-cluster limits).
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaSettings {
    /// `quota.window.num` (11): samples a quota rate is measured over.
    pub window_num: u32,
    /// `quota.window.size.seconds` (1): each sample's length.
    pub window_size_seconds: u32,
    /// `quota.cluster.producer.byte.rate`: bytes/s produced to the whole
    /// cluster (each broker takes its share: the cap over live brokers).
    pub cluster_producer_byte_rate: Option<f64>,
    /// `quota.cluster.consumer.byte.rate`: bytes/s fetched by consumers
    /// from the whole cluster, shared the same way.
    pub cluster_consumer_byte_rate: Option<f64>,
    /// `quota.cluster.max.partitions`: partitions of non-internal topics
    /// the cluster may hold; CreateTopics and CreatePartitions beyond it
    /// get POLICY_VIOLATION.
    pub cluster_max_partitions: Option<u32>,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            window_num: 11,
            window_size_seconds: 1,
            cluster_producer_byte_rate: None,
            cluster_consumer_byte_rate: None,
            cluster_max_partitions: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`
    pub node_id: i32,
    /// `listeners`
    pub listeners: Vec<ListenerSpec>,
    /// `advertised.listeners`; a listener without an entry advertises its
    /// bound address (127.0.0.1 for a wildcard bind).
    pub advertised_listeners: Vec<AdvertisedListener>,
    /// `listener.security.protocol.map` (listener name -> protocol); the
    /// four protocol names always map onto themselves.
    pub listener_security_protocol_map: BTreeMap<String, SecurityProtocol>,
    /// `ssl.*`
    pub ssl: SslSettings,
    /// `sasl.enabled.mechanisms`
    pub sasl_enabled_mechanisms: Vec<String>,
    /// `sasl.mechanism.inter.broker.protocol` (Kafka's default GSSAPI is
    /// refused when the inter-broker listener uses SASL).
    pub sasl_mechanism_inter_broker_protocol: String,
    /// `sasl.mechanism.controller.protocol` (likewise, for the CONTROLLER
    /// listener).
    pub sasl_mechanism_controller_protocol: String,
    /// `sasl.jaas.config` and `listener.name.<l>.<mechanism>.sasl.jaas.config`:
    /// what this broker logs in to others with.
    pub sasl_jaas: jaas::JaasConfigs,
    /// `sasl.server.max.receive.size`: the largest frame a connection on a
    /// SASL listener may send before it has authenticated.
    pub sasl_server_max_receive_size: usize,
    /// `connections.max.reauth.ms` (KIP-368); 0 = sessions live until the
    /// credential expires (IAM tokens) or forever.
    pub connections_max_reauth_ms: i64,
    /// The `[auth]` table of the config file (users, IAM credentials,
    /// policies), built by [`crate::auth`].
    pub auth: Option<toml::Table>,
    /// `log.dirs`
    pub data_dir: PathBuf,
    /// Number of shards (one io_uring runtime per core).
    pub shards: usize,
    /// `cluster.id`; generated and stored in meta.properties when absent.
    pub cluster_id: Option<String>,
    /// `num.partitions`
    pub num_partitions: i32,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable`
    pub delete_topic_enable: bool,
    /// `message.max.bytes`
    pub message_max_bytes: i32,
    /// `socket.request.max.bytes`
    pub socket_request_max_bytes: usize,
    /// `log.segment.bytes`
    pub log_segment_bytes: i64,
    /// `log.roll.ms`
    pub log_roll_ms: i64,
    /// `log.retention.ms`
    pub log_retention_ms: i64,
    /// `log.retention.bytes`
    pub log_retention_bytes: i64,
    /// `log.retention.check.interval.ms`
    pub log_retention_check_interval_ms: u64,
    /// `log.index.interval.bytes`
    pub log_index_interval_bytes: usize,
    /// `log.cleanup.policy`
    pub log_cleanup_policy: String,
    /// `log.message.timestamp.type`
    pub log_message_timestamp_type: String,
    /// `log.cleaner.enable`: run the log cleaner (compacted topics).
    pub log_cleaner_enable: bool,
    /// `log.cleaner.dedupe.buffer.size`: memory for one shard cleaner's
    /// key map (Kafka's is shared by its cleaner threads; here each shard
    /// has one cleaner and this whole budget).
    pub log_cleaner_dedupe_buffer_size: u64,
    /// `log.cleaner.io.max.bytes.per.second`: read+write budget per cleaner.
    pub log_cleaner_io_max_bytes_per_second: f64,
    /// `log.cleaner.backoff.ms`: the cleaner's sleep when nothing is cleanable.
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.min.cleanable.ratio` (topic `min.cleanable.dirty.ratio`).
    pub log_cleaner_min_cleanable_ratio: f64,
    /// `log.cleaner.min.compaction.lag.ms` (topic `min.compaction.lag.ms`).
    pub log_cleaner_min_compaction_lag_ms: i64,
    /// `log.cleaner.max.compaction.lag.ms` (topic `max.compaction.lag.ms`).
    pub log_cleaner_max_compaction_lag_ms: i64,
    /// `log.cleaner.delete.retention.ms` (topic `delete.retention.ms`).
    pub log_cleaner_delete_retention_ms: i64,
    /// `min.insync.replicas`
    pub min_insync_replicas: i32,
    /// `flush.policy`: always | interval (Sluice's own switch).
    pub flush_policy: FlushPolicy,
    /// `log.flush.interval.ms`, used by `flush.policy = interval`.
    pub log_flush_interval_ms: u64,
    /// `offsets.topic.num.partitions`
    pub offsets_topic_num_partitions: i32,
    /// `offsets.retention.minutes`
    pub offsets_retention_minutes: i32,
    /// `group.initial.rebalance.delay.ms`
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.min.session.timeout.ms`
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size`
    pub group_max_size: i32,
    /// `connections.max.idle.ms`
    pub connections_max_idle_ms: u64,
    /// `transactional.id.expiration.ms` doubles as the idle expiry of
    /// idempotent producer state, as in Kafka (`producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
    /// `max.incremental.fetch.session.cache.slots`: fetch sessions (KIP-227)
    /// the broker keeps, all shards together (0: none).
    pub max_incremental_fetch_session_cache_slots: usize,
    /// `min.incremental.fetch.session.eviction.ms`: how long a fetch session
    /// is safe from eviction by a more valuable one, and how long unused
    /// before any new session may take its slot.
    pub min_incremental_fetch_session_eviction_ms: i64,
    /// `--metrics`: Prometheus endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Properties explicitly set in the config file (for DescribeConfigs'
    /// STATIC_BROKER_CONFIG source).
    pub explicit: BTreeMap<String, String>,
    /// The KRaft settings; `None` unless `controller.quorum.voters` (or
    /// `process.roles`) is set: then this node is part of a cluster.
    pub cluster: ClusterSettings,
    /// `offsets.topic.replication.factor`, capped at the number of voters so
    /// a cluster smaller than three still gets its `__consumer_offsets`.
    pub offsets_topic_replication_factor: i16,
    /// `unclean.leader.election.enable`
    pub unclean_leader_election_enable: bool,
    /// The transaction coordinator's settings (`transaction.*`).
    pub transactions: TransactionSettings,
    /// Quota windows and cluster caps.
    pub quotas: QuotaSettings,
    /// `shards.pin.cores` (Sluice's own): pin each shard thread to a core.
    /// Off lets several brokers share a small machine.
    pub shards_pin_cores: bool,
}

/// What a node of a KRaft cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessRole {
    Broker,
    Controller,
}

/// Kafka's KRaft properties. Empty `voters` means a single-node sluiced with
/// its metadata in `__cluster_metadata.json`.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `process.roles`
    pub process_roles: Vec<ProcessRole>,
    /// `controller.quorum.voters`: node id -> `host:port`.
    pub voters: BTreeMap<i32, String>,
    /// `controller.quorum.bootstrap.servers`: `host:port` of some
    /// controllers, which a broker-only node asks for the voters.
    pub bootstrap_servers: Vec<String>,
    /// `controller.listener.names`
    pub controller_listener_names: Vec<String>,
    /// `inter.broker.listener.name`; the first non-controller listener when
    /// unset.
    pub inter_broker_listener_name: Option<String>,
    /// `broker.rack`
    pub rack: Option<String>,
    /// `replica.lag.time.max.ms`
    pub replica_lag_time_max_ms: i64,
    /// `broker.session.timeout.ms`: a broker whose heartbeats stop for this
    /// long is fenced and its leaderships move.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`
    pub broker_heartbeat_interval_ms: u64,
    /// `controller.quorum.election.timeout.ms`
    pub election_timeout_ms: u64,
    /// `controller.quorum.fetch.timeout.ms`: how long a voter goes without
    /// hearing from the leader before it campaigns (at the latest).
    pub fetch_timeout_ms: u64,
    /// `auto.leader.rebalance.enable`: the controller moves leaderships
    /// back to preferred replicas (the first of each assignment).
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`
    pub leader_imbalance_check_interval_seconds: u64,
    /// `leader.imbalance.per.broker.percentage`: a broker's share of
    /// preferred partitions it does not lead above which they move back.
    pub leader_imbalance_per_broker_percentage: u32,
    /// `metadata.log.dir`: where the controller's Raft log lives
    /// (`<log.dirs>/__cluster_metadata-0` when unset, as in Kafka).
    pub metadata_log_dir: Option<PathBuf>,
    /// `replica.fetch.wait.max.ms`
    pub replica_fetch_wait_max_ms: u64,
    /// `replica.fetch.min.bytes`
    pub replica_fetch_min_bytes: i32,
    /// `replica.fetch.max.bytes` (per partition)
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.fetch.backoff.ms`
    pub replica_fetch_backoff_ms: u64,
    /// `replica.socket.timeout.ms`
    pub replica_socket_timeout_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`: how often the high
    /// watermarks go to `replication-offset-checkpoint` (and at shutdown).
    pub replica_high_watermark_checkpoint_interval_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            process_roles: Vec::new(),
            voters: BTreeMap::new(),
            bootstrap_servers: Vec::new(),
            controller_listener_names: Vec::new(),
            inter_broker_listener_name: None,
            rack: None,
            replica_lag_time_max_ms: 30_000,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            election_timeout_ms: 1_000,
            fetch_timeout_ms: 2_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            leader_imbalance_per_broker_percentage: 10,
            metadata_log_dir: None,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_min_bytes: 1,
            replica_fetch_max_bytes: 1 << 20,
            replica_fetch_response_max_bytes: 10 << 20,
            replica_fetch_backoff_ms: 1_000,
            replica_socket_timeout_ms: 30_000,
            replica_high_watermark_checkpoint_interval_ms: 5_000,
        }
    }
}

impl ClusterSettings {
    /// Whether this node runs in KRaft cluster mode at all.
    pub fn enabled(&self) -> bool {
        !self.voters.is_empty()
            || !self.bootstrap_servers.is_empty()
            || !self.process_roles.is_empty()
    }

    pub fn is_controller(&self) -> bool {
        self.process_roles.contains(&ProcessRole::Controller)
    }

    pub fn is_broker(&self) -> bool {
        self.process_roles.contains(&ProcessRole::Broker)
    }

    /// Whether `listener` is a controller listener (not served to clients).
    pub fn is_controller_listener(&self, listener: &str) -> bool {
        self.controller_listener_names.iter().any(|n| n == listener)
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listeners: vec![ListenerSpec {
                name: "PLAINTEXT".into(),
                addr: SocketAddr::from(([127, 0, 0, 1], 9092)),
            }],
            advertised_listeners: Vec::new(),
            listener_security_protocol_map: BTreeMap::new(),
            ssl: SslSettings::default(),
            sasl_enabled_mechanisms: DEFAULT_SASL_MECHANISMS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            connections_max_reauth_ms: 0,
            sasl_mechanism_inter_broker_protocol: "GSSAPI".into(),
            sasl_mechanism_controller_protocol: "GSSAPI".into(),
            sasl_jaas: Default::default(),
            sasl_server_max_receive_size: 524_288,
            auth: None,
            data_dir: PathBuf::from("data"),
            shards: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cluster_id: None,
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            delete_topic_enable: true,
            message_max_bytes: 1_048_588,
            socket_request_max_bytes: 104_857_600,
            log_segment_bytes: 1 << 30,
            log_roll_ms: 7 * 24 * 3600 * 1000,
            log_retention_ms: 7 * 24 * 3600 * 1000,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 300_000,
            log_index_interval_bytes: 4096,
            log_cleanup_policy: "delete".into(),
            log_message_timestamp_type: "CreateTime".into(),
            log_cleaner_enable: true,
            log_cleaner_dedupe_buffer_size: 128 << 20,
            log_cleaner_io_max_bytes_per_second: f64::MAX,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_min_cleanable_ratio: 0.5,
            log_cleaner_min_compaction_lag_ms: 0,
            log_cleaner_max_compaction_lag_ms: i64::MAX,
            log_cleaner_delete_retention_ms: 86_400_000,
            min_insync_replicas: 1,
            flush_policy: FlushPolicy::Always,
            log_flush_interval_ms: 1000,
            offsets_topic_num_partitions: 50,
            offsets_retention_minutes: 10080,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX,
            connections_max_idle_ms: 600_000,
            producer_id_expiration_ms: 86_400_000,
            max_incremental_fetch_session_cache_slots: 1000,
            min_incremental_fetch_session_eviction_ms: 120_000,
            metrics_listen: None,
            explicit: BTreeMap::new(),
            cluster: ClusterSettings::default(),
            offsets_topic_replication_factor: 3,
            transactions: TransactionSettings::default(),
            quotas: QuotaSettings::default(),
            unclean_leader_election_enable: false,
            shards_pin_cores: true,
        }
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    v.trim().parse::<T>().map_err(|e| ConfigError::Invalid {
        name: name.into(),
        reason: e.to_string(),
    })
}

/// A positive whole number of bytes per second.
fn byte_rate(name: &str, v: &str) -> Result<f64, ConfigError> {
    let n: i64 = parse_num(name, v)?;
    if n <= 0 {
        return Err(ConfigError::Invalid {
            name: name.into(),
            reason: format!("{n} is not a positive byte rate"),
        });
    }
    Ok(n as f64)
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ConfigError::Invalid {
            name: name.into(),
            reason: format!("expected true or false, got `{other}`"),
        }),
    }
}

/// The SASL mechanisms sluiced offers unless `sasl.enabled.mechanisms` says otherwise.
pub const DEFAULT_SASL_MECHANISMS: &[&str] = &[
    "PLAIN",
    "SCRAM-SHA-256",
    "SCRAM-SHA-512",
    "OAUTHBEARER",
    "AWS_MSK_IAM",
];

/// Splits Kafka's `NAME://HOST:PORT` into the listener name (PLAINTEXT when
/// absent) and `HOST:PORT`.
pub fn split_listener_name(v: &str) -> (String, &str) {
    let s = v.trim();
    match s.split_once("://") {
        Some((n, rest)) => (n.trim().to_ascii_uppercase(), rest),
        None => ("PLAINTEXT".to_string(), s),
    }
}

/// Parses `HOST:PORT`, also accepting Kafka's `NAME://HOST:PORT` form (the
/// name is dropped; see [`parse_listener`]).
pub fn parse_host_port(name: &str, v: &str) -> Result<(String, u16), ConfigError> {
    let (_, s) = split_listener_name(v);
    let (host, port) = s.rsplit_once(':').ok_or_else(|| ConfigError::Invalid {
        name: name.into(),
        reason: format!("expected HOST:PORT, got `{v}`"),
    })?;
    let port: u16 = parse_num(name, port)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((
        if host.is_empty() {
            "0.0.0.0".into()
        } else {
            host
        },
        port,
    ))
}

/// Parses one `listeners` entry, `NAME://HOST:PORT` or `HOST:PORT`.
pub fn parse_listener(name: &str, v: &str) -> Result<ListenerSpec, ConfigError> {
    let (listener, _) = split_listener_name(v);
    if listener.is_empty()
        || !listener
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConfigError::Invalid {
            name: name.into(),
            reason: format!("bad listener name in `{v}`"),
        });
    }
    Ok(ListenerSpec {
        name: listener,
        addr: parse_listen(name, v)?,
    })
}

/// Parses one `advertised.listeners` entry.
pub fn parse_advertised(name: &str, v: &str) -> Result<AdvertisedListener, ConfigError> {
    let (listener, _) = split_listener_name(v);
    let (host, port) = parse_host_port(name, v)?;
    Ok(AdvertisedListener {
        name: listener,
        host,
        port,
    })
}

pub fn parse_listen(name: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    let (host, port) = parse_host_port(name, v)?;
    let host = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    let ip: std::net::IpAddr = host.parse().map_err(|_| ConfigError::Invalid {
        name: name.into(),
        reason: format!("`{host}` is not an IP address"),
    })?;
    Ok(SocketAddr::new(ip, port))
}

impl BrokerConfig {
    /// Applies one Kafka-named property.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        if jaas::JaasConfigs::is_jaas_property(name) {
            // Holds a password: kept out of `explicit` (and any listing).
            return self
                .sasl_jaas
                .set(name, value)
                .map_err(|reason| ConfigError::Invalid {
                    name: name.into(),
                    reason,
                });
        }
        match name {
            names::NODE_ID | names::BROKER_ID => self.node_id = parse_num(name, value)?,
            names::LISTENERS => {
                self.listeners = value
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| parse_listener(name, s))
                    .collect::<Result<_, _>>()?;
                if self.listeners.is_empty() {
                    return Err(ConfigError::Invalid {
                        name: name.into(),
                        reason: "no listener given".into(),
                    });
                }
            }
            names::ADVERTISED_LISTENERS => {
                self.advertised_listeners = value
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| parse_advertised(name, s))
                    .collect::<Result<_, _>>()?;
            }
            names::LISTENER_SECURITY_PROTOCOL_MAP => {
                let mut map = BTreeMap::new();
                for pair in value.split(',').filter(|s| !s.trim().is_empty()) {
                    let (l, p) = pair.split_once(':').ok_or_else(|| ConfigError::Invalid {
                        name: name.into(),
                        reason: format!("expected LISTENER:PROTOCOL, got `{pair}`"),
                    })?;
                    let proto =
                        SecurityProtocol::from_name(p).ok_or_else(|| ConfigError::Invalid {
                            name: name.into(),
                            reason: format!("unknown security protocol `{}`", p.trim()),
                        })?;
                    map.insert(l.trim().to_ascii_uppercase(), proto);
                }
                self.listener_security_protocol_map = map;
            }
            names::SSL_KEYSTORE_TYPE | names::SSL_TRUSTSTORE_TYPE => {
                if !value.trim().eq_ignore_ascii_case("PEM") {
                    return Err(ConfigError::Invalid {
                        name: name.into(),
                        reason: format!("only PEM stores are supported, got `{}`", value.trim()),
                    });
                }
            }
            names::SSL_KEYSTORE_LOCATION => {
                self.ssl.keystore_location = Some(PathBuf::from(value.trim()))
            }
            names::SSL_KEY_LOCATION => self.ssl.key_location = Some(PathBuf::from(value.trim())),
            names::SSL_TRUSTSTORE_LOCATION => {
                self.ssl.truststore_location = Some(PathBuf::from(value.trim()))
            }
            names::SSL_CLIENT_AUTH => {
                self.ssl.client_auth = Some(match value.trim().to_ascii_lowercase().as_str() {
                    "none" => ClientAuth::None,
                    "requested" => ClientAuth::Requested,
                    "required" => ClientAuth::Required,
                    other => {
                        return Err(ConfigError::Invalid {
                            name: name.into(),
                            reason: format!("expected none, requested or required, got `{other}`"),
                        })
                    }
                })
            }
            names::SASL_ENABLED_MECHANISMS => {
                let mut mechs = Vec::new();
                for m in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    let m = m.to_ascii_uppercase();
                    if !DEFAULT_SASL_MECHANISMS.contains(&m.as_str()) {
                        return Err(ConfigError::Invalid {
                            name: name.into(),
                            reason: format!(
                                "unsupported SASL mechanism `{m}` (supported: {})",
                                DEFAULT_SASL_MECHANISMS.join(", ")
                            ),
                        });
                    }
                    mechs.push(m);
                }
                self.sasl_enabled_mechanisms = mechs;
            }
            names::SASL_MECHANISM_INTER_BROKER_PROTOCOL => {
                self.sasl_mechanism_inter_broker_protocol = value.trim().to_string()
            }
            names::SASL_MECHANISM_CONTROLLER_PROTOCOL => {
                self.sasl_mechanism_controller_protocol = value.trim().to_string()
            }
            names::CONNECTIONS_MAX_REAUTH_MS => {
                self.connections_max_reauth_ms = parse_num(name, value)?
            }
            names::SASL_SERVER_MAX_RECEIVE_SIZE => {
                self.sasl_server_max_receive_size =
                    positive(name, parse_num::<i32>(name, value)?)? as usize
            }
            names::LOG_DIRS | names::LOG_DIR => {
                self.data_dir = PathBuf::from(value.split(',').next().unwrap_or(value).trim())
            }
            names::NUM_SHARDS => self.shards = parse_num(name, value)?,
            names::CLUSTER_ID => self.cluster_id = Some(value.to_string()),
            names::NUM_PARTITIONS => self.num_partitions = positive(name, parse_num(name, value)?)?,
            names::DEFAULT_REPLICATION_FACTOR => {
                self.default_replication_factor = parse_num(name, value)?
            }
            names::AUTO_CREATE_TOPICS_ENABLE => {
                self.auto_create_topics_enable = parse_bool(name, value)?
            }
            names::DELETE_TOPIC_ENABLE => self.delete_topic_enable = parse_bool(name, value)?,
            names::MESSAGE_MAX_BYTES => {
                self.message_max_bytes = positive(name, parse_num(name, value)?)?
            }
            names::SOCKET_REQUEST_MAX_BYTES => {
                self.socket_request_max_bytes = parse_num(name, value)?
            }
            names::LOG_SEGMENT_BYTES => {
                let v: i64 = parse_num(name, value)?;
                if v < 14 {
                    return Err(ConfigError::Invalid {
                        name: name.into(),
                        reason: "must be at least 14".into(),
                    });
                }
                self.log_segment_bytes = v
            }
            names::LOG_ROLL_MS => self.log_roll_ms = parse_num(name, value)?,
            names::LOG_ROLL_HOURS => self.log_roll_ms = parse_num::<i64>(name, value)? * 3_600_000,
            names::LOG_RETENTION_MS => self.log_retention_ms = parse_num(name, value)?,
            names::LOG_RETENTION_MINUTES => {
                self.log_retention_ms = parse_num::<i64>(name, value)? * 60_000
            }
            names::LOG_RETENTION_HOURS => {
                self.log_retention_ms = parse_num::<i64>(name, value)? * 3_600_000
            }
            names::LOG_RETENTION_BYTES => self.log_retention_bytes = parse_num(name, value)?,
            names::LOG_RETENTION_CHECK_INTERVAL_MS => {
                self.log_retention_check_interval_ms = parse_num(name, value)?
            }
            names::LOG_INDEX_INTERVAL_BYTES => {
                self.log_index_interval_bytes = parse_num(name, value)?
            }
            names::LOG_CLEANUP_POLICY => {
                self.log_cleanup_policy = validate_cleanup_policy(name, value)?
            }
            names::LOG_MESSAGE_TIMESTAMP_TYPE => {
                self.log_message_timestamp_type = validate_timestamp_type(name, value)?
            }
            names::LOG_CLEANER_ENABLE => self.log_cleaner_enable = parse_bool(name, value)?,
            names::LOG_CLEANER_DEDUPE_BUFFER_SIZE => {
                self.log_cleaner_dedupe_buffer_size = parse_num(name, value)?
            }
            names::LOG_CLEANER_IO_MAX_BYTES_PER_SECOND => {
                self.log_cleaner_io_max_bytes_per_second = positive_f64(name, value)?
            }
            names::LOG_CLEANER_BACKOFF_MS => self.log_cleaner_backoff_ms = parse_num(name, value)?,
            names::LOG_CLEANER_MIN_CLEANABLE_RATIO => {
                self.log_cleaner_min_cleanable_ratio = validate_dirty_ratio(name, value)?
            }
            names::LOG_CLEANER_MIN_COMPACTION_LAG_MS => {
                self.log_cleaner_min_compaction_lag_ms = parse_num(name, value)?
            }
            names::LOG_CLEANER_MAX_COMPACTION_LAG_MS => {
                self.log_cleaner_max_compaction_lag_ms = positive_i64(name, value)?
            }
            names::LOG_CLEANER_DELETE_RETENTION_MS => {
                self.log_cleaner_delete_retention_ms = parse_num(name, value)?
            }
            names::MIN_INSYNC_REPLICAS => {
                self.min_insync_replicas = positive(name, parse_num(name, value)?)?
            }
            names::FLUSH_POLICY => {
                self.flush_policy = match value.trim() {
                    "always" => FlushPolicy::Always,
                    "interval" => FlushPolicy::Interval,
                    other => {
                        return Err(ConfigError::Invalid {
                            name: name.into(),
                            reason: format!("expected `always` or `interval`, got `{other}`"),
                        })
                    }
                }
            }
            names::LOG_FLUSH_INTERVAL_MS => self.log_flush_interval_ms = parse_num(name, value)?,
            names::OFFSETS_TOPIC_NUM_PARTITIONS => {
                self.offsets_topic_num_partitions = positive(name, parse_num(name, value)?)?
            }
            names::OFFSETS_TOPIC_REPLICATION_FACTOR => {
                let rf: i32 = positive(name, parse_num(name, value)?)?;
                self.offsets_topic_replication_factor =
                    i16::try_from(rf).map_err(|_| ConfigError::Invalid {
                        name: name.into(),
                        reason: format!("{rf} is too large"),
                    })?;
            }
            names::TRANSACTION_STATE_LOG_REPLICATION_FACTOR => {
                let rf: i32 = positive(name, parse_num(name, value)?)?;
                self.transactions.state_log_replication_factor =
                    i16::try_from(rf).map_err(|_| ConfigError::Invalid {
                        name: name.into(),
                        reason: format!("{rf} is too large"),
                    })?;
            }
            names::TRANSACTION_STATE_LOG_MIN_ISR => {
                self.transactions.state_log_min_isr = positive(name, parse_num(name, value)?)?
            }
            names::TRANSACTION_STATE_LOG_NUM_PARTITIONS => {
                self.transactions.state_log_num_partitions =
                    positive(name, parse_num(name, value)?)?
            }
            names::TRANSACTION_STATE_LOG_SEGMENT_BYTES => {
                self.transactions.state_log_segment_bytes =
                    i64::from(positive(name, parse_num(name, value)?)?)
            }
            names::TRANSACTION_MAX_TIMEOUT_MS => {
                self.transactions.max_timeout_ms = positive(name, parse_num(name, value)?)?
            }
            names::TRANSACTIONAL_ID_EXPIRATION_MS => {
                self.transactions.id_expiration_ms =
                    i64::from(positive(name, parse_num(name, value)?)?)
            }
            names::TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS => {
                self.transactions.abort_check_interval_ms =
                    i64::from(positive(name, parse_num(name, value)?)?)
            }
            names::TRANSACTION_REMOVE_EXPIRED_TRANSACTION_CLEANUP_INTERVAL_MS => {
                self.transactions.expiry_check_interval_ms =
                    i64::from(positive(name, parse_num(name, value)?)?)
            }
            names::PROCESS_ROLES => {
                let mut roles = Vec::new();
                for role in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    let role = match role {
                        "broker" => ProcessRole::Broker,
                        "controller" => ProcessRole::Controller,
                        other => {
                            return Err(ConfigError::Invalid {
                                name: name.into(),
                                reason: format!("unknown role '{other}' (broker, controller)"),
                            })
                        }
                    };
                    if !roles.contains(&role) {
                        roles.push(role);
                    }
                }
                self.cluster.process_roles = roles;
            }
            names::CONTROLLER_QUORUM_VOTERS => {
                self.cluster.voters = parse_voters(name, value)?;
            }
            names::CONTROLLER_QUORUM_BOOTSTRAP_SERVERS => {
                self.cluster.bootstrap_servers = parse_bootstrap_servers(name, value)?;
            }
            names::CONTROLLER_LISTENER_NAMES => {
                self.cluster.controller_listener_names = value
                    .split(',')
                    .map(|s| s.trim().to_ascii_uppercase())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            names::INTER_BROKER_LISTENER_NAME => {
                self.cluster.inter_broker_listener_name = Some(value.trim().to_ascii_uppercase())
            }
            names::BROKER_RACK => self.cluster.rack = Some(value.trim().to_string()),
            names::REPLICA_LAG_TIME_MAX_MS => {
                self.cluster.replica_lag_time_max_ms =
                    i64::from(positive(name, parse_num(name, value)?)?)
            }
            names::BROKER_SESSION_TIMEOUT_MS => {
                self.cluster.broker_session_timeout_ms =
                    positive(name, parse_num(name, value)?)? as u64
            }
            names::BROKER_HEARTBEAT_INTERVAL_MS => {
                self.cluster.broker_heartbeat_interval_ms =
                    positive(name, parse_num(name, value)?)? as u64
            }
            names::CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS => {
                self.cluster.election_timeout_ms = positive(name, parse_num(name, value)?)? as u64
            }
            names::CONTROLLER_QUORUM_FETCH_TIMEOUT_MS => {
                self.cluster.fetch_timeout_ms = positive(name, parse_num(name, value)?)? as u64
            }
            names::AUTO_LEADER_REBALANCE_ENABLE => {
                self.cluster.auto_leader_rebalance_enable = parse_bool(name, value)?
            }
            names::LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS => {
                self.cluster.leader_imbalance_check_interval_seconds =
                    positive(name, parse_num(name, value)?)? as u64
            }
            names::LEADER_IMBALANCE_PER_BROKER_PERCENTAGE => {
                let pct: i64 = parse_num(name, value)?;
                if !(0..=100).contains(&pct) {
                    return Err(ConfigError::Invalid {
                        name: name.into(),
                        reason: format!("{pct} is not a percentage (0-100)"),
                    });
                }
                self.cluster.leader_imbalance_per_broker_percentage = pct as u32
            }
            names::METADATA_LOG_DIR => {
                self.cluster.metadata_log_dir = Some(PathBuf::from(value.trim()))
            }
            names::UNCLEAN_LEADER_ELECTION_ENABLE => {
                self.unclean_leader_election_enable = parse_bool(name, value)?
            }
            names::SHARDS_PIN_CORES => self.shards_pin_cores = parse_bool(name, value)?,
            names::REPLICA_FETCH_WAIT_MAX_MS => {
                self.cluster.replica_fetch_wait_max_ms =
                    positive(name, parse_num(name, value)?)? as u64
            }
            names::REPLICA_FETCH_MIN_BYTES => {
                self.cluster.replica_fetch_min_bytes = positive(name, parse_num(name, value)?)?
            }
            names::REPLICA_FETCH_MAX_BYTES => {
                self.cluster.replica_fetch_max_bytes = positive(name, parse_num(name, value)?)?
            }
            names::REPLICA_FETCH_RESPONSE_MAX_BYTES => {
                self.cluster.replica_fetch_response_max_bytes =
                    positive(name, parse_num(name, value)?)?
            }
            names::REPLICA_FETCH_BACKOFF_MS => {
                self.cluster.replica_fetch_backoff_ms =
                    positive(name, parse_num(name, value)?)? as u64
            }
            names::REPLICA_SOCKET_TIMEOUT_MS => {
                self.cluster.replica_socket_timeout_ms =
                    positive(name, parse_num(name, value)?)? as u64
            }
            names::REPLICA_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS => {
                self.cluster.replica_high_watermark_checkpoint_interval_ms =
                    positive(name, parse_num(name, value)?)? as u64
            }
            names::OFFSETS_RETENTION_MINUTES => {
                self.offsets_retention_minutes = parse_num(name, value)?
            }
            names::GROUP_INITIAL_REBALANCE_DELAY_MS => {
                self.group_initial_rebalance_delay_ms = parse_num(name, value)?
            }
            names::GROUP_MIN_SESSION_TIMEOUT_MS => {
                self.group_min_session_timeout_ms = parse_num(name, value)?
            }
            names::GROUP_MAX_SESSION_TIMEOUT_MS => {
                self.group_max_session_timeout_ms = parse_num(name, value)?
            }
            names::GROUP_MAX_SIZE => self.group_max_size = positive(name, parse_num(name, value)?)?,
            names::CONNECTIONS_MAX_IDLE_MS => {
                self.connections_max_idle_ms = parse_num(name, value)?
            }
            names::PRODUCER_ID_EXPIRATION_MS => {
                self.producer_id_expiration_ms = parse_num(name, value)?
            }
            names::MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS => {
                self.max_incremental_fetch_session_cache_slots = parse_num(name, value)?
            }
            names::MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS => {
                self.min_incremental_fetch_session_eviction_ms =
                    non_negative_i64(name, parse_num(name, value)?)?
            }
            names::METRICS_LISTEN => self.metrics_listen = Some(parse_listen(name, value)?),
            names::QUOTA_WINDOW_NUM => {
                self.quotas.window_num = positive(name, parse_num(name, value)?)? as u32
            }
            names::QUOTA_WINDOW_SIZE_SECONDS => {
                self.quotas.window_size_seconds = positive(name, parse_num(name, value)?)? as u32
            }
            names::QUOTA_CLUSTER_PRODUCER_BYTE_RATE => {
                self.quotas.cluster_producer_byte_rate = Some(byte_rate(name, value)?)
            }
            names::QUOTA_CLUSTER_CONSUMER_BYTE_RATE => {
                self.quotas.cluster_consumer_byte_rate = Some(byte_rate(name, value)?)
            }
            names::QUOTA_CLUSTER_MAX_PARTITIONS => {
                self.quotas.cluster_max_partitions =
                    Some(positive(name, parse_num(name, value)?)? as u32)
            }
            _ => return Err(ConfigError::Unknown(name.to_string())),
        }
        self.explicit.insert(name.to_string(), value.to_string());
        Ok(())
    }

    /// The security protocol of listener `name`.
    pub fn protocol_of(&self, name: &str) -> Option<SecurityProtocol> {
        self.listener_security_protocol_map
            .get(name)
            .copied()
            .or_else(|| SecurityProtocol::from_name(name))
    }

    /// Checks the settings that only make sense together: every listener
    /// has a protocol, names are unique, TLS listeners have a keystore, every
    /// advertised listener exists.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, reason: String| ConfigError::Invalid {
            name: name.into(),
            reason,
        };
        let mut seen = std::collections::BTreeSet::new();
        for l in &self.listeners {
            if self.cluster.is_controller_listener(&l.name) {
                if !seen.insert(l.name.as_str()) {
                    return Err(bad(
                        names::LISTENERS,
                        format!("listener name {} is used twice", l.name),
                    ));
                }
                // Its protocol is checked with the cluster settings
                // (`validate_controller_security`): a broker-only node
                // talks to the controllers without listing the listener.
                continue;
            }
            if !seen.insert(l.name.as_str()) {
                return Err(bad(
                    names::LISTENERS,
                    format!("listener name {} is used twice", l.name),
                ));
            }
            let proto = self.protocol_of(&l.name).ok_or_else(|| {
                bad(
                    names::LISTENER_SECURITY_PROTOCOL_MAP,
                    format!(
                        "listener {} is not a security protocol and has no entry",
                        l.name
                    ),
                )
            })?;
            if proto.uses_tls() && self.ssl.keystore_location.is_none() {
                return Err(bad(
                    names::SSL_KEYSTORE_LOCATION,
                    format!(
                        "listener {} uses {} but no keystore is set",
                        l.name,
                        proto.name()
                    ),
                ));
            }
        }
        for a in &self.advertised_listeners {
            if !self.listeners.iter().any(|l| l.name == a.name) {
                return Err(bad(
                    names::ADVERTISED_LISTENERS,
                    format!("{} is not one of the listeners", a.name),
                ));
            }
        }
        self.validate_cluster()
    }

    /// The KRaft checks Kafka makes at start-up, with its property names.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if !c.enabled() {
            return Ok(());
        }
        let bad = |name: &str, reason: String| ConfigError::Invalid {
            name: name.into(),
            reason,
        };
        if c.process_roles.is_empty() {
            return Err(bad(
                names::PROCESS_ROLES,
                "must be set (broker, controller or both) when controller.quorum.voters is".into(),
            ));
        }
        if c.voters.is_empty() && c.bootstrap_servers.is_empty() {
            return Err(bad(
                names::CONTROLLER_QUORUM_VOTERS,
                "must name the controllers when process.roles is set \
                 (or, for a broker-only node, controller.quorum.bootstrap.servers)"
                    .into(),
            ));
        }
        if !c.is_broker() {
            return Err(bad(
                names::PROCESS_ROLES,
                "process.roles=controller alone (a dedicated controller) is not supported yet: \
                 run controllers as process.roles=broker,controller"
                    .into(),
            ));
        }
        if c.is_controller() && c.voters.is_empty() {
            return Err(bad(
                names::CONTROLLER_QUORUM_VOTERS,
                "a controller needs the static voter set (controller.quorum.bootstrap.servers \
                 alone is for broker-only nodes)"
                    .into(),
            ));
        }
        if c.is_controller() {
            if !c.voters.contains_key(&self.node_id) {
                return Err(bad(
                    names::NODE_ID,
                    format!(
                        "node.id {} has the controller role but is not among controller.quorum.voters ({})",
                        self.node_id,
                        c.voters.keys().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if c.controller_listener_names.is_empty() {
                return Err(bad(
                    names::CONTROLLER_LISTENER_NAMES,
                    "must name the controller listener (e.g. CONTROLLER)".into(),
                ));
            }
            let Some(listener) = self.controller_listener() else {
                return Err(bad(
                    names::LISTENERS,
                    format!(
                        "a controller needs a listener named {} (controller.listener.names)",
                        c.controller_listener_names[0]
                    ),
                ));
            };
            let voter = &c.voters[&self.node_id];
            let voter_port = voter
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok());
            if voter_port != Some(listener.addr.port()) {
                return Err(bad(
                    names::CONTROLLER_QUORUM_VOTERS,
                    format!(
                        "this node's voter address {voter} does not match its {} listener {}",
                        listener.name, listener.addr
                    ),
                ));
            }
        } else if c.voters.contains_key(&self.node_id) {
            return Err(bad(
                names::NODE_ID,
                format!(
                    "node.id {} is a voter in controller.quorum.voters but process.roles lacks controller \
                     (a broker-only node needs an id of its own)",
                    self.node_id
                ),
            ));
        }
        if c.is_broker() {
            if !self
                .listeners
                .iter()
                .any(|l| !c.is_controller_listener(&l.name))
            {
                return Err(bad(
                    names::LISTENERS,
                    "a broker needs a listener besides the controller listener".into(),
                ));
            }
            if let Some(name) = &c.inter_broker_listener_name {
                if c.is_controller_listener(name) || !self.listeners.iter().any(|l| &l.name == name)
                {
                    return Err(bad(
                        names::INTER_BROKER_LISTENER_NAME,
                        format!("{name} is not one of this broker's client listeners"),
                    ));
                }
            }
        }
        if c.broker_heartbeat_interval_ms >= c.broker_session_timeout_ms {
            return Err(bad(
                names::BROKER_HEARTBEAT_INTERVAL_MS,
                "must be less than broker.session.timeout.ms".into(),
            ));
        }
        self.validate_controller_security()
    }

    /// The security protocol of the controller quorum's transport: that of
    /// the first `controller.listener.names` entry, which brokers use to
    /// reach the controllers too. An unmapped controller listener means
    /// PLAINTEXT, as in Kafka 4. `None` without controller listener names.
    pub fn controller_protocol(&self) -> Option<SecurityProtocol> {
        let name = self.cluster.controller_listener_names.first()?;
        Some(
            self.protocol_of(name)
                .unwrap_or(SecurityProtocol::Plaintext),
        )
    }

    /// The login this node's controller connections use on a SASL
    /// controller listener: `sasl.mechanism.controller.protocol` with the
    /// credentials of `listener.name.<listener>.<mechanism>.sasl.jaas.config`
    /// (else `sasl.jaas.config`). The error names the property to fix.
    pub fn controller_login(&self) -> Result<jaas::BrokerLogin, String> {
        let listener = self
            .cluster
            .controller_listener_names
            .first()
            .map_or("CONTROLLER", String::as_str);
        jaas::broker_login(
            &self.sasl_jaas,
            listener,
            names::SASL_MECHANISM_CONTROLLER_PROTOCOL,
            &self.sasl_mechanism_controller_protocol,
        )
    }

    /// The login this broker's replica fetchers use on a SASL inter-broker
    /// listener: `sasl.mechanism.inter.broker.protocol` with the listener's
    /// JAAS line, as [`BrokerConfig::controller_login`] for the controller
    /// listener. The error names the property to fix.
    pub fn inter_broker_login(&self, listener: &str) -> Result<jaas::BrokerLogin, String> {
        jaas::broker_login(
            &self.sasl_jaas,
            listener,
            names::SASL_MECHANISM_INTER_BROKER_PROTOCOL,
            &self.sasl_mechanism_inter_broker_protocol,
        )
    }

    /// What the controller transport's protocol needs: TLS a keystore (it
    /// serves) and a truststore (it connects to the other controllers);
    /// SASL a mechanism we log in with and its credentials, and on a
    /// controller that mechanism among those it verifies.
    fn validate_controller_security(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, reason: String| ConfigError::Invalid {
            name: name.into(),
            reason,
        };
        let Some(protocol) = self.controller_protocol() else {
            return Ok(());
        };
        let listener = &self.cluster.controller_listener_names[0];
        if protocol.uses_tls() {
            if self.ssl.keystore_location.is_none() {
                return Err(bad(
                    names::SSL_KEYSTORE_LOCATION,
                    format!(
                        "controller listener {listener} uses {} but no keystore is set \
                         (every node serves the controller transport with it)",
                        protocol.name()
                    ),
                ));
            }
            if self.ssl.truststore_location.is_none() {
                return Err(bad(
                    names::SSL_TRUSTSTORE_LOCATION,
                    format!(
                        "controller listener {listener} uses {} but no truststore is set \
                         (the CA other nodes' certificates are verified against)",
                        protocol.name()
                    ),
                ));
            }
        }
        if protocol.uses_sasl() {
            let login = self
                .controller_login()
                .map_err(|reason| bad(names::SASL_MECHANISM_CONTROLLER_PROTOCOL, reason))?;
            let mechanism = login.mechanism.name();
            if self.cluster.is_controller()
                && !self.sasl_enabled_mechanisms.iter().any(|m| m == mechanism)
            {
                return Err(bad(
                    names::SASL_ENABLED_MECHANISMS,
                    format!(
                        "controller listener {listener} logs in with {mechanism} \
                         (sasl.mechanism.controller.protocol), which is not enabled here ({}): \
                         the controllers could not verify each other",
                        self.sasl_enabled_mechanisms.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The listener the controller quorum binds (KRaft's CONTROLLER).
    pub fn controller_listener(&self) -> Option<&ListenerSpec> {
        let first = self.cluster.controller_listener_names.first()?;
        self.listeners.iter().find(|l| &l.name == first)
    }

    /// Listeners that speak the Kafka protocol to clients and brokers.
    pub fn client_listeners(&self) -> impl Iterator<Item = &ListenerSpec> {
        self.listeners
            .iter()
            .filter(|l| !self.cluster.is_controller_listener(&l.name))
    }

    /// The listener other brokers reach this one on.
    pub fn inter_broker_listener_name(&self) -> Option<&str> {
        match &self.cluster.inter_broker_listener_name {
            Some(name) => Some(name.as_str()),
            None => self.client_listeners().next().map(|l| l.name.as_str()),
        }
    }

    /// Reads a TOML file of Kafka property names.
    pub fn apply_file(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let table: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        let mut table = table;
        // `[auth]` holds structured data (users, credentials, policies), not
        // Kafka properties: it is kept whole for crate::auth to build.
        if let Some(auth) = table.remove("auth") {
            match auth {
                toml::Value::Table(t) => self.auth = Some(t),
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "auth".into(),
                        reason: "must be a table ([auth])".into(),
                    })
                }
            }
        }
        let mut flat = Vec::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for (k, v) in flat {
            self.set(&k, &v)?;
        }
        Ok(())
    }

    /// The broker-level default of a topic-level property, as Kafka derives
    /// topic defaults from `log.*` broker settings.
    pub fn topic_default(&self, name: &str) -> Option<String> {
        topic::topic_config(name).map(|c| c.default_value(self))
    }
}

/// `controller.quorum.voters`: `id@host:port,...`.
pub fn parse_voters(name: &str, value: &str) -> Result<BTreeMap<i32, String>, ConfigError> {
    let mut voters = BTreeMap::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || ConfigError::Invalid {
            name: name.into(),
            reason: format!("entry '{part}' is not id@host:port"),
        };
        let (id, addr) = part.split_once('@').ok_or_else(bad)?;
        let id: i32 = id.trim().parse().map_err(|_| bad())?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if id < 0 || host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(ConfigError::Invalid {
                name: name.into(),
                reason: format!("node {id} is named twice"),
            });
        }
    }
    Ok(voters)
}

/// `controller.quorum.bootstrap.servers`: `host:port,...`.
pub fn parse_bootstrap_servers(name: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let mut servers = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ok = part
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            return Err(ConfigError::Invalid {
                name: name.into(),
                reason: format!("entry '{part}' is not host:port"),
            });
        }
        servers.push(part.to_string());
    }
    Ok(servers)
}

fn positive(name: &str, v: i32) -> Result<i32, ConfigError> {
    if v < 1 {
        return Err(ConfigError::Invalid {
            name: name.into(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(v)
}

fn positive_f64(name: &str, value: &str) -> Result<f64, ConfigError> {
    let v: f64 = parse_num(name, value)?;
    if v.is_nan() || v <= 0.0 {
        return Err(ConfigError::Invalid {
            name: name.into(),
            reason: "must be more than 0".into(),
        });
    }
    Ok(v)
}

fn non_negative_i64(name: &str, v: i64) -> Result<i64, ConfigError> {
    if v < 0 {
        return Err(ConfigError::Invalid {
            name: name.into(),
            reason: "must be at least 0".into(),
        });
    }
    Ok(v)
}

fn positive_i64(name: &str, value: &str) -> Result<i64, ConfigError> {
    let v: i64 = parse_num(name, value)?;
    if v < 1 {
        return Err(ConfigError::Invalid {
            name: name.into(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(v)
}

/// `min.cleanable.dirty.ratio` and its broker default: a ratio in [0, 1].
fn validate_dirty_ratio(name: &str, value: &str) -> Result<f64, ConfigError> {
    let v: f64 = parse_num(name, value)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(ConfigError::Invalid {
            name: name.into(),
            reason: "must be between 0 and 1".into(),
        });
    }
    Ok(v)
}

fn validate_cleanup_policy(name: &str, value: &str) -> Result<String, ConfigError> {
    for p in value.split(',') {
        match p.trim() {
            "delete" | "compact" => {}
            other => {
                return Err(ConfigError::Invalid {
                    name: name.into(),
                    reason: format!("`{other}` is not one of delete, compact"),
                })
            }
        }
    }
    Ok(value.to_string())
}

fn validate_timestamp_type(name: &str, value: &str) -> Result<String, ConfigError> {
    match value {
        "CreateTime" | "LogAppendTime" => Ok(value.to_string()),
        _ => Err(ConfigError::Invalid {
            name: name.into(),
            reason: "expected CreateTime or LogAppendTime".into(),
        }),
    }
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        toml::Value::Array(a) => {
            let joined = a
                .iter()
                .map(|x| match x {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",");
            out.push((prefix.to_string(), joined))
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_and_quoted_keys_both_apply() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "\"num.partitions\" = 3\nauto.create.topics.enable = false\nlog.segment.bytes = 1048576\n").unwrap();
        let mut c = BrokerConfig::default();
        c.apply_file(&p).unwrap();
        assert_eq!(c.num_partitions, 3);
        assert!(!c.auto_create_topics_enable);
        assert_eq!(c.log_segment_bytes, 1 << 20);
    }

    #[test]
    fn unknown_property_is_named() {
        let mut c = BrokerConfig::default();
        let e = c.set("num.partitons", "3").unwrap_err();
        assert!(e.to_string().contains("num.partitons"));
        let e = c.set("num.partitions", "x").unwrap_err();
        assert!(e.to_string().contains("num.partitions"));
    }

    #[test]
    fn listener_forms() {
        assert_eq!(
            parse_listen("l", "PLAINTEXT://127.0.0.1:9093")
                .unwrap()
                .port(),
            9093
        );
        assert_eq!(
            parse_listen("l", "localhost:1").unwrap().ip().to_string(),
            "127.0.0.1"
        );
        let l = parse_listener("l", "sasl_ssl://127.0.0.1:1").unwrap();
        assert_eq!(l.name, "SASL_SSL");
        assert_eq!(
            parse_listener("l", "127.0.0.1:7").unwrap().name,
            "PLAINTEXT"
        );
    }

    /// A one-voter combined node whose CONTROLLER listener maps to `protocol`.
    fn controller_node(protocol: &str) -> BrokerConfig {
        let mut c = BrokerConfig::default();
        for (k, v) in [
            ("node.id", "1"),
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", "1@127.0.0.1:9093"),
            ("controller.listener.names", "CONTROLLER"),
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
            ),
        ] {
            c.set(k, v).unwrap();
        }
        c.set(
            "listener.security.protocol.map",
            &format!("CONTROLLER:{protocol}"),
        )
        .unwrap();
        c
    }

    fn refusal(c: &BrokerConfig) -> String {
        match c.validate() {
            Ok(()) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_tls_controller_listener_needs_keystore_and_truststore() {
        let mut c = controller_node("SSL");
        let e = refusal(&c);
        assert!(e.contains("ssl.keystore.location"), "{e}");
        assert!(e.contains("controller listener CONTROLLER uses SSL"), "{e}");
        c.set("ssl.keystore.location", "/k.pem").unwrap();
        let e = refusal(&c);
        assert!(e.contains("ssl.truststore.location"), "{e}");
        c.set("ssl.truststore.location", "/ca.pem").unwrap();
        c.validate().unwrap();
        assert_eq!(c.controller_protocol(), Some(SecurityProtocol::Ssl));
        // An unmapped controller listener is PLAINTEXT, as in Kafka 4.
        let mut plain = controller_node("SSL");
        plain.listener_security_protocol_map.clear();
        plain.validate().unwrap();
        assert_eq!(
            plain.controller_protocol(),
            Some(SecurityProtocol::Plaintext)
        );
    }

    #[test]
    fn a_sasl_controller_listener_needs_a_password_mechanism_and_credentials() {
        let mut c = controller_node("SASL_PLAINTEXT");
        // Kafka's default mechanism, GSSAPI, is not one we log in with.
        let e = refusal(&c);
        assert!(
            e.contains("sasl.mechanism.controller.protocol=GSSAPI cannot be used"),
            "{e}"
        );
        c.set("sasl.mechanism.controller.protocol", "OAUTHBEARER")
            .unwrap();
        assert!(refusal(&c).contains("OAUTHBEARER cannot be used"));
        c.set("sasl.mechanism.controller.protocol", "SCRAM-SHA-512")
            .unwrap();
        let e = refusal(&c);
        assert!(
            e.contains("listener.name.controller.scram-sha-512.sasl.jaas.config"),
            "{e}"
        );
        // The wrong login module for the mechanism.
        c.set(
            "listener.name.controller.scram-sha-512.sasl.jaas.config",
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="c" password="p";"#,
        )
        .unwrap();
        assert!(
            refusal(&c).contains("needs org.apache.kafka.common.security.scram.ScramLoginModule")
        );
        c.set(
            "listener.name.controller.scram-sha-512.sasl.jaas.config",
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="c" password="p";"#,
        )
        .unwrap();
        c.validate().unwrap();
        // A controller must verify the mechanism it logs in with.
        c.set("sasl.enabled.mechanisms", "PLAIN").unwrap();
        let e = refusal(&c);
        assert!(e.contains("sasl.enabled.mechanisms"), "{e}");
        assert!(e.contains("logs in with SCRAM-SHA-512"), "{e}");
        // sasl.jaas.config is the fallback.
        let mut c = controller_node("SASL_PLAINTEXT");
        c.set("sasl.mechanism.controller.protocol", "PLAIN")
            .unwrap();
        c.set(
            "sasl.jaas.config",
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="c" password="p";"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.controller_login().unwrap().username, "c");
    }

    #[test]
    fn listener_protocols_resolve_through_the_map() {
        let mut c = BrokerConfig::default();
        c.set("listeners", "CLIENT://127.0.0.1:1,INTERNAL://127.0.0.1:2")
            .unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("CLIENT"));
        c.set(
            "listener.security.protocol.map",
            "CLIENT:SASL_SSL,INTERNAL:PLAINTEXT",
        )
        .unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ssl.keystore.location"));
        c.set("ssl.keystore.location", "/k.pem").unwrap();
        c.validate().unwrap();
        assert_eq!(c.protocol_of("CLIENT"), Some(SecurityProtocol::SaslSsl));
        c.set("advertised.listeners", "OTHER://h:1").unwrap();
        assert!(c.validate().is_err());
        assert!(c.set("sasl.enabled.mechanisms", "GSSAPI").is_err());
        assert!(c.set("ssl.client.auth", "maybe").is_err());
    }
}
