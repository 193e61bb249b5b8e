/*
 * rdkafka_bench: a librdkafka load generator for scripts/bench-broker,
 * scripts/bench-client and scripts/bench (benches/e2e/bench.py).
 *
 * Build: cc -O2 -Wall -I benches/e2e -o rdkafka_bench rdkafka_bench.c \
 *            $(pkg-config --cflags --libs rdkafka) -lm -lpthread
 *
 * Usage: rdkafka_bench --bootstrap HOST:PORT --topic T
 *          [--records N] [--size S] [--partitions P] [--acks 0|1|all]
 *          [--linger-ms MS] [--batch-bytes B] [--compression none|gzip|snappy|lz4|zstd]
 *          [--idempotence true|false] [--producers K] [--consumers K] [--group G]
 *          [--rate R --duration-s D] [--no-consume] [--no-produce] [--timeout-s SEC]
 *          [--keys K] [--txn-records T] [-X name=value]...
 *
 *   --records N       records to produce and/or consume (default 1000000)
 *   --size S          value size in bytes (default 100); records have no key
 *                     unless --keys is given
 *   --keys K          throughput mode: record i gets the 8-byte key
 *                     "%08ld" of i % K (so K distinct keys, each updated
 *                     N / K times, every key once among the last K records:
 *                     the load of a compacted topic); 0, the default, sends
 *                     keyless records
 *   --txn-records T   throughput mode: each producer is transactional
 *                     (transactional.id "<topic>-txn-<k>"; needs --acks all
 *                     and --idempotence true) and commits a transaction
 *                     every T of its records, see 2.; 0, the default, sends
 *                     outside transactions
 *   --partitions P    partitions of the topic when it is created, and the
 *                     partitions produced to (record i goes to i % P) and, in
 *                     the group-less consume, assigned (default 12)
 *   --acks, --linger-ms, --batch-bytes, --compression, --idempotence
 *                     the producer's acks (default 1), linger.ms (5),
 *                     batch.size (1000000), compression.type (none) and
 *                     enable.idempotence (false; true needs --acks all)
 *   --producers K     K producer instances (default 1), see 2.
 *   --consumers K     K consumer instances (default 1, > 1 needs --group)
 *   --group G         consume as consumer group G, see 3.
 *   --rate R, --duration-s D
 *                     latency mode, see below.
 *   --no-consume / --no-produce
 *                     run one phase only (scripts/bench-broker runs them as
 *                     two processes, to sample the broker's memory per
 *                     phase); in latency mode --no-consume drops the
 *                     end-to-end half and --no-produce is refused
 *   --timeout-s SEC   how long to wait for the deliveries of a produce phase
 *                     after the last send, and for a consume phase (120)
 *   -X name=value     any librdkafka property, repeatable, applied to every
 *                     producer and consumer configuration after the built-in
 *                     settings (so it overrides them); an unknown name or a
 *                     bad value is refused before anything runs
 *                     (librdkafka warns, harmlessly, when a producer
 *                     property reaches a consumer or the other way round);
 *                     with -X debug=... librdkafka's debug log goes to
 *                     stderr. The top-level JSON fields show the flags; an
 *                     -X override of the same setting shows in "config".
 *
 * Throughput mode (no --rate):
 * 1. Creates the topic (P partitions, replication factor 1) unless it exists
 *    and waits until every partition has a leader.
 * 2. Produces N records of S bytes (no key; record i of the run goes to
 *    partition i % P). With --producers K there are K producer instances,
 *    each its own rd_kafka_t driven by its own thread, and the N records are
 *    split evenly into K consecutive ranges, one per producer (all start at
 *    once, after every instance has been created). The send time of each
 *    record is kept; the delivery report turns it into a per-record delivery
 *    latency. Throughput is N over the time from the first send of any
 *    producer to the last delivery report of any; latency percentiles are
 *    over all records of all producers.
 *    With --txn-records T each producer calls init_transactions before the
 *    clock starts, then repeats begin_transaction, T records (fewer in its
 *    last transaction), commit_transaction (which waits for every delivery
 *    and the coordinator's answer); the clock stops at its last commit.
 *    Each commit_transaction call's duration is kept. The consume phase
 *    (librdkafka's default isolation.level=read_committed) then reads
 *    every record back, which shows that each was committed.
 * 3. Consumes until N records arrived, with the clock started before the
 *    first assign/subscribe:
 *    - without --group (and only with --consumers 1): one consumer assigns
 *      all P partitions itself, from the beginning (no group rebalance in
 *      the measurement, no commits);
 *    - with --group G: K consumer instances (own rd_kafka_t, own thread)
 *      subscribe to the topic as members of group G (auto.offset.reset
 *      earliest, enable.auto.commit false so that a rerun with the same G
 *      reads the topic again; -X enable.auto.commit=true to commit). The
 *      time until the first record arrived ("first_record_s") is mostly the
 *      group join: the broker's group.initial.rebalance.delay.ms (3 s by
 *      default in Kafka) is part of it, and is waited twice (about 6 s)
 *      when several members join a new group together, as each new member
 *      restarts the delay once.
 *    In a group, records are counted once per (partition, offset): a record
 *    read a second time (by the new owner of a partition after a rebalance,
 *    which starts again from the earliest offset as nothing is committed)
 *    counts as a duplicate, not towards N. All consumers stop when the
 *    shared count reaches N. Throughput is N over the time from the start
 *    to the N-th record. Even without a group, "first_record_s" is about
 *    0.5 s with librdkafka 2.0.2: the assignment comes before the client
 *    has the topic's metadata, and its retry timer for the offset lookup
 *    fires only then; "records_per_s_after_first" leaves that start (and
 *    the group join) out.
 *
 * Latency mode (--rate R --duration-s D; one producer; needs S >= 16):
 *    Creates the topic as above. A consumer in the same process (its own
 *    thread) is assigned every partition at its current high watermark
 *    (explicit offsets from a watermark query: nothing older is read); the
 *    producer starts once that consumer has reached the end of every
 *    partition (or after 10 s). The producer then sends R*D records, record
 *    i scheduled at t0 + i/R (CLOCK_MONOTONIC): it sleeps until the next
 *    record is due and sends everything that is due; partition i % P. A
 *    second thread serves the delivery reports (rd_kafka_poll), so they
 *    are timestamped on arrival, not when the sender next wakes. The
 *    first 16 bytes of each value are the record number and its
 *    *scheduled* send time (two native-endian 64-bit integers, ns), the
 *    rest filler.
 *    Latencies are measured from the scheduled send time, not from the
 *    moment the producer got to send the record: when the broker (or the
 *    client's full queue) stalls the producer, the records that should
 *    have gone out meanwhile carry the stall in their latency instead of
 *    being silently sent later (coordinated omission corrected).
 *    - produce latency: scheduled send -> delivery report;
 *    - end-to-end latency: scheduled send -> the consumer received it;
 *    - achieved rate: records delivered / producing span (t0 -> the last
 *      delivery report);
 *    - missing: delivered records the consumer did not receive within 10 s
 *      after the last delivery report;
 *    - max_send_lag_ms: the most the producer ever was behind schedule
 *      when it handed a record to librdkafka (a large value means the
 *      producer, not only the broker, could not keep up).
 *
 * Progress goes to stderr once a second; the result is one JSON object on
 * stdout (one line). MB means 10^6 bytes of record values; ms values are
 * milliseconds with microsecond resolution; pXX is the value at index
 * floor(n * XX / 100) of the sorted latencies.
 *
 * JSON, every mode: {"librdkafka": version, "mode": "throughput"|"latency",
 *   "topic", "records" (N; R*D rounded in latency mode), "size", "keys" (K),
 *   "partitions", "acks", "linger_ms", "batch_bytes", "compression",
 *   "idempotence" (bool), "config": {name: value} of the -X settings, then
 * throughput mode:
 *   "produce": {"records", "bytes", "seconds", "records_per_s", "mb_per_s",
 *     "p50_ms", "p99_ms", "p99_9_ms", "max_ms" (delivery latency; -1 when
 *     nothing was delivered), "errors" (failed deliveries), "producers",
 *     and with --txn-records "transactions" (commits), "txn_records",
 *     "commit_p50_ms", "commit_p99_ms", "commit_max_ms" (durations of the
 *     commit_transaction calls)}
 *     (absent with --no-produce)
 *   "consume": {"records" (distinct records counted, at most N), "bytes",
 *     "seconds" (start -> N-th record, or -> last record when incomplete),
 *     "records_per_s", "mb_per_s", "errors" (consumer errors other than
 *     partition EOF), "complete" (N records arrived before the timeout),
 *     "consumers", "group" (G or null), "first_record_s" (start -> first
 *     record; null if none), "records_per_s_after_first" ((records - 1) /
 *     (last - first record); null below 2 records), "duplicates",
 *     "per_consumer": [records counted per consumer]} (absent with
 *     --no-consume)
 * latency mode:
 *   "latency": {"target_rate", "duration_s", "scheduled" (R*D), "sent",
 *     "delivered" (successful delivery reports), "received" (distinct
 *     records of this run the consumer got; null with --no-consume),
 *     "errors" (failed deliveries), "missing" (null with --no-consume),
 *     "duplicates", "achieved_rate", "produce_span_s", "max_send_lag_ms",
 *     "consumer_ready_s" (assign -> end of every partition reached, about
 *     fetch.wait.max.ms (500) as the end shows with an empty fetch; null
 *     if not within 10 s or --no-consume),
 *     "produce_latency_ms": {"p50", "p99", "p99_9", "max"},
 *     "e2e_latency_ms": {"p50", "p99", "p99_9", "max"}} (an object is null
 *     when it has no samples or with --no-consume)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#define NS_PER_S 1000000000LL

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
static const char *compression = "none";
static const char *idempotence = "false";
static int n_producers = 1;
static int n_consumers = 1;
static const char *group = NULL;
static double rate = 0;       /* latency mode when > 0 */
static double duration_s = 0;
static long n_keys = 0;       /* > 0: keyed records, key i % n_keys */
static long txn_records = 0;  /* > 0: transactional, a commit every txn_records */

