//! Incremental fetch sessions (KIP-227): each shard's session cache and the
//! rules that make a Fetch a session operation. A full fetch with epoch 0
//! asks for a new session, made from the partitions it names and the
//! answer it gets; an incremental fetch (epoch > 0) names only partitions
//! added or changed, plus the ones to forget, and its answer carries only
//! partitions with records, a new high watermark, last stable offset or log
//! start offset, or an error. Epoch -1 closes the named session (or asks
//! for a session-less fetch). Pure and I/O-free: api/fetch.rs calls
//! [`FetchSessionCache::open`] before reading, which resolves a session into
//! the full partition list, and [`FetchSessionCache::finish`] after, which
//! picks the partitions that go out.
//!
//! Where sessions live: a client connection stays on one shard (SO_REUSEPORT),
//! so each shard keeps its own cache and its own share of
//! `max.incremental.fetch.session.cache.slots`, and a session id carries
//! its shard (`id % shards`). A fetch naming a session of another shard (a
//! client that reconnected and landed elsewhere) gets
//! FETCH_SESSION_ID_NOT_FOUND and starts over with a full fetch, as every
//! Kafka client does; a full or closing fetch naming one has it removed
//! there ([`FetchSessionCache::foreign_session_to_close`]).
//!
//! Eviction is Kafka's: when a shard's slots are full, a new session takes
//! the slot of the session unused for longest if that one has been idle
//! for more than `min.incremental.fetch.session.eviction.ms`; otherwise of
//! the least valuable evictable one (non-privileged before privileged,
//! then fewer partitions) if the new one is worth more. Sessions of
//! follower brokers are privileged: only they may evict a session younger
//! than the eviction time, and only a non-privileged one.

use std::collections::HashMap;

use indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use sluice_protocol::ErrorCode;
use uuid::Uuid;

use crate::metrics::METRICS;

/// The session id meaning "no session".
pub const NO_SESSION: i32 = 0;
/// The epoch of a full fetch asking for a new session.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch of a fetch that closes its session (or wants none).
pub const FINAL_EPOCH: i32 = -1;
/// Fetch versions from here carry session ids and epochs.
pub const FIRST_SESSION_VERSION: i16 = 7;
/// Fetch versions from here name topics by id.
const TOPIC_ID_VERSION: i16 = 13;

/// The epoch after `epoch`: wraps from `i32::MAX` to 1 (0 means a new
/// session); a negative epoch stays final. Kafka's rule.
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// The shard whose cache holds session `id`.
pub fn shard_of_session(id: i32, shards: usize) -> usize {
    usize::try_from(id).unwrap_or(0) % shards.max(1)
}

/// A topic as a session knows it: by id (Fetch v13+) or by name (v7-v12).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicKey {
    Id(Uuid),
    Name(TopicName),
}

impl TopicKey {
    fn of(version: i16, topic: &FetchTopic) -> TopicKey {
        if version >= TOPIC_ID_VERSION {
            TopicKey::Id(topic.topic_id)
        } else {
            TopicKey::Name(topic.topic.clone())
        }
    }
}

pub type PartitionKey = (TopicKey, i32);

/// What a fetch answered for one partition, as the session compares it
/// with what it answered before.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub error: ErrorCode,
    /// Record bytes go out for it.
    pub has_records: bool,
    /// Something else the client must see (a diverging epoch).
    pub must_send: bool,
}

/// A partition of a session: what the client last asked for it and the
/// offsets it was last told.
#[derive(Clone, Debug)]
struct CachedPartition {
    request: FetchPartition,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    /// Answered in the fetch being finished: moves to the end of the
    /// session's order so the others come first next time.
    answered: bool,
}

impl CachedPartition {
    fn new(request: FetchPartition) -> CachedPartition {
        // Offsets unknown: the next answer always includes it.
        CachedPartition {
            request,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            answered: false,
        }
    }

    /// Takes in this fetch's answer; true if the client must be sent it.
    fn absorb(&mut self, o: &Outcome) -> bool {
        let mut must = o.has_records || o.must_send;
        if self.high_watermark != o.high_watermark {
            self.high_watermark = o.high_watermark;
            must = true;
        }
        if self.last_stable_offset != o.last_stable_offset {
            self.last_stable_offset = o.last_stable_offset;
            must = true;
        }
        if self.log_start_offset != o.log_start_offset {
            self.log_start_offset = o.log_start_offset;
            must = true;
        }
        if o.error != ErrorCode::None {
            // Errors always go out; forgetting the high watermark makes
            // the first answer after the error clears go out too.
            self.high_watermark = -1;
            must = true;
        }
        must
    }
}

