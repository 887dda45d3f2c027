//! TLS on the listening port: the certificate and key read from PEM files,
//! read again on SIGHUP, and the step that turns an accepted TCP connection
//! into a [`Stream::Tls`] (or refuses it).
//!
//! A reload swaps the certificate under a resolver that every handshake
//! asks, rather than building a new acceptor: the rustls configuration (and
//! its session-resumption cache) stays, new handshakes see the new
//! certificate at once, and connections already open are not touched (they
//! keep the keys they negotiated). A reload that fails leaves the previous
//! certificate in use, so a half-written renewal never takes the server
//! down.
//!
//! No ALPN is offered: every client speaks HTTP/1.1 here (WebSocket
//! upgrades included), and a client that proposes `h2` falls back to it.

use crate::config::TlsFiles;
use crate::ws::Stream;
use std::io;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, InconsistentKeys};
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key cannot be used. Each message names the file;
/// none quotes its contents (a key file's lines are secret).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} file {path}: {source}")]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("the TLS {what} file {path} is not valid PEM: {reason}")]
    Pem {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong, in words.
        reason: &'static str,
    },
    /// The certificate file has no certificate in it.
    #[error("the TLS certificate file {path} holds no certificate: it must be PEM text with \"-----BEGIN CERTIFICATE-----\" blocks, the server's first (e.g. Let's Encrypt's fullchain.pem)")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// The key file has no private key in it.
    #[error("the TLS key file {path} holds no private key: it must be PEM text with a \"-----BEGIN PRIVATE KEY-----\" (PKCS#8), \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block (e.g. Let's Encrypt's privkey.pem)")]
    NoKey {
        /// The file.
        path: String,
    },
    /// The key is of a kind rustls cannot sign with.
    #[error("the TLS key in {path} cannot be used: {reason}")]
    Key {
        /// The file.
        path: String,
        /// rustls's reason.
        reason: String,
    },
    /// The certificate cannot be parsed.
    #[error("the TLS certificate in {path} cannot be used: {reason}")]
    Certificate {
        /// The file.
        path: String,
        /// rustls's reason.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("the TLS key in {key} does not belong to the certificate in {cert} (is one of them left from an older certificate?)")]
    Mismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// rustls refused its own defaults (not expected with the ring provider).
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
    /// The SIGHUP handler could not be installed.
    #[error("cannot listen for SIGHUP (which reloads the TLS certificate): {0}")]
    Signal(io::Error),
}

/// The certificate every new handshake gets; replaced by a reload.
#[derive(Debug)]
struct CurrentCertificate(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The server's TLS: its files, the certificate in use, and the rustls
/// configuration every handshake runs with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tls {
    files: Arc<TlsFiles>,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCertificate>,
    config: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// Reads the certificate and key, or says what is wrong with them.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        // Named rather than the process default: the server does not
        // depend on what else in the process installed one.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = Arc::new(CurrentCertificate(RwLock::new(Arc::new(certified_key(
            files, &provider,
        )?))));
        let config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        Ok(Tls {
            files: Arc::new(files.clone()),
            provider,
            current,
            config: Arc::new(config),
        })
    }

    /// The files this was loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again; from now on new connections get what they
    /// hold. On an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(certified_key(&self.files, &self.provider)?);
        *self
            .current
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// Runs the TLS handshake on an accepted connection, all of it within
    /// `within` (the header read timeout: a client that connects and never
    /// says hello is dropped like one that never sends its request). A
    /// client that speaks plain HTTP is answered in plain text (see
    /// [`refuse_plaintext`]). `None` when the connection is not to be
    /// served.
    pub(crate) async fn accept(&self, tcp: TcpStream, within: Duration) -> Option<Stream> {
        /// The first byte of every TLS connection: a handshake record.
        const HANDSHAKE_RECORD: u8 = 0x16;
        let deadline = Instant::now() + within;
        let mut first = [0u8; 1];
        match timeout_at(deadline, tcp.peek(&mut first)).await {
            Ok(Ok(1)) => {}
            // Closed, failed, or silent for too long.
            _ => return None,
        }
        if first[0] != HANDSHAKE_RECORD {
            tracing::debug!("not TLS on the TLS port: answered in plain text");
            refuse_plaintext(tcp).await;
            return None;
        }
        let handshake = TlsAcceptor::from(self.config.clone()).accept(tcp);
        match timeout_at(deadline, handshake).await {
            Ok(Ok(tls)) => Some(Stream::from(tls)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("TLS handshake not done within the header read timeout");
                None
            }
        }
    }
}