/* -X name=value settings, in command-line order. */
struct setting {
    char *name;
    const char *value;
};
static struct setting *extra = NULL;
static int n_extra = 0;
static int log_debug = 0; /* -X debug=...: show librdkafka's debug log too */

static volatile sig_atomic_t stop = 0;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void sleep_ns(int64_t ns) {
    struct timespec ts = {(time_t)(ns / NS_PER_S), (long)(ns % NS_PER_S)};
    nanosleep(&ts, NULL);
}

static void die(const char *fmt, const char *detail) {
    fprintf(stderr, "rdkafka_bench: ");
    fprintf(stderr, fmt, detail);
    fprintf(stderr, "\n");
    exit(1);
}

/* A command-line error: message and exit status 2. */
static void bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void bad_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rdkafka_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
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

/* The -X settings, last, so they override the built-in ones. Exits with
 * 2 (command-line error) when called on the probe configuration. */
static int extra_exit_status = 1;
static void apply_extra(rd_kafka_conf_t *conf) {
    char err[512];
    for (int i = 0; i < n_extra; i++)
        if (rd_kafka_conf_set(conf, extra[i].name, extra[i].value, err, sizeof err) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "rdkafka_bench: -X %s=%s: %s\n", extra[i].name, extra[i].value, err);
            exit(extra_exit_status);
        }
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    if (level <= 4 || log_debug) /* warnings and worse */
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

/* ------------------------------------------------------------------ JSON */

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            die("%s", "vsnprintf failed");
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap <= b->len + (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            die("%s", "out of memory");
        b->p = p;
        b->cap = cap;
    }
}

/* A JSON string, or null for NULL. */
static void sb_str(struct sbuf *b, const char *s) {
    if (!s) {
        sb_printf(b, "null");
        return;
    }
    sb_printf(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            sb_printf(b, "\\%c", *c);
        else if (*c < 0x20)
            sb_printf(b, "\\u%04x", *c);
        else
            sb_printf(b, "%c", *c);
    }
    sb_printf(b, "\"");
}

/* ----------------------------------------------------------- percentiles */

struct pct {
    long n;
    double p50, p99, p999, max; /* ms */
};

/* Sorts v[0..n) (ns) in place. */
static struct pct percentiles(int64_t *v, long n) {
    struct pct r = {n, -1, -1, -1, -1};
    if (n <= 0)
        return r;
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    long i999 = (long)(n * 0.999);
    if (i999 > n - 1)
        i999 = n - 1;
    r.p50 = v[(long)(n * 0.50)] / 1e6;
    r.p99 = v[(long)(n * 0.99)] / 1e6;
    r.p999 = v[i999] / 1e6;
    r.max = v[n - 1] / 1e6;
    return r;
}

static void sb_pct(struct sbuf *b, struct pct p) {
    if (p.n <= 0)
        sb_printf(b, "null");
    else
        sb_printf(b, "{\"p50\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,\"max\":%.3f}", p.p50, p.p99, p.p999, p.max);
}

/* ----------------------------------------------------------------- topic */

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
    int64_t deadline = now_ns() + 30LL * NS_PER_S;
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
        sleep_ns(100 * 1000000LL);
    }
    rd_kafka_topic_destroy(rkt);
}

/* The topic's partition count from a metadata request (dies if the topic
 * is unknown). */
static int topic_partitions(rd_kafka_t *rk) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    if (e)
        die("metadata: %s", rd_kafka_err2str(e));
    if (md->topic_cnt != 1 || md->topics[0].err)
        die("topic %s: no such topic", topic);
    int n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
}

