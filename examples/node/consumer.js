// A KafkaJS program, moved to sluice-client by changing its require line.
//
//   KAFKA_BOOTSTRAP=127.0.0.1:9092 TOPIC=test-topic node examples/node/consumer.js
//
// Env: KAFKA_BOOTSTRAP (default localhost:9092), TOPIC (default test-topic),
// GROUP_ID (default test-group), MAX_MESSAGES (stop after this many; default:
// run until Ctrl-C).
const { Kafka } = require('sluice-client')

const kafka = new Kafka({
  clientId: 'my-app',
  brokers: (process.env.KAFKA_BOOTSTRAP || 'localhost:9092').split(','),
})

const consumer = kafka.consumer({ groupId: process.env.GROUP_ID || 'test-group' })
const topic = process.env.TOPIC || 'test-topic'
const max = process.env.MAX_MESSAGES ? Number(process.env.MAX_MESSAGES) : Infinity
let seen = 0

const run = async () => {
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      console.log({
        topic,
        partition,
        offset: message.offset,
        key: message.key && message.key.toString(),
        value: message.value.toString(),
      })
      if (++seen >= max) {
        setImmediate(async () => {
          await consumer.disconnect()
          console.log(`consumed ${seen} messages`)
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
