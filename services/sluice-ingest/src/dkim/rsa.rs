//! RSA-SHA256 DKIM signatures through OpenSSL's libcrypto: on this project's
//! 2-core machine it signs RSA-2048 about twice as fast as ring
//! (`dkim-bench`, docs/benchmarks.md), and signing is what bounds ingest
//! with DKIM on every message. mail-auth builds the header and the
//! canonical input; this key only hashes and signs it (PKCS#1 v1.5).

use mail_auth::common::crypto::{Algorithm, CryptoError, Sha256, SigningKey};
use mail_auth::common::headers::{Writable, Writer};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private};
use openssl::sign::Signer;

/// Shortest RSA key verifiers accept (RFC 8301 says 1024; 2048 is usual).
const MIN_BITS: u32 = 1024;

/// An RSA private key that signs DKIM headers with OpenSSL.
pub struct OpensslRsa(PKey<Private>);

impl OpensslRsa {
    /// The RSA key in `pem` (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let key = PKey::private_key_from_pem(pem)
            .map_err(|err| format!("not a PEM private key: {err}"))?;
        if key.id() != Id::RSA {
            return Err("not an RSA key (dkim_algorithm is rsa-sha256)".into());
        }
        if key.bits() < MIN_BITS {
            return Err(format!(
                "an RSA key of {} bits; verifiers refuse fewer than {MIN_BITS} (RFC 8301)",
                key.bits()
            ));
        }
        Ok(Self(key))
    }
}

/// Feeds what mail-auth writes into the signer, keeping the first error.
struct Feed<'a> {
    signer: Signer<'a>,
    failed: Option<ErrorStack>,
}

impl Writer for Feed<'_> {
    fn write(&mut self, buf: &[u8]) {
        if self.failed.is_none()
            && let Err(err) = self.signer.update(buf)
        {
            self.failed = Some(err);
        }
    }
}

fn failed(err: ErrorStack) -> mail_auth::Error {
    mail_auth::Error::Crypto(CryptoError::Library(err.to_string()))
}

impl SigningKey for OpensslRsa {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        let signer = Signer::new(MessageDigest::sha256(), &self.0).map_err(failed)?;
        let mut feed = Feed {
            signer,
            failed: None,
        };
        input.write(&mut feed);
        if let Some(err) = feed.failed {
            return Err(failed(err));
        }
        feed.signer.sign_to_vec().map_err(failed)
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::RsaSha256
    }
}
