//! OAUTHBEARER (RFC 7628) client as Kafka uses it: the initial response
//! `n,,\x01auth=Bearer <token>\x01[key=value\x01]*\x01`, an empty server
//! answer on success, and on failure a JSON error message (RFC 7628 section
//! 3.2.2) to which the client answers a single `\x01` before the broker ends
//! the exchange. This module owns that message format, Kafka's validation of
//! SASL extensions, and the session state machine; tokens come from a
//! [`super::TokenProvider`].

use std::time::Duration;

use super::{OAuthToken, SaslError, SaslSession};

/// States of an OAUTHBEARER exchange.
enum State {
    /// Nothing sent yet; holds the initial client response.
    Initial(Vec<u8>),
    /// Initial response sent; waiting for success (empty) or an error JSON.
    Sent,
    /// The server sent an error; we answered `\x01` and fail on its next message.
    Failed(String),
    /// Finished.
    Done,
}

/// One OAUTHBEARER authentication with one token.
pub struct OAuthBearerSession {
    state: State,
    lifetime: Option<Duration>,
}

impl OAuthBearerSession {
    /// A session presenting `token`; `now_ms` is used for the lifetime hint.
    pub fn new(token: &OAuthToken, now_ms: i64) -> Result<Self, SaslError> {
        let msg = initial_response(token)?;
        let remaining = token.expires_at_ms.saturating_sub(now_ms);
        let lifetime = u64::try_from(remaining).ok().map(Duration::from_millis);
        Ok(OAuthBearerSession {
            state: State::Initial(msg),
            lifetime,
        })
    }
}

/// Builds the RFC 7628 client initial response for `token`.
pub fn initial_response(token: &OAuthToken) -> Result<Vec<u8>, SaslError> {
    if token.value.is_empty() || !token.value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(SaslError::TokenProvider(
            "token is empty or has non-printable characters".into(),
        ));
    }
    let mut m = format!("n,,\x01auth=Bearer {}\x01", token.value);
    for (k, v) in &token.extensions {
        // Kafka's rules (OAuthBearerClientInitialResponse): key [A-Za-z]+ and not "auth";
        // value [\x21-\x7E \t\r\n]+.
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphabetic()) || k == "auth" {
            return Err(SaslError::InvalidConfig(format!(
                "invalid SASL extension name {k:?}"
            )));
        }
        if v.is_empty()
            || !v
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) || b" \t\r\n".contains(&b))
        {
            return Err(SaslError::InvalidConfig(format!(
                "invalid value for SASL extension {k:?}"
            )));
        }
        m.push_str(k);
        m.push('=');
        m.push_str(v);
        m.push('\x01');
    }
    m.push('\x01');
    Ok(m.into_bytes())
}

/// Turns the server's error challenge into a readable message.
fn describe_server_error(challenge: &[u8]) -> String {
    let text = String::from_utf8_lossy(challenge);
    match serde_json::from_slice::<serde_json::Value>(challenge) {
        Ok(serde_json::Value::Object(map)) => {
            let status = map
                .get("status")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown");
            format!("server rejected the token: status={status} ({text})")
        }
        _ => format!("server rejected the token: {text}"),
    }
}

impl SaslSession for OAuthBearerSession {
    fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        match (std::mem::replace(&mut self.state, State::Done), server) {
            (State::Initial(msg), None) => {
                self.state = State::Sent;
                Ok(Some(msg))
            }
            (State::Sent, Some([])) => Ok(None),
            (State::Sent, Some(challenge)) => {
                self.state = State::Failed(describe_server_error(challenge));
                Ok(Some(vec![0x01]))
            }
            (State::Failed(msg), Some(_)) => Err(SaslError::AuthenticationFailed(msg)),
            (_, _) => Err(SaslError::IllegalState(
                "OAUTHBEARER stepped out of order".into(),
            )),
        }
    }

    fn session_lifetime_hint(&self) -> Option<Duration> {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(ext: Vec<(String, String)>) -> OAuthToken {
        OAuthToken {
            value: "eyJhbGc.eyJzdWIi.sig".into(),
            expires_at_ms: 61_000,
            principal: Some("alice".into()),
            extensions: ext,
        }
    }

    #[test]
    fn initial_response_format() {
        assert_eq!(
            initial_response(&token(vec![])).ok(),
            Some(b"n,,\x01auth=Bearer eyJhbGc.eyJzdWIi.sig\x01\x01".to_vec())
        );
        let ext = vec![
            ("traceId".to_string(), "123 abc".to_string()),
            ("logicalCluster".into(), "lkc-1".into()),
        ];
        assert_eq!(
            initial_response(&token(ext)).ok(),
            Some(b"n,,\x01auth=Bearer eyJhbGc.eyJzdWIi.sig\x01traceId=123 abc\x01logicalCluster=lkc-1\x01\x01".to_vec())
        );
        assert!(initial_response(&token(vec![("auth".into(), "x".into())])).is_err());
        assert!(initial_response(&token(vec![("a1".into(), "x".into())])).is_err());
        assert!(initial_response(&token(vec![("a".into(), "x\x01".into())])).is_err());
        let mut bad = token(vec![]);
        bad.value = "has space".into();
        assert!(initial_response(&bad).is_err());
    }

    #[test]
    fn success_and_lifetime() {
        let mut s = match OAuthBearerSession::new(&token(vec![]), 1_000) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(s.session_lifetime_hint(), Some(Duration::from_secs(60)));
        assert!(matches!(s.step(None), Ok(Some(_))));
        assert!(matches!(s.step(Some(b"")), Ok(None)));
        assert!(matches!(s.step(Some(b"")), Err(SaslError::IllegalState(_))));
    }

    #[test]
    fn server_error_gets_kvsep_then_fails_with_text() {
        let mut s = match OAuthBearerSession::new(&token(vec![]), 100_000) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(s.session_lifetime_hint(), None);
        assert!(s.step(None).is_ok());
        let challenge = br#"{"status":"invalid_token","scope":"kafka"}"#;
        assert_eq!(s.step(Some(challenge)).ok().flatten(), Some(vec![1]));
        match s.step(Some(b"")) {
            Err(SaslError::AuthenticationFailed(m)) => {
                assert!(m.contains("invalid_token"), "{m}");
            }
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
    }
}
