//! Client quota configuration as Kafka keeps it: entities (a user, a client
//! id, or a user and a client id, each a name or `<default>`), their quota
//! values (`producer_byte_rate`, `consumer_byte_rate`, `request_percentage`,
//! `controller_mutation_rate`), validation of AlterClientQuotas entries as
//! Kafka's `ClientQuotaControlManager` does it, KIP-546 filter matching for
//! DescribeClientQuotas, and resolution of the quota that applies to a
//! (user, client id) pair in the precedence order of Kafka's default
//! `ClientQuotaCallback`. Pure data; the metadata store and the controller
//! hold a [`ClientQuotas`] and the broker's quota manager reads it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_protocol::ErrorCode;

/// Kafka's entity type names on the wire.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// One side of an entity: a name, or the default (`<default>` in
/// kafka-configs, a null name on the wire).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    pub fn from_wire(name: Option<&str>) -> EntityName {
        match name {
            None => EntityName::Default,
            Some(n) => EntityName::Named(n.to_string()),
        }
    }

    pub fn to_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(n) => Some(n),
        }
    }
}

/// A quota entity: `/config/users/<user>`, `/config/clients/<client-id>`,
/// or `/config/users/<user>/clients/<client-id>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

impl QuotaEntity {
    /// The entity's (type, name) components in wire order (user first).
    pub fn components(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::new();
        if let Some(u) = &self.user {
            out.push((USER, u.to_wire()));
        }
        if let Some(c) = &self.client_id {
            out.push((CLIENT_ID, c.to_wire()));
        }
        out
    }
}

/// The quota keys sluiced enforces (Kafka's `QuotaConfig` client keys).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuotaKey {
    #[serde(rename = "producer_byte_rate")]
    ProducerByteRate,
    #[serde(rename = "consumer_byte_rate")]
    ConsumerByteRate,
    #[serde(rename = "request_percentage")]
    RequestPercentage,
    #[serde(rename = "controller_mutation_rate")]
    ControllerMutationRate,
}

impl QuotaKey {
    pub const ALL: [QuotaKey; 4] = [
        QuotaKey::ProducerByteRate,
        QuotaKey::ConsumerByteRate,
        QuotaKey::RequestPercentage,
        QuotaKey::ControllerMutationRate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuotaKey::ProducerByteRate => "producer_byte_rate",
            QuotaKey::ConsumerByteRate => "consumer_byte_rate",
            QuotaKey::RequestPercentage => "request_percentage",
            QuotaKey::ControllerMutationRate => "controller_mutation_rate",
        }
    }

    pub fn from_name(name: &str) -> Option<QuotaKey> {
        QuotaKey::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Kafka types the byte rates as longs: fractions are refused.
    fn integral(self) -> bool {
        matches!(
            self,
            QuotaKey::ProducerByteRate | QuotaKey::ConsumerByteRate
        )
    }
}

/// A quota value. Kafka keeps doubles; the wrapper compares bit for bit so
/// metadata records and images stay `Eq`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for QuotaValue {}

/// Every configured quota: entity -> key -> value.
pub type ClientQuotas = BTreeMap<QuotaEntity, BTreeMap<QuotaKey, QuotaValue>>;

/// One validated AlterClientQuotas entry: set (`Some`) or remove (`None`)
/// each key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct QuotaAlteration {
    pub entity: QuotaEntity,
    pub ops: Vec<(QuotaKey, Option<QuotaValue>)>,
}

/// Why an entry is refused: Kafka's error code and message.
pub type Refusal = (ErrorCode, String);

fn invalid(message: impl Into<String>) -> Refusal {
    (ErrorCode::InvalidRequest, message.into())
}

/// Parses an entity from the wire's (type, name) components, refusing what
/// Kafka refuses: unknown or repeated types, an empty name, an empty entity,
/// and IP entities (connection-rate quotas, which sluiced does not enforce).
pub fn parse_entity<'a>(
    components: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<QuotaEntity, Refusal> {
    let mut entity = QuotaEntity {
        user: None,
        client_id: None,
    };
    let mut any = false;
    for (entity_type, name) in components {
        any = true;
        if name == Some("") {
            return Err(invalid(format!(
                "Invalid empty {entity_type} name; use a null name for the default entity"
            )));
        }
        let slot = match entity_type {
            USER => &mut entity.user,
            CLIENT_ID => &mut entity.client_id,
            IP => {
                return Err(invalid(
                    "IP quotas (connection_creation_rate) are not supported by sluiced",
                ))
            }
            other => {
                return Err(invalid(format!(
                    "Unhandled client quota entity type: {other}"
                )))
            }
        };
        if slot.is_some() {
            return Err(invalid(format!("Duplicate {entity_type} entity type")));
        }
        *slot = Some(EntityName::from_wire(name));
    }
    if !any {
        return Err(invalid("Invalid empty client quota entity"));
    }
    Ok(entity)
}

