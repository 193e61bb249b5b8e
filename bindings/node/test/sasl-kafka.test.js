'use strict'
// SASL and TLS passthrough against a real Apache Kafka with SASL_PLAINTEXT
// and SASL_SSL listeners (started here with scripts/kafka-kraft, next to the
// plain Kafka the test scripts provide; PKI from the openssl CLI): PLAIN
// with KafkaJS's options, a wrong password as KafkaJSSASLAuthenticationError,
// OAUTHBEARER where the token comes from a JS `oauthBearerProvider` awaited
// from Rust (an unsecured JWT, which Kafka's default validator accepts), and
// `ssl: { ca }` given inline. Runs when SLUICE_TEST_KAFKA_BOOTSTRAP is set
// (so Kafka's jars are installed); skipped otherwise.

const { describe, test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFile, execFileSync } = require('child_process')
const fs = require('fs')
const net = require('net')
const os = require('os')
const path = require('path')
const { Kafka, logLevel, KafkaJSSASLAuthenticationError, KafkaJSError } = require('..')
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
  let dir, pki, saslPort, tlsPort
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-kafka-sasl-'))
    pki = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-kafka-pki-'))
    const ossl = (...args) => execFileSync('openssl', args, { cwd: pki, stdio: 'ignore' })
    ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=sluice node test CA')
    ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')
    fs.writeFileSync(path.join(pki, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
    ossl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf')
    fs.writeFileSync(path.join(pki, 'keystore.pem'), fs.readFileSync(path.join(pki, 'server.key'), 'utf8') + fs.readFileSync(path.join(pki, 'server.pem'), 'utf8'))
    const [port, cport] = [await freePort(), await freePort()]
    saslPort = await freePort()
    tlsPort = await freePort()
    const plain = 'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret";'
    const oauth = 'org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;'
    await kraft([
      'start', '--port', String(port), '--controller-port', String(cport), '--data-dir', dir,
      '--set', `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport},SASL_PLAINTEXT://127.0.0.1:${saslPort},SASL_SSL://127.0.0.1:${tlsPort}`,
      '--set', `advertised.listeners=PLAINTEXT://127.0.0.1:${port},SASL_PLAINTEXT://127.0.0.1:${saslPort},SASL_SSL://localhost:${tlsPort}`,
      '--set', 'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL',
      '--set', 'sasl.enabled.mechanisms=PLAIN,OAUTHBEARER',
      '--set', `listener.name.sasl_plaintext.plain.sasl.jaas.config=${plain}`,
      '--set', `listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config=${oauth}`,
      '--set', `listener.name.sasl_ssl.plain.sasl.jaas.config=${plain}`,
      '--set', `listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=${oauth}`,
      '--set', 'listener.name.sasl_ssl.ssl.keystore.type=PEM',
      '--set', `listener.name.sasl_ssl.ssl.keystore.location=${path.join(pki, 'keystore.pem')}`,
    ])
  })
  after(async () => {
    if (dir) {
      await kraft(['stop', '--data-dir', dir]).catch(() => {})
      fs.rmSync(dir, { recursive: true, force: true })
    }
    if (pki) fs.rmSync(pki, { recursive: true, force: true })
  })

  test('SASL_SSL: ssl.ca given inline (as KafkaJS users pass it); an untrusted server is refused', async () => {
    const sasl = { mechanism: 'plain', username: 'alice', password: 'alice-secret' }
    const kafka = new Kafka({ brokers: [`localhost:${tlsPort}`], ssl: { ca: [fs.readFileSync(path.join(pki, 'ca.pem'))] }, sasl, logLevel: logLevel.NOTHING })
    const producer = kafka.producer()
    await producer.connect()
    const topic = unique('tls')
    const md = await producer.send({ topic, messages: [{ value: 'over tls' }] })
    assert.equal(md[0].topicName, topic)
    await producer.disconnect()
    const untrusted = new Kafka({ brokers: [`localhost:${tlsPort}`], ssl: true, sasl, connectionTimeout: 3000, logLevel: logLevel.NOTHING })
    await assert.rejects(() => untrusted.admin().connect(), KafkaJSError)
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
