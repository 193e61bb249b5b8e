//! AWS IAM policy documents, in AWS's own JSON, and their evaluation. This
//! module owns parsing (with errors naming the offending field, e.g.
//! `Statement[1].Action`), wildcard matching and the allow/deny decision;
//! which action and resource a Kafka request needs is the caller's business
//! (see [`super::authorizer`]), and evaluation here is literal: no implied
//! actions.
//!
//! Supported, as AWS documents identity-based policies: `Version`
//! (`2012-10-17` or `2008-10-17`), `Id`, `Statement` as one object or an
//! array, each with `Sid`, `Effect` (`Allow`/`Deny`), exactly one of
//! `Action`/`NotAction` and exactly one of `Resource`/`NotResource` (each a
//! string or an array of strings), with `*` and `?` wildcards. Actions match
//! case-insensitively, resources (ARNs) case-sensitively. Anything we would
//! otherwise have to ignore — `Condition`, `Principal`, policy variables
//! (`${...}`), unknown keys — is a parse error rather than a silently
//! broader or narrower policy.
//!
//! Decision: an explicit `Deny` in any matching statement wins; otherwise any
//! matching `Allow` allows; otherwise the request is implicitly denied.

use serde_json::{Map, Value};

/// A policy that does not parse, naming the field (`Statement[0].Effect`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy field {field}: {reason}")]
pub struct PolicyError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The outcome of evaluating policies for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows it and none denies it.
    Allow,
    /// A statement denies it.
    ExplicitDeny,
    /// No statement allows it.
    ImplicitDeny,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A list of patterns, or (for `NotAction`/`NotResource`) its complement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternSet {
    /// True for `NotAction` / `NotResource`.
    pub negated: bool,
    pub patterns: Vec<String>,
}

impl PatternSet {
    fn matches(&self, value: &str, case_insensitive: bool) -> bool {
        let any = self
            .patterns
            .iter()
            .any(|p| glob_match(p, value, case_insensitive));
        any != self.negated
    }
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub actions: PatternSet,
    pub resources: PatternSet,
}

impl Statement {
    /// Whether this statement applies to `action` on `resource`.
    pub fn applies(&self, action: &str, resource: &str) -> bool {
        self.actions.matches(action, true) && self.resources.matches(resource, false)
    }
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    pub version: Option<String>,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

impl PolicyDocument {
    /// Parses an IAM policy document from its JSON text.
    pub fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| err("(document)", format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| err("(document)", "must be a JSON object"))?;
        for key in obj.keys() {
            if !["Version", "Id", "Statement"].contains(&key.as_str()) {
                return Err(err(key.clone(), "unknown policy element"));
            }
        }
        let version = opt_string(obj, "Version", "Version")?;
        if let Some(v) = &version {
            if v != "2012-10-17" && v != "2008-10-17" {
                return Err(err(
                    "Version",
                    format!("{v:?} is not a policy language version (use \"2012-10-17\")"),
                ));
            }
        }
        let id = opt_string(obj, "Id", "Id")?;
        let raw = obj
            .get("Statement")
            .ok_or_else(|| err("Statement", "missing"))?;
        let list: Vec<&Value> = match raw {
            Value::Array(a) => a.iter().collect(),
            Value::Object(_) => vec![raw],
            _ => return Err(err("Statement", "must be an object or an array of objects")),
        };
        if list.is_empty() {
            return Err(err("Statement", "is empty"));
        }
        let statements = list
            .into_iter()
            .enumerate()
            .map(|(i, s)| parse_statement(&format!("Statement[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PolicyDocument {
            version,
            id,
            statements,
        })
    }

