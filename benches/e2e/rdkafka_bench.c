/*
 * rdkafka_bench: a small librdkafka load generator for scripts/bench-broker.
 *
 * 1. Creates the topic (P partitions, replication factor 1) unless it exists
 *    and waits until every partition has a leader.
 * 2. Produces N records of S bytes (no key; partition i % P), with the given
 *    acks, linger.ms, batch.size and compression none. The send time of each
 *    record is kept; the delivery report callback turns it into a
 *    per-message delivery latency (p50/p99/max). Throughput is N over the
 *    time from the first send to the last delivery report.
 * 3. Consumes the topic from the beginning with a consumer that assigns all
 *    P partitions itself (no group rebalance in the measurement) until N
 *    records arrived; throughput is N over the time from assign to the last
 *    record.
 * --no-consume / --no-produce run one phase only (scripts/bench-broker runs
 * them as two processes, to sample the broker's memory per phase).
 *
 * Progress goes to stderr once a second; the result is one JSON object on
 * stdout. MB means 10^6 bytes of record values.
 *
 * Build: cc -O2 -o rdkafka_bench rdkafka_bench.c $(pkg-config --cflags --libs rdkafka) -lm
 * Usage: rdkafka_bench --bootstrap HOST:PORT --topic T [--records N] [--size S]
 *                      [--partitions P] [--acks 0|1|all] [--linger-ms MS]
 *                      [--batch-bytes B] [--no-consume] [--no-produce]
 *                      [--timeout-s SEC]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static const char *bootstrap = NULL;
static const char *topic = NULL;
static long n_records = 1000000;
static int record_size = 100;
static int partitions = 12;
static const char *acks = "1";
static int linger_ms = 5;
static long batch_bytes = 1000000;
static int do_consume = 1;
static int do_produce = 1;
static int timeout_s = 120;

static volatile sig_atomic_t stop = 0;

/* Send time per record (ns, CLOCK_MONOTONIC), indexed by record number;
 * the delivery callback overwrites it with the latency. */
static int64_t *lat_ns = NULL;
static long delivered = 0;
static long delivery_errors = 0;
static int64_t last_delivery_ns = 0;
static char first_error[256] = "";

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *fmt, const char *detail) {
    fprintf(stderr, "rdkafka_bench: ");
    fprintf(stderr, fmt, detail);
    fprintf(stderr, "\n");
    exit(1);
}

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void set_conf(rd_kafka_conf_t *conf, const char *k, const char *v) {
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
        die("config: %s", err);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    int64_t t = now_ns();
    long idx = (long)(intptr_t)m->_private;
    if (m->err) {
        if (delivery_errors++ == 0)
            snprintf(first_error, sizeof first_error, "%s", rd_kafka_err2str(m->err));
        lat_ns[idx] = -1;
    } else {
        lat_ns[idx] = t - lat_ns[idx];
    }
    delivered++;
    last_delivery_ns = t;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    if (level <= 4) /* warnings and worse */
        fprintf(stderr, "librdkafka %s: %s\n", fac, buf);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static rd_kafka_conf_t *base_conf(void) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set_conf(conf, "bootstrap.servers", bootstrap);
    set_conf(conf, "client.id", "sluice-rdkafka-bench");
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;
}

/* Creates the topic (ignoring "already exists") and waits for leaders. */
static void create_topic(rd_kafka_t *rk) {
    char err[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof err);
    if (!nt)
        die("NewTopic: %s", err);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, 30000, err, sizeof err);
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    if (!ev)
        die("CreateTopics: %s", "no answer in 60 s");
    if (rd_kafka_event_error(ev))
        die("CreateTopics: %s", rd_kafka_event_error_string(ev));
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            die("CreateTopics: %s", rd_kafka_err2str(e));
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);

    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int64_t deadline = now_ns() + 30LL * 1000000000LL;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        int ready = 0;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (md->topic_cnt == 1 && md->topics[0].err == 0 && md->topics[0].partition_cnt == partitions) {
                ready = 1;
                for (int p = 0; p < md->topics[0].partition_cnt; p++)
                    if (md->topics[0].partitions[p].leader < 0 || md->topics[0].partitions[p].err)
                        ready = 0;
            }
            rd_kafka_metadata_destroy(md);
        }
        if (ready)
            break;
        if (now_ns() > deadline)
            die("topic %s has no leader for every partition after 30 s", topic);
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    rd_kafka_topic_destroy(rkt);
}

