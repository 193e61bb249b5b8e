'use strict'
// KafkaJS's classes (Kafka, producer, consumer, admin) as thin wrappers
// over the native module: argument shaping, KafkaJS's payloads and events,
// and error mapping. Kafka logic (batching, retries, group membership,
// partitioning) is the Rust client's.

const { EventEmitter } = require('events')
const native = require('../native.js')
const errors = require('./errors')
const { call, mapError, KafkaJSNonRetriableError, KafkaJSError } = errors
const { producerSettings, consumerSettings, clientSettings } = require('./config')

/** @typedef {import('../index').ProducerRecord} ProducerRecord */
/** @typedef {import('../index').ProducerBatch} ProducerBatch */
/** @typedef {import('../index').ConsumerRunConfig} ConsumerRunConfig */
/** @typedef {import('../index').TopicPartitionOffset} TopicPartitionOffset */
/** @typedef {import('../index').PartitionOffset} PartitionOffset */

// ------------------------------------------------------------------ enums

const CompressionTypes = { None: 0, GZIP: 1, Snappy: 2, LZ4: 3, ZSTD: 4 }
const COMPRESSION_NAMES = ['none', 'gzip', 'snappy', 'lz4', 'zstd']
/** KafkaJS's codec plugin registry; every codec is built in here, so entries are accepted and ignored. */
const CompressionCodecs = {
  [CompressionTypes.GZIP]: () => ({ builtin: 'gzip' }),
  [CompressionTypes.Snappy]: () => ({ builtin: 'snappy' }),
  [CompressionTypes.LZ4]: () => ({ builtin: 'lz4' }),
  [CompressionTypes.ZSTD]: () => ({ builtin: 'zstd' }),
}

const logLevel = { NOTHING: 0, ERROR: 1, WARN: 2, INFO: 4, DEBUG: 5 }
const LEVEL_LABEL = { 1: 'ERROR', 2: 'WARN', 4: 'INFO', 5: 'DEBUG' }

const BUILTIN = Symbol('sluice.builtinPartitioner')

/** Java-compatible murmur2 partitioner (the Rust client's), as a KafkaJS partitioner factory. */
function DefaultPartitioner() {
  const fn = ({ partitionMetadata, message }) => {
    const n = partitionMetadata.length
    if (message.partition !== undefined && message.partition !== null) return message.partition
    if (message.key === null || message.key === undefined) return partitionMetadata[Math.floor(Math.random() * n)].partitionId
    const key = Buffer.isBuffer(message.key) ? message.key : Buffer.from(String(message.key))
    return partitionMetadata[native.defaultPartition(key, n)].partitionId
  }
  fn[BUILTIN] = true
  return fn
}
DefaultPartitioner[BUILTIN] = true
const Partitioners = {
  DefaultPartitioner,
  JavaCompatiblePartitioner: DefaultPartitioner,
  LegacyPartitioner: DefaultPartitioner,
}

const PartitionAssigners = { roundRobin: 'roundrobin', range: 'range', cooperativeSticky: 'cooperative-sticky' }

// ------------------------------------------------------------------ logging

function defaultLogCreator() {
  return ({ namespace, level, label, log }) => {
    const { message, ...extra } = log
    const line = JSON.stringify({ level: label, timestamp: log.timestamp, logger: 'sluice-client', message, ...extra })
    if (level === logLevel.ERROR) console.error(line)
    else if (level === logLevel.WARN) console.warn(line)
    else console.log(line)
  }
}

function makeLogger(level, logCreator, namespace = '') {
  let current = level
  const write = logCreator(current)
  const at = (lvl) => (message, extra = {}) => {
    if (lvl > current || current === logLevel.NOTHING) return
    write({ namespace, level: lvl, label: LEVEL_LABEL[lvl], log: { timestamp: new Date().toISOString(), message, ...extra } })
  }
  return {
    info: at(logLevel.INFO),
    error: at(logLevel.ERROR),
    warn: at(logLevel.WARN),
    debug: at(logLevel.DEBUG),
    namespace: (ns, lvl) => makeLogger(lvl ?? current, logCreator, ns),
    setLogLevel: (l) => {
      current = l
    },
  }
}

// ------------------------------------------------------------------ events

let eventId = 0
class Instrumented {
  constructor(events) {
    this.events = events
    this._emitter = new EventEmitter()
  }
  on(eventName, listener) {
    if (!Object.values(this.events).includes(eventName)) {
      throw new KafkaJSError(`Event name should be one of ${Object.values(this.events).join(', ')}, got ${eventName}`)
    }
    const wrapped = (e) => {
      Promise.resolve()
        .then(() => listener(e))
        .catch(() => {})
    }
    this._emitter.on(eventName, wrapped)
    return () => this._emitter.removeListener(eventName, wrapped)
  }
  _emit(type, payload = {}) {
    if (this._emitter.listenerCount(type) === 0) return
    this._emitter.emit(type, { id: eventId++, type, timestamp: Date.now(), payload })
  }
}

const PRODUCER_EVENTS = {
  CONNECT: 'producer.connect',
  DISCONNECT: 'producer.disconnect',
  REQUEST: 'producer.network.request',
  REQUEST_TIMEOUT: 'producer.network.request_timeout',
  REQUEST_QUEUE_SIZE: 'producer.network.request_queue_size',
}
const CONSUMER_EVENTS = {
  HEARTBEAT: 'consumer.heartbeat',
  COMMIT_OFFSETS: 'consumer.commit_offsets',
  GROUP_JOIN: 'consumer.group_join',
  FETCH_START: 'consumer.fetch_start',
  FETCH: 'consumer.fetch',
  START_BATCH_PROCESS: 'consumer.start_batch_process',
  END_BATCH_PROCESS: 'consumer.end_batch_process',
  CONNECT: 'consumer.connect',
  DISCONNECT: 'consumer.disconnect',
  STOP: 'consumer.stop',
  CRASH: 'consumer.crash',
  REBALANCING: 'consumer.rebalancing',
  RECEIVED_UNSUBSCRIBED_TOPICS: 'consumer.received_unsubscribed_topics',
  REQUEST: 'consumer.network.request',
  REQUEST_TIMEOUT: 'consumer.network.request_timeout',
  REQUEST_QUEUE_SIZE: 'consumer.network.request_queue_size',
}
const ADMIN_EVENTS = {
  CONNECT: 'admin.connect',
  DISCONNECT: 'admin.disconnect',
  REQUEST: 'admin.network.request',
  REQUEST_TIMEOUT: 'admin.network.request_timeout',
  REQUEST_QUEUE_SIZE: 'admin.network.request_queue_size',
}

