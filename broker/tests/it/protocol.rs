//! Wire-level behaviour of `sluiced` seen by a client: Produce/Fetch across
//! versions, long polling, topic administration, produce errors and
//! requests that span both shards.

use crate::support::*;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    CreatePartitionsRequest, DeleteTopicsRequest, DescribeConfigsRequest, FetchResponse,
};
use sluice_protocol::ErrorCode;

#[test]
fn produce_fetch_round_trip_across_versions() {
    let broker = Broker::start();
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "roundtrip", 1, &[]);
    let topic = TopicRef {
        name: "roundtrip".into(),
        id,
    };
    assert_eq!(
        topic_ref(&mut c, "roundtrip").id,
        id,
        "Metadata and CreateTopics agree on the topic id"
    );

    // Three records per batch, one batch per Produce version.
    let produce_versions = [3i16, 8, 9, 11];
    let mut expected: Vec<String> = Vec::new();
    for (i, v) in produce_versions.iter().enumerate() {
        let values: Vec<String> = (0..3).map(|j| format!("p{v}-{j}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let r = produce_v(&mut c, *v, "roundtrip", 0, batch(&refs));
        assert_eq!(
            r.error_code,
            ErrorCode::None.code(),
            "produce v{v}: {:?}",
            r.error_message
        );
        assert_eq!(
            r.base_offset,
            3 * i as i64,
            "produce v{v}: offsets are contiguous"
        );
        expected.extend(values);
    }
    let end = expected.len() as i64;
    assert_eq!(offset_of(&mut c, "roundtrip", 0, LATEST), end);

    // Fetch v4 is covered (and currently fails) in
    // `fetch_v4_to_v6_responses_are_well_formed` below.
    for v in [7i16, 11, 12, 13, 16] {
        // Whole log from 0.
        let p = fetch_v(&mut c, v, &topic, 0, 0);
        assert_eq!(p.error_code, ErrorCode::None.code(), "fetch v{v} from 0");
        assert_eq!(p.high_watermark, end, "fetch v{v}: high watermark");
        let recs = decode(p.records.as_ref());
        let offsets: Vec<i64> = recs.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..end).collect::<Vec<_>>(), "fetch v{v}: offsets");
        let values: Vec<String> = recs.iter().map(Rec::value_str).collect();
        assert_eq!(values, expected, "fetch v{v}: values");

        // From the middle of the second batch (offsets 3..=5): the answer
        // starts with the batch that holds offset 4.
        let p = fetch_v(&mut c, v, &topic, 0, 4);
        assert_eq!(p.error_code, ErrorCode::None.code(), "fetch v{v} from 4");
        let bases = batch_bases(p.records.as_ref());
        assert_eq!(
            bases.first().copied(),
            Some((3, 5)),
            "fetch v{v} from 4 starts with the batch holding 4"
        );
        assert!(decode(p.records.as_ref())
            .iter()
            .any(|r| r.offset == 4 && r.value_str() == expected[4]));

        // At the high watermark: no error, no records.
        let p = fetch_v(&mut c, v, &topic, 0, end);
        assert_eq!(
            p.error_code,
            ErrorCode::None.code(),
            "fetch v{v} at the high watermark"
        );
        assert!(
            decode(p.records.as_ref()).is_empty(),
            "fetch v{v} at the high watermark returns no records"
        );

        // Beyond it: OFFSET_OUT_OF_RANGE.
        let p = fetch_v(&mut c, v, &topic, 0, end + 1);
        assert_eq!(
            p.error_code,
            ErrorCode::OffsetOutOfRange.code(),
            "fetch v{v} beyond the high watermark"
        );
    }
}

