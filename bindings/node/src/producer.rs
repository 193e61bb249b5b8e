//! `NativeProducer`: the Rust producer behind KafkaJS's `producer()`.
//! `send` takes one call's records packed by the JS layer (keys and values
//! concatenated in one Buffer, lengths and partitions in an Int32Array), so
//! a call crosses the boundary as a handful of values whatever its size;
//! the bytes are copied once into one `Bytes` that every record slices.
//! Each record is enqueued on the JS thread (`Producer::enqueue`, so calls
//! keep their order); the returned Promise waits for buffer space
//! (backpressure), then for the call's deliveries, which are
//! summed up per partition, as KafkaJS's RecordMetadata[] is. KafkaJS sets
//! `acks` and `compression` per call while the Rust producer fixes them per
//! instance, so one Rust producer per (acks, compression) pair in use is
//! made on the same cluster connection; a transactional producer is one
//! Rust producer (a second one with the same transactional.id would fence
//! it), so it sends with acks=all and its configured compression only.
//! The transactional calls (`initTransactions`, `beginTransaction`,
//! `sendOffsetsToTransaction`, `commitTransaction`, `abortTransaction`)
//! are the core's, for the JS layer's KafkaJS `transaction()` object.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Float64Array, Int32Array};
use napi::{Env, JsFunction, JsObject};
use napi_derive::napi;
use sluice::net::Cluster;
use sluice::{Acks, Compression, ConsumerGroupMetadata, Producer, ProducerConfig, ProducerRecord};

use crate::config::{JsAwsCredentials, Settings};
use crate::consumer::{commit_offsets, JsTopicPartitionOffset};
use crate::error::{to_js, usage};

#[napi(object)]
pub struct JsHeader {
    pub key: String,
    pub value: Option<Buffer>,
}

/// KafkaJS's RecordMetadata for one partition of one send call.
#[napi(object)]
pub struct JsRecordMetadata {
    pub topic_name: String,
    pub partition: i32,
    pub error_code: i32,
    pub base_offset: String,
    pub log_append_time: String,
    pub log_start_offset: String,
}

struct Connected {
    cluster: Arc<Cluster>,
    base: ProducerConfig,
    /// (acks, compression name) -> producer.
    producers: HashMap<(i16, &'static str), Producer>,
}

#[napi]
pub struct NativeProducer {
    settings: Settings,
    state: Arc<Mutex<Option<Connected>>>,
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connected {
    /// The producer for this call's acks and compression (made on first use).
    fn producer_for(
        &mut self,
        acks: Option<i32>,
        compression: Option<&str>,
    ) -> napi::Result<Producer> {
        let acks = match acks {
            None => self.base.acks,
            Some(-1) => Acks::All,
            Some(1) => Acks::Leader,
            Some(0) => Acks::None,
            Some(n) => return Err(usage(format!("acks must be -1, 0 or 1, not {n}"))),
        };
        let compression = match compression {
            None => self.base.compression,
            Some(n) => Compression::from_name(n)
                .ok_or_else(|| usage(format!("unknown compression `{n}`")))?,
        };
        if self.base.transactional_id.is_some() {
            if acks != Acks::All {
                return Err(usage(
                    "a transactional producer sends with acks=-1 (all) only",
                ));
            }
            return self.transactional();
        }
        let key = (acks.as_i16(), compression_name(compression));
        if let Some(p) = self.producers.get(&key) {
            return Ok(p.clone());
        }
        let mut cfg = self.base.clone();
        cfg.acks = acks;
        cfg.compression = compression;
        if acks != Acks::All {
            cfg.enable_idempotence = false;
        }
        cfg.validate().map_err(to_js)?;
        let p = Producer::from_cluster(self.cluster.clone(), cfg, None);
        self.producers.insert(key, p.clone());
        Ok(p)
    }
}

impl Connected {
    /// The one producer of a transactional producer.
    fn transactional(&self) -> napi::Result<Producer> {
        self.producers
            .values()
            .next()
            .cloned()
            .ok_or_else(|| usage("the producer is not connected"))
    }
}

impl NativeProducer {
    fn transactional(&self) -> napi::Result<Producer> {
        let st = lock(&self.state);
        let c = st
            .as_ref()
            .ok_or_else(|| usage("the producer is not connected"))?;
        if c.base.transactional_id.is_none() {
            return Err(usage(
                "transactions need a transactionalId in the producer's options",
            ));
        }
        c.transactional()
    }
}

#[napi]
impl NativeProducer {
    /// `props`: Kafka producer property names; `tokenProvider`: an async
    /// function resolving to `{ value }` (OAUTHBEARER); `aws`: explicit
    /// credentials for aws-msk-iam.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        props: HashMap<String, String>,
        token_provider: Option<JsFunction>,
        aws: Option<JsAwsCredentials>,
    ) -> napi::Result<Self> {
        let settings = Settings::new(&env, props, token_provider, aws)?;
        settings.producer()?; // fail early on a bad property
        Ok(NativeProducer {
            settings,
            state: Arc::new(Mutex::new(None)),
        })
    }

