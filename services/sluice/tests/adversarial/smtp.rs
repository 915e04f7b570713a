//! Probes of SMTP submission: idle and guessing sessions over raw TCP,
//! password guessing through Python's smtplib (STARTTLS, then AUTH PLAIN).

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::{SMTP_PASSWORD, SMTP_USER, Target};

/// Reads reply lines until the connection closes or `wait` passes;
/// returns them and whether the server closed the connection.
async fn read_until_closed(
    reader: &mut BufReader<TcpStream>,
    wait: Duration,
) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let deadline = Instant::now() + wait;
    loop {
        let mut line = String::new();
        match tokio::time::timeout_at(deadline.into(), reader.read_line(&mut line)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (lines, true),
            Ok(Ok(_)) => lines.push(line.trim_end().to_owned()),
            Err(_) => return (lines, false),
        }
    }
}

/// A client that says nothing after the greeting is closed once
/// `smtp.idle_timeout` (4 s here) passes. (The same timeout bounds the wait
/// for a password check: at 2 s, a loaded CI machine once answered a
/// guessing probe's AUTH with `454 4.3.2` instead of `535`.)
pub async fn idle_session(target: &Target) {
    let started = Instant::now();
    let conn = TcpStream::connect(target.smtp).await.expect("connect SMTP");
    let mut reader = BufReader::new(conn);
    let (lines, closed) = read_until_closed(&mut reader, Duration::from_secs(10)).await;
    assert!(lines[0].starts_with("220"), "{lines:?}");
    assert!(closed, "an idle session was kept 10 s: {lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("421")),
        "closed without a 421: {lines:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
}

/// A session sending unknown commands is closed at the error limit (20).
pub async fn command_guessing(target: &Target) {
    let conn = TcpStream::connect(target.smtp).await.expect("connect SMTP");
    let mut reader = BufReader::new(conn);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).await.expect("greeting");
    let mut guesses = String::new();
    for n in 0..30 {
        guesses.push_str(&format!("XGUESS{n}\r\n"));
    }
    let _ = reader.get_mut().write_all(guesses.as_bytes()).await;
    let (lines, closed) = read_until_closed(&mut reader, Duration::from_secs(5)).await;
    assert!(closed, "30 bad commands and still open: {lines:?}");
    let refusals = lines.iter().filter(|l| l.starts_with("5")).count();
    assert!(
        (19..=21).contains(&refusals),
        "{refusals} refusals before the close: {lines:?}"
    );
    assert!(
        lines.last().is_some_and(|l| l.starts_with("421")),
        "{lines:?}"
    );
}

const GUESSING: &str = r#"
import smtplib, ssl, sys, time
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def session():
    s = smtplib.SMTP(host, port, timeout=20)
    s.ehlo("probe.test")
    s.starttls(context=ctx)
    s.ehlo("probe.test")
    return s
def login(s, u, p):
    s.user, s.password = u, p
    started = time.monotonic()
    try:
        code = s.auth("PLAIN", s.auth_plain)[0]
    except smtplib.SMTPAuthenticationError as e:
        code = e.smtp_code
    except smtplib.SMTPServerDisconnected:
        code = 0
    except smtplib.SMTPResponseException as e:
        code = e.smtp_code
    return code, time.monotonic() - started
for who in ("known", "unknown"):
    for i in range(3):
        s = session()
        name = user if who == "known" else "nobody%d" % i
        code, took = login(s, name, "wrong password")
        print("timing", who, code, "%.4f" % took)
        s.close()
s = session()
print("session", *[login(s, user, "wrong password")[0] for _ in range(4)])
s.close()
for i in range(3):
    s = session()
    print("lockout", login(s, user, "wrong password")[0])
    s.close()
s = session()
print("locked", login(s, user, password)[0])
s.close()
"#;

/// Password guessing: unknown users cost the same work as known ones (no
/// username oracle), a session is closed after 3 failures, and the client
/// address is locked out (`454`) after 10 — even for the right password.
pub async fn password_guessing(target: &Target) {
    let smtp = target.smtp;
    let output = tokio::process::Command::new("python3")
        .args([
            "-c",
            GUESSING,
            &smtp.ip().to_string(),
            &smtp.port().to_string(),
        ])
        .args([SMTP_USER, SMTP_PASSWORD])
        .output()
        .await
        .expect("this suite needs python3 (smtplib is the independent SMTP client)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "smtplib script failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fields = |prefix: &str| -> Vec<Vec<String>> {
        stdout
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.split_whitespace().skip(1).map(str::to_owned).collect())
            .collect()
    };
    let timing = fields("timing");
    let fastest = |who: &str| -> f64 {
        timing
            .iter()
            .filter(|f| f[0] == who)
            .map(|f| {
                assert_eq!(f[1], "535", "{stdout}");
                f[2].parse::<f64>().expect("seconds")
            })
            .fold(f64::MAX, f64::min)
    };
    let (known, unknown) = (fastest("known"), fastest("unknown"));
    println!("SMTP AUTH answer: known user {known:.4} s, unknown user {unknown:.4} s");
    assert!(
        unknown >= known * 0.3,
        "unknown users are answered faster ({unknown} s vs {known} s): a username oracle"
    );
    let session = &fields("session")[0];
    assert_eq!(session[..3], ["535", "535", "535"], "{stdout}");
    assert!(
        session[3] == "0" || session[3] == "421",
        "a 4th guess in one session: {stdout}"
    );
    let lockout = fields("lockout");
    assert!(
        lockout.iter().any(|f| f[0] == "454"),
        "10 failures from one address and no lockout: {stdout}"
    );
    assert_eq!(fields("locked")[0][0], "454", "{stdout}");
}