/// Fetch v4-v6 responses carry neither the top-level error_code/session_id
/// (v7+) nor, for v4, the partition log_start_offset (v5+). Every version
/// from 4 to 16 must decode exactly, with no trailing bytes.
#[test]
fn fetch_v4_to_v6_responses_are_well_formed() {
    let broker = Broker::start();
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "fetchold", 1, &[]);
    let topic = TopicRef {
        name: "fetchold".into(),
        id,
    };
    produce_ok(&mut c, "fetchold", 0, batch(&["a", "b"]));
    let mut failures = Vec::new();
    for v in 4i16..=16 {
        // A fresh connection per version: a misparsed frame leaves the
        // stream out of step.
        let mut c = broker.client();
        let resp: Result<FetchResponse, String> =
            c.try_send(v, &fetch_request(v, &topic, &[(0, 0)], 0, 0));
        match resp {
            Err(e) => failures.push(format!("v{v}: {e}")),
            Ok(resp) => {
                let p = &resp.responses[0].partitions[0];
                let values: Vec<String> = decode(p.records.as_ref())
                    .iter()
                    .map(Rec::value_str)
                    .collect();
                if p.error_code != ErrorCode::None.code()
                    || p.high_watermark != 2
                    || values != ["a", "b"]
                {
                    failures.push(format!(
                        "v{v}: error {} hw {} values {values:?}",
                        p.error_code, p.high_watermark
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "Fetch responses that do not decode:\n{}",
        failures.join("\n")
    );
}

#[test]
fn long_poll_is_answered_by_a_produce_from_another_connection() {
    let broker = Broker::start();
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "longpoll", 1, &[]);
    let topic = TopicRef {
        name: "longpoll".into(),
        id,
    };
    produce_ok(&mut c, "longpoll", 0, batch(&["before"]));

    let port = broker.port;
    let t = topic.clone();
    let waiter = std::thread::spawn(move || {
        let mut fc = Client::connect(port);
        let resp: FetchResponse = fc.send(12, &fetch_request(12, &t, &[(0, 1)], 5000, 1));
        resp
    });
    // Give the fetch a moment to park; correctness does not depend on it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut producer = broker.client();
    assert_eq!(
        produce_ok(&mut producer, "longpoll", 0, batch(&["after"])),
        1
    );

    let resp = waiter.join().expect("fetch thread");
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, ErrorCode::None.code());
    let recs = decode(p.records.as_ref());
    assert_eq!(
        recs.len(),
        1,
        "the long poll returns the new record: {recs:?}"
    );
    assert_eq!(recs[0].offset, 1);
    assert_eq!(recs[0].value_str(), "after");
}

#[test]
fn topic_administration() {
    let broker = Broker::start();
    let mut c = broker.client();

    let r = create_topic(&mut c, "rf3", 1, 3, &[]);
    assert_eq!(
        r.error_code,
        ErrorCode::InvalidReplicationFactor.code(),
        "replication factor 3 on one broker"
    );

    create_topic_ok(&mut c, "admin", 1, &[("retention.ms", "123456")]);
    let r = create_topic(&mut c, "admin", 1, 1, &[]);
    assert_eq!(
        r.error_code,
        ErrorCode::TopicAlreadyExists.code(),
        "duplicate topic"
    );

    let r = create_topic(&mut c, "badcfg", 1, 1, &[("retention.ms", "soon")]);
    assert_eq!(
        r.error_code,
        ErrorCode::InvalidConfig.code(),
        "invalid config value"
    );
    let m = metadata(&mut c, Some(&["badcfg"]));
    assert_eq!(
        m.topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code(),
        "a refused topic is not created"
    );

    // DescribeConfigs: the override is DYNAMIC_TOPIC_CONFIG, an untouched
    // property is DEFAULT_CONFIG.
    let mut res = DescribeConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = s("admin");
    res.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let resp = c.send(4, &req);
    assert_eq!(resp.results.len(), 1);
    assert_eq!(resp.results[0].error_code, ErrorCode::None.code());
    let find = |name: &str| {
        resp.results[0]
            .configs
            .iter()
            .find(|e| e.name.as_str() == name)
            .unwrap_or_else(|| panic!("{name} missing from DescribeConfigs"))
            .clone()
    };
    let retention = find("retention.ms");
    assert_eq!(retention.value.as_ref().map(|v| v.as_str()), Some("123456"));
    assert_eq!(
        retention.config_source, 1,
        "override source is DYNAMIC_TOPIC_CONFIG"
    );
    let compression = find("compression.type");
    assert_eq!(
        compression.value.as_ref().map(|v| v.as_str()),
        Some("producer")
    );
    assert_eq!(
        compression.config_source, 5,
        "untouched property source is DEFAULT_CONFIG"
    );

    // CreatePartitions 1 -> 3; the new partition takes produce.
    let mut t = CreatePartitionsTopic::default();
    t.name = topic_name("admin");
    t.count = 3;
    t.assignments = None;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    let resp = c.send(3, &req);
    assert_eq!(
        resp.results[0].error_code,
        ErrorCode::None.code(),
        "CreatePartitions: {:?}",
        resp.results[0].error_message
    );
    let m = metadata(&mut c, Some(&["admin"]));
    assert_eq!(m.topics[0].partitions.len(), 3);
    assert_eq!(produce_ok(&mut c, "admin", 2, batch(&["new-partition"])), 0);
    let tr = topic_ref(&mut c, "admin");
    let recs = fetch_all(&mut c, &tr, 2, 0);
    assert_eq!(
        recs.iter().map(Rec::value_str).collect::<Vec<_>>(),
        ["new-partition"]
    );
    for p in 0..3 {
        assert!(
            broker.partition_dir("admin", p).is_dir(),
            "admin-{p} directory exists"
        );
    }

    // DeleteTopics: gone from Metadata and from disk.
    let mut st = DeleteTopicState::default();
    st.name = Some(topic_name("admin"));
    let mut req = DeleteTopicsRequest::default();
    req.topics = vec![st];
    req.timeout_ms = 10_000;
    let resp = c.send(6, &req);
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(
        resp.responses[0].error_code,
        ErrorCode::None.code(),
        "DeleteTopics: {:?}",
        resp.responses[0].error_message
    );
    let m = metadata(&mut c, Some(&["admin"]));
    assert_eq!(
        m.topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code(),
        "deleted topic is unknown"
    );
    for p in 0..3 {
        assert!(
            !broker.partition_dir("admin", p).exists(),
            "admin-{p} directory removed"
        );
    }

    // The name can be used again and starts empty.
    create_topic_ok(&mut c, "admin", 1, &[]);
    assert_eq!(
        offset_of(&mut c, "admin", 0, LATEST),
        0,
        "re-created topic starts empty"
    );
}

#[test]
fn produce_errors() {
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "small", 1, &[("max.message.bytes", "1000")]);

    let big = "x".repeat(2000);
    let r = produce(&mut c, "small", 0, batch(&[&big]));
    assert_eq!(
        r.error_code,
        ErrorCode::MessageTooLarge.code(),
        "batch over max.message.bytes"
    );
    assert_eq!(
        offset_of(&mut c, "small", 0, LATEST),
        0,
        "refused batch is not appended"
    );

    // A batch whose CRC does not match: CORRUPT_MESSAGE.
    let mut bad = batch(&["flipped"]).to_vec();
    let last = bad.len() - 2;
    bad[last] ^= 0x55;
    let r = produce(&mut c, "small", 0, bytes::Bytes::from(bad));
    assert_eq!(
        r.error_code,
        ErrorCode::CorruptMessage.code(),
        "CORRUPT_MESSAGE for a CRC mismatch"
    );
    assert_eq!(offset_of(&mut c, "small", 0, LATEST), 0);
    let r = list_offsets(&mut c, "no-such-topic", 0, LATEST);
    assert_eq!(
        r.error_code,
        ErrorCode::UnknownTopicOrPartition.code(),
        "ListOffsets of an unknown topic"
    );

    let r = produce(&mut c, "small", 5, batch(&["nope"]));
    assert_eq!(
        r.error_code,
        ErrorCode::UnknownTopicOrPartition.code(),
        "unknown partition index"
    );
    let r = produce(&mut c, "no-such-topic", 0, batch(&["nope"]));
    assert_eq!(
        r.error_code,
        ErrorCode::UnknownTopicOrPartition.code(),
        "unknown topic"
    );

    // acks=0: no response at all, but the data lands.
    c.write_request(
        9,
        &produce_request(0, &[("small", 0, batch(&["fire", "and", "forget"]))]),
    )
    .expect("write acks=0 produce");
    // The next answer on this connection must be the ListOffsets one (the
    // client checks the correlation id), i.e. acks=0 sent nothing back.
    let landed = wait_until(|| offset_of(&mut c, "small", 0, LATEST) == 3);
    assert!(landed, "acks=0 records appear in ListOffsets latest");
    let tr = topic_ref(&mut c, "small");
    let values: Vec<String> = fetch_all(&mut c, &tr, 0, 0)
        .iter()
        .map(Rec::value_str)
        .collect();
    assert_eq!(values, ["fire", "and", "forget"]);
}

#[test]
fn one_request_spans_both_shards() {
    let broker = Broker::start(); // --shards 2
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "wide", 12, &[]);
    let topic = TopicRef {
        name: "wide".into(),
        id,
    };

    for round in 0..2i64 {
        let parts: Vec<(&str, i32, bytes::Bytes)> = (0..12)
            .map(|p| {
                let a = format!("p{p}-r{round}-a");
                let b = format!("p{p}-r{round}-b");
                ("wide", p, batch(&[&a, &b]))
            })
            .collect();
        let resp = c.send(9, &produce_request(-1, &parts));
        assert_eq!(resp.responses.len(), 1);
        let answers = &resp.responses[0].partition_responses;
        assert_eq!(answers.len(), 12, "one answer per partition");
        let mut seen: Vec<i32> = answers.iter().map(|a| a.index).collect();
        seen.sort();
        assert_eq!(seen, (0..12).collect::<Vec<_>>());
        for a in answers {
            assert_eq!(
                a.error_code,
                ErrorCode::None.code(),
                "partition {}: {:?}",
                a.index,
                a.error_message
            );
            assert_eq!(a.base_offset, 2 * round, "partition {}", a.index);
        }
    }

    for v in [11i16, 16] {
        let all: Vec<(i32, i64)> = (0..12).map(|p| (p, 0)).collect();
        let resp: FetchResponse = c.send(v, &fetch_request(v, &topic, &all, 0, 0));
        assert_eq!(resp.responses.len(), 1);
        let parts = &resp.responses[0].partitions;
        assert_eq!(parts.len(), 12, "fetch v{v}: one answer per partition");
        for p in parts {
            assert_eq!(
                p.error_code,
                ErrorCode::None.code(),
                "fetch v{v} partition {}",
                p.partition_index
            );
            assert_eq!(p.high_watermark, 4);
            let values: Vec<String> = decode(p.records.as_ref())
                .iter()
                .map(Rec::value_str)
                .collect();
            let i = p.partition_index;
            assert_eq!(
                values,
                [
                    format!("p{i}-r0-a"),
                    format!("p{i}-r0-b"),
                    format!("p{i}-r1-a"),
                    format!("p{i}-r1-b")
                ],
                "fetch v{v}: partition {i} holds exactly its own records"
            );
        }
    }
}

