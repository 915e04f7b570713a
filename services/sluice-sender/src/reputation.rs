//! Following the recorder's reputation table (`sluice.v1.Query/GetReputation`)
//! and turning its rows into engine signals.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use sluice_control_client::Bearer;
use sluice_proto::v1::query_client::QueryClient;
use sluice_proto::v1::{
    GetReputationRequest, GetReputationResponse, ReputationRow, TenantReputationRow,
};
use sluice_shaping::Signal;
use tokio::sync::mpsc::UnboundedSender;

/// The signals of one reading of the table, for this node's IPs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signals {
    /// Per (IP, site): `Pause` or `Slow` (absent means `Ok`).
    pub sites: BTreeMap<(IpAddr, String), Signal>,
    /// Per IP: `HoldDay` when any of its sites says `hold`.
    pub ips: BTreeMap<IpAddr, Signal>,
    /// Tenants whose mail must wait (`pause_tenant`).
    pub paused_tenants: std::collections::BTreeSet<String>,
}

/// Maps the recorder's rows (`ok`, `hold`, `slow`, `pause`) to signals for
/// `ips`; rows of other IPs and unknown signal names are ignored.
pub fn signals(rows: &[ReputationRow], tenants: &[TenantReputationRow], ips: &[IpAddr]) -> Signals {
    let mut out = Signals::default();
    for ip in ips {
        out.ips.insert(*ip, Signal::Ok);
    }
    for row in rows {
        let Ok(ip) = row.source_ip.parse::<IpAddr>() else {
            continue;
        };
        if !ips.contains(&ip) {
            continue;
        }
        match row.signal.as_str() {
            "pause" => {
                out.sites.insert((ip, row.site.clone()), Signal::Pause);
            }
            "slow" => {
                out.sites.insert((ip, row.site.clone()), Signal::Slow);
            }
            "hold" => {
                out.ips.insert(ip, Signal::HoldDay);
            }
            _ => {}
        }
    }
    out.paused_tenants = tenants
        .iter()
        .filter(|t| t.signal == "pause_tenant")
        .map(|t| t.tenant.clone())
        .collect();
    out
}

/// Reads the table every `interval` and sends the signals; runs until the
/// receiver is gone. A failed read is logged and keeps the last signals.
/// `ips` holds this node's IPs (they change when control changes the pool);
/// every call carries `bearer` (`reputation.token_file`); `https://`
/// addresses are verified as `tls` says.
pub async fn follow(
    addr: String,
    bearer: Bearer,
    tls: sluice_node::tls::TlsConfig,
    interval: Duration,
    ips: tokio::sync::watch::Receiver<Vec<IpAddr>>,
    tx: UnboundedSender<Signals>,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        match read(&addr, &bearer, &tls).await {
            Ok(table) => {
                let ips = ips.borrow().clone();
                if tx.send(signals(&table.rows, &table.tenants, &ips)).is_err() {
                    return;
                }
            }
            Err(err) => tracing::warn!(
                %addr, %err,
                "cannot read reputation from the recorder's Query service; keeping the last signals (check reputation.query_addr and reputation.token_file)"
            ),
        }
    }
}

async fn read(
    addr: &str,
    bearer: &Bearer,
    tls: &sluice_node::tls::TlsConfig,
) -> Result<GetReputationResponse, Box<dyn std::error::Error + Send + Sync>> {
    let channel = sluice_node::tls::endpoint(addr, tls)?.connect().await?;
    let mut client = QueryClient::with_interceptor(channel, bearer.clone());
    let table = client
        .get_reputation(GetReputationRequest::default())
        .await?
        .into_inner();
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ip: &str, site: &str, signal: &str) -> ReputationRow {
        ReputationRow {
            source_ip: ip.into(),
            site: site.into(),
            signal: signal.into(),
            ..Default::default()
        }
    }

    #[test]
    fn rows_become_path_and_ip_signals_for_this_nodes_ips_only() {
        let mine: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let rows = [
            row("10.0.0.1", "gmail", "pause"),
            row("10.0.0.1", "yahoo", "slow"),
            row("10.0.0.2", "gmail", "hold"),
            row("10.0.0.2", "yahoo", "ok"),
            row("10.0.0.9", "gmail", "pause"),
            row("not an ip", "gmail", "pause"),
        ];
        let tenants = [
            TenantReputationRow {
                tenant: "spammy".into(),
                signal: "pause_tenant".into(),
                ..Default::default()
            },
            TenantReputationRow {
                tenant: "fine".into(),
                signal: "slow".into(),
                ..Default::default()
            },
        ];
        let s = signals(&rows, &tenants, &mine);
        assert_eq!(s.paused_tenants.iter().collect::<Vec<_>>(), ["spammy"]);
        assert_eq!(s.sites.len(), 2);
        assert_eq!(s.sites[&(mine[0], "gmail".into())], Signal::Pause);
        assert_eq!(s.sites[&(mine[0], "yahoo".into())], Signal::Slow);
        assert_eq!(s.ips[&mine[0]], Signal::Ok);
        assert_eq!(s.ips[&mine[1]], Signal::HoldDay);
    }
}
