//! Shared harness of the integration tests (their targets live beside this file):
//! party names, free loopback addresses, running node services in-process, and
//! waiting for a condition with a deadline instead of a fixed sleep.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regiosync_core::id::{PartyName, Role};
use regiosync_net::Multiaddr;
use regiosync_node::service::{ServiceConfig, run};
use regiosync_node::{Node, NodeError};
use tokio_util::sync::CancellationToken;

/// A party name that must be valid.
pub fn party(s: &str) -> PartyName {
    PartyName::new(s).expect("a valid party name")
}

/// A free loopback TCP address (bound and released; the node binds it right after).
pub fn free_addr() -> Multiaddr {
    regiosync_net::free_loopback_tcp().expect("a free loopback port")
}

/// Warnings of the nodes (refused changes, bans) go to the test output, which is
/// shown when a test fails. `RUST_LOG` overrides the level.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Initialises a node per party in `root/<party>`, founds the region on the first and
/// joins the others by files (invite, join request, accept, import). With
/// `share_log`, every joiner also imports the founder's final log, so each knows all
/// members from the start; without it, earlier joiners learn later ones by syncing.
pub fn region_by_files(root: &Path, parties: &[(&str, Role)], share_log: bool) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = parties.iter().map(|(p, _)| root.join(p)).collect();
    for ((p, role), dir) in parties.iter().zip(&dirs) {
        Node::init(dir, party(p), *role, None).expect("init");
    }
    let mut founder = Node::open(&dirs[0]).expect("open");
    founder.create_region("Regio Utrecht").expect("region");
    for ((p, role), dir) in parties.iter().zip(&dirs).skip(1) {
        let mut n = Node::open(dir).expect("open");
        let code = founder
            .invite(party(p), *role, false, 3600)
            .expect("invite");
        let request = n.join_request(&code.encode()).expect("join request");
        let (_, bundle) = founder.accept(&request).expect("accept");
        n.import(&bundle).expect("import");
    }
    if share_log {
        let log = founder.export().expect("export");
        for dir in &dirs[1..] {
            Node::open(dir).expect("open").import(&log).expect("import");
        }
    }
    dirs
}

/// A loopback node's settings: mDNS off, and an anti-entropy interval longer than any
/// test, so only pushes and connection events may drive sync.
pub fn loopback_config(listen: &Multiaddr, peers: &[Multiaddr]) -> ServiceConfig {
    ServiceConfig {
        listen: vec![listen.clone()],
        peers: peers.to_vec(),
        mdns: false,
        sync_interval: Duration::from_secs(120),
        poll_interval: Duration::from_millis(50),
        ..ServiceConfig::default()
    }
}

/// A node service running in this process (`regiosync up`).
pub struct Running {
    cancel: CancellationToken,
    join: tokio::task::JoinHandle<Result<(), NodeError>>,
}

/// Starts the node in `dir` with `config`; [`Running::stop`] fails the test if the
/// node stopped with an error.
pub fn start_node(dir: &Path, config: ServiceConfig) -> Running {
    start_opened(Node::open(dir).expect("the node opens"), config)
}

/// [`start_node`] for a node opened (and set up, e.g. with a document kind) by the
/// test.
pub fn start_opened(node: Node, config: ServiceConfig) -> Running {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let join = tokio::spawn(run(node, config, c));
    Running { cancel, join }
}

impl Running {
    /// Stops the node and waits until it has; fails the test if it had failed.
    pub async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.join.await.expect("the node task ends") {
            panic!("node failed: {e}");
        }
    }

    /// Waits (at most `limit`) for the node to stop by itself, and returns how it
    /// ended; fails the test if it still runs.
    pub async fn ended(self, limit: Duration) -> Result<(), NodeError> {
        let ended = tokio::time::timeout(limit, self.join).await;
        self.cancel.cancel();
        ended
            .expect("the node stops by itself")
            .expect("the node task ends")
    }
}

/// Waits until `ok` holds, checking every 100 ms; fails the test with `what` after
/// `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
