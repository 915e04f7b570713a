//! The session and its driver, driven in memory over `tokio::io::duplex`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::conn::serve_connection;
use crate::ledger::Ledger;
use crate::provider::{Provider, lock};
use crate::reply::LimitKind;
use crate::report::{ProviderInfo, Report};
use crate::scenario::Scenario;
use crate::tls::self_signed_acceptor;

const PEER: [u8; 4] = [127, 0, 0, 9];

struct Sim {
    provider: Arc<Provider>,
    ledger: Arc<Mutex<Ledger>>,
    stop: watch::Sender<bool>,
}

struct Client {
    io: BufReader<DuplexStream>,
    task: JoinHandle<std::io::Result<()>>,
}

/// A provider serving `example.test`, with extra scenario lines appended.
fn sim(extra: &str) -> Sim {
    let text = format!(
        "[[provider]]\nname = \"p\"\nstyle = \"outlook\"\nlisten = \"127.0.0.2:25\"\n\
         domains = [\"example.test\"]\nunknown_users = [\"ghost\"]\n\
         mailbox_full = [\"stuffed\"]\nmailbox_full_permanent = [\"gone\"]\n{extra}"
    );
    let config = Scenario::parse(&text).unwrap().providers.remove(0);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let tls = Some(self_signed_acceptor(vec!["localhost".into()]).unwrap().0);
    let provider = Provider::new(
        config,
        "127.0.0.2:25".parse().unwrap(),
        1,
        ledger.clone(),
        tls,
    );
    let (stop, _) = watch::channel(false);
    Sim {
        provider: Arc::new(provider),
        ledger,
        stop,
    }
}

impl Sim {
    async fn connect(&self) -> Client {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let provider = Arc::clone(&self.provider);
        let stopped = self.stop.subscribe();
        let task = tokio::spawn(serve_connection(
            server,
            provider,
            IpAddr::from(PEER),
            stopped,
        ));
        Client {
            io: BufReader::new(client),
            task,
        }
    }

    /// A client past the banner and EHLO.
    async fn greeted(&self) -> Client {
        let mut c = self.connect().await;
        assert!(c.reply().await.starts_with("220 "));
        assert!(c.cmd("EHLO client.test").await.starts_with("250-"));
        c
    }

    fn report(&self) -> Report {
        let info = ProviderInfo {
            name: "p".into(),
            addr: self.provider.addr(),
            limits: self.provider.config().limits.clone(),
        };
        Report::build(&[info], &lock(&self.ledger))
    }

    fn violations(&self, kind: LimitKind) -> u64 {
        let report = self.report();
        let source = report.source("p", IpAddr::from(PEER));
        source
            .and_then(|s| s.violations.get(&kind).copied())
            .unwrap_or(0)
    }
}

impl Client {
    async fn send(&mut self, text: &str) {
        self.io.write_all(text.as_bytes()).await.unwrap();
    }

    /// One whole reply, lines joined with `\n`; empty at EOF.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.io.read_line(&mut line).await.unwrap() == 0 {
                return lines.join("\n");
            }
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }

    async fn message(&mut self, rcpt: &str, body: &str) -> String {
        assert!(
            self.cmd("MAIL FROM:<s@sender.test>")
                .await
                .starts_with("250")
        );
        assert!(
            self.cmd(&format!("RCPT TO:<{rcpt}>"))
                .await
                .starts_with("250")
        );
        assert!(self.cmd("DATA").await.starts_with("354"));
        self.cmd(&format!("{body}\r\n.")).await
    }
}

