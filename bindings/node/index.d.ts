// Type definitions for sluice-client: KafkaJS's API (names and shapes as in
// KafkaJS 2.x) over Sluice's native Rust client. The native module's own
// generated definitions are in native.d.ts.

/// <reference types="node" />

export type Mechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512' | 'oauthbearer' | 'aws-msk-iam' | 'aws'

export interface OauthbearerProviderResponse {
  value: string
  /** sluice-client: token lifetime in ms from now (default one hour). */
  lifetimeMs?: number
  /** sluice-client: absolute expiry in ms since the epoch (aws-msk-iam-sasl-signer-js's expiryTime). */
  expiryTime?: number
  principal?: string
  extensions?: Record<string, string>
}

export type SASLOptions =
  | { mechanism: 'plain'; username: string; password: string }
  | { mechanism: 'scram-sha-256'; username: string; password: string }
  | { mechanism: 'scram-sha-512'; username: string; password: string }
  | { mechanism: 'oauthbearer'; oauthBearerProvider: () => Promise<OauthbearerProviderResponse> }
  | {
      /**
       * Signed by the built-in MSK IAM signer: the AWS SDK's default credential
       * chain (environment, profiles with role chains, credential_process and
       * SSO, web identity, container endpoint, IMDSv2) unless keys are given.
       */
      mechanism: 'aws-msk-iam' | 'aws'
      region?: string
      /** Credentials from this shared-files profile (not with accessKeyId). */
      profile?: string
      /** Assume this role (STS AssumeRole) and sign as it. */
      roleArn?: string
      /** RoleSessionName (default aws-msk-iam-auth). */
      roleSessionName?: string
      roleExternalId?: string
      /** Region of the STS endpoint (default: region). */
      stsRegion?: string
      accessKeyId?: string
      secretAccessKey?: string
      sessionToken?: string
      authorizationIdentity?: string
    }

export interface TlsOptions {
  ca?: string | Buffer | Array<string | Buffer>
  cert?: string | Buffer | Array<string | Buffer>
  key?: string | Buffer | Array<string | Buffer>
  rejectUnauthorized?: boolean
  servername?: string
  [other: string]: unknown
}

export interface RetryOptions {
  maxRetryTime?: number
  initialRetryTime?: number
  factor?: number
  multiplier?: number
  retries?: number
  restartOnFailure?: (e: Error) => Promise<boolean>
}

export enum logLevel {
  NOTHING = 0,
  ERROR = 1,
  WARN = 2,
  INFO = 4,
  DEBUG = 5,
}

export interface LogEntry {
  namespace: string
  level: logLevel
  label: string
  log: { timestamp: string; message: string; [key: string]: any }
}
export type logCreator = (logLevel: logLevel) => (entry: LogEntry) => void

export interface Logger {
  info: (message: string, extra?: object) => void
  error: (message: string, extra?: object) => void
  warn: (message: string, extra?: object) => void
  debug: (message: string, extra?: object) => void
  namespace: (namespace: string, logLevel?: logLevel) => Logger
  setLogLevel: (logLevel: logLevel) => void
}

export interface KafkaConfig {
  brokers: string[] | string
  ssl?: boolean | TlsOptions
  sasl?: SASLOptions
  clientId?: string
  connectionTimeout?: number
  authenticationTimeout?: number
  reauthenticationThreshold?: number
  requestTimeout?: number
  enforceRequestTimeout?: boolean
  retry?: RetryOptions
  socketFactory?: unknown
  logLevel?: logLevel
  logCreator?: logCreator
}

export enum CompressionTypes {
  None = 0,
  GZIP = 1,
  Snappy = 2,
  LZ4 = 3,
  ZSTD = 4,
}
export declare const CompressionCodecs: { [key in CompressionTypes]?: () => any }

export interface PartitionMetadata {
  partitionErrorCode?: number
  partitionId: number
  leader: number
  replicas?: number[]
  isr?: number[]
  offlineReplicas?: number[]
}
export type ICustomPartitioner = () => (args: { topic: string; partitionMetadata: PartitionMetadata[]; message: Message }) => number
export declare const Partitioners: {
  /** Java-compatible murmur2 (the Rust client's partitioner). */
  DefaultPartitioner: ICustomPartitioner
  JavaCompatiblePartitioner: ICustomPartitioner
  LegacyPartitioner: ICustomPartitioner
}
export declare const PartitionAssigners: { roundRobin: string; range: string; cooperativeSticky: string }

