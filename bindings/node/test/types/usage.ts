// Type-checked (tsc --noEmit) by scripts/test-node: a KafkaJS-style
// TypeScript program against sluice-client's definitions. Never run.
import {
  Kafka,
  CompressionTypes,
  Partitioners,
  logLevel,
  KafkaJSError,
  KafkaJSProtocolError,
  EachMessagePayload,
  EachBatchPayload,
  EachPartitionBatchPayload,
  RecordMetadata,
  Producer,
  Transaction,
  Consumer,
  Admin,
} from 'sluice-client'

async function main(): Promise<void> {
  const kafka = new Kafka({
    clientId: 'typed',
    brokers: ['localhost:9092'],
    ssl: { ca: ['pem'], rejectUnauthorized: true },
    sasl: { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: 'token' }) },
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { retries: 5, initialRetryTime: 300 },
    logLevel: logLevel.ERROR,
  })
  new Kafka({ brokers: ['b:9098'], ssl: true, sasl: { mechanism: 'aws-msk-iam', region: 'us-east-1' } })
  new Kafka({ brokers: ['b:9096'], sasl: { mechanism: 'scram-sha-512', username: 'u', password: 'p' } })

  const producer: Producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  const md: RecordMetadata[] = await producer.send({
    topic: 't',
    acks: -1,
    compression: CompressionTypes.ZSTD,
    messages: [{ key: 'k', value: Buffer.from('v'), headers: { h: 'x' }, partition: 0, timestamp: `${Date.now()}` }],
  })
  const first: string | undefined = md[0].baseOffset

  const txProducer: Producer = kafka.producer({ transactionalId: 'tx-1', maxInFlightRequests: 1, idempotent: true, transactionTimeout: 30000 })
  await txProducer.connect()
  const txn: Transaction = await txProducer.transaction()
  await txn.send({ topic: 't', messages: [{ value: 'in a transaction' }] })
  await txn.sendBatch({ topicMessages: [{ topic: 't', messages: [{ value: 'v' }] }] })
  await txn.sendOffsets({ consumerGroupId: 'g', topics: [{ topic: 'in', partitions: [{ partition: 0, offset: '42' }] }] })
  const active: boolean = txn.isActive()
  if (active) await txn.commit()
  else await txn.abort()
  await producer.sendBatch({ topicMessages: [{ topic: 't', messages: [{ value: 'v' }] }] })
  producer.on(producer.events.CONNECT, (e) => console.log(e.timestamp))
  await producer.disconnect()

  const consumer: Consumer = kafka.consumer({ groupId: 'g', sessionTimeout: 30000, rebalanceTimeout: 60000, heartbeatInterval: 3000, maxBytesPerPartition: 1048576 })
  await consumer.connect()
  await consumer.subscribe({ topics: ['t', /t-.*/], fromBeginning: true })
  consumer.on(consumer.events.GROUP_JOIN, (e) => console.log(e.payload.memberAssignment))
  consumer.on(consumer.events.CRASH, (e) => console.log(e.payload.error.message, e.payload.restart))
  await consumer.run({
    autoCommit: true,
    autoCommitInterval: 5000,
    partitionsConsumedConcurrently: 2,
    eachMessage: async ({ topic, partition, message, heartbeat, pause }: EachMessagePayload) => {
      const value: string | undefined = message.value?.toString()
      console.log(topic, partition, message.offset, message.timestamp, message.key, message.headers, value)
      await heartbeat()
      const resume = pause()
      resume()
    },
  })
  await consumer.run({
    eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }: EachBatchPayload) => {
      for (const m of batch.messages) {
        if (!isRunning() || isStale()) break
        resolveOffset(m.offset)
        await heartbeat()
      }
      console.log(batch.highWatermark, batch.lastOffset())
      await commitOffsetsIfNecessary()
    },
  })
  await consumer.run({
    partitionsConsumedConcurrently: 3,
    eachPartitionBatch: async ({ batch, heartbeat, isRunning, pause }: EachPartitionBatchPayload) => {
      const first: string | null = batch.firstOffset()
      const values: Array<Buffer | null> = batch.messages.map((m) => m.value)
      console.log(batch.topic, batch.partition, first, batch.lastOffset(), values.length, isRunning())
      await heartbeat()
      pause()()
    },
  })
  consumer.seek({ topic: 't', partition: 0, offset: '42' })
  consumer.pause([{ topic: 't' }])
  consumer.resume([{ topic: 't', partitions: [0] }])
  await consumer.commitOffsets([{ topic: 't', partition: 0, offset: '43' }])
  await consumer.stop()
  await consumer.disconnect()

  const admin: Admin = kafka.admin()
  await admin.connect()
  const created: boolean = await admin.createTopics({ topics: [{ topic: 't', numPartitions: 3, replicationFactor: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }] })
  const names: string[] = await admin.listTopics()
  const meta = await admin.fetchTopicMetadata({ topics: ['t'] })
  const offs = await admin.fetchTopicOffsets('t')
  const groups = await admin.describeGroups(['g'])
  const committed = await admin.fetchOffsets({ groupId: 'g', topics: ['t'] })
  await admin.resetOffsets({ groupId: 'g', topic: 't', earliest: true })
  await admin.deleteTopics({ topics: ['t'] })
  await admin.disconnect()
  console.log(first, created, names, meta.topics[0].partitions[0].leader, offs[0].high, groups.groups[0].state, committed[0].partitions[0].offset)

  try {
    await producer.send({ topic: 'x', messages: [] })
  } catch (e) {
    if (e instanceof KafkaJSProtocolError) console.log(e.type, e.code, e.retriable)
    else if (e instanceof KafkaJSError) console.log(e.name, e.retriable)
  }
}

main().catch(console.error)
