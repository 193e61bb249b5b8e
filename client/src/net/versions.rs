//! The API versions this client speaks, and negotiation against a broker's
//! ApiVersions answer: the highest version both sides support
//! (`sluice_protocol::versions` holds the rule; this file the client's table).

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use sluice_protocol::versions::{PeerVersions, VersionError};

use crate::error::{Error, Result};

/// (api, lowest, highest) this client can send and understand.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    // Transactions as before KIP-890's protocol changes (transaction
    // version 1): the client adds partitions with AddPartitionsToTxn, which
    // every Kafka since 0.11 (4.x included) still serves.
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 3),
];

/// A broker's supported ranges, by API key.
#[derive(Debug, Clone, Default)]
pub struct BrokerVersions {
    ranges: PeerVersions,
}

impl BrokerVersions {
    pub fn new(ranges: impl IntoIterator<Item = (i16, i16, i16)>) -> Self {
        BrokerVersions {
            ranges: PeerVersions::new(ranges),
        }
    }

    /// The ranges a broker's ApiVersions answer lists.
    pub fn from_response(resp: &ApiVersionsResponse) -> Self {
        BrokerVersions {
            ranges: PeerVersions::from_response(resp),
        }
    }

    /// The version to use for `api`: the highest both sides support.
    pub fn pick(&self, api: ApiKey) -> Result<i16> {
        self.ranges.pick(CLIENT_VERSIONS, api).map_err(|e| match e {
            VersionError::NotOurs(api) => {
                Error::Unsupported(format!("{api:?} is not implemented by this client"))
            }
            other => Error::Unsupported(other.to_string()),
        })
    }

    pub fn supports(&self, api: ApiKey) -> bool {
        self.pick(api).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_common() {
        let b = BrokerVersions::new([
            (ApiKey::Fetch as i16, 0, 17),
            (ApiKey::Produce as i16, 3, 8),
        ]);
        assert_eq!(b.pick(ApiKey::Fetch).unwrap(), 12);
        assert_eq!(b.pick(ApiKey::Produce).unwrap(), 8);
        assert!(b.pick(ApiKey::Metadata).is_err());
        let old = BrokerVersions::new([(ApiKey::Produce as i16, 0, 2)]);
        assert!(old.pick(ApiKey::Produce).is_err());
    }
}
