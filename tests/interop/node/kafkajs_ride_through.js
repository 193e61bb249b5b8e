#!/usr/bin/env node
// KafkaJS riding through a leader failure, run by tests/interop/test_cluster.py.
//
// Usage: node kafkajs_ride_through.js <bootstrap,list> <topic> <records>
//
// Sends <records> values "kafkajs-<i>" one at a time to partition 0 with an
// idempotent producer (acks=all), printing "sent <i>" after each
// acknowledgement so the test can kill the partition's leader part-way.
// Every send must succeed (KafkaJS retries retriable errors); exits 0 after
// printing "kafkajs-ride-through OK", 1 on the first error that reached it.
'use strict';

const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, recordsArg] = process.argv.slice(2);
  if (!bootstrap || !topic || !recordsArg) {
    console.error('usage: kafkajs_ride_through.js <bootstrap,list> <topic> <records>');
    return 2;
  }
  const kafka = new Kafka({
    clientId: 'sluice-kafkajs-ride-through',
    brokers: bootstrap.split(','),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { retries: 30, initialRetryTime: 200, maxRetryTime: 2000 },
  });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = 0; i < Number(recordsArg); i++) {
      await producer.send({ topic, acks: -1, messages: [{ value: `kafkajs-${i}`, partition: 0 }] });
      console.log(`sent ${i}`);
    }
  } finally {
    await producer.disconnect();
  }
  console.log('kafkajs-ride-through OK');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`kafkajs-ride-through FAILED: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
