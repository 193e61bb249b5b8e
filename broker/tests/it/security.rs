//! Security end to end: `sluiced` with SSL, SASL_PLAINTEXT and SASL_SSL
//! listeners, driven by the Sluice client over real sockets. TLS (server
//! and mutual), SASL PLAIN, SCRAM-SHA-256/512 (credentials managed through
//! AlterUserScramCredentials), OAUTHBEARER carrying AWS MSK IAM tokens, and
//! authorization by IAM policy documents: allowed, denied, explicit Deny,
//! Metadata hiding topics. Bad credentials and protocol misuse close the
//! connection with a logged reason.

use crate::support;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{free_port, Broker, Opts, Pki};
use sluice::admin::ScramCredentialChange;
use sluice::config::TokenProviderHandle;
use sluice::net::sasl::msk_iam::{AwsCredentials, MskIamTokenProvider};
use sluice::{
    AdminClient, ClientConfig, Consumer, ConsumerConfig, Error, NewTopic, Producer, ProducerConfig,
    ProducerRecord,
};
use sluice_protocol::ErrorCode;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const ALICE_AKID: &str = "AKIAALICEEXAMPLE0001";
const ALICE_SECRET: &str = "alice/secret/key/for/tests/only/0000000";
const ALICE_ARN: &str = "arn:aws:iam::123456789012:user/alice";
const BOB_AKID: &str = "AKIABOBEXAMPLE000002";
const BOB_SECRET: &str = "bob/secret/key/for/tests/only/00000000000";
const BOB_ARN: &str = "arn:aws:iam::123456789012:user/bob";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn toml_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Client properties for a broker port plus `extra`.
#[derive(Clone)]
struct Props(Vec<(String, String)>);

impl Props {
    fn new(port: u16, extra: &[(&str, String)]) -> Props {
        let mut all = vec![
            ("bootstrap.servers".to_string(), format!("127.0.0.1:{port}")),
            ("request.timeout.ms".to_string(), "10000".to_string()),
        ];
        all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Props(all)
    }
    fn with(&self, k: &str, v: &str) -> Props {
        let mut p = self.clone();
        p.0.push((k.into(), v.into()));
        p
    }
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    fn client(&self) -> ClientConfig {
        ClientConfig::from_properties(self.iter()).expect("client config")
    }
}

fn client_cfg(port: u16, extra: &[(&str, String)]) -> ClientConfig {
    Props::new(port, extra).client()
}

async fn produce_one(props: &Props, topic: &str, value: &str) -> sluice::Result<i64> {
    let pc = ProducerConfig::from_properties(
        props
            .with("linger.ms", "0")
            .with("delivery.timeout.ms", "15000")
            .with("request.timeout.ms", "10000")
            .iter(),
    )?;
    let producer = Producer::connect(pc).await?;
    let r = producer
        .send(ProducerRecord::new(topic).value(value.to_string()))
        .await;
    let _ = producer.close(Duration::from_secs(5)).await;
    r.map(|m| m.offset)
}

/// A consumer with `props`, assigned partition 0 of `topic` from the start.
async fn consumer_of_partition_0(props: &Props, topic: &str) -> Consumer {
    let cc = ConsumerConfig::from_properties(props.with("auto.offset.reset", "earliest").iter())
        .expect("consumer config");
    let mut consumer = Consumer::connect(cc).await.expect("consumer");
    consumer
        .assign([sluice::TopicPartition::new(topic, 0)])
        .expect("assign");
    consumer
}

async fn create_topic(cfg: ClientConfig, name: &str) -> sluice::Result<()> {
    let admin = AdminClient::connect(cfg).await?;
    for (_, r) in admin
        .create_topics(vec![NewTopic::new(name, 1, 1)], false)
        .await?
    {
        r?;
    }
    Ok(())
}

/// Sends one Kafka frame on a raw socket and reports whether the broker
/// closed the connection without a Kafka answer (a TLS alert record, type
/// 21, may come first).
fn closed_without_answer(port: u16, frame: &[u8]) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(frame).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(_) => return false, // still open after the timeout
        }
    }
    got.is_empty() || got[0] == 21
}

