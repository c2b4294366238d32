//! regiosync over real libp2p on loopback: nodes with their own data folders (SQLite,
//! keys), a region made by invitations, sessions run by the node's own sync code
//! (`sync_with` on one side, `Node::respond` on the other), running nodes
//! (`service::run_shared`) for propagation, and a node in a separate process for start-up
//! time and memory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use automerge::{Automerge, Change, ChangeHash};
use regiosync_core::dossier as schema;
use regiosync_core::dossier::access::Basis;
use regiosync_core::id::{DocId, NodeId, PartyName, Role};
use regiosync_core::plan::{AgreementInput, PlanKind};
use regiosync_net::{Multiaddr, NetEvent};
use regiosync_node::StoreRead;
use regiosync_node::dossiers::{NewDossier, Reader};
use regiosync_node::run_lock::RunLock;
use regiosync_node::service::{ServiceConfig, run, run_shared};
use regiosync_node::{Node, SessionMemory, SyncReport, sync_with};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::data::DossierContent;

/// How long a wait in a regiosync run may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(300);

pub(crate) fn party(s: &str) -> anyhow::Result<PartyName> {
    PartyName::new(s).map_err(|e| anyhow!("{e}"))
}

/// The reader named in the audit log of the bench's dossier reads and writes.
pub(crate) fn reader() -> Reader {
    Reader {
        who: regiosync_core::audit::Who::cli("bench"),
        purpose: "benchmark".into(),
    }
}

/// A source node (the kerngemeente that made a region; its dossiers are about its
/// own residents, so it is their woongemeente too) and devices of the same party that
/// joined before any document exists, so every dossier key is wrapped for them.
pub(crate) struct Source {
    pub(crate) dir: PathBuf,
    pub(crate) node: Node,
    pub(crate) devices: Vec<PathBuf>,
}

impl Source {
    /// Makes the source node in `root/source` and `devices` joined devices.
    pub(crate) fn new(root: &Path, devices: usize) -> anyhow::Result<Self> {
        let dir = root.join("source");
        let roc = party("gemeente-utrecht")?;
        Node::init(&dir, roc.clone(), Role::Kerngemeente, None)?;
        let mut node = Node::open(&dir)?;
        node.create_region("Benchmark")?;
        let mut dirs = Vec::new();
        for i in 0..devices {
            let d = root.join(format!("device{i}"));
            Node::init(&d, roc.clone(), Role::Kerngemeente, None)?;
            let mut n = Node::open(&d)?;
            let code = node.invite(roc.clone(), Role::Kerngemeente, false, 3600)?;
            let (_, bundle) = node.accept(&n.join_request(&code.encode())?)?;
            n.import(&bundle)?;
            dirs.push(d);
        }
        Ok(Self {
            dir,
            node,
            devices: dirs,
        })
    }

    /// Joins a device of another party (`party`, a municipality) in `dir`.
    pub(crate) fn join_municipality(
        &mut self,
        dir: &Path,
        party: &PartyName,
    ) -> anyhow::Result<()> {
        Node::init(dir, party.clone(), Role::Gemeente, None)?;
        let mut n = Node::open(dir)?;
        let code = self
            .node
            .invite(party.clone(), Role::Gemeente, false, 3600)?;
        let (_, bundle) = self.node.accept(&n.join_request(&code.encode())?)?;
        n.import(&bundle)?;
        Ok(())
    }

    /// Creates a dossier with `content`: its first change holds the fields, then one
    /// change per contact note (all sealed and signed, in one store transaction).
    pub(crate) fn create_dossier(&mut self, content: &DossierContent) -> anyhow::Result<DocId> {
        let me = self.node.info().party.clone();
        self.create_dossier_for(content, &me)
    }

