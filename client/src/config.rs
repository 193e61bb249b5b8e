//! Client configuration: typed structs with Kafka's defaults, builders, and
//! `from_properties` accepting Kafka's own property names
//! (`bootstrap.servers`, `linger.ms`, `compression.type`, ...). An unknown
//! property or an invalid value is an error naming the property. Each field
//! documents the Java client's name for it.

use std::time::Duration;

use sluice_protocol::compression::Compression;

pub use crate::auth::TokenProviderHandle;
use crate::error::{Error, Result};

/// How the client talks to brokers (`security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(v: &str) -> Result<Self> {
        match v.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            _ => Err(Error::config(
                "security.protocol",
                format!("`{v}` is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
            )),
        }
    }
    pub fn uses_tls(&self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
    pub fn uses_sasl(&self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// Settings every client (producer, consumer, admin) shares.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `bootstrap.servers`
    pub bootstrap_servers: Vec<String>,
    /// `client.id`
    pub client_id: String,
    /// `request.timeout.ms` (30000)
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms` (10000)
    pub connection_setup_timeout: Duration,
    /// `reconnect.backoff.ms` (50)
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms` (1000)
    pub reconnect_backoff_max: Duration,
    /// `retry.backoff.ms` (100)
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms` (1000): retries in a row back off
    /// exponentially from `retry.backoff.ms` up to this
    pub retry_backoff_max: Duration,
    /// `metadata.max.age.ms` (300000)
    pub metadata_max_age: Duration,
    /// `security.protocol` (PLAINTEXT)
    pub security_protocol: SecurityProtocol,
    /// `sasl.mechanism` (GSSAPI in Java; here: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, AWS_MSK_IAM)
    pub sasl_mechanism: Option<String>,
    /// `sasl.username` / `sasl.password` (librdkafka's names; the Java client puts them in `sasl.jaas.config`)
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    /// `ssl.ca.location` (PEM file; system roots when absent)
    pub ssl_ca_location: Option<String>,
    /// `ssl.certificate.location` / `ssl.key.location` (PEM client certificate and key)
    pub ssl_certificate_location: Option<String>,
    pub ssl_key_location: Option<String>,
    /// `ssl.endpoint.identification.algorithm` ("https"; "" disables hostname checks)
    pub ssl_endpoint_identification: bool,
    /// `enable.ssl.certificate.verification` (true; librdkafka's name)
    pub ssl_certificate_verification: bool,
    /// AWS region for MSK IAM (`aws.region`; else AWS_REGION)
    pub aws_region: Option<String>,
    /// MSK IAM credentials from this shared-files profile instead of the
    /// default chain (`aws.profile`; aws-msk-iam-auth's `awsProfileName`)
    pub aws_profile: Option<String>,
    /// MSK IAM signs as this role, assumed through STS with the credentials
    /// found (`aws.role.arn`; aws-msk-iam-auth's `awsRoleArn`)
    pub aws_role_arn: Option<String>,
    /// `aws.role.session.name` (default `aws-msk-iam-auth`)
    pub aws_role_session_name: Option<String>,
    /// `aws.role.external.id`
    pub aws_role_external_id: Option<String>,
    /// `aws.sts.region`: where the role is assumed (default: the signing region)
    pub aws_sts_region: Option<String>,
    /// OAUTHBEARER token callback (`sasl.oauthbearer.token.provider`; set in code)
    pub sasl_oauth_token_provider: Option<TokenProviderHandle>,
    /// `allow.auto.create.topics` (true): metadata requests for named topics
    /// let the broker create them, as the Java producer and consumer do.
    pub allow_auto_create_topics: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: vec!["127.0.0.1:9092".into()],
            client_id: "sluice".into(),
            request_timeout: Duration::from_millis(30_000),
            connection_setup_timeout: Duration::from_millis(10_000),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1000),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1000),
            metadata_max_age: Duration::from_millis(300_000),
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_endpoint_identification: true,
            ssl_certificate_verification: true,
            aws_region: None,
            aws_profile: None,
            aws_role_arn: None,
            aws_role_session_name: None,
            aws_role_external_id: None,
            aws_sts_region: None,
            sasl_oauth_token_provider: None,
            allow_auto_create_topics: true,
        }
    }
}

pub(crate) fn parse_ms(name: &str, v: &str) -> Result<Duration> {
    let n: i64 = v
        .trim()
        .parse()
        .map_err(|_| Error::config(name, format!("`{v}` is not a number of milliseconds")))?;
    if n < 0 {
        return Err(Error::config(name, "must not be negative"));
    }
    Ok(Duration::from_millis(n as u64))
}

pub(crate) fn parse_int<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| Error::config(name, format!("`{v}` is not a valid number")))
}

pub(crate) fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::config(name, format!("`{v}` is not true or false"))),
    }
}

impl ClientConfig {
    /// Applies a shared property; `Ok(false)` if the name is not a shared one.
    pub fn set(&mut self, name: &str, v: &str) -> Result<bool> {
        match name {
            "bootstrap.servers" => {
                let servers: Vec<String> = v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if servers.is_empty() {
                    return Err(Error::config(name, "no server given"));
                }
                for s in &servers {
                    if !s.contains(':') {
                        return Err(Error::config(name, format!("`{s}` is not HOST:PORT")));
                    }
                }
                self.bootstrap_servers = servers;
            }
            "client.id" => self.client_id = v.to_string(),
            "request.timeout.ms" => self.request_timeout = parse_ms(name, v)?,
            "socket.connection.setup.timeout.ms" => {
                self.connection_setup_timeout = parse_ms(name, v)?
            }
            "reconnect.backoff.ms" => self.reconnect_backoff = parse_ms(name, v)?,
            "reconnect.backoff.max.ms" => self.reconnect_backoff_max = parse_ms(name, v)?,
            "retry.backoff.ms" => self.retry_backoff = parse_ms(name, v)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = parse_ms(name, v)?,
            "metadata.max.age.ms" => self.metadata_max_age = parse_ms(name, v)?,
            "security.protocol" => self.security_protocol = SecurityProtocol::parse(v)?,
            "sasl.mechanism" | "sasl.mechanisms" => {
                let m = v.trim().to_ascii_uppercase();
                match m.as_str() {
                    "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" | "OAUTHBEARER" | "AWS_MSK_IAM" => {
                        self.sasl_mechanism = Some(m)
                    }
                    _ => {
                        return Err(Error::config(
                            name,
                            format!("unsupported SASL mechanism `{v}`"),
                        ))
                    }
                }
            }
            "sasl.username" => self.sasl_username = Some(v.to_string()),
            "sasl.password" => self.sasl_password = Some(v.to_string()),
            "ssl.ca.location" => self.ssl_ca_location = Some(v.to_string()),
            "ssl.certificate.location" => self.ssl_certificate_location = Some(v.to_string()),
            "ssl.key.location" => self.ssl_key_location = Some(v.to_string()),
            "ssl.endpoint.identification.algorithm" => {
                self.ssl_endpoint_identification = !v.trim().is_empty() && v.trim() != "none"
            }
            "enable.ssl.certificate.verification" => {
                self.ssl_certificate_verification = parse_bool(name, v)?
            }
            "aws.region" => self.aws_region = Some(v.to_string()),
            "aws.profile" => self.aws_profile = Some(v.to_string()),
            "aws.role.arn" => self.aws_role_arn = Some(v.to_string()),
            "aws.role.session.name" => self.aws_role_session_name = Some(v.to_string()),
            "aws.role.external.id" => self.aws_role_external_id = Some(v.to_string()),
            "aws.sts.region" => self.aws_sts_region = Some(v.to_string()),
            "allow.auto.create.topics" => self.allow_auto_create_topics = parse_bool(name, v)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `acks`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    All,
}

impl Acks {
    pub fn as_i16(&self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
    pub fn parse(v: &str) -> Result<Acks> {
        match v.trim() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "-1" | "all" => Ok(Acks::All),
            _ => Err(Error::config(
                "acks",
                format!("`{v}` is not 0, 1, -1 or all"),
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    /// `acks` (all)
    pub acks: Acks,
    /// `linger.ms` (5, as in Kafka 4.0)
    pub linger: Duration,
    /// `batch.size` (16384)
    pub batch_size: usize,
    /// `buffer.memory` (33554432)
    pub buffer_memory: usize,
    /// `compression.type` (none)
    pub compression: Compression,
    /// `enable.idempotence` (true)
    pub enable_idempotence: bool,
    /// `max.in.flight.requests.per.connection` (5)
    pub max_in_flight: usize,
    /// `retries` (2147483647)
    pub retries: u32,
    /// `delivery.timeout.ms` (120000)
    pub delivery_timeout: Duration,
    /// `max.request.size` (1048576)
    pub max_request_size: usize,
    /// `max.block.ms` (60000): how long `send` waits for buffer space or metadata.
    pub max_block: Duration,
    /// `partitioner.ignore.keys` (false)
    pub partitioner_ignore_keys: bool,
    /// `transactional.id` (none): makes the producer transactional (and
    /// idempotent); `init_transactions` must run before the first send.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms` (60000): how long the coordinator lets a
    /// transaction stay open before aborting it.
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            client: ClientConfig::default(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16_384,
            buffer_memory: 33_554_432,
            compression: Compression::None,
            enable_idempotence: true,
            max_in_flight: 5,
            retries: i32::MAX as u32,
            delivery_timeout: Duration::from_millis(120_000),
            max_request_size: 1_048_576,
            max_block: Duration::from_millis(60_000),
            partitioner_ignore_keys: false,
            transactional_id: None,
            transaction_timeout: Duration::from_millis(60_000),
        }
    }
}

