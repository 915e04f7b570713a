//! `sluice migrate` against a real Cassandra: creates every table (and only
//! those), records the versions, a second run is a no-op, and services find
//! their tables, or are told to migrate.
//!
//! Needs a node: `deploy/servers/cassandra.sh start`.

use scylla::client::session::Session;
use sluice_cql::{CONTROL_TABLES, CqlConfig, CqlError, MIGRATIONS, RECORDER_TABLES, SENDER_TABLES};

const REPLICATION: &str = "{'class': 'SimpleStrategy', 'replication_factor': 1}";

async fn cassandra() -> Session {
    match sluice_cql::connect(&CqlConfig::from_env()).await {
        Ok(session) => session,
        Err(err) => panic!("this test needs a running Cassandra node. {err}"),
    }
}

fn fresh_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..20]
    )
}

async fn drop_keyspace(session: &Session, ks: &str) {
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await
        .expect("drop keyspace");
}

#[tokio::test]
async fn migrations_create_every_table_and_are_idempotent() {
    let session = cassandra().await;
    let ks = fresh_name("mig");

    let first = sluice_cql::migrate(&session, &ks, REPLICATION)
        .await
        .expect("first run");
    let all: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(first, all, "a fresh keyspace gets every version");
    let second = sluice_cql::migrate(&session, &ks, REPLICATION)
        .await
        .expect("second run");
    assert!(second.is_empty(), "re-running applied {second:?}");

    let tables = sluice_cql::existing_tables(&session, &ks)
        .await
        .expect("tables");
    assert_eq!(tables, sluice_cql::migrated_tables());
    for t in RECORDER_TABLES
        .iter()
        .chain(CONTROL_TABLES)
        .chain(SENDER_TABLES)
    {
        assert!(tables.contains(*t), "missing table {t}; have {tables:?}");
    }
    sluice_cql::require_tables(&session, &ks, RECORDER_TABLES)
        .await
        .expect("the recorder's tables");
    sluice_cql::require_tables(&session, &ks, CONTROL_TABLES)
        .await
        .expect("control's tables");
    sluice_cql::require_tables(&session, &ks, SENDER_TABLES)
        .await
        .expect("the senders' tables (ip_state since version 7)");
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

/// A keyspace migrated by an older `sluice` (versions 1 and 2 of the time,
/// which also created three tables nothing used, one of them an
/// `ip_leases` of another shape) is brought to the same tables as a fresh
/// one: version 3 drops the old `ip_leases`, version 5 creates the new.
#[tokio::test]
async fn an_older_keyspace_ends_like_a_fresh_one() {
    let session = cassandra().await;
    let ks = fresh_name("mig_old");
    sluice_cql::migrate(&session, &ks, REPLICATION)
        .await
        .expect("migrate");
    for cql in [
        "DROP TABLE {ks}.ip_leases",
        "DROP TABLE {ks}.sender_heartbeats",
        "DELETE FROM {ks}.schema_version WHERE version = 5",
        "CREATE TABLE {ks}.warmup_state (source_ip text PRIMARY KEY, plan text)",
        "CREATE TABLE {ks}.ip_leases (source_ip text PRIMARY KEY, owner_node text)",
        "CREATE TABLE {ks}.config_api_keys (key_hash text PRIMARY KEY, tenant text)",
        "DROP TABLE {ks}.config_changes",
        "DELETE FROM {ks}.schema_version WHERE version = 3",
    ] {
        session
            .query_unpaged(cql.replace("{ks}", &ks), ())
            .await
            .unwrap_or_else(|e| panic!("{cql}: {e}"));
    }
    let applied = sluice_cql::migrate(&session, &ks, REPLICATION)
        .await
        .expect("migrate again");
    assert_eq!(applied, [3, 5]);
    let tables = sluice_cql::existing_tables(&session, &ks)
        .await
        .expect("tables");
    assert_eq!(tables, sluice_cql::migrated_tables());
    drop_keyspace(&session, &ks).await;
}

/// Version 6 adds columns with ALTER TABLE, which fails when a column
/// exists: a re-run after a half-applied version 6 must skip those.
#[tokio::test]
async fn a_half_applied_version_6_runs_again() {
    let session = cassandra().await;
    let ks = fresh_name("mig_alter");
    sluice_cql::migrate(&session, &ks, REPLICATION)
        .await
        .expect("migrate");
    for cql in [
        "ALTER TABLE {ks}.config_tenants DROP bounce_domain",
        "DROP TABLE {ks}.config_providers",
        "DELETE FROM {ks}.schema_version WHERE version = 6",
    ] {
        session
            .query_unpaged(cql.replace("{ks}", &ks), ())
            .await
            .unwrap_or_else(|e| panic!("{cql}: {e}"));
    }
    let applied = sluice_cql::migrate(&session, &ks, REPLICATION)
        .await
        .expect("migrate again: existing columns are skipped");
    assert_eq!(applied, [6]);
    let tables = sluice_cql::existing_tables(&session, &ks)
        .await
        .expect("tables");
    assert_eq!(tables, sluice_cql::migrated_tables());
    session
        .query_unpaged(
            format!("SELECT bounce_domain, api_key_hashes FROM {ks}.config_tenants"),
            (),
        )
        .await
        .expect("the dropped column is back");
    drop_keyspace(&session, &ks).await;
}

#[tokio::test]
async fn an_unmigrated_keyspace_names_the_missing_table_and_the_fix() {
    let session = cassandra().await;
    let ks = fresh_name("unmigrated");
    let err = sluice_cql::require_tables(&session, &ks, RECORDER_TABLES)
        .await
        .expect_err("nothing there");
    assert!(
        matches!(&err, CqlError::MissingTable { table, .. } if table == "message_events"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&format!("{ks}.message_events")), "{text}");
    assert!(text.contains("sluice migrate"), "{text}");
}
