//! The accept loop: what one client may hold of the server before a request reaches a route.
//! A cap on open connections (past it, a new one is closed at once), a deadline for each
//! request's head that also closes idle keep-alive connections (hyper starts it whenever it
//! waits for a head), the TLS handshake under the same deadline, and the file-descriptor
//! limit raised to the hard limit so the cap, not the kernel, decides.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// How connections are accepted and held.
#[derive(Clone, Debug)]
pub struct Connections {
    /// Open connections at most; a new one past it is closed at once.
    pub max: usize,
    /// Time for a request's head to arrive, counted from the connection's start or the end of
    /// its previous answer (so it is also the keep-alive idle timeout), and for a TLS handshake.
    pub header_timeout: Duration,
}

/// `--tls-cert` and `--tls-key` read into a rustls server configuration.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, crate::ServeError> {
    let bad = |path: &Path, reason: String| crate::ServeError::Tls { path: path.to_path_buf(), reason };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(cert, "no PEM certificate in it".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, format!("no PEM private key in it ({e})")))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(key, format!("does not fit the certificate: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Raises the soft limit on open files to the hard one, and returns the soft limit now in
/// force (None where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: getrlimit/setrlimit only read and write the struct they are given.
        let mut l: libc::rlimit = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
            return None;
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit { rlim_cur: l.rlim_max, rlim_max: l.rlim_max };
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                l = raised;
            }
        }
        Some(l.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// Serves `router` on `listener` until `stop` resolves; then accepts no more, lets the
/// connections finish what they are answering, and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    conns: Connections,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(conns.max.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(conns.header_timeout);
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors or a connection reset before it was taken: the
                // listener is fine; wait a little rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (http, service, watcher, tls) =
            (http.clone(), TowerToHyperService::new(router.clone()), graceful.watcher(), tls.clone());
        let timeout = conns.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => {
                    let _ = watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await;
                }
                Some(acceptor) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        let _ = watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await;
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The paths a TLS configuration was read from, for errors.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}
