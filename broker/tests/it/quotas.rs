//! Client quotas over the wire: AlterClientQuotas / DescribeClientQuotas
//! (validation, KIP-546 filters, validate_only, persistence across a
//! restart), producer and consumer byte rates (throttle_time_ms, the muted
//! connection, capped fetches), the controller mutation quota (KIP-599) and
//! the cluster partition cap.

use std::time::{Duration, Instant};

use crate::support::*;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiVersionsRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, DescribeConfigsRequest, FetchResponse, ProduceResponse,
};
use sluice_protocol::ErrorCode;

fn entity(components: &[(&str, Option<&str>)]) -> Vec<EntityData> {
    components
        .iter()
        .map(|(t, n)| {
            let mut e = EntityData::default();
            e.entity_type = s(t);
            e.entity_name = n.map(s);
            e
        })
        .collect()
}

fn entry(components: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]) -> EntryData {
    let mut e = EntryData::default();
    e.entity = entity(components);
    e.ops = ops
        .iter()
        .map(|(k, v, remove)| {
            let mut o = OpData::default();
            o.key = s(k);
            o.value = *v;
            o.remove = *remove;
            o
        })
        .collect();
    e
}

fn alter(c: &mut Client, entries: Vec<EntryData>, validate_only: bool) -> Vec<(i16, String)> {
    let mut req = AlterClientQuotasRequest::default();
    req.entries = entries;
    req.validate_only = validate_only;
    let resp: AlterClientQuotasResponse = c.send(1, &req);
    resp.entries
        .iter()
        .map(|e| {
            (
                e.error_code,
                e.error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn set_quota(c: &mut Client, components: &[(&str, Option<&str>)], key: &str, value: f64) {
    let r = alter(c, vec![entry(components, &[(key, value, false)])], false);
    assert_eq!(r, vec![(0, String::new())], "{key}={value}");
}

/// (entity as (type, name) pairs, sorted values) per matching entry.
type Described = Vec<(Vec<(String, Option<String>)>, Vec<(String, f64)>)>;

fn describe(c: &mut Client, filter: &[(&str, i8, Option<&str>)], strict: bool) -> (i16, Described) {
    let mut req = DescribeClientQuotasRequest::default();
    req.components = filter
        .iter()
        .map(|(t, m, n)| {
            let mut d = ComponentData::default();
            d.entity_type = s(t);
            d.match_type = *m;
            d._match = n.map(s);
            d
        })
        .collect();
    req.strict = strict;
    let resp: DescribeClientQuotasResponse = c.send(1, &req);
    let mut out: Described = resp
        .entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let ent = e
                .entity
                .iter()
                .map(|d| {
                    (
                        d.entity_type.to_string(),
                        d.entity_name.as_ref().map(|n| n.to_string()),
                    )
                })
                .collect();
            let mut vals: Vec<(String, f64)> = e
                .values
                .iter()
                .map(|v| (v.key.to_string(), v.value))
                .collect();
            vals.sort_by(|a, b| a.0.cmp(&b.0));
            (ent, vals)
        })
        .collect();
    out.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
    (resp.error_code, out)
}

fn ent(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(t, n)| (t.to_string(), n.map(String::from)))
        .collect()
}

#[test]
fn client_quotas_are_validated_described_and_survive_a_restart() {
    let mut broker = Broker::start();
    let mut c = broker.client();
    let invalid = ErrorCode::InvalidRequest.code();

    // One request: two valid entries and four bad ones, each answered alone.
    let r = alter(
        &mut c,
        vec![
            entry(
                &[("user", Some("alice"))],
                &[
                    ("producer_byte_rate", 1024.0, false),
                    ("request_percentage", 25.5, false),
                ],
            ),
            entry(
                &[("client-id", None)],
                &[("consumer_byte_rate", 2048.0, false)],
            ),
            entry(&[("user", Some("bob"))], &[("fetch_rate", 1.0, false)]),
            entry(
                &[("user", Some("bob"))],
                &[("producer_byte_rate", -1.0, false)],
            ),
            entry(
                &[("user", Some("bob")), ("user", Some("carol"))],
                &[("producer_byte_rate", 1.0, false)],
            ),
            entry(&[], &[("producer_byte_rate", 1.0, false)]),
        ],
        false,
    );
    let codes: Vec<i16> = r.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        codes,
        vec![0, 0, invalid, invalid, invalid, invalid],
        "{r:?}"
    );
    assert!(r[2].1.contains("fetch_rate"), "{r:?}");

    // validate_only checks but writes nothing.
    let r = alter(
        &mut c,
        vec![entry(
            &[("user", Some("dave"))],
            &[("producer_byte_rate", 5.0, false)],
        )],
        true,
    );
    assert_eq!(r, vec![(0, String::new())]);
    let r = alter(
        &mut c,
        vec![entry(
            &[("user", Some("dave"))],
            &[("producer_byte_rate", -5.0, false)],
        )],
        true,
    );
    assert_eq!(r[0].0, invalid);
    set_quota(
        &mut c,
        &[("user", Some("alice")), ("client-id", Some("app"))],
        "controller_mutation_rate",
        3.0,
    );

    let check = |c: &mut Client| {
        // Everything, not strict.
        let (code, all) = describe(c, &[], false);
        assert_eq!(code, 0);
        assert_eq!(all.len(), 3, "{all:?}");
        // Exact user, strict: only alice's user-level entity.
        let (_, alice) = describe(c, &[("user", 0, Some("alice"))], true);
        assert_eq!(
            alice,
            vec![(
                ent(&[("user", Some("alice"))]),
                vec![
                    ("producer_byte_rate".to_string(), 1024.0),
                    ("request_percentage".to_string(), 25.5)
                ]
            )]
        );
        // Exact user, not strict: also alice with client app.
        assert_eq!(describe(c, &[("user", 0, Some("alice"))], false).1.len(), 2);
        // The default client id.
        let (_, d) = describe(c, &[("client-id", 1, None)], false);
        assert_eq!(
            d,
            vec![(
                ent(&[("client-id", None)]),
                vec![("consumer_byte_rate".to_string(), 2048.0)]
            )]
        );
        // Any client id together with any user.
        let (_, both) = describe(c, &[("user", 2, None), ("client-id", 2, None)], true);
        assert_eq!(
            both[0].0,
            ent(&[("user", Some("alice")), ("client-id", Some("app"))])
        );
        assert_eq!(both.len(), 1);
        // dave was only validated.
        assert!(describe(c, &[("user", 0, Some("dave"))], false)
            .1
            .is_empty());
    };
    check(&mut c);
    // A bad filter fails the whole request.
    assert_eq!(describe(&mut c, &[("user", 0, None)], false).0, invalid);
    assert_eq!(describe(&mut c, &[("group", 2, None)], false).0, invalid);

    broker.restart();
    let mut c = broker.client();
    check(&mut c);

    // Removing keys; an entity with none left is gone.
    let r = alter(
        &mut c,
        vec![entry(
            &[("user", Some("alice"))],
            &[
                ("producer_byte_rate", 0.0, true),
                ("request_percentage", 0.0, true),
            ],
        )],
        false,
    );
    assert_eq!(r[0].0, 0);
    assert!(describe(&mut c, &[("user", 0, Some("alice"))], true)
        .1
        .is_empty());
}

