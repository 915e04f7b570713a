//! Client proof against a real Cassandra 5 (standing in for ScyllaDB): the
//! scylla driver creates a keyspace and tables, runs prepared inserts and
//! selects, a logged batch, a counter update, a lightweight transaction and a
//! paged read — all in CQL that both databases accept.
//!
//! Needs a node: `deploy/servers/cassandra.sh start` (the test command does it).

use std::time::Duration;

use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::statement::batch::Batch;
use scylla::statement::unprepared::Statement;
use sluice_cql::{CqlConfig, connect};

async fn reachable_cassandra() -> Session {
    match connect(&CqlConfig::from_env()).await {
        Ok(session) => session,
        Err(err) => panic!("this test needs a running Cassandra node. {err}"),
    }
}

/// A keyspace of its own per test run, so runs never see each other's rows.
async fn fresh_keyspace(session: &Session) -> String {
    let ks = format!("sluice_test_{}", uuid::Uuid::new_v4().simple());
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE {ks} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            &[],
        )
        .await
        .expect("create keyspace");
    for ddl in [
        "CREATE TABLE {ks}.messages (id text PRIMARY KEY, recipient text, attempt int)",
        "CREATE TABLE {ks}.path_day_counters (source_ip text, site text, day text, \
         sent counter, PRIMARY KEY ((source_ip, site, day)))",
        "CREATE TABLE {ks}.ip_leases (ip text PRIMARY KEY, owner text)",
        "CREATE TABLE {ks}.events_by_campaign (campaign text, hour text, seq int, kind text, \
         PRIMARY KEY ((campaign, hour), seq))",
    ] {
        session
            .query_unpaged(ddl.replace("{ks}", &ks), &[])
            .await
            .expect("create table");
    }
    session
        .await_schema_agreement()
        .await
        .expect("schema agreement");
    ks
}

async fn drop_keyspace(session: &Session, ks: &str) {
    session
        .query_unpaged(format!("DROP KEYSPACE {ks}"), &[])
        .await
        .expect("drop keyspace");
}

#[tokio::test]
async fn driver_covers_every_statement_kind_sluice_uses() {
    let session = reachable_cassandra().await;
    let ks = fresh_keyspace(&session).await;

    prepared_insert_and_select(&session, &ks).await;
    logged_batch(&session, &ks).await;
    counter_update(&session, &ks).await;
    lightweight_transaction(&session, &ks).await;
    paged_read(&session, &ks).await;

    drop_keyspace(&session, &ks).await;
}

async fn prepared_insert_and_select(session: &Session, ks: &str) {
    let insert = session
        .prepare(format!(
            "INSERT INTO {ks}.messages (id, recipient, attempt) VALUES (?, ?, ?)"
        ))
        .await
        .expect("prepare insert");
    session
        .execute_unpaged(&insert, ("m-1", "alice@example.com", 0_i32))
        .await
        .expect("insert");
    let select = session
        .prepare(format!(
            "SELECT recipient, attempt FROM {ks}.messages WHERE id = ?"
        ))
        .await
        .expect("prepare select");
    let rows = session
        .execute_unpaged(&select, ("m-1",))
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows");
    let row: (String, i32) = rows.single_row().expect("one row");
    assert_eq!(row, ("alice@example.com".to_owned(), 0));
}

async fn logged_batch(session: &Session, ks: &str) {
    let insert = session
        .prepare(format!(
            "INSERT INTO {ks}.messages (id, recipient, attempt) VALUES (?, ?, ?)"
        ))
        .await
        .expect("prepare");
    let mut batch = Batch::default();
    let values: Vec<(String, String, i32)> = (0..3)
        .map(|i| (format!("b-{i}"), format!("r{i}@example.net"), i))
        .collect();
    for _ in &values {
        batch.append_statement(insert.clone());
    }
    session.batch(&batch, &values).await.expect("batch");
    let rows = session
        .query_unpaged(
            format!("SELECT id FROM {ks}.messages WHERE id IN ('b-0', 'b-1', 'b-2')"),
            &[],
        )
        .await
        .expect("select batch rows")
        .into_rows_result()
        .expect("rows");
    assert_eq!(rows.rows_num(), 3, "every statement of the batch applied");
}

