//! The controller's state machine: applies committed entries to the
//! [`MetadataImage`] and publishes every new image (an `ArcSwap` for
//! lock-free reads, a watch channel for subscribers), builds snapshots of the
//! image and installs the leader's.
//!
//! The image itself lives in memory. What is durable is the latest snapshot,
//! the file `snapshot` in the quorum directory: `SLSN | version (u16 BE) |
//! CRC-32C of the rest (u32 BE) | meta length (u32 BE) | openraft's snapshot
//! meta (JSON) | the image snapshot ([`MetadataImage::encode_snapshot`])`,
//! written to `snapshot.tmp`, fsync'd and renamed. At start-up the image is
//! the snapshot's and openraft re-applies the log after it; a snapshot file
//! that does not decode refuses start-up rather than silently starting from
//! an empty image.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use tokio::sync::watch;

use super::image::MetadataImage;
use super::log_store::write_atomically;
use super::types::{
    ApplyResult, LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig,
};

/// The openraft instance over this state machine (here, not in `types`, so
/// `types` stays a leaf).
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"SLSN";
const SNAPSHOT_VERSION: u16 = 1;

/// Where the current image is published for readers outside the quorum.
pub struct ImagePublisher {
    current: ArcSwap<MetadataImage>,
    watch: watch::Sender<Arc<MetadataImage>>,
}

impl ImagePublisher {
    fn new(image: Arc<MetadataImage>) -> Self {
        ImagePublisher {
            current: ArcSwap::new(image.clone()),
            watch: watch::Sender::new(image),
        }
    }

    pub fn load(&self) -> Arc<MetadataImage> {
        self.current.load_full()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.watch.subscribe()
    }

    fn publish(&self, image: Arc<MetadataImage>) {
        self.current.store(image.clone());
        self.watch.send_replace(image);
    }
}

/// A snapshot as kept in memory and on disk.
#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    /// The encoded image.
    data: Vec<u8>,
}

struct SmInner {
    image: Arc<MetadataImage>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshot: Option<StoredSnapshot>,
}

/// The state machine handed to openraft; clones share one state.
#[derive(Clone)]
pub struct StateMachine {
    dir: PathBuf,
    inner: Arc<Mutex<SmInner>>,
    /// Serialises snapshot file writes (a build and an install may overlap).
    snapshot_file: Arc<Mutex<()>>,
    publisher: Arc<ImagePublisher>,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn encode_snapshot_file(snapshot: &StoredSnapshot) -> io::Result<Vec<u8>> {
    let meta = serde_json::to_vec(&snapshot.meta).map_err(io::Error::other)?;
    let meta_len = u32::try_from(meta.len()).map_err(|_| invalid("snapshot meta too large"))?;
    let mut rest = Vec::with_capacity(4 + meta.len() + snapshot.data.len());
    rest.extend_from_slice(&meta_len.to_be_bytes());
    rest.extend_from_slice(&meta);
    rest.extend_from_slice(&snapshot.data);
    let mut out = Vec::with_capacity(10 + rest.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&rest).to_be_bytes());
    out.extend_from_slice(&rest);
    Ok(out)
}

