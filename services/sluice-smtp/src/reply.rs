//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463,
//! RFC 2034): the type, its wire form, and reading one from a server.

use std::fmt;

use tokio::io::AsyncBufRead;

use crate::line::{Ending, Line, read_line};

/// Most lines in one reply we read.
const MAX_LINES: usize = 128;
/// Most bytes of a bad line quoted in an error.
const QUOTE: usize = 120;

/// A complete, possibly multi-line reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Enhanced status code of the first line, e.g. `4.7.28`, when its class
    /// matches the code's.
    pub enhanced: Option<String>,
    /// The text of all lines without code and enhanced code, joined by `\n`.
    pub text: String,
}

impl Reply {
    /// A reply from its code and text, `\n` between lines. A leading enhanced
    /// status code whose class matches the code's is split off each line, as
    /// when the reply is read.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        build(code, text.into().split('\n'))
    }

    /// 2xx and 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// A 421 reply: the server closes the connection after it.
    pub fn closes(&self) -> bool {
        self.code == 421
    }

    /// One-line rendering, e.g. `421 4.7.28 slow down`.
    pub fn line(&self) -> String {
        self.to_string()
    }

    /// The reply as it goes on the wire: `250-a\r\n250 b\r\n`. The enhanced
    /// code starts every line; a `\r` in the text becomes a space.
    pub fn to_wire(&self) -> Vec<u8> {
        let lines: Vec<&str> = self.text.split('\n').collect();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let separator = if i + 1 == lines.len() { ' ' } else { '-' };
            let wire = match (&self.enhanced, line.is_empty()) {
                (Some(enhanced), true) => format!("{}{separator}{enhanced}", self.code),
                (Some(enhanced), false) => format!("{}{separator}{enhanced} {line}", self.code),
                (None, _) => format!("{}{separator}{line}", self.code),
            };
            out.extend_from_slice(wire.replace('\r', " ").as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text.replace('\n', " ");
        match &self.enhanced {
            Some(enhanced) => write!(f, "{} {enhanced} {text}", self.code),
            None => write!(f, "{} {text}", self.code),
        }
    }
}

/// Why no reply could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// The stream failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended before a complete reply.
    #[error("server closed the connection")]
    Closed,
    /// What arrived is not an SMTP reply; `quoted` is its start.
    #[error("protocol error: {reason}: {quoted:?}")]
    Protocol {
        /// What is wrong with it.
        reason: &'static str,
        /// Up to 120 bytes of the offending line, lossily decoded.
        quoted: String,
    },
}

impl ReplyError {
    /// A protocol error quoting the start of `bytes`.
    pub fn protocol(reason: &'static str, bytes: &[u8]) -> Self {
        let quoted = String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTE)])
            .trim_end()
            .to_owned();
        ReplyError::Protocol { reason, quoted }
    }
}

/// Reads one reply whose lines are at most `max_line` bytes (line ending
/// included; [`crate::MAX_REPLY_LINE`] per RFC, servers send longer). Every
/// line must be `NNN text`, `NNN-text` or `NNN` with the same code, first
/// digit 2 to 5.
pub async fn read_reply<R>(reader: &mut R, max_line: usize) -> Result<Reply, ReplyError>
where
    R: AsyncBufRead + Unpin,
{
    let mut code = None;
    let mut lines: Vec<String> = Vec::new();
    loop {
        let line = reply_line(reader, max_line).await?;
        let (this_code, last, text) = split_line(&line)?;
        if code.is_some_and(|c| c != this_code) {
            let reason = "reply lines disagree on the code";
            return Err(ReplyError::protocol(reason, line.as_bytes()));
        }
        code = Some(this_code);
        lines.push(text.to_owned());
        if last {
            return Ok(build(this_code, lines.iter().map(String::as_str)));
        }
        if lines.len() >= MAX_LINES {
            let reason = "reply has too many lines";
            return Err(ReplyError::protocol(reason, line.as_bytes()));
        }
    }
}

/// One terminated line of a reply, lossily decoded.
async fn reply_line<R>(reader: &mut R, max_line: usize) -> Result<String, ReplyError>
where
    R: AsyncBufRead + Unpin,
{
    match read_line(reader, max_line).await? {
        Line::Eof => Err(ReplyError::Closed),
        Line::TooLong(_) => Err(ReplyError::protocol("reply line too long", b"")),
        Line::Text {
            text,
            ending: Ending::Eof,
        } => Err(ReplyError::protocol("reply line unterminated", &text)),
        Line::Text { text, .. } => Ok(String::from_utf8_lossy(&text).into_owned()),
    }
}

/// `NNN`, `NNN text` or `NNN-text`: the code, whether it is the last line,
/// and the text.
fn split_line(line: &str) -> Result<(u16, bool, &str), ReplyError> {
    let not_a_reply = || ReplyError::protocol("not an SMTP reply", line.as_bytes());
    let digits = line
        .get(..3)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    let code: u16 = digits
        .and_then(|d| d.parse().ok())
        .ok_or_else(not_a_reply)?;
    if !(200..600).contains(&code) {
        return Err(not_a_reply());
    }
    let text = line.get(4..).unwrap_or_default();
    match line.as_bytes().get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, text)),
        Some(b'-') => Ok((code, false, text)),
        Some(_) => Err(not_a_reply()),
    }
}

/// The reply of its lines: the enhanced code is taken from the first line
/// and removed from every line that carries one of the right class.
fn build<'a>(code: u16, lines: impl IntoIterator<Item = &'a str>) -> Reply {
    let mut enhanced = None;
    let mut texts = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        let (found, rest) = split_enhanced(line, code);
        if i == 0 {
            enhanced = found.map(str::to_owned);
        }
        texts.push(rest);
    }
    Reply {
        code,
        enhanced,
        text: texts.join("\n"),
    }
}

/// Splits a leading `class.subject.detail` code whose class is the reply
/// code's first digit (RFC 3463 §2: 1 to 3 digits per subject and detail).
fn split_enhanced(text: &str, code: u16) -> (Option<&str>, &str) {
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = first.split('.');
    let class = (code / 100).to_string();
    let number = |p: &str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
    let valid = parts.next() == Some(class.as_str())
        && parts.next().is_some_and(number)
        && parts.next().is_some_and(number)
        && parts.next().is_none();
    if valid {
        (Some(first), rest)
    } else {
        (None, text)
    }
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
