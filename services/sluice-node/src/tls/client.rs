//! The client side: channels to other Sluice services.

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::{TlsConfig, TlsError};

/// A channel endpoint for `address`. `https://` addresses verify the server
/// against `tls.ca_file` (or the webpki roots) and present `tls.cert_file`
/// and `tls.key_file`, when set, as the client certificate (for listeners
/// with `tls.client_ca_file`). `http://` addresses are plaintext.
pub fn endpoint(address: &str, tls: &TlsConfig) -> Result<Endpoint, TlsError> {
    let endpoint = Endpoint::from_shared(address.to_owned())
        .map_err(|err| TlsError(format!("`{address}` is not a service address: {err}")))?;
    if !address.starts_with("https://") {
        return Ok(endpoint);
    }
    endpoint
        .tls_config(client_config(tls)?)
        .map_err(|err| TlsError(format!("TLS for {address}: {err}")))
}

/// The client TLS configuration `tls` describes. The files are parsed here
/// as well as read for tonic, which parses them only when it connects: a
/// bad file is then named (with its setting) when the node starts.
fn client_config(tls: &TlsConfig) -> Result<ClientTlsConfig, TlsError> {
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_file {
        Some(file) => {
            super::read_chain(file, "tls.ca_file")?;
            let pem = read(file, "tls.ca_file")?;
            config.ca_certificate(Certificate::from_pem(pem))
        }
        None => config.with_webpki_roots(),
    };
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        super::read_chain(cert, "tls.cert_file")?;
        super::read_key(key, "tls.key_file")?;
        let identity = Identity::from_pem(read(cert, "tls.cert_file")?, read(key, "tls.key_file")?);
        config = config.identity(identity);
    }
    Ok(config)
}

fn read(path: &std::path::Path, setting: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|err| TlsError(format!("{setting} {}: {err}", path.display())))
}
