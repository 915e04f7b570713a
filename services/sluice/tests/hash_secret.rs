//! `sluice hash-secret` reads a secret on standard input and prints the form
//! the ingest config stores.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("hash-secret")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write secret");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn passwords_get_argon2id_and_keys_get_salted_sha256() {
    let (ok, password, _) = run(&["--password"], "correct horse\n");
    assert!(ok);
    assert!(password.starts_with("$argon2id$v=19$"), "{password}");
    let (ok, key, _) = run(&[], "k-123");
    assert!(ok);
    let parts: Vec<&str> = key.split('$').collect();
    assert_eq!(parts.len(), 3, "{key}");
    assert_eq!(parts[0], "sha256");
    assert_eq!(parts[2].len(), 64, "a SHA-256 digest in hex");
    let (_, again, _) = run(&[], "k-123");
    assert_ne!(key, again, "a fresh salt each time");
}

#[test]
fn an_empty_input_is_refused_with_how_to_use_it() {
    let (ok, out, err) = run(&[], "");
    assert!(!ok);
    assert!(out.is_empty());
    assert!(
        err.contains("printf %s 'secret' | sluice hash-secret"),
        "{err}"
    );
}
