#!/usr/bin/env node
// A KafkaJS-shaped producer riding through a leader failure, run by
// tests/interop/test_cluster.py with KafkaJS itself and with the Sluice Node
// package (same code: its API is KafkaJS's).
//
// Usage: node ride_through.js <kafkajs|path of a KafkaJS-compatible package>
//                             <bootstrap,list> <topic> <records> <prefix>
//
// Sends <records> values "<prefix>-<i>" one at a time to partition 0 with an
// idempotent producer (acks=all), waiting for each acknowledgement. After
// the first half it prints "half" and waits for a line on standard input
// (the test kills the partition's leader meanwhile), then sends the rest.
// Every send must succeed (the client retries retriable errors); exits 0
// after printing "ride-through OK", 1 on the first error that reached it.
'use strict';

const readline = require('node:readline');

function nextLine() {
  const rl = readline.createInterface({ input: process.stdin });
  return new Promise((resolve, reject) => {
    let answered = false;
    rl.once('line', (line) => {
      answered = true;
      rl.close();
      resolve(line);
    });
    rl.once('close', () => {
      if (!answered) reject(new Error('standard input closed before the go-ahead'));
    });
  });
}

async function main() {
  const [module, bootstrap, topic, recordsArg, prefix] = process.argv.slice(2);
  if (!module || !bootstrap || !topic || !recordsArg || !prefix) {
    console.error('usage: ride_through.js <module> <bootstrap,list> <topic> <records> <prefix>');
    return 2;
  }
  const { Kafka, logLevel } = require(module);
  const kafka = new Kafka({
    clientId: `ride-through-${prefix}`,
    brokers: bootstrap.split(','),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { retries: 30, initialRetryTime: 200, maxRetryTime: 2000 },
  });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const records = Number(recordsArg);
  try {
    for (let i = 0; i < records; i++) {
      if (i === Math.floor(records / 2)) {
        console.log('half');
        await nextLine();
      }
      await producer.send({ topic, acks: -1, messages: [{ value: `${prefix}-${i}`, partition: 0 }] });
    }
  } finally {
    await producer.disconnect();
  }
  console.log('ride-through OK');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`ride-through FAILED: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