static void produce(char *json, size_t json_len) {
    char err[512], buf[64];
    rd_kafka_conf_t *conf = base_conf();
    set_conf(conf, "acks", acks);
    snprintf(buf, sizeof buf, "%d", linger_ms);
    set_conf(conf, "linger.ms", buf);
    snprintf(buf, sizeof buf, "%ld", batch_bytes);
    set_conf(conf, "batch.size", buf);
    set_conf(conf, "compression.type", "none");
    set_conf(conf, "queue.buffering.max.messages", "1000000");
    set_conf(conf, "queue.buffering.max.kbytes", "1048576");
    set_conf(conf, "message.timeout.ms", "120000");
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("producer: %s", err);

    create_topic(rk);

    char *payload = malloc((size_t)record_size);
    uint32_t x = 2463534242u;
    for (int i = 0; i < record_size; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        payload[i] = (char)(' ' + x % 94);
    }

    lat_ns = calloc((size_t)n_records, sizeof *lat_ns);
    int64_t start = now_ns(), next_report = start + 1000000000LL;
    long sent = 0;
    while (sent < n_records && !stop) {
        lat_ns[sent] = now_ns();
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION((int32_t)(sent % partitions)),
            RD_KAFKA_V_VALUE(payload, (size_t)record_size), RD_KAFKA_V_OPAQUE((void *)(intptr_t)sent),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 5);
            continue;
        }
        if (e)
            die("produce: %s", rd_kafka_err2str(e));
        sent++;
        if ((sent & 1023) == 0) {
            rd_kafka_poll(rk, 0);
            int64_t t = now_ns();
            if (t >= next_report) {
                fprintf(stderr, "  produce %s: sent %ld/%ld, delivered %ld\n", topic, sent, n_records, delivered);
                next_report = t + 1000000000LL;
            }
        }
    }
    int64_t deadline = now_ns() + (int64_t)timeout_s * 1000000000LL;
    while (delivered < sent && !stop && now_ns() < deadline) {
        rd_kafka_poll(rk, 100);
        int64_t t = now_ns();
        if (t >= next_report) {
            fprintf(stderr, "  produce %s: sent %ld/%ld, delivered %ld\n", topic, sent, n_records, delivered);
            next_report = t + 1000000000LL;
        }
    }
    if (delivered < sent)
        die("produce: %s", "not every record was delivered in time");
    double secs = (double)(last_delivery_ns - start) / 1e9;

    /* Latencies of the successful deliveries, sorted in place. */
    long ok = 0;
    for (long i = 0; i < sent; i++)
        if (lat_ns[i] >= 0)
            lat_ns[ok++] = lat_ns[i];
    qsort(lat_ns, (size_t)ok, sizeof *lat_ns, cmp_i64);
    double p50 = ok ? lat_ns[(long)(ok * 0.50)] / 1e6 : -1;
    double p99 = ok ? lat_ns[(long)(ok * 0.99)] / 1e6 : -1;
    double pmax = ok ? lat_ns[ok - 1] / 1e6 : -1;
    fprintf(stderr, "  produce %s: %ld records in %.2f s, p50 %.2f ms, p99 %.2f ms, %ld errors%s%s\n", topic, sent,
            secs, p50, p99, delivery_errors, delivery_errors ? ": " : "", first_error);
    snprintf(json, json_len,
             "\"produce\":{\"records\":%ld,\"bytes\":%ld,\"seconds\":%.4f,\"records_per_s\":%.1f,"
             "\"mb_per_s\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%ld}",
             sent, sent * (long)record_size, secs, sent / secs, sent * (double)record_size / 1e6 / secs, p50, p99,
             pmax, delivery_errors);
    free(lat_ns);
    free(payload);
    rd_kafka_destroy(rk);
}