// ------------------------------------------------------------------ helpers

function toBuffer(v) {
  if (v === null || v === undefined) return null
  if (Buffer.isBuffer(v)) return v
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength)
  return Buffer.from(String(v))
}

function headerList(headers) {
  const out = []
  for (const [key, v] of Object.entries(headers)) {
    for (const one of Array.isArray(v) ? v : [v]) out.push({ key, value: toBuffer(one) ?? undefined })
  }
  return out
}

function compressionName(c) {
  if (c === undefined || c === null) return 'none'
  const name = COMPRESSION_NAMES[c]
  if (!name) throw new KafkaJSNonRetriableError(`Compression type ${c} is not supported`)
  return name
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms))
}

/** The payload of KafkaJS's START_BATCH_PROCESS (and, with `duration`, END_BATCH_PROCESS). */
function batchEvent(batch) {
  return {
    topic: batch.topic,
    partition: batch.partition,
    highWatermark: batch.highWatermark,
    offsetLag: batch.offsetLag(),
    offsetLagLow: batch.offsetLagLow(),
    batchSize: batch.messages.length,
    firstOffset: batch.firstOffset(),
    lastOffset: batch.lastOffset(),
  }
}

const tpKey = (topic, partition) => `${topic}\u0000${partition}`

/**
 * KafkaJS's `Offsets` (`{ topics: [{ topic, partitions: [{ partition, offset }] }] }`,
 * what eachBatch's commitOffsetsIfNecessary takes) as commitOffsets' list.
 * @param {import('../index').Offsets} offsets
 */
function offsetsList(offsets) {
  return (offsets.topics || []).flatMap(({ topic, partitions }) =>
    partitions.map(({ partition, offset }) => ({ topic, partition, offset })),
  )
}

// ------------------------------------------------------------------ producer

class Producer extends Instrumented {
  constructor(kafka, opts = {}) {
    super(PRODUCER_EVENTS)
    const { props, tokenProvider, aws } = producerSettings(kafka._config, opts)
    this._idempotent = !!opts.idempotent || !!opts.transactionalId
    this._transactionalId = opts.transactionalId || null
    this._transactionsReady = false
    /** @type {Transaction | null} */
    this._transaction = null
    this._logger = kafka._logger.namespace('Producer')
    const cp = opts.createPartitioner
    this._partitioner = cp && !cp[BUILTIN] ? cp() : null
    this._native = new native.NativeProducer(props, tokenProvider, aws)
    this._connected = false
  }

  async connect() {
    await call(() => this._native.connect())
    if (this._transactionalId && !this._transactionsReady) {
      // As KafkaJS: a transactional producer gets its producer id (and
      // fences older instances) when it connects.
      await call(() => this._native.initTransactions())
      this._transactionsReady = true
    }
    this._connected = true
    this._emit(PRODUCER_EVENTS.CONNECT)
  }

  async disconnect() {
    await call(() => this._native.close(30000))
    if (this._connected) this._emit(PRODUCER_EVENTS.DISCONNECT)
    this._connected = false
  }

  isIdempotent() {
    return this._idempotent
  }

  logger() {
    return this._logger
  }

  /**
   * Begins a transaction (KafkaJS's API): the returned object's send,
   * sendBatch and sendOffsets join it until commit() or abort().
   * @returns {Promise<Transaction>}
   */
  async transaction() {
    if (!this._transactionalId) {
      throw new KafkaJSNonRetriableError('Must provide transactional id for transactional producer')
    }
    if (this._transaction && this._transaction.isActive()) {
      throw new KafkaJSNonRetriableError(
        'There is already an ongoing transaction for this producer. Please end the transaction before beginning another.',
      )
    }
    if (!this._transactionsReady) {
      await call(() => this._native.initTransactions())
      this._transactionsReady = true
    }
    await call(async () => this._native.beginTransaction())
    this._transaction = new Transaction(this)
    return this._transaction
  }

  /** @param {Partial<ProducerRecord>} [record] checked here, as KafkaJS does */
  async send({ topic, messages, acks = -1, timeout, compression } = {}) {
    if (!topic) throw new KafkaJSNonRetriableError('Invalid topic')
    if (!Array.isArray(messages)) throw new KafkaJSNonRetriableError(`Invalid messages array [${messages}] for topic "${topic}"`)
    if (this._idempotent && acks !== -1) {
      throw new KafkaJSNonRetriableError("Not requiring ack for all messages invalidates the idempotent producer's EoS guarantees")
    }
    if (this._transactionalId) {
      // One Rust producer carries the transactional id: it cannot switch
      // compression per call (the records are the same either way).
      if (compression !== undefined && compression !== null && !this._warnedCompression) {
        this._warnedCompression = true
        this._logger.warn('A transactional producer sends uncompressed; the per-call compression is ignored', { compression })
      }
      compression = undefined
    }
    if (messages.length === 0) return []
    let meta = null
    if (this._partitioner) {
      const ids = await call(() => this._native.partitionsFor(topic))
      meta = ids.map((partitionId) => ({ partitionId, leader: -1 }))
    }
    const n = messages.length
    const layout = new Int32Array(n * 3)
    const parts = []
    let timestamps = null
    let headers = null
    for (let i = 0; i < n; i++) {
      const m = messages[i]
      const key = toBuffer(m.key)
      const value = toBuffer(m.value)
      let partition = m.partition
      if ((partition === undefined || partition === null) && this._partitioner) {
        partition = this._partitioner({ topic, partitionMetadata: meta, message: m })
      }
      layout[3 * i] = partition === undefined || partition === null ? -1 : partition
      layout[3 * i + 1] = key ? key.length : -1
      layout[3 * i + 2] = value ? value.length : -1
      if (key) parts.push(key)
      if (value) parts.push(value)
      if (m.timestamp !== undefined && m.timestamp !== null) {
        if (!timestamps) timestamps = new Float64Array(n).fill(NaN)
        timestamps[i] = Number(m.timestamp)
      }
      if (m.headers) {
        if (!headers) headers = new Array(n).fill(null)
        headers[i] = headerList(m.headers)
      }
    }
    const data = parts.length === 1 ? parts[0] : Buffer.concat(parts)
    return call(() => this._native.send(topic, data, layout, timestamps, headers, acks, compressionName(compression)))
  }