/// A Metadata v1 request frame (all topics).
fn metadata_frame() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&3i16.to_be_bytes()); // Metadata
    body.extend_from_slice(&1i16.to_be_bytes()); // v1
    body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    body.extend_from_slice(&(-1i32).to_be_bytes()); // null topics = all
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn wait_for_log(broker: &Broker, needle: &str) -> bool {
    for _ in 0..support::POLL_ROUNDS {
        if broker.log().contains(needle) {
            return true;
        }
        std::thread::sleep(support::POLL_INTERVAL);
    }
    false
}

#[test]
fn tls_listener_serves_clients_and_refuses_plaintext_ones() {
    let pki = Pki::new();
    let tls_port = free_port();
    let broker = Broker::start_opts(Opts {
        config: pki.broker_ssl_config(),
        listeners: vec![format!("SSL://127.0.0.1:{tls_port}")],
        ..Opts::default()
    });
    let rt = runtime();
    let ssl = Props::new(
        tls_port,
        &[
            ("security.protocol", "SSL".to_string()),
            ("ssl.ca.location", pki.path("ca.pem").display().to_string()),
        ],
    );
    rt.block_on(async {
        create_topic(ssl.client(), "tls-topic")
            .await
            .expect("create over TLS");
        // Metadata advertises the TLS listener's own address to its clients.
        let admin = AdminClient::connect(ssl.client()).await.expect("admin");
        let desc = admin.describe_cluster().await.expect("describe cluster");
        assert_eq!(desc.brokers[0].port, i32::from(tls_port), "{desc:?}");
        for i in 0..20 {
            produce_one(&ssl, "tls-topic", &format!("v{i}"))
                .await
                .expect("produce over TLS");
        }
        // Fetch responses go through TLS (no splice): read them all back.
        let mut consumer = consumer_of_partition_0(&ssl, "tls-topic").await;
        let mut got = Vec::new();
        for _ in 0..50 {
            for r in consumer
                .poll(Duration::from_millis(500))
                .await
                .expect("poll")
            {
                got.push(
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string(),
                );
            }
            if got.len() >= 20 {
                break;
            }
        }
        assert_eq!(got, (0..20).map(|i| format!("v{i}")).collect::<Vec<_>>());

        // Megabyte-sized produce requests and fetch responses: more than
        // rustls buffers at once in either direction.
        create_topic(ssl.client(), "tls-big").await.expect("create");
        let pc = ProducerConfig::from_properties(
            ssl.with("linger.ms", "50")
                .with("batch.size", "1048576")
                .iter(),
        )
        .expect("producer config");
        let producer = Producer::connect(pc).await.expect("producer");
        let big = |i: usize| format!("{i:06}").repeat(10_000 / 6);
        let sends: Vec<_> = (0..300)
            .map(|i| producer.send(ProducerRecord::new("tls-big").partition(0).value(big(i))))
            .collect();
        for (i, s) in sends.into_iter().enumerate() {
            assert_eq!(s.await.expect("large produce over TLS").offset, i as i64);
        }
        let _ = producer.close(Duration::from_secs(5)).await;
        let mut consumer = consumer_of_partition_0(&ssl, "tls-big").await;
        let mut n = 0;
        for _ in 0..100 {
            for r in consumer
                .poll(Duration::from_millis(500))
                .await
                .expect("poll")
            {
                assert_eq!(r.value.as_deref(), Some(big(n).as_bytes()), "record {n}");
                n += 1;
            }
            if n >= 300 {
                break;
            }
        }
        assert_eq!(n, 300);
    });
    // A plaintext Kafka client on the TLS port is closed with a reason.
    assert!(closed_without_answer(tls_port, &metadata_frame()));
    assert!(
        wait_for_log(&broker, "plaintext client on a TLS listener"),
        "no reason logged:\n{}",
        broker.log()
    );
    // A client that does not trust the broker's CA fails the handshake.
    let other = Pki::new();
    let err = rt
        .block_on(create_topic(
            client_cfg(
                tls_port,
                &[
                    ("security.protocol", "SSL".into()),
                    (
                        "ssl.ca.location",
                        other.path("ca.pem").display().to_string(),
                    ),
                ],
            ),
            "never",
        ))
        .unwrap_err();
    assert!(
        err.code().is_none(),
        "a TLS failure is not a Kafka error code: {err}"
    );
}

