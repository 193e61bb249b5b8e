//! Who is on the other end of a connection: the [`Listener`] it arrived on
//! (name, security protocol, advertised address, TLS configuration) and the
//! [`Session`] state that authentication fills in (principal, where the SASL
//! [`Exchange`] stands, KIP-368 session expiry). Requests see both through
//! their context; the connection loop (`net::sasl`) drives the exchange.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::config::SecurityProtocol;

use super::{ScramMechanism, ScramServer};

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
    pub(crate) sasl: RefCell<Exchange>,
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
            sasl: RefCell::new(Exchange::default()),
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

/// A SASL mechanism the broker speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
    AwsMskIam,
}

impl Mechanism {
    /// The mechanism SaslHandshake names (upper case), if the broker has it.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Some(match name {
            "PLAIN" => Mechanism::Plain,
            "OAUTHBEARER" => Mechanism::OAuthBearer,
            "AWS_MSK_IAM" => Mechanism::AwsMskIam,
            other => Mechanism::Scram(ScramMechanism::from_name(other)?),
        })
    }
}

/// Where a connection is in the SASL exchange.
#[derive(Default)]
pub enum Exchange {
    #[default]
    Idle,
    /// SaslHandshake chose a mechanism; `raw` after a v0 handshake (tokens
    /// then come without Kafka request headers).
    Chosen { mechanism: Mechanism, raw: bool },
    /// SCRAM between its two client messages.
    Scram { server: Box<ScramServer>, raw: bool },
}

impl Exchange {
    pub fn expects_raw_token(&self) -> bool {
        matches!(
            self,
            Exchange::Chosen { raw: true, .. } | Exchange::Scram { raw: true, .. }
        )
    }
}
