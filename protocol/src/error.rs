//! Kafka's error codes as one enum, [`ErrorCode`]: each variant carries
//! Kafka's wire code, its SCREAMING_SNAKE name (as `Errors.java` spells it),
//! whether Kafka's clients treat it as retriable, and Kafka's message. The
//! broker answers with these, the client decodes into them, and the Python
//! and Node error classes are generated from [`ErrorCode::ALL`]
//! (`scripts/gen-errors`), so no crate spells a code as a bare number.

/// One of Kafka's protocol error codes (`NONE` = 0 included).
///
/// Codes this table does not know (a newer broker's) decode through
/// [`ErrorCode::from_code`] as [`ErrorCode::UnknownServerError`], as the Java
/// client's `Errors.forCode` does; [`ErrorCode::try_from_code`] tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No error.
    None = 0,
    /// The server experienced an unexpected error when processing the request.
    UnknownServerError = -1,
    /// The requested offset is not within the range of offsets maintained by the server.
    OffsetOutOfRange = 1,
    /// This message has failed its CRC checksum, exceeds the valid size, has a null key for a compacted topic, or is otherwise corrupt.
    CorruptMessage = 2,
    /// This server does not host this topic-partition.
    UnknownTopicOrPartition = 3,
    /// The requested fetch size is invalid.
    InvalidFetchSize = 4,
    /// There is no leader for this topic-partition as we are in the middle of a leadership election.
    LeaderNotAvailable = 5,
    /// For requests intended only for the leader, this error indicates that the broker is not the current leader. For requests intended for any replica, this error indicates that the broker is not a replica of the topic partition.
    NotLeaderOrFollower = 6,
    /// The request timed out.
    RequestTimedOut = 7,
    /// The broker is not available.
    BrokerNotAvailable = 8,
    /// The replica is not available for the requested topic-partition. Produce/Fetch requests and other requests intended only for the leader or follower return NOT_LEADER_OR_FOLLOWER if the broker is not a replica of the topic-partition.
    ReplicaNotAvailable = 9,
    /// The request included a message larger than the max message size the server will accept.
    MessageTooLarge = 10,
    /// The controller moved to another broker.
    StaleControllerEpoch = 11,
    /// The metadata field of the offset request was too large.
    OffsetMetadataTooLarge = 12,
    /// The server disconnected before a response was received.
    NetworkException = 13,
    /// The coordinator is loading and hence can't process requests.
    CoordinatorLoadInProgress = 14,
    /// The coordinator is not available.
    CoordinatorNotAvailable = 15,
    /// This is not the correct coordinator.
    NotCoordinator = 16,
    /// The request attempted to perform an operation on an invalid topic.
    InvalidTopicException = 17,
    /// The request included message batch larger than the configured segment size on the server.
    RecordListTooLarge = 18,
    /// Messages are rejected since there are fewer in-sync replicas than required.
    NotEnoughReplicas = 19,
    /// Messages are written to the log, but to fewer in-sync replicas than required.
    NotEnoughReplicasAfterAppend = 20,
    /// Produce request specified an invalid value for required acks.
    InvalidRequiredAcks = 21,
    /// Specified group generation id is not valid.
    IllegalGeneration = 22,
    /// The group member's supported protocols are incompatible with those of existing members or first group member tried to join with empty protocol type or empty protocol list.
    InconsistentGroupProtocol = 23,
    /// The configured groupId is invalid.
    InvalidGroupId = 24,
    /// The coordinator is not aware of this member.
    UnknownMemberId = 25,
    /// The session timeout is not within the range allowed by the broker (as configured by group.min.session.timeout.ms and group.max.session.timeout.ms).
    InvalidSessionTimeout = 26,
    /// The group is rebalancing, so a rejoin is needed.
    RebalanceInProgress = 27,
    /// The committing offset data size is not valid.
    InvalidCommitOffsetSize = 28,
    /// Topic authorization failed.
    TopicAuthorizationFailed = 29,
    /// Group authorization failed.
    GroupAuthorizationFailed = 30,
    /// Cluster authorization failed.
    ClusterAuthorizationFailed = 31,
    /// The timestamp of the message is out of acceptable range.
    InvalidTimestamp = 32,
    /// The broker does not support the requested SASL mechanism.
    UnsupportedSaslMechanism = 33,
    /// Request is not valid given the current SASL state.
    IllegalSaslState = 34,
    /// The version of API is not supported.
    UnsupportedVersion = 35,
    /// Topic with this name already exists.
    TopicAlreadyExists = 36,
    /// Number of partitions is below 1.
    InvalidPartitions = 37,
    /// Replication factor is below 1 or larger than the number of available brokers.
    InvalidReplicationFactor = 38,
    /// Replica assignment is invalid.
    InvalidReplicaAssignment = 39,
    /// Configuration is invalid.
    InvalidConfig = 40,
    /// This is not the correct controller for this cluster.
    NotController = 41,
    /// This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details.
    InvalidRequest = 42,
    /// The message format version on the broker does not support the request.
    UnsupportedForMessageFormat = 43,
    /// Request parameters do not satisfy the configured policy.
    PolicyViolation = 44,
    /// The broker received an out of order sequence number.
    OutOfOrderSequenceNumber = 45,
    /// The broker received a duplicate sequence number.
    DuplicateSequenceNumber = 46,
    /// Producer attempted to produce with an old epoch.
    InvalidProducerEpoch = 47,
    /// The producer attempted a transactional operation in an invalid state.
    InvalidTxnState = 48,
    /// The producer attempted to use a producer id which is not currently assigned to its transactional id.
    InvalidProducerIdMapping = 49,
    /// The transaction timeout is larger than the maximum value allowed by the broker (as configured by transaction.max.timeout.ms).
    InvalidTransactionTimeout = 50,
    /// The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing.
    ConcurrentTransactions = 51,
    /// Indicates that the transaction coordinator sending a WriteTxnMarker is no longer the current coordinator for a given producer.
    TransactionCoordinatorFenced = 52,
    /// Transactional Id authorization failed.
    TransactionalIdAuthorizationFailed = 53,
    /// Security features are disabled.
    SecurityDisabled = 54,
    /// The broker did not attempt to execute this operation. This may happen for batched RPCs where some operations in the batch failed, causing the broker to respond without trying the rest.
    OperationNotAttempted = 55,
    /// Disk error when trying to access log file on the disk.
    KafkaStorageError = 56,
    /// The user-specified log directory is not found in the broker config.
    LogDirNotFound = 57,
    /// SASL Authentication failed.
    SaslAuthenticationFailed = 58,
    /// This exception is raised by the broker if it could not locate the producer metadata associated with the producerId in question. This could happen if, for instance, the producer's records were deleted because their retention time had elapsed. Once the last records of the producerId are removed, the producer's metadata is removed from the broker, and future appends by the producer will return this exception.
    UnknownProducerId = 59,
    /// A partition reassignment is in progress.
    ReassignmentInProgress = 60,
    /// Delegation Token feature is not enabled.
    DelegationTokenAuthDisabled = 61,
    /// Delegation Token is not found on server.
    DelegationTokenNotFound = 62,
    /// Specified Principal is not valid Owner/Renewer.
    DelegationTokenOwnerMismatch = 63,
    /// Delegation Token requests are not allowed on PLAINTEXT/1-way SSL channels and on delegation token authenticated channels.
    DelegationTokenRequestNotAllowed = 64,
    /// Delegation Token authorization failed.
    DelegationTokenAuthorizationFailed = 65,
    /// Delegation Token is expired.
    DelegationTokenExpired = 66,
    /// Supplied principalType is not supported.
    InvalidPrincipalType = 67,
    /// The group is not empty.
    NonEmptyGroup = 68,
    /// The group id does not exist.
    GroupIdNotFound = 69,
    /// The fetch session ID was not found.
    FetchSessionIdNotFound = 70,
    /// The fetch session epoch is invalid.
    InvalidFetchSessionEpoch = 71,
    /// There is no listener on the leader broker that matches the listener on which metadata request was processed.
    ListenerNotFound = 72,
    /// Topic deletion is disabled.
    TopicDeletionDisabled = 73,
    /// The leader epoch in the request is older than the epoch on the broker.
    FencedLeaderEpoch = 74,
    /// The leader epoch in the request is newer than the epoch on the broker.
    UnknownLeaderEpoch = 75,
    /// The requesting client does not support the compression type of given partition.
    UnsupportedCompressionType = 76,
    /// Broker epoch has changed.
    StaleBrokerEpoch = 77,
    /// The leader high watermark has not caught up from a recent leader election so the offsets cannot be guaranteed to be monotonically increasing.
    OffsetNotAvailable = 78,
    /// The group member needs to have a valid member id before actually entering a consumer group.
    MemberIdRequired = 79,
    /// The preferred leader was not available.
    PreferredLeaderNotAvailable = 80,
    /// The consumer group has reached its max size.
    GroupMaxSizeReached = 81,
    /// The broker rejected this static consumer since another consumer with the same group.instance.id has registered with a different member.id.
    FencedInstanceId = 82,
    /// Eligible topic partition leaders are not available.
    EligibleLeadersNotAvailable = 83,
    /// Leader election not needed for topic partition.
    ElectionNotNeeded = 84,
    /// No partition reassignment is in progress.
    NoReassignmentInProgress = 85,
    /// Deleting offsets of a topic is forbidden while the consumer group is actively subscribed to it.
    GroupSubscribedToTopic = 86,
    /// This record has failed the validation on broker and hence will be rejected.
    InvalidRecord = 87,
    /// There are unstable offsets that need to be cleared.
    UnstableOffsetCommit = 88,
    /// The throttling quota has been exceeded.
    ThrottlingQuotaExceeded = 89,
    /// There is a newer producer with the same transactionalId which fences the current one.
    ProducerFenced = 90,
    /// A request illegally referred to a resource that does not exist.
    ResourceNotFound = 91,
    /// A request illegally referred to the same resource twice.
    DuplicateResource = 92,
    /// Requested credential would not meet criteria for acceptability.
    UnacceptableCredential = 93,
    /// Indicates that the either the sender or recipient of a voter-only request is not one of the expected voters
    InconsistentVoterSet = 94,
    /// The given update version was invalid.
    InvalidUpdateVersion = 95,
    /// Unable to update finalized features due to an unexpected server error.
    FeatureUpdateFailed = 96,
    /// Request principal deserialization failed during forwarding. This indicates an internal error on the broker cluster security setup.
    PrincipalDeserializationFailure = 97,
    /// Requested snapshot was not found
    SnapshotNotFound = 98,
    /// Requested position is not greater than or equal to zero, and less than the size of the snapshot.
    PositionOutOfRange = 99,
    /// This server does not host this topic ID.
    UnknownTopicId = 100,
    /// This broker ID is already in use.
    DuplicateBrokerRegistration = 101,
    /// The given broker ID was not registered.
    BrokerIdNotRegistered = 102,
    /// The log's topic ID did not match the topic ID in the request
    InconsistentTopicId = 103,
    /// The clusterId in the request does not match that found on the server
    InconsistentClusterId = 104,
    /// The transactionalId could not be found
    TransactionalIdNotFound = 105,
    /// The fetch session encountered inconsistent topic ID usage
    FetchSessionTopicIdError = 106,
    /// The new ISR contains at least one ineligible replica.
    IneligibleReplica = 107,
    /// The AlterPartition request successfully updated the partition state but the leader has changed.
    NewLeaderElected = 108,
    /// The requested offset is moved to tiered storage.
    OffsetMovedToTieredStorage = 109,
    /// The member epoch is fenced by the group coordinator. The member must abandon all its partitions and rejoin.
    FencedMemberEpoch = 110,
    /// The instance ID is still used by another member in the consumer group. That member must leave first.
    UnreleasedInstanceId = 111,
    /// The assignor or its version range is not supported by the consumer group.
    UnsupportedAssignor = 112,
    /// The member epoch is stale. The member must retry after receiving its updated member epoch via the ConsumerGroupHeartbeat API.
    StaleMemberEpoch = 113,
    /// The request was sent to an endpoint of the wrong type.
    MismatchedEndpointType = 114,
    /// This endpoint type is not supported yet.
    UnsupportedEndpointType = 115,
    /// This controller ID is not known.
    UnknownControllerId = 116,
    /// Client sent a push telemetry request with an invalid or outdated subscription ID.
    UnknownSubscriptionId = 117,
    /// Client sent a push telemetry request larger than the maximum size the broker will accept.
    TelemetryTooLarge = 118,
    /// The controller has considered the broker registration to be invalid.
    InvalidRegistration = 119,
    /// The server encountered an error with the transaction. The client can abort the transaction to continue using this transactional ID.
    TransactionAbortable = 120,
    /// The record state is invalid. The acknowledgement of delivery could not be completed.
    InvalidRecordState = 121,
    /// The share session was not found.
    ShareSessionNotFound = 122,
    /// The share session epoch is invalid.
    InvalidShareSessionEpoch = 123,
    /// The share coordinator rejected the request because the share-group state epoch did not match.
    FencedStateEpoch = 124,
    /// The voter key doesn't match the receiving replica's key.
    InvalidVoterKey = 125,
    /// The voter is already part of the set of voters.
    DuplicateVoter = 126,
    /// The voter is not part of the set of voters.
    VoterNotFound = 127,
    /// The regular expression is not valid.
    InvalidRegularExpression = 128,
    /// Client metadata is stale, client should rebootstrap to obtain new metadata.
    RebootstrapRequired = 129,
    /// The supplied topology is invalid.
    StreamsInvalidTopology = 130,
    /// The supplied topology epoch is invalid.
    StreamsInvalidTopologyEpoch = 131,
    /// The supplied topology epoch is outdated.
    StreamsTopologyFenced = 132,
    /// The limit of share sessions has been reached.
    ShareSessionLimitReached = 133,
}