#[test]
fn pipelined_produces_on_one_connection_keep_their_order() {
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "order", 2, &[]);
    let tr = topic_ref(&mut c, "order");
    for p in 0..2 {
        // 40 acks=all requests written back to back, then read.
        let mut corrs = Vec::new();
        for i in 0..40 {
            let v = format!("a{i}");
            corrs.push(
                c.write_request(9, &produce_request(-1, &[("order", p, batch(&[&v]))]))
                    .unwrap(),
            );
        }
        for (i, corr) in corrs.into_iter().enumerate() {
            let r = c
                .read_response::<kafka_protocol::messages::ProduceRequest>(9, corr)
                .unwrap();
            let pr = &r.responses[0].partition_responses[0];
            assert_eq!(pr.error_code, ErrorCode::None.code());
            assert_eq!(
                pr.base_offset, i as i64,
                "partition {p}: request {i} appended in order"
            );
        }
        // 40 acks=0 requests: no answers, same order on disk.
        for i in 0..40 {
            let v = format!("z{i}");
            c.write_request(9, &produce_request(0, &[("order", p, batch(&[&v]))]))
                .unwrap();
        }
        assert!(
            wait_until(|| offset_of(&mut c, "order", p, LATEST) == 80),
            "acks=0 records land"
        );
        let values: Vec<String> = fetch_all(&mut c, &tr, p, 0)
            .iter()
            .map(Rec::value_str)
            .collect();
        let want: Vec<String> = (0..40)
            .map(|i| format!("a{i}"))
            .chain((0..40).map(|i| format!("z{i}")))
            .collect();
        assert_eq!(values, want, "partition {p}");
    }
}