    /// [`Self::create_dossier`] for a student whose woongemeente is `woongemeente`
    /// (granted access when it is not this node's party).
    pub(crate) fn create_dossier_for(
        &mut self,
        content: &DossierContent,
        woongemeente: &PartyName,
    ) -> anyhow::Result<DocId> {
        let by = reader();
        let me = self.node.info().party.clone();
        let id = self.node.create_dossier(
            &NewDossier {
                woongemeente: woongemeente.clone(),
                basis: Basis::Toestemming,
                purpose: "benchmark".into(),
                fields: content.fields.clone(),
            },
            &by,
        )?;
        let today = time::OffsetDateTime::now_utc().date();
        self.node
            .bulk_dossier_edits_for_bench(&id, &by, content.notes.len(), |tx, k| {
                schema::add_contact(tx, today, &me, &content.notes[k])
            })?;
        Ok(id)
    }

    /// The plaintext changes of a dossier, as a device with its keys reads them.
    pub(crate) fn plaintext_changes(&mut self, id: &DocId) -> anyhow::Result<Vec<Change>> {
        plaintext_changes(&mut self.node, id)
    }

    /// The changes of an unsealed document, as stored.
    pub(crate) fn plain_changes(&self, id: &DocId) -> anyhow::Result<Vec<Change>> {
        plain_changes(&self.node, id)
    }
}

/// The plaintext changes of a dossier that `node` holds, unsealed with the keys
/// wrapped for `node`'s device: a real check that the device can open them.
pub(crate) fn plaintext_changes(node: &mut Node, id: &DocId) -> anyhow::Result<Vec<Change>> {
    let access = node.dossier_access(id)?;
    let ring = node.key_ring_for_tests(&access)?;
    node.store()
        .changes(id)?
        .iter()
        .map(|c| {
            let plain = ring.unseal(&c.hash, &c.bytes)?;
            Change::from_bytes(plain.to_vec()).context("a sealed change does not parse")
        })
        .collect()
}

/// The stored changes of an unsealed document.
pub(crate) fn plain_changes(node: &Node, id: &DocId) -> anyhow::Result<Vec<Change>> {
    node.store()
        .changes(id)?
        .into_iter()
        .map(|c| Change::from_bytes(c.bytes).context("a stored change does not parse"))
        .collect()
}

/// A document made of `changes`.
pub(crate) fn document(changes: &[Change]) -> anyhow::Result<Automerge> {
    let mut d = Automerge::new();
    d.apply_changes(changes.iter().cloned())?;
    Ok(d)
}

/// The sorted heads of a document made of `changes`.
pub(crate) fn heads_of(changes: &[Change]) -> anyhow::Result<Vec<ChangeHash>> {
    let mut h = document(changes)?.get_heads();
    h.sort();
    Ok(h)
}

fn net_config(listen: Multiaddr, members: Vec<NodeId>) -> regiosync_net::Config {
    regiosync_net::Config {
        listen: vec![listen],
        members: members.iter().map(NodeId::to_peer_id).collect(),
        ..regiosync_net::Config::default()
    }
}

/// One sync session: `node` (a device) asks the node `peer` at `addr`. Returns the
/// session's wall time in ms (from the first dial) and its report.
pub(crate) async fn sync_from(
    node: &Mutex<Node>,
    memory: &SessionMemory,
    peer: NodeId,
    addr: Multiaddr,
) -> anyhow::Result<(f64, SyncReport)> {
    let key = node.lock().await.network_key()?;
    let (net, _events, task) = regiosync_net::spawn(
        key,
        net_config(regiosync_net::free_loopback_tcp()?, vec![peer]),
    )?;
    net.add_address(peer.to_peer_id(), addr).await?;
    let t = Instant::now();
    let report = tokio::time::timeout(PATIENCE, sync_with(node, memory, &net, peer)).await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    task.shutdown().await;
    Ok((ms, report.context("sync session timed out")??))
}

/// The source node answering sync requests in a separate process (this binary,
/// `--answer-node`), as a partner's node would: nothing (documents in memory,
/// remembered signatures) is shared with the devices that sync from it.
pub(crate) struct Answering {
    child: tokio::process::Child,
    id: NodeId,
    addr: Multiaddr,
}

