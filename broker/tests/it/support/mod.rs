//! Test support for the cross-process tests: a [`Broker`] that runs the real
//! `sluiced` binary on a private data directory and a loopback port (killed
//! when dropped), and a minimal blocking Kafka [`Client`] over
//! `std::net::TcpStream` that speaks the wire protocol through the
//! `kafka-protocol` message types. Helpers build record batches with
//! `sluice_protocol::batch::BatchBuilder` and decode fetched ones.
//!
//! Everything here is bounded: sockets carry read/write timeouts and every
//! wait is a loop with a fixed number of rounds.

#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, FetchRequest, FetchResponse,
    ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sluice_protocol::batch::{self, BatchBuilder};
use sluice_protocol::compression::Compression;
use sluice_protocol::ErrorCode;
use uuid::Uuid;

/// Socket timeout for every request (the longest long poll in the tests is
/// 5 s, so this leaves room on a loaded machine).
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Rounds of `POLL_INTERVAL` a `wait_until` loop makes before giving up.
pub const POLL_ROUNDS: u32 = 300;
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Settings every test broker gets; a test appends its own lines.
const BASE_CONFIG: &str = r#"
"group.initial.rebalance.delay.ms" = 0
"auto.create.topics.enable" = false
"log.retention.check.interval.ms" = 200
"offsets.topic.num.partitions" = 8
"#;

static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port nothing listens on, never handed out twice in this
/// process (the broker binds with SO_REUSEPORT, so two brokers on one port
/// would silently share it).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        drop(l);
        let mut g = PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if g.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port found");
}

/// `controller.quorum.voters` for nodes 1, 2, 3, ... listening for the
/// controllers on `ports` (in node order) on loopback.
pub fn quorum_voters(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// Options for [`Broker::start_opts`].
#[derive(Clone, Debug)]
pub struct Opts {
    /// TOML lines appended to the base config.
    pub config: String,
    pub shards: usize,
    /// Serve /metrics on a loopback port.
    pub metrics: bool,
    /// More `--listen` arguments (`SSL://127.0.0.1:PORT`, ...) next to the
    /// PLAINTEXT one on `port` that readiness is checked on.
    pub listeners: Vec<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            config: String::new(),
            shards: 2,
            metrics: false,
            listeners: Vec::new(),
        }
    }
}

