package sluice.interop;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client's transactional producer against a broker:
 * Transactions BOOTSTRAP TOPIC MODE, MODE one of
 *   commit-abort  commit 100, abort 50, commit 100: read_committed sees the
 *                 200 committed records only, read_uncommitted all 250
 *   zombie        a second producer with the same transactional.id fences
 *                 the first, which had a transaction open; the open
 *                 transaction is aborted, the new one commits
 *   timeout       a transaction left open past transaction.timeout.ms is
 *                 aborted by the broker and its producer fenced
 * Prints the counts it saw and "transactions OK" when every check held;
 * exits 1 otherwise.
 */
public final class Transactions {
    private Transactions() {}

    static KafkaProducer<String, String> producer(String bootstrap, String txnId, int timeoutMs) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, timeoutMs);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30000);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    /** Every record of the topic visible at `isolation`, read from the start to the end offsets. */
    static List<String> readAll(String bootstrap, String topic, String isolation) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        List<String> keys = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            List<TopicPartition> parts = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
                parts.add(new TopicPartition(topic, info.partition()));
            }
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            // read_committed end offsets are the last stable offsets.
            Map<TopicPartition, Long> end = consumer.endOffsets(parts, Duration.ofSeconds(30));
            long deadline = System.currentTimeMillis() + 60000;
            while (System.currentTimeMillis() < deadline) {
                boolean done = true;
                for (TopicPartition tp : parts) {
                    done &= consumer.position(tp) >= end.get(tp);
                }
                if (done) {
                    break;
                }
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    keys.add(r.key());
                }
            }
        }
        return keys;
    }

    static void send(KafkaProducer<String, String> p, String topic, String prefix, int n) {
        for (int i = 0; i < n; i++) {
            p.send(new ProducerRecord<>(topic, prefix + "-" + i, "v" + i));
        }
    }

    static boolean check(boolean ok, String what) {
        System.out.println((ok ? "ok: " : "FAILED: ") + what);
        return ok;
    }

    static Map<String, Long> prefixes(List<String> keys) {
        return keys.stream().collect(Collectors.groupingBy(k -> k.substring(0, k.indexOf('-')), HashMap::new,
                Collectors.counting()));
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        String mode = args[2];
        boolean ok = true;
        switch (mode) {
            case "commit-abort": {
                try (KafkaProducer<String, String> p = producer(bootstrap, "java-txn-" + topic, 60000)) {
                    p.initTransactions();
                    p.beginTransaction();
                    send(p, topic, "first", 100);
                    p.commitTransaction();
                    p.beginTransaction();
                    send(p, topic, "aborted", 50);
                    p.flush();
                    p.abortTransaction();
                    p.beginTransaction();
                    send(p, topic, "second", 100);
                    p.commitTransaction();
                }
                Map<String, Long> committed = prefixes(readAll(bootstrap, topic, "read_committed"));
                Map<String, Long> all = prefixes(readAll(bootstrap, topic, "read_uncommitted"));
                System.out.println("read_committed " + committed + " read_uncommitted " + all);
                ok &= check(committed.getOrDefault("first", 0L) == 100 && committed.getOrDefault("second", 0L) == 100
                        && !committed.containsKey("aborted"), "read_committed sees exactly the committed records");
                ok &= check(all.getOrDefault("first", 0L) == 100 && all.getOrDefault("second", 0L) == 100
                        && all.getOrDefault("aborted", 0L) == 50, "read_uncommitted sees every record");
                break;
            }
            case "zombie": {
                String id = "java-zombie-" + topic;
                KafkaProducer<String, String> old = producer(bootstrap, id, 60000);
                old.initTransactions();
                old.beginTransaction();
                send(old, topic, "zombie", 20);
                old.flush();
                try (KafkaProducer<String, String> fresh = producer(bootstrap, id, 60000)) {
                    fresh.initTransactions();
                    boolean fenced = false;
                    try {
                        send(old, topic, "zombie", 5);
                        old.commitTransaction();
                    } catch (ProducerFencedException | InvalidProducerEpochException e) {
                        fenced = true;
                    } catch (KafkaException e) {
                        fenced = e.getCause() instanceof ProducerFencedException
                                || e.getCause() instanceof InvalidProducerEpochException;
                        if (!fenced) {
                            System.out.println("unexpected: " + e);
                        }
                    }
                    ok &= check(fenced, "the older instance is fenced");
                    fresh.beginTransaction();
                    send(fresh, topic, "fresh", 10);
                    fresh.commitTransaction();
                } finally {
                    old.close(Duration.ofSeconds(5));
                }
                Map<String, Long> committed = prefixes(readAll(bootstrap, topic, "read_committed"));
                System.out.println("read_committed " + committed);
                ok &= check(committed.getOrDefault("fresh", 0L) == 10 && !committed.containsKey("zombie"),
                        "only the new instance's transaction is visible");
                break;
            }
            case "timeout": {
                String id = "java-timeout-" + topic;
                KafkaProducer<String, String> slow = producer(bootstrap, id, 2000);
                slow.initTransactions();
                slow.beginTransaction();
                send(slow, topic, "late", 5);
                slow.flush();
                Thread.sleep(8000);
                boolean refused = false;
                try {
                    slow.commitTransaction();
                } catch (KafkaException e) {
                    refused = true;
                    System.out.println("late commit refused: " + e.getClass().getSimpleName());
                } finally {
                    slow.close(Duration.ofSeconds(5));
                }
                ok &= check(refused, "committing after the timeout is refused");
                try (KafkaProducer<String, String> p = producer(bootstrap, id, 60000)) {
                    p.initTransactions();
                    p.beginTransaction();
                    send(p, topic, "ontime", 5);
                    p.commitTransaction();
                }
                Map<String, Long> committed = prefixes(readAll(bootstrap, topic, "read_committed"));
                System.out.println("read_committed " + committed);
                ok &= check(committed.getOrDefault("ontime", 0L) == 5 && !committed.containsKey("late"),
                        "the timed-out transaction was aborted");
                break;
            }
            default:
                System.out.println("unknown mode " + mode);
                ok = false;
        }
        if (ok) {
            System.out.println("transactions OK");
        }
        System.exit(ok ? 0 : 1);
    }
}
