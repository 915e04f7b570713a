//! A mutation fuzzer for the parsers that take input from the internet, on
//! the stable toolchain (cargo-fuzz needs nightly; no coverage feedback
//! here, so seeds and a token dictionary per target steer the mutations).
//!
//! Targets: the SMTP command parser, reply reader and DATA reader
//! (`sluice-smtp`), and ingest's whole pre-publish path for an HTTP JSON
//! body, a gRPC `SendRequest`, a raw message and a template
//! (`sluice_ingest::fuzz`). Each input runs under `catch_unwind`; a panic
//! or an input slower than a second is saved to
//! `loadtest/fuzz/corpus/<target>/` — the test command replays that
//! directory (the test at the end of this file), so a fixed crash stays
//! fixed.
//!
//! `cargo run --release -p sluice-loadtest --bin fuzz -- --inputs 10000000`

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_ingest::fuzz::{Harness, Target};

#[derive(Parser)]
#[command(about = "Mutation fuzzing of every parser that faces the internet")]
struct Args {
    /// Inputs per target.
    #[arg(long, default_value_t = 1_000_000)]
    inputs: u64,
    /// Only these targets (default: all).
    #[arg(long)]
    target: Vec<String>,
    /// Threads per target (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seed of the random mutations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Longest input the mutator makes.
const MAX_LEN: usize = 16 * 1024;
/// An input slower than this is kept as a finding.
const SLOW: Duration = Duration::from_secs(1);

/// Runs one input of a target.
type Runner = Box<dyn Fn(&[u8]) -> bool + Sync>;

/// One fuzz target: a name, seeds, tokens, and the code under test.
struct Fuzzed {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    tokens: &'static [&'static str],
    /// Runs one input; `true` when it was accepted (parsed, or for ingest
    /// targets, would be published).
    run: Runner,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if args.threads == 0 {
        cpus
    } else {
        args.threads
    };
    println!(
        "fuzz: {} inputs per target, {threads} threads, seed {}, {cpus} CPUs ({})",
        args.inputs,
        args.seed,
        std::env::consts::ARCH
    );
    println!(
        "method: random mutations (bit flips, byte sets, inserts, deletes, duplicated ranges, splices,"
    );
    println!(
        "dictionary tokens) of seed inputs, each run under catch_unwind; panics and inputs over 1 s saved\n"
    );
    let mut findings = 0;
    for target in targets() {
        if !args.target.is_empty() && !args.target.iter().any(|t| t == target.name) {
            continue;
        }
        findings += fuzz(&target, args.inputs, threads, args.seed)?;
    }
    if findings > 0 {
        anyhow::bail!(
            "{findings} findings saved under {}",
            corpus_root().display()
        );
    }
    Ok(())
}

fn targets() -> Vec<Fuzzed> {
    let mut all = vec![
        Fuzzed {
            name: "smtp-command",
            seeds: seeds(&[
                "EHLO mx.example\r\n",
                "MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME\r\n",
                "RCPT TO:<\"quoted local\"@[192.0.2.1]> NOTIFY=NEVER\r\n",
                "AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
                "DATA\r\n",
            ]),
            tokens: &[
                "<", ">", "@", ":", "=", " ", "\"", "\\", "[", "]", "\r\n", "FROM:", "TO:",
                "SIZE=", "IPv6:",
            ],
            run: Box::new(|bytes| sluice_smtp::parse(bytes).is_ok()),
        },
        Fuzzed {
            name: "smtp-reply",
            seeds: seeds(&[
                "250-mx.example Hello\r\n250-SIZE 1000\r\n250 PIPELINING\r\n",
                "550 5.1.1 <a@b> unknown\r\n",
                "421-4.7.0 try\r\n421 later\r\n",
            ]),
            tokens: &["-", " ", "\r\n", "\n", "250", "550", "4.7.0", "5.1.1"],
            run: Box::new(|bytes| {
                let mut reader = tokio::io::BufReader::new(bytes);
                let read = sluice_smtp::read_reply(&mut reader, sluice_smtp::MAX_REPLY_LINE);
                futures::executor::block_on(read).is_ok()
            }),
        },
        Fuzzed {
            name: "smtp-data",
            seeds: seeds(&[
                "Subject: x\r\n\r\nbody\r\n..dot\r\n.\r\n",
                "a\nbare lf\r\n.\r\n",
            ]),
            tokens: &[".", "\r\n", "\n", "\r", "..", "\r\n.\r\n"],
            run: Box::new(|bytes| {
                let mut reader = tokio::io::BufReader::new(bytes);
                let limits = sluice_smtp::DataLimits {
                    max_line: 1000,
                    max_size: 8 * 1024,
                    endings: sluice_smtp::Endings::Normalize,
                };
                futures::executor::block_on(sluice_smtp::read_data(&mut reader, &limits)).is_ok()
            }),
        },
    ];
    for (target, name) in Target::ALL {
        let harness = Harness::default();
        let (seeds, tokens) = ingest_seeds(target);
        all.push(Fuzzed {
            name,
            seeds,
            tokens,
            run: Box::new(move |bytes| harness.run(target, bytes).is_ok()),
        });
    }
    all
}