/// A running `sluiced` process with its own temp directory (data, config
/// file, log). Killed (SIGKILL) when dropped.
pub struct Broker {
    pub port: u16,
    pub metrics_port: Option<u16>,
    root: tempfile::TempDir,
    opts: Opts,
    child: Option<Child>,
    starts: u32,
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_opts(Opts::default())
    }

    pub fn start_with(config: &str) -> Broker {
        Broker::start_opts(Opts {
            config: config.to_string(),
            ..Opts::default()
        })
    }

    pub fn start_opts(opts: Opts) -> Broker {
        let mut b = Broker::launch_opts(opts);
        b.wait_ready();
        b
    }

    /// Starts the process without waiting until it serves (a cluster member
    /// serves only once a majority of the controllers is up); call
    /// [`Broker::wait_until_ready`] after starting the others.
    pub fn launch_opts(opts: Opts) -> Broker {
        let mut b = Broker::create_opts(opts);
        b.launch();
        b
    }

    /// Prepares the broker's directory and config without starting it (a
    /// test can place files in [`Broker::data_dir`] first); start it with
    /// [`Broker::relaunch`].
    pub fn create_opts(opts: Opts) -> Broker {
        let root = tempfile::Builder::new()
            .prefix("sluiced-it-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(root.path().join("data")).expect("data dir");
        std::fs::write(
            root.path().join("config.toml"),
            format!("{BASE_CONFIG}\n{}\n", opts.config),
        )
        .expect("config");
        let metrics_port = opts.metrics.then(free_port);
        Broker {
            port: free_port(),
            metrics_port,
            root,
            opts,
            child: None,
            starts: 0,
        }
    }

    /// Waits (bounded) until a launched broker answers ApiVersions.
    pub fn wait_until_ready(&mut self) {
        self.wait_ready();
    }

    /// Starts a stopped broker again without waiting for it to serve.
    pub fn relaunch(&mut self) {
        self.launch();
    }

    /// The broker's private directory (for test certificates and such).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir().join(format!("{topic}-{partition}"))
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("broker.log")
    }

    /// The broker's stderr so far (all starts), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        self.launch();
        self.wait_ready();
    }

    /// Starts the process without waiting for it to become ready.
    fn launch(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        self.wait_port_released();
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        {
            let mut l = &log;
            let _ = writeln!(l, "===== start #{} =====", self.starts);
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluiced"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--shards")
            .arg(self.opts.shards.to_string())
            .arg("--config")
            .arg(self.root.path().join("config.toml"))
            .env("SLUICE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some(m) = self.metrics_port {
            cmd.arg("--metrics").arg(format!("127.0.0.1:{m}"));
        }
        for l in &self.opts.listeners {
            cmd.arg("--listen").arg(l);
        }
        self.child = Some(cmd.spawn().expect("spawn sluiced"));
    }

    /// Starts the broker again on the same data directory, expecting it to
    /// refuse to start: waits (bounded) for it to exit and returns its
    /// status. Panics if it is still running at the end of the wait.
    pub fn restart_expecting_exit(&mut self) -> ExitStatus {
        self.kill9();
        self.launch();
        for _ in 0..POLL_ROUNDS {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        self.kill9();
        panic!(
            "sluiced kept running when it should have refused to start\n--- log ---\n{}",
            self.log()
        );
    }

    /// Waits (bounded) until nothing accepts connections on the port. A
    /// killed broker's listeners can outlive its reaping for a moment (the
    /// kernel tears down an io_uring instance, and the files its pending
    /// accepts hold, asynchronously); a new broker joining their
    /// SO_REUSEPORT group would share connections with a dying socket,
    /// which resets them.
    fn wait_port_released(&self) {
        for _ in 0..POLL_ROUNDS {
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        panic!("port {} is still taken after the broker stopped", self.port);
    }

    /// Waits (bounded) until the broker answers ApiVersions.
    fn wait_ready(&mut self) {
        for _ in 0..POLL_ROUNDS {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "sluiced exited during start-up with {status}\n--- log ---\n{}",
                        self.log()
                    );
                }
            }
            if let Ok(mut c) = Client::connect_with_timeout(self.port, Duration::from_secs(3)) {
                let mut req = ApiVersionsRequest::default();
                req.client_software_name = StrBytes::from_static_str("sluice-it");
                req.client_software_version = StrBytes::from_static_str("0");
                if c.try_send(3, &req).is_ok() {
                    return;
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        panic!(
            "sluiced did not become ready on port {}\n--- log ---\n{}",
            self.port,
            self.log()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker not running").id()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for the process to exit; returns its status.
    pub fn sigterm(&mut self) -> ExitStatus {
        let pid = self.pid();
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM {pid} failed");
        for _ in 0..POLL_ROUNDS {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        self.kill9();
        panic!(
            "sluiced did not exit after SIGTERM\n--- log ---\n{}",
            self.log()
        );
    }

    /// Starts the broker again on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- sluiced log (last 60 lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A blocking Kafka client over one TCP connection.
pub struct Client {
    stream: TcpStream,
    next_correlation: i32,
    /// The request header's client id ("sluice-it" unless set).
    pub client_id: &'static str,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Client::connect_with_timeout(port, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"))
    }

    pub fn connect_with_timeout(port: u16, timeout: Duration) -> std::io::Result<Client> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            next_correlation: 1,
            client_id: "sluice-it",
        })
    }

    /// Encodes and writes one request; returns its correlation id.
    pub fn write_request<R: Request>(&mut self, version: i16, req: &R) -> std::io::Result<i32> {
        let (correlation, frame) = self.encode_request(version, req);
        self.stream.write_all(&frame)?;
        Ok(correlation)
    }

    /// Writes one request in `chunk`-byte pieces with a pause between them,
    /// so the broker receives the frame over many reads.
    pub fn write_request_in_pieces<R: Request>(
        &mut self,
        version: i16,
        req: &R,
        chunk: usize,
        pause: Duration,
    ) -> std::io::Result<i32> {
        let (correlation, frame) = self.encode_request(version, req);
        for piece in frame.chunks(chunk.max(1)) {
            self.stream.write_all(piece)?;
            std::thread::sleep(pause);
        }
        Ok(correlation)
    }

    fn encode_request<R: Request>(&mut self, version: i16, req: &R) -> (i32, BytesMut) {
        let api = ApiKey::try_from(R::KEY).expect("known api key");
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation;
        header.client_id = Some(StrBytes::from_static_str(self.client_id));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, api.request_header_version(version))
            .expect("encode header");
        req.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("encode {api:?} v{version}: {e}"));
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        (correlation, buf)
    }

    /// Reads one size-prefixed response frame (header included).
    pub fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        if !(0..=256 << 20).contains(&size) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad frame size {size}"),
            ));
        }
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Reads and decodes the response to request `correlation`.
    pub fn read_response<R: Request>(
        &mut self,
        version: i16,
        correlation: i32,
    ) -> Result<R::Response, String> {
        let api = ApiKey::try_from(R::KEY).expect("known api key");
        let mut frame = self
            .read_frame()
            .map_err(|e| format!("{api:?} v{version}: reading response: {e}"))?;
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .map_err(|e| format!("{api:?} v{version}: response header: {e}"))?;
        if header.correlation_id != correlation {
            return Err(format!(
                "{api:?} v{version}: correlation id {} in response, expected {correlation}",
                header.correlation_id
            ));
        }
        let resp = R::Response::decode(&mut frame, version)
            .map_err(|e| format!("{api:?} v{version}: decoding response: {e}"))?;
        if frame.has_remaining() {
            return Err(format!(
                "{api:?} v{version}: {} trailing bytes after the response body",
                frame.remaining()
            ));
        }
        Ok(resp)
    }

    pub fn try_send<R: Request>(&mut self, version: i16, req: &R) -> Result<R::Response, String> {
        let corr = self
            .write_request(version, req)
            .map_err(|e| format!("writing request: {e}"))?;
        self.read_response::<R>(version, corr)
    }

    pub fn send<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        self.try_send(version, req)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

