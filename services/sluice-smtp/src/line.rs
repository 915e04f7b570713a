//! Bounded line reading: a line never grows past its limit, so a peer
//! cannot make us buffer without bound.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest reply line, CRLF included (RFC 5321 §4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;
/// Longest text line of a message, CRLF included (RFC 5321 §4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;

/// How a line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `\r\n`.
    CrLf,
    /// A bare `\n`.
    Lf,
    /// The stream ended before a line ending.
    Eof,
}

impl Ending {
    /// The ending's bytes as they were received.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Ending::CrLf => b"\r\n",
            Ending::Lf => b"\n",
            Ending::Eof => b"",
        }
    }
}

/// One line read from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line within the limit; `text` is without its line ending.
    Text {
        /// The line's bytes, ending removed.
        text: Vec<u8>,
        /// How it ended.
        ending: Ending,
    },
    /// A line longer than the limit. It was read to its end and dropped.
    TooLong(Ending),
    /// The stream ended before the first byte of a new line.
    Eof,
}

impl Line {
    /// True for a line that ended with `\n` (a last line cut off by the end
    /// of the stream is not terminated).
    pub fn is_terminated(&self) -> bool {
        match self {
            Line::Text { ending, .. } | Line::TooLong(ending) => *ending != Ending::Eof,
            Line::Eof => false,
        }
    }
}

/// Reads one line of at most `max` bytes, its line ending included.
///
/// A longer line is consumed up to its `\n` (or the end of the stream) and
/// reported as [`Line::TooLong`]; at most `max` bytes are ever buffered.
pub async fn read_line<R>(reader: &mut R, max: usize) -> std::io::Result<Line>
where
    R: AsyncBufRead + Unpin,
{
    let mut line = Vec::new();
    let mut too_long = false;
    // Whether the last byte before the current position is `\r`, which a
    // too-long line (not buffered) still needs to name its ending.
    let mut after_cr = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Line::TooLong(Ending::Eof),
                (false, true) => Line::Eof,
                (false, false) => Line::Text {
                    text: line,
                    ending: Ending::Eof,
                },
            });
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.map_or(available.len(), |i| i + 1);
        let chunk = &available[..take];
        let cr_before_newline = match newline {
            Some(i) => i.checked_sub(1).map_or(after_cr, |j| chunk[j] == b'\r'),
            None => false,
        };
        after_cr = chunk.last() == Some(&b'\r');
        if !too_long && line.len() + take > max {
            too_long = true;
            line = Vec::new();
        }
        if !too_long {
            line.extend_from_slice(chunk);
        }
        reader.consume(take);
        if newline.is_some() {
            let ending = if cr_before_newline {
                Ending::CrLf
            } else {
                Ending::Lf
            };
            return Ok(finish(line, too_long, ending));
        }
    }
}

/// A line that ended with `\n`: strips the ending from a kept line.
fn finish(mut line: Vec<u8>, too_long: bool, ending: Ending) -> Line {
    if too_long {
        return Line::TooLong(ending);
    }
    line.truncate(line.len().saturating_sub(ending.bytes().len()));
    Line::Text { text: line, ending }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text(bytes: &[u8], ending: Ending) -> Line {
        Line::Text {
            text: bytes.to_vec(),
            ending,
        }
    }

    async fn lines(input: &[u8], max: usize, capacity: usize) -> Vec<Line> {
        let mut reader = tokio::io::BufReader::with_capacity(capacity, input);
        let mut out = Vec::new();
        loop {
            let line = read_line(&mut reader, max).await.expect("in-memory read");
            if line == Line::Eof {
                return out;
            }
            out.push(line);
        }
    }

    #[tokio::test]
    async fn lines_are_split_limited_and_their_endings_named() {
        for capacity in [1, 4, 64] {
            let got = lines(
                b"short\r\nwaaaaaaaaaaay too long\r\nok\npartial",
                10,
                capacity,
            )
            .await;
            assert_eq!(
                got,
                vec![
                    text(b"short", Ending::CrLf),
                    Line::TooLong(Ending::CrLf),
                    text(b"ok", Ending::Lf),
                    text(b"partial", Ending::Eof),
                ],
                "buffer capacity {capacity}"
            );
        }
    }

    #[tokio::test]
    async fn the_limit_counts_the_line_ending() {
        assert_eq!(
            lines(b"12345678\r\n", 10, 8).await,
            vec![text(b"12345678", Ending::CrLf)]
        );
        assert_eq!(
            lines(b"123456789\r\n", 10, 8).await,
            vec![Line::TooLong(Ending::CrLf)]
        );
        assert_eq!(
            lines(b"123456789\n", 10, 8).await,
            vec![text(b"123456789", Ending::Lf)]
        );
        assert_eq!(
            lines(b"12345678901", 10, 8).await,
            vec![Line::TooLong(Ending::Eof)]
        );
    }

    #[tokio::test]
    async fn only_a_line_feed_ends_a_line() {
        let got = lines(b"a\rb\r\n\r\n", 100, 64).await;
        assert_eq!(
            got,
            vec![text(b"a\rb", Ending::CrLf), text(b"", Ending::CrLf)]
        );
        assert!(got.iter().all(Line::is_terminated));
        assert!(!text(b"x", Ending::Eof).is_terminated());
    }

    fn byte() -> impl Strategy<Value = u8> {
        prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'.'), any::<u8>()]
    }

    proptest! {
        #[test]
        fn lines_stay_within_the_limit_and_rebuild_the_input(
            input in proptest::collection::vec(byte(), 0..400),
            max in 1usize..64,
            capacity in 1usize..32,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let got = runtime.block_on(lines(&input, max, capacity));
            let mut rebuilt = Vec::new();
            let mut whole = true;
            for line in &got {
                match line {
                    Line::Text { text, ending } => {
                        prop_assert!(text.len() + ending.bytes().len() <= max);
                        rebuilt.extend_from_slice(text);
                        rebuilt.extend_from_slice(ending.bytes());
                    }
                    Line::TooLong(_) => whole = false,
                    Line::Eof => prop_assert!(false, "Eof inside the lines"),
                }
            }
            if whole {
                prop_assert_eq!(rebuilt, input);
            }
        }
    }
}
