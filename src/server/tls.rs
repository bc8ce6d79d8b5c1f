//! TLS on the listener (`--tls-cert`, `--tls-key`), through the rustls the client side already
//! uses, on its ring provider: TLS 1.2 and 1.3 only, ALPN `http/1.1`. The certificate and key
//! are read at start and again on [`Tls::reload`] (a renewal on disk, SIGHUP): new connections
//! use the new pair, connections already open keep theirs, and a pair that does not load is
//! refused with its reason while the old one serves on.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use super::TlsFiles;

/// A certificate chain or key file larger than this is not one.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The listener's TLS configuration, swapped whole on a reload.
pub(super) struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// What the files held when they last loaded, to tell a renewal from nothing.
    loaded: RwLock<Vec<u8>>,
}

impl Tls {
    pub(super) fn load(files: &TlsFiles) -> Result<Tls, String> {
        let (config, bytes) = server_config(files)?;
        Ok(Tls {
            files: files.clone(),
            current: RwLock::new(Arc::new(config)),
            loaded: RwLock::new(bytes),
        })
    }

    /// The configuration for a new connection.
    pub(super) fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the files again: `Ok(true)` when a new pair now serves, `Ok(false)` when they have
    /// not changed, an error (the old pair serving on) when the new one does not load.
    pub(super) fn reload(&self) -> Result<bool, String> {
        let (config, bytes) = server_config(&self.files)?;
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        if *loaded == bytes {
            return Ok(false);
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        *loaded = bytes;
        Ok(true)
    }
}

fn read(path: &Path, what: &str, flag: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| {
            format!(
                "{flag} {}: cannot read the {what}: {e}; point {flag} at a PEM file this user may read",
                path.display()
            )
        })?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "{flag} {}: larger than 1 MiB, not a PEM {what}",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The server configuration of a certificate (chain) and key file, and their bytes.
fn server_config(files: &TlsFiles) -> Result<(ServerConfig, Vec<u8>), String> {
    let cert_pem = read(&files.cert, "certificate", "--tls-cert")?;
    let key_pem = read(&files.key, "private key", "--tls-key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "--tls-cert {}: not a PEM certificate chain ({e:?}); give the certificate, then any intermediates (certbot's fullchain.pem)",
                files.cert.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: holds no certificate; give the certificate, then any intermediates (certbot's fullchain.pem)",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "--tls-key {}: not a PEM private key ({e:?}); give the key of the certificate (certbot's privkey.pem)",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "--tls-key {} does not go with --tls-cert {} ({e}); give the key the certificate was issued for",
                files.key.display(),
                files.cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut bytes = cert_pem;
    bytes.extend_from_slice(&key_pem);
    Ok((config, bytes))
}

/// A TLS connection over a socket: the handshake first, within `deadline` (a client that sends
/// half a ClientHello holds its connection no longer than an unfinished head would); `None`
/// when it does not complete (plain HTTP, an old protocol version: rustls has sent its alert).
pub(super) fn handshake(
    socket: super::stream::Socket,
    config: Arc<ServerConfig>,
    deadline: std::time::Instant,
) -> Option<super::stream::Stream> {
    use std::io::ErrorKind;
    let mut tls = rustls::ServerConnection::new(config).ok()?;
    let mut socket = socket;
    while tls.is_handshaking() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        let _ = socket.0.set_read_timeout(Some(left));
        let _ = socket.0.set_write_timeout(Some(left));
        match tls.complete_io(&mut socket) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return None,
        }
    }
    Some(super::stream::Stream::Tls(Box::new(
        rustls::StreamOwned::new(tls, socket),
    )))
}