// ---------------------------------------------------------------- records

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Wall-clock milliseconds. Record timestamps must be recent: time-based
/// retention (7 days by default) deletes segments of older records.
pub use sluice_protocol::clock::now_ms;

/// A plain (non-idempotent) batch: record i has key "k{i}", the given value
/// and the current time as timestamp.
pub fn batch(values: &[&str]) -> Bytes {
    let ts = now_ms();
    batch_ts(&values.iter().map(|v| (ts, *v)).collect::<Vec<_>>())
}

/// A plain batch with an explicit timestamp per record.
pub fn batch_ts(records: &[(i64, &str)]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for (i, (ts, v)) in records.iter().enumerate() {
        let key = format!("k{i}");
        b.push(*ts, Some(key.as_bytes()), Some(v.as_bytes()), &[])
            .expect("push");
    }
    b.build()
}

/// An idempotent batch from producer `pid`/`epoch` whose first record has
/// sequence `seq`.
pub fn idem_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None).with_producer(pid, epoch, seq);
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        b.push(now_ms(), Some(key.as_bytes()), Some(v.as_bytes()), &[])
            .expect("push");
    }
    b.build()
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

impl Rec {
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }
}

/// Splits fetched record bytes into whole batches (checking each CRC) and
/// decodes every record.
pub fn decode(records: Option<&Bytes>) -> Vec<Rec> {
    let Some(records) = records else {
        return Vec::new();
    };
    let batches = batch::split_batches(records)
        .unwrap_or_else(|e| panic!("fetched bytes are not whole valid batches: {e}"));
    let mut out = Vec::new();
    for (h, b) in batches {
        for r in batch::decode_records(&b).unwrap_or_else(|e| panic!("undecodable batch: {e}")) {
            out.push(Rec {
                offset: r.offset(&h),
                timestamp: r.timestamp(&h),
                key: r.key.clone(),
                value: r.value.clone(),
            });
        }
    }
    out
}