static char *make_payload(void) {
    char *payload = malloc((size_t)record_size);
    if (!payload)
        die("%s", "out of memory");
    uint32_t x = 2463534242u;
    for (int i = 0; i < record_size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        payload[i] = (char)(' ' + x % 94);
    }
    return payload;
}

/* Producer settings shared by both modes; -X last. txn_id >= 0 makes it
 * transactional, with transactional.id "<topic>-txn-<txn_id>". */
static rd_kafka_t *new_producer(void *opaque, void (*dr)(rd_kafka_t *, const rd_kafka_message_t *, void *),
                                int txn_id) {
    char err[512], buf[64];
    rd_kafka_conf_t *conf = base_conf();
    set_conf(conf, "acks", acks);
    snprintf(buf, sizeof buf, "%d", linger_ms);
    set_conf(conf, "linger.ms", buf);
    snprintf(buf, sizeof buf, "%ld", batch_bytes);
    set_conf(conf, "batch.size", buf);
    /* Before compression.type: scripts/bench-client's wrapper applies its
     * own settings (enable.idempotence among them) right after that one. */
    set_conf(conf, "enable.idempotence", idempotence);
    set_conf(conf, "compression.type", compression);
    set_conf(conf, "queue.buffering.max.messages", "1000000");
    set_conf(conf, "queue.buffering.max.kbytes", "1048576");
    set_conf(conf, "message.timeout.ms", "120000");
    if (txn_id >= 0) {
        char id[512];
        snprintf(id, sizeof id, "%s-txn-%d", topic, txn_id);
        set_conf(conf, "transactional.id", id);
        /* librdkafka wants message.timeout.ms (120 s above) within it. */
        set_conf(conf, "transaction.timeout.ms", "120000");
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr);
    rd_kafka_conf_set_opaque(conf, opaque);
    apply_extra(conf);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("producer: %s", err);
    return rk;
}

/* --------------------------------------------------- throughput: produce */

struct producer {
    int id;
    rd_kafka_t *rk;
    long from, to; /* its records: [from, to) */
    _Atomic long sent, delivered;
    _Atomic int done;
    long errors;
    int64_t first_send_ns, last_delivery_ns;
    char first_error[256];
    pthread_t thread;
    int64_t *commit_ns; /* --txn-records: each commit's duration */
    long commits;
};

/* Send time per record (ns, CLOCK_MONOTONIC), indexed by record number;
 * the delivery callback overwrites it with the latency (-1: failed). Each
 * index is touched by one producer thread only. */
static int64_t *lat_ns = NULL;
static char *payload = NULL;
static pthread_barrier_t start_barrier;

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    struct producer *pr = opaque;
    int64_t t = now_ns();
    long idx = (long)(intptr_t)m->_private;
    if (m->err) {
        if (pr->errors++ == 0)
            snprintf(pr->first_error, sizeof pr->first_error, "%s", rd_kafka_err2str(m->err));
        lat_ns[idx] = -1;
    } else {
        lat_ns[idx] = t - lat_ns[idx];
    }
    atomic_fetch_add_explicit(&pr->delivered, 1, memory_order_relaxed);
    pr->last_delivery_ns = t;
}

/* Dies with the error of a failed transactional call. */
static void txn_check(rd_kafka_error_t *e, const char *what) {
    if (!e)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", what, rd_kafka_error_string(e));
    die("transactions: %s", msg);
}

static void *producer_main(void *arg) {
    struct producer *pr = arg;
    int txn_timeout_ms = timeout_s * 1000;
    if (txn_records > 0)
        txn_check(rd_kafka_init_transactions(pr->rk, txn_timeout_ms), "init_transactions");
    pthread_barrier_wait(&start_barrier);
    pr->first_send_ns = now_ns();
    long i = pr->from;
    long in_txn = 0;
    while (i < pr->to && !stop) {
        if (txn_records > 0 && in_txn == 0)
            txn_check(rd_kafka_begin_transaction(pr->rk), "begin_transaction");
        lat_ns[i] = now_ns();
        /* librdkafka copies the key; NULL/0 sends a keyless record. */
        char key[24];
        size_t key_len = n_keys > 0 ? (size_t)snprintf(key, sizeof key, "%08ld", i % n_keys) : 0;
        rd_kafka_resp_err_t e = rd_kafka_producev(
            pr->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION((int32_t)(i % partitions)),
            RD_KAFKA_V_KEY(key_len ? key : NULL, key_len), RD_KAFKA_V_VALUE(payload, (size_t)record_size),
            RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(pr->rk, 5);
            continue;
        }
        if (e)
            die("produce: %s", rd_kafka_err2str(e));
        i++;
        atomic_store_explicit(&pr->sent, i - pr->from, memory_order_relaxed);
        if (txn_records > 0 && (++in_txn == txn_records || i == pr->to)) {
            int64_t t = now_ns();
            txn_check(rd_kafka_commit_transaction(pr->rk, txn_timeout_ms), "commit_transaction");
            int64_t done_ns = now_ns();
            pr->commit_ns[pr->commits++] = done_ns - t;
            pr->last_delivery_ns = done_ns;
            in_txn = 0;
        }
        if ((i & 1023) == 0)
            rd_kafka_poll(pr->rk, 0);
    }
    long sent = i - pr->from;
    int64_t deadline = now_ns() + (int64_t)timeout_s * NS_PER_S;
    while (atomic_load(&pr->delivered) < sent && !stop && now_ns() < deadline)
        rd_kafka_poll(pr->rk, 100);
    atomic_store(&pr->done, 1);
    return NULL;
}

