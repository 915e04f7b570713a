//! One SMTP submission session, generic over the stream so tests drive it
//! in memory. STARTTLS ends the session with the bare stream; the caller
//! wraps it in TLS and starts a new session (buffered input is discarded,
//! RFC 3207 §4.2).

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sluice_node::CancellationToken;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use sluice_smtp::{BodyFault, Command, Data, DataLimits, Endings, Line, Reply};
use sluice_smtp::{parse, read_data, read_line};

use super::SmtpContext;
use crate::IngestError;
use crate::model::{Content, RecipientInput, Submission};
use crate::tenant::Tenant;
use crate::validate;

/// Longest command line: 4096 bytes before the LF (RFC 5321 §4.5.3.1.4
/// allows 512 with the CRLF; AUTH lines are longer).
const MAX_COMMAND: usize = 4096 + 1;
/// Longest body line: 64 KiB before the LF (RFC 5321 says 1000; be lenient).
const MAX_DATA_LINE: usize = 64 * 1024 + 1;
/// Errors after which the client is disconnected.
const MAX_ERRORS: u32 = 20;
/// Failed AUTH attempts after which the client is disconnected.
const MAX_AUTH_FAILURES: u32 = 3;

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
    auth_failures: u32,
    /// Set when the session must end after the current answer.
    closing: bool,
}

/// How reading a DATA body ended.
enum BodyRead {
    Read(Option<Result<Vec<u8>, Reply>>),
    TimedOut,
    Stopped,
}