export interface IHeaders {
  [key: string]: Buffer | string | (Buffer | string)[] | undefined
}

export interface Message {
  key?: Buffer | string | null
  value: Buffer | string | null
  partition?: number
  headers?: IHeaders
  timestamp?: string
}

export interface ProducerConfig {
  createPartitioner?: ICustomPartitioner
  retry?: RetryOptions
  metadataMaxAge?: number
  allowAutoTopicCreation?: boolean
  idempotent?: boolean
  transactionalId?: string
  transactionTimeout?: number
  maxInFlightRequests?: number
  /** sluice-client: linger.ms (default 0: each send goes out at once, as in KafkaJS). */
  linger?: number
  /** sluice-client: batch.size in bytes. */
  batchSize?: number
  /** sluice-client: buffer.memory in bytes; sends wait for space when full. */
  bufferMemory?: number
  /** sluice-client: max.block.ms, how long a send may wait for buffer space. */
  maxBlockMs?: number
}

export interface TransactionOffsets {
  consumerGroupId: string
  topics: TopicOffsets[]
  /** sluice-client: the member's generation, for fencing stale members (KIP-447). */
  generationId?: number
  /** sluice-client: the member id that goes with `generationId`. */
  memberId?: string
  /** sluice-client: the static member's group.instance.id. */
  groupInstanceId?: string
}

export interface Transaction {
  send(record: ProducerRecord): Promise<RecordMetadata[]>
  sendBatch(batch: ProducerBatch): Promise<RecordMetadata[]>
  /** Commits these offsets for the group if (and only if) the transaction commits. */
  sendOffsets(offsets: TransactionOffsets): Promise<void>
  commit(): Promise<void>
  abort(): Promise<void>
  isActive(): boolean
}

export interface ProducerRecord {
  topic: string
  messages: Message[]
  acks?: number
  timeout?: number
  compression?: CompressionTypes
}

export interface TopicMessages {
  topic: string
  messages: Message[]
}

export interface ProducerBatch {
  acks?: number
  timeout?: number
  compression?: CompressionTypes
  topicMessages?: TopicMessages[]
}

export interface RecordMetadata {
  topicName: string
  partition: number
  errorCode: number
  offset?: string
  timestamp?: string
  baseOffset?: string
  logAppendTime?: string
  logStartOffset?: string
}

export interface InstrumentationEvent<T> {
  id: string | number
  type: string
  timestamp: number
  payload: T
}
export type RemoveInstrumentationEventListener<T> = () => void

export type ProducerEvents = {
  CONNECT: 'producer.connect'
  DISCONNECT: 'producer.disconnect'
  REQUEST: 'producer.network.request'
  REQUEST_TIMEOUT: 'producer.network.request_timeout'
  REQUEST_QUEUE_SIZE: 'producer.network.request_queue_size'
}

export interface Producer {
  connect(): Promise<void>
  disconnect(): Promise<void>
  isIdempotent(): boolean
  readonly events: ProducerEvents
  on(eventName: ProducerEvents[keyof ProducerEvents], listener: (event: InstrumentationEvent<any>) => void): RemoveInstrumentationEventListener<typeof eventName>
  send(record: ProducerRecord): Promise<RecordMetadata[]>
  sendBatch(batch: ProducerBatch): Promise<RecordMetadata[]>
  /** Begins a transaction (needs `transactionalId`); one at a time. */
  transaction(): Promise<Transaction>
  logger(): Logger
  /** sluice-client: waits until everything sent so far is delivered. */
  flush(): Promise<void>
}

export interface ConsumerConfig {
  groupId: string
  partitionAssigners?: unknown[]
  metadataMaxAge?: number
  sessionTimeout?: number
  rebalanceTimeout?: number
  heartbeatInterval?: number
  maxBytesPerPartition?: number
  minBytes?: number
  maxBytes?: number
  maxWaitTimeInMs?: number
  retry?: RetryOptions
  allowAutoTopicCreation?: boolean
  maxInFlightRequests?: number
  /** false by default, as in KafkaJS: only committed transactional records are read. */
  readUncommitted?: boolean
  rackId?: string
  /** sluice-client: group.instance.id (static membership). */
  groupInstanceId?: string
  /** sluice-client: max.poll.records per fetch round (default 20000). */
  maxPollRecords?: number
}

