//! Deterministic simulation of a region: six nodes of five parties run the real sync
//! session (`regiosync_node::sync::sync_with` against `Node::respond`) over a
//! simulated network instead of libp2p, driven by one seed: messages dropped on the
//! way there or back, duplicated, delayed (delivered late, after the requester gave
//! up, and so out of order with later sessions), partitions that form and heal, nodes
//! that restart from their store. Meanwhile the parties edit plans, open sealed
//! dossiers, grant, revoke and erase them, and the SWV removes its laptop; half the
//! plan edits and new dossiers are pushed at once to one node (`push_to`, as a
//! running node does after a local edit, naming the other nodes as pushed to). The
//! nodes speak different sync protocol versions (drawn from the seed): about a third
//! only `/regiosync/sync/1`, the others up to `/2`, `/3` (compact frames) or `/4`
//! (bundles of dossier changes between readers). Each is sent every request in the
//! form of the newest version it speaks; a push naming peers sent to a `/1` node, a
//! compact frame or a dossier change in the chained envelope format sent to a `/1`
//! or `/2` node, or a bundled frame or a change sealed in format 2 sent to (or
//! answered to) a node before `/4`, is a violation.
//! Before the final sync the region upgrades: every node speaks `/4` (an older node
//! never gets the changes in the chained envelope format).
//!
//! After the faults stop and the partitions heal, the nodes sync until nothing moves,
//! and then:
//! - every node holds the same region log and every plan at the same heads;
//! - every device of a party that may read a dossier (and the dossier relay) holds
//!   exactly what the owner holds of it, and can read it;
//! - no node of a party that never had access holds anything of a dossier, or even
//!   knows it existed;
//! - an erased dossier survives nowhere, and every node that held it keeps its
//!   tombstone;
//! - no honest node ever called another one misbehaving, and no store failed;
//! - the removed laptop is told so, by a device of its own party too;
//! - and every pair of nodes ends in sync: a last round of sessions takes one round
//!   trip each (their summaries agree).
//!
//! The seed fixes the schedule: which party does what, when, which messages are lost,
//! duplicated or delayed, and where the partitions fall. Each sync session draws its
//! faults from its own generator (seed and step), so a session that takes one round
//! trip more does not shift the rest of the run. What the seed does not fix are the
//! random document ids, the random nonces inside sealed changes and the iteration
//! order of hash maps inside the nodes; a failure replays with the same schedule.
//!
//! `cargo test -p regiosync-tests --test simulation` runs `SEEDS_PER_TEST` seeds per
//! test; `SIM_SEEDS=5000 cargo test --release -p regiosync-tests --test simulation`
//! runs more, `SIM_SEED=1234` replays one seed (printed by a failing run), and
//! `SIM_DEBUG=1` adds what each node holds of every document to a failure's message,
//! and `SIM_KEEP=DIR` keeps a failed seed's node directories in `DIR/seed-N/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regiosync_core::audit::Who;
use regiosync_core::dossier::access::Basis;
use regiosync_core::id::{DocId, NodeId, PartyName, Role};
use regiosync_core::plan::PlanKind;
use regiosync_core::sync::{FrameFormat, Request, Response};
use regiosync_net::StreamProtocol;
use regiosync_node::dossiers::{NewDossier, Reader};
use regiosync_node::sync::{Transport, push_to, sync_with};
use regiosync_node::{Node, NodeError, SessionMemory};
use regiosync_store::StoreRead;
use regiosync_tests::{party, region_by_files};

/// Seeds each of the tests below runs (four tests, so hundreds in all).
const SEEDS_PER_TEST: u64 = 50;

/// Steps of the faulty phase of one run.
const STEPS: usize = 60;

/// Rounds of all-pairs sessions after healing before the run counts as stuck.
const HEAL_ROUNDS: usize = 6;

const KERN: usize = 0;
const ROC: usize = 1;
const ZEIST: usize = 2;
const HOUTEN: usize = 3;
const SWV: usize = 4;
const SWV_LAPTOP: usize = 5;
const NODES: usize = 6;

/// The parties the ROC may grant a dossier to. The SWV, whose laptop is removed, is
/// one only with `SIM_REMOVE_DOSSIER_DEVICE=1`: removing a device of a party with
/// dossier access while grants are under way is known to leave nodes apart (a key
/// wrapping made for the device before its removal is stored where it arrived first
/// and refused where the removal did, and sent again in every session; a grantee can
/// then lack its key), which is the dossier-cutoff work listed in docs/SECURITY.md,
/// "Known gaps". With the variable set, the simulation shows it.
fn grantees() -> &'static [&'static str] {
    if std::env::var("SIM_REMOVE_DOSSIER_DEVICE").is_ok_and(|v| v == "1") {
        &["gemeente-zeist", "gemeente-houten", "swv-utrecht"]
    } else {
        &["gemeente-zeist", "gemeente-houten"]
    }
}