impl ProducerConfig {
    pub fn builder() -> ProducerConfigBuilder {
        ProducerConfigBuilder(ProducerConfig::default())
    }

    pub fn set(&mut self, name: &str, v: &str) -> Result<()> {
        if self.client.set(name, v)? {
            return Ok(());
        }
        match name {
            "acks" | "request.required.acks" => self.acks = Acks::parse(v)?,
            "linger.ms" => self.linger = parse_ms(name, v)?,
            "batch.size" => self.batch_size = parse_int::<usize>(name, v)?.max(1),
            "buffer.memory" => self.buffer_memory = parse_int(name, v)?,
            "compression.type" | "compression.codec" => {
                self.compression = Compression::from_name(v.trim()).ok_or_else(|| {
                    Error::config(
                        name,
                        format!("`{v}` is not one of none, gzip, snappy, lz4, zstd"),
                    )
                })?
            }
            "enable.idempotence" => self.enable_idempotence = parse_bool(name, v)?,
            "max.in.flight.requests.per.connection" => {
                let n: usize = parse_int(name, v)?;
                if n == 0 {
                    return Err(Error::config(name, "must be at least 1"));
                }
                self.max_in_flight = n;
            }
            "retries" => self.retries = parse_int::<i64>(name, v)?.clamp(0, i32::MAX as i64) as u32,
            "delivery.timeout.ms" => self.delivery_timeout = parse_ms(name, v)?,
            "max.request.size" => self.max_request_size = parse_int(name, v)?,
            "max.block.ms" => self.max_block = parse_ms(name, v)?,
            "partitioner.ignore.keys" => self.partitioner_ignore_keys = parse_bool(name, v)?,
            "transactional.id" => {
                self.transactional_id = Some(v.to_string()).filter(|s| !s.is_empty())
            }
            "transaction.timeout.ms" => {
                let d = parse_ms(name, v)?;
                if d.is_zero() || d.as_millis() > i32::MAX as u128 {
                    return Err(Error::config(name, "must be between 1 and 2147483647"));
                }
                self.transaction_timeout = d;
            }
            _ => {
                return Err(Error::Config {
                    name: name.to_string(),
                    reason: "unknown producer property".into(),
                })
            }
        }
        Ok(())
    }