export interface ConsumerSubscribeTopics {
  topics: (string | RegExp)[]
  fromBeginning?: boolean
}
export interface ConsumerSubscribeTopic {
  topic: string | RegExp
  fromBeginning?: boolean
}

export interface KafkaMessage {
  key: Buffer | null
  value: Buffer | null
  timestamp: string
  attributes: number
  offset: string
  size?: number
  headers?: { [key: string]: Buffer | string | (Buffer | string)[] | undefined }
  magicByte?: number
  isControlRecord?: boolean
  batchContext?: unknown
}

export interface Batch {
  topic: string
  partition: number
  highWatermark: string
  messages: KafkaMessage[]
  isEmpty(): boolean
  firstOffset(): string | null
  lastOffset(): string
  offsetLag(): string
  offsetLagLow(): string
}

export interface TopicPartitions {
  topic: string
  partitions: number[]
}
export interface TopicPartition {
  topic: string
  partition: number
}
export interface TopicPartitionOffset extends TopicPartition {
  offset: string
}
export interface TopicPartitionOffsetAndMetadata extends TopicPartitionOffset {
  metadata?: string | null
}
export interface PartitionOffset {
  partition: number
  offset: string
}
export interface TopicOffsets {
  topic: string
  partitions: PartitionOffset[]
}
export interface Offsets {
  topics: TopicOffsets[]
}

export interface EachMessagePayload {
  topic: string
  partition: number
  message: KafkaMessage
  heartbeat(): Promise<void>
  pause(): () => void
}

export interface EachBatchPayload {
  batch: Batch
  resolveOffset(offset: string): void
  heartbeat(): Promise<void>
  pause(): () => void
  commitOffsetsIfNecessary(offsets?: Offsets): Promise<void>
  uncommittedOffsets(): Offsets
  isRunning(): boolean
  isStale(): boolean
}

/**
 * What `eachPartitionBatch` gets: one partition's records of a poll, in
 * offset order. There is no resolveOffset: the whole batch is committed
 * once the handler's promise resolves.
 */
export interface EachPartitionBatchPayload {
  batch: Batch
  heartbeat(): Promise<void>
  pause(): () => void
  isRunning(): boolean
}

export type EachMessageHandler = (payload: EachMessagePayload) => Promise<void>
export type EachBatchHandler = (payload: EachBatchPayload) => Promise<void>
export type EachPartitionBatchHandler = (payload: EachPartitionBatchPayload) => Promise<void>

export interface ConsumerRunConfig {
  autoCommit?: boolean
  autoCommitInterval?: number | null
  autoCommitThreshold?: number | null
  eachBatchAutoResolve?: boolean
  partitionsConsumedConcurrently?: number
  eachBatch?: EachBatchHandler
  eachMessage?: EachMessageHandler
  /**
   * The Lambda-style handler (what a function behind an MSK trigger gets),
   * instead of eachBatch/eachMessage: each partition's batches come in
   * order, and a batch's offset is committed (awaited, not on an interval;
   * autoCommit settings do not apply) only after the handler's promise
   * resolves, before that partition's next batch. A rejection commits
   * nothing: the same batch is delivered again after a backoff
   * (retry.initialRetryTime doubling up to retry.maxRetryTime) while
   * other partitions carry on; the loop does not crash.
   */
  eachPartitionBatch?: EachPartitionBatchHandler
}

export type ConsumerEvents = {
  HEARTBEAT: 'consumer.heartbeat'
  COMMIT_OFFSETS: 'consumer.commit_offsets'
  GROUP_JOIN: 'consumer.group_join'
  FETCH_START: 'consumer.fetch_start'
  FETCH: 'consumer.fetch'
  START_BATCH_PROCESS: 'consumer.start_batch_process'
  END_BATCH_PROCESS: 'consumer.end_batch_process'
  CONNECT: 'consumer.connect'
  DISCONNECT: 'consumer.disconnect'
  STOP: 'consumer.stop'
  CRASH: 'consumer.crash'
  REBALANCING: 'consumer.rebalancing'
  RECEIVED_UNSUBSCRIBED_TOPICS: 'consumer.received_unsubscribed_topics'
  REQUEST: 'consumer.network.request'
  REQUEST_TIMEOUT: 'consumer.network.request_timeout'
  REQUEST_QUEUE_SIZE: 'consumer.network.request_queue_size'
}

