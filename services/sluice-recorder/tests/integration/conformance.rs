//! The [`Ledger`] conformance suite: async checks that every back end must
//! pass, run against Cassandra (`ledger_cql`) and the embedded ledger
//! (`ledger_embedded`). Every check uses fresh ids, so checks can share one
//! ledger and run in any order.

use sluice_proto::v1::{
    BounceClass, Event, EventKind, ReputationRow, TenantReputationRow, WebhookAttempt,
};
use sluice_recorder::record::{CounterKey, Deltas, Granularity, Part, Position};
use sluice_recorder::{Claim, Ledger};

use crate::common::{add, bounce, claim_one, event, now_secs, pos, rows};

pub fn fresh(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

fn at(mut e: Event, secs: i64) -> Event {
    e.at = Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    });
    e
}

/// Events written come back as the message's history, oldest first, once
/// each even when written twice.
pub async fn history_round_trip<L: Ledger>(l: &L) {
    let id = fresh("m");
    let now = now_secs();
    let first = at(event(EventKind::Accepted, &id, "", ""), now - 20);
    let second = at(
        event(EventKind::Deferred, &id, "192.0.2.1", "gmail"),
        now - 10,
    );
    let third = at(
        bounce(&id, "192.0.2.1", "gmail", BounceClass::BadMailbox),
        now,
    );
    for e in [&third, &first, &second, &third] {
        rows(l, e, now).await;
    }
    let history = l.history(&id).await.expect("history");
    assert_eq!(history, vec![first, second, third]);
    assert!(
        l.history(&fresh("unknown"))
            .await
            .expect("history")
            .is_empty()
    );
}

/// A claim belongs to the record that made it: the same record claiming
/// again (a replay) is new again; the same event from another record is a
/// duplicate; another event of the same key is a repeat; another kind or
/// attempt is its own claim; `delivered` is one claim whatever the attempt.
pub async fn claim_new_then_duplicate<L: Ledger>(l: &L) {
    let id = fresh("m");
    let e = event(EventKind::Delivered, &id, "192.0.2.1", "gmail");
    assert_eq!(claim_one(l, &e, pos(0, 10)).await, Claim::New);
    assert_eq!(claim_one(l, &e, pos(0, 10)).await, Claim::New, "a replay");
    assert_eq!(claim_one(l, &e, pos(0, 11)).await, Claim::Duplicate);
    assert_eq!(claim_one(l, &e, pos(1, 10)).await, Claim::Duplicate);
    let other = event(EventKind::Delivered, &id, "192.0.2.1", "gmail");
    assert_eq!(
        claim_one(l, &other, pos(0, 12)).await,
        Claim::Repeat,
        "another event of the same key: the outcome happened twice"
    );
    let next_attempt = Event {
        attempt: 2,
        event_id: fresh("ev"),
        ..e.clone()
    };
    assert_eq!(
        claim_one(l, &next_attempt, pos(0, 13)).await,
        Claim::Repeat,
        "a second delivery at another attempt is a repeat"
    );
    let bounced = event(EventKind::Bounced, &id, "192.0.2.1", "gmail");
    assert_eq!(claim_one(l, &bounced, pos(0, 14)).await, Claim::New);
    let deferred = event(EventKind::Deferred, &id, "192.0.2.1", "gmail");
    let deferred_again = Event {
        attempt: deferred.attempt + 1,
        ..event(EventKind::Deferred, &id, "192.0.2.1", "gmail")
    };
    assert_eq!(claim_one(l, &deferred, pos(0, 15)).await, Claim::New);
    assert_eq!(claim_one(l, &deferred_again, pos(0, 16)).await, Claim::New);
}

/// A batch of claims comes back in order, one answer each; replaying the
/// batch from the same records finds them all new again, from other
/// records all duplicates.
pub async fn batch_claims_replay<L: Ledger>(l: &L) {
    let events: Vec<Event> = (0..24)
        .map(|_| event(EventKind::Delivered, &fresh("m"), "192.0.2.1", "gmail"))
        .collect();
    let at = |i: usize, base: i64| base + i as i64;
    let batch: Vec<(&Event, Position)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e, pos(2, at(i, 100))))
        .collect();
    let first = l.claim(&batch).await.expect("claims");
    assert_eq!(first, vec![Claim::New; 24]);
    assert_eq!(l.claim(&batch).await.expect("replay"), vec![Claim::New; 24]);
    let moved: Vec<(&Event, Position)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e, pos(2, at(i, 500))))
        .collect();
    assert_eq!(
        l.claim(&moved).await.expect("claims"),
        vec![Claim::Duplicate; 24]
    );
}

