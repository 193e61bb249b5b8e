//! The consumer's side of incremental fetch sessions (KIP-227), one per
//! broker it fetches from, as the Java client's FetchSessionHandler keeps
//! them. The first fetch to a broker is full (epoch 0) and asks for a
//! session; once the broker names one, each fetch carries only partitions
//! added or changed (fetch offset, leader epoch, max bytes) and lists the
//! ones to forget, and the answer only partitions with news. Any top-level
//! error, a broker that closed the session, or a failed request starts over
//! with a full fetch (naming the old session so the broker drops it, except
//! after FETCH_SESSION_ID_NOT_FOUND). [`FetchSession::close`] gives the id
//! to close when the consumer closes. Pure: fetcher.rs sends the requests.

use std::collections::HashMap;

use sluice_protocol::ErrorCode;

use super::TopicPartition;

/// No session.
const NO_SESSION: i32 = 0;
/// A full fetch, asking for a new session.
const INITIAL_EPOCH: i32 = 0;
/// A fetch without a session, or closing one.
pub(crate) const FINAL_EPOCH: i32 = -1;
/// Fetch versions from here carry sessions.
const FIRST_SESSION_VERSION: i16 = 7;

/// The epoch after `epoch` (Kafka's rule: wraps from i32::MAX to 1).
fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// What a fetch asks for one partition; a change is sent to the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartitionParams {
    pub fetch_offset: i64,
    pub leader_epoch: i32,
    pub max_bytes: i32,
}

/// One fetch request's session fields and partitions.
#[derive(Debug)]
pub(crate) struct FetchPlan {
    pub session_id: i32,
    pub epoch: i32,
    /// Partitions the request lists (all of them in a full fetch).
    pub send: Vec<(TopicPartition, PartitionParams)>,
    /// Partitions the session is to forget.
    pub forget: Vec<TopicPartition>,
    /// Every partition the answer may carry, with the offset fetched from.
    pub fetching: HashMap<TopicPartition, i64>,
    /// The broker's session after this request, if it accepts it.
    next: HashMap<TopicPartition, PartitionParams>,
}

/// The session with one broker.
#[derive(Debug, Default)]
pub(crate) struct FetchSession {
    /// The session id, or the one to close with the next full fetch.
    id: i32,
    /// The epoch the next fetch carries: 0 asks for a new session.
    epoch: i32,
    /// What the broker's session holds, as last sent.
    partitions: HashMap<TopicPartition, PartitionParams>,
}

impl FetchSession {
    /// Whether the broker holds a session for us.
    pub fn is_open(&self) -> bool {
        self.id != NO_SESSION && self.epoch != INITIAL_EPOCH
    }

    /// The request for fetching `wanted` (each partition once) now.
    pub fn plan(&self, version: i16, wanted: &[(TopicPartition, PartitionParams)]) -> FetchPlan {
        let next: HashMap<TopicPartition, PartitionParams> = wanted.iter().cloned().collect();
        let fetching = wanted
            .iter()
            .map(|(tp, p)| (tp.clone(), p.fetch_offset))
            .collect();
        if version < FIRST_SESSION_VERSION {
            return FetchPlan {
                session_id: NO_SESSION,
                epoch: FINAL_EPOCH,
                send: wanted.to_vec(),
                forget: Vec::new(),
                fetching,
                next: HashMap::new(),
            };
        }
        if !self.is_open() {
            return FetchPlan {
                session_id: self.id,
                epoch: INITIAL_EPOCH,
                send: wanted.to_vec(),
                forget: Vec::new(),
                fetching,
                next,
            };
        }
        let send = wanted
            .iter()
            .filter(|(tp, p)| self.partitions.get(tp) != Some(p))
            .cloned()
            .collect();
        let mut forget: Vec<TopicPartition> = self
            .partitions
            .keys()
            .filter(|tp| !next.contains_key(*tp))
            .cloned()
            .collect();
        forget.sort();
        FetchPlan {
            session_id: self.id,
            epoch: self.epoch,
            send,
            forget,
            fetching,
            next,
        }
    }

    /// Takes in the broker's answer to `plan`: its top-level error and
    /// session id.
    pub fn answered(&mut self, plan: FetchPlan, error: ErrorCode, session_id: i32) {
        if plan.epoch == FINAL_EPOCH || plan.session_id != self.id {
            // Session-less (a version without sessions), or an answer for
            // a session closed meanwhile.
            return;
        }
        if error == ErrorCode::FetchSessionIdNotFound {
            *self = FetchSession::default();
            return;
        }
        if error != ErrorCode::None {
            // Start over, closing this session on the way.
            self.start_over();
            return;
        }
        if session_id == NO_SESSION {
            // No room for a session, or the broker closed it: full fetches
            // (each asking for a session again).
            *self = FetchSession::default();
            return;
        }
        if plan.epoch == INITIAL_EPOCH {
            self.id = session_id;
            self.epoch = next_epoch(INITIAL_EPOCH);
        } else {
            self.epoch = next_epoch(plan.epoch);
        }
        self.partitions = plan.next;
    }

    /// The request failed (connection, timeout): the broker may or may not
    /// have taken it, so the next fetch is full, closing this session.
    pub fn failed(&mut self) {
        self.start_over();
    }

    fn start_over(&mut self) {
        self.epoch = INITIAL_EPOCH;
        self.partitions.clear();
    }

