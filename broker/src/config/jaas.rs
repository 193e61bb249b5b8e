//! The credentials this broker logs in with when *it* is the client: to
//! another broker's inter-broker listener (replica fetchers) or to the
//! controllers. Kafka configures them with a JAAS line, and so do we:
//! `listener.name.<listener>.<mechanism>.sasl.jaas.config` (listener and
//! mechanism in lower case), falling back to `sasl.jaas.config`, e.g.
//!
//! ```text
//! org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="s3cret";
//! ```
//!
//! This module owns the JAAS grammar Kafka accepts in those properties (one
//! login module: class, control flag, `name=value` options with bare or
//! double-quoted values, a closing `;`) and [`broker_login`], which picks
//! the property for a listener and mechanism and checks that its login
//! module fits the mechanism. Passwords never reach `Debug` output.

use std::collections::BTreeMap;
use std::fmt;

use sluice_protocol::sasl::{PasswordMechanism, SaslClient, SaslClientError};

/// Kafka's login module for PLAIN.
pub const PLAIN_LOGIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";
/// Kafka's login module for SCRAM-SHA-256/512.
pub const SCRAM_LOGIN_MODULE: &str = "org.apache.kafka.common.security.scram.ScramLoginModule";

/// The property every listener falls back to.
pub const SASL_JAAS_CONFIG: &str = "sasl.jaas.config";

/// One parsed JAAS login module entry.
#[derive(Clone, PartialEq, Eq)]
pub struct JaasEntry {
    pub login_module: String,
    /// `required`, `requisite`, `sufficient` or `optional`.
    pub control_flag: String,
    pub options: BTreeMap<String, String>,
}

impl fmt::Debug for JaasEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JaasEntry")
            .field("login_module", &self.login_module)
            .field("control_flag", &self.control_flag)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                out.push(Token::Equals);
            }
            ';' => {
                chars.next();
                out.push(Token::Semicolon);
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err("unterminated quoted value".into()),
                        },
                        Some(c) => value.push(c),
                        None => return Err("unterminated quoted value".into()),
                    }
                }
                out.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '=' | ';' | '"') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

/// Parses a JAAS config property holding exactly one login module, as
/// Kafka requires of `sasl.jaas.config`. Errors never quote option values.
pub fn parse(text: &str) -> Result<JaasEntry, String> {
    let mut tokens = tokens(text)?.into_iter();
    let login_module = match tokens.next() {
        Some(Token::Word(w)) => w,
        None => return Err("empty JAAS configuration".into()),
        Some(_) => return Err("expected a login module class name first".into()),
    };
    let control_flag = match tokens.next() {
        Some(Token::Word(w))
            if ["required", "requisite", "sufficient", "optional"]
                .contains(&w.to_ascii_lowercase().as_str()) =>
        {
            w.to_ascii_lowercase()
        }
        _ => {
            return Err(format!(
                "expected a control flag (required, requisite, sufficient, optional) after {login_module}"
            ))
        }
    };
    let mut options = BTreeMap::new();
    loop {
        match tokens.next() {
            Some(Token::Semicolon) => break,
            Some(Token::Word(name)) => {
                if tokens.next() != Some(Token::Equals) {
                    return Err(format!("option {name} has no '='"));
                }
                let value = match tokens.next() {
                    Some(Token::Word(v) | Token::Quoted(v)) => v,
                    _ => return Err(format!("option {name} has no value")),
                };
                options.insert(name, value);
            }
            None => return Err("the login module is not closed with ';'".into()),
            Some(_) => return Err("expected an option name=value or ';'".into()),
        }
    }
    if tokens.next().is_some() {
        return Err(
            "more than one login module: sasl.jaas.config takes exactly one (as in Kafka)".into(),
        );
    }
    Ok(JaasEntry {
        login_module,
        control_flag,
        options,
    })
}

/// The `sasl.jaas.config` properties this broker was given, by full name;
/// kept apart from the other settings so their passwords are never logged.
#[derive(Clone, Default)]
pub struct JaasConfigs(BTreeMap<String, String>);