/// Base offsets of the batches in fetched record bytes.
pub fn batch_bases(records: Option<&Bytes>) -> Vec<(i64, i64)> {
    let Some(records) = records else {
        return Vec::new();
    };
    batch::split_batches(records)
        .expect("whole batches")
        .into_iter()
        .map(|(h, _)| (h.base_offset, h.last_offset()))
        .collect()
}

// ---------------------------------------------------------------- requests

pub fn create_topic(
    c: &mut Client,
    name: &str,
    partitions: i32,
    rf: i16,
    configs: &[(&str, &str)],
) -> CreatableTopicResult {
    let mut t = CreatableTopic::default();
    t.name = topic_name(name);
    t.num_partitions = partitions;
    t.replication_factor = rf;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = CreatableTopicConfig::default();
            c.name = s(k);
            c.value = Some(s(v));
            c
        })
        .collect();
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    let mut resp = c.send(7, &req);
    assert_eq!(resp.topics.len(), 1, "one topic result");
    resp.topics.remove(0)
}

/// Sets one config of `topic` with IncrementalAlterConfigs and asserts
/// success.
pub fn set_topic_config(c: &mut Client, topic: &str, name: &str, value: &str) {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let mut cfg = AlterableConfig::default();
    cfg.name = s(name);
    cfg.config_operation = 0; // SET
    cfg.value = Some(s(value));
    let mut res = AlterConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = s(topic);
    res.configs = vec![cfg];
    let mut req = kafka_protocol::messages::IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    let resp = c.send(1, &req);
    assert_eq!(
        resp.responses[0].error_code,
        ErrorCode::None.code(),
        "IncrementalAlterConfigs: {:?}",
        resp.responses[0].error_message
    );
}