  /** @param {ProducerBatch} [batch] */
  async sendBatch({ topicMessages = [], acks = -1, timeout, compression } = {}) {
    const results = await Promise.all(topicMessages.map(({ topic, messages }) => this.send({ topic, messages, acks, timeout, compression })))
    return results.flat()
  }

  /** sluice-client extra: waits until everything sent so far is delivered. */
  async flush() {
    await call(() => this._native.flush())
  }
}

/**
 * A KafkaJS transaction: send, sendBatch and sendOffsets join it until
 * commit() or abort(); then the object is spent.
 */
class Transaction {
  /** @param {Producer} producer */
  constructor(producer) {
    this._producer = producer
    this._ended = false
  }

  isActive() {
    return !this._ended
  }

  _check() {
    if (this._ended) throw new KafkaJSNonRetriableError('Cannot continue to use transaction once ended')
  }

  /** @param {Partial<ProducerRecord>} [record] */
  async send(record) {
    this._check()
    return this._producer.send(record)
  }

  /** @param {ProducerBatch} [batch] */
  async sendBatch(batch) {
    this._check()
    return this._producer.sendBatch(batch)
  }

  /**
   * Adds a consumer group's offsets (the next offsets to read) to the
   * transaction: `{ consumerGroupId, topics: [{ topic, partitions: [{ partition, offset }] }] }`.
   * sluice-client extra: `generationId`, `memberId` and `groupInstanceId`
   * (from a group member) let the broker fence a stale member (KIP-447).
   * @param {Partial<import('../index').TransactionOffsets>} [offsets]
   */
  async sendOffsets({ consumerGroupId, topics, generationId, memberId, groupInstanceId } = {}) {
    this._check()
    if (!consumerGroupId) throw new KafkaJSNonRetriableError('Missing consumerGroupId')
    const offsets = offsetsList({ topics }).map(({ topic, partition, offset }) => ({ topic, partition, offset: String(offset) }))
    await call(() =>
      this._producer._native.sendOffsetsToTransaction(offsets, String(consumerGroupId), generationId, memberId, groupInstanceId),
    )
  }

  async commit() {
    this._check()
    await call(() => this._producer._native.commitTransaction())
    this._ended = true
  }

  async abort() {
    this._check()
    await call(() => this._producer._native.abortTransaction())
    this._ended = true
  }
}

// ------------------------------------------------------------------ consumer

function decodeBatch(b) {
  const { data, lengths, offsets, timestamps, headers } = b
  const n = offsets.length
  const messages = new Array(n)
  let pos = 0
  for (let i = 0; i < n; i++) {
    const kl = lengths[2 * i]
    const vl = lengths[2 * i + 1]
    let key = null
    let value = null
    if (kl >= 0) {
      key = data.subarray(pos, pos + kl)
      pos += kl
    }
    if (vl >= 0) {
      value = data.subarray(pos, pos + vl)
      pos += vl
    }
    let hs = {}
    if (headers && headers[i].length) {
      for (const h of headers[i]) {
        const v = h.value === undefined ? null : h.value
        if (h.key in hs) hs[h.key] = [].concat(hs[h.key], v)
        else hs[h.key] = v
      }
    }
    messages[i] = {
      magicByte: 2,
      attributes: 0,
      timestamp: String(timestamps[i]),
      offset: String(offsets[i]),
      key,
      value,
      headers: hs,
      isControlRecord: false,
      batchContext: null,
      size: (kl > 0 ? kl : 0) + (vl > 0 ? vl : 0),
    }
  }
  return messages
}

class Batch {
  constructor(topic, partition, messages) {
    this.topic = topic
    this.partition = partition
    this.messages = messages
    const last = messages.length ? messages[messages.length - 1].offset : '-1'
    // The Rust consumer does not hand out the fetch's high watermark; the
    // offset after the last record is the best lower bound we have.
    this.highWatermark = String(Number(last) + 1)
    this.fetchedOffset = messages.length ? messages[0].offset : '-1'
  }
  isEmpty() {
    return this.messages.length === 0
  }
  firstOffset() {
    return this.isEmpty() ? null : this.messages[0].offset
  }
  lastOffset() {
    return this.isEmpty() ? String(Number(this.highWatermark) - 1) : this.messages[this.messages.length - 1].offset
  }
  offsetLag() {
    return String(Math.max(0, Number(this.highWatermark) - 1 - Number(this.lastOffset())))
  }
  offsetLagLow() {
    return this.isEmpty() ? '0' : String(Math.max(0, Number(this.highWatermark) - 1 - Number(this.firstOffset())))
  }
}

