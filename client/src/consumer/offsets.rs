//! Committed offsets: OffsetCommit and OffsetFetch against the group
//! coordinator, retried across coordinator moves (NOT_COORDINATOR,
//! COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, broken
//! connections) until `request.timeout.ms`; other errors come back as
//! `Error::Kafka`. Commits go through one [`Committer`] task so async
//! commits reach the broker in the order they were made and a sync commit
//! lands after every async commit before it (as in the Java client). Auto
//! commit (`enable.auto.commit`) is driven by `poll` through the same path.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};

use super::membership::{GenerationInfo, GroupShared};
use super::TopicPartition;
use crate::error::{Error, ErrorCode, Result};
use crate::net::Cluster;

/// A committed offset: the next offset to read, the leader epoch of the
/// record before it, and free-form metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub offset: i64,
    pub leader_epoch: Option<i32>,
    pub metadata: String,
}

impl OffsetAndMetadata {
    pub fn new(offset: i64) -> Self {
        OffsetAndMetadata {
            offset,
            leader_epoch: None,
            metadata: String::new(),
        }
    }
}

impl From<i64> for OffsetAndMetadata {
    fn from(offset: i64) -> Self {
        OffsetAndMetadata::new(offset)
    }
}

fn is_coordinator_error(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::CoordinatorLoadInProgress
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::NotCoordinator
    )
}

fn retriable(e: &Error) -> bool {
    match e {
        Error::Kafka { code, .. } => {
            is_coordinator_error(*code) || *code == ErrorCode::RequestTimedOut
        }
        Error::Connection { .. } | Error::Timeout(_) | Error::NoBrokersAvailable(_) => true,
        _ => false,
    }
}

async fn with_coordinator_retries<T, F, Fut>(
    cluster: &Cluster,
    group: &str,
    timeout: Duration,
    backoff: Duration,
    mut op: F,
) -> Result<T>
where
    F: FnMut(Arc<crate::net::Connection>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = async {
            let conn = cluster.coordinator(group).await.map_err(|e| (e, None))?;
            let node = conn.node_id;
            op(conn).await.map_err(|e| (e, Some(node)))
        };
        let result = match attempt.await {
            Ok(v) => return Ok(v),
            Err((e, node)) => (e, node),
        };
        let (e, node) = result;
        if !retriable(&e) || Instant::now() + backoff >= deadline {
            return Err(e);
        }
        tracing::debug!(%group, error = %e, "coordinator request failed; retrying");
        if matches!(
            &e,
            Error::Kafka {
                code: ErrorCode::CoordinatorNotAvailable | ErrorCode::NotCoordinator,
                ..
            }
        ) || matches!(e, Error::Connection { .. })
        {
            cluster.forget_coordinator(group);
        }
        if let (Error::Connection { .. }, Some(n)) = (&e, node) {
            cluster.invalidate_connection(n);
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Commits `offsets` for `group`.
pub(crate) async fn commit(
    cluster: &Cluster,
    group: &str,
    who: &GenerationInfo,
    offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    timeout: Duration,
    backoff: Duration,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    with_coordinator_retries(cluster, group, timeout, backoff, |conn| async move {
        let version = conn.versions().pick(ApiKey::OffsetCommit)?;
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(StrBytes::from_string(group.to_string()));
        req.generation_id_or_member_epoch = who.generation;
        req.member_id = StrBytes::from_string(who.member_id.clone());
        if version >= 7 {
            req.group_instance_id = who.instance_id.clone().map(StrBytes::from_string);
        }
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (tp, om) in offsets {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = tp.partition;
            p.committed_offset = om.offset;
            if version >= 6 {
                p.committed_leader_epoch = om.leader_epoch.unwrap_or(-1);
            }
            p.committed_metadata = Some(StrBytes::from_string(om.metadata.clone()));
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == tp.topic => t.partitions.push(p),
                _ => {
                    let mut t = OffsetCommitRequestTopic::default();
                    t.name = TopicName(StrBytes::from_string(tp.topic.clone()));
                    t.partitions.push(p);
                    topics.push(t);
                }
            }
        }
        req.topics = topics;
        let resp = conn.send_versioned(&req, version).await?;
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != ErrorCode::None.code() {
                    return Err(Error::from_wire(
                        p.error_code,
                        Some(format!(
                            "committing offsets of {}-{}",
                            t.name.0, p.partition_index
                        )),
                    ));
                }
            }
        }
        Ok(())
    })
    .await
}

