'use strict'
// sluice-client: KafkaJS's API over Sluice's Rust Kafka client. A KafkaJS
// program moves over by changing `require('kafkajs')` to
// `require('sluice-client')`.

const kafka = require('./lib/kafka')
const errors = require('./lib/errors')

// Internal helpers and the code table stay out of the public surface, as in KafkaJS.
const { mapError, call, errorCodes, createErrorFromCode, ...errorClasses } = errors

module.exports = {
  Kafka: kafka.Kafka,
  CompressionTypes: kafka.CompressionTypes,
  CompressionCodecs: kafka.CompressionCodecs,
  Partitioners: kafka.Partitioners,
  PartitionAssigners: kafka.PartitionAssigners,
  logLevel: kafka.logLevel,
  ...errorClasses,
}
