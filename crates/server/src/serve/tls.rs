//! HTTPS: the certificate and key from `http.tls_cert` / `http.tls_key` (PEM), served with
//! rustls on the aws-lc-rs provider, read again on SIGHUP.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The certificate in use, replaced on reload.
#[derive(Debug, Clone)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl Tls {
    /// Loads `cert` and `key`; the error names the key (`http.tls_cert` or `http.tls_key`)
    /// and the file.
    pub fn load(cert: PathBuf, key: PathBuf) -> anyhow::Result<Tls> {
        let config = server_config(&cert, &key)?;
        Ok(Tls {
            cert,
            key,
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// What accepts the next connection: the certificate loaded last.
    pub(super) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Reads the files again on every SIGHUP; a file that does not load keeps the old
    /// certificate and logs why. Runs for the life of the server.
    pub(super) async fn reload_on_sighup(self) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("no certificate reload on SIGHUP: {e}");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            match server_config(&self.cert, &self.key) {
                Ok(config) => {
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
                    tracing::info!(cert = %self.cert.display(), "SIGHUP: TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::warn!("SIGHUP: keeping the old TLS certificate: {e:#}");
                }
            }
        }
    }
}

fn server_config(cert: &PathBuf, key: &PathBuf) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("http.tls_cert {}", cert.display()))?;
    if chain.is_empty() {
        bail!("http.tls_cert {}: no certificate in it", cert.display());
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("http.tls_key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .with_context(|| {
            format!(
                "http.tls_key {} does not go with http.tls_cert {}",
                key.display(),
                cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