    /// Connects to the cluster (bootstrap, metadata); resolves when ready.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn connect(&self, env: Env) -> napi::Result<JsObject> {
        let cfg = self.settings.producer()?;
        let state = self.state.clone();
        env.spawn_future(async move {
            if lock(&state).is_some() {
                return Ok(());
            }
            let p = Producer::connect(cfg.clone()).await.map_err(to_js)?;
            let key = (cfg.acks.as_i16(), compression_name(cfg.compression));
            let mut producers = HashMap::new();
            let cluster = p.cluster().clone();
            producers.insert(key, p);
            *lock(&state) = Some(Connected {
                cluster,
                base: cfg,
                producers,
            });
            Ok(())
        })
    }

    /// Sends one call's records to `topic`. `data` holds key then value of
    /// each record back to back; `layout` has three ints per record:
    /// partition (-1: the partitioner's choice), key length and value
    /// length (-1: null). `timestamps` (NaN: now) and `headers` are per
    /// record when given. Resolves with one RecordMetadata per partition.
    #[allow(clippy::too_many_arguments)]
    #[napi(ts_return_type = "Promise<Array<JsRecordMetadata>>")]
    pub fn send(
        &self,
        env: Env,
        topic: String,
        data: Buffer,
        layout: Int32Array,
        timestamps: Option<Float64Array>,
        headers: Option<Vec<Option<Vec<JsHeader>>>>,
        acks: Option<i32>,
        compression: Option<String>,
    ) -> napi::Result<JsObject> {
        let producer = {
            let mut st = lock(&self.state);
            let c = st
                .as_mut()
                .ok_or_else(|| usage("the producer is not connected"))?;
            c.producer_for(acks, compression.as_deref())?
        };
        let layout: &[i32] = &layout;
        if !layout.len().is_multiple_of(3) {
            return Err(usage("layout must hold 3 ints per record"));
        }
        let n = layout.len() / 3;
        let bytes = Bytes::copy_from_slice(&data);
        let mut records = Vec::with_capacity(n);
        let mut pos = 0usize;
        let mut take = |len: i32| -> napi::Result<Option<Bytes>> {
            if len < 0 {
                return Ok(None);
            }
            let end = pos + len as usize;
            if end > bytes.len() {
                return Err(usage("layout lengths exceed the data buffer"));
            }
            let b = bytes.slice(pos..end);
            pos = end;
            Ok(Some(b))
        };
        let mut headers = headers.map(|h| h.into_iter());
        for i in 0..n {
            let (partition, klen, vlen) = (layout[3 * i], layout[3 * i + 1], layout[3 * i + 2]);
            let mut r = ProducerRecord::new(topic.clone());
            r.partition = (partition >= 0).then_some(partition);
            r.key = take(klen)?;
            r.value = take(vlen)?;
            if let Some(ts) = &timestamps {
                let t = ts.get(i).copied().unwrap_or(f64::NAN);
                if t.is_finite() {
                    r.timestamp = Some(t as i64);
                }
            }
            if let Some(Some(hs)) = headers.as_mut().and_then(|h| h.next()) {
                r.headers = hs
                    .into_iter()
                    .map(|h| (h.key, h.value.map(|v| Bytes::copy_from_slice(&v))))
                    .collect();
            }
            records.push(r);
        }
        // Enqueued here, on the JS thread, so concurrent calls keep their
        // call order; each waits (in the future) for buffer space in turn.
        let enqueued: Vec<_> = records.into_iter().map(|r| producer.enqueue(r)).collect();
        env.spawn_future(async move {
            let mut deliveries = Vec::with_capacity(enqueued.len());
            for e in enqueued {
                deliveries.push(e.await.map_err(to_js)?);
            }
            let mut first: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
            let mut failure = None;
            for d in deliveries {
                match d.await {
                    Ok(md) => {
                        first
                            .entry((md.topic, md.partition))
                            .or_insert((md.offset, md.timestamp));
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failure {
                return Err(to_js(e));
            }
            Ok(first
                .into_iter()
                .map(|((topic, partition), (offset, _ts))| JsRecordMetadata {
                    topic_name: topic,
                    partition,
                    error_code: 0,
                    base_offset: offset.to_string(),
                    log_append_time: "-1".into(),
                    log_start_offset: "-1".into(),
                })
                .collect::<Vec<_>>())
        })
    }

    /// The partition ids of `topic` (for custom JS partitioners).
    #[napi(ts_return_type = "Promise<Array<number>>")]
    pub fn partitions_for(&self, env: Env, topic: String) -> napi::Result<JsObject> {
        let producer = {
            let mut st = lock(&self.state);
            let c = st
                .as_mut()
                .ok_or_else(|| usage("the producer is not connected"))?;
            c.producer_for(None, None)?
        };
        env.spawn_future(async move {
            let parts = producer.partitions_for(&topic).await.map_err(to_js)?;
            Ok(parts.into_iter().map(|p| p.partition).collect::<Vec<i32>>())
        })
    }

    /// Registers the transactional.id with its coordinator (fencing older
    /// producers with it).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn init_transactions(&self, env: Env) -> napi::Result<JsObject> {
        let p = self.transactional()?;
        env.spawn_future(async move { p.init_transactions().await.map_err(to_js) })
    }

    /// Starts a transaction.
    #[napi]
    pub fn begin_transaction(&self) -> napi::Result<()> {
        self.transactional()?.begin_transaction().map_err(to_js)
    }

    /// Adds a group's offsets to the transaction (KafkaJS's `sendOffsets`:
    /// a group id; generation, member id and instance id when known).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn send_offsets_to_transaction(
        &self,
        env: Env,
        offsets: Vec<JsTopicPartitionOffset>,
        group_id: String,
        generation_id: Option<i32>,
        member_id: Option<String>,
        group_instance_id: Option<String>,
    ) -> napi::Result<JsObject> {
        let p = self.transactional()?;
        let offsets = commit_offsets(offsets)?;
        let group = ConsumerGroupMetadata {
            group_id,
            generation_id: generation_id.unwrap_or(-1),
            member_id: member_id.unwrap_or_default(),
            group_instance_id,
        };
        env.spawn_future(async move {
            p.send_offsets_to_transaction(offsets, &group)
                .await
                .map_err(to_js)
        })
    }

    /// Flushes and commits the transaction.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn commit_transaction(&self, env: Env) -> napi::Result<JsObject> {
        let p = self.transactional()?;
        env.spawn_future(async move { p.commit_transaction().await.map_err(to_js) })
    }