/// The `[auth]` table naming this test cluster, plus `extra` TOML.
fn auth_section(extra: &str) -> String {
    format!(
        "[auth]\nregion = \"{REGION}\"\naccount = \"{ACCOUNT}\"\ncluster_name = \"sluice-test\"\ncluster_uuid = \"11111111-2222-3333-4444-555555555555\"\n{extra}"
    )
}

fn topic_arn(pattern: &str) -> String {
    format!("arn:aws:kafka:{REGION}:{ACCOUNT}:topic/sluice-test/*/{pattern}")
}

fn group_arn(pattern: &str) -> String {
    format!("arn:aws:kafka:{REGION}:{ACCOUNT}:group/sluice-test/*/{pattern}")
}

fn cluster_arn() -> String {
    format!("arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/sluice-test/*")
}

/// A `[[auth.policies]]` entry attaching an IAM policy document.
fn policy(principal: &str, statements: &str) -> String {
    format!("[[auth.policies]]\nprincipal = {principal:?}\ndocument = '''\n{{\"Version\": \"2012-10-17\", \"Statement\": [{statements}]}}\n'''\n")
}

/// The setup principal (PLAINTEXT listener) may do everything.
fn anonymous_admin_policy() -> String {
    policy(
        "User:ANONYMOUS",
        r#"{"Effect": "Allow", "Action": "kafka-cluster:*", "Resource": "*"}"#,
    )
}

#[test]
fn mutual_tls_principal_is_authorized_by_iam_policy() {
    let pki = Pki::new();
    pki.leaf("alice", &[], false);
    let tls_port = free_port();
    let alice_policy = format!(
        r#"{{"Effect": "Allow", "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"], "Resource": "{}"}},
           {{"Effect": "Allow", "Action": ["kafka-cluster:*Topic*", "kafka-cluster:WriteData", "kafka-cluster:ReadData"], "Resource": "{}"}}"#,
        cluster_arn(),
        topic_arn("a-*")
    );
    let config = format!(
        "{}\"ssl.truststore.location\" = {}\n\"ssl.client.auth\" = \"required\"\n{}{}{}",
        pki.broker_ssl_config(),
        toml_str(&pki.path("ca.pem")),
        auth_section(""),
        anonymous_admin_policy(),
        policy("User:CN=alice,O=Sluice Tests", &alice_policy),
    );
    let broker = Broker::start_opts(Opts {
        config,
        listeners: vec![format!("SSL://127.0.0.1:{tls_port}")],
        ..Opts::default()
    });
    let rt = runtime();
    let plain = Props::new(broker.port, &[]);
    let alice = Props::new(
        tls_port,
        &[
            ("security.protocol", "SSL".into()),
            ("ssl.ca.location", pki.path("ca.pem").display().to_string()),
            (
                "ssl.certificate.location",
                pki.path("alice.pem").display().to_string(),
            ),
            (
                "ssl.key.location",
                pki.path("alice.key").display().to_string(),
            ),
        ],
    );
    rt.block_on(async {
        create_topic(plain.client(), "b-1")
            .await
            .expect("setup topic");
        create_topic(alice.client(), "a-1")
            .await
            .expect("alice may create a-*");
        produce_one(&alice, "a-1", "hello")
            .await
            .expect("alice may write a-*");
        let err = create_topic(alice.client(), "b-2").await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::TopicAuthorizationFailed),
            "{err}"
        );
        let err = produce_one(&alice, "b-1", "nope").await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::TopicAuthorizationFailed),
            "{err}"
        );
        // Metadata leaves out what alice may not describe.
        let admin = AdminClient::connect(alice.client()).await.expect("admin");
        let names: Vec<String> = admin
            .list_topics(false)
            .await
            .expect("list")
            .iter()
            .map(|t| t.name.clone())
            .collect();
        assert!(
            names.contains(&"a-1".to_string()) && !names.contains(&"b-1".to_string()),
            "{names:?}"
        );
    });
    // Without a client certificate the handshake is refused.
    let anonymous = Props::new(
        tls_port,
        &[
            ("security.protocol", "SSL".into()),
            ("ssl.ca.location", pki.path("ca.pem").display().to_string()),
        ],
    );
    assert!(rt
        .block_on(create_topic(anonymous.client(), "a-2"))
        .is_err());
}