    /// This document's decision alone.
    pub fn evaluate(&self, action: &str, resource: &str) -> Decision {
        evaluate(std::slice::from_ref(self), action, resource)
    }
}

/// Evaluates a principal's policies for one request: explicit Deny wins,
/// then any Allow, else implicit deny.
pub fn evaluate<'a>(
    policies: impl IntoIterator<Item = &'a PolicyDocument>,
    action: &str,
    resource: &str,
) -> Decision {
    let mut allowed = false;
    for doc in policies {
        for st in &doc.statements {
            if st.applies(action, resource) {
                match st.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => allowed = true,
                }
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

fn opt_string(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, PolicyError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(field, "must be a string")),
    }
}

fn parse_statement(path: &str, v: &Value) -> Result<Statement, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| err(path, "a statement must be a JSON object"))?;
    let field = |k: &str| format!("{path}.{k}");
    for key in obj.keys() {
        match key.as_str() {
            "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource" => {}
            "Condition" => {
                return Err(err(
                    field(key),
                    "conditions are not supported by this broker; remove the Condition block or split the statement",
                ))
            }
            "Principal" | "NotPrincipal" => {
                return Err(err(
                    field(key),
                    "identity-based policies cannot name a principal; attach the policy to the principal in the broker config instead",
                ))
            }
            _ => return Err(err(field(key), "unknown statement element")),
        }
    }
    let sid = opt_string(obj, "Sid", &field("Sid"))?;
    let effect = match obj.get("Effect") {
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(_) => return Err(err(field("Effect"), "must be \"Allow\" or \"Deny\"")),
        None => return Err(err(field("Effect"), "missing")),
    };
    let actions = pattern_set(obj, path, "Action", "NotAction", validate_action)?;
    let resources = pattern_set(obj, path, "Resource", "NotResource", validate_resource)?;
    Ok(Statement {
        sid,
        effect,
        actions,
        resources,
    })
}

fn pattern_set(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    not_key: &str,
    validate: fn(&str) -> Result<(), String>,
) -> Result<PatternSet, PolicyError> {
    let (negated, k, v) = match (obj.get(key), obj.get(not_key)) {
        (Some(v), None) => (false, key, v),
        (None, Some(v)) => (true, not_key, v),
        (Some(_), Some(_)) => {
            return Err(err(
                format!("{path}.{key}"),
                format!("a statement has either {key} or {not_key}, not both"),
            ))
        }
        (None, None) => {
            return Err(err(
                format!("{path}.{key}"),
                format!("missing (a statement needs {key} or {not_key})"),
            ))
        }
    };
    let f = format!("{path}.{k}");
    let items: Vec<&Value> = match v {
        Value::String(_) => vec![v],
        Value::Array(a) if !a.is_empty() => a.iter().collect(),
        Value::Array(_) => return Err(err(f, "is empty")),
        _ => return Err(err(f, "must be a string or an array of strings")),
    };
    let mut patterns = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let s = item
            .as_str()
            .ok_or_else(|| err(format!("{f}[{i}]"), "must be a string"))?;
        validate(s).map_err(|reason| err(format!("{f}[{i}]"), reason))?;
        patterns.push(s.to_owned());
    }
    Ok(PatternSet { negated, patterns })
}

fn validate_action(a: &str) -> Result<(), String> {
    if a == "*" {
        return Ok(());
    }
    let (service, name) = a
        .split_once(':')
        .ok_or_else(|| format!("{a:?} is not `*` or `<service>:<action>`"))?;
    let service_ok = !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*?-_".contains(&b));
    if service_ok && name_ok {
        Ok(())
    } else {
        Err(format!("{a:?} is not `*` or `<service>:<action>`"))
    }
}

fn validate_resource(r: &str) -> Result<(), String> {
    if r.contains("${") {
        return Err(format!("{r:?}: policy variables are not supported"));
    }
    if r == "*" || r.starts_with("arn:") {
        Ok(())
    } else {
        Err(format!("{r:?} is not `*` or an ARN"))
    }
}