/// Kafka handles one connection's requests strictly one after another, so
/// an acks=0 produce followed by an acks=1 produce on the same connection
/// is appended first.
#[test]
fn mixed_acks_pipeline_keeps_order() {
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "mixed", 2, &[]);
    let tr = topic_ref(&mut c, "mixed");
    for p in 0..2 {
        let mut corrs = Vec::new();
        for i in 0..40 {
            let v = format!("m{i:02}");
            let acks = if i % 2 == 0 { 0 } else { 1 };
            let corr = c
                .write_request(9, &produce_request(acks, &[("mixed", p, batch(&[&v]))]))
                .unwrap();
            if acks != 0 {
                corrs.push(corr);
            }
        }
        for corr in corrs {
            let r = c
                .read_response::<kafka_protocol::messages::ProduceRequest>(9, corr)
                .unwrap();
            assert_eq!(
                r.responses[0].partition_responses[0].error_code,
                ErrorCode::None.code()
            );
        }
        assert!(
            wait_until(|| offset_of(&mut c, "mixed", p, LATEST) == 40),
            "all records land"
        );
        let values: Vec<String> = fetch_all(&mut c, &tr, p, 0)
            .iter()
            .map(Rec::value_str)
            .collect();
        let want: Vec<String> = (0..40).map(|i| format!("m{i:02}")).collect();
        assert_eq!(
            values, want,
            "partition {p}: records in the order the connection sent them"
        );
    }
}