#[test]
fn sasl_plain_and_scram_over_tls_with_managed_credentials() {
    let pki = Pki::new();
    let port = free_port();
    let config = format!(
        "{}\"sasl.enabled.mechanisms\" = \"PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\"\n{}",
        pki.broker_ssl_config(),
        auth_section("plain_users = { carol = \"carol-pass\" }\n"),
    );
    let mut broker = Broker::start_opts(Opts {
        config,
        listeners: vec![format!("SASL_SSL://127.0.0.1:{port}")],
        ..Opts::default()
    });
    let rt = runtime();
    let sasl = |mechanism: &str, user: &str, password: &str| {
        Props::new(
            port,
            &[
                ("security.protocol", "SASL_SSL".into()),
                ("ssl.ca.location", pki.path("ca.pem").display().to_string()),
                ("sasl.mechanism", mechanism.into()),
                ("sasl.username", user.into()),
                ("sasl.password", password.into()),
            ],
        )
    };
    let plain = Props::new(broker.port, &[]);
    rt.block_on(async {
        create_topic(sasl("PLAIN", "carol", "carol-pass").client(), "sasl-topic")
            .await
            .expect("PLAIN login");
        produce_one(&sasl("PLAIN", "carol", "carol-pass"), "sasl-topic", "x")
            .await
            .expect("PLAIN produce");
        let err = create_topic(sasl("PLAIN", "carol", "wrong").client(), "t2")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Authentication(_)), "{err}");

        // SCRAM users are managed through the Kafka admin API.
        let admin = AdminClient::connect(plain.client()).await.expect("admin");
        let results = admin
            .alter_user_scram_credentials(&[
                ScramCredentialChange::Upsert {
                    user: "dave".into(),
                    mechanism: "SCRAM-SHA-256".into(),
                    iterations: 4096,
                    password: "dave-pass".into(),
                },
                ScramCredentialChange::Upsert {
                    user: "dave".into(),
                    mechanism: "SCRAM-SHA-512".into(),
                    iterations: 8192,
                    password: "dave-pass".into(),
                },
            ])
            .await
            .expect("alter");
        assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
        let users = admin
            .describe_user_scram_credentials(None)
            .await
            .expect("describe");
        assert_eq!(users.len(), 1);
        assert_eq!(
            users[0].credentials,
            vec![
                ("SCRAM-SHA-256".to_string(), 4096),
                ("SCRAM-SHA-512".to_string(), 8192)
            ]
        );
        // Too few iterations is refused, naming the reason.
        let bad = admin
            .alter_user_scram_credentials(&[ScramCredentialChange::Upsert {
                user: "erin".into(),
                mechanism: "SCRAM-SHA-256".into(),
                iterations: 100,
                password: "p".into(),
            }])
            .await
            .expect("alter");
        assert_eq!(
            bad[0].1.as_ref().unwrap_err().code(),
            Some(ErrorCode::UnacceptableCredential)
        );

        for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            produce_one(&sasl(mech, "dave", "dave-pass"), "sasl-topic", mech)
                .await
                .unwrap_or_else(|e| panic!("{mech} login: {e}"));
            let err = create_topic(sasl(mech, "dave", "not-dave").client(), "t3")
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Authentication(_)), "{mech}: {err}");
        }
        let err = create_topic(sasl("SCRAM-SHA-256", "nobody", "x").client(), "t4")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Authentication(_)), "{err}");
    });
    // Credentials survive a restart (they are in the data directory).
    broker.sigterm();
    broker.restart();
    rt.block_on(async {
        produce_one(
            &sasl("SCRAM-SHA-512", "dave", "dave-pass"),
            "sasl-topic",
            "after restart",
        )
        .await
        .expect("SCRAM after restart");
        let admin = AdminClient::connect(plain.client()).await.expect("admin");
        let r = admin
            .alter_user_scram_credentials(&[ScramCredentialChange::Delete {
                user: "dave".into(),
                mechanism: "SCRAM-SHA-512".into(),
            }])
            .await
            .expect("delete");
        assert!(r[0].1.is_ok(), "{r:?}");
        let err = create_topic(sasl("SCRAM-SHA-512", "dave", "dave-pass").client(), "t5")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Authentication(_)), "{err}");
        produce_one(
            &sasl("SCRAM-SHA-256", "dave", "dave-pass"),
            "sasl-topic",
            "256 still works",
        )
        .await
        .expect("SHA-256 kept");
    });
    assert!(
        broker.log().contains("SASL authentication failed"),
        "{}",
        broker.log()
    );
}

