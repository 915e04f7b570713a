//! CPU time and memory (PSS) of a process and everything it started,
//! read from /proc. A child that exited and was reaped counts in its
//! parent's `cutime`/`cstime`, so summing all four fields over the live
//! tree counts every process that ran under the root.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// (parent pid, utime + stime + cutime + cstime in ticks) of every
/// process.
fn table() -> HashMap<u32, (u32, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        let ppid = num(1) as u32;
        out.insert(pid, (ppid, num(11) + num(12) + num(13) + num(14)));
    }
    out
}

/// `root` and its descendants.
fn tree(all: &HashMap<u32, (u32, u64)>, root: u32) -> Vec<u32> {
    let mut members = vec![root];
    let mut i = 0;
    while i < members.len() {
        let parent = members[i];
        members.extend(
            all.iter()
                .filter(|(_, v)| v.0 == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    members
}

/// Seconds of CPU the trees under `roots` have used so far.
pub fn cpu_seconds(roots: &[u32]) -> f64 {
    let all = table();
    let members = roots.iter().flat_map(|r| tree(&all, *r));
    let ticks: u64 = members.filter_map(|p| all.get(&p)).map(|v| v.1).sum();
    ticks as f64 / clock_ticks()
}

/// The trees' proportional set size: each process's private pages plus
/// its share of pages it shares (Postfix's daemons share most of theirs,
/// so a plain sum of RSS would count them many times).
fn pss_bytes(roots: &[u32]) -> u64 {
    let all = table();
    let members = roots.iter().flat_map(|r| tree(&all, *r));
    members.map(pss_kib).sum::<u64>() * 1024
}

fn pss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let line = text.lines().find_map(|l| l.strip_prefix("Pss:"));
    line.and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Samples the trees' memory (PSS) every 100 ms until dropped; the
/// highest sum seen.
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl PeakRss {
    pub fn watch(roots: Vec<u32>) -> Self {
        let (peak, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (p, s) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                p.fetch_max(pss_bytes(&roots), Ordering::Relaxed);
            }
        });
        Self { peak, stop }
    }

    pub fn peak_bytes(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