#[test]
fn fetch_size_limits_return_whole_batches() {
    let broker = Broker::start();
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "limits", 2, &[]);
    let topic = TopicRef {
        name: "limits".into(),
        id,
    };
    let big = "b".repeat(500);
    for i in 0..4 {
        let v = format!("{i}-{big}");
        produce_ok(&mut c, "limits", 0, batch(&[&v]));
        produce_ok(&mut c, "limits", 1, batch(&[&v]));
    }
    // partition_max_bytes below one batch: exactly the first whole batch.
    let mut req = fetch_request(12, &topic, &[(0, 0)], 0, 0);
    req.topics[0].partitions[0].partition_max_bytes = 100;
    let resp: FetchResponse = c.send(12, &req);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, ErrorCode::None.code());
    assert_eq!(
        batch_bases(p.records.as_ref()),
        [(0, 0)],
        "one whole batch even though it is over the limit"
    );
    // partition_max_bytes of ~2.5 batches: two whole batches.
    let one = batch(&[&format!("0-{big}")]).len() as i32;
    let mut req = fetch_request(12, &topic, &[(0, 1)], 0, 0);
    req.topics[0].partitions[0].partition_max_bytes = one * 5 / 2;
    let resp: FetchResponse = c.send(12, &req);
    assert_eq!(
        batch_bases(resp.responses[0].partitions[0].records.as_ref()),
        [(1, 1), (2, 2)]
    );
    // Response max_bytes below one batch: the first partition still gets
    // one batch, so the consumer makes progress.
    let mut req = fetch_request(12, &topic, &[(0, 0), (1, 0)], 0, 0);
    req.max_bytes = 10;
    let resp: FetchResponse = c.send(12, &req);
    let parts = &resp.responses[0].partitions;
    assert_eq!(parts.len(), 2);
    let total: usize = parts.iter().map(|p| decode(p.records.as_ref()).len()).sum();
    assert!(total >= 1, "at least one record comes back");
    assert_eq!(
        decode(parts[0].records.as_ref()).first().map(|r| r.offset),
        Some(0)
    );
}

