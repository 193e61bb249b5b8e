//! SASL PLAIN (RFC 4616): the single client message `authzid NUL authcid
//! NUL passwd`, with an empty authzid as Kafka's client sends it, and the
//! two-step client exchange around it (send the message, accept the
//! server's empty answer).

use super::SaslClientError;

/// `\0username\0password`; an empty username or a NUL in either field is
/// refused (the server could not split the message).
pub fn message(username: &str, password: &str) -> Result<Vec<u8>, SaslClientError> {
    if username.is_empty() {
        return Err(SaslClientError::InvalidConfig(
            "PLAIN username is empty".into(),
        ));
    }
    if username.contains('\0') || password.contains('\0') {
        return Err(SaslClientError::InvalidConfig(
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

/// States of a PLAIN exchange.
enum State {
    /// Nothing sent yet; holds the message to send.
    Initial(Vec<u8>),
    /// The message was sent; waiting for the server's (empty) answer.
    Sent,
    /// Finished.
    Done,
}

/// One PLAIN authentication, client side.
pub struct PlainClient {
    state: State,
}

impl PlainClient {
    /// Builds the RFC 4616 message; NUL is not allowed in either field.
    pub fn new(username: &str, password: &str) -> Result<Self, SaslClientError> {
        Ok(PlainClient {
            state: State::Initial(message(username, password)?),
        })
    }

    /// The message first (`server` is `None`), then `Ok(None)` once the
    /// server answered; anything else is out of order.
    pub fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslClientError> {
        match (std::mem::replace(&mut self.state, State::Done), server) {
            (State::Initial(msg), None) => {
                self.state = State::Sent;
                Ok(Some(msg))
            }
            (State::Sent, Some(_)) => Ok(None),
            (_, _) => Err(SaslClientError::IllegalState(
                "PLAIN stepped out of order".into(),
            )),
        }
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
        assert_eq!(message("bob", "").ok(), Some(b"\0bob\0".to_vec()));
        assert!(message("", "x").is_err());
        assert!(message("a\0b", "x").is_err());
        assert!(message("a", "x\0y").is_err());
    }

    #[test]
    fn out_of_order_is_illegal_state() {
        let start = || match PlainClient::new("u", "p") {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let mut s = start();
        assert!(matches!(
            s.step(Some(b"")),
            Err(SaslClientError::IllegalState(_))
        ));
        let mut s = start();
        assert!(s.step(None).is_ok());
        assert!(matches!(s.step(Some(b"")), Ok(None)));
        assert!(s.step(Some(b"")).is_err());
    }
}