class Consumer extends Instrumented {
  constructor(kafka, opts = {}) {
    super(CONSUMER_EVENTS)
    if (!opts.groupId) throw new KafkaJSNonRetriableError('Consumer groupId must be a non-empty string.')
    this._groupId = opts.groupId
    this._opts = opts
    this._retry = { retries: 5, initialRetryTime: 300, ...(kafka._config.retry || {}), ...(opts.retry || {}) }
    this._logger = kafka._logger.namespace('Consumer')
    const { props, tokenProvider, aws } = consumerSettings(kafka._config, opts)
    this._native = new native.NativeConsumer(props, tokenProvider, aws)
    this._topics = []
    this._patterns = []
    this._fromBeginning = false
    this._running = false
    this._loop = null
    this._resolved = new Map() // tp -> {topic, partition, offset}
    this._pendingSeeks = new Map()
    this._pendingPauses = []
    this._stale = new Set()
    this._paused = new Set()
    this._connected = false
  }

  logger() {
    return this._logger
  }

  async connect() {
    await call(() => this._native.connect())
    this._connected = true
    this._emit(CONSUMER_EVENTS.CONNECT)
  }

  /** @param {{ topic?: string | RegExp, topics?: Array<string | RegExp>, fromBeginning?: boolean }} [subscription] */
  async subscribe({ topic, topics, fromBeginning = false } = {}) {
    if (this._running) throw new KafkaJSNonRetriableError('Cannot subscribe to topic while consumer is running')
    const list = topics || (topic !== undefined ? [topic] : [])
    if (list.length === 0) throw new KafkaJSNonRetriableError('Missing required argument "topics"')
    for (const t of list) {
      if (t instanceof RegExp) this._patterns.push(t.source)
      else if (typeof t === 'string' && t.length) this._topics.push(t)
      else throw new KafkaJSNonRetriableError(`Invalid topic ${t} (${typeof t}), the topic name has to be a String or a RegExp`)
    }
    if (fromBeginning) this._fromBeginning = true
  }

  /** @param {ConsumerRunConfig} [config] */
  async run({
    eachMessage,
    eachBatch,
    eachPartitionBatch,
    autoCommit = true,
    autoCommitInterval = null,
    autoCommitThreshold = null,
    eachBatchAutoResolve = true,
    partitionsConsumedConcurrently = 1,
  } = {}) {
    if (this._running) throw new KafkaJSNonRetriableError('Consumer is already running')
    const handlers = [eachMessage, eachBatch, eachPartitionBatch].filter((h) => h !== undefined && h !== null)
    if (handlers.length === 0) throw new KafkaJSNonRetriableError('Consumer requires eachMessage, eachBatch or eachPartitionBatch')
    if (handlers.length > 1) throw new KafkaJSNonRetriableError('Consumer takes one of eachMessage, eachBatch and eachPartitionBatch')
    if (typeof handlers[0] !== 'function') throw new KafkaJSNonRetriableError(`The consumer's handler must be a function, not ${typeof handlers[0]}`)
    if (this._topics.length === 0 && this._patterns.length === 0) {
      throw new KafkaJSNonRetriableError('Consumer has no subscriptions (call subscribe first)')
    }
    const pattern = this._patterns.length ? this._patterns.map((p) => `(?:${p})`).join('|') : null
    await call(() =>
      this._native.start(this._topics, pattern, { 'auto.offset.reset': this._fromBeginning ? 'earliest' : 'latest' }),
    )
    this._running = true
    this._cfg = { eachMessage, eachBatch, eachPartitionBatch, autoCommit, autoCommitInterval, autoCommitThreshold, eachBatchAutoResolve }
    this._batchRetries = new Map() // tp -> { topic, partition, attempts, until } while a failed batch backs off
    this._concurrency = Math.max(1, partitionsConsumedConcurrently | 0)
    this._lastCommit = Date.now()
    this._uncommitted = 0
    this._loop = this._runLoop().catch((e) => this._crash(e, false))
  }

  async _crash(error, restart) {
    this._logger.error(`Crash: ${error.name}: ${error.message}`, { groupId: this._groupId, retryCount: 0 })
    this._emit(CONSUMER_EVENTS.CRASH, { error, groupId: this._groupId, restart })
    this._running = false
  }

  async _applyPending(afterPoll) {
    for (const [k, s] of this._pendingSeeks) {
      try {
        await call(() => this._native.seek(s.topic, s.partition, String(s.offset)))
        this._pendingSeeks.delete(k)
        this._resolved.delete(k)
        if (afterPoll) this._stale.add(k)
      } catch (e) {
        // Not assigned yet: keep it until the partition is.
      }
    }
    if (this._pendingPauses.length) {
      const ops = this._pendingPauses
      this._pendingPauses = []
      const assigned = await call(() => this._native.assignment())
      for (const { topics, pause } of ops) {
        const tps = []
        for (const { topic, partitions } of topics) {
          for (const a of assigned) {
            if (a.topic === topic && (!partitions || partitions.includes(a.partition))) tps.push(a)
          }
        }
        if (tps.length) await call(() => this._native.setPaused(tps, pause))
      }
    }
  }

  async _runLoop() {
    let failures = 0
    while (this._running) {
      let res
      try {
        await this._resumeRetried()
        await this._applyPending(false)
        this._emit(CONSUMER_EVENTS.FETCH_START, {})
        const started = Date.now()
        res = await call(() => this._native.poll(500))
        this._emit(CONSUMER_EVENTS.FETCH, { numberOfBatches: res.batches.length, duration: Date.now() - started })
      } catch (e) {
        // The native poll already retried retriable errors with backoff.
        return this._crash(mapError(e), false)
      }
      await this._rebalances(res.rebalances)
      if (this._pendingSeeks.size) await this._applyPending(true)
      this._stale.clear()
      const batches = res.batches
      let failed = null
      const work = async (b) => {
        const err = this._cfg.eachPartitionBatch ? await this._processPartitionBatch(b) : await this._process(b)
        if (err && !failed) failed = err
      }
      if (this._concurrency === 1) {
        for (const b of batches) {
          if (!this._running) break
          await work(b)
        }
      } else {
        let next = 0
        const lanes = Array.from({ length: Math.min(this._concurrency, batches.length) }, async () => {
          while (next < batches.length && this._running) await work(batches[next++])
        })
        await Promise.all(lanes)
      }
      await this._afterBatches()
      if (failed) {
        failures++
        if (failures > this._retry.retries) return this._crash(failed, false)
        this._emit(CONSUMER_EVENTS.CRASH, { error: failed, groupId: this._groupId, restart: true })
        await sleep(this._retry.initialRetryTime * failures)
      } else {
        failures = 0
      }
    }
  }

