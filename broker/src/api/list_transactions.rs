//! ListTransactions (v0-v1), what `kafka-transactions list` shows: every
//! transactional id this broker coordinates (all shards), filtered by state,
//! producer id and (v1) by how long the transaction has been open; ids the
//! caller may not describe are left out. Unknown state names are echoed in
//! `unknown_state_filters`, as Kafka does.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::clock::now_ms;

use super::{RequestContext, Response};
use crate::auth::{Action, Resource};
use crate::txn::TxnState;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

pub async fn handle(ctx: &RequestContext, req: ListTransactionsRequest) -> Response {
    let mut resp = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for name in &req.state_filters {
        match TxnState::from_name(name.as_str()) {
            Some(s) => states.push(s),
            None => resp.unknown_state_filters.push(name.clone()),
        }
    }
    if !resp.unknown_state_filters.is_empty() && states.is_empty() {
        // Only unknown states were asked for: nothing can match.
        return ctx.respond(&resp);
    }
    let producers: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let min_duration = if ctx.version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    let now = now_ms();
    let listed = ctx
        .shard
        .broker
        .on_all_shards(move |shard| {
            let states = states.clone();
            let producers = producers.clone();
            async move {
                shard
                    .txn_coordinator()
                    .map(|c| c.list(&states, &producers, min_duration, now))
                    .unwrap_or_default()
            }
        })
        .await;
    for l in listed.into_iter().flatten() {
        if !ctx.may_see(
            Action::DescribeTransactionalId,
            Resource::TransactionalId(&l.transactional_id),
        ) {
            continue;
        }
        let mut st = TransactionState::default();
        st.transactional_id = TransactionalId(StrBytes::from_string(l.transactional_id));
        st.producer_id = ProducerId(l.producer_id);
        st.transaction_state = StrBytes::from_static_str(l.state.name());
        resp.transaction_states.push(st);
    }
    ctx.respond(&resp)
}
