package sluice.interop;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Java-client interop check, run by tests/interop/test_java_client.py.
 *
 * <p>Creates a topic with the Admin client, produces N keyed records with
 * acks=all and idempotence, then reads them back with a consumer group and
 * checks: every record arrives once, at the offset the producer was told,
 * sequence numbers ascend per key, each key stays on one partition. Commits
 * and verifies the committed offsets. Prints a one-line summary; exits 0 on
 * success, 1 on a failed check, 2 on bad usage.
 *
 * <p>Usage: {@code Interop <bootstrap> <topic> [records=2000] [keys=16] [partitions=3]}
 */
public final class Interop {
    private static final long DEADLINE_MS = 90_000;

    private Interop() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: Interop <bootstrap> <topic> [records] [keys] [partitions]");
            System.exit(2);
        }
        String bootstrap = args[0];
        String topic = args[1];
        int records = args.length > 2 ? Integer.parseInt(args[2]) : 2000;
        int keys = args.length > 3 ? Integer.parseInt(args[3]) : 16;
        int partitions = args.length > 4 ? Integer.parseInt(args[4]) : 3;
        List<String> failures = new ArrayList<>();
        try {
            run(bootstrap, topic, records, keys, partitions, failures);
        } catch (Exception e) {
            e.printStackTrace();
            failures.add("exception: " + e);
        }
        if (failures.isEmpty()) {
            System.out.println("java-interop OK: " + records + " records, " + keys + " keys, "
                    + partitions + " partitions on " + topic);
            System.exit(0);
        }
        System.out.println("java-interop FAILED (" + failures.size() + " problems):");
        for (String f : failures.subList(0, Math.min(20, failures.size()))) {
            System.out.println("  " + f);
        }
        System.exit(1);
    }

    private static void run(String bootstrap, String topic, int records, int keys, int partitions,
                            List<String> failures) throws Exception {
        long start = System.currentTimeMillis();

        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        ap.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 20_000);
        ap.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30_000);
        try (Admin admin = Admin.create(ap)) {
            try {
                admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)))
                        .all().get(30, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
            int seen = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS)
                    .get(topic).partitions().size();
            if (seen != partitions) {
                failures.add("describeTopics: " + seen + " partitions, expected " + partitions);
            }
        }

        // Produce: acks=all, idempotent, keyed.
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        pp.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60_000);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        // (partition, offset) -> value the broker acknowledged there.
        Map<TopicPartition, Map<Long, String>> acked = new HashMap<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            List<Future<RecordMetadata>> futures = new ArrayList<>(records);
            List<String> values = new ArrayList<>(records);
            int[] nextSeq = new int[keys];
            for (int i = 0; i < records; i++) {
                int k = i % keys;
                String key = "key-" + k;
                String value = key + ":" + nextSeq[k]++;
                values.add(value);
                futures.add(producer.send(new ProducerRecord<>(topic, key, value)));
            }
            producer.flush();
            for (int i = 0; i < records; i++) {
                RecordMetadata md = futures.get(i).get(60, TimeUnit.SECONDS);
                String prev = acked.computeIfAbsent(new TopicPartition(topic, md.partition()),
                        tp -> new HashMap<>()).put(md.offset(), values.get(i));
                if (prev != null) {
                    failures.add("two records acknowledged at " + md.partition() + "/" + md.offset());
                }
            }
        }

        // Consume with a group, verify, commit.
        String group = "java-interop-" + UUID.randomUUID();
        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        Map<String, Integer> lastSeq = new HashMap<>();
        Map<String, Integer> keyPartition = new HashMap<>();
        Set<String> seenValues = new HashSet<>();
        int received = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
            consumer.subscribe(Collections.singletonList(topic));
            while (received < records) {
                if (System.currentTimeMillis() - start > DEADLINE_MS) {
                    failures.add("timed out: consumed " + received + " of " + records);
                    return;
                }
                ConsumerRecords<String, String> batch = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, String> r : batch) {
                    received++;
                    String key = r.key();
                    String value = r.value();
                    if (key == null || value == null || !value.startsWith(key + ":")) {
                        failures.add("bad record at " + r.partition() + "/" + r.offset() + ": " + key + "=" + value);
                        continue;
                    }
                    if (!seenValues.add(value)) {
                        failures.add("duplicate " + value + " at " + r.partition() + "/" + r.offset());
                    }
                    Map<Long, String> byOffset = acked.get(new TopicPartition(topic, r.partition()));
                    String expected = byOffset == null ? null : byOffset.get(r.offset());
                    if (!value.equals(expected)) {
                        failures.add("at " + r.partition() + "/" + r.offset() + " got " + value
                                + ", producer was acknowledged " + expected);
                    }
                    Integer p = keyPartition.putIfAbsent(key, r.partition());
                    if (p != null && p != r.partition()) {
                        failures.add(key + " on partitions " + p + " and " + r.partition());
                    }
                    int seq = Integer.parseInt(value.substring(key.length() + 1));
                    Integer last = lastSeq.put(key, seq);
                    int want = last == null ? 0 : last + 1;
                    if (seq != want) {
                        failures.add(key + ": got seq " + seq + " after " + last);
                    }
                }
            }
            consumer.commitSync(Duration.ofSeconds(30));
            Set<TopicPartition> tps = consumer.assignment();
            Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(tps, Duration.ofSeconds(30));
            Map<TopicPartition, Long> ends = consumer.endOffsets(tps, Duration.ofSeconds(30));
            for (TopicPartition tp : tps) {
                OffsetAndMetadata om = committed.get(tp);
                long end = ends.get(tp);
                if (om == null || om.offset() != end) {
                    failures.add("committed offset for " + tp + " is " + om + ", log end is " + end);
                }
            }
        }
        if (received != records) {
            failures.add("consumed " + received + " records, produced " + records);
        }
        if (seenValues.size() != records) {
            failures.add("distinct values " + seenValues.size() + ", expected " + records);
        }
        System.out.println("java-interop: produced and consumed " + received + " records in "
                + (System.currentTimeMillis() - start) + " ms");
    }
}
