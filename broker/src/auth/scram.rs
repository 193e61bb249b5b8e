//! Server side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as
//! Kafka speaks it. This module owns StoredKey/ServerKey derivation (the
//! mechanisms' Hi, HMAC and H are `sluice_protocol::sasl::scram`'s), the
//! [`ScramCredential`] the broker keeps
//! per user and mechanism, and the [`ScramServer`] state machine for one
//! exchange: client-first -> server-first -> client-final -> server-final.
//!
//! Kafka specifics: no channel binding (gs2 flag `n`, or `y` which only says
//! the client could bind), an authzid must be empty or name the user itself,
//! iteration counts are 4096..=16384 as Kafka enforces for stored
//! credentials, and the `tokenauth` extension (delegation tokens) is refused
//! because sluiced has no delegation tokens. Passwords are used as their
//! UTF-8 bytes without SASLprep, as Kafka does.
//!
//! An unknown user is not revealed at the first step: the exchange continues
//! with a fake credential whose salt is derived from the user name with a
//! per-process secret (so it is stable across attempts, like a real one) and
//! fails at the proof, exactly like a wrong password.

use std::fmt;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;

use super::{ct_eq, sanitize, AuthError};

/// Kafka's minimum iteration count for SCRAM-SHA-256/512.
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's maximum iteration count for stored credentials.
pub const MAX_ITERATIONS: u32 = 16384;
/// Iterations used for the fake credential of an unknown user (Kafka's default).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Largest client message accepted; real ones are well under 1 KiB.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// The mechanisms and their cryptography are shared with every SCRAM
/// client in the workspace.
pub use sluice_protocol::sasl::scram::ScramMechanism;

/// What the broker stores for one user and mechanism: never the password,
/// only what RFC 5802 section 3 needs to verify a proof and sign the answer.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl fmt::Debug for ScramCredential {
    // StoredKey allows an offline dictionary attack and ServerKey lets its
    // holder impersonate the broker: neither goes into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("salt_len", &self.salt.len())
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .field("iterations", &self.iterations)
            .finish()
    }
}

/// Why a credential cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    #[error("iterations {0} is below the minimum of {MIN_ITERATIONS}")]
    TooFewIterations(u32),
    #[error("iterations {0} is above the maximum of {MAX_ITERATIONS}")]
    TooManyIterations(u32),
    #[error("the salt is empty")]
    EmptySalt,
    #[error("the salted password is empty")]
    EmptySaltedPassword,
    #[error("{what} is {got} bytes, {mechanism} needs {want}")]
    BadKeyLength {
        what: &'static str,
        mechanism: &'static str,
        got: usize,
        want: usize,
    },
}

impl ScramCredential {
    /// Derives the credential from a password (the broker's own tools; the
    /// cost is `iterations` HMACs, so keep this off hot paths).
    pub fn from_password(
        mech: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        check_iterations(iterations)?;
        if salt.is_empty() {
            return Err(CredentialError::EmptySalt);
        }
        let salted = mech.hi(password.as_bytes(), salt, iterations);
        Self::from_salted_password(mech, &salted, salt, iterations)
    }

    /// Derives the credential from SaltedPassword = Hi(password, salt, i), as
    /// AlterUserScramCredentials delivers it.
    pub fn from_salted_password(
        mech: ScramMechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        check_iterations(iterations)?;
        if salt.is_empty() {
            return Err(CredentialError::EmptySalt);
        }
        if salted_password.is_empty() {
            return Err(CredentialError::EmptySaltedPassword);
        }
        let client_key = mech.hmac(salted_password, b"Client Key");
        Ok(ScramCredential {
            salt: salt.to_vec(),
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(salted_password, b"Server Key"),
            iterations,
        })
    }

    /// Checks a credential built elsewhere (e.g. read from a file): iteration
    /// bounds, a salt, and key sizes matching the mechanism.
    pub fn validate(&self, mech: ScramMechanism) -> Result<(), CredentialError> {
        check_iterations(self.iterations)?;
        if self.salt.is_empty() {
            return Err(CredentialError::EmptySalt);
        }
        for (what, key) in [
            ("stored_key", &self.stored_key),
            ("server_key", &self.server_key),
        ] {
            if key.len() != mech.hash_len() {
                return Err(CredentialError::BadKeyLength {
                    what,
                    mechanism: mech.name(),
                    got: key.len(),
                    want: mech.hash_len(),
                });
            }
        }
        Ok(())
    }