fn key(g: Granularity, ip: &str, day: &str, hour: &str, detail: &str) -> CounterKey {
    CounterKey {
        granularity: g,
        scope: "ip",
        key: ip.into(),
        day: day.into(),
        hour: hour.into(),
        detail: detail.into(),
    }
}

/// Deltas whose first `N` columns are `v`, the rest 0.
fn d<const N: usize>(v: [i64; N]) -> Deltas {
    let mut deltas = Deltas::default();
    deltas.0[..N].copy_from_slice(&v);
    deltas
}

/// Daily and hourly counters sum the parts of every events partition,
/// per row, and a partition's read returns only its own rows (in
/// clustering order); a part further along is never replaced by one behind.
pub async fn counters_sum<L: Ledger>(l: &L) {
    let ip = fresh("ip");
    let (day, next_day) = ("2026-03-01", "2026-03-02");
    let daily = |detail| key(Granularity::Daily, &ip, day, "", detail);
    let part = |v, through| Part {
        deltas: d(v),
        through,
    };
    l.put_parts(&[
        (
            daily("gmail"),
            0,
            part([1, 2, 0, 0, 0, 0, 0, 1, 1, 0, 0], 7),
        ),
        (
            daily("gmail"),
            3,
            part([2, 4, 0, 0, 0, 0, 0, 2, 3, 1, 1], 90),
        ),
        (
            daily("yahoo"),
            0,
            part([0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0], 7),
        ),
    ])
    .await
    .expect("put parts");
    // Behind the stored part: ignored.
    l.put_parts(&[(daily("gmail"), 3, part([1; 11], 50))])
        .await
        .expect("put parts");
    let other_day = key(Granularity::Daily, &ip, next_day, "", "gmail");
    l.put_parts(&[(other_day, 0, part([9; 11], 8))])
        .await
        .expect("put parts");
    assert_eq!(
        l.daily("ip", &ip, day).await.expect("daily"),
        vec![
            ("gmail".to_owned(), d([3, 6, 0, 0, 0, 0, 0, 3, 4, 1, 1])),
            ("yahoo".to_owned(), d([0, 0, 5, 0, 0, 0, 0, 0])),
        ]
    );
    let stored = l
        .parts(&[(daily("gmail"), 3), (daily("gmail"), 4)])
        .await
        .expect("parts");
    assert_eq!(
        stored,
        vec![part([2, 4, 0, 0, 0, 0, 0, 2, 3, 1, 1], 90), Part::default()]
    );
    let hourly = |hour: &str, detail| key(Granularity::Hourly, &ip, day, hour, detail);
    for (hour, n) in [("2026-03-01T13", 2), ("2026-03-01T02", 4)] {
        for _ in 0..n {
            add(l, &hourly(hour, "gmail"), &d([0, 1, 1, 0, 0, 0, 0, 0])).await;
        }
    }
    assert_eq!(
        l.hourly("ip", &ip, day).await.expect("hourly"),
        vec![
            (
                "2026-03-01T02".into(),
                "gmail".into(),
                d([0, 4, 4, 0, 0, 0, 0, 0])
            ),
            (
                "2026-03-01T13".into(),
                "gmail".into(),
                d([0, 2, 2, 0, 0, 0, 0, 0])
            ),
        ]
    );
    assert!(
        l.hourly("ip", &ip, next_day)
            .await
            .expect("hourly")
            .is_empty()
    );
    assert!(l.daily("tenant", &ip, day).await.expect("daily").is_empty());
}

fn path_row(ip: &str, site: &str, signal: &str, sent: u64) -> ReputationRow {
    ReputationRow {
        source_ip: ip.into(),
        site: site.into(),
        delivery_rate: 0.9,
        deferral_rate: 0.05,
        hard_bounce_rate: 0.02,
        complaint_rate: 0.001,
        signal: signal.into(),
        computed_at: Some(prost_types::Timestamp {
            seconds: now_secs(),
            nanos: 0,
        }),
        sent,
        window_hours: 24,
    }
}

