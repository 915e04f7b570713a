//! `sluice demo`: `sluice dev` and the ISP simulator in one process. Submits
//! mail through the public gRPC API, shows progress from the events topic,
//! then checks the run against the simulator's own record and prints a
//! report per provider and per source IP (docs/demo.md).

mod report;
mod scenario;
mod submit;
mod table;
mod tally;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice_sim::{Scenario, SimHandle, Simulator};

use crate::cli::DemoArgs;
use crate::dev::{self, DevConfig};
use scenario::{PROVIDERS, Plan, WARMING_IPS};
use tally::Tally;

/// Runs the demo; exit code 0 only when every check passed.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.messages == 0 {
        bail!("--messages must be at least 1");
    }
    let dir = DataDir::choose(&args)?;
    let result = run_in(&args, &dir.path).await;
    dir.finish();
    result
}

async fn run_in(args: &DemoArgs, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let scenario = Scenario::parse(&scenario::sim_toml()).context("the demo's ISP scenario")?;
    let sim = Simulator::start(scenario)
        .await
        .context("cannot start the ISP simulator on 127.0.0.2-5 (is 127.0.0.0/8 on `lo`?)")?;
    let key = format!("sluice-demo-{}", uuid::Uuid::new_v4().simple());
    let plan = Plan::for_messages(args.messages);
    let text = scenario::dev_toml(dir, &sluice_ingest::hash_secret(&key), &sim.addrs(), &plan);
    let cfg = DevConfig::from_toml(&text).context("the demo's dev configuration")?;
    let running = dev::start(cfg).await.context("cannot start `sluice dev`")?;
    intro(args.messages, &sim, &plan, dir);

    let tally = Arc::new(Mutex::new(Tally::default()));
    let (drain, drained) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(watch::run(running.log(), tally.clone(), drained));
    let grpc = running.endpoints.ingest_grpc;
    let messages = args.messages;
    let submitting = tokio::spawn(async move { submit::submit(grpc, &key, messages).await });
    let waited = wait(args.messages, running, submitting, &tally, started).await;

    let _ = drain.send(true);
    let watched = watcher.await.context("the event watcher panicked")?;
    let sim_report = sim.shutdown().await;
    let (accepted, stop_error) = waited?;
    watched?;
    let tally = tally.lock().expect("the tally lock is never poisoned");
    let ips = scenario::source_ips();
    let outcome = report::analyse(&report::Inputs {
        sim: &sim_report,
        tally: &tally,
        accepted: &accepted.ids,
        providers: &PROVIDERS,
        ips: &ips,
        warming: &WARMING_IPS,
        plan: &plan,
    });
    print!("{}", table::render(&outcome, started.elapsed()));
    if accepted.suppressed > 0 || accepted.retries > 0 {
        println!(
            "ingest: {} recipients suppressed, {} calls retried after backpressure",
            accepted.suppressed, accepted.retries
        );
    }
    if let Some(err) = stop_error {
        println!("FAIL: `sluice dev` did not stop cleanly: {err:#}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the wait produced: ingest's answers, and an error from stopping dev.
type Waited = (submit::Submitted, Option<anyhow::Error>);

/// Shows progress until every accepted message has a final event, the
/// deadline passes or a service fails; then stops `sluice dev`.
async fn wait(
    messages: u64,
    mut running: dev::Running,
    mut submitting: tokio::task::JoinHandle<anyhow::Result<submit::Submitted>>,
    tally: &Mutex<Tally>,
    started: Instant,
) -> anyhow::Result<Waited> {
    let deadline = started + timeout(messages);
    let mut progress = watch::Progress::new(messages);
    let mut accepted: Option<submit::Submitted> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let stats = running.sender_stats();
    let failure = loop {
        tokio::select! {
            _ = tick.tick() => {}
            (name, result) = running.failed() => {
                break Some(anyhow::anyhow!("`sluice dev` service {name} stopped: {result:?}"));
            }
            joined = &mut submitting, if accepted.is_none() => {
                match joined.context("the submitting task panicked").and_then(|r| r) {
                    Ok(s) => accepted = Some(s),
                    Err(err) => break Some(err),
                }
            }
        }
        let sender = {
            let s = stats
                .lock()
                .expect("the sender's stats lock is never poisoned");
            (s.in_delivery, s.queued)
        };
        let t = tally.lock().expect("the tally lock is never poisoned");
        progress.update(&t, sender, started.elapsed());
        if accepted.as_ref().is_some_and(|a| all_final(&a.ids, &t)) {
            break None;
        }
        if Instant::now() >= deadline {
            println!(
                "timed out after {:?}: not every message has a final outcome",
                timeout(messages)
            );
            break None;
        }
    };
    progress.finish();
    let stopped = running.stop().await.err();
    if let Some(err) = failure {
        return Err(err);
    }
    let accepted = accepted.context("the submission did not finish before the deadline")?;
    Ok((accepted, stopped))
}

fn all_final(ids: &[String], t: &Tally) -> bool {
    ids.len() as u64 <= t.finished() && ids.iter().all(|id| t.finals.contains_key(id))
}

/// How long the demo waits for every message: two minutes plus 10 ms each.
fn timeout(messages: u64) -> Duration {
    Duration::from_secs(120) + Duration::from_millis(10).saturating_mul(messages as u32)
}

fn intro(messages: u64, sim: &SimHandle, plan: &Plan, dir: &std::path::Path) {
    let providers: Vec<String> = sim
        .addrs()
        .iter()
        .map(|(name, addr)| format!("{name} {addr}"))
        .collect();
    println!("sluice demo: {messages} messages through the gRPC Ingest API");
    println!("  simulated providers: {}", providers.join(", "));
    println!(
        "  source IPs: {} (warmed), {} (warm-up plan `{}`, day 1 cap {} per IP, {} % per site)",
        scenario::WARMED_IPS.join(", "),
        WARMING_IPS.join(", "),
        plan.name,
        plan.daily[0],
        plan.site_share_percent
    );
    println!("  data directory: {}", dir.display());
}

/// The data directory: the user's (kept), or a fresh one under the system
/// temp directory (removed at the end unless `--keep`).
struct DataDir {
    path: PathBuf,
    keep: bool,
}

impl DataDir {
    fn choose(args: &DemoArgs) -> anyhow::Result<DataDir> {
        if let Some(path) = &args.data_dir {
            let used = std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some());
            if used {
                bail!(
                    "--data-dir {}: the directory is not empty; the demo's warm-up check assumes a fresh start, so give a new or empty directory",
                    path.display()
                );
            }
            return Ok(DataDir {
                path: path.clone(),
                keep: true,
            });
        }
        let path =
            std::env::temp_dir().join(format!("sluice-demo-{}", uuid::Uuid::new_v4().simple()));
        Ok(DataDir {
            path,
            keep: args.keep,
        })
    }

    fn finish(self) {
        if self.keep {
            println!("data kept in {}", self.path.display());
        } else if let Err(err) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %err, "cannot remove the demo's data directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_scales_with_the_run() {
        assert_eq!(timeout(2000), Duration::from_secs(140));
        assert_eq!(timeout(50_000), Duration::from_secs(620));
    }

    #[test]
    fn all_final_needs_every_id() {
        let mut t = Tally::default();
        let ids = vec!["a".to_owned(), "b".to_owned()];
        t.finals
            .insert("a".into(), vec![sluice_proto::v1::EventKind::Delivered]);
        assert!(!all_final(&ids, &t));
        t.finals
            .insert("b".into(), vec![sluice_proto::v1::EventKind::Bounced]);
        assert!(all_final(&ids, &t));
    }
}
