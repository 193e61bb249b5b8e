'use strict'
// SASL passthrough against a real Apache Kafka with a SASL_PLAINTEXT
// listener (started here with scripts/kafka-kraft, next to the plain Kafka
// the test scripts provide): PLAIN with KafkaJS's options, a wrong password
// as KafkaJSSASLAuthenticationError, and OAUTHBEARER where the token comes
// from a JS `oauthBearerProvider` awaited from Rust (an unsecured JWT, which
// Kafka's default validator accepts). Runs when SLUICE_TEST_KAFKA_BOOTSTRAP
// is set (so Kafka's jars are installed); skipped otherwise.

const { describe, test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFile } = require('child_process')
const fs = require('fs')
const net = require('net')
const os = require('os')
const path = require('path')
const { Kafka, logLevel, KafkaJSSASLAuthenticationError } = require('..')
const { unique, waitFor } = require('./helpers')

const KRAFT = path.resolve(__dirname, '../../../scripts/kafka-kraft')
const skip = !process.env.SLUICE_TEST_KAFKA_BOOTSTRAP

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port
      s.close(() => resolve(p))
    })
  })
}

function kraft(args) {
  return new Promise((resolve, reject) =>
    execFile(KRAFT, args, { timeout: 150000 }, (err, stdout, stderr) => (err ? reject(new Error(`kafka-kraft ${args[0]}: ${err.message}\n${stderr}`)) : resolve(stdout))),
  )
}

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')

describe('SASL against Apache Kafka', { skip }, () => {
  let dir, saslPort
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-kafka-sasl-'))
    const [port, cport] = [await freePort(), await freePort()]
    saslPort = await freePort()
    await kraft([
      'start', '--port', String(port), '--controller-port', String(cport), '--data-dir', dir,
      '--set', `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport},SASL_PLAINTEXT://127.0.0.1:${saslPort}`,
      '--set', `advertised.listeners=PLAINTEXT://127.0.0.1:${port},SASL_PLAINTEXT://127.0.0.1:${saslPort}`,
      '--set', 'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT',
      '--set', 'sasl.enabled.mechanisms=PLAIN,OAUTHBEARER',
      '--set', 'listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret";',
      '--set', 'listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;',
    ])
  })
  after(async () => {
    if (dir) {
      await kraft(['stop', '--data-dir', dir]).catch(() => {})
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('PLAIN: produce and consume; a wrong password is KafkaJSSASLAuthenticationError', async () => {
    const kafka = new Kafka({ brokers: [`127.0.0.1:${saslPort}`], sasl: { mechanism: 'plain', username: 'alice', password: 'alice-secret' }, logLevel: logLevel.NOTHING })
    const admin = kafka.admin()
    await admin.connect()
    const topic = unique('plain')
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] })
    const producer = kafka.producer()
    await producer.connect()
    await producer.send({ topic, messages: [{ value: 'over sasl' }] })
    await producer.disconnect()
    const consumer = kafka.consumer({ groupId: unique('g') })
    const got = []
    await consumer.connect()
    await consumer.subscribe({ topic, fromBeginning: true })
    await consumer.run({ eachMessage: async ({ message }) => got.push(message.value.toString()) })
    await waitFor('the record', () => got.length >= 1)
    await consumer.disconnect()
    await admin.disconnect()
    assert.deepEqual(got, ['over sasl'])

    const bad = new Kafka({ brokers: [`127.0.0.1:${saslPort}`], sasl: { mechanism: 'plain', username: 'alice', password: 'wrong' }, logLevel: logLevel.NOTHING })
    await assert.rejects(() => bad.admin().connect(), (e) => {
      assert.ok(e instanceof KafkaJSSASLAuthenticationError, `${e.name}: ${e.message}`)
      return true
    })
  })

  test('OAUTHBEARER: the async oauthBearerProvider supplies the token', async () => {
    let calls = 0
    const kafka = new Kafka({
      brokers: [`127.0.0.1:${saslPort}`],
      sasl: {
        mechanism: 'oauthbearer',
        oauthBearerProvider: async () => {
          calls++
          const now = Math.floor(Date.now() / 1000)
          return { value: `${b64({ alg: 'none' })}.${b64({ sub: 'alice', iat: now, exp: now + 3600 })}.` }
        },
      },
      logLevel: logLevel.NOTHING,
    })
    const producer = kafka.producer()
    await producer.connect()
    const topic = unique('oauth')
    const md = await producer.send({ topic, messages: [{ value: 'token ok' }] })
    assert.equal(md[0].topicName, topic)
    await producer.disconnect()
    assert.ok(calls >= 1)
    const rejected = new Kafka({
      brokers: [`127.0.0.1:${saslPort}`],
      sasl: { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: 'not-a-jwt' }) },
      logLevel: logLevel.NOTHING,
    })
    await assert.rejects(() => rejected.admin().connect(), KafkaJSSASLAuthenticationError)
  })
})
