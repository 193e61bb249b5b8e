'use strict'
// KafkaJS's error classes (same names, fields and hierarchy), and the
// decoding of the native module's encoded errors into them.

class KafkaJSError extends Error {
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
  constructor(e, { cause } = {}) {
    super(e, { retriable: false, cause })
    this.name = 'KafkaJSNonRetriableError'
  }
}

class KafkaJSProtocolError extends KafkaJSError {
  constructor(e, { retriable = e && e.retriable } = {}) {
    super(e, { retriable })
    this.name = 'KafkaJSProtocolError'
    this.type = e && e.type
    this.code = e && e.code
  }
}

class KafkaJSOffsetOutOfRange extends KafkaJSProtocolError {
  constructor(e, { topic, partition } = {}) {
    super(e)
    this.name = 'KafkaJSOffsetOutOfRange'
    this.topic = topic
    this.partition = partition
  }
}

class KafkaJSMemberIdRequired extends KafkaJSProtocolError {
  constructor(e, { memberId } = {}) {
    super(e)
    this.name = 'KafkaJSMemberIdRequired'
    this.memberId = memberId
  }
}

class KafkaJSNumberOfRetriesExceeded extends KafkaJSNonRetriableError {
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
  constructor(e, { broker, code, retriable = true } = {}) {
    super(e, { retriable })
    this.name = 'KafkaJSConnectionError'
    this.broker = broker
    this.code = code
  }
}

class KafkaJSConnectionClosedError extends KafkaJSConnectionError {
  constructor(e, { host, port } = {}) {
    super(e, { broker: `${host}:${port}` })
    this.name = 'KafkaJSConnectionClosedError'
    this.host = host
    this.port = port
  }
}

class KafkaJSRequestTimeoutError extends KafkaJSError {
  constructor(e, { broker, correlationId, createdAt, sentAt, pendingDuration } = {}) {
    super(e, { retriable: true })
    this.name = 'KafkaJSRequestTimeoutError'
    Object.assign(this, { broker, correlationId, createdAt, sentAt, pendingDuration })
  }
}

class KafkaJSTimeout extends KafkaJSError {
  constructor(e, { retriable = false } = {}) {
    super(e, { retriable })
    this.name = 'KafkaJSTimeout'
  }
}

function simple(name, retriable = false, base = KafkaJSError) {
  const C = class extends base {
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
    case 'Kafka':
      if (d.type === 'OFFSET_OUT_OF_RANGE') return new KafkaJSOffsetOutOfRange(d)
      if (d.type === 'SASL_AUTHENTICATION_FAILED') return new KafkaJSSASLAuthenticationError(msg)
      return new KafkaJSProtocolError({ message: msg, type: d.type, code: d.code, retriable: d.retriable })
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
  mapError,
  call,
}
