// A KafkaJS program, moved to sluice-client by changing its require line.
//
//   KAFKA_BOOTSTRAP=127.0.0.1:9092 TOPIC=test-topic node examples/node/producer.js
//
// Env: KAFKA_BOOTSTRAP (comma-separated host:port, default localhost:9092),
// TOPIC (default test-topic), MESSAGES (how many, default 10).
const { Kafka, CompressionTypes } = require('sluice-client')

const kafka = new Kafka({
  clientId: 'my-app',
  brokers: (process.env.KAFKA_BOOTSTRAP || 'localhost:9092').split(','),
})

const producer = kafka.producer()
const topic = process.env.TOPIC || 'test-topic'
const count = Number(process.env.MESSAGES || 10)

const run = async () => {
  await producer.connect()
  const messages = Array.from({ length: count }, (_, i) => ({
    key: `key-${i}`,
    value: `Hello sluice-client user! #${i}`,
    headers: { 'correlation-id': `${i}` },
  }))
  const metadata = await producer.send({ topic, messages, compression: CompressionTypes.GZIP })
  for (const m of metadata) {
    console.log(`sent to ${m.topicName}[${m.partition}] from offset ${m.baseOffset}`)
  }
  console.log(`produced ${count} messages`)
  await producer.disconnect()
}

run().catch((e) => {
  console.error(e)
  process.exit(1)
})
