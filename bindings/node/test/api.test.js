'use strict'
// The package's surface without a broker: exports, KafkaJS error classes
// and their decoding, option mapping, the partitioner, the token callback.

const test = require('node:test')
const assert = require('node:assert/strict')
const sluice = require('..')
const native = require('../native.js')
const { mapError, errorCodes, createErrorFromCode } = require('../lib/errors')
const { clientSettings, producerSettings, consumerSettings } = require('../lib/config')

test('exports KafkaJS names', () => {
  for (const name of ['Kafka', 'CompressionTypes', 'CompressionCodecs', 'Partitioners', 'logLevel', 'PartitionAssigners']) {
    assert.ok(sluice[name], name)
  }
  assert.deepEqual(sluice.CompressionTypes, { None: 0, GZIP: 1, Snappy: 2, LZ4: 3, ZSTD: 4 })
  assert.equal(sluice.logLevel.DEBUG, 5)
  for (const name of [
    'KafkaJSError',
    'KafkaJSNonRetriableError',
    'KafkaJSProtocolError',
    'KafkaJSConnectionError',
    'KafkaJSNumberOfRetriesExceeded',
    'KafkaJSTimeout',
    'KafkaJSRequestTimeoutError',
    'KafkaJSSASLAuthenticationError',
    'KafkaJSOffsetOutOfRange',
  ]) {
    assert.equal(typeof sluice[name], 'function', name)
    const e = new sluice[name]('boom')
    assert.ok(e instanceof sluice.KafkaJSError, name)
    assert.ok(e instanceof Error, name)
    assert.equal(e.name, name)
  }
  assert.ok(new sluice.KafkaJSNumberOfRetriesExceeded(new Error('x')) instanceof sluice.KafkaJSNonRetriableError)
})

test('native errors decode into KafkaJS classes', () => {
  const enc = (o) => new Error('SLUICE_ERROR:' + JSON.stringify({ type: null, code: null, retriable: false, broker: null, message: 'm', ...o }))
  const p = mapError(enc({ kind: 'Kafka', type: 'UNKNOWN_TOPIC_OR_PARTITION', code: 3, retriable: true }))
  assert.ok(p instanceof sluice.KafkaJSProtocolError)
  assert.equal(p.type, 'UNKNOWN_TOPIC_OR_PARTITION')
  assert.equal(p.code, 3)
  assert.equal(p.retriable, true)
  assert.ok(mapError(enc({ kind: 'Connection', retriable: true, broker: 'h:1' })) instanceof sluice.KafkaJSConnectionError)
  assert.ok(mapError(enc({ kind: 'Timeout', retriable: true })) instanceof sluice.KafkaJSTimeout)
  assert.ok(mapError(enc({ kind: 'Authentication' })) instanceof sluice.KafkaJSSASLAuthenticationError)
  assert.ok(mapError(enc({ kind: 'Config' })) instanceof sluice.KafkaJSNonRetriableError)
  assert.ok(mapError(enc({ kind: 'Kafka', type: 'OFFSET_OUT_OF_RANGE', code: 1 })) instanceof sluice.KafkaJSOffsetOutOfRange)
  const nb = mapError(enc({ kind: 'NoBrokersAvailable', retriable: true }))
  assert.ok(nb instanceof sluice.KafkaJSNumberOfRetriesExceeded)
  assert.ok(nb.cause instanceof sluice.KafkaJSConnectionError)
})

