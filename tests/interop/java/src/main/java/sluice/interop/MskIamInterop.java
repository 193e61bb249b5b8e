package sluice.interop;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.config.SslConfigs;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client signing in with AWS's aws-msk-iam-auth library, configured
 * exactly as the MSK documentation shows (SASL_SSL, AWS_MSK_IAM,
 * IAMLoginModule, IAMClientCallbackHandler; credentials from the default
 * AWS chain, here the environment). Produces with idempotence to an allowed
 * topic, checks a denied topic is refused, reads the records back in a group.
 *
 * Usage: MskIamInterop <bootstrap> <ca.pem> <topic> <denied-topic>
 * A denied topic of "-" skips that check (a policy that allows every topic).
 * Prints "java-msk-iam OK" and exits 0 on success.
 */
public final class MskIamInterop {
    private MskIamInterop() {}

    private static Properties common(String bootstrap, String ca) {
        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_SSL");
        p.put(SslConfigs.SSL_TRUSTSTORE_TYPE_CONFIG, "PEM");
        p.put(SslConfigs.SSL_TRUSTSTORE_LOCATION_CONFIG, ca);
        p.put(SaslConfigs.SASL_MECHANISM, "AWS_MSK_IAM");
        p.put(SaslConfigs.SASL_JAAS_CONFIG, "software.amazon.msk.auth.iam.IAMLoginModule required;");
        p.put(SaslConfigs.SASL_CLIENT_CALLBACK_HANDLER_CLASS, "software.amazon.msk.auth.iam.IAMClientCallbackHandler");
        return p;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: MskIamInterop <bootstrap> <ca.pem> <topic> <denied-topic>");
            System.exit(2);
        }
        String bootstrap = args[0], ca = args[1], topic = args[2], denied = args[3];
        int sent = 5;

        Properties pp = common(bootstrap, ca);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        boolean refused = false;
        try (KafkaProducer<String, String> producer =
                new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < sent; i++) {
                producer.send(new ProducerRecord<>(topic, "k", "java" + i)).get();
            }
            if (denied.equals("-")) {
                refused = true;
            } else try {
                producer.send(new ProducerRecord<>(denied, "k", "x")).get();
            } catch (ExecutionException e) {
                refused = e.getCause() instanceof TopicAuthorizationException;
                if (!refused) {
                    System.err.println("unexpected error for the denied topic: " + e.getCause());
                }
            } catch (TopicAuthorizationException e) {
                refused = true;
            }
        }
        if (!refused) {
            System.err.println("producing to the denied topic was not refused");
            System.exit(1);
        }

        Properties cp = common(bootstrap, ca);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, "java-iam-" + System.nanoTime());
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        List<String> got = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 60_000;
            while (got.size() < sent && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    got.add(r.value());
                }
            }
            consumer.commitSync(Map.of());
        }
        if (got.size() < sent) {
            System.err.println("only " + got.size() + "/" + sent + " records read back");
            System.exit(1);
        }
        System.out.println("java-msk-iam OK: " + got.size() + " records"
                + (denied.equals("-") ? "" : ", denied topic refused"));
    }
}