  async _rebalances(list) {
    for (const r of list) {
      if (r.kind === 'assigned') {
        const assigned = await call(() => this._native.assignment())
        const memberAssignment = {}
        for (const { topic, partition } of assigned) (memberAssignment[topic] = memberAssignment[topic] || []).push(partition)
        this._emit(CONSUMER_EVENTS.GROUP_JOIN, {
          duration: 0,
          groupId: this._groupId,
          isLeader: false,
          leaderId: '',
          groupProtocol: '',
          memberId: '',
          memberAssignment,
        })
      } else {
        for (const { topic, partition } of r.partitions) {
          this._resolved.delete(tpKey(topic, partition))
          this._batchRetries.delete(tpKey(topic, partition))
        }
        this._emit(CONSUMER_EVENTS.REBALANCING, { groupId: this._groupId, memberId: '' })
      }
    }
  }

  /** Runs the handler over one partition's batch; returns the error it threw, if any. */
  async _process(raw) {
    const { topic, partition } = raw
    const k = tpKey(topic, partition)
    if (this._stale.has(k)) return null
    const messages = decodeBatch(raw)
    const batch = new Batch(topic, partition, messages)
    const resolveOffset = (offset, count = 1) => {
      this._resolved.set(k, { topic, partition, offset: String(Number(offset) + 1) })
      this._uncommitted += count
    }
    const isStale = () => this._stale.has(k)
    const pause = () => {
      this.pause([{ topic, partitions: [partition] }])
      return () => this.resume([{ topic, partitions: [partition] }])
    }
    const heartbeat = async () => {}
    const firstUnprocessed = () => {
      const r = this._resolved.get(k)
      return r ? r.offset : messages[0].offset
    }
    this._emit(CONSUMER_EVENTS.START_BATCH_PROCESS, batchEvent(batch))
    const started = Date.now()
    try {
      if (this._cfg.eachBatch) {
        await this._cfg.eachBatch({
          batch,
          resolveOffset,
          heartbeat,
          pause,
          commitOffsetsIfNecessary: (offsets) =>
            offsets ? this.commitOffsets(offsetsList(offsets)) : this._commitIfNecessary(),
          uncommittedOffsets: () => this._uncommittedOffsets(),
          isRunning: () => this._running,
          isStale,
        })
        if (this._cfg.eachBatchAutoResolve && !isStale() && messages.length) resolveOffset(batch.lastOffset())
      } else {
        // Resolved once per batch (and on a failure, up to the failed message).
        let done = 0
        try {
          for (const message of messages) {
            if (!this._running || isStale()) break
            await this._cfg.eachMessage({ topic, partition, message, heartbeat, pause })
            done++
          }
        } finally {
          if (done > 0) resolveOffset(messages[done - 1].offset, done)
        }
      }
    } catch (e) {
      // Rewind to the first record not processed, so it is delivered again.
      if (!this._pendingSeeks.has(k) && messages.length) {
        this._pendingSeeks.set(k, { topic, partition, offset: firstUnprocessed() })
      }
      this._logger.error(`Error when calling eachBatch/eachMessage: ${e && e.message}`, { topic, partition })
      return e
    } finally {
      this._emit(CONSUMER_EVENTS.END_BATCH_PROCESS, { ...batchEvent(batch), duration: Date.now() - started })
    }
    // Paused mid-batch: the rest of the batch comes again after resume.
    if (this._paused.has(k) && !this._pendingSeeks.has(k) && messages.length) {
      const r = this._resolved.get(k)
      const next = r ? Number(r.offset) : Number(messages[0].offset)
      if (next <= Number(batch.lastOffset())) this._pendingSeeks.set(k, { topic, partition, offset: String(next) })
    }
    return null
  }

  /**
   * eachPartitionBatch: the handler gets one partition's records of a poll;
   * when its promise resolves the offset after the batch is committed
   * (awaited) before that partition's next batch is handed out. A rejection
   * commits nothing: the partition is rewound to the batch's first record
   * and paused for a backoff (retry.initialRetryTime doubling up to
   * retry.maxRetryTime), then the same batch comes again, while other
   * partitions carry on. Returns nothing: failures never crash the loop.
   */
  async _processPartitionBatch(raw) {
    const { topic, partition } = raw
    const k = tpKey(topic, partition)
    if (this._stale.has(k)) return null
    const messages = decodeBatch(raw)
    if (messages.length === 0) return null
    const batch = new Batch(topic, partition, messages)
    const started = Date.now()
    this._emit(CONSUMER_EVENTS.START_BATCH_PROCESS, batchEvent(batch))
    try {
      await this._cfg.eachPartitionBatch({
        batch,
        heartbeat: async () => {},
        isRunning: () => this._running,
        pause: () => {
          this.pause([{ topic, partitions: [partition] }])
          return () => this.resume([{ topic, partitions: [partition] }])
        },
      })
    } catch (e) {
      const retry = this._batchRetries.get(k) || { topic, partition, attempts: 0, until: 0 }
      retry.attempts++
      const initial = Math.max(1, Number(this._retry.initialRetryTime) || 300)
      const cap = Math.max(initial, Number(this._retry.maxRetryTime) || 30000)
      const delay = Math.min(cap, initial * 2 ** Math.min(retry.attempts - 1, 20))
      retry.until = Date.now() + delay
      this._batchRetries.set(k, retry)
      // Back to the batch's first record; paused until the backoff ends.
      this._pendingSeeks.set(k, { topic, partition, offset: batch.firstOffset() })
      this._resolved.delete(k)
      try {
        await call(() => this._native.setPaused([{ topic, partition }], true))
      } catch (pauseError) {
        // Stopping meanwhile: the rewind alone keeps the batch for the next owner.
      }
      this._logger.error(`eachPartitionBatch failed; the batch is retried in ${delay} ms: ${e && e.message}`, {
        topic,
        partition,
        firstOffset: batch.firstOffset(),
        lastOffset: batch.lastOffset(),
        retryCount: retry.attempts,
      })
      return null
    } finally {
      this._emit(CONSUMER_EVENTS.END_BATCH_PROCESS, { ...batchEvent(batch), duration: Date.now() - started })
    }
    this._batchRetries.delete(k)
    const next = { topic, partition, offset: String(Number(batch.lastOffset()) + 1) }
    try {
      await call(() => this._native.commit([next]))
      this._emit(CONSUMER_EVENTS.COMMIT_OFFSETS, { groupId: this._groupId, memberId: '', groupGenerationId: -1, topics: this._topicsOf([next]) })
    } catch (e) {
      // Handled but not committed yet: the next commit round (or stop) retries it.
      this._resolved.set(k, next)
      this._logger.warn(`Commit after eachPartitionBatch failed; will retry: ${e.message}`, { topic, partition })
    }
    return null
  }

