//! The running node behind `regiosync up`: one task that owns the network events and
//! answers sync requests, with sync sessions spawned per peer (two nodes syncing each
//! other at once cannot deadlock), at most one per peer at a time.
//!
//! What triggers a session with a peer: it connects; this store changed (an edit
//! committed in this process, announced on the node's change channel,
//! [`crate::events`], is pushed at once; another `regiosync` process committed an
//! edit: it wakes this task through the data dir's socket (`wake.rs`), and SQLite's
//! `data_version` moves, seen by a poll every 200 ms for writers that did not wake
//! it; or this node stored changes from another peer, which it passes on at once);
//! and a periodic
//! anti-entropy tick. Members that are not connected are redialled with exponential
//! backoff and jitter; when the node learns of a new member, its static addresses
//! (`--peer`) are dialled again at once (one may have refused this device while its
//! node did not know it yet). After new control ops the member set of the gate is updated, so
//! a removed device is cut off at once. Other CLI commands keep working while the node
//! runs: they share the store (SQLite serialises writers), and `regiosync status`
//! reads the status file this task writes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regiosync_core::id::{DocId, NodeId};
use regiosync_net::{Multiaddr, NetEvent, NetHandle};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Node;
use crate::error::NodeError;
use crate::sync::{Answer, SessionMemory, SyncReport, push_to, sync_with};

/// Requests of one peer answered at once; more get `Refused { Busy }`.
const MAX_REQUESTS_PER_PEER: usize = 2;
/// Requests answered at once over all peers.
const MAX_REQUESTS: usize = 64;

/// A request being answered: counted against its peer's share until dropped.
struct InFlight {
    map: Arc<std::sync::Mutex<HashMap<NodeId, usize>>>,
    peer: NodeId,
}

impl InFlight {
    /// A slot for a request of `peer`, unless it has MAX_REQUESTS_PER_PEER being
    /// answered, or all peers together MAX_REQUESTS.
    fn take(map: &Arc<std::sync::Mutex<HashMap<NodeId, usize>>>, peer: NodeId) -> Option<Self> {
        let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = m.values().sum();
        let mine = m.entry(peer).or_default();
        if *mine >= MAX_REQUESTS_PER_PEER || total >= MAX_REQUESTS {
            return None;
        }
        *mine += 1;
        Some(Self {
            map: map.clone(),
            peer,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}

/// The answer to a request that is not served now.
fn busy_frame() -> Vec<u8> {
    regiosync_core::sync::Response::Refused {
        reason: regiosync_core::sync::Refusal::Busy,
    }
    .encode()
}

/// The status file in the data dir, rewritten while the node runs.
pub const STATUS_FILE: &str = "status.json";
/// The status file is rewritten at least this often (readers call a node that has not
/// written it for 10 s "not running").
const STATUS_REFRESH: Duration = Duration::from_secs(3);

/// Settings of a running node.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Addresses to dial at start (`--peer`).
    pub peers: Vec<Multiaddr>,
    /// mDNS on the LAN.
    pub mdns: bool,
    /// Anti-entropy: sync with every connected member this often.
    pub sync_interval: Duration,
    /// How often to look for local changes and due redials.
    pub poll_interval: Duration,
    /// Run a circuit relay for the region's members (`--relay`).
    pub relay: bool,
    /// Addresses to publish in the region log for members to dial (`--announce`):
    /// stable addresses of an always-on node. Nothing is published without it: every
    /// control op invalidates every node's verified documents, so addresses that
    /// change with each network a laptop joins must not go into the log.
    pub announce: Vec<Multiaddr>,
    /// The web app served beside the node, for the status file.
    pub web: Option<WebEndpoint>,
}

/// Where the node's web app is served, as `regiosync status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebEndpoint {
    /// Its address, e.g. `https://127.0.0.1:8443`.
    pub url: String,
    /// SHA-256 of its certificate, colon-separated hex.
    pub fingerprint: String,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            listen: vec![],
            peers: vec![],
            mdns: true,
            sync_interval: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            relay: false,
            announce: vec![],
            web: None,
        }
    }
}

/// What `regiosync status` shows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub node_id: String,
    /// Where it listens.
    pub listen: Vec<String>,
    /// When the status was written, Unix seconds.
    pub updated: i64,
    /// Per member device.
    pub peers: BTreeMap<String, PeerStatus>,
    /// Dossiers held on this node.
    #[serde(default)]
    pub dossiers_held: usize,
    /// Dossiers that cannot reach a party in force now (no device of it connected,
    /// no dossier relay connected); at most [`MAX_LISTED_UNREACHED`].
    #[serde(default)]
    pub dossiers_unreached: Vec<crate::UnreachedDossier>,
    /// All of them, listed or not.
    #[serde(default)]
    pub dossiers_unreached_count: usize,
    /// The web app, if the node serves it.
    #[serde(default)]
    pub web: Option<WebEndpoint>,
}

/// Most unreached dossiers listed in the status.
pub const MAX_LISTED_UNREACHED: usize = 100;

/// A connection that a member closes sooner than this, before any sync, counts as
/// refused by it (its gate does not admit this device).
const REFUSED_WITHIN: Duration = Duration::from_secs(3);