/// A region of six nodes, built once per test and copied for every seed: the
/// kerngemeente (founder, admin and dossier relay), the ROC, two buurgemeenten and the
/// SWV with a desktop and a laptop (see [`grantees`] for why the SWV gets no dossier
/// by default).
struct Template {
    _tmp: tempfile::TempDir,
    dirs: Vec<PathBuf>,
}

fn template() -> Template {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut dirs = region_by_files(
        tmp.path(),
        &[
            ("gemeente-utrecht", Role::Kerngemeente),
            ("roc-midden", Role::Roc),
            ("gemeente-zeist", Role::Gemeente),
            ("gemeente-houten", Role::Gemeente),
            ("swv-utrecht", Role::Swv),
        ],
        false,
    );
    let mut founder = Node::open(&dirs[KERN]).expect("open");
    let laptop = tmp.path().join("swv-laptop");
    Node::init(&laptop, party("swv-utrecht"), Role::Swv, None).expect("init");
    let mut n = Node::open(&laptop).expect("open");
    let code = founder
        .invite(party("swv-utrecht"), Role::Swv, false, 3600)
        .expect("invite");
    let (_, bundle) = founder
        .accept(&n.join_request(&code.encode()).expect("join request"))
        .expect("accept");
    n.import(&bundle).expect("import");
    dirs.push(laptop);
    let kern = founder.info().node_id;
    founder.set_dossier_relay(kern, true).expect("relay");
    let log = founder.export().expect("export");
    for dir in &dirs[1..] {
        Node::open(dir).expect("open").import(&log).expect("import");
    }
    Template { _tmp: tmp, dirs }
}

fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).expect("create a node directory");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))
        .expect("make a node directory private");
    for entry in std::fs::read_dir(from).expect("read a node directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a node file");
        }
    }
}

/// How often each fault strikes a request (in percent).
#[derive(Clone, Copy)]
struct Faults {
    lose_request: u32,
    lose_response: u32,
    duplicate: u32,
    delay: u32,
}

const FAULTY: Faults = Faults {
    lose_request: 4,
    lose_response: 4,
    duplicate: 6,
    delay: 4,
};

const NONE: Faults = Faults {
    lose_request: 0,
    lose_response: 0,
    duplicate: 0,
    delay: 0,
};

/// The simulated network between one requester and one responder for one session.
struct Link {
    responder: Mutex<Node>,
    /// What the responder's sync remembers.
    memory: Arc<SessionMemory>,
    from: NodeId,
    faults: Faults,
    rng: Mutex<StdRng>,
    /// Requests held back, to be delivered later (after the requester gave up).
    delayed: Mutex<Vec<Vec<u8>>>,
    /// What went wrong on the responding side (must stay empty).
    violations: Mutex<Vec<String>>,
    /// The newest sync protocol version the responder speaks (1 to 4): a node
    /// of an older version must never be sent a request of a later one.
    responder_version: u8,
    /// The newest version the requester speaks: what it is answered must be
    /// readable by it.
    requester_version: u8,
    /// Bundles of dossier changes that went over the link, either way.
    bundles: std::sync::atomic::AtomicUsize,
}

/// Whether a frame carries a dossier change sealed in format 2 (which only `/4`
/// nodes read; an older build takes it for a forgery).
fn seal_2_in(frame: &[u8]) -> bool {
    let sealed_2 = |d: &[regiosync_core::sync::DossierMessage]| {
        d.iter()
            .flat_map(|m| &m.changes)
            .any(|c| c.change.first() == Some(&2))
    };
    match (
        Request::decode_bundled(frame),
        Response::decode_bundled(frame),
    ) {
        (Ok((Request::Dossiers { dossiers } | Request::PushDossiers { dossiers, .. }, _)), _) => {
            sealed_2(&dossiers)
        }
        (_, Ok((Response::Dossiers { dossiers }, _))) => sealed_2(&dossiers),
        _ => false,
    }
}

impl Link {
    fn deliver(&self, node: &mut Node, frame: &[u8]) -> Vec<u8> {
        let answer = node.respond(&self.memory, &self.from, frame);
        if self.requester_version < 4 && seal_2_in(&answer.frame) {
            self.violations.lock().expect("violations").push(format!(
                "a node that speaks only /regiosync/sync/{} was answered with a change sealed in format 2",
                self.requester_version
            ));
        }
        let bundles = Request::decode_bundled(frame).map_or(0, |(_, b)| b.len())
            + Response::decode_bundled(&answer.frame).map_or(0, |(_, b)| b.len());
        self.bundles
            .fetch_add(bundles, std::sync::atomic::Ordering::Relaxed);
        let mut v = self.violations.lock().expect("violations");
        if let Some(why) = answer.misbehaved {
            v.push(format!("an honest requester was found misbehaving: {why}"));
        }
        if let Some(e) = answer.storage_failure {
            v.push(format!("the responder's store failed: {e}"));
        }
        answer.frame
    }
}