/// Validates one entry's operations as Kafka does: known keys only, each
/// at most once, no negative values, byte rates whole numbers (Kafka types
/// them as longs).
pub fn parse_ops<'a>(
    ops: impl IntoIterator<Item = (&'a str, f64, bool)>,
) -> Result<Vec<(QuotaKey, Option<QuotaValue>)>, Refusal> {
    let mut out: Vec<(QuotaKey, Option<QuotaValue>)> = Vec::new();
    for (key, value, remove) in ops {
        let Some(k) = QuotaKey::from_name(key) else {
            return Err(invalid(format!("Invalid configuration key {key}")));
        };
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(invalid(format!("Duplicate quota key {key}")));
        }
        if remove {
            out.push((k, None));
            continue;
        }
        if !value.is_finite() || value < 0.0 {
            return Err(invalid(format!(
                "Invalid value {value} for configuration key {key}: must be a non-negative number"
            )));
        }
        if k.integral() && value.fract() != 0.0 {
            return Err(invalid(format!(
                "Invalid value {value} for configuration key {key}: must be a whole number"
            )));
        }
        out.push((k, Some(QuotaValue(value))));
    }
    Ok(out)
}

/// Applies one alteration: keys set or removed; an entity left with no
/// keys disappears.
pub fn apply(quotas: &mut ClientQuotas, alteration: &QuotaAlteration) {
    let values = quotas.entry(alteration.entity.clone()).or_default();
    for (key, value) in &alteration.ops {
        match value {
            Some(v) => {
                values.insert(*key, *v);
            }
            None => {
                values.remove(key);
            }
        }
    }
    if values.is_empty() {
        quotas.remove(&alteration.entity);
    }
}

/// One DescribeClientQuotas filter component (KIP-546).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// match_type 0: this exact name.
    Exact(String),
    /// match_type 1: the default entity of this type.
    Default,
    /// match_type 2: any entity that has this type (named or default).
    Any,
}

/// A parsed filter: per entity type, how it must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub user: Option<Match>,
    pub client_id: Option<Match>,
    /// Only entities with exactly the filtered types (no others).
    pub strict: bool,
}

impl Filter {
    /// Parses the wire components as Kafka does: each type once, known
    /// match types, an exact match with a name.
    pub fn parse<'a>(
        components: impl IntoIterator<Item = (&'a str, i8, Option<&'a str>)>,
        strict: bool,
    ) -> Result<Filter, Refusal> {
        let mut f = Filter {
            strict,
            ..Filter::default()
        };
        for (entity_type, match_type, name) in components {
            let m = match (match_type, name) {
                (0, Some(n)) => Match::Exact(n.to_string()),
                (0, None) => {
                    return Err(invalid(format!(
                        "Entity type {entity_type} needs a name to match exactly"
                    )))
                }
                (1, _) => Match::Default,
                (2, _) => Match::Any,
                (other, _) => return Err(invalid(format!("Unknown match type {other}"))),
            };
            let slot = match entity_type {
                USER => &mut f.user,
                CLIENT_ID => &mut f.client_id,
                IP => return Err(invalid("IP quotas are not supported by sluiced")),
                other => return Err(invalid(format!("Unknown entity type {other}"))),
            };
            if slot.is_some() {
                return Err(invalid(format!(
                    "Entity type {entity_type} cannot appear more than once in the filter"
                )));
            }
            *slot = Some(m);
        }
        Ok(f)
    }

    fn side(m: &Option<Match>, name: &Option<EntityName>, strict: bool) -> bool {
        match (m, name) {
            (None, None) => true,
            // Not filtered on: any, unless strict.
            (None, Some(_)) => !strict,
            (Some(_), None) => false,
            (Some(Match::Any), Some(_)) => true,
            (Some(Match::Default), Some(n)) => *n == EntityName::Default,
            (Some(Match::Exact(want)), Some(EntityName::Named(n))) => want == n,
            (Some(Match::Exact(_)), Some(EntityName::Default)) => false,
        }
    }

    pub fn matches(&self, entity: &QuotaEntity) -> bool {
        Self::side(&self.user, &entity.user, self.strict)
            && Self::side(&self.client_id, &entity.client_id, self.strict)
    }
}

