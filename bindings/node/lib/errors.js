'use strict'
// KafkaJS's error classes (same names, fields and hierarchy), Kafka's error
// code table (generated from the Rust enum by scripts/gen-errors), and the
// decoding of the native module's encoded errors into them.

class KafkaJSError extends Error {
  /**
   * @param {any} e a message, or an error-like object whose message is taken
   * @param {{ retriable?: boolean, cause?: unknown }} [options]
   */
  constructor(e, { retriable = false, cause } = {}) {
    super(e && e.message !== undefined ? e.message : e, cause ? { cause } : undefined)
    Error.captureStackTrace && Error.captureStackTrace(this, this.constructor)
    this.message = e && e.message !== undefined ? e.message : String(e)
    this.name = 'KafkaJSError'
    this.retriable = retriable
    this.helpUrl = e && e.helpUrl
    this.cause = cause
  }
}

class KafkaJSNonRetriableError extends KafkaJSError {
  /**
   * @param {any} e
   * @param {{ cause?: unknown }} [options]
   */
  constructor(e, { cause } = {}) {
    super(e, { retriable: false, cause })
    this.name = 'KafkaJSNonRetriableError'
  }
}

class KafkaJSProtocolError extends KafkaJSError {
  /**
   * @param {any} e a message, or `{ message, type, code, retriable }`
   * @param {{ retriable?: boolean }} [options]
   */
  constructor(e, { retriable = e && e.retriable } = {}) {
    super(e, { retriable })
    this.name = 'KafkaJSProtocolError'
    this.type = e && e.type
    this.code = e && e.code
  }
}

class KafkaJSOffsetOutOfRange extends KafkaJSProtocolError {
  /**
   * @param {any} e
   * @param {{ topic?: string, partition?: number }} [options]
   */
  constructor(e, { topic, partition } = {}) {
    super(e)
    this.name = 'KafkaJSOffsetOutOfRange'
    this.topic = topic
    this.partition = partition
  }
}

class KafkaJSMemberIdRequired extends KafkaJSProtocolError {
  /**
   * @param {any} e
   * @param {{ memberId?: string }} [options]
   */
  constructor(e, { memberId } = {}) {
    super(e)
    this.name = 'KafkaJSMemberIdRequired'
    this.memberId = memberId
  }
}

class KafkaJSNumberOfRetriesExceeded extends KafkaJSNonRetriableError {
  /**
   * @param {any} e the last attempt's error
   * @param {{ retryCount?: number, retryTime?: number, cause?: unknown }} [options]
   */
  constructor(e, { retryCount, retryTime, cause } = {}) {
    super(e, { cause: cause || e })
    this.stack = `${this.name}\n  Caused by: ${e && e.stack}`
    this.originalError = e
    this.retryCount = retryCount
    this.retryTime = retryTime
    this.name = 'KafkaJSNumberOfRetriesExceeded'
  }
}

class KafkaJSConnectionError extends KafkaJSError {
  /**
   * @param {any} e
   * @param {{ broker?: string, code?: string, retriable?: boolean }} [options]
   */
  constructor(e, { broker, code, retriable = true } = {}) {
    super(e, { retriable })
    this.name = 'KafkaJSConnectionError'
    this.broker = broker
    this.code = code
  }
}

class KafkaJSConnectionClosedError extends KafkaJSConnectionError {
  /**
   * @param {any} e
   * @param {{ host?: string, port?: number }} [options]
   */
  constructor(e, { host, port } = {}) {
    super(e, { broker: `${host}:${port}` })
    this.name = 'KafkaJSConnectionClosedError'
    this.host = host
    this.port = port
  }
}

class KafkaJSRequestTimeoutError extends KafkaJSError {
  /**
   * @param {any} e
   * @param {{ broker?: string, correlationId?: number, createdAt?: number, sentAt?: number, pendingDuration?: number }} [options]
   */
  constructor(e, { broker, correlationId, createdAt, sentAt, pendingDuration } = {}) {
    super(e, { retriable: true })
    this.name = 'KafkaJSRequestTimeoutError'
    Object.assign(this, { broker, correlationId, createdAt, sentAt, pendingDuration })
  }
}

