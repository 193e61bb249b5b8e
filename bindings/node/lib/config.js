'use strict'
// KafkaJS options -> Kafka property names (what the Rust client's
// from_properties takes), plus the callbacks passed to the native classes.

const fs = require('fs')
const os = require('os')
const path = require('path')
const { KafkaJSNonRetriableError } = require('./errors')

const MECHANISMS = {
  plain: 'PLAIN',
  'scram-sha-256': 'SCRAM-SHA-256',
  'scram-sha-512': 'SCRAM-SHA-512',
  oauthbearer: 'OAUTHBEARER',
  'aws-msk-iam': 'AWS_MSK_IAM',
  aws: 'AWS_MSK_IAM',
}

let pemDir = null

/** PEM material given inline (KafkaJS passes tls options) goes to a private temp file. */
function pemFile(name, value) {
  if (value === undefined || value === null) return undefined
  const parts = Array.isArray(value) ? value : [value]
  const text = parts.map((p) => (Buffer.isBuffer(p) ? p.toString('utf8') : String(p))).join('\n')
  if (!pemDir) {
    pemDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-tls-'))
    process.once('exit', () => {
      try {
        fs.rmSync(pemDir, { recursive: true, force: true })
      } catch (_) {}
    })
  }
  const file = path.join(pemDir, `${name}-${process.hrtime.bigint()}.pem`)
  fs.writeFileSync(file, text, { mode: 0o600 })
  return file
}

function ms(v) {
  return String(Math.max(0, Math.round(Number(v))))
}

/**
 * The shared client properties and native extras for a KafkaJS config:
 * { props, tokenProvider, aws }.
 */
function clientSettings(config) {
  /** @type {Record<string, string>} */
  const props = {}
  let brokers = config.brokers
  if (typeof brokers === 'function') {
    throw new KafkaJSNonRetriableError('sluice-client: `brokers` must be a list (a function is not supported)')
  }
  if (typeof brokers === 'string') brokers = brokers.split(',')
  if (!Array.isArray(brokers) || brokers.length === 0) {
    throw new KafkaJSNonRetriableError('Failed to connect: expected brokers array and got nothing')
  }
  props['bootstrap.servers'] = brokers.map((b) => String(b).trim()).join(',')
  if (config.clientId) props['client.id'] = String(config.clientId)
  if (config.connectionTimeout != null) props['socket.connection.setup.timeout.ms'] = ms(config.connectionTimeout)
  if (config.requestTimeout != null) props['request.timeout.ms'] = ms(config.requestTimeout)
  const retry = config.retry || {}
  if (retry.initialRetryTime != null) props['retry.backoff.ms'] = ms(retry.initialRetryTime)
  if (retry.maxRetryTime != null) {
    // KafkaJS's one cap bounds both the request retries and the reconnects.
    props['retry.backoff.max.ms'] = ms(retry.maxRetryTime)
    props['reconnect.backoff.max.ms'] = ms(retry.maxRetryTime)
  }

  const ssl = config.ssl
  const sasl = config.sasl
  const tls = !!ssl
  props['security.protocol'] = sasl ? (tls ? 'SASL_SSL' : 'SASL_PLAINTEXT') : tls ? 'SSL' : 'PLAINTEXT'
  if (ssl && typeof ssl === 'object') {
    const ca = pemFile('ca', ssl.ca)
    const cert = pemFile('cert', ssl.cert)
    const key = pemFile('key', ssl.key)
    if (ca) props['ssl.ca.location'] = ca
    if (cert) props['ssl.certificate.location'] = cert
    if (key) props['ssl.key.location'] = key
    if (ssl.rejectUnauthorized === false) props['enable.ssl.certificate.verification'] = 'false'
  }

  let tokenProvider = null
  let aws = null
  if (sasl) {
    const mech = MECHANISMS[String(sasl.mechanism || '').toLowerCase()]
    if (!mech) throw new KafkaJSNonRetriableError(`SASL mechanism ${sasl.mechanism} is not supported`)
    props['sasl.mechanism'] = mech
    if (mech === 'PLAIN' || mech.startsWith('SCRAM')) {
      props['sasl.username'] = String(sasl.username ?? '')
      props['sasl.password'] = String(sasl.password ?? '')
    } else if (mech === 'OAUTHBEARER') {
      const provider = sasl.oauthBearerProvider
      if (typeof provider !== 'function') {
        throw new KafkaJSNonRetriableError('SASL OAUTHBEARER: oauthBearerProvider must be an async function returning { value }')
      }
      tokenProvider = () => Promise.resolve().then(() => provider())
    } else {
      if (sasl.region) props['aws.region'] = String(sasl.region)
      // aws-msk-iam-sasl-signer-js's generateAuthTokenFromProfile / FromRole.
      const awsProps = { profile: 'aws.profile', roleArn: 'aws.role.arn', roleSessionName: 'aws.role.session.name', roleExternalId: 'aws.role.external.id', stsRegion: 'aws.sts.region' }
      for (const [k, prop] of Object.entries(awsProps)) if (sasl[k]) props[prop] = String(sasl[k])
      if (sasl.accessKeyId && sasl.secretAccessKey) {
        aws = {
          accessKeyId: String(sasl.accessKeyId),
          secretAccessKey: String(sasl.secretAccessKey),
          sessionToken: sasl.sessionToken ? String(sasl.sessionToken) : undefined,
          region: sasl.region ? String(sasl.region) : undefined,
        }
      }
    }
  }
  return { props, tokenProvider, aws }
}

