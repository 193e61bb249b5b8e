//! The coordinator's error enum: every way a group request can fail, each
//! variant converting into the Kafka error code Apache Kafka's
//! GroupCoordinator answers with, plus the mapping Kafka applies to errors
//! coming back from the `__consumer_offsets` append.

use sluice_protocol::ErrorCode as E;

/// A group-coordinator failure, as Kafka reports it on the wire.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("invalid (empty) group id")]
    InvalidGroupId,
    #[error("session timeout outside group.min/max.session.timeout.ms")]
    InvalidSessionTimeout,
    #[error("protocol type or protocols incompatible with the group")]
    InconsistentGroupProtocol,
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("member must rejoin with the member id it was given")]
    MemberIdRequired,
    #[error("stale generation")]
    IllegalGeneration,
    #[error("group is rebalancing")]
    RebalanceInProgress,
    #[error("group.max.size reached")]
    GroupMaxSizeReached,
    #[error("another member owns this group.instance.id")]
    FencedInstanceId,
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    #[error("not the coordinator")]
    NotCoordinator,
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    #[error("commit too large for the offsets log")]
    InvalidCommitOffsetSize,
    #[error("group still has members")]
    NonEmptyGroup,
    #[error("group not found")]
    GroupIdNotFound,
    #[error("group is subscribed to the topic")]
    GroupSubscribedToTopic,
    #[error("offset commit in flight")]
    UnstableOffsetCommit,
    #[error("unknown server error")]
    UnknownServerError,
    /// An error code passed through from the log as it is.
    #[error("log append failed with {0}")]
    Log(E),
}

impl From<GroupError> for E {
    fn from(e: GroupError) -> E {
        match e {
            GroupError::InvalidGroupId => E::InvalidGroupId,
            GroupError::InvalidSessionTimeout => E::InvalidSessionTimeout,
            GroupError::InconsistentGroupProtocol => E::InconsistentGroupProtocol,
            GroupError::UnknownMemberId => E::UnknownMemberId,
            GroupError::MemberIdRequired => E::MemberIdRequired,
            GroupError::IllegalGeneration => E::IllegalGeneration,
            GroupError::RebalanceInProgress => E::RebalanceInProgress,
            GroupError::GroupMaxSizeReached => E::GroupMaxSizeReached,
            GroupError::FencedInstanceId => E::FencedInstanceId,
            GroupError::CoordinatorNotAvailable => E::CoordinatorNotAvailable,
            GroupError::NotCoordinator => E::NotCoordinator,
            GroupError::OffsetMetadataTooLarge => E::OffsetMetadataTooLarge,
            GroupError::InvalidCommitOffsetSize => E::InvalidCommitOffsetSize,
            GroupError::NonEmptyGroup => E::NonEmptyGroup,
            GroupError::GroupIdNotFound => E::GroupIdNotFound,
            GroupError::GroupSubscribedToTopic => E::GroupSubscribedToTopic,
            GroupError::UnstableOffsetCommit => E::UnstableOffsetCommit,
            GroupError::UnknownServerError => E::UnknownServerError,
            GroupError::Log(code) => code,
        }
    }
}

/// Shorthand used when building responses.
pub(super) fn code(e: GroupError) -> E {
    e.into()
}

fn is(code: E, e: E) -> bool {
    code == e
}

/// Kafka's translation of a failed offset-commit append (GroupMetadataManager.storeOffsets).
pub(super) fn map_offset_store_error(log_code: E) -> GroupError {
    if is(log_code, E::UnknownTopicOrPartition)
        || is(log_code, E::NotEnoughReplicas)
        || is(log_code, E::NotEnoughReplicasAfterAppend)
    {
        GroupError::CoordinatorNotAvailable
    } else if is(log_code, E::NotLeaderOrFollower) || is(log_code, E::KafkaStorageError) {
        GroupError::NotCoordinator
    } else if is(log_code, E::MessageTooLarge)
        || is(log_code, E::RecordListTooLarge)
        || is(log_code, E::InvalidFetchSize)
    {
        GroupError::InvalidCommitOffsetSize
    } else {
        GroupError::Log(log_code)
    }
}

/// Kafka's translation of a failed group-metadata append (GroupMetadataManager.storeGroup).
pub(super) fn map_group_store_error(log_code: E) -> GroupError {
    if is(log_code, E::UnknownTopicOrPartition)
        || is(log_code, E::NotEnoughReplicas)
        || is(log_code, E::NotEnoughReplicasAfterAppend)
        || is(log_code, E::RequestTimedOut)
    {
        GroupError::CoordinatorNotAvailable
    } else if is(log_code, E::NotLeaderOrFollower) || is(log_code, E::KafkaStorageError) {
        GroupError::NotCoordinator
    } else if is(log_code, E::MessageTooLarge)
        || is(log_code, E::RecordListTooLarge)
        || is(log_code, E::InvalidFetchSize)
    {
        GroupError::UnknownServerError
    } else {
        GroupError::Log(log_code)
    }
}
