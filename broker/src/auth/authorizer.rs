//! MSK-style authorization: the `kafka-cluster:*` actions, the ARNs of the
//! cluster's resources, and the [`Authorizer`] that evaluates the IAM policy
//! documents attached to a principal. This module owns the vocabulary and
//! the decision for one (principal, action, resource); which action each
//! Kafka API needs is decided by the request handlers. Evaluation is
//! literal, as MSK's: a policy that grants ReadData but not DescribeTopic
//! cannot look the topic up (AWS's tables list the actions each use needs).
//!
//! Principals are strings: an IAM principal ARN for IAM sign-ins
//! (`arn:aws:iam::123456789012:user/alice`, an assumed-role ARN, ...), or
//! `User:<name>` for SCRAM, PLAIN and mTLS. Policies are attached to
//! principal *patterns* with `*`/`?` wildcards (`User:*`,
//! `arn:aws:sts::123456789012:assumed-role/writers/*`); a principal is
//! governed by the union of every document whose pattern matches it.

use std::fmt;

use super::policy::{evaluate, glob_match, Decision, PolicyDocument};

/// Where the cluster lives, for its resources' ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIdentity {
    pub region: String,
    pub account: String,
    pub name: String,
    pub uuid: String,
}

/// A resource an action applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    Cluster,
    Topic(&'a str),
    Group(&'a str),
    TransactionalId(&'a str),
}

impl ClusterIdentity {
    /// The resource's ARN, as MSK names it:
    /// `arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>`,
    /// `...:topic/<name>/<uuid>/<topic>`, `...:group/<name>/<uuid>/<group>`,
    /// `...:transactional-id/<name>/<uuid>/<id>`.
    pub fn arn(&self, resource: &Resource<'_>) -> String {
        let prefix = format!("arn:aws:kafka:{}:{}", self.region, self.account);
        let (kind, leaf) = match resource {
            Resource::Cluster => ("cluster", None),
            Resource::Topic(t) => ("topic", Some(*t)),
            Resource::Group(g) => ("group", Some(*g)),
            Resource::TransactionalId(t) => ("transactional-id", Some(*t)),
        };
        match leaf {
            None => format!("{prefix}:{kind}/{}/{}", self.name, self.uuid),
            Some(l) => format!("{prefix}:{kind}/{}/{}/{l}", self.name, self.uuid),
        }
    }
}

macro_rules! actions {
    ($($variant:ident),* $(,)?) => {
        /// MSK's IAM actions for Kafka data-plane access.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($variant,)*
        }

        impl Action {
            /// Every action.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The policy name, e.g. `kafka-cluster:ReadData`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => concat!("kafka-cluster:", stringify!($variant)),)*
                }
            }
        }
    };
}

actions!(
    Connect,
    DescribeCluster,
    AlterCluster,
    DescribeClusterDynamicConfiguration,
    AlterClusterDynamicConfiguration,
    WriteDataIdempotently,
    CreateTopic,
    DescribeTopic,
    AlterTopic,
    DeleteTopic,
    DescribeTopicDynamicConfiguration,
    AlterTopicDynamicConfiguration,
    ReadData,
    WriteData,
    DescribeGroup,
    AlterGroup,
    DeleteGroup,
    DescribeTransactionalId,
    AlterTransactionalId,
    // Not an MSK action: Kafka's ClusterAction (follower fetches, the
    // controller quorum, WriteTxnMarkers), which MSK keeps to its own
    // brokers. Sluiced's inter-broker principals need it in a policy
    // (`kafka-cluster:ClusterAction`, or `kafka-cluster:*`); no action an
    // MSK client policy grants implies it.
    ClusterAction,
);

impl Action {
    /// The action for a policy name (case-insensitive, as IAM matches them).
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides requests from the policies attached to principals.
#[derive(Debug, Clone)]
pub struct Authorizer {
    cluster: ClusterIdentity,
    /// (principal pattern, document), in configuration order.
    policies: Vec<(String, PolicyDocument)>,
    allow_everyone_if_no_policies: bool,
}

impl Authorizer {
    /// An authorizer with no policies: every request is implicitly denied
    /// unless [`Authorizer::with_allow_everyone_if_no_policies`] is set.
    pub fn new(cluster: ClusterIdentity) -> Self {
        Authorizer {
            cluster,
            policies: Vec::new(),
            allow_everyone_if_no_policies: false,
        }
    }

    /// When true, a principal that no policy pattern matches is allowed
    /// everything (like Kafka's `allow.everyone.if.no.acl.found`, per
    /// principal). Principals with policies are always held to them.
    pub fn with_allow_everyone_if_no_policies(mut self, allow: bool) -> Self {
        self.allow_everyone_if_no_policies = allow;
        self
    }