class KafkaJSTimeout extends KafkaJSError {
  /**
   * @param {any} e
   * @param {{ retriable?: boolean }} [options]
   */
  constructor(e, { retriable = false } = {}) {
    super(e, { retriable })
    this.name = 'KafkaJSTimeout'
  }
}

/**
 * A KafkaJS error class that only has a name: its options become fields.
 * @param {string} name
 * @param {boolean} [retriable]
 * @param {typeof KafkaJSError} [base]
 */
function simple(name, retriable = false, base = KafkaJSError) {
  const C = class extends base {
    /**
     * @param {any} e
     * @param {Record<string, any>} [opts] copied onto the error (e.g. `errors`, `groups`)
     */
    constructor(e, opts = {}) {
      super(e, { retriable, ...opts })
      this.name = name
      Object.assign(this, opts)
    }
  }
  Object.defineProperty(C, 'name', { value: name })
  return C
}

const KafkaJSSASLAuthenticationError = simple('KafkaJSSASLAuthenticationError')
const KafkaJSMetadataNotLoaded = simple('KafkaJSMetadataNotLoaded')
const KafkaJSTopicMetadataNotLoaded = simple('KafkaJSTopicMetadataNotLoaded')
const KafkaJSStaleTopicMetadataAssignment = simple('KafkaJSStaleTopicMetadataAssignment')
const KafkaJSServerDoesNotSupportApiKey = simple('KafkaJSServerDoesNotSupportApiKey', false, KafkaJSNonRetriableError)
const KafkaJSBrokerNotFound = simple('KafkaJSBrokerNotFound')
const KafkaJSPartialMessageError = simple('KafkaJSPartialMessageError', false, KafkaJSNonRetriableError)
const KafkaJSGroupCoordinatorNotFound = simple('KafkaJSGroupCoordinatorNotFound', false, KafkaJSNonRetriableError)
const KafkaJSNotImplemented = simple('KafkaJSNotImplemented', false, KafkaJSNonRetriableError)
const KafkaJSLockTimeout = simple('KafkaJSLockTimeout', false, KafkaJSTimeout)
const KafkaJSUnsupportedMagicByteInMessageSet = simple('KafkaJSUnsupportedMagicByteInMessageSet', false, KafkaJSNonRetriableError)
const KafkaJSDeleteGroupsError = simple('KafkaJSDeleteGroupsError')
const KafkaJSDeleteTopicRecordsError = simple('KafkaJSDeleteTopicRecordsError')
const KafkaJSCreateTopicError = simple('KafkaJSCreateTopicError', false, KafkaJSProtocolError)
const KafkaJSAggregateError = simple('KafkaJSAggregateError')
const KafkaJSFetcherRebalanceError = simple('KafkaJSFetcherRebalanceError')
const KafkaJSNoBrokerAvailableError = simple('KafkaJSNoBrokerAvailableError')
const KafkaJSAlterPartitionReassignmentsError = simple('KafkaJSAlterPartitionReassignmentsError', false, KafkaJSProtocolError)
const KafkaJSInvariantViolation = simple('KafkaJSInvariantViolation', false, KafkaJSNonRetriableError)
const KafkaJSInvalidVarIntError = simple('KafkaJSInvalidVarIntError', false, KafkaJSNonRetriableError)
const KafkaJSInvalidLongError = simple('KafkaJSInvalidLongError', false, KafkaJSNonRetriableError)

// BEGIN generated by scripts/gen-errors from protocol/src/error.rs; do not edit
/**
 * Kafka's error codes as KafkaJS's protocol errors describe them
 * (`type`, `code`, `retriable`, `message`), NONE included.
 * @type {Array<{ type: string, code: number, retriable: boolean, message: string }>}
 */
