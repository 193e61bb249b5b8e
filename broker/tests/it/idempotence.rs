//! Idempotent produce: producer ids, duplicate detection, sequence gaps,
//! epoch fencing, and all of it surviving `kill -9`.

use crate::support::*;
use kafka_protocol::messages::InitProducerIdRequest;
use sluice_protocol::ErrorCode;

fn init_producer_id(c: &mut Client) -> (i64, i16) {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.transaction_timeout_ms = 60_000;
    req.producer_id = (-1).into();
    req.producer_epoch = -1;
    let resp = c.send(4, &req);
    assert_eq!(resp.error_code, ErrorCode::None.code(), "InitProducerId");
    assert!(
        resp.producer_id.0 >= 0,
        "producer id {}",
        resp.producer_id.0
    );
    assert!(
        resp.producer_epoch >= 0,
        "producer epoch {}",
        resp.producer_epoch
    );
    (resp.producer_id.0, resp.producer_epoch)
}

#[test]
fn idempotent_produce_dedups_fences_and_survives_kill9() {
    let mut broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "idem", 1, &[]);

    let (pid, epoch) = init_producer_id(&mut c);
    let (pid2, _) = init_producer_id(&mut c);
    assert_ne!(pid, pid2, "each InitProducerId gives a fresh id");
    let max_pid_before = pid.max(pid2);

    // seq 0..3 then 3..5.
    let a = idem_batch(pid, epoch, 0, &["a0", "a1", "a2"]);
    let b = idem_batch(pid, epoch, 3, &["b0", "b1"]);
    assert_eq!(produce_ok(&mut c, "idem", 0, a.clone()), 0);
    assert_eq!(produce_ok(&mut c, "idem", 0, b.clone()), 3);
    assert_eq!(offset_of(&mut c, "idem", 0, LATEST), 5);

    // Resending either batch is a duplicate: the original offset, nothing appended.
    assert_eq!(
        produce_ok(&mut c, "idem", 0, b.clone()),
        3,
        "retry of the last batch"
    );
    assert_eq!(
        produce_ok(&mut c, "idem", 0, a.clone()),
        0,
        "retry of an earlier batch"
    );
    assert_eq!(
        offset_of(&mut c, "idem", 0, LATEST),
        5,
        "duplicates append nothing"
    );

    // A gap in the sequence.
    let r = produce(&mut c, "idem", 0, idem_batch(pid, epoch, 9, &["gap"]));
    assert_eq!(
        r.error_code,
        ErrorCode::OutOfOrderSequenceNumber.code(),
        "sequence 9 after 4"
    );
    assert_eq!(offset_of(&mut c, "idem", 0, LATEST), 5);

    // A newer epoch restarts at sequence 0; the old epoch is then fenced.
    let e1 = idem_batch(pid, epoch + 1, 0, &["e1"]);
    assert_eq!(produce_ok(&mut c, "idem", 0, e1.clone()), 5);
    let r = produce(&mut c, "idem", 0, idem_batch(pid, epoch, 5, &["stale"]));
    assert_eq!(
        r.error_code,
        ErrorCode::InvalidProducerEpoch.code(),
        "older epoch after a newer one"
    );
    assert_eq!(offset_of(&mut c, "idem", 0, LATEST), 6);

    // Another producer is independent.
    assert_eq!(
        produce_ok(&mut c, "idem", 0, idem_batch(pid2, 0, 0, &["other"])),
        6
    );
    let last_other = idem_batch(pid2, 0, 1, &["other2"]);
    assert_eq!(produce_ok(&mut c, "idem", 0, last_other.clone()), 7);

    drop(c);
    broker.kill9();
    broker.restart();
    let mut c = broker.client();

    assert_eq!(
        offset_of(&mut c, "idem", 0, LATEST),
        8,
        "nothing lost or added by the crash"
    );
    assert_eq!(
        produce_ok(&mut c, "idem", 0, e1),
        5,
        "last batch of pid is still a duplicate after kill -9"
    );
    assert_eq!(
        produce_ok(&mut c, "idem", 0, last_other),
        7,
        "last batch of pid2 is still a duplicate after kill -9"
    );
    assert_eq!(
        offset_of(&mut c, "idem", 0, LATEST),
        8,
        "duplicates after restart append nothing"
    );
    let r = produce(&mut c, "idem", 0, idem_batch(pid, epoch, 5, &["stale"]));
    assert_eq!(
        r.error_code,
        ErrorCode::InvalidProducerEpoch.code(),
        "fencing survives the restart"
    );
    let r = produce(&mut c, "idem", 0, idem_batch(pid, epoch + 1, 7, &["gap"]));
    assert_eq!(
        r.error_code,
        ErrorCode::OutOfOrderSequenceNumber.code(),
        "sequence gaps are still seen after the restart"
    );
    assert_eq!(
        produce_ok(
            &mut c,
            "idem",
            0,
            idem_batch(pid, epoch + 1, 1, &["e1-next"])
        ),
        8,
        "the next sequence appends"
    );

    let (pid3, _) = init_producer_id(&mut c);
    assert!(
        pid3 > max_pid_before,
        "producer id after restart ({pid3}) is above every earlier one ({max_pid_before})"
    );

    let tr = topic_ref(&mut c, "idem");
    let values: Vec<String> = fetch_all(&mut c, &tr, 0, 0)
        .iter()
        .map(Rec::value_str)
        .collect();
    assert_eq!(
        values,
        ["a0", "a1", "a2", "b0", "b1", "e1", "other", "other2", "e1-next"]
    );
}

#[test]
fn duplicate_inside_one_request_pipeline() {
    // Two identical batches pipelined on one connection (a producer retry
    // racing its original): one append, both answered with offset 0.
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "pipe", 1, &[]);
    let (pid, epoch) = init_producer_id(&mut c);
    let b = idem_batch(pid, epoch, 0, &["once"]);
    let req = produce_request(-1, &[("pipe", 0, b)]);
    let c1 = c.write_request(9, &req).unwrap();
    let c2 = c.write_request(9, &req).unwrap();
    let r1 = c
        .read_response::<kafka_protocol::messages::ProduceRequest>(9, c1)
        .unwrap();
    let r2 = c
        .read_response::<kafka_protocol::messages::ProduceRequest>(9, c2)
        .unwrap();
    for r in [&r1, &r2] {
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, ErrorCode::None.code());
        assert_eq!(p.base_offset, 0);
    }
    assert_eq!(offset_of(&mut c, "pipe", 0, LATEST), 1);
}