  /** Resumes partitions whose failed batch has waited out its backoff. */
  async _resumeRetried() {
    if (!this._batchRetries || this._batchRetries.size === 0) return
    const now = Date.now()
    const due = []
    for (const [k, r] of this._batchRetries) {
      if (r.until && r.until <= now) {
        r.until = 0
        if (!this._paused.has(k) && !(this._pausedTopics && this._pausedTopics.has(r.topic))) {
          due.push({ topic: r.topic, partition: r.partition })
        }
      }
    }
    if (due.length) await call(() => this._native.setPaused(due, false))
  }

  _uncommittedOffsets() {
    const byTopic = new Map()
    for (const { topic, partition, offset } of this._resolved.values()) {
      if (!byTopic.has(topic)) byTopic.set(topic, [])
      byTopic.get(topic).push({ partition, offset })
    }
    return { topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) }
  }

  async _afterBatches() {
    // Commits travel while the next poll runs (they reach the broker in
    // order); stop() and explicit commits wait for them.
    if (this._cfg.eachPartitionBatch) {
      // Only commits that failed right after their batch are left here.
      if (this._resolved.size) await this._commitResolved(false)
    } else if (this._cfg.autoCommit) await this._commitIfNecessary(false)
  }

  async _commitIfNecessary(wait = true) {
    const { autoCommitInterval, autoCommitThreshold } = this._cfg
    const now = Date.now()
    const due =
      (autoCommitInterval === null && autoCommitThreshold === null) ||
      (autoCommitInterval !== null && now - this._lastCommit >= autoCommitInterval) ||
      (autoCommitThreshold !== null && this._uncommitted >= autoCommitThreshold)
    if (due) await this._commitResolved(wait)
  }

  async _commitResolved(wait = true) {
    if (this._resolved.size > 0) {
      const offsets = [...this._resolved.values()]
      this._resolved = new Map()
      this._uncommitted = 0
      this._lastCommit = Date.now()
      const p = call(() => this._native.commitAsync(offsets)).then(
        () => {
          this._emit(CONSUMER_EVENTS.COMMIT_OFFSETS, { groupId: this._groupId, memberId: '', groupGenerationId: -1, topics: this._topicsOf(offsets) })
        },
        (e) => {
          // Keep them for the next try unless newer offsets were resolved meanwhile.
          for (const o of offsets) {
            const k = tpKey(o.topic, o.partition)
            if (!this._resolved.has(k)) this._resolved.set(k, o)
          }
          this._logger.warn(`Commit failed: ${e.message}`, { groupId: this._groupId })
          return e
        },
      )
      this._commits = (this._commits || Promise.resolve()).then(() => p)
    }
    if (wait && this._commits) {
      const err = await this._commits
      this._commits = null
      if (err) throw err
    }
  }

  _topicsOf(offsets) {
    const m = new Map()
    for (const { topic, partition, offset } of offsets) {
      if (!m.has(topic)) m.set(topic, [])
      m.get(topic).push({ partition: String(partition), offset })
    }
    return [...m].map(([topic, partitions]) => ({ topic, partitions }))
  }

  async commitOffsets(topicPartitions = []) {
    const offsets = topicPartitions.map(({ topic, partition, offset }) => ({ topic, partition: Number(partition), offset: String(offset) }))
    if (offsets.length === 0) return
    await call(() => this._native.commit(offsets))
    for (const o of offsets) {
      const k = tpKey(o.topic, o.partition)
      const r = this._resolved.get(k)
      if (r && Number(r.offset) <= Number(o.offset)) this._resolved.delete(k)
    }
    this._emit(CONSUMER_EVENTS.COMMIT_OFFSETS, { groupId: this._groupId, memberId: '', groupGenerationId: -1, topics: this._topicsOf(offsets) })
  }

  /** @param {Partial<TopicPartitionOffset>} [target] checked here, as KafkaJS does */
  seek({ topic, partition, offset } = {}) {
    if (!topic) throw new KafkaJSNonRetriableError(`Invalid topic ${topic}`)
    if (isNaN(Number(partition))) throw new KafkaJSNonRetriableError(`Invalid partition, expected a number received ${partition}`)
    const n = Number(offset)
    if (isNaN(n) || n < -2) throw new KafkaJSNonRetriableError(`Invalid offset, expected a long received ${offset}`)
    const k = tpKey(topic, Number(partition))
    this._pendingSeeks.set(k, { topic, partition: Number(partition), offset: String(offset) })
    this._resolved.delete(k)
    this._stale.add(k)
  }

  pause(topicPartitions = []) {
    for (const { topic, partitions } of topicPartitions) {
      if (!topic) throw new KafkaJSNonRetriableError(`Invalid topic ${topic}`)
      if (partitions) for (const p of partitions) {
        this._paused.add(tpKey(topic, p))
        this._stale.add(tpKey(topic, p))
      }
      else this._pausedTopics = (this._pausedTopics || new Set()).add(topic)
    }
    this._pendingPauses.push({ topics: topicPartitions, pause: true })
  }

  resume(topicPartitions = []) {
    for (const { topic, partitions } of topicPartitions) {
      if (partitions) for (const p of partitions) this._paused.delete(tpKey(topic, p))
      else if (this._pausedTopics) this._pausedTopics.delete(topic)
    }
    this._pendingPauses.push({ topics: topicPartitions, pause: false })
  }

  paused() {
    const m = new Map()
    for (const k of this._paused) {
      const [topic, p] = k.split('\u0000')
      if (!m.has(topic)) m.set(topic, [])
      m.get(topic).push(Number(p))
    }
    for (const t of this._pausedTopics || []) if (!m.has(t)) m.set(t, [])
    return [...m].map(([topic, partitions]) => ({ topic, partitions }))
  }

  async stop() {
    const wasRunning = this._running
    this._running = false
    if (this._loop) await this._loop
    this._loop = null
    if (wasRunning) {
      if (this._cfg && (this._cfg.autoCommit || this._cfg.eachPartitionBatch)) {
        try {
          await this._commitResolved()
        } catch (e) {
          this._logger.warn(`Commit on stop failed: ${e.message}`)
        }
      }
      await call(() => this._native.stop())
      this._emit(CONSUMER_EVENTS.STOP)
    }
  }

  async disconnect() {
    await this.stop()
    await call(() => this._native.close())
    if (this._connected) this._emit(CONSUMER_EVENTS.DISCONNECT)
    this._connected = false
  }

  describeGroup() {
    return Promise.reject(new KafkaJSNonRetriableError('use admin.describeGroups([groupId])'))
  }
}

