//! SMTP command lines (RFC 5321 §4.1, RFC 3207 STARTTLS, RFC 4954 AUTH).
//! Pure: bytes in, a command or a reason out. Never panics on any input
//! (property-tested in `command_tests.rs`).

use crate::reply::Reply;

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`: the argument, trimmed.
    Ehlo(String),
    /// `HELO domain`: the argument, trimmed.
    Helo(String),
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]`; the mechanism upper-cased.
    Auth {
        /// `PLAIN`, `LOGIN`, ...
        mechanism: String,
        /// The base64 initial response, if given.
        initial: Option<String>,
    },
    /// `MAIL FROM:<path> params...`; an empty address is the null sender.
    Mail(Path),
    /// `RCPT TO:<path> params...`; the address is never empty.
    Rcpt(Path),
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP` (arguments ignored).
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY` (arguments ignored).
    Vrfy,
    /// `HELP` (arguments ignored).
    Help,
}

/// An address and its ESMTP parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The address without angle brackets; empty for the null path `<>`.
    pub address: String,
    /// The parameters after the path, in order.
    pub params: Vec<Param>,
}

/// One ESMTP parameter: `KEY` or `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The keyword, upper-cased.
    pub key: String,
    /// The value after `=`, as sent.
    pub value: Option<String>,
}

impl Path {
    /// The part before the last `@` and the domain after it, both non-empty.
    pub fn split(&self) -> Option<(&str, &str)> {
        let (local, domain) = self.address.rsplit_once('@')?;
        (!local.is_empty() && !domain.is_empty()).then_some((local, domain))
    }
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A verb we do not know (at most 16 characters of it).
    #[error("unknown command {0:?}")]
    Unknown(String),
    /// A known verb with bad arguments; the text says what is expected.
    #[error("{0}")]
    Syntax(String),
}

impl ParseError {
    /// The reply: `500 5.5.2` for an unknown verb, `501 5.5.4` for bad syntax.
    pub fn reply(&self) -> Reply {
        match self {
            ParseError::Unknown(verb) => Reply::new(500, format!("5.5.2 Unknown command {verb:?}")),
            ParseError::Syntax(reason) => Reply::new(501, format!("5.5.4 {reason}")),
        }
    }
}

fn syntax(reason: impl Into<String>) -> ParseError {
    ParseError::Syntax(reason.into())
}

/// Parses one command line, without its line ending.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| syntax("Command is not valid UTF-8"))?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (verb, arg) = match line.split_once(' ') {
        Some((verb, arg)) => (verb, arg.trim()),
        None => (line.trim_end(), ""),
    };
    let verb = verb.to_ascii_uppercase();
    let bare = |command: Command| {
        if arg.is_empty() {
            Ok(command)
        } else {
            Err(syntax(format!("Syntax: {verb} takes no parameters")))
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" if arg.is_empty() => Err(syntax(format!("Syntax: {verb} hostname"))),
        "EHLO" => Ok(Command::Ehlo(arg.to_owned())),
        "HELO" => Ok(Command::Helo(arg.to_owned())),
        "MAIL" => path_after(arg, "FROM:").map(Command::Mail),
        "RCPT" => rcpt(arg),
        "AUTH" => auth(arg),
        "STARTTLS" => bare(Command::StartTls),
        "DATA" => bare(Command::Data),
        "RSET" => bare(Command::Rset),
        "QUIT" => bare(Command::Quit),
        "NOOP" => Ok(Command::Noop),
        "VRFY" => Ok(Command::Vrfy),
        "HELP" => Ok(Command::Help),
        _ => Err(ParseError::Unknown(verb.chars().take(16).collect())),
    }
}

fn rcpt(arg: &str) -> Result<Command, ParseError> {
    let path = path_after(arg, "TO:")?;
    if path.address.is_empty() {
        return Err(syntax("Syntax: RCPT TO:<address> needs an address"));
    }
    Ok(Command::Rcpt(path))
}

fn auth(arg: &str) -> Result<Command, ParseError> {
    let mut parts = arg.split_whitespace();
    let usage = || syntax("Syntax: AUTH mechanism [initial-response]");
    let mechanism = parts.next().ok_or_else(usage)?.to_ascii_uppercase();
    let initial = parts.next().map(str::to_owned);
    if parts.next().is_some() {
        return Err(usage());
    }
    Ok(Command::Auth { mechanism, initial })
}

/// Parses `FROM:<path> PARAM...` / `TO:<path> PARAM...`.
fn path_after(arg: &str, keyword: &str) -> Result<Path, ParseError> {
    let verb = if keyword == "TO:" { "RCPT" } else { "MAIL" };
    let usage = || syntax(format!("Syntax: {verb} {keyword}<address>"));
    let head = arg.get(..keyword.len()).ok_or_else(usage)?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(usage());
    }
    let rest = arg.get(keyword.len()..).unwrap_or_default().trim_start();
    let rest = rest.strip_prefix('<').ok_or_else(usage)?;
    let (address, params) = rest.split_once('>').ok_or_else(usage)?;
    if address.contains(['<', ' ', '\t']) {
        return Err(syntax("Syntax: the address contains spaces or '<'"));
    }
    Ok(Path {
        address: address.to_owned(),
        params: params.split_whitespace().map(param).collect(),
    })
}

fn param(text: &str) -> Param {
    let (key, value) = match text.split_once('=') {
        Some((key, value)) => (key, Some(value.to_owned())),
        None => (text, None),
    };
    Param {
        key: key.to_ascii_uppercase(),
        value,
    }
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