export type ConsumerGroupJoinEvent = InstrumentationEvent<{
  duration: number
  groupId: string
  isLeader: boolean
  leaderId: string
  groupProtocol: string
  memberId: string
  memberAssignment: { [topic: string]: number[] }
}>
export type ConsumerCrashEvent = InstrumentationEvent<{ error: Error; groupId: string; restart: boolean }>

export interface Consumer {
  connect(): Promise<void>
  disconnect(): Promise<void>
  subscribe(subscription: ConsumerSubscribeTopics | ConsumerSubscribeTopic): Promise<void>
  stop(): Promise<void>
  run(config?: ConsumerRunConfig): Promise<void>
  commitOffsets(topicPartitions: Array<TopicPartitionOffsetAndMetadata>): Promise<void>
  seek(topicPartitionOffset: TopicPartitionOffset): void
  describeGroup(): Promise<never>
  pause(topics: Array<{ topic: string; partitions?: number[] }>): void
  paused(): TopicPartitions[]
  resume(topics: Array<{ topic: string; partitions?: number[] }>): void
  on(eventName: ConsumerEvents['GROUP_JOIN'], listener: (event: ConsumerGroupJoinEvent) => void): RemoveInstrumentationEventListener<typeof eventName>
  on(eventName: ConsumerEvents['CRASH'], listener: (event: ConsumerCrashEvent) => void): RemoveInstrumentationEventListener<typeof eventName>
  on(eventName: ConsumerEvents[keyof ConsumerEvents], listener: (event: InstrumentationEvent<any>) => void): RemoveInstrumentationEventListener<typeof eventName>
  logger(): Logger
  readonly events: ConsumerEvents
}

export interface ITopicConfig {
  topic: string
  numPartitions?: number
  replicationFactor?: number
  replicaAssignment?: object[]
  configEntries?: Array<{ name: string; value: string }>
}

export interface ITopicMetadata {
  name: string
  partitions: PartitionMetadata[]
}

export interface MemberDescription {
  clientHost: string
  clientId: string
  memberId: string
  memberAssignment: Buffer
  memberMetadata: Buffer
  groupInstanceId: string | null
  /** sluice-client: the decoded assignment. */
  assignment: TopicPartition[]
}
export interface GroupDescription {
  groupId: string
  members: MemberDescription[]
  protocol: string
  protocolType: string
  state: string
  errorCode: number
}
export interface GroupDescriptions {
  groups: GroupDescription[]
}

export type AdminEvents = {
  CONNECT: 'admin.connect'
  DISCONNECT: 'admin.disconnect'
  REQUEST: 'admin.network.request'
  REQUEST_TIMEOUT: 'admin.network.request_timeout'
  REQUEST_QUEUE_SIZE: 'admin.network.request_queue_size'
}

export interface Admin {
  connect(): Promise<void>
  disconnect(): Promise<void>
  listTopics(): Promise<string[]>
  createTopics(options: { validateOnly?: boolean; waitForLeaders?: boolean; timeout?: number; topics: ITopicConfig[] }): Promise<boolean>
  deleteTopics(options: { topics: string[]; timeout?: number }): Promise<void>
  fetchTopicMetadata(options?: { topics: string[] }): Promise<{ topics: Array<ITopicMetadata> }>
  fetchTopicOffsets(topic: string): Promise<Array<PartitionOffset & { high: string; low: string }>>
  fetchTopicOffsetsByTimestamp(topic: string, timestamp?: number): Promise<Array<PartitionOffset>>
  createPartitions(options: { validateOnly?: boolean; timeout?: number; topicPartitions: Array<{ topic: string; count: number }> }): Promise<void>
  describeCluster(): Promise<{ brokers: Array<{ nodeId: number; host: string; port: number }>; controller: number | null; clusterId: string }>
  deleteTopicRecords(options: { topic: string; partitions: Array<{ partition: number; offset: string }> }): Promise<void>
  describeGroups(groupIds: string[]): Promise<GroupDescriptions>
  listGroups(): Promise<{ groups: Array<{ groupId: string; protocolType: string }> }>
  deleteGroups(groupIds: string[]): Promise<Array<{ groupId: string; errorCode: number }>>
  fetchOffsets(options: { groupId: string; topics?: string[]; resolveOffsets?: boolean }): Promise<Array<{ topic: string; partitions: Array<PartitionOffset & { metadata: string | null }> }>>
  setOffsets(options: { groupId: string; topic: string; partitions: PartitionOffset[] }): Promise<void>
  resetOffsets(options: { groupId: string; topic: string; earliest: boolean }): Promise<void>
  logger(): Logger
  on(eventName: AdminEvents[keyof AdminEvents], listener: (event: InstrumentationEvent<any>) => void): RemoveInstrumentationEventListener<typeof eventName>
  readonly events: AdminEvents
}