static void produce(struct sbuf *json) {
    struct producer *prs = calloc((size_t)n_producers, sizeof *prs);
    lat_ns = calloc((size_t)n_records, sizeof *lat_ns);
    if (!prs || !lat_ns)
        die("%s", "out of memory");
    payload = make_payload();
    for (int k = 0; k < n_producers; k++) {
        struct producer *pr = &prs[k];
        pr->id = k;
        pr->from = n_records * k / n_producers;
        pr->to = n_records * (k + 1) / n_producers;
        if (txn_records > 0) {
            pr->commit_ns = calloc((size_t)((pr->to - pr->from) / txn_records + 2), sizeof *pr->commit_ns);
            if (!pr->commit_ns)
                die("%s", "out of memory");
        }
        pr->rk = new_producer(pr, dr_msg_cb, txn_records > 0 ? k : -1);
        if (k == 0)
            create_topic(pr->rk);
        else
            topic_partitions(pr->rk); /* warm up: the topic's metadata */
    }

    pthread_barrier_init(&start_barrier, NULL, (unsigned)n_producers + 1);
    for (int k = 0; k < n_producers; k++)
        if (pthread_create(&prs[k].thread, NULL, producer_main, &prs[k]))
            die("%s", "pthread_create failed");
    pthread_barrier_wait(&start_barrier);
    int64_t next_report = now_ns() + NS_PER_S;
    for (;;) {
        int done = 0;
        long sent = 0, delivered = 0;
        for (int k = 0; k < n_producers; k++) {
            done += atomic_load(&prs[k].done);
            sent += atomic_load_explicit(&prs[k].sent, memory_order_relaxed);
            delivered += atomic_load_explicit(&prs[k].delivered, memory_order_relaxed);
        }
        if (done == n_producers)
            break;
        int64_t t = now_ns();
        if (t >= next_report) {
            fprintf(stderr, "  produce %s: sent %ld/%ld, delivered %ld\n", topic, sent, n_records, delivered);
            next_report = t + NS_PER_S;
        }
        sleep_ns(20 * 1000000LL);
    }
    for (int k = 0; k < n_producers; k++)
        pthread_join(prs[k].thread, NULL);

    long sent = 0, delivered = 0, errors = 0, ok = 0;
    int64_t start = INT64_MAX, end = INT64_MIN;
    const char *first_error = "";
    for (int k = 0; k < n_producers; k++) {
        struct producer *pr = &prs[k];
        long s = atomic_load(&pr->sent);
        sent += s;
        delivered += atomic_load(&pr->delivered);
        if (pr->errors && !errors)
            first_error = pr->first_error;
        errors += pr->errors;
        if (s > 0 && pr->first_send_ns < start)
            start = pr->first_send_ns;
        if (s > 0 && pr->last_delivery_ns > end)
            end = pr->last_delivery_ns;
        /* Latencies of the successful deliveries, packed to the front. */
        for (long i = pr->from; i < pr->from + s; i++)
            if (lat_ns[i] >= 0)
                lat_ns[ok++] = lat_ns[i];
    }
    if (delivered < sent)
        die("produce: %s", "not every record was delivered in time");
    double secs = sent > 0 ? (double)(end - start) / 1e9 : 0;
    struct pct p = percentiles(lat_ns, ok);
    fprintf(stderr,
            "  produce %s: %ld records in %.2f s (%d producer%s), p50 %.2f ms, p99 %.2f ms, %ld errors%s%s\n",
            topic, sent, secs, n_producers, n_producers == 1 ? "" : "s", p.p50, p.p99, errors, errors ? ": " : "",
            first_error);
    sb_printf(json,
              "\"produce\":{\"records\":%ld,\"bytes\":%ld,\"seconds\":%.4f,\"records_per_s\":%.1f,"
              "\"mb_per_s\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p99_9_ms\":%.3f,\"max_ms\":%.3f,"
              "\"errors\":%ld,\"producers\":%d}",
              sent, sent * (long)record_size, secs, secs > 0 ? sent / secs : 0.0,
              secs > 0 ? sent * (double)record_size / 1e6 / secs : 0.0, p.p50, p.p99, p.p999, p.max, errors,
              n_producers);
    if (txn_records > 0) {
        long commits = 0;
        for (int k = 0; k < n_producers; k++)
            commits += prs[k].commits;
        int64_t *all = calloc((size_t)commits + 1, sizeof *all);
        if (!all)
            die("%s", "out of memory");
        long at = 0;
        for (int k = 0; k < n_producers; k++)
            for (long c = 0; c < prs[k].commits; c++)
                all[at++] = prs[k].commit_ns[c];
        struct pct cp = percentiles(all, commits);
        fprintf(stderr, "  produce %s: %ld transactions of up to %ld records, commit p50 %.2f ms, p99 %.2f ms\n",
                topic, commits, txn_records, cp.p50, cp.p99);
        /* Into the produce object: its closing brace goes first. */
        json->len--;
        sb_printf(json,
                  ",\"transactions\":%ld,\"txn_records\":%ld,\"commit_p50_ms\":%.3f,"
                  "\"commit_p99_ms\":%.3f,\"commit_max_ms\":%.3f}",
                  commits, txn_records, cp.p50, cp.p99, cp.max);
        free(all);
    }
    for (int k = 0; k < n_producers; k++) {
        rd_kafka_destroy(prs[k].rk);
        free(prs[k].commit_ns);
    }
    pthread_barrier_destroy(&start_barrier);
    free(lat_ns);
    free(payload);
    free(prs);
}

/* --------------------------------------------------- throughput: consume */

struct consumer {
    int id;
    rd_kafka_t *rk;
    _Atomic long got; /* distinct records counted towards N */
    long bytes, dups, errors;
    int64_t last_ns;
    pthread_t thread;
};

static _Atomic long consumed;           /* distinct records, all consumers */
static _Atomic int64_t first_record_ns; /* 0: none yet */
static int64_t nth_record_ns;           /* written by the thread counting N */
static _Atomic int64_t *frontier;       /* per partition: next offset not yet counted */
static int frontier_n;
static int64_t consume_deadline;

/* Whether (partition, offset) is seen for the first time. Each partition
 * is read in offset order by its owner; a new owner starts again at or
 * before the frontier, so everything below it is a duplicate. */
static int first_sighting(int32_t p, int64_t off) {
    if (p < 0 || p >= frontier_n)
        return 1;
    int64_t f = atomic_load(&frontier[p]);
    while (off >= f)
        if (atomic_compare_exchange_weak(&frontier[p], &f, off + 1))
            return 1;
    return 0;
}