/// The entities matching `filter`, with their values.
pub fn describe<'q>(
    quotas: &'q ClientQuotas,
    filter: &'q Filter,
) -> impl Iterator<Item = (&'q QuotaEntity, &'q BTreeMap<QuotaKey, QuotaValue>)> {
    quotas.iter().filter(move |(e, _)| filter.matches(e))
}

/// Who a quota's usage is counted against: Kafka's quota metric tags. The
/// entity level that matched decides: `users/<u>` shares one sensor among
/// all the user's clients (client id ""), `users/<u>/clients/<default>`
/// counts each client of the user apart, and so on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricEntity {
    pub user: String,
    pub client_id: String,
}

/// The quota for `key` that applies to a connection of principal name
/// `user` with `client_id`, and the entity its usage is counted against.
/// Precedence (Kafka's documentation, "Quotas"):
/// users/<user>/clients/<client-id>, users/<user>/clients/<default>,
/// users/<user>, users/<default>/clients/<client-id>,
/// users/<default>/clients/<default>, users/<default>,
/// clients/<client-id>, clients/<default>.
pub fn resolve(
    quotas: &ClientQuotas,
    key: QuotaKey,
    user: &str,
    client_id: &str,
) -> Option<(f64, MetricEntity)> {
    use EntityName::{Default as D, Named as N};
    let u = || Some(N(user.to_string()));
    let c = || Some(N(client_id.to_string()));
    // (entity looked up, counted per user?, counted per client id?)
    let order = [
        (u(), c(), true, true),
        (u(), Some(D), true, true),
        (u(), None, true, false),
        (Some(D), c(), true, true),
        (Some(D), Some(D), true, true),
        (Some(D), None, true, false),
        (None, c(), false, true),
        (None, Some(D), false, true),
    ];
    for (user_side, client_side, per_user, per_client) in order {
        let entity = QuotaEntity {
            user: user_side,
            client_id: client_side,
        };
        if let Some(v) = quotas.get(&entity).and_then(|values| values.get(&key)) {
            return Some((
                v.0,
                MetricEntity {
                    user: if per_user {
                        user.to_string()
                    } else {
                        String::new()
                    },
                    client_id: if per_client {
                        client_id.to_string()
                    } else {
                        String::new()
                    },
                },
            ));
        }
    }
    None
}