struct Session {
    privileged: bool,
    uses_topic_ids: bool,
    /// The epoch the next incremental fetch must carry.
    epoch: i32,
    created_ms: i64,
    last_used_ms: i64,
    /// Kafka's eviction classes, decided when the session was last used:
    /// older than the eviction time (any new session may evict it if worth
    /// more), and evictable by a privileged one (not privileged, or old).
    evictable_by_all: bool,
    evictable_by_privileged: bool,
    /// In fetch order: partitions answered last go to the end.
    partitions: IndexMap<PartitionKey, CachedPartition>,
}

impl Session {
    fn touch(&mut self, now_ms: i64, eviction_ms: i64) {
        self.last_used_ms = now_ms;
        self.evictable_by_all = now_ms - self.created_ms > eviction_ms;
        self.evictable_by_privileged = !self.privileged || self.evictable_by_all;
    }
}

/// How a Fetch stands towards the session cache, decided before reading.
#[derive(Clone, Debug, PartialEq)]
pub enum Opened {
    /// No session: answer every partition asked for, session id 0.
    Sessionless,
    /// A full fetch asking for a new session: answer every partition; the
    /// session is made from the request and the answer.
    Full {
        privileged: bool,
        uses_topic_ids: bool,
    },
    /// An incremental fetch of session `id`, whose partitions the request
    /// now lists (all of them, in session order); the answer carries only
    /// what changed. `epoch` is the session's next epoch.
    Incremental { id: i32, epoch: i32 },
    /// Refused: answer this top-level error, session id 0, no partitions.
    Refused(ErrorCode),
}

/// What the answer to a fetch carries.
#[derive(Debug, PartialEq)]
pub struct Finished {
    /// The top-level error (NONE unless the session was used concurrently).
    pub error: ErrorCode,
    pub session_id: i32,
    /// Per partition of the request (in order): whether it goes out.
    /// `None`: all of them.
    pub keep: Option<Vec<bool>>,
}

impl Finished {
    fn all(session_id: i32) -> Finished {
        Finished {
            error: ErrorCode::None,
            session_id,
            keep: None,
        }
    }
}

/// One shard's fetch sessions.
pub struct FetchSessionCache {
    shard: usize,
    shards: usize,
    max_sessions: usize,
    eviction_ms: i64,
    sessions: HashMap<i32, Session>,
}

