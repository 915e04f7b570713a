//! Bounded line reading for SMTP: a line never grows past its limit, so a
//! client cannot make the server buffer without bound.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line, CRLF (or LF) removed.
#[derive(Debug, Default)]
pub struct Line {
    pub bytes: Vec<u8>,
    /// True when the line was longer than the limit; `bytes` holds its start.
    pub too_long: bool,
}

/// Reads one line of at most `max` bytes; `None` at end of stream.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut line = Line::default();
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(if line.bytes.is_empty() && !line.too_long {
                None
            } else {
                Some(line)
            });
        }
        let (chunk, used, done) = match buffer.iter().position(|b| *b == b'\n') {
            Some(i) => (&buffer[..i], i + 1, true),
            None => (buffer, buffer.len(), false),
        };
        let room = max.saturating_sub(line.bytes.len());
        if chunk.len() > room {
            line.too_long = true;
        }
        line.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(used);
        if done {
            if line.bytes.last() == Some(&b'\r') {
                line.bytes.pop();
            }
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_lines_and_flags_long_ones() {
        let mut input: &[u8] = b"EHLO a\r\nxxxxxxxxxx\r\nlast";
        let first = read_line(&mut input, 8).await.expect("io").expect("line");
        assert_eq!(first.bytes, b"EHLO a");
        assert!(!first.too_long);
        let second = read_line(&mut input, 8).await.expect("io").expect("line");
        assert!(second.too_long);
        assert_eq!(second.bytes.len(), 8);
        let third = read_line(&mut input, 8).await.expect("io").expect("line");
        assert_eq!(third.bytes, b"last");
        assert!(read_line(&mut input, 8).await.expect("io").is_none());
    }
}