/// (variant, SCREAMING_SNAKE name, retriable, Kafka's message) for every code.
const TABLE: &[(ErrorCode, &str, bool, &str)] = &[
    (ErrorCode::None, "NONE", false, "No error."),
    (ErrorCode::UnknownServerError, "UNKNOWN_SERVER_ERROR", false, "The server experienced an unexpected error when processing the request."),
    (ErrorCode::OffsetOutOfRange, "OFFSET_OUT_OF_RANGE", false, "The requested offset is not within the range of offsets maintained by the server."),
    (ErrorCode::CorruptMessage, "CORRUPT_MESSAGE", true, "This message has failed its CRC checksum, exceeds the valid size, has a null key for a compacted topic, or is otherwise corrupt."),
    (ErrorCode::UnknownTopicOrPartition, "UNKNOWN_TOPIC_OR_PARTITION", true, "This server does not host this topic-partition."),
    (ErrorCode::InvalidFetchSize, "INVALID_FETCH_SIZE", false, "The requested fetch size is invalid."),
    (ErrorCode::LeaderNotAvailable, "LEADER_NOT_AVAILABLE", true, "There is no leader for this topic-partition as we are in the middle of a leadership election."),
    (ErrorCode::NotLeaderOrFollower, "NOT_LEADER_OR_FOLLOWER", true, "For requests intended only for the leader, this error indicates that the broker is not the current leader. For requests intended for any replica, this error indicates that the broker is not a replica of the topic partition."),
    (ErrorCode::RequestTimedOut, "REQUEST_TIMED_OUT", true, "The request timed out."),
    (ErrorCode::BrokerNotAvailable, "BROKER_NOT_AVAILABLE", false, "The broker is not available."),
    (ErrorCode::ReplicaNotAvailable, "REPLICA_NOT_AVAILABLE", true, "The replica is not available for the requested topic-partition. Produce/Fetch requests and other requests intended only for the leader or follower return NOT_LEADER_OR_FOLLOWER if the broker is not a replica of the topic-partition."),
    (ErrorCode::MessageTooLarge, "MESSAGE_TOO_LARGE", false, "The request included a message larger than the max message size the server will accept."),
    (ErrorCode::StaleControllerEpoch, "STALE_CONTROLLER_EPOCH", false, "The controller moved to another broker."),
    (ErrorCode::OffsetMetadataTooLarge, "OFFSET_METADATA_TOO_LARGE", false, "The metadata field of the offset request was too large."),
    (ErrorCode::NetworkException, "NETWORK_EXCEPTION", true, "The server disconnected before a response was received."),
    (ErrorCode::CoordinatorLoadInProgress, "COORDINATOR_LOAD_IN_PROGRESS", true, "The coordinator is loading and hence can't process requests."),
    (ErrorCode::CoordinatorNotAvailable, "COORDINATOR_NOT_AVAILABLE", true, "The coordinator is not available."),
    (ErrorCode::NotCoordinator, "NOT_COORDINATOR", true, "This is not the correct coordinator."),
    (ErrorCode::InvalidTopicException, "INVALID_TOPIC_EXCEPTION", false, "The request attempted to perform an operation on an invalid topic."),
    (ErrorCode::RecordListTooLarge, "RECORD_LIST_TOO_LARGE", false, "The request included message batch larger than the configured segment size on the server."),
    (ErrorCode::NotEnoughReplicas, "NOT_ENOUGH_REPLICAS", true, "Messages are rejected since there are fewer in-sync replicas than required."),
    (ErrorCode::NotEnoughReplicasAfterAppend, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", true, "Messages are written to the log, but to fewer in-sync replicas than required."),
    (ErrorCode::InvalidRequiredAcks, "INVALID_REQUIRED_ACKS", false, "Produce request specified an invalid value for required acks."),
    (ErrorCode::IllegalGeneration, "ILLEGAL_GENERATION", false, "Specified group generation id is not valid."),
    (ErrorCode::InconsistentGroupProtocol, "INCONSISTENT_GROUP_PROTOCOL", false, "The group member's supported protocols are incompatible with those of existing members or first group member tried to join with empty protocol type or empty protocol list."),
    (ErrorCode::InvalidGroupId, "INVALID_GROUP_ID", false, "The configured groupId is invalid."),
    (ErrorCode::UnknownMemberId, "UNKNOWN_MEMBER_ID", false, "The coordinator is not aware of this member."),
    (ErrorCode::InvalidSessionTimeout, "INVALID_SESSION_TIMEOUT", false, "The session timeout is not within the range allowed by the broker (as configured by group.min.session.timeout.ms and group.max.session.timeout.ms)."),
    (ErrorCode::RebalanceInProgress, "REBALANCE_IN_PROGRESS", false, "The group is rebalancing, so a rejoin is needed."),
    (ErrorCode::InvalidCommitOffsetSize, "INVALID_COMMIT_OFFSET_SIZE", false, "The committing offset data size is not valid."),
    (ErrorCode::TopicAuthorizationFailed, "TOPIC_AUTHORIZATION_FAILED", false, "Topic authorization failed."),
    (ErrorCode::GroupAuthorizationFailed, "GROUP_AUTHORIZATION_FAILED", false, "Group authorization failed."),
    (ErrorCode::ClusterAuthorizationFailed, "CLUSTER_AUTHORIZATION_FAILED", false, "Cluster authorization failed."),
    (ErrorCode::InvalidTimestamp, "INVALID_TIMESTAMP", false, "The timestamp of the message is out of acceptable range."),
    (ErrorCode::UnsupportedSaslMechanism, "UNSUPPORTED_SASL_MECHANISM", false, "The broker does not support the requested SASL mechanism."),
    (ErrorCode::IllegalSaslState, "ILLEGAL_SASL_STATE", false, "Request is not valid given the current SASL state."),
    (ErrorCode::UnsupportedVersion, "UNSUPPORTED_VERSION", false, "The version of API is not supported."),
    (ErrorCode::TopicAlreadyExists, "TOPIC_ALREADY_EXISTS", false, "Topic with this name already exists."),
    (ErrorCode::InvalidPartitions, "INVALID_PARTITIONS", false, "Number of partitions is below 1."),
    (ErrorCode::InvalidReplicationFactor, "INVALID_REPLICATION_FACTOR", false, "Replication factor is below 1 or larger than the number of available brokers."),
    (ErrorCode::InvalidReplicaAssignment, "INVALID_REPLICA_ASSIGNMENT", false, "Replica assignment is invalid."),
    (ErrorCode::InvalidConfig, "INVALID_CONFIG", false, "Configuration is invalid."),
    (ErrorCode::NotController, "NOT_CONTROLLER", true, "This is not the correct controller for this cluster."),
    (ErrorCode::InvalidRequest, "INVALID_REQUEST", false, "This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details."),
    (ErrorCode::UnsupportedForMessageFormat, "UNSUPPORTED_FOR_MESSAGE_FORMAT", false, "The message format version on the broker does not support the request."),
    (ErrorCode::PolicyViolation, "POLICY_VIOLATION", false, "Request parameters do not satisfy the configured policy."),
    (ErrorCode::OutOfOrderSequenceNumber, "OUT_OF_ORDER_SEQUENCE_NUMBER", false, "The broker received an out of order sequence number."),
    (ErrorCode::DuplicateSequenceNumber, "DUPLICATE_SEQUENCE_NUMBER", false, "The broker received a duplicate sequence number."),
    (ErrorCode::InvalidProducerEpoch, "INVALID_PRODUCER_EPOCH", false, "Producer attempted to produce with an old epoch."),
    (ErrorCode::InvalidTxnState, "INVALID_TXN_STATE", false, "The producer attempted a transactional operation in an invalid state."),
    (ErrorCode::InvalidProducerIdMapping, "INVALID_PRODUCER_ID_MAPPING", false, "The producer attempted to use a producer id which is not currently assigned to its transactional id."),
    (ErrorCode::InvalidTransactionTimeout, "INVALID_TRANSACTION_TIMEOUT", false, "The transaction timeout is larger than the maximum value allowed by the broker (as configured by transaction.max.timeout.ms)."),
    (ErrorCode::ConcurrentTransactions, "CONCURRENT_TRANSACTIONS", false, "The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing."),
    (ErrorCode::TransactionCoordinatorFenced, "TRANSACTION_COORDINATOR_FENCED", false, "Indicates that the transaction coordinator sending a WriteTxnMarker is no longer the current coordinator for a given producer."),
    (ErrorCode::TransactionalIdAuthorizationFailed, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", false, "Transactional Id authorization failed."),
    (ErrorCode::SecurityDisabled, "SECURITY_DISABLED", false, "Security features are disabled."),
    (ErrorCode::OperationNotAttempted, "OPERATION_NOT_ATTEMPTED", false, "The broker did not attempt to execute this operation. This may happen for batched RPCs where some operations in the batch failed, causing the broker to respond without trying the rest."),
    (ErrorCode::KafkaStorageError, "KAFKA_STORAGE_ERROR", true, "Disk error when trying to access log file on the disk."),
    (ErrorCode::LogDirNotFound, "LOG_DIR_NOT_FOUND", false, "The user-specified log directory is not found in the broker config."),
    (ErrorCode::SaslAuthenticationFailed, "SASL_AUTHENTICATION_FAILED", false, "SASL Authentication failed."),
    (ErrorCode::UnknownProducerId, "UNKNOWN_PRODUCER_ID", false, "This exception is raised by the broker if it could not locate the producer metadata associated with the producerId in question. This could happen if, for instance, the producer's records were deleted because their retention time had elapsed. Once the last records of the producerId are removed, the producer's metadata is removed from the broker, and future appends by the producer will return this exception."),
    (ErrorCode::ReassignmentInProgress, "REASSIGNMENT_IN_PROGRESS", false, "A partition reassignment is in progress."),
    (ErrorCode::DelegationTokenAuthDisabled, "DELEGATION_TOKEN_AUTH_DISABLED", false, "Delegation Token feature is not enabled."),
    (ErrorCode::DelegationTokenNotFound, "DELEGATION_TOKEN_NOT_FOUND", false, "Delegation Token is not found on server."),
    (ErrorCode::DelegationTokenOwnerMismatch, "DELEGATION_TOKEN_OWNER_MISMATCH", false, "Specified Principal is not valid Owner/Renewer."),
    (ErrorCode::DelegationTokenRequestNotAllowed, "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED", false, "Delegation Token requests are not allowed on PLAINTEXT/1-way SSL channels and on delegation token authenticated channels."),
    (ErrorCode::DelegationTokenAuthorizationFailed, "DELEGATION_TOKEN_AUTHORIZATION_FAILED", false, "Delegation Token authorization failed."),
    (ErrorCode::DelegationTokenExpired, "DELEGATION_TOKEN_EXPIRED", false, "Delegation Token is expired."),
    (ErrorCode::InvalidPrincipalType, "INVALID_PRINCIPAL_TYPE", false, "Supplied principalType is not supported."),
    (ErrorCode::NonEmptyGroup, "NON_EMPTY_GROUP", false, "The group is not empty."),
    (ErrorCode::GroupIdNotFound, "GROUP_ID_NOT_FOUND", false, "The group id does not exist."),
    (ErrorCode::FetchSessionIdNotFound, "FETCH_SESSION_ID_NOT_FOUND", true, "The fetch session ID was not found."),
    (ErrorCode::InvalidFetchSessionEpoch, "INVALID_FETCH_SESSION_EPOCH", true, "The fetch session epoch is invalid."),
    (ErrorCode::ListenerNotFound, "LISTENER_NOT_FOUND", true, "There is no listener on the leader broker that matches the listener on which metadata request was processed."),
    (ErrorCode::TopicDeletionDisabled, "TOPIC_DELETION_DISABLED", false, "Topic deletion is disabled."),
    (ErrorCode::FencedLeaderEpoch, "FENCED_LEADER_EPOCH", true, "The leader epoch in the request is older than the epoch on the broker."),
    (ErrorCode::UnknownLeaderEpoch, "UNKNOWN_LEADER_EPOCH", true, "The leader epoch in the request is newer than the epoch on the broker."),
    (ErrorCode::UnsupportedCompressionType, "UNSUPPORTED_COMPRESSION_TYPE", false, "The requesting client does not support the compression type of given partition."),
    (ErrorCode::StaleBrokerEpoch, "STALE_BROKER_EPOCH", false, "Broker epoch has changed."),
    (ErrorCode::OffsetNotAvailable, "OFFSET_NOT_AVAILABLE", true, "The leader high watermark has not caught up from a recent leader election so the offsets cannot be guaranteed to be monotonically increasing."),
    (ErrorCode::MemberIdRequired, "MEMBER_ID_REQUIRED", false, "The group member needs to have a valid member id before actually entering a consumer group."),
    (ErrorCode::PreferredLeaderNotAvailable, "PREFERRED_LEADER_NOT_AVAILABLE", true, "The preferred leader was not available."),
    (ErrorCode::GroupMaxSizeReached, "GROUP_MAX_SIZE_REACHED", false, "The consumer group has reached its max size."),
    (ErrorCode::FencedInstanceId, "FENCED_INSTANCE_ID", false, "The broker rejected this static consumer since another consumer with the same group.instance.id has registered with a different member.id."),
    (ErrorCode::EligibleLeadersNotAvailable, "ELIGIBLE_LEADERS_NOT_AVAILABLE", true, "Eligible topic partition leaders are not available."),
    (ErrorCode::ElectionNotNeeded, "ELECTION_NOT_NEEDED", true, "Leader election not needed for topic partition."),
    (ErrorCode::NoReassignmentInProgress, "NO_REASSIGNMENT_IN_PROGRESS", false, "No partition reassignment is in progress."),
    (ErrorCode::GroupSubscribedToTopic, "GROUP_SUBSCRIBED_TO_TOPIC", false, "Deleting offsets of a topic is forbidden while the consumer group is actively subscribed to it."),
    (ErrorCode::InvalidRecord, "INVALID_RECORD", false, "This record has failed the validation on broker and hence will be rejected."),
    (ErrorCode::UnstableOffsetCommit, "UNSTABLE_OFFSET_COMMIT", true, "There are unstable offsets that need to be cleared."),
    (ErrorCode::ThrottlingQuotaExceeded, "THROTTLING_QUOTA_EXCEEDED", true, "The throttling quota has been exceeded."),
    (ErrorCode::ProducerFenced, "PRODUCER_FENCED", false, "There is a newer producer with the same transactionalId which fences the current one."),
    (ErrorCode::ResourceNotFound, "RESOURCE_NOT_FOUND", false, "A request illegally referred to a resource that does not exist."),
    (ErrorCode::DuplicateResource, "DUPLICATE_RESOURCE", false, "A request illegally referred to the same resource twice."),
    (ErrorCode::UnacceptableCredential, "UNACCEPTABLE_CREDENTIAL", false, "Requested credential would not meet criteria for acceptability."),
    (ErrorCode::InconsistentVoterSet, "INCONSISTENT_VOTER_SET", false, "Indicates that the either the sender or recipient of a voter-only request is not one of the expected voters"),
    (ErrorCode::InvalidUpdateVersion, "INVALID_UPDATE_VERSION", false, "The given update version was invalid."),
    (ErrorCode::FeatureUpdateFailed, "FEATURE_UPDATE_FAILED", false, "Unable to update finalized features due to an unexpected server error."),
    (ErrorCode::PrincipalDeserializationFailure, "PRINCIPAL_DESERIALIZATION_FAILURE", false, "Request principal deserialization failed during forwarding. This indicates an internal error on the broker cluster security setup."),
    (ErrorCode::SnapshotNotFound, "SNAPSHOT_NOT_FOUND", false, "Requested snapshot was not found"),
    (ErrorCode::PositionOutOfRange, "POSITION_OUT_OF_RANGE", false, "Requested position is not greater than or equal to zero, and less than the size of the snapshot."),
    (ErrorCode::UnknownTopicId, "UNKNOWN_TOPIC_ID", true, "This server does not host this topic ID."),
    (ErrorCode::DuplicateBrokerRegistration, "DUPLICATE_BROKER_REGISTRATION", false, "This broker ID is already in use."),
    (ErrorCode::BrokerIdNotRegistered, "BROKER_ID_NOT_REGISTERED", false, "The given broker ID was not registered."),
    (ErrorCode::InconsistentTopicId, "INCONSISTENT_TOPIC_ID", true, "The log's topic ID did not match the topic ID in the request"),
    (ErrorCode::InconsistentClusterId, "INCONSISTENT_CLUSTER_ID", false, "The clusterId in the request does not match that found on the server"),
    (ErrorCode::TransactionalIdNotFound, "TRANSACTIONAL_ID_NOT_FOUND", false, "The transactionalId could not be found"),
    (ErrorCode::FetchSessionTopicIdError, "FETCH_SESSION_TOPIC_ID_ERROR", true, "The fetch session encountered inconsistent topic ID usage"),
    (ErrorCode::IneligibleReplica, "INELIGIBLE_REPLICA", false, "The new ISR contains at least one ineligible replica."),
    (ErrorCode::NewLeaderElected, "NEW_LEADER_ELECTED", false, "The AlterPartition request successfully updated the partition state but the leader has changed."),
    (ErrorCode::OffsetMovedToTieredStorage, "OFFSET_MOVED_TO_TIERED_STORAGE", false, "The requested offset is moved to tiered storage."),
    (ErrorCode::FencedMemberEpoch, "FENCED_MEMBER_EPOCH", false, "The member epoch is fenced by the group coordinator. The member must abandon all its partitions and rejoin."),
    (ErrorCode::UnreleasedInstanceId, "UNRELEASED_INSTANCE_ID", false, "The instance ID is still used by another member in the consumer group. That member must leave first."),
    (ErrorCode::UnsupportedAssignor, "UNSUPPORTED_ASSIGNOR", false, "The assignor or its version range is not supported by the consumer group."),
    (ErrorCode::StaleMemberEpoch, "STALE_MEMBER_EPOCH", false, "The member epoch is stale. The member must retry after receiving its updated member epoch via the ConsumerGroupHeartbeat API."),
    (ErrorCode::MismatchedEndpointType, "MISMATCHED_ENDPOINT_TYPE", false, "The request was sent to an endpoint of the wrong type."),
    (ErrorCode::UnsupportedEndpointType, "UNSUPPORTED_ENDPOINT_TYPE", false, "This endpoint type is not supported yet."),
    (ErrorCode::UnknownControllerId, "UNKNOWN_CONTROLLER_ID", false, "This controller ID is not known."),
    (ErrorCode::UnknownSubscriptionId, "UNKNOWN_SUBSCRIPTION_ID", false, "Client sent a push telemetry request with an invalid or outdated subscription ID."),
    (ErrorCode::TelemetryTooLarge, "TELEMETRY_TOO_LARGE", false, "Client sent a push telemetry request larger than the maximum size the broker will accept."),
    (ErrorCode::InvalidRegistration, "INVALID_REGISTRATION", false, "The controller has considered the broker registration to be invalid."),
    (ErrorCode::TransactionAbortable, "TRANSACTION_ABORTABLE", false, "The server encountered an error with the transaction. The client can abort the transaction to continue using this transactional ID."),
    (ErrorCode::InvalidRecordState, "INVALID_RECORD_STATE", false, "The record state is invalid. The acknowledgement of delivery could not be completed."),
    (ErrorCode::ShareSessionNotFound, "SHARE_SESSION_NOT_FOUND", true, "The share session was not found."),
    (ErrorCode::InvalidShareSessionEpoch, "INVALID_SHARE_SESSION_EPOCH", true, "The share session epoch is invalid."),
    (ErrorCode::FencedStateEpoch, "FENCED_STATE_EPOCH", false, "The share coordinator rejected the request because the share-group state epoch did not match."),
    (ErrorCode::InvalidVoterKey, "INVALID_VOTER_KEY", false, "The voter key doesn't match the receiving replica's key."),
    (ErrorCode::DuplicateVoter, "DUPLICATE_VOTER", false, "The voter is already part of the set of voters."),
    (ErrorCode::VoterNotFound, "VOTER_NOT_FOUND", false, "The voter is not part of the set of voters."),
    (ErrorCode::InvalidRegularExpression, "INVALID_REGULAR_EXPRESSION", false, "The regular expression is not valid."),
    (ErrorCode::RebootstrapRequired, "REBOOTSTRAP_REQUIRED", false, "Client metadata is stale, client should rebootstrap to obtain new metadata."),
    (ErrorCode::StreamsInvalidTopology, "STREAMS_INVALID_TOPOLOGY", false, "The supplied topology is invalid."),
    (ErrorCode::StreamsInvalidTopologyEpoch, "STREAMS_INVALID_TOPOLOGY_EPOCH", false, "The supplied topology epoch is invalid."),
    (ErrorCode::StreamsTopologyFenced, "STREAMS_TOPOLOGY_FENCED", false, "The supplied topology epoch is outdated."),
    (ErrorCode::ShareSessionLimitReached, "SHARE_SESSION_LIMIT_REACHED", true, "The limit of share sessions has been reached."),
];

impl ErrorCode {
    /// Every known code, `NONE` first, in wire-code order after it.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::None,
        ErrorCode::UnknownServerError,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::CorruptMessage,
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::InvalidFetchSize,
        ErrorCode::LeaderNotAvailable,
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::RequestTimedOut,
        ErrorCode::BrokerNotAvailable,
        ErrorCode::ReplicaNotAvailable,
        ErrorCode::MessageTooLarge,
        ErrorCode::StaleControllerEpoch,
        ErrorCode::OffsetMetadataTooLarge,
        ErrorCode::NetworkException,
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotCoordinator,
        ErrorCode::InvalidTopicException,
        ErrorCode::RecordListTooLarge,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::NotEnoughReplicasAfterAppend,
        ErrorCode::InvalidRequiredAcks,
        ErrorCode::IllegalGeneration,
        ErrorCode::InconsistentGroupProtocol,
        ErrorCode::InvalidGroupId,
        ErrorCode::UnknownMemberId,
        ErrorCode::InvalidSessionTimeout,
        ErrorCode::RebalanceInProgress,
        ErrorCode::InvalidCommitOffsetSize,
        ErrorCode::TopicAuthorizationFailed,
        ErrorCode::GroupAuthorizationFailed,
        ErrorCode::ClusterAuthorizationFailed,
        ErrorCode::InvalidTimestamp,
        ErrorCode::UnsupportedSaslMechanism,
        ErrorCode::IllegalSaslState,
        ErrorCode::UnsupportedVersion,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::InvalidReplicaAssignment,
        ErrorCode::InvalidConfig,
        ErrorCode::NotController,
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedForMessageFormat,
        ErrorCode::PolicyViolation,
        ErrorCode::OutOfOrderSequenceNumber,
        ErrorCode::DuplicateSequenceNumber,
        ErrorCode::InvalidProducerEpoch,
        ErrorCode::InvalidTxnState,
        ErrorCode::InvalidProducerIdMapping,
        ErrorCode::InvalidTransactionTimeout,
        ErrorCode::ConcurrentTransactions,
        ErrorCode::TransactionCoordinatorFenced,
        ErrorCode::TransactionalIdAuthorizationFailed,
        ErrorCode::SecurityDisabled,
        ErrorCode::OperationNotAttempted,
        ErrorCode::KafkaStorageError,
        ErrorCode::LogDirNotFound,
        ErrorCode::SaslAuthenticationFailed,
        ErrorCode::UnknownProducerId,
        ErrorCode::ReassignmentInProgress,
        ErrorCode::DelegationTokenAuthDisabled,
        ErrorCode::DelegationTokenNotFound,
        ErrorCode::DelegationTokenOwnerMismatch,
        ErrorCode::DelegationTokenRequestNotAllowed,
        ErrorCode::DelegationTokenAuthorizationFailed,
        ErrorCode::DelegationTokenExpired,
        ErrorCode::InvalidPrincipalType,
        ErrorCode::NonEmptyGroup,
        ErrorCode::GroupIdNotFound,
        ErrorCode::FetchSessionIdNotFound,
        ErrorCode::InvalidFetchSessionEpoch,
        ErrorCode::ListenerNotFound,
        ErrorCode::TopicDeletionDisabled,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::UnknownLeaderEpoch,
        ErrorCode::UnsupportedCompressionType,
        ErrorCode::StaleBrokerEpoch,
        ErrorCode::OffsetNotAvailable,
        ErrorCode::MemberIdRequired,
        ErrorCode::PreferredLeaderNotAvailable,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::FencedInstanceId,
        ErrorCode::EligibleLeadersNotAvailable,
        ErrorCode::ElectionNotNeeded,
        ErrorCode::NoReassignmentInProgress,
        ErrorCode::GroupSubscribedToTopic,
        ErrorCode::InvalidRecord,
        ErrorCode::UnstableOffsetCommit,
        ErrorCode::ThrottlingQuotaExceeded,
        ErrorCode::ProducerFenced,
        ErrorCode::ResourceNotFound,
        ErrorCode::DuplicateResource,
        ErrorCode::UnacceptableCredential,
        ErrorCode::InconsistentVoterSet,
        ErrorCode::InvalidUpdateVersion,
        ErrorCode::FeatureUpdateFailed,
        ErrorCode::PrincipalDeserializationFailure,
        ErrorCode::SnapshotNotFound,
        ErrorCode::PositionOutOfRange,
        ErrorCode::UnknownTopicId,
        ErrorCode::DuplicateBrokerRegistration,
        ErrorCode::BrokerIdNotRegistered,
        ErrorCode::InconsistentTopicId,
        ErrorCode::InconsistentClusterId,
        ErrorCode::TransactionalIdNotFound,
        ErrorCode::FetchSessionTopicIdError,
        ErrorCode::IneligibleReplica,
        ErrorCode::NewLeaderElected,
        ErrorCode::OffsetMovedToTieredStorage,
        ErrorCode::FencedMemberEpoch,
        ErrorCode::UnreleasedInstanceId,
        ErrorCode::UnsupportedAssignor,
        ErrorCode::StaleMemberEpoch,
        ErrorCode::MismatchedEndpointType,
        ErrorCode::UnsupportedEndpointType,
        ErrorCode::UnknownControllerId,
        ErrorCode::UnknownSubscriptionId,
        ErrorCode::TelemetryTooLarge,
        ErrorCode::InvalidRegistration,
        ErrorCode::TransactionAbortable,
        ErrorCode::InvalidRecordState,
        ErrorCode::ShareSessionNotFound,
        ErrorCode::InvalidShareSessionEpoch,
        ErrorCode::FencedStateEpoch,
        ErrorCode::InvalidVoterKey,
        ErrorCode::DuplicateVoter,
        ErrorCode::VoterNotFound,
        ErrorCode::InvalidRegularExpression,
        ErrorCode::RebootstrapRequired,
        ErrorCode::StreamsInvalidTopology,
        ErrorCode::StreamsInvalidTopologyEpoch,
        ErrorCode::StreamsTopologyFenced,
        ErrorCode::ShareSessionLimitReached,
    ];

    /// The wire value.
    #[inline]
    pub const fn code(self) -> i16 {
        self as i16
    }

    /// The code for a wire value, `None` for a value this table lacks.
    pub fn try_from_code(code: i16) -> Option<ErrorCode> {
        // The table is sorted by code after NONE (-1 first): binary search.
        if code == 0 {
            return Some(ErrorCode::None);
        }
        TABLE[1..]
            .binary_search_by_key(&code, |row| row.0.code())
            .ok()
            .map(|i| TABLE[1 + i].0)
    }

    /// The code for a wire value; unknown values become `UNKNOWN_SERVER_ERROR`.
    pub fn from_code(code: i16) -> ErrorCode {
        Self::try_from_code(code).unwrap_or(ErrorCode::UnknownServerError)
    }

    fn row(self) -> &'static (ErrorCode, &'static str, bool, &'static str) {
        if self == ErrorCode::None {
            return &TABLE[0];
        }
        match TABLE[1..].binary_search_by_key(&self.code(), |row| row.0.code()) {
            Ok(i) => &TABLE[1 + i],
            Err(_) => unreachable!("every variant has a row (checked by the tests)"),
        }
    }

    /// Kafka's name, e.g. `NOT_LEADER_OR_FOLLOWER`.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// Whether Kafka's clients retry a request that failed with it.
    pub fn is_retriable(self) -> bool {
        self.row().2
    }

    /// Kafka's description of the error.
    pub fn message(self) -> &'static str {
        self.row().3
    }

    /// `true` for `NONE`.
    #[inline]
    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }

    /// Errors after which a client's cached metadata (leaders, partitions)
    /// is stale and must be refreshed before retrying.
    pub fn invalidates_metadata(self) -> bool {
        matches!(
            self,
            ErrorCode::UnknownTopicOrPartition
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::NotLeaderOrFollower
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
                | ErrorCode::UnknownTopicId
        )
    }
}

