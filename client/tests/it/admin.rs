//! The admin client against a real broker (sluiced, or Apache Kafka with
//! SLUICE_TEST_KAFKA_BOOTSTRAP).

use crate::support::{unique, TestBroker};
use sluice::admin::{AlterConfigOp, ConfigResource, OffsetSpec};
use sluice::{AdminClient, ClientConfig, NewTopic};

async fn admin(b: &TestBroker) -> AdminClient {
    let cfg = ClientConfig::from_properties([
        ("bootstrap.servers", b.bootstrap.as_str()),
        ("client.id", "admin-test"),
    ])
    .unwrap();
    AdminClient::connect(cfg).await.expect("connect")
}

#[tokio::test]
async fn topics_configs_and_offsets() {
    let Some(b) = TestBroker::start() else { return };
    let a = admin(&b).await;
    let t = unique("admin");
    let r = a
        .create_topics(
            vec![NewTopic::new(&t, 3, 1).config("retention.ms", "3600000")],
            false,
        )
        .await
        .unwrap();
    assert!(r[0].1.is_ok(), "{:?}", r[0].1);
    // Creating it again names Kafka's error.
    let r = a
        .create_topics(vec![NewTopic::new(&t, 3, 1)], false)
        .await
        .unwrap();
    let e = r[0].1.clone().unwrap_err();
    assert_eq!(
        e.code().map(|c| c.name()),
        Some("TOPIC_ALREADY_EXISTS"),
        "{e}"
    );

    // A new topic reaches every KRaft broker's metadata shortly after creation.
    let mut listed = false;
    for _ in 0..100 {
        let topics = a.list_topics(false).await.unwrap();
        listed = topics
            .iter()
            .any(|x| x.name == t && x.partitions.len() == 3);
        if listed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(listed);

    let cfg = a
        .describe_configs(&ConfigResource::Topic(t.clone()))
        .await
        .unwrap();
    let retention = cfg
        .iter()
        .find(|c| c.name == "retention.ms")
        .expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert!(!retention.is_default());

    a.alter_configs(
        &ConfigResource::Topic(t.clone()),
        &[AlterConfigOp::Set("retention.ms".into(), "7200000".into())],
    )
    .await
    .unwrap();
    // KRaft brokers apply config changes from the metadata log shortly after
    // the controller accepts them: wait (bounded) for the new value.
    let mut seen = None;
    for _ in 0..100 {
        let cfg = a
            .describe_configs(&ConfigResource::Topic(t.clone()))
            .await
            .unwrap();
        seen = cfg
            .iter()
            .find(|c| c.name == "retention.ms")
            .and_then(|c| c.value.clone());
        if seen.as_deref() == Some("7200000") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen.as_deref(), Some("7200000"));

    a.create_partitions(&t, 5).await.unwrap();
    let mut parts = 0;
    for _ in 0..100 {
        parts = a.describe_topics(std::slice::from_ref(&t)).await.unwrap()[0]
            .partitions
            .len();
        if parts == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(parts, 5);

    let offs = a
        .list_offsets(&[(t.clone(), 0), (t.clone(), 4)], OffsetSpec::Latest)
        .await
        .unwrap();
    assert_eq!(offs.len(), 2);
    assert!(offs.iter().all(|(_, _, o, _)| *o == 0));

    let c = a.describe_cluster().await.unwrap();
    assert!(!c.brokers.is_empty());
    assert!(c.cluster_id.is_some());

    let r = a.delete_topics(std::slice::from_ref(&t)).await.unwrap();
    assert!(r[0].1.is_ok(), "{:?}", r[0].1);
}

#[tokio::test]
async fn unknown_group_has_no_lag_and_unreachable_bootstrap_is_named() {
    let Some(b) = TestBroker::start() else { return };
    let a = admin(&b).await;
    let lag = a.group_lag(&unique("nogroup")).await.unwrap();
    assert!(lag.is_empty());
    let groups = a.list_groups().await.unwrap();
    let _ = groups;

    let cfg = ClientConfig::from_properties([
        ("bootstrap.servers", "127.0.0.1:1"),
        ("socket.connection.setup.timeout.ms", "500"),
    ])
    .unwrap();
    match AdminClient::connect(cfg).await {
        Err(sluice::Error::NoBrokersAvailable(s)) => assert!(s.contains("127.0.0.1:1")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
}