const errorCodes = [
  { type: 'NONE', code: 0, retriable: false, message: 'No error.' },
  { type: 'UNKNOWN_SERVER_ERROR', code: -1, retriable: false, message: 'The server experienced an unexpected error when processing the request.' },
  { type: 'OFFSET_OUT_OF_RANGE', code: 1, retriable: false, message: 'The requested offset is not within the range of offsets maintained by the server.' },
  { type: 'CORRUPT_MESSAGE', code: 2, retriable: true, message: 'This message has failed its CRC checksum, exceeds the valid size, has a null key for a compacted topic, or is otherwise corrupt.' },
  { type: 'UNKNOWN_TOPIC_OR_PARTITION', code: 3, retriable: true, message: 'This server does not host this topic-partition.' },
  { type: 'INVALID_FETCH_SIZE', code: 4, retriable: false, message: 'The requested fetch size is invalid.' },
  { type: 'LEADER_NOT_AVAILABLE', code: 5, retriable: true, message: 'There is no leader for this topic-partition as we are in the middle of a leadership election.' },
  { type: 'NOT_LEADER_OR_FOLLOWER', code: 6, retriable: true, message: 'For requests intended only for the leader, this error indicates that the broker is not the current leader. For requests intended for any replica, this error indicates that the broker is not a replica of the topic partition.' },
  { type: 'REQUEST_TIMED_OUT', code: 7, retriable: true, message: 'The request timed out.' },
  { type: 'BROKER_NOT_AVAILABLE', code: 8, retriable: false, message: 'The broker is not available.' },
  { type: 'REPLICA_NOT_AVAILABLE', code: 9, retriable: true, message: 'The replica is not available for the requested topic-partition. Produce/Fetch requests and other requests intended only for the leader or follower return NOT_LEADER_OR_FOLLOWER if the broker is not a replica of the topic-partition.' },
  { type: 'MESSAGE_TOO_LARGE', code: 10, retriable: false, message: 'The request included a message larger than the max message size the server will accept.' },
  { type: 'STALE_CONTROLLER_EPOCH', code: 11, retriable: false, message: 'The controller moved to another broker.' },
  { type: 'OFFSET_METADATA_TOO_LARGE', code: 12, retriable: false, message: 'The metadata field of the offset request was too large.' },
  { type: 'NETWORK_EXCEPTION', code: 13, retriable: true, message: 'The server disconnected before a response was received.' },
  { type: 'COORDINATOR_LOAD_IN_PROGRESS', code: 14, retriable: true, message: 'The coordinator is loading and hence can\'t process requests.' },
  { type: 'COORDINATOR_NOT_AVAILABLE', code: 15, retriable: true, message: 'The coordinator is not available.' },
  { type: 'NOT_COORDINATOR', code: 16, retriable: true, message: 'This is not the correct coordinator.' },
  { type: 'INVALID_TOPIC_EXCEPTION', code: 17, retriable: false, message: 'The request attempted to perform an operation on an invalid topic.' },
  { type: 'RECORD_LIST_TOO_LARGE', code: 18, retriable: false, message: 'The request included message batch larger than the configured segment size on the server.' },
  { type: 'NOT_ENOUGH_REPLICAS', code: 19, retriable: true, message: 'Messages are rejected since there are fewer in-sync replicas than required.' },
  { type: 'NOT_ENOUGH_REPLICAS_AFTER_APPEND', code: 20, retriable: true, message: 'Messages are written to the log, but to fewer in-sync replicas than required.' },
  { type: 'INVALID_REQUIRED_ACKS', code: 21, retriable: false, message: 'Produce request specified an invalid value for required acks.' },
  { type: 'ILLEGAL_GENERATION', code: 22, retriable: false, message: 'Specified group generation id is not valid.' },
  { type: 'INCONSISTENT_GROUP_PROTOCOL', code: 23, retriable: false, message: 'The group member\'s supported protocols are incompatible with those of existing members or first group member tried to join with empty protocol type or empty protocol list.' },
  { type: 'INVALID_GROUP_ID', code: 24, retriable: false, message: 'The configured groupId is invalid.' },
  { type: 'UNKNOWN_MEMBER_ID', code: 25, retriable: false, message: 'The coordinator is not aware of this member.' },
  { type: 'INVALID_SESSION_TIMEOUT', code: 26, retriable: false, message: 'The session timeout is not within the range allowed by the broker (as configured by group.min.session.timeout.ms and group.max.session.timeout.ms).' },
  { type: 'REBALANCE_IN_PROGRESS', code: 27, retriable: false, message: 'The group is rebalancing, so a rejoin is needed.' },
  { type: 'INVALID_COMMIT_OFFSET_SIZE', code: 28, retriable: false, message: 'The committing offset data size is not valid.' },
  { type: 'TOPIC_AUTHORIZATION_FAILED', code: 29, retriable: false, message: 'Topic authorization failed.' },
  { type: 'GROUP_AUTHORIZATION_FAILED', code: 30, retriable: false, message: 'Group authorization failed.' },
  { type: 'CLUSTER_AUTHORIZATION_FAILED', code: 31, retriable: false, message: 'Cluster authorization failed.' },
  { type: 'INVALID_TIMESTAMP', code: 32, retriable: false, message: 'The timestamp of the message is out of acceptable range.' },
  { type: 'UNSUPPORTED_SASL_MECHANISM', code: 33, retriable: false, message: 'The broker does not support the requested SASL mechanism.' },
  { type: 'ILLEGAL_SASL_STATE', code: 34, retriable: false, message: 'Request is not valid given the current SASL state.' },
  { type: 'UNSUPPORTED_VERSION', code: 35, retriable: false, message: 'The version of API is not supported.' },
  { type: 'TOPIC_ALREADY_EXISTS', code: 36, retriable: false, message: 'Topic with this name already exists.' },
  { type: 'INVALID_PARTITIONS', code: 37, retriable: false, message: 'Number of partitions is below 1.' },
  { type: 'INVALID_REPLICATION_FACTOR', code: 38, retriable: false, message: 'Replication factor is below 1 or larger than the number of available brokers.' },
  { type: 'INVALID_REPLICA_ASSIGNMENT', code: 39, retriable: false, message: 'Replica assignment is invalid.' },
  { type: 'INVALID_CONFIG', code: 40, retriable: false, message: 'Configuration is invalid.' },
  { type: 'NOT_CONTROLLER', code: 41, retriable: true, message: 'This is not the correct controller for this cluster.' },
  { type: 'INVALID_REQUEST', code: 42, retriable: false, message: 'This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details.' },
  { type: 'UNSUPPORTED_FOR_MESSAGE_FORMAT', code: 43, retriable: false, message: 'The message format version on the broker does not support the request.' },
  { type: 'POLICY_VIOLATION', code: 44, retriable: false, message: 'Request parameters do not satisfy the configured policy.' },
  { type: 'OUT_OF_ORDER_SEQUENCE_NUMBER', code: 45, retriable: false, message: 'The broker received an out of order sequence number.' },
  { type: 'DUPLICATE_SEQUENCE_NUMBER', code: 46, retriable: false, message: 'The broker received a duplicate sequence number.' },
  { type: 'INVALID_PRODUCER_EPOCH', code: 47, retriable: false, message: 'Producer attempted to produce with an old epoch.' },
  { type: 'INVALID_TXN_STATE', code: 48, retriable: false, message: 'The producer attempted a transactional operation in an invalid state.' },
  { type: 'INVALID_PRODUCER_ID_MAPPING', code: 49, retriable: false, message: 'The producer attempted to use a producer id which is not currently assigned to its transactional id.' },
  { type: 'INVALID_TRANSACTION_TIMEOUT', code: 50, retriable: false, message: 'The transaction timeout is larger than the maximum value allowed by the broker (as configured by transaction.max.timeout.ms).' },
  { type: 'CONCURRENT_TRANSACTIONS', code: 51, retriable: false, message: 'The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing.' },
  { type: 'TRANSACTION_COORDINATOR_FENCED', code: 52, retriable: false, message: 'Indicates that the transaction coordinator sending a WriteTxnMarker is no longer the current coordinator for a given producer.' },
  { type: 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED', code: 53, retriable: false, message: 'Transactional Id authorization failed.' },
  { type: 'SECURITY_DISABLED', code: 54, retriable: false, message: 'Security features are disabled.' },
  { type: 'OPERATION_NOT_ATTEMPTED', code: 55, retriable: false, message: 'The broker did not attempt to execute this operation. This may happen for batched RPCs where some operations in the batch failed, causing the broker to respond without trying the rest.' },
  { type: 'KAFKA_STORAGE_ERROR', code: 56, retriable: true, message: 'Disk error when trying to access log file on the disk.' },
  { type: 'LOG_DIR_NOT_FOUND', code: 57, retriable: false, message: 'The user-specified log directory is not found in the broker config.' },
  { type: 'SASL_AUTHENTICATION_FAILED', code: 58, retriable: false, message: 'SASL Authentication failed.' },
  { type: 'UNKNOWN_PRODUCER_ID', code: 59, retriable: false, message: 'This exception is raised by the broker if it could not locate the producer metadata associated with the producerId in question. This could happen if, for instance, the producer\'s records were deleted because their retention time had elapsed. Once the last records of the producerId are removed, the producer\'s metadata is removed from the broker, and future appends by the producer will return this exception.' },
  { type: 'REASSIGNMENT_IN_PROGRESS', code: 60, retriable: false, message: 'A partition reassignment is in progress.' },
  { type: 'DELEGATION_TOKEN_AUTH_DISABLED', code: 61, retriable: false, message: 'Delegation Token feature is not enabled.' },
  { type: 'DELEGATION_TOKEN_NOT_FOUND', code: 62, retriable: false, message: 'Delegation Token is not found on server.' },
  { type: 'DELEGATION_TOKEN_OWNER_MISMATCH', code: 63, retriable: false, message: 'Specified Principal is not valid Owner/Renewer.' },
  { type: 'DELEGATION_TOKEN_REQUEST_NOT_ALLOWED', code: 64, retriable: false, message: 'Delegation Token requests are not allowed on PLAINTEXT/1-way SSL channels and on delegation token authenticated channels.' },
  { type: 'DELEGATION_TOKEN_AUTHORIZATION_FAILED', code: 65, retriable: false, message: 'Delegation Token authorization failed.' },
  { type: 'DELEGATION_TOKEN_EXPIRED', code: 66, retriable: false, message: 'Delegation Token is expired.' },
  { type: 'INVALID_PRINCIPAL_TYPE', code: 67, retriable: false, message: 'Supplied principalType is not supported.' },
  { type: 'NON_EMPTY_GROUP', code: 68, retriable: false, message: 'The group is not empty.' },
  { type: 'GROUP_ID_NOT_FOUND', code: 69, retriable: false, message: 'The group id does not exist.' },
  { type: 'FETCH_SESSION_ID_NOT_FOUND', code: 70, retriable: true, message: 'The fetch session ID was not found.' },
  { type: 'INVALID_FETCH_SESSION_EPOCH', code: 71, retriable: true, message: 'The fetch session epoch is invalid.' },
  { type: 'LISTENER_NOT_FOUND', code: 72, retriable: true, message: 'There is no listener on the leader broker that matches the listener on which metadata request was processed.' },
  { type: 'TOPIC_DELETION_DISABLED', code: 73, retriable: false, message: 'Topic deletion is disabled.' },
  { type: 'FENCED_LEADER_EPOCH', code: 74, retriable: true, message: 'The leader epoch in the request is older than the epoch on the broker.' },
  { type: 'UNKNOWN_LEADER_EPOCH', code: 75, retriable: true, message: 'The leader epoch in the request is newer than the epoch on the broker.' },
  { type: 'UNSUPPORTED_COMPRESSION_TYPE', code: 76, retriable: false, message: 'The requesting client does not support the compression type of given partition.' },
  { type: 'STALE_BROKER_EPOCH', code: 77, retriable: false, message: 'Broker epoch has changed.' },
  { type: 'OFFSET_NOT_AVAILABLE', code: 78, retriable: true, message: 'The leader high watermark has not caught up from a recent leader election so the offsets cannot be guaranteed to be monotonically increasing.' },
  { type: 'MEMBER_ID_REQUIRED', code: 79, retriable: false, message: 'The group member needs to have a valid member id before actually entering a consumer group.' },
  { type: 'PREFERRED_LEADER_NOT_AVAILABLE', code: 80, retriable: true, message: 'The preferred leader was not available.' },
  { type: 'GROUP_MAX_SIZE_REACHED', code: 81, retriable: false, message: 'The consumer group has reached its max size.' },
  { type: 'FENCED_INSTANCE_ID', code: 82, retriable: false, message: 'The broker rejected this static consumer since another consumer with the same group.instance.id has registered with a different member.id.' },
  { type: 'ELIGIBLE_LEADERS_NOT_AVAILABLE', code: 83, retriable: true, message: 'Eligible topic partition leaders are not available.' },
  { type: 'ELECTION_NOT_NEEDED', code: 84, retriable: true, message: 'Leader election not needed for topic partition.' },
  { type: 'NO_REASSIGNMENT_IN_PROGRESS', code: 85, retriable: false, message: 'No partition reassignment is in progress.' },
  { type: 'GROUP_SUBSCRIBED_TO_TOPIC', code: 86, retriable: false, message: 'Deleting offsets of a topic is forbidden while the consumer group is actively subscribed to it.' },
  { type: 'INVALID_RECORD', code: 87, retriable: false, message: 'This record has failed the validation on broker and hence will be rejected.' },
  { type: 'UNSTABLE_OFFSET_COMMIT', code: 88, retriable: true, message: 'There are unstable offsets that need to be cleared.' },
  { type: 'THROTTLING_QUOTA_EXCEEDED', code: 89, retriable: true, message: 'The throttling quota has been exceeded.' },
  { type: 'PRODUCER_FENCED', code: 90, retriable: false, message: 'There is a newer producer with the same transactionalId which fences the current one.' },
  { type: 'RESOURCE_NOT_FOUND', code: 91, retriable: false, message: 'A request illegally referred to a resource that does not exist.' },
  { type: 'DUPLICATE_RESOURCE', code: 92, retriable: false, message: 'A request illegally referred to the same resource twice.' },
  { type: 'UNACCEPTABLE_CREDENTIAL', code: 93, retriable: false, message: 'Requested credential would not meet criteria for acceptability.' },
  { type: 'INCONSISTENT_VOTER_SET', code: 94, retriable: false, message: 'Indicates that the either the sender or recipient of a voter-only request is not one of the expected voters' },
  { type: 'INVALID_UPDATE_VERSION', code: 95, retriable: false, message: 'The given update version was invalid.' },
  { type: 'FEATURE_UPDATE_FAILED', code: 96, retriable: false, message: 'Unable to update finalized features due to an unexpected server error.' },
  { type: 'PRINCIPAL_DESERIALIZATION_FAILURE', code: 97, retriable: false, message: 'Request principal deserialization failed during forwarding. This indicates an internal error on the broker cluster security setup.' },
  { type: 'SNAPSHOT_NOT_FOUND', code: 98, retriable: false, message: 'Requested snapshot was not found' },
  { type: 'POSITION_OUT_OF_RANGE', code: 99, retriable: false, message: 'Requested position is not greater than or equal to zero, and less than the size of the snapshot.' },
  { type: 'UNKNOWN_TOPIC_ID', code: 100, retriable: true, message: 'This server does not host this topic ID.' },
  { type: 'DUPLICATE_BROKER_REGISTRATION', code: 101, retriable: false, message: 'This broker ID is already in use.' },
  { type: 'BROKER_ID_NOT_REGISTERED', code: 102, retriable: false, message: 'The given broker ID was not registered.' },
  { type: 'INCONSISTENT_TOPIC_ID', code: 103, retriable: true, message: 'The log\'s topic ID did not match the topic ID in the request' },
  { type: 'INCONSISTENT_CLUSTER_ID', code: 104, retriable: false, message: 'The clusterId in the request does not match that found on the server' },
  { type: 'TRANSACTIONAL_ID_NOT_FOUND', code: 105, retriable: false, message: 'The transactionalId could not be found' },
  { type: 'FETCH_SESSION_TOPIC_ID_ERROR', code: 106, retriable: true, message: 'The fetch session encountered inconsistent topic ID usage' },
  { type: 'INELIGIBLE_REPLICA', code: 107, retriable: false, message: 'The new ISR contains at least one ineligible replica.' },
  { type: 'NEW_LEADER_ELECTED', code: 108, retriable: false, message: 'The AlterPartition request successfully updated the partition state but the leader has changed.' },
  { type: 'OFFSET_MOVED_TO_TIERED_STORAGE', code: 109, retriable: false, message: 'The requested offset is moved to tiered storage.' },
  { type: 'FENCED_MEMBER_EPOCH', code: 110, retriable: false, message: 'The member epoch is fenced by the group coordinator. The member must abandon all its partitions and rejoin.' },
  { type: 'UNRELEASED_INSTANCE_ID', code: 111, retriable: false, message: 'The instance ID is still used by another member in the consumer group. That member must leave first.' },
  { type: 'UNSUPPORTED_ASSIGNOR', code: 112, retriable: false, message: 'The assignor or its version range is not supported by the consumer group.' },
  { type: 'STALE_MEMBER_EPOCH', code: 113, retriable: false, message: 'The member epoch is stale. The member must retry after receiving its updated member epoch via the ConsumerGroupHeartbeat API.' },
  { type: 'MISMATCHED_ENDPOINT_TYPE', code: 114, retriable: false, message: 'The request was sent to an endpoint of the wrong type.' },
  { type: 'UNSUPPORTED_ENDPOINT_TYPE', code: 115, retriable: false, message: 'This endpoint type is not supported yet.' },
  { type: 'UNKNOWN_CONTROLLER_ID', code: 116, retriable: false, message: 'This controller ID is not known.' },
  { type: 'UNKNOWN_SUBSCRIPTION_ID', code: 117, retriable: false, message: 'Client sent a push telemetry request with an invalid or outdated subscription ID.' },
  { type: 'TELEMETRY_TOO_LARGE', code: 118, retriable: false, message: 'Client sent a push telemetry request larger than the maximum size the broker will accept.' },
  { type: 'INVALID_REGISTRATION', code: 119, retriable: false, message: 'The controller has considered the broker registration to be invalid.' },
  { type: 'TRANSACTION_ABORTABLE', code: 120, retriable: false, message: 'The server encountered an error with the transaction. The client can abort the transaction to continue using this transactional ID.' },
  { type: 'INVALID_RECORD_STATE', code: 121, retriable: false, message: 'The record state is invalid. The acknowledgement of delivery could not be completed.' },
  { type: 'SHARE_SESSION_NOT_FOUND', code: 122, retriable: true, message: 'The share session was not found.' },
  { type: 'INVALID_SHARE_SESSION_EPOCH', code: 123, retriable: true, message: 'The share session epoch is invalid.' },
  { type: 'FENCED_STATE_EPOCH', code: 124, retriable: false, message: 'The share coordinator rejected the request because the share-group state epoch did not match.' },
  { type: 'INVALID_VOTER_KEY', code: 125, retriable: false, message: 'The voter key doesn\'t match the receiving replica\'s key.' },
  { type: 'DUPLICATE_VOTER', code: 126, retriable: false, message: 'The voter is already part of the set of voters.' },
  { type: 'VOTER_NOT_FOUND', code: 127, retriable: false, message: 'The voter is not part of the set of voters.' },
  { type: 'INVALID_REGULAR_EXPRESSION', code: 128, retriable: false, message: 'The regular expression is not valid.' },
  { type: 'REBOOTSTRAP_REQUIRED', code: 129, retriable: false, message: 'Client metadata is stale, client should rebootstrap to obtain new metadata.' },
  { type: 'STREAMS_INVALID_TOPOLOGY', code: 130, retriable: false, message: 'The supplied topology is invalid.' },
  { type: 'STREAMS_INVALID_TOPOLOGY_EPOCH', code: 131, retriable: false, message: 'The supplied topology epoch is invalid.' },
  { type: 'STREAMS_TOPOLOGY_FENCED', code: 132, retriable: false, message: 'The supplied topology epoch is outdated.' },
  { type: 'SHARE_SESSION_LIMIT_REACHED', code: 133, retriable: true, message: 'The limit of share sessions has been reached.' },
]
// END generated by scripts/gen-errors

for (const row of errorCodes) Object.freeze(row)
Object.freeze(errorCodes)

/** The table's rows by wire code. */
const errorByCode = new Map(errorCodes.map((row) => [row.code, row]))

/**
 * KafkaJS's protocol error for a Kafka error code; a code the table lacks
 * (a newer broker's) becomes UNKNOWN_SERVER_ERROR, as the Rust client decodes it.
 * @param {number} code
 */
function createErrorFromCode(code) {
  const row = errorByCode.get(code)
  if (row) return new KafkaJSProtocolError(row)
  const unknown = errorByCode.get(-1)
  return new KafkaJSProtocolError({ ...unknown, message: `${unknown && unknown.message} (error code ${code})` })
}

const PREFIX = 'SLUICE_ERROR:'

/** The KafkaJS error for an encoded native error (see src/error.rs). */
function fromEncoded(text) {
  let d
  try {
    d = JSON.parse(text.slice(PREFIX.length))
  } catch (_) {
    return new KafkaJSError(text)
  }
  const msg = d.message
  switch (d.kind) {
    case 'Kafka': {
      // The native error names its code; the table supplies what it leaves out.
      const row = errorByCode.get(d.code)
      const type = typeof d.type === 'string' ? d.type : row && row.type
      const retriable = typeof d.retriable === 'boolean' ? d.retriable : Boolean(row && row.retriable)
      if (type === 'OFFSET_OUT_OF_RANGE') return new KafkaJSOffsetOutOfRange({ ...d, type, retriable })
      if (type === 'SASL_AUTHENTICATION_FAILED') return new KafkaJSSASLAuthenticationError(msg)
      return new KafkaJSProtocolError({ message: msg, type, code: d.code, retriable })
    }
    case 'Timeout':
      return new KafkaJSTimeout(msg, { retriable: d.retriable })
    case 'Connection':
      return new KafkaJSConnectionError(msg, { broker: d.broker || undefined, retriable: d.retriable })
    case 'NoBrokersAvailable': {
      const cause = new KafkaJSConnectionError(msg, { retriable: true })
      return new KafkaJSNumberOfRetriesExceeded(cause, { cause })
    }
    case 'Authentication':
      return new KafkaJSSASLAuthenticationError(msg)
    case 'Unsupported':
      return new KafkaJSServerDoesNotSupportApiKey(msg)
    default:
      return new KafkaJSNonRetriableError(msg)
  }
}

/** Turns a rejection of the native module into its KafkaJS error. */
function mapError(e) {
  if (e instanceof KafkaJSError) return e
  const text = e && typeof e.message === 'string' ? e.message : String(e)
  if (text.startsWith(PREFIX)) return fromEncoded(text)
  return e
}

/** Awaits a native call and rethrows its error as the KafkaJS class. */
async function call(fn) {
  try {
    return await fn()
  } catch (e) {
    throw mapError(e)
  }
}

module.exports = {
  KafkaJSError,
  KafkaJSNonRetriableError,
  KafkaJSProtocolError,
  KafkaJSOffsetOutOfRange,
  KafkaJSMemberIdRequired,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSConnectionError,
  KafkaJSConnectionClosedError,
  KafkaJSRequestTimeoutError,
  KafkaJSTimeout,
  KafkaJSSASLAuthenticationError,
  KafkaJSMetadataNotLoaded,
  KafkaJSTopicMetadataNotLoaded,
  KafkaJSStaleTopicMetadataAssignment,
  KafkaJSServerDoesNotSupportApiKey,
  KafkaJSBrokerNotFound,
  KafkaJSPartialMessageError,
  KafkaJSGroupCoordinatorNotFound,
  KafkaJSNotImplemented,
  KafkaJSLockTimeout,
  KafkaJSUnsupportedMagicByteInMessageSet,
  KafkaJSDeleteGroupsError,
  KafkaJSDeleteTopicRecordsError,
  KafkaJSCreateTopicError,
  KafkaJSAggregateError,
  KafkaJSFetcherRebalanceError,
  KafkaJSNoBrokerAvailableError,
  KafkaJSAlterPartitionReassignmentsError,
  KafkaJSInvariantViolation,
  KafkaJSInvalidVarIntError,
  KafkaJSInvalidLongError,
  errorCodes,
  createErrorFromCode,
  mapError,
  call,
}