impl From<ErrorCode> for i16 {
    #[inline]
    fn from(code: ErrorCode) -> i16 {
        code.code()
    }
}

impl TryFrom<i16> for ErrorCode {
    type Error = i16;

    /// Fails with the value itself when the table does not know it.
    fn try_from(code: i16) -> Result<ErrorCode, i16> {
        ErrorCode::try_from_code(code).ok_or(code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_variants_agree() {
        assert_eq!(ErrorCode::ALL.len(), TABLE.len());
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(TABLE[i].0, *code, "row {i}");
            assert_eq!(ErrorCode::try_from_code(code.code()), Some(*code));
        }
        // Sorted by code after NONE, which the binary search relies on.
        assert!(TABLE[1..].windows(2).all(|w| w[0].0.code() < w[1].0.code()));
    }

    #[test]
    fn known_codes() {
        assert_eq!(ErrorCode::UnknownTopicOrPartition.code(), 3);
        assert_eq!(
            ErrorCode::UnknownTopicOrPartition.name(),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert!(ErrorCode::NotLeaderOrFollower.is_retriable());
        assert!(!ErrorCode::TopicAuthorizationFailed.is_retriable());
        assert_eq!(ErrorCode::from_code(0), ErrorCode::None);
        assert!(ErrorCode::None.is_ok());
        assert_eq!(ErrorCode::from_code(-1), ErrorCode::UnknownServerError);
        assert_eq!(ErrorCode::try_from_code(30_000), None);
        assert_eq!(ErrorCode::from_code(30_000), ErrorCode::UnknownServerError);
        assert_eq!(ErrorCode::try_from(30_000), Err(30_000));
        assert_eq!(i16::from(ErrorCode::NotCoordinator), 16);
        assert_eq!(ErrorCode::InvalidRecord.to_string(), "INVALID_RECORD");
    }
}
