//! What the consumer reads: topic names or a pattern (group-managed), or
//! partitions the application assigned itself.

use std::collections::BTreeSet;

use regex::Regex;

/// What the application asked to read.
#[derive(Debug, Clone, Default)]
pub(crate) enum Subscription {
    #[default]
    None,
    /// `subscribe(topics)`: group-managed.
    Topics(BTreeSet<String>),
    /// `subscribe_pattern(regex)`: group-managed; `matched` is the set of
    /// cluster topics matching at the last metadata refresh.
    Pattern {
        regex: Regex,
        matched: BTreeSet<String>,
    },
    /// `assign(partitions)`: no group membership.
    Manual,
}

impl Subscription {
    /// Whether the group coordinator assigns partitions.
    pub fn is_group_managed(&self) -> bool {
        matches!(self, Subscription::Topics(_) | Subscription::Pattern { .. })
    }

    /// The topics to put in JoinGroup.
    pub fn topics(&self) -> BTreeSet<String> {
        match self {
            Subscription::Topics(t) => t.clone(),
            Subscription::Pattern { matched, .. } => matched.clone(),
            _ => BTreeSet::new(),
        }
    }
}