export interface AdminConfig {
  retry?: RetryOptions
}

export declare class Kafka {
  constructor(config: KafkaConfig)
  producer(config?: ProducerConfig): Producer
  consumer(config: ConsumerConfig): Consumer
  admin(config?: AdminConfig): Admin
  logger(): Logger
}

export declare class KafkaJSError extends Error {
  readonly message: string
  readonly name: string
  readonly retriable: boolean
  readonly helpUrl?: string
  readonly cause?: Error | KafkaJSError
  constructor(e: Error | string, metadata?: { retriable?: boolean; cause?: Error })
}
export declare class KafkaJSNonRetriableError extends KafkaJSError {
  constructor(e: Error | string, metadata?: { cause?: Error })
}
export declare class KafkaJSProtocolError extends KafkaJSError {
  /** Kafka's name for the error code, e.g. UNKNOWN_TOPIC_OR_PARTITION. */
  readonly type: string
  readonly code: number
  constructor(e: Error | string | { message: string; type?: string; code?: number; retriable?: boolean })
}
export declare class KafkaJSOffsetOutOfRange extends KafkaJSProtocolError {
  readonly topic: string
  readonly partition: number
}
export declare class KafkaJSMemberIdRequired extends KafkaJSProtocolError {
  readonly memberId: string
}
export declare class KafkaJSNumberOfRetriesExceeded extends KafkaJSNonRetriableError {
  readonly originalError?: Error
  readonly retryCount?: number
  readonly retryTime?: number
  constructor(e: Error | string, metadata?: { retryCount?: number; retryTime?: number; cause?: Error })
}
export declare class KafkaJSConnectionError extends KafkaJSError {
  readonly broker?: string
  constructor(e: Error | string, metadata?: { broker?: string; code?: string; retriable?: boolean })
}
export declare class KafkaJSConnectionClosedError extends KafkaJSConnectionError {
  readonly host?: string
  readonly port?: number
}
export declare class KafkaJSRequestTimeoutError extends KafkaJSError {}
export declare class KafkaJSTimeout extends KafkaJSError {
  constructor(e: Error | string, metadata?: { retriable?: boolean })
}
export declare class KafkaJSSASLAuthenticationError extends KafkaJSError {}
export declare class KafkaJSMetadataNotLoaded extends KafkaJSError {}
export declare class KafkaJSTopicMetadataNotLoaded extends KafkaJSError {}
export declare class KafkaJSStaleTopicMetadataAssignment extends KafkaJSError {}
export declare class KafkaJSServerDoesNotSupportApiKey extends KafkaJSNonRetriableError {}
export declare class KafkaJSBrokerNotFound extends KafkaJSError {}
export declare class KafkaJSPartialMessageError extends KafkaJSNonRetriableError {}
export declare class KafkaJSGroupCoordinatorNotFound extends KafkaJSNonRetriableError {}
export declare class KafkaJSNotImplemented extends KafkaJSNonRetriableError {}
export declare class KafkaJSLockTimeout extends KafkaJSTimeout {}
export declare class KafkaJSUnsupportedMagicByteInMessageSet extends KafkaJSNonRetriableError {}
export declare class KafkaJSDeleteGroupsError extends KafkaJSError {
  readonly groups?: Array<{ groupId: string; errorCode: number; error: KafkaJSError }>
}
export declare class KafkaJSDeleteTopicRecordsError extends KafkaJSError {}
export declare class KafkaJSCreateTopicError extends KafkaJSProtocolError {}
export declare class KafkaJSAggregateError extends KafkaJSError {
  readonly errors?: Error[]
}
export declare class KafkaJSFetcherRebalanceError extends KafkaJSError {}
export declare class KafkaJSNoBrokerAvailableError extends KafkaJSError {}
export declare class KafkaJSAlterPartitionReassignmentsError extends KafkaJSProtocolError {}
export declare class KafkaJSInvariantViolation extends KafkaJSNonRetriableError {}
export declare class KafkaJSInvalidVarIntError extends KafkaJSNonRetriableError {}
export declare class KafkaJSInvalidLongError extends KafkaJSNonRetriableError {}
