'use strict'
// Shared test helpers: which brokers to run against, unique names, and
// bounded waits (outcomes only, never timings).

const crypto = require('crypto')

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

module.exports = { brokers, unique, waitFor }
