//! One SMTP submission session, generic over the stream so tests drive it
//! in memory. STARTTLS ends the session with the bare stream; the caller
//! wraps it in TLS and starts a new session (buffered input is discarded,
//! RFC 3207 §4.2).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sluice_node::CancellationToken;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::SmtpContext;
use super::lines::read_line;
use super::parser::{Command, ParseError, parse};
use crate::IngestError;
use crate::model::{Content, RecipientInput, Submission};
use crate::tenant::Tenant;
use crate::validate;

/// Longest command line (RFC 5321 §4.5.3.1.4 allows 512; AUTH lines are longer).
const MAX_COMMAND: usize = 4096;
/// Longest body line accepted (RFC 5321 says 1000; be lenient).
const MAX_DATA_LINE: usize = 64 * 1024;
/// Errors after which the client is disconnected.
const MAX_ERRORS: u32 = 20;

/// How a session ended.
pub enum Ended<S> {
    Closed,
    /// The client asked for TLS; here is the stream to wrap.
    StartTls(S),
}

/// State of one connection.
pub struct Session<S> {
    io: BufReader<S>,
    ctx: SmtpContext,
    tls: bool,
    stopped: CancellationToken,
    tenant: Option<Arc<Tenant>>,
    mail_from: Option<String>,
    recipients: Vec<String>,
    errors: u32,
}

type Reply = (u16, String);