// ------------------------------------------------------------------ admin

function topicErrors(outcomes) {
  return outcomes.filter((o) => o.error).map((o) => ({ topic: o.topic, error: mapError(new Error(o.error)) }))
}

class Admin extends Instrumented {
  constructor(kafka, opts = {}) {
    super(ADMIN_EVENTS)
    const { props, tokenProvider, aws } = clientSettings(kafka._config)
    this._logger = kafka._logger.namespace('Admin')
    this._native = new native.NativeAdmin(props, tokenProvider, aws)
  }

  logger() {
    return this._logger
  }

  async connect() {
    await call(() => this._native.connect())
    this._emit(ADMIN_EVENTS.CONNECT)
  }

  async disconnect() {
    await call(() => this._native.close())
    this._emit(ADMIN_EVENTS.DISCONNECT)
  }

  /** Resolves true if every topic was created, false if some already existed. */
  async createTopics({ topics = [], validateOnly = false, waitForLeaders = true } = {}) {
    if (!Array.isArray(topics) || topics.length === 0) throw new KafkaJSNonRetriableError(`Invalid topics array ${topics}`)
    const outcomes = await call(() =>
      this._native.createTopics(
        topics.map((t) => ({
          topic: t.topic,
          numPartitions: t.numPartitions ?? -1,
          replicationFactor: t.replicationFactor ?? -1,
          configEntries: (t.configEntries || []).map((c) => ({ name: String(c.name), value: String(c.value) })),
        })),
        !!validateOnly,
      ),
    )
    const errs = topicErrors(outcomes)
    const exists = errs.filter((e) => e.error.type === 'TOPIC_ALREADY_EXISTS')
    const real = errs.filter((e) => e.error.type !== 'TOPIC_ALREADY_EXISTS')
    if (real.length === 1) throw real[0].error
    if (real.length > 1) {
      throw new errors.KafkaJSAggregateError('Topic creation errors', { errors: real.map((e) => e.error) })
    }
    if (waitForLeaders && !validateOnly) {
      const created = topics.map((t) => t.topic).filter((t) => !exists.some((e) => e.topic === t))
      if (created.length) await this._waitForLeaders(created)
    }
    return exists.length === 0
  }

  async _waitForLeaders(topics) {
    const deadline = Date.now() + 30000
    for (;;) {
      try {
        const md = await call(() => this._native.fetchTopicMetadata(topics))
        if (md.length === topics.length && md.every((t) => t.partitions.length && t.partitions.every((p) => p.leader >= 0))) return
      } catch (e) {
        if (!e.retriable && Date.now() >= deadline) throw e
      }
      if (Date.now() >= deadline) return
      await sleep(100)
    }
  }

  /** @param {{ topics?: string[], timeout?: number }} [options] */
  async deleteTopics({ topics = [], timeout } = {}) {
    if (!Array.isArray(topics) || topics.length === 0) throw new KafkaJSNonRetriableError(`Invalid topics array ${topics}`)
    const outcomes = await call(() => this._native.deleteTopics(topics))
    const errs = topicErrors(outcomes)
    if (errs.length) throw errs[0].error
  }

  async listTopics() {
    return call(() => this._native.listTopics())
  }

  async fetchTopicMetadata({ topics = [] } = {}) {
    const md = await call(() => this._native.fetchTopicMetadata(topics))
    return { topics: md }
  }

  async fetchTopicOffsets(topic) {
    const md = await call(() => this._native.fetchTopicMetadata([topic]))
    const parts = md[0].partitions.map((p) => ({ topic, partition: p.partitionId }))
    const [low, high] = await Promise.all([
      call(() => this._native.listOffsets(parts, 'earliest')),
      call(() => this._native.listOffsets(parts, 'latest')),
    ])
    const lowBy = new Map(low.map((o) => [o.partition, o.offset]))
    return high
      .map((o) => ({ partition: o.partition, offset: o.offset, high: o.offset, low: lowBy.get(o.partition) ?? '0' }))
      .sort((a, b) => a.partition - b.partition)
  }

