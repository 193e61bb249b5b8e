//! `NativeAdmin`: the Rust admin client behind KafkaJS's `admin()`. Each
//! method converts arguments, awaits one `AdminClient` call and converts
//! the answer; per-topic outcomes come back as `{ topic, error }` where
//! `error` is an encoded client error (see `error`) for errors.js to raise.
//! Group offsets are set with a standalone (assign-mode) Rust consumer of
//! that group, which is how the Java admin's alterConsumerGroupOffsets
//! behaves too: the broker refuses while the group has live members.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use napi::{Env, JsFunction, JsObject};
use napi_derive::napi;
use sluice::admin::OffsetSpec;
use sluice::{AdminClient, Consumer, ConsumerConfig, NewTopic, TopicPartition};

use crate::config::{JsAwsCredentials, Settings};
use crate::consumer::{commit_offsets, JsTopicPartition, JsTopicPartitionOffset};
use crate::error::{to_js, usage};

#[napi(object)]
pub struct JsConfigEntry {
    pub name: String,
    pub value: String,
}

#[napi(object)]
pub struct JsNewTopic {
    pub topic: String,
    pub num_partitions: Option<i32>,
    pub replication_factor: Option<i32>,
    pub config_entries: Option<Vec<JsConfigEntry>>,
}

#[napi(object)]
pub struct JsTopicOutcome {
    pub topic: String,
    /// An encoded error (errors.js decodes it), absent on success.
    pub error: Option<String>,
}

#[napi(object)]
pub struct JsPartitionMetadata {
    pub partition_error_code: i32,
    pub partition_id: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
}

#[napi(object)]
pub struct JsTopicMetadata {
    pub name: String,
    pub partitions: Vec<JsPartitionMetadata>,
}

#[napi(object)]
pub struct JsPartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: String,
    pub timestamp: String,
}

#[napi(object)]
pub struct JsMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub group_instance_id: Option<String>,
    pub assignment: Vec<JsTopicPartition>,
}

#[napi(object)]
pub struct JsGroup {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub error_code: i32,
    pub members: Vec<JsMember>,
}

#[napi(object)]
pub struct JsBroker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[napi(object)]
pub struct JsCluster {
    pub cluster_id: Option<String>,
    pub controller: i32,
    pub brokers: Vec<JsBroker>,
}

#[napi(object)]
pub struct JsGroupListing {
    pub group_id: String,
    pub protocol_type: String,
}

#[napi]
pub struct NativeAdmin {
    settings: Settings,
    admin: Arc<Mutex<Option<AdminClient>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn outcomes(v: Vec<(String, sluice::Result<()>)>) -> Vec<JsTopicOutcome> {
    v.into_iter()
        .map(|(topic, r)| JsTopicOutcome {
            topic,
            error: r.err().map(|e| to_js(e).reason),
        })
        .collect()
}

#[napi]
impl NativeAdmin {
    #[napi(constructor)]
    pub fn new(
        env: Env,
        props: HashMap<String, String>,
        token_provider: Option<JsFunction>,
        aws: Option<JsAwsCredentials>,
    ) -> napi::Result<Self> {
        let settings = Settings::new(&env, props, token_provider, aws)?;
        settings.admin()?;
        Ok(NativeAdmin {
            settings,
            admin: Arc::new(Mutex::new(None)),
        })
    }

