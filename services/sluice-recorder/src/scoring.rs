//! Periodic reputation scoring: sums the hourly counters of the rolling
//! window per (source IP, site) and per tenant, judges them with
//! [`crate::reputation`], and upserts the reputation tables.
//!
//! Scored each round: every path and tenant that already has a reputation
//! row (so a paused path recovers once its window empties) plus those whose
//! counters changed since the last round.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use sluice_node::CancellationToken;

use crate::RecorderError;
use crate::config::ReputationConfig;
use crate::ledger::{AnyLedger, Ledger};
use crate::record::Deltas;
use crate::reputation::{Counts, Level, judge, rates};
use crate::time::window;
use sluice_proto::v1::{ReputationRow, TenantReputationRow};

/// Changed (source IP, site) paths and tenants.
type Changed = (HashSet<(String, String)>, HashSet<String>);

/// Paths and tenants whose counters changed since the last round.
#[derive(Debug, Default)]
pub struct Dirty {
    inner: Mutex<Changed>,
}

impl Dirty {
    /// Records changed paths and tenants.
    pub fn mark(&self, paths: HashSet<(String, String)>, tenants: HashSet<String>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.extend(paths);
        inner.1.extend(tenants);
    }

    fn take(&self) -> Changed {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *inner)
    }
}

fn counts(d: &Deltas) -> Counts {
    let get = |c| u64::try_from(d.get(c)).unwrap_or(0);
    Counts {
        delivered: get("delivered"),
        deferred: get("deferred"),
        bounced: get("bounced"),
        hard_bounced: get("hard_bounced"),
        complained: get("complained"),
        late_bounced: get("late_bounced"),
    }
}

fn timestamp(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

/// Window sums per detail of one hourly-counter key (an IP or a tenant).
async fn window_sums(
    ledger: &AnyLedger,
    scope: &str,
    key: &str,
    now: i64,
    hours: u32,
) -> Result<BTreeMap<String, Deltas>, RecorderError> {
    let (hour_list, days) = window(now, hours);
    let hour_set: HashSet<String> = hour_list.into_iter().collect();
    let mut sums: BTreeMap<String, Deltas> = BTreeMap::new();
    for day in days {
        for (hour, detail, deltas) in ledger.hourly(scope, key, &day).await? {
            if hour_set.contains(&hour) {
                sums.entry(detail).or_default().add(&deltas);
            }
        }
    }
    Ok(sums)
}

/// Scores every known and changed path and tenant once, at `now` (Unix seconds).
pub async fn score_once(
    ledger: &AnyLedger,
    config: &ReputationConfig,
    dirty: &Dirty,
    now: i64,
) -> Result<(), RecorderError> {
    let (changed_paths, changed_tenants) = dirty.take();
    let mut by_ip: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (ip, site) in ledger.known_paths().await?.into_iter().chain(changed_paths) {
        by_ip.entry(ip).or_default().insert(site);
    }
    let hours = config.window_hours();
    for (ip, sites) in by_ip {
        let sums = window_sums(ledger, "ip", &ip, now, hours).await?;
        for site in sites {
            let c = counts(&sums.get(&site).copied().unwrap_or_default());
            let r = rates(&c);
            let level = judge(&c, &config.thresholds);
            let row = ReputationRow {
                source_ip: ip.clone(),
                site,
                delivery_rate: r.delivery_rate,
                deferral_rate: r.deferral_rate,
                hard_bounce_rate: r.hard_bounce_rate,
                complaint_rate: r.complaint_rate,
                signal: level.path_signal().into(),
                computed_at: timestamp(now),
                sent: r.sent,
                window_hours: hours,
            };
            ledger.put_path_reputation(&row).await?;
        }
    }
    let tenants: BTreeSet<String> = ledger
        .known_tenants()
        .await?
        .into_iter()
        .chain(changed_tenants)
        .collect();
    for tenant in tenants {
        let sums = window_sums(ledger, "tenant", &tenant, now, hours).await?;
        let c = counts(&sums.values().fold(Deltas::default(), |mut a, d| {
            a.add(d);
            a
        }));
        let r = rates(&c);
        let level: Level = judge(&c, &config.thresholds);
        let row = TenantReputationRow {
            tenant,
            delivery_rate: r.delivery_rate,
            deferral_rate: r.deferral_rate,
            hard_bounce_rate: r.hard_bounce_rate,
            complaint_rate: r.complaint_rate,
            signal: level.tenant_signal().into(),
            computed_at: timestamp(now),
            sent: r.sent,
            window_hours: hours,
        };
        ledger.put_tenant_reputation(&row).await?;
    }
    Ok(())
}

/// Scores every `interval` until `stop` is cancelled. A failed round is
/// logged and its changes scored again next round.
pub(crate) async fn run(
    ledger: &AnyLedger,
    config: &ReputationConfig,
    dirty: &Dirty,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.interval.into());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (paths, tenants) = {
            let inner = dirty.inner.lock().unwrap_or_else(|e| e.into_inner());
            (inner.0.clone(), inner.1.clone())
        };
        if let Err(err) = score_once(ledger, config, dirty, crate::consumer::now_secs()).await {
            dirty.mark(paths, tenants);
            tracing::warn!(error = %err, "reputation scoring failed; retrying next round");
        }
    }
}