fn decode_snapshot_file(bytes: &[u8]) -> io::Result<(StoredSnapshot, MetadataImage)> {
    if bytes.len() < 14 || &bytes[..4] != SNAPSHOT_MAGIC {
        return Err(invalid(
            "not a controller snapshot (bad magic or too short)",
        ));
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version != SNAPSHOT_VERSION {
        return Err(invalid(format!(
            "controller snapshot version {version} is not supported"
        )));
    }
    let crc = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    let rest = &bytes[10..];
    if crc32c::crc32c(rest) != crc {
        return Err(invalid("controller snapshot is corrupt (CRC mismatch)"));
    }
    let meta_len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if rest.len() < 4 + meta_len {
        return Err(invalid("controller snapshot is truncated"));
    }
    let meta: SnapshotMeta = serde_json::from_slice(&rest[4..4 + meta_len])
        .map_err(|e| invalid(format!("snapshot meta: {e}")))?;
    let data = rest[4 + meta_len..].to_vec();
    let image = decode_image(&meta, &data)?;
    Ok((StoredSnapshot { meta, data }, image))
}

fn decode_image(meta: &SnapshotMeta, data: &[u8]) -> io::Result<MetadataImage> {
    let mut image = MetadataImage::decode_snapshot(data).map_err(|e| invalid(e.to_string()))?;
    image.offset = meta.last_log_id.as_ref().map_or(0, |l| l.index());
    Ok(image)
}

impl StateMachine {
    /// Loads the latest snapshot under `dir`, if any. A snapshot file that
    /// does not decode is an error.
    pub fn open(dir: &Path) -> io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let _ = std::fs::remove_file(dir.join(format!("{SNAPSHOT_FILE}.tmp")));
        let path = dir.join(SNAPSHOT_FILE);
        let (snapshot, image, last_applied, last_membership) = match std::fs::read(&path) {
            Ok(bytes) => {
                let (snapshot, image) = decode_snapshot_file(&bytes).map_err(|e| {
                    invalid(format!(
                        "controller snapshot {} cannot be loaded: {e}; refusing to start \
                         (move it away to rebuild this node from the quorum)",
                        path.display()
                    ))
                })?;
                let last_applied = snapshot.meta.last_log_id;
                let membership = snapshot.meta.last_membership.clone();
                (Some(snapshot), image, last_applied, membership)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (
                None,
                MetadataImage::default(),
                None,
                StoredMembership::default(),
            ),
            Err(e) => return Err(e),
        };
        let image = Arc::new(image);
        Ok(StateMachine {
            dir: dir.to_path_buf(),
            publisher: Arc::new(ImagePublisher::new(image.clone())),
            inner: Arc::new(Mutex::new(SmInner {
                image,
                last_applied,
                last_membership,
                snapshot,
            })),
            snapshot_file: Arc::new(Mutex::new(())),
        })
    }

    pub fn publisher(&self) -> Arc<ImagePublisher> {
        self.publisher.clone()
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, SmInner>> {
        self.inner
            .lock()
            .map_err(|_| io::Error::other("controller state machine lock poisoned"))
    }

    /// Persists `snapshot` unless a newer one is already on disk.
    fn persist(&self, snapshot: &StoredSnapshot) -> io::Result<()> {
        let _writing = self
            .snapshot_file
            .lock()
            .map_err(|_| io::Error::other("snapshot file lock poisoned"))?;
        let newer_on_disk = self
            .lock()?
            .snapshot
            .as_ref()
            .is_some_and(|s| s.meta.last_log_id > snapshot.meta.last_log_id);
        if newer_on_disk {
            return Ok(());
        }
        write_atomically(
            &self.dir,
            SNAPSHOT_FILE,
            &encode_snapshot_file(snapshot)?,
            true,
        )
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (image, meta) = {
            let inner = self.lock()?;
            let meta = SnapshotMeta {
                last_log_id: inner.last_applied,
                last_membership: inner.last_membership.clone(),
            };
            (inner.image.clone(), meta)
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: image.encode_snapshot(),
        };
        self.persist(&stored)?;
        let data = stored.data.clone();
        {
            let mut inner = self.lock()?;
            if inner
                .snapshot
                .as_ref()
                .is_none_or(|s| s.meta.last_log_id <= meta.last_log_id)
            {
                inner.snapshot = Some(stored);
            }
        }
        tracing::debug!(last_log_id = ?meta.last_log_id, bytes = data.len(), "controller snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: SnapshotData::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.lock()?;
        Ok((inner.last_applied, inner.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        // Work on a private copy; publish once the stream is drained.
        let (mut image, mut last_applied, mut membership) = {
            let inner = self.lock()?;
            (
                MetadataImage::clone(&inner.image),
                inner.last_applied,
                inner.last_membership.clone(),
            )
        };
        let mut applied_any = false;
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let result = match &entry.payload {
                EntryPayload::Normal(proposal) => {
                    let result = image.apply_batch(&proposal.records);
                    if let Err(e) = &result {
                        tracing::debug!(index = log_id.index(), error = %e, "metadata proposal refused");
                    }
                    result
                }
                EntryPayload::Blank => Ok(()),
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(log_id), m.clone());
                    Ok(())
                }
            };
            image.offset = log_id.index();
            last_applied = Some(log_id);
            applied_any = true;
            if let Some(responder) = responder {
                responder.send(ApplyResult(result));
            }
        }
        if applied_any {
            let image = Arc::new(image);
            {
                let mut inner = self.lock()?;
                inner.image = image.clone();
                inner.last_applied = last_applied;
                inner.last_membership = membership;
            }
            self.publisher.publish(image);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let image = Arc::new(decode_image(meta, &data)?);
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persist(&stored)?;
        {
            let mut inner = self.lock()?;
            inner.image = image.clone();
            inner.last_applied = meta.last_log_id;
            inner.last_membership = meta.last_membership.clone();
            inner.snapshot = Some(stored);
        }
        tracing::info!(last_log_id = ?meta.last_log_id, "controller installed a snapshot from the leader");
        self.publisher.publish(image);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let inner = self.lock()?;
        Ok(inner.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: SnapshotData::new(s.data.clone()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::quorum::records::MetadataRecord;

    #[tokio::test]
    async fn snapshots_persist_and_corruption_refuses_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        assert!(sm.get_current_snapshot().await.unwrap().is_none());

        let mut image = MetadataImage::default();
        image
            .apply(&MetadataRecord::ClusterId {
                cluster_id: "abc".into(),
            })
            .unwrap();
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new_term_index(3, 17)),
            last_membership: StoredMembership::default(),
        };
        sm.install_snapshot(&meta, SnapshotData::new(image.encode_snapshot()))
            .await
            .unwrap();
        let published = sm.publisher().load();
        assert_eq!(published.cluster_id.as_deref(), Some("abc"));
        assert_eq!(published.offset, 17);

        // A rebuilt snapshot of the same state and a reopen agree.
        let built = sm.build_snapshot().await.unwrap();
        assert_eq!(built.meta, meta);
        let mut reopened = StateMachine::open(dir.path()).unwrap();
        let (applied, _) = reopened.applied_state().await.unwrap();
        assert_eq!(applied, meta.last_log_id);
        assert_eq!(*reopened.publisher().load(), *published);

        // A corrupt snapshot file is a start-up error.
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let err = StateMachine::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("refusing to start"), "{err}");

        // A snapshot that arrives corrupt from the leader is refused.
        let mut garbage = image.encode_snapshot();
        let last = garbage.len() - 1;
        garbage[last] ^= 0x01;
        assert!(sm
            .install_snapshot(&meta, SnapshotData::new(garbage))
            .await
            .is_err());
    }
}
