'use strict'
// Shared test helpers: which brokers to run against, unique names, and
// bounded waits (outcomes only, never timings).

const crypto = require('crypto')
const net = require('net')

/** [name, bootstrap] for each broker under test: sluiced always, Kafka when given. */
function brokers({ kafka = true } = {}) {
  const out = []
  if (process.env.SLUICE_TEST_BOOTSTRAP) out.push(['sluiced', process.env.SLUICE_TEST_BOOTSTRAP])
  if (kafka && process.env.SLUICE_TEST_KAFKA_BOOTSTRAP) out.push(['kafka', process.env.SLUICE_TEST_KAFKA_BOOTSTRAP])
  return out
}

function unique(prefix) {
  return `${prefix}-${crypto.randomBytes(5).toString('hex')}`
}

async function waitFor(what, fn, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/**
 * Whether the broker at `bootstrap` serves transactions (lists EndTxn in
 * ApiVersions v0). Apache Kafka does; sluiced before its transaction
 * coordinator does not, and the tests that need it say they were skipped.
 */
function supportsTransactions(bootstrap) {
  const [host, port] = [bootstrap.slice(0, bootstrap.lastIndexOf(':')), Number(bootstrap.slice(bootstrap.lastIndexOf(':') + 1))]
  const clientId = Buffer.from('sluice-probe')
  const req = Buffer.alloc(4 + 2 + 2 + 4 + 2 + clientId.length)
  req.writeInt32BE(req.length - 4, 0)
  req.writeInt16BE(18, 4) // ApiVersions
  req.writeInt16BE(0, 6) // v0
  req.writeInt32BE(1, 8) // correlation id
  req.writeInt16BE(clientId.length, 12)
  clientId.copy(req, 14)
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port }, () => sock.write(req))
    let buf = Buffer.alloc(0)
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d])
      if (buf.length < 4 || buf.length < 4 + buf.readInt32BE(0)) return
      sock.end()
      // size, correlation id, error code, [api key, min, max]
      const n = buf.readInt32BE(10)
      for (let i = 0; i < n; i++) {
        if (buf.readInt16BE(14 + 6 * i) === 26) return resolve(true) // EndTxn
      }
      resolve(false)
    })
    sock.on('error', reject)
  })
}

module.exports = { brokers, unique, waitFor, supportsTransactions }