impl Answering {
    /// Starts the process on the node in `dir` and waits until it listens.
    pub(crate) async fn start(dir: &Path) -> anyhow::Result<Self> {
        let id = Node::open(dir)?.info().node_id;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse()?;
        let mut child = spawn_node_process("--answer-node", dir, &addr)?;
        let deadline = Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = child.try_wait()? {
                bail!("the source node process exited: {status}");
            }
            if Instant::now() > deadline {
                bail!("the source node process never listened");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Self { child, id, addr })
    }

    /// One session of `device` (with what its sync remembers from earlier
    /// sessions, as a running node keeps it) with the source: (ms, report, device).
    pub(crate) async fn session(
        &self,
        device: Node,
        memory: &SessionMemory,
    ) -> anyhow::Result<(f64, SyncReport, Node)> {
        let device = Mutex::new(device);
        let (ms, report) = sync_from(&device, memory, self.id, self.addr.clone()).await?;
        Ok((ms, report, device.into_inner()))
    }

    /// Closes the process's stdin and waits for it to exit.
    pub(crate) async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// The child side of [`Answering`]: the node in `dir` answers every member's sync
/// requests (`Node::respond`, as a running node does) until stdin closes. Unlike
/// `service::run` it starts no session of its own, so the device's session is the
/// only traffic measured.
pub(crate) async fn answer(dir: &Path, listen: Multiaddr) -> anyhow::Result<()> {
    let mut node = Node::open(dir)?;
    let me = node.info().node_id;
    let state = node.region_state()?;
    let members: Vec<NodeId> = state
        .devices
        .keys()
        .filter(|d| **d != me && state.active_device(d).is_some())
        .copied()
        .collect();
    let (net, mut events, task) =
        regiosync_net::spawn(node.network_key()?, net_config(listen, members))?;
    let cancel = stdin_closed();
    // Kept for the process's life, as a running node keeps it.
    let memory = SessionMemory::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            ev = events.recv() => match ev {
                Some(NetEvent::Request { peer, data, reply }) => {
                    if let Ok(from) = NodeId::from_peer_id(&peer) {
                        let _ = reply.send(node.respond(&memory, &from, &data).frame);
                    }
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    drop(net);
    task.shutdown().await;
    Ok(())
}

/// This binary in `mode` (`--answer-node` or `--serve-node`) on the node in `dir`,
/// listening on `addr`; it runs until its stdin closes (or it is dropped).
fn spawn_node_process(
    mode: &str,
    dir: &Path,
    addr: &Multiaddr,
) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new(std::env::current_exe()?)
        .arg(mode)
        .arg(dir)
        .arg("--listen")
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the node process ({mode})"))
}

/// A token cancelled when this process's stdin closes (the parent is done with it).
fn stdin_closed() -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        c.cancel();
    });
    cancel
}

/// A node serving its data folder in this process until stdin closes: the child
/// side of the start-up and memory measurement.
pub(crate) async fn serve(dir: &Path, listen: Multiaddr) -> anyhow::Result<()> {
    let node = Node::open(dir)?;
    let cancel = stdin_closed();
    let config = ServiceConfig {
        listen: vec![listen],
        mdns: false,
        ..ServiceConfig::default()
    };
    run(node, config, cancel).await?;
    Ok(())
}

/// What the separate-process node measurement found.
pub(crate) struct Served {
    /// From starting the process to the end of the first (idle) sync it answered.
    pub(crate) startup_ms: f64,
    /// Peak resident set of the node process, MB.
    pub(crate) rss_mb: f64,
}

