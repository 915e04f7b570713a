//! What a server offers in its EHLO reply (RFC 5321 §4.1.1.1).

use crate::reply::Reply;

/// The EHLO keywords a client acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `8BITMIME` (RFC 6152).
    pub eightbitmime: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `SIZE` announced (RFC 1870): only then may `MAIL` carry `SIZE=`.
    pub size_extension: bool,
    /// `SIZE` limit in bytes (RFC 1870); 0 when not announced or unlimited.
    pub size: u64,
    /// `AUTH` mechanisms (RFC 4954), upper-cased.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Reads the keywords of an EHLO reply (every line after the first).
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Self::default();
        for line in reply.text.lines().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "8BITMIME" => caps.eightbitmime = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "SIZE" => {
                    caps.size_extension = true;
                    caps.size = words.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                }
                "AUTH" => caps.auth = words.map(str::to_ascii_uppercase).collect(),
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_after_the_greeting_line() {
        let reply = Reply::new(
            250,
            "mx.example Hello\npipelining\nSIZE 1000\nAUTH plain LOGIN\n8BITMIME",
        );
        let caps = Capabilities::from_ehlo(&reply);
        assert!(caps.pipelining && caps.eightbitmime);
        assert!(!caps.starttls && !caps.smtputf8 && !caps.enhanced_status_codes);
        assert_eq!(caps.size, 1000);
        assert_eq!(caps.auth, ["PLAIN", "LOGIN"]);
        let greeting_only = Reply::new(250, "STARTTLS");
        assert_eq!(
            Capabilities::from_ehlo(&greeting_only),
            Capabilities::default()
        );
        let bad_size = Reply::new(250, "x\nSIZE lots");
        assert_eq!(Capabilities::from_ehlo(&bad_size).size, 0);
        let unlimited = Capabilities::from_ehlo(&Reply::new(250, "x\nSIZE"));
        assert!(unlimited.size_extension && unlimited.size == 0);
        assert!(caps.size_extension);
        assert!(!Capabilities::from_ehlo(&Reply::new(250, "x\nPIPELINING")).size_extension);
    }
}