/// What the node knows of one member.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its party.
    pub party: String,
    /// Connected now.
    pub connected: bool,
    /// Last successful sync, Unix seconds.
    pub last_contact: Option<i64>,
    /// When a connection to it was last up, Unix seconds.
    #[serde(default)]
    pub last_seen: Option<i64>,
    /// How it was reached then: `direct`, or `relay` (only through a relay).
    #[serde(default)]
    pub via: Option<String>,
    /// Its node took this node's connection and closed it at once, before any sync:
    /// it runs, but does not let this device in (its region log does not list this
    /// device as active yet, or it banned it for a while).
    #[serde(default)]
    pub refuses_this_device: bool,
    /// Dossiers this node may send it (its party is in force, or it is a dossier
    /// relay), as of the last session.
    #[serde(default)]
    pub dossiers_shared: usize,
    /// Dossier items (access-log ops and sealed changes) received in the last session.
    #[serde(default)]
    pub dossier_items_received: usize,
    /// Dossier items sent in the last session.
    #[serde(default)]
    pub dossier_items_sent: usize,
    /// Documents that differed at the start of the last session.
    pub docs_differing: usize,
    /// How the shared documents compared with the peer's at the end of the last
    /// session: in sync, ahead (changes here it is not known to hold), behind.
    pub docs: crate::DocStates,
    /// Changes received in the last session.
    pub changes_received: usize,
    /// The last error, if the last session failed.
    pub last_error: Option<String>,
}

struct Redial {
    due: Instant,
    attempts: u32,
}

/// A `--peer` address: dialled until a connection through it is up, then again
/// whenever the peer behind it is not connected (a partner's server down for a week).
struct StaticPeer {
    addr: Multiaddr,
    /// The peer found behind the address, once a dial succeeded.
    peer: Option<NodeId>,
    redial: Redial,
}

/// An address without its `/p2p/…` part, for matching dialled addresses.
fn addr_key(a: &Multiaddr) -> String {
    let s = a.to_string();
    s.split("/p2p/").next().unwrap_or(&s).to_owned()
}

/// Runs a node until `cancel` fires: networking, sync, status file. Committed edits
/// are durable whenever it stops.
pub async fn run(
    node: Node,
    config: ServiceConfig,
    cancel: CancellationToken,
) -> Result<(), NodeError> {
    // Before anything else: a second `up` on this data dir changes nothing.
    let lock = crate::run_lock::RunLock::acquire(node.dir())?;
    run_shared(Arc::new(Mutex::new(node)), config, cancel, lock).await
}

