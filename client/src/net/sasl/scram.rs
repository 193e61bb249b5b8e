//! SCRAM-SHA-256 and SCRAM-SHA-512 for the client's connections: the
//! mechanism and its state machine are `sluice_protocol::sasl::scram` (the
//! broker's replica fetchers drive the same one); this module plugs it into
//! the connection's [`SaslSession`] surface.

use std::time::Duration;

pub use sluice_protocol::sasl::scram::{escape_username, ScramClient, ScramMechanism};

use super::{SaslError, SaslSession};

impl SaslSession for ScramClient {
    fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        ScramClient::step(self, server).map_err(SaslError::from)
    }

    fn session_lifetime_hint(&self) -> Option<Duration> {
        None
    }
}