#[test]
fn long_poll_spanning_both_shards_wakes_on_either_partition() {
    let broker = Broker::start();
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "lp2", 2, &[]);
    let topic = TopicRef {
        name: "lp2".into(),
        id,
    };
    for target in [1, 0] {
        let start0 = offset_of(&mut c, "lp2", 0, LATEST);
        let start1 = offset_of(&mut c, "lp2", 1, LATEST);
        let port = broker.port;
        let t = topic.clone();
        let waiter = std::thread::spawn(move || {
            let mut fc = Client::connect(port);
            let resp: FetchResponse = fc.send(
                16,
                &fetch_request(16, &t, &[(0, start0), (1, start1)], 5000, 1),
            );
            resp
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let v = format!("to-{target}");
        produce_ok(&mut c, "lp2", target, batch(&[&v]));
        let resp = waiter.join().expect("fetch thread");
        let parts = &resp.responses[0].partitions;
        let got: Vec<(i32, String)> = parts
            .iter()
            .flat_map(|p| {
                decode(p.records.as_ref())
                    .into_iter()
                    .map(move |r| (p.partition_index, r.value_str()))
            })
            .collect();
        assert_eq!(
            got,
            [(target, v.clone())],
            "the long poll returns the record produced to partition {target}"
        );
    }
}

#[test]
fn long_poll_without_data_returns_empty() {
    let broker = Broker::start();
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "quiet", 1, &[]);
    let topic = TopicRef {
        name: "quiet".into(),
        id,
    };
    let resp: FetchResponse = c.send(12, &fetch_request(12, &topic, &[(0, 0)], 300, 1));
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, ErrorCode::None.code());
    assert!(decode(p.records.as_ref()).is_empty());
    // The connection is still usable.
    assert_eq!(produce_ok(&mut c, "quiet", 0, batch(&["x"])), 0);
}

#[test]
fn compressed_batches_round_trip_unchanged() {
    use sluice_protocol::batch::BatchBuilder;
    use sluice_protocol::compression::Compression;
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "codecs", 1, &[]);
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut want = Vec::new();
    for (k, codec) in codecs.iter().enumerate() {
        let mut b = BatchBuilder::new(*codec);
        for j in 0..5 {
            let v = format!("{codec:?}-{j}-{}", "abc".repeat(50));
            b.push(now_ms() + j, Some(b"key"), Some(v.as_bytes()), &[])
                .unwrap();
            want.push(v);
        }
        let built = b.build();
        assert_eq!(
            produce_ok(&mut c, "codecs", 0, built.clone()),
            5 * k as i64,
            "{codec:?}"
        );
        // The stored batch is byte-identical apart from the base offset and
        // leader epoch (outside the CRC).
        let tr = topic_ref(&mut c, "codecs");
        let p = fetch(&mut c, &tr, 0, 5 * k as i64);
        let got = p.records.expect("records");
        let first_len = sluice_protocol::batch::split_batches(&got).unwrap()[0]
            .1
            .len();
        assert_eq!(
            first_len,
            built.len(),
            "{codec:?}: stored batch has the produced size"
        );
        assert_eq!(
            &got[17..first_len],
            &built[17..],
            "{codec:?}: bytes from magic on are unchanged"
        );
    }
    let tr = topic_ref(&mut c, "codecs");
    let values: Vec<String> = fetch_all(&mut c, &tr, 0, 0)
        .iter()
        .map(Rec::value_str)
        .collect();
    assert_eq!(values, want);
}

#[test]
fn unknown_topic_id_in_fetch() {
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "known", 1, &[]);
    let ghost = TopicRef {
        name: String::new(),
        id: uuid::Uuid::from_u128(0x1234),
    };
    let resp: FetchResponse = c.send(13, &fetch_request(13, &ghost, &[(0, 0)], 0, 0));
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ErrorCode::UnknownTopicId.code(),
        "UNKNOWN_TOPIC_ID"
    );
    let named = TopicRef {
        name: "nope".into(),
        id: uuid::Uuid::nil(),
    };
    let resp: FetchResponse = c.send(12, &fetch_request(12, &named, &[(0, 0)], 0, 0));
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    let known = topic_ref(&mut c, "known");
    let p = fetch_v(&mut c, 12, &known, 7, 0);
    assert_eq!(
        p.error_code,
        ErrorCode::UnknownTopicOrPartition.code(),
        "partition index out of range"
    );
}