impl fmt::Debug for JaasConfigs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl JaasConfigs {
    /// Whether `name` is a JAAS property: `sasl.jaas.config` or
    /// `listener.name.<listener>.<mechanism>.sasl.jaas.config`.
    pub fn is_jaas_property(name: &str) -> bool {
        name == SASL_JAAS_CONFIG
            || name
                .strip_prefix("listener.name.")
                .and_then(|rest| rest.strip_suffix(".sasl.jaas.config"))
                .and_then(|middle| middle.split_once('.'))
                .is_some_and(|(listener, mechanism)| !listener.is_empty() && !mechanism.is_empty())
    }

    /// Stores one; the line is parsed now so a typo fails at start-up.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        parse(value)?;
        self.0.insert(name.to_string(), value.to_string());
        Ok(())
    }

    /// The JAAS line for `listener` and `mechanism` (Kafka's lookup order:
    /// the listener- and mechanism-prefixed property, then the global one),
    /// with the property name it came from.
    pub fn lookup(&self, listener: &str, mechanism: &str) -> Option<(&str, &str)> {
        let prefixed = format!(
            "listener.name.{}.{}.sasl.jaas.config",
            listener.to_ascii_lowercase(),
            mechanism.to_ascii_lowercase()
        );
        self.0
            .get_key_value(&prefixed)
            .or_else(|| self.0.get_key_value(SASL_JAAS_CONFIG))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A username and password to log in with, and the mechanism.
#[derive(Clone)]
pub struct BrokerLogin {
    pub mechanism: PasswordMechanism,
    pub username: String,
    password: String,
}

impl fmt::Debug for BrokerLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerLogin")
            .field("mechanism", &self.mechanism.name())
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl BrokerLogin {
    /// Starts one login exchange.
    pub fn start(&self) -> Result<SaslClient, SaslClientError> {
        SaslClient::new(self.mechanism, &self.username, &self.password)
    }
}

/// The login for connections to `listener` with the SASL mechanism named
/// by the property `mechanism_property` (`sasl.mechanism.inter.broker.protocol`
/// or `sasl.mechanism.controller.protocol`, value `mechanism`). Refuses,
/// naming the property to fix, a mechanism we cannot log in with, a
/// missing JAAS line, a login module that does not fit the mechanism and a
/// line without username or password.
pub fn broker_login(
    jaas: &JaasConfigs,
    listener: &str,
    mechanism_property: &str,
    mechanism: &str,
) -> Result<BrokerLogin, String> {
    let parsed = PasswordMechanism::from_name(mechanism).ok_or_else(|| {
        format!(
            "{mechanism_property}={mechanism} cannot be used: brokers log in to each other with \
             PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
        )
    })?;
    let (property, line) = jaas.lookup(listener, mechanism).ok_or_else(|| {
        format!(
            "listener {listener} uses SASL {mechanism} but neither listener.name.{}.{}.sasl.jaas.config \
             nor sasl.jaas.config is set",
            listener.to_ascii_lowercase(),
            mechanism.to_ascii_lowercase()
        )
    })?;
    let entry = parse(line).map_err(|e| format!("{property}: {e}"))?;
    let expected = match parsed {
        PasswordMechanism::Plain => PLAIN_LOGIN_MODULE,
        PasswordMechanism::Scram(_) => SCRAM_LOGIN_MODULE,
    };
    if entry.login_module != expected {
        return Err(format!(
            "{property}: {mechanism} needs {expected}, not {}",
            entry.login_module
        ));
    }
    let option = |name: &str| {
        entry
            .options
            .get(name)
            .cloned()
            .ok_or_else(|| format!("{property}: the {name} option is missing"))
    };
    Ok(BrokerLogin {
        mechanism: parsed,
        username: option("username")?,
        password: option("password")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> JaasEntry {
        match parse(text) {
            Ok(e) => e,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn parses_kafkas_forms() {
        let e = entry(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="a \"quoted\" pass;word";"#,
        );
        assert_eq!(e.login_module, SCRAM_LOGIN_MODULE);
        assert_eq!(e.control_flag, "required");
        assert_eq!(e.options["username"], "admin");
        assert_eq!(e.options["password"], r#"a "quoted" pass;word"#);
        // Bare values, other spacing, another flag.
        let e = entry("x.Y Optional\n  username=bob password = pw ;  ");
        assert_eq!(e.control_flag, "optional");
        assert_eq!(e.options["username"], "bob");
        assert_eq!(e.options["password"], "pw");
    }

    #[test]
    fn refuses_malformed_lines_without_quoting_secrets() {
        for (text, want) in [
            ("", "empty"),
            ("x.Y required username=\"a\"", "not closed"),
            ("x.Y always username=\"a\";", "control flag"),
            ("x.Y required username \"a\";", "no '='"),
            ("x.Y required password=;", "no value"),
            ("x.Y required password=\"unterminated;", "unterminated"),
            ("x.Y required; x.Z required;", "more than one"),
            ("= required;", "class name"),
        ] {
            match parse(text) {
                Ok(_) => panic!("{text:?} parsed"),
                Err(e) => {
                    assert!(e.contains(want), "{text:?}: {e}");
                    assert!(!e.contains("unterminated;") || want == "unterminated");
                }
            }
        }
    }

    #[test]
    fn property_names() {
        assert!(JaasConfigs::is_jaas_property("sasl.jaas.config"));
        assert!(JaasConfigs::is_jaas_property(
            "listener.name.internal.scram-sha-512.sasl.jaas.config"
        ));
        assert!(!JaasConfigs::is_jaas_property(
            "listener.name.internal.sasl.jaas.config"
        ));
        assert!(!JaasConfigs::is_jaas_property(
            "listener.name..plain.sasl.jaas.config"
        ));
        assert!(!JaasConfigs::is_jaas_property("sasl.jaas.configs"));
    }

    #[test]
    fn login_lookup_prefers_the_listener_and_checks_the_module() {
        let mut jaas = JaasConfigs::default();
        let scram = format!("{SCRAM_LOGIN_MODULE} required username=\"broker\" password=\"pw\";");
        let plain = format!("{PLAIN_LOGIN_MODULE} required username=\"global\" password=\"g\";");
        assert!(jaas
            .set(
                "listener.name.internal.scram-sha-512.sasl.jaas.config",
                &scram
            )
            .is_ok());
        assert!(jaas.set(SASL_JAAS_CONFIG, &plain).is_ok());
        let p = "sasl.mechanism.inter.broker.protocol";
        let login = broker_login(&jaas, "INTERNAL", p, "SCRAM-SHA-512");
        assert_eq!(login.as_ref().map(|l| l.username.as_str()), Ok("broker"));
        assert!(!format!("{login:?}").contains("pw"));
        // Another listener falls back to the global line: a PLAIN module.
        let login = broker_login(&jaas, "OTHER", p, "PLAIN");
        assert_eq!(login.map(|l| l.username), Ok("global".to_string()));
        let wrong = broker_login(&jaas, "OTHER", p, "SCRAM-SHA-256").unwrap_err();
        assert!(
            wrong.contains("needs") && wrong.contains(SCRAM_LOGIN_MODULE),
            "{wrong}"
        );
        let gssapi = broker_login(&jaas, "INTERNAL", p, "GSSAPI").unwrap_err();
        assert!(gssapi.contains(p) && gssapi.contains("GSSAPI"), "{gssapi}");
        let missing = broker_login(&JaasConfigs::default(), "INTERNAL", p, "PLAIN").unwrap_err();
        assert!(
            missing.contains("listener.name.internal.plain.sasl.jaas.config"),
            "{missing}"
        );
        let mut no_password = JaasConfigs::default();
        assert!(no_password
            .set(
                SASL_JAAS_CONFIG,
                &format!("{PLAIN_LOGIN_MODULE} required username=a;")
            )
            .is_ok());
        let e = broker_login(&no_password, "X", p, "PLAIN").unwrap_err();
        assert!(e.contains("password option is missing"), "{e}");
        assert!(jaas.set(SASL_JAAS_CONFIG, "broken").is_err());
        assert!(!format!("{jaas:?}").contains("pw"));
    }
}
