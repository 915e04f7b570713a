//! Reading SMTP replies (RFC 5321 §4.2) and EHLO capabilities.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use super::SmtpError;

/// Longest reply line we accept (RFC 5321 §4.5.3.1.5 says 512 with the code).
const MAX_LINE: usize = 4096;
/// Most continuation lines in one reply.
const MAX_LINES: usize = 128;

/// A complete, possibly multi-line reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code (RFC 3463) from the first line, e.g. "4.7.28".
    pub enhanced: Option<String>,
    /// Text of all lines without code and enhanced code, joined by '\n'.
    pub text: String,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// One-line rendering, e.g. `421 4.7.28 slow down`.
    pub fn line(&self) -> String {
        match &self.enhanced {
            Some(e) => format!("{} {} {}", self.code, e, self.text.replace('\n', " ")),
            None => format!("{} {}", self.code, self.text.replace('\n', " ")),
        }
    }
}

/// Reads one reply. A line that is not `NNN[ -]text` is a protocol error that
/// quotes what the server sent.
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, SmtpError> {
    let mut code = None;
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut *reader)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Err(SmtpError::Closed);
        }
        if !buf.ends_with(b"\n") {
            return Err(SmtpError::protocol(
                "reply line too long or unterminated",
                &buf,
            ));
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\r', '\n']);
        let (this_code, last, text) = split_line(line)?;
        if code.is_some_and(|c| c != this_code) {
            return Err(SmtpError::protocol(
                "reply lines disagree on the code",
                line.as_bytes(),
            ));
        }
        code = Some(this_code);
        lines.push(text.to_owned());
        if last {
            break;
        }
        if lines.len() >= MAX_LINES {
            return Err(SmtpError::protocol(
                "reply has too many lines",
                line.as_bytes(),
            ));
        }
    }
    let code = code.unwrap_or_default();
    Ok(build(code, lines))
}

fn split_line(line: &str) -> Result<(u16, bool, &str), SmtpError> {
    let bytes = line.as_bytes();
    let digits_ok = bytes.len() >= 3
        && bytes[0].is_ascii_digit()
        && (b'2'..=b'5').contains(&bytes[0])
        && bytes[1].is_ascii_digit()
        && bytes[2].is_ascii_digit();
    if !digits_ok {
        return Err(SmtpError::protocol("not an SMTP reply", bytes));
    }
    let code: u16 = line[..3].parse().unwrap_or_default();
    match bytes.get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(SmtpError::protocol("not an SMTP reply", bytes)),
    }
}

fn build(code: u16, lines: Vec<String>) -> Reply {
    let class = (code / 100).to_string();
    let mut enhanced = None;
    let mut texts = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        let (esc, rest) = split_enhanced(&line, &class);
        if i == 0 {
            enhanced = esc.map(str::to_owned);
        }
        texts.push(rest.to_owned());
    }
    Reply {
        code,
        enhanced,
        text: texts.join("\n"),
    }
}

/// Splits a leading `c.s.d` enhanced code whose class matches the reply's.
fn split_enhanced<'a>(text: &'a str, class: &str) -> (Option<&'a str>, &'a str) {
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let parts: Vec<&str> = first.split('.').collect();
    let valid = parts.len() == 3
        && parts[0] == class
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        (Some(first), rest)
    } else {
        (None, text)
    }
}

/// What the server offered in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    pub starttls: bool,
    pub smtputf8: bool,
    pub eightbitmime: bool,
    pub enhanced_status_codes: bool,
    /// SIZE limit in bytes, 0 when not announced or unlimited.
    pub size: u64,
}

impl Capabilities {
    /// Reads the keywords of an EHLO reply (every line after the first).
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Self::default();
        for line in reply.text.lines().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "8BITMIME" => caps.eightbitmime = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "SIZE" => caps.size = words.next().and_then(|s| s.parse().ok()).unwrap_or(0),
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(input: &str) -> Result<Reply, SmtpError> {
        read_reply(&mut input.as_bytes()).await
    }

    #[tokio::test]
    async fn single_line_with_enhanced_code() {
        let r = parse("421 4.7.28 Our system has detected an unusual rate\r\n")
            .await
            .unwrap();
        assert_eq!(r.code, 421);
        assert_eq!(r.enhanced.as_deref(), Some("4.7.28"));
        assert_eq!(r.text, "Our system has detected an unusual rate");
        assert!(r.is_transient());
    }

    #[tokio::test]
    async fn multi_line_reply_joins_text() {
        let r = parse("250-mx.example Hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
            .await
            .unwrap();
        assert_eq!(r.code, 250);
        let caps = Capabilities::from_ehlo(&r);
        assert!(caps.pipelining);
        assert_eq!(caps.size, 1000);
        assert!(!caps.starttls);
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error_quoting_the_line() {
        let err = parse("HTTP/1.1 400 Bad Request\r\n").await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not an SMTP reply"), "{text}");
        assert!(text.contains("HTTP/1.1"), "{text}");
    }

    #[tokio::test]
    async fn enhanced_code_class_must_match() {
        let r = parse("550 4.1.1 odd\r\n").await.unwrap();
        assert_eq!(r.enhanced, None);
        assert_eq!(r.text, "4.1.1 odd");
    }

    #[tokio::test]
    async fn eof_mid_reply_is_closed() {
        assert!(matches!(
            parse("250-first\r\n").await,
            Err(SmtpError::Closed)
        ));
    }

    #[tokio::test]
    async fn mismatched_codes_are_rejected() {
        assert!(parse("250-a\r\n251 b\r\n").await.is_err());
    }
}
