//! DescribeTransactions (v0), what `kafka-transactions describe` shows:
//! per transactional id its state, producer, timeout, start time and the
//! partitions of its open transaction, from its coordinator. Describe on the
//! id is required (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), and topics the
//! caller may not describe are left out, as Kafka does.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{on_txn_coordinator, RequestContext, Response};
use crate::auth::{Action, Resource};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &RequestContext, req: DescribeTransactionsRequest) -> Response {
    let mut resp = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        let mut st = TransactionState::default();
        st.transactional_id = id.clone();
        st.producer_id = ProducerId(-1);
        st.producer_epoch = -1;
        st.transaction_start_time_ms = -1;
        let name = id.to_string();
        if !ctx.allowed(
            Action::DescribeTransactionalId,
            Resource::TransactionalId(&name),
        ) {
            st.error_code = ErrorCode::TransactionalIdAuthorizationFailed.code();
            resp.transaction_states.push(st);
            continue;
        }
        let described =
            on_txn_coordinator(
                ctx,
                &name.clone(),
                move |c| async move { c.describe(&name) },
            )
            .await;
        match described {
            Ok(d) => {
                st.transaction_state = StrBytes::from_static_str(d.state.name());
                st.transaction_timeout_ms = d.timeout_ms;
                st.transaction_start_time_ms = d.start_ms;
                st.producer_id = ProducerId(d.producer_id);
                st.producer_epoch = d.producer_epoch;
                st.topics = d
                    .topics
                    .into_iter()
                    .filter(|(t, _)| ctx.may_see(Action::DescribeTopic, Resource::Topic(t)))
                    .map(|(t, partitions)| {
                        let mut td = TopicData::default();
                        td.topic = TopicName(StrBytes::from_string(t));
                        td.partitions = partitions;
                        td
                    })
                    .collect();
            }
            Err(code) => st.error_code = code.code(),
        }
        resp.transaction_states.push(st);
    }
    ctx.respond(&resp)
}