/// Like [`run`], for a node shared with others in the same process (the web app):
/// they use the same store connection, so their writes do not look like another
/// process's edits. The caller holds the data dir's [`RunLock`](crate::run_lock::RunLock).
///
/// # Cancel safety
/// Dropping the future stops the node like `cancel` does, without removing the
/// status file; committed edits are durable either way.
pub async fn run_shared(
    node: Arc<Mutex<Node>>,
    config: ServiceConfig,
    cancel: CancellationToken,
    _lock: crate::run_lock::RunLock,
) -> Result<(), NodeError> {
    let (me, status_path, key, state, wake) = {
        let mut node = node.lock().await;
        // A removed device has nobody to sync with: say so instead of dialling.
        if let Some(removal) = node.removal()? {
            return Err(NodeError::Removed(removal));
        }
        // Commits through this handle (the web app) reach the sync on the change
        // channel; other processes' commits wake it through the socket.
        node.serve();
        let wake = crate::wake::WakeListener::bind(node.dir());
        let me = node.info().node_id;
        let status_path: PathBuf = node.dir().join(STATUS_FILE);
        (
            me,
            status_path,
            node.network_key()?,
            node.region_state()?,
            wake,
        )
    };
    tracing::info!(node = %me, "node starting");
    let net_config = regiosync_net::Config {
        listen: config.listen.clone(),
        mdns: config.mdns,
        relay_server: config.relay,
        members: state
            .devices
            .keys()
            .filter(|d| **d != me && state.active_device(d).is_some())
            .map(NodeId::to_peer_id)
            .collect(),
        ..regiosync_net::Config::default()
    };
    let (net, mut events, net_task) =
        regiosync_net::spawn(key, net_config).map_err(|e| NodeError::Sync(e.to_string()))?;
    let addrs = node.lock().await.peer_addrs()?;
    for (peer, addr) in addrs {
        let _ = net.add_address(peer.to_peer_id(), addr).await;
    }
    let mut members = update_members(&node, &net, me).await?;
    let now = Instant::now();
    let mut static_peers: Vec<StaticPeer> = config
        .peers
        .iter()
        .map(|addr| StaticPeer {
            addr: addr.clone(),
            peer: None,
            redial: Redial {
                due: now,
                attempts: 0,
            },
        })
        .collect();
    let mut status = Status {
        node_id: me.to_string(),
        web: config.web.clone(),
        ..Status::default()
    };
    let mut last_status = (String::new(), Instant::now());
    let mut publish_due: Option<Instant> = None;
    let mut sessions: JoinSet<(NodeId, Result<SyncReport, NodeError>)> = JoinSet::new();
    let mut running: HashSet<NodeId> = HashSet::new();
    // Sessions asked for while one with the same peer ran: started when it ends.
    let mut again: HashMap<NodeId, Pending> = HashMap::new();
    let mut connected: HashSet<NodeId> = HashSet::new();
    // Per connected member: since when, and whether a session succeeded since.
    let mut connected_at: HashMap<NodeId, (Instant, bool)> = HashMap::new();
    // Per member: reached only through a relay (true) or directly.
    let mut via: HashMap<NodeId, bool> = HashMap::new();
    let mut reach_due = true;
    // Members whose count of shared dossiers (status) is due.
    let mut count_shared: HashSet<NodeId> = HashSet::new();
    let mut redial: HashMap<NodeId, Redial> = HashMap::new();
    // The members when the static addresses were last dialled afresh.
    let mut seen_members: HashSet<NodeId> = members.iter().map(|(m, _)| *m).collect();
    let mut data_version = node.lock().await.store().data_version().unwrap_or(0);
    // What the store held when this node last looked on behalf of another process's
    // commit (`written_since`). Commits made here move it too; they are pushed
    // already and at most make the next look more careful (a full session).
    let mut marks =
        regiosync_store::StoreRead::write_marks(node.lock().await.store()).unwrap_or_default();
    // Changes committed in this process (the web app): pushed at once, not at the
    // next poll (which sees only other processes' commits).
    let mut changes = node.lock().await.events().subscribe();
    let mut changes_open = true;
    // What sync remembers between sessions, for as long as the node runs.
    let memory = Arc::new(SessionMemory::default());
    let mut tick = tokio::time::interval(config.sync_interval);
    let mut poll = tokio::time::interval(config.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // Requests being answered, by task, and how many per peer.
    let mut responders: JoinSet<Answer> = JoinSet::new();
    let in_flight: Arc<std::sync::Mutex<HashMap<NodeId, usize>>> = Arc::default();
    let mut answering: HashMap<tokio::task::Id, NodeId> = HashMap::new();
    // A session with `peer`; one that pushes `changed` (documents committed here)
    // first, if any.
    // A push names `also`, the other peers the same documents go to (see
    // `pass_on`); a push that has to wait for a running session loses the names
    // (its receiver then passes it on to all: more sessions, never fewer).
    let start = |peer: NodeId,
                 changed: &[DocId],
                 also: &[NodeId],
                 sessions: &mut JoinSet<_>,
                 running: &mut HashSet<NodeId>,
                 again: &mut HashMap<NodeId, Pending>| {
        if running.insert(peer) {
            let (node, net, memory) = (node.clone(), net.clone(), memory.clone());
            let changed = changed.to_vec();
            let also = also.to_vec();
            tracing::debug!(peer = %peer, "sync session starting");
            sessions.spawn(async move {
                // A session that panics ends with an error for its peer (which must
                // not stay marked as running, or it would never be synced again).
                let session = std::panic::AssertUnwindSafe(async {
                    if changed.is_empty() {
                        sync_with(&node, &memory, &net, peer).await
                    } else {
                        push_to(&node, &memory, &net, peer, changed, also).await
                    }
                });
                let result = match futures::FutureExt::catch_unwind(session).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::error!(peer = %peer, "a sync session failed unexpectedly (a bug, or a response built to crash the node)");
                        Err(NodeError::Sync("the session ended unexpectedly".into()))
                    }
                };
                (peer, result)
            });
        } else {
            let pending = again
                .entry(peer)
                .or_insert_with(|| Pending::Push(Vec::new()));
            pending.add(changed);
        }
    };

    // After another process's commit: a push of the documents it changed, or full
    // sessions when it wrote anything else (see `written_since`).
    let push_or_sync = |push: &Option<Vec<DocId>>,
                        connected: &HashSet<NodeId>,
                        sessions: &mut JoinSet<_>,
                        running: &mut HashSet<NodeId>,
                        again: &mut HashMap<NodeId, Pending>| {
        match push {
            Some(docs) => {
                for (p, also) in pass_on(connected, None, &[]) {
                    start(p, docs, &also, sessions, running, again);
                }
            }
            None => {
                for p in connected.iter() {
                    start(*p, &[], &[], sessions, running, again);
                }
            }
        }
    };

    // SQLite's check of every page of the store, on a connection of its own: seconds
    // for a large store, so it does not hold up the start (`Store::open` checks only
    // the header). A damaged store stops the node, as any storage failure does.
    let store_path = node.lock().await.store().path().to_owned();
    let mut store_check = Some(tokio::task::spawn_blocking(move || {
        regiosync_store::quick_check_file(&store_path)
    }));

    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            checked = async {
                match store_check.as_mut() {
                    Some(check) => check.await,
                    None => std::future::pending().await,
                }
            }, if store_check.is_some() => {
                store_check = None;
                match checked {
                    Ok(Ok(())) => tracing::debug!("the store's pages passed SQLite's quick check"),
                    Ok(Err(e)) if matches!(e, regiosync_store::StoreError::Corrupt { .. }) => {
                        tracing::error!(error = %e, "the store is damaged; stopping sync");
                        sessions.abort_all();
                        net_task.shutdown().await;
                        return Err(e.into());
                    }
                    // Not a finding about the pages (e.g. the file is busy): the
                    // queries themselves still report a damaged page.
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot run SQLite's quick check of the store"),
                    Err(e) => tracing::warn!(error = %e, "the store's quick check did not finish"),
                }
            }
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    NetEvent::Request { peer, data, reply } => {
                        let Ok(from) = NodeId::from_peer_id(&peer) else { continue };
                        let Some(slot) = InFlight::take(&in_flight, from) else {
                            // One peer cannot queue up work for the node: it waits
                            // for its answers before it is served again.
                            let _ = reply.send(busy_frame());
                            continue;
                        };
                        // Answered off the event loop, on a blocking thread: the loop
                        // keeps serving events and other peers while a request is
                        // worked on, and a panic while answering one peer ends only
                        // that task (the peer is cut off below), never the node.
                        let (node, memory) = (node.clone(), memory.clone());
                        let task = responders.spawn_blocking(move || {
                            let answer = node.blocking_lock().respond(&memory, &from, &data);
                            // The slot is free before the peer can send its next
                            // request (also if answering panicked: it is dropped).
                            drop(slot);
                            let _ = reply.send(answer.frame.clone());
                            answer
                        });
                        answering.insert(task.id(), from);
                    }
                    NetEvent::Connected { peer } => {
                        // Join identities are admitted but are not members: no sync.
                        if let Ok(id) = NodeId::from_peer_id(&peer)
                            && members.iter().any(|(m, _)| *m == id)
                        {
                            // The backoff is reset by a session that succeeds, not
                            // here: a peer whose gate refuses this device accepts the
                            // connection and then closes it, and resetting on every
                            // such connection made a refused device redial several
                            // times a second.
                            connected.insert(id);
                            connected_at.insert(id, (Instant::now(), false));
                            reach_due = true;
                            start(id, &[], &[], &mut sessions, &mut running, &mut again);
                        }
                    }
                    NetEvent::Disconnected { peer } => {
                        if let Ok(id) = NodeId::from_peer_id(&peer)
                            && connected.remove(&id)
                        {
                            reach_due = true;
                            let entry = status.peers.entry(id.to_string()).or_default();
                            entry.last_seen = Some(crate::clock::now_secs());
                            if let Some((since, synced)) = connected_at.remove(&id)
                                && !synced
                                && since.elapsed() < REFUSED_WITHIN
                            {
                                entry.refuses_this_device = true;
                            }
                        }
                    }
                    NetEvent::Route { peer, relayed } => {
                        if let Ok(id) = NodeId::from_peer_id(&peer) {
                            via.insert(id, relayed);
                        }
                    }
                    NetEvent::Dialled { peer, addr } => {
                        if let Ok(id) = NodeId::from_peer_id(&peer) {
                            if members.iter().any(|(m, _)| *m == id)
                                && let Err(e) = node.lock().await.remember_addr(&id, &addr)
                            {
                                tracing::warn!(error = %e, "cannot remember a peer address");
                            }
                            let key = addr_key(&addr);
                            for sp in static_peers.iter_mut().filter(|sp| addr_key(&sp.addr) == key) {
                                sp.peer = Some(id);
                            }
                        }
                    }
                    NetEvent::Listening { addr } => {
                        status.listen.push(addr.to_string());
                        // Publish once the listeners have settled.
                        if !config.announce.is_empty() {
                            publish_due = Some(Instant::now() + Duration::from_secs(1));
                        }
                    }
                    NetEvent::Misbehaved { peer, reason } => tracing::warn!(peer = %peer, %reason, "peer misbehaved"),
                    _ => {}
                }
            }
            Some(done) = responders.join_next_with_id(), if !responders.is_empty() => {
                let (id, answer) = match done {
                    Ok((id, answer)) => (id, answer),
                    Err(e) => {
                        if let Some(from) = answering.remove(&e.id()) {
                            tracing::error!(peer = %from, error = %e, "answering a request failed (a bug, or a request built to crash the node); cutting the peer off");
                            let _ = net.disconnect(from.to_peer_id(), "its request could not be answered").await;
                        }
                        continue;
                    }
                };
                let Some(from) = answering.remove(&id) else { continue };
                if let Some(e) = answer.storage_failure {
                    tracing::error!(error = %e, "the store failed; stopping sync");
                    sessions.abort_all();
                    responders.abort_all();
                    net_task.shutdown().await;
                    return Err(e);
                }
                if let Some(why) = answer.misbehaved {
                    let _ = net.disconnect(from.to_peer_id(), why).await;
                } else if answer.stored > 0 {
                    // Pass new data on to the other members at once, pushing the
                    // documents that got it, except to those the sender pushed
                    // them to itself.
                    for (p, also) in pass_on(&connected, Some(from), &answer.pushed_to) {
                        start(p, &answer.received, &also, &mut sessions, &mut running, &mut again);
                    }
                    // Only control ops change who is let in; documents do not.
                    if answer.control_changed {
                        members = update_members(&node, &net, me).await?;
                    }
                }
            }
            Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                let Ok((peer, result)) = done else { continue };
                running.remove(&peer);
                let entry = status.peers.entry(peer.to_string()).or_default();
                match result {
                    Ok(report) => {
                        tracing::debug!(peer = %peer, round_trips = report.round_trips, changes = report.moved.changes_received, "sync session done");
                        redial.remove(&peer);
                        if let Some(c) = connected_at.get_mut(&peer) {
                            c.1 = true;
                        }
                        reach_due = true;
                        entry.refuses_this_device = false;
                        entry.dossier_items_received = report.moved.dossier_items_received;
                        entry.dossier_items_sent = report.moved.dossier_items_sent;
                        // Counted at the next poll, off the path of the sync.
                        count_shared.insert(peer);
                        for sp in static_peers.iter_mut().filter(|sp| sp.peer == Some(peer)) {
                            sp.redial.attempts = 0;
                        }
                        entry.last_contact = Some(crate::clock::now_secs());
                        if !report.push_only {
                            entry.docs_differing = report.moved.docs_differing;
                            entry.docs = report.docs;
                        }
                        let received = report.received;
                        entry.changes_received = report.moved.changes_received;
                        entry.last_error = None;
                        if report.moved.ops_received > 0 {
                            members = update_members(&node, &net, me).await?;
                        }
                        if report.moved.changes_received > 0
                            || report.moved.ops_received > 0
                            || report.moved.dossier_items_received > 0
                        {
                            // New control ops go on in full sessions (they go first
                            // there); documents alone are pushed on.
                            let received = if report.moved.ops_received > 0 { Vec::new() } else { received };
                            for (p, also) in pass_on(&connected, Some(peer), &[]) {
                                start(p, &received, &also, &mut sessions, &mut running, &mut again);
                            }
                        }
                    }
                    Err(e) if e.is_storage_failure() => {
                        tracing::error!(error = %e, "the store failed; stopping sync");
                        sessions.abort_all();
                        net_task.shutdown().await;
                        return Err(e);
                    }
                    Err(e @ NodeError::Removed(_)) => {
                        // Every member refuses it: stop dialling them.
                        tracing::error!(peer = %peer, "a member showed that this device was removed from the region; stopping");
                        sessions.abort_all();
                        responders.abort_all();
                        net_task.shutdown().await;
                        let _ = std::fs::remove_file(&status_path);
                        return Err(e);
                    }
                    Err(e) => {
                        tracing::info!(peer = %peer, error = %e, "sync session failed");
                        entry.last_error = Some(e.to_string());
                    }
                }
                if let Some(pending) = again.remove(&peer)
                    && connected.contains(&peer)
                {
                    let changed = match pending {
                        Pending::Push(docs) => docs,
                        Pending::Full => Vec::new(),
                    };
                    start(peer, &changed, &[], &mut sessions, &mut running, &mut again);
                }
            }
            ev = changes.recv(), if changes_open => {
                use tokio::sync::broadcast::error::{RecvError, TryRecvError};
                // Everything pending at once: a burst of edits is one push.
                let mut push = false;
                // The documents committed here, pushed first.
                let mut changed: Vec<DocId> = Vec::new();
                // A control op committed here (the region, a plan's creation, its
                // readers, an approval): a full session, which sends control ops
                // first (a push that lands ends without them).
                let mut full = false;
                let mut next = ev;
                loop {
                    match next {
                        Ok(e) => {
                            let local = matches!(e.source, crate::events::Source::Local | crate::events::Source::Import);
                            // A dossier written here: a peer that withheld it is
                            // offered it again.
                            if local
                                && e.kind == crate::events::ChangeKind::Dossier
                                && let Some(id) = e.doc
                            {
                                memory.forget_dossier(&id);
                            }
                            if local
                                && let Some(id) = e.doc
                                && !changed.contains(&id)
                            {
                                changed.push(id);
                            }
                            push |= local;
                            full |= local && (e.doc.is_none() || e.kind.is_control_op());
                        }
                        // Missed some: they may have been local.
                        Err(RecvError::Lagged(_)) => {
                            push = true;
                            full = true;
                        }
                        Err(RecvError::Closed) => {
                            changes_open = false;
                            break;
                        }
                    }
                    next = match changes.try_recv() {
                        Ok(e) => Ok(e),
                        Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                        Err(TryRecvError::Closed) => Err(RecvError::Closed),
                        Err(TryRecvError::Empty) => break,
                    };
                }
                // Changes stored from a peer are passed on where their session or
                // answer ends (above).
                if push {
                    tracing::debug!(peers = connected.len(), "committed here; pushing");
                    if full {
                        changed.clear();
                    }
                    for (p, also) in pass_on(&connected, None, &[]) {
                        start(p, &changed, &also, &mut sessions, &mut running, &mut again);
                    }
                    // After the sessions are on their way: a control op or an
                    // invite committed here may have changed who is let in (an edit
                    // of a plan or a dossier does not).
                    if full {
                        members = update_members(&node, &net, me).await?;
                    }
                }
            }
            () = woken(wake.as_ref()) => {
                // Another process (a CLI command) committed to this data dir: push
                // now, as for a commit made here.
                let (v, push) = {
                    let n = node.lock().await;
                    (n.store().data_version().unwrap_or(data_version), written_since(n.store(), &mut marks))
                };
                tracing::debug!(peers = connected.len(), docs = push.as_ref().map(Vec::len), "woken by another process; pushing");
                data_version = v;
                members = update_members(&node, &net, me).await?;
                push_or_sync(&push, &connected, &mut sessions, &mut running, &mut again);
            }
            _ = poll.tick() => {
                if publish_due.is_some_and(|t| t <= Instant::now()) {
                    publish_due = None;
                    let addrs = config.announce.clone();
                    match node.lock().await.publish_addrs(&addrs) {
                        Ok(true) => {
                            tracing::info!(addrs = ?addrs.iter().map(ToString::to_string).collect::<Vec<_>>(), "published this node's addresses to the region");
                            for p in connected.clone() {
                                start(p, &[], &[], &mut sessions, &mut running, &mut again);
                            }
                        }
                        Ok(false) => {}
                        Err(e) if e.is_storage_failure() => {
                            tracing::error!(error = %e, "the store failed; stopping sync");
                            sessions.abort_all();
                            net_task.shutdown().await;
                            return Err(e);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot publish this node's addresses"),
                    }
                }
                let v = node.lock().await.store().data_version().unwrap_or(data_version);
                if v != data_version {
                    let push = written_since(node.lock().await.store(), &mut marks);
                    tracing::debug!(from = data_version, to = v, peers = connected.len(), docs = push.as_ref().map(Vec::len), "store changed; pushing");
                    data_version = v;
                    members = update_members(&node, &net, me).await?;
                    push_or_sync(&push, &connected, &mut sessions, &mut running, &mut again);
                }
                for peer in std::mem::take(&mut count_shared) {
                    let n = node.lock().await.dossiers_shared_with(&memory, &peer);
                    match n {
                        Ok(n) => status.peers.entry(peer.to_string()).or_default().dossiers_shared = n,
                        Err(e) => tracing::warn!(error = %e, "cannot count the dossiers shared with a member"),
                    }
                }
                let now = Instant::now();
                // A member learnt since the last poll may be behind a static address
                // that refused this device before (its gate did not list this device
                // yet, or this one did not list it): dial the unconnected ones again
                // now, not after their backoff, so that the mesh is complete soon
                // after a region forms.
                if members.iter().any(|(m, _)| !seen_members.contains(m)) {
                    seen_members = members.iter().map(|(m, _)| *m).collect();
                    for sp in &mut static_peers {
                        sp.redial.due = now;
                    }
                }
                for sp in &mut static_peers {
                    if sp.peer.is_some_and(|p| connected.contains(&p)) {
                        continue;
                    }
                    if sp.redial.due <= now {
                        if let Err(e) = net.dial(sp.addr.clone()).await {
                            tracing::warn!(addr = %sp.addr, error = %e, "cannot dial peer");
                        }
                        sp.redial.attempts += 1;
                        sp.redial.due = now + backoff(sp.redial.attempts);
                    }
                }
                for (m, _) in members.iter().filter(|(m, _)| !connected.contains(m)) {
                    let r = redial.entry(*m).or_insert(Redial { due: now, attempts: 0 });
                    if r.due <= now {
                        let _ = net.dial_peer(m.to_peer_id()).await;
                        r.attempts += 1;
                        r.due = now + backoff(r.attempts);
                    }
                }
                if reach_due {
                    reach_due = false;
                    let reachable = |d: &NodeId| connected.contains(d);
                    match node.lock().await.dossier_reach(&reachable) {
                        Ok((held, mut unreached)) => {
                            status.dossiers_held = held;
                            status.dossiers_unreached_count = unreached.len();
                            unreached.truncate(MAX_LISTED_UNREACHED);
                            status.dossiers_unreached = unreached;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot tell which dossiers can reach their parties"),
                    }
                }
                write_status(&status_path, &mut status, &members, &connected, &via, &mut last_status);
            }
            _ = tick.tick() => {
                // Also closes the gate behind invites that expired or were used.
                members = update_members(&node, &net, me).await?;
                for p in connected.clone() {
                    start(p, &[], &[], &mut sessions, &mut running, &mut again);
                }
            }
        }
    }
    sessions.abort_all();
    responders.abort_all();
    net_task.shutdown().await;
    let _ = std::fs::remove_file(&status_path);
    tracing::info!("node stopped");
    Ok(())
}

