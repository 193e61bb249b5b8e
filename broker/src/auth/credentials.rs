//! The broker's SCRAM credential store: user -> mechanism ->
//! [`ScramCredential`], which AlterUserScramCredentials changes,
//! DescribeUserScramCredentials lists and the SCRAM server looks up. This
//! module owns the in-memory map and its file, `<log.dirs>/__scram_credentials.json`:
//!
//! ```json
//! {"version": 1,
//!  "users": {"alice": {"SCRAM-SHA-256": {"salt": "<base64>", "stored_key": "<base64>",
//!                                         "server_key": "<base64>", "iterations": 8192}}}}
//! ```
//!
//! Saving writes a temporary file next to the target, fsyncs it, renames it
//! over the target and fsyncs the directory, so a crash leaves either the
//! old or the new file, never a torn one. The file is created mode 0600: it
//! holds password-equivalent material. A missing file is an empty store; a
//! file that does not parse or holds an invalid credential is an error naming
//! the path, never silently an empty store (that would lock every user out
//! and, worse, let the next save erase them).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::scram::{ScramCredential, ScramMechanism};

/// The file name the broker keeps under its first log directory.
pub const FILE_NAME: &str = "__scram_credentials.json";
/// The file format version written and accepted.
const FORMAT_VERSION: u32 = 1;

/// Loading or saving the credential file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialStoreError {
    #[error("SCRAM credential file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SCRAM credential file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// An upsert with an invalid user name or credential.
    #[error("invalid SCRAM credential for user {user:?}: {reason}")]
    Invalid { user: String, reason: String },
}

/// All SCRAM credentials the broker knows.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ScramStore {
    users: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
}

impl fmt::Debug for ScramStore {
    // Lists who has which mechanism; credentials print redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.users.iter()).finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    users: BTreeMap<String, BTreeMap<String, FileCredential>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCredential {
    salt: String,
    stored_key: String,
    server_key: String,
    iterations: u32,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ScramStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store's path under a log directory.
    pub fn path_in(log_dir: &Path) -> PathBuf {
        log_dir.join(FILE_NAME)
    }