impl Transport for Link {
    async fn request_versioned(
        &self,
        peer: NodeId,
        forms: Vec<(StreamProtocol, Vec<u8>)>,
    ) -> Result<Vec<u8>, String> {
        // As libp2p's negotiation picks the newest protocol both speak (a node
        // offers only the versions it speaks).
        let both = self.responder_version.min(self.requester_version);
        let version = |p: &StreamProtocol| match p.as_ref() {
            "/regiosync/sync/4" => 4,
            "/regiosync/sync/3" => 3,
            "/regiosync/sync/2" => 2,
            _ => 1,
        };
        let frame = forms
            .into_iter()
            .find(|(p, _)| version(p) <= both)
            .map(|(_, f)| f)
            .ok_or("simulated: no protocol in common")?;
        self.request(peer, frame).await
    }

    async fn request(&self, _peer: NodeId, frame: Vec<u8>) -> Result<Vec<u8>, String> {
        if self.responder_version < 2
            && matches!(
                Request::decode(&frame),
                Ok(Request::PushDocs { .. } | Request::PushDossiers { .. })
            )
        {
            self.violations.lock().map_err(|e| e.to_string())?.push(
                "a node that speaks only /regiosync/sync/1 was sent a push naming peers".into(),
            );
        }
        if self.responder_version < 3
            && let Ok(Request::Dossiers { dossiers } | Request::PushDossiers { dossiers, .. }) =
                Request::decode(&frame)
            && dossiers
                .iter()
                .flat_map(|d| &d.changes)
                .any(|c| c.envelope.first() != Some(&1))
        {
            self.violations.lock().map_err(|e| e.to_string())?.push(
                "a node of an older version was sent a dossier change in a newer envelope format"
                    .into(),
            );
        }
        if self.responder_version < 3 && FrameFormat::of(&frame) == Some(FrameFormat::Compact) {
            self.violations
                .lock()
                .map_err(|e| e.to_string())?
                .push(format!(
                    "a node that speaks only /regiosync/sync/{} was sent a compact frame",
                    self.responder_version
                ));
        }
        if self.responder_version < 4 && seal_2_in(&frame) {
            self.violations.lock().map_err(|e| e.to_string())?.push(format!(
                "a node that speaks only /regiosync/sync/{} was sent a change sealed in format 2",
                self.responder_version
            ));
        }
        if self.responder_version < 4 && FrameFormat::of(&frame) == Some(FrameFormat::Bundled) {
            self.violations
                .lock()
                .map_err(|e| e.to_string())?
                .push(format!(
                    "a node that speaks only /regiosync/sync/{} was sent a bundled frame",
                    self.responder_version
                ));
        }
        let roll = |rng: &mut StdRng, percent: u32| rng.random_range(0..100) < percent;
        let (lose_request, delay, duplicate, lose_response) = {
            let mut rng = self.rng.lock().map_err(|e| e.to_string())?;
            (
                roll(&mut rng, self.faults.lose_request),
                roll(&mut rng, self.faults.delay),
                roll(&mut rng, self.faults.duplicate),
                roll(&mut rng, self.faults.lose_response),
            )
        };
        if lose_request {
            return Err("simulated: the request was lost".into());
        }
        if delay {
            self.delayed.lock().map_err(|e| e.to_string())?.push(frame);
            return Err("simulated: no answer in time".into());
        }
        let mut node = self.responder.lock().map_err(|e| e.to_string())?;
        let mut answer = self.deliver(&mut node, &frame);
        if duplicate {
            answer = self.deliver(&mut node, &frame);
        }
        if lose_response {
            return Err("simulated: the response was lost".into());
        }
        Ok(answer)
    }
}

/// A dossier as the simulation's model knows it.
struct SimDossier {
    id: DocId,
    /// Every party that was ever granted access (the owner and the woongemeente
    /// included).
    ever: BTreeSet<PartyName>,
    /// Parties whose grant is in force, per the model.
    granted: BTreeSet<PartyName>,
    erased: bool,
}

/// One seed's run.
struct Sim {
    seed: u64,
    _tmp: tempfile::TempDir,
    dirs: Vec<PathBuf>,
    nodes: Vec<Option<Node>>,
    /// What each node's sync remembers between sessions (lost when it restarts).
    memories: Vec<Arc<SessionMemory>>,
    ids: Vec<NodeId>,
    /// The newest sync protocol version each node speaks (drawn from the seed,
    /// `/regiosync/sync/1` only up to `/4`).
    versions: Vec<u8>,
    rng: StdRng,
    /// Which side of the partition each node is on.
    side: Vec<bool>,
    /// Requests delivered late: (responder, requester, frame).
    delayed: Vec<(usize, usize, Vec<u8>)>,
    plans: Vec<DocId>,
    dossiers: Vec<SimDossier>,
    laptop_removed: bool,
    violations: Vec<String>,
    /// What happened, for the failure message.
    trace: Vec<String>,
    rt: tokio::runtime::Runtime,
    /// The last session's report, for the failure message.
    last_report: String,
    /// Bundles of dossier changes sent in this run.
    bundles: usize,
}