/// Most documents a commit of another process is pushed for; more (an import)
/// make a full session, which compares everything in a few round trips.
const MAX_PUSHED_AFTER_OTHER_PROCESS: usize = 256;

/// What another process (a CLI command) wrote since `marks` (which move on to now):
/// the documents to push when it wrote document changes and nothing else sync
/// sends, or `None` when it wrote control ops, dossier access ops or an erasure,
/// changes of more than [`MAX_PUSHED_AFTER_OTHER_PROCESS`] documents, or nothing
/// this can tell (then full sessions compare everything, as before this look
/// existed). A store that cannot be read gives `None` too.
fn written_since(
    store: &regiosync_store::Store,
    marks: &mut regiosync_store::WriteMarks,
) -> Option<Vec<DocId>> {
    use regiosync_store::StoreRead;
    let now = store.write_marks().ok()?;
    let before = std::mem::replace(marks, now);
    let only_changes = now.changes > before.changes
        && now.ops == before.ops
        && now.dossier_ops == before.dossier_ops
        && now.erased == before.erased;
    if !only_changes {
        return None;
    }
    let docs = store
        .docs_changed_after(before.changes, MAX_PUSHED_AFTER_OTHER_PROCESS + 1)
        .ok()?;
    (!docs.is_empty() && docs.len() <= MAX_PUSHED_AFTER_OTHER_PROCESS).then_some(docs)
}

