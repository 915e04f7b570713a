//! The SMTP session state machine. No I/O: the connection driver feeds it
//! command lines and message bodies and sends back what it answers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use sluice_smtp::{Body, Command, ParseError, Path, Reply, parse};

use crate::limits::Ticket;
use crate::message::message_id;
use crate::provider::{ConnectionSlot, Provider};
use crate::reply::LimitKind;
use crate::report::AcceptedMessage;

/// What the driver must do with the session's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send the reply; a `421` reply also closes the connection.
    Reply(Reply),
    /// Send the reply and close (QUIT).
    Close(Reply),
    /// Send the `354` reply, then read the message and call [`Session::message`].
    Data(Reply),
    /// Send the `220` reply, then run the TLS handshake.
    StartTls(Reply),
}

struct Transaction {
    from: String,
    ticket: Ticket,
    recipients: Vec<String>,
}

/// One SMTP conversation with one client.
pub struct Session {
    provider: Arc<Provider>,
    peer: IpAddr,
    slot: Option<ConnectionSlot>,
    greeted: bool,
    tls: bool,
    messages: u32,
    txn: Option<Transaction>,
}

fn reply(code: u16, text: &str) -> Step {
    Step::Reply(Reply::new(code, text))
}

impl Session {
    /// A session for a client at `peer` that has its connection slot.
    pub fn new(provider: Arc<Provider>, peer: IpAddr, slot: ConnectionSlot) -> Self {
        Session {
            provider,
            peer,
            slot: Some(slot),
            greeted: false,
            tls: false,
            messages: 0,
            txn: None,
        }
    }

    /// The provider this session talks for.
    pub fn provider(&self) -> &Arc<Provider> {
        &self.provider
    }

    /// Gives the connection slot back; called just before the last reply.
    pub fn release_slot(&mut self) {
        self.slot = None;
    }

    /// The `220` greeting.
    pub fn banner(&self) -> Reply {
        Reply::new(
            220,
            format!("{} ESMTP sluice-sim ready", self.provider.host()),
        )
    }

    /// The reply to a command line longer than the limit.
    pub fn line_too_long(&self) -> Reply {
        Reply::new(500, "5.5.2 Line too long")
    }

