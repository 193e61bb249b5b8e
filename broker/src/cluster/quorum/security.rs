//! What secures the controller transport ([`super::transport`]): the
//! security protocol `listener.security.protocol.map` gives the controller
//! listener (the first of `controller.listener.names`), as Kafka resolves
//! it for controllers and for brokers that talk to them.
//!
//! [`TransportSecurity`] holds, for one node, everything its connections
//! need, built once at start-up from the broker's own settings:
//! - TLS (SSL, SASL_SSL): the rustls server configuration of the client
//!   listeners (`ssl.keystore.location`, mTLS with `ssl.truststore.location`
//!   when `ssl.client.auth` asks) and the inter-broker client one (trusting
//!   `ssl.truststore.location`, presenting the keystore), both from
//!   [`crate::tls`].
//! - SASL (SASL_PLAINTEXT, SASL_SSL), client side: the login this node uses,
//!   `sasl.mechanism.controller.protocol` with the credentials of the
//!   controller listener's JAAS line.
//! - Server side: the broker's own authenticators (PLAIN users of `[auth]`,
//!   the SCRAM credential store) verify peers, and, when an authorizer is
//!   configured, the principal needs Kafka's ClusterAction on the cluster.
//!
//! The exchange itself (frames, order) is the transport's; this module
//! answers its questions: "what do I send", "is this peer who it claims and
//! may it join".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sluice_protocol::sasl::PasswordMechanism;

use crate::auth::{Action, AuthError, Resource, ScramServer, ScramStore, Security};
use crate::config::jaas::BrokerLogin;
use crate::config::{BrokerConfig, SecurityProtocol};

/// A refusal is logged again after this long (peers retry every few ms).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How one node's controller connections are secured. Cheap to share
/// (`Arc`); the default is PLAINTEXT.
pub struct TransportSecurity {
    protocol: SecurityProtocol,
    pub(super) tls: Option<TlsConfigs>,
    pub(super) login: Option<BrokerLogin>,
    pub(super) verifier: Option<Verifier>,
    /// Refusals already logged, so a peer retrying with a bad password
    /// does not fill the log: `peer -> (reason, when logged)`.
    logged: Mutex<HashMap<String, (String, Instant)>>,
}

impl Default for TransportSecurity {
    fn default() -> Self {
        TransportSecurity::plaintext()
    }
}

impl std::fmt::Debug for TransportSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportSecurity")
            .field("protocol", &self.protocol.name())
            .field("tls", &self.tls.is_some())
            .field("login", &self.login)
            .field("verifier", &self.verifier.is_some())
            .finish()
    }
}

/// The two rustls configurations of a TLS controller listener.
pub(super) struct TlsConfigs {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

/// The server side: who may connect.
pub(super) struct Verifier {
    /// Mechanisms offered on the controller listener (`sasl.enabled.mechanisms`
    /// among the password ones); empty when the listener has no SASL.
    mechanisms: Vec<PasswordMechanism>,
    /// PLAIN users, SCRAM store and authorizer, as the client listeners
    /// have them.
    security: Security,
    /// The SCRAM credentials the file held at start-up. In a cluster the
    /// broker rewrites the file from the metadata log, which cannot hold
    /// the controllers' own credentials before the quorum has formed (Kafka
    /// bootstraps them with `kafka-storage format --add-scram`); these stay
    /// valid until restart, as a fallback.
    bootstrap_scram: ScramStore,
    /// When the SCRAM file was last (re)loaded: the broker rewrites it as
    /// the metadata log's credentials change, and the controller follows.
    scram_loaded: Mutex<Option<SystemTime>>,
}

/// One server-side SASL exchange in progress.
pub(super) enum ServerExchange {
    /// SCRAM after client-first, waiting for client-final.
    Scram(Box<ScramServer>),
}

/// What a server step answers.
pub(super) enum ServerStep {
    /// Send this challenge and wait for the next client message.
    Challenge(Vec<u8>, ServerExchange),
    /// Authenticated as `principal`; send `token` as the final message.
    Done { principal: String, token: Vec<u8> },
}

impl Verifier {
    /// Verifies with `security`'s users and authorizer, offering
    /// `mechanisms` (none: the listener has no SASL).
    pub(super) fn new(mechanisms: Vec<PasswordMechanism>, security: Security) -> Verifier {
        let bootstrap_scram = security
            .scram
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Verifier {
            mechanisms,
            security,
            bootstrap_scram,
            scram_loaded: Mutex::new(None),
        }
    }