#[test]
fn more_topic_administration() {
    let broker = Broker::start();
    let mut c = broker.client();

    // validate_only creates nothing.
    let mut t = kafka_protocol::messages::create_topics_request::CreatableTopic::default();
    t.name = topic_name("dry");
    t.num_partitions = 2;
    t.replication_factor = 1;
    let mut req = kafka_protocol::messages::CreateTopicsRequest::default();
    req.topics = vec![t];
    req.validate_only = true;
    let resp = c.send(7, &req);
    assert_eq!(resp.topics[0].error_code, ErrorCode::None.code());
    assert_eq!(
        metadata(&mut c, Some(&["dry"])).topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code(),
        "validate_only creates nothing"
    );
    assert!(!broker.partition_dir("dry", 0).exists());

    // Shrinking is INVALID_PARTITIONS.
    let id = create_topic_ok(&mut c, "grow", 2, &[]);
    let mut pt = CreatePartitionsTopic::default();
    pt.name = topic_name("grow");
    pt.count = 1;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![pt];
    req.timeout_ms = 10_000;
    let resp = c.send(3, &req);
    assert_eq!(
        resp.results[0].error_code,
        ErrorCode::InvalidPartitions.code(),
        "INVALID_PARTITIONS"
    );

    // Delete by topic id (v6).
    produce_ok(&mut c, "grow", 1, batch(&["x"]));
    let mut st = DeleteTopicState::default();
    st.topic_id = id;
    let mut req = DeleteTopicsRequest::default();
    req.topics = vec![st];
    req.timeout_ms = 10_000;
    let resp = c.send(6, &req);
    assert_eq!(resp.responses[0].error_code, ErrorCode::None.code());
    assert_eq!(
        resp.responses[0].name.as_ref().map(|n| n.0.as_str()),
        Some("grow")
    );
    assert_eq!(
        metadata(&mut c, Some(&["grow"])).topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    assert!(!broker.partition_dir("grow", 1).exists());
    // Deleting it again: unknown.
    let resp = c.send(6, &req);
    assert_eq!(
        resp.responses[0].error_code,
        ErrorCode::UnknownTopicId.code(),
        "UNKNOWN_TOPIC_ID for a deleted topic id"
    );
    // Produce to the deleted topic: unknown.
    assert_eq!(
        produce(&mut c, "grow", 0, batch(&["y"])).error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
}

/// A request larger than one socket read arrives over many reads (here in
/// 1 KiB pieces) and is followed, pipelined, by another: both must parse.
/// Regression: the connection once overwrote a partly buffered frame.
#[test]
fn requests_spanning_many_reads_are_reassembled() {
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "pieces", 1, &[]);
    let tr = topic_ref(&mut c, "pieces");
    let big_value = "v".repeat(1000);
    let values: Vec<String> = (0..600).map(|i| format!("{i:04}{big_value}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let big = produce_request(-1, &[("pieces", 0, batch(&refs))]);
    let first = c
        .write_request_in_pieces(9, &big, 1024, std::time::Duration::from_micros(200))
        .unwrap();
    let second = c
        .write_request(9, &produce_request(-1, &[("pieces", 0, batch(&["after"]))]))
        .unwrap();
    let r1 = c
        .read_response::<kafka_protocol::messages::ProduceRequest>(9, first)
        .unwrap();
    assert_eq!(
        r1.responses[0].partition_responses[0].error_code,
        ErrorCode::None.code()
    );
    assert_eq!(r1.responses[0].partition_responses[0].base_offset, 0);
    let r2 = c
        .read_response::<kafka_protocol::messages::ProduceRequest>(9, second)
        .unwrap();
    assert_eq!(r2.responses[0].partition_responses[0].base_offset, 600);
    let got: Vec<String> = fetch_all(&mut c, &tr, 0, 0)
        .iter()
        .map(Rec::value_str)
        .collect();
    assert_eq!(got.len(), 601);
    assert_eq!(got[599], values[599]);
    assert_eq!(got[600], "after");
}
