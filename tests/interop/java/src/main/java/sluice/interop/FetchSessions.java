package sluice.interop;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Incremental fetch sessions (KIP-227) with the Java consumer, run by
 * tests/interop/test_java_client.py.
 *
 * <p>Creates a topic with many partitions, produces records to every one of
 * them, reads them all with a consumer group, then produces to a few
 * partitions and reads those: every record must arrive exactly once, at
 * the offset the producer was told. The consumer's
 * org.apache.kafka.clients.FetchSessionHandler logs at DEBUG into a file,
 * which is counted afterwards: the broker must have created a session and
 * answered incremental fetches in it (a broker without sessions answers
 * every fetch in full with session id 0). Prints a summary line with the
 * counts; exits 0 on success, 1 on a failed check, 2 on bad usage.
 *
 * <p>Usage: {@code FetchSessions <bootstrap> <topic> [partitions=500] [records=5000]}
 */
public final class FetchSessions {
    private static final long DEADLINE_MS = 200_000;
    private static final String HANDLER_LOGGER =
            "org.slf4j.simpleLogger.log.org.apache.kafka.clients.FetchSessionHandler";

    private FetchSessions() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: FetchSessions <bootstrap> <topic> [partitions] [records]");
            System.exit(2);
        }
        // Before any logger exists: the session handler's DEBUG lines go to
        // a file of their own (the rest stays at the launcher's level).
        Path log = Files.createTempFile("fetch-sessions-", ".log");
        System.setProperty(HANDLER_LOGGER, "debug");
        System.setProperty("org.slf4j.simpleLogger.logFile", log.toString());
        String bootstrap = args[0];
        String topic = args[1];
        int partitions = args.length > 2 ? Integer.parseInt(args[2]) : 500;
        int records = args.length > 3 ? Integer.parseInt(args[3]) : 5000;
        List<String> failures = new ArrayList<>();
        String counts = "";
        try {
            run(bootstrap, topic, partitions, records, failures);
            counts = countSessions(log, failures);
        } catch (Exception e) {
            e.printStackTrace();
            failures.add("exception: " + e);
        } finally {
            Files.deleteIfExists(log);
        }
        if (failures.isEmpty()) {
            System.out.println("java-fetch-sessions OK: " + records + " records over " + partitions
                    + " partitions read once each; " + counts);
            System.exit(0);
        }
        System.out.println("java-fetch-sessions FAILED (" + failures.size() + " problems): " + counts);
        for (String f : failures.subList(0, Math.min(20, failures.size()))) {
            System.out.println("  " + f);
        }
        System.exit(1);
    }

    /** Counts the session handler's lines; adds failures if no session was used. */
    private static String countSessions(Path log, List<String> failures) throws IOException {
        int created = 0;
        int incremental = 0;
        int sessionless = 0;
        int refused = 0;
        int closed = 0;
        String sample = "";
        for (String line : Files.readAllLines(log, StandardCharsets.UTF_8)) {
            if (line.contains("sent a full fetch response that created a new incremental fetch session")) {
                created++;
            } else if (line.contains("sent an incremental fetch response with throttleTimeMs")) {
                incremental++;
            } else if (line.contains("sent an incremental fetch response closing session")) {
                closed++;
            } else if (line.contains("sent a full fetch response")) {
                sessionless++;
            } else if (line.contains("was unable to process the fetch request")) {
                refused++;
            } else if (sample.isEmpty() && line.contains("Built incremental fetch")
                    && line.contains("altered")) {
                sample = line.substring(line.indexOf("Built incremental fetch"));
            }
        }
        String counts = "fetch sessions created=" + created + " incremental=" + incremental
                + " full_without_session=" + sessionless + " refused=" + refused
                + " closed_by_broker=" + closed;
        if (created == 0) {
            failures.add("no fetch session was created: " + counts);
        }
        if (incremental == 0) {
            failures.add("no incremental fetch response: " + counts);
        }
        if (!sample.isEmpty()) {
            System.out.println("java-fetch-sessions: e.g. " + sample);
        }
        return counts;
    }

    private static void run(String bootstrap, String topic, int partitions, int records,
                            List<String> failures) throws Exception {
        long start = System.currentTimeMillis();
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        ap.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
        ap.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 60_000);
        try (Admin admin = Admin.create(ap)) {
            try {
                admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)))
                        .all().get(60, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
            // Every partition led before producing (a broker creating 500
            // partitions on a busy machine takes a moment).
            while (true) {
                TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames()
                        .get(60, TimeUnit.SECONDS).get(topic);
                long led = d.partitions().stream().filter(p -> p.leader() != null && !p.leader().isEmpty()).count();
                if (d.partitions().size() == partitions && led == partitions) {
                    break;
                }
                if (System.currentTimeMillis() - start > DEADLINE_MS / 2) {
                    failures.add("only " + led + " of " + partitions + " partitions have a leader");
                    return;
                }
                Thread.sleep(200);
            }
        }

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        // One request in flight per broker: the records are few, and a busy
        // broker with 500 new partitions is spared retried batches
        // overtaking each other.
        pp.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 1);
        pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 120_000);
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 150_000);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        // "partition/offset" -> value the broker acknowledged there.
        Map<String, String> acked = new HashMap<>();
        int later = Math.max(1, partitions / 50);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp);
             KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(bootstrap))) {
            // Every partition gets records.
            produce(producer, topic, partitions, records, 0, partitions, acked, failures);
            consumer.subscribe(Collections.singletonList(topic));
            Map<String, String> seen = new HashMap<>();
            consume(consumer, records, seen, acked, start, failures);
            // Caught up: a few seconds of fetches with nothing new, each an
            // incremental fetch naming no partition.
            long idleUntil = System.currentTimeMillis() + 3_000;
            while (System.currentTimeMillis() < idleUntil) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    failures.add("unexpected record at " + r.partition() + "/" + r.offset());
                }
            }
            // Then a few partitions only: the session's other partitions
            // stay out of the requests.
            int more = later * 10;
            produce(producer, topic, later, more, records, partitions, acked, failures);
            consume(consumer, records + more, seen, acked, start, failures);
            if (seen.size() != acked.size()) {
                failures.add("read " + seen.size() + " distinct records, produced " + acked.size());
            }
            // Nothing more arrives.
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                failures.add("unexpected record at " + r.partition() + "/" + r.offset());
            }
        }
        System.out.println("java-fetch-sessions: produced and consumed " + acked.size() + " records in "
                + (System.currentTimeMillis() - start) + " ms");
    }

    private static Properties consumerProps(String bootstrap) {
        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, "java-fetch-sessions-" + UUID.randomUUID());
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return cp;
    }

    /** Produces {@code n} records round-robin over partitions [0, over) (stride). */
    private static void produce(KafkaProducer<String, String> producer, String topic, int over, int n,
                                int first, int partitions, Map<String, String> acked,
                                List<String> failures) throws Exception {
        int stride = Math.max(1, partitions / over);
        List<Future<RecordMetadata>> futures = new ArrayList<>(n);
        List<String> values = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            int partition = (i % over) * stride;
            String value = "record-" + (first + i);
            values.add(value);
            futures.add(producer.send(new ProducerRecord<>(topic, partition, null, value)));
        }
        producer.flush();
        for (int i = 0; i < n; i++) {
            RecordMetadata md = futures.get(i).get(150, TimeUnit.SECONDS);
            String prev = acked.put(md.partition() + "/" + md.offset(), values.get(i));
            if (prev != null) {
                failures.add("two records acknowledged at " + md.partition() + "/" + md.offset());
            }
        }
    }

    /** Polls until {@code total} records were read in all; each must come once. */
    private static void consume(KafkaConsumer<String, String> consumer, int total, Map<String, String> seen,
                                Map<String, String> acked, long start, List<String> failures) {
        while (seen.size() < total) {
            if (System.currentTimeMillis() - start > DEADLINE_MS) {
                failures.add("timed out: read " + seen.size() + " of " + total);
                return;
            }
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                String at = r.partition() + "/" + r.offset();
                if (seen.put(at, r.value()) != null) {
                    failures.add("read twice: " + at);
                }
                String expected = acked.get(at);
                if (!r.value().equals(expected)) {
                    failures.add("at " + at + " read " + r.value() + ", producer was acknowledged " + expected);
                }
            }
        }
    }
}