/// Reloads the certificate whenever the process gets SIGHUP, until
/// shutdown. The handler is installed before this returns, so a SIGHUP
/// sent once the server is serving never takes the default action (which
/// would end the process).
#[cfg(unix)]
pub(crate) fn reload_on_hangup(
    tls: Tls,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), TlsError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).map_err(TlsError::Signal)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = hangups.recv() => if got.is_none() { return },
                _ = shutdown.wait_for(|s| *s) => return,
            }
            match tls.reload() {
                Ok(()) => tracing::info!(
                    cert = %tls.files.cert.display(),
                    key = %tls.files.key.display(),
                    "SIGHUP: TLS certificate reloaded; new connections get it, open ones stay"
                ),
                Err(e) => tracing::error!(
                    "SIGHUP: TLS certificate not reloaded, the previous one stays in use: {e}"
                ),
            }
        }
    });
    Ok(())
}

/// On other systems there is no SIGHUP; the certificate is read at start.
#[cfg(not(unix))]
pub(crate) fn reload_on_hangup(_: Tls, _: watch::Receiver<bool>) -> Result<(), TlsError> {
    Ok(())
}

/// Answers a plain-HTTP request (`http://`, `ws://`) on the TLS port with a
/// plain-text 400 that says what to use, instead of a TLS alert the client
/// cannot read. What the client sent is read out after the answer (within
/// a second): closing with unread input resets the connection, which can
/// destroy the answer before the client reads it.
async fn refuse_plaintext(mut tcp: TcpStream) {
    const BODY: &str = r#"{"error":"this port speaks TLS: use https:// or wss://"}"#;
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = timeout(Duration::from_secs(1), async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

/// Reads the certificate chain and key and checks that they belong together.
fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_path = shown(&files.cert);
    let key_path = shown(&files.key);
    let pem_error = |what, path: &str, e| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason: pem_reason(e),
    };
    let chain = CertificateDer::pem_slice_iter(&read(&files.cert, "certificate")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", &cert_path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path });
    }
    let key = match PrivateKeyDer::from_pem_slice(&read(&files.key, "key")?) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => return Err(TlsError::NoKey { path: key_path }),
        Err(e) => return Err(pem_error("key", &key_path, e)),
    };
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // A key whose public half rustls cannot derive is taken on trust;
        // the handshake would fail visibly if it were wrong.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: cert_path,
            key: key_path,
        }),
        Err(e) => Err(TlsError::Certificate {
            path: cert_path,
            reason: e.to_string(),
        }),
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: shown(path),
        source,
    })
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// What is wrong with a PEM file, in words that quote none of it (the
/// parser's own messages can carry a line of the file).
fn pem_reason(e: pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a \"-----BEGIN\" block has no \"-----END\" line",
        pem::Error::IllegalSectionStart { .. } => "a \"-----BEGIN\" line is malformed",
        pem::Error::Base64Decode(_) => "a block is not valid base64",
        pem::Error::SectionTooLarge => "a block is too large",
        _ => "it cannot be parsed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    fn dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("whosin-tls-unit-{}-{name}", std::process::id()))
    }

    #[test]
    fn errors_name_the_file_and_what_is_wrong_without_quoting_it() {
        let d = dir("errors");
        let missing = TlsFiles {
            cert: d.join("nope.pem"),
            key: d.join("nope.key"),
        };
        let e = Tls::load(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.pem") && e.contains("cannot read"), "{e}");

        let f = files(&d, "not a certificate\n", "");
        let e = Tls::load(&f).unwrap_err().to_string();
        assert!(
            e.contains("cert.pem") && e.contains("holds no certificate"),
            "{e}"
        );

        let secret_line = "-----BEGIN CERTIFICATE-----\nc2VjcmV0LWxpbmU=\n";
        let f = files(&d, secret_line, "");
        let e = Tls::load(&f).unwrap_err().to_string();
        assert!(
            e.contains("cert.pem") && e.contains("no \"-----END\""),
            "{e}"
        );
        assert!(!e.contains("c2VjcmV0"), "quotes the file: {e}");

        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let f = files(
            &d,
            garbage,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        );
        let e = Tls::load(&f).unwrap_err().to_string();
        assert!(
            e.contains("key.pem") && e.contains("holds no private key"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
