//! DKIM signing on this machine, the way ingest signs: RSA-2048,
//! relaxed/relaxed, the headers ingest signs, distinct messages.
//!
//! Rows: the bound (raw RSA-2048 PKCS#1 signatures of a 32-byte input, no
//! DKIM work) with OpenSSL and with ring; whole DKIM signatures of distinct
//! 10 KB and 100 KB messages with each library on every thread; and the
//! rate through ingest's own signer (`DkimSigners::sign_all` and its
//! signing threads) from 64 concurrent one-message submissions.
//!
//! `cargo run --release -p sluice-loadtest --bin dkim-bench -- --seconds 3`

#[path = "machine.rs"]
mod machine;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use mail_auth::common::crypto::{RsaKey, Sha256, SigningKey};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use sluice_ingest::dkim::OpensslRsa;

#[derive(Parser)]
#[command(about = "DKIM RSA-2048 signing rates: the bound, ring, OpenSSL, ingest's signer")]
struct Args {
    /// Seconds each row runs.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Threads for the multi-threaded rows (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

const HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cpus = machine::cpus().max(1);
    let threads = if args.threads == 0 {
        cpus
    } else {
        args.threads
    };
    let span = Duration::from_secs_f64(args.seconds);
    println!(
        "dkim-bench: {cpus} CPUs ({}), {threads} threads, {:.1} s per row",
        machine::cpu_model(),
        args.seconds
    );
    println!("method: each row signs for the whole span on its threads and counts signatures;");
    println!(
        "messages are distinct (a counter in a header and the body), RSA-2048 keys made at start\n"
    );

    let rsa = openssl::rsa::Rsa::generate(2048)?;
    let pkey = openssl::pkey::PKey::from_rsa(rsa)?;
    let pem = String::from_utf8(pkey.private_key_to_pem_pkcs8()?)?;
    let der = pkey.private_key_to_pkcs8()?;

    println!("{:<52} {:>12}", "row", "signatures/s");
    let raw_openssl = |_: u64| {
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey)
            .expect("signer");
        signer.update(&[7u8; 32]).expect("update");
        signer.sign_to_vec().expect("sign");
    };
    row(
        "bound: raw RSA-2048, OpenSSL, 1 thread",
        1,
        span,
        raw_openssl,
    );
    row(
        &format!("bound: raw RSA-2048, OpenSSL, {threads} threads"),
        threads,
        span,
        raw_openssl,
    );
    let ring_pair =
        ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rng = ring::rand::SystemRandom::new();
    let raw_ring = |_: u64| {
        let mut sig = vec![0u8; ring_pair.public().modulus_len()];
        ring_pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &rng,
                &[7u8; 32],
                &mut sig,
            )
            .expect("sign");
    };
    row("bound: raw RSA-2048, ring, 1 thread", 1, span, raw_ring);
    row(
        &format!("bound: raw RSA-2048, ring, {threads} threads"),
        threads,
        span,
        raw_ring,
    );

    for size in [10 * 1024, 100 * 1024] {
        let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(der.clone());
        let ring_key = RsaKey::<Sha256>::from_key_der(pkcs8.into());
        let ring_key = signer(ring_key.map_err(|e| anyhow::anyhow!("{e}"))?);
        let ssl_key = signer(OpensslRsa::from_pem(pem.as_bytes()).map_err(|e| anyhow::anyhow!(e))?);
        let kb = size / 1024;
        row(
            &format!("DKIM {kb} KB distinct, ring, {threads} threads"),
            threads,
            span,
            |n| {
                ring_key.sign(&message(n, size)).expect("sign");
            },
        );
        row(
            &format!("DKIM {kb} KB distinct, OpenSSL, {threads} threads"),
            threads,
            span,
            |n| {
                ssl_key.sign(&message(n, size)).expect("sign");
            },
        );
    }
    through_ingest(&pem, threads, span)?;
    Ok(())
}

fn signer<K: SigningKey>(key: K) -> DkimSigner<K, mail_auth::dkim::Done> {
    DkimSigner::from_key(key)
        .domain("bench.test")
        .selector("s1")
        .headers(HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

/// A distinct message of about `size` bytes.
fn message(n: u64, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: news@bench.test\r\nTo: user{n}@example.test\r\nSubject: bench {n}\r\n\
         Date: Mon, 30 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{n}@bench.test>\r\n\
         MIME-Version: 1.0\r\n\r\n"
    )
    .into_bytes();
    let line = format!("line of message {n} padding the body to its size ..........\r\n");
    while m.len() < size {
        m.extend_from_slice(line.as_bytes());
    }
    m
}

/// Runs `op` on `threads` threads for `span`; prints signatures per second.
fn row(label: &str, threads: usize, span: Duration, op: impl Fn(u64) + Sync) {
    let (done, stop) = (AtomicU64::new(0), AtomicBool::new(false));
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (done, stop, op) = (&done, &stop, &op);
            s.spawn(move || {
                let mut n = (t as u64) << 40;
                while !stop.load(Ordering::Relaxed) {
                    op(n);
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while started.elapsed() < span {
            std::thread::park_timeout(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("{label:<52} {rate:>12.0}");
}

/// 64 async submitters of one 10 KB message each, signed by ingest's
/// `DkimSigners` on `threads` signing threads.
fn through_ingest(pem: &str, threads: usize, span: Duration) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("dkim-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key_file = dir.join("key.pem");
    std::fs::write(&key_file, pem)?;
    let tenant: sluice_ingest::config::TenantConfig = toml::from_str(&format!(
        "name = \"bench\"\napi_keys = []\ndefault_pool = \"p\"\n[[domains]]\nname = \"bench.test\"\n\
         dkim_selector = \"s1\"\ndkim_private_key_file = \"{}\"\n",
        key_file.display()
    ))?;
    let signers = sluice_ingest::dkim::DkimSigners::from_config(&[tenant], threads)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let (signers, done) = (signers.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = t << 40;
                while started.elapsed() < span {
                    let batch = vec![message(n, 10 * 1024)];
                    signers.sign_all("bench.test", batch).await.expect("signed");
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for task in tasks {
            task.await.expect("submitter");
        }
    });
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let label = format!("ingest DkimSigners 10 KB, 64 submitters, {threads} thr");
    println!("{label:<52} {rate:>12.0}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