static void *consumer_main(void *arg) {
    struct consumer *c = arg;
    pthread_barrier_wait(&start_barrier);
    rd_kafka_resp_err_t e;
    if (group) {
        rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
        e = rd_kafka_subscribe(c->rk, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        if (e)
            die("subscribe: %s", rd_kafka_err2str(e));
    } else {
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
        for (int p = 0; p < partitions; p++)
            rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        e = rd_kafka_assign(c->rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        if (e)
            die("assign: %s", rd_kafka_err2str(e));
    }
    while (atomic_load_explicit(&consumed, memory_order_relaxed) < n_records && !stop && now_ns() < consume_deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 100);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && c->errors++ == 0)
                fprintf(stderr, "  consume %s (consumer %d): %s\n", topic, c->id, rd_kafka_message_errstr(m));
        } else {
            int64_t t = now_ns();
            if (first_sighting(m->partition, m->offset)) {
                long prev = atomic_fetch_add(&consumed, 1);
                if (prev < n_records) {
                    /* c->got has one writer: a plain (relaxed) store. */
                    atomic_store_explicit(&c->got, atomic_load_explicit(&c->got, memory_order_relaxed) + 1,
                                          memory_order_relaxed);
                    c->bytes += (long)m->len;
                    c->last_ns = t;
                    int64_t zero = 0;
                    if (atomic_load_explicit(&first_record_ns, memory_order_relaxed) == 0)
                        atomic_compare_exchange_strong(&first_record_ns, &zero, t);
                    if (prev + 1 == n_records)
                        nth_record_ns = t;
                }
            } else {
                c->dups++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    /* Leaving the group is not part of the measurement. */
    rd_kafka_consumer_close(c->rk);
    return NULL;
}

static void consume(struct sbuf *json) {
    char err[512];
    struct consumer *cs = calloc((size_t)n_consumers, sizeof *cs);
    if (!cs)
        die("%s", "out of memory");
    for (int k = 0; k < n_consumers; k++) {
        rd_kafka_conf_t *conf = base_conf();
        if (group) {
            set_conf(conf, "group.id", group);
            set_conf(conf, "enable.auto.commit", "false");
        } else {
            /* A group id is required by the consumer API, but partitions are
             * assigned by hand: no join, no rebalance delay, no commits. */
            set_conf(conf, "group.id", "sluice-rdkafka-bench");
            set_conf(conf, "enable.auto.commit", "false");
            set_conf(conf, "enable.auto.offset.store", "false");
        }
        set_conf(conf, "auto.offset.reset", "earliest");
        apply_extra(conf);
        cs[k].id = k;
        cs[k].rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
        if (!cs[k].rk)
            die("consumer: %s", err);
        rd_kafka_poll_set_consumer(cs[k].rk);
    }
    /* One consumer assigned every partition cannot see a record twice: no
     * bookkeeping then (frontier_n 0). */
    frontier_n = group ? topic_partitions(cs[0].rk) : 0;
    frontier = calloc((size_t)frontier_n + 1, sizeof *frontier);
    if (!frontier)
        die("%s", "out of memory");

    pthread_barrier_init(&start_barrier, NULL, (unsigned)n_consumers + 1);
    for (int k = 0; k < n_consumers; k++)
        if (pthread_create(&cs[k].thread, NULL, consumer_main, &cs[k]))
            die("%s", "pthread_create failed");
    int64_t start = now_ns();
    consume_deadline = start + (int64_t)timeout_s * NS_PER_S;
    pthread_barrier_wait(&start_barrier);

    int64_t next_report = start + NS_PER_S;
    for (;;) {
        int64_t t = now_ns();
        long got = atomic_load(&consumed);
        if (got >= n_records || stop || t >= consume_deadline)
            break;
        if (t >= next_report) {
            fprintf(stderr, "  consume %s: %ld/%ld", topic, got < n_records ? got : n_records, n_records);
            if (n_consumers > 1) {
                fprintf(stderr, " (");
                for (int k = 0; k < n_consumers; k++)
                    fprintf(stderr, "%s%ld", k ? " " : "", atomic_load_explicit(&cs[k].got, memory_order_relaxed));
                fprintf(stderr, ")");
            }
            if (group && atomic_load(&first_record_ns) == 0)
                fprintf(stderr, ", joining group %s", group);
            fprintf(stderr, "\n");
            next_report = t + NS_PER_S;
        }
        sleep_ns(20 * 1000000LL);
    }
    for (int k = 0; k < n_consumers; k++)
        pthread_join(cs[k].thread, NULL);

    long got = 0, bytes = 0, errors = 0, dups = 0;
    int64_t last = start;
    for (int k = 0; k < n_consumers; k++) {
        got += atomic_load(&cs[k].got);
        bytes += cs[k].bytes;
        errors += cs[k].errors;
        dups += cs[k].dups;
        if (cs[k].last_ns > last)
            last = cs[k].last_ns;
    }
    int complete = got >= n_records;
    int64_t end = complete ? nth_record_ns : last;
    int64_t first = atomic_load(&first_record_ns);
    if (!complete)
        fprintf(stderr, "  consume %s: only %ld of %ld records before the timeout\n", topic, got, n_records);
    double secs = (double)(end - start) / 1e9;
    fprintf(stderr, "  consume %s: %ld records in %.2f s", topic, got, secs);
    if (first)
        fprintf(stderr, ", first after %.3f s", (first - start) / 1e9);
    if (dups)
        fprintf(stderr, ", %ld duplicates", dups);
    fprintf(stderr, "\n");

    sb_printf(json,
              "\"consume\":{\"records\":%ld,\"bytes\":%ld,\"seconds\":%.4f,\"records_per_s\":%.1f,"
              "\"mb_per_s\":%.3f,\"errors\":%ld,\"complete\":%s,\"consumers\":%d,\"group\":",
              got, bytes, secs, secs > 0 ? got / secs : 0.0, secs > 0 ? bytes / 1e6 / secs : 0.0, errors,
              complete ? "true" : "false", n_consumers);
    sb_str(json, group);
    if (first)
        sb_printf(json, ",\"first_record_s\":%.4f", (first - start) / 1e9);
    else
        sb_printf(json, ",\"first_record_s\":null");
    if (got >= 2 && end > first)
        sb_printf(json, ",\"records_per_s_after_first\":%.1f", (got - 1) / ((end - first) / 1e9));
    else
        sb_printf(json, ",\"records_per_s_after_first\":null");
    sb_printf(json, ",\"duplicates\":%ld,\"per_consumer\":[", dups);
    for (int k = 0; k < n_consumers; k++)
        sb_printf(json, "%s%ld", k ? "," : "", atomic_load(&cs[k].got));
    sb_printf(json, "]}");

    for (int k = 0; k < n_consumers; k++)
        rd_kafka_destroy(cs[k].rk);
    pthread_barrier_destroy(&start_barrier);
    free(frontier);
    free(cs);
}

/* ---------------------------------------------------------- latency mode */

static long lat_total;       /* R * D records scheduled */
static int64_t lat_t0;       /* schedule origin */
static int64_t *prod_lat;    /* per record: scheduled send -> delivery (ns); -1 none yet, -2 failed */
static int64_t *e2e_lat;     /* per record: scheduled send -> received (ns); -1 not received */
static long lat_delivered_ok, lat_errors;
static _Atomic long lat_reports; /* delivery reports, ok or failed */
static int64_t lat_last_delivery_ns;
static char lat_first_error[256] = "";
static _Atomic long lat_received, lat_dups, lat_foreign;
static _Atomic int lat_consumer_stop, lat_consumer_ready, lat_poller_stop;
static int64_t lat_ready_ns;

static int64_t sched_ns(long i) {
    return lat_t0 + (int64_t)((double)i * 1e9 / rate);
}

static void lat_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    int64_t t = now_ns();
    long idx = (long)(intptr_t)m->_private;
    if (m->err) {
        if (lat_errors++ == 0)
            snprintf(lat_first_error, sizeof lat_first_error, "%s", rd_kafka_err2str(m->err));
        prod_lat[idx] = -2;
    } else {
        prod_lat[idx] = t - sched_ns(idx);
        lat_delivered_ok++;
        lat_last_delivery_ns = t;
    }
    atomic_fetch_add_explicit(&lat_reports, 1, memory_order_relaxed);
}

/* Serves the producer's delivery reports, so that they are timestamped
 * when they arrive, not when the sender wakes up for its next record. */
static void *lat_poller_main(void *arg) {
    rd_kafka_t *rk = arg;
    while (!atomic_load_explicit(&lat_poller_stop, memory_order_relaxed))
        rd_kafka_poll(rk, 50);
    rd_kafka_poll(rk, 0);
    return NULL;
}

struct lat_consumer {
    rd_kafka_t *rk;
    int n_parts;
    long errors;
};

static void *lat_consumer_main(void *arg) {
    struct lat_consumer *lc = arg;
    char *eof = calloc((size_t)lc->n_parts, 1);
    int n_eof = 0;
    while (!atomic_load_explicit(&lat_consumer_stop, memory_order_relaxed)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(lc->rk, 50);
        if (!m)
            continue;
        int64_t t = now_ns();
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < lc->n_parts && !eof[m->partition]) {
                eof[m->partition] = 1;
                if (++n_eof == lc->n_parts) {
                    lat_ready_ns = t;
                    atomic_store(&lat_consumer_ready, 1);
                }
            }
        } else if (m->err) {
            if (lc->errors++ == 0)
                fprintf(stderr, "  latency %s consumer: %s\n", topic, rd_kafka_message_errstr(m));
        } else {
            int64_t id = -1, sched = 0;
            if (m->len >= 16) {
                memcpy(&id, m->payload, 8);
                memcpy(&sched, (const char *)m->payload + 8, 8);
            }
            if (id >= 0 && id < lat_total && sched == sched_ns((long)id)) {
                if (e2e_lat[id] < 0) {
                    e2e_lat[id] = t - sched;
                    atomic_fetch_add_explicit(&lat_received, 1, memory_order_relaxed);
                } else {
                    atomic_fetch_add_explicit(&lat_dups, 1, memory_order_relaxed);
                }
            } else {
                atomic_fetch_add_explicit(&lat_foreign, 1, memory_order_relaxed);
            }
        }
        rd_kafka_message_destroy(m);
    }
    free(eof);
    return NULL;
}