impl FetchSessionCache {
    /// The cache of shard `shard` of `shards`, with its share (rounded up)
    /// of `total_slots`.
    pub fn new(shard: usize, shards: usize, total_slots: usize, eviction_ms: i64) -> Self {
        let shards = shards.max(1);
        FetchSessionCache {
            shard,
            shards,
            max_sessions: total_slots.div_ceil(shards),
            eviction_ms,
            sessions: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Partitions in all of this shard's sessions.
    pub fn partitions_cached(&self) -> usize {
        self.sessions.values().map(|s| s.partitions.len()).sum()
    }

    /// The epoch session `id` expects next, if it exists here.
    pub fn epoch_of(&self, id: i32) -> Option<i32> {
        self.sessions.get(&id).map(|s| s.epoch)
    }

    fn publish(&self) {
        METRICS.set_fetch_session_figures(self.shard, self.len(), self.partitions_cached());
    }

    /// A full or closing fetch naming a session another shard holds: that
    /// shard and the id, so the caller removes it there.
    pub fn foreign_session_to_close(
        &self,
        version: i16,
        req: &FetchRequest,
    ) -> Option<(usize, i32)> {
        let full = req.session_epoch == INITIAL_EPOCH || req.session_epoch == FINAL_EPOCH;
        if version < FIRST_SESSION_VERSION || !full || req.session_id <= NO_SESSION {
            return None;
        }
        let owner = shard_of_session(req.session_id, self.shards);
        (owner != self.shard).then_some((owner, req.session_id))
    }

    /// Removes session `id`; true if it was here.
    pub fn remove(&mut self, id: i32) -> bool {
        let removed = self.sessions.remove(&id).is_some();
        if removed {
            self.publish();
        }
        removed
    }

    /// Decides what a Fetch is to the cache, before anything is read. An
    /// incremental fetch updates its session (partitions added, changed and
    /// forgotten; the epoch advanced) and has `req.topics` replaced by the
    /// session's whole partition list. `privileged`: a follower broker's.
    pub fn open(
        &mut self,
        version: i16,
        req: &mut FetchRequest,
        privileged: bool,
        now_ms: i64,
    ) -> Opened {
        if version < FIRST_SESSION_VERSION {
            return Opened::Sessionless;
        }
        let (id, epoch) = (req.session_id, req.session_epoch);
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            // A full fetch closes the session it names.
            if id != NO_SESSION {
                self.remove(id);
            }
            if epoch == FINAL_EPOCH {
                return Opened::Sessionless;
            }
            return Opened::Full {
                privileged,
                uses_topic_ids: version >= TOPIC_ID_VERSION,
            };
        }
        let eviction_ms = self.eviction_ms;
        let Some(session) = self.sessions.get_mut(&id) else {
            return Opened::Refused(ErrorCode::FetchSessionIdNotFound);
        };
        if session.epoch != epoch {
            return Opened::Refused(ErrorCode::InvalidFetchSessionEpoch);
        }
        if session.uses_topic_ids != (version >= TOPIC_ID_VERSION) {
            return Opened::Refused(ErrorCode::FetchSessionTopicIdError);
        }
        for t in &req.topics {
            let topic = TopicKey::of(version, t);
            for p in &t.partitions {
                match session.partitions.get_mut(&(topic.clone(), p.partition)) {
                    Some(cached) => cached.request = p.clone(),
                    None => {
                        session.partitions.insert(
                            (topic.clone(), p.partition),
                            CachedPartition::new(p.clone()),
                        );
                    }
                }
            }
        }
        for f in &req.forgotten_topics_data {
            let topic = if version >= TOPIC_ID_VERSION {
                TopicKey::Id(f.topic_id)
            } else {
                TopicKey::Name(f.topic.clone())
            };
            for &p in &f.partitions {
                session.partitions.shift_remove(&(topic.clone(), p));
            }
        }
        if session.partitions.is_empty() {
            // Nothing left to fetch: the session ends, this fetch is
            // answered without one.
            self.remove(id);
            return Opened::Sessionless;
        }
        session.touch(now_ms, eviction_ms);
        session.epoch = next_epoch(epoch);
        let next = session.epoch;
        req.topics = session_topics(&session.partitions);
        req.forgotten_topics_data.clear();
        self.publish();
        Opened::Incremental { id, epoch: next }
    }

    /// After reading: the session id the answer carries and which of the
    /// request's partitions (in order; `outcomes` one per partition) go out.
    /// A full fetch makes its session here when a slot is free or can be
    /// freed by Kafka's eviction rule.
    pub fn finish(
        &mut self,
        opened: &Opened,
        version: i16,
        req: &FetchRequest,
        outcomes: &[Outcome],
        now_ms: i64,
    ) -> Finished {
        match *opened {
            Opened::Sessionless | Opened::Refused(_) => Finished::all(NO_SESSION),
            Opened::Full {
                privileged,
                uses_topic_ids,
            } => {
                let mut partitions = IndexMap::with_capacity(outcomes.len());
                for ((key, p), o) in request_partitions(version, req).zip(outcomes) {
                    let mut cached = CachedPartition::new(p.clone());
                    cached.absorb(o);
                    partitions.insert(key, cached);
                }
                let id = self.create(privileged, uses_topic_ids, partitions, now_ms);
                Finished::all(id)
            }
            Opened::Incremental { id, epoch } => {
                let Some(session) = self.sessions.get_mut(&id) else {
                    // Evicted while this fetch waited: answer everything;
                    // the next incremental fetch learns the session is gone.
                    return Finished::all(id);
                };
                if session.epoch != epoch {
                    // Another fetch of this session ran meanwhile (a client
                    // that resent): Kafka refuses the older one.
                    return Finished {
                        error: ErrorCode::InvalidFetchSessionEpoch,
                        session_id: NO_SESSION,
                        keep: Some(vec![false; outcomes.len()]),
                    };
                }
                let mut keep = Vec::with_capacity(outcomes.len());
                let mut any = false;
                for ((key, _), o) in request_partitions(version, req).zip(outcomes) {
                    let send = match session.partitions.get_mut(&key) {
                        Some(cached) => {
                            let send = cached.absorb(o);
                            cached.answered = send;
                            send
                        }
                        None => true,
                    };
                    any |= send;
                    keep.push(send);
                }
                if any {
                    // Stable: answered partitions move behind the others,
                    // each group keeping its order.
                    session
                        .partitions
                        .sort_by(|_, a, _, b| a.answered.cmp(&b.answered));
                    for cached in session.partitions.values_mut() {
                        cached.answered = false;
                    }
                }
                Finished {
                    error: ErrorCode::None,
                    session_id: id,
                    keep: Some(keep),
                }
            }
        }
    }

    /// Makes a session if a slot is free or can be freed; its id, or
    /// [`NO_SESSION`].
    fn create(
        &mut self,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: IndexMap<PartitionKey, CachedPartition>,
        now_ms: i64,
    ) -> i32 {
        if self.max_sessions == 0 {
            return NO_SESSION;
        }
        if self.sessions.len() >= self.max_sessions
            && !self.try_evict(privileged, partitions.len(), now_ms)
        {
            return NO_SESSION;
        }
        let id = self.new_session_id();
        let mut session = Session {
            privileged,
            uses_topic_ids,
            epoch: next_epoch(INITIAL_EPOCH),
            created_ms: now_ms,
            last_used_ms: now_ms,
            evictable_by_all: false,
            evictable_by_privileged: false,
            partitions,
        };
        session.touch(now_ms, self.eviction_ms);
        self.sessions.insert(id, session);
        self.publish();
        id
    }

    /// Kafka's rule: evict the least recently used session if it has been
    /// idle longer than the eviction time; else the least valuable session
    /// evictable by this one, if the new one (`privileged`, `size`) is
    /// worth more.
    fn try_evict(&mut self, privileged: bool, size: usize, now_ms: i64) -> bool {
        let Some((&lru, last_used)) = self
            .sessions
            .iter()
            .map(|(id, s)| (id, s.last_used_ms))
            .min_by_key(|&(id, used)| (used, *id))
        else {
            return false;
        };
        if now_ms - last_used > self.eviction_ms {
            self.evict(lru);
            return true;
        }
        let least = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                if privileged {
                    s.evictable_by_privileged
                } else {
                    s.evictable_by_all
                }
            })
            .map(|(&id, s)| (s.privileged, s.partitions.len(), id))
            .min();
        match least {
            // Worth more: privileged first, then more partitions (a tie
            // keeps the old one, as the new key's id 0 sorts first).
            Some(key) if (privileged, size, 0) >= key => {
                self.evict(key.2);
                true
            }
            _ => false,
        }
    }

    fn evict(&mut self, id: i32) {
        if self.remove(id) {
            METRICS
                .fetch_session_evictions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A random unused positive id that names this shard.
    fn new_session_id(&self) -> i32 {
        let span = (i32::MAX as usize - self.shard) / self.shards;
        loop {
            let r = rand::random::<u32>() as usize % span.max(1);
            let id = r * self.shards + self.shard;
            if let Ok(id) = i32::try_from(id) {
                if id > NO_SESSION && !self.sessions.contains_key(&id) {
                    return id;
                }
            }
        }
    }
}

/// The request's partitions in order, each with its session key.
fn request_partitions(
    version: i16,
    req: &FetchRequest,
) -> impl Iterator<Item = (PartitionKey, &FetchPartition)> + '_ {
    req.topics.iter().flat_map(move |t| {
        let topic = TopicKey::of(version, t);
        t.partitions
            .iter()
            .map(move |p| ((topic.clone(), p.partition), p))
    })
}

/// A session's partitions as request topics: consecutive partitions of one
/// topic together, so a topic may appear more than once (as in Kafka's
/// answers).
fn session_topics(partitions: &IndexMap<PartitionKey, CachedPartition>) -> Vec<FetchTopic> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    let mut last: Option<&TopicKey> = None;
    for ((topic, _), cached) in partitions {
        if last != Some(topic) {
            let mut t = FetchTopic::default();
            match topic {
                TopicKey::Id(id) => t.topic_id = *id,
                TopicKey::Name(name) => t.topic = name.clone(),
            }
            topics.push(t);
            last = Some(topic);
        }
        if let Some(t) = topics.last_mut() {
            t.partitions.push(cached.request.clone());
        }
    }
    topics
}

#[cfg(test)]
mod tests;
