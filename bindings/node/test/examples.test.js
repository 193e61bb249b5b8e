'use strict'
// examples/node/*.js (producer, consumer, batch-handler, transactional), run as users run them
// (`require('sluice-client')` resolved to this package), against each broker.

const { describe, test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFile } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { brokers, unique, supportsTransactions } = require('./helpers')

const EXAMPLES = path.resolve(__dirname, '../../../examples/node')
let nodePath

before(() => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-examples-'))
  fs.mkdirSync(path.join(dir, 'node_modules'))
  fs.symlinkSync(path.resolve(__dirname, '..'), path.join(dir, 'node_modules', 'sluice-client'), 'dir')
  nodePath = path.join(dir, 'node_modules')
})

function run(script, env) {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [path.join(EXAMPLES, script)],
      { env: { ...process.env, NODE_PATH: nodePath, ...env }, timeout: 90000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${script} failed: ${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout)),
    )
  })
}

for (const [name, bootstrap] of brokers()) {
  describe(`examples against ${name}`, () => {
    test('producer.js then consumer.js', async () => {
      const env = { KAFKA_BOOTSTRAP: bootstrap, TOPIC: unique('example'), MESSAGES: '25', MAX_MESSAGES: '25', GROUP_ID: unique('example-group') }
      const produced = await run('producer.js', env)
      assert.match(produced, /produced 25 messages/)
      const consumed = await run('consumer.js', env)
      assert.match(consumed, /consumed 25 messages/)
      assert.match(consumed, /Hello sluice-client user! #24/)
    })

    test('producer.js then batch-handler.js', async () => {
      const env = { KAFKA_BOOTSTRAP: bootstrap, TOPIC: unique('example-lambda'), MESSAGES: '25', MAX_MESSAGES: '25', GROUP_ID: unique('example-lambda') }
      const produced = await run('producer.js', env)
      assert.match(produced, /produced 25 messages/)
      const handled = await run('batch-handler.js', env)
      assert.match(handled, /handled 25 messages in [1-9]\d* batches/)
    })

    test('producer.js, then transactional.js (needs a transaction-capable broker), then consumer.js on its output', async (t) => {
      if (!(await supportsTransactions(bootstrap))) {
        t.skip(`${name} does not serve transactions yet (no EndTxn in ApiVersions)`)
        return
      }
      const input = unique('example-in')
      const output = unique('example-out')
      const produced = await run('producer.js', { KAFKA_BOOTSTRAP: bootstrap, TOPIC: input, MESSAGES: '25' })
      assert.match(produced, /produced 25 messages/)
      const env = { KAFKA_BOOTSTRAP: bootstrap, INPUT: input, OUTPUT: output, GROUP_ID: unique('example-txn'), MAX_MESSAGES: '25' }
      const transformed = await run('transactional.js', env)
      assert.match(transformed, /transformed 25 messages/)
      const consumed = await run('consumer.js', { KAFKA_BOOTSTRAP: bootstrap, TOPIC: output, MAX_MESSAGES: '25', GROUP_ID: unique('example-check') })
      assert.match(consumed, /consumed 25 messages/)
      assert.match(consumed, /HELLO SLUICE-CLIENT USER! #24/)
    })
  })
}
