//! TLS on a listener: the server's certificate and key from PEM files, an
//! optional CA its clients' certificates must chain to, and the handshake of
//! each connection.
//!
//! - [`Tls`] holds the listener's rustls configuration. Every handshake takes
//!   the configuration current when it starts, so [`Tls::reload`] (on SIGHUP)
//!   serves new handshakes with new files while connections already open keep
//!   the session they have. A reload that fails keeps the configuration it
//!   would have replaced.
//! - [`Tls::accept`] runs one handshake within a deadline, inside the
//!   connection's own task: a client that stalls, sends garbage or speaks
//!   plain HTTP is dropped without holding up the accept loop.
//! - [`PeerCertificate`] names the verified client certificate of a mutual
//!   TLS connection by the SHA-256 of its DER encoding; [`WithPeer`] puts it
//!   in the extensions of every request hyper reads from that connection.
//!
//! rustls runs with its safe defaults over the `ring` provider: TLS 1.2 and
//! 1.3 (1.3 preferred), and ALPN `http/1.1`, the one protocol the listeners
//! speak.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

pub use tokio_rustls::server::TlsStream;

/// Where a listener's certificate, key and client CA are (`[tls]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate that chains to one of
    /// the CA certificates in this PEM file; a handshake without one fails.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration could not be built from its files. No variant
/// holds any byte of a key: a file is named by its path only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The certificate file holds no PEM certificate, or one that is not
    /// well formed.
    #[error("{}: no PEM certificate could be read from it", path.display())]
    NoCertificate { path: PathBuf },
    /// The key file holds no PEM private key, or one that is not well
    /// formed.
    #[error("{}: no PEM private key could be read from it", path.display())]
    NoKey { path: PathBuf },
    /// rustls refused the certificate and key: a key of an unsupported
    /// kind, or one that does not go with the certificate.
    #[error("{} and {}: {source}", cert.display(), key.display())]
    Refused {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    /// The client CA file holds no usable CA certificate.
    #[error("{}: {message}", path.display())]
    ClientCa { path: PathBuf, message: String },
}

/// A listener's TLS configuration, shared by its connections and swapped
/// whole by [`Tls::reload`]. Clones share it.
#[derive(Clone)]
pub struct Tls {
    /// The files the configuration is read from, again on every reload.
    files: Arc<TlsFiles>,
    /// The configuration new handshakes use. A handshake clones the `Arc`
    /// and lets go of the lock at once, so a reload never waits on one.
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Reads the files and builds the configuration.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = server_config(&files)?;
        Ok(Tls {
            files: Arc::new(files),
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// Reads the files again and serves new handshakes with what they hold
    /// now. Connections already open keep their session. On an error the
    /// configuration in use stays, and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// The files this configuration is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Runs the server's side of a handshake on `stream`, which must finish
    /// within `deadline`. Returns the TLS stream and, on a mutual TLS
    /// listener, the client's verified certificate. A handshake that fails
    /// or runs out of time is an error, and the connection is dropped.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        deadline: Duration,
    ) -> io::Result<(TlsStream<S>, Option<PeerCertificate>)> {
        let config = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
        let stream = tokio::time::timeout(deadline, handshake)
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake timed out")
            })??;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[_]>::first)
            .map(|leaf| PeerCertificate::of(leaf));
        Ok((stream, peer))
    }
}

/// The client certificate a mutual TLS connection was verified with, by the
/// SHA-256 of its DER encoding (its fingerprint). It is not secret.
///
/// On the API listener every request of such a connection carries it as a
/// request extension ([`WithPeer`] for the requests hyper reads).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCertificate {
    pub sha256: [u8; 32],
}

impl PeerCertificate {
    /// The fingerprint of the certificate `der`.
    pub fn of(der: &[u8]) -> Self {
        PeerCertificate {
            sha256: Sha256::digest(der).into(),
        }
    }
}

impl fmt::Display for PeerCertificate {
    /// Lower-case hex, as `openssl x509 -fingerprint -sha256` prints it
    /// without the colons.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sha256.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerCertificate({self})")
    }
}

/// A hyper service that inserts a connection's [`PeerCertificate`], when it
/// has one, into the extensions of every request before `inner` sees it.
#[derive(Clone)]
pub struct WithPeer<S> {
    inner: S,
    peer: Option<PeerCertificate>,
}

impl<S> WithPeer<S> {
    pub fn new(inner: S, peer: Option<PeerCertificate>) -> Self {
        WithPeer { inner, peer }
    }
}

impl<S, B> hyper::service::Service<hyper::Request<B>> for WithPeer<S>
where
    S: hyper::service::Service<hyper::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: hyper::Request<B>) -> Self::Future {
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(peer);
        }
        self.inner.call(request)
    }
}

/// The configuration the files describe.
fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certificates(&files.cert, || TlsError::NoCertificate {
        path: files.cert.clone(),
    })?;
    let key = read_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Refused {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let cas = read_certificates(path, || TlsError::ClientCa {
                path: path.clone(),
                message: "no PEM certificate could be read from it".into(),
            })?;
            for ca in cas {
                roots.add(ca).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Refused {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificates of a PEM file; `none` says why when it holds none
/// that can be read.
fn read_certificates(
    path: &Path,
    none: impl FnOnce() -> TlsError,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        _ => Err(none()),
    }
}

/// The private key of a PEM file. The file's bytes are wiped once read, and
/// a parse error is not passed on, since it may quote a line of the file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = Zeroizing::new(std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_the_sha256_of_the_der_in_hex() {
        let peer = PeerCertificate::of(b"abc");
        assert_eq!(
            peer.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(format!("{peer:?}"), format!("PeerCertificate({peer})"));
    }

    /// Answers each request with the peer certificate it carries.
    #[derive(Clone, Copy)]
    struct Echo;

    impl hyper::service::Service<hyper::Request<()>> for Echo {
        type Response = Option<PeerCertificate>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn call(&self, request: hyper::Request<()>) -> Self::Future {
            std::future::ready(Ok(request.extensions().get::<PeerCertificate>().copied()))
        }
    }

    #[test]
    fn every_request_of_a_connection_carries_its_peer_certificate() {
        use hyper::service::Service as _;
        let peer = PeerCertificate::of(b"client");
        let with = WithPeer::new(Echo, Some(peer));
        let without = WithPeer::new(Echo, None);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            for _ in 0..2 {
                let seen = with.call(hyper::Request::new(())).await.unwrap();
                assert_eq!(seen, Some(peer));
            }
            assert_eq!(without.call(hyper::Request::new(())).await.unwrap(), None);
        });
    }

    #[test]
    fn files_that_hold_no_certificate_or_key_are_named_without_their_content() {
        let dir = std::env::temp_dir().join(format!("keyward-net-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n").unwrap();
        let files = TlsFiles {
            cert: garbage.clone(),
            key: garbage.clone(),
            client_ca: None,
        };
        let e = Tls::load(files).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        let missing = TlsFiles {
            cert: dir.join("missing.pem"),
            key: garbage,
            client_ca: None,
        };
        assert!(matches!(
            Tls::load(missing).unwrap_err(),
            TlsError::Read { .. }
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