function producerSettings(config, opts = {}) {
  const s = clientSettings(config)
  const p = s.props
  // A transactional producer is idempotent, as in KafkaJS.
  const idempotent = !!opts.idempotent || !!opts.transactionalId
  p['enable.idempotence'] = idempotent ? 'true' : 'false'
  if (opts.transactionalId) p['transactional.id'] = String(opts.transactionalId)
  if (opts.transactionTimeout != null) p['transaction.timeout.ms'] = ms(opts.transactionTimeout)
  p['acks'] = 'all'
  if (opts.maxInFlightRequests != null) p['max.in.flight.requests.per.connection'] = String(opts.maxInFlightRequests)
  // KafkaJS sends each send() call at once; linger is a sluice-client extra.
  p['linger.ms'] = ms(opts.linger ?? 0)
  if (opts.batchSize != null) p['batch.size'] = String(opts.batchSize)
  if (opts.bufferMemory != null) p['buffer.memory'] = String(opts.bufferMemory)
  if (opts.maxBlockMs != null) p['max.block.ms'] = ms(opts.maxBlockMs)
  if (opts.allowAutoTopicCreation != null) p['allow.auto.create.topics'] = String(!!opts.allowAutoTopicCreation)
  const retries = (opts.retry || config.retry || {}).retries
  if (retries != null && (!idempotent || retries > 0)) p['retries'] = String(retries)
  const rt = Number(p['request.timeout.ms'] || 30000)
  if (rt + Number(p['linger.ms']) > 120000) p['delivery.timeout.ms'] = String(rt + Number(p['linger.ms']))
  return s
}

function consumerSettings(config, opts) {
  const s = clientSettings(config)
  const p = s.props
  p['group.id'] = String(opts.groupId)
  p['session.timeout.ms'] = ms(opts.sessionTimeout ?? 30000)
  p['heartbeat.interval.ms'] = ms(opts.heartbeatInterval ?? 3000)
  p['max.poll.interval.ms'] = ms(opts.rebalanceTimeout ?? 60000)
  if (opts.maxBytesPerPartition != null) p['max.partition.fetch.bytes'] = String(opts.maxBytesPerPartition)
  if (opts.maxBytes != null) p['fetch.max.bytes'] = String(opts.maxBytes)
  if (opts.minBytes != null) p['fetch.min.bytes'] = String(opts.minBytes)
  p['fetch.max.wait.ms'] = ms(Math.min(opts.maxWaitTimeInMs ?? 500, 1000))
  if (opts.allowAutoTopicCreation != null) p['allow.auto.create.topics'] = String(!!opts.allowAutoTopicCreation)
  // KafkaJS reads committed records only unless readUncommitted is true.
  p['isolation.level'] = opts.readUncommitted === true ? 'read_uncommitted' : 'read_committed'
  if (opts.groupInstanceId) p['group.instance.id'] = String(opts.groupInstanceId)
  // The JS layer commits what the handlers resolved (KafkaJS's autoCommit).
  p['enable.auto.commit'] = 'false'
  p['max.poll.records'] = String(opts.maxPollRecords ?? 20000)
  return s
}

module.exports = { clientSettings, producerSettings, consumerSettings }
