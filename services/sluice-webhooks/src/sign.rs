//! The signature of every post (docs/webhooks.md#verifying-a-post):
//! `Sluice-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the MAC
//! is keyed with the webhook's secret over `<t>.<body>`. The timestamp lets
//! a receiver refuse replays of an old post.

use ring::hmac;
use sluice_node::secret::{from_hex, to_hex};

/// The header that carries the signature.
pub const HEADER: &str = "sluice-signature";
/// How far a receiver should let the timestamp lag its clock (the
/// documented default; [`verify`] takes it as an argument).
pub const TOLERANCE_SECS: u64 = 300;

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    ctx.sign()
}

/// The header value signing `body` at `timestamp` (unix seconds).
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        to_hex(mac(secret, timestamp, body).as_ref())
    )
}

/// Why a post's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is not `t=<seconds>,v1=<hex>`")]
    Malformed,
    #[error("the timestamp is {0} s away from the receiver's clock")]
    Stale(u64),
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// Checks `header` against `body` with `secret`, refusing a timestamp more
/// than `tolerance` seconds from `now` (unix seconds). Several `v1=` values
/// are accepted (one must match).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance: u64,
) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => candidates.push(from_hex(v).ok_or(VerifyError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if candidates.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let skew = now.abs_diff(timestamp);
    if skew > tolerance {
        return Err(VerifyError::Stale(skew));
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    candidates
        .iter()
        .any(|c| hmac::verify(&key, &signed, c).is_ok())
        .then_some(())
        .ok_or(VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_known_vector() {
        // HMAC-SHA256("secret", "1700000000.{}"), computed independently with
        // `printf %s '1700000000.{}' | openssl dgst -sha256 -hmac secret`.
        assert_eq!(
            signature(b"secret", 1_700_000_000, b"{}"),
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }

    #[test]
    fn stale_malformed_and_altered_posts_are_refused() {
        let header = signature(b"k", 1000, b"body");
        assert_eq!(verify(b"k", &header, b"body", 1100, 300), Ok(()));
        assert_eq!(
            verify(b"k", &header, b"body", 1400, 300),
            Err(VerifyError::Stale(400))
        );
        assert_eq!(
            verify(b"k", &header, b"bodY", 1000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, b"body", 1000, 300),
            Err(VerifyError::Mismatch)
        );
        for bad in ["", "t=1000", "v1=00", "t=x,v1=00", "t=1000,v1=0g"] {
            assert_eq!(
                verify(b"k", bad, b"body", 1000, 300),
                Err(VerifyError::Malformed),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn every_signature_verifies_and_no_other_body_does(
            secret in proptest::collection::vec(any::<u8>(), 1..64),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            t in 0u64..4_000_000_000,
            flip in any::<prop::sample::Index>(),
        ) {
            let header = signature(&secret, t, &body);
            prop_assert_eq!(verify(&secret, &header, &body, t, 0), Ok(()));
            if !body.is_empty() {
                let mut altered = body.clone();
                altered[flip.index(body.len())] ^= 1;
                prop_assert_eq!(verify(&secret, &header, &altered, t, 0), Err(VerifyError::Mismatch));
            }
        }
    }
}