    /// Builds from Kafka property names, starting from Kafka's defaults.
    pub fn from_properties<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
        let mut c = ProducerConfig::default();
        for (k, v) in props {
            c.set(k.trim(), v)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks combinations, as the Java client does at construction.
    pub fn validate(&self) -> Result<()> {
        if self.transactional_id.is_some() && !self.enable_idempotence {
            return Err(Error::config(
                "enable.idempotence",
                "cannot be false with a transactional.id: transactions need idempotence",
            ));
        }
        if self.enable_idempotence {
            if self.acks != Acks::All {
                return Err(Error::config(
                    "acks",
                    "must be all (-1) when enable.idempotence=true",
                ));
            }
            if self.max_in_flight > 5 {
                return Err(Error::config(
                    "max.in.flight.requests.per.connection",
                    "must be at most 5 when enable.idempotence=true",
                ));
            }
            if self.retries == 0 {
                return Err(Error::config(
                    "retries",
                    "must be above 0 when enable.idempotence=true",
                ));
            }
        }
        if self.delivery_timeout < self.linger + self.client.request_timeout {
            return Err(Error::config(
                "delivery.timeout.ms",
                "must be at least linger.ms + request.timeout.ms",
            ));
        }
        Ok(())
    }
}

pub struct ProducerConfigBuilder(ProducerConfig);

impl ProducerConfigBuilder {
    pub fn bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.0.client.bootstrap_servers = servers
            .into()
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        self
    }
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.0.client.client_id = id.into();
        self
    }
    pub fn acks(mut self, acks: Acks) -> Self {
        self.0.acks = acks;
        self
    }
    pub fn linger(mut self, d: Duration) -> Self {
        self.0.linger = d;
        self
    }
    pub fn batch_size(mut self, n: usize) -> Self {
        self.0.batch_size = n.max(1);
        self
    }
    pub fn compression(mut self, c: Compression) -> Self {
        self.0.compression = c;
        self
    }
    pub fn enable_idempotence(mut self, on: bool) -> Self {
        self.0.enable_idempotence = on;
        self
    }
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.0.max_in_flight = n.max(1);
        self
    }
    /// `transactional.id`: makes the producer transactional.
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.0.transactional_id = Some(id.into()).filter(|s| !s.is_empty());
        self
    }
    /// `transaction.timeout.ms`
    pub fn transaction_timeout(mut self, d: Duration) -> Self {
        self.0.transaction_timeout = d;
        self
    }
    pub fn set(mut self, name: &str, value: &str) -> Result<Self> {
        self.0.set(name, value)?;
        Ok(self)
    }
    pub fn build(self) -> Result<ProducerConfig> {
        self.0.validate()?;
        Ok(self.0)
    }
}

