//! API version negotiation: a peer's ApiVersions answer as ranges by API
//! key, and the rule for choosing a version, the highest one both sides
//! support. The client and the broker's peer connections each keep their
//! own table of what they speak and pick through [`PeerVersions::pick`].

use std::collections::HashMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// Why no version could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    #[error("{0:?} is not implemented by this side")]
    NotOurs(ApiKey),
    #[error("broker does not support {0:?}")]
    NotTheirs(ApiKey),
    #[error("no common version of {api:?}: client {ours_min}-{ours_max}, broker {theirs_min}-{theirs_max}")]
    NoCommon {
        api: ApiKey,
        ours_min: i16,
        ours_max: i16,
        theirs_min: i16,
        theirs_max: i16,
    },
}

/// The highest version in both `[ours.0, ours.1]` and `[theirs.0, theirs.1]`.
pub fn highest_common(ours: (i16, i16), theirs: (i16, i16)) -> Option<i16> {
    let v = ours.1.min(theirs.1);
    (v >= ours.0.max(theirs.0)).then_some(v)
}

/// A peer's supported version ranges, by API key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerVersions {
    ranges: HashMap<i16, (i16, i16)>,
}

impl PeerVersions {
    pub fn new(ranges: impl IntoIterator<Item = (i16, i16, i16)>) -> Self {
        PeerVersions {
            ranges: ranges.into_iter().map(|(k, a, b)| (k, (a, b))).collect(),
        }
    }

    /// The ranges an ApiVersions response lists.
    pub fn from_response(resp: &ApiVersionsResponse) -> Self {
        Self::new(
            resp.api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version)),
        )
    }

    /// The peer's range for `api`, if it supports it.
    pub fn range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.ranges.get(&(api as i16)).copied()
    }

    /// The version to use for `api` given `ours`, the (api, lowest,
    /// highest) table of this side: the highest both support.
    pub fn pick(&self, ours: &[(ApiKey, i16, i16)], api: ApiKey) -> Result<i16, VersionError> {
        let (ours_min, ours_max) = ours
            .iter()
            .find(|(k, _, _)| *k == api)
            .map(|(_, a, b)| (*a, *b))
            .ok_or(VersionError::NotOurs(api))?;
        let (theirs_min, theirs_max) = self.range(api).ok_or(VersionError::NotTheirs(api))?;
        highest_common((ours_min, ours_max), (theirs_min, theirs_max)).ok_or(
            VersionError::NoCommon {
                api,
                ours_min,
                ours_max,
                theirs_min,
                theirs_max,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    #[test]
    fn highest_common_version() {
        assert_eq!(highest_common((4, 12), (0, 17)), Some(12));
        assert_eq!(highest_common((4, 16), (4, 13)), Some(13));
        assert_eq!(highest_common((3, 11), (0, 2)), None);
        assert_eq!(highest_common((5, 5), (5, 5)), Some(5));
    }

    #[test]
    fn picks_from_an_api_versions_answer() {
        let mut resp = ApiVersionsResponse::default();
        let mut fetch = ApiVersion::default();
        fetch.api_key = ApiKey::Fetch as i16;
        fetch.min_version = 4;
        fetch.max_version = 16;
        resp.api_keys.push(fetch);
        let peer = PeerVersions::from_response(&resp);
        let ours = [(ApiKey::Fetch, 12, 17), (ApiKey::Produce, 3, 11)];
        assert_eq!(peer.pick(&ours, ApiKey::Fetch), Ok(16));
        assert_eq!(
            peer.pick(&ours, ApiKey::Produce),
            Err(VersionError::NotTheirs(ApiKey::Produce))
        );
        assert_eq!(
            peer.pick(&ours, ApiKey::Metadata),
            Err(VersionError::NotOurs(ApiKey::Metadata))
        );
        let old = [(ApiKey::Fetch, 17, 18)];
        assert!(matches!(
            peer.pick(&old, ApiKey::Fetch),
            Err(VersionError::NoCommon { .. })
        ));
    }
}