fn ingest_seeds(target: Target) -> (Vec<Vec<u8>>, &'static [&'static str]) {
    match target {
        Target::Json => (
            seeds(&[
                r#"{"from":"News <news@acme.example>","recipients":[{"address":"ann@example.org","substitutions":{"name":"Ann"}}],"template":{"subject":"Hi {{ name }}","text":"Hello"},"send_at":"2026-12-01T10:00:00Z","priority":"high","tags":{"a":"b"}}"#,
                r#"{"recipients":[{"address":"b@example.org"}],"raw":"From: a@acme.example\nSubject: s\n\nbody\n"}"#,
                r#"{"recipients":[{"address":"c@example.org"}],"raw_base64":"RnJvbTogYUBhY21lLmV4YW1wbGUKCmI="}"#,
            ]),
            &[
                "{", "}", "[", "]", "\"", ":", ",", "\\u0000", "\\n", "null", "1e999", "-1", "{{",
                "}}", "@",
            ],
        ),
        Target::Proto => (
            proto_seeds(),
            &[
                "\x0a",
                "\x12",
                "\x1a",
                "\x22",
                "\x08",
                "\u{ff}\u{ff}\u{ff}\x0f",
                "\x00",
            ],
        ),
        Target::Raw => (
            seeds(&[
                "From: News <news@acme.example>\r\nTo: ann@example.org\r\nSubject: hi\r\n\r\nbody\r\n",
                "From: \"a@evil.example\" <news@acme.example> (comment)\r\nSender: x@acme.example\r\n\r\n",
                "From: a@acme.example, b@acme.example\r\nReceived: x\r\n\r\n",
                "Subject: =?utf-8?B?w6k=?=\r\nFrom: group: a@acme.example;\r\n\r\n",
            ]),
            &[
                "\r\n", ":", "<", ">", "@", ",", ";", "(", ")", "\"", "=?", "?=", "\r\n\r\n", " ",
                "\t", "From: ", "Sender: ",
            ],
        ),
        Target::Template => (
            seeds(&[
                "Hello {{ name }}",
                "{% for x in [1,2,3] %}{{ x|upper }}{% endfor %}",
                "{% if name %}{{ name|title }}{% else %}friend{% endif %}",
                "{{ name ~ name }} {{ 9999999 * 9999999 }}",
            ]),
            &[
                "{{", "}}", "{%", "%}", "for", "in", "endfor", "if", "endif", "set", "|", "~", "*",
                "+", "range(", "(", ")", "[", "]", "\"", "'", "name", "loop",
            ],
        ),
    }
}

fn proto_seeds() -> Vec<Vec<u8>> {
    use prost::Message;
    use sluice_proto::v1::{Recipient, SendRequest, Template, send_request::Content};
    let template = SendRequest {
        from: "News <news@acme.example>".into(),
        recipients: vec![Recipient {
            address: "ann@example.org".into(),
            ..Default::default()
        }],
        content: Some(Content::Template(Template {
            subject: "Hi {{ name }}".into(),
            text: "Hello".into(),
            html: "<p>Hello</p>".into(),
        })),
        ..Default::default()
    };
    let raw = SendRequest {
        recipients: template.recipients.clone(),
        content: Some(Content::Raw(
            b"From: a@acme.example\r\n\r\nbody\r\n".to_vec(),
        )),
        ..Default::default()
    };
    vec![template.encode_to_vec(), raw.encode_to_vec()]
}

