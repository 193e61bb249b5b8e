//! SASL PLAIN (RFC 4616) for the client's connections: the message and the
//! two-step exchange are `sluice_protocol::sasl::plain` (shared with the
//! broker's inter-broker logins); this module plugs it into [`SaslSession`].

use std::time::Duration;

pub use sluice_protocol::sasl::plain::PlainClient;

use super::{SaslError, SaslSession};

impl SaslSession for PlainClient {
    fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        PlainClient::step(self, server).map_err(SaslError::from)
    }

    fn session_lifetime_hint(&self) -> Option<Duration> {
        None
    }
}
