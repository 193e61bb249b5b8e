//! AlterUserScramCredentials (v0): adds, replaces and deletes the salted
//! SCRAM credentials the broker keeps (`__scram_credentials.json` under
//! `log.dirs`). The client sends salt and SaltedPassword, never the
//! password; the broker derives StoredKey and ServerKey from them. The file
//! is rewritten (and fsynced) before the answer, so an acknowledged change
//! survives a crash. Needs kafka-cluster:AlterCluster.
//!
//! In a cluster the credentials live in the metadata log instead: the
//! validated changes go to the active controller as SCRAM records, every
//! broker's store follows the log ([`cluster_store`], installed at
//! start-up), and the file is only this broker's copy.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::{Action, Resource, ScramCredential, ScramMechanism, ScramStore};
use crate::cluster::quorum::records;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

type Outcome = Result<(), (ErrorCode, String)>;

pub async fn handle(ctx: &RequestContext, req: AlterUserScramCredentialsRequest) -> Response {
    let mut resp = AlterUserScramCredentialsResponse::default();
    let users: Vec<String> = req
        .deletions
        .iter()
        .map(|d| d.name.to_string())
        .chain(req.upsertions.iter().map(|u| u.name.to_string()))
        .collect();
    if !ctx.allowed(Action::AlterCluster, Resource::Cluster) {
        let mut seen = std::collections::BTreeSet::new();
        for u in users.into_iter().filter(|u| seen.insert(u.clone())) {
            resp.results.push(result(
                &u,
                Err((
                    ErrorCode::ClusterAuthorizationFailed,
                    "not authorized to kafka-cluster:AlterCluster".into(),
                )),
            ));
        }
        return ctx.respond(&resp);
    }

    // Kafka's rules: a (user, mechanism) pair may appear once in the whole
    // request; every change of a user fails if any of that user's fails.
    let mut per_user: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut pairs = std::collections::BTreeSet::new();
    let mut fail = |user: &str, code: ErrorCode, msg: String| {
        let e = per_user.entry(user.to_string()).or_insert(Ok(()));
        if e.is_ok() {
            *e = Err((code, msg));
        }
    };
    let mut deletions = Vec::new();
    for d in &req.deletions {
        let user = d.name.to_string();
        match ScramMechanism::from_type_id(d.mechanism) {
            None => fail(
                &user,
                ErrorCode::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {}", d.mechanism),
            ),
            Some(_) if user.is_empty() => fail(
                &user,
                ErrorCode::UnacceptableCredential,
                "the user name is empty".into(),
            ),
            Some(m) => {
                if !pairs.insert((user.clone(), d.mechanism)) {
                    fail(
                        &user,
                        ErrorCode::DuplicateResource,
                        format!("{m} appears twice for this user"),
                    );
                }
                deletions.push((user, m));
            }
        }
    }
    let mut upsertions = Vec::new();
    for u in &req.upsertions {
        let user = u.name.to_string();
        let Some(m) = ScramMechanism::from_type_id(u.mechanism) else {
            fail(
                &user,
                ErrorCode::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {}", u.mechanism),
            );
            continue;
        };
        if !pairs.insert((user.clone(), u.mechanism)) {
            fail(
                &user,
                ErrorCode::DuplicateResource,
                format!("{m} appears twice for this user"),
            );
            continue;
        }
        if user.is_empty() {
            fail(
                &user,
                ErrorCode::UnacceptableCredential,
                "the user name is empty".into(),
            );
            continue;
        }
        let iterations = u32::try_from(u.iterations).unwrap_or(0);
        match ScramCredential::from_salted_password(m, &u.salted_password, &u.salt, iterations)
            .and_then(|c| c.validate(m).map(|()| c))
        {
            Ok(c) => upsertions.push((user, m, c)),
            Err(e) => fail(&user, ErrorCode::UnacceptableCredential, e.to_string()),
        }
    }

    let security = &ctx.shard.broker.security;
    if let Some(member) = ctx.shard.broker.metadata.member() {
        let deletions: Vec<(String, records::ScramMechanism)> = deletions
            .into_iter()
            .filter(|(user, _)| per_user.get(user).is_none_or(|o| o.is_ok()))
            .map(|(user, m)| (user, record_mechanism(m)))
            .collect();
        let upsertions: Vec<records::ScramCredential> = upsertions
            .into_iter()
            .filter(|(user, ..)| per_user.get(user).is_none_or(|o| o.is_ok()))
            .map(|(user, m, c)| record_credential(user, m, c))
            .collect();
        for user in deletions
            .iter()
            .map(|(u, _)| u)
            .chain(upsertions.iter().map(|c| &c.name))
        {
            per_user.entry(user.clone()).or_insert(Ok(()));
        }
        match member.alter_scram_credentials(deletions, upsertions).await {
            Ok(refused) => {
                for (user, refusal) in refused {
                    per_user.insert(user, Err(refusal));
                }
                // The image has the change: so does this broker's store
                // before the client hears of it (the follower installed at
                // start-up catches up the others and writes the file).
                *security.scram.write().unwrap_or_else(|e| e.into_inner()) =
                    cluster_store(&member.scram_credentials());
            }
            Err(e) => {
                for o in per_user.values_mut().filter(|o| o.is_ok()) {
                    *o = Err((e.code, e.message.clone()));
                }
            }
        }
        for u in users {
            if let Some(o) = per_user.remove(&u) {
                resp.results.push(result(&u, o));
            }
        }
        return ctx.respond(&resp);
    }
    {
        let mut store = security.scram.write().unwrap_or_else(|e| e.into_inner());
        let before = store.clone();
        let mut changed = false;
        for (user, m) in deletions {
            if per_user.get(&user).is_some_and(|o| o.is_err()) {
                continue;
            }
            if store.get(&user, m).is_none() {
                per_user.insert(
                    user.clone(),
                    Err((
                        ErrorCode::ResourceNotFound,
                        format!("no {m} credential for this user"),
                    )),
                );
                continue;
            }
            store.delete(&user, m);
            changed = true;
            per_user.entry(user).or_insert(Ok(()));
        }
        for (user, m, c) in upsertions {
            if per_user.get(&user).is_some_and(|o| o.is_err()) {
                continue;
            }
            match store.upsert(&user, m, c) {
                Ok(()) => {
                    changed = true;
                    per_user.entry(user).or_insert(Ok(()));
                }
                Err(e) => {
                    per_user.insert(
                        user,
                        Err((ErrorCode::UnacceptableCredential, e.to_string())),
                    );
                }
            }
        }
        // Undo the changes of users that failed, then persist once.
        let failed: Vec<String> = per_user
            .iter()
            .filter(|(_, o)| o.is_err())
            .map(|(u, _)| u.clone())
            .collect();
        for user in &failed {
            for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
                match before.get(user, m) {
                    Some(c) => {
                        let _ = store.upsert(user, m, c.clone());
                    }
                    None => {
                        store.delete(user, m);
                    }
                }
            }
        }
        if changed {
            if let Err(e) = store.save(&security.scram_path) {
                tracing::error!(error = %e, "cannot save SCRAM credentials");
                *store = before;
                for o in per_user.values_mut() {
                    if o.is_ok() {
                        *o = Err((
                            ErrorCode::KafkaStorageError,
                            "cannot save the credential store".into(),
                        ));
                    }
                }
            }
        }
    }
    for u in users {
        if let Some(o) = per_user.remove(&u) {
            resp.results.push(result(&u, o));
        }
    }
    ctx.respond(&resp)
}

