//! `sluice migrate`: the versioned CQL schema, embedded in the binary and
//! applied in order. Each applied version is recorded in
//! `<keyspace>.schema_version`; re-running applies nothing new. Every
//! statement is `IF NOT EXISTS` / `IF EXISTS`, so a run interrupted half-way
//! is finished by the next one.

use scylla::client::session::Session;
use scylla::value::CqlTimestamp;

use crate::CqlError;

/// One schema version: its number, name and CQL (with `{ks}` placeholders).
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    cql: &'static str,
}

/// Every schema version, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "recorder",
        cql: include_str!("../migrations/0001_recorder.cql"),
    },
    Migration {
        version: 2,
        name: "control",
        cql: include_str!("../migrations/0002_control.cql"),
    },
    Migration {
        version: 3,
        name: "control_log",
        cql: include_str!("../migrations/0003_control_log.cql"),
    },
    Migration {
        version: 4,
        name: "idempotency_keys",
        cql: include_str!("../migrations/0004_idempotency_keys.cql"),
    },
    Migration {
        version: 5,
        name: "ip_leases",
        cql: include_str!("../migrations/0005_ip_leases.cql"),
    },
    Migration {
        version: 6,
        name: "control_records",
        cql: include_str!("../migrations/0006_control_records.cql"),
    },
    Migration {
        version: 7,
        name: "ip_state",
        cql: include_str!("../migrations/0007_ip_state.cql"),
    },
    Migration {
        version: 8,
        name: "ingest_heartbeats",
        cql: include_str!("../migrations/0008_ingest_heartbeats.cql"),
    },
    Migration {
        version: 9,
        name: "control_bursts",
        cql: include_str!("../migrations/0009_control_bursts.cql"),
    },
    Migration {
        version: 10,
        name: "control_ip_limits",
        cql: include_str!("../migrations/0010_control_ip_limits.cql"),
    },
    Migration {
        version: 11,
        name: "control_tenant_trace",
        cql: include_str!("../migrations/0011_control_tenant_trace.cql"),
    },
    Migration {
        version: 12,
        name: "recorder_counter_parts",
        cql: include_str!("../migrations/0012_recorder_counter_parts.cql"),
    },
    Migration {
        version: 13,
        name: "control_tenant_webhooks",
        cql: include_str!("../migrations/0013_control_tenant_webhooks.cql"),
    },
    Migration {
        version: 14,
        name: "webhook_deliveries",
        cql: include_str!("../migrations/0014_webhook_deliveries.cql"),
    },
    Migration {
        version: 15,
        name: "control_tenant_smtp_dsn",
        cql: include_str!("../migrations/0015_control_tenant_smtp_dsn.cql"),
    },
    Migration {
        version: 16,
        name: "control_tenant_tracking",
        cql: include_str!("../migrations/0016_control_tenant_tracking.cql"),
    },
    Migration {
        version: 17,
        name: "recorder_engagement_and_late_bounce_counters",
        cql: include_str!("../migrations/0017_recorder_engagement_and_late_bounce_counters.cql"),
    },
    Migration {
        version: 18,
        name: "control_site_policy_changed_at",
        cql: include_str!("../migrations/0018_control_site_policy_changed_at.cql"),
    },
];

impl Migration {
    /// The statements of this migration for keyspace `ks`, comments dropped.
    pub fn statements(&self, ks: &str) -> Vec<String> {
        let without_comments: String = self
            .cql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        without_comments
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.replace("{ks}", ks))
            .collect()
    }
}

async fn run(
    session: &Session,
    cql: String,
    version: u32,
    name: &'static str,
) -> Result<(), CqlError> {
    session
        .query_unpaged(cql, ())
        .await
        .map(drop)
        .map_err(|e| CqlError::Migration {
            version,
            name,
            reason: e.to_string(),
        })
}

/// `(table, column)` of an `ALTER TABLE <ks>.<table> ADD <column> <type>`
/// statement; `None` for any other statement.
fn added_column(cql: &str, ks: &str) -> Option<(String, String)> {
    let rest = cql.strip_prefix(&format!("ALTER TABLE {ks}."))?;
    let mut words = rest.split_whitespace();
    let table = words.next()?;
    if !words.next()?.eq_ignore_ascii_case("ADD") {
        return None;
    }
    let column = words.next()?;
    Some((table.to_owned(), column.to_owned()))
}

/// True when `ks.table` has `column` (from `system_schema.columns`): a
/// migration re-run after a failure must not ADD it again, which both
/// ScyllaDB and Cassandra refuse.
async fn column_exists(
    session: &Session,
    ks: &str,
    table: &str,
    column: &str,
) -> Result<bool, CqlError> {
    let context = format!("reading the columns of {ks}.{table}");
    let rows = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns \
             WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
            (ks, table, column),
        )
        .await
        .map_err(|e| CqlError::statement(&context, e))?
        .into_rows_result()
        .map_err(|e| CqlError::statement(&context, e))?;
    Ok(rows.rows_num() > 0)
}

