//! `NativeConsumer`: the Rust consumer behind KafkaJS's `consumer()`.
//! `connect` opens the cluster view; `start` makes the group member on it
//! once the JS layer knows the subscription (KafkaJS decides
//! `fromBeginning` at subscribe time, after connect). `poll` hands each
//! partition's records over as one Buffer of keys and values plus arrays
//! of lengths, offsets and timestamps, and the rebalance callbacks that ran
//! during the poll (the JS layer turns those into GROUP_JOIN events).
//! Commits, seeks and pauses go straight to the Rust consumer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::Buffer;
use napi::{Env, JsFunction, JsObject};
use napi_derive::napi;
use sluice::net::Cluster;
use sluice::{Consumer, ConsumerRecord, OffsetAndMetadata, RebalanceListener, TopicPartition};

use crate::config::{JsAwsCredentials, Settings};
use crate::error::{to_js, usage};
use crate::producer::JsHeader;

#[napi(object)]
#[derive(Clone)]
pub struct JsTopicPartition {
    pub topic: String,
    pub partition: i32,
}

#[napi(object)]
pub struct JsTopicPartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: String,
}

/// An offset as JavaScript passes it (KafkaJS keeps offsets as strings,
/// beyond a double's exact range), read as a number.
pub fn parse_offset(offset: &str) -> napi::Result<i64> {
    offset
        .trim()
        .parse()
        .map_err(|_| usage(format!("offset `{offset}` is not a number")))
}

impl JsTopicPartitionOffset {
    /// (topic, partition, offset) with the offset read as a number.
    pub fn parse(self) -> napi::Result<(String, i32, i64)> {
        let offset = parse_offset(&self.offset)?;
        Ok((self.topic, self.partition, offset))
    }
}

/// Offsets to commit, as the core takes them (no metadata, no leader epoch).
pub fn commit_offsets(
    offsets: Vec<JsTopicPartitionOffset>,
) -> napi::Result<Vec<(TopicPartition, OffsetAndMetadata)>> {
    offsets
        .into_iter()
        .map(|o| {
            let (topic, partition, offset) = o.parse()?;
            Ok((
                TopicPartition::new(topic, partition),
                OffsetAndMetadata {
                    offset,
                    leader_epoch: None,
                    metadata: String::new(),
                },
            ))
        })
        .collect()
}

/// A rebalance callback that ran inside a poll.
#[napi(object)]
#[derive(Clone)]
pub struct JsRebalance {
    /// "assigned", "revoked" or "lost".
    pub kind: String,
    pub partitions: Vec<JsTopicPartition>,
}

/// One partition's records from one poll.
#[napi(object)]
pub struct JsBatch {
    pub topic: String,
    pub partition: i32,
    /// Key then value of each record, back to back.
    pub data: Buffer,
    /// Key length and value length per record (-1: null).
    pub lengths: Vec<i32>,
    pub offsets: Vec<i64>,
    pub timestamps: Vec<i64>,
    /// Per record, when any record of the batch has headers.
    pub headers: Option<Vec<Vec<JsHeader>>>,
}

#[napi(object)]
pub struct JsPoll {
    pub batches: Vec<JsBatch>,
    pub rebalances: Vec<JsRebalance>,
}

struct Recorder(Arc<Mutex<Vec<JsRebalance>>>);

fn tps(parts: &[TopicPartition]) -> Vec<JsTopicPartition> {
    parts
        .iter()
        .map(|tp| JsTopicPartition {
            topic: tp.topic.clone(),
            partition: tp.partition,
        })
        .collect()
}

impl Recorder {
    fn push(&self, kind: &str, parts: &[TopicPartition]) {
        lock(&self.0).push(JsRebalance {
            kind: kind.into(),
            partitions: tps(parts),
        });
    }
}

