//! Which tables each service uses, and the check that they exist.

use std::collections::BTreeSet;

use scylla::client::session::Session;

use crate::{CqlError, MIGRATIONS};

/// The tables the recorder's CQL ledger reads and writes (`CqlLedger`).
pub const RECORDER_TABLES: &[&str] = &[
    "message_events",
    "campaign_events",
    "daily_counters",
    "hourly_counters",
    "daily_counter_parts",
    "hourly_counter_parts",
    "event_dedup",
    "suppressions",
    // Written with every suppression the recorder learns, so control lists
    // (and removes) one list per tenant.
    "config_suppressions",
    "path_reputation",
    "tenant_reputation",
    "idempotency_keys",
    "ingest_heartbeats",
    // The webhook delivery log (docs/webhooks.md).
    "webhook_deliveries",
];

/// The tables control's CQL configuration store reads and writes
/// (`CqlConfigStore`). It also writes manual suppressions to the recorder's
/// `suppressions`, so that ingest and the sender see them, and reads
/// `ip_leases` (the sender's table) to show who holds each IP.
pub const CONTROL_TABLES: &[&str] = &[
    "config_pools",
    "config_ips",
    "config_warmup_plans",
    "config_site_policies",
    "config_tenants",
    "config_providers",
    "config_revision",
    "config_suppressions",
    "config_changes",
    "suppressions",
    "ip_leases",
];

/// The tables the sender's CQL lease store and per-IP state store read and
/// write (`CqlLeases`, `CqlIpStates`, docs/leases.md).
pub const SENDER_TABLES: &[&str] = &["ip_leases", "sender_heartbeats", "ip_state"];

/// The tables of a keyspace that [`crate::migrate`] brought up to date,
/// `schema_version` included: every table a migration creates and no later
/// one drops.
pub fn migrated_tables() -> BTreeSet<String> {
    let mut tables = BTreeSet::from(["schema_version".to_owned()]);
    for statement in MIGRATIONS.iter().flat_map(|m| m.statements("ks")) {
        if let Some(rest) = statement.strip_prefix("CREATE TABLE IF NOT EXISTS ks.") {
            tables.insert(table_name(rest));
        } else if let Some(rest) = statement.strip_prefix("DROP TABLE IF EXISTS ks.") {
            tables.remove(&table_name(rest));
        }
    }
    tables
}

fn table_name(after_keyspace: &str) -> String {
    after_keyspace
        .split(|c: char| c == '(' || c.is_whitespace())
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The tables of keyspace `ks`, from `system_schema` (empty when the
/// keyspace does not exist).
pub async fn existing_tables(session: &Session, ks: &str) -> Result<BTreeSet<String>, CqlError> {
    let context = format!("listing the tables of keyspace {ks}");
    let rows = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (ks,),
        )
        .await
        .map_err(|e| CqlError::statement(&context, e))?
        .into_rows_result()
        .map_err(|e| CqlError::statement(&context, e))?;
    rows.rows::<(String,)>()
        .map_err(|e| CqlError::statement(&context, e))?
        .map(|row| {
            row.map(|(t,)| t)
                .map_err(|e| CqlError::statement(&context, e))
        })
        .collect()
}

/// Fails with [`CqlError::MissingTable`], naming the first of `tables` that
/// keyspace `ks` lacks, unless it has them all. Services call this before
/// preparing statements: they never create tables themselves.
pub async fn require_tables(session: &Session, ks: &str, tables: &[&str]) -> Result<(), CqlError> {
    let existing = existing_tables(session, ks).await?;
    match tables.iter().find(|t| !existing.contains(**t)) {
        Some(missing) => Err(CqlError::MissingTable {
            keyspace: ks.to_owned(),
            table: (*missing).to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migrated_table_is_used_by_a_service() {
        let used: BTreeSet<String> = RECORDER_TABLES
            .iter()
            .chain(CONTROL_TABLES)
            .chain(SENDER_TABLES)
            .chain(&["schema_version"])
            .map(|t| (*t).to_owned())
            .collect();
        assert_eq!(migrated_tables(), used);
    }

    #[test]
    fn dropped_tables_are_gone_after_every_migration() {
        let tables = migrated_tables();
        for gone in ["warmup_state", "config_api_keys"] {
            assert!(!tables.contains(gone), "{gone} in {tables:?}");
        }
        assert!(tables.contains("config_changes"), "{tables:?}");
        // Dropped by version 3, created anew (another shape) by version 5.
        assert!(tables.contains("ip_leases"), "{tables:?}");
        assert!(tables.contains("ip_state"), "version 7: {tables:?}");
        assert!(
            tables.contains("ingest_heartbeats"),
            "version 8: {tables:?}"
        );
    }

    #[test]
    fn missing_table_error_says_what_to_run() {
        let err = CqlError::MissingTable {
            keyspace: "sluice".into(),
            table: "config_pools".into(),
        };
        let text = err.to_string();
        assert!(text.contains("sluice.config_pools"), "{text}");
        assert!(text.contains("sluice migrate"), "{text}");
    }
}
