//! The controller quorum's own transport secured as
//! `listener.security.protocol.map` says for the CONTROLLER listener: three
//! combined-mode `sluiced` processes form a quorum, elect a controller and
//! create a replication-factor-3 topic over SSL (mutual TLS) and over
//! SASL_SSL with SCRAM-SHA-256; a plaintext peer on an SSL controller port
//! gets no answer; a broker whose controller password is wrong never joins
//! and says why in its log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;
use sluice_broker::auth::{ScramCredential, ScramMechanism, ScramStore};

const SESSION_TIMEOUT_MS: u64 = 2_000;

/// The SCRAM user the controllers log in to each other as.
const CONTROLLER_USER: &str = "controller";
const CONTROLLER_PASSWORD: &str = "controller-secret";

fn node_config(id: i32, voters: &str, extra: &str) -> String {
    format!(
        r#"
"node.id" = {id}
"process.roles" = "broker,controller"
"controller.quorum.voters" = "{voters}"
"controller.listener.names" = "CONTROLLER"
"broker.session.timeout.ms" = {SESSION_TIMEOUT_MS}
"broker.heartbeat.interval.ms" = 300
"controller.quorum.election.timeout.ms" = 500
"shards.pin.cores" = false
{extra}
"#
    )
}

/// The TLS settings every node shares: its keystore (served, and presented
/// as client certificate) and the CA it trusts; with a truststore set,
/// `ssl.client.auth` defaults to required, so this is mutual TLS.
fn tls_config(pki: &Pki) -> String {
    format!(
        "{}\"ssl.truststore.location\" = {:?}\n",
        pki.broker_ssl_config(),
        pki.path("ca.pem").display().to_string()
    )
}

/// SCRAM-SHA-256 on a SASL_SSL controller listener, logging in as
/// `password` says.
fn sasl_ssl_config(pki: &Pki, password: &str) -> String {
    format!(
        r#"{}"listener.security.protocol.map" = "CONTROLLER:SASL_SSL"
"sasl.mechanism.controller.protocol" = "SCRAM-SHA-256"
"listener.name.controller.scram-sha-256.sasl.jaas.config" = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="{CONTROLLER_USER}" password="{password}";'
"#,
        tls_config(pki)
    )
}

/// Writes the controllers' SCRAM credential into a node's credential store
/// before it starts (Kafka's `kafka-storage format --add-scram`).
fn provision_scram(node: &Broker) {
    let mut store = ScramStore::new();
    let m = ScramMechanism::Sha256;
    let credential = ScramCredential::from_password(
        m,
        CONTROLLER_PASSWORD,
        &ScramCredential::random_salt(),
        4096,
    )
    .expect("credential");
    store
        .upsert(CONTROLLER_USER, m, credential)
        .expect("upsert");
    store
        .save(&ScramStore::path_in(&node.data_dir()))
        .expect("save credentials");
}

struct Cluster {
    nodes: Vec<Broker>,
    voters: String,
    controller_ports: Vec<u16>,
}

impl Cluster {
    /// Three combined nodes with `extra` settings; `prepare` sees each
    /// node's directory before it starts.
    fn start(extra: &str, prepare: impl Fn(&Broker)) -> Cluster {
        let controller_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let voters = quorum_voters(&controller_ports);
        let mut nodes: Vec<Broker> = controller_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let mut node = Broker::create_opts(Opts {
                    config: node_config(i as i32 + 1, &voters, extra),
                    shards: 1,
                    listeners: vec![format!("CONTROLLER://127.0.0.1:{port}")],
                    ..Opts::default()
                });
                prepare(&node);
                node.relaunch();
                node
            })
            .collect();
        for n in &mut nodes {
            n.wait_until_ready();
        }
        Cluster {
            nodes,
            voters,
            controller_ports,
        }
    }

    fn node(&mut self, id: i32) -> &mut Broker {
        &mut self.nodes[(id - 1) as usize]
    }

    /// The active controller as node `id` knows it (-1: none).
    fn active_controller_from(&mut self, id: i32) -> i32 {
        active_controller(&describe_quorum(&mut self.node(id).client()))
    }

    fn logs(&self) -> String {
        node_logs(&self.nodes, 30)
    }

    /// The quorum elected a controller, and a replication-factor-3 topic is
    /// created with a replica on every node.
    fn assert_elects_and_replicates(&mut self, topic: &str) {
        let mut controller = -1;
        assert!(
            wait_until(|| {
                controller = self.active_controller_from(1);
                controller > 0
            }),
            "no controller elected\n{}",
            self.logs()
        );
        assert_eq!(self.active_controller_from(2), controller);
        assert_eq!(self.active_controller_from(3), controller);
        let created = create_topic(&mut self.node(1).client(), topic, 3, 3, &[]);
        assert_eq!(
            created.error_code,
            0,
            "{:?}\n{}",
            created.error_message,
            self.logs()
        );
        let m = metadata(&mut self.node(2).client(), Some(&[topic]));
        let t = &m.topics[0];
        assert_eq!(t.partitions.len(), 3);
        for p in &t.partitions {
            let mut replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
            replicas.sort();
            assert_eq!(replicas, vec![1, 2, 3], "{t:?}");
        }
    }
}

