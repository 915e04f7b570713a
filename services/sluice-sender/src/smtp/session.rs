use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufStream};

use sluice_smtp::read_reply;

use super::{Capabilities, Reply, SmtpError};

/// Longest reply line accepted, CRLF included: 4096 bytes of text, far more
/// than the 512 of RFC 5321 §4.5.3.1.5, because servers do send longer ones.
const MAX_REPLY_LINE: usize = 4096 + 2;

/// Where in a transaction a reply came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Banner,
    Ehlo,
    MailFrom,
    RcptTo,
    Data,
    /// The reply to the message content (after the final dot).
    Content,
}

/// The end of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    /// The reply that decided the outcome: the content reply on success, the
    /// first refusal otherwise.
    pub reply: Reply,
    pub stage: Stage,
}

impl TxOutcome {
    pub fn delivered(&self) -> bool {
        self.stage == Stage::Content && self.reply.is_positive()
    }
}

/// An SMTP client session on an open stream, after the banner and EHLO.
pub struct Session<S> {
    io: BufStream<S>,
    pub caps: Capabilities,
    /// Reply timeout for commands; content uses `data_timeout`.
    pub command_timeout: Duration,
    pub data_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Reads the banner and says EHLO. A refusing banner or EHLO is returned
    /// as `Err(Ok(outcome))` so the caller can act on the server's words.
    pub async fn open(
        stream: S,
        ehlo_name: &str,
        command_timeout: Duration,
    ) -> Result<Result<Self, TxOutcome>, SmtpError> {
        let mut session = Self {
            io: BufStream::new(stream),
            caps: Capabilities::default(),
            command_timeout,
            data_timeout: command_timeout * 5,
        };
        let banner = session.reply("banner").await?;
        if banner.code != 220 {
            return Ok(Err(TxOutcome {
                reply: banner,
                stage: Stage::Banner,
            }));
        }
        match session.ehlo(ehlo_name).await? {
            Ok(()) => Ok(Ok(session)),
            Err(outcome) => Ok(Err(outcome)),
        }
    }

    /// A session on a stream that already passed the banner (after STARTTLS).
    pub fn resume(stream: S, command_timeout: Duration) -> Self {
        Self {
            io: BufStream::new(stream),
            caps: Capabilities::default(),
            command_timeout,
            data_timeout: command_timeout * 5,
        }
    }

    /// Sends EHLO and records the capabilities.
    pub async fn ehlo(&mut self, name: &str) -> Result<Result<(), TxOutcome>, SmtpError> {
        self.write(format!("EHLO {name}\r\n").as_bytes()).await?;
        let reply = self.reply("EHLO").await?;
        if reply.code != 250 {
            return Ok(Err(TxOutcome {
                reply,
                stage: Stage::Ehlo,
            }));
        }
        self.caps = Capabilities::from_ehlo(&reply);
        Ok(Ok(()))
    }

    /// Sends STARTTLS; on `220` returns the raw stream for the TLS handshake.
    pub async fn starttls(mut self) -> Result<Result<S, TxOutcome>, SmtpError> {
        self.write(b"STARTTLS\r\n").await?;
        let reply = self.reply("STARTTLS").await?;
        if reply.code != 220 {
            return Ok(Err(TxOutcome {
                reply,
                stage: Stage::Ehlo,
            }));
        }
        Ok(Ok(self.io.into_inner()))
    }

    /// One transaction: one sender, one recipient, one message. `content` is
    /// the RFC 5322 message; dot-stuffing is done here.
    pub async fn send(
        &mut self,
        from: &str,
        to: &str,
        content: &[u8],
    ) -> Result<TxOutcome, SmtpError> {
        let params = self.mail_params(from, to, content);
        let mail = format!("MAIL FROM:<{from}>{params}\r\n");
        let rcpt = format!("RCPT TO:<{to}>\r\n");
        let replies = if self.caps.pipelining {
            self.pipelined(&mail, &rcpt).await?
        } else {
            match self.stepwise(&mail, &rcpt).await? {
                Ok(replies) => replies,
                Err(outcome) => return Ok(outcome),
            }
        };
        let [mail_r, rcpt_r, data_r] = replies;
        if let Some(outcome) = self.refusal(mail_r, rcpt_r, &data_r).await? {
            return Ok(outcome);
        }
        if data_r.code != 354 {
            return Ok(TxOutcome {
                reply: data_r,
                stage: Stage::Data,
            });
        }
        self.write_content(content).await?;
        let reply = self.reply_within(self.data_timeout, "end of data").await?;
        Ok(TxOutcome {
            reply,
            stage: Stage::Content,
        })
    }