fn tenant_row(tenant: &str, signal: &str) -> TenantReputationRow {
    TenantReputationRow {
        tenant: tenant.into(),
        delivery_rate: 0.5,
        deferral_rate: 0.25,
        hard_bounce_rate: 0.125,
        complaint_rate: 0.0,
        signal: signal.into(),
        computed_at: Some(prost_types::Timestamp {
            seconds: now_secs(),
            nanos: 0,
        }),
        sent: 7,
        window_hours: 6,
    }
}

/// Reputation rows are upserted, filtered by IP / site / tenant, and make
/// their paths and tenants known.
pub async fn reputation_put_get<L: Ledger>(l: &L) {
    let (ip, ip2, tenant) = (fresh("ip"), fresh("ip"), fresh("tenant"));
    let rows = [
        path_row(&ip, "gmail", "ok", 10),
        path_row(&ip, "yahoo", "ok", 20),
        path_row(&ip2, "gmail", "ok", 30),
    ];
    for r in &rows {
        l.put_path_reputation(r).await.expect("put path");
    }
    let updated = path_row(&ip, "yahoo", "pause", 25);
    l.put_path_reputation(&updated).await.expect("upsert path");
    let of_ip = l.path_reputation(&ip, "").await.expect("path rows");
    assert_eq!(of_ip, vec![rows[0].clone(), updated.clone()]);
    let one = l.path_reputation(&ip, "yahoo").await.expect("path rows");
    assert_eq!(one, vec![updated]);
    let all = l.path_reputation("", "gmail").await.expect("path rows");
    assert!(all.contains(&rows[0]) && all.contains(&rows[2]));
    assert!(all.iter().all(|r| r.site == "gmail"));
    let known = l.known_paths().await.expect("known paths");
    for (i, s) in [(&ip, "gmail"), (&ip, "yahoo"), (&ip2, "gmail")] {
        assert!(known.contains(&(i.clone(), s.to_owned())), "{i} {s}");
    }

    l.put_tenant_reputation(&tenant_row(&tenant, "ok"))
        .await
        .expect("put tenant");
    let paused = tenant_row(&tenant, "pause_tenant");
    l.put_tenant_reputation(&paused)
        .await
        .expect("upsert tenant");
    let got = l.tenant_reputation(&tenant).await.expect("tenant rows");
    assert_eq!(got, vec![paused.clone()]);
    assert!(
        l.tenant_reputation("")
            .await
            .expect("all")
            .contains(&paused)
    );
    assert!(l.known_tenants().await.expect("known").contains(&tenant));
    let missing = l.tenant_reputation(&fresh("tenant")).await.expect("rows");
    assert!(missing.is_empty());
}

/// What [`write_fixture`] wrote, to check after a reopen.
pub struct Fixture {
    message: String,
    history: Vec<Event>,
    ip: String,
    tenant: String,
}

/// Writes one of everything: history, a claim, counters, reputation.
pub async fn write_fixture<L: Ledger>(l: &L) -> Fixture {
    let message = fresh("m");
    let (ip, tenant) = (fresh("ip"), fresh("tenant"));
    let e = event(EventKind::Delivered, &message, &ip, "gmail");
    rows(l, &e, now_secs()).await;
    assert_eq!(claim_one(l, &e, pos(0, 1)).await, Claim::New);
    let k = key(Granularity::Daily, &ip, "2026-03-01", "", "gmail");
    add(l, &k, &d([1; 8])).await;
    l.put_path_reputation(&path_row(&ip, "gmail", "slow", 3))
        .await
        .expect("put path");
    l.put_tenant_reputation(&tenant_row(&tenant, "ok"))
        .await
        .expect("put tenant");
    Fixture {
        message,
        history: vec![e],
        ip,
        tenant,
    }
}

/// Everything [`write_fixture`] wrote is there (e.g. after a reopen).
pub async fn check_fixture<L: Ledger>(l: &L, f: &Fixture) {
    assert_eq!(l.history(&f.message).await.expect("history"), f.history);
    assert_eq!(
        claim_one(l, &f.history[0], pos(0, 2)).await,
        Claim::Duplicate
    );
    let daily = l.daily("ip", &f.ip, "2026-03-01").await.expect("daily");
    assert_eq!(daily, vec![("gmail".to_owned(), d([1; 8]))]);
    let paths = l.path_reputation(&f.ip, "").await.expect("paths");
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0].signal, "slow");
    assert_eq!(l.tenant_reputation(&f.tenant).await.expect("t").len(), 1);
}

