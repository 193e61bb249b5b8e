//! The read-only admin views of the groups: DescribeGroups entries (members
//! with their metadata and assignment only while Stable, as Kafka's group
//! summary) and ListGroups entries with Kafka's state and type filters.
//! The `*_for_version` variants clear what a given API version cannot carry.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::GroupId;
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::error::{code, GroupError};
use super::state::GroupState;
use super::GroupCoordinator;

/// Every classic group lists with this type (ListGroups v5+).
const CLASSIC_GROUP_TYPE: &str = "classic";

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

impl GroupCoordinator {
    /// One DescribeGroups entry, with every field up to v5 filled; an
    /// unknown group is described as "Dead" with no error, as Kafka does
    /// before v6. `authorized_operations` is left for the caller.
    pub fn describe_group(&self, group_id: &str) -> DescribedGroup {
        let mut d = DescribedGroup::default();
        d.group_id = GroupId(s(group_id));
        if self.is_shut_down() {
            d.error_code = code(GroupError::NotCoordinator).code();
            d.group_state = s(GroupState::Dead.name());
            return d;
        }
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id) else {
            d.group_state = s(GroupState::Dead.name());
            return d;
        };
        d.group_state = s(group.state().name());
        d.protocol_type = s(group.protocol_type.clone().unwrap_or_default());
        let stable = group.is(&GroupState::Stable);
        let protocol = if stable {
            group.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        d.members = group
            .members
            .values()
            .map(|m| {
                let mut dm = DescribedGroupMember::default();
                dm.member_id = s(m.id.clone());
                dm.group_instance_id = m.instance_id.clone().map(s);
                dm.client_id = s(m.client_id.clone());
                dm.client_host = s(m.client_host.clone());
                if stable {
                    dm.member_metadata = m.metadata(&protocol);
                    dm.member_assignment = m.assignment.clone();
                }
                dm
            })
            .collect();
        d.protocol_data = s(protocol);
        d
    }

    /// [`describe_group`](Self::describe_group) shaped for a DescribeGroups
    /// `version`: v6+ answers GROUP_ID_NOT_FOUND for unknown groups (as Kafka
    /// 4 does); member instance ids only from v4.
    pub fn describe_group_for_version(&self, group_id: &str, version: i16) -> DescribedGroup {
        let mut d = self.describe_group(group_id);
        if version >= 6
            && d.error_code == ErrorCode::None.code()
            && d.group_state.as_str() == GroupState::Dead.name()
        {
            d.error_code = code(GroupError::GroupIdNotFound).code();
            d.error_message = Some(s(format!("Group {group_id} not found.")));
        }
        if version < 4 {
            for m in &mut d.members {
                m.group_instance_id = None;
            }
        }
        d
    }

    /// ListGroups entries (all fields up to v5), filtered by state names and
    /// group types, both case-insensitive; empty filters match everything.
    pub fn list_groups(
        &self,
        states_filter: &[String],
        types_filter: &[String],
    ) -> Vec<ListedGroup> {
        if !types_filter.is_empty()
            && !types_filter
                .iter()
                .any(|t| t.eq_ignore_ascii_case(CLASSIC_GROUP_TYPE))
        {
            return Vec::new();
        }
        let groups = self.groups.borrow();
        let mut out: Vec<ListedGroup> = groups
            .values()
            .filter(|g| !g.is(&GroupState::Dead))
            .filter(|g| {
                states_filter.is_empty()
                    || states_filter
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state().name()))
            })
            .map(|g| {
                let mut l = ListedGroup::default();
                l.group_id = GroupId(s(g.id.clone()));
                l.protocol_type = s(g.protocol_type.clone().unwrap_or_default());
                l.group_state = s(g.state().name());
                l.group_type = s(CLASSIC_GROUP_TYPE);
                l
            })
            .collect();
        out.sort_by(|a, b| a.group_id.as_str().cmp(b.group_id.as_str()));
        out
    }

    /// [`list_groups`](Self::list_groups) shaped for a ListGroups `version`
    /// (state from v4, type from v5).
    pub fn list_groups_for_version(
        &self,
        states_filter: &[String],
        types_filter: &[String],
        version: i16,
    ) -> Vec<ListedGroup> {
        let mut out = self.list_groups(states_filter, types_filter);
        for l in &mut out {
            if version < 4 {
                l.group_state = StrBytes::default();
            }
            if version < 5 {
                l.group_type = StrBytes::default();
            }
        }
        out
    }
}
