//! Checking IP leases from the outside: who used which source IP when,
//! from the simulator's record (source IP and time of every accepted
//! message) joined with the delivered events (node and lease epoch), and
//! the real `sluice sender` binary started as a separate process.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;

use sluice_proto::v1::{Event, EventKind};
use tokio::process::{Child, Command};

/// One accepted message: from which IP, by which node under which lease
/// epoch, when (simulator clock, ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub ip: IpAddr,
    pub node: String,
    pub epoch: u64,
    pub at_ms: u64,
}

/// Two nodes' uses of one IP that overlap in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub ip: IpAddr,
    /// (node, epoch, first ms, last ms) of each side.
    pub a: (String, u64, u64, u64),
    pub b: (String, u64, u64, u64),
}

/// `[leases]` TOML for a sender on the Cassandra of the tests.
pub fn leases_toml(keyspace: &str, ttl: &str, renew: &str, margin: &str) -> String {
    let contact = sluice_cql::CqlConfig::from_env().contact_points;
    format!(
        "[leases]\nkind = \"cql\"\nttl = \"{ttl}\"\nrenew_interval = \"{renew}\"\nmargin = \"{margin}\"\n\
         contact_points = \"{contact}\"\nkeyspace = \"{keyspace}\"\n"
    )
}

/// Starts `binary sender --config config` with `node` as its name; its log
/// filter is `SLUICE_TEST_SENDER_LOG` when set (to see more while debugging).
pub fn spawn_sender(binary: &str, config: &Path, node: &str) -> Child {
    Command::new(binary)
        .args(["sender", "--config"])
        .arg(config)
        .env("SLUICE_SENDER_NODE", node)
        .env(
            "SLUICE_LOG",
            std::env::var("SLUICE_TEST_SENDER_LOG")
                .unwrap_or_else(|_| "warn,sluice_sender::leases=info".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start `sluice sender`")
}

/// Joins each of the simulator's accepted messages with the delivered event
/// of the same message and IP whose time is closest to the acceptance (and
/// within two seconds after it: the event is stamped right after the
/// reply). A message delivered twice, by two nodes, has two events; the
/// closest one is the attempt the simulator saw. Messages without such an
/// event are left out.
pub fn uses(report: &sluice_sim::Report, events: &HashMap<String, Vec<Event>>) -> Vec<Use> {
    let ids = crate::sender::accepted_ids(report);
    let mut out = Vec::new();
    for (m, id) in report.messages.iter().zip(ids) {
        let accepted = m.accepted_at_unix_ms;
        let ip = m.source_ip.to_string();
        let delivered = events
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|e| e.kind() == EventKind::Delivered && e.source_ip == ip)
            .filter_map(|e| {
                let t = e.at.as_ref()?;
                let at = t.seconds as u64 * 1000 + t.nanos as u64 / 1_000_000;
                (at + 100 >= accepted && at <= accepted + 2_000)
                    .then_some((at.abs_diff(accepted), e))
            })
            .min_by_key(|(gap, _)| *gap)
            .map(|(_, e)| e);
        if let Some(e) = delivered {
            out.push(Use {
                ip: m.source_ip,
                node: e.node.clone(),
                epoch: e.lease_epoch,
                at_ms: accepted,
            });
        }
    }
    out.sort_by_key(|u| (u.ip, u.at_ms));
    out
}

/// The span of each (IP, node, epoch): first and last use.
pub fn spans(uses: &[Use]) -> BTreeMap<(IpAddr, String, u64), (u64, u64)> {
    let mut out: BTreeMap<(IpAddr, String, u64), (u64, u64)> = BTreeMap::new();
    for u in uses {
        let span = out
            .entry((u.ip, u.node.clone(), u.epoch))
            .or_insert((u.at_ms, u.at_ms));
        span.0 = span.0.min(u.at_ms);
        span.1 = span.1.max(u.at_ms);
    }
    out
}

/// Every pair of spans of one IP by two different nodes that overlap.
pub fn overlaps(uses: &[Use]) -> Vec<Overlap> {
    let spans: Vec<_> = spans(uses).into_iter().collect();
    let mut out = Vec::new();
    for (i, ((ip, na, ea), (fa, la))) in spans.iter().enumerate() {
        for ((ipb, nb, eb), (fb, lb)) in &spans[i + 1..] {
            if ip == ipb && na != nb && fa <= lb && fb <= la {
                out.push(Overlap {
                    ip: *ip,
                    a: (na.clone(), *ea, *fa, *la),
                    b: (nb.clone(), *eb, *fb, *lb),
                });
            }
        }
    }
    out
}

/// For each IP `gone` used last before `killed_at_ms`, how long after it
/// another node first used it (ms); IPs nobody took over are absent.
pub fn takeovers(uses: &[Use], gone: &str, killed_at_ms: u64) -> BTreeMap<IpAddr, u64> {
    let mut last_before: BTreeMap<IpAddr, &Use> = BTreeMap::new();
    for u in uses.iter().filter(|u| u.at_ms <= killed_at_ms) {
        last_before.insert(u.ip, u);
    }
    let mut out = BTreeMap::new();
    for (ip, last) in last_before.into_iter().filter(|(_, u)| u.node == gone) {
        let next = uses
            .iter()
            .find(|u| u.ip == ip && u.at_ms > killed_at_ms && u.node != gone);
        if let Some(next) = next {
            out.insert(ip, next.at_ms - killed_at_ms.max(last.at_ms));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(ip: &str, node: &str, epoch: u64, at_ms: u64) -> Use {
        Use {
            ip: ip.parse().unwrap(),
            node: node.into(),
            epoch,
            at_ms,
        }
    }

    #[test]
    fn interleaved_uses_of_one_ip_by_two_nodes_overlap_and_handovers_do_not() {
        let clean = [
            u("10.0.0.1", "a", 1, 100),
            u("10.0.0.1", "a", 1, 200),
            u("10.0.0.1", "b", 2, 300),
            u("10.0.0.2", "b", 1, 150),
        ];
        assert!(overlaps(&clean).is_empty());
        let mut bad = clean.to_vec();
        bad.push(u("10.0.0.1", "b", 2, 150));
        let found = overlaps(&bad);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn takeover_time_runs_from_the_kill_to_the_first_use_by_another_node() {
        let uses = [
            u("10.0.0.1", "a", 1, 100),
            u("10.0.0.2", "b", 1, 120),
            u("10.0.0.1", "b", 2, 3_100),
            u("10.0.0.2", "b", 1, 3_200),
        ];
        let t = takeovers(&uses, "a", 1_000);
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            [("10.0.0.1".parse().unwrap(), 2_100)]
        );
    }
}
