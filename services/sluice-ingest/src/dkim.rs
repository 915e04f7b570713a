//! DKIM signing (RSA-SHA256 through OpenSSL, Ed25519-SHA256 through ring;
//! relaxed/relaxed) with per-domain keys, on a fixed set of signing threads
//! ([`pool`]) so that async workers never stall on RSA.
//!
//! Workaround: mail-auth 0.13.3 hashes relaxed bodies that end in
//! whitespace-only lines wrongly. Relaxed canonicalization ignores such lines
//! anyway, so they are dropped from the body before signing; the signed and
//! the published bytes are the same.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub(crate) mod pool;
mod rsa;

use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use crate::IngestError;
use crate::config::{DomainConfig, TenantConfig};
pub use rsa::OpensslRsa;

/// Headers covered by every signature (absent ones are over-signed).
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
];

/// Messages of one submission signed as one job (a larger submission is
/// spread over several threads, chunk by chunk).
const CHUNK: usize = 32;

/// A loaded key and the configuration it came from (to reuse it while that
/// configuration stays the same).
pub(crate) type KeyCache = HashMap<String, (DomainConfig, Arc<DomainKey>)>;

pub(crate) enum DomainKey {
    Rsa(DkimSigner<OpensslRsa, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

impl DomainKey {
    fn sign(&self, message: &[u8]) -> Result<String, mail_auth::Error> {
        Ok(match self {
            Self::Rsa(signer) => signer.sign(message)?.to_header(),
            Self::Ed25519(signer) => signer.sign(message)?.to_header(),
        })
    }
}

/// The signing keys of every configured domain and the signing threads.
#[derive(Clone)]
pub struct DkimSigners {
    keys: Arc<KeyCache>,
    pool: Arc<pool::Pool>,
}

impl std::fmt::Debug for DkimSigners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigners")
            .field("domains", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl DkimSigners {
    /// Loads every domain's key; the error names the tenant and domain.
    pub fn from_config(tenants: &[TenantConfig], threads: usize) -> Result<Self, IngestError> {
        let mut keys = KeyCache::new();
        for tenant in tenants {
            keys.extend(tenant_keys(tenant, &KeyCache::new())?);
        }
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        Ok(Self {
            keys: Arc::new(keys),
            pool: Arc::new(pool::Pool::new(threads)),
        })
    }

    /// Signers with `keys` that share this one's signing threads.
    pub(crate) fn with_keys(&self, keys: KeyCache) -> Self {
        Self {
            keys: Arc::new(keys),
            pool: self.pool.clone(),
        }
    }

    /// The loaded keys.
    pub(crate) fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// Signs every message with `domain`'s key (unchanged when the domain has
    /// none) on the signing threads, [`CHUNK`] messages per job, the jobs
    /// running side by side; waits (without blocking a worker) while every
    /// thread is busy and the queue is full.
    pub async fn sign_all(
        &self,
        domain: &str,
        mut messages: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, IngestError> {
        let Some((_, key)) = self.keys.get(&domain.to_ascii_lowercase()).cloned() else {
            return Ok(messages);
        };
        let mut jobs = Vec::new();
        while !messages.is_empty() {
            let rest = messages.split_off(messages.len().min(CHUNK));
            let chunk = std::mem::replace(&mut messages, rest);
            let key = key.clone();
            jobs.push(self.pool.run(move || {
                chunk
                    .into_iter()
                    .map(|message| sign_one(&key, message))
                    .collect::<Result<Vec<_>, _>>()
            }));
        }
        let closed = |_| IngestError::Internal("the signing threads are gone".into());
        let chunks = futures::future::try_join_all(jobs).await.map_err(closed)?;
        let mut signed = Vec::new();
        for chunk in chunks {
            signed.extend(chunk?);
        }
        Ok(signed)
    }
}

/// The keys of `tenant`'s domains, reusing `cache` entries whose
/// configuration is unchanged; the error names the tenant and domain.
pub(crate) fn tenant_keys(
    tenant: &TenantConfig,
    cache: &KeyCache,
) -> Result<KeyCache, IngestError> {
    let mut keys = KeyCache::new();
    for domain in &tenant.domains {
        let Some(file) = &domain.dkim_private_key_file else {
            continue;
        };
        let name = domain.name.to_ascii_lowercase();
        if let Some(cached) = cache.get(&name).filter(|(config, _)| config == domain) {
            keys.insert(name, cached.clone());
            continue;
        }
        let field = format!("tenants.{}.domains.{}", tenant.name, domain.name);
        let key = load_key(&domain.dkim_algorithm, file)
            .map_err(|reason| IngestError::Config(format!("{field}: {reason}")))?;
        let key = build(key, &domain.name, &domain.dkim_selector);
        keys.insert(name, (domain.clone(), Arc::new(key)));
    }
    Ok(keys)
}

fn sign_one(key: &DomainKey, mut message: Vec<u8>) -> Result<Vec<u8>, IngestError> {
    drop_trailing_blank_lines(&mut message);
    let header = key
        .sign(&message)
        .map_err(|err| IngestError::Internal(format!("DKIM signing failed: {err}")))?;
    let mut out = Vec::with_capacity(header.len() + message.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&message);
    Ok(out)
}

enum LoadedKey {
    Rsa(OpensslRsa),
    Ed25519(Ed25519Key),
}

fn load_key(algorithm: &str, file: &Path) -> Result<LoadedKey, String> {
    let pem = std::fs::read(file).map_err(|err| format!("reading {}: {err}", file.display()))?;
    match algorithm {
        "rsa-sha256" => OpensslRsa::from_pem(&pem)
            .map(LoadedKey::Rsa)
            .map_err(|err| format!("{}: {err}", file.display())),
        "ed25519-sha256" => match PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|err| format!("{} is not a PEM private key: {err}", file.display()))?
        {
            PrivateKeyDer::Pkcs8(pkcs8) => {
                Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der())
                    .map(LoadedKey::Ed25519)
                    .map_err(|err| format!("not an Ed25519 key: {err}"))
            }
            _ => Err("Ed25519 keys must be PKCS#8".into()),
        },
        other => Err(format!(
            "dkim_algorithm {other:?} is not `rsa-sha256` or `ed25519-sha256`"
        )),
    }
}

fn build(key: LoadedKey, domain: &str, selector: &str) -> DomainKey {
    macro_rules! signer {
        ($key:expr) => {
            DkimSigner::from_key($key)
                .domain(domain)
                .selector(selector)
                .headers(SIGNED_HEADERS.iter().copied())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed)
        };
    }
    match key {
        LoadedKey::Rsa(key) => DomainKey::Rsa(signer!(key)),
        LoadedKey::Ed25519(key) => DomainKey::Ed25519(signer!(key)),
    }
}

/// Drops whitespace-only lines at the end of the body (keeping the CRLF of
/// the last line with content). Relaxed body canonicalization ignores them.
pub fn drop_trailing_blank_lines(message: &mut Vec<u8>) {
    let Some(start) = message.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let start = start + 4;
    let body = &message[start..];
    let mut end = body.len();
    loop {
        let content = &body[..end];
        let line_end = content.strip_suffix(b"\r\n").map_or(end, <[u8]>::len);
        let line_start = content[..line_end]
            .windows(2)
            .rposition(|w| w == b"\r\n")
            .map_or(0, |p| p + 2);
        let blank = content[line_start..line_end]
            .iter()
            .all(|b| *b == b' ' || *b == b'\t');
        if !blank || end == 0 {
            break;
        }
        end = line_start;
    }
    message.truncate(start + end);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trimmed(body: &str) -> String {
        let mut message = format!("A: b\r\n\r\n{body}").into_bytes();
        drop_trailing_blank_lines(&mut message);
        String::from_utf8(message).expect("utf8")[8..].to_owned()
    }

    #[test]
    fn trailing_whitespace_lines_are_dropped() {
        assert_eq!(trimmed("end\r\n  \r\n"), "end\r\n");
        assert_eq!(trimmed("end\r\n\t\r\n\r\n"), "end\r\n");
        assert_eq!(trimmed("end\r\n \t \r\n\r\n  "), "end\r\n");
        assert_eq!(trimmed("a\r\n \r\nb\r\n"), "a\r\n \r\nb\r\n");
        assert_eq!(trimmed("end"), "end");
        assert_eq!(trimmed("end  \r\n"), "end  \r\n");
        assert_eq!(trimmed(" \r\n\r\n"), "");
        assert_eq!(trimmed(""), "");
    }
}
