//! DescribeUserScramCredentials (v0): which SCRAM mechanisms each user has
//! credentials for, with their iteration counts (never salts or keys).
//! A null user list means every user. Needs kafka-cluster:DescribeCluster.

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::{Action, Resource};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &RequestContext, req: DescribeUserScramCredentialsRequest) -> Response {
    let mut resp = DescribeUserScramCredentialsResponse::default();
    if !ctx.allowed(Action::DescribeCluster, Resource::Cluster) {
        resp.error_code = ErrorCode::ClusterAuthorizationFailed.code();
        resp.error_message = Some(StrBytes::from_static_str(
            "not authorized to kafka-cluster:DescribeCluster",
        ));
        return ctx.respond(&resp);
    }
    let store = ctx
        .shard
        .broker
        .security
        .scram
        .read()
        .unwrap_or_else(|e| e.into_inner());
    let all = store.list();
    let entry = |user: &str, mechs: &[(crate::auth::ScramMechanism, u32)]| {
        let mut r = DescribeUserScramCredentialsResult::default();
        r.user = StrBytes::from_string(user.to_string());
        r.credential_infos = mechs
            .iter()
            .map(|(m, iterations)| {
                let mut c = CredentialInfo::default();
                c.mechanism = m.type_id();
                c.iterations = *iterations as i32;
                c
            })
            .collect();
        r
    };
    match req.users {
        None => {
            resp.results = all.iter().map(|(u, m)| entry(u, m)).collect();
        }
        Some(users) if users.is_empty() => {
            resp.results = all.iter().map(|(u, m)| entry(u, m)).collect();
        }
        Some(users) => {
            let mut seen = std::collections::BTreeSet::new();
            for u in users {
                let name = u.name.to_string();
                if !seen.insert(name.clone()) {
                    let mut r = DescribeUserScramCredentialsResult::default();
                    r.user = u.name;
                    r.error_code = ErrorCode::DuplicateResource.code();
                    r.error_message =
                        Some(StrBytes::from_static_str("user named twice in the request"));
                    resp.results.push(r);
                    continue;
                }
                match all.iter().find(|(n, _)| *n == name) {
                    Some((n, m)) => resp.results.push(entry(n, m)),
                    None => {
                        let mut r = DescribeUserScramCredentialsResult::default();
                        r.user = u.name;
                        r.error_code = ErrorCode::ResourceNotFound.code();
                        r.error_message = Some(StrBytes::from_string(format!(
                            "Attempt to describe a user credential that does not exist: {name}"
                        )));
                        resp.results.push(r);
                    }
                }
            }
        }
    }
    ctx.respond(&resp)
}
