//! Serving the app over TLS: a TCP accept loop, a bounded number of connections, a
//! time limit on the TLS handshake and on reading request headers, HTTP/1.1 and
//! HTTP/2 (by ALPN), and a graceful stop on the node's [`CancellationToken`].
//!
//! Written on tokio-rustls and hyper-util rather than taken from `axum-server`: it is
//! about a hundred lines, it stops with the same cancellation token and task
//! ownership as the rest of the node (`regiosync_node::service`), and the limits that
//! matter to a node on a laptop (connections, handshake time) are visible here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client gets to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Time open connections get to finish their requests at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` over TLS on `listener` until `cancel` fires, then lets open
/// requests finish (up to a few seconds) and returns.
///
/// # Cancel safety
/// Dropping the future drops every connection task with it (they live in a
/// `JoinSet` owned by this future).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    cancel: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, addr) = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "cannot accept a web connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Reap finished connection tasks so the set does not grow.
        while conns.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let app = app.clone();
        let cancel = cancel.clone();
        conns.spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "web TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("web TLS handshake timed out");
                    return;
                }
            };
            serve_connection(tls, addr, app, cancel).await;
        });
    }
    // Stop accepting; give open connections a moment to finish.
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

async fn serve_connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    addr: SocketAddr,
    app: Router,
    cancel: CancellationToken,
) {
    let service = tower::ServiceExt::map_request(
        app,
        move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            req
        },
    );
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "web connection ended with an error");
            }
        }
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