/// What a plaintext peer gets from a controller port for a well-formed
/// DescribeVoters request frame: everything it can read within 3 s.
fn plaintext_probe(port: u16) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let request = br#"{"target":0,"rpc":"DescribeVoters"}"#;
    let mut frame = (request.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(request);
    let _ = s.write_all(&frame);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn an_ssl_controller_quorum_forms_and_a_plaintext_peer_gets_nothing() {
    let pki = Pki::new();
    let extra = format!(
        "{}\"listener.security.protocol.map\" = \"CONTROLLER:SSL\"\n",
        tls_config(&pki)
    );
    let mut c = Cluster::start(&extra, |_| {});
    c.assert_elects_and_replicates("sealed-quorum");
    assert!(
        c.node(1).log().contains("controller transport secured"),
        "{}",
        c.logs()
    );
    for port in c.controller_ports.clone() {
        let got = plaintext_probe(port);
        let text = String::from_utf8_lossy(&got);
        assert!(
            !text.contains("Voters") && !text.contains("127.0.0.1"),
            "a plaintext peer was answered: {text:?}"
        );
    }
}

#[test]
fn a_sasl_ssl_scram_quorum_forms_and_a_wrong_password_cannot_join() {
    let pki = Pki::new();
    let mut c = Cluster::start(&sasl_ssl_config(&pki, CONTROLLER_PASSWORD), provision_scram);
    c.assert_elects_and_replicates("scram-quorum");
    // Without logging in, a peer's request is refused, not answered.
    let got = plaintext_probe(c.controller_ports[0]);
    assert!(!String::from_utf8_lossy(&got).contains("Voters"), "{got:?}");

    // A broker-only node with the wrong password: refused by the
    // controllers, it never registers, and its log says why.
    let voters = c.voters.clone();
    let config = format!(
        r#"
"node.id" = 4
"process.roles" = "broker"
"controller.quorum.voters" = "{voters}"
"controller.listener.names" = "CONTROLLER"
"broker.session.timeout.ms" = {SESSION_TIMEOUT_MS}
"broker.heartbeat.interval.ms" = 300
"controller.quorum.election.timeout.ms" = 500
"shards.pin.cores" = false
{}"#,
        sasl_ssl_config(&pki, "not-the-password")
    );
    let intruder = Broker::launch_opts(Opts {
        config,
        shards: 1,
        ..Opts::default()
    });
    assert!(
        wait_until(|| intruder.log().contains("invalid credentials")),
        "no refusal in the log of node 4:\n{}",
        tail(&intruder.log(), 30)
    );
    let log = intruder.log();
    assert!(
        log.contains("a controller refused this node's connection"),
        "{}",
        tail(&log, 30)
    );
    let m = metadata(&mut c.node(1).client(), None);
    assert!(
        m.brokers.iter().all(|b| b.node_id.0 != 4),
        "node 4 registered: {:?}",
        m.brokers
    );
    // The refusal is logged once, not on every retry.
    std::thread::sleep(Duration::from_secs(2));
    let refusals = intruder
        .log()
        .matches("a controller refused this node's connection")
        .count();
    assert!(
        refusals <= 3,
        "{refusals} refusals logged:\n{}",
        tail(&intruder.log(), 30)
    );
}