/// `auto.offset.reset`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    None,
}

/// `partition.assignment.strategy` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignorKind {
    Range,
    RoundRobin,
    CooperativeSticky,
}

impl AssignorKind {
    pub fn parse(v: &str) -> Result<AssignorKind> {
        let short = v
            .trim()
            .rsplit('.')
            .next()
            .unwrap_or(v)
            .to_ascii_lowercase();
        match short.as_str() {
            "range" | "rangeassignor" => Ok(AssignorKind::Range),
            "roundrobin" | "roundrobinassignor" => Ok(AssignorKind::RoundRobin),
            "cooperative-sticky" | "cooperativestickyassignor" => {
                Ok(AssignorKind::CooperativeSticky)
            }
            _ => Err(Error::config(
                "partition.assignment.strategy",
                format!("unknown assignor `{v}`"),
            )),
        }
    }
    /// The protocol name in JoinGroup, as the Java client names it.
    pub fn protocol_name(&self) -> &'static str {
        match self {
            AssignorKind::Range => "range",
            AssignorKind::RoundRobin => "roundrobin",
            AssignorKind::CooperativeSticky => "cooperative-sticky",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub client: ClientConfig,
    /// `group.id`
    pub group_id: Option<String>,
    /// `group.instance.id` (static membership)
    pub group_instance_id: Option<String>,
    /// `auto.offset.reset` (latest)
    pub auto_offset_reset: OffsetReset,
    /// `enable.auto.commit` (true)
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms` (5000)
    pub auto_commit_interval: Duration,
    /// `max.poll.records` (500)
    pub max_poll_records: usize,
    /// `max.poll.interval.ms` (300000)
    pub max_poll_interval: Duration,
    /// `session.timeout.ms` (45000)
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` (3000)
    pub heartbeat_interval: Duration,
    /// `fetch.min.bytes` (1)
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes` (52428800)
    pub fetch_max_bytes: i32,
    /// `fetch.max.wait.ms` (500)
    pub fetch_max_wait: Duration,
    /// `max.partition.fetch.bytes` (1048576)
    pub max_partition_fetch_bytes: i32,
    /// `partition.assignment.strategy` ([range, cooperative-sticky])
    pub assignors: Vec<AssignorKind>,
    /// `isolation.level` (read_uncommitted)
    pub read_committed: bool,
    /// `check.crcs` (true)
    pub check_crcs: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client: ClientConfig::default(),
            group_id: None,
            group_instance_id: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_millis(5000),
            max_poll_records: 500,
            max_poll_interval: Duration::from_millis(300_000),
            session_timeout: Duration::from_millis(45_000),
            heartbeat_interval: Duration::from_millis(3000),
            fetch_min_bytes: 1,
            fetch_max_bytes: 52_428_800,
            fetch_max_wait: Duration::from_millis(500),
            max_partition_fetch_bytes: 1_048_576,
            assignors: vec![AssignorKind::Range, AssignorKind::CooperativeSticky],
            read_committed: false,
            check_crcs: true,
        }
    }
}

impl ConsumerConfig {
    pub fn set(&mut self, name: &str, v: &str) -> Result<()> {
        if self.client.set(name, v)? {
            return Ok(());
        }
        match name {
            "group.id" => self.group_id = Some(v.to_string()).filter(|s| !s.is_empty()),
            "group.instance.id" => {
                self.group_instance_id = Some(v.to_string()).filter(|s| !s.is_empty())
            }
            "auto.offset.reset" => {
                self.auto_offset_reset = match v.trim() {
                    "earliest" | "smallest" | "beginning" => OffsetReset::Earliest,
                    "latest" | "largest" | "end" => OffsetReset::Latest,
                    "none" | "error" => OffsetReset::None,
                    _ => {
                        return Err(Error::config(
                            name,
                            format!("`{v}` is not earliest, latest or none"),
                        ))
                    }
                }
            }
            "enable.auto.commit" => self.enable_auto_commit = parse_bool(name, v)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = parse_ms(name, v)?,
            "max.poll.records" => self.max_poll_records = parse_int::<usize>(name, v)?.max(1),
            "max.poll.interval.ms" => self.max_poll_interval = parse_ms(name, v)?,
            "session.timeout.ms" => self.session_timeout = parse_ms(name, v)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = parse_ms(name, v)?,
            "fetch.min.bytes" => self.fetch_min_bytes = parse_int(name, v)?,
            "fetch.max.bytes" => self.fetch_max_bytes = parse_int(name, v)?,
            "fetch.max.wait.ms" => self.fetch_max_wait = parse_ms(name, v)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = parse_int(name, v)?,
            "partition.assignment.strategy" => {
                self.assignors = v
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(AssignorKind::parse)
                    .collect::<Result<_>>()?;
                if self.assignors.is_empty() {
                    return Err(Error::config(name, "no assignor given"));
                }
            }
            "isolation.level" => {
                self.read_committed = match v.trim() {
                    "read_committed" => true,
                    "read_uncommitted" => false,
                    _ => {
                        return Err(Error::config(
                            name,
                            "expected read_committed or read_uncommitted",
                        ))
                    }
                }
            }
            "check.crcs" => self.check_crcs = parse_bool(name, v)?,
            _ => {
                return Err(Error::Config {
                    name: name.to_string(),
                    reason: "unknown consumer property".into(),
                })
            }
        }
        Ok(())
    }

    pub fn from_properties<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
        let mut c = ConsumerConfig::default();
        for (k, v) in props {
            c.set(k.trim(), v)?;
        }
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        if self.heartbeat_interval >= self.session_timeout {
            return Err(Error::config(
                "heartbeat.interval.ms",
                "must be lower than session.timeout.ms",
            ));
        }
        if self.group_instance_id.is_some() && self.group_id.is_none() {
            return Err(Error::config("group.instance.id", "needs group.id"));
        }
        Ok(())
    }
}

/// Admin client settings: only the shared ones.
pub type AdminConfig = ClientConfig;

impl ClientConfig {
    pub fn from_properties<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
        let mut c = ClientConfig::default();
        for (k, v) in props {
            if !c.set(k.trim(), v)? {
                return Err(Error::Config {
                    name: k.to_string(),
                    reason: "unknown admin client property".into(),
                });
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_and_defaults() {
        let p = ProducerConfig::from_properties([
            ("bootstrap.servers", "a:1,b:2"),
            ("linger.ms", "10"),
            ("compression.type", "gzip"),
            ("acks", "all"),
        ])
        .unwrap();
        assert_eq!(p.client.bootstrap_servers, vec!["a:1", "b:2"]);
        assert_eq!(p.linger, Duration::from_millis(10));
        assert_eq!(p.compression, Compression::Gzip);
        assert!(p.enable_idempotence);
        assert_eq!(p.batch_size, 16384);
    }

    #[test]
    fn unknown_and_invalid_settings_are_named() {
        let e = ProducerConfig::from_properties([("linger.mss", "5")]).unwrap_err();
        assert!(e.to_string().contains("linger.mss"), "{e}");
        let e = ProducerConfig::from_properties([("compression.type", "brotli")]).unwrap_err();
        assert!(e.to_string().contains("compression.type"), "{e}");
        let e = ProducerConfig::from_properties([("acks", "1")]).unwrap_err();
        assert!(e.to_string().contains("acks"), "{e}");
        let e = ConsumerConfig::from_properties([("auto.offset.reset", "sometimes")]).unwrap_err();
        assert!(e.to_string().contains("auto.offset.reset"), "{e}");
        let c = ConsumerConfig::from_properties([
            ("group.id", "g"),
            (
                "partition.assignment.strategy",
                "org.apache.kafka.clients.consumer.RoundRobinAssignor",
            ),
        ])
        .unwrap();
        assert_eq!(c.assignors, vec![AssignorKind::RoundRobin]);
    }

    #[test]
    fn transactional_settings() {
        let p = ProducerConfig::from_properties([
            ("transactional.id", "tx-1"),
            ("transaction.timeout.ms", "15000"),
        ])
        .unwrap();
        assert_eq!(p.transactional_id.as_deref(), Some("tx-1"));
        assert_eq!(p.transaction_timeout, Duration::from_millis(15_000));
        assert_eq!(
            ProducerConfig::default().transaction_timeout,
            Duration::from_millis(60_000)
        );
        let e = ProducerConfig::from_properties([
            ("transactional.id", "tx-1"),
            ("enable.idempotence", "false"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("enable.idempotence"), "{e}");
        let e = ProducerConfig::from_properties([("transaction.timeout.ms", "0")]).unwrap_err();
        assert!(e.to_string().contains("transaction.timeout.ms"), "{e}");
    }
}
