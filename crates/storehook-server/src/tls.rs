//! `[server.tls]`: HTTPS without a proxy. The certificate and key are read
//! at start (a broken pair stops the start), then re-read when either file
//! changes and on SIGHUP. Each new connection takes the configuration
//! current when it arrives, so a reload never touches connections already
//! open; a pair that does not load is logged and the previous one kept.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

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
    /// The files' modification times when last loaded.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Tls {
    pub fn load(files: TlsConfig) -> Result<Self, TlsError> {
        let stamps = stamps(&files);
        let config = server_config(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(config)),
            loaded: Mutex::new(stamps),
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
        let stamps = stamps(&self.files);
        match server_config(&self.files) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
                tracing::info!(cert = %self.files.cert_file.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                // Not retried until a file changes again.
                *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
                tracing::error!("{e}; still serving the previous certificate");
            }
        }
    }

    /// Reloads when a file changed since the last load.
    fn reload_if_changed(&self) {
        let now = stamps(&self.files);
        let changed = *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) != now;
        if changed {
            self.reload();
        }
    }
}

fn stamps(files: &TlsConfig) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(&files.cert_file), modified(&files.key_file))
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

/// Notices replaced certificate files within seconds (ACME clients renew
/// by writing new files; not every deployment sends SIGHUP).
pub fn spawn_watcher(tls: Arc<Tls>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let tls = tls.clone();
            let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
        }
    });
}