fn staff() -> Reader {
    Reader {
        who: Who::cli("simulatie"),
        purpose: "begeleiding".into(),
    }
}

impl Sim {
    fn new(template: &Template, seed: u64) -> Sim {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dirs: Vec<PathBuf> = template
            .dirs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let to = tmp.path().join(format!("node-{i}"));
                copy_dir(d, &to);
                to
            })
            .collect();
        let nodes: Vec<Option<Node>> = dirs
            .iter()
            .map(|d| Some(Node::open(d).expect("open a copied node")))
            .collect();
        let ids = nodes
            .iter()
            .map(|n| n.as_ref().map(|n| n.info().node_id).expect("a node"))
            .collect();
        Sim {
            seed,
            _tmp: tmp,
            dirs,
            nodes,
            memories: (0..NODES).map(|_| Arc::default()).collect(),
            ids,
            // From a generator of their own, so that the schedule does not shift.
            versions: {
                let mut old = StdRng::seed_from_u64(seed ^ 0x001d_5eed);
                (0..NODES).map(|_| old.random_range(1..=4)).collect()
            },
            rng: StdRng::seed_from_u64(seed),
            side: vec![false; NODES],
            delayed: Vec::new(),
            plans: Vec::new(),
            dossiers: Vec::new(),
            laptop_removed: false,
            violations: Vec::new(),
            trace: Vec::new(),
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime"),
            last_report: String::new(),
            bundles: 0,
        }
    }

    fn node(&mut self, i: usize) -> &mut Node {
        self.nodes[i]
            .as_mut()
            .expect("every node is in place between steps")
    }

    fn party_of(i: usize) -> PartyName {
        party(match i {
            KERN => "gemeente-utrecht",
            ROC => "roc-midden",
            ZEIST => "gemeente-zeist",
            HOUTEN => "gemeente-houten",
            _ => "swv-utrecht",
        })
    }

    /// Nodes that take part (the removed laptop does not).
    fn members(&self) -> Vec<usize> {
        (0..NODES)
            .filter(|i| !(self.laptop_removed && *i == SWV_LAPTOP))
            .collect()
    }

    /// One sync session from `a` to `b` under `faults`; the session's faults come
    /// from a generator of its own (seed and step).
    /// Returns how many ops, changes and dossier items moved, and whether the session
    /// found the two in sync at once (one round trip).
    fn session(
        &mut self,
        a: usize,
        b: usize,
        faults: Faults,
        step: u64,
    ) -> Result<(usize, bool), String> {
        self.push(a, b, faults, step, vec![])
    }

    /// A session from `a` to `b` that first pushes `changed` (documents `a` just
    /// changed), as a running node does after a local edit; a plain session if
    /// `changed` is empty.
    fn push(
        &mut self,
        a: usize,
        b: usize,
        faults: Faults,
        step: u64,
        changed: Vec<DocId>,
    ) -> Result<(usize, bool), String> {
        let requester = self.nodes[a].take().expect("requester in place");
        let responder = self.nodes[b].take().expect("responder in place");
        let link = Link {
            responder: Mutex::new(responder),
            memory: self.memories[b].clone(),
            from: self.ids[a],
            faults,
            rng: Mutex::new(StdRng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(step),
            )),
            delayed: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            responder_version: self.versions[b],
            requester_version: self.versions[a],
            bundles: Default::default(),
        };
        let requester = tokio::sync::Mutex::new(requester);
        let result = if changed.is_empty() {
            self.rt
                .block_on(sync_with(&requester, &self.memories[a], &link, self.ids[b]))
        } else {
            self.rt.block_on(push_to(
                &requester,
                &self.memories[a],
                &link,
                self.ids[b],
                changed,
                // Named as pushed to as well, as a running node names its other
                // connected peers (here the rest of the region).
                (0..NODES)
                    .filter(|i| *i != a && *i != b)
                    .map(|i| self.ids[i])
                    .collect(),
            ))
        };
        self.nodes[a] = Some(requester.into_inner());
        let Link {
            responder,
            delayed,
            violations,
            bundles,
            ..
        } = link;
        self.bundles += bundles.into_inner();
        self.nodes[b] = Some(responder.into_inner().expect("responder"));
        for frame in delayed.into_inner().expect("delayed") {
            self.delayed.push((b, a, frame));
        }
        self.violations
            .extend(violations.into_inner().expect("violations"));
        if let Ok(report) = &result {
            self.last_report = format!("{report:?}");
        }
        match result {
            Ok(report) => Ok((
                report.moved.ops_received
                    + report.moved.changes_received
                    + report.moved.changes_sent
                    + report.moved.dossier_items_received
                    + report.moved.dossier_items_sent,
                report.round_trips == 1,
            )),
            Err(NodeError::Removed(_)) if a == SWV_LAPTOP && self.laptop_removed => {
                Err("removed".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// A request held back earlier arrives now.
    fn deliver_delayed(&mut self) {
        if self.delayed.is_empty() {
            return;
        }
        let at = self.rng.random_range(0..self.delayed.len());
        let (to, from, frame) = self.delayed.swap_remove(at);
        let from_id = self.ids[from];
        let memory = self.memories[to].clone();
        let answer = self.node(to).respond(&memory, &from_id, &frame);
        if let Some(why) = answer.misbehaved {
            self.violations.push(format!(
                "node {to} found node {from} misbehaving for a late request: {why}"
            ));
        }
        if let Some(e) = answer.storage_failure {
            self.violations
                .push(format!("node {to}'s store failed on a late request: {e}"));
        }
        self.trace.push(format!("late request {from} -> {to}"));
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.rng.random_range(0..from.len())]
    }

    /// One step of the faulty phase.
    fn step(&mut self, step: u64) {
        let members = self.members();
        let what = self.rng.random_range(0..100);
        match what {
            0..=39 => {
                let a = self.pick(&members);
                let b = self.pick(&members);
                if a == b || self.side[a] != self.side[b] {
                    return;
                }
                let r = self.session(a, b, FAULTY, step);
                self.trace.push(format!("sync {a} -> {b}: {r:?}"));
            }
            40..=49 => {
                let who = self.pick(&members);
                let n = self.rng.random_range(0..1000);
                let title = format!("Plan {n}");
                let r = self.node(who).create_plan(PlanKind::Jeugdplan, &title);
                if let Ok(id) = r {
                    self.plans.push(id);
                }
                self.trace
                    .push(format!("node {who} creates {title}: {:?}", r.map(|_| ())));
            }
            50..=64 => {
                if self.plans.is_empty() {
                    return;
                }
                let who = self.pick(&members);
                let plan = self.pick(&self.plans.clone());
                let section = self.rng.random_range(0..3);
                let text = format!("Tekst {} van node {who}.", self.rng.random_range(0..1000));
                let r = self
                    .node(who)
                    .set_section(&plan, &format!("Sectie {section}"), &text);
                self.trace
                    .push(format!("node {who} edits a plan: {:?}", r.map(|_| ())));
                // Half the time the edit is pushed at once to a node on its side.
                let to = self.pick(&members);
                if self.rng.random_range(0..2) == 0 && to != who && self.side[to] == self.side[who]
                {
                    let r = self.push(who, to, FAULTY, step, vec![plan]);
                    self.trace.push(format!("push {who} -> {to}: {r:?}"));
                }
            }
            65..=69 => {
                let woon = self.pick(&["gemeente-zeist", "gemeente-houten"]);
                let r = self.node(ROC).create_dossier(
                    &NewDossier {
                        woongemeente: party(woon),
                        basis: Basis::WettelijkeTaak,
                        purpose: "Jeugdwet".into(),
                        fields: vec![],
                    },
                    &staff(),
                );
                if let Ok(id) = r {
                    // Pushed at once to a node on the ROC's side (half the time).
                    let to = self.pick(&members);
                    if self.rng.random_range(0..2) == 0
                        && to != ROC
                        && self.side[to] == self.side[ROC]
                    {
                        let r = self.push(ROC, to, FAULTY, step, vec![id]);
                        self.trace.push(format!("push {ROC} -> {to}: {r:?}"));
                    }
                    let ever: BTreeSet<PartyName> =
                        [party("roc-midden"), party(woon)].into_iter().collect();
                    self.dossiers.push(SimDossier {
                        id,
                        granted: [party(woon)].into_iter().collect(),
                        ever,
                        erased: false,
                    });
                }
                self.trace.push(format!(
                    "the ROC opens a dossier for {woon}: {:?}",
                    r.map(|_| ())
                ));
            }
            70..=79 => {
                // A note by a device of a party that may read the dossier (the laptop
                // writes none: a removed device's dossier edits are not kept
                // everywhere yet, see docs/SECURITY.md "Known gaps").
                let Some(d) = self.live_dossier() else { return };
                let (id, granted) = (self.dossiers[d].id, self.dossiers[d].granted.clone());
                let writers: Vec<usize> = [ROC, ZEIST, HOUTEN, SWV]
                    .into_iter()
                    .filter(|i| *i == ROC || granted.contains(&Self::party_of(*i)))
                    .collect();
                let who = self.pick(&writers);
                // One to three notes in a row (a home visit's): a peer that lacks
                // several chained changes of one author gets them in a bundle.
                let n = self.rng.random_range(1..=3);
                let mut r = Ok(());
                for _ in 0..n {
                    let text = format!("Notitie {}.", self.rng.random_range(0..1000));
                    if r.is_ok() {
                        r = self.node(who).add_dossier_note(&id, &text, &staff());
                    }
                }
                self.trace
                    .push(format!("node {who} writes {n} notes: {r:?}"));
            }
            80..=84 => {
                let Some(d) = self.live_dossier() else { return };
                let p = party(self.pick(grantees()));
                let id = self.dossiers[d].id;
                let r = self.node(ROC).grant_dossier(
                    &id,
                    p.clone(),
                    Basis::Toestemming,
                    "begeleiding",
                    None,
                    &staff(),
                );
                if r.is_ok() {
                    self.dossiers[d].ever.insert(p.clone());
                    self.dossiers[d].granted.insert(p.clone());
                }
                self.trace
                    .push(format!("the ROC grants {p}: {:?}", r.map(|_| ())));
            }
            85..=87 => {
                let Some(d) = self.live_dossier() else { return };
                let granted: Vec<PartyName> = self.dossiers[d].granted.iter().cloned().collect();
                if granted.is_empty() {
                    return;
                }
                let p = granted[self.rng.random_range(0..granted.len())].clone();
                let id = self.dossiers[d].id;
                let r =
                    self.node(ROC)
                        .revoke_dossier(&id, p.clone(), "einde begeleiding", &staff());
                if r.is_ok() {
                    self.dossiers[d].granted.remove(&p);
                }
                self.trace
                    .push(format!("the ROC revokes {p}: {:?}", r.map(|_| ())));
            }
            88 => {
                let Some(d) = self.live_dossier() else { return };
                let id = self.dossiers[d].id;
                let r = self.node(ROC).erase_dossier(&id, &staff());
                if r.is_ok() {
                    self.dossiers[d].erased = true;
                }
                self.trace
                    .push(format!("the ROC erases a dossier: {:?}", r.map(|_| ())));
            }
            89 => {
                if self.laptop_removed {
                    return;
                }
                let laptop = self.ids[SWV_LAPTOP];
                let r = self.node(SWV).remove_device(laptop);
                if r.is_ok() {
                    self.laptop_removed = true;
                }
                self.trace
                    .push(format!("the SWV removes its laptop: {:?}", r.map(|_| ())));
            }
            90..=93 => {
                // A partition forms (or changes): every node picks a side.
                for s in self.side.iter_mut() {
                    *s = self.rng.random_bool(0.5);
                }
                self.trace.push(format!("partition {:?}", self.side));
            }
            94..=95 => {
                self.side = vec![false; NODES];
                self.trace.push("the partition heals".into());
            }
            96..=97 => self.deliver_delayed(),
            _ => {
                let i = self.pick(&(0..NODES).collect::<Vec<_>>());
                self.nodes[i] = None;
                self.nodes[i] = Some(Node::open(&self.dirs[i]).expect("reopen a node"));
                self.memories[i] = Arc::default();
                self.trace.push(format!("node {i} restarts"));
            }
        }
    }

    fn live_dossier(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..self.dossiers.len())
            .filter(|d| !self.dossiers[*d].erased)
            .collect();
        if live.is_empty() {
            return None;
        }
        Some(self.pick(&live))
    }

    /// Heals every partition, delivers what was held back, and syncs every pair
    /// without faults until a whole round finds every pair in sync at once. Returns
    /// the rounds it took.
    fn heal(&mut self) -> Result<usize, String> {
        self.side = vec![false; NODES];
        // The region upgrades: nodes of an older version do not get dossier changes
        // in the chained envelope format, which they cannot read (they are never
        // sent any: see `Link::request`), so they hold all only once on `/3`.
        self.versions = vec![4; NODES];
        while !self.delayed.is_empty() {
            self.deliver_delayed();
        }
        let members = self.members();
        for round in 0..HEAL_ROUNDS {
            let mut settled = true;
            // Both directions: either side of a pair opens sessions in a region.
            for &a in &members {
                for &b in members.iter().filter(|b| **b != a) {
                    let r = self.session(a, b, NONE, u64::MAX);
                    match r {
                        Ok((_, in_sync)) => {
                            if !in_sync && round + 1 == HEAL_ROUNDS {
                                let last = self.last_report.clone();
                                self.trace.push(format!("not in sync: {a} -> {b}: {last}"));
                                if std::env::var("SIM_DEBUG").is_ok() {
                                    self.describe_dossiers(&[a, b]);
                                }
                            }
                            settled &= in_sync;
                        }
                        Err(e) => return Err(format!("after healing, sync {a} -> {b}: {e}")),
                    }
                }
            }
            if settled {
                return Ok(round);
            }
        }
        Err(format!(
            "not in sync after {HEAL_ROUNDS} rounds of syncing every pair"
        ))
    }

    /// For debugging (`SIM_DEBUG=1`): what each of `nodes` holds of every plan and
    /// dossier, into the trace a failure prints.
    fn describe_dossiers(&mut self, nodes: &[usize]) {
        let today = time::OffsetDateTime::now_utc().date();
        for plan in self.plans.clone() {
            for &i in nodes {
                let n = self.node(i);
                let row = n.store().document(&plan).ok().flatten().is_some();
                let heads = n.plan_heads(&plan).map(|h| h.len());
                let changes = n.store().changes(&plan).map(|c| c.len());
                let listed = n.region_state().map(|s| s.docs.contains_key(&plan));
                let rejected = n.rejected_changes(&plan);
                self.trace.push(format!(
                    "plan {plan} on node {i}: row {row} heads {heads:?} changes {changes:?} rejected {rejected:?} listed {listed:?}"
                ));
            }
        }
        for d in 0..self.dossiers.len() {
            let id = self.dossiers[d].id;
            for &i in nodes {
                let n = self.node(i);
                let items = n
                    .store()
                    .dossier_items_of(&id)
                    .ok()
                    .flatten()
                    .map(|x| (x.ops.len(), x.changes.len()));
                let tomb = n
                    .store()
                    .dossier_erased(&id)
                    .ok()
                    .flatten()
                    .map(|t| t.audience);
                let state = n.region_state().ok();
                let in_force = match (n.dossier_access(&id), state) {
                    (Ok(a), Some(s)) => format!("{:?}", a.in_force(&s, today)),
                    (Err(e), _) => e.to_string(),
                    _ => "?".into(),
                };
                self.trace.push(format!(
                    "{id} on node {i}: items {items:?} tombstone {tomb:?} in force {in_force}"
                ));
            }
        }
    }

    /// The checks of the module doc; returns what failed.
    fn check(&mut self) -> Vec<String> {
        let mut failed = std::mem::take(&mut self.violations);
        let members = self.members();
        let today = time::OffsetDateTime::now_utc().date();

        // One region log.
        let heads: Vec<_> = members
            .iter()
            .map(|i| self.node(*i).region_state().ok().map(|s| s.heads))
            .collect();
        for (k, h) in heads.iter().enumerate() {
            if h.is_none() || *h != heads[0] {
                failed.push(format!(
                    "node {} holds another region log than node {}",
                    members[k], members[0]
                ));
            }
        }
        let state = match self.node(ROC).region_state() {
            Ok(s) => s,
            Err(e) => {
                failed.push(format!("the ROC cannot read its region state: {e}"));
                return failed;
            }
        };
        // Every plan of the region log everywhere, at the same heads (a plan the
        // laptop created but never passed on before its removal is not in it).
        for plan in self.plans.clone() {
            if !state.docs.contains_key(&plan) {
                continue;
            }
            let mut seen: Option<Vec<automerge::ChangeHash>> = None;
            for &i in &members {
                // Not held at all is the same as holding no accepted change of it
                // (e.g. a plan whose only changes came from the removed laptop).
                let held = self
                    .node(i)
                    .store()
                    .document(&plan)
                    .ok()
                    .flatten()
                    .is_some();
                let heads = if held {
                    self.node(i).plan_heads(&plan)
                } else {
                    Ok(vec![])
                };
                match heads {
                    Ok(mut h) => {
                        h.sort();
                        match &seen {
                            None => seen = Some(h),
                            Some(s) if *s != h => {
                                failed.push(format!("node {i} holds plan {plan} at other heads"))
                            }
                            Some(_) => {}
                        }
                    }
                    Err(e) => failed.push(format!("node {i} cannot read plan {plan}: {e}")),
                }
            }
        }
        // Dossiers.
        let held = |n: &Node, id: &DocId| {
            n.store()
                .dossier_items_of(id)
                .ok()
                .flatten()
                .map(|mut i| {
                    i.ops.sort();
                    i.changes.sort();
                    i
                })
                .filter(|i| !(i.ops.is_empty() && i.changes.is_empty()))
        };
        for d in 0..self.dossiers.len() {
            let (id, erased, ever) = (
                self.dossiers[d].id,
                self.dossiers[d].erased,
                self.dossiers[d].ever.clone(),
            );
            for &i in &members {
                let p = Self::party_of(i);
                let never = !ever.contains(&p) && i != KERN;
                let n = self.node(i);
                let has = held(n, &id);
                let tomb = n.store().dossier_erased(&id).ok().flatten();
                if never && (has.is_some() || tomb.is_some()) {
                    failed.push(format!(
                        "node {i} ({p}) never had access to dossier {id} but holds {} of it",
                        if has.is_some() {
                            "items"
                        } else {
                            "a tombstone"
                        }
                    ));
                }
                if erased && has.is_some() {
                    failed.push(format!("node {i} still holds erased dossier {id}"));
                }
                if erased && !never && tomb.is_none() && (i == ROC || i == KERN) {
                    failed.push(format!(
                        "node {i} holds no tombstone of erased dossier {id}"
                    ));
                }
            }
            if erased {
                continue;
            }
            let access = match self.node(ROC).dossier_access(&id) {
                Ok(a) => a,
                Err(e) => {
                    failed.push(format!("the ROC cannot fold dossier {id}: {e}"));
                    continue;
                }
            };
            let in_force = access.in_force(&state, today);
            let owner_holds = held(self.node(ROC), &id);
            for &i in &members {
                let p = Self::party_of(i);
                if !(in_force.contains(&p) || i == KERN) {
                    continue;
                }
                let here = held(self.node(i), &id);
                if here != owner_holds {
                    let count = |x: &Option<regiosync_store::DossierItems>| {
                        x.as_ref()
                            .map_or((0, 0), |x| (x.ops.len(), x.changes.len()))
                    };
                    failed.push(format!(
                        "node {i} ({p}) holds dossier {id} otherwise than its owner: (ops, changes) {:?} here, {:?} at the owner",
                        count(&here),
                        count(&owner_holds)
                    ));
                }
                if i != KERN
                    && let Err(e) = self.node(i).read_dossier(&id, &staff())
                {
                    failed.push(format!(
                        "node {i} ({p}) may read dossier {id} but cannot: {e}"
                    ));
                }
            }
        }
        // The removed laptop is told, by a device of its own party too.
        if self.laptop_removed {
            match self.session(SWV_LAPTOP, SWV, NONE, u64::MAX) {
                Err(e) if e == "removed" => {}
                other => failed.push(format!(
                    "the removed laptop was not told of its removal: {other:?}"
                )),
            }
        }
        failed
    }
}