fn iam_token_provider(akid: &str, secret: &str) -> TokenProviderHandle {
    TokenProviderHandle(Arc::new(
        MskIamTokenProvider::new()
            .with_region(REGION)
            .with_credentials(AwsCredentials::new(akid, secret, None)),
    ))
}

#[test]
fn msk_iam_tokens_authenticate_and_policies_authorize() {
    let port = free_port();
    let alice_policy = format!(
        r#"{{"Effect": "Allow", "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"], "Resource": "{cluster}"}},
           {{"Effect": "Allow", "Action": ["kafka-cluster:CreateTopic", "kafka-cluster:DescribeTopic", "kafka-cluster:WriteData", "kafka-cluster:ReadData"], "Resource": "{orders}"}},
           {{"Effect": "Deny", "Action": "kafka-cluster:WriteData", "Resource": "{locked}"}},
           {{"Effect": "Allow", "Action": ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"], "Resource": "{group}"}}"#,
        cluster = cluster_arn(),
        orders = topic_arn("orders*"),
        locked = topic_arn("orders-locked"),
        group = group_arn("billing"),
    );
    let creds = format!(
        "[[auth.iam_credentials]]\naccess_key_id = \"{ALICE_AKID}\"\nsecret_access_key = \"{ALICE_SECRET}\"\nprincipal_arn = \"{ALICE_ARN}\"\n\
         [[auth.iam_credentials]]\naccess_key_id = \"{BOB_AKID}\"\nsecret_access_key = \"{BOB_SECRET}\"\nprincipal_arn = \"{BOB_ARN}\"\n"
    );
    let config = format!(
        "{}{}{}",
        auth_section(&creds),
        anonymous_admin_policy(),
        policy(ALICE_ARN, &alice_policy)
    );
    let broker = Broker::start_opts(Opts {
        config,
        listeners: vec![format!("SASL_PLAINTEXT://127.0.0.1:{port}")],
        ..Opts::default()
    });
    let rt = runtime();
    let plain = Props::new(broker.port, &[]);
    let iam = Props::new(
        port,
        &[
            ("security.protocol", "SASL_PLAINTEXT".into()),
            ("sasl.mechanism", "OAUTHBEARER".into()),
        ],
    );
    let as_user = |provider: TokenProviderHandle| {
        let mut c = iam.client();
        c.sasl_oauth_token_provider = Some(provider);
        c
    };
    let producer_as = |provider: TokenProviderHandle| {
        let mut pc = ProducerConfig::from_properties(
            iam.with("linger.ms", "0")
                .with("delivery.timeout.ms", "15000")
                .iter(),
        )
        .expect("producer config");
        pc.client.sasl_oauth_token_provider = Some(provider);
        pc
    };
    rt.block_on(async {
        create_topic(plain.client(), "secret-topic")
            .await
            .expect("setup");
        create_topic(plain.client(), "orders-locked")
            .await
            .expect("setup");
        let alice = || iam_token_provider(ALICE_AKID, ALICE_SECRET);
        create_topic(as_user(alice()), "orders-1")
            .await
            .expect("alice creates orders-1");
        let p = Producer::connect(producer_as(alice()))
            .await
            .expect("producer");
        p.send(ProducerRecord::new("orders-1").value("o1"))
            .await
            .expect("alice writes orders-1");
        let err = p
            .send(ProducerRecord::new("orders-locked").value("x"))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::TopicAuthorizationFailed),
            "explicit Deny wins: {err}"
        );
        let _ = p.close(Duration::from_secs(5)).await;
        let err = create_topic(as_user(alice()), "payments")
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::TopicAuthorizationFailed),
            "{err}"
        );
        let admin = AdminClient::connect(as_user(alice())).await.expect("admin");
        let names: Vec<String> = admin
            .list_topics(false)
            .await
            .expect("list")
            .iter()
            .map(|t| t.name.clone())
            .collect();
        assert!(names.contains(&"orders-1".to_string()), "{names:?}");
        assert!(
            !names.contains(&"secret-topic".to_string()),
            "Metadata must hide secret-topic: {names:?}"
        );

        // Groups: billing allowed, anything else GROUP_AUTHORIZATION_FAILED.
        for (group, ok) in [("billing", true), ("fraud", false)] {
            let mut cc = ConsumerConfig::from_properties(
                iam.with("group.id", group)
                    .with("auto.offset.reset", "earliest")
                    .with("enable.auto.commit", "false")
                    .iter(),
            )
            .expect("consumer config");
            cc.client.sasl_oauth_token_provider = Some(alice());
            let mut c = Consumer::connect(cc).await.expect("consumer");
            c.subscribe(&["orders-1"]).expect("subscribe");
            let mut outcome = None;
            for _ in 0..40 {
                match c.poll(Duration::from_millis(500)).await {
                    Ok(recs) if !recs.is_empty() => {
                        outcome = Some(c.commit_sync().await);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        outcome = Some(Err(e));
                        break;
                    }
                }
            }
            let outcome = outcome.expect("no outcome from the group");
            if ok {
                outcome.unwrap_or_else(|e| panic!("{group}: {e}"));
            } else {
                let e = outcome.unwrap_err();
                assert_eq!(
                    e.code(),
                    Some(ErrorCode::GroupAuthorizationFailed),
                    "{group}: {e}"
                );
            }
            let _ = c.close().await;
        }

        // Bob's key is valid but no policy grants him kafka-cluster:Connect.
        let err = create_topic(
            as_user(iam_token_provider(BOB_AKID, BOB_SECRET)),
            "orders-2",
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, Error::Authentication(m) if m.contains("kafka-cluster:Connect")),
            "{err}"
        );
        // A token signed with the wrong secret, or by an unknown key.
        let err = create_topic(
            as_user(iam_token_provider(ALICE_AKID, BOB_SECRET)),
            "orders-3",
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, Error::Authentication(m) if m.contains("signature")),
            "{err}"
        );
        let err = create_topic(
            as_user(iam_token_provider("AKIAUNKNOWN000000000", ALICE_SECRET)),
            "orders-4",
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, Error::Authentication(m) if m.contains("unknown access key")),
            "{err}"
        );
    });
}

