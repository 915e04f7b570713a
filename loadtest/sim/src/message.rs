//! Reading a message after DATA: dot-unstuffing, size and line limits, and
//! finding its Message-ID.

use tokio::io::AsyncBufRead;

use crate::lines::{Line, MAX_TEXT_LINE, read_line};

/// A message as received after DATA.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Body {
    /// The message, dot-unstuffed, with its original line endings.
    pub bytes: Vec<u8>,
    /// It was longer than the provider's maximum size (`bytes` is cut).
    pub too_big: bool,
    /// A line was longer than 1000 bytes (that line is dropped).
    pub long_line: bool,
}

/// How reading a message ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// The terminating `.` line arrived.
    Done(Body),
    /// The client closed the connection first.
    Eof,
}

/// Reads lines up to the lone `.`, unstuffing leading dots.
pub async fn read_body<R>(reader: &mut R, max_size: usize) -> std::io::Result<Read>
where
    R: AsyncBufRead + Unpin,
{
    let mut body = Body::default();
    loop {
        let line = match read_line(reader, MAX_TEXT_LINE).await? {
            Line::Eof => return Ok(Read::Eof),
            Line::TooLong => {
                body.long_line = true;
                continue;
            }
            Line::Complete(line) => line,
        };
        if line == b".\r\n" || line == b".\n" {
            return Ok(Read::Done(body));
        }
        let text = line.strip_prefix(b".").unwrap_or(&line);
        if body.bytes.len() + text.len() > max_size {
            body.too_big = true;
        } else {
            body.bytes.extend_from_slice(text);
        }
    }
}

impl Body {
    /// The Message-ID header's value, or `fnv64:<hex>` of the bytes.
    pub fn message_id(&self) -> String {
        header(&self.bytes, "message-id")
            .unwrap_or_else(|| format!("fnv64:{:016x}", fnv64(&self.bytes)))
    }
}

/// The unfolded value of the first header `name` in the header section.
fn header(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let mut found: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let folded = line.starts_with([' ', '\t']);
        match (&mut found, folded) {
            (Some(value), true) => value.push_str(line.trim()),
            (Some(_), false) => break,
            (None, false) => found = value_of(line, name),
            (None, true) => {}
        }
    }
    found.filter(|v| !v.is_empty())
}

fn value_of(line: &str, name: &str) -> Option<String> {
    let (key, value) = line.split_once(':')?;
    key.trim()
        .eq_ignore_ascii_case(name)
        .then(|| value.trim().to_string())
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8], max: usize) -> Read {
        let mut reader = tokio::io::BufReader::new(input);
        read_body(&mut reader, max).await.unwrap()
    }

    #[tokio::test]
    async fn dots_are_unstuffed_and_the_end_is_found() {
        let Read::Done(body) = read(b"Subject: x\r\n\r\n..hidden\r\n.\r\nNOOP\r\n", 100).await
        else {
            panic!("no end");
        };
        assert_eq!(body.bytes, b"Subject: x\r\n\r\n.hidden\r\n");
        assert!(!body.too_big && !body.long_line);
        assert_eq!(read(b"no end\r\n", 100).await, Read::Eof);
    }

    #[tokio::test]
    async fn size_and_line_limits_are_flagged() {
        let Read::Done(big) = read(b"0123456789\r\n.\r\n", 5).await else {
            panic!("no end");
        };
        assert!(big.too_big);
        let long = [vec![b'a'; 1200], b"\r\n.\r\n".to_vec()].concat();
        let Read::Done(long) = read(&long, 10_000).await else {
            panic!("no end");
        };
        assert!(long.long_line);
    }

    #[test]
    fn message_id_is_read_unfolded_or_hashed() {
        let with = Body {
            bytes: b"From: a\r\nMessage-Id:\r\n  <abc@x>\r\nSubject: s\r\n\r\nMessage-ID: no\r\n"
                .to_vec(),
            ..Body::default()
        };
        assert_eq!(with.message_id(), "<abc@x>");
        let without = Body {
            bytes: b"Subject: s\r\n\r\nMessage-ID: <in-body@x>\r\n".to_vec(),
            ..Body::default()
        };
        assert!(without.message_id().starts_with("fnv64:"));
        assert_ne!(without.message_id(), Body::default().message_id());
    }
}