static long count_missing(long sent) {
    long missing = 0;
    for (long i = 0; i < sent; i++)
        if (prod_lat[i] >= 0 && e2e_lat[i] < 0)
            missing++;
    return missing;
}

static void latency(struct sbuf *json) {
    char err[512];
    lat_total = (long)(rate * duration_s + 0.5);
    prod_lat = malloc((size_t)lat_total * sizeof *prod_lat);
    e2e_lat = malloc((size_t)lat_total * sizeof *e2e_lat);
    char *value = make_payload();
    if (!prod_lat || !e2e_lat)
        die("%s", "out of memory");
    for (long i = 0; i < lat_total; i++)
        prod_lat[i] = e2e_lat[i] = -1;

    rd_kafka_t *rk = new_producer(NULL, lat_dr_cb, -1);
    create_topic(rk);

    /* The end-to-end consumer: every partition from its high watermark. */
    struct lat_consumer lc = {NULL, 0, 0};
    pthread_t cthread;
    int64_t assign_ns = 0;
    if (do_consume) {
        rd_kafka_conf_t *conf = base_conf();
        set_conf(conf, "group.id", "sluice-rdkafka-bench-latency");
        set_conf(conf, "enable.auto.commit", "false");
        set_conf(conf, "enable.auto.offset.store", "false");
        set_conf(conf, "enable.partition.eof", "true");
        apply_extra(conf);
        lc.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
        if (!lc.rk)
            die("consumer: %s", err);
        rd_kafka_poll_set_consumer(lc.rk);
        lc.n_parts = topic_partitions(lc.rk);
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(lc.n_parts);
        for (int p = 0; p < lc.n_parts; p++) {
            /* Right after the topic is created a broker may still answer
             * "not leader" (Kafka does): retry for up to 30 s. */
            int64_t lo = 0, hi = 0, give_up = now_ns() + 30 * NS_PER_S;
            rd_kafka_resp_err_t e;
            while ((e = rd_kafka_query_watermark_offsets(lc.rk, topic, p, &lo, &hi, 10000)) != 0 && !stop &&
                   now_ns() < give_up &&
                   (e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION || e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                    e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__TIMED_OUT ||
                    e == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT || e == RD_KAFKA_RESP_ERR__TRANSPORT ||
                    e == RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE))
                sleep_ns(100 * 1000000LL);
            if (e)
                die("watermarks: %s", rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_add(parts, topic, p)->offset = hi;
        }
        assign_ns = now_ns();
        rd_kafka_resp_err_t e = rd_kafka_assign(lc.rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        if (e)
            die("assign: %s", rd_kafka_err2str(e));
        if (pthread_create(&cthread, NULL, lat_consumer_main, &lc))
            die("%s", "pthread_create failed");
        int64_t ready_deadline = assign_ns + 10 * NS_PER_S;
        while (!atomic_load(&lat_consumer_ready) && !stop && now_ns() < ready_deadline)
            sleep_ns(5 * 1000000LL);
        if (!atomic_load(&lat_consumer_ready))
            fprintf(stderr, "  latency %s: the consumer did not reach the end of every partition in 10 s; "
                            "producing anyway\n", topic);
    }

    /* Sleep precisely: the default 50 us timer slack would delay every
     * wake-up (the delay is part of the measured latency). */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    pthread_t poller;
    if (pthread_create(&poller, NULL, lat_poller_main, rk))
        die("%s", "pthread_create failed");
    lat_t0 = now_ns();
    int64_t next_report = lat_t0 + NS_PER_S, max_lag = 0;
    long sent = 0;
    while (sent < lat_total && !stop) {
        int64_t due = sched_ns(sent), t = now_ns();
        if (t >= next_report) {
            fprintf(stderr, "  latency %s: sent %ld/%ld (%.1f ms behind schedule), delivered %ld, received %ld\n",
                    topic, sent, lat_total, t > due ? (t - due) / 1e6 : 0.0, atomic_load(&lat_reports),
                    atomic_load(&lat_received));
            next_report = t + NS_PER_S;
        }
        if (t < due) {
            struct timespec ts = {(time_t)(due / NS_PER_S), (long)(due % NS_PER_S)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            continue;
        }
        if (t - due > max_lag)
            max_lag = t - due;
        int64_t head[2] = {sent, due};
        memcpy(value, head, sizeof head);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION((int32_t)(sent % partitions)),
            RD_KAFKA_V_VALUE(value, (size_t)record_size), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE((void *)(intptr_t)sent), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            sleep_ns(100 * 1000LL); /* the poller frees room */
            continue;
        }
        if (e)
            die("produce: %s", rd_kafka_err2str(e));
        sent++;
    }
    int64_t deadline = now_ns() + (int64_t)timeout_s * NS_PER_S;
    while (atomic_load(&lat_reports) < sent && !stop && now_ns() < deadline) {
        sleep_ns(20 * 1000000LL);
        int64_t t = now_ns();
        if (t >= next_report) {
            fprintf(stderr, "  latency %s: sent %ld/%ld, delivered %ld, received %ld\n", topic, sent, lat_total,
                    atomic_load(&lat_reports), atomic_load(&lat_received));
            next_report = t + NS_PER_S;
        }
    }
    atomic_store(&lat_poller_stop, 1);
    pthread_join(poller, NULL); /* the delivery counters are final from here */
    long reports = atomic_load(&lat_reports);
    if (reports < sent)
        fprintf(stderr, "  latency %s: %ld of %ld records without a delivery report after %d s\n", topic,
                sent - reports, sent, timeout_s);

    long missing = 0;
    if (do_consume) {
        int64_t wait_until = (lat_delivered_ok ? lat_last_delivery_ns : now_ns()) + 10 * NS_PER_S;
        for (;;) {
            int64_t t = now_ns();
            if (atomic_load(&lat_received) >= lat_delivered_ok && count_missing(sent) == 0)
                break;
            if (t >= wait_until || stop)
                break;
            if (t >= next_report) {
                fprintf(stderr, "  latency %s: waiting for the consumer, received %ld of %ld delivered\n", topic,
                        atomic_load(&lat_received), lat_delivered_ok);
                next_report = t + NS_PER_S;
            }
            sleep_ns(20 * 1000000LL);
        }
        atomic_store(&lat_consumer_stop, 1);
        pthread_join(cthread, NULL);
        missing = count_missing(sent);
    }

    /* Pack the samples to the front of each array and sort. */
    long np = 0, ne = 0;
    for (long i = 0; i < sent; i++) {
        if (prod_lat[i] >= 0)
            prod_lat[np++] = prod_lat[i];
        if (e2e_lat[i] >= 0)
            e2e_lat[ne++] = e2e_lat[i];
    }
    struct pct pp = percentiles(prod_lat, np);
    struct pct pe = percentiles(e2e_lat, ne);
    double span = lat_delivered_ok ? (lat_last_delivery_ns - lat_t0) / 1e9 : 0;
    double achieved = span > 0 ? lat_delivered_ok / span : 0;
    long received = atomic_load(&lat_received), dups = atomic_load(&lat_dups), foreign = atomic_load(&lat_foreign);

    fprintf(stderr, "  latency %s: target %.0f/s, achieved %.0f/s; delivered %ld, errors %ld%s%s\n", topic, rate,
            achieved, lat_delivered_ok, lat_errors, lat_errors ? ": " : "", lat_first_error);
    fprintf(stderr, "  latency %s: produce p50 %.2f p99 %.2f p99.9 %.2f max %.2f ms\n", topic, pp.p50, pp.p99,
            pp.p999, pp.max);
    if (do_consume)
        fprintf(stderr,
                "  latency %s: end-to-end p50 %.2f p99 %.2f p99.9 %.2f max %.2f ms; received %ld, missing %ld%s\n",
                topic, pe.p50, pe.p99, pe.p999, pe.max, received, missing,
                foreign ? " (and records not from this run)" : "");

    sb_printf(json,
              "\"latency\":{\"target_rate\":%.1f,\"duration_s\":%.3f,\"scheduled\":%ld,\"sent\":%ld,"
              "\"delivered\":%ld,",
              rate, duration_s, lat_total, sent, lat_delivered_ok);
    if (do_consume)
        sb_printf(json, "\"received\":%ld,", received);
    else
        sb_printf(json, "\"received\":null,");
    sb_printf(json, "\"errors\":%ld,", lat_errors);
    if (do_consume)
        sb_printf(json, "\"missing\":%ld,", missing);
    else
        sb_printf(json, "\"missing\":null,");
    sb_printf(json, "\"duplicates\":%ld,\"achieved_rate\":%.1f,\"produce_span_s\":%.4f,\"max_send_lag_ms\":%.3f,",
              dups, achieved, span, max_lag / 1e6);
    if (do_consume && atomic_load(&lat_consumer_ready))
        sb_printf(json, "\"consumer_ready_s\":%.4f,", (lat_ready_ns - assign_ns) / 1e9);
    else
        sb_printf(json, "\"consumer_ready_s\":null,");
    sb_printf(json, "\"produce_latency_ms\":");
    sb_pct(json, pp);
    sb_printf(json, ",\"e2e_latency_ms\":");
    if (do_consume)
        sb_pct(json, pe);
    else
        sb_printf(json, "null");
    sb_printf(json, "}");

    if (do_consume) {
        rd_kafka_consumer_close(lc.rk);
        rd_kafka_destroy(lc.rk);
    }
    rd_kafka_destroy(rk);
    free(value);
    free(prod_lat);
    free(e2e_lat);
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
    fprintf(stderr,
            "usage: rdkafka_bench --bootstrap HOST:PORT --topic T [--records N] [--size S] [--partitions P]\n"
            "                     [--acks 0|1|all] [--linger-ms MS] [--batch-bytes B]\n"
            "                     [--compression none|gzip|snappy|lz4|zstd] [--idempotence true|false]\n"
            "                     [--producers K] [--consumers K] [--group G] [--rate R --duration-s D]\n"
            "                     [--no-consume] [--no-produce] [--timeout-s SEC] [--keys K] [--txn-records T]\n"
            "                     [-X name=value]...\n");
    exit(2);
}

static long parse_long(const char *flag, const char *v, long min) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < min)
        bad_usage("%s wants an integer >= %ld, not `%s`", flag, min, v);
    return x;
}