    /// Reads the store from `path`; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<Self, CredentialStoreError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::new()),
            Err(source) => {
                return Err(CredentialStoreError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::from_json(&text).map_err(|reason| CredentialStoreError::Corrupt {
            path: path.to_owned(),
            reason,
        })
    }

    fn from_json(text: &[u8]) -> Result<Self, String> {
        let file: FileFormat = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if file.version != FORMAT_VERSION {
            return Err(format!(
                "unsupported format version {} (expected {FORMAT_VERSION})",
                file.version
            ));
        }
        let mut store = Self::new();
        for (user, mechs) in file.users {
            if user.is_empty() {
                return Err("empty user name".into());
            }
            for (name, fc) in mechs {
                let mech = ScramMechanism::from_name(&name)
                    .ok_or_else(|| format!("user {user:?}: unknown mechanism {name:?}"))?;
                let field = |what: &str, v: &str| {
                    STANDARD
                        .decode(v)
                        .map_err(|_| format!("user {user:?} {name}: {what} is not base64"))
                };
                let cred = ScramCredential {
                    salt: field("salt", &fc.salt)?,
                    stored_key: field("stored_key", &fc.stored_key)?,
                    server_key: field("server_key", &fc.server_key)?,
                    iterations: fc.iterations,
                };
                cred.validate(mech)
                    .map_err(|e| format!("user {user:?} {name}: {e}"))?;
                store
                    .users
                    .entry(user.clone())
                    .or_default()
                    .insert(mech, cred);
            }
        }
        Ok(store)
    }

    fn to_json(&self) -> Vec<u8> {
        let users = self
            .users
            .iter()
            .map(|(u, mechs)| {
                let m = mechs
                    .iter()
                    .map(|(mech, c)| {
                        (
                            mech.name().to_owned(),
                            FileCredential {
                                salt: STANDARD.encode(&c.salt),
                                stored_key: STANDARD.encode(&c.stored_key),
                                server_key: STANDARD.encode(&c.server_key),
                                iterations: c.iterations,
                            },
                        )
                    })
                    .collect();
                (u.clone(), m)
            })
            .collect();
        let file = FileFormat {
            version: FORMAT_VERSION,
            users,
        };
        // Serializing strings and integers into a Vec cannot fail.
        serde_json::to_vec_pretty(&file).unwrap_or_default()
    }

    /// Writes the store to `path` atomically (temp file, fsync, rename,
    /// fsync of the directory).
    pub fn save(&self, path: &Path) -> Result<(), CredentialStoreError> {
        let io = |source| CredentialStoreError::Io {
            path: path.to_owned(),
            source,
        };
        let file_name = path.file_name().ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "path has no file name",
            ))
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        // A unique temporary name, so concurrent saves never share one.
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            file_name.to_string_lossy(),
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(&self.to_json())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, path)?;
            // The rename is durable only once the directory entry is.
            std::fs::File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// Adds or replaces `user`'s credential for `mech` (validated first).
    pub fn upsert(
        &mut self,
        user: &str,
        mech: ScramMechanism,
        cred: ScramCredential,
    ) -> Result<(), CredentialStoreError> {
        let invalid = |reason: String| CredentialStoreError::Invalid {
            user: user.to_owned(),
            reason,
        };
        if user.is_empty() {
            return Err(invalid("the user name is empty".into()));
        }
        cred.validate(mech).map_err(|e| invalid(e.to_string()))?;
        self.users
            .entry(user.to_owned())
            .or_default()
            .insert(mech, cred);
        Ok(())
    }

    /// Removes `user`'s credential for `mech`; false if there was none.
    pub fn delete(&mut self, user: &str, mech: ScramMechanism) -> bool {
        let Some(mechs) = self.users.get_mut(user) else {
            return false;
        };
        let removed = mechs.remove(&mech).is_some();
        if mechs.is_empty() {
            self.users.remove(user);
        }
        removed
    }

    /// `user`'s credential for `mech`.
    pub fn get(&self, user: &str, mech: ScramMechanism) -> Option<&ScramCredential> {
        self.users.get(user)?.get(&mech)
    }

    /// Every user (sorted) with their mechanisms and iteration counts, as
    /// DescribeUserScramCredentials reports them.
    pub fn list(&self) -> Vec<(String, Vec<(ScramMechanism, u32)>)> {
        self.users
            .iter()
            .map(|(u, m)| {
                (
                    u.clone(),
                    m.iter().map(|(k, c)| (*k, c.iterations)).collect(),
                )
            })
            .collect()
    }

    /// Whether no user has any credential.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(mech: ScramMechanism, pw: &str, iterations: u32) -> ScramCredential {
        match ScramCredential::from_password(mech, pw, b"salty", iterations) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn dir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn upsert_get_delete_list() {
        let mut s = ScramStore::new();
        let a256 = cred(ScramMechanism::Sha256, "a", 4096);
        assert!(s
            .upsert("alice", ScramMechanism::Sha256, a256.clone())
            .is_ok());
        assert!(s
            .upsert(
                "alice",
                ScramMechanism::Sha512,
                cred(ScramMechanism::Sha512, "a", 8192)
            )
            .is_ok());
        assert!(s
            .upsert(
                "bob",
                ScramMechanism::Sha512,
                cred(ScramMechanism::Sha512, "b", 4096)
            )
            .is_ok());
        assert_eq!(s.get("alice", ScramMechanism::Sha256), Some(&a256));
        assert_eq!(s.get("carol", ScramMechanism::Sha256), None);
        assert_eq!(
            s.list(),
            vec![
                (
                    "alice".to_string(),
                    vec![
                        (ScramMechanism::Sha256, 4096),
                        (ScramMechanism::Sha512, 8192)
                    ]
                ),
                ("bob".to_string(), vec![(ScramMechanism::Sha512, 4096)]),
            ]
        );
        assert!(s.delete("bob", ScramMechanism::Sha512));
        assert!(!s.delete("bob", ScramMechanism::Sha512));
        assert!(s.delete("alice", ScramMechanism::Sha256));
        assert_eq!(
            s.list(),
            vec![("alice".to_string(), vec![(ScramMechanism::Sha512, 8192)])]
        );
        // Invalid: empty user, key length of the other mechanism.
        assert!(s.upsert("", ScramMechanism::Sha256, a256.clone()).is_err());
        assert!(s.upsert("x", ScramMechanism::Sha512, a256).is_err());
        let dbg = format!("{s:?}");
        assert!(dbg.contains("alice") && dbg.contains("redacted"));
    }

    #[test]
    fn save_load_roundtrip_and_permissions() {
        let d = dir();
        let path = ScramStore::path_in(d.path());
        assert_eq!(
            ScramStore::load(&path).ok(),
            Some(ScramStore::new()),
            "missing = empty"
        );
        let mut s = ScramStore::new();
        let _ = s.upsert(
            "al,ice=",
            ScramMechanism::Sha256,
            cred(ScramMechanism::Sha256, "x", 4096),
        );
        let _ = s.upsert(
            "bob",
            ScramMechanism::Sha512,
            cred(ScramMechanism::Sha512, "y", 16384),
        );
        assert!(s.save(&path).is_ok());
        assert_eq!(ScramStore::load(&path).ok(), Some(s.clone()));
        // Overwrite.
        s.delete("bob", ScramMechanism::Sha512);
        assert!(s.save(&path).is_ok());
        assert_eq!(ScramStore::load(&path).ok(), Some(s));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(names.len(), 1, "{names:?}");
        // Saving into a missing directory reports the path.
        let bad = d.path().join("nope").join(FILE_NAME);
        let err = ScramStore::new()
            .save(&bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_path() {
        let d = dir();
        let path = d.path().join(FILE_NAME);
        let good = {
            let mut s = ScramStore::new();
            let _ = s.upsert(
                "a",
                ScramMechanism::Sha256,
                cred(ScramMechanism::Sha256, "x", 4096),
            );
            String::from_utf8(s.to_json()).unwrap_or_default()
        };
        let salt = STANDARD.encode(b"salty");
        let cases = vec![
            String::new(),
            "not json".to_string(),
            "{}".to_string(),
            r#"{"version":2,"users":{}}"#.to_string(),
            r#"{"version":1,"users":{},"extra":1}"#.to_string(),
            good.replace("SCRAM-SHA-256", "SCRAM-MD5"),
            good.replace(&salt, "!!!"),
            good.replace("4096", "10"),
            good.replace("\"a\"", "\"\""),
            // A 256 key under the 512 name has the wrong length.
            good.replace("SCRAM-SHA-256", "SCRAM-SHA-512"),
        ];
        for bad in cases {
            let _ = std::fs::write(&path, &bad);
            match ScramStore::load(&path) {
                Err(e @ CredentialStoreError::Corrupt { .. }) => {
                    assert!(e.to_string().contains(&path.display().to_string()))
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let _ = std::fs::write(&path, &good);
        assert!(ScramStore::load(&path).is_ok());
        // A directory in the file's place is an I/O error, not an empty store.
        let dpath = d.path().join("dir");
        let _ = std::fs::create_dir(&dpath);
        assert!(matches!(
            ScramStore::load(&dpath),
            Err(CredentialStoreError::Io { .. })
        ));
    }
}