/// Whom to push what came from `from` (`None`: committed on this node) to, and the
/// other peers each push names as also pushed to ([`push_to`]): every connected
/// peer except `from` and the peers `from` said it pushed to (`named`: they get the
/// documents from `from`). Each push names the other peers pushed to here, then
/// `from`, then `named`, without duplicates: none of them needs the documents from
/// the receiver. A peer named falsely gets them at its next session with anyone
/// instead (a sender could as well not push at all).
fn pass_on(
    connected: &HashSet<NodeId>,
    from: Option<NodeId>,
    named: &[NodeId],
) -> Vec<(NodeId, Vec<NodeId>)> {
    let mut targets: Vec<NodeId> = connected
        .iter()
        .filter(|p| Some(**p) != from && !named.contains(p))
        .copied()
        .collect();
    targets.sort();
    let mut holders: Vec<NodeId> = targets.clone();
    for p in from.iter().chain(named) {
        if !holders.contains(p) {
            holders.push(*p);
        }
    }
    targets
        .iter()
        .map(|t| (*t, holders.iter().filter(|h| *h != t).copied().collect()))
        .collect()
}

/// A session asked for while another with the same peer runs.
#[derive(Debug)]
enum Pending {
    /// A full session (`Hello`, narrowing), which catches everything.
    Full,
    /// A push of these documents only (a push that lands ends without the
    /// `Hello`, so it does not stand in for a full session).
    Push(Vec<DocId>),
}

