#!/usr/bin/env node
// KafkaJS signing in to sluiced the way MSK users sign in to MSK: SASL_SSL,
// mechanism 'oauthbearer', tokens from aws-msk-iam-sasl-signer-js (AWS
// credentials from the environment). Run by tests/interop/test_security.py.
//
// Usage: node kafkajs_msk_iam.js <bootstrap> <ca.pem> <region> <topic> <denied-topic>
//
// Produces to <topic> (allowed by the IAM policy) and reads it back in a
// group; producing to <denied-topic> must fail with TOPIC_AUTHORIZATION_FAILED.
'use strict';

const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');
const { generateAuthToken } = require('aws-msk-iam-sasl-signer-js');

async function main() {
  const [bootstrap, caPath, region, topic, denied] = process.argv.slice(2);
  if (!denied) {
    console.error('usage: kafkajs_msk_iam.js <bootstrap> <ca.pem> <region> <topic> <denied-topic>');
    return 2;
  }
  const kafka = new Kafka({
    clientId: 'sluice-kafkajs-msk-iam',
    brokers: [bootstrap],
    logLevel: logLevel.NOTHING,
    ssl: { ca: [fs.readFileSync(caPath, 'utf8')] },
    sasl: {
      mechanism: 'oauthbearer',
      oauthBearerProvider: async () => {
        const t = await generateAuthToken({ region });
        return { value: t.token };
      },
    },
    retry: { retries: 2 },
  });
  const producer = kafka.producer();
  await producer.connect();
  const sent = 5;
  for (let i = 0; i < sent; i++) {
    await producer.send({ topic, messages: [{ key: 'k', value: `j${i}` }] });
  }
  let refused = false;
  try {
    await producer.send({ topic: denied, messages: [{ value: 'x' }] });
  } catch (e) {
    refused = JSON.stringify({ name: e.name, type: e.type, message: e.message }).includes('TOPIC_AUTHORIZATION_FAILED')
      || String(e.message).includes('authoriz');
    if (!refused) console.error('unexpected error for the denied topic:', e);
  }
  await producer.disconnect();
  if (!refused) {
    console.error('producing to the denied topic was not refused');
    return 1;
  }

  const consumer = kafka.consumer({ groupId: `kafkajs-iam-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length}/${sent} records within 60 s`)), 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        got.push(message.value.toString());
        if (got.length >= sent) {
          clearTimeout(timer);
          resolve();
        }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log(`kafkajs-msk-iam OK: ${got.length} records, denied topic refused`);
  return 0;
}

main().then((code) => process.exit(code), (e) => {
  console.error(e);
  process.exit(1);
});
