package sluice.interop;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client riding through a leader failure, run by
 * tests/interop/test_cluster.py.
 *
 * <p>Sends {@code <records>} values "{@code <prefix>-<i>}" one at a time to
 * partition 0 with an idempotent acks=all producer, waiting for each
 * acknowledgement. After the first half it prints "half" and waits for a line
 * on standard input (the test kills the partition's leader meanwhile), then
 * sends the rest. Every send must succeed: retriable errors stay inside the
 * client. Prints "ride-through OK" and exits 0, or exits 1 on the first error
 * that reached the application, 2 on bad usage.
 *
 * <p>Usage: {@code RideThrough <bootstrap> <topic> <records> <prefix>}
 */
public final class RideThrough {
    private RideThrough() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: RideThrough <bootstrap> <topic> <records> <prefix>");
            System.exit(2);
        }
        String topic = args[1];
        int records = Integer.parseInt(args[2]);
        String prefix = args[3];
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120_000);
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
        props.put(ProducerConfig.RETRY_BACKOFF_MS_CONFIG, 200);
        props.put(ProducerConfig.METADATA_MAX_AGE_CONFIG, 5_000);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        BufferedReader stdin = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < records; i++) {
                if (i == records / 2) {
                    System.out.println("half");
                    System.out.flush();
                    if (stdin.readLine() == null) {
                        System.err.println("standard input closed before the go-ahead");
                        System.exit(1);
                    }
                }
                try {
                    producer.send(new ProducerRecord<>(topic, 0, null, prefix + "-" + i)).get(150, TimeUnit.SECONDS);
                } catch (Exception e) {
                    System.err.println("send " + i + " failed: " + e);
                    System.exit(1);
                }
            }
        }
        System.out.println("ride-through OK");
    }
}