impl Pending {
    /// Adds a request for a push of `changed`, or for a full session when it is
    /// empty.
    fn add(&mut self, changed: &[DocId]) {
        match self {
            Pending::Full => {}
            Pending::Push(_) if changed.is_empty() => *self = Pending::Full,
            Pending::Push(docs) => {
                for d in changed {
                    if !docs.contains(d) {
                        docs.push(*d);
                    }
                }
            }
        }
    }
}

/// A wake-up from another process, or never if the socket could not be made.
async fn woken(wake: Option<&crate::wake::WakeListener>) {
    match wake {
        Some(w) => w.woken().await,
        None => std::future::pending().await,
    }
}

/// Exponential backoff from 1 s to 60 s, with up to 50% random jitter so that nodes
/// that lost a common peer do not all redial at the same moment.
fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_secs(1u64 << attempts.min(6)).min(Duration::from_secs(60));
    let mut r = [0u8; 2];
    let _ = regiosync_core::id::fill_random(&mut r);
    let jitter =
        u64::from(u16::from_le_bytes(r)) * (base.as_millis() as u64 / 2) / u64::from(u16::MAX);
    base + Duration::from_millis(jitter)
}

/// Sets the gate to the region's active devices (other than this one) plus the
/// one-time join identities of open invites (they may only ask to join), and returns
/// the members with their parties.
async fn update_members(
    node: &Mutex<Node>,
    net: &NetHandle,
    me: NodeId,
) -> Result<Vec<(NodeId, String)>, NodeError> {
    let (state, join_peers) = {
        let n = node.lock().await;
        // This device's own log says it was removed (it got the op before the gate
        // closed, or from a file): stop.
        if let Some(removal) = n.removal()? {
            return Err(NodeError::Removed(removal));
        }
        (n.region_state()?, n.join_peers()?)
    };
    let published = crate::peers::published_in(&state, &me);
    for (peer, addr) in published {
        let _ = net.add_address(peer.to_peer_id(), addr).await;
    }
    let members: Vec<(NodeId, String)> = state
        .devices
        .iter()
        .filter(|(d, _)| **d != me && state.active_device(d).is_some())
        .map(|(d, dev)| (*d, dev.party.to_string()))
        .collect();
    // Removed devices are guests too: they are answered only with the op that
    // removed them (`Response::Removed`), so they stop dialling.
    let removed = state
        .devices
        .keys()
        .filter(|d| **d != me && state.active_device(d).is_none());
    net.set_members_and_guests(
        members.iter().map(|(d, _)| d.to_peer_id()),
        join_peers.iter().chain(removed).map(NodeId::to_peer_id),
    )
    .await
    .map_err(|e| NodeError::Sync(e.to_string()))?;
    Ok(members)
}