/// Starts the node in `dir` as a separate process (this binary, `--serve-node`),
/// and syncs `device` (already up to date) with it until that succeeds.
pub(crate) async fn start_separate(dir: &Path, device: Node) -> anyhow::Result<(Served, Node)> {
    let node_id = Node::open(dir)?.info().node_id;
    let addr = regiosync_net::free_loopback_tcp()?;
    let t = Instant::now();
    let mut child = spawn_node_process("--serve-node", dir, &addr)?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("node process has no pid"))?;
    let device = Mutex::new(device);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok((_, r)) =
            sync_from(&device, &SessionMemory::default(), node_id, addr.clone()).await
            && r.round_trips > 0
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the node process never answered");
        }
        if let Some(status) = child.try_wait()? {
            bail!("the node process exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let startup_ms = t.elapsed().as_secs_f64() * 1000.0;
    let rss_mb = peak_rss_mb(pid)?;
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    Ok((Served { startup_ms, rss_mb }, device.into_inner()))
}

/// A process's peak resident set (`VmHWM`), MB.
pub(crate) fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}

/// How the propagation workload makes its edits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EditPath {
    /// Through the running node's own handle (`service::run_shared`), as the web app
    /// edits: the commit reaches the sync on the node's change channel.
    Api,
    /// Through a separate handle opened on the node's folder for each edit, as a
    /// CLI command edits while `up` runs: the commit wakes the running node through
    /// the data dir's socket.
    Handle,
    /// Through a real CLI process per edit (`regiosync doc agreement add`, the
    /// binary beside this one): what a person at the command line waits for,
    /// start-up of the process included.
    Process(PathBuf),
}

/// The `regiosync` binary of the same build as this runner (beside it in the target
/// folder), if it was built (`cargo build --release -p regiosync`).
pub(crate) fn cli_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let cli = exe.parent()?.join("regiosync");
    cli.is_file().then_some(cli)
}