    /// Aborts the transaction.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn abort_transaction(&self, env: Env) -> napi::Result<JsObject> {
        let p = self.transactional()?;
        env.spawn_future(async move { p.abort_transaction().await.map_err(to_js) })
    }

    /// The transaction state's Java name (`IN_TRANSACTION`, ...), or null
    /// for a producer that is not transactional or not connected.
    #[napi]
    pub fn transaction_state(&self) -> Option<String> {
        let st = lock(&self.state);
        let c = st.as_ref()?;
        c.base.transactional_id.as_ref()?;
        c.transactional()
            .ok()?
            .transaction_state()
            .map(|s| s.name().to_string())
    }

    /// Sends lingering batches now and waits for everything sent so far.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn flush(&self, env: Env) -> napi::Result<JsObject> {
        let producers: Vec<Producer> = lock(&self.state)
            .as_ref()
            .map(|c| c.producers.values().cloned().collect())
            .unwrap_or_default();
        env.spawn_future(async move {
            for p in producers {
                p.flush().await;
            }
            Ok(())
        })
    }

    /// Delivers what is queued (up to `timeoutMs`) and closes.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env, timeout_ms: Option<f64>) -> napi::Result<JsObject> {
        let connected = lock(&self.state).take();
        let timeout = Duration::from_millis(timeout_ms.unwrap_or(30_000.0).max(0.0) as u64);
        env.spawn_future(async move {
            let Some(c) = connected else { return Ok(()) };
            let mut first_err = None;
            for p in c.producers.into_values() {
                if let Err(e) = p.close(timeout).await {
                    first_err.get_or_insert(e);
                }
            }
            match first_err {
                Some(e) => Err(to_js(e)),
                None => Ok(()),
            }
        })
    }
}
