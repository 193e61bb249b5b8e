'use strict'
// TLS and SASL passthrough against a sluiced of its own with secured
// listeners: SASL_SSL with PLAIN (ssl.ca given inline, as KafkaJS users
// pass it) and AWS MSK IAM over SASL_PLAINTEXT signed by the built-in Rust
// signer from explicit credentials. Needs the openssl CLI and sluiced
// (SLUICED_BIN, default target/release/sluiced) with secured listeners and
// the `[auth]` config table; opt-in (SLUICE_TEST_SECURITY=1) while that
// part of sluiced's config is still changing.

const { describe, test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { spawn, execFileSync } = require('child_process')
const fs = require('fs')
const net = require('net')
const os = require('os')
const path = require('path')
const { Kafka, logLevel, KafkaJSSASLAuthenticationError, KafkaJSError } = require('..')
const { unique, waitFor } = require('./helpers')

const SLUICED = process.env.SLUICED_BIN || path.resolve(__dirname, '../../../target/release/sluiced')
const REGION = 'eu-west-1'
const ACCOUNT = '210987654321'
const AKID = 'AKIANODETESTEXAMPLE1'
const SECRET = 'node/secret/for/tests/only/0000000000000'
const ARN = `arn:aws:iam::${ACCOUNT}:role/node-app`

function haveOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return true
  } catch (_) {
    return false
  }
}

const skip = !process.env.SLUICE_TEST_SECURITY || !fs.existsSync(SLUICED) || !haveOpenssl()

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port
      s.close(() => resolve(p))
    })
  })
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => (s.destroy(), resolve(true)))
    s.once('error', () => resolve(false))
  })
}

describe('TLS and SASL against a secured sluiced', { skip }, () => {
  let dir, proc, sslPort, iamPort
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-sec-'))
    const ossl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' })
    ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=sluice node test CA')
    ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')
    fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
    ossl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf')
    fs.writeFileSync(path.join(dir, 'keystore.pem'), fs.readFileSync(path.join(dir, 'server.pem'), 'utf8') + fs.readFileSync(path.join(dir, 'server.key'), 'utf8'))
    const everything = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'kafka-cluster:*', Resource: '*' }] }
    fs.writeFileSync(
      path.join(dir, 'sluiced.toml'),
      `"ssl.keystore.location" = "${path.join(dir, 'keystore.pem')}"
"sasl.enabled.mechanisms" = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER,AWS_MSK_IAM"
"group.initial.rebalance.delay.ms" = 0

[auth]
region = "${REGION}"
account = "${ACCOUNT}"
cluster_name = "nodetest"
cluster_uuid = "abcdef01-2345-6789-abcd-ef0123456789"
plain_users = { frank = "frank-secret" }

[[auth.iam_credentials]]
access_key_id = "${AKID}"
secret_access_key = "${SECRET}"
principal_arn = "${ARN}"

[[auth.policies]]
principal = "${ARN}"
document = '''${JSON.stringify(everything)}'''

[[auth.policies]]
principal = "User:*"
document = '''${JSON.stringify(everything)}'''
`,
    )
    const plainPort = await freePort()
    sslPort = await freePort()
    iamPort = await freePort()
    const log = fs.openSync(path.join(dir, 'sluiced.log'), 'a')
    proc = spawn(
      SLUICED,
      [
        '--data-dir', path.join(dir, 'data'),
        '--config', path.join(dir, 'sluiced.toml'),
        '--listen', `PLAINTEXT://127.0.0.1:${plainPort}`,
        '--listen', `SASL_SSL://127.0.0.1:${sslPort}`,
        '--listen', `SASL_PLAINTEXT://127.0.0.1:${iamPort}`,
      ],
      { stdio: ['ignore', log, log] },
    )
    await waitFor('secured sluiced to listen', async () => {
      if (proc.exitCode !== null) throw new Error(`sluiced exited: ${fs.readFileSync(path.join(dir, 'sluiced.log'), 'utf8')}`)
      return (await portOpen(plainPort)) && (await portOpen(sslPort)) && (await portOpen(iamPort))
    }, 30000)
  })
  after(async () => {
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r))
      proc.kill('SIGTERM')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10000))])
      if (proc.exitCode === null) proc.kill('SIGKILL')
    }
    if (process.env.SLUICE_TEST_KEEP) console.error('kept', dir)
    else fs.rmSync(dir, { recursive: true, force: true })
  })

  test('SASL_SSL with PLAIN and an inline CA: produce and consume', async () => {
    const kafka = new Kafka({
      brokers: [`localhost:${sslPort}`],
      ssl: { ca: [fs.readFileSync(path.join(dir, 'ca.pem'))] },
      sasl: { mechanism: 'plain', username: 'frank', password: 'frank-secret' },
      logLevel: logLevel.NOTHING,
    })
    const admin = kafka.admin()
    await admin.connect()
    const topic = unique('tls')
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] })
    const producer = kafka.producer()
    await producer.connect()
    await producer.send({ topic, messages: [{ value: 'over tls' }] })
    await producer.disconnect()
    const consumer = kafka.consumer({ groupId: unique('g') })
    const got = []
    await consumer.connect()
    await consumer.subscribe({ topic, fromBeginning: true })
    await consumer.run({ eachMessage: async ({ message }) => got.push(message.value.toString()) })
    await waitFor('the record', () => got.length >= 1)
    await consumer.disconnect()
    await admin.disconnect()
    assert.deepEqual(got, ['over tls'])
  })

  test('a wrong password is a KafkaJSSASLAuthenticationError; a wrong CA fails too', async () => {
    const bad = new Kafka({
      brokers: [`localhost:${sslPort}`],
      ssl: { ca: [fs.readFileSync(path.join(dir, 'ca.pem'))] },
      sasl: { mechanism: 'plain', username: 'frank', password: 'wrong' },
      logLevel: logLevel.NOTHING,
    })
    await assert.rejects(() => bad.admin().connect(), (e) => e instanceof KafkaJSSASLAuthenticationError || (e instanceof KafkaJSError && /auth/i.test(e.message)))
    const untrusted = new Kafka({
      brokers: [`localhost:${sslPort}`],
      ssl: true,
      sasl: { mechanism: 'plain', username: 'frank', password: 'frank-secret' },
      connectionTimeout: 3000,
      logLevel: logLevel.NOTHING,
    })
    await assert.rejects(() => untrusted.admin().connect(), KafkaJSError)
  })

  test('aws-msk-iam signs with the built-in signer (explicit credentials)', async () => {
    const kafka = new Kafka({
      brokers: [`127.0.0.1:${iamPort}`],
      sasl: { mechanism: 'aws-msk-iam', region: REGION, accessKeyId: AKID, secretAccessKey: SECRET },
      logLevel: logLevel.NOTHING,
    })
    const admin = kafka.admin()
    await admin.connect()
    const topic = unique('iam')
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] })
    assert.ok((await admin.listTopics()).includes(topic))
    const producer = kafka.producer()
    await producer.connect()
    const md = await producer.send({ topic, messages: [{ value: 'signed' }] })
    assert.equal(md[0].baseOffset, '0')
    await producer.disconnect()
    await admin.disconnect()
    const wrong = new Kafka({
      brokers: [`127.0.0.1:${iamPort}`],
      sasl: { mechanism: 'aws-msk-iam', region: REGION, accessKeyId: AKID, secretAccessKey: 'not-the-secret' },
      logLevel: logLevel.NOTHING,
    })
    await assert.rejects(() => wrong.admin().connect(), KafkaJSError)
  })
})