test('Kafka error code table (generated from the Rust enum)', () => {
  const byCode = new Map(errorCodes.map((e) => [e.code, e]))
  assert.equal(byCode.size, errorCodes.length)
  assert.deepEqual(byCode.get(3), { type: 'UNKNOWN_TOPIC_OR_PARTITION', code: 3, retriable: true, message: 'This server does not host this topic-partition.' })
  assert.equal(byCode.get(0).type, 'NONE')
  assert.equal(byCode.get(29).retriable, false)
  assert.ok(Object.isFrozen(errorCodes) && Object.isFrozen(errorCodes[0]))
  const e = createErrorFromCode(6)
  assert.ok(e instanceof sluice.KafkaJSProtocolError)
  assert.equal(e.type, 'NOT_LEADER_OR_FOLLOWER')
  assert.equal(e.retriable, true)
  const unknown = createErrorFromCode(30000)
  assert.equal(unknown.type, 'UNKNOWN_SERVER_ERROR')
  assert.equal(unknown.retriable, false)
  // A native error without a type or retriable flag gets them from the table.
  const p = mapError(new Error('SLUICE_ERROR:' + JSON.stringify({ kind: 'Kafka', type: null, code: 16, retriable: null, broker: null, message: 'm' })))
  assert.equal(p.type, 'NOT_COORDINATOR')
  assert.equal(p.retriable, true)
  assert.equal(sluice.errorCodes, undefined, 'the table stays out of the public surface, as in KafkaJS')
})

test('KafkaJS options map onto Kafka property names', () => {
  const s = clientSettings({
    clientId: 'app',
    brokers: ['a:1', 'b:2'],
    connectionTimeout: 3000,
    requestTimeout: 25000,
    retry: { initialRetryTime: 200 },
    ssl: { rejectUnauthorized: false, ca: ['-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----'] },
    sasl: { mechanism: 'scram-sha-512', username: 'u', password: 'p' },
  })
  assert.equal(s.props['bootstrap.servers'], 'a:1,b:2')
  assert.equal(s.props['client.id'], 'app')
  assert.equal(s.props['socket.connection.setup.timeout.ms'], '3000')
  assert.equal(s.props['request.timeout.ms'], '25000')
  assert.equal(s.props['retry.backoff.ms'], '200')
  assert.equal(s.props['security.protocol'], 'SASL_SSL')
  assert.equal(s.props['sasl.mechanism'], 'SCRAM-SHA-512')
  assert.equal(s.props['enable.ssl.certificate.verification'], 'false')
  assert.ok(require('fs').readFileSync(s.props['ssl.ca.location'], 'utf8').includes('BEGIN CERTIFICATE'))

  assert.equal(clientSettings({ brokers: ['a:1'], ssl: true }).props['security.protocol'], 'SSL')
  const iam = clientSettings({ brokers: ['a:1'], ssl: true, sasl: { mechanism: 'aws-msk-iam', region: 'eu-west-1' } })
  assert.equal(iam.props['sasl.mechanism'], 'AWS_MSK_IAM')
  assert.equal(iam.props['aws.region'], 'eu-west-1')
  const role = clientSettings({
    brokers: ['a:1'],
    sasl: { mechanism: 'aws', profile: 'dev', roleArn: 'arn:aws:iam::1:role/r', roleSessionName: 's', roleExternalId: 'x', stsRegion: 'eu-west-2' },
  })
  assert.deepEqual(
    ['aws.profile', 'aws.role.arn', 'aws.role.session.name', 'aws.role.external.id', 'aws.sts.region'].map((k) => role.props[k]),
    ['dev', 'arn:aws:iam::1:role/r', 's', 'x', 'eu-west-2'],
  )
  assert.throws(() => clientSettings({ brokers: ['a:1'], sasl: { mechanism: 'oauthbearer' } }), sluice.KafkaJSNonRetriableError)
  assert.throws(() => clientSettings({ brokers: ['a:1'], sasl: { mechanism: 'gssapi' } }), sluice.KafkaJSNonRetriableError)

  const p = producerSettings({ brokers: ['a:1'] }, { idempotent: true, maxInFlightRequests: 1 })
  assert.equal(p.props['enable.idempotence'], 'true')
  assert.equal(p.props['max.in.flight.requests.per.connection'], '1')
  const c = consumerSettings({ brokers: ['a:1'] }, { groupId: 'g', sessionTimeout: 10000, rebalanceTimeout: 20000, heartbeatInterval: 1000, maxBytesPerPartition: 2048 })
  assert.equal(c.props['group.id'], 'g')
  assert.equal(c.props['session.timeout.ms'], '10000')
  assert.equal(c.props['max.poll.interval.ms'], '20000')
  assert.equal(c.props['heartbeat.interval.ms'], '1000')
  assert.equal(c.props['max.partition.fetch.bytes'], '2048')

  // The native side checks every property when a client is made.
  const kafka = new sluice.Kafka({ brokers: ['127.0.0.1:1'], logLevel: sluice.logLevel.NOTHING })
  kafka.producer({ idempotent: true })
  kafka.consumer({ groupId: 'g' })
  kafka.admin()
  assert.throws(() => kafka.consumer({ groupId: 'g', sessionTimeout: 1000, heartbeatInterval: 3000 }), (e) => e.name === 'KafkaJSNonRetriableError' || /heartbeat/.test(e.message))
})

