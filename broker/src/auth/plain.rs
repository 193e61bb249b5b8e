//! SASL/PLAIN (RFC 4616) on the server: parsing the single client message
//! `[authzid] NUL authcid NUL passwd` and checking the password against the
//! users configured in `[auth]`. This module owns the user table; it keeps
//! only a SHA-512 digest of each password so that comparisons take the same
//! time whatever the password's length or the guess, and so that `Debug`
//! has nothing to leak. An unknown user is compared against a dummy digest
//! and fails exactly like a wrong password.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha512};

use super::{ct_eq, AuthError};

const MECH: &str = "PLAIN";
/// Largest PLAIN message accepted.
pub const MAX_MESSAGE_BYTES: usize = 8192;

/// Users allowed to sign in with PLAIN.
#[derive(Clone, Default)]
pub struct PlainUsers {
    digests: HashMap<String, Vec<u8>>,
}

impl fmt::Debug for PlainUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.digests.keys().collect();
        names.sort();
        f.debug_struct("PlainUsers").field("users", &names).finish()
    }
}

fn digest(password: &[u8]) -> Vec<u8> {
    Sha512::digest(password).to_vec()
}

impl PlainUsers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a user; empty names or passwords, names with NUL, and
    /// duplicates are refused.
    pub fn insert(&mut self, user: &str, password: &str) -> Result<(), String> {
        if user.is_empty() || user.contains('\0') {
            return Err(format!("invalid PLAIN user name {user:?}"));
        }
        if password.is_empty() || password.contains('\0') {
            return Err(format!("PLAIN user {user:?}: empty or invalid password"));
        }
        if self.digests.contains_key(user) {
            return Err(format!("PLAIN user {user:?} is listed twice"));
        }
        self.digests
            .insert(user.to_owned(), digest(password.as_bytes()));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `user`/`password` is a configured pair.
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        let given = digest(password);
        match self.digests.get(user) {
            Some(d) => ct_eq(&given, d),
            None => {
                // Same work as for a known user, then fail.
                let _ = ct_eq(&given, &[0u8; 64]);
                false
            }
        }
    }

    /// Handles the PLAIN client message; returns the authenticated user.
    pub fn authenticate(&self, msg: &[u8]) -> Result<String, AuthError> {
        let bad = |r: &str| AuthError::malformed(MECH, r.to_owned());
        if msg.len() > MAX_MESSAGE_BYTES {
            return Err(bad("message too long"));
        }
        let mut parts = msg.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected [authzid] NUL username NUL password"));
        };
        let user = std::str::from_utf8(user).map_err(|_| bad("username is not UTF-8"))?;
        let authzid = std::str::from_utf8(authzid).map_err(|_| bad("authzid is not UTF-8"))?;
        if user.is_empty() {
            return Err(bad("username not specified"));
        }
        if password.is_empty() {
            return Err(bad("password not specified"));
        }
        if !authzid.is_empty() && authzid != user {
            return Err(AuthError::AuthzidMismatch);
        }
        if self.check(user, password) {
            Ok(user.to_owned())
        } else {
            Err(AuthError::InvalidCredentials { mechanism: MECH })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> PlainUsers {
        let mut u = PlainUsers::new();
        assert!(u.insert("alice", "alice-secret").is_ok());
        assert!(u.insert("bob", "b").is_ok());
        u
    }

    #[test]
    fn accepts_and_rejects() {
        let u = users();
        assert_eq!(u.authenticate(b"\0alice\0alice-secret"), Ok("alice".into()));
        assert_eq!(
            u.authenticate(b"alice\0alice\0alice-secret"),
            Ok("alice".into())
        );
        let invalid = Err(AuthError::InvalidCredentials { mechanism: "PLAIN" });
        assert_eq!(u.authenticate(b"\0alice\0wrong"), invalid);
        assert_eq!(u.authenticate(b"\0alice\0alice-secretx"), invalid);
        assert_eq!(u.authenticate(b"\0carol\0alice-secret"), invalid);
        assert_eq!(
            u.authenticate(b"bob\0alice\0alice-secret"),
            Err(AuthError::AuthzidMismatch)
        );
        for bad in [
            &b""[..],
            b"\0",
            b"\0\0",
            b"\0alice\0",
            b"\0\0pw",
            b"a\0b\0c\0d",
            b"\0\xff\0pw",
            b"alice",
        ] {
            assert!(
                matches!(u.authenticate(bad), Err(AuthError::Malformed { .. })),
                "{bad:?}"
            );
        }
        assert!(u.authenticate(&vec![0u8; MAX_MESSAGE_BYTES + 1]).is_err());
    }

    #[test]
    fn insert_validation_and_debug() {
        let mut u = users();
        assert!(u.insert("alice", "x").is_err());
        assert!(u.insert("", "x").is_err());
        assert!(u.insert("c", "").is_err());
        assert_eq!(u.len(), 2);
        let d = format!("{u:?}");
        assert!(d.contains("alice") && !d.contains("alice-secret"), "{d}");
    }
}
