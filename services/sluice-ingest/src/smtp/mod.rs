//! SMTP submission: port 587 (STARTTLS, then AUTH PLAIN/LOGIN before MAIL)
//! and port 465 (implicit TLS).

mod auth_guard;
mod session;
mod tls;

use std::sync::Arc;

use sluice_node::CancellationToken;
use sluice_node::gate::{Gate, GatedStream, refuse_smtp};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use session::{Ended, Session};

use crate::IngestError;
use crate::config::SmtpConfig;
use crate::pipeline::Ingestor;

/// What every SMTP session shares.
#[derive(Clone)]
pub struct SmtpContext {
    ingestor: Arc<Ingestor>,
    hostname: String,
    idle_timeout: std::time::Duration,
    data_timeout: std::time::Duration,
    tls: TlsAcceptor,
    /// Failed logins per client address, shared by the listener's sessions.
    auth_guard: Arc<auth_guard::AuthGuard>,
    /// Failed logins per user name, from any address.
    user_guard: Arc<auth_guard::AuthGuard<String>>,
    /// The threads that check passwords (Argon2 holds about 19 MiB per
    /// check): one per CPU, shared by the listener's sessions; more checks
    /// wait their turn.
    password_checks: Arc<crate::dkim::pool::Pool>,
    /// The client's address (set per connection).
    peer: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for SmtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpContext")
            .field("hostname", &self.hostname)
            .finish()
    }
}

impl SmtpContext {
    /// Loads or generates the certificate.
    pub fn new(ingestor: Arc<Ingestor>, config: &SmtpConfig) -> Result<Self, IngestError> {
        Ok(Self {
            ingestor,
            hostname: config.hostname.clone(),
            idle_timeout: config.idle_timeout.into(),
            data_timeout: config.data_timeout.into(),
            tls: tls::acceptor(config)?,
            auth_guard: Arc::default(),
            user_guard: Arc::new(auth_guard::AuthGuard::new(auth_guard::MAX_USER_FAILURES)),
            password_checks: Arc::new(crate::dkim::pool::Pool::named(
                "smtp-auth",
                std::thread::available_parallelism().map_or(2, usize::from),
            )),
            peer: None,
        })
    }
}