static double parse_positive(const char *flag, const char *v) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x > 0) || x > 1e12)
        bad_usage("%s wants a positive number, not `%s`", flag, v);
    return x;
}

static const char *parse_choice(const char *flag, const char *v, const char *const *choices) {
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        if (strcmp(v, choices[i]) == 0)
            return choices[i];
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? "|" : "", choices[i]);
    }
    bad_usage("%s wants %s, not `%s`", flag, list, v);
}

static void add_extra(const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        bad_usage("-X wants name=value, not `%s`", kv);
    struct setting *s = realloc(extra, (size_t)(n_extra + 1) * sizeof *extra);
    if (!s)
        die("%s", "out of memory");
    extra = s;
    extra[n_extra].name = strndup(kv, (size_t)(eq - kv));
    extra[n_extra].value = eq + 1;
    if (strcmp(extra[n_extra].name, "debug") == 0)
        log_debug = 1;
    n_extra++;
}

int main(int argc, char **argv) {
    static const char *const compressions[] = {"none", "gzip", "snappy", "lz4", "zstd", NULL};
    static const char *const booleans[] = {"true", "false", NULL};
    int consumers_given = 0, producers_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--no-consume") == 0) {
            do_consume = 0;
            continue;
        }
        if (strcmp(a, "--no-produce") == 0) {
            do_produce = 0;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            usage();
        static const char *const with_value[] = {
            "--bootstrap", "--topic", "--records", "--size", "--partitions", "--acks", "--linger-ms",
            "--batch-bytes", "--timeout-s", "--compression", "--idempotence", "--producers", "--consumers",
            "--group", "--rate", "--duration-s", "--keys", "--txn-records", "-X", NULL};
        int known = 0;
        for (int k = 0; with_value[k]; k++)
            known |= strcmp(a, with_value[k]) == 0;
        if (!known) {
            fprintf(stderr, "rdkafka_bench: unknown argument `%s`\n", a);
            usage();
        }
        if (i + 1 >= argc)
            bad_usage("%s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--bootstrap") == 0) bootstrap = v;
        else if (strcmp(a, "--topic") == 0) topic = v;
        else if (strcmp(a, "--records") == 0) n_records = parse_long(a, v, 1);
        else if (strcmp(a, "--size") == 0) record_size = (int)parse_long(a, v, 1);
        else if (strcmp(a, "--partitions") == 0) partitions = (int)parse_long(a, v, 1);
        else if (strcmp(a, "--acks") == 0) acks = v;
        else if (strcmp(a, "--linger-ms") == 0) linger_ms = (int)parse_long(a, v, 0);
        else if (strcmp(a, "--batch-bytes") == 0) batch_bytes = parse_long(a, v, 1);
        else if (strcmp(a, "--timeout-s") == 0) timeout_s = (int)parse_long(a, v, 1);
        else if (strcmp(a, "--compression") == 0) compression = parse_choice(a, v, compressions);
        else if (strcmp(a, "--idempotence") == 0) idempotence = parse_choice(a, v, booleans);
        else if (strcmp(a, "--producers") == 0) n_producers = (int)parse_long(a, v, 1), producers_given = 1;
        else if (strcmp(a, "--consumers") == 0) n_consumers = (int)parse_long(a, v, 1), consumers_given = 1;
        else if (strcmp(a, "--group") == 0) group = v;
        else if (strcmp(a, "--rate") == 0) rate = parse_positive(a, v);
        else if (strcmp(a, "--duration-s") == 0) duration_s = parse_positive(a, v);
        else if (strcmp(a, "--keys") == 0) n_keys = parse_long(a, v, 0);
        else if (strcmp(a, "--txn-records") == 0) txn_records = parse_long(a, v, 0);
        else if (strcmp(a, "-X") == 0) add_extra(v);
    }
    if (!bootstrap || !topic)
        bad_usage("--bootstrap and --topic are required");
    if (!(do_produce || do_consume))
        bad_usage("--no-produce and --no-consume together leave nothing to do");
    if (n_producers > 1024 || n_consumers > 1024)
        bad_usage("--producers and --consumers are limited to 1024");
    if (n_consumers > 1 && !group)
        bad_usage("--consumers %d needs --group G: without a group, one consumer assigns every partition itself",
                  n_consumers);
    int latency_mode = rate > 0 || duration_s > 0;
    if (txn_records > 0 && (latency_mode || strcmp(acks, "all") != 0 || strcmp(idempotence, "true") != 0))
        bad_usage("%s", "--txn-records needs throughput mode, --acks all and --idempotence true");
    if (latency_mode) {
        if (!(rate > 0 && duration_s > 0))
            bad_usage("latency mode needs both --rate R and --duration-s D");
        if (record_size < 16)
            bad_usage("latency mode needs --size >= 16 (the record number and send time take 16 bytes), not %d",
                      record_size);
        if (!do_produce)
            bad_usage("latency mode produces: --no-produce does not go with --rate");
        if (producers_given && n_producers != 1)
            bad_usage("latency mode has one producer: --producers %d does not go with --rate", n_producers);
        if (group || consumers_given)
            bad_usage("latency mode has its own consumer (assigned, no group): --group/--consumers do not go with "
                      "--rate");
        if (n_keys)
            bad_usage("%s", "latency mode sends keyless records: --keys does not go with --rate");
        double total = rate * duration_s + 0.5;
        if (total < 1 || total > 500e6)
            bad_usage("--rate x --duration-s gives %.0f records; 1 to 500000000 are allowed", total - 0.5);
        n_records = (long)total;
    }
    /* Check the -X settings now, so a typo fails before anything runs. */
    if (n_extra) {
        rd_kafka_conf_t *probe = rd_kafka_conf_new();
        extra_exit_status = 2;
        apply_extra(probe);
        extra_exit_status = 1;
        rd_kafka_conf_destroy(probe);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    if (latency_mode)
        fprintf(stderr,
                "rdkafka_bench (librdkafka %s): latency, %.0f records/s x %.1f s of %d B to %s (%d partitions), "
                "acks=%s, linger.ms=%d, batch.size=%ld, compression=%s, idempotence=%s\n",
                rd_kafka_version_str(), rate, duration_s, record_size, topic, partitions, acks, linger_ms,
                batch_bytes, compression, idempotence);
    else if (do_produce)
        fprintf(stderr,
                "rdkafka_bench (librdkafka %s): %ld x %d B to %s (%d partitions), acks=%s, linger.ms=%d, "
                "batch.size=%ld, compression=%s, idempotence=%s, %d producer%s\n",
                rd_kafka_version_str(), n_records, record_size, topic, partitions, acks, linger_ms, batch_bytes,
                compression, idempotence, n_producers, n_producers == 1 ? "" : "s");
    else
        fprintf(stderr, "rdkafka_bench (librdkafka %s): consume %ld records from %s (%d partitions)\n",
                rd_kafka_version_str(), n_records, topic, partitions);
    if (do_consume && !latency_mode && group)
        fprintf(stderr, "rdkafka_bench: consuming with %d consumer%s in group %s\n", n_consumers,
                n_consumers == 1 ? "" : "s", group);

    struct sbuf pj = {0}, cj = {0}, lj = {0};
    if (latency_mode) {
        latency(&lj);
    } else {
        if (do_produce)
            produce(&pj);
        if (do_consume && !stop)
            consume(&cj);
    }

    struct sbuf out = {0};
    sb_printf(&out, "{\"librdkafka\":");
    sb_str(&out, rd_kafka_version_str());
    sb_printf(&out, ",\"mode\":\"%s\",\"topic\":", latency_mode ? "latency" : "throughput");
    sb_str(&out, topic);
    sb_printf(&out, ",\"records\":%ld,\"size\":%d,\"keys\":%ld,\"partitions\":%d,\"acks\":", n_records, record_size,
              n_keys, partitions);
    sb_str(&out, acks);
    sb_printf(&out, ",\"linger_ms\":%d,\"batch_bytes\":%ld,\"compression\":\"%s\",\"idempotence\":%s,\"config\":{",
              linger_ms, batch_bytes, compression, idempotence);
    for (int i = 0; i < n_extra; i++) {
        sb_printf(&out, "%s", i ? "," : "");
        sb_str(&out, extra[i].name);
        sb_printf(&out, ":");
        sb_str(&out, extra[i].value);
    }
    sb_printf(&out, "}");
    if (pj.len)
        sb_printf(&out, ",%s", pj.p);
    if (cj.len)
        sb_printf(&out, ",%s", cj.p);
    if (lj.len)
        sb_printf(&out, ",%s", lj.p);
    sb_printf(&out, "}");
    printf("%s\n", out.p);
    return 0;
}
