// An AWS Lambda function for an MSK trigger, run by sluice-client instead
// of Lambda: `handler` below is Lambda code (it takes the MSK event shape);
// `eachPartitionBatch` plays the event source mapping. Each call gets one
// partition's records in offset order; the batch is committed once the
// promise resolves, and a rejection commits nothing: the same batch comes
// again after a backoff while other partitions carry on.
//
//   KAFKA_BOOTSTRAP=127.0.0.1:9092 TOPIC=test-topic node examples/node/batch-handler.js
//
// Env: KAFKA_BOOTSTRAP (default localhost:9092), TOPIC (default test-topic),
// GROUP_ID (default lambda-group), MAX_MESSAGES (stop after this many;
// default: run until Ctrl-C).
const { Kafka } = require('sluice-client')

const kafka = new Kafka({
  clientId: 'my-lambda',
  brokers: (process.env.KAFKA_BOOTSTRAP || 'localhost:9092').split(','),
})
const consumer = kafka.consumer({ groupId: process.env.GROUP_ID || 'lambda-group', maxPollRecords: 100 })
const topic = process.env.TOPIC || 'test-topic'
const max = process.env.MAX_MESSAGES ? Number(process.env.MAX_MESSAGES) : Infinity
let seen = 0
let batches = 0
let stopping = false

// The Lambda function, as deployed behind an MSK trigger.
const handler = async (event) => {
  for (const records of Object.values(event.records)) {
    for (const r of records) {
      const value = Buffer.from(r.value, 'base64').toString()
      if (!value.startsWith('Hello')) throw new Error(`unexpected record at offset ${r.offset}`)
      seen++
    }
  }
}

// A sluice Batch as the event Lambda builds from it.
const toMskEvent = (batch) => ({
  eventSource: 'aws:kafka',
  eventSourceArn: '',
  bootstrapServers: process.env.KAFKA_BOOTSTRAP || 'localhost:9092',
  records: {
    [`${batch.topic}-${batch.partition}`]: batch.messages.map((m) => ({
      topic: batch.topic,
      partition: batch.partition,
      offset: Number(m.offset),
      timestamp: Number(m.timestamp),
      timestampType: 'CREATE_TIME',
      key: m.key ? m.key.toString('base64') : null,
      value: m.value ? m.value.toString('base64') : null,
      headers: Object.entries(m.headers).map(([k, v]) => ({ [k]: [...Buffer.from(v || '')] })),
    })),
  },
})

const run = async () => {
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    eachPartitionBatch: async ({ batch }) => {
      await handler(toMskEvent(batch))
      batches++
      if (seen >= max && !stopping) {
        stopping = true
        setImmediate(async () => {
          await consumer.disconnect()
          console.log(`handled ${seen} messages in ${batches} batches`)
        })
      }
    },
  })
}

run().catch((e) => {
  console.error(e)
  process.exit(1)
})

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await consumer.disconnect()
    process.exit(0)
  })
}