fn seeds(texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

/// Where a target's saved inputs live (replayed by the test command).
fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

/// Runs `inputs` mutated inputs through `target` on `threads` threads;
/// returns how many findings were saved.
fn fuzz(target: &Fuzzed, inputs: u64, threads: usize, seed: u64) -> anyhow::Result<u64> {
    let mut pool = target.seeds.clone();
    pool.extend(saved(target.name));
    let bar = ProgressBar::new(inputs);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>14} [{bar:30}] {pos}/{len} inputs, {per_sec}, eta {eta}",
        )?
        .progress_chars("=> "),
    );
    bar.set_prefix(target.name);
    let (done, found, accepted) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (pool, done, found, bar) = (&pool, &done, &found, &bar);
            let accepted = &accepted;
            s.spawn(move || {
                let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (t as u64 + 1));
                while done.fetch_add(1, Ordering::Relaxed) < inputs {
                    let input = mutate(&mut rng, pool, target.tokens);
                    let began = Instant::now();
                    let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
                    let slow = began.elapsed() > SLOW;
                    if matches!(outcome, Ok(true)) {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    if outcome.is_err() || slow {
                        let kind = if slow { "slow" } else { "panic" };
                        let path = save(target.name, &input);
                        bar.println(format!(
                            "{}: {kind} input saved to {}",
                            target.name,
                            path.display()
                        ));
                        found.fetch_add(1, Ordering::Relaxed);
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let found = found.load(Ordering::Relaxed);
    let accepted = accepted.load(Ordering::Relaxed) as f64 * 100.0 / inputs.max(1) as f64;
    println!(
        "{:<14} {inputs:>11} inputs in {elapsed:>8.1?} ({:>9.0}/s), accepted {accepted:>5.1} %, findings: {found}",
        target.name,
        inputs as f64 / elapsed.as_secs_f64()
    );
    Ok(found)
}

/// The saved inputs of `target`.
fn saved(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_root().join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn save(target: &str, input: &[u8]) -> PathBuf {
    let dir = corpus_root().join(target);
    let _ = std::fs::create_dir_all(&dir);
    let mut hasher = DefaultHasher::new();
    input.hash(&mut hasher);
    let path = dir.join(format!("{:016x}", hasher.finish()));
    let _ = std::fs::write(&path, input);
    path
}

/// xorshift64*: fast, and enough for choosing mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A seed with one to eight mutations.
fn mutate(rng: &mut Rng, pool: &[Vec<u8>], tokens: &[&str]) -> Vec<u8> {
    let mut input = pool[rng.below(pool.len())].clone();
    for _ in 0..=rng.below(8) {
        let at = rng.below(input.len() + 1);
        match rng.below(7) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.next() as u8;
            }
            2 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            3 if !input.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(input.len());
                input.drain(at.min(end)..end);
            }
            4 if !input.is_empty() => {
                let start = rng.below(input.len());
                let end = (start + 1 + rng.below(64)).min(input.len());
                let piece = input[start..end].to_vec();
                for _ in 0..=rng.below(4) {
                    input.splice(at..at, piece.iter().copied());
                }
            }
            5 => {
                let other = &pool[rng.below(pool.len())];
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            _ => {
                let token = tokens[rng.below(tokens.len())].as_bytes();
                input.splice(at..at, token.iter().copied());
            }
        }
        input.truncate(MAX_LEN);
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every saved input (past findings) and every seed runs without a
    /// panic and within a second.
    #[test]
    fn the_corpus_and_the_seeds_replay_cleanly() {
        let mut replayed = 0;
        for target in targets() {
            let mut inputs = target.seeds.clone();
            inputs.extend(saved(target.name));
            for input in inputs {
                let began = Instant::now();
                let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
                assert!(
                    outcome.is_ok(),
                    "{}: panicked on {:?}",
                    target.name,
                    String::from_utf8_lossy(&input)
                );
                assert!(
                    began.elapsed() < SLOW * 5,
                    "{}: slow on {:?}",
                    target.name,
                    String::from_utf8_lossy(&input)
                );
                replayed += 1;
            }
        }
        assert!(replayed >= 20, "only {replayed} inputs replayed");
    }

    /// The harness reaches the deep paths: each ingest target accepts a
    /// seed (a misconfigured harness would refuse everything early).
    #[test]
    fn every_ingest_target_accepts_a_seed() {
        let harness = Harness::default();
        for (target, name) in Target::ALL {
            let (seeds, _) = ingest_seeds(target);
            let answers: Vec<_> = seeds.iter().map(|s| harness.run(target, s)).collect();
            assert!(answers.iter().any(Result::is_ok), "{name}: {answers:?}");
        }
    }

    #[test]
    fn mutations_stay_within_bounds_and_vary() {
        let mut rng = Rng(7);
        let pool = seeds(&["abc", ""]);
        let made: std::collections::HashSet<Vec<u8>> = (0..1000)
            .map(|_| mutate(&mut rng, &pool, &["{{"]))
            .collect();
        assert!(made.len() > 500, "{} distinct of 1000", made.len());
        assert!(made.iter().all(|m| m.len() <= MAX_LEN));
    }
}
