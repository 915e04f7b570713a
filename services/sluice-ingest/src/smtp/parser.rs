//! SMTP command parser (RFC 5321 §4.1, RFC 4954 AUTH, RFC 3207 STARTTLS).
//! Pure: bytes in, a command or a reason out. Never panics on any input
//! (property-tested below).

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    StartTls,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// `MAIL FROM:<path>`; an empty path is the null sender.
    Mail {
        from: String,
        params: Vec<String>,
    },
    Rcpt {
        to: String,
        params: Vec<String>,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Unknown verb (reply 500 5.5.2).
    Unknown(String),
    /// Known verb, bad arguments (reply 501 5.5.4).
    Syntax(String),
}

/// Parses one command line (without its CRLF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line)
        .map_err(|_| ParseError::Syntax("command is not valid UTF-8".into()))?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (verb, rest) = match line.split_once(' ') {
        Some((verb, rest)) => (verb, rest.trim()),
        None => (line, ""),
    };
    let no_args = |command: Command| {
        if rest.is_empty() || matches!(command, Command::Noop | Command::Help | Command::Vrfy) {
            Ok(command)
        } else {
            Err(ParseError::Syntax(format!(
                "{} takes no arguments",
                verb.to_ascii_uppercase()
            )))
        }
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => domain(rest).map(Command::Ehlo),
        "HELO" => domain(rest).map(Command::Helo),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => auth(rest),
        "MAIL" => path(rest, "FROM:").map(|(from, params)| Command::Mail { from, params }),
        "RCPT" => path(rest, "TO:").and_then(|(to, params)| {
            if to.is_empty() {
                Err(ParseError::Syntax("RCPT TO needs an address".into()))
            } else {
                Ok(Command::Rcpt { to, params })
            }
        }),
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "NOOP" => no_args(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" => no_args(Command::Vrfy),
        "HELP" => no_args(Command::Help),
        _ => Err(ParseError::Unknown(verb.chars().take(16).collect())),
    }
}

fn domain(rest: &str) -> Result<String, ParseError> {
    match rest.split_whitespace().next() {
        Some(name) => Ok(name.to_owned()),
        None => Err(ParseError::Syntax(
            "EHLO/HELO needs a domain or address literal".into(),
        )),
    }
}

fn auth(rest: &str) -> Result<Command, ParseError> {
    let mut parts = rest.split_whitespace();
    let mechanism = parts
        .next()
        .ok_or_else(|| ParseError::Syntax("AUTH needs a mechanism".into()))?
        .to_ascii_uppercase();
    let initial = parts.next().map(str::to_owned);
    if parts.next().is_some() {
        return Err(ParseError::Syntax(
            "AUTH takes a mechanism and an optional response".into(),
        ));
    }
    Ok(Command::Auth { mechanism, initial })
}

/// Parses `FROM:<path> PARAM...` / `TO:<path> PARAM...`.
fn path(rest: &str, keyword: &str) -> Result<(String, Vec<String>), ParseError> {
    let syntax = || ParseError::Syntax(format!("expected {keyword}<address>"));
    let head = rest.get(..keyword.len()).ok_or_else(syntax)?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(syntax());
    }
    let rest = rest[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<').ok_or_else(syntax)?;
    let close = rest.find('>').ok_or_else(syntax)?;
    let address = &rest[..close];
    if address.contains(['<', ' ', '\t']) {
        return Err(ParseError::Syntax("address contains spaces or '<'".into()));
    }
    let params = rest[close + 1..]
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    Ok((address.to_owned(), params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_submission_dialogue() {
        assert_eq!(
            parse(b"EHLO client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(parse(b"starttls"), Ok(Command::StartTls));
        assert_eq!(
            parse(b"AUTH PLAIN AGFAYg=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGFAYg==".into())
            })
        );
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SIZE=100 SMTPUTF8"),
            Ok(Command::Mail {
                from: "a@b.example".into(),
                params: vec!["SIZE=100".into(), "SMTPUTF8".into()]
            })
        );
        assert_eq!(
            parse(b"mail from: <>"),
            Ok(Command::Mail {
                from: String::new(),
                params: vec![]
            })
        );
        assert_eq!(
            parse("RCPT TO:<josé@bücher.de>".as_bytes()),
            Ok(Command::Rcpt {
                to: "josé@bücher.de".into(),
                params: vec![]
            })
        );
        assert_eq!(parse(b"DATA"), Ok(Command::Data));
        assert_eq!(parse(b"QUIT"), Ok(Command::Quit));
    }

    #[test]
    fn rejects_bad_lines_with_a_reason() {
        assert!(matches!(parse(b"FROB x"), Err(ParseError::Unknown(_))));
        assert!(matches!(
            parse(b"MAIL FROM:a@b"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(parse(b"RCPT TO:<>"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"DATA now"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"EHLO"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"\xff\xfe"), Err(ParseError::Syntax(_))));
        assert!(matches!(
            parse(b"MAIL FROM:<a b@c>"),
            Err(ParseError::Syntax(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&line);
        }

        #[test]
        fn arbitrary_command_shaped_lines_never_panic(
            verb in "(MAIL|RCPT|EHLO|AUTH|DATA|mail|rcpt)",
            rest in "[ -~\u{80}-\u{10ffff}]{0,80}",
        ) {
            let _ = parse(format!("{verb} {rest}").as_bytes());
        }
    }
}
