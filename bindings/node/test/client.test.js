'use strict'
// Producer, consumer and admin against live brokers: sluiced always, and
// Apache Kafka too when SLUICE_TEST_KAFKA_BOOTSTRAP is set (the core subset
// marked `both`). Waits are bounded; nothing asserts on timings.

const { describe, test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { Kafka, CompressionTypes, logLevel, KafkaJSProtocolError, KafkaJSNonRetriableError, KafkaJSError } = require('..')
const { brokers, unique, waitFor } = require('./helpers')

for (const [name, bootstrap] of brokers()) {
  const full = name === 'sluiced'
  describe(`against ${name}`, () => {
    let kafka, admin, producer
    before(async () => {
      kafka = new Kafka({ clientId: 'node-test', brokers: [bootstrap], logLevel: logLevel.WARN })
      admin = kafka.admin()
      await admin.connect()
      producer = kafka.producer()
      await producer.connect()
    })
    after(async () => {
      await producer.disconnect()
      await admin.disconnect()
    })

    async function newTopic(partitions = 3) {
      const topic = unique('t')
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }] }), true)
      return topic
    }

    /** Consumes until `want` messages arrived; returns them (bounded wait). */
    async function consume(topic, want, opts = {}, runOpts = {}) {
      const consumer = kafka.consumer({ groupId: opts.groupId || unique('g'), ...opts })
      const got = []
      await consumer.connect()
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await consumer.run({
        eachMessage: async (p) => {
          got.push(p)
        },
        ...runOpts,
      })
      await waitFor(`${want} messages`, () => got.length >= want)
      await consumer.disconnect()
      return got
    }

    test('admin: create, list, metadata, offsets, delete', async () => {
      const topic = await newTopic(3)
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] }), false, 'exists already')
      assert.ok((await admin.listTopics()).includes(topic))
      const md = await admin.fetchTopicMetadata({ topics: [topic] })
      assert.equal(md.topics[0].name, topic)
      assert.deepEqual(md.topics[0].partitions.map((p) => p.partitionId).sort(), [0, 1, 2])
      const offsets = await admin.fetchTopicOffsets(topic)
      assert.deepEqual(offsets.map((o) => [o.partition, o.high, o.low]), [[0, '0', '0'], [1, '0', '0'], [2, '0', '0']])
      await admin.deleteTopics({ topics: [topic] })
      await waitFor('topic gone', async () => !(await admin.listTopics()).includes(topic))
    })

    test('produce with keys, headers, timestamps; consume with eachMessage', async () => {
      const topic = await newTopic(3)
      const messages = Array.from({ length: 30 }, (_, i) => ({
        key: `k${i % 5}`,
        value: Buffer.from(`v${i}`),
        headers: { n: String(i), dup: ['a', 'b'] },
        timestamp: String(1700000000000 + i),
      }))
      const md = await producer.send({ topic, messages })
      assert.ok(md.length >= 1)
      for (const m of md) {
        assert.equal(m.topicName, topic)
        assert.equal(m.errorCode, 0)
        assert.equal(typeof m.baseOffset, 'string')
      }
      const got = await consume(topic, 30)
      assert.equal(got.length, 30)
      const byValue = new Map(got.map((p) => [p.message.value.toString(), p]))
      for (let i = 0; i < 30; i++) {
        const p = byValue.get(`v${i}`)
        assert.ok(p, `v${i}`)
        assert.equal(p.topic, topic)
        assert.equal(p.message.key.toString(), `k${i % 5}`)
        assert.equal(p.message.headers.n.toString(), String(i))
        assert.deepEqual(p.message.headers.dup.map(String), ['a', 'b'])
        assert.equal(p.message.timestamp, String(1700000000000 + i))
        assert.equal(typeof p.message.offset, 'string')
        assert.equal(typeof p.heartbeat, 'function')
        assert.equal(typeof p.pause, 'function')
      }
      // Same key, same partition (murmur2, as the Java client).
      const parts = new Map()
      for (const p of got) {
        const k = p.message.key.toString()
        if (parts.has(k)) assert.equal(parts.get(k), p.partition)
        parts.set(k, p.partition)
      }
    })

    test('every compression type round-trips', async () => {
      const topic = await newTopic(1)
      const types = ['None', 'GZIP', 'Snappy', 'LZ4', 'ZSTD']
      for (const t of types) {
        await producer.send({ topic, compression: CompressionTypes[t], messages: [{ value: `${t}-`.repeat(50) }] })
      }
      const got = await consume(topic, types.length)
      assert.deepEqual(got.map((p) => p.message.value.toString()), types.map((t) => `${t}-`.repeat(50)))
    })

    test('sendBatch over two topics; eachBatch with resolveOffset', async () => {
      const a = await newTopic(2)
      const b = await newTopic(2)
      const res = await producer.sendBatch({
        topicMessages: [
          { topic: a, messages: Array.from({ length: 10 }, (_, i) => ({ value: `a${i}` })) },
          { topic: b, messages: Array.from({ length: 10 }, (_, i) => ({ value: `b${i}` })) },
        ],
      })
      assert.ok(res.some((r) => r.topicName === a) && res.some((r) => r.topicName === b))
      const consumer = kafka.consumer({ groupId: unique('g') })
      const seen = []
      await consumer.connect()
      await consumer.subscribe({ topics: [a, b], fromBeginning: true })
      await consumer.run({
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale, commitOffsetsIfNecessary }) => {
          assert.equal(typeof batch.highWatermark, 'string')
          for (const m of batch.messages) {
            if (!isRunning() || isStale()) break
            seen.push(m.value.toString())
            resolveOffset(m.offset)
            await heartbeat()
          }
          await commitOffsetsIfNecessary()
        },
      })
      await waitFor('20 messages', () => seen.length >= 20)
      await consumer.disconnect()
      assert.deepEqual(seen.sort(), [...Array.from({ length: 10 }, (_, i) => `a${i}`), ...Array.from({ length: 10 }, (_, i) => `b${i}`)].sort())
    })

    test('eachBatch commitOffsetsIfNecessary(offsets) commits KafkaJS Offsets', async () => {
      const topic = await newTopic(1)
      const groupId = unique('g')
      await producer.send({ topic, messages: Array.from({ length: 3 }, (_, i) => ({ value: `m${i}` })) })
      const consumer = kafka.consumer({ groupId })
      let committed = false
      await consumer.connect()
      await consumer.subscribe({ topic, fromBeginning: true })
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch, commitOffsetsIfNecessary }) => {
          const next = String(Number(batch.lastOffset()) + 1)
          await commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition: batch.partition, offset: next }] }] })
          if (next === '3') committed = true
        },
      })
      await waitFor('the explicit commit', () => committed)
      await consumer.disconnect()
      const offsets = await admin.fetchOffsets({ groupId, topics: [topic] })
      assert.equal(offsets[0].partitions[0].offset, '3')
    })

    test('committed offsets survive a restart; fetchOffsets and resetOffsets', async () => {
      const topic = await newTopic(1)
      const groupId = unique('g')
      await producer.send({ topic, messages: Array.from({ length: 5 }, (_, i) => ({ value: `m${i}` })) })
      await consume(topic, 5, { groupId })
      const committed = await admin.fetchOffsets({ groupId, topics: [topic] })
      assert.deepEqual(committed, [{ topic, partitions: [{ partition: 0, offset: '5', metadata: null }] }])
      await producer.send({ topic, messages: [{ value: 'after' }] })
      const again = await consume(topic, 1, { groupId })
      assert.equal(again[0].message.value.toString(), 'after')
      assert.equal(again[0].message.offset, '5')
      await admin.resetOffsets({ groupId, topic, earliest: true })
      const reset = await admin.fetchOffsets({ groupId, topics: [topic] })
      assert.equal(reset[0].partitions[0].offset, '0')
      const groups = await admin.describeGroups([groupId])
      assert.equal(groups.groups[0].groupId, groupId)
    })

    test('errors are KafkaJS classes with the Kafka error name', async () => {
      const missing = unique('missing')
      await assert.rejects(() => admin.fetchTopicOffsets(missing), (e) => {
        assert.ok(e instanceof KafkaJSProtocolError, `${e.name}: ${e.message}`)
        assert.equal(e.type, 'UNKNOWN_TOPIC_OR_PARTITION')
        assert.equal(e.code, 3)
        return true
      })
      await assert.rejects(() => admin.createTopics({ topics: [{ topic: 'bad name!', numPartitions: 1 }] }), (e) => {
        assert.ok(e instanceof KafkaJSProtocolError, `${e.name}: ${e.message}`)
        assert.equal(e.type, 'INVALID_TOPIC_EXCEPTION')
        assert.equal(e.retriable, false)
        return true
      })
      await assert.rejects(() => producer.send({ topic: 'x', messages: 'nope' }), KafkaJSNonRetriableError)
    })

    if (!full) return

    test('admin: createPartitions, describeCluster, deleteTopicRecords, listGroups', async () => {
      const topic = await newTopic(1)
      await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] })
      await waitFor('3 partitions', async () => (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions.length === 3)
      const cluster = await admin.describeCluster()
      assert.ok(cluster.brokers.length >= 1)
      assert.equal(typeof cluster.brokers[0].port, 'number')
      await producer.send({ topic, messages: Array.from({ length: 5 }, () => ({ value: 'x', partition: 0 })) })
      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '3' }] })
      const offs = await admin.fetchTopicOffsets(topic)
      assert.equal(offs[0].low, '3')
      assert.equal(offs[0].high, '5')
      const { groups } = await admin.listGroups()
      assert.ok(Array.isArray(groups))
    })

    test('consumer events, commitOffsets, seek, pause and resume', async () => {
      const topic = await newTopic(2)
      await producer.send({ topic, messages: Array.from({ length: 10 }, (_, i) => ({ value: `s${i}`, partition: 0 })) })
      const consumer = kafka.consumer({ groupId: unique('g') })
      const events = []
      for (const ev of ['CONNECT', 'GROUP_JOIN', 'COMMIT_OFFSETS', 'STOP', 'DISCONNECT', 'START_BATCH_PROCESS']) {
        consumer.on(consumer.events[ev], (e) => events.push(e.type))
      }
      assert.throws(() => consumer.on('nope', () => {}), KafkaJSError)
      const got = []
      let sought = false
      await consumer.connect()
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          got.push(message.value.toString())
          if (message.offset === '9' && !sought) {
            sought = true
            consumer.seek({ topic, partition, offset: '7' })
          }
        },
      })
      await waitFor('replay after seek', () => got.length >= 13)
      assert.deepEqual(got.slice(0, 13), [...Array.from({ length: 10 }, (_, i) => `s${i}`), 's7', 's8', 's9'])
      consumer.pause([{ topic }])
      assert.deepEqual(consumer.paused(), [{ topic, partitions: [] }])
      await new Promise((r) => setTimeout(r, 700)) // let the pause reach the Rust consumer
      await producer.send({ topic, messages: [{ value: 'later', partition: 1 }] })
      await new Promise((r) => setTimeout(r, 1000))
      assert.ok(!got.includes('later'), 'nothing consumed while paused')
      consumer.resume([{ topic }])
      await waitFor('message after resume', () => got.includes('later'))
      await consumer.commitOffsets([{ topic, partition: 1, offset: '1' }])
      await consumer.disconnect()
      for (const t of ['consumer.connect', 'consumer.group_join', 'consumer.commit_offsets', 'consumer.stop', 'consumer.disconnect', 'consumer.start_batch_process']) {
        assert.ok(events.includes(t), `${t} in ${events}`)
      }
    })

    test('a failing eachMessage is retried from the failed message', async () => {
      const topic = await newTopic(1)
      await producer.send({ topic, messages: Array.from({ length: 4 }, (_, i) => ({ value: `r${i}` })) })
      const consumer = kafka.consumer({ groupId: unique('g'), retry: { initialRetryTime: 50, retries: 5 } })
      const got = []
      let failed = false
      const crashes = []
      consumer.on(consumer.events.CRASH, (e) => crashes.push(e.payload))
      await consumer.connect()
      await consumer.subscribe({ topic, fromBeginning: true })
      await consumer.run({
        eachMessage: async ({ message }) => {
          if (message.value.toString() === 'r2' && !failed) {
            failed = true
            throw new Error('transient')
          }
          got.push(message.value.toString())
        },
      })
      await waitFor('all four', () => got.length >= 4)
      await consumer.disconnect()
      assert.deepEqual(got, ['r0', 'r1', 'r2', 'r3'])
      assert.equal(crashes[0].restart, true)
    })

    test('regex subscription and partitionsConsumedConcurrently', async () => {
      const prefix = unique('rx')
      for (const i of [1, 2]) {
        await admin.createTopics({ topics: [{ topic: `${prefix}-${i}`, numPartitions: 2 }] })
        await producer.send({ topic: `${prefix}-${i}`, messages: Array.from({ length: 6 }, (_, j) => ({ key: `${j}`, value: `${i}-${j}` })) })
      }
      const consumer = kafka.consumer({ groupId: unique('g') })
      const got = []
      await consumer.connect()
      await consumer.subscribe({ topics: [new RegExp(`^${prefix}-.*`)], fromBeginning: true })
      await consumer.run({ partitionsConsumedConcurrently: 3, eachMessage: async ({ message }) => got.push(message.value.toString()) })
      await waitFor('12 messages', () => got.length >= 12)
      await consumer.disconnect()
      assert.equal(new Set(got).size, 12)
    })

    test('backpressure: a tiny buffer still delivers every record, in order per partition', async () => {
      const topic = await newTopic(1)
      const small = kafka.producer({ bufferMemory: 64 * 1024, batchSize: 16 * 1024 })
      await small.connect()
      const value = Buffer.alloc(1000, 1)
      const sends = []
      for (let i = 0; i < 20; i++) {
        sends.push(small.send({ topic, messages: Array.from({ length: 50 }, () => ({ value })) }))
      }
      const res = await Promise.all(sends)
      await small.disconnect()
      const bases = res.map((r) => Number(r[0].baseOffset))
      assert.deepEqual(bases, Array.from({ length: 20 }, (_, i) => i * 50))
      const offsets = await admin.fetchTopicOffsets(topic)
      assert.equal(offsets[0].high, '1000')
    })

    test('idempotent producer; acks=0 and acks=1 sends', async () => {
      const topic = await newTopic(1)
      const idem = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
      await idem.connect()
      assert.equal(idem.isIdempotent(), true)
      await idem.send({ topic, messages: [{ value: 'i' }] })
      await assert.rejects(() => idem.send({ topic, acks: 1, messages: [{ value: 'x' }] }), KafkaJSNonRetriableError)
      await idem.disconnect()
      await producer.send({ topic, acks: 1, messages: [{ value: 'one' }] })
      await producer.send({ topic, acks: 0, messages: [{ value: 'zero' }] })
      const got = await consume(topic, 3)
      assert.deepEqual(got.map((p) => p.message.value.toString()), ['i', 'one', 'zero'])
    })
  })
}