/// KIP-368 on the wire: session lifetime in SaslAuthenticate, in-place
/// re-authentication with the same principal, a different principal
/// refused, requests before authentication or after expiry closing the
/// connection.
#[test]
fn sasl_session_lifetime_and_reauthentication() {
    use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
    let port = free_port();
    let config = format!(
        "\"connections.max.reauth.ms\" = 2000\n{}",
        auth_section("plain_users = { carol = \"carol-pass\", erin = \"erin-pass\" }\n")
    );
    let broker = Broker::start_opts(Opts {
        config,
        listeners: vec![format!("SASL_PLAINTEXT://127.0.0.1:{port}")],
        ..Opts::default()
    });
    assert!(
        closed_without_answer(port, &metadata_frame()),
        "Metadata before SASL must close the connection"
    );

    let login = |c: &mut support::Client, user: &str, password: &str| {
        let mut hs = SaslHandshakeRequest::default();
        hs.mechanism = support::s("PLAIN");
        let r = c.send(1, &hs);
        assert_eq!(r.error_code, ErrorCode::None.code());
        assert!(r.mechanisms.iter().any(|m| m.as_str() == "PLAIN"));
        let mut auth = SaslAuthenticateRequest::default();
        auth.auth_bytes = bytes::Bytes::from(format!("\0{user}\0{password}"));
        c.try_send(1, &auth)
    };
    let mut c = support::Client::connect(port);
    let r = login(&mut c, "carol", "carol-pass").expect("login");
    assert_eq!(
        (r.error_code, r.session_lifetime_ms),
        (ErrorCode::None.code(), 2000)
    );
    support::metadata(&mut c, None);
    // Same principal again: accepted on the same connection.
    let r = login(&mut c, "carol", "carol-pass").expect("re-auth");
    assert_eq!(r.error_code, ErrorCode::None.code());
    support::metadata(&mut c, None);
    // Another principal: refused, then the connection is closed.
    let r = login(&mut c, "erin", "erin-pass").expect("answer");
    assert_eq!(
        r.error_code,
        ErrorCode::SaslAuthenticationFailed.code(),
        "{:?}",
        r.error_message
    );
    assert!(c
        .try_send(1, &kafka_protocol::messages::MetadataRequest::default())
        .is_err());

    // A session past its lifetime must re-authenticate before anything else.
    let mut c = support::Client::connect(port);
    login(&mut c, "carol", "carol-pass").expect("login");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(c
        .try_send(1, &kafka_protocol::messages::MetadataRequest::default())
        .is_err());
    assert!(
        wait_for_log(&broker, "did not re-authenticate"),
        "{}",
        broker.log()
    );
}

