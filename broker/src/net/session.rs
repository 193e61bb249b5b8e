//! Who is on the other end of a connection: the [`Listener`] it arrived on
//! (name, security protocol, advertised address, TLS configuration) and the
//! [`Session`] state that authentication fills in (principal, SASL exchange,
//! KIP-368 session expiry). Requests see both through their context.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::config::SecurityProtocol;

/// Kafka's principal for connections that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// One configured listener, as the connections accepted on it see it.
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
    /// What Metadata, FindCoordinator and DescribeCluster answer to clients
    /// of this listener.
    pub advertised_host: String,
    pub advertised_port: u16,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Per-connection security state. Lives on the connection's shard only.
pub struct Session {
    pub listener: Arc<Listener>,
    principal: RefCell<Rc<str>>,
    authenticated: Cell<bool>,
    /// When the authenticated session ends (KIP-368); requests other than a
    /// re-authentication after this close the connection.
    expires_at: Cell<Option<Instant>>,
    pub(crate) sasl: RefCell<crate::net::sasl::Exchange>,
}

impl Session {
    /// A new connection. On listeners without SASL the connection is
    /// authenticated at once, as the mTLS subject or ANONYMOUS.
    pub fn new(listener: Arc<Listener>, tls_subject: Option<String>) -> Session {
        let principal: Rc<str> = match tls_subject {
            Some(dn) => format!("User:{dn}").into(),
            None => ANONYMOUS.into(),
        };
        let authenticated = !listener.protocol.uses_sasl();
        Session {
            listener,
            principal: RefCell::new(principal),
            authenticated: Cell::new(authenticated),
            expires_at: Cell::new(None),
            sasl: RefCell::new(crate::net::sasl::Exchange::default()),
        }
    }

    pub fn principal(&self) -> Rc<str> {
        self.principal.borrow().clone()
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.get()
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.get().is_some_and(|t| now >= t)
    }

    pub(crate) fn set_authenticated(&self, principal: Rc<str>, expires_at: Option<Instant>) {
        *self.principal.borrow_mut() = principal;
        self.authenticated.set(true);
        self.expires_at.set(expires_at);
    }
}