fn reply(code: u16, text: impl Into<String>) -> Reply {
    (code, text.into())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(stream: S, ctx: SmtpContext, tls: bool, stopped: CancellationToken) -> Self {
        Self {
            io: BufReader::new(stream),
            ctx,
            tls,
            stopped,
            tenant: None,
            mail_from: None,
            recipients: Vec::new(),
            errors: 0,
        }
    }

    /// Greets (unless resuming after STARTTLS) and serves commands.
    pub async fn run(mut self, greet: bool) -> std::io::Result<Ended<S>> {
        if greet {
            let banner = format!("{} ESMTP Sluice ready", self.ctx.hostname);
            self.send(&reply(220, banner)).await?;
        }
        loop {
            let Some(line) = self.next_line().await? else {
                return Ok(Ended::Closed);
            };
            if line.too_long {
                self.error(reply(500, "5.5.6 Line too long")).await?;
                continue;
            }
            let command = match parse(&line.bytes) {
                Ok(command) => command,
                Err(ParseError::Unknown(verb)) => {
                    self.error(reply(500, format!("5.5.2 Unknown command {verb:?}")))
                        .await?;
                    continue;
                }
                Err(ParseError::Syntax(reason)) => {
                    self.error(reply(501, format!("5.5.4 {reason}"))).await?;
                    continue;
                }
            };
            match command {
                Command::Quit => {
                    self.send(&reply(221, "2.0.0 Bye")).await?;
                    return Ok(Ended::Closed);
                }
                Command::StartTls if !self.tls => {
                    self.send(&reply(220, "2.0.0 Ready to start TLS")).await?;
                    return Ok(Ended::StartTls(self.io.into_inner()));
                }
                command => {
                    let answer = self.handle(command).await?;
                    if answer.0 >= 400 {
                        self.error(answer).await?;
                    } else {
                        self.send(&answer).await?;
                    }
                }
            }
            if self.errors >= MAX_ERRORS {
                self.send(&reply(421, "4.7.0 Too many errors, closing"))
                    .await?;
                return Ok(Ended::Closed);
            }
        }
    }

    /// Next line, or `None` on end of stream, idle timeout or shutdown.
    async fn next_line(&mut self) -> std::io::Result<Option<super::lines::Line>> {
        let idle = self.ctx.idle_timeout;
        let stopped = self.stopped.clone();
        tokio::select! {
            line = tokio::time::timeout(idle, read_line(&mut self.io, MAX_COMMAND)) => match line {
                Ok(line) => line,
                Err(_) => {
                    self.send(&reply(421, "4.4.2 Idle too long, closing")).await?;
                    Ok(None)
                }
            },
            () = stopped.cancelled() => {
                self.send(&reply(421, "4.3.2 Shutting down, try again later")).await?;
                Ok(None)
            }
        }
    }

    async fn handle(&mut self, command: Command) -> std::io::Result<Reply> {
        Ok(match command {
            Command::Ehlo(_) => {
                self.reset();
                self.ehlo_reply()
            }
            Command::Helo(_) => {
                self.reset();
                reply(250, self.ctx.hostname.clone())
            }
            Command::StartTls => reply(503, "5.5.1 TLS is already active"),
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial).await?,
            Command::Mail { from, .. } => self.mail(from),
            Command::Rcpt { to, .. } => self.rcpt(to),
            Command::Data => self.data().await?,
            Command::Rset => {
                self.reset();
                reply(250, "2.0.0 OK")
            }
            Command::Noop => reply(250, "2.0.0 OK"),
            Command::Vrfy => reply(252, "2.1.5 Cannot verify, send and we will try"),
            Command::Help => reply(214, "2.0.0 See RFC 5321"),
            Command::Quit => reply(221, "2.0.0 Bye"),
        })
    }

    fn ehlo_reply(&self) -> Reply {
        let mut lines = vec![
            self.ctx.hostname.clone(),
            format!("SIZE {}", self.ctx.ingestor.limits().max_message_bytes),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.tls {
            lines.push("AUTH PLAIN LOGIN".into());
        } else {
            lines.push("STARTTLS".into());
        }
        reply(250, lines.join("\n"))
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.recipients.clear();
    }

    async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> std::io::Result<Reply> {
        if !self.tls {
            return Ok(reply(538, "5.7.11 Encryption required: STARTTLS first"));
        }
        if self.tenant.is_some() {
            return Ok(reply(503, "5.5.1 Already authenticated"));
        }
        let credentials = match mechanism {
            "PLAIN" => self.auth_plain(initial).await?,
            "LOGIN" => self.auth_login(initial).await?,
            _ => return Ok(reply(504, "5.5.4 Use AUTH PLAIN or AUTH LOGIN")),
        };
        let Some((user, password)) = credentials else {
            return Ok(reply(501, "5.5.2 Malformed authentication response"));
        };
        Ok(
            match self.ctx.ingestor.tenants().by_smtp_login(&user, &password) {
                Ok(tenant) => {
                    self.tenant = Some(tenant);
                    reply(235, "2.7.0 Authentication successful")
                }
                Err(_) => reply(535, "5.7.8 Authentication credentials invalid"),
            },
        )
    }

    async fn auth_plain(
        &mut self,
        initial: Option<String>,
    ) -> std::io::Result<Option<(String, String)>> {
        let response = match initial {
            Some(response) => Some(response),
            None => self.challenge("").await?,
        };
        let decoded = response.and_then(|r| STANDARD.decode(r.trim()).ok());
        Ok(decoded.and_then(|bytes| {
            let mut parts = bytes.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
            let password = String::from_utf8(parts.next()?.to_vec()).ok()?;
            Some((user, password))
        }))
    }

    async fn auth_login(
        &mut self,
        initial: Option<String>,
    ) -> std::io::Result<Option<(String, String)>> {
        let user = match initial {
            Some(user) => Some(user),
            None => self.challenge("VXNlcm5hbWU6").await?,
        };
        let Some(user) = user.and_then(decode_text) else {
            return Ok(None);
        };
        let password = self.challenge("UGFzc3dvcmQ6").await?.and_then(decode_text);
        Ok(password.map(|password| (user, password)))
    }

    /// Sends a 334 challenge and reads the answer; `*` cancels.
    async fn challenge(&mut self, text: &str) -> std::io::Result<Option<String>> {
        self.send(&reply(334, text)).await?;
        let line = read_line(&mut self.io, MAX_COMMAND).await?;
        Ok(line
            .filter(|l| !l.too_long && l.bytes != b"*")
            .and_then(|l| String::from_utf8(l.bytes).ok()))
    }

    fn mail(&mut self, from: String) -> Reply {
        let Some(tenant) = &self.tenant else {
            return reply(530, "5.7.0 Authentication required");
        };
        if self.mail_from.is_some() {
            return reply(503, "5.5.1 MAIL already given; RSET first");
        }
        if !from.is_empty() {
            match validate::address("MAIL FROM", &from) {
                Ok(domain) => {
                    if let Err(err) = tenant.check_domain("MAIL FROM", domain) {
                        return reply(550, format!("5.7.1 {err}"));
                    }
                }
                Err(err) => return reply(553, format!("5.1.7 {err}")),
            }
        }
        self.mail_from = Some(from);
        reply(250, "2.1.0 OK")
    }

    fn rcpt(&mut self, to: String) -> Reply {
        if self.mail_from.is_none() {
            return reply(503, "5.5.1 MAIL first");
        }
        if self.recipients.len() >= self.ctx.ingestor.limits().max_recipients {
            return reply(452, "4.5.3 Too many recipients");
        }
        if let Err(err) = validate::address("RCPT TO", &to) {
            return reply(553, format!("5.1.3 {err}"));
        }
        self.recipients.push(to);
        reply(250, "2.1.5 OK")
    }

    async fn data(&mut self) -> std::io::Result<Reply> {
        if self.mail_from.is_none() || self.recipients.is_empty() {
            return Ok(reply(503, "5.5.1 MAIL and RCPT first"));
        }
        self.send(&reply(354, "Start mail input; end with <CRLF>.<CRLF>"))
            .await?;
        let body = match self.read_body().await? {
            Some(Ok(body)) => body,
            Some(Err(answer)) => {
                self.reset();
                return Ok(answer);
            }
            None => return Ok(reply(421, "4.4.2 Connection closed during DATA")),
        };
        let answer = self.submit(body).await;
        self.reset();
        Ok(answer)
    }

    /// Reads the dot-terminated body. `None`: the client went away.
    async fn read_body(&mut self) -> std::io::Result<Option<Result<Vec<u8>, Reply>>> {
        let limit = self.ctx.ingestor.limits().max_message_bytes;
        let mut body = Vec::new();
        let mut failure = None;
        loop {
            let Some(line) = read_line(&mut self.io, MAX_DATA_LINE).await? else {
                return Ok(None);
            };
            if line.bytes == b"." && !line.too_long {
                break;
            }
            if line.too_long {
                failure.get_or_insert_with(|| reply(500, "5.5.6 Body line too long"));
            }
            let unstuffed = line.bytes.strip_prefix(b".").unwrap_or(&line.bytes);
            if body.len() + unstuffed.len() + 2 > limit {
                failure.get_or_insert_with(|| {
                    reply(552, format!("5.3.4 Message larger than {limit} bytes"))
                });
                continue;
            }
            if failure.is_none() {
                body.extend_from_slice(unstuffed);
                body.extend_from_slice(b"\r\n");
            }
        }
        Ok(Some(failure.map_or(Ok(body), Err)))
    }

    async fn submit(&mut self, body: Vec<u8>) -> Reply {
        let Some(tenant) = self.tenant.clone() else {
            return reply(530, "5.7.0 Authentication required");
        };
        let submission = Submission {
            recipients: self
                .recipients
                .iter()
                .map(|address| RecipientInput {
                    address: address.clone(),
                    ..Default::default()
                })
                .collect(),
            content: Content::Raw(body),
            ..Default::default()
        };
        match self.ctx.ingestor.submit(&tenant, submission).await {
            Ok(response) => {
                let ids: Vec<_> = response
                    .recipients
                    .iter()
                    .map(|r| r.message_id.as_str())
                    .collect();
                reply(250, format!("2.0.0 OK queued as {}", ids.join(" ")))
            }
            Err(err) => error_reply(&err),
        }
    }

    async fn error(&mut self, answer: Reply) -> std::io::Result<()> {
        self.errors += 1;
        self.send(&answer).await
    }

    async fn send(&mut self, (code, text): &Reply) -> std::io::Result<()> {
        let lines: Vec<&str> = text.split('\n').collect();
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let separator = if i + 1 == lines.len() { ' ' } else { '-' };
            out.push_str(&format!("{code}{separator}{line}\r\n"));
        }
        let stream = self.io.get_mut();
        stream.write_all(out.as_bytes()).await?;
        stream.flush().await
    }
}

fn decode_text(encoded: String) -> Option<String> {
    String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()
}

/// The SMTP reply of an ingest error.
pub fn error_reply(err: &IngestError) -> Reply {
    let (code, enhanced) = err.smtp_reply();
    let text = err.to_string().replace(['\r', '\n'], " ");
    reply(code, format!("{enhanced} {text}"))
}