/// Creates a topic and asserts success; returns its id.
pub fn create_topic_ok(
    c: &mut Client,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Uuid {
    let r = create_topic(c, name, partitions, 1, configs);
    assert_eq!(
        r.error_code,
        ErrorCode::None.code(),
        "CreateTopics {name}: {:?}",
        r.error_message
    );
    r.topic_id
}

pub fn produce_request(acks: i16, parts: &[(&str, i32, Bytes)]) -> ProduceRequest {
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 10_000;
    for (topic, partition, records) in parts {
        let mut pd = PartitionProduceData::default();
        pd.index = *partition;
        pd.records = Some(records.clone());
        match req
            .topic_data
            .iter_mut()
            .find(|t| t.name.0.as_str() == *topic)
        {
            Some(t) => t.partition_data.push(pd),
            None => {
                let mut t = TopicProduceData::default();
                t.name = topic_name(topic);
                t.partition_data.push(pd);
                req.topic_data.push(t);
            }
        }
    }
    req
}

/// Produce one batch (acks=all) at `version`; returns the partition answer.
pub fn produce_v(
    c: &mut Client,
    version: i16,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> PartitionProduceResponse {
    let resp = c.send(
        version,
        &produce_request(-1, &[(topic, partition, records)]),
    );
    assert_eq!(resp.responses.len(), 1);
    let t = &resp.responses[0];
    assert_eq!(t.name.0.as_str(), topic);
    assert_eq!(t.partition_responses.len(), 1);
    t.partition_responses[0].clone()
}

pub fn produce(
    c: &mut Client,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> PartitionProduceResponse {
    produce_v(c, 9, topic, partition, records)
}

/// Produce and assert success; returns the base offset.
pub fn produce_ok(c: &mut Client, topic: &str, partition: i32, records: Bytes) -> i64 {
    let r = produce(c, topic, partition, records);
    assert_eq!(
        r.error_code,
        ErrorCode::None.code(),
        "produce to {topic}-{partition}: {:?}",
        r.error_message
    );
    r.base_offset
}

/// Which topic a fetch names: by name (v < 13) or id (v >= 13).
#[derive(Clone, Debug)]
pub struct TopicRef {
    pub name: String,
    pub id: Uuid,
}

pub fn fetch_request(
    version: i16,
    topic: &TopicRef,
    partitions: &[(i32, i64)],
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    let mut ft = FetchTopic::default();
    if version >= 13 {
        ft.topic_id = topic.id;
    } else {
        ft.topic = topic_name(&topic.name);
    }
    ft.partitions = partitions
        .iter()
        .map(|(p, off)| {
            let mut fp = FetchPartition::default();
            fp.partition = *p;
            fp.fetch_offset = *off;
            fp.partition_max_bytes = 1 << 20;
            if version >= 5 {
                fp.log_start_offset = -1;
            }
            fp
        })
        .collect();
    let mut req = FetchRequest::default();
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = min_bytes;
    req.max_bytes = 16 << 20;
    req.topics = vec![ft];
    if version >= 7 {
        req.session_epoch = -1;
    }
    req
}

/// Fetch one partition (no waiting) and return its answer.
pub fn fetch_v(
    c: &mut Client,
    version: i16,
    topic: &TopicRef,
    partition: i32,
    offset: i64,
) -> PartitionData {
    let resp: FetchResponse = c.send(
        version,
        &fetch_request(version, topic, &[(partition, offset)], 0, 0),
    );
    assert_eq!(
        resp.error_code,
        ErrorCode::None.code(),
        "fetch top-level error"
    );
    assert_eq!(resp.responses.len(), 1, "one topic in fetch response");
    let t = &resp.responses[0];
    if version >= 13 {
        assert_eq!(
            t.topic_id, topic.id,
            "fetch v{version} answers with the topic id"
        );
    } else {
        assert_eq!(
            t.topic.0.as_str(),
            topic.name,
            "fetch v{version} answers with the topic name"
        );
    }
    assert_eq!(t.partitions.len(), 1);
    let p = t.partitions[0].clone();
    assert_eq!(p.partition_index, partition);
    p
}

pub fn fetch(c: &mut Client, topic: &TopicRef, partition: i32, offset: i64) -> PartitionData {
    fetch_v(c, 12, topic, partition, offset)
}

/// Every record from `from` up to the high watermark, following batches.
pub fn fetch_all(c: &mut Client, topic: &TopicRef, partition: i32, from: i64) -> Vec<Rec> {
    let mut out: Vec<Rec> = Vec::new();
    let mut next = from;
    for _ in 0..10_000 {
        let p = fetch(c, topic, partition, next);
        assert_eq!(
            p.error_code,
            ErrorCode::None.code(),
            "fetch {}-{partition} at {next}",
            topic.name
        );
        let recs: Vec<Rec> = decode(p.records.as_ref())
            .into_iter()
            .filter(|r| r.offset >= next)
            .collect();
        if recs.is_empty() {
            assert_eq!(
                next, p.high_watermark,
                "no records below the high watermark at {next}"
            );
            return out;
        }
        next = recs.last().map(|r| r.offset + 1).unwrap_or(next);
        out.extend(recs);
    }
    panic!("fetch_all did not reach the high watermark");
}

pub fn list_offsets(
    c: &mut Client,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> ListOffsetsPartitionResponse {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = partition;
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = topic_name(topic);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = (-1).into();
    req.topics = vec![t];
    let resp = c.send(7, &req);
    assert_eq!(resp.topics.len(), 1);
    assert_eq!(resp.topics[0].partitions.len(), 1);
    resp.topics[0].partitions[0].clone()
}

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

/// ListOffsets offset, asserting no error.
pub fn offset_of(c: &mut Client, topic: &str, partition: i32, timestamp: i64) -> i64 {
    let r = list_offsets(c, topic, partition, timestamp);
    assert_eq!(
        r.error_code,
        ErrorCode::None.code(),
        "ListOffsets {topic}-{partition} @ {timestamp}"
    );
    r.offset
}

pub fn metadata(c: &mut Client, topics: Option<&[&str]>) -> MetadataResponse {
    let mut req = MetadataRequest::default();
    req.topics = topics.map(|ts| {
        ts.iter()
            .map(|t| {
                let mut mt = MetadataRequestTopic::default();
                mt.name = Some(topic_name(t));
                mt
            })
            .collect()
    });
    req.allow_auto_topic_creation = false;
    c.send(12, &req)
}

pub fn topic_ref(c: &mut Client, name: &str) -> TopicRef {
    let m = metadata(c, Some(&[name]));
    assert_eq!(m.topics.len(), 1);
    assert_eq!(
        m.topics[0].error_code,
        ErrorCode::None.code(),
        "metadata for {name}"
    );
    TopicRef {
        name: name.to_string(),
        id: m.topics[0].topic_id,
    }
}

// ---------------------------------------------------------------- files

/// Names of the `*.log` segment files in `dir`, sorted.
pub fn log_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Polls `f` every `POLL_INTERVAL` until it returns true (bounded); returns
/// whether it did.
pub fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..POLL_ROUNDS {
        if f() {
            return true;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    false
}

/// A test CA with a server certificate for 127.0.0.1/localhost and client
/// certificates, as PEM files in a temp directory.
pub struct Pki {
    dir: tempfile::TempDir,
    ca_key: KeyPair,
    ca_params: CertificateParams,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sluice test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        let pki = Pki {
            dir,
            ca_key,
            ca_params,
        };
        pki.leaf("server", &["localhost", "127.0.0.1"], true);
        pki
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    /// Issues `<stem>.pem` and `<stem>.key` (CN=stem); `combined` also
    /// writes `<stem>-keystore.pem` with chain and key in one file (Kafka's
    /// PEM keystore form).
    pub fn leaf(&self, stem: &str, names: &[&str], combined: bool) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        // DER order is most general first, as CAs issue them (and ::new
        // pre-fills a CN, which push would replace in place).
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Sluice Tests");
        params.distinguished_name.push(DnType::CommonName, stem);
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        std::fs::write(self.path(&format!("{stem}.pem")), cert.pem()).expect("write cert");
        std::fs::write(self.path(&format!("{stem}.key")), key.serialize_pem()).expect("write key");
        if combined {
            std::fs::write(
                self.path(&format!("{stem}-keystore.pem")),
                format!("{}{}", cert.pem(), key.serialize_pem()),
            )
            .expect("write keystore");
        }
    }

    pub fn broker_ssl_config(&self) -> String {
        format!(
            "\"ssl.keystore.location\" = {:?}\n",
            self.path("server-keystore.pem").display().to_string()
        )
    }
}

/// The DescribeQuorum request for the metadata log's partition.
pub fn describe_quorum_request() -> kafka_protocol::messages::DescribeQuorumRequest {
    use kafka_protocol::messages::describe_quorum_request::{
        PartitionData as QuorumPartition, TopicData as QuorumTopic,
    };
    let mut req = kafka_protocol::messages::DescribeQuorumRequest::default();
    let mut topic = QuorumTopic::default();
    topic.topic_name = topic_name("__cluster_metadata");
    topic.partitions = vec![QuorumPartition::default()];
    req.topics = vec![topic];
    req
}

/// DescribeQuorum of the metadata log through `client`: its broker
/// forwards to the quorum's leader.
pub fn describe_quorum(client: &mut Client) -> kafka_protocol::messages::DescribeQuorumResponse {
    client.send(1, &describe_quorum_request())
}

/// The active controller a DescribeQuorum answer names (-1: none).
pub fn active_controller(q: &kafka_protocol::messages::DescribeQuorumResponse) -> i32 {
    q.topics
        .first()
        .and_then(|t| t.partitions.first())
        .filter(|p| p.error_code == 0)
        .map_or(-1, |p| p.leader_id.0)
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The last `lines` lines of every node's log, headed by its node id
/// (nodes numbered from 1), for failure messages.
pub fn node_logs(nodes: &[Broker], lines: usize) -> String {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("--- node {} ---\n{}", i + 1, tail(&n.log(), lines)))
        .collect()
}
