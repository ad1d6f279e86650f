//! TLS for QUIC: the verifier's self-signed certificate, and the client's trust in it.
//!
//! On first start the verifier generates a certificate (rcgen, ECDSA P-256) for
//! `localhost`, `127.0.0.1`, `::1` and any names it is given, and writes `cert.pem`
//! and `key.pem` into its certificate directory. Later starts reuse them, so a client
//! pins the certificate once with `--ca DIR/cert.pem`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{ALPN, ProtocolError};

/// The verifier's certificate and private key.
#[derive(Debug)]
pub struct ServerIdentity {
    /// The certificate chain (one self-signed certificate).
    pub cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Where the certificate is, for clients to pin.
    pub cert_path: PathBuf,
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Tls(format!("{what}: {e}"))
}

fn io_err(path: &Path, source: std::io::Error) -> ProtocolError {
    ProtocolError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl ServerIdentity {
    /// Loads `dir/cert.pem` and `dir/key.pem`, or creates both (and `dir`) if neither
    /// exists. `extra_names` are added to the certificate's subject names on creation.
    pub fn load_or_create(dir: &Path, extra_names: &[String]) -> Result<Self, ProtocolError> {
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        if !cert_path.exists() && !key_path.exists() {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            names.extend(extra_names.iter().cloned());
            names.dedup();
            let ck = rcgen::generate_simple_self_signed(names)
                .map_err(|e| tls_err("generating a certificate", e))?;
            write_atomic(&key_path, ck.signing_key.serialize_pem().as_bytes(), true)?;
            write_atomic(&cert_path, ck.cert.pem().as_bytes(), false)?;
        }
        let cert_chain = CertificateDer::pem_file_iter(&cert_path)
            .map_err(|e| tls_err(&format!("reading {}", cert_path.display()), e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_err(&format!("reading {}", cert_path.display()), e))?;
        if cert_chain.is_empty() {
            return Err(tls_err(
                &cert_path.display().to_string(),
                "no certificate in file",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| tls_err(&format!("reading {}", key_path.display()), e))?;
        Ok(Self {
            cert_chain,
            key,
            cert_path,
        })
    }

    /// A QUIC server configuration with this identity and ALPN `tandem/1`.
    pub fn quic_server_config(&self) -> Result<quinn::ServerConfig, ProtocolError> {
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err("TLS 1.3", e))?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| tls_err("server certificate", e))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = QuicServerConfig::try_from(tls).map_err(|e| tls_err("QUIC server", e))?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
    }
}

/// A QUIC client configuration that trusts the certificates in `ca_file` (PEM) and
/// speaks ALPN `tandem/1`.
pub fn quic_client_config(ca_file: &Path) -> Result<quinn::ClientConfig, ProtocolError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| tls_err(&format!("reading --ca {}", ca_file.display()), e))?;
    for cert in certs {
        let cert = cert.map_err(|e| tls_err(&format!("reading --ca {}", ca_file.display()), e))?;
        roots
            .add(cert)
            .map_err(|e| tls_err(&format!("certificate in {}", ca_file.display()), e))?;
    }
    if roots.is_empty() {
        return Err(tls_err(
            &ca_file.display().to_string(),
            "no certificate in file",
        ));
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS 1.3", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| tls_err("QUIC client", e))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Writes `path` through a `.partial` file and a rename; `private` makes it owner-only.
fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), ProtocolError> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| io_err(&tmp, e))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err(&tmp, e))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}