/// The principal name Kafka's quota callback uses as the user: the
/// `KafkaPrincipal` name (`User:alice` -> `alice`; an IAM principal ARN
/// as sluiced names it; `ANONYMOUS` on unauthenticated listeners).
pub fn quota_user(principal: &str) -> &str {
    principal.strip_prefix("User:").unwrap_or(principal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntityName::{Default as D, Named as N};

    fn entity(user: Option<EntityName>, client: Option<EntityName>) -> QuotaEntity {
        QuotaEntity {
            user,
            client_id: client,
        }
    }

    fn n(s: &str) -> Option<EntityName> {
        Some(N(s.to_string()))
    }

    fn set(q: &mut ClientQuotas, e: QuotaEntity, v: f64) {
        apply(
            q,
            &QuotaAlteration {
                entity: e,
                ops: vec![(QuotaKey::ProducerByteRate, Some(QuotaValue(v)))],
            },
        );
    }

    #[test]
    fn resolution_follows_kafkas_precedence() {
        // Every level configured with a distinct value; remove them from
        // the most specific down and check the next one takes over.
        let levels = [
            (entity(n("alice"), n("app")), 1.0, ("alice", "app")),
            (entity(n("alice"), Some(D)), 2.0, ("alice", "app")),
            (entity(n("alice"), None), 3.0, ("alice", "")),
            (entity(Some(D), n("app")), 4.0, ("alice", "app")),
            (entity(Some(D), Some(D)), 5.0, ("alice", "app")),
            (entity(Some(D), None), 6.0, ("alice", "")),
            (entity(None, n("app")), 7.0, ("", "app")),
            (entity(None, Some(D)), 8.0, ("", "app")),
        ];
        let mut q = ClientQuotas::new();
        for (e, v, _) in &levels {
            set(&mut q, e.clone(), *v);
        }
        // Unrelated entities never match.
        set(&mut q, entity(n("bob"), None), 99.0);
        set(&mut q, entity(None, n("other")), 98.0);
        for (e, v, (mu, mc)) in &levels {
            let (got, metric) = resolve(&q, QuotaKey::ProducerByteRate, "alice", "app").unwrap();
            assert_eq!(got, *v, "level {e:?}");
            assert_eq!(
                metric,
                MetricEntity {
                    user: mu.to_string(),
                    client_id: mc.to_string()
                }
            );
            q.remove(e);
        }
        assert_eq!(
            resolve(&q, QuotaKey::ProducerByteRate, "alice", "app"),
            None
        );
        // Other keys resolve independently.
        assert_eq!(resolve(&q, QuotaKey::ConsumerByteRate, "bob", "x"), None);
    }

    #[test]
    fn validation_refuses_what_kafka_refuses() {
        assert!(parse_entity([(USER, Some("a")), (CLIENT_ID, None)]).is_ok());
        for bad in [
            vec![],
            vec![(USER, Some(""))],
            vec![(USER, Some("a")), (USER, Some("b"))],
            vec![("group", Some("g"))],
            vec![(IP, Some("1.2.3.4"))],
        ] {
            let e = parse_entity(bad.clone()).unwrap_err();
            assert_eq!(e.0, ErrorCode::InvalidRequest, "{bad:?}");
        }
        assert!(parse_ops([("producer_byte_rate", 1024.0, false)]).is_ok());
        assert!(parse_ops([("request_percentage", 12.5, false)]).is_ok());
        assert!(parse_ops([("producer_byte_rate", 0.0, true)]).is_ok());
        assert!(parse_ops([("producer_byte_rate", 0.0, false)]).is_ok());
        for (k, v) in [
            ("producer_byte_rate", -1.0),
            ("request_percentage", -0.5),
            ("producer_byte_rate", 1.5),
            ("consumer_byte_rate", f64::NAN),
            ("fetch_byte_rate", 1.0),
        ] {
            let e = parse_ops([(k, v, false)]).unwrap_err();
            assert_eq!(e.0, ErrorCode::InvalidRequest, "{k}={v}");
        }
        assert!(parse_ops([
            ("producer_byte_rate", 1.0, false),
            ("producer_byte_rate", 2.0, false)
        ])
        .is_err());
    }

    #[test]
    fn removing_every_key_removes_the_entity() {
        let mut q = ClientQuotas::new();
        let e = entity(n("alice"), None);
        set(&mut q, e.clone(), 10.0);
        apply(
            &mut q,
            &QuotaAlteration {
                entity: e.clone(),
                ops: vec![(QuotaKey::ProducerByteRate, None)],
            },
        );
        assert!(q.is_empty());
    }

    #[test]
    fn describe_filters_as_kip_546() {
        let mut q = ClientQuotas::new();
        let all = [
            entity(n("alice"), None),
            entity(Some(D), None),
            entity(n("alice"), n("app")),
            entity(None, n("app")),
            entity(None, Some(D)),
        ];
        for e in &all {
            set(&mut q, e.clone(), 1.0);
        }
        let run = |components: Vec<(&str, i8, Option<&str>)>, strict: bool| {
            let f = Filter::parse(components, strict).unwrap();
            describe(&q, &f).map(|(e, _)| e.clone()).collect::<Vec<_>>()
        };
        // Exact user, not strict: the user alone and with its clients.
        assert_eq!(
            run(vec![(USER, 0, Some("alice"))], false),
            vec![all[0].clone(), all[2].clone()]
        );
        // Strict: only the user-only entity.
        assert_eq!(
            run(vec![(USER, 0, Some("alice"))], true),
            vec![all[0].clone()]
        );
        // Default user.
        assert_eq!(run(vec![(USER, 1, None)], false), vec![all[1].clone()]);
        // Any client id, strict: client-only entities.
        assert_eq!(
            run(vec![(CLIENT_ID, 2, None)], true),
            vec![all[4].clone(), all[3].clone()]
        );
        // Empty filter, not strict: everything; strict: nothing.
        assert_eq!(run(vec![], false).len(), all.len());
        assert!(run(vec![], true).is_empty());
        // Bad filters.
        assert!(Filter::parse([(USER, 0, None)], false).is_err());
        assert!(Filter::parse([(USER, 7, None)], false).is_err());
        assert!(Filter::parse([(USER, 2, None), (USER, 1, None)], false).is_err());
    }

    #[test]
    fn quota_user_is_the_principal_name() {
        assert_eq!(quota_user("User:alice"), "alice");
        assert_eq!(quota_user("User:ANONYMOUS"), "ANONYMOUS");
        assert_eq!(
            quota_user("arn:aws:iam::123456789012:user/app"),
            "arn:aws:iam::123456789012:user/app"
        );
    }
}
