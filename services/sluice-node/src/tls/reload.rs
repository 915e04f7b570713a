//! A server certificate that follows its files: certificate managers
//! (cert-manager, certbot, a Kubernetes Secret volume) replace the files in
//! place, and the next handshake after a change uses the new pair without a
//! restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{TlsError, provider, read_chain, read_key};

/// How often a handshake may look at the files' modification times.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies one version of a file: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

/// A certificate and key read from two PEM files, read again when either
/// file's modification time or length changes (looked at, at most once a
/// second, when a handshake needs the certificate). A new pair that does
/// not load (half-written, key not matching) is logged and the previous
/// one kept.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    setting: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    key: Arc<CertifiedKey>,
    stamps: [Stamp; 2],
    checked: Instant,
}

impl ReloadingCert {
    /// Loads the pair now; `setting` prefixes the setting names in errors
    /// (`tls` gives `tls.cert_file`).
    pub fn load(cert_file: &Path, key_file: &Path, setting: &str) -> Result<Self, TlsError> {
        let this = Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            setting: setting.to_owned(),
            state: Mutex::new(State {
                key: Arc::new(load_pair(cert_file, key_file, setting)?),
                stamps: [stamp(cert_file), stamp(key_file)],
                checked: Instant::now(),
            }),
        };
        Ok(this)
    }

    /// The pair to present now, read again first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() < CHECK_EVERY {
            return state.key.clone();
        }
        state.checked = Instant::now();
        let stamps = [stamp(&self.cert_file), stamp(&self.key_file)];
        if stamps == state.stamps {
            return state.key.clone();
        }
        match load_pair(&self.cert_file, &self.key_file, &self.setting) {
            Ok(key) => {
                tracing::info!(file = %self.cert_file.display(), "TLS certificate reloaded");
                state.key = Arc::new(key);
                state.stamps = stamps;
            }
            Err(err) => tracing::warn!(
                %err,
                "TLS certificate files changed but do not load; still presenting the previous \
                 certificate (fix the files; they are tried again on the next change)"
            ),
        }
        state.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reads and checks one pair: the key must be the certificate's.
fn load_pair(cert_file: &Path, key_file: &Path, setting: &str) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(cert_file, &format!("{setting}.cert_file"))?;
    let key = read_key(key_file, &format!("{setting}.key_file"))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|err| {
        TlsError(format!(
            "{setting}.key_file {} does not fit {setting}.cert_file {}: {err}",
            key_file.display(),
            cert_file.display()
        ))
    })
}
