//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks
//! them, the parts both ends share: [`ScramMechanism`] (names, Kafka's type
//! ids and the cryptography: PBKDF2 "Hi", HMAC, H) and [`ScramClient`], the
//! client's state machine. Kafka's `ScramSaslClient` order: client-first
//! `n,,n=<user>,r=<nonce>`, the server-first `r=,s=,i=` (an iteration count
//! below Kafka's minimum of 4096 is refused, as is a nonce that does not
//! extend ours or a mandatory `m=` extension), client-final with the proof,
//! and verification of the server's signature. The Rust client's
//! connections and the broker's replica fetchers and controller transport
//! all drive this one machine; the broker's verifying side lives in its
//! `auth::scram`.
//!
//! Names: `=` and `,` in the username are escaped to `=3D` / `=2C` (RFC 5802
//! section 5.1). Like Kafka (which does not apply SASLprep), the password is
//! used as its UTF-8 bytes unchanged, so credentials created by
//! `kafka-configs` with non-ASCII passwords keep working.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::SaslClientError as SaslError;

/// Kafka's minimum iteration count (`ScramMechanism.minIterations`).
pub const MIN_ITERATIONS: u32 = 4096;
/// Largest iteration count a client computes (guards a runtime thread
/// against a hostile server; Kafka itself refuses to store more than 16384).
pub const MAX_CLIENT_ITERATIONS: u32 = 100_000;

/// The hash a SCRAM mechanism is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms, in Kafka's type-id order.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism for a SASL name (exact, as Kafka matches them).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// Kafka's mechanism type id (AlterUserScramCredentials /
    /// DescribeUserScramCredentials): 1 = SHA-256, 2 = SHA-512.
    pub fn type_id(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The mechanism for a Kafka type id (0 is Kafka's UNKNOWN).
    pub fn from_type_id(id: i8) -> Option<Self> {
        match id {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// Output size of the hash, in bytes.
    pub fn hash_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    /// HMAC(key, data). HMAC accepts keys of any length, so this cannot fail.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(data);
                    mac.finalize().into_bytes().to_vec()
                }
                // Unreachable for HMAC; an empty result can never match a
                // stored key, so failing closed is safe.
                Err(_) => Vec::new(),
            }
        }
        match self {
            ScramMechanism::Sha256 => run::<Hmac<Sha256>>(key, data),
            ScramMechanism::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i): PBKDF2 with this HMAC, one output block.
    pub fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut first = Vec::with_capacity(salt.len() + 4);
        first.extend_from_slice(salt);
        first.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &first);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u);
            for (o, x) in out.iter_mut().zip(&u) {
                *o ^= x;
            }
        }
        out
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Escapes a username as a SCRAM `saslname` (`=` -> `=3D`, `,` -> `=2C`).
pub fn escape_username(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

/// States of a SCRAM exchange, each holding what the next step needs.
enum State {
    /// Nothing sent yet.
    Initial {
        client_first_bare: String,
        nonce: String,
    },
    /// client-first sent, waiting for server-first.
    AwaitServerFirst {
        client_first_bare: String,
        nonce: String,
    },
    /// client-final sent, waiting for the server's signature.
    AwaitServerFinal { server_signature: Vec<u8> },
    /// Done (successfully or not): any further step is illegal.
    Done,
}

/// One SCRAM authentication.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    state: State,
}

impl ScramClient {
    /// A session with a fresh random client nonce.
    pub fn new(
        mechanism: ScramMechanism,
        username: &str,
        password: &str,
    ) -> Result<Self, SaslError> {
        let mut raw = [0u8; 24];
        getrandom::getrandom(&mut raw).map_err(|e| {
            SaslError::InvalidConfig(format!("no randomness for the SCRAM nonce: {e}"))
        })?;
        Self::with_nonce(mechanism, username, password, &STANDARD_NO_PAD.encode(raw))
    }