/// Refreshes the status from the cached member list (no fold of the control log) and
/// writes `status.json` when something changed, or every few seconds so readers can
/// tell the node is alive. Not on every poll: that would be five disk writes a second.
fn write_status(
    path: &std::path::Path,
    status: &mut Status,
    members: &[(NodeId, String)],
    connected: &HashSet<NodeId>,
    via: &HashMap<NodeId, bool>,
    last: &mut (String, Instant),
) {
    let now = crate::clock::now_secs();
    for (id, party) in members {
        let e = status.peers.entry(id.to_string()).or_default();
        e.party.clone_from(party);
        e.connected = connected.contains(id);
        if e.connected {
            e.refuses_this_device = false;
        }
        if let Some(relayed) = via.get(id) {
            e.via = Some(if *relayed { "relay" } else { "direct" }.into());
        }
    }
    let gone: Vec<String> = status
        .peers
        .keys()
        .filter(|k| !members.iter().any(|(id, _)| id.to_string() == **k))
        .cloned()
        .collect();
    for k in gone {
        status.peers.remove(&k);
    }
    let content = |s: &Status| {
        serde_json::to_string(&(&s.listen, &s.peers, &s.dossiers_unreached, s.dossiers_held))
            .unwrap_or_default()
    };
    if content(status) == last.0 && last.1.elapsed() < STATUS_REFRESH {
        return;
    }
    // Connected members are seen now (set only when writing: it changes every second).
    for e in status.peers.values_mut().filter(|e| e.connected) {
        e.last_seen = Some(now);
    }
    status.updated = now;
    if let Ok(json) = serde_json::to_vec_pretty(status)
        && crate::data_dir::replace_private(path, &json).is_ok()
    {
        *last = (content(status), Instant::now());
    }
}

