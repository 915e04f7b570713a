//! Parsing of SMTP command lines (RFC 5321 with ESMTP parameters).

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELO domain`.
    Helo(String),
    /// `EHLO domain`.
    Ehlo(String),
    /// `MAIL FROM:<path> params...`.
    Mail(Path),
    /// `RCPT TO:<path> params...`.
    Rcpt(Path),
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `STARTTLS`.
    StartTls,
    /// `VRFY`.
    Vrfy,
    /// `HELP`.
    Help,
    /// A known verb with a bad argument; the reply text says what is wrong.
    Syntax(&'static str),
    /// A verb we do not know.
    Unknown,
}

/// An address and its ESMTP parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The address without angle brackets; empty for the null path `<>`.
    pub address: String,
    /// `KEY` or `KEY=VALUE` parameters, keys upper-cased.
    pub params: Vec<(String, Option<String>)>,
}

impl Path {
    /// The part before the last `@`, and the domain after it.
    pub fn split(&self) -> Option<(&str, &str)> {
        let (local, domain) = self.address.rsplit_once('@')?;
        (!local.is_empty() && !domain.is_empty()).then_some((local, domain))
    }
}

/// Parses one command line, without its line ending.
pub fn parse(line: &str) -> Command {
    let (verb, arg) = match line.split_once(' ') {
        Some((v, a)) => (v, a.trim()),
        None => (line.trim(), ""),
    };
    let verb = verb.to_ascii_uppercase();
    match verb.as_str() {
        "HELO" | "EHLO" if arg.is_empty() => Command::Syntax("5.5.4 Syntax: EHLO hostname"),
        "HELO" => Command::Helo(arg.to_string()),
        "EHLO" => Command::Ehlo(arg.to_string()),
        "MAIL" => path_after(arg, "FROM:").map_or(
            Command::Syntax("5.5.4 Syntax: MAIL FROM:<address>"),
            Command::Mail,
        ),
        "RCPT" => path_after(arg, "TO:").map_or(
            Command::Syntax("5.5.4 Syntax: RCPT TO:<address>"),
            Command::Rcpt,
        ),
        "DATA" | "RSET" | "QUIT" | "STARTTLS" if !arg.is_empty() => {
            Command::Syntax("5.5.4 Syntax error, no parameters allowed")
        }
        "DATA" => Command::Data,
        "RSET" => Command::Rset,
        "QUIT" => Command::Quit,
        "STARTTLS" => Command::StartTls,
        "NOOP" => Command::Noop,
        "VRFY" => Command::Vrfy,
        "HELP" => Command::Help,
        _ => Command::Unknown,
    }
}

fn path_after(arg: &str, keyword: &str) -> Option<Path> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let (address, params) = rest.split_once('>')?;
    if address.contains(['<', ' ']) {
        return None;
    }
    let params = params.split_whitespace().map(param).collect();
    Some(Path {
        address: address.to_string(),
        params,
    })
}

fn param(text: &str) -> (String, Option<String>) {
    match text.split_once('=') {
        Some((k, v)) => (k.to_ascii_uppercase(), Some(v.to_string())),
        None => (text.to_ascii_uppercase(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_and_rcpt_paths_and_params() {
        let Command::Mail(p) = parse("mail from: <a@b.c> SIZE=100 body=8BITMIME SMTPUTF8") else {
            panic!("not MAIL");
        };
        assert_eq!(p.address, "a@b.c");
        assert_eq!(p.params[0], ("SIZE".into(), Some("100".into())));
        assert_eq!(p.params[2], ("SMTPUTF8".into(), None));
        assert!(matches!(parse("MAIL FROM:<>"), Command::Mail(p) if p.address.is_empty()));
        let Command::Rcpt(r) = parse("RCPT TO:<user@Example.COM>") else {
            panic!("not RCPT");
        };
        assert_eq!(r.split(), Some(("user", "Example.COM")));
    }

    #[test]
    fn bad_arguments_and_unknown_verbs() {
        assert!(matches!(parse("MAIL TO:<a@b>"), Command::Syntax(_)));
        assert!(matches!(parse("RCPT TO:a@b"), Command::Syntax(_)));
        assert!(matches!(parse("EHLO"), Command::Syntax(_)));
        assert!(matches!(parse("DATA now"), Command::Syntax(_)));
        assert_eq!(parse("FROB x"), Command::Unknown);
        assert_eq!(parse("quit"), Command::Quit);
        assert_eq!(
            parse("ehlo client.test"),
            Command::Ehlo("client.test".into())
        );
    }
}
