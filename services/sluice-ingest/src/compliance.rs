//! Headers and addresses that large mailbox providers expect from a bulk
//! sender: one-click unsubscribe (RFC 8058) with an HMAC-signed URL and
//! Feedback-ID (the signed VERP return path is `sluice_node::verp`).

pub use sluice_links::unsubscribe::{Unsubscribe, UnsubscribeTarget};

/// Gmail's `Feedback-ID: <campaign>:<tenant>:<pool>:<sender id>`; `:` in a
/// part would shift the fields, so it becomes `_`.
pub fn feedback_id(campaign: &str, tenant: &str, pool: &str) -> String {
    let part = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.replace(':', "_")
        }
    };
    format!("{}:{}:{}:sluice", part(campaign), part(tenant), part(pool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_id_has_the_expected_shape() {
        assert_eq!(
            feedback_id("spring:24", "acme", "shared"),
            "spring_24:acme:shared:sluice"
        );
        assert_eq!(feedback_id("", "acme", "shared"), "-:acme:shared:sluice");
    }
}