    fn client(&self) -> napi::Result<AdminClient> {
        lock(&self.admin)
            .clone()
            .ok_or_else(|| usage("the admin client is not connected"))
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn connect(&self, env: Env) -> napi::Result<JsObject> {
        let cfg = self.settings.admin()?;
        let slot = self.admin.clone();
        env.spawn_future(async move {
            let a = AdminClient::connect(cfg).await.map_err(to_js)?;
            *lock(&slot) = Some(a);
            Ok(())
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<JsObject> {
        lock(&self.admin).take();
        env.spawn_future(async move { Ok(()) })
    }

    #[napi(ts_return_type = "Promise<Array<JsTopicOutcome>>")]
    pub fn create_topics(
        &self,
        env: Env,
        topics: Vec<JsNewTopic>,
        validate_only: bool,
    ) -> napi::Result<JsObject> {
        let a = self.client()?;
        let topics: Vec<NewTopic> = topics
            .into_iter()
            .map(|t| {
                let mut n = NewTopic::new(
                    t.topic,
                    t.num_partitions.unwrap_or(-1),
                    t.replication_factor.unwrap_or(-1) as i16,
                );
                for c in t.config_entries.unwrap_or_default() {
                    n = n.config(c.name, c.value);
                }
                n
            })
            .collect();
        env.spawn_future(async move {
            Ok(outcomes(
                a.create_topics(topics, validate_only)
                    .await
                    .map_err(to_js)?,
            ))
        })
    }

    #[napi(ts_return_type = "Promise<Array<JsTopicOutcome>>")]
    pub fn delete_topics(&self, env: Env, topics: Vec<String>) -> napi::Result<JsObject> {
        let a = self.client()?;
        env.spawn_future(
            async move { Ok(outcomes(a.delete_topics(&topics).await.map_err(to_js)?)) },
        )
    }

    /// Topic names (internal topics left out, as KafkaJS does).
    #[napi(ts_return_type = "Promise<Array<string>>")]
    pub fn list_topics(&self, env: Env) -> napi::Result<JsObject> {
        let a = self.client()?;
        env.spawn_future(async move {
            let ts = a.list_topics(false).await.map_err(to_js)?;
            Ok(ts.iter().map(|t| t.name.clone()).collect::<Vec<String>>())
        })
    }

    /// Metadata of `topics` (all topics when empty).
    #[napi(ts_return_type = "Promise<Array<JsTopicMetadata>>")]
    pub fn fetch_topic_metadata(&self, env: Env, topics: Vec<String>) -> napi::Result<JsObject> {
        let a = self.client()?;
        env.spawn_future(async move {
            let infos = if topics.is_empty() {
                a.list_topics(false).await
            } else {
                a.describe_topics(&topics).await
            }
            .map_err(to_js)?;
            Ok(infos
                .iter()
                .map(|t| JsTopicMetadata {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| JsPartitionMetadata {
                            partition_error_code: i32::from(p.error.code()),
                            partition_id: p.partition,
                            leader: p.leader,
                            replicas: p.replicas.clone(),
                            isr: p.isr.clone(),
                            offline_replicas: Vec::new(),
                        })
                        .collect(),
                })
                .collect::<Vec<_>>())
        })
    }

    /// ListOffsets: `spec` is "earliest", "latest" or a timestamp in ms.
    #[napi(ts_return_type = "Promise<Array<JsPartitionOffset>>")]
    pub fn list_offsets(
        &self,
        env: Env,
        partitions: Vec<JsTopicPartition>,
        spec: String,
    ) -> napi::Result<JsObject> {
        let a = self.client()?;
        let spec = match spec.as_str() {
            "earliest" => OffsetSpec::Earliest,
            "latest" => OffsetSpec::Latest,
            ts => OffsetSpec::Timestamp(
                ts.parse()
                    .map_err(|_| usage(format!("`{ts}` is not earliest, latest or a timestamp")))?,
            ),
        };
        let tps: Vec<(String, i32)> = partitions
            .into_iter()
            .map(|p| (p.topic, p.partition))
            .collect();
        env.spawn_future(async move {
            let v = a.list_offsets(&tps, spec).await.map_err(to_js)?;
            Ok(v.into_iter()
                .map(|(topic, partition, offset, ts)| JsPartitionOffset {
                    topic,
                    partition,
                    offset: offset.to_string(),
                    timestamp: ts.to_string(),
                })
                .collect::<Vec<_>>())
        })
    }

    #[napi(ts_return_type = "Promise<Array<JsGroup>>")]
    pub fn describe_groups(&self, env: Env, group_ids: Vec<String>) -> napi::Result<JsObject> {
        let a = self.client()?;
        env.spawn_future(async move {
            let gs = a.describe_groups(&group_ids).await.map_err(to_js)?;
            Ok(gs
                .into_iter()
                .map(|g| JsGroup {
                    group_id: g.group_id,
                    state: g.state,
                    protocol_type: g.protocol_type,
                    protocol: g.protocol,
                    error_code: i32::from(g.error.code()),
                    members: g
                        .members
                        .into_iter()
                        .map(|m| JsMember {
                            member_id: m.member_id,
                            client_id: m.client_id,
                            client_host: m.host,
                            group_instance_id: m.group_instance_id,
                            assignment: m
                                .assignment
                                .into_iter()
                                .map(|(topic, partition)| JsTopicPartition { topic, partition })
                                .collect(),
                        })
                        .collect(),
                })
                .collect::<Vec<_>>())
        })
    }

    #[napi(ts_return_type = "Promise<Array<JsGroupListing>>")]
    pub fn list_groups(&self, env: Env) -> napi::Result<JsObject> {
        let a = self.client()?;
        env.spawn_future(async move {
            let gs = a.list_groups().await.map_err(to_js)?;
            Ok(gs
                .into_iter()
                .map(|g| JsGroupListing {
                    group_id: g.group_id,
                    protocol_type: g.protocol_type,
                })
                .collect::<Vec<_>>())
        })
    }

    #[napi(ts_return_type = "Promise<Array<JsTopicOutcome>>")]
    pub fn delete_groups(&self, env: Env, group_ids: Vec<String>) -> napi::Result<JsObject> {
        let a = self.client()?;
        env.spawn_future(
            async move { Ok(outcomes(a.delete_groups(&group_ids).await.map_err(to_js)?)) },
        )
    }

    /// The group's committed offsets, every partition it has one for.
    #[napi(ts_return_type = "Promise<Array<JsTopicPartitionOffset>>")]
    pub fn group_offsets(&self, env: Env, group_id: String) -> napi::Result<JsObject> {
        let a = self.client()?;
        env.spawn_future(async move {
            let m = a.list_group_offsets(&group_id).await.map_err(to_js)?;
            Ok(m.into_iter()
                .map(|((topic, partition), o)| JsTopicPartitionOffset {
                    topic,
                    partition,
                    offset: o.to_string(),
                })
                .collect::<Vec<_>>())
        })
    }

    /// Grows `topic` to `count` partitions.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn create_partitions(&self, env: Env, topic: String, count: i32) -> napi::Result<JsObject> {
        let a = self.client()?;
        env.spawn_future(async move { a.create_partitions(&topic, count).await.map_err(to_js) })
    }

    /// The brokers, the controller and the cluster id.
    #[napi(ts_return_type = "Promise<JsCluster>")]
    pub fn describe_cluster(&self, env: Env) -> napi::Result<JsObject> {
        let a = self.client()?;
        env.spawn_future(async move {
            let d = a.describe_cluster().await.map_err(to_js)?;
            Ok(JsCluster {
                cluster_id: d.cluster_id,
                controller: d.controller_id,
                brokers: d
                    .brokers
                    .into_iter()
                    .map(|b| JsBroker {
                        node_id: b.node_id,
                        host: b.host,
                        port: b.port,
                        rack: b.rack,
                    })
                    .collect(),
            })
        })
    }

    /// Deletes records before the given offsets (DeleteRecords).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn delete_records(
        &self,
        env: Env,
        offsets: Vec<JsTopicPartitionOffset>,
    ) -> napi::Result<JsObject> {
        let a = self.client()?;
        let targets = offsets
            .into_iter()
            .map(JsTopicPartitionOffset::parse)
            .collect::<napi::Result<Vec<_>>>()?;
        env.spawn_future(async move { a.delete_records(&targets).await.map(|_| ()).map_err(to_js) })
    }

    /// Commits `offsets` for `groupId` (the group must have no live members).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn set_group_offsets(
        &self,
        env: Env,
        group_id: String,
        offsets: Vec<JsTopicPartitionOffset>,
    ) -> napi::Result<JsObject> {
        let a = self.client()?;
        let mut cfg = ConsumerConfig {
            client: self.settings.admin()?,
            ..ConsumerConfig::default()
        };
        cfg.group_id = Some(group_id);
        cfg.enable_auto_commit = false;
        let parsed = commit_offsets(offsets)?;
        env.spawn_future(async move {
            let mut c = Consumer::with_cluster(a.cluster().clone(), cfg);
            c.assign(parsed.iter().map(|(tp, _)| tp.clone()))
                .map_err(to_js)?;
            let r = c.commit_sync_offsets(parsed).await;
            c.assign(Vec::<TopicPartition>::new()).map_err(to_js)?;
            let _ = c.close().await;
            r.map_err(to_js)
        })
    }
}
