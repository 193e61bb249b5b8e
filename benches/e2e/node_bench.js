'use strict'
// One phase of scripts/bench-node: produce or consume N records of SIZE
// bytes with one Node client through the KafkaJS API (the same code for
// all three: sluice-client, KafkaJS and @confluentinc/kafka-javascript's
// KafkaJS-compatible API). Prints one JSON line: {client, phase, records,
// seconds, rps}.
//
//   node node_bench.js CLIENT produce|consume BOOTSTRAP TOPIC RECORDS SIZE
//
// CLIENT: sluice | kafkajs | confluent. Module paths come from
// SLUICE_CLIENT_PATH and BENCH_NODE_MODULES (where kafkajs and
// @confluentinc/kafka-javascript are installed).
// Produce: send() calls of BATCH (1000) records, up to WINDOW (8) in flight,
// each client's default producer (acks=-1, no compression, no key: records
// spread by each client's partitioner). Consume: one group member,
// fromBeginning, eachMessage, counted from the first record to the last.
//
// Env: BENCH_ACKS = 1 | -1 | all (default -1): the producer's acks, passed to
// send() (sluice-client, KafkaJS) or set in the producer config
// (confluent-kafka-javascript, whose send() takes no acks). BENCH_GROUP: the
// consumer's group id (default bench-CLIENT-<ms since epoch>, a fresh group).
// BENCH_BATCH / BENCH_WINDOW: records per send() (1000) and sends in flight (8).

const path = require('path')
const [client, phase, bootstrap, topic, recordsArg, sizeArg] = process.argv.slice(2)
const records = Number(recordsArg)
const size = Number(sizeArg)
const BATCH = Number(process.env.BENCH_BATCH || 1000)
const WINDOW = Number(process.env.BENCH_WINDOW || 8)
const mods = process.env.BENCH_NODE_MODULES || ''
const ACKS = parseAcks(process.env.BENCH_ACKS)

function parseAcks(v) {
  if (v === undefined || v === '' || v === 'all' || v === '-1') return -1
  if (v === '1') return 1
  throw new Error(`BENCH_ACKS must be 1, -1 or all, not ${v}`)
}

function load() {
  if (client === 'sluice') {
    const m = require(process.env.SLUICE_CLIENT_PATH)
    return { m, kafka: new m.Kafka({ clientId: 'bench', brokers: [bootstrap], logLevel: m.logLevel.ERROR }), producerCfg: {}, consumerCfg: (g) => ({ groupId: g }) }
  }
  if (client === 'kafkajs') {
    const m = require(path.join(mods, 'kafkajs'))
    return { m, kafka: new m.Kafka({ clientId: 'bench', brokers: [bootstrap], logLevel: m.logLevel.ERROR }), producerCfg: {}, consumerCfg: (g) => ({ groupId: g }) }
  }
  if (client === 'confluent') {
    const m = require(path.join(mods, '@confluentinc/kafka-javascript')).KafkaJS
    return {
      m,
      kafka: new m.Kafka({ kafkaJS: { clientId: 'bench', brokers: [bootstrap], logLevel: m.logLevel.ERROR } }),
      producerCfg: { kafkaJS: { acks: ACKS } },
      consumerCfg: (g) => ({ kafkaJS: { groupId: g, fromBeginning: true } }),
    }
  }
  throw new Error(`unknown client ${client}`)
}

async function produce({ kafka, producerCfg }) {
  const producer = kafka.producer(producerCfg)
  await producer.connect()
  const value = Buffer.alloc(size, 0x61)
  const batch = Array.from({ length: BATCH }, () => ({ value }))
  const start = process.hrtime.bigint()
  let sent = 0
  const inflight = new Set()
  while (sent < records) {
    const n = Math.min(BATCH, records - sent)
    const req = { topic, messages: n === BATCH ? batch : batch.slice(0, n) }
    // confluent-kafka-javascript takes acks from its producer config only.
    if (client !== 'confluent') req.acks = ACKS
    const p = producer.send(req)
    sent += n
    inflight.add(p)
    p.then(() => inflight.delete(p))
    if (inflight.size >= WINDOW) await Promise.race(inflight)
  }
  await Promise.all(inflight)
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  await producer.disconnect()
  return seconds
}

async function consume({ kafka, consumerCfg }) {
  const consumer = kafka.consumer(consumerCfg(process.env.BENCH_GROUP || `bench-${client}-${Date.now()}`))
  await consumer.connect()
  if (client === 'confluent') await consumer.subscribe({ topics: [topic] })
  else await consumer.subscribe({ topics: [topic], fromBeginning: true })
  let n = 0
  let start = null
  let done
  const finished = new Promise((r) => (done = r))
  await consumer.run({
    eachMessage: async ({ message }) => {
      if (start === null) start = process.hrtime.bigint()
      if (message.value.length !== size) throw new Error('bad record size')
      if (++n === records) done(process.hrtime.bigint())
    },
  })
  const end = await finished
  const seconds = Number(end - start) / 1e9
  await consumer.disconnect()
  return seconds
}

async function main() {
  const ctx = load()
  const timeout = setTimeout(() => {
    console.error(`${client} ${phase}: gave up after 600 s`)
    process.exit(2)
  }, 600000)
  const seconds = phase === 'produce' ? await produce(ctx) : await consume(ctx)
  clearTimeout(timeout)
  console.log(JSON.stringify({ client, phase, records, seconds, rps: records / seconds }))
  process.exit(0)
}

main().catch((e) => {
  console.error(`${client} ${phase} failed:`, e)
  process.exit(1)
})
