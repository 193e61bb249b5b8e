#!/usr/bin/env node
// KafkaJS interop check, run by tests/interop/test_kafkajs.py.
//
// Usage: node kafkajs_interop.js <bootstrap> <topic> [records=1000] [keys=10] [partitions=3]
//
// Creates the topic with the KafkaJS admin, sends keyed records with an
// idempotent producer (acks=all), then reads them back in a consumer group
// with eachMessage and checks: every record arrives once, at the offset the
// producer was told, sequence numbers ascend per key, each key stays on one
// partition. Prints a summary; exits 0 on success, 1 on failure, 2 on usage.
'use strict';

const { Kafka, logLevel, Partitioners } = require('kafkajs');

const DEADLINE_MS = 90000;

async function main() {
  const [bootstrap, topic, recordsArg, keysArg, partitionsArg] = process.argv.slice(2);
  if (!bootstrap || !topic) {
    console.error('usage: kafkajs_interop.js <bootstrap> <topic> [records] [keys] [partitions]');
    return 2;
  }
  const records = Number(recordsArg || 1000);
  const keys = Number(keysArg || 10);
  const partitions = Number(partitionsArg || 3);
  const failures = [];
  const started = Date.now();

  const kafka = new Kafka({
    clientId: 'sluice-kafkajs-interop',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    connectionTimeout: 10000,
    requestTimeout: 30000,
    retry: { retries: 8 },
  });

  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
    waitForLeaders: true,
  });
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  const partitionMetadata = meta.topics[0].partitions;
  const seenPartitions = partitionMetadata.length;
  if (seenPartitions !== partitions) {
    failures.push(`metadata: ${seenPartitions} partitions, expected ${partitions}`);
  }
  await admin.disconnect();

  // Produce. The DefaultPartitioner is the Java client's murmur2 one.
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  // The same partitioner the producer uses (the Java client's murmur2 one),
  // to map each sent message to the base offset returned for its partition.
  const partitionOf = Partitioners.DefaultPartitioner();
  const acked = new Map(); // "partition/offset" -> value
  const nextSeq = new Array(keys).fill(0);
  const chunk = 100;
  for (let i = 0; i < records; i += chunk) {
    const messages = [];
    for (let j = i; j < Math.min(records, i + chunk); j++) {
      const k = j % keys;
      const key = `key-${k}`;
      messages.push({ key, value: `${key}:${nextSeq[k]++}` });
    }
    // One send per chunk: KafkaJS returns one base offset per partition, and
    // the messages of a partition are appended in the order given.
    const result = await producer.send({ topic, acks: -1, messages });
    const base = new Map(result.map((r) => [r.partition, BigInt(r.baseOffset)]));
    const counts = new Map();
    for (const m of messages) {
      const p = partitionOf({ topic, partitionMetadata, message: m });
      if (!base.has(p)) {
        failures.push(`no acknowledgement for partition ${p} (key ${m.key})`);
        continue;
      }
      const n = counts.get(p) || 0n;
      counts.set(p, n + 1n);
      acked.set(`${p}/${base.get(p) + n}`, m.value);
    }
  }
  await producer.disconnect();

  // Consume in a group.
  const consumer = kafka.consumer({
    groupId: `kafkajs-interop-${Date.now()}-${process.pid}`,
    sessionTimeout: 30000,
    heartbeatInterval: 3000,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const lastSeq = new Map();
  const keyPartition = new Map();
  const seen = new Set();
  let received = 0;
  await new Promise((resolve) => {
    const timer = setTimeout(() => {
      failures.push(`timed out: consumed ${received} of ${records}`);
      resolve();
    }, Math.max(1000, DEADLINE_MS - (Date.now() - started)));
    consumer.run({
      autoCommit: true,
      eachMessage: async ({ partition, message }) => {
        received++;
        const key = message.key ? message.key.toString() : null;
        const value = message.value ? message.value.toString() : null;
        if (!key || !value || !value.startsWith(`${key}:`)) {
          failures.push(`bad record at ${partition}/${message.offset}: ${key}=${value}`);
        } else {
          if (seen.has(value)) failures.push(`duplicate ${value} at ${partition}/${message.offset}`);
          seen.add(value);
          const expected = acked.get(`${partition}/${message.offset}`);
          if (expected !== value) {
            failures.push(`at ${partition}/${message.offset} got ${value}, producer was acknowledged ${expected}`);
          }
          const p = keyPartition.get(key);
          if (p === undefined) keyPartition.set(key, partition);
          else if (p !== partition) failures.push(`${key} on partitions ${p} and ${partition}`);
          const seq = Number(value.slice(key.length + 1));
          const last = lastSeq.get(key);
          const want = last === undefined ? 0 : last + 1;
          if (seq !== want) failures.push(`${key}: got seq ${seq} after ${last}`);
          lastSeq.set(key, seq);
        }
        if (received >= records) {
          clearTimeout(timer);
          resolve();
        }
      },
    }).catch((err) => {
      failures.push(`consumer.run: ${err}`);
      clearTimeout(timer);
      resolve();
    });
  });
  await consumer.disconnect();

  if (received !== records) failures.push(`consumed ${received} records, produced ${records}`);
  if (seen.size !== records) failures.push(`distinct values ${seen.size}, expected ${records}`);
  if (acked.size !== records) failures.push(`acknowledged offsets ${acked.size}, expected ${records}`);

  if (failures.length === 0) {
    console.log(`kafkajs-interop OK: ${records} records, ${keys} keys, ${partitions} partitions on ${topic} in ${Date.now() - started} ms`);
    return 0;
  }
  console.log(`kafkajs-interop FAILED (${failures.length} problems):`);
  for (const f of failures.slice(0, 20)) console.log(`  ${f}`);
  return 1;
}

const hardStop = setTimeout(() => {
  console.log(`kafkajs-interop FAILED: no result within ${DEADLINE_MS + 30000} ms`);
  process.exit(1);
}, DEADLINE_MS + 30000);
hardStop.unref();

main().then(
  (code) => process.exit(code),
  (err) => {
    console.log(`kafkajs-interop FAILED: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