/// Accepts connections until `stopped` is cancelled, then waits for open
/// sessions (each ends after its current command with 421).
pub async fn serve(
    listener: TcpListener,
    ctx: SmtpContext,
    implicit_tls: bool,
    stopped: CancellationToken,
) -> Result<(), IngestError> {
    let mut sessions = JoinSet::new();
    let limits = ctx.ingestor.limits();
    let gate = Gate::new(limits.max_connections, limits.max_connections_per_ip);
    loop {
        tokio::select! {
            (stream, peer) = gate.accept(&listener, "SMTP submission", refuse_smtp) => {
                let mut ctx = ctx.clone();
                ctx.peer = Some(peer.ip());
                let stopped = stopped.clone();
                sessions.spawn(async move {
                    if let Err(err) = connection(stream, ctx, implicit_tls, stopped).await {
                        tracing::debug!(%peer, %err, "SMTP session ended with an error");
                    }
                });
            }
            () = stopped.cancelled() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    while sessions.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    stream: GatedStream,
    ctx: SmtpContext,
    implicit_tls: bool,
    stopped: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = ctx.tls.clone();
    // A handshake gets the idle timeout, like a command.
    let handshake = ctx.idle_timeout;
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out");
    if implicit_tls {
        let tls = tokio::time::timeout(handshake, acceptor.accept(stream))
            .await
            .map_err(|_| timed_out())??;
        Session::new(tls, ctx, true, stopped).run(true).await?;
        return Ok(());
    }
    let plain = Session::new(stream, ctx.clone(), false, stopped.clone());
    if let Ended::StartTls(stream) = plain.run(true).await? {
        let tls = tokio::time::timeout(handshake, acceptor.accept(stream))
            .await
            .map_err(|_| timed_out())??;
        Session::new(tls, ctx, true, stopped).run(false).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::IngestConfig;

    /// A context whose Kafka is never reached: no input here gets past AUTH.
    fn context() -> SmtpContext {
        static CONTEXT: OnceLock<SmtpContext> = OnceLock::new();
        CONTEXT
            .get_or_init(|| {
                let config = IngestConfig::from_toml(
                    r#"
                    [kafka]
                    brokers = "127.0.0.1:1"
                    [unsubscribe]
                    base_url = "https://u.example/u"
                    secret = "0123456789abcdef0123456789abcdef"
                    "#,
                )
                .expect("config");
                // These sessions never reach a publish; the log is there
                // because an ingestor needs one.
                let dir = tempfile::tempdir().expect("temp dir").keep();
                let log = sluice_log::EmbeddedLog::open(dir).expect("embedded log");
                let ingestor = Arc::new(Ingestor::new(&config, log.into()).expect("ingestor"));
                SmtpContext::new(ingestor, &config.smtp).expect("context")
            })
            .clone()
    }

    /// Feeds `input` to a session and returns everything it answered.
    fn converse(input: &[u8], tls: bool) -> String {
        converse_with(context(), input, tls)
    }

    /// [`converse`] with a given context.
    fn converse_with(ctx: SmtpContext, input: &[u8], tls: bool) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let session = Session::new(server, ctx, tls, CancellationToken::new());
            let talk = async {
                client.write_all(input).await.expect("write");
                client.shutdown().await.expect("shutdown");
                let mut out = Vec::new();
                client.read_to_end(&mut out).await.expect("read");
                out
            };
            // The session's stream is dropped when it ends, which ends `talk`.
            let serve = async {
                let _ = session.run(true).await;
            };
            let ((), out) = tokio::join!(serve, talk);
            String::from_utf8(out).expect("replies are UTF-8")
        })
    }

    fn well_formed(replies: &str) -> bool {
        replies.starts_with("220 ")
            && replies.split("\r\n").filter(|l| !l.is_empty()).all(|line| {
                line.len() >= 4
                    && line.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                    && matches!(line.as_bytes()[3], b' ' | b'-')
            })
    }

    /// `AUTH PLAIN` of an unknown user, three times, then more commands.
    const THREE_BAD_LOGINS: &[u8] =
        b"EHLO x\r\nAUTH PLAIN AG5vYm9keQB4\r\nAUTH PLAIN AG5vYm9keQB4\r\n\
        AUTH PLAIN AG5vYm9keQB4\r\nNOOP\r\n";

    #[test]
    fn three_failed_logins_end_the_session_and_ten_lock_the_address() {
        let replies = converse(THREE_BAD_LOGINS, true);
        assert_eq!(replies.matches("535 5.7.8").count(), 3, "{replies}");
        assert!(
            replies
                .trim_end()
                .ends_with("421 4.7.0 Too many failed logins, closing"),
            "{replies}"
        );
        assert!(
            !replies.contains("250 2.0.0"),
            "NOOP after the close: {replies}"
        );

        // The same address over several sessions: locked after ten.
        let mut ctx = context();
        ctx.auth_guard = Arc::default();
        ctx.peer = Some(std::net::IpAddr::from([192, 0, 2, 9]));
        for _ in 0..3 {
            converse_with(ctx.clone(), THREE_BAD_LOGINS, true);
        }
        let locked = converse_with(ctx.clone(), THREE_BAD_LOGINS, true);
        assert!(locked.contains("535 5.7.8"), "the tenth failure: {locked}");
        assert!(
            locked.contains("454 4.7.0 Too many failed logins from your address"),
            "{locked}"
        );
        ctx.peer = Some(std::net::IpAddr::from([192, 0, 2, 10]));
        let other = converse_with(ctx, b"EHLO x\r\nAUTH PLAIN AG5vYm9keQB4\r\nQUIT\r\n", true);
        assert!(
            other.contains("535 5.7.8") && !other.contains("454"),
            "{other}"
        );
    }

    #[test]
    fn unparsable_commands_reach_the_error_limit() {
        let mut guesses = String::new();
        for n in 0..25 {
            guesses.push_str(&format!("XGUESS{n}\r\n"));
        }
        let replies = converse(guesses.as_bytes(), true);
        let refusals = replies.lines().filter(|l| l.starts_with('5')).count();
        assert_eq!(refusals, 20, "{replies}");
        assert!(
            replies
                .trim_end()
                .ends_with("421 4.7.0 Too many errors, closing"),
            "{replies}"
        );
    }

    #[test]
    fn mail_before_auth_and_auth_before_tls_are_refused() {
        let replies = converse(
            b"EHLO x\r\nAUTH PLAIN AGEAYg==\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n",
            false,
        );
        assert!(replies.contains("250 STARTTLS"), "{replies}");
        assert!(replies.contains("\r\n538 5.7.11"), "{replies}");
        assert!(replies.contains("\r\n530 5.7.0"), "{replies}");
        assert!(replies.ends_with("221 2.0.0 Bye\r\n"), "{replies}");
        let replies = converse(b"EHLO x\r\nAUTH PLAIN AGEAYg==\r\n", true);
        assert!(replies.contains("250 AUTH PLAIN LOGIN"), "{replies}");
        assert!(replies.contains("\r\n535 5.7.8"), "{replies}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_input_never_panics_and_every_reply_is_well_formed(
            input in proptest::collection::vec(any::<u8>(), 0..2048),
            tls in any::<bool>(),
        ) {
            let replies = converse(&input, tls);
            prop_assert!(well_formed(&replies), "{replies:?}");
        }

        #[test]
        fn arbitrary_command_sequences_never_panic(
            lines in proptest::collection::vec(
                "(EHLO x|HELO x|MAIL FROM:<a@b.example>|RCPT TO:<c@d.example>|DATA|RSET|NOOP|AUTH LOGIN|AUTH PLAIN|STARTTLS|\\.|[ -~]{0,40})",
                0..30,
            ),
            tls in any::<bool>(),
        ) {
            let input = lines.join("\r\n") + "\r\n";
            let replies = converse(input.as_bytes(), tls);
            prop_assert!(well_formed(&replies), "{replies:?}");
        }
    }
}
