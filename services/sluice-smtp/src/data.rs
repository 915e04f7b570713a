//! The message after `DATA` (RFC 5321 §4.1.1.4, §4.5.2): lines up to a lone
//! `.`, leading dots unstuffed, line and size limits flagged rather than
//! enforced by hanging up, so the reply comes after the whole message.

use tokio::io::AsyncBufRead;

use crate::line::{Ending, Line, read_line};

/// What to keep of the received line endings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endings {
    /// Every line ends with `\r\n` in the body.
    Normalize,
    /// Each line keeps the ending it arrived with (`\r\n` or `\n`).
    Keep,
}

/// The limits a body is read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLimits {
    /// Longest line, line ending included ([`crate::MAX_TEXT_LINE`] per RFC).
    pub max_line: usize,
    /// Largest body in bytes, counted after unstuffing with the endings kept.
    pub max_size: usize,
    /// What the body's line endings are.
    pub endings: Endings,
}

/// Something wrong with a body; the first one is what a server reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    /// A line was longer than `max_line`.
    LongLine,
    /// The body was larger than `max_size`.
    TooBig,
}

/// A message as received after DATA.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Body {
    /// The message, dot-unstuffed. Complete only when [`Body::fault`] is
    /// `None`; bytes stop being kept at the first fault.
    pub bytes: Vec<u8>,
    /// It was larger than the maximum size.
    pub too_big: bool,
    /// A line was longer than the maximum line length.
    pub long_line: bool,
    first_fault: Option<BodyFault>,
    size: usize,
}

impl Body {
    /// The first fault found, in the order the lines arrived.
    pub fn fault(&self) -> Option<BodyFault> {
        self.first_fault
    }

    fn record(&mut self, fault: BodyFault) {
        match fault {
            BodyFault::LongLine => self.long_line = true,
            BodyFault::TooBig => self.too_big = true,
        }
        self.first_fault.get_or_insert(fault);
    }

    fn push(&mut self, text: &[u8], ending: Ending, limits: &DataLimits) {
        let text = text.strip_prefix(b".").unwrap_or(text);
        let ending = match limits.endings {
            Endings::Normalize => Ending::CrLf.bytes(),
            Endings::Keep => ending.bytes(),
        };
        self.size = self.size.saturating_add(text.len() + ending.len());
        if self.size > limits.max_size {
            self.record(BodyFault::TooBig);
        }
        if self.first_fault.is_none() {
            self.bytes.extend_from_slice(text);
            self.bytes.extend_from_slice(ending);
        }
    }
}

/// How reading a body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// The terminating `.` line arrived.
    Done(Body),
    /// The stream ended first; whatever arrived is not a message.
    Eof,
}

/// Reads lines up to the lone `.` (terminated by `\r\n` or `\n`).
pub async fn read_data<R>(reader: &mut R, limits: &DataLimits) -> std::io::Result<Data>
where
    R: AsyncBufRead + Unpin,
{
    let mut body = Body::default();
    loop {
        let line = read_line(reader, limits.max_line).await?;
        if !line.is_terminated() {
            return Ok(Data::Eof);
        }
        match line {
            Line::Text { text, .. } if text == b"." => return Ok(Data::Done(body)),
            Line::Text { text, ending } => body.push(&text, ending, limits),
            Line::TooLong(_) => body.record(BodyFault::LongLine),
            Line::Eof => return Ok(Data::Eof),
        }
    }
}

/// The header section of a message (everything before the first empty
/// line), each line ending in CRLF, cut at a line end so that it stays
/// within `max` bytes: what a delivery or feedback report quotes as
/// `text/rfc822-headers`. Empty for a message without headers.
pub fn header_section(message: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(message);
    let mut out = String::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || out.len() + line.len() + 2 > max {
            break;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn the_header_section_stops_at_the_blank_line_and_the_limit() {
        let message = b"Subject: a\nFrom: b@c.example\r\n\r\nBody: not a header\r\n";
        let all = super::header_section(message, 1000);
        assert_eq!(all, "Subject: a\r\nFrom: b@c.example\r\n");
        assert_eq!(super::header_section(message, 20), "Subject: a\r\n");
        assert_eq!(super::header_section(b"\r\nbody", 1000), "");
    }

    use super::*;

    const KEEP: DataLimits = DataLimits {
        max_line: 1000,
        max_size: 100,
        endings: Endings::Keep,
    };

    async fn read(input: &[u8], limits: DataLimits) -> Data {
        let mut reader = tokio::io::BufReader::new(input);
        read_data(&mut reader, &limits)
            .await
            .expect("in-memory read")
    }

    async fn done(input: &[u8], limits: DataLimits) -> Body {
        match read(input, limits).await {
            Data::Done(body) => body,
            Data::Eof => panic!("no end in {input:?}"),
        }
    }

    #[tokio::test]
    async fn dots_are_unstuffed_and_the_end_is_found() {
        let body = done(b"Subject: x\r\n\r\n..hidden\n.\r\nNOOP\r\n", KEEP).await;
        assert_eq!(body.bytes, b"Subject: x\r\n\r\n.hidden\n");
        assert_eq!(body.fault(), None);
        let normalized = DataLimits {
            endings: Endings::Normalize,
            ..KEEP
        };
        let body = done(b"a\nb\r\n.\n", normalized).await;
        assert_eq!(body.bytes, b"a\r\nb\r\n");
    }

    #[tokio::test]
    async fn a_stream_that_ends_early_is_no_message() {
        assert_eq!(read(b"no end\r\n", KEEP).await, Data::Eof);
        assert_eq!(read(b"text\r\n.", KEEP).await, Data::Eof);
        assert_eq!(read(b"", KEEP).await, Data::Eof);
    }

    #[tokio::test]
    async fn size_and_line_limits_are_flagged_and_the_first_is_kept() {
        let small = DataLimits {
            max_size: 5,
            ..KEEP
        };
        let big = done(b"0123456789\r\n.\r\n", small).await;
        assert!(big.too_big && !big.long_line);
        assert_eq!(big.fault(), Some(BodyFault::TooBig));
        let long = [
            vec![b'a'; 1200],
            b"\r\n".to_vec(),
            vec![b'b'; 200],
            b"\r\n.\r\n".to_vec(),
        ];
        let body = done(&long.concat(), KEEP).await;
        assert!(body.long_line && body.too_big);
        assert_eq!(body.fault(), Some(BodyFault::LongLine));
    }

    #[tokio::test]
    async fn a_too_long_dot_line_does_not_end_the_body() {
        let tight = DataLimits {
            max_line: 3,
            ..KEEP
        };
        let body = done(b".....\r\n.\r\n", tight).await;
        assert_eq!(body.fault(), Some(BodyFault::LongLine));
    }

    proptest! {
        #[test]
        fn arbitrary_input_keeps_within_the_limits(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'.'), any::<u8>()],
                0..400,
            ),
            max_line in 1usize..50,
            max_size in 0usize..200,
            keep in any::<bool>(),
        ) {
            let endings = if keep { Endings::Keep } else { Endings::Normalize };
            let limits = DataLimits { max_line, max_size, endings };
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            if let Data::Done(body) = runtime.block_on(read(&input, limits)) {
                prop_assert!(body.bytes.len() <= max_size);
                prop_assert_eq!(body.fault().is_some(), body.too_big || body.long_line);
            }
        }
    }
}
