//! Measures what one consumer-group commit costs the embedded message log
//! (the log of `sluice dev`) as commits pile up, the way a node that runs
//! for hours makes them: every commit is a new version of the same key.
//!
//! ```text
//! cargo run --release -p sluice-loadtest --bin commit-bench -- [--commits N] [--step N] [--dir DIR]
//! ```
//!
//! Figures are recorded in `docs/benchmarks.md`.

#[path = "machine.rs"]
mod machine;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use sluice_log::{EmbeddedLog, NewRecord};

/// Times consumer-group commits on the embedded message log, step by step,
/// to show whether a commit gets dearer the longer the log runs.
#[derive(Parser)]
struct Args {
    /// Commits to make (one durable write each).
    #[arg(long, default_value_t = 60_000)]
    commits: u64,
    /// Commits per line of the table.
    #[arg(long, default_value_t = 10_000)]
    step: u64,
    /// Directory for the data, on the disk being measured (default: the
    /// system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.commits > 0 && args.step > 0,
        "--commits and --step must be at least 1"
    );
    let parent = args.dir.unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("commit-bench-")
        .tempdir_in(parent)?;
    println!(
        "machine: {}, {} cores; data dir: {}",
        machine::cpu_model(),
        machine::cpus(),
        dir.path().display()
    );
    println!(
        "method: one topic of one partition holding {} records of 100 bytes; group `reader` commits one offset \
         further each time (one durable write each); group `holder` joined and never commits, so nothing is trimmed",
        args.commits
    );
    let log = EmbeddedLog::open(dir.path())?;
    log.create_topic_blocking("t", 1)?;
    log.join_blocking("reader", "t")?;
    log.join_blocking("holder", "t")?;
    let offsets: Vec<u64> = (0..args.commits).collect();
    for chunk in offsets.chunks(1000) {
        let batch: Vec<NewRecord> = chunk
            .iter()
            .map(|i| NewRecord::new("t", i.to_be_bytes().to_vec(), vec![0u8; 100]))
            .collect();
        log.append_batch_blocking(&batch)?;
    }
    println!("| commits made | µs per commit over the step |");
    println!("| --- | --- |");
    let bar = indicatif::ProgressBar::new(args.commits).with_message("commits");
    let mut done = 0;
    while done < args.commits {
        let end = (done + args.step).min(args.commits);
        let start = Instant::now();
        for offset in done + 1..=end {
            log.commit_blocking("reader", "t", 0, offset as i64)?;
            bar.inc(1);
        }
        let per = start.elapsed().as_secs_f64() * 1e6 / (end - done) as f64;
        bar.suspend(|| println!("| {end} | {per:.0} |"));
        done = end;
    }
    bar.finish_and_clear();
    Ok(())
}