/// A hard bounce suppresses its recipient for its tenant only, compared
/// lowercase; a soft bounce suppresses nothing.
pub async fn suppressions_per_tenant<L: Ledger>(l: &L) {
    let (tenant, other_tenant) = (fresh("tenant"), fresh("tenant"));
    let id = fresh("m");
    let hard = Event {
        tenant: tenant.clone(),
        recipient: format!("Gone-{id}@Example.com"),
        ..bounce(&id, "192.0.2.1", "gmail", BounceClass::BadMailbox)
    };
    let soft_id = fresh("m");
    let soft = Event {
        tenant: tenant.clone(),
        ..bounce(&soft_id, "192.0.2.1", "gmail", BounceClass::MailboxFull)
    };
    for e in [&hard, &soft, &hard] {
        rows(l, e, now_secs()).await;
    }
    let gone = format!("gone-{id}@example.com");
    let asked = vec![
        format!("{soft_id}@example.com"),
        gone.clone(),
        fresh("other") + "@example.com",
        hard.recipient.clone(),
        gone.to_uppercase(),
        gone.clone(),
    ];
    let suppressed = l.suppressed(&tenant, &asked).await.expect("suppressed");
    assert_eq!(
        suppressed,
        vec![gone.clone(), hard.recipient.clone(), gone.to_uppercase()],
        "as asked, in order, each once"
    );
    let elsewhere = l.suppressed(&other_tenant, &asked).await.expect("other");
    assert!(elsewhere.is_empty(), "another tenant: {elsewhere:?}");
    assert!(l.suppressed(&tenant, &[]).await.expect("none").is_empty());
}

/// A webhook attempt of `tenant`'s webhook `id`, `secs_ago` seconds old.
pub fn webhook_attempt(tenant: &str, id: &str, event: &str, secs_ago: i64) -> WebhookAttempt {
    WebhookAttempt {
        tenant: tenant.into(),
        webhook_id: id.into(),
        event_id: event.into(),
        event_type: "bounced".into(),
        message_id: format!("m-{event}"),
        attempt: 1,
        at: Some(prost_types::Timestamp {
            seconds: now_secs() - secs_ago,
            nanos: 500_000_000,
        }),
        status: 503,
        error: "answered 503".into(),
        duration_ms: 12,
        outcome: "retrying".into(),
    }
}

/// A webhook's delivery log comes back newest first, each attempt once
/// (a rewritten one overwrites itself), up to the limit, without other
/// webhooks' attempts or attempts older than the days a read covers.
pub async fn webhook_deliveries_newest_first<L: Ledger>(l: &L) {
    let tenant = fresh("t");
    let old = webhook_attempt(&tenant, "crm", "e0", 8 * 86_400);
    let first = webhook_attempt(&tenant, "crm", "e1", 120);
    let second = WebhookAttempt {
        attempt: 2,
        status: 200,
        error: String::new(),
        outcome: "delivered".into(),
        ..webhook_attempt(&tenant, "crm", "e1", 60)
    };
    let third = webhook_attempt(&tenant, "crm", "e2", 0);
    let other = webhook_attempt(&tenant, "other", "e3", 30);
    l.put_webhook_attempts(&[first.clone(), old, third.clone()])
        .await
        .expect("put");
    l.put_webhook_attempts(&[second.clone(), other.clone(), third.clone()])
        .await
        .expect("put again");
    let log = l.webhook_attempts(&tenant, "crm", 10).await.expect("read");
    assert_eq!(log, [third.clone(), second.clone(), first]);
    let two = l.webhook_attempts(&tenant, "crm", 2).await.expect("read");
    assert_eq!(two, [third, second]);
    let others = l
        .webhook_attempts(&tenant, "other", 10)
        .await
        .expect("read");
    assert_eq!(others, [other]);
    assert!(
        l.webhook_attempts(&fresh("t"), "crm", 10)
            .await
            .expect("none")
            .is_empty()
    );
}

/// Every check of the suite, one after the other on one ledger.
pub async fn all<L: Ledger>(l: &L) {
    webhook_deliveries_newest_first(l).await;
    history_round_trip(l).await;
    claim_new_then_duplicate(l).await;
    batch_claims_replay(l).await;
    counters_sum(l).await;
    reputation_put_get(l).await;
    suppressions_per_tenant(l).await;
}
