//! The client side of Kafka's SASL mechanisms that need no I/O of their own,
//! shared by every Sluice component that logs in to a broker: the Rust
//! client's connections, and the broker's replica fetchers and controller
//! transport when an inter-broker or controller listener uses SASL. This
//! module owns the error type and [`SaslClient`], one login by any of the
//! password mechanisms (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) behind one
//! `step`; `plain` and `scram` hold the mechanisms. The
//! runtimes that carry the bytes (SaslHandshake + SaslAuthenticate, or the
//! quorum transport's frames) stay with their callers.

pub mod plain;
pub mod scram;

/// Why a client-side SASL exchange cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslClientError {
    /// The server (or our verification of it) rejected the exchange.
    #[error("SASL authentication failed: {0}")]
    AuthenticationFailed(String),
    /// A server message that does not parse as the mechanism requires.
    #[error("malformed SASL server message: {0}")]
    MalformedServerMessage(String),
    /// The exchange was stepped out of order (e.g. after it finished).
    #[error("illegal SASL state: {0}")]
    IllegalState(String),
    /// The credentials cannot produce a valid message.
    #[error("invalid SASL configuration: {0}")]
    InvalidConfig(String),
}

/// A password mechanism a broker logs in to another broker with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordMechanism {
    /// RFC 4616 PLAIN.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(scram::ScramMechanism),
}

impl PasswordMechanism {
    /// The SASL mechanism name, as Kafka's configs spell it.
    pub fn name(self) -> &'static str {
        match self {
            PasswordMechanism::Plain => "PLAIN",
            PasswordMechanism::Scram(m) => m.name(),
        }
    }

    /// The mechanism for a SASL name (exact, as Kafka matches them).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(PasswordMechanism::Plain),
            other => scram::ScramMechanism::from_name(other).map(PasswordMechanism::Scram),
        }
    }
}

/// One client-side login with a username and password.
pub enum SaslClient {
    Plain(plain::PlainClient),
    Scram(scram::ScramClient),
}

impl SaslClient {
    /// Starts a login (a SCRAM one draws its random nonce here).
    pub fn new(
        mechanism: PasswordMechanism,
        username: &str,
        password: &str,
    ) -> Result<Self, SaslClientError> {
        Ok(match mechanism {
            PasswordMechanism::Plain => {
                SaslClient::Plain(plain::PlainClient::new(username, password)?)
            }
            PasswordMechanism::Scram(m) => {
                SaslClient::Scram(scram::ScramClient::new(m, username, password)?)
            }
        })
    }

    /// The next client message given the server's last one (`None` at the
    /// start); `Ok(None)` when the client is satisfied.
    pub fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslClientError> {
        match self {
            SaslClient::Plain(c) => c.step(server),
            SaslClient::Scram(c) => c.step(server),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip() {
        for name in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            assert_eq!(
                PasswordMechanism::from_name(name).map(|m| m.name()),
                Some(name)
            );
        }
        assert_eq!(PasswordMechanism::from_name("plain"), None);
        assert_eq!(PasswordMechanism::from_name("GSSAPI"), None);
    }

    #[test]
    fn plain_login_sends_one_message() {
        let mut c = match SaslClient::new(PasswordMechanism::Plain, "admin", "pw") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.step(None).ok().flatten(), Some(b"\0admin\0pw".to_vec()));
        assert_eq!(c.step(Some(b"")).ok(), Some(None));
    }
}
