'use strict'
// KafkaJS's transactional API (producer.transaction(): send, sendBatch,
// sendOffsets, commit, abort, isActive) and the consumer's isolation level,
// against each broker. Every test here needs a transaction-capable broker:
// against a sluiced that does not serve transactions yet they are skipped
// (saying so), and run unchanged once it does.

const { describe, test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { Kafka, logLevel, KafkaJSNonRetriableError } = require('..')
const { brokers, unique, waitFor, supportsTransactions } = require('./helpers')

for (const [name, bootstrap] of brokers()) {
  describe(`transactions against ${name}`, () => {
    let kafka, admin, capable
    before(async () => {
      capable = await supportsTransactions(bootstrap)
      kafka = new Kafka({ clientId: 'node-txn-test', brokers: [bootstrap], logLevel: logLevel.WARN })
      admin = kafka.admin()
      await admin.connect()
    })
    after(async () => {
      await admin.disconnect()
    })

    function needsTransactions(t) {
      if (!capable) t.skip(`${name} does not serve transactions yet (no EndTxn in ApiVersions)`)
      return capable
    }

    async function newTopic(partitions = 3) {
      const topic = unique('txn')
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }] }), true)
      return topic
    }

    /** Values read from `topic` until an "end" value came from every partition. */
    async function readToEnd(topic, partitions, opts = {}) {
      const consumer = kafka.consumer({ groupId: unique('reader'), ...opts })
      const values = []
      const ended = new Set()
      await consumer.connect()
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          const v = message.value.toString()
          if (v === 'end') ended.add(partition)
          else values.push(v)
        },
      })
      await waitFor(`the end of ${topic}`, () => ended.size >= partitions)
      await consumer.disconnect()
      return values.sort()
    }

    test('commit, abort, and what read_committed (the default) and read_uncommitted see', async (t) => {
      if (!needsTransactions(t)) return
      const topic = await newTopic(3)
      const producer = kafka.producer({ transactionalId: unique('tx'), maxInFlightRequests: 1, idempotent: true })
      await producer.connect()

      const committed = await producer.transaction()
      assert.equal(committed.isActive(), true)
      await committed.send({ topic, messages: [0, 1, 2, 3, 4, 5].map((i) => ({ value: `committed-${i}`, partition: i % 3 })) })
      await assert.rejects(producer.transaction(), KafkaJSNonRetriableError, 'one transaction at a time')
      await committed.commit()
      assert.equal(committed.isActive(), false)
      await assert.rejects(committed.send({ topic, messages: [{ value: 'late' }] }), /once ended/)

      const aborted = await producer.transaction()
      await aborted.sendBatch({ topicMessages: [{ topic, messages: [0, 1, 2].map((i) => ({ value: `aborted-${i}`, partition: i })) }] })
      await aborted.abort()
      assert.equal(aborted.isActive(), false)

      const last = await producer.transaction()
      await last.send({ topic, messages: [0, 1, 2].map((partition) => ({ value: 'end', partition })) })
      await last.commit()
      await producer.disconnect()

      const want = [0, 1, 2, 3, 4, 5].map((i) => `committed-${i}`).sort()
      assert.deepEqual(await readToEnd(topic, 3), want, 'the default (read_committed) sees the committed records only')
      const all = await readToEnd(topic, 3, { readUncommitted: true })
      assert.deepEqual(all, [...want, 'aborted-0', 'aborted-1', 'aborted-2'].sort(), 'read_uncommitted sees every record')
    })

    test('sendOffsets commits a group\'s offsets with the transaction only', async (t) => {
      if (!needsTransactions(t)) return
      const input = await newTopic(1)
      const output = await newTopic(1)
      const groupId = unique('txn-group')
      const producer = kafka.producer({ transactionalId: unique('tx'), idempotent: true, maxInFlightRequests: 1, transactionTimeout: 30000 })
      await producer.connect()
      const offsetsOf = async () => {
        const r = await admin.fetchOffsets({ groupId, topics: [input] })
        return r[0].partitions[0].offset
      }
      const aborted = await producer.transaction()
      await aborted.send({ topic: output, messages: [{ value: 'x' }] })
      await aborted.sendOffsets({ consumerGroupId: groupId, topics: [{ topic: input, partitions: [{ partition: 0, offset: '5' }] }] })
      await aborted.abort()
      await new Promise((r) => setTimeout(r, 1000))
      assert.equal(await offsetsOf(), '-1', 'an aborted transaction commits no offsets')

      const committed = await producer.transaction()
      await committed.send({ topic: output, messages: [{ value: 'y' }] })
      await committed.sendOffsets({ consumerGroupId: groupId, topics: [{ topic: input, partitions: [{ partition: 0, offset: '7' }] }] })
      await committed.commit()
      await waitFor('offset 7 committed', async () => (await offsetsOf()) === '7')
      await producer.disconnect()
    })

    test('transaction() needs a transactionalId', async (t) => {
      if (!needsTransactions(t)) return
      const producer = kafka.producer()
      await producer.connect()
      await assert.rejects(producer.transaction(), /transactional id/)
      await producer.disconnect()
    })
  })
}
