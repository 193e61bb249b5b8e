//! The coordinator's error enum: every way a group request can fail, each
//! variant converting into the Kafka error code Apache Kafka's
//! GroupCoordinator answers with, plus the mapping Kafka applies to errors
//! coming back from the `__consumer_offsets` append.

use kafka_protocol::ResponseError as E;

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
    #[error("log append failed with error code {0}")]
    Log(i16),
}

impl From<GroupError> for i16 {
    fn from(e: GroupError) -> i16 {
        match e {
            GroupError::InvalidGroupId => E::InvalidGroupId.code(),
            GroupError::InvalidSessionTimeout => E::InvalidSessionTimeout.code(),
            GroupError::InconsistentGroupProtocol => E::InconsistentGroupProtocol.code(),
            GroupError::UnknownMemberId => E::UnknownMemberId.code(),
            GroupError::MemberIdRequired => E::MemberIdRequired.code(),
            GroupError::IllegalGeneration => E::IllegalGeneration.code(),
            GroupError::RebalanceInProgress => E::RebalanceInProgress.code(),
            GroupError::GroupMaxSizeReached => E::GroupMaxSizeReached.code(),
            GroupError::FencedInstanceId => E::FencedInstanceId.code(),
            GroupError::CoordinatorNotAvailable => E::CoordinatorNotAvailable.code(),
            GroupError::NotCoordinator => E::NotCoordinator.code(),
            GroupError::OffsetMetadataTooLarge => E::OffsetMetadataTooLarge.code(),
            GroupError::InvalidCommitOffsetSize => E::InvalidCommitOffsetSize.code(),
            GroupError::NonEmptyGroup => E::NonEmptyGroup.code(),
            GroupError::GroupIdNotFound => E::GroupIdNotFound.code(),
            GroupError::GroupSubscribedToTopic => E::GroupSubscribedToTopic.code(),
            GroupError::UnstableOffsetCommit => E::UnstableOffsetCommit.code(),
            GroupError::UnknownServerError => E::UnknownServerError.code(),
            GroupError::Log(code) => code,
        }
    }
}

/// Shorthand used when building responses.
pub(super) fn code(e: GroupError) -> i16 {
    e.into()
}

fn is(code: i16, e: E) -> bool {
    code == e.code()
}

/// Kafka's translation of a failed offset-commit append (GroupMetadataManager.storeOffsets).
pub(super) fn map_offset_store_error(log_code: i16) -> GroupError {
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
pub(super) fn map_group_store_error(log_code: i16) -> GroupError {
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
