//! `sluice migrate` against a real Cassandra: creates every table, records
//! the versions, and a second run is a no-op.

use crate::common::{cassandra, drop_keyspace};

#[tokio::test]
async fn migrations_create_every_table_and_are_idempotent() {
    let session = cassandra().await;
    let ks = format!("mig_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    let replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";

    let first = sluice_recorder::migrate(&session, &ks, replication)
        .await
        .expect("first run");
    let all: Vec<u32> = sluice_recorder::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(first, all, "a fresh keyspace gets every version");
    let second = sluice_recorder::migrate(&session, &ks, replication)
        .await
        .expect("second run");
    assert!(second.is_empty(), "re-running applied {second:?}");

    let rows = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (ks.as_str(),),
        )
        .await
        .expect("tables")
        .into_rows_result()
        .expect("rows");
    let tables: Vec<String> = rows
        .rows::<(String,)>()
        .expect("typed")
        .map(|r| r.expect("row").0)
        .collect();
    for table in [
        "schema_version",
        "message_events",
        "campaign_events",
        "daily_counters",
        "hourly_counters",
        "event_dedup",
        "suppressions",
        "path_reputation",
        "tenant_reputation",
        "warmup_state",
        "ip_leases",
        "config_pools",
        "config_ips",
        "config_warmup_plans",
        "config_site_policies",
        "config_tenants",
        "config_api_keys",
        "config_revision",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "missing table {table}; have {tables:?}"
        );
    }
    let versions = session
        .query_unpaged(format!("SELECT version FROM {ks}.schema_version"), ())
        .await
        .expect("versions")
        .into_rows_result()
        .expect("rows")
        .rows_num();
    assert_eq!(versions, all.len(), "one schema_version row per migration");
    drop_keyspace(&session, &ks).await;
}