fn big_batch(records: usize, size: usize) -> bytes::Bytes {
    let value = "v".repeat(size);
    let values: Vec<&str> = (0..records).map(|_| value.as_str()).collect();
    batch(&values)
}

#[test]
fn a_producer_over_its_quota_is_throttled_and_muted_others_are_not() {
    let broker = Broker::start_opts(Opts {
        metrics: true,
        ..Opts::default()
    });
    let mut admin = broker.client();
    create_topic_ok(&mut admin, "quota-produce", 1, &[]);
    set_quota(
        &mut admin,
        &[("client-id", Some("slow"))],
        "producer_byte_rate",
        10_000.0,
    );

    let mut slow = broker.client();
    slow.client_id = "slow";
    // 10 s x 10 kB/s fit in a fresh window; 120 kB is 20% over: the
    // producer is told to wait about 2 s.
    let first = produce(&mut slow, "quota-produce", 0, big_batch(25, 4000));
    assert_eq!(first.error_code, 0);
    let resp: ProduceResponse = slow.send(
        9,
        &produce_request(-1, &[("quota-produce", 0, big_batch(5, 4000))]),
    );
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    let throttle = resp.throttle_time_ms;
    assert!((1000..=3000).contains(&throttle), "throttle {throttle} ms");

    // The connection is muted: its next request waits out the throttle.
    let asked = Instant::now();
    let _ = slow.send(3, &ApiVersionsRequest::default());
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(throttle as u64 / 2),
        "answered after {waited:?}, throttle {throttle} ms"
    );

    // Another client id is not throttled, even on the same topic.
    let mut free = broker.client();
    free.client_id = "free";
    let resp: ProduceResponse = free.send(
        9,
        &produce_request(-1, &[("quota-produce", 0, big_batch(50, 4000))]),
    );
    assert_eq!(resp.throttle_time_ms, 0);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);

    // The throttle shows in the metrics, per entity.
    let metrics = scrape(broker.metrics_port.expect("metrics port"));
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("sluice_quota_throttle_time_ms_total{quota=\"producer_byte_rate\",user=\"\",client_id=\"slow\"}")
        })
        .unwrap_or_else(|| panic!("no throttle series for client slow in:\n{metrics}"));
    let total: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(total >= throttle as f64, "{line}");
    assert!(!metrics.contains("client_id=\"free\""), "free has no quota");
}

fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn a_consumer_over_its_quota_gets_capped_then_empty_throttled_fetches() {
    let broker = Broker::start();
    let mut admin = broker.client();
    let id = create_topic_ok(&mut admin, "quota-fetch", 1, &[]);
    for _ in 0..40 {
        produce_ok(&mut admin, "quota-fetch", 0, big_batch(1, 4000));
    }
    set_quota(
        &mut admin,
        &[("user", None), ("client-id", None)],
        "consumer_byte_rate",
        5_000.0,
    );
    let topic = TopicRef {
        name: "quota-fetch".into(),
        id,
    };
    let mut reader = broker.client();
    reader.client_id = "reader";
    // One window's worth is (11 - 1) x 5 kB = 50 kB: the first answer is
    // capped there although 160 kB are there and the client asks for 50 MB.
    let resp: FetchResponse = reader.send(12, &fetch_request(12, &topic, &[(0, 0)], 0, 1));
    let got = resp.responses[0].partitions[0]
        .records
        .as_ref()
        .map_or(0, |r| r.len());
    assert!((4000..=50_000 + 4200).contains(&got), "{got} bytes");
    assert_eq!(resp.throttle_time_ms, 0);
    // Next fetches go over: answered at once with no records and a
    // throttle time (the client backs off), the connection muted.
    let mut next = 0;
    for r in decode(resp.responses[0].partitions[0].records.as_ref()) {
        next = r.offset + 1;
    }
    let mut other = broker.client();
    other.client_id = "reader";
    let resp: FetchResponse = other.send(12, &fetch_request(12, &topic, &[(0, next)], 0, 1));
    let p = &resp.responses[0].partitions[0];
    assert!(resp.throttle_time_ms > 0, "{}", resp.throttle_time_ms);
    assert!(
        p.records.as_ref().is_none_or(|r| r.is_empty()),
        "a throttled fetch carries no records"
    );
    assert_eq!(p.error_code, 0);
    // The admin connection (client id "sluice-it") reads on unthrottled...
    // under the default quota too, but its own entity: not yet over it.
    let resp: FetchResponse = admin.send(12, &fetch_request(12, &topic, &[(0, 0)], 0, 1));
    assert_eq!(resp.throttle_time_ms, 0);
    assert!(resp.responses[0].partitions[0].records.is_some());
}

fn create_topics(c: &mut Client, version: i16, topics: &[(&str, i32)]) -> (i32, Vec<i16>) {
    let mut req = CreateTopicsRequest::default();
    req.timeout_ms = 10_000;
    req.topics = topics
        .iter()
        .map(|(name, n)| {
            let mut t = CreatableTopic::default();
            t.name = topic_name(name);
            t.num_partitions = *n;
            t.replication_factor = 1;
            t
        })
        .collect();
    let resp = c.send(version, &req);
    (
        resp.throttle_time_ms,
        resp.topics.iter().map(|t| t.error_code).collect(),
    )
}

