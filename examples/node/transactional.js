// Exactly-once consume-transform-produce with KafkaJS's transactional API,
// moved to sluice-client by changing its require line: each batch a
// consumer gets is written, upper-cased, to the output topic in one
// transaction together with the batch's offsets, so a crash never leaves
// half a batch visible or its offsets committed.
//
//   KAFKA_BOOTSTRAP=127.0.0.1:9092 INPUT=test-topic OUTPUT=test-topic-upper node examples/node/transactional.js
//
// Env: KAFKA_BOOTSTRAP (default localhost:9092), INPUT (default test-topic),
// OUTPUT (default test-topic-upper), GROUP_ID (default upper-casers),
// MAX_MESSAGES (stop after this many; default: run until Ctrl-C).
const { Kafka } = require('sluice-client')

const kafka = new Kafka({
  clientId: 'my-transformer',
  brokers: (process.env.KAFKA_BOOTSTRAP || 'localhost:9092').split(','),
})

const input = process.env.INPUT || 'test-topic'
const output = process.env.OUTPUT || 'test-topic-upper'
const groupId = process.env.GROUP_ID || 'upper-casers'
const max = process.env.MAX_MESSAGES ? Number(process.env.MAX_MESSAGES) : Infinity

// readUncommitted: false is KafkaJS's default: only committed records are read.
const consumer = kafka.consumer({ groupId, readUncommitted: false })
// One transactionalId per instance of the application; a restarted instance
// with the same id fences the old one.
const producer = kafka.producer({ transactionalId: `${groupId}-transformer`, maxInFlightRequests: 1, idempotent: true })
let transformed = 0

const run = async () => {
  await producer.connect()
  await consumer.connect()
  await consumer.subscribe({ topics: [input], fromBeginning: true })
  await consumer.run({
    autoCommit: false, // the offsets are committed by the transactions
    eachBatch: async ({ batch }) => {
      const transaction = await producer.transaction()
      try {
        await transaction.send({
          topic: output,
          messages: batch.messages.map((m) => ({ key: m.key, value: m.value.toString().toUpperCase() })),
        })
        const next = (Number(batch.lastOffset()) + 1).toString()
        await transaction.sendOffsets({
          consumerGroupId: groupId,
          topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }],
        })
        await transaction.commit()
      } catch (e) {
        if (transaction.isActive()) await transaction.abort()
        throw e // the consumer retries the batch
      }
      transformed += batch.messages.length
      if (transformed >= max) {
        setImmediate(async () => {
          await consumer.disconnect()
          await producer.disconnect()
          console.log(`transformed ${transformed} messages`)
        })
      }
    },
  })
}

run().catch((e) => {
  console.error(e)
  process.exit(1)
})
