//! Field validation. Every error names the field and the reason.

use crate::IngestError;

/// Longest address (RFC 5321 path limit minus the angle brackets).
const MAX_ADDRESS: usize = 254;
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;
const MAX_LABEL: usize = 63;

/// Checks an RFC 5321 mailbox (`local@domain`); UTF-8 local parts and domains
/// (SMTPUTF8) are accepted. Returns the domain.
pub fn address<'a>(field: &str, address: &'a str) -> Result<&'a str, IngestError> {
    let bad = |reason: &str| {
        Err(IngestError::invalid(
            field,
            format!("{address:?}: {reason}"),
        ))
    };
    no_line_breaks(field, address)?;
    if address.is_empty() {
        return bad("address is empty");
    }
    if address.len() > MAX_ADDRESS {
        return bad("address is longer than 254 bytes");
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return bad("missing @");
    };
    if local.is_empty() || local.len() > MAX_LOCAL {
        return bad("local part must be 1 to 64 bytes");
    }
    if !local_part_ok(local) {
        return bad("local part has characters not allowed in an unquoted address");
    }
    if let Err(reason) = domain_ok(domain) {
        return bad(&reason);
    }
    Ok(domain)
}

fn local_part_ok(local: &str) -> bool {
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && !c.is_control())
    };
    local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(atext))
}

fn domain_ok(domain: &str) -> Result<(), String> {
    if domain.is_empty() || domain.len() > MAX_DOMAIN {
        return Err("domain must be 1 to 253 bytes".into());
    }
    if !domain.contains('.') {
        return Err("domain must have at least two labels".into());
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err("domain labels must be 1 to 63 bytes".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("domain labels may not start or end with '-'".into());
        }
        let ok = |c: char| {
            c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
        };
        if !label.chars().all(ok) {
            return Err("domain has characters other than letters, digits and '-'".into());
        }
    }
    Ok(())
}

/// Rejects CR, LF and NUL in a value that ends up in a header.
pub fn no_line_breaks(field: &str, value: &str) -> Result<(), IngestError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(IngestError::invalid(
            field,
            "contains CR, LF or NUL (header injection)",
        ));
    }
    Ok(())
}

/// Headers ingest writes itself; a submission may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "dkim-signature",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "return-path",
];

/// Checks an extra header: a valid field name (RFC 5322 ftext), not one
/// ingest writes itself, and a value without line breaks.
pub fn extra_header(name: &str, value: &str) -> Result<(), IngestError> {
    let field = format!("headers.{name}");
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(IngestError::invalid(
            field,
            "header names are printable ASCII without ':' or spaces",
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(IngestError::invalid(
            field,
            "this header is set by ingest and cannot be supplied",
        ));
    }
    not_a_receiver_header(&field, "header", name)?;
    no_line_breaks(&field, value)
}

/// Headers only receivers and relays write: authentication verdicts and
/// trace fields. A tenant supplying one could forge a verdict or a path,
/// so they are refused in raw messages and as extra headers.
const RECEIVER_HEADERS: &[&str] = &[
    "authentication-results",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
    "received",
    "received-spf",
    "return-path",
];

/// Refuses a header only receivers write; `at` says where it was found.
pub fn not_a_receiver_header(field: &str, at: &str, name: &str) -> Result<(), IngestError> {
    let lower = name.to_ascii_lowercase();
    if RECEIVER_HEADERS.contains(&lower.as_str()) {
        return Err(IngestError::invalid(
            field,
            format!(
                "{at}: {name} is written by receivers and relays, not senders; remove it (submit the message before a relay adds trace headers)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_and_smtputf8_addresses() {
        assert_eq!(address("to", "bob@example.com").expect("ok"), "example.com");
        assert!(address("to", "first.last+tag@sub.example.org").is_ok());
        assert!(address("to", "用户@例子.广告").is_ok());
        assert!(address("to", "josé@bücher.de").is_ok());
    }

    #[test]
    fn rejects_bad_addresses_naming_field_and_reason() {
        for (input, reason) in [
            ("", "empty"),
            ("bob", "missing @"),
            ("@example.com", "local part"),
            ("bob@localhost", "two labels"),
            ("bo b@example.com", "not allowed"),
            ("bob..x@example.com", "not allowed"),
            ("bob@-bad.com", "start or end"),
            ("bob@exa_mple.com", "characters"),
        ] {
            let err = address("recipients[0].address", input).expect_err(input);
            let text = err.to_string();
            assert!(text.contains("recipients[0].address"), "{text}");
            assert!(text.contains(reason), "{input}: {text}");
        }
    }

    #[test]
    fn rejects_header_injection() {
        let err = address("from", "a@b.com\r\nBcc: x@y.com").expect_err("injection");
        assert!(err.to_string().contains("header injection"));
        assert!(extra_header("X-Ok", "fine").is_ok());
        assert!(extra_header("X-Bad", "a\nb").is_err());
        assert!(extra_header("X Bad", "a").is_err());
        assert!(extra_header("DKIM-Signature", "a").is_err());
    }

    #[test]
    fn receiver_headers_are_refused_as_extra_headers() {
        for name in [
            "Authentication-Results",
            "ARC-Seal",
            "Received",
            "received-spf",
        ] {
            let err = extra_header(name, "x").expect_err(name).to_string();
            assert!(err.contains(&format!("headers.{name}")), "{err}");
            assert!(err.contains("receivers"), "{err}");
        }
        assert!(extra_header("X-Campaign", "spring").is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,300}") {
            let _ = address("f", &s);
            let _ = extra_header(&s, &s);
        }
    }
}