async fn applied_versions(session: &Session, ks: &str) -> Result<Vec<u32>, CqlError> {
    let context = "reading schema_version";
    let rows = session
        .query_unpaged(format!("SELECT version FROM {ks}.schema_version"), ())
        .await
        .map_err(|e| CqlError::statement(context, e))?
        .into_rows_result()
        .map_err(|e| CqlError::statement(context, e))?;
    let versions = rows
        .rows::<(i32,)>()
        .map_err(|e| CqlError::statement(context, e))?
        .filter_map(Result::ok)
        .filter_map(|(v,)| u32::try_from(v).ok())
        .collect();
    Ok(versions)
}

/// Creates keyspace `ks` (with `replication`, a CQL map) when missing and
/// applies every migration not yet recorded. Returns the versions applied
/// by this call; empty when the schema was already current.
pub async fn migrate(session: &Session, ks: &str, replication: &str) -> Result<Vec<u32>, CqlError> {
    let bootstrap = [
        format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.schema_version \
             (version int PRIMARY KEY, name text, applied_at timestamp)"
        ),
    ];
    for cql in bootstrap {
        run(session, cql, 0, "bootstrap").await?;
    }
    await_agreement(session).await?;
    let done = applied_versions(session, ks).await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        for cql in m.statements(ks) {
            if let Some((table, column)) = added_column(&cql, ks)
                && column_exists(session, ks, &table, &column).await?
            {
                tracing::info!(table, column, "column exists; ADD skipped");
                continue;
            }
            run(session, cql, m.version, m.name).await?;
        }
        await_agreement(session).await?;
        record(session, ks, m).await?;
        tracing::info!(
            version = m.version,
            name = m.name,
            keyspace = ks,
            "schema migration applied"
        );
        applied.push(m.version);
    }
    Ok(applied)
}

/// Records `m` as applied in `ks.schema_version`.
async fn record(session: &Session, ks: &str, m: &Migration) -> Result<(), CqlError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let cql =
        format!("INSERT INTO {ks}.schema_version (version, name, applied_at) VALUES (?, ?, ?)");
    let version = i32::try_from(m.version).unwrap_or(i32::MAX);
    session
        .query_unpaged(cql, (version, m.name, CqlTimestamp(now)))
        .await
        .map(drop)
        .map_err(|e| CqlError::statement("recording schema_version", e))
}

async fn await_agreement(session: &Session) -> Result<(), CqlError> {
    session
        .await_schema_agreement()
        .await
        .map(drop)
        .map_err(|e| CqlError::statement("waiting for schema agreement", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_statements_split() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=MIGRATIONS.len() as u32).collect::<Vec<_>>());
        let first = MIGRATIONS[0].statements("ks_x");
        assert!(first.len() >= 8, "{first:#?}");
        for m in MIGRATIONS {
            let statements = m.statements("ks_x");
            assert!(
                statements.iter().all(|s| {
                    s.starts_with("CREATE TABLE IF NOT EXISTS ks_x.")
                        || s.starts_with("DROP TABLE IF EXISTS ks_x.")
                        || added_column(s, "ks_x").is_some()
                }),
                "migration {}: {statements:#?}",
                m.version
            );
            assert!(
                statements
                    .iter()
                    .all(|s| !s.contains("{ks}") && !s.contains("--"))
            );
        }
    }

    #[test]
    fn added_columns_are_recognized() {
        assert_eq!(
            added_column("ALTER TABLE ks.config_tenants ADD bounce_domain text", "ks"),
            Some(("config_tenants".into(), "bounce_domain".into()))
        );
        assert_eq!(added_column("ALTER TABLE ks.t DROP c", "ks"), None);
        assert_eq!(
            added_column("CREATE TABLE IF NOT EXISTS ks.t (a int)", "ks"),
            None
        );
        let adds = MIGRATIONS[5]
            .statements("ks")
            .iter()
            .filter(|s| added_column(s, "ks").is_some())
            .count();
        assert_eq!(adds, 4);
    }

    #[test]
    fn schema_uses_no_engine_specific_features() {
        for m in MIGRATIONS {
            let cql = m.statements("ks").join(";\n").to_ascii_uppercase();
            for banned in [
                "MATERIALIZED VIEW",
                "CUSTOM INDEX",
                "STORAGEATTACHEDINDEX",
                "CREATE INDEX",
                "CDC",
            ] {
                assert!(
                    !cql.contains(banned),
                    "migration {} uses {banned}",
                    m.version
                );
            }
        }
    }
}
