'use strict'
// consumer.run({ eachPartitionBatch }): ordered per-partition batches, each
// committed only after the handler's promise resolved; a rejection commits
// nothing and the batch comes again (to the same consumer, or to the next
// member after a restart). Against sluiced, and Apache Kafka when given.
// Waits are bounded; nothing asserts on timings.

const { describe, test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { Kafka, logLevel, KafkaJSNonRetriableError } = require('..')
const { brokers, unique, waitFor } = require('./helpers')

for (const [name, bootstrap] of brokers()) {
  describe(`eachPartitionBatch against ${name}`, () => {
    let kafka, admin, producer
    before(async () => {
      kafka = new Kafka({ clientId: 'node-batches', brokers: [bootstrap], logLevel: logLevel.NOTHING })
      admin = kafka.admin()
      await admin.connect()
      // Idempotent, so a retried batch cannot land after a later one: the
      // tests check per-partition order, and a fresh topic on Kafka can
      // answer the first produce with NOT_LEADER_OR_FOLLOWER.
      producer = kafka.producer({ idempotent: true })
      await producer.connect()
    })
    after(async () => {
      await producer.disconnect()
      await admin.disconnect()
    })

    async function topicWith(partitions, perPartition) {
      const topic = unique('pb')
      await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }] })
      const messages = []
      for (let i = 0; i < perPartition; i++) {
        for (let p = 0; p < partitions; p++) messages.push({ partition: p, value: `p${p}-${i}` })
      }
      await producer.send({ topic, messages })
      return topic
    }

    async function committed(groupId, topic) {
      const [t] = await admin.fetchOffsets({ groupId, topics: [topic] })
      return Object.fromEntries(t.partitions.map((p) => [p.partition, p.offset]))
    }

    function batchConsumer(groupId) {
      return kafka.consumer({ groupId, maxPollRecords: 7, retry: { initialRetryTime: 50, maxRetryTime: 200 } })
    }

    test('in order per partition, exactly once, each batch committed after its handler', async () => {
      const topic = await topicWith(3, 20)
      const groupId = unique('g')
      const consumer = batchConsumer(groupId)
      const seen = { 0: [], 1: [], 2: [] }
      const committedBefore = []
      let handled = 0
      await consumer.connect()
      await consumer.subscribe({ topic, fromBeginning: true })
      await consumer.run({
        partitionsConsumedConcurrently: 3,
        eachPartitionBatch: async ({ batch, isRunning }) => {
          assert.equal(batch.topic, topic)
          assert.ok(isRunning())
          const offsets = batch.messages.map((m) => Number(m.offset))
          assert.deepEqual(offsets, offsets.map((_, i) => offsets[0] + i), 'consecutive offsets')
          assert.deepEqual(batch.messages.map((m) => m.value.toString()), offsets.map((o) => `p${batch.partition}-${o}`))
          // While the handler runs the commit is where this batch starts.
          committedBefore.push([offsets[0], (await committed(groupId, topic))[batch.partition]])
          seen[batch.partition].push(...offsets)
          handled += offsets.length
        },
      })
      await waitFor('60 messages', () => handled >= 60)
      await consumer.disconnect()
      const all = Array.from({ length: 20 }, (_, i) => i)
      assert.deepEqual(seen, { 0: all, 1: all, 2: all })
      assert.ok(committedBefore.length >= 9, 'at most 7 records a poll')
      for (const [first, c] of committedBefore) assert.equal(c, first === 0 ? '-1' : String(first), JSON.stringify(committedBefore))
      assert.deepEqual(await committed(groupId, topic), { 0: '20', 1: '20', 2: '20' })
    })

    test('a rejected batch is not committed and comes again; other partitions carry on', async () => {
      const topic = await topicWith(2, 5)
      const groupId = unique('g')
      const consumer = batchConsumer(groupId)
      const attempts = []
      const done = { 0: [], 1: [] }
      let rejections = 0
      await consumer.connect()
      await consumer.subscribe({ topic, fromBeginning: true })
      await consumer.run({
        eachPartitionBatch: async ({ batch }) => {
          attempts.push([batch.partition, batch.firstOffset()])
          if (batch.partition === 0 && rejections < 2) {
            rejections++
            throw new Error('partition 0 is not ready')
          }
          if (batch.partition === 0) assert.equal((await committed(groupId, topic))[0], '-1', 'the rejections committed nothing')
          done[batch.partition].push(...batch.messages.map((m) => Number(m.offset)))
        },
      })
      await waitFor('10 messages', () => done[0].length + done[1].length >= 10)
      await consumer.disconnect()
      assert.deepEqual(done, { 0: [0, 1, 2, 3, 4], 1: [0, 1, 2, 3, 4] }, JSON.stringify(attempts))
      const p0 = attempts.filter((a) => a[0] === 0)
      assert.deepEqual(p0.slice(0, 3), [[0, '0'], [0, '0'], [0, '0']], 'the same batch, three times')
      assert.deepEqual(await committed(groupId, topic), { 0: '5', 1: '5' })
    })

    test('after a restart the next member resumes after the last committed batch', async () => {
      const topic = await topicWith(1, 10)
      const groupId = unique('g')
      const first = kafka.consumer({ groupId, maxPollRecords: 4 })
      const got = []
      let failedAt = null
      await first.connect()
      await first.subscribe({ topic, fromBeginning: true })
      await first.run({
        eachPartitionBatch: async ({ batch }) => {
          if (got.length === 0) {
            got.push(...batch.messages.map((m) => Number(m.offset)))
            return
          }
          // The second batch fails, and this member goes away.
          failedAt = batch.firstOffset()
          throw new Error('crash')
        },
      })
      await waitFor('a failed second batch', () => failedAt !== null)
      await first.disconnect()
      assert.deepEqual(got, [0, 1, 2, 3])
      assert.equal(failedAt, '4')
      assert.deepEqual(await committed(groupId, topic), { 0: '4' })

      const second = kafka.consumer({ groupId, maxPollRecords: 4 })
      const rest = []
      await second.connect()
      await second.subscribe({ topic, fromBeginning: true })
      await second.run({
        eachPartitionBatch: async ({ batch }) => {
          rest.push(...batch.messages.map((m) => Number(m.offset)))
        },
      })
      await waitFor('the rest', () => rest.length >= 6)
      await second.disconnect()
      assert.deepEqual(rest, [4, 5, 6, 7, 8, 9])
      assert.deepEqual(await committed(groupId, topic), { 0: '10' })
    })

    test('run() takes exactly one handler', async () => {
      const consumer = kafka.consumer({ groupId: unique('g') })
      await consumer.connect()
      await consumer.subscribe({ topic: unique('none') })
      await assert.rejects(consumer.run({}), KafkaJSNonRetriableError)
      await assert.rejects(consumer.run({ eachBatch: async () => {}, eachPartitionBatch: async () => {} }), /one of/)
      await assert.rejects(consumer.run({ eachPartitionBatch: 'handler' }), /must be a function/)
      await consumer.disconnect()
    })
  })
}
