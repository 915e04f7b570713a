//! `kill -9` loses no acknowledged record.
//!
//! The parent test runs this test binary again as a child (selected by the
//! `SLUICE_STORE_CRASH_DIR` variable and `--exact crash_child_writer`). The
//! child appends records and prints `ACK <i> <partition> <offset>` after each
//! append returned, and `COMMIT <partition> <offset>` after each commit; the
//! parent kills it with SIGKILL mid-stream, reopens the store and checks that
//! every acknowledged record and commit is there. Two rounds, so recovery of a
//! recovered store is covered too.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use sluice_log::{EmbeddedLog, ReadLimit};

const DIR_ENV: &str = "SLUICE_STORE_CRASH_DIR";
const ROUND_ENV: &str = "SLUICE_STORE_CRASH_ROUND";
const TOPIC: &str = "crash";
const KILL_AFTER: usize = 300;

fn payload(round: u32, i: u64) -> Vec<u8> {
    format!("round {round} record {i} ").repeat(20).into_bytes()
}

/// The child: a no-op unless started by `survives_kill_9`.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let round: u32 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let log = EmbeddedLog::open(&dir).unwrap();
    log.create_topic_blocking(TOPIC, 4).unwrap();
    log.join_blocking("idle", TOPIC).unwrap(); // never commits: nothing is trimmed
    let mut out = std::io::stdout().lock();
    for i in 0_u64.. {
        let key = format!("r{round}-{i}");
        let pos = log
            .append_blocking(TOPIC, key.as_bytes(), &payload(round, i))
            .unwrap();
        writeln!(out, "ACK {i} {} {}", pos.partition, pos.offset).unwrap();
        if i % 25 == 0 {
            log.commit_blocking("worker", TOPIC, pos.partition, pos.offset)
                .unwrap();
            writeln!(out, "COMMIT {} {}", pos.partition, pos.offset).unwrap();
        }
        out.flush().unwrap();
    }
}

/// Runs one child until it acknowledged `KILL_AFTER` records, kills it with
/// SIGKILL, and returns every line it printed.
fn run_and_kill(dir: &std::path::Path, round: u32) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child writer");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut acks = 0;
    while acks < KILL_AFTER {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("child stopped after {acks} records"))
            .unwrap();
        acks += usize::from(line.starts_with("ACK "));
        seen.push(line);
    }
    child.kill().expect("SIGKILL the child"); // Child::kill is SIGKILL on Unix
    child.wait().unwrap();
    // Lines the child printed before it died are still in the pipe.
    seen.extend(lines.map_while(Result::ok));
    seen
}

#[test]
fn survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(u32, u64, i32, i64)> = Vec::new();
    let mut commits: HashMap<i32, i64> = HashMap::new();
    for round in 0..2 {
        for line in run_and_kill(dir.path(), round) {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["ACK", i, p, o] => acked.push((
                    round,
                    i.parse().unwrap(),
                    p.parse().unwrap(),
                    o.parse().unwrap(),
                )),
                ["COMMIT", p, o] => {
                    commits.insert(p.parse().unwrap(), o.parse().unwrap());
                }
                _ => {} // the test harness's own output
            }
        }
    }
    assert!(acked.len() >= 2 * KILL_AFTER);
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let all = ReadLimit {
        max_records: usize::MAX,
        max_bytes: usize::MAX,
    };
    let mut stored = HashMap::new();
    for p in 0..4 {
        for r in log.read_blocking(TOPIC, p, 0, all).unwrap() {
            stored.insert((p, r.offset), (r.key, r.payload));
        }
    }
    for (round, i, p, o) in &acked {
        let (key, value) = stored.get(&(*p, *o)).unwrap_or_else(|| {
            panic!("acknowledged record {i} of round {round} at {p}/{o} is lost")
        });
        assert_eq!(key, format!("r{round}-{i}").as_bytes());
        assert_eq!(value, &payload(*round, *i));
    }
    for (p, o) in commits {
        let committed = log.committed_blocking("worker", TOPIC, p).unwrap();
        assert!(
            committed >= Some(o),
            "commit {o} on partition {p} lost: {committed:?}"
        );
    }
}
