//! SASL PLAIN (RFC 4616): a single client message `authzid NUL authcid NUL
//! passwd`, sent with an empty authzid as Kafka's client does. The broker
//! answers with empty `auth_bytes` on success; this module owns only the
//! message and the two-state session.

use std::time::Duration;

use super::{SaslError, SaslSession};

/// States of a PLAIN exchange.
enum State {
    /// Nothing sent yet; holds the message to send.
    Initial(Vec<u8>),
    /// The message was sent; waiting for the server's (empty) answer.
    Sent,
    /// Finished.
    Done,
}

/// One PLAIN authentication.
pub struct PlainSession {
    state: State,
}

impl PlainSession {
    /// Builds the RFC 4616 message; NUL is not allowed in either field.
    pub fn new(username: &str, password: &str) -> Result<Self, SaslError> {
        Ok(PlainSession {
            state: State::Initial(message(username, password)?),
        })
    }
}

/// `\0username\0password` (empty authzid).
pub fn message(username: &str, password: &str) -> Result<Vec<u8>, SaslError> {
    if username.is_empty() {
        return Err(SaslError::InvalidConfig("PLAIN username is empty".into()));
    }
    if username.contains('\0') || password.contains('\0') {
        return Err(SaslError::InvalidConfig(
            "PLAIN username or password contains NUL".into(),
        ));
    }
    let mut m = Vec::with_capacity(username.len() + password.len() + 2);
    m.push(0);
    m.extend_from_slice(username.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    Ok(m)
}

impl SaslSession for PlainSession {
    fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        match (std::mem::replace(&mut self.state, State::Done), server) {
            (State::Initial(msg), None) => {
                self.state = State::Sent;
                Ok(Some(msg))
            }
            (State::Sent, Some(_)) => Ok(None),
            (_, _) => Err(SaslError::IllegalState("PLAIN stepped out of order".into())),
        }
    }

    fn session_lifetime_hint(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4616_message() {
        assert_eq!(
            message("tim", "tanstaaftanstaaf").ok(),
            Some(b"\0tim\0tanstaaftanstaaf".to_vec())
        );
        assert!(message("", "x").is_err());
        assert!(message("a\0b", "x").is_err());
    }

    #[test]
    fn out_of_order_is_illegal_state() {
        let mut s = match PlainSession::new("u", "p") {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(matches!(s.step(Some(b"")), Err(SaslError::IllegalState(_))));
        let mut s = match PlainSession::new("u", "p") {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(s.step(None).is_ok());
        assert!(matches!(s.step(Some(b"")), Ok(None)));
        assert!(s.step(Some(b"")).is_err());
    }
}
