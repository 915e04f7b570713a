//! Reading CRLF-terminated lines with a length limit.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest command line, CRLF included (RFC 5321 section 4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest text line of a message, CRLF included (RFC 5321 section 4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;

/// One line read from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, with its line ending.
    Complete(Vec<u8>),
    /// A line longer than the limit; it was read to its end and dropped.
    TooLong,
    /// The client closed the connection (a partial last line is dropped).
    Eof,
}

/// Reads one line of at most `max` bytes (line ending included).
pub async fn read_line<R>(reader: &mut R, max: usize) -> std::io::Result<Line>
where
    R: AsyncBufRead + Unpin,
{
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.map_or(available.len(), |i| i + 1);
        if !too_long && line.len() + take > max {
            too_long = true;
            line = Vec::new();
        }
        if !too_long {
            line.extend_from_slice(&available[..take]);
        }
        reader.consume(take);
        if newline.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete(line)
            });
        }
    }
}

/// The line without its trailing CRLF or LF.
pub fn trim_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_and_limited() {
        let input: &[u8] = b"short\r\nwaaaaaaaaaaay too long\r\nok\npartial";
        let mut reader = tokio::io::BufReader::with_capacity(4, input);
        assert_eq!(
            read_line(&mut reader, 10).await.unwrap(),
            Line::Complete(b"short\r\n".to_vec())
        );
        assert_eq!(read_line(&mut reader, 10).await.unwrap(), Line::TooLong);
        let ok = read_line(&mut reader, 10).await.unwrap();
        assert_eq!(ok, Line::Complete(b"ok\n".to_vec()));
        assert_eq!(read_line(&mut reader, 10).await.unwrap(), Line::Eof);
        assert_eq!(trim_ending(b"x\r\n"), b"x");
    }
}
