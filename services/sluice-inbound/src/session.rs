//! One MX conversation: greeting, EHLO, MAIL, RCPT to VERP addresses only,
//! DATA, then the findings published before the 250. No AUTH and no relay:
//! the only mail taken is mail to addresses this installation issued.

use std::time::Duration;

use sluice_smtp::{Command, Data, DataLimits, Endings, Line, Reply};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};

use crate::{Inbound, Taken};

/// Commands that may fail before the session is closed.
const MAX_ERRORS: usize = 20;

/// How a session ended.
pub(crate) enum Ended<S> {
    Quit,
    Closed,
    /// The client asked for TLS and was told to start: the bare stream
    /// (whatever it had sent after STARTTLS is dropped, RFC 3207 §4.2).
    StartTls(S),
}

pub(crate) struct Session<S> {
    stream: BufReader<S>,
    inbound: Inbound,
    /// Message ids of the accepted recipients of the transaction.
    messages: Vec<String>,
    /// A feedback-loop address is among the recipients.
    feedback: bool,
    /// Message ids of the `mailto:` unsubscribe addresses among them.
    unsubscribes: Vec<String>,
    mail: bool,
    errors: usize,
    /// The session runs inside TLS (after STARTTLS).
    tls: bool,
}

impl<S> Session<S>
where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    /// A session on `stream`; `tls` when it runs inside TLS already.
    pub(crate) fn new(stream: S, inbound: Inbound, tls: bool) -> Self {
        Self {
            tls,
            stream: BufReader::new(stream),
            inbound,
            messages: Vec::new(),
            feedback: false,
            unsubscribes: Vec::new(),
            mail: false,
            errors: 0,
        }
    }

    /// Greets (unless resuming inside TLS) and serves commands.
    pub(crate) async fn run(mut self) -> std::io::Result<Ended<S>> {
        let hostname = self.inbound.config.hostname.clone();
        if !self.tls {
            self.say(&Reply::new(220, format!("{hostname} ESMTP Sluice inbound")))
                .await?;
        }
        loop {
            let idle: Duration = self.inbound.config.idle_timeout.into();
            let max = sluice_smtp::MAX_COMMAND_LINE;
            let line =
                match tokio::time::timeout(idle, sluice_smtp::read_line(&mut self.stream, max))
                    .await
                {
                    Err(_) => {
                        self.say(&Reply::new(421, "4.4.2 Idle too long, closing"))
                            .await?;
                        return Ok(Ended::Closed);
                    }
                    Ok(line) => line?,
                };
            let reply = match line {
                Line::Eof => return Ok(Ended::Closed),
                Line::TooLong(_) => Reply::new(500, "5.5.6 Line too long"),
                Line::Text { text, .. } => match sluice_smtp::parse(&text) {
                    Ok(Command::Quit) => {
                        self.say(&Reply::new(221, "2.0.0 Bye")).await?;
                        return Ok(Ended::Quit);
                    }
                    Ok(Command::StartTls) if !self.tls => {
                        self.say(&Reply::new(220, "2.0.0 Ready to start TLS"))
                            .await?;
                        return Ok(Ended::StartTls(self.stream.into_inner()));
                    }
                    Ok(command) => self.command(command).await?,
                    Err(err) => err.reply(),
                },
            };
            if reply.is_permanent() {
                self.errors += 1;
            }
            self.say(&reply).await?;
            if reply.closes() {
                return Ok(Ended::Closed);
            }
            if self.errors > MAX_ERRORS {
                self.say(&Reply::new(421, "4.7.0 Too many errors, closing"))
                    .await?;
                return Ok(Ended::Closed);
            }
        }
    }

    async fn command(&mut self, command: Command) -> std::io::Result<Reply> {
        let cfg = self.inbound.config.clone();
        Ok(match command {
            Command::Ehlo(_) => {
                self.reset();
                let starttls = if self.tls { "" } else { "\nSTARTTLS" };
                Reply::new(
                    250,
                    format!(
                        "{}\nSIZE {}\n8BITMIME{starttls}",
                        cfg.hostname, cfg.max_message_bytes
                    ),
                )
            }
            Command::Helo(_) => {
                self.reset();
                Reply::new(250, cfg.hostname.clone())
            }
            Command::Mail(_) => {
                self.reset();
                self.mail = true;
                Reply::new(250, "2.1.0 OK")
            }
            Command::Rcpt(path) => self.recipient(&path.address),
            Command::Data => return self.data().await,
            Command::Rset => {
                self.reset();
                Reply::new(250, "2.0.0 OK")
            }
            Command::Noop => Reply::new(250, "2.0.0 OK"),
            Command::Vrfy => Reply::new(252, "2.5.0 Cannot verify"),
            Command::Help => Reply::new(214, "2.0.0 This server takes bounces for Sluice only"),
            Command::StartTls => Reply::new(503, "5.5.1 TLS is already active"),
            Command::Auth { .. } => Reply::new(502, "5.5.1 Not offered here"),
            Command::Quit => Reply::new(221, "2.0.0 Bye"),
        })
    }

    fn recipient(&mut self, address: &str) -> Reply {
        if !self.mail {
            return Reply::new(503, "5.5.1 MAIL first");
        }
        let taken = self.messages.len() + self.unsubscribes.len() + usize::from(self.feedback);
        if taken >= self.inbound.config.max_recipients {
            return Reply::new(452, "4.5.3 Too many recipients");
        }
        if self.inbound.is_feedback_address(address) {
            self.feedback = true;
            return Reply::new(250, "2.1.5 OK");
        }
        if let Some(id) = self.inbound.verp.unsubscribe_message_id(address) {
            self.unsubscribes.push(id);
            return Reply::new(250, "2.1.5 OK");
        }
        match self.inbound.verp.message_id(address) {
            Some(id) => {
                self.messages.push(id);
                Reply::new(250, "2.1.5 OK")
            }
            None => {
                self.inbound.metrics.refused_recipients.inc();
                Reply::new(
                    550,
                    "5.1.1 No such mailbox: this server takes mail only for the bounce \
                     addresses it issued",
                )
            }
        }
    }

    async fn data(&mut self) -> std::io::Result<Reply> {
        if self.messages.is_empty() && self.unsubscribes.is_empty() && !self.feedback {
            return Ok(Reply::new(503, "5.5.1 RCPT first"));
        }
        self.say(&Reply::new(354, "End data with <CR><LF>.<CR><LF>"))
            .await?;
        let limits = DataLimits {
            max_line: sluice_smtp::MAX_TEXT_LINE,
            max_size: self.inbound.config.max_message_bytes,
            endings: Endings::Normalize,
        };
        let within: Duration = self.inbound.config.data_timeout.into();
        let read = tokio::time::timeout(within, sluice_smtp::read_data(&mut self.stream, &limits));
        let body = match read.await {
            Err(_) => return Ok(Reply::new(421, "4.4.2 DATA took too long")),
            Ok(Ok(Data::Done(body))) => body,
            Ok(Ok(Data::Eof)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(Err(err)) => return Err(err),
        };
        let messages = std::mem::take(&mut self.messages);
        let unsubscribes = std::mem::take(&mut self.unsubscribes);
        self.mail = false;
        let feedback = std::mem::take(&mut self.feedback);
        if body.too_big {
            self.inbound.metrics.message("too_big");
            return Ok(Reply::new(552, "5.3.4 Message too big"));
        }
        if body.long_line {
            return Ok(Reply::new(500, "5.5.6 Line too long"));
        }
        // Any message to an unsubscribe address unsubscribes (RFC 2369);
        // what else it says matters only to the other recipients.
        if let Err(err) = self.inbound.unsubscribe(&unsubscribes).await {
            self.inbound.metrics.message("log_unavailable");
            tracing::warn!(error = %err, "an unsubscribe could not be recorded; the sender will retry");
            return Ok(Reply::new(
                451,
                "4.3.0 Cannot record this now, try again later",
            ));
        }
        if messages.is_empty() && !feedback {
            self.inbound.metrics.message("unsubscribed");
            let n = unsubscribes.len();
            return Ok(Reply::new(
                250,
                format!("2.0.0 OK, {n} unsubscribes recorded"),
            ));
        }
        let taken = self.inbound.take(&messages, &body.bytes).await;
        self.inbound.metrics.message(match &taken {
            Ok(Taken::Recorded(_)) => "recorded",
            Ok(Taken::AutoReply) => "auto_reply",
            Ok(Taken::Unrecognised) => "unrecognised",
            Ok(Taken::NoStatus) => "no_status",
            Ok(Taken::Unmatched) => "unmatched",
            Err(_) => "log_unavailable",
        });
        Ok(match taken {
            Ok(Taken::Recorded(n)) => Reply::new(250, format!("2.0.0 OK, {n} statuses recorded")),
            Ok(Taken::AutoReply) => {
                Reply::new(250, "2.0.0 OK, an automatic reply: nothing recorded")
            }
            Ok(Taken::NoStatus) => Reply::new(
                550,
                "5.6.0 A report without a failed or delayed recipient status that reads \
                 (Action and Status per recipient); nothing was recorded",
            ),
            Ok(Taken::Unmatched) => Reply::new(
                550,
                "5.6.0 A complaint that names no message sent from here (no VERP \
                 address or Sluice Message-ID in it); nothing was recorded",
            ),
            Ok(Taken::Unrecognised) => Reply::new(
                550,
                "5.6.0 Not a delivery status notification (RFC 3464) or a known bounce \
                 format; nothing was recorded",
            ),
            Err(err) => {
                tracing::warn!(error = %err, "a bounce could not be recorded; the sender will retry");
                Reply::new(451, "4.3.0 Cannot record this now, try again later")
            }
        })
    }

    fn reset(&mut self) {
        self.messages.clear();
        self.unsubscribes.clear();
        self.feedback = false;
        self.mail = false;
    }

    async fn say(&mut self, reply: &Reply) -> std::io::Result<()> {
        let stream = self.stream.get_mut();
        stream.write_all(&reply.to_wire()).await?;
        stream.flush().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{Ended, Session};
    use crate::Inbound;

    fn inbound(dir: &std::path::Path) -> Inbound {
        let log = sluice_log::EmbeddedLog::open(dir).expect("embedded log");
        Inbound {
            config: Arc::new(crate::InboundConfig::default()),
            verp: sluice_node::verp::Verp::new(&"s".repeat(32)),
            log: log.into(),
            classifier: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// STARTTLS is offered, answered 220, and what the client pipelined
    /// after it (a MAIL command meant to land inside TLS) is dropped, not
    /// handed on with the stream (RFC 3207 §4.2).
    #[tokio::test]
    async fn starttls_drops_what_was_pipelined_after_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut client, server) = tokio::io::duplex(1 << 16);
        client
            .write_all(b"EHLO a.example\r\nSTARTTLS\r\nMAIL FROM:<x@evil.example>\r\n")
            .await
            .expect("write");
        let ended = Session::new(server, inbound(dir.path()), false).run().await;
        let Ok(Ended::StartTls(mut stream)) = ended else {
            panic!("the session did not hand over for TLS");
        };
        let mut replies = vec![0; 4096];
        let n = client.read(&mut replies).await.expect("read");
        let replies = String::from_utf8_lossy(&replies[..n]).into_owned();
        assert!(
            replies.contains("250-STARTTLS") || replies.contains("250 STARTTLS"),
            "{replies}"
        );
        assert!(
            replies.ends_with("220 2.0.0 Ready to start TLS\r\n"),
            "{replies}"
        );
        let mut left = [0; 64];
        let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut left)).await;
        assert!(
            read.is_err(),
            "the pipelined MAIL reached the TLS layer: {read:?}"
        );
    }
}