fn record_mechanism(m: ScramMechanism) -> records::ScramMechanism {
    match m {
        ScramMechanism::Sha256 => records::ScramMechanism::ScramSha256,
        ScramMechanism::Sha512 => records::ScramMechanism::ScramSha512,
    }
}

fn auth_mechanism(m: records::ScramMechanism) -> ScramMechanism {
    match m {
        records::ScramMechanism::ScramSha256 => ScramMechanism::Sha256,
        records::ScramMechanism::ScramSha512 => ScramMechanism::Sha512,
    }
}

fn record_credential(
    name: String,
    m: ScramMechanism,
    c: ScramCredential,
) -> records::ScramCredential {
    records::ScramCredential {
        name,
        mechanism: record_mechanism(m),
        salt: c.salt,
        stored_key: c.stored_key,
        server_key: c.server_key,
        iterations: i32::try_from(c.iterations).unwrap_or(i32::MAX),
    }
}

/// The credential store a cluster's SCRAM records make (credentials that
/// fail validation, which the controller never writes, are skipped).
pub fn cluster_store(
    creds: &BTreeMap<(String, records::ScramMechanism), records::ScramCredential>,
) -> ScramStore {
    let mut store = ScramStore::new();
    for ((user, mechanism), c) in creds {
        let m = auth_mechanism(*mechanism);
        let credential = ScramCredential {
            salt: c.salt.clone(),
            stored_key: c.stored_key.clone(),
            server_key: c.server_key.clone(),
            iterations: u32::try_from(c.iterations).unwrap_or(0),
        };
        if let Err(e) = store.upsert(user, m, credential) {
            tracing::warn!(%user, error = %e, "SCRAM credential from the metadata log skipped");
        }
    }
    store
}

fn result(user: &str, outcome: Outcome) -> AlterUserScramCredentialsResult {
    let mut r = AlterUserScramCredentialsResult::default();
    r.user = StrBytes::from_string(user.to_string());
    if let Err((code, msg)) = outcome {
        r.error_code = code.code();
        r.error_message = Some(StrBytes::from_string(msg));
    }
    r
}
