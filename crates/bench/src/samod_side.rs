//! samod (the Rust automerge-repo) over its TCP transport on loopback: the obvious
//! alternative a user would pick. Each repo stores to its own folder
//! (`TokioFilesystemStorage`), as a node would; the bytes are counted on the
//! connection (both directions, samod's length-prefixed frames included).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use automerge::{Automerge, ChangeHash};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use samod::storage::TokioFilesystemStorage;
use samod::{
    BackoffConfig, DialError, Dialer, DialerHandle, DocHandle, DocumentId, Repo, Transport,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// How long a wait for a document or a change may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(300);

/// A stream that counts the bytes read and written through it.
struct Counted<S> {
    inner: S,
    bytes: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.bytes.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Dials a samod acceptor on loopback and counts the connection's bytes.
struct CountingDialer {
    port: u16,
    bytes: Arc<AtomicU64>,
}

impl Dialer for CountingDialer {
    type Error = std::convert::Infallible;

    fn url(&self) -> samod::Url {
        // A constant, well-formed URL: it only names the dialer in samod's logs.
        samod::Url::parse("tcp://127.0.0.1/").unwrap_or_else(|_| unreachable!())
    }

    fn connect(&self) -> BoxFuture<'static, Result<Transport, DialError<Self::Error>>> {
        let (port, bytes) = (self.port, self.bytes.clone());
        async move {
            let io = TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(DialError::transient)?;
            let _ = io.set_nodelay(true);
            Ok(Transport::from_tokio_io(Counted { inner: io, bytes }))
        }
        .boxed()
    }
}

/// A samod repo storing into `dir`, accepting TCP connections on a loopback port.
pub(crate) struct Peer {
    pub(crate) repo: Repo,
    pub(crate) port: u16,
    accept: tokio::task::JoinHandle<()>,
}

impl Peer {
    /// Starts a repo with its own storage folder and a listener on 127.0.0.1.
    pub(crate) async fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let repo = Repo::build_tokio()
            .with_storage(TokioFilesystemStorage::new(dir))
            .load()
            .await;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let acceptor = repo
            .make_acceptor(samod::Url::parse(&format!("tcp://127.0.0.1:{port}"))?)
            .map_err(|_| anyhow!("samod repo stopped"))?;
        let accept = tokio::spawn(async move {
            while let Ok((io, _)) = listener.accept().await {
                let _ = io.set_nodelay(true);
                if acceptor.accept(Transport::from_tokio_io(io)).is_err() {
                    break;
                }
            }
        });
        Ok(Self { repo, port, accept })
    }

    /// Dials `other` and waits for the handshake; the dialer counts into `bytes`.
    pub(crate) async fn dial(
        &self,
        other: &Peer,
        bytes: Arc<AtomicU64>,
    ) -> anyhow::Result<DialerHandle> {
        let d = self
            .repo
            .dial(
                BackoffConfig::default(),
                Arc::new(CountingDialer {
                    port: other.port,
                    bytes,
                }),
            )
            .map_err(|_| anyhow!("samod repo stopped"))?;
        tokio::time::timeout(PATIENCE, d.established())
            .await
            .context("samod dial timed out")?
            .map_err(|e| anyhow!("samod dial failed: {e:?}"))?;
        Ok(d)
    }

    /// Stops the repo and its listener.
    pub(crate) async fn stop(self) {
        self.accept.abort();
        self.repo.stop().await;
    }
}

/// The heads of a handle's document.
pub(crate) fn heads(h: &DocHandle) -> Vec<ChangeHash> {
    h.with_document(|d| d.get_heads())
}

/// A handle's document (a copy).
pub(crate) fn document(h: &DocHandle) -> Automerge {
    h.with_document(|d| d.clone())
}

/// Waits until the handle's document has `want` as its heads.
pub(crate) async fn wait_for_heads(h: &DocHandle, want: &[ChangeHash]) -> anyhow::Result<()> {
    let mut changes = h.changes();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut have = heads(h);
        have.sort();
        let mut w = want.to_vec();
        w.sort();
        if have == w {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, changes.next()).await.is_err() {
            bail!("samod document never reached the expected heads");
        }
    }
}

/// Waits until `h`'s heads contain `head`.
pub(crate) async fn wait_for_head(h: &DocHandle, head: ChangeHash) -> anyhow::Result<()> {
    let mut changes = h.changes();
    let deadline = Instant::now() + PATIENCE;
    while !heads(h).contains(&head) {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, changes.next()).await.is_err() {
            bail!("an edit never reached a samod peer");
        }
    }
    Ok(())
}

/// Finds every document on `repo` (asking its peers), then waits until each has the
/// heads given: a catch-up, complete when the last document is.
pub(crate) async fn find_all(
    repo: &Repo,
    docs: &[(DocumentId, Vec<ChangeHash>)],
) -> anyhow::Result<Vec<DocHandle>> {
    let finds = docs.iter().map(|(id, want)| {
        let find = repo.find(id.clone());
        async move {
            let h = tokio::time::timeout(PATIENCE, find)
                .await
                .context("samod find timed out")?
                .map_err(|_| anyhow!("samod repo stopped"))?
                .ok_or_else(|| anyhow!("samod peer did not have a document"))?;
            wait_for_heads(&h, want).await?;
            Ok::<_, anyhow::Error>(h)
        }
    });
    futures::future::try_join_all(finds).await
}

/// Waits until no byte has crossed the counter for `quiet`: the end of a sync that
/// has no other completion signal (a reconnect where nothing changed).
pub(crate) async fn settle(bytes: &AtomicU64, quiet: Duration) {
    let mut last = bytes.load(Ordering::Relaxed);
    let mut since = Instant::now();
    let deadline = Instant::now() + PATIENCE;
    while since.elapsed() < quiet && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = bytes.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}
