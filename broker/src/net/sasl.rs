//! SASL on SASL_PLAINTEXT and SASL_SSL connections: the SaslHandshake and
//! SaslAuthenticate requests (and the bare tokens that follow a v0
//! handshake), answered by the connection itself and in order, since they
//! change who the connection is. Until a connection has authenticated only
//! ApiVersions, SaslHandshake and SaslAuthenticate are accepted; anything
//! else closes it. A session whose lifetime is over (KIP-368: the IAM
//! token's expiry or `connections.max.reauth.ms`) must re-authenticate, with
//! the same principal, before its next request.
//!
//! The state this drives lives in [`crate::auth`]: the broker-wide
//! [`Security`] (mechanisms offered, credentials, verifier, authorizer) and
//! each connection's [`Session`] with its [`Exchange`].

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, HeaderVersion, StrBytes};

use crate::api::{encode_frame, Response};
use crate::auth::session::{Exchange, Mechanism, Session};
use crate::auth::{self, Action, AuthError, Resource, ScramServer, Security};
use crate::shard::Shard;
use sluice_protocol::clock::now_ms;
use sluice_protocol::ErrorCode;

/// What the connection does with a request before dispatching it.
pub enum Gate {
    /// Dispatch it normally.
    Pass,
    /// Answered here.
    Respond(Response),
    /// Answered here; then close (failed authentication).
    RespondThenClose(Response, String),
    /// Close without an answer.
    Close(String),
}

/// The outcome of one mechanism step.
enum Step {
    /// Authenticated as `principal`; send these bytes.
    Done {
        principal: String,
        response: Vec<u8>,
        credential_expires_ms: Option<i64>,
    },
}

/// Checks (and for the SASL APIs, answers) a request before dispatch.
pub fn gate(
    shard: &Rc<Shard>,
    session: &Rc<Session>,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &mut Bytes,
) -> Gate {
    let sasl_listener = session.listener.protocol.uses_sasl();
    match api {
        ApiKey::ApiVersions => Gate::Pass,
        ApiKey::SaslHandshake | ApiKey::SaslAuthenticate if !sasl_listener => Gate::Close(format!(
            "{api:?} on listener {} ({}), which has no SASL",
            session.listener.name,
            session.listener.protocol.name()
        )),
        ApiKey::SaslHandshake => match SaslHandshakeRequest::decode(body, version) {
            Ok(req) => handshake(shard, session, version, correlation_id, req),
            Err(e) => Gate::Close(format!("malformed SaslHandshake: {e}")),
        },
        ApiKey::SaslAuthenticate => match SaslAuthenticateRequest::decode(body, version) {
            Ok(req) => authenticate(shard, session, version, correlation_id, req),
            Err(e) => Gate::Close(format!("malformed SaslAuthenticate: {e}")),
        },
        _ if !session.is_authenticated() => Gate::Close(format!(
            "{api:?} request before SASL authentication completed (Kafka closes such connections)"
        )),
        _ if session.is_expired(Instant::now()) => Gate::Close(format!(
            "{api:?} request after the authenticated session expired; the client did not re-authenticate (KIP-368)"
        )),
        _ => Gate::Pass,
    }
}

fn handshake(
    shard: &Rc<Shard>,
    session: &Rc<Session>,
    version: i16,
    correlation_id: i32,
    req: SaslHandshakeRequest,
) -> Gate {
    let security = &shard.broker.security;
    let mut resp = SaslHandshakeResponse::default();
    resp.mechanisms = security
        .mechanisms
        .iter()
        .map(|m| StrBytes::from_string(m.clone()))
        .collect();
    let frame = |resp: &SaslHandshakeResponse| {
        encode_frame(
            correlation_id,
            SaslHandshakeResponse::header_version(version),
            resp,
            version,
        )
    };
    if !matches!(*session.sasl.borrow(), Exchange::Idle) {
        resp.error_code = ErrorCode::IllegalSaslState.code();
        return Gate::RespondThenClose(
            frame(&resp),
            "SaslHandshake in the middle of an exchange".into(),
        );
    }
    if session.is_authenticated() && version == 0 {
        resp.error_code = ErrorCode::IllegalSaslState.code();
        return Gate::RespondThenClose(
            frame(&resp),
            "re-authentication needs SaslHandshake v1".into(),
        );
    }
    let name = req.mechanism.as_str().to_ascii_uppercase();
    let mechanism = match Mechanism::from_name(&name) {
        Some(m) if security.offers(&name) => m,
        _ => {
            resp.error_code = ErrorCode::UnsupportedSaslMechanism.code();
            return Gate::RespondThenClose(
                frame(&resp),
                format!(
                    "client asked for SASL mechanism {} which is not enabled",
                    auth::sanitize(&name)
                ),
            );
        }
    };
    *session.sasl.borrow_mut() = Exchange::Chosen {
        mechanism,
        raw: version == 0,
    };
    resp.error_code = ErrorCode::None.code();
    Gate::Respond(frame(&resp))
}

fn authenticate(
    shard: &Rc<Shard>,
    session: &Rc<Session>,
    version: i16,
    correlation_id: i32,
    req: SaslAuthenticateRequest,
) -> Gate {
    let frame = |resp: &SaslAuthenticateResponse| {
        encode_frame(
            correlation_id,
            SaslAuthenticateResponse::header_version(version),
            resp,
            version,
        )
    };
    match step(shard, session, &req.auth_bytes) {
        Ok((bytes, lifetime_ms)) => {
            let mut resp = SaslAuthenticateResponse::default();
            resp.auth_bytes = Bytes::from(bytes);
            if version >= 1 {
                resp.session_lifetime_ms = lifetime_ms;
            }
            Gate::Respond(frame(&resp))
        }
        Err((code, reason)) => {
            let mut resp = SaslAuthenticateResponse::default();
            resp.error_code = code.code();
            resp.error_message = Some(StrBytes::from_string(reason.clone()));
            crate::metrics::METRICS
                .authentication_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Gate::RespondThenClose(
                frame(&resp),
                format!("SASL authentication failed: {reason}"),
            )
        }
    }
}