  async fetchTopicOffsetsByTimestamp(topic, timestamp) {
    const md = await call(() => this._native.fetchTopicMetadata([topic]))
    const parts = md[0].partitions.map((p) => ({ topic, partition: p.partitionId }))
    const spec = timestamp === undefined ? 'latest' : String(timestamp)
    const r = await call(() => this._native.listOffsets(parts, spec))
    return r.map((o) => ({ partition: o.partition, offset: o.offset })).sort((a, b) => a.partition - b.partition)
  }

  async createPartitions({ topicPartitions = [], validateOnly = false } = {}) {
    if (validateOnly) return
    for (const { topic, count } of topicPartitions) await call(() => this._native.createPartitions(topic, count))
  }

  async describeCluster() {
    const c = await call(() => this._native.describeCluster())
    return { brokers: c.brokers.map((b) => ({ nodeId: b.nodeId, host: b.host, port: b.port })), controller: c.controller, clusterId: c.clusterId }
  }

  /** @param {{ topic?: string, partitions?: Array<{ partition: number, offset: string }> }} [options] */
  async deleteTopicRecords({ topic, partitions = [] } = {}) {
    const offsets = partitions.map((p) => ({ topic, partition: Number(p.partition), offset: String(p.offset) }))
    if (offsets.some((o) => o.offset === '-1')) {
      const latest = await call(() => this._native.listOffsets(offsets.map(({ topic, partition }) => ({ topic, partition })), 'latest'))
      for (const o of offsets) if (o.offset === '-1') o.offset = latest.find((l) => l.partition === o.partition).offset
    }
    await call(() => this._native.deleteRecords(offsets))
  }

  async describeGroups(groupIds) {
    const gs = await call(() => this._native.describeGroups(groupIds))
    return {
      groups: gs.map((g) => ({
        groupId: g.groupId,
        errorCode: g.errorCode,
        protocol: g.protocol,
        protocolType: g.protocolType,
        state: g.state,
        members: g.members.map((m) => ({
          memberId: m.memberId,
          clientId: m.clientId,
          clientHost: m.clientHost,
          groupInstanceId: m.groupInstanceId ?? null,
          memberMetadata: Buffer.alloc(0),
          memberAssignment: Buffer.alloc(0),
          assignment: m.assignment,
        })),
      })),
    }
  }

  async listGroups() {
    const gs = await call(() => this._native.listGroups())
    return { groups: gs }
  }

  async deleteGroups(groupIds) {
    const outcomes = await call(() => this._native.deleteGroups(groupIds))
    const errs = topicErrors(outcomes)
    if (errs.length) {
      const e = new errors.KafkaJSDeleteGroupsError('Error in DeleteGroups', {
        groups: errs.map((x) => ({ groupId: x.topic, error: x.error, errorCode: x.error.code })),
      })
      throw e
    }
    return outcomes.map((o) => ({ groupId: o.topic, errorCode: 0 }))
  }

  /** KafkaJS's fetchOffsets: committed offsets per topic, '-1' where none. */
  /** @param {{ groupId?: string, topics?: string[], topic?: string, resolveOffsets?: boolean }} [options] */
  async fetchOffsets({ groupId, topics, topic, resolveOffsets = false } = {}) {
    if (!groupId) throw new KafkaJSNonRetriableError(`Invalid groupId ${groupId}`)
    const committed = await call(() => this._native.groupOffsets(groupId))
    const wanted = topics || (topic ? [topic] : [...new Set(committed.map((c) => c.topic))])
    const md = wanted.length ? await call(() => this._native.fetchTopicMetadata(wanted)) : []
    const by = new Map(committed.map((c) => [tpKey(c.topic, c.partition), c.offset]))
    const out = md.map((t) => ({
      topic: t.name,
      partitions: t.partitions
        .map((p) => ({ partition: p.partitionId, offset: by.get(tpKey(t.name, p.partitionId)) ?? '-1', metadata: null }))
        .sort((a, b) => a.partition - b.partition),
    }))
    if (topic && !topics) return out[0] ? out[0].partitions : []
    return out
  }

  /** @param {{ groupId?: string, topic?: string, partitions?: PartitionOffset[] }} [options] */
  async setOffsets({ groupId, topic, partitions = [] } = {}) {
    const offsets = partitions.map((p) => ({ topic, partition: Number(p.partition), offset: String(p.offset) }))
    await call(() => this._native.setGroupOffsets(groupId, offsets))
  }

  /** @param {{ groupId?: string, topic?: string, earliest?: boolean }} [options] */
  async resetOffsets({ groupId, topic, earliest = false } = {}) {
    const md = await call(() => this._native.fetchTopicMetadata([topic]))
    const parts = md[0].partitions.map((p) => ({ topic, partition: p.partitionId }))
    const offsets = await call(() => this._native.listOffsets(parts, earliest ? 'earliest' : 'latest'))
    await call(() =>
      this._native.setGroupOffsets(
        groupId,
        offsets.map((o) => ({ topic, partition: o.partition, offset: o.offset })),
      ),
    )
  }
}

// ------------------------------------------------------------------ Kafka

class Kafka {
  constructor(config = {}) {
    this._config = { ...config }
    const level = config.logLevel ?? logLevel.INFO
    this._logger = makeLogger(level, config.logCreator || defaultLogCreator)
    // Validates the shared options now, as KafkaJS does in its constructor.
    clientSettings(this._config)
  }
  producer(opts = {}) {
    return new Producer(this, opts)
  }
  consumer(opts = {}) {
    return new Consumer(this, opts)
  }
  admin(opts = {}) {
    return new Admin(this, opts)
  }
  logger() {
    return this._logger
  }
}

module.exports = {
  Kafka,
  CompressionTypes,
  CompressionCodecs,
  Partitioners,
  PartitionAssigners,
  logLevel,
  PRODUCER_EVENTS,
  CONSUMER_EVENTS,
  ADMIN_EVENTS,
}