/// What an MSK client policy may and may not do, request by request, where
/// sluiced once decided differently from MSK and Kafka. The principal (the
/// PLAINTEXT listener's) holds a consumer's and a transactional producer's
/// actions as AWS's use-case table lists them, with DescribeTopic on one
/// topic only and neither DescribeCluster nor any group ReadData.
#[test]
fn client_policies_decide_request_by_request_as_msk_and_kafka_do() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{
        AddOffsetsToTxnRequest, DescribeClusterRequest, GroupId, MetadataRequest,
        OffsetCommitRequest, OffsetFetchRequest, ProducerId, TransactionalId,
    };
    use sluice_protocol::batch::BatchBuilder;
    use sluice_protocol::compression::Compression;

    let txn_arn = format!("arn:aws:kafka:{REGION}:{ACCOUNT}:transactional-id/sluice-test/*/*");
    let statements = format!(
        r#"{{"Effect": "Allow", "Action": ["kafka-cluster:Connect"], "Resource": "{cluster}"}},
           {{"Effect": "Allow", "Action": ["kafka-cluster:CreateTopic", "kafka-cluster:ReadData", "kafka-cluster:WriteData"], "Resource": "{topics}"}},
           {{"Effect": "Allow", "Action": ["kafka-cluster:DescribeTopic"], "Resource": "{visible}"}},
           {{"Effect": "Allow", "Action": ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"], "Resource": "{groups}"}},
           {{"Effect": "Allow", "Action": ["kafka-cluster:DescribeTransactionalId", "kafka-cluster:AlterTransactionalId"], "Resource": "{txn_arn}"}}"#,
        cluster = cluster_arn(),
        topics = topic_arn("*"),
        visible = topic_arn("visible"),
        groups = group_arn("*"),
    );
    let broker = Broker::start_with(&auth_section(&policy("User:ANONYMOUS", &statements)));
    let mut c = broker.client();
    support::create_topic_ok(&mut c, "visible", 1, &[]);
    let hidden_id = support::create_topic_ok(&mut c, "hidden", 1, &[]);

    // DescribeCluster answers without DescribeCluster (Kafka answers all).
    let dc = c.send(0, &DescribeClusterRequest::default());
    assert_eq!(dc.error_code, ErrorCode::None.code(), "DescribeCluster");
    assert_eq!(dc.brokers.len(), 1);

    // Metadata by id of a topic the principal may not describe: refused,
    // and its name not given away.
    let mut by_id = MetadataRequestTopic::default();
    by_id.name = None;
    by_id.topic_id = hidden_id;
    let mut mr = MetadataRequest::default();
    mr.topics = Some(vec![by_id]);
    let m = c.send(12, &mr);
    assert_eq!(
        m.topics[0].error_code,
        ErrorCode::TopicAuthorizationFailed.code()
    );
    assert_eq!(m.topics[0].name, None, "the hidden topic's name leaked");

    // Committed offsets of a topic the principal may not describe stay
    // unseen: left out of "all topics", refused by name.
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = GroupId(support::s("readers"));
    commit.generation_id_or_member_epoch = -1;
    commit.topics = ["visible", "hidden"]
        .iter()
        .map(|t| {
            let mut p = OffsetCommitRequestPartition::default();
            p.committed_offset = 0;
            let mut rt = OffsetCommitRequestTopic::default();
            rt.name = support::topic_name(t);
            rt.partitions = vec![p];
            rt
        })
        .collect();
    let committed = c.send(8, &commit);
    for t in &committed.topics {
        assert_eq!(
            t.partitions[0].error_code,
            ErrorCode::None.code(),
            "{:?}",
            t.name
        );
    }
    let mut all = OffsetFetchRequest::default();
    all.group_id = GroupId(support::s("readers"));
    all.topics = None;
    let fetched = c.send(7, &all);
    let names: Vec<&str> = fetched.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["visible"], "OffsetFetch of all topics");
    let mut named = OffsetFetchRequest::default();
    named.group_id = GroupId(support::s("readers"));
    let mut ht = OffsetFetchRequestTopic::default();
    ht.name = support::topic_name("hidden");
    ht.partition_indexes = vec![0];
    named.topics = Some(vec![ht]);
    let fetched = c.send(7, &named);
    let p = &fetched.topics[0].partitions[0];
    assert_eq!(p.error_code, ErrorCode::TopicAuthorizationFailed.code());
    assert_eq!(p.committed_offset, -1);

    // sendOffsetsToTransaction needs AlterGroup on the group (Kafka's READ
    // on it), not ReadData: past authorization, an unknown producer id.
    let mut add = AddOffsetsToTxnRequest::default();
    add.transactional_id = TransactionalId(support::s("txn-app"));
    add.producer_id = ProducerId(424_242);
    add.producer_epoch = 0;
    add.group_id = GroupId(support::s("readers"));
    let added = c.send(3, &add);
    assert_ne!(
        added.error_code,
        ErrorCode::GroupAuthorizationFailed.code(),
        "AddOffsetsToTxn under AlterGroup"
    );
    assert_ne!(added.error_code, ErrorCode::None.code());

    // Transactional records need the request's transactional id: without
    // one, no coordinator would ever end the transaction they open.
    let mut b = BatchBuilder::new(Compression::None)
        .with_producer(7, 0, 0)
        .with_transactional(true);
    b.push(support::now_ms(), Some(b"k"), Some(b"v"), &[])
        .expect("push");
    let produced = support::produce(&mut c, "visible", 0, b.build());
    assert_eq!(
        produced.error_code,
        ErrorCode::TransactionalIdAuthorizationFailed.code(),
        "a transactional batch with no transactional id"
    );
}