    /// The session to close (epoch -1), if the broker may hold one (also
    /// after a failed request); forgets it.
    pub fn close(&mut self) -> Option<i32> {
        let open = (self.id != NO_SESSION).then_some(self.id);
        *self = FetchSession::default();
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(parts: &[(i32, i64)]) -> Vec<(TopicPartition, PartitionParams)> {
        parts
            .iter()
            .map(|&(p, offset)| {
                (
                    TopicPartition::new("t", p),
                    PartitionParams {
                        fetch_offset: offset,
                        leader_epoch: 0,
                        max_bytes: 1 << 20,
                    },
                )
            })
            .collect()
    }

    fn sent(plan: &FetchPlan) -> Vec<(i32, i64)> {
        let mut v: Vec<(i32, i64)> = plan
            .send
            .iter()
            .map(|(tp, p)| (tp.partition, p.fetch_offset))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn full_then_incremental_with_only_changes() {
        let mut s = FetchSession::default();
        let plan = s.plan(12, &want(&[(0, 0), (1, 0), (2, 0)]));
        assert_eq!((plan.session_id, plan.epoch), (0, 0));
        assert_eq!(sent(&plan), vec![(0, 0), (1, 0), (2, 0)]);
        s.answered(plan, ErrorCode::None, 77);
        assert!(s.is_open());

        let plan = s.plan(12, &want(&[(0, 0), (1, 5), (2, 0)]));
        assert_eq!((plan.session_id, plan.epoch), (77, 1));
        assert_eq!(sent(&plan), vec![(1, 5)]);
        assert!(plan.forget.is_empty());
        assert_eq!(plan.fetching.len(), 3, "the answer may carry any of them");
        s.answered(plan, ErrorCode::None, 77);

        // Partition 2 is left out (records buffered): forgotten.
        let plan = s.plan(12, &want(&[(0, 0), (1, 5)]));
        assert_eq!((plan.session_id, plan.epoch), (77, 2));
        assert!(plan.send.is_empty());
        assert_eq!(plan.forget, vec![TopicPartition::new("t", 2)]);
        s.answered(plan, ErrorCode::None, 77);
        let plan = s.plan(12, &want(&[(0, 0), (1, 5), (2, 9)]));
        assert_eq!(plan.epoch, 3);
        assert_eq!(sent(&plan), vec![(2, 9)]);
    }

    #[test]
    fn session_errors_start_over() {
        let mut s = FetchSession::default();
        let plan = s.plan(12, &want(&[(0, 0)]));
        s.answered(plan, ErrorCode::None, 77);
        // A wrong epoch: the next fetch is full and closes session 77.
        let plan = s.plan(12, &want(&[(0, 0)]));
        s.answered(plan, ErrorCode::InvalidFetchSessionEpoch, 0);
        let plan = s.plan(12, &want(&[(0, 0)]));
        assert_eq!((plan.session_id, plan.epoch), (77, 0));
        assert_eq!(sent(&plan), vec![(0, 0)]);
        s.answered(plan, ErrorCode::None, 78);
        // Unknown session: a fresh full fetch naming none.
        let plan = s.plan(12, &want(&[(0, 0)]));
        s.answered(plan, ErrorCode::FetchSessionIdNotFound, 0);
        let plan = s.plan(12, &want(&[(0, 0)]));
        assert_eq!((plan.session_id, plan.epoch), (0, 0));
        s.answered(plan, ErrorCode::None, 79);
        // A failed request: full again, closing 79.
        s.failed();
        let plan = s.plan(12, &want(&[(0, 0)]));
        assert_eq!((plan.session_id, plan.epoch), (79, 0));
    }

    #[test]
    fn no_session_from_the_broker_means_full_fetches() {
        let mut s = FetchSession::default();
        let plan = s.plan(12, &want(&[(0, 0)]));
        s.answered(plan, ErrorCode::None, 0);
        assert!(!s.is_open());
        let plan = s.plan(12, &want(&[(0, 0)]));
        assert_eq!((plan.session_id, plan.epoch), (0, 0));
        assert_eq!(s.close(), None);
        // The broker closing the session in an incremental answer.
        s.answered(plan, ErrorCode::None, 5);
        let plan = s.plan(12, &want(&[(0, 1)]));
        s.answered(plan, ErrorCode::None, 0);
        assert!(!s.is_open());
    }

    #[test]
    fn old_versions_fetch_without_sessions() {
        let mut s = FetchSession::default();
        let plan = s.plan(6, &want(&[(0, 0)]));
        assert_eq!((plan.session_id, plan.epoch), (0, FINAL_EPOCH));
        s.answered(plan, ErrorCode::None, 0);
        assert!(!s.is_open());
    }

    #[test]
    fn close_names_the_open_session_once() {
        let mut s = FetchSession::default();
        let plan = s.plan(12, &want(&[(0, 0)]));
        s.answered(plan, ErrorCode::None, 42);
        assert_eq!(s.close(), Some(42));
        assert_eq!(s.close(), None);
    }

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next_epoch(i32::MAX), 1);
        let mut s = FetchSession {
            id: 3,
            epoch: i32::MAX,
            partitions: HashMap::new(),
        };
        let plan = s.plan(12, &want(&[(0, 0)]));
        assert_eq!(plan.epoch, i32::MAX);
        s.answered(plan, ErrorCode::None, 3);
        assert_eq!(s.epoch, 1);
    }
}