static void consume(char *json, size_t json_len) {
    char err[512];
    rd_kafka_conf_t *conf = base_conf();
    /* A group id is required by the consumer API, but partitions are assigned
     * by hand: no join, no rebalance delay, no commits. */
    set_conf(conf, "group.id", "sluice-rdkafka-bench");
    set_conf(conf, "enable.auto.commit", "false");
    set_conf(conf, "enable.auto.offset.store", "false");
    set_conf(conf, "auto.offset.reset", "earliest");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk)
        die("consumer: %s", err);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;

    int64_t start = now_ns(), last = start, next_report = start + 1000000000LL;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
    if (e)
        die("assign: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(parts);

    long got = 0, bytes = 0, errors = 0;
    int64_t deadline = start + (int64_t)timeout_s * 1000000000LL;
    while (got < n_records && !stop && now_ns() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m) {
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && errors++ == 0)
                    fprintf(stderr, "  consume %s: %s\n", topic, rd_kafka_message_errstr(m));
            } else {
                got++;
                bytes += (long)m->len;
                last = now_ns();
            }
            rd_kafka_message_destroy(m);
        }
        int64_t t = now_ns();
        if (t >= next_report) {
            fprintf(stderr, "  consume %s: %ld/%ld\n", topic, got, n_records);
            next_report = t + 1000000000LL;
        }
    }
    if (got < n_records)
        fprintf(stderr, "  consume %s: only %ld of %ld records before the timeout\n", topic, got, n_records);
    double secs = (double)(last - start) / 1e9;
    fprintf(stderr, "  consume %s: %ld records in %.2f s\n", topic, got, secs);
    snprintf(json, json_len,
             "\"consume\":{\"records\":%ld,\"bytes\":%ld,\"seconds\":%.4f,\"records_per_s\":%.1f,"
             "\"mb_per_s\":%.3f,\"errors\":%ld,\"complete\":%s}",
             got, bytes, secs, secs > 0 ? got / secs : 0.0, secs > 0 ? bytes / 1e6 / secs : 0.0, errors,
             got >= n_records ? "true" : "false");
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static void usage(void) {
    fprintf(stderr,
            "usage: rdkafka_bench --bootstrap HOST:PORT --topic T [--records N] [--size S] [--partitions P]\n"
            "                     [--acks 0|1|all] [--linger-ms MS] [--batch-bytes B] [--no-consume]\n"
            "                     [--no-produce] [--timeout-s SEC]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && ++i)
        if (OPT("--bootstrap")) bootstrap = v;
        else if (OPT("--topic")) topic = v;
        else if (OPT("--records")) n_records = atol(v);
        else if (OPT("--size")) record_size = atoi(v);
        else if (OPT("--partitions")) partitions = atoi(v);
        else if (OPT("--acks")) acks = v;
        else if (OPT("--linger-ms")) linger_ms = atoi(v);
        else if (OPT("--batch-bytes")) batch_bytes = atol(v);
        else if (OPT("--timeout-s")) timeout_s = atoi(v);
        else if (strcmp(a, "--no-consume") == 0) do_consume = 0;
        else if (strcmp(a, "--no-produce") == 0) do_produce = 0;
        else usage();
#undef OPT
    }
    if (!bootstrap || !topic || n_records <= 0 || record_size <= 0 || partitions <= 0 || !(do_produce || do_consume))
        usage();
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    static char pj[1024], cj[1024];
    if (do_produce)
        fprintf(stderr, "rdkafka_bench (librdkafka %s): %ld x %d B to %s (%d partitions), acks=%s, linger.ms=%d, "
                "batch.size=%ld\n", rd_kafka_version_str(), n_records, record_size, topic, partitions, acks,
                linger_ms, batch_bytes);
    else
        fprintf(stderr, "rdkafka_bench (librdkafka %s): consume %ld records from %s (%d partitions)\n",
                rd_kafka_version_str(), n_records, topic, partitions);
    if (do_produce)
        produce(pj, sizeof pj);
    if (do_consume)
        consume(cj, sizeof cj);
    printf("{\"librdkafka\":\"%s\",\"topic\":\"%s\",\"records\":%ld,\"size\":%d,\"partitions\":%d,\"acks\":\"%s\","
           "\"linger_ms\":%d,\"batch_bytes\":%ld%s%s%s%s}\n",
           rd_kafka_version_str(), topic, n_records, record_size, partitions, acks, linger_ms, batch_bytes,
           do_produce ? "," : "", pj, do_consume ? "," : "", cj);
    return 0;
}