    /// Starts an exchange with the client's first message.
    pub(super) fn start(&self, mechanism: &str, token: &[u8]) -> Result<ServerStep, String> {
        let offered = PasswordMechanism::from_name(mechanism)
            .filter(|m| self.mechanisms.contains(m))
            .ok_or_else(|| {
                format!(
                    "SASL mechanism {} is not enabled on this controller listener (enabled: {})",
                    crate::auth::sanitize(mechanism),
                    self.mechanisms
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let fail = |e: AuthError| e.to_string();
        match offered {
            PasswordMechanism::Plain => {
                let user = self.security.plain.authenticate(token).map_err(fail)?;
                Ok(ServerStep::Done {
                    principal: format!("User:{user}"),
                    token: Vec::new(),
                })
            }
            PasswordMechanism::Scram(m) => {
                let m = crate::auth::ScramMechanism::from_name(m.name())
                    .ok_or_else(|| format!("{} is not supported", m.name()))?;
                self.refresh_scram();
                let mut server = Box::new(ScramServer::new(m));
                let store = self
                    .security
                    .scram
                    .read()
                    .unwrap_or_else(|e| e.into_inner());
                let reply = server
                    .client_first(token, |user| {
                        store
                            .get(user, m)
                            .or_else(|| self.bootstrap_scram.get(user, m))
                            .cloned()
                    })
                    .map_err(fail)?;
                Ok(ServerStep::Challenge(reply, ServerExchange::Scram(server)))
            }
        }
    }

    /// Continues an exchange with the client's next message.
    pub(super) fn step(
        &self,
        exchange: ServerExchange,
        token: &[u8],
    ) -> Result<ServerStep, String> {
        match exchange {
            ServerExchange::Scram(mut server) => {
                let (user, token) = server.client_final(token).map_err(|e| e.to_string())?;
                Ok(ServerStep::Done {
                    principal: format!("User:{user}"),
                    token,
                })
            }
        }
    }

    /// Whether `principal` may take part in the quorum: with an authorizer,
    /// it needs ClusterAction on the cluster (Kafka's rule for controller
    /// and inter-broker principals; `kafka-cluster:ClusterAction`, which
    /// MSK keeps to its own brokers), as a follower's fetch does
    /// (`api::fetch`).
    pub(super) fn authorize(&self, principal: &str) -> Result<(), String> {
        if self
            .security
            .authorize(principal, Action::ClusterAction, Resource::Cluster)
        {
            Ok(())
        } else {
            Err(format!(
                "{} is not authorized for ClusterAction ({}) on the cluster",
                crate::auth::sanitize(principal),
                Action::ClusterAction
            ))
        }
    }

    pub(super) fn uses_sasl(&self) -> bool {
        !self.mechanisms.is_empty()
    }

    /// Reloads the SCRAM credential file when it changed since last read.
    fn refresh_scram(&self) {
        let modified = std::fs::metadata(&self.security.scram_path)
            .and_then(|m| m.modified())
            .ok();
        let mut loaded = self.scram_loaded.lock().unwrap_or_else(|e| e.into_inner());
        if modified.is_none() || *loaded == modified {
            return;
        }
        match ScramStore::load(&self.security.scram_path) {
            Ok(store) => {
                *self
                    .security
                    .scram
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = store;
                *loaded = modified;
            }
            Err(e) => {
                tracing::warn!(error = %e, "controller listener cannot reload the SCRAM credentials")
            }
        }
    }
}

impl TransportSecurity {
    /// No TLS, no SASL: today's controller transport.
    pub fn plaintext() -> TransportSecurity {
        TransportSecurity {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            login: None,
            verifier: None,
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// Assembled from parts (tests build their own TLS and users).
    pub(super) fn from_parts(
        protocol: SecurityProtocol,
        tls: Option<TlsConfigs>,
        login: Option<BrokerLogin>,
        verifier: Option<Verifier>,
    ) -> TransportSecurity {
        TransportSecurity {
            protocol,
            tls,
            login,
            verifier,
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// The controller listener's security as `cfg` configures it. Refuses,
    /// naming the setting, what cannot work: TLS without a keystore or
    /// truststore, SASL without a supported mechanism or credentials.
    pub fn from_config(cfg: &BrokerConfig) -> anyhow::Result<TransportSecurity> {
        use anyhow::Context;
        let Some(listener) = cfg.cluster.controller_listener_names.first() else {
            return Ok(TransportSecurity::plaintext());
        };
        let protocol = cfg
            .controller_protocol()
            .with_context(|| format!("controller listener {listener} has no security protocol"))?;
        if protocol == SecurityProtocol::Plaintext {
            return Ok(TransportSecurity::plaintext());
        }
        let tls = if protocol.uses_tls() {
            let server = crate::tls::server_config(&cfg.ssl).with_context(|| {
                format!("controller listener {listener} is {}", protocol.name())
            })?;
            let client = crate::tls::client_config(&cfg.ssl).with_context(|| {
                format!("controller listener {listener} is {}", protocol.name())
            })?;
            Some(TlsConfigs { server, client })
        } else {
            None
        };
        let (login, mechanisms) = if protocol.uses_sasl() {
            let login = cfg.controller_login().map_err(anyhow::Error::msg)?;
            let mechanisms: Vec<PasswordMechanism> = cfg
                .sasl_enabled_mechanisms
                .iter()
                .filter_map(|m| PasswordMechanism::from_name(m))
                .collect();
            (Some(login), mechanisms)
        } else {
            (None, Vec::new())
        };
        let security = Security::from_config(cfg)?;
        let verifier = Verifier::new(mechanisms, security);
        verifier.refresh_scram();
        tracing::info!(
            listener = %listener,
            protocol = protocol.name(),
            login = ?login,
            "controller transport secured"
        );
        Ok(TransportSecurity::from_parts(
            protocol,
            tls,
            login,
            Some(verifier),
        ))
    }

    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }

    /// Logs a refusal (by or of `peer`) unless the same one was logged
    /// recently; `accepted` forgets it, so the next refusal is news again.
    pub(super) fn log_refusal(&self, peer: &str, reason: &str, ours: bool) {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = match logged.get(peer) {
            Some((last, when)) => last != reason || when.elapsed() >= REFUSAL_LOG_INTERVAL,
            None => true,
        };
        if fresh {
            logged.insert(peer.to_string(), (reason.to_string(), Instant::now()));
            drop(logged);
            if ours {
                tracing::warn!(%peer, %reason, "refused a controller connection");
            } else {
                tracing::error!(controller = %peer, %reason, "a controller refused this node's connection (retrying; logged once)");
            }
        }
    }

    /// Forgets a logged refusal of `peer` after a connection succeeded.
    pub(super) fn accepted(&self, peer: &str) {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.remove(peer).is_some() {
            tracing::info!(controller = %peer, "controller connection accepted again");
        }
    }
}