    /// A fresh random 32-byte salt (what Kafka's tools generate per credential).
    pub fn random_salt() -> Vec<u8> {
        let mut salt = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        salt
    }
}

fn check_iterations(iterations: u32) -> Result<(), CredentialError> {
    if iterations < MIN_ITERATIONS {
        Err(CredentialError::TooFewIterations(iterations))
    } else if iterations > MAX_ITERATIONS {
        Err(CredentialError::TooManyIterations(iterations))
    } else {
        Ok(())
    }
}

/// A per-process secret keying the fake salts of unknown users.
fn fake_salt_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        k
    })
}

/// A credential no proof can satisfy, for a user that does not exist: its
/// salt is stable per (mechanism, name) and its keys are random.
fn fake_credential(mech: ScramMechanism, username: &str) -> ScramCredential {
    let mut input = Vec::with_capacity(username.len() + 16);
    input.extend_from_slice(mech.name().as_bytes());
    input.push(0);
    input.extend_from_slice(username.as_bytes());
    let salt = ScramMechanism::Sha256.hmac(fake_salt_key(), &input);
    let mut stored_key = vec![0u8; mech.hash_len()];
    let mut server_key = vec![0u8; mech.hash_len()];
    rand::rngs::OsRng.fill_bytes(&mut stored_key);
    rand::rngs::OsRng.fill_bytes(&mut server_key);
    ScramCredential {
        salt,
        stored_key,
        server_key,
        iterations: DEFAULT_ITERATIONS,
    }
}

/// Unescapes a SCRAM `saslname` (`=2C` -> `,`, `=3D` -> `=`); any other `=`
/// or a raw `,` is malformed (RFC 5802 section 5.1).
pub fn unescape_username(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['=', ',']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return None;
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The RFC 5802 `printable` set minus `,`: what a nonce may contain.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// States of one exchange, each carrying what the next step needs. Only the
/// middle state holds data; a `ScramServer` lives for one handshake, so the
/// size difference does not matter (callers box the server anyway).
#[allow(clippy::large_enum_variant)]
enum State {
    AwaitClientFirst,
    AwaitClientFinal {
        username: String,
        credential: ScramCredential,
        /// The exact gs2 header the client sent (`c=` must be its base64).
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        /// client nonce + server nonce.
        nonce: String,
        /// The user does not exist: fail at the proof regardless.
        fake: bool,
    },
    Done,
}

/// One SCRAM exchange on the server side. Single use: any error, or the
/// final step, ends it.
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
    authenticated: bool,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::AwaitClientFirst => "AwaitClientFirst",
            State::AwaitClientFinal { .. } => "AwaitClientFinal",
            State::Done => "Done",
        };
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .field("state", &state)
            .field("authenticated", &self.authenticated)
            .finish()
    }
}

impl ScramServer {
    /// A server for one exchange of `mech`.
    pub fn new(mech: ScramMechanism) -> Self {
        ScramServer {
            mechanism: mech,
            state: State::AwaitClientFirst,
            authenticated: false,
        }
    }