    /// Ends the session politely; errors are irrelevant at this point.
    pub async fn quit(mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply("QUIT").await;
        }
        let _ = self.io.shutdown().await;
    }

    /// Resets the transaction state after a refused transaction.
    pub async fn rset(&mut self) -> Result<bool, SmtpError> {
        self.write(b"RSET\r\n").await?;
        Ok(self.reply("RSET").await?.code == 250)
    }

    fn mail_params(&self, from: &str, to: &str, content: &[u8]) -> String {
        let mut params = String::new();
        // Only to servers that announced SIZE (RFC 1870 §6).
        if self.caps.size_extension {
            params.push_str(&format!(" SIZE={}", content.len()));
        }
        if self.caps.eightbitmime && !content.is_ascii() {
            params.push_str(" BODY=8BITMIME");
        }
        if self.caps.smtputf8 && !(from.is_ascii() && to.is_ascii()) {
            params.push_str(" SMTPUTF8");
        }
        params
    }

    async fn pipelined(&mut self, mail: &str, rcpt: &str) -> Result<[Reply; 3], SmtpError> {
        self.write(format!("{mail}{rcpt}DATA\r\n").as_bytes())
            .await?;
        let mail_r = self.reply("MAIL FROM").await?;
        let rcpt_r = self.reply("RCPT TO").await?;
        let data_r = self.reply("DATA").await?;
        Ok([mail_r, rcpt_r, data_r])
    }

    async fn stepwise(
        &mut self,
        mail: &str,
        rcpt: &str,
    ) -> Result<Result<[Reply; 3], TxOutcome>, SmtpError> {
        self.write(mail.as_bytes()).await?;
        let mail_r = self.reply("MAIL FROM").await?;
        if !mail_r.is_positive() {
            self.rset().await?;
            return Ok(Err(TxOutcome {
                reply: mail_r,
                stage: Stage::MailFrom,
            }));
        }
        self.write(rcpt.as_bytes()).await?;
        let rcpt_r = self.reply("RCPT TO").await?;
        if !rcpt_r.is_positive() {
            self.rset().await?;
            return Ok(Err(TxOutcome {
                reply: rcpt_r,
                stage: Stage::RcptTo,
            }));
        }
        self.write(b"DATA\r\n").await?;
        let data_r = self.reply("DATA").await?;
        Ok(Ok([mail_r, rcpt_r, data_r]))
    }

    /// After pipelined MAIL/RCPT/DATA: the first refusal, with the session
    /// brought back to a clean state.
    async fn refusal(
        &mut self,
        mail_r: Reply,
        rcpt_r: Reply,
        data_r: &Reply,
    ) -> Result<Option<TxOutcome>, SmtpError> {
        let refused = if !mail_r.is_positive() {
            Some(TxOutcome {
                reply: mail_r,
                stage: Stage::MailFrom,
            })
        } else if !rcpt_r.is_positive() {
            Some(TxOutcome {
                reply: rcpt_r,
                stage: Stage::RcptTo,
            })
        } else {
            None
        };
        if let Some(outcome) = refused {
            if data_r.code == 354 {
                // RFC 2920 §3.1: DATA was accepted anyway; end it empty.
                self.write(b".\r\n").await?;
                self.reply("empty data").await?;
            }
            self.rset().await?;
            return Ok(Some(outcome));
        }
        Ok(None)
    }

    async fn write_content(&mut self, content: &[u8]) -> Result<(), SmtpError> {
        let mut at_line_start = true;
        for chunk in content.split_inclusive(|&b| b == b'\n') {
            if at_line_start && chunk.first() == Some(&b'.') {
                self.io.write_all(b".").await?;
            }
            self.io.write_all(chunk).await?;
            at_line_start = chunk.ends_with(b"\n");
        }
        if !content.is_empty() && !content.ends_with(b"\r\n") {
            self.io.write_all(b"\r\n").await?;
        }
        self.write(b".\r\n").await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SmtpError> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    async fn reply(&mut self, what: &'static str) -> Result<Reply, SmtpError> {
        self.reply_within(self.command_timeout, what).await
    }

    async fn reply_within(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<Reply, SmtpError> {
        let reply = tokio::time::timeout(limit, read_reply(&mut self.io, MAX_REPLY_LINE))
            .await
            .map_err(|_| SmtpError::Timeout(limit, what))??;
        Ok(reply)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