/// IAM wildcard matching: `*` matches any run of characters (also empty and
/// across `/` and `:`), `?` exactly one. Greedy with backtracking to the last
/// `*`, so time is bounded by pattern length x value length.
pub fn glob_match(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = value.chars().collect();
    let eq = |a: char, b: char| {
        if case_insensitive {
            a.to_lowercase().eq(b.to_lowercase())
        } else {
            a == b
        }
    };
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || eq(p[pi], t[ti])) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The policy of issue 6 / AWS's MSK documentation.
#[cfg(test)]
pub(crate) const AWS_EXAMPLE: &str = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["kafka-cluster:Connect", "kafka-cluster:AlterCluster", "kafka-cluster:DescribeCluster"],
       "Resource": "arn:aws:kafka:us-east-1:123456789012:cluster/my-kafka-cluster/*"},
      {"Effect": "Allow", "Action": ["kafka-cluster:*Topic*", "kafka-cluster:WriteData", "kafka-cluster:ReadData"],
       "Resource": "arn:aws:kafka:us-east-1:123456789012:topic/my-kafka-cluster/*/*"},
      {"Effect": "Allow", "Action": ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
       "Resource": "arn:aws:kafka:us-east-1:123456789012:group/my-kafka-cluster/*/*"}]}"#;

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "arn:aws:kafka:us-east-1:123456789012:cluster/my-kafka-cluster/abcd-1";
    const TOPIC: &str = "arn:aws:kafka:us-east-1:123456789012:topic/my-kafka-cluster/abcd-1/orders";
    const GROUP: &str = "arn:aws:kafka:us-east-1:123456789012:group/my-kafka-cluster/abcd-1/g1";

    fn parse(s: &str) -> PolicyDocument {
        match PolicyDocument::parse(s) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_err(s: &str) -> PolicyError {
        match PolicyDocument::parse(s) {
            Ok(d) => panic!("parsed: {d:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn aws_example_policy_behaves_as_documented() {
        let d = parse(AWS_EXAMPLE);
        assert_eq!(d.statements.len(), 3);
        let allow = |a: &str, r: &str| d.evaluate(a, r);
        use Decision::*;
        assert_eq!(allow("kafka-cluster:Connect", CLUSTER), Allow);
        assert_eq!(allow("kafka-cluster:DescribeCluster", CLUSTER), Allow);
        assert_eq!(
            allow("kafka-cluster:AlterClusterDynamicConfiguration", CLUSTER),
            ImplicitDeny
        );
        for a in [
            "CreateTopic",
            "DescribeTopic",
            "AlterTopic",
            "DeleteTopic",
            "DescribeTopicDynamicConfiguration",
            "AlterTopicDynamicConfiguration",
            "ReadData",
            "WriteData",
        ] {
            assert_eq!(allow(&format!("kafka-cluster:{a}"), TOPIC), Allow, "{a}");
        }
        // Action names match case-insensitively.
        assert_eq!(allow("KAFKA-CLUSTER:readdata", TOPIC), Allow);
        assert_eq!(
            allow("kafka-cluster:WriteDataIdempotently", CLUSTER),
            ImplicitDeny
        );
        assert_eq!(allow("kafka-cluster:DeleteGroup", GROUP), ImplicitDeny);
        assert_eq!(allow("kafka-cluster:AlterGroup", GROUP), Allow);
        // Other cluster, other account, other region.
        assert_eq!(
            allow(
                "kafka-cluster:ReadData",
                &TOPIC.replace("my-kafka-cluster", "other")
            ),
            ImplicitDeny
        );
        assert_eq!(
            allow(
                "kafka-cluster:ReadData",
                &TOPIC.replace("123456789012", "999999999999")
            ),
            ImplicitDeny
        );
        assert_eq!(
            allow(
                "kafka-cluster:ReadData",
                &TOPIC.replace("us-east-1", "eu-west-1")
            ),
            ImplicitDeny
        );
        // Topic actions do not apply to groups and vice versa.
        assert_eq!(allow("kafka-cluster:DescribeTopic", GROUP), ImplicitDeny);
        assert_eq!(allow("kafka-cluster:DescribeGroup", TOPIC), ImplicitDeny);
        // Resources are case-sensitive.
        assert_eq!(
            allow("kafka-cluster:ReadData", &TOPIC.replace("orders", "ORDERS")),
            Allow
        );
        assert_eq!(
            allow("kafka-cluster:ReadData", &TOPIC.replace("topic/", "Topic/")),
            ImplicitDeny
        );
    }

    #[test]
    fn explicit_deny_wins_across_documents() {
        let allow_all = parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
        );
        let deny = parse(
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"nosecret","Effect":"Deny","Action":"kafka-cluster:ReadData","Resource":"arn:aws:kafka:*:*:topic/*/*/secret-*"}]}"#,
        );
        let both = [allow_all.clone(), deny.clone()];
        assert_eq!(
            evaluate(
                &both,
                "kafka-cluster:ReadData",
                &TOPIC.replace("orders", "secret-x")
            ),
            Decision::ExplicitDeny
        );
        assert_eq!(
            evaluate(&both, "kafka-cluster:ReadData", TOPIC),
            Decision::Allow
        );
        assert_eq!(
            evaluate(
                [&deny, &allow_all],
                "kafka-cluster:ReadData",
                &TOPIC.replace("orders", "secret-x")
            ),
            Decision::ExplicitDeny
        );
        assert_eq!(
            evaluate(&[deny], "kafka-cluster:WriteData", TOPIC),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(&[] as &[PolicyDocument], "kafka-cluster:Connect", CLUSTER),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn not_action_and_not_resource() {
        let d = parse(
            r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","NotAction":["kafka-cluster:Delete*"],"Resource":"*"},
            {"Effect":"Deny","Action":"kafka-cluster:WriteData","NotResource":["arn:aws:kafka:us-east-1:123456789012:topic/my-kafka-cluster/*/orders"]}]}"#,
        );
        assert_eq!(
            d.evaluate("kafka-cluster:DeleteTopic", TOPIC),
            Decision::ImplicitDeny
        );
        assert_eq!(
            d.evaluate("kafka-cluster:DescribeTopic", TOPIC),
            Decision::Allow
        );
        assert_eq!(
            d.evaluate("kafka-cluster:WriteData", TOPIC),
            Decision::Allow
        );
        assert_eq!(
            d.evaluate("kafka-cluster:WriteData", &TOPIC.replace("orders", "other")),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn wildcards() {
        assert!(glob_match("*", "", false));
        assert!(glob_match("a*c", "abbbc", false));
        assert!(glob_match("a?c", "abc", false));
        assert!(!glob_match("a?c", "ac", false));
        assert!(glob_match(
            "*Topic*",
            "DescribeTopicDynamicConfiguration",
            false
        ));
        assert!(!glob_match("*Topic*", "Describetopic", false));
        assert!(glob_match("*Topic*", "Describetopic", true));
        assert!(glob_match("a*b*c", "a-b-b-c", false));
        assert!(!glob_match("a*b*c", "a-b-b-d", false));
        assert!(glob_match("topic/c/*/*", "topic/c/u/t/with/slash", false));
        assert!(!glob_match("abc", "ab", false));
        assert!(glob_match("ab**", "ab", false));
        assert!(glob_match("??", "éà", false));
        // Pathological patterns stay fast.
        let long = "a".repeat(20_000);
        assert!(!glob_match("*a*a*a*a*a*a*a*b", &long, false));
    }

    #[test]
    fn parse_errors_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("", "(document)"),
            ("[]", "(document)"),
            (r#"{"Version":"2012-10-17"}"#, "Statement"),
            (r#"{"Version":"2012-10-17","Statement":[]}"#, "Statement"),
            (r#"{"Version":"2020-01-01","Statement":[]}"#, "Version"),
            (r#"{"Version":"2012-10-17","Statment":[]}"#, "Statment"),
            (
                r#"{"Statement":{"Effect":"allow","Action":"*","Resource":"*"}}"#,
                "Statement[0].Effect",
            ),
            (
                r#"{"Statement":{"Action":"*","Resource":"*"}}"#,
                "Statement[0].Effect",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Allow","Resource":"*"}]}"#,
                "Statement[1].Action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","NotAction":"*","Resource":"*"}}"#,
                "Statement[0].Action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":[],"Resource":"*"}}"#,
                "Statement[0].Action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":["*",3],"Resource":"*"}}"#,
                "Statement[0].Action[1]",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ReadData","Resource":"*"}}"#,
                "Statement[0].Action[0]",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*"}}"#,
                "Statement[0].Resource",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"topic/x"}}"#,
                "Statement[0].Resource[0]",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:kafka:*:*:topic/${aws:username}"}}"#,
                "Statement[0].Resource[0]",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}}"#,
                "Statement[0].Condition",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Principal":"*"}}"#,
                "Statement[0].Principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Foo":1}}"#,
                "Statement[0].Foo",
            ),
            (r#"{"Statement":"x"}"#, "Statement"),
            (r#"{"Statement":["x"]}"#, "Statement[0]"),
            (
                r#"{"Statement":{"Sid":5,"Effect":"Allow","Action":"*","Resource":"*"}}"#,
                "Statement[0].Sid",
            ),
        ];
        for (text, field) in cases {
            let e = parse_err(text);
            assert_eq!(e.field, *field, "{text}: {e}");
            assert!(e.to_string().contains(field));
        }
        assert!(parse_err(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{}}}"#
        )
        .reason
        .contains("not supported"));
    }

    #[test]
    fn accepted_shapes() {
        // No Version, Id, single strings, 2008 version.
        let d = parse(
            r#"{"Id":"x","Statement":{"Effect":"Deny","Action":"kafka-cluster:*","Resource":"*"}}"#,
        );
        assert_eq!(
            d.evaluate("kafka-cluster:Connect", CLUSTER),
            Decision::ExplicitDeny
        );
        assert!(PolicyDocument::parse(r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#).is_ok());
        // Garbage never panics.
        for s in [
            "{",
            "null",
            "1",
            "\"x\"",
            "{\"Statement\":null}",
            "{\"Statement\":{}}",
            &"[".repeat(10_000),
        ] {
            assert!(PolicyDocument::parse(s).is_err());
        }
    }
}