#[test]
fn topic_creation_follows_the_mutation_quota_and_the_partition_cap() {
    let broker = Broker::start_with("\"quota.cluster.max.partitions\" = 30\n");
    let mut admin = broker.client();
    set_quota(
        &mut admin,
        &[("client-id", Some("creator"))],
        "controller_mutation_rate",
        1.0,
    );
    let mut creator = broker.client();
    creator.client_id = "creator";
    // 10 partitions fit in a fresh window (1/s over 10 s); the next topic
    // is still checked before recording, so it goes through and puts the
    // rate over; the third is refused (strict, v6+).
    let (throttle, codes) = create_topics(&mut creator, 7, &[("m1", 10), ("m2", 5), ("m3", 1)]);
    assert_eq!(
        codes,
        vec![0, 0, ErrorCode::ThrottlingQuotaExceeded.code()],
        "{codes:?}"
    );
    assert!(throttle > 0);
    // An old version (permissive) creates and is throttled.
    let mut old = broker.client();
    old.client_id = "creator";
    let (throttle, codes) = create_topics(&mut old, 5, &[("m4", 1)]);
    assert_eq!(codes, vec![0]);
    assert!(throttle > 0);

    // The partition cap: 16 partitions exist (internal topics do not
    // count); 15 more would exceed 30.
    let (_, codes) = create_topics(&mut admin, 7, &[("big", 15), ("small", 14)]);
    assert_eq!(
        codes,
        vec![ErrorCode::PolicyViolation.code(), 0],
        "{codes:?}"
    );
    let mut req = CreatePartitionsRequest::default();
    req.timeout_ms = 10_000;
    let mut t = CreatePartitionsTopic::default();
    t.name = topic_name("small");
    t.count = 16;
    req.topics = vec![t];
    let resp = admin.send(3, &req);
    assert_eq!(
        resp.results[0].error_code,
        ErrorCode::PolicyViolation.code(),
        "{:?}",
        resp.results[0].error_message
    );
    // The cap is listed with the broker's configs.
    let mut res = DescribeConfigsResource::default();
    res.resource_type = 4;
    res.resource_name = s("1");
    res.configuration_keys = Some(vec![s("quota.cluster.max.partitions")]);
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let resp = admin.send(4, &req);
    let cfgs = &resp.results[0].configs;
    assert_eq!(cfgs.len(), 1);
    assert_eq!(
        cfgs[0].value.as_ref().map(|v| v.to_string()),
        Some("30".into())
    );
}

#[test]
fn quota_apis_need_the_cluster_dynamic_configuration_actions() {
    // The PLAINTEXT listener's principal may describe but not alter the
    // cluster's dynamic configuration.
    let config = "[auth]\nregion = \"us-east-1\"\naccount = \"123456789012\"\ncluster_name = \"quotas\"\ncluster_uuid = \"11111111-2222-3333-4444-555555555555\"\n\
[[auth.policies]]\nprincipal = \"User:ANONYMOUS\"\ndocument = '''\n{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Action\": [\"kafka-cluster:Connect\", \"kafka-cluster:DescribeClusterDynamicConfiguration\"], \"Resource\": \"arn:aws:kafka:us-east-1:123456789012:cluster/quotas/*\"}]}\n'''\n";
    let broker = Broker::start_with(config);
    let mut c = broker.client();
    let r = alter(
        &mut c,
        vec![entry(
            &[("user", Some("alice"))],
            &[("producer_byte_rate", 1.0, false)],
        )],
        false,
    );
    assert_eq!(
        r[0].0,
        ErrorCode::ClusterAuthorizationFailed.code(),
        "{r:?}"
    );
    assert!(r[0].1.contains("AlterClusterDynamicConfiguration"), "{r:?}");
    let (code, entries) = describe(&mut c, &[], false);
    assert_eq!(code, 0);
    assert!(entries.is_empty(), "nothing was written");
}

#[test]
fn describe_client_quotas_without_the_action_is_refused() {
    let config = "[auth]\nregion = \"us-east-1\"\naccount = \"123456789012\"\ncluster_name = \"quotas\"\ncluster_uuid = \"11111111-2222-3333-4444-555555555555\"\n\
[[auth.policies]]\nprincipal = \"User:ANONYMOUS\"\ndocument = '''\n{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Action\": [\"kafka-cluster:Connect\", \"kafka-cluster:AlterClusterDynamicConfiguration\"], \"Resource\": \"arn:aws:kafka:us-east-1:123456789012:cluster/quotas/*\"}]}\n'''\n";
    let broker = Broker::start_with(config);
    let mut c = broker.client();
    set_quota(
        &mut c,
        &[("user", Some("alice"))],
        "producer_byte_rate",
        1.0,
    );
    let (code, _) = describe(&mut c, &[], false);
    assert_eq!(code, ErrorCode::ClusterAuthorizationFailed.code());
}
