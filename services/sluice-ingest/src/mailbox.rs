//! The one mailbox of a `From` (or `Sender`) value, read the way receivers
//! read it: parsed as an RFC 5322 address list by mail-parser, so comments,
//! quoted display names and encoded words never pass for the address, and
//! a value naming several mailboxes or a group is refused (DMARC aligns on
//! exactly one author domain).

use mail_parser::{Address, HeaderName, MessageParser};

use crate::IngestError;

/// A parsed mailbox: display name (may be empty) and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: String,
    pub address: String,
}

/// Parses `value` as exactly one mailbox; the error names `field`.
pub fn one(field: &str, value: &str) -> Result<Mailbox, IngestError> {
    crate::validate::no_line_breaks(field, value)?;
    let header = format!("From: {value}\r\n\r\n");
    let parsed = MessageParser::default().parse_headers(header.as_bytes());
    let list = parsed
        .as_ref()
        .and_then(|m| m.header(HeaderName::From))
        .and_then(|h| h.as_address());
    let mailboxes = match list {
        Some(Address::List(list)) => list,
        Some(Address::Group(_)) => {
            return Err(IngestError::invalid(
                field,
                "is a group; it must be exactly one mailbox",
            ));
        }
        None => return Err(IngestError::invalid(field, "holds no mailbox")),
    };
    let [mailbox] = mailboxes.as_slice() else {
        return Err(IngestError::invalid(
            field,
            format!(
                "lists {} mailboxes; it must be exactly one (receivers judge the author's domain)",
                mailboxes.len()
            ),
        ));
    };
    let Some(address) = mailbox.address.as_deref().filter(|a| !a.is_empty()) else {
        return Err(IngestError::invalid(field, "holds no address"));
    };
    Ok(Mailbox {
        name: mailbox.name.as_deref().unwrap_or_default().to_owned(),
        address: address.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(value: &str) -> Result<String, String> {
        one("from", value)
            .map(|m| m.address)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn ordinary_forms_give_their_address_and_name() {
        assert_eq!(address("bob@acme.example").unwrap(), "bob@acme.example");
        let m = one("from", "\"Bob, Sales\" <bob@acme.example>").unwrap();
        assert_eq!(
            (m.name.as_str(), m.address.as_str()),
            ("Bob, Sales", "bob@acme.example")
        );
        let m = one("from", "=?utf-8?q?Jos=C3=A9?= <jose@acme.example>").unwrap();
        assert_eq!(
            (m.name.as_str(), m.address.as_str()),
            ("José", "jose@acme.example")
        );
    }

    #[test]
    fn comments_and_display_names_are_not_the_address() {
        assert_eq!(
            address("evil@other.example (bob@acme.example)").unwrap(),
            "evil@other.example"
        );
        assert_eq!(
            address("\"bob@acme.example\" <evil@other.example>").unwrap(),
            "evil@other.example"
        );
        assert_eq!(
            address("bob@acme.example <evil@other.example>").unwrap(),
            "evil@other.example"
        );
        assert_eq!(
            address("<evil@other.example> (<bob@acme.example>)").unwrap(),
            "evil@other.example"
        );
    }

    #[test]
    fn several_mailboxes_groups_and_empty_values_are_refused() {
        for value in [
            "bob@acme.example, evil@other.example",
            "<evil@other.example>, Bob <bob@acme.example>",
        ] {
            let err = address(value).unwrap_err();
            assert!(err.contains("lists 2 mailboxes"), "{value}: {err}");
        }
        let err = address("team: bob@acme.example;").unwrap_err();
        assert!(err.contains("group"), "{err}");
        for value in ["", "   ", "(just a comment)"] {
            assert!(address(value).is_err(), "{value:?}");
        }
        let err = address("a@acme.example\r\nBcc: x@y.example").unwrap_err();
        assert!(err.contains("from"), "{err}");
    }
}