    /// The handshake finished: RFC 3207 says to forget the earlier EHLO.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.greeted = false;
        self.abort();
    }

    /// Answers one command line (without its CRLF) received at `now`.
    pub fn command(&mut self, line: &str, now: Instant) -> Step {
        let command = match parse(line.as_bytes()) {
            Ok(command) => command,
            Err(err) => return Step::Reply(err.reply()),
        };
        match command {
            Command::Helo(_) => self.greet(Reply::new(250, self.provider.host())),
            Command::Ehlo(name) => {
                let ehlo = self.ehlo_reply(&name);
                self.greet(ehlo)
            }
            Command::Mail(path) => self.mail(path, now),
            Command::Rcpt(path) => self.rcpt(path, now),
            Command::Data => self.data(),
            Command::Rset => {
                self.abort();
                reply(250, "2.0.0 OK")
            }
            Command::Noop => reply(250, "2.0.0 OK"),
            Command::Quit => Step::Close(Reply::new(221, "2.0.0 Bye")),
            Command::StartTls => self.starttls(),
            Command::Vrfy => reply(252, "2.5.2 Cannot VRFY user, but will accept message"),
            Command::Help => reply(214, "2.0.0 See RFC 5321"),
            // Like an MX, the simulator offers no AUTH: to it the verb is unknown.
            Command::Auth { .. } => Step::Reply(ParseError::Unknown("AUTH".into()).reply()),
        }
    }

    fn greet(&mut self, answer: Reply) -> Step {
        self.abort();
        self.greeted = true;
        Step::Reply(answer)
    }

    fn ehlo_reply(&self, name: &str) -> Reply {
        let config = self.provider.config();
        let mut lines = vec![
            format!("{} Hello {name} [{}]", self.provider.host(), self.peer),
            "PIPELINING".to_string(),
            format!("SIZE {}", config.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.provider.tls().is_some() && !self.tls {
            lines.push("STARTTLS".to_string());
        }
        Reply::new(250, lines.join("\n"))
    }

    fn starttls(&mut self) -> Step {
        if self.tls {
            return reply(503, "5.5.1 Error: TLS already active");
        }
        if self.provider.tls().is_none() {
            return reply(454, "4.7.0 TLS not available");
        }
        if self.txn.is_some() {
            return reply(503, "5.5.1 Error: STARTTLS inside a mail transaction");
        }
        Step::StartTls(Reply::new(220, "2.0.0 Ready to start TLS"))
    }

    fn mail(&mut self, path: Path, now: Instant) -> Step {
        if !self.greeted {
            return reply(503, "5.5.1 Error: send HELO/EHLO first");
        }
        if self.txn.is_some() {
            return reply(503, "5.5.1 Error: nested MAIL command");
        }
        if let Some(step) = self.check_mail_params(&path) {
            return step;
        }
        let per_conn = self.provider.config().limits.messages_per_connection;
        if per_conn.is_some_and(|max| self.messages >= max) {
            let kind = LimitKind::MessagesPerConnection;
            return Step::Reply(self.provider.violation(self.peer, kind));
        }
        let ticket = match self.provider.start_message(self.peer, now) {
            Ok(ticket) => ticket,
            Err(refusal) => return Step::Reply(refusal),
        };
        self.messages += 1;
        self.txn = Some(Transaction {
            from: path.address,
            ticket,
            recipients: Vec::new(),
        });
        reply(250, "2.1.0 OK")
    }

    fn check_mail_params(&self, path: &Path) -> Option<Step> {
        for param in &path.params {
            match (param.key.as_str(), param.value.as_deref()) {
                ("SIZE", Some(n)) => match n.parse::<usize>() {
                    Ok(n) if n > self.provider.config().max_message_size => {
                        return Some(Step::Reply(self.too_big()));
                    }
                    Ok(_) => {}
                    Err(_) => return Some(reply(501, "5.5.4 Bad SIZE value")),
                },
                ("BODY", Some(b)) if b.eq_ignore_ascii_case("7BIT") => {}
                ("BODY", Some(b)) if b.eq_ignore_ascii_case("8BITMIME") => {}
                ("SMTPUTF8", None) => {}
                _ => return Some(reply(555, "5.5.4 Unsupported MAIL parameter")),
            }
        }
        None
    }

    fn too_big(&self) -> Reply {
        let text = "5.3.4 Message size exceeds fixed maximum message size";
        self.provider.refuse(self.peer, Reply::new(552, text))
    }

    fn rcpt(&mut self, path: Path, now: Instant) -> Step {
        let Some(txn) = &self.txn else {
            return reply(503, "5.5.1 Error: need MAIL command");
        };
        if !path.params.is_empty() {
            return reply(555, "5.5.4 Unsupported RCPT parameter");
        }
        let Some((local, domain)) = path.split() else {
            return reply(501, "5.1.3 Bad recipient address syntax");
        };
        let refusal = self.recipient_refusal(txn, local, domain, &path.address, now);
        if let Some(refusal) = refusal {
            return Step::Reply(refusal);
        }
        if let Some(txn) = self.txn.as_mut() {
            txn.recipients.push(path.address);
        }
        reply(250, "2.1.5 OK")
    }

    fn recipient_refusal(
        &self,
        txn: &Transaction,
        local: &str,
        domain: &str,
        address: &str,
        now: Instant,
    ) -> Option<Reply> {
        let provider = &self.provider;
        if !provider.serves(domain) {
            let denied = Reply::new(550, "5.7.1 relaying denied");
            return Some(provider.refuse(self.peer, denied));
        }
        let max = provider.config().limits.recipients_per_message;
        if max.is_some_and(|max| txn.recipients.len() >= max as usize) {
            let kind = LimitKind::RecipientsPerMessage;
            return Some(provider.violation(self.peer, kind));
        }
        if let Some(verdict) = provider.mailbox_verdict(local) {
            return Some(provider.refuse(self.peer, verdict));
        }
        if !provider.greylist_pass(self.peer, &txn.from, address, now) {
            let grey = Reply::new(451, "4.7.1 greylisted, please try again later");
            return Some(provider.refuse(self.peer, grey));
        }
        None
    }

    fn data(&mut self) -> Step {
        match &self.txn {
            None => reply(503, "5.5.1 Error: need MAIL command"),
            Some(txn) if txn.recipients.is_empty() => {
                reply(554, "5.5.1 Error: no valid recipients")
            }
            Some(_) => reply(354, "End data with <CR><LF>.<CR><LF>").into_data(),
        }
    }

    /// Answers the end of DATA. The transaction ends either way.
    pub fn message(&mut self, body: Body) -> Reply {
        let Some(txn) = self.txn.take() else {
            return Reply::new(503, "5.5.1 Error: need MAIL command");
        };
        let provider = &self.provider;
        if body.too_big {
            return self.too_big();
        }
        if body.long_line {
            let text = "5.6.0 Message contains a line longer than 998 characters";
            return provider.refuse(self.peer, Reply::new(554, text));
        }
        if let Some(failure) = provider.random_failure() {
            return provider.refuse(self.peer, failure);
        }
        let accepted = AcceptedMessage {
            provider: provider.name().to_string(),
            server: provider.addr(),
            source_ip: self.peer,
            message_id: message_id(&body.bytes),
            mail_from: txn.from,
            recipients: txn.recipients,
            size: body.bytes.len(),
            tls: self.tls,
            accepted_at_unix_ms: unix_ms(),
        };
        provider.feedback_later(&accepted, &body.bytes);
        provider.keep_body(&accepted, &body.bytes);
        provider.record(accepted);
        Reply::new(250, "2.0.0 OK: queued")
    }

    fn abort(&mut self) {
        if let Some(txn) = self.txn.take() {
            self.provider.abort_message(self.peer, txn.ticket);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.abort();
    }
}

impl Step {
    fn into_data(self) -> Step {
        match self {
            Step::Reply(r) => Step::Data(r),
            other => other,
        }
    }
}

pub(crate) fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since.as_millis() as u64
}