#[tokio::test]
async fn ehlo_advertises_extensions() {
    let sim = sim("");
    let mut c = sim.connect().await;
    assert_eq!(c.reply().await, "220 mx.p.sim ESMTP sluice-sim ready");
    let ehlo = c.cmd("EHLO client.test").await;
    for ext in [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "SIZE 36700160",
        "STARTTLS",
    ] {
        assert!(ehlo.contains(ext), "{ext} missing from {ehlo}");
    }
    assert!(c.cmd("HELO client.test").await.starts_with("250 mx.p.sim"));
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    assert_eq!(c.reply().await, "", "closed after QUIT");
    c.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn accepted_message_is_recorded_unstuffed() {
    let sim = sim("");
    let mut c = sim.greeted().await;
    let body = "Message-ID: <m1@sender.test>\r\nSubject: hi\r\n\r\n..dot\r\nbye";
    assert_eq!(
        c.message("u@Example.Test", body).await,
        "250 2.0.0 OK: queued"
    );
    let report = sim.report();
    let m = &report.messages[0];
    assert_eq!(m.message_id, "<m1@sender.test>");
    assert_eq!(m.recipients, vec!["u@Example.Test".to_string()]);
    assert_eq!(m.source_ip, IpAddr::from(PEER));
    assert_eq!(m.mail_from, "s@sender.test");
    assert_eq!(m.size, body.len() + 2 - 1, "CRLF added, one dot removed");
    assert!(!m.tls);
    assert_eq!(report.source("p", IpAddr::from(PEER)).unwrap().accepted, 1);
}

#[tokio::test]
async fn bad_sequences_and_unknown_commands() {
    let sim = sim("");
    let mut c = sim.connect().await;
    c.reply().await;
    assert!(c.cmd("MAIL FROM:<a@b>").await.starts_with("503 5.5.1"));
    c.cmd("EHLO client.test").await;
    assert!(
        c.cmd("RCPT TO:<u@example.test>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(c.cmd("DATA").await.starts_with("503 5.5.1"));
    assert!(c.cmd("FROB").await.starts_with("500 5.5.2"));
    assert!(c.cmd("MAIL FROM:a@b").await.starts_with("501 5.5.4"));
    assert!(
        c.cmd(&format!("NOOP {}", "x".repeat(600)))
            .await
            .starts_with("500 5.5.2")
    );
    assert!(c.cmd("MAIL FROM:<a@b>").await.starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@b>").await.starts_with("503 5.5.1"));
    assert!(
        c.cmd("DATA").await.starts_with("554 5.5.1"),
        "no recipients yet"
    );
    assert!(c.cmd("MAIL FROM:<a@b> FOO=1").await.starts_with("503"));
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 OK");
    assert!(
        c.cmd("MAIL FROM:<a@b> FOO=1")
            .await
            .starts_with("555 5.5.4")
    );
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let sim = sim("");
    let mut c = sim.greeted().await;
    c.send(
        "MAIL FROM:<s@sender.test>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<ghost@example.test>\r\n\
         RCPT TO:<x@elsewhere.test>\r\nRCPT TO:<stuffed@example.test>\r\n\
         RCPT TO:<gone@example.test>\r\nDATA\r\n",
    )
    .await;
    let expected = [
        "250 2.1.0",
        "250 2.1.5",
        "550 5.1.1",
        "550 5.7.1",
        "452 4.2.2",
        "552 5.2.2",
        "354",
    ];
    for want in expected {
        let got = c.reply().await;
        assert!(got.starts_with(want), "wanted {want}, got {got}");
    }
    c.send("Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
    assert!(c.reply().await.starts_with("221"));
    let report = sim.report();
    let source = report.source("p", IpAddr::from(PEER)).unwrap();
    assert_eq!(
        (source.accepted, source.deferred, source.rejected),
        (1, 1, 3)
    );
    assert!(report.messages[0].message_id.starts_with("fnv64:"));
}

#[tokio::test]
async fn per_connection_limit_defers_and_counts_a_violation() {
    let sim = sim("[provider.limits]\nmessages_per_connection = 2\n");
    let mut c = sim.greeted().await;
    for _ in 0..2 {
        assert!(c.message("u@example.test", "x").await.starts_with("250"));
    }
    let refused = c.cmd("MAIL FROM:<s@sender.test>").await;
    assert!(refused.starts_with("421 RP-001"), "{refused}");
    assert_eq!(c.reply().await, "", "421 closes the connection");
    assert_eq!(sim.violations(LimitKind::MessagesPerConnection), 1);
}

#[tokio::test]
async fn per_minute_limit_defers_counts_and_forgets_aborted_mail() {
    let sim = sim("[provider.limits]\nmessages_per_minute = 2\n");
    let mut c = sim.greeted().await;
    assert!(c.cmd("MAIL FROM:<s@sender.test>").await.starts_with("250"));
    assert!(
        c.cmd("RSET").await.starts_with("250"),
        "aborted: not counted"
    );
    for _ in 0..2 {
        assert!(c.message("u@example.test", "x").await.starts_with("250"));
    }
    let refused = c.cmd("MAIL FROM:<s@sender.test>").await;
    assert!(refused.starts_with("451 4.7.500 Server busy"), "{refused}");
    assert!(
        c.cmd("NOOP").await.starts_with("250"),
        "451 keeps the connection"
    );
    assert_eq!(sim.violations(LimitKind::MessagesPerMinute), 1);
    let report = sim.report();
    assert_eq!(
        report
            .source("p", IpAddr::from(PEER))
            .unwrap()
            .peak_per_minute,
        2
    );
}

#[tokio::test]
async fn connection_limit_refuses_the_extra_connection() {
    let sim = sim("[provider.limits]\nconnections_per_ip = 1\n");
    let first = sim.greeted().await;
    let mut second = sim.connect().await;
    let refused = second.reply().await;
    assert!(
        refused.starts_with("421 4.3.2 The maximum number"),
        "{refused}"
    );
    assert_eq!(sim.violations(LimitKind::Connections), 1);
    let Client { io, task } = first;
    drop(io);
    task.await.unwrap().unwrap();
    let mut third = sim.connect().await;
    let banner = third.reply().await;
    assert!(banner.starts_with("220"));
}

#[tokio::test]
async fn recipient_limit_and_size_limit() {
    let extra = "max_message_size = 10\n[provider.limits]\nrecipients_per_message = 1\n";
    let sim = sim(extra);
    let mut c = sim.greeted().await;
    assert!(
        c.cmd("MAIL FROM:<s@sender.test> SIZE=11")
            .await
            .starts_with("552 5.3.4")
    );
    assert!(
        c.cmd("MAIL FROM:<s@sender.test> SIZE=10")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<a@example.test>").await.starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<b@example.test>")
            .await
            .starts_with("452 4.5.3")
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    assert!(c.cmd("01234567890\r\n.").await.starts_with("552 5.3.4"));
    assert_eq!(sim.violations(LimitKind::RecipientsPerMessage), 1);
    assert!(sim.report().messages.is_empty());
}

#[tokio::test]
async fn random_failures_follow_the_rates() {
    let sim_temp = sim("temp_failure_rate = 1.0\n");
    let mut c = sim_temp.greeted().await;
    assert!(
        c.message("u@example.test", "x")
            .await
            .starts_with("451 4.3.0")
    );
    let sim_perm = sim("perm_failure_rate = 1.0\n");
    let mut c = sim_perm.greeted().await;
    assert!(
        c.message("u@example.test", "x")
            .await
            .starts_with("554 5.7.0")
    );
    assert!(sim_temp.report().messages.is_empty() && sim_perm.report().messages.is_empty());
}

#[tokio::test]
async fn greylisting_defers_the_first_attempt() {
    let sim = sim("greylist_secs = 3600\n");
    let mut c = sim.greeted().await;
    assert!(c.cmd("MAIL FROM:<s@sender.test>").await.starts_with("250"));
    let grey = c.cmd("RCPT TO:<u@example.test>").await;
    assert_eq!(grey, "451 4.7.1 greylisted, please try again later");
    assert!(
        c.cmd("RCPT TO:<u@example.test>")
            .await
            .starts_with("451 4.7.1")
    );
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_with_421() {
    let sim = sim("");
    let mut c = sim.greeted().await;
    sim.stop.send(true).unwrap();
    assert!(c.reply().await.starts_with("421 4.3.2"));
    c.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn starttls_is_refused_in_a_transaction_and_when_off() {
    let sim_on = sim("");
    let mut c = sim_on.greeted().await;
    c.cmd("MAIL FROM:<s@sender.test>").await;
    assert!(c.cmd("STARTTLS").await.starts_with("503 5.5.1"));
    let sim_off = sim("starttls = false\n");
    let mut c = sim_off.greeted().await;
    assert!(c.cmd("STARTTLS").await.starts_with("454 4.7.0"));
}

#[tokio::test(start_paused = true)]
async fn banner_and_data_reply_are_delayed() {
    let sim = sim("banner_delay_ms = 2000\ndata_reply_delay_ms = 1500\n");
    let start = tokio::time::Instant::now();
    let mut c = sim.greeted().await;
    assert!(start.elapsed() >= std::time::Duration::from_millis(2000));
    let before_data = tokio::time::Instant::now();
    assert!(c.message("u@example.test", "x").await.starts_with("250"));
    let waited = before_data.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1500),
        "{waited:?}"
    );
}