async fn counter_update(session: &Session, ks: &str) {
    let bump = session
        .prepare(format!(
            "UPDATE {ks}.path_day_counters SET sent = sent + ? \
             WHERE source_ip = ? AND site = ? AND day = ?"
        ))
        .await
        .expect("prepare counter");
    for n in [5_i64, 7, 30].map(scylla::value::Counter) {
        session
            .execute_unpaged(&bump, (n, "127.0.0.10", "google", "2026-11-23"))
            .await
            .expect("counter update");
    }
    let rows = session
        .query_unpaged(
            format!(
                "SELECT sent FROM {ks}.path_day_counters \
                 WHERE source_ip = '127.0.0.10' AND site = 'google' AND day = '2026-11-23'"
            ),
            &[],
        )
        .await
        .expect("select counter")
        .into_rows_result()
        .expect("rows");
    let (sent,): (scylla::value::Counter,) = rows.single_row().expect("counter row");
    assert_eq!(sent.0, 42);
}

async fn lightweight_transaction(session: &Session, ks: &str) {
    let claim = session
        .prepare(format!(
            "INSERT INTO {ks}.ip_leases (ip, owner) VALUES (?, ?) IF NOT EXISTS"
        ))
        .await
        .expect("prepare lwt");
    let applied = |owner: &'static str| {
        let claim = claim.clone();
        async move {
            let rows = session
                .execute_unpaged(&claim, ("127.0.0.20", owner))
                .await
                .expect("lwt")
                .into_rows_result()
                .expect("lwt rows");
            // Applied: one column `[applied]`. Refused: `[applied]` plus the
            // existing row, so decode untyped and read the first column.
            let row = rows
                .rows::<scylla::value::Row>()
                .expect("untyped rows")
                .next()
                .expect("one row")
                .expect("decode");
            row.columns[0]
                .as_ref()
                .and_then(|v| v.as_boolean())
                .expect("[applied] is a boolean")
        }
    };
    assert!(applied("node-a").await, "first claim wins");
    assert!(!applied("node-b").await, "second claim is refused");
    let rows = session
        .query_unpaged(
            format!("SELECT owner FROM {ks}.ip_leases WHERE ip = '127.0.0.20'"),
            &[],
        )
        .await
        .expect("select lease")
        .into_rows_result()
        .expect("rows");
    let (owner,): (String,) = rows.single_row().expect("lease row");
    assert_eq!(owner, "node-a");
}

async fn paged_read(session: &Session, ks: &str) {
    let insert = session
        .prepare(format!(
            "INSERT INTO {ks}.events_by_campaign (campaign, hour, seq, kind) VALUES (?, ?, ?, ?)"
        ))
        .await
        .expect("prepare");
    for seq in 0..250_i32 {
        session
            .execute_unpaged(&insert, ("spring", "2026-11-23T14", seq, "delivered"))
            .await
            .expect("insert event");
    }
    let mut select = Statement::new(format!(
        "SELECT seq FROM {ks}.events_by_campaign WHERE campaign = 'spring' AND hour = '2026-11-23T14'"
    ));
    select.set_page_size(40);
    let pager = session.query_iter(select, &[]).await.expect("paged query");
    let seqs: Vec<(i32,)> = tokio::time::timeout(
        Duration::from_secs(60),
        pager.rows_stream::<(i32,)>().expect("typed").try_collect(),
    )
    .await
    .expect("paged read in time")
    .expect("pages");
    let got: Vec<i32> = seqs.into_iter().map(|(s,)| s).collect();
    assert_eq!(
        got,
        (0..250).collect::<Vec<_>>(),
        "all rows, in clustering order, over 7 pages"
    );
}

#[tokio::test]
async fn unreachable_node_names_the_server_and_how_to_start_it() {
    let config = CqlConfig {
        contact_points: "127.0.0.1:1".into(),
        connect_timeout: Duration::from_secs(2),
    };
    let err = connect(&config)
        .await
        .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(text.contains("not reachable at 127.0.0.1:1"), "{text}");
    assert!(text.contains("deploy/servers/cassandra.sh start"), "{text}");
}
