//! `[server.tls]`: HTTPS without a proxy. The certificate and key are read
//! at start (a broken pair stops the start), then re-read when either file
//! changes and on SIGHUP. Each new connection takes the configuration
//! current when it arrives, so a reload never touches connections already
//! open; a pair that does not load is logged and the previous one kept.

use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[server.tls] cert_file {path}: {problem}")]
    Certificate { path: String, problem: String },
    #[error("[server.tls] key_file {path}: {problem}")]
    Key { path: String, problem: String },
    #[error("[server.tls]: the certificate and key do not make a TLS configuration: {0}")]
    Config(String),
}

pub struct Tls {
    files: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    pub fn load(files: TlsConfig) -> Result<Self, TlsError> {
        let config = server_config(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// The acceptor for a connection arriving now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Re-reads the pair; on failure the current one stays.
    pub fn reload(&self) {
        match server_config(&self.files) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                tracing::info!(cert = %self.files.cert_file.display(), "TLS certificate reloaded");
            }
            // Not retried until a file changes again (or SIGHUP).
            Err(e) => tracing::error!("{e}; still serving the previous certificate"),
        }
    }

    /// Reloads within seconds whenever the certificate or key file changes.
    pub(crate) fn watch_files(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let tls = self.clone();
        let paths = vec![self.files.cert_file.clone(), self.files.key_file.clone()];
        crate::file_watch::spawn(paths, shutdown, move || tls.reload());
    }
}

fn server_config(files: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let cert_error = |problem: String| TlsError::Certificate {
        path: files.cert_file.display().to_string(),
        problem,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("no PEM certificate in the file".into()));
    }
    // The key's own errors never include its bytes.
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|e| TlsError::Key {
        path: files.key_file.display().to_string(),
        problem: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
