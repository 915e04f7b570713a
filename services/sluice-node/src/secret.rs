//! Hashed secrets, in one of two stored forms:
//!
//! - `sha256$<salt hex>$<hex of SHA-256(salt || secret)>` for API keys:
//!   generated, high-entropy tokens checked on every request, where a slow
//!   hash would only cost time;
//! - an Argon2id PHC string (`$argon2id$v=19$...`) for SMTP passwords, which
//!   people choose and which a leaked config must not give away cheaply.
//!
//! Both forms are accepted wherever a hash is configured; see docs/ingest.md.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

/// A parsed stored secret.
#[derive(Debug, Clone)]
pub enum SecretHash {
    /// `sha256$salt$digest`.
    Sha256 { salt: Vec<u8>, digest: Vec<u8> },
    /// An Argon2 PHC string, kept as text.
    Argon2(String),
}

impl SecretHash {
    /// Parses the stored form; the error names what is wrong.
    pub fn parse(stored: &str) -> Result<Self, String> {
        if stored.starts_with("$argon2") {
            let phc = PasswordHash::new(stored)
                .map_err(|e| format!("not a valid Argon2 PHC string: {e}"))?;
            if phc.salt.is_none() || phc.hash.is_none() {
                return Err("the Argon2 PHC string has no salt or no hash".into());
            }
            return Ok(Self::Argon2(stored.to_owned()));
        }
        Self::parse_sha256(stored)
    }

    fn parse_sha256(stored: &str) -> Result<Self, String> {
        let mut parts = stored.split('$');
        let (Some("sha256"), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("expected `sha256$<salt hex>$<digest hex>` or an Argon2 PHC string".into());
        };
        let salt = from_hex(salt).ok_or("salt is not hex")?;
        let digest = from_hex(hash).ok_or("digest is not hex")?;
        if digest.len() != 32 {
            return Err("digest must be 32 bytes (64 hex digits)".into());
        }
        Ok(Self::Sha256 { salt, digest })
    }

    /// True when `secret` hashes to this entry (constant-time comparison).
    pub fn verify(&self, secret: &str) -> bool {
        match self {
            Self::Sha256 { salt, digest } => {
                let actual = salted(salt, secret);
                actual
                    .iter()
                    .zip(digest)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
            Self::Argon2(stored) => verify_argon2(stored, secret),
        }
    }
}

thread_local! {
    /// Argon2's working memory (19 MiB at the default cost), kept per
    /// thread and reused: allocating and freeing it per check left the
    /// allocator holding ~19 MiB more after each check on a new arena
    /// (seen as 190 MiB of growth after a dozen failed SMTP logins).
    static ARGON2_MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Checks `secret` against an Argon2 PHC string, in this thread's reused
/// working memory; the comparison is constant-time.
fn verify_argon2(stored: &str, secret: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let hashed = ARGON2_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        memory.resize(blocks, argon2::Block::default());
        argon2.hash_password_into_with_memory(
            secret.as_bytes(),
            salt,
            &mut out,
            &mut memory[..blocks],
        )
    });
    // `Output`'s equality is constant-time.
    hashed.is_ok()
        && argon2::password_hash::Output::new(&out).is_ok_and(|actual| actual == expected)
}

/// Hashes a password chosen by a person (SMTP users) with Argon2id and a
/// random salt, into a PHC string.
pub fn hash_password(password: &str) -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source failed; cannot make a salt");
    let salt = SaltString::encode_b64(&bytes).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters accepts any password")
        .to_string()
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

/// `bytes` as lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of hex `text` (either case); `None` unless it is whole bytes
/// of hex digits.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The token kept in `file`, surrounding blanks trimmed; the error says
/// what is wrong with the file (not its content); callers name the file.
pub fn read_token_file(file: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let token = text.trim();
    if token.is_empty() {
        return Err("the file is empty".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without blanks".into());
    }
    Ok(token.to_owned())
}

/// Whether a token a caller sent is the expected one, compared by SHA-256
/// digest so the time taken says nothing about how much of it matched.
pub fn same_token(given: &str, expected: &str) -> bool {
    let digest = |text: &str| ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest(given).as_ref() == digest(expected).as_ref()
}

/// Creates `dir` (and its parents) when missing and makes it readable by
/// its owner only (`0700`): data directories hold messages, the ledger and
/// generated secrets. A directory that was open to others is narrowed, with
/// a warning naming it and its old mode.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        tracing::warn!(
            dir = %dir.display(),
            old_mode = format!("{mode:o}"),
            "the data directory was open to other users; narrowed to its owner (it holds messages and secrets)"
        );
    }
    Ok(())
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
    fn argon2_passwords_verify_and_others_do_not() {
        let stored = hash_password("correct horse");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        let hash = SecretHash::parse(&stored).expect("parses");
        assert!(hash.verify("correct horse"));
        assert!(!hash.verify("correct horse "));
        assert!(SecretHash::parse("$argon2id$garbage").is_err());
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

    #[test]
    fn data_directories_are_made_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let fresh = root.path().join("a/b");
        private_dir(&fresh).expect("created");
        let mode = |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode();
        assert_eq!(mode(&fresh) & 0o777, 0o700);
        let open = root.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&open).expect("narrowed");
        assert_eq!(mode(&open) & 0o777, 0o700);
    }
}