    /// A session with a given client nonce (printable ASCII without `,`), for tests.
    pub fn with_nonce(
        mechanism: ScramMechanism,
        username: &str,
        password: &str,
        nonce: &str,
    ) -> Result<Self, SaslError> {
        if username.is_empty() {
            return Err(SaslError::InvalidConfig(format!(
                "{} username is empty",
                mechanism.name()
            )));
        }
        if username.contains('\0') {
            return Err(SaslError::InvalidConfig(format!(
                "{} username contains NUL",
                mechanism.name()
            )));
        }
        if nonce.is_empty()
            || !nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(SaslError::InvalidConfig(
                "SCRAM nonce must be printable ASCII without ','".into(),
            ));
        }
        let client_first_bare = format!("n={},r={nonce}", escape_username(username));
        Ok(ScramClient {
            mechanism,
            password: password.to_owned(),
            state: State::Initial {
                client_first_bare,
                nonce: nonce.to_owned(),
            },
        })
    }

    fn client_final(
        &self,
        client_first_bare: &str,
        nonce: &str,
        server_first: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), SaslError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| SaslError::MalformedServerMessage("server-first is not UTF-8".into()))?;
        let sf = ServerFirst::parse(server_first)?;
        if !sf.nonce.starts_with(nonce) {
            return Err(SaslError::AuthenticationFailed(
                "server nonce does not start with the client nonce".into(),
            ));
        }
        if sf.iterations < MIN_ITERATIONS {
            return Err(SaslError::AuthenticationFailed(format!(
                "server asked for {} iterations, fewer than the minimum {MIN_ITERATIONS}",
                sf.iterations
            )));
        }
        if sf.iterations > MAX_CLIENT_ITERATIONS {
            return Err(SaslError::AuthenticationFailed(format!(
                "server asked for {} iterations, more than the maximum {MAX_CLIENT_ITERATIONS}",
                sf.iterations
            )));
        }
        let m = self.mechanism;
        let salted = m.hi(self.password.as_bytes(), &sf.salt, sf.iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        // c=biws is base64("n,,"): no channel binding, no authzid.
        let without_proof = format!("c=biws,r={}", sf.nonce);
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = m.hmac(&salted, b"Server Key");
        let server_signature = m.hmac(&server_key, auth_message.as_bytes());
        let msg = format!("{without_proof},p={}", STANDARD.encode(proof));
        Ok((msg.into_bytes(), server_signature))
    }
}

/// The parsed server-first message.
struct ServerFirst<'a> {
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: u32,
}