    /// The mechanism this exchange uses.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Whether the exchange finished and the client proved its identity.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    fn malformed(&self, reason: impl Into<String>) -> AuthError {
        AuthError::malformed(self.mechanism.name(), reason)
    }

    /// Handles client-first-message and answers server-first-message.
    /// `lookup` returns the user's credential for this mechanism; `None`
    /// continues with a fake one so user existence is not revealed here.
    pub fn client_first(
        &mut self,
        msg: &[u8],
        lookup: impl Fn(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::AwaitClientFirst) {
            self.state = State::Done;
            return Err(AuthError::IllegalState(format!(
                "{} client-first received out of order",
                self.mechanism
            )));
        }
        self.state = State::Done;
        let parsed = self.parse_client_first(msg)?;
        let mech = self.mechanism;
        let (credential, fake) = match lookup(&parsed.username) {
            Some(c) if c.validate(mech).is_ok() => (c, false),
            _ => (fake_credential(mech, &parsed.username), true),
        };
        let mut raw = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let nonce = format!("{}{}", parsed.client_nonce, STANDARD.encode(raw));
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credential.salt),
            credential.iterations
        );
        self.state = State::AwaitClientFinal {
            username: parsed.username,
            credential,
            gs2_header: parsed.gs2_header,
            client_first_bare: parsed.client_first_bare,
            server_first: server_first.clone(),
            nonce,
            fake,
        };
        Ok(server_first.into_bytes())
    }

    fn parse_client_first(&self, msg: &[u8]) -> Result<ClientFirst, AuthError> {
        if msg.len() > MAX_MESSAGE_BYTES {
            return Err(self.malformed("client-first message too long"));
        }
        let msg = std::str::from_utf8(msg)
            .map_err(|_| self.malformed("client-first message is not UTF-8"))?;
        // gs2-header = gs2-cbind-flag "," [authzid] ","
        let (flag, rest) = msg
            .split_once(',')
            .ok_or_else(|| self.malformed("no gs2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => {
                return Err(AuthError::Unsupported {
                    mechanism: self.mechanism.name(),
                    reason: "channel binding is not supported".into(),
                })
            }
            _ => return Err(self.malformed("bad gs2 channel-binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or_else(|| self.malformed("no gs2 header"))?;
        let gs2_header = &msg[..flag.len() + authzid.len() + 2];
        let authzid = match authzid {
            "" => None,
            a => {
                let name = a
                    .strip_prefix("a=")
                    .ok_or_else(|| self.malformed("bad authzid in gs2 header"))?;
                Some(unescape_username(name).ok_or_else(|| self.malformed("bad authzid"))?)
            }
        };
        if bare.starts_with("m=") {
            return Err(AuthError::Unsupported {
                mechanism: self.mechanism.name(),
                reason: "mandatory extension (m=) is not supported".into(),
            });
        }
        let mut attrs = bare.split(',');
        let username = attrs
            .next()
            .and_then(|a| a.strip_prefix("n="))
            .ok_or_else(|| self.malformed("client-first has no username (n=)"))?;
        let username =
            unescape_username(username).ok_or_else(|| self.malformed("bad username escaping"))?;
        if username.is_empty() || username.contains('\0') {
            return Err(self.malformed("empty or invalid username"));
        }
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(|| self.malformed("client-first has no nonce (r=)"))?;
        if !valid_nonce(client_nonce) {
            return Err(self.malformed("client nonce has invalid characters"));
        }
        // Optional extensions (RFC 5802 allows them; Kafka sends its own).
        for ext in attrs {
            let (key, value) = ext
                .split_once('=')
                .ok_or_else(|| self.malformed("bad extension"))?;
            if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
                return Err(AuthError::Unsupported {
                    mechanism: self.mechanism.name(),
                    reason: "delegation tokens (tokenauth) are not supported".into(),
                });
            }
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(self.malformed(format!("bad extension name {:?}", sanitize(key))));
            }
        }
        if let Some(a) = authzid {
            if a != username {
                return Err(AuthError::AuthzidMismatch);
            }
        }
        Ok(ClientFirst {
            gs2_header: gs2_header.to_owned(),
            client_first_bare: bare.to_owned(),
            username,
            client_nonce: client_nonce.to_owned(),
        })
    }

    /// Handles client-final-message. On success returns the authenticated
    /// (unescaped) username and server-final-message (`v=<signature>`) to
    /// send back; any failure ends the exchange.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(String, Vec<u8>), AuthError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        let State::AwaitClientFinal {
            username,
            credential,
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
            fake,
        } = state
        else {
            return Err(AuthError::IllegalState(format!(
                "{} client-final received out of order",
                self.mechanism
            )));
        };
        if msg.len() > MAX_MESSAGE_BYTES {
            return Err(self.malformed("client-final message too long"));
        }
        let msg = std::str::from_utf8(msg)
            .map_err(|_| self.malformed("client-final message is not UTF-8"))?;
        // The proof is the last attribute; everything before it is signed.
        let (without_proof, proof_b64) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| self.malformed("client-final has no proof (p=)"))?;
        let mut attrs = without_proof.split(',');
        let cb = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or_else(|| self.malformed("client-final has no channel binding (c=)"))?;
        if cb != STANDARD.encode(gs2_header.as_bytes()) {
            return Err(self.malformed("channel binding does not match the gs2 header"));
        }
        let r = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(|| self.malformed("client-final has no nonce (r=)"))?;
        // The nonce is not secret (both sides sent it in clear), but it is
        // the replay guard, so it must be exact.
        if r != nonce {
            return Err(self.malformed("nonce does not match"));
        }
        for ext in attrs {
            if !ext.contains('=') {
                return Err(self.malformed("bad extension"));
            }
        }
        let mech = self.mechanism;
        let proof = STANDARD
            .decode(proof_b64)
            .map_err(|_| self.malformed("proof is not base64"))?;
        if proof.len() != mech.hash_len() {
            return Err(self.malformed("proof has the wrong length"));
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the
        // client knew the password iff H(ClientKey) == StoredKey.
        let client_signature = mech.hmac(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let matches = ct_eq(&mech.hash(&client_key), &credential.stored_key);
        if !matches || fake {
            return Err(AuthError::InvalidCredentials {
                mechanism: mech.name(),
            });
        }
        let server_signature = mech.hmac(&credential.server_key, auth_message.as_bytes());
        self.authenticated = true;
        Ok((
            username,
            format!("v={}", STANDARD.encode(server_signature)).into_bytes(),
        ))
    }
}

