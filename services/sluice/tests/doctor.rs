//! `sluice doctor` against the real Kafka and Cassandra: it reports each topic
//! of a prefix with its partitions and replication, and exits 1 naming a
//! topic whose `min.insync.replicas` would fail every write.

use std::process::Command;

use sluice_log::TopicSpec;

fn doctor(prefix: &str) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["doctor", "--topics", prefix])
        .output()
        .expect("run `sluice doctor`");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_topics_and_names_what_to_fix() {
    let kafka = sluice_testkit::servers::kafka("sluice-doctor-test").await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("sluice.doctortest.{id}.");
    let good = format!("{prefix}good");
    sluice_log::create_topic_as(&kafka, &good, &TopicSpec::with_partitions(3))
        .await
        .expect("create the good topic");
    let (ok, out) = doctor(&prefix);
    assert!(
        ok,
        "a single-broker cluster with one copy per record is healthy:\n{out}"
    );
    assert!(
        out.contains(&format!(
            "{good}  partitions 3  replication 1  min.insync.replicas 1"
        )),
        "{out}"
    );

    let bad = format!("{prefix}bad");
    let spec = TopicSpec {
        min_insync_replicas: 2,
        ..TopicSpec::with_partitions(1)
    };
    sluice_log::create_topic_as(&kafka, &bad, &spec)
        .await
        .expect("create the bad topic");
    let (ok, out) = doctor(&prefix);
    assert!(!ok, "doctor must fail on the bad topic:\n{out}");
    assert!(out.contains(&format!("WARN  {bad}")), "{out}");
    assert!(out.contains("every write with acks=all fails"), "{out}");
}
