//! The admin client: topics (create, delete, add partitions, list,
//! describe), configs (describe, incremental alter), consumer groups (list,
//! describe with members and assignments, committed offsets and lag,
//! delete), offsets (list by time or earliest/latest, delete records) and the
//! cluster. Requests go where Kafka wants them: group calls to the group's
//! coordinator, ListOffsets and DeleteRecords to partition leaders, the rest
//! to any broker (KRaft brokers forward controller work).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use sluice_protocol::sasl::scram::ScramMechanism;

use crate::config::ClientConfig;
use crate::error::{Error, ErrorCode, Result};
use crate::net::{Cluster, TopicInfo};

/// A topic to create. -1 partitions / replication factor take the broker defaults.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }
    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((name.into(), value.into()));
        self
    }
}

/// What a config call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    Topic(String),
    Broker(i32),
}

impl ConfigResource {
    fn kind(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => 2,
            ConfigResource::Broker(_) => 4,
        }
    }
    fn name(&self) -> String {
        match self {
            ConfigResource::Topic(t) => t.clone(),
            ConfigResource::Broker(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's ConfigSource: 1 dynamic topic, 4 static broker, 5 default, ...
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
}

impl ConfigEntry {
    pub fn is_default(&self) -> bool {
        self.source == 5
    }
}

/// One IncrementalAlterConfigs operation.
#[derive(Debug, Clone)]
pub enum AlterConfigOp {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    MaxTimestamp,
    /// The first offset whose timestamp is >= this (ms).
    Timestamp(i64),
}

impl OffsetSpec {
    fn as_i64(&self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(t) => *t,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
}

#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    /// Decoded from the consumer protocol assignment (empty for other protocol types).
    pub assignment: Vec<(String, i32)>,
}

#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
    pub error: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Committed offset, -1 if none.
    pub committed: i64,
    pub log_end: i64,
    /// log_end - committed (log_end when nothing is committed).
    pub lag: i64,
}

#[derive(Debug, Clone)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<crate::net::cluster::BrokerInfo>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A response's wire error code as a result.
fn check(code: i16, message: Option<&StrBytes>) -> Result<()> {
    if code == ErrorCode::None.code() {
        Ok(())
    } else {
        Err(Error::from_wire(code, message.map(|m| m.to_string())))
    }
}

/// Partitions of a consumer-protocol assignment (version-prefixed bytes).
pub fn decode_consumer_assignment(bytes: &Bytes) -> Vec<(String, i32)> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let mut b = bytes.clone();
    let version = i16::from_be_bytes([b[0], b[1]]);
    let _ = bytes::Buf::get_i16(&mut b);
    match ConsumerProtocolAssignment::decode(&mut b, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.to_string(), *p)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[derive(Clone)]
pub struct AdminClient {
    cluster: Arc<Cluster>,
}

impl AdminClient {
    /// Runs `f` again after `retry.backoff.ms` while it fails with a
    /// retriable error (a coordinator still loading, metadata not yet
    /// propagated), for up to `request.timeout.ms`, as the Java admin client
    /// retries within `default.api.timeout.ms`.
    async fn retrying<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.cluster.config.request_timeout;
        loop {
            match f().await {
                Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "retrying admin call");
                    tokio::time::sleep(self.cluster.config.retry_backoff).await;
                }
                other => return other,
            }
        }
    }

    pub async fn connect(mut config: ClientConfig) -> Result<AdminClient> {
        // Describing a topic must not create it.
        config.allow_auto_create_topics = false;
        Ok(AdminClient {
            cluster: Cluster::connect(config).await?,
        })
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Creates topics; one result per topic, in request order.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<Vec<(String, Result<()>)>> {
        let conn = self.cluster.any_connection().await?;
        let mut req = CreateTopicsRequest::default();
        req.validate_only = validate_only;
        req.timeout_ms = self.cluster.config.request_timeout.as_millis() as i32;
        for t in &topics {
            let mut ct = CreatableTopic::default();
            ct.name = TopicName(s(&t.name));
            ct.num_partitions = t.partitions;
            ct.replication_factor = t.replication_factor;
            ct.configs = t
                .configs
                .iter()
                .map(|(k, v)| {
                    let mut c = CreatableTopicConfig::default();
                    c.name = s(k);
                    c.value = Some(s(v));
                    c
                })
                .collect();
            req.topics.push(ct);
        }
        let resp = conn.send(&req).await?;
        let by_name: HashMap<String, Result<()>> = resp
            .topics
            .iter()
            .map(|r| {
                (
                    r.name.to_string(),
                    check(r.error_code, r.error_message.as_ref()),
                )
            })
            .collect();
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let _ = self.cluster.refresh_metadata(&names).await;
        Ok(topics
            .into_iter()
            .map(|t| {
                let r = by_name
                    .get(&t.name)
                    .cloned()
                    .unwrap_or_else(|| Err(Error::Protocol("topic missing from answer".into())));
                (t.name, r)
            })
            .collect())
    }

    pub async fn delete_topics(&self, names: &[String]) -> Result<Vec<(String, Result<()>)>> {
        let conn = self.cluster.any_connection().await?;
        let mut req = DeleteTopicsRequest::default();
        req.timeout_ms = self.cluster.config.request_timeout.as_millis() as i32;
        let (resp, v) = if conn.versions().pick(ApiKey::DeleteTopics)? >= 6 {
            req.topics = names
                .iter()
                .map(|n| {
                    let mut t = DeleteTopicState::default();
                    t.name = Some(TopicName(s(n)));
                    t
                })
                .collect();
            conn.send_with_version(&req).await?
        } else {
            req.topic_names = names.iter().map(|n| TopicName(s(n))).collect();
            conn.send_with_version(&req).await?
        };
        let _ = v;
        let by_name: HashMap<String, Result<()>> = resp
            .responses
            .iter()
            .filter_map(|r| {
                r.name
                    .as_ref()
                    .map(|n| (n.to_string(), check(r.error_code, r.error_message.as_ref())))
            })
            .collect();
        Ok(names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    by_name.get(n).cloned().unwrap_or_else(|| {
                        Err(Error::Protocol("topic missing from answer".into()))
                    }),
                )
            })
            .collect())
    }

    /// Grows `topic` to `total` partitions.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        let conn = self.cluster.any_connection().await?;
        let mut req = CreatePartitionsRequest::default();
        req.timeout_ms = self.cluster.config.request_timeout.as_millis() as i32;
        let mut t = CreatePartitionsTopic::default();
        t.name = TopicName(s(topic));
        t.count = total;
        t.assignments = None;
        req.topics.push(t);
        let resp = conn.send(&req).await?;
        for r in &resp.results {
            check(r.error_code, r.error_message.as_ref())?;
        }
        self.cluster.refresh_metadata(&[topic.to_string()]).await
    }

    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<Arc<TopicInfo>>> {
        self.cluster.refresh_all_topics().await?;
        let mut t: Vec<_> = self
            .cluster
            .topics()
            .into_iter()
            .filter(|t| include_internal || !t.internal)
            .collect();
        t.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(t)
    }

    /// A missing topic fails at once with UNKNOWN_TOPIC_OR_PARTITION, as in
    /// the Java admin client (it is not retried for request.timeout.ms).
    pub async fn describe_topics(&self, names: &[String]) -> Result<Vec<Arc<TopicInfo>>> {
        self.describe_topics_once(names).await
    }

    async fn describe_topics_once(&self, names: &[String]) -> Result<Vec<Arc<TopicInfo>>> {
        self.cluster.refresh_metadata(names).await?;
        names
            .iter()
            .map(|n| {
                self.cluster.topic(n).ok_or_else(|| {
                    Error::kafka_with(
                        ErrorCode::UnknownTopicOrPartition,
                        Some(format!("topic {n} does not exist")),
                    )
                })
            })
            .collect()
    }

    pub async fn describe_configs(&self, resource: &ConfigResource) -> Result<Vec<ConfigEntry>> {
        self.retrying(|| self.describe_configs_once(resource)).await
    }

    async fn describe_configs_once(&self, resource: &ConfigResource) -> Result<Vec<ConfigEntry>> {
        let conn = match resource {
            ConfigResource::Broker(id) => self.cluster.connection(*id).await?,
            ConfigResource::Topic(_) => self.cluster.any_connection().await?,
        };
        let mut req = DescribeConfigsRequest::default();
        let mut r = DescribeConfigsResource::default();
        r.resource_type = resource.kind();
        r.resource_name = s(&resource.name());
        r.configuration_keys = None;
        req.resources.push(r);
        let resp = conn.send(&req).await?;
        let res = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("empty DescribeConfigs answer".into()))?;
        check(res.error_code, res.error_message.as_ref())?;
        Ok(res
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: c.config_source,
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect())
    }

    /// IncrementalAlterConfigs.
    pub async fn alter_configs(
        &self,
        resource: &ConfigResource,
        ops: &[AlterConfigOp],
    ) -> Result<()> {
        let conn = match resource {
            ConfigResource::Broker(id) => self.cluster.connection(*id).await?,
            ConfigResource::Topic(_) => self.cluster.any_connection().await?,
        };
        let mut req = IncrementalAlterConfigsRequest::default();
        let mut r = AlterConfigsResource::default();
        r.resource_type = resource.kind();
        r.resource_name = s(&resource.name());
        r.configs = ops
            .iter()
            .map(|op| {
                let mut c = AlterableConfig::default();
                let (name, code, value) = match op {
                    AlterConfigOp::Set(n, v) => (n, 0, Some(v)),
                    AlterConfigOp::Delete(n) => (n, 1, None),
                    AlterConfigOp::Append(n, v) => (n, 2, Some(v)),
                    AlterConfigOp::Subtract(n, v) => (n, 3, Some(v)),
                };
                c.name = s(name);
                c.config_operation = code;
                c.value = value.map(|v| s(v));
                c
            })
            .collect();
        req.resources.push(r);
        let resp = conn.send(&req).await?;
        for r in &resp.responses {
            check(r.error_code, r.error_message.as_ref())?;
        }
        Ok(())
    }

    /// Groups known to every broker.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        self.cluster.refresh_metadata(&[]).await?;
        let mut out = Vec::new();
        for b in self.cluster.brokers() {
            let conn = self.cluster.connection(b.node_id).await?;
            let resp = conn.send(&ListGroupsRequest::default()).await?;
            check(resp.error_code, None)?;
            out.extend(resp.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(out)
    }

    pub async fn describe_groups(&self, ids: &[String]) -> Result<Vec<GroupDescription>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let conn = self.retrying(|| self.cluster.coordinator(id)).await?;
            let mut req = DescribeGroupsRequest::default();
            req.groups = vec![GroupId(s(id))];
            let resp = conn.send(&req).await?;
            for g in resp.groups {
                let consumer = g.protocol_type.as_str() == "consumer";
                out.push(GroupDescription {
                    group_id: g.group_id.to_string(),
                    state: g.group_state.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    protocol: g.protocol_data.to_string(),
                    error: ErrorCode::from_code(g.error_code),
                    members: g
                        .members
                        .into_iter()
                        .map(|m| MemberDescription {
                            member_id: m.member_id.to_string(),
                            group_instance_id: m.group_instance_id.map(|i| i.to_string()),
                            client_id: m.client_id.to_string(),
                            host: m.client_host.to_string(),
                            assignment: if consumer {
                                decode_consumer_assignment(&m.member_assignment)
                            } else {
                                Vec::new()
                            },
                        })
                        .collect(),
                });
            }
        }
        Ok(out)
    }

    /// Committed offsets of a group (all partitions it has committed).
    pub async fn list_group_offsets(&self, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
        self.retrying(|| async {
            let r = self.list_group_offsets_once(group).await;
            if r.is_err() {
                self.cluster.forget_coordinator(group);
            }
            r
        })
        .await
    }

    async fn list_group_offsets_once(&self, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
        let conn = self.cluster.coordinator(group).await?;
        let mut req = OffsetFetchRequest::default();
        req.group_id = GroupId(s(group));
        req.topics = None;
        let resp = conn.send(&req).await?;
        check(resp.error_code, None)?;
        let mut out = BTreeMap::new();
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code == ErrorCode::None.code() && p.committed_offset >= 0 {
                    out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
        Ok(out)
    }

    /// Lag per partition of every topic the group has committed offsets for.
    pub async fn group_lag(&self, group: &str) -> Result<Vec<PartitionLag>> {
        let committed = self.list_group_offsets(group).await?;
        let tps: Vec<(String, i32)> = committed.keys().cloned().collect();
        let ends = self.list_offsets(&tps, OffsetSpec::Latest).await?;
        let mut out: Vec<PartitionLag> = ends
            .into_iter()
            .map(|(t, p, end, _)| {
                let c = committed.get(&(t.clone(), p)).copied().unwrap_or(-1);
                let lag = if c < 0 { end } else { (end - c).max(0) };
                PartitionLag {
                    topic: t,
                    partition: p,
                    committed: c,
                    log_end: end,
                    lag,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// ListOffsets for each partition, sent to its leader. Returns
    /// (topic, partition, offset, timestamp).
    pub async fn list_offsets(
        &self,
        tps: &[(String, i32)],
        spec: OffsetSpec,
    ) -> Result<Vec<(String, i32, i64, i64)>> {
        self.retrying(|| self.list_offsets_once(tps, spec)).await
    }

    async fn list_offsets_once(
        &self,
        tps: &[(String, i32)],
        spec: OffsetSpec,
    ) -> Result<Vec<(String, i32, i64, i64)>> {
        let topics: Vec<String> = tps.iter().map(|(t, _)| t.clone()).collect();
        self.cluster.refresh_metadata(&topics).await?;
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for (t, p) in tps {
            let leader = self.cluster.leader_for(t, *p).ok_or_else(|| {
                Error::kafka_with(
                    ErrorCode::LeaderNotAvailable,
                    Some(format!("no leader for {t}-{p}")),
                )
            })?;
            by_leader.entry(leader).or_default().push((t.clone(), *p));
        }
        let mut out = Vec::with_capacity(tps.len());
        for (leader, parts) in by_leader {
            let conn = self.cluster.connection(leader).await?;
            let mut req = ListOffsetsRequest::default();
            req.replica_id = BrokerId(-1);
            let mut grouped: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in parts {
                grouped.entry(t).or_default().push(p);
            }
            for (t, ps) in grouped {
                let mut lt = ListOffsetsTopic::default();
                lt.name = TopicName(s(&t));
                lt.partitions = ps
                    .into_iter()
                    .map(|p| {
                        let mut lp = ListOffsetsPartition::default();
                        lp.partition_index = p;
                        lp.timestamp = spec.as_i64();
                        lp.current_leader_epoch = -1;
                        lp
                    })
                    .collect();
                req.topics.push(lt);
            }
            let resp = conn.send(&req).await?;
            for t in resp.topics {
                for p in t.partitions {
                    check(p.error_code, None)?;
                    out.push((t.name.to_string(), p.partition_index, p.offset, p.timestamp));
                }
            }
        }
        Ok(out)
    }

    pub async fn delete_groups(&self, ids: &[String]) -> Result<Vec<(String, Result<()>)>> {
        let mut out = Vec::new();
        for id in ids {
            let conn = self.cluster.coordinator(id).await?;
            let mut req = DeleteGroupsRequest::default();
            req.groups_names = vec![GroupId(s(id))];
            let resp = conn.send(&req).await?;
            for r in resp.results {
                out.push((r.group_id.to_string(), check(r.error_code, None)));
            }
        }
        Ok(out)
    }

    /// Moves partitions' log start offsets (DeleteRecords), at their leaders.
    pub async fn delete_records(
        &self,
        targets: &[(String, i32, i64)],
    ) -> Result<Vec<(String, i32, i64)>> {
        let topics: Vec<String> = targets.iter().map(|(t, _, _)| t.clone()).collect();
        self.cluster.refresh_metadata(&topics).await?;
        let mut out = Vec::new();
        for (t, p, offset) in targets {
            let leader = self
                .cluster
                .leader_for(t, *p)
                .ok_or_else(|| Error::kafka(ErrorCode::LeaderNotAvailable))?;
            let conn = self.cluster.connection(leader).await?;
            let mut req = DeleteRecordsRequest::default();
            req.timeout_ms = self.cluster.config.request_timeout.as_millis() as i32;
            let mut dt = DeleteRecordsTopic::default();
            dt.name = TopicName(s(t));
            let mut dp = DeleteRecordsPartition::default();
            dp.partition_index = *p;
            dp.offset = *offset;
            dt.partitions.push(dp);
            req.topics.push(dt);
            let resp = conn.send(&req).await?;
            for rt in resp.topics {
                for rp in rt.partitions {
                    check(rp.error_code, None)?;
                    out.push((rt.name.to_string(), rp.partition_index, rp.low_watermark));
                }
            }
        }
        Ok(out)
    }

    /// Which SCRAM mechanisms each user has credentials for (all users when
    /// `users` is None), with iteration counts.
    pub async fn describe_user_scram_credentials(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<UserScramCredentials>> {
        let conn = self.cluster.any_connection().await?;
        let mut req = DescribeUserScramCredentialsRequest::default();
        req.users = users.map(|us| {
            us.iter()
                .map(|u| {
                    let mut n = describe_user_scram_credentials_request::UserName::default();
                    n.name = s(u);
                    n
                })
                .collect()
        });
        let resp = conn.send(&req).await?;
        check(resp.error_code, resp.error_message.as_ref())?;
        let mut out = Vec::new();
        for r in resp.results {
            check(r.error_code, r.error_message.as_ref())?;
            out.push(UserScramCredentials {
                user: r.user.to_string(),
                credentials: r
                    .credential_infos
                    .into_iter()
                    .map(|c| (scram_mechanism_name(c.mechanism).to_string(), c.iterations))
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Adds, replaces or deletes SCRAM credentials. Passwords never leave
    /// this process: the broker receives a random salt and
    /// SaltedPassword = Hi(password, salt, iterations). Per-user results.
    pub async fn alter_user_scram_credentials(
        &self,
        changes: &[ScramCredentialChange],
    ) -> Result<Vec<(String, Result<()>)>> {
        let mut req = AlterUserScramCredentialsRequest::default();
        for c in changes {
            match c {
                ScramCredentialChange::Upsert {
                    user,
                    mechanism,
                    iterations,
                    password,
                } => {
                    let m = scram_mechanism(mechanism)?;
                    let mut salt = vec![0u8; 32];
                    getrandom::getrandom(&mut salt).map_err(|e| {
                        Error::Unsupported(format!("no randomness for a salt: {e}"))
                    })?;
                    let salted = m.hi(password.as_bytes(), &salt, *iterations);
                    let mut u =
                        alter_user_scram_credentials_request::ScramCredentialUpsertion::default();
                    u.name = s(user);
                    u.mechanism = m.type_id();
                    u.iterations = *iterations as i32;
                    u.salt = Bytes::from(salt);
                    u.salted_password = Bytes::from(salted);
                    req.upsertions.push(u);
                }
                ScramCredentialChange::Delete { user, mechanism } => {
                    let m = scram_mechanism(mechanism)?;
                    let mut d =
                        alter_user_scram_credentials_request::ScramCredentialDeletion::default();
                    d.name = s(user);
                    d.mechanism = m.type_id();
                    req.deletions.push(d);
                }
            }
        }
        let conn = self.cluster.any_connection().await?;
        let resp = conn.send(&req).await?;
        Ok(resp
            .results
            .into_iter()
            .map(|r| {
                (
                    r.user.to_string(),
                    check(r.error_code, r.error_message.as_ref()),
                )
            })
            .collect())
    }

    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        self.cluster.refresh_metadata(&[]).await?;
        Ok(ClusterDescription {
            cluster_id: self.cluster.cluster_id(),
            controller_id: self.cluster.controller_id(),
            brokers: self.cluster.brokers(),
        })
    }
}

/// One user's SCRAM credentials: (mechanism name, iterations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserScramCredentials {
    pub user: String,
    pub credentials: Vec<(String, i32)>,
}

/// A change for [`AdminClient::alter_user_scram_credentials`]; mechanisms
/// by SASL name (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
#[derive(Clone)]
pub enum ScramCredentialChange {
    Upsert {
        user: String,
        mechanism: String,
        iterations: u32,
        password: String,
    },
    Delete {
        user: String,
        mechanism: String,
    },
}

impl std::fmt::Debug for ScramCredentialChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScramCredentialChange::Upsert {
                user,
                mechanism,
                iterations,
                ..
            } => f
                .debug_struct("Upsert")
                .field("user", user)
                .field("mechanism", mechanism)
                .field("iterations", iterations)
                .finish_non_exhaustive(),
            ScramCredentialChange::Delete { user, mechanism } => f
                .debug_struct("Delete")
                .field("user", user)
                .field("mechanism", mechanism)
                .finish(),
        }
    }
}

fn scram_mechanism(name: &str) -> Result<ScramMechanism> {
    ScramMechanism::from_name(&name.to_ascii_uppercase()).ok_or_else(|| Error::Config {
        name: "mechanism".into(),
        reason: format!("unknown SCRAM mechanism {name} (SCRAM-SHA-256 or SCRAM-SHA-512)"),
    })
}

fn scram_mechanism_name(id: i8) -> &'static str {
    ScramMechanism::from_type_id(id).map_or("UNKNOWN", ScramMechanism::name)
}