/// A bare token after a v0 SaslHandshake. The answer is a bare token too;
/// on failure the connection closes without one (there is no error field).
pub fn on_raw_token(
    shard: &Rc<Shard>,
    session: &Rc<Session>,
    token: Bytes,
) -> Result<Response, (Option<Response>, String)> {
    match step(shard, session, &token) {
        Ok((bytes, _)) => {
            let mut out = BytesMut::with_capacity(4 + bytes.len());
            out.put_i32(bytes.len() as i32);
            out.put_slice(&bytes);
            Ok(Response::Frame(out.freeze()))
        }
        Err((_, reason)) => {
            crate::metrics::METRICS
                .authentication_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err((None, format!("SASL authentication failed: {reason}")))
        }
    }
}

/// Runs one client message through the chosen mechanism. On completion the
/// session is authenticated; returns the bytes to send and the session
/// lifetime in ms (0 = unbounded). Errors carry the Kafka error code.
fn step(
    shard: &Rc<Shard>,
    session: &Rc<Session>,
    msg: &[u8],
) -> Result<(Vec<u8>, i64), (ErrorCode, String)> {
    let security = &shard.broker.security;
    let exchange = std::mem::take(&mut *session.sasl.borrow_mut());
    let fail = |e: AuthError| (e.kafka_error_code(), e.to_string());
    let (outcome, raw) = match exchange {
        Exchange::Idle => {
            return Err((
                ErrorCode::IllegalSaslState,
                "SaslAuthenticate without a SaslHandshake".into(),
            ))
        }
        Exchange::Chosen { mechanism, raw } => {
            let outcome = match mechanism {
                Mechanism::Plain => security.plain.authenticate(msg).map(|user| Step::Done {
                    principal: format!("User:{user}"),
                    response: Vec::new(),
                    credential_expires_ms: None,
                }),
                Mechanism::Scram(m) => {
                    let mut server = Box::new(ScramServer::new(m));
                    let store = security.scram.read().unwrap_or_else(|e| e.into_inner());
                    let first = server.client_first(msg, |user| store.get(user, m).cloned());
                    drop(store);
                    match first {
                        Ok(reply) => {
                            *session.sasl.borrow_mut() = Exchange::Scram { server, raw };
                            return Ok((reply, 0));
                        }
                        Err(e) => Err(e),
                    }
                }
                Mechanism::OAuthBearer => oauthbearer(security, msg),
                Mechanism::AwsMskIam => match &security.iam {
                    None => Err(AuthError::Unsupported {
                        mechanism: "AWS_MSK_IAM",
                        reason: "no IAM credentials are configured on this broker".into(),
                    }),
                    Some(iam) => iam
                        .verify_json(msg, now_ms())
                        .map(|(id, response)| Step::Done {
                            principal: id.principal_arn.clone(),
                            response,
                            credential_expires_ms: Some(id.expires_at_ms),
                        }),
                },
            };
            (outcome, raw)
        }
        Exchange::Scram { mut server, raw } => {
            let outcome = server
                .client_final(msg)
                .map(|(user, server_final)| Step::Done {
                    principal: format!("User:{user}"),
                    response: server_final,
                    credential_expires_ms: None,
                });
            (outcome, raw)
        }
    };
    let _ = raw;
    match outcome.map_err(fail)? {
        Step::Done {
            principal,
            response,
            credential_expires_ms,
        } => {
            if session.is_authenticated() && *session.principal() != *principal {
                return Err((
                    ErrorCode::SaslAuthenticationFailed,
                    "re-authentication must keep the principal of the session".into(),
                ));
            }
            if !security.authorize(&principal, Action::Connect, Resource::Cluster) {
                return Err((
                    ErrorCode::SaslAuthenticationFailed,
                    format!(
                        "{} is not authorized to kafka-cluster:Connect",
                        auth::sanitize(&principal)
                    ),
                ));
            }
            // Session lifetime: the credential's remaining life, capped by
            // connections.max.reauth.ms when that is set.
            let now = now_ms();
            let mut lifetime = credential_expires_ms.map(|t| (t - now).max(1));
            if security.reauth_ms > 0 {
                lifetime = Some(lifetime.map_or(security.reauth_ms, |l| l.min(security.reauth_ms)));
            }
            let expires_at = lifetime.map(|ms| Instant::now() + Duration::from_millis(ms as u64));
            tracing::debug!(principal = %principal, lifetime_ms = ?lifetime, "SASL authentication succeeded");
            session.set_authenticated(principal.into(), expires_at);
            Ok((response, lifetime.unwrap_or(0)))
        }
    }
}

/// OAUTHBEARER (RFC 7628). The tokens the broker accepts are AWS MSK IAM
/// tokens (presigned kafka-cluster:Connect URLs).
fn oauthbearer(security: &Security, msg: &[u8]) -> Result<Step, AuthError> {
    let parsed = auth::oauthbearer::parse_client_response(msg)?;
    let iam = security
        .iam
        .as_ref()
        .ok_or_else(|| AuthError::Unsupported {
            mechanism: "OAUTHBEARER",
            reason:
                "this broker accepts AWS MSK IAM tokens only, and has no IAM credentials configured"
                    .into(),
        })?;
    let id = iam.verify_token(&parsed.token, now_ms())?;
    Ok(Step::Done {
        principal: id.principal_arn.clone(),
        response: Vec::new(),
        credential_expires_ms: Some(id.expires_at_ms),
    })
}