impl<'a> ServerFirst<'a> {
    fn parse(msg: &'a str) -> Result<Self, SaslError> {
        let bad = |what: &str| SaslError::MalformedServerMessage(format!("server-first: {what}"));
        let mut parts = msg.split(',');
        let nonce = match parts.next() {
            Some(p) if p.starts_with("m=") => {
                return Err(SaslError::AuthenticationFailed(
                    "server requires an unsupported mandatory extension".into(),
                ));
            }
            Some(p) => p.strip_prefix("r=").ok_or_else(|| bad("expected r="))?,
            None => return Err(bad("empty")),
        };
        if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(bad("invalid nonce"));
        }
        let salt = parts
            .next()
            .and_then(|p| p.strip_prefix("s="))
            .ok_or_else(|| bad("expected s="))?;
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| bad("salt is not base64"))?;
        if salt.is_empty() {
            return Err(bad("empty salt"));
        }
        let iterations = parts
            .next()
            .and_then(|p| p.strip_prefix("i="))
            .ok_or_else(|| bad("expected i="))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| bad("iteration count is not a number"))?;
        // Further attributes are extensions we may ignore (RFC 5802 section 5).
        Ok(ServerFirst {
            nonce,
            salt,
            iterations,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ScramClient {
    /// The next client message given the server's last one (`None` at the
    /// start); `Ok(None)` once the server's signature checked out.
    pub fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        match (std::mem::replace(&mut self.state, State::Done), server) {
            (
                State::Initial {
                    client_first_bare,
                    nonce,
                },
                None,
            ) => {
                let msg = format!("n,,{client_first_bare}").into_bytes();
                self.state = State::AwaitServerFirst {
                    client_first_bare,
                    nonce,
                };
                Ok(Some(msg))
            }
            (
                State::AwaitServerFirst {
                    client_first_bare,
                    nonce,
                },
                Some(server_first),
            ) => {
                let (msg, server_signature) =
                    self.client_final(&client_first_bare, &nonce, server_first)?;
                self.state = State::AwaitServerFinal { server_signature };
                Ok(Some(msg))
            }
            (State::AwaitServerFinal { server_signature }, Some(server_final)) => {
                let text = std::str::from_utf8(server_final).map_err(|_| {
                    SaslError::MalformedServerMessage("server-final is not UTF-8".into())
                })?;
                let first = text.split(',').next().unwrap_or_default();
                if let Some(err) = first.strip_prefix("e=") {
                    return Err(SaslError::AuthenticationFailed(format!(
                        "server error: {err}"
                    )));
                }
                let v = first.strip_prefix("v=").ok_or_else(|| {
                    SaslError::MalformedServerMessage("server-final: expected v= or e=".into())
                })?;
                let sig = STANDARD.decode(v).map_err(|_| {
                    SaslError::MalformedServerMessage("server signature is not base64".into())
                })?;
                if !constant_time_eq(&sig, &server_signature) {
                    return Err(SaslError::AuthenticationFailed(
                        "invalid server signature".into(),
                    ));
                }
                Ok(None)
            }
            (_, _) => Err(SaslError::IllegalState(format!(
                "{} stepped out of order",
                self.mechanism.name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<T>(r: Result<T, SaslError>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn rfc7677_sha256_vector() {
        let mut s = ok(ScramClient::with_nonce(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        ));
        assert_eq!(
            ok(s.step(None)),
            Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO".to_vec())
        );
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = ok(s.step(Some(server_first)));
        assert_eq!(
            client_final.as_deref(),
            Some(&b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="[..])
        );
        assert_eq!(
            ok(s.step(Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))),
            None
        );
        assert!(matches!(s.step(Some(b"")), Err(SaslError::IllegalState(_))));
    }

    #[test]
    fn rfc7677_wrong_server_signature_fails() {
        let mut s = ok(ScramClient::with_nonce(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        ));
        ok(s.step(None));
        ok(s.step(Some(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")));
        let err = s
            .step(Some(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))
            .err();
        assert!(matches!(err, Some(SaslError::AuthenticationFailed(_))));
    }

    /// A minimal SCRAM server: checks the client's proof the way a broker
    /// does (from StoredKey) and returns server-final.
    fn server_final(
        m: ScramMechanism,
        password: &str,
        salt: &[u8],
        iters: u32,
        auth_message: &str,
        client_final: &str,
    ) -> String {
        let salted = m.hi(password.as_bytes(), salt, iters);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let proof_b64 = client_final
            .rsplit_once(",p=")
            .map(|(_, p)| p)
            .unwrap_or_default();
        let proof = ok(STANDARD
            .decode(proof_b64)
            .map_err(|e| SaslError::MalformedServerMessage(e.to_string())));
        let client_sig = m.hmac(&stored_key, auth_message.as_bytes());
        let recovered: Vec<u8> = proof.iter().zip(&client_sig).map(|(a, b)| a ^ b).collect();
        if m.hash(&recovered) != stored_key {
            return "e=invalid-proof".into();
        }
        let server_key = m.hmac(&salted, b"Server Key");
        format!(
            "v={}",
            STANDARD.encode(m.hmac(&server_key, auth_message.as_bytes()))
        )
    }

    fn round_trip(
        m: ScramMechanism,
        user: &str,
        client_pw: &str,
        server_pw: &str,
    ) -> Result<Option<Vec<u8>>, SaslError> {
        let mut s = ScramClient::new(m, user, client_pw)?;
        let first = String::from_utf8(s.step(None)?.unwrap_or_default()).unwrap_or_default();
        let bare = first.strip_prefix("n,,").unwrap_or_default().to_string();
        let cnonce = bare
            .rsplit_once(",r=")
            .map(|(_, n)| n.to_string())
            .unwrap_or_default();
        let salt = b"0123456789abcdef";
        let server_first = format!("r={cnonce}SERVERNONCE,s={},i=4096", STANDARD.encode(salt));
        let cf = String::from_utf8(s.step(Some(server_first.as_bytes()))?.unwrap_or_default())
            .unwrap_or_default();
        let without_proof = cf.rsplit_once(",p=").map(|(w, _)| w).unwrap_or_default();
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let sf = server_final(m, server_pw, salt, 4096, &auth_message, &cf);
        s.step(Some(sf.as_bytes()))
    }

    #[test]
    fn sha512_round_trip_against_own_server() {
        assert!(matches!(
            round_trip(
                ScramMechanism::Sha512,
                "alice",
                "wonder land",
                "wonder land"
            ),
            Ok(None)
        ));
        let err = round_trip(ScramMechanism::Sha512, "alice", "wrong", "right").err();
        assert!(
            matches!(err, Some(SaslError::AuthenticationFailed(ref m)) if m.contains("invalid-proof"))
        );
        assert!(matches!(
            round_trip(ScramMechanism::Sha256, "bob", "pw", "pw"),
            Ok(None)
        ));
    }

    #[test]
    fn username_escaping() {
        assert_eq!(escape_username("a=b,c"), "a=3Db=2Cc");
        let mut s = ok(ScramClient::with_nonce(
            ScramMechanism::Sha256,
            "a=b,c",
            "p",
            "xyz",
        ));
        assert_eq!(ok(s.step(None)), Some(b"n,,n=a=3Db=2Cc,r=xyz".to_vec()));
    }

    #[test]
    fn server_first_checks() {
        let start = |msg: &[u8]| {
            let mut s = ok(ScramClient::with_nonce(
                ScramMechanism::Sha256,
                "user",
                "pencil",
                "abc",
            ));
            ok(s.step(None));
            s.step(Some(msg)).err()
        };
        let salt = "W22ZaJ0SNY7soEsUEjb6gQ==";
        assert!(matches!(
            start(format!("r=abcdef,s={salt},i=4095").as_bytes()),
            Some(SaslError::AuthenticationFailed(_))
        ));
        assert!(matches!(
            start(format!("r=abcdef,s={salt},i=100001").as_bytes()),
            Some(SaslError::AuthenticationFailed(_))
        ));
        assert!(matches!(
            start(format!("r=zzzdef,s={salt},i=4096").as_bytes()),
            Some(SaslError::AuthenticationFailed(_))
        ));
        assert!(matches!(
            start(format!("m=x,r=abcdef,s={salt},i=4096").as_bytes()),
            Some(SaslError::AuthenticationFailed(_))
        ));
        assert!(matches!(
            start(b"r=abcdef,s=!!,i=4096"),
            Some(SaslError::MalformedServerMessage(_))
        ));
        assert!(matches!(
            start(format!("r=abcdef,s={salt},i=x").as_bytes()),
            Some(SaslError::MalformedServerMessage(_))
        ));
        assert!(matches!(
            start(b"r=abcdef"),
            Some(SaslError::MalformedServerMessage(_))
        ));
        assert!(matches!(
            start(b"\xff"),
            Some(SaslError::MalformedServerMessage(_))
        ));
        assert!(start(format!("r=abcdef,s={salt},i=4096,x=ext").as_bytes()).is_none());
    }

    #[test]
    fn server_error_is_reported() {
        let mut s = ok(ScramClient::with_nonce(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        ));
        ok(s.step(None));
        ok(s.step(Some(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")));
        let err = s.step(Some(b"e=unknown-user")).err();
        assert!(
            matches!(err, Some(SaslError::AuthenticationFailed(ref m)) if m.contains("unknown-user"))
        );
    }
}
