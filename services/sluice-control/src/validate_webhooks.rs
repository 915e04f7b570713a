//! Checks of a tenant's webhooks (docs/webhooks.md): each failure names the
//! field (`webhooks[i].url`, ...) and the reason.

use sluice_proto::v1::{EventKind, Webhook};

use crate::ControlError;

/// Most webhooks of one tenant.
pub const MAX_WEBHOOKS: usize = 10;
/// Longest webhook URL.
pub const MAX_URL: usize = 2048;
/// Shortest and longest webhook secret, in characters.
pub const SECRET_CHARS: (usize, usize) = (24, 256);
/// Longest webhook id.
pub const MAX_ID: usize = 64;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ControlError {
    ControlError::invalid(field, reason)
}

/// A tenant's webhooks; returns them normalized: event kinds sorted and
/// de-duplicated, webhooks sorted by id.
pub fn webhooks(list: &[Webhook]) -> Result<Vec<Webhook>, ControlError> {
    if list.len() > MAX_WEBHOOKS {
        return Err(invalid(
            "webhooks",
            format!("{} entries; at most {MAX_WEBHOOKS} are allowed", list.len()),
        ));
    }
    let mut out: Vec<Webhook> = Vec::with_capacity(list.len());
    for (i, w) in list.iter().enumerate() {
        let w = webhook(&format!("webhooks[{i}]."), w)?;
        if out.iter().any(|o| o.id == w.id) {
            return Err(invalid(
                format!("webhooks[{i}].id"),
                format!("`{}` is given twice; ids are unique within a tenant", w.id),
            ));
        }
        out.push(w);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// One webhook, normalized; errors name fields as `<prefix>url`, ...
pub fn webhook(prefix: &str, w: &Webhook) -> Result<Webhook, ControlError> {
    id(&format!("{prefix}id"), &w.id)?;
    let url = url(&format!("{prefix}url"), &w.url)?;
    let mut events = Vec::with_capacity(w.events.len());
    for (j, &kind) in w.events.iter().enumerate() {
        match EventKind::try_from(kind) {
            Ok(EventKind::Unspecified) | Err(_) => {
                return Err(invalid(
                    format!("{prefix}events[{j}]"),
                    format!("{kind} is not an event kind (accepted, delivered, deferred, ...)"),
                ));
            }
            Ok(_) => events.push(kind),
        }
    }
    events.sort_unstable();
    events.dedup();
    secret(&format!("{prefix}secret"), &w.secret)?;
    if w.disabled_reason.chars().count() > crate::validate::MAX_TEXT {
        return Err(invalid(
            format!("{prefix}disabled_reason"),
            format!("longer than {} characters", crate::validate::MAX_TEXT),
        ));
    }
    Ok(Webhook {
        url,
        events,
        ..w.clone()
    })
}

/// A webhook id: 1 to 64 of `a-z`, `0-9`, `-` and `_`.
pub fn id(field: &str, value: &str) -> Result<(), ControlError> {
    if value.is_empty() || value.len() > MAX_ID {
        return Err(invalid(field, format!("must be 1 to {MAX_ID} characters")));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_')))
    {
        return Err(invalid(
            field,
            format!("`{c}` is not allowed; use a-z, 0-9, `-` and `_`"),
        ));
    }
    Ok(())
}

/// An `https://` or `http://` URL with a host and no user info or
/// fragment; returned as parsed (normalized).
fn url(field: &str, value: &str) -> Result<String, ControlError> {
    if value.len() > MAX_URL {
        return Err(invalid(field, format!("longer than {MAX_URL} bytes")));
    }
    let parsed = url::Url::parse(value).map_err(|e| invalid(field, format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(invalid(
            field,
            format!("scheme `{}` is not https (or http)", parsed.scheme()),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(field, "has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            field,
            "must not carry a user name or password (the signature authenticates the posts)",
        ));
    }
    if parsed.fragment().is_some() {
        return Err(invalid(field, "must not have a fragment (`#...`)"));
    }
    Ok(parsed.into())
}

fn secret(field: &str, value: &str) -> Result<(), ControlError> {
    let (min, max) = SECRET_CHARS;
    let n = value.chars().count();
    if n < min || n > max {
        return Err(invalid(
            field,
            format!("must be {min} to {max} characters (a random string, kept by the receiver)"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(id: &str, url: &str) -> Webhook {
        Webhook {
            id: id.into(),
            url: url.into(),
            events: vec![EventKind::Bounced.into(), EventKind::Delivered.into()],
            secret: "s".repeat(32),
            ..Default::default()
        }
    }

    fn refused(list: &[Webhook]) -> String {
        webhooks(list).unwrap_err().to_string()
    }

    #[test]
    fn a_good_list_is_sorted_and_normalized() {
        let mut b = hook("b", "https://Hooks.Example.com/x?y=1");
        b.events.push(EventKind::Delivered.into());
        let out = webhooks(&[b, hook("a", "http://127.0.0.1:8080/h")]).unwrap();
        assert_eq!(out[0].id, "a");
        assert_eq!(out[1].url, "https://hooks.example.com/x?y=1");
        assert_eq!(
            out[1].events,
            [EventKind::Delivered as i32, EventKind::Bounced as i32]
        );
    }

    #[test]
    fn each_fault_names_its_field() {
        let cases = [
            (hook("A", "https://h.example/"), "webhooks[0].id"),
            (
                hook("a", "ftp://h.example/"),
                "webhooks[0].url: scheme `ftp`",
            ),
            (hook("a", "https://u:p@h.example/"), "user name or password"),
            (hook("a", "https://h.example/#x"), "fragment"),
            (hook("a", "not a url"), "webhooks[0].url: not a URL"),
            (
                Webhook {
                    secret: "short".into(),
                    ..hook("a", "https://h.example/")
                },
                "webhooks[0].secret",
            ),
            (
                Webhook {
                    events: vec![0],
                    ..hook("a", "https://h.example/")
                },
                "webhooks[0].events[0]",
            ),
            (
                Webhook {
                    events: vec![99],
                    ..hook("a", "https://h.example/")
                },
                "webhooks[0].events[0]",
            ),
        ];
        for (w, expected) in cases {
            let err = refused(&[w]);
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
    }

    #[test]
    fn ids_are_unique_and_the_list_is_bounded() {
        let twice = [
            hook("a", "https://h.example/"),
            hook("a", "https://i.example/"),
        ];
        assert!(refused(&twice).contains("webhooks[1].id"));
        let many: Vec<Webhook> = (0..=MAX_WEBHOOKS)
            .map(|i| hook(&format!("h{i}"), "https://h.example/"))
            .collect();
        assert!(refused(&many).contains("at most 10"));
    }
}
