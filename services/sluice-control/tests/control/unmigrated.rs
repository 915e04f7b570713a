//! Control creates no tables: on a keyspace `sluice migrate` has not
//! created, the CQL store refuses to open and says what to run.

use sluice_control::CqlConfigStore;
use sluice_cql::CqlConfig;

#[tokio::test]
async fn an_unmigrated_keyspace_names_the_missing_table_and_the_fix() {
    let session = sluice_cql::connect(&CqlConfig::from_env())
        .await
        .unwrap_or_else(|e| panic!("Cassandra is needed (SLUICE_CASSANDRA): {e}"));
    let ks = format!("control_none_{}", uuid::Uuid::new_v4().simple());
    let err = CqlConfigStore::open(session, &ks)
        .await
        .expect_err("nothing migrated");
    let text = err.to_string();
    assert!(text.contains(&format!("{ks}.config_pools")), "{text}");
    assert!(text.contains("sluice migrate"), "{text}");
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
}
