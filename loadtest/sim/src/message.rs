//! Finding a received message's Message-ID (the body itself is read by
//! `sluice_smtp::read_data`).

/// The Message-ID header's value, or `fnv64:<hex>` of the bytes.
pub fn message_id(message: &[u8]) -> String {
    header(message, "message-id").unwrap_or_else(|| format!("fnv64:{:016x}", fnv64(message)))
}

/// The unfolded value of the first header `name` in the header section.
fn header(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let mut found: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let folded = line.starts_with([' ', '\t']);
        match (&mut found, folded) {
            (Some(value), true) => value.push_str(line.trim()),
            (Some(_), false) => break,
            (None, false) => found = value_of(line, name),
            (None, true) => {}
        }
    }
    found.filter(|v| !v.is_empty())
}

fn value_of(line: &str, name: &str) -> Option<String> {
    let (key, value) = line.split_once(':')?;
    key.trim()
        .eq_ignore_ascii_case(name)
        .then(|| value.trim().to_string())
}

pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_read_unfolded_or_hashed() {
        let with = b"From: a\r\nMessage-Id:\r\n  <abc@x>\r\nSubject: s\r\n\r\nMessage-ID: no\r\n";
        assert_eq!(message_id(with), "<abc@x>");
        let without = b"Subject: s\r\n\r\nMessage-ID: <in-body@x>\r\n";
        assert!(message_id(without).starts_with("fnv64:"));
        assert_ne!(message_id(without), message_id(b""));
    }
}