    /// Attaches `document` to principals matching `principal_pattern`.
    pub fn attach(&mut self, principal_pattern: impl Into<String>, document: PolicyDocument) {
        self.policies.push((principal_pattern.into(), document));
    }

    pub fn cluster(&self) -> &ClusterIdentity {
        &self.cluster
    }

    /// Whether any policy is attached at all.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The documents governing `principal`.
    pub fn policies_for<'a>(
        &'a self,
        principal: &'a str,
    ) -> impl Iterator<Item = &'a PolicyDocument> + 'a {
        self.policies
            .iter()
            .filter(move |(pattern, _)| glob_match(pattern, principal, false))
            .map(|(_, d)| d)
    }

    /// The full decision for one request.
    pub fn decide(&self, principal: &str, action: Action, resource: Resource<'_>) -> Decision {
        let mut docs = self.policies_for(principal).peekable();
        if docs.peek().is_none() {
            return if self.allow_everyone_if_no_policies {
                Decision::Allow
            } else {
                Decision::ImplicitDeny
            };
        }
        evaluate(docs, action.as_str(), &self.cluster.arn(&resource))
    }

    /// Whether `principal` may do `action` on `resource`.
    pub fn authorize(&self, principal: &str, action: Action, resource: Resource<'_>) -> bool {
        self.decide(principal, action, resource).is_allowed()
    }