/// The committed offsets of `parts` (None: nothing committed).
pub(crate) async fn fetch_committed(
    cluster: &Cluster,
    group: &str,
    parts: &[TopicPartition],
    timeout: Duration,
    backoff: Duration,
) -> Result<HashMap<TopicPartition, Option<OffsetAndMetadata>>> {
    if parts.is_empty() {
        return Ok(HashMap::new());
    }
    let deadline = Instant::now() + timeout;
    loop {
        let r = with_coordinator_retries(
            cluster,
            group,
            deadline.saturating_duration_since(Instant::now()),
            backoff,
            |conn| async move {
                let version = conn.versions().pick(ApiKey::OffsetFetch)?;
                let mut req = OffsetFetchRequest::default();
                req.group_id = GroupId(StrBytes::from_string(group.to_string()));
                let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for tp in parts {
                    by_topic
                        .entry(tp.topic.as_str())
                        .or_default()
                        .push(tp.partition);
                }
                req.topics = Some(
                    by_topic
                        .into_iter()
                        .map(|(t, ps)| {
                            let mut x = OffsetFetchRequestTopic::default();
                            x.name = TopicName(StrBytes::from_string(t.to_string()));
                            x.partition_indexes = ps;
                            x
                        })
                        .collect(),
                );
                if version >= 7 {
                    req.require_stable = true;
                }
                let resp = conn.send_versioned(&req, version).await?;
                if resp.error_code != ErrorCode::None.code() {
                    return Err(Error::from_wire(
                        resp.error_code,
                        Some(format!("fetching committed offsets of group {group}")),
                    ));
                }
                let mut out: HashMap<TopicPartition, Option<OffsetAndMetadata>> = HashMap::new();
                for t in resp.topics {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                        if p.error_code != ErrorCode::None.code() {
                            return Err(Error::from_wire(
                                p.error_code,
                                Some(format!("fetching committed offset of {tp}")),
                            ));
                        }
                        let v = (p.committed_offset >= 0).then(|| OffsetAndMetadata {
                            offset: p.committed_offset,
                            leader_epoch: Some(p.committed_leader_epoch).filter(|e| *e >= 0),
                            metadata: p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                        });
                        out.insert(tp, v);
                    }
                }
                Ok(out)
            },
        )
        .await;
        match r {
            // A transaction's offsets are pending.
            Err(Error::Kafka {
                code: ErrorCode::UnstableOffsetCommit,
                ..
            }) if Instant::now() + backoff < deadline => {
                tokio::time::sleep(backoff).await;
            }
            other => return other,
        }
    }
}

struct CommitJob {
    offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    who: GenerationInfo,
    reply: Option<oneshot::Sender<Result<()>>>,
}

/// Runs commits one after another, in submission order.
pub(crate) struct Committer {
    tx: mpsc::UnboundedSender<CommitJob>,
    task: tokio::task::JoinHandle<()>,
}

impl Committer {
    pub fn spawn(
        cluster: Arc<Cluster>,
        group: String,
        group_state: Option<Arc<GroupShared>>,
        timeout: Duration,
        backoff: Duration,
    ) -> Committer {
        let (tx, mut rx) = mpsc::unbounded_channel::<CommitJob>();
        let task = tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let r = commit(&cluster, &group, &job.who, &job.offsets, timeout, backoff).await;
                match &r {
                    Ok(()) => tracing::debug!(%group, n = job.offsets.len(), "committed offsets"),
                    Err(e) => {
                        tracing::warn!(%group, error = %e, "offset commit failed");
                        if let (Some(g), Some(code)) = (&group_state, e.code()) {
                            if job.who.generation >= 0 {
                                g.on_commit_error(code, job.who.generation);
                            }
                        }
                    }
                }
                if let Some(reply) = job.reply {
                    let _ = reply.send(r);
                }
            }
        });
        Committer { tx, task }
    }

    /// Queues a commit and waits for its answer.
    pub async fn commit_sync(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        who: GenerationInfo,
    ) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(CommitJob {
                offsets,
                who,
                reply: Some(reply),
            })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Queues a commit; the returned receiver yields its result.
    pub fn commit_async(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        who: GenerationInfo,
    ) -> oneshot::Receiver<Result<()>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.tx.send(CommitJob {
            offsets,
            who,
            reply: Some(reply),
        }) {
            if let Some(r) = job.reply {
                let _ = r.send(Err(Error::Closed));
            }
        }
        rx
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
