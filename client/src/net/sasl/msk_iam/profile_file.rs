//! The shared AWS configuration files, `~/.aws/credentials` and
//! `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`):
//! reading them off the runtime's threads, their INI dialect, the config
//! file's `[profile x]` naming, and a profile's static keys. Profiles that
//! need another credential provider (assume-role, web identity, SSO,
//! `credential_process`) are reported as not supported yet.

use std::collections::HashMap;
use std::path::PathBuf;

use super::credentials::{cred_err, AwsCredentials, Env};
use super::SaslError;

pub(super) type Section = HashMap<String, String>;

/// The parsed `~/.aws/credentials` and `~/.aws/config` files.
#[derive(Debug, Default)]
pub(super) struct SharedFiles {
    credentials: HashMap<String, Section>,
    config: HashMap<String, Section>,
}

impl SharedFiles {
    pub(super) async fn load(env: &Env) -> Result<Self, SaslError> {
        let read = |p: Option<PathBuf>| async move {
            let Some(p) = p else { return Ok(String::new()) };
            match read_file(p.clone()).await {
                Ok(s) => Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(cred_err(format!("reading {}: {e}", p.display()))),
            }
        };
        let credentials =
            parse_ini(&read(env.aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials")).await?);
        let mut config = HashMap::new();
        for (name, section) in parse_ini(&read(env.aws_file("AWS_CONFIG_FILE", "config")).await?) {
            // The config file names profiles `[profile x]`, except `[default]`.
            let profile = match name.strip_prefix("profile ") {
                Some(p) => p.trim().to_owned(),
                None if name == "default" => name,
                None => continue,
            };
            config
                .entry(profile)
                .or_insert_with(Section::new)
                .extend(section);
        }
        Ok(SharedFiles {
            credentials,
            config,
        })
    }

    /// A profile's properties; the credentials file wins over the config file.
    pub(super) fn profile(&self, name: &str) -> Option<Section> {
        let a = self.config.get(name);
        let b = self.credentials.get(name);
        if a.is_none() && b.is_none() {
            return None;
        }
        let mut merged = a.cloned().unwrap_or_default();
        merged.extend(b.cloned().unwrap_or_default());
        Some(merged)
    }

    pub(super) fn credentials(&self, name: &str) -> Result<Option<AwsCredentials>, SaslError> {
        let Some(p) = self.profile(name) else {
            return Ok(None);
        };
        for (key, what) in [
            ("role_arn", "assume-role profiles"),
            ("web_identity_token_file", "web identity profiles"),
            ("credential_process", "credential_process"),
            ("sso_session", "SSO profiles"),
            ("sso_start_url", "SSO profiles"),
        ] {
            if p.contains_key(key) {
                return Err(cred_err(format!(
                    "profile {name:?}: {what} are not supported yet"
                )));
            }
        }
        match (p.get("aws_access_key_id"), p.get("aws_secret_access_key")) {
            (Some(ak), Some(sk)) => Ok(Some(AwsCredentials::new(
                ak,
                sk,
                p.get("aws_session_token").cloned(),
            ))),
            _ => Err(cred_err(format!(
                "profile {name:?} has no aws_access_key_id/aws_secret_access_key"
            ))),
        }
    }
}

/// Reads a small file off the runtime's threads (what `tokio::fs` does,
/// without needing its feature).
pub(super) async fn read_file(path: PathBuf) -> std::io::Result<String> {
    tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
        .await
        .map_err(|e| std::io::Error::other(format!("file read task failed: {e}")))?
}

/// Parses the AWS INI dialect: `[section]`, `key = value`, `#`/`;` comments;
/// indented lines (nested sub-properties) are skipped.
fn parse_ini(text: &str) -> HashMap<String, Section> {
    let mut out: HashMap<String, Section> = HashMap::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            current = rest.split_once(']').map(|(name, _)| name.trim().to_owned());
            if let Some(name) = &current {
                out.entry(name.clone()).or_default();
            }
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            continue;
        }
        if let (Some(section), Some((k, v))) = (&current, line.split_once('=')) {
            let v = v.trim();
            // Strip an inline comment preceded by whitespace.
            let v = v
                .split_once(" #")
                .or_else(|| v.split_once(" ;"))
                .map_or(v, |(v, _)| v)
                .trim();
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_dialect() {
        let ini = parse_ini(
            "# c\n[a]\nk = v ; note\nK2=x#y\n  nested = skipped\n[ b ]\n; c\nz = 1 # note\nno-equals\n",
        );
        let a = ini.get("a").cloned().unwrap_or_default();
        assert_eq!(a.get("k").map(String::as_str), Some("v"));
        assert_eq!(a.get("k2").map(String::as_str), Some("x#y"));
        assert_eq!(a.len(), 2);
        let b = ini.get("b").cloned().unwrap_or_default();
        assert_eq!(b.get("z").map(String::as_str), Some("1"));
        assert_eq!(b.len(), 1);
    }
}
