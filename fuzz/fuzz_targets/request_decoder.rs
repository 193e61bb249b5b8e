//! Fuzzes the broker's request decode path with arbitrary frame bodies (the
//! bytes after the 4-byte size prefix), exactly as `net::start_request` and
//! `api::prepare` take them apart: api key, version and correlation id read
//! by hand; the version checked against `sluice_broker::api::SUPPORTED`;
//! `RequestHeader::decode` at `ApiKey::request_header_version`; then the
//! request body type of that API decoded at that version (kafka-protocol's
//! `RequestKind::decode` picks the same type the registry names). A decoded
//! Produce request's record blobs then go through `split_batches`, as the
//! produce handler does. Any panic or abort is a finding: the broker must
//! answer bad input with an error, never crash.
//!
//! Uses the broker's own global allocator: kafka-protocol reserves `Vec`
//! capacity from wire lengths, and `BrokerAllocator` is what keeps such
//! claims from aborting `sluiced`.
//!
//! Seeds: on start-up the target writes one well-formed frame per served
//! (API, version), plus a few with content, into `corpus/request_decoder/`
//! unless seeds are already there.
#![no_main]

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, RequestHeader, RequestKind, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use libfuzzer_sys::fuzz_target;
use sluice_broker::api::{supported_range, SUPPORTED};
use sluice_protocol::batch::{split_batches, BatchBuilder};
use sluice_protocol::compression::Compression;

#[global_allocator]
static ALLOC: sluice_broker::alloc::BrokerAllocator = sluice_broker::alloc::BrokerAllocator;

fn decode_frame(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let mut frame = Bytes::copy_from_slice(data);
    let key_raw = i16::from_be_bytes([data[0], data[1]]);
    let version = i16::from_be_bytes([data[2], data[3]]);
    let correlation_id = i32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let Ok(api) = ApiKey::try_from(key_raw) else { return };
    let Some((min, max)) = supported_range(api) else { return };
    if version < min || version > max {
        return;
    }
    let header_version = api.request_header_version(version);
    let Ok(header) = RequestHeader::decode(&mut frame, header_version) else { return };
    // The header decoder reads the same leading bytes the broker read by hand.
    assert_eq!(header.request_api_key, key_raw);
    assert_eq!(header.request_api_version, version);
    assert_eq!(header.correlation_id, correlation_id);
    let Ok(request) = RequestKind::decode(api, &mut frame, version) else { return };
    if let RequestKind::Produce(p) = request {
        for topic in &p.topic_data {
            for part in &topic.partition_data {
                if let Some(records) = &part.records {
                    if let Ok(batches) = split_batches(records) {
                        let total: usize = batches.iter().map(|(_, b)| b.len()).sum();
                        assert_eq!(total, records.len());
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------ seeds

fn default_request(api: ApiKey) -> Option<RequestKind> {
    Some(match api {
        ApiKey::Produce => RequestKind::Produce(Default::default()),
        ApiKey::Fetch => RequestKind::Fetch(Default::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(Default::default()),
        ApiKey::Metadata => RequestKind::Metadata(Default::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(Default::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
        ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(Default::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(Default::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(Default::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(Default::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(Default::default()),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(Default::default()),
        _ => return None,
    })
}

/// A Produce request with one topic, one partition and two small batches.
fn produce_with_records() -> RequestKind {
    let mut blob = BytesMut::new();
    for c in [Compression::None, Compression::Lz4] {
        let mut b = BatchBuilder::new(c);
        for i in 0..3u8 {
            let _ = b.push(1_700_000_000_000 + i64::from(i), Some(&[i]), Some(b"value"), &[]);
        }
        blob.extend_from_slice(&b.build());
    }
    let mut part = m::produce_request::PartitionProduceData::default();
    part.index = 0;
    part.records = Some(blob.freeze());
    let mut topic = m::produce_request::TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("t"));
    topic.partition_data = vec![part];
    let mut req = m::ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 30_000;
    req.topic_data = vec![topic];
    RequestKind::Produce(req)
}

fn metadata_with_topic() -> RequestKind {
    let mut t = m::metadata_request::MetadataRequestTopic::default();
    t.name = Some(TopicName(StrBytes::from_static_str("t")));
    let mut req = m::MetadataRequest::default();
    req.topics = Some(vec![t]);
    RequestKind::Metadata(req)
}

fn encode_frame(api: ApiKey, version: i16, req: &RequestKind) -> Option<Vec<u8>> {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = 7;
    header.client_id = Some(StrBytes::from_static_str("fuzz"));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, api.request_header_version(version)).ok()?;
    req.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

fn write_seeds() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/request_decoder"));
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let seeded = std::fs::read_dir(dir)
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("seed-")))
        .unwrap_or(true);
    if seeded {
        return;
    }
    for &(api, min, max) in SUPPORTED {
        for version in min..=max {
            let mut reqs: Vec<(&str, RequestKind)> = Vec::new();
            if let Some(r) = default_request(api) {
                reqs.push(("default", r));
            }
            match api {
                ApiKey::Produce => reqs.push(("records", produce_with_records())),
                ApiKey::Metadata => reqs.push(("topic", metadata_with_topic())),
                _ => {}
            }
            for (label, req) in reqs {
                if let Some(frame) = encode_frame(api, version, &req) {
                    let _ = std::fs::write(dir.join(format!("seed-{api:?}-v{version}-{label}")), frame);
                }
            }
        }
    }
}

fuzz_target!(init: write_seeds(), |data: &[u8]| decode_frame(data));