struct ClientFirst {
    gs2_header: String,
    client_first_bare: String,
    username: String,
    client_nonce: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::sasl::scram::ScramClient;

    const SALT: &[u8] = b"0123456789abcdef";

    fn cred(mech: ScramMechanism, password: &str) -> ScramCredential {
        match ScramCredential::from_password(mech, password, SALT, 4096) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// Runs a full exchange between the shared SCRAM client and our server.
    fn exchange(
        mech: ScramMechanism,
        user: &str,
        client_password: &str,
        stored: Option<ScramCredential>,
    ) -> Result<String, String> {
        let mut client =
            ScramClient::with_nonce(mech, user, client_password, "fyko+d2lbbFgONRv9qkxdawL")
                .map_err(|e| e.to_string())?;
        let mut server = ScramServer::new(mech);
        let first = client
            .step(None)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let sf = server
            .client_first(&first, |u| if u == user { stored.clone() } else { None })
            .map_err(|e| e.to_string())?;
        let fin = client
            .step(Some(&sf))
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let (name, server_final) = server.client_final(&fin).map_err(|e| e.to_string())?;
        assert!(server.is_authenticated());
        // The client verifies our signature.
        client
            .step(Some(&server_final))
            .map_err(|e| e.to_string())?;
        Ok(name)
    }

    #[test]
    fn interop_with_sluice_client_both_mechanisms() {
        for mech in ScramMechanism::ALL {
            for user in ["alice", "we,ird=name", "ünïcode"] {
                let c = cred(mech, "pa55 wörd");
                assert_eq!(
                    exchange(mech, user, "pa55 wörd", Some(c)),
                    Ok(user.to_string())
                );
            }
        }
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        for mech in ScramMechanism::ALL {
            let c = cred(mech, "right");
            let wrong = exchange(mech, "alice", "wrong", Some(c));
            let unknown = exchange(mech, "alice", "right", None);
            let expected = AuthError::InvalidCredentials {
                mechanism: mech.name(),
            }
            .to_string();
            assert_eq!(wrong, Err(expected.clone()));
            assert_eq!(unknown, Err(expected));
        }
    }

    #[test]
    fn unknown_user_gets_stable_plausible_server_first() {
        let first = b"n,,n=ghost,r=abc";
        let run = || {
            let mut s = ScramServer::new(ScramMechanism::Sha256);
            let sf = s.client_first(first, |_| None).unwrap_or_default();
            let sf = String::from_utf8(sf).unwrap_or_default();
            let salt = sf.split(',').nth(1).unwrap_or_default().to_string();
            (sf, salt)
        };
        let (sf1, salt1) = run();
        let (_, salt2) = run();
        assert!(sf1.starts_with("r=abc"));
        assert!(sf1.ends_with(",i=4096"));
        assert_eq!(salt1, salt2, "fake salt must be stable per user");
    }

    /// RFC 7677 section 3 test vector (SCRAM-SHA-256, user "user", password
    /// "pencil"), driven through the server with the RFC's nonces spliced in.
    #[test]
    fn rfc7677_vector() {
        let salt = STANDARD
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap_or_default();
        let c = match ScramCredential::from_password(ScramMechanism::Sha256, "pencil", &salt, 4096)
        {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        s.state = State::AwaitClientFinal {
            username: "user".into(),
            credential: c,
            gs2_header: "n,,".into(),
            client_first_bare: client_first_bare.into(),
            server_first: server_first.into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            fake: false,
        };
        let msg = format!("{without_proof},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        match s.client_final(msg.as_bytes()) {
            Ok((user, v)) => {
                assert_eq!(user, "user");
                assert_eq!(v, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn credential_validation() {
        let m = ScramMechanism::Sha512;
        assert_eq!(
            ScramCredential::from_password(m, "p", SALT, 4095).err(),
            Some(CredentialError::TooFewIterations(4095))
        );
        assert_eq!(
            ScramCredential::from_salted_password(m, b"x", SALT, 16385).err(),
            Some(CredentialError::TooManyIterations(16385))
        );
        assert_eq!(
            ScramCredential::from_salted_password(m, b"x", b"", 4096).err(),
            Some(CredentialError::EmptySalt)
        );
        assert_eq!(
            ScramCredential::from_salted_password(m, b"", SALT, 4096).err(),
            Some(CredentialError::EmptySaltedPassword)
        );
        let c = cred(m, "p");
        assert!(c.validate(m).is_ok());
        assert!(c.validate(ScramMechanism::Sha256).is_err());
        // from_salted_password agrees with from_password.
        let salted = m.hi(b"p", SALT, 4096);
        assert_eq!(
            ScramCredential::from_salted_password(m, &salted, SALT, 4096).ok(),
            Some(c.clone())
        );
        let dbg = format!("{c:?}");
        assert!(dbg.contains("redacted") && !dbg.contains(&format!("{:?}", c.stored_key)));
        assert_eq!(ScramCredential::random_salt().len(), 32);
    }

    #[test]
    fn mechanism_names_and_ids() {
        for m in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_name(m.name()), Some(m));
            assert_eq!(ScramMechanism::from_type_id(m.type_id()), Some(m));
        }
        assert_eq!(ScramMechanism::Sha256.type_id(), 1);
        assert_eq!(ScramMechanism::Sha512.type_id(), 2);
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
        assert_eq!(ScramMechanism::from_type_id(0), None);
    }

    #[test]
    fn username_unescaping() {
        assert_eq!(unescape_username("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(unescape_username("a=2"), None);
        assert_eq!(unescape_username("a=41"), None);
        assert_eq!(unescape_username("a,b"), None);
        assert_eq!(unescape_username("").as_deref(), Some(""));
    }

    fn first_err(msg: &[u8]) -> AuthError {
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        let c = cred(ScramMechanism::Sha256, "p");
        match s.client_first(msg, |_| Some(c.clone())) {
            Ok(v) => panic!("accepted {:?}", String::from_utf8_lossy(&v)),
            Err(e) => e,
        }
    }

    #[test]
    fn client_first_rejections() {
        for bad in [
            &b""[..],
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=a,r=b",
            b"n,,r=b,n=a",
            b"n,,n=,r=b",
            b"n,,n=a",
            b"n,,n=a,r=",
            b"n,,n=a,r=b c",
            b"n,,n=a=zz,r=b",
            b"n,b=x,n=a,r=b",
            b"n,,n=a,r=b,bad",
            b"\xff\xfe,,n=a,r=b",
        ] {
            assert!(
                matches!(first_err(bad), AuthError::Malformed { .. }),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            first_err(b"p=tls-unique,,n=a,r=b"),
            AuthError::Unsupported { .. }
        ));
        assert!(matches!(
            first_err(b"n,,m=x,n=a,r=b"),
            AuthError::Unsupported { .. }
        ));
        assert!(matches!(
            first_err(b"n,,n=a,r=b,tokenauth=true"),
            AuthError::Unsupported { .. }
        ));
        assert_eq!(
            first_err(b"n,a=bob,n=alice,r=b"),
            AuthError::AuthzidMismatch
        );
        let huge = vec![b'a'; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(first_err(&huge), AuthError::Malformed { .. }));
        // Extensions Kafka's client may send are tolerated; authzid = user is fine.
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        assert!(s
            .client_first(b"n,a=alice,n=alice,r=b,foo=bar", |_| None)
            .is_ok());
    }

    /// A server that accepted client-first with the RFC-style client for
    /// user "alice"/"p"; returns (server, server-first, client nonce).
    fn started(gs2: &str) -> (ScramServer, String) {
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        let c = cred(ScramMechanism::Sha256, "p");
        let sf = s
            .client_first(format!("{gs2}n=alice,r=cnonce").as_bytes(), |_| {
                Some(c.clone())
            })
            .unwrap_or_default();
        (s, String::from_utf8(sf).unwrap_or_default())
    }

    /// A correct client-final for `started`, computed by hand.
    fn proof_for(sf: &str, cb: &str) -> String {
        let m = ScramMechanism::Sha256;
        let nonce = sf
            .split(',')
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .unwrap_or_default();
        let without = format!("c={cb},r={nonce}");
        let auth = format!("n=alice,r=cnonce,{sf},{without}");
        let salted = m.hi(b"p", SALT, 4096);
        let ck = m.hmac(&salted, b"Client Key");
        let sig = m.hmac(&m.hash(&ck), auth.as_bytes());
        let proof: Vec<u8> = ck.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without},p={}", STANDARD.encode(proof))
    }

    #[test]
    fn client_final_checks() {
        // Correct.
        let (mut s, sf) = started("n,,");
        assert!(s.client_final(proof_for(&sf, "biws").as_bytes()).is_ok());
        // y flag: c= must be base64("y,,").
        let (mut s, sf) = started("y,,");
        assert!(s.client_final(proof_for(&sf, "eSws").as_bytes()).is_ok());
        let (mut s, sf) = started("y,,");
        assert!(matches!(
            s.client_final(proof_for(&sf, "biws").as_bytes()),
            Err(AuthError::Malformed { .. })
        ));
        // Wrong channel binding.
        let (mut s, sf) = started("n,,");
        assert!(matches!(
            s.client_final(proof_for(&sf, "eSws").as_bytes()),
            Err(AuthError::Malformed { .. })
        ));
        // Tampered nonce.
        let (mut s, sf) = started("n,,");
        let msg = proof_for(&sf, "biws").replacen("r=cnonce", "r=cnoncX", 1);
        assert!(matches!(
            s.client_final(msg.as_bytes()),
            Err(AuthError::Malformed { .. })
        ));
        // Flipped proof bit.
        let (mut s, sf) = started("n,,");
        let good = proof_for(&sf, "biws");
        let (head, p) = good.rsplit_once(",p=").unwrap_or_default();
        let mut raw = STANDARD.decode(p).unwrap_or_default();
        raw[0] ^= 1;
        let msg = format!("{head},p={}", STANDARD.encode(raw));
        assert!(matches!(
            s.client_final(msg.as_bytes()),
            Err(AuthError::InvalidCredentials { .. })
        ));
        // Garbage finals.
        for bad in [
            &b""[..],
            b"p=",
            b"c=biws,p=AAAA",
            b"c=biws,r=x",
            b"c=biws,r=x,p=!!!",
            b"\xff",
        ] {
            let (mut s, _) = started("n,,");
            assert!(s.client_final(bad).is_err());
            assert!(!s.is_authenticated());
        }
        // Out of order.
        let mut s = ScramServer::new(ScramMechanism::Sha512);
        assert!(matches!(
            s.client_final(b"c=biws"),
            Err(AuthError::IllegalState(_))
        ));
        let (mut s, sf) = started("n,,");
        assert!(matches!(
            s.client_first(b"n,,n=a,r=b", |_| None),
            Err(AuthError::IllegalState(_))
        ));
        // A failed exchange is over.
        assert!(matches!(
            s.client_final(proof_for(&sf, "biws").as_bytes()),
            Err(AuthError::IllegalState(_))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let c = cred(ScramMechanism::Sha256, "p");
        for _ in 0..2000 {
            let len = rng.gen_range(0..64);
            let mut msg: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.5) {
                let mut v = b"n,,n=alice,r=".to_vec();
                v.append(&mut msg);
                msg = v;
            }
            let mut s = ScramServer::new(ScramMechanism::Sha256);
            if s.client_first(&msg, |_| Some(c.clone())).is_ok() {
                let _ = s.client_final(&msg);
            }
        }
    }
}