/// Reads the status file of a running node.
pub fn read_status(dir: &std::path::Path) -> Option<Status> {
    let bytes = crate::input_file::read_input_file(
        &dir.join(STATUS_FILE),
        crate::input_file::InputKind::DataDirFile,
    )
    .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = (0..n)
            .map(|_| {
                regiosync_core::identity::NodeSecret::generate()
                    .unwrap()
                    .node_id()
            })
            .collect();
        v.sort();
        v
    }

    /// After another process's commit, the node pushes the documents it changed if
    /// it wrote only document changes, and syncs in full after anything else (here
    /// a plan's creation: a control op) or when it cannot tell.
    #[test]
    fn another_process_s_edits_are_pushed_and_anything_else_synced_in_full() {
        use regiosync_core::id::{PartyName, Role};
        use regiosync_core::plan::PlanKind;
        use regiosync_store::StoreRead;
        let dir = tempfile::tempdir().unwrap();
        let party = PartyName::new("roc-midden").unwrap();
        crate::Node::init(dir.path(), party, Role::Roc, None).unwrap();
        let mut running = crate::Node::open(dir.path()).unwrap();
        running.create_region("Regio").unwrap();
        let a = running.create_plan(PlanKind::Jeugdplan, "A").unwrap();
        let b = running.create_plan(PlanKind::Jeugdplan, "B").unwrap();
        let mut marks = running.store().write_marks().unwrap();
        // Nothing written: nothing it can name, so a full session.
        assert_eq!(written_since(running.store(), &mut marks), None);
        // A CLI command edits both plans.
        let mut cli = crate::Node::open(dir.path()).unwrap();
        cli.set_section(&a, "Inleiding", "Een.").unwrap();
        cli.set_section(&b, "Inleiding", "Twee.").unwrap();
        let mut pushed = written_since(running.store(), &mut marks).unwrap();
        pushed.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(pushed, want);
        // The marks moved on: the same edits are not named again.
        assert_eq!(written_since(running.store(), &mut marks), None);
        // An edit and a new plan (a control op): a full session.
        cli.set_section(&a, "Inleiding", "Drie.").unwrap();
        cli.create_plan(PlanKind::Jeugdplan, "C").unwrap();
        assert_eq!(written_since(running.store(), &mut marks), None);
    }

    /// A commit here goes to every connected peer, each push naming the others; a
    /// push received from a peer that named everyone goes on to nobody; one that
    /// named some goes on to the rest, each naming all who hold it or get it.
    #[test]
    fn pushes_go_to_the_peers_nobody_else_pushes_to() {
        let p = ids(5);
        let connected: HashSet<NodeId> = p[1..].iter().copied().collect();
        // Committed here (node p[0]): four pushes, each naming the other three.
        let local = pass_on(&connected, None, &[]);
        assert_eq!(local.len(), 4);
        for (to, also) in &local {
            let mut want: Vec<NodeId> = p[1..].iter().filter(|x| *x != to).copied().collect();
            want.sort();
            assert_eq!(also, &want);
        }
        // From p[1], which pushed to all the others too (a full mesh): nobody.
        assert!(pass_on(&connected, Some(p[1]), &[p[2], p[3], p[4]]).is_empty());
        // From p[1], which pushed to p[2] only: p[3] and p[4], each naming the
        // other, then the sender and what it named.
        let on = pass_on(&connected, Some(p[1]), &[p[2]]);
        assert_eq!(
            on,
            vec![
                (p[3], vec![p[4], p[1], p[2]]),
                (p[4], vec![p[3], p[1], p[2]])
            ]
        );
        // Names of peers not connected here change nothing but the names passed on;
        // without names (an older node, or a session's end) all but the sender.
        let stranger = ids(1)[0];
        let on = pass_on(&connected, Some(p[1]), &[stranger]);
        assert_eq!(on.len(), 3);
        assert!(on.iter().all(|(_, also)| also.contains(&stranger)));
        assert_eq!(pass_on(&connected, Some(p[1]), &[]).len(), 3);
    }
}