/// Edit-to-visible in a five-node region of running nodes (`service::run_shared`,
/// full mesh) on loopback over `transport` ("tcp" or "quic"): an edit made on one
/// node (rotating) by `path` until the change is stored on all four others. Returns
/// the latency of each edit in ms.
pub(crate) async fn propagation(
    root: &Path,
    transport: &str,
    path: EditPath,
    edits: usize,
    mut progress: impl FnMut(),
) -> anyhow::Result<Vec<f64>> {
    let names = [
        ("gemeente-utrecht", Role::Kerngemeente),
        ("roc-midden", Role::Roc),
        ("gemeente-zeist", Role::Gemeente),
        ("gemeente-houten", Role::Gemeente),
        ("swv-utrecht", Role::Swv),
    ];
    let dirs: Vec<PathBuf> = names
        .iter()
        .map(|(p, _)| {
            let how = match path {
                EditPath::Api => "api",
                EditPath::Handle => "handle",
                EditPath::Process(_) => "process",
            };
            root.join(format!("{transport}-{how}-{p}"))
        })
        .collect();
    Node::init(&dirs[0], party(names[0].0)?, names[0].1, None)?;
    let mut kern = Node::open(&dirs[0])?;
    kern.create_region("Benchmark")?;
    for (i, (p, role)) in names.iter().enumerate().skip(1) {
        Node::init(&dirs[i], party(p)?, *role, None)?;
        let mut n = Node::open(&dirs[i])?;
        let code = kern.invite(party(p)?, *role, false, 3600)?;
        let (_, bundle) = kern.accept(&n.join_request(&code.encode())?)?;
        n.import(&bundle)?;
    }
    let doc: DocId = kern.create_plan(PlanKind::Jeugdplan, "Latency")?;
    drop(kern);
    let addrs: Vec<Multiaddr> = (0..5)
        .map(|_| match transport {
            "quic" => regiosync_net::free_loopback_quic(),
            _ => regiosync_net::free_loopback_tcp(),
        })
        .collect::<std::io::Result<_>>()?;
    let mut running = Vec::new();
    let mut handles = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let cancel = CancellationToken::new();
        let config = ServiceConfig {
            listen: vec![addrs[i].clone()],
            peers: addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| a.clone())
                .collect(),
            mdns: false,
            ..ServiceConfig::default()
        };
        let lock = RunLock::acquire(dir)?;
        let node = Arc::new(Mutex::new(Node::open(dir)?));
        handles.push(node.clone());
        let c = cancel.clone();
        running.push((
            cancel,
            tokio::spawn(async move { run_shared(node, config, c, lock).await }),
        ));
    }
    let result = async {
        let mut watchers = Vec::new();
        for d in &dirs {
            watchers.push(Node::open(d)?);
        }
        // The store position of the plan's newest change: one index lookup, so that
        // watching (every millisecond, on four nodes) does not compete with the
        // nodes for the machine's cores as reading every change would.
        let count = |n: &Node| n.store().last_change(&doc).unwrap_or(0);
        let deadline = Instant::now() + PATIENCE;
        while watchers.iter().any(|w| count(w) == 0) {
            if Instant::now() > deadline {
                bail!("the plan never reached every node");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A full mesh, as the workload says: every node connected to the four
        // others (by their status files) before the first edit.
        let deadline = Instant::now() + PATIENCE;
        while !dirs.iter().all(|d| {
            regiosync_node::service::read_status(d)
                .is_some_and(|s| s.peers.values().filter(|p| p.connected).count() == 4)
        }) {
            if Instant::now() > deadline {
                bail!("the five nodes did not all connect to each other");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Visible = the node announced the stored change on its change channel,
        // after the commit (what the web app's open pages listen to), as samod's
        // side waits for its document handles' change notifications: no polling
        // interval in the figure.
        let mut announced = Vec::new();
        for h in &handles {
            announced.push(h.lock().await.events().subscribe());
        }
        let mut lat = Vec::with_capacity(edits);
        for k in 0..edits {
            let i = k % 5;
            for rx in announced.iter_mut() {
                // Whatever came before this edit.
                while !matches!(
                    rx.try_recv(),
                    Err(tokio::sync::broadcast::error::TryRecvError::Empty
                        | tokio::sync::broadcast::error::TryRecvError::Closed)
                ) {}
            }
            let input = AgreementInput {
                title: format!("Afspraak {k}"),
                owner: party(names[i].0)?,
                deadline: None,
            };
            let t = Instant::now();
            match &path {
                EditPath::Api => {
                    handles[i].lock().await.add_agreement(&doc, &input)?;
                }
                EditPath::Handle => {
                    Node::open(&dirs[i])?.add_agreement(&doc, &input)?;
                }
                EditPath::Process(cli) => {
                    let out = tokio::process::Command::new(cli)
                        .arg("--data-dir")
                        .arg(&dirs[i])
                        .args(["doc", "agreement", "add", &doc.to_string()])
                        .args(["--title", &input.title, "--owner", names[i].0])
                        .stdin(Stdio::null())
                        .output()
                        .await
                        .context("running the regiosync CLI")?;
                    if !out.status.success() {
                        bail!(
                            "regiosync doc agreement add failed: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
            }
            for (j, rx) in announced.iter_mut().enumerate().filter(|(j, _)| *j != i) {
                let seen = async {
                    loop {
                        match rx.recv().await {
                            Ok(e)
                                if e.doc == Some(doc)
                                    && matches!(
                                        e.source,
                                        regiosync_node::events::Source::Sync(_)
                                    ) =>
                            {
                                return Ok(());
                            }
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(e) => return Err(anyhow!("node {j} stopped announcing: {e}")),
                        }
                    }
                };
                tokio::time::timeout(PATIENCE, seen)
                    .await
                    .map_err(|_| anyhow!("edit {k} never became visible on node {j}"))??;
            }
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            progress();
        }
        Ok(lat)
    }
    .await;
    for (c, j) in running {
        c.cancel();
        match j.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "a node stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "a node task failed"),
        }
    }
    result
}