impl RebalanceListener for Recorder {
    fn on_partitions_assigned(&self, parts: &[TopicPartition]) {
        self.push("assigned", parts)
    }
    fn on_partitions_revoked(&self, parts: &[TopicPartition]) {
        self.push("revoked", parts)
    }
    fn on_partitions_lost(&self, parts: &[TopicPartition]) {
        self.push("lost", parts)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Shared = Arc<tokio::sync::Mutex<Option<Consumer>>>;

#[napi]
pub struct NativeConsumer {
    settings: Settings,
    cluster: Arc<Mutex<Option<Arc<Cluster>>>>,
    consumer: Shared,
    rebalances: Arc<Mutex<Vec<JsRebalance>>>,
}

fn batch_of(topic: String, partition: i32, recs: Vec<ConsumerRecord>) -> JsBatch {
    let size: usize = recs
        .iter()
        .map(|r| r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    let mut data = Vec::with_capacity(size);
    let mut lengths = Vec::with_capacity(recs.len() * 2);
    let mut offsets = Vec::with_capacity(recs.len());
    let mut timestamps = Vec::with_capacity(recs.len());
    let any_headers = recs.iter().any(|r| !r.headers.is_empty());
    let mut headers = any_headers.then(|| Vec::with_capacity(recs.len()));
    for r in recs {
        for part in [&r.key, &r.value] {
            match part {
                Some(b) => {
                    data.extend_from_slice(b);
                    lengths.push(b.len() as i32);
                }
                None => lengths.push(-1),
            }
        }
        offsets.push(r.offset);
        timestamps.push(r.timestamp);
        if let Some(h) = headers.as_mut() {
            h.push(
                r.headers
                    .into_iter()
                    .map(|(key, v)| JsHeader {
                        key,
                        value: v.map(|b| Buffer::from(b.to_vec())),
                    })
                    .collect(),
            );
        }
    }
    JsBatch {
        topic,
        partition,
        data: Buffer::from(data),
        lengths,
        offsets,
        timestamps,
        headers,
    }
}

/// Runs `$body` with `$c` bound to the running consumer (locked).
macro_rules! with_consumer {
    ($shared:expr, |$c:ident| $body:expr) => {{
        let mut g = $shared.lock().await;
        match g.as_mut() {
            None => Err(usage("the consumer is not running (call run() first)")),
            Some($c) => $body.map_err(to_js),
        }
    }};
}

#[napi]
impl NativeConsumer {
    /// `props`: Kafka consumer property names (see NativeProducer for the rest).
    #[napi(constructor)]
    pub fn new(
        env: Env,
        props: HashMap<String, String>,
        token_provider: Option<JsFunction>,
        aws: Option<JsAwsCredentials>,
    ) -> napi::Result<Self> {
        let settings = Settings::new(&env, props, token_provider, aws)?;
        settings.consumer()?;
        Ok(NativeConsumer {
            settings,
            cluster: Arc::new(Mutex::new(None)),
            consumer: Arc::new(tokio::sync::Mutex::new(None)),
            rebalances: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Connects to the cluster (bootstrap and metadata).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn connect(&self, env: Env) -> napi::Result<JsObject> {
        let cfg = self.settings.consumer()?;
        let cluster = self.cluster.clone();
        env.spawn_future(async move {
            let c = Cluster::connect(cfg.client.clone()).await.map_err(to_js)?;
            *lock(&cluster) = Some(c);
            Ok(())
        })
    }

    /// Creates the group member, subscribed to `topics` and/or `pattern`
    /// (a regular expression), with `overrides` (Kafka property names,
    /// e.g. auto.offset.reset) applied on top of the constructor's.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn start(
        &self,
        env: Env,
        topics: Vec<String>,
        pattern: Option<String>,
        overrides: HashMap<String, String>,
    ) -> napi::Result<JsObject> {
        let mut cfg = self.settings.consumer()?;
        for (k, v) in &overrides {
            cfg.set(k, v).map_err(to_js)?;
        }
        cfg.validate().map_err(to_js)?;
        let cluster = lock(&self.cluster)
            .clone()
            .ok_or_else(|| usage("the consumer is not connected"))?;
        let shared = self.consumer.clone();
        let rebalances = self.rebalances.clone();
        env.spawn_future(async move {
            let mut g = shared.lock().await;
            if let Some(mut old) = g.take() {
                let _ = old.close().await;
            }
            let mut c = Consumer::with_cluster(cluster, cfg);
            c.set_rebalance_listener(Arc::new(Recorder(rebalances)));
            match pattern {
                Some(p) => {
                    // Names are folded into the pattern, as KafkaJS allows mixing both.
                    let mut alts: Vec<String> =
                        topics.iter().map(|t| format!("^{}$", escape(t))).collect();
                    alts.push(format!("(?:{p})"));
                    c.subscribe_pattern(&alts.join("|")).map_err(to_js)?
                }
                None => c.subscribe(&topics).map_err(to_js)?,
            }
            *g = Some(c);
            Ok(())
        })
    }

    /// Waits up to `timeoutMs` for records; returns them per partition with
    /// the rebalance callbacks that ran meanwhile.
    #[napi(ts_return_type = "Promise<JsPoll>")]
    pub fn poll(&self, env: Env, timeout_ms: f64) -> napi::Result<JsObject> {
        let shared = self.consumer.clone();
        let rebalances = self.rebalances.clone();
        let timeout = Duration::from_millis(timeout_ms.max(0.0) as u64);
        env.spawn_future(async move {
            let records = with_consumer!(shared, |c| c.poll(timeout).await);
            let rebalances = std::mem::take(&mut *lock(&rebalances));
            let records = records?;
            let mut parts: BTreeMap<(String, i32), Vec<ConsumerRecord>> = BTreeMap::new();
            for r in records {
                match parts.get_mut(&(r.topic.clone(), r.partition)) {
                    Some(v) => v.push(r),
                    None => {
                        parts.insert((r.topic.clone(), r.partition), vec![r]);
                    }
                }
            }
            let batches = parts
                .into_iter()
                .map(|((t, p), recs)| batch_of(t, p, recs))
                .collect();
            Ok(JsPoll {
                batches,
                rebalances,
            })
        })
    }

    /// Commits the given next-offsets-to-read.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn commit(&self, env: Env, offsets: Vec<JsTopicPartitionOffset>) -> napi::Result<JsObject> {
        let parsed = commit_offsets(offsets)?;
        let shared = self.consumer.clone();
        env.spawn_future(
            async move { with_consumer!(shared, |c| c.commit_sync_offsets(parsed).await) },
        )
    }

    /// Queues a commit of the given offsets and resolves with its outcome;
    /// the consumer is free for polls while the commit travels (commits
    /// reach the broker in call order).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn commit_async(
        &self,
        env: Env,
        offsets: Vec<JsTopicPartitionOffset>,
    ) -> napi::Result<JsObject> {
        let parsed = commit_offsets(offsets)?;
        let shared = self.consumer.clone();
        env.spawn_future(async move {
            let queued = with_consumer!(shared, |c| Ok::<_, sluice::Error>(
                c.commit_async_offsets(parsed)
            ))?;
            queued.await.map_err(to_js)
        })
    }

    /// Moves the next poll of a partition to `offset` (-2: earliest, -1: latest).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn seek(
        &self,
        env: Env,
        topic: String,
        partition: i32,
        offset: String,
    ) -> napi::Result<JsObject> {
        let off = parse_offset(&offset)?;
        let shared = self.consumer.clone();
        env.spawn_future(async move {
            let tp = TopicPartition::new(topic, partition);
            with_consumer!(shared, |c| match off {
                -2 => c.seek_to_beginning(&[tp]),
                -1 => c.seek_to_end(&[tp]),
                o => c.seek(&tp, o),
            })
        })
    }

    /// Pauses (`pause = true`) or resumes fetching from partitions.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn set_paused(
        &self,
        env: Env,
        partitions: Vec<JsTopicPartition>,
        pause: bool,
    ) -> napi::Result<JsObject> {
        let shared = self.consumer.clone();
        let parts: Vec<TopicPartition> = partitions
            .into_iter()
            .map(|p| TopicPartition::new(p.topic, p.partition))
            .collect();
        env.spawn_future(async move {
            with_consumer!(shared, |c| {
                // Only partitions currently assigned can be paused.
                let owned = c.assignment();
                let parts: Vec<TopicPartition> =
                    parts.into_iter().filter(|p| owned.contains(p)).collect();
                if pause {
                    c.pause(&parts)
                } else {
                    c.resume(&parts)
                }
            })
        })
    }

    /// The partitions assigned to this member.
    #[napi(ts_return_type = "Promise<Array<JsTopicPartition>>")]
    pub fn assignment(&self, env: Env) -> napi::Result<JsObject> {
        let shared = self.consumer.clone();
        env.spawn_future(async move {
            let g = shared.lock().await;
            Ok(g.as_ref()
                .map(|c| {
                    c.assignment()
                        .into_iter()
                        .map(|tp| JsTopicPartition {
                            topic: tp.topic,
                            partition: tp.partition,
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default())
        })
    }

    /// Leaves the group (committing nothing itself: the JS layer commits
    /// what its handlers resolved before calling this).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop(&self, env: Env) -> napi::Result<JsObject> {
        let shared = self.consumer.clone();
        env.spawn_future(async move {
            let taken = shared.lock().await.take();
            if let Some(mut c) = taken {
                c.close().await.map_err(to_js)?;
            }
            Ok(())
        })
    }

    /// Stops the member (if any) and drops the cluster view.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<JsObject> {
        let shared = self.consumer.clone();
        let cluster = self.cluster.clone();
        env.spawn_future(async move {
            let taken = shared.lock().await.take();
            if let Some(mut c) = taken {
                c.close().await.map_err(to_js)?;
            }
            lock(&cluster).take();
            Ok(())
        })
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