    /// Whether `principal` may take a producer id for idempotent writes
    /// (InitProducerId without a transactional id), as MSK decides it:
    /// WriteDataIdempotently on the cluster, or WriteData granted on every
    /// topic of the cluster. Since KIP-679 made idempotence every client's
    /// default, AWS's IAM access-control documentation says WriteData on all
    /// topics implies WriteDataIdempotently, and WriteData on some topics
    /// only does not. "Every topic" is asked as WriteData on the topic named
    /// `*`: a policy resource matches that ARN only if it matches any topic
    /// name (`topic/<cluster>/*`, `topic/<cluster>/<uuid>/*`).
    pub fn may_write_idempotently(&self, principal: &str) -> bool {
        self.authorize(principal, Action::WriteDataIdempotently, Resource::Cluster)
            || self.authorize(principal, Action::WriteData, Resource::Topic("*"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterIdentity {
        ClusterIdentity {
            region: "us-east-1".into(),
            account: "123456789012".into(),
            name: "my-kafka-cluster".into(),
            uuid: "abcd-1234-2".into(),
        }
    }

    fn doc(s: &str) -> PolicyDocument {
        match PolicyDocument::parse(s) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn arns() {
        let c = cluster();
        assert_eq!(
            c.arn(&Resource::Cluster),
            "arn:aws:kafka:us-east-1:123456789012:cluster/my-kafka-cluster/abcd-1234-2"
        );
        assert_eq!(
            c.arn(&Resource::Topic("t")),
            "arn:aws:kafka:us-east-1:123456789012:topic/my-kafka-cluster/abcd-1234-2/t"
        );
        assert_eq!(
            c.arn(&Resource::Group("g")),
            "arn:aws:kafka:us-east-1:123456789012:group/my-kafka-cluster/abcd-1234-2/g"
        );
        assert_eq!(
            c.arn(&Resource::TransactionalId("tx")),
            "arn:aws:kafka:us-east-1:123456789012:transactional-id/my-kafka-cluster/abcd-1234-2/tx"
        );
    }

    #[test]
    fn action_names() {
        // MSK's 19 actions and Kafka's ClusterAction.
        assert_eq!(Action::ALL.len(), 20);
        assert_eq!(
            Action::ClusterAction.as_str(),
            "kafka-cluster:ClusterAction"
        );
        assert_eq!(Action::ReadData.as_str(), "kafka-cluster:ReadData");
        assert_eq!(
            Action::AlterTransactionalId.to_string(),
            "kafka-cluster:AlterTransactionalId"
        );
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.as_str()), Some(*a));
        }
        assert_eq!(
            Action::from_name("KAFKA-CLUSTER:READDATA"),
            Some(Action::ReadData)
        );
        assert_eq!(Action::from_name("kafka-cluster:Nope"), None);
    }

    #[test]
    fn issue_example_policy_attached_to_an_iam_user() {
        let alice = "arn:aws:iam::123456789012:user/alice";
        let mut a = Authorizer::new(cluster());
        a.attach(alice, doc(super::super::policy::AWS_EXAMPLE));
        assert!(a.authorize(alice, Action::Connect, Resource::Cluster));
        assert!(a.authorize(alice, Action::DescribeCluster, Resource::Cluster));
        assert!(!a.authorize(
            alice,
            Action::AlterClusterDynamicConfiguration,
            Resource::Cluster
        ));
        assert!(a.authorize(alice, Action::CreateTopic, Resource::Topic("orders")));
        assert!(a.authorize(alice, Action::ReadData, Resource::Topic("orders")));
        assert!(a.authorize(alice, Action::WriteData, Resource::Topic("orders")));
        assert!(a.authorize(alice, Action::DescribeGroup, Resource::Group("g")));
        assert!(!a.authorize(alice, Action::DeleteGroup, Resource::Group("g")));
        assert!(!a.authorize(
            alice,
            Action::AlterTransactionalId,
            Resource::TransactionalId("t")
        ));
        assert!(!a.authorize(alice, Action::WriteDataIdempotently, Resource::Cluster));
        // Another principal has no policies: denied.
        assert_eq!(
            a.decide(
                "arn:aws:iam::123456789012:user/bob",
                Action::Connect,
                Resource::Cluster
            ),
            Decision::ImplicitDeny
        );
        // A cluster with another name is outside the policy.
        let mut other = Authorizer::new(ClusterIdentity {
            name: "other".into(),
            ..cluster()
        });
        other.attach(alice, doc(super::super::policy::AWS_EXAMPLE));
        assert!(!other.authorize(alice, Action::Connect, Resource::Cluster));
    }

    #[test]
    fn write_data_on_every_topic_implies_idempotent_writes_as_on_msk() {
        let alice = "arn:aws:iam::123456789012:user/alice";
        let mut a = Authorizer::new(cluster());
        a.attach(alice, doc(super::super::policy::AWS_EXAMPLE));
        assert!(
            a.may_write_idempotently(alice),
            "WriteData on topic/<cluster>/*"
        );
        let some_topics = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["kafka-cluster:Connect","kafka-cluster:WriteData"],
             "Resource":["arn:aws:kafka:us-east-1:123456789012:cluster/my-kafka-cluster/*",
                         "arn:aws:kafka:us-east-1:123456789012:topic/my-kafka-cluster/*/orders-*"]}]}"#;
        let mut b = Authorizer::new(cluster());
        b.attach(alice, doc(some_topics));
        assert!(b.authorize(alice, Action::WriteData, Resource::Topic("orders-1")));
        assert!(
            !b.may_write_idempotently(alice),
            "WriteData on some topics only"
        );
        b.attach(alice, doc(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"kafka-cluster:WriteDataIdempotently","Resource":"*"}}"#));
        assert!(b.may_write_idempotently(alice), "granted by name");
        let denied = r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"kafka-cluster:WriteData","Resource":"*"}}"#;
        a.attach(alice, doc(denied));
        assert!(
            !a.may_write_idempotently(alice),
            "an explicit Deny on every topic wins"
        );
    }

    #[test]
    fn principal_patterns_and_union() {
        let mut a = Authorizer::new(cluster());
        a.attach("User:*", doc(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["kafka-cluster:Connect","kafka-cluster:DescribeTopic"],"Resource":"*"}}"#));
        a.attach("User:admin", doc(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"kafka-cluster:*","Resource":"*"}}"#));
        a.attach("User:intern?", doc(r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"*","Resource":"arn:aws:kafka:*:*:topic/*/*/payroll"}}"#));
        assert!(a.authorize("User:bob", Action::Connect, Resource::Cluster));
        assert!(!a.authorize("User:bob", Action::DeleteTopic, Resource::Topic("t")));
        assert!(a.authorize("User:admin", Action::DeleteTopic, Resource::Topic("t")));
        assert!(a.authorize("User:intern1", Action::DescribeTopic, Resource::Topic("t")));
        assert_eq!(
            a.decide(
                "User:intern1",
                Action::DescribeTopic,
                Resource::Topic("payroll")
            ),
            Decision::ExplicitDeny
        );
        assert!(a.authorize(
            "User:intern12",
            Action::DescribeTopic,
            Resource::Topic("payroll")
        ));
        // Patterns are case-sensitive and anchored.
        assert!(!a.authorize("user:bob", Action::Connect, Resource::Cluster));
        assert!(!a.authorize("XUser:bob", Action::Connect, Resource::Cluster));
        assert!(!a.is_empty());
        assert_eq!(a.policies_for("User:admin").count(), 2);
    }

    #[test]
    fn allow_everyone_if_no_policies() {
        let mut a = Authorizer::new(cluster()).with_allow_everyone_if_no_policies(true);
        assert!(a.authorize("User:anyone", Action::DeleteTopic, Resource::Topic("t")));
        a.attach("User:alice", doc(r#"{"Statement":{"Effect":"Allow","Action":"kafka-cluster:Connect","Resource":"*"}}"#));
        // alice has a policy and is held to it; others still fall through.
        assert!(!a.authorize("User:alice", Action::DeleteTopic, Resource::Topic("t")));
        assert!(a.authorize("User:bob", Action::DeleteTopic, Resource::Topic("t")));
        let strict = Authorizer::new(cluster());
        assert!(!strict.authorize("User:anyone", Action::Connect, Resource::Cluster));
    }
}