/// Runs one seed; returns what failed, with the replay command and the schedule,
/// or the number of bundles of dossier changes sent.
fn run_seed(template: &Template, seed: u64) -> Result<usize, String> {
    let mut sim = Sim::new(template, seed);
    for step in 0..STEPS as u64 {
        sim.step(step);
    }
    let healed = sim.heal();
    let mut failed = match healed {
        Ok(_) => Vec::new(),
        Err(e) => vec![e],
    };
    failed.extend(sim.check());
    if failed.is_empty() {
        return Ok(sim.bundles);
    }
    // `SIM_KEEP=DIR`: the nodes' data dirs as the run left them, for a closer look.
    if let Ok(keep) = std::env::var("SIM_KEEP") {
        sim.nodes.iter_mut().for_each(|n| drop(n.take()));
        for (i, d) in sim.dirs.iter().enumerate() {
            copy_dir(d, &Path::new(&keep).join(format!("seed-{seed}/node-{i}")));
        }
    }
    Err(format!(
        "seed {seed} failed:\n  {}\nreplay: SIM_SEED={seed} cargo test -p regiosync-tests --test simulation -- --nocapture\nschedule:\n  {}",
        failed.join("\n  "),
        sim.trace.join("\n  ")
    ))
}

/// Runs the seeds `lane, lane + 4, lane + 8, ...` (`count` of them, or `SIM_SEEDS / 4`),
/// or only the seed in `SIM_SEED` if it falls in this lane: the four tests below split
/// the seeds between them so that they run in parallel.
fn run_seeds(lane: u64, count: u64) {
    regiosync_tests::logs();
    let seeds: Vec<u64> = match std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(one) if one % 4 == lane => vec![one],
        Some(_) => return,
        None => {
            let count = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map_or(count, |n| n.div_ceil(4));
            (0..count).map(|k| lane + 4 * k).collect()
        }
    };
    let template = template();
    let mut failures = BTreeMap::new();
    let mut bundles = 0;
    // Bundles need two `/4` readers and at least two chained changes one lacks: in
    // about one seed in fifteen. A lane of 200 seeds or more (`SIM_SEEDS=800`) must
    // have sent some.
    let many = seeds.len() >= 200;
    for seed in seeds {
        match run_seed(&template, seed) {
            Ok(b) => bundles += b,
            Err(e) => {
                failures.insert(seed, e);
                if failures.len() >= 3 {
                    break;
                }
            }
        }
    }
    // The runs cover the bundle format (frame format 3), not only its fallbacks.
    assert!(
        !many || !failures.is_empty() || bundles > 0,
        "no bundle of dossier changes was sent in any seed"
    );
    if let Some((_, first)) = failures.iter().next() {
        panic!(
            "{} seed(s) failed ({:?}); the first:\n{first}",
            failures.len(),
            failures.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn simulated_region_converges_seeds_0_mod_4() {
    run_seeds(0, SEEDS_PER_TEST);
}

#[test]
fn simulated_region_converges_seeds_1_mod_4() {
    run_seeds(1, SEEDS_PER_TEST);
}

#[test]
fn simulated_region_converges_seeds_2_mod_4() {
    run_seeds(2, SEEDS_PER_TEST);
}

#[test]
fn simulated_region_converges_seeds_3_mod_4() {
    run_seeds(3, SEEDS_PER_TEST);
}
