//! The coordinator's admin views: DescribeTransactions (one id's state,
//! producer, timeout, start time and partitions) and ListTransactions (ids
//! filtered by state, producer id and, since v1, by how long their
//! transaction has been open), as `kafka-transactions describe` and `list`
//! show them.

use std::collections::BTreeMap;

use sluice_protocol::ErrorCode;

use super::{TxnCoordinator, TxnState};

/// One id as DescribeTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub state: TxnState,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// -1 when no transaction is open.
    pub start_ms: i64,
    /// The partitions of the open transaction, by topic.
    pub topics: BTreeMap<String, Vec<i32>>,
}

/// One id as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}

impl TxnCoordinator {
    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, ErrorCode> {
        self.coordinator_epoch(transactional_id)?;
        let txns = self.txns.borrow();
        let meta = txns
            .get(transactional_id)
            .ok_or(ErrorCode::TransactionalIdNotFound)?;
        let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in &meta.partitions {
            topics.entry(t.clone()).or_default().push(*p);
        }
        Ok(TxnDescription {
            state: meta.state,
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            timeout_ms: meta.timeout_ms,
            start_ms: meta.start_ms,
            topics,
        })
    }

    /// The ids matching every filter given (an empty filter matches all);
    /// `min_duration_ms` >= 0 keeps only transactions open at least that long.
    pub fn list(
        &self,
        states: &[TxnState],
        producer_ids: &[i64],
        min_duration_ms: i64,
        now_ms: i64,
    ) -> Vec<TxnListing> {
        let owned = self.owned.borrow();
        self.txns
            .borrow()
            .iter()
            .filter(|(id, _)| owned.contains_key(&self.partition_of(id)))
            .filter(|(_, m)| states.is_empty() || states.contains(&m.state))
            .filter(|(_, m)| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            .filter(|(_, m)| {
                min_duration_ms < 0
                    || (m.state == TxnState::Ongoing
                        && m.start_ms >= 0
                        && now_ms - m.start_ms >= min_duration_ms)
            })
            .map(|(id, m)| TxnListing {
                transactional_id: id.clone(),
                producer_id: m.producer_id,
                state: m.state,
            })
            .collect()
    }
}