fn reply(code: u16, text: impl Into<String>) -> Reply {
    Reply::new(code, text)
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
            auth_failures: 0,
            closing: false,
        }
    }

    /// Greets (unless resuming after STARTTLS) and serves commands.
    pub async fn run(mut self, greet: bool) -> std::io::Result<Ended<S>> {
        if greet {
            let banner = format!("{} ESMTP Sluice ready", self.ctx.hostname);
            self.send(&reply(220, banner)).await?;
        }
        loop {
            let line = match self.next_line().await? {
                Line::Text { text, .. } => text,
                Line::TooLong(_) => {
                    self.error(reply(500, "5.5.6 Line too long")).await?;
                    continue;
                }
                Line::Eof => return Ok(Ended::Closed),
            };
            // An unparsable line counts towards the error limit like any
            // refused command (the checks below run for it too).
            let command = match parse(&line) {
                Ok(command) => Some(command),
                Err(err) => {
                    self.error(err.reply()).await?;
                    None
                }
            };
            match command {
                None => {}
                Some(Command::Quit) => {
                    self.send(&reply(221, "2.0.0 Bye")).await?;
                    return Ok(Ended::Closed);
                }
                Some(Command::StartTls) if !self.tls => {
                    self.send(&reply(220, "2.0.0 Ready to start TLS")).await?;
                    return Ok(Ended::StartTls(self.io.into_inner()));
                }
                Some(command) => {
                    let answer = self.handle(command).await?;
                    if answer.code >= 400 {
                        self.error(answer).await?;
                    } else {
                        self.send(&answer).await?;
                    }
                }
            }
            if self.closing {
                return Ok(Ended::Closed);
            }
            if self.errors >= MAX_ERRORS {
                self.send(&reply(421, "4.7.0 Too many errors, closing"))
                    .await?;
                return Ok(Ended::Closed);
            }
            if self.auth_failures >= MAX_AUTH_FAILURES {
                self.send(&reply(421, "4.7.0 Too many failed logins, closing"))
                    .await?;
                return Ok(Ended::Closed);
            }
        }
    }

    /// Next line (a last one without line ending too); [`Line::Eof`] on end
    /// of stream, idle timeout or shutdown.
    async fn next_line(&mut self) -> std::io::Result<Line> {
        let idle = self.ctx.idle_timeout;
        let stopped = self.stopped.clone();
        tokio::select! {
            line = tokio::time::timeout(idle, read_line(&mut self.io, MAX_COMMAND)) => match line {
                Ok(line) => line,
                Err(_) => {
                    self.send(&reply(421, "4.4.2 Idle too long, closing")).await?;
                    Ok(Line::Eof)
                }
            },
            () = stopped.cancelled() => {
                self.send(&reply(421, "4.3.2 Shutting down, try again later")).await?;
                Ok(Line::Eof)
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
            Command::Mail(path) => self.mail(path.address),
            Command::Rcpt(path) => self.rcpt(path.address),
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
        let (guard, users) = (self.ctx.auth_guard.clone(), self.ctx.user_guard.clone());
        let peer = self.ctx.peer;
        if peer.is_some_and(|ip| guard.locked(&ip, Instant::now())) {
            self.auth_failures += 1;
            return Ok(reply(
                454,
                "4.7.0 Too many failed logins from your address; try again later",
            ));
        }
        let name = user.to_ascii_lowercase();
        if users.locked(&name, Instant::now()) {
            self.auth_failures += 1;
            return Ok(reply(
                454,
                "4.7.0 Too many failed logins for this user name; try again later",
            ));
        }
        // Argon2 takes tens of milliseconds of CPU and ~19 MiB: not on an
        // async worker, but on the listener's few password threads (the
        // session's idle timeout bounds the wait for one).
        let directory = self.ctx.ingestor.directory();
        let check = self
            .ctx
            .password_checks
            .run(move || directory.tenants().by_smtp_login(&user, &password));
        let Ok(Ok(verified)) = tokio::time::timeout(self.ctx.idle_timeout, check).await else {
            return Ok(reply(
                454,
                "4.3.2 Too busy to check credentials; try again later",
            ));
        };
        Ok(match verified {
            Ok(tenant) => {
                if let Some(ip) = peer {
                    guard.succeeded(&ip);
                }
                users.succeeded(&name);
                self.tenant = Some(tenant);
                reply(235, "2.7.0 Authentication successful")
            }
            Err(_) => {
                if let Some(ip) = peer {
                    guard.failed(ip, Instant::now());
                }
                users.failed(name, Instant::now());
                self.auth_failures += 1;
                reply(535, "5.7.8 Authentication credentials invalid")
            }
        })
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
        Ok(match read_line(&mut self.io, MAX_COMMAND).await? {
            Line::Text { text, .. } if text != b"*" => String::from_utf8(text).ok(),
            _ => None,
        })
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
        let (stopped, limit) = (self.stopped.clone(), self.ctx.data_timeout);
        let read = tokio::select! {
            read = tokio::time::timeout(limit, self.read_body()) => match read {
                Ok(read) => BodyRead::Read(read?),
                Err(_) => BodyRead::TimedOut,
            },
            () = stopped.cancelled() => BodyRead::Stopped,
        };
        let body = match read {
            BodyRead::Read(Some(Ok(body))) => body,
            BodyRead::Read(Some(Err(answer))) => {
                self.reset();
                return Ok(answer);
            }
            BodyRead::Read(None) => return Ok(reply(421, "4.4.2 Connection closed during DATA")),
            BodyRead::TimedOut => {
                self.closing = true;
                return Ok(reply(
                    421,
                    format!(
                        "4.4.2 The message took longer than {limit:?} to send; nothing was queued, closing"
                    ),
                ));
            }
            BodyRead::Stopped => {
                self.closing = true;
                return Ok(reply(
                    421,
                    "4.3.2 Shutting down; nothing was queued, send it again later",
                ));
            }
        };
        let answer = self.submit(body).await;
        self.reset();
        Ok(answer)
    }

    /// Reads the dot-terminated body. `None`: the client went away.
    async fn read_body(&mut self) -> std::io::Result<Option<Result<Vec<u8>, Reply>>> {
        let limit = self.ctx.ingestor.limits().max_message_bytes;
        let limits = DataLimits {
            max_line: MAX_DATA_LINE,
            max_size: limit,
            endings: Endings::Normalize,
        };
        let Data::Done(body) = read_data(&mut self.io, &limits).await? else {
            return Ok(None);
        };
        Ok(Some(match body.fault() {
            None => Ok(body.bytes),
            Some(BodyFault::LongLine) => Err(reply(500, "5.5.6 Body line too long")),
            Some(BodyFault::TooBig) => Err(reply(
                552,
                format!("5.3.4 Message larger than {limit} bytes"),
            )),
        }))
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
            dsn_to: match tenant.smtp_dsn() {
                true => self.mail_from.clone().unwrap_or_default(),
                false => String::new(),
            },
            ..Default::default()
        };
        let door = crate::metrics::Door::Smtp;
        match self
            .ctx
            .ingestor
            .submit_via(door, &tenant, submission)
            .await
        {
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

    async fn send(&mut self, answer: &Reply) -> std::io::Result<()> {
        let stream = self.io.get_mut();
        stream.write_all(&answer.to_wire()).await?;
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