test('DefaultPartitioner is the Java client murmur2 partitioner', () => {
  // Kafka's own vectors: toPositive(murmur2(key)) % n.
  assert.equal(native.defaultPartition(Buffer.from('foobar'), 50), 16)
  const part = sluice.Partitioners.DefaultPartitioner()
  const partitionMetadata = Array.from({ length: 50 }, (_, i) => ({ partitionId: i, leader: 0 }))
  assert.equal(part({ topic: 't', partitionMetadata, message: { key: 'foobar', value: 'v' } }), 16)
  assert.equal(part({ topic: 't', partitionMetadata, message: { key: 'foobar', value: 'v', partition: 3 } }), 3)
})

test('the OAUTHBEARER provider is awaited from Rust through a threadsafe function', async () => {
  let calls = 0
  const s = clientSettings({
    brokers: ['a:1'],
    sasl: {
      mechanism: 'oauthbearer',
      oauthBearerProvider: async () => {
        calls++
        await new Promise((r) => setTimeout(r, 10))
        return { value: 'token-123' }
      },
    },
  })
  assert.equal(s.props['sasl.mechanism'], 'OAUTHBEARER')
  assert.equal(await native.probeOauthBearerProvider(s.tokenProvider), 'token-123')
  assert.equal(calls, 1)
  const bad = clientSettings({ brokers: ['a:1'], sasl: { mechanism: 'oauthbearer', oauthBearerProvider: async () => { throw new Error('no token') } } })
  await assert.rejects(() => native.probeOauthBearerProvider(bad.tokenProvider).catch((e) => { throw mapError(e) }), sluice.KafkaJSSASLAuthenticationError)
})

test('connecting to nothing rejects with KafkaJS errors', async () => {
  const kafka = new sluice.Kafka({ brokers: ['127.0.0.1:1'], connectionTimeout: 500, logLevel: sluice.logLevel.NOTHING })
  await assert.rejects(() => kafka.producer().connect(), (e) => e instanceof sluice.KafkaJSError && e.name === 'KafkaJSNumberOfRetriesExceeded')
  await assert.rejects(() => kafka.admin().connect(), sluice.KafkaJSError)
  const p = kafka.producer()
  await assert.rejects(() => p.send({ topic: 't', messages: [{ value: 'x' }] }), sluice.KafkaJSNonRetriableError)
})

test('a broker that never answers does not block the event loop', async () => {
  const net = require('net')
  const sockets = []
  const server = net.createServer((s) => sockets.push(s)) // accepts, never answers
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  const kafka = new sluice.Kafka({
    brokers: [`127.0.0.1:${server.address().port}`],
    connectionTimeout: 1000,
    requestTimeout: 1000,
    logLevel: sluice.logLevel.NOTHING,
  })
  let ticks = 0
  const timer = setInterval(() => ticks++, 5)
  await assert.rejects(() => kafka.admin().connect(), sluice.KafkaJSError)
  clearInterval(timer)
  assert.ok(ticks > 0, 'timers kept firing while the connect was pending')
  for (const s of sockets) s.destroy()
  server.close()
})
