//! Hashed secrets: API keys and SMTP passwords are stored as
//! `sha256$<salt hex>$<hex of SHA-256(salt || secret)>`.
//!
//! Salted SHA-256 (not a slow password hash) because the secrets are
//! generated, high-entropy tokens that are checked on every request; see
//! docs/ingest.md.

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

/// A parsed `sha256$salt$digest` entry.
#[derive(Debug, Clone)]
pub struct SecretHash {
    salt: Vec<u8>,
    digest: Vec<u8>,
}

impl SecretHash {
    /// Parses the stored form; the error names what is wrong.
    pub fn parse(stored: &str) -> Result<Self, String> {
        let mut parts = stored.split('$');
        let (Some("sha256"), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("expected `sha256$<salt hex>$<digest hex>`".into());
        };
        let salt = from_hex(salt).ok_or("salt is not hex")?;
        let digest = from_hex(hash).ok_or("digest is not hex")?;
        if digest.len() != 32 {
            return Err("digest must be 32 bytes (64 hex digits)".into());
        }
        Ok(Self { salt, digest })
    }

    /// True when `secret` hashes to this entry (constant-time comparison).
    pub fn verify(&self, secret: &str) -> bool {
        let actual = salted(&self.salt, secret);
        actual
            .iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Hashes `secret` with a fresh random salt into the stored form.
pub fn hash_secret(secret: &str) -> String {
    let mut salt = [0u8; 16];
    // A predictable salt would be worse than no answer: refuse instead.
    SystemRandom::new()
        .fill(&mut salt)
        .expect("the operating system's random source failed; cannot make a salt");
    format!(
        "sha256${}${}",
        to_hex(&salt),
        to_hex(&salted(&salt, secret))
    )
}

fn salted(salt: &[u8], secret: &str) -> Vec<u8> {
    let mut input = Vec::with_capacity(salt.len() + secret.len());
    input.extend_from_slice(salt);
    input.extend_from_slice(secret.as_bytes());
    digest(&SHA256, &input).as_ref().to_vec()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_secret_verifies_and_others_do_not() {
        let stored = hash_secret("key-123");
        let hash = SecretHash::parse(&stored).expect("parses");
        assert!(hash.verify("key-123"));
        assert!(!hash.verify("key-124"));
        assert!(!hash.verify(""));
    }

    #[test]
    fn same_secret_gets_different_salts() {
        assert_ne!(hash_secret("x"), hash_secret("x"));
    }

    #[test]
    fn malformed_entries_are_rejected() {
        assert!(SecretHash::parse("plain").is_err());
        assert!(SecretHash::parse("sha256$zz$00").is_err());
        assert!(SecretHash::parse("sha256$00$00").is_err());
    }
}
