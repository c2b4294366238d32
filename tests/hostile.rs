//! Hostile members and the thief of a removed laptop, over real libp2p connections on
//! loopback. The region: the kerngemeente (founder, admin), the ROC with a desktop and
//! a laptop that is lost and removed, gemeente Zeist (where the student lives) and the
//! samenwerkingsverband (SWV), which has no access to the student's dossier. Honest
//! nodes run as services (`regiosync up`); the attacker speaks the sync protocol
//! through its own libp2p endpoint with its valid member key and sends what it likes.
//! Each test is named after the attack it shows failing, and checks that the honest
//! parties keep syncing during and after it.

use std::path::PathBuf;
use std::time::Duration;

use regiosync_core::control::{Op, OpBody, OpHash, Signed, SignedOp};
use regiosync_core::dossier::access::{Basis, DossierBody, DossierOp, KeyWrap, SignedDossierOp};
use regiosync_core::id::{DocId, NodeId, Role};
use regiosync_core::identity::NodeSecret;
use regiosync_core::sync::{DossierMessage, Refusal, Request, Response};
use regiosync_net::{Multiaddr, NetHandle, NetTask, PeerId};
use regiosync_node::Node;
use regiosync_node::dossiers::{NewDossier, Reader};
use regiosync_store::StoreRead;
use regiosync_tests::{
    Running, free_addr, logs, loopback_config, party, region_by_files, start_node, wait_until,
};

const KERN: usize = 0;
const ROC: usize = 1;
const ZEIST: usize = 2;
const SWV: usize = 3;
const LAPTOP: usize = 4;

const LIMIT: Duration = Duration::from_secs(60);

/// The tests of this file each run several nodes; on a 2-core machine one at a time.
static ONE_REGION_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Region {
    _tmp: tempfile::TempDir,
    dirs: Vec<PathBuf>,
    addrs: Vec<Multiaddr>,
    running: Vec<Option<Running>>,
}

/// Four parties and the ROC's laptop, which the founder has removed (every node
/// knows of the removal); the ROC has opened a dossier for a student in Zeist.
fn build() -> (Region, DocId) {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = region_by_files(
        tmp.path(),
        &[
            ("gemeente-utrecht", Role::Kerngemeente),
            ("roc-midden", Role::Roc),
            ("gemeente-zeist", Role::Gemeente),
            ("swv-utrecht", Role::Swv),
        ],
        false,
    );
    let mut founder = Node::open(&dirs[KERN]).unwrap();
    let laptop = tmp.path().join("roc-laptop");
    Node::init(&laptop, party("roc-midden"), Role::Roc, None).unwrap();
    let mut n = Node::open(&laptop).unwrap();
    let code = founder
        .invite(party("roc-midden"), Role::Roc, false, 3600)
        .unwrap();
    let (_, bundle) = founder
        .accept(&n.join_request(&code.encode()).unwrap())
        .unwrap();
    n.import(&bundle).unwrap();
    dirs.push(laptop);
    let log = founder.export().unwrap();
    for dir in &dirs[1..] {
        Node::open(dir).unwrap().import(&log).unwrap();
    }
    // The ROC opens the dossier while the laptop is still a member; the laptop gets
    // a copy of its access log (what a thief finds on the disk).
    let id = Node::open(&dirs[ROC])
        .unwrap()
        .create_dossier(
            &NewDossier {
                woongemeente: party("gemeente-zeist"),
                basis: Basis::WettelijkeTaak,
                purpose: "Wet educatie en beroepsonderwijs: verzuim".into(),
                fields: vec![(
                    regiosync_core::dossier::DossierField::Naam,
                    "Sanne de Vries".into(),
                )],
            },
            &mentor(),
        )
        .unwrap();
    // The laptop is lost: the founder removes it, and every node learns of it.
    let laptop_id = Node::open(&dirs[LAPTOP]).unwrap().info().node_id;
    founder.remove_device(laptop_id).unwrap();
    let log = founder.export().unwrap();
    for dir in &dirs[1..LAPTOP] {
        Node::open(dir).unwrap().import(&log).unwrap();
    }
    let addrs = dirs.iter().map(|_| free_addr()).collect();
    let running = dirs.iter().map(|_| None).collect();
    (
        Region {
            _tmp: tmp,
            dirs,
            addrs,
            running,
        },
        id,
    )
}

impl Region {
    /// Starts the honest nodes `which`, each dialling the others.
    fn start(&mut self, which: &[usize]) {
        for &i in which {
            let peers: Vec<Multiaddr> = which
                .iter()
                .filter(|j| **j != i)
                .map(|j| self.addrs[*j].clone())
                .collect();
            self.running[i] = Some(start_node(
                &self.dirs[i],
                loopback_config(&self.addrs[i], &peers),
            ));
        }
    }

    async fn stop_all(&mut self) {
        for r in &mut self.running {
            if let Some(r) = r.take() {
                r.stop().await;
            }
        }
    }

    fn node(&self, i: usize) -> Node {
        Node::open(&self.dirs[i]).unwrap()
    }

    fn id(&self, i: usize) -> NodeId {
        self.node(i).info().node_id
    }

    /// The access-log ops of the dossier in node `i`'s store.
    fn log(&self, i: usize, id: &DocId) -> Vec<SignedDossierOp> {
        self.node(i)
            .store()
            .dossier_ops(id)
            .unwrap()
            .iter()
            .map(|b| Signed::<DossierOp>::decode_stored(b).unwrap())
            .collect()
    }

    /// Signs a dossier op as node `i` (a member, or the thief with the laptop's key).
    fn sign(&self, i: usize, id: &DocId, parents: Vec<OpHash>, body: DossierBody) -> Vec<u8> {
        let mut n = self.node(i);
        let author = n.info().node_id;
        let region = n.region().unwrap().unwrap();
        let mut parents = parents;
        parents.sort();
        parents.dedup();
        Signed::sign(
            DossierOp {
                region,
                dossier: *id,
                parents,
                author,
                time: 1_800_000_000,
                body,
            },
            n.signing_key_for_tests().unwrap(),
        )
        .unwrap()
        .encode()
    }

    /// Waits until node `i` reads a note with `text` in the dossier.
    async fn wait_for_note(&self, i: usize, id: &DocId, text: &str) {
        wait_until(&format!("node {i} reads the note"), LIMIT, || {
            self.node(i)
                .read_dossier(id, &mentor())
                .is_ok_and(|d| d.contacten.iter().any(|c| c.tekst == text))
        })
        .await;
    }
}

fn mentor() -> Reader {
    Reader {
        who: regiosync_core::audit::Who::cli("j.bakker"),
        purpose: "begeleiding".into(),
    }
}

/// An attacker's own libp2p endpoint, with the key of the member it acts as.
struct Attacker {
    net: NetHandle,
    task: Option<NetTask>,
    victim: PeerId,
}

impl Attacker {
    async fn connect(r: &Region, as_node: usize, victim: usize) -> Self {
        let key = r.node(as_node).network_key().unwrap();
        let victim_peer = r.id(victim).to_peer_id();
        let (net, mut events, task) = regiosync_net::spawn(
            key,
            regiosync_net::Config {
                // Port 0: a port picked now could be one a starting node is about to bind.
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                members: vec![victim_peer],
                ..regiosync_net::Config::default()
            },
        )
        .unwrap();
        // Nobody answers this endpoint's events; keep the queue drained.
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        net.add_address(victim_peer, r.addrs[victim].clone())
            .await
            .unwrap();
        // Connected before the first request (the victim may still be starting).
        wait_until_async("the attacker connects", LIMIT, || {
            let net = net.clone();
            let addr = r.addrs[victim].clone();
            async move {
                if net
                    .connected_peers()
                    .await
                    .is_ok_and(|p| p.contains(&victim_peer))
                {
                    return true;
                }
                let _ = net.dial(addr).await;
                false
            }
        })
        .await;
        Attacker {
            net,
            task: Some(task),
            victim: victim_peer,
        }
    }

    /// Sends one request; the decoded response, or the transport error as text. A
    /// victim that is still starting (its listener not up yet) is dialled again.
    async fn ask(&self, req: &Request) -> Result<Response, String> {
        let mut tries = 0;
        let bytes = loop {
            match self.net.request(self.victim, req.encode()).await {
                Ok(b) => break b,
                Err(e) if tries < 100 && e.to_string().contains("dial") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        Response::decode(&bytes).map_err(|e| e.to_string())
    }

    async fn close(mut self) {
        if let Some(t) = self.task.take() {
            t.shutdown().await;
        }
    }
}

/// Waits until the async check `ok` holds, checking every 200 ms; fails the test with
/// `what` after `limit`.
async fn wait_until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut ok: impl FnMut() -> F,
) {
    let deadline = std::time::Instant::now() + limit;
    while !ok().await {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn dossiers(msgs: Vec<DossierMessage>) -> Request {
    Request::Dossiers { dossiers: msgs }
}

fn offer(id: DocId, have: Vec<[u8; 32]>, ops: Vec<Vec<u8>>) -> DossierMessage {
    DossierMessage {
        dossier: id,
        have,
        ops,
        changes: vec![],
        withheld: false,
    }
}

fn swv_grant() -> DossierBody {
    DossierBody::Grant {
        party: party("swv-utrecht"),
        basis: Basis::Toestemming,
        purpose: "ondersteuning".into(),
        until: None,
    }
}

/// Issue 14, item 1: the thief signs a backdated grant to the SWV on the dossier's
/// root; the SWV names it as a parent of its own ops (one pending behind a made-up
/// parent, one placed: "the key" wrapped for itself) and sends all of them to the
/// ROC's running node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thiefs_backdated_grant_vouched_by_the_swv_does_not_open_the_dossier() {
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let (mut r, id) = build();
    r.start(&[ROC, ZEIST]);
    // The thief's copy of the access log (the laptop held the dossier before it was
    // lost: the same ops as the ROC's).
    let log = r.log(ROC, &id);
    let open = log
        .iter()
        .find(|o| matches!(o.payload().body, DossierBody::Open { .. }))
        .unwrap()
        .hash();
    let forged = r.sign(LAPTOP, &id, vec![open], swv_grant());
    let forged_hash = Signed::<DossierOp>::decode(&forged).unwrap().hash();
    let epoch = r.node(ROC).dossier_access(&id).unwrap().epochs[0].epoch;
    let pending = r.sign(SWV, &id, vec![forged_hash, OpHash([7; 32])], swv_grant());
    let placed = r.sign(
        SWV,
        &id,
        log.iter().map(Signed::hash).chain([forged_hash]).collect(),
        DossierBody::Keys {
            epoch,
            new: false,
            wraps: vec![KeyWrap {
                device: r.id(SWV),
                wrapped: vec![1; 64],
            }],
        },
    );
    let before = r.log(ROC, &id).len();
    let swv = Attacker::connect(&r, SWV, ROC).await;
    for attempt in [
        vec![forged.clone(), pending.clone()],
        vec![forged.clone(), placed.clone()],
        vec![forged, pending, placed],
    ] {
        let answer = swv
            .ask(&dossiers(vec![offer(id, vec![], attempt)]))
            .await
            .unwrap();
        let Response::Dossiers { dossiers } = answer else {
            panic!("unexpected answer {answer:?}");
        };
        assert!(
            dossiers
                .iter()
                .all(|d| d.have.is_empty() && d.ops.is_empty() && d.changes.is_empty()),
            "the SWV was told something of the dossier: {dossiers:?}"
        );
    }
    swv.close().await;
    // Nothing of it was stored; the SWV holds no grant and no key.
    assert_eq!(r.log(ROC, &id).len(), before, "the ROC stored forged ops");
    let access = r.node(ROC).dossier_access(&id).unwrap();
    assert!(!access.grants.contains_key(&party("swv-utrecht")));
    assert!(access.wraps_for(&r.id(SWV)).is_empty());
    assert!(r.node(SWV).read_dossier(&id, &mentor()).is_err());
    // The honest parties keep working: the ROC writes, Zeist reads it.
    r.node(ROC)
        .add_dossier_note(&id, "Na de aanval.", &mentor())
        .unwrap();
    r.wait_for_note(ZEIST, &id, "Na de aanval.").await;
    assert!(
        r.log(ZEIST, &id)
            .iter()
            .all(|o| o.payload().author != r.id(LAPTOP) || o.hash() != forged_hash),
        "the forged grant reached Zeist"
    );
    r.stop_all().await;
}

/// Issue 14, item 2: a party (here Zeist, with access, so it knows every hash) signs
/// one op naming every op of the access log plus a made-up parent. It must not be
/// stored, and the owner can still write, grant and erase (and the erasure reaches
/// the other holder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_op_naming_every_hash_does_not_freeze_the_dossier() {
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let (mut r, id) = build();
    r.node(ROC)
        .grant_dossier(
            &id,
            party("gemeente-utrecht"),
            Basis::WettelijkeTaak,
            "leerplicht",
            None,
            &mentor(),
        )
        .unwrap();
    r.start(&[ROC, KERN]);
    wait_until("the kerngemeente receives the dossier", LIMIT, || {
        r.node(KERN).read_dossier(&id, &mentor()).is_ok()
    })
    .await;
    let log = r.log(ZEIST, &id);
    let all: Vec<OpHash> = r
        .log(ROC, &id)
        .iter()
        .map(Signed::hash)
        .chain(log.iter().map(Signed::hash))
        .chain([OpHash([9; 32])])
        .collect();
    let freeze = r.sign(ZEIST, &id, all, swv_grant());
    // Thousands of pending ops (item 7) as well, each behind its own made-up parent.
    let junk: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            r.sign(ZEIST, &id, vec![OpHash(h)], swv_grant())
        })
        .collect();
    let before = r.log(ROC, &id).len();
    let zeist = Attacker::connect(&r, ZEIST, ROC).await;
    let mut ops = vec![freeze];
    ops.extend(junk);
    let answer = zeist.ask(&dossiers(vec![offer(id, vec![], ops)])).await;
    assert!(
        matches!(answer, Ok(Response::Dossiers { .. })),
        "{answer:?}"
    );
    zeist.close().await;
    assert_eq!(r.log(ROC, &id).len(), before, "pending ops were stored");
    // The owner is not frozen: it writes, grants and erases.
    let mut roc = r.node(ROC);
    roc.add_dossier_note(&id, "Gewoon verder.", &mentor())
        .unwrap();
    roc.revoke_dossier(&id, party("gemeente-zeist"), "verhuisd", &mentor())
        .unwrap();
    r.wait_for_note(KERN, &id, "Gewoon verder.").await;
    roc.erase_dossier(&id, &mentor()).unwrap();
    wait_until("the erasure reaches the kerngemeente", LIMIT, || {
        r.node(KERN).store().dossier_erased(&id).unwrap().is_some()
    })
    .await;
    r.stop_all().await;
}

/// Issue 14, item 6: the SWV, which never had access, names the dossier's id (and a
/// random id) with a made-up hash, in every message that takes document ids. The
/// answers for both are the same, byte for byte: no `withheld`, no hashes, no count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_access_cannot_tell_a_dossier_from_a_random_id() {
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let (mut r, id) = build();
    r.start(&[ROC]);
    let random = DocId::from_bytes([0x5a; 16]);
    let swv = Attacker::connect(&r, SWV, ROC).await;
    let made_up = vec![[3u8; 32]];
    let mut answers = Vec::new();
    for d in [id, random] {
        let mut frames = Vec::new();
        for req in [
            dossiers(vec![offer(d, made_up.clone(), vec![])]),
            dossiers(vec![offer(d, vec![], vec![])]),
            Request::Docs {
                docs: vec![regiosync_core::sync::DocMessage {
                    doc: d,
                    sync: vec![],
                    changes: vec![],
                    need: made_up.clone(),
                }],
            },
            Request::DocDigests {
                buckets: vec![d.as_bytes()[0]],
                docs: vec![(d, [1; 8])],
            },
        ] {
            // The answers with the dossier id written out as the random one.
            let answer = swv.ask(&req).await.unwrap();
            let normalised = match answer {
                Response::Dossiers { mut dossiers } => {
                    for m in &mut dossiers {
                        assert_eq!(m.dossier, d);
                        m.dossier = random;
                    }
                    Response::Dossiers { dossiers }
                }
                Response::DocDigests { differing } => Response::DocDigests {
                    differing: differing
                        .into_iter()
                        .map(|x| if x == d { random } else { x })
                        .collect(),
                },
                other => other,
            };
            frames.push(normalised.encode());
        }
        answers.push(frames);
    }
    assert_eq!(answers[0], answers[1], "the answers tell the dossier apart");
    let Ok(Response::Dossiers { dossiers }) = Response::decode(&answers[0][0]) else {
        panic!("no dossiers answer");
    };
    assert!(!dossiers[0].withheld && dossiers[0].have.is_empty());
    swv.close().await;
    r.stop_all().await;
}

/// Issue 14, item 7: one request naming 200,000 random dossier ids is refused as a
/// whole (the peer is cut off), and the honest parties keep syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_200000_dossiers_is_refused_and_others_keep_syncing() {
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let (mut r, id) = build();
    r.start(&[ROC, ZEIST]);
    let swv = Attacker::connect(&r, SWV, ROC).await;
    let flood: Vec<DossierMessage> = (0..200_000u32)
        .map(|i| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_le_bytes());
            offer(DocId::from_bytes(b), vec![], vec![])
        })
        .collect();
    let answer = swv.ask(&dossiers(flood)).await;
    // Refused whole; the peer is cut off at once, which can close the connection
    // before the refusal reaches it.
    assert!(
        matches!(
            &answer,
            Ok(Response::Refused {
                reason: Refusal::BadMessage
            })
        ) || answer.as_ref().is_err_and(|e| e.contains("closed")),
        "{answer:?}"
    );
    // Cut off: it is refused for a while.
    let again = swv
        .net
        .request(swv.victim, Request::Buckets { buckets: vec![] }.encode())
        .await;
    assert!(again.is_err(), "the flooding peer was not cut off");
    swv.close().await;
    r.node(ROC)
        .add_dossier_note(&id, "Na de vloed.", &mentor())
        .unwrap();
    r.wait_for_note(ZEIST, &id, "Na de vloed.").await;
    r.stop_all().await;
}

/// Issue 14, item 5: a member offers 100,000 correctly signed region ops by a key
/// that never was a member, in pages. None is stored; an honest peer's idle sync is
/// still one round trip; a device removal reaches every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_region_ops_from_a_stranger_are_not_stored_and_a_removal_still_reaches_everyone() {
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let (mut r, _id) = build();
    r.start(&[KERN, ROC, ZEIST]);
    let region = r.node(ROC).region().unwrap().unwrap();
    let stranger = NodeSecret::generate().unwrap();
    let before = r.node(ROC).store().ops().unwrap().len();
    let swv = Attacker::connect(&r, SWV, ROC).await;
    let per_page = regiosync_core::sync::MAX_OPS_PER_MESSAGE;
    let mut offered = 0;
    for page in 0..100_000usize.div_ceil(per_page) {
        let ops: Vec<Vec<u8>> = (0..per_page)
            .map(|i| {
                SignedOp::sign(
                    Op {
                        region: Some(region),
                        parents: vec![region.0],
                        author: stranger.node_id(),
                        time: (page * per_page + i) as i64,
                        body: OpBody::SetAddrs { addrs: vec![] },
                    },
                    stranger.signing_key(),
                )
                .unwrap()
                .encode()
            })
            .collect();
        offered += ops.len();
        let answer = swv.ask(&Request::Ops { have: vec![], ops }).await;
        assert!(matches!(answer, Ok(Response::Ops { .. })), "{answer:?}");
    }
    assert!(offered >= 100_000);
    swv.close().await;
    assert_eq!(
        r.node(ROC).store().ops().unwrap().len(),
        before,
        "junk ops were stored"
    );
    // An honest member (the SWV's own node, behaving) catches up, then an idle sync
    // is a single round trip.
    let honest = Attacker::connect(&r, SWV, ROC).await;
    let node = tokio::sync::Mutex::new(r.node(SWV));
    regiosync_node::sync_with(
        &node,
        &regiosync_node::SessionMemory::default(),
        &honest.net,
        r.id(ROC),
    )
    .await
    .unwrap();
    let idle = regiosync_node::sync_with(
        &node,
        &regiosync_node::SessionMemory::default(),
        &honest.net,
        r.id(ROC),
    )
    .await
    .unwrap();
    assert_eq!(idle.round_trips, 1, "{idle:?}");
    honest.close().await;
    // A device removal reaches every running member.
    let swv_dev = r.id(SWV);
    r.node(KERN).remove_device(swv_dev).unwrap();
    for i in [ROC, ZEIST] {
        wait_until(&format!("node {i} learns of the removal"), LIMIT, || {
            r.node(i)
                .region_state()
                .is_ok_and(|s| s.active_device(&swv_dev).is_none())
        })
        .await;
    }
    r.stop_all().await;
}

/// Copies a data dir (a second copy of a device, as a thief or a restored backup
/// has it).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Issue 15, item 2: a writer (here the ROC's device, through two copies of its data
/// dir) sends, in one `Docs` request, two signed changes with the same actor and
/// sequence number. The first one held wins, the other is refused; the plan still
/// loads, the kerngemeente's node keeps running and syncing, and a later device
/// removal still reaches every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_changes_with_one_sequence_number_neither_break_the_plan_nor_stop_the_node() {
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let (mut r, _id) = build();
    let plan = r
        .node(ROC)
        .create_plan(regiosync_core::plan::PlanKind::Jeugdplan, "Jeugdplan 2027")
        .unwrap();
    let log = r.node(ROC).export().unwrap();
    for i in [KERN, ZEIST] {
        r.node(i).import(&log).unwrap();
    }
    // Two copies of the ROC's device each write the same next change differently.
    let mut twins = Vec::new();
    for (k, text) in ["Versie A.", "Versie B."].iter().enumerate() {
        let dir = r._tmp.path().join(format!("roc-copy-{k}"));
        copy_dir(&r.dirs[ROC], &dir);
        let mut n = Node::open(&dir).unwrap();
        n.set_section(&plan, "Inleiding", text).unwrap();
        twins.push(n.store().changes(&plan).unwrap());
    }
    let (a, b) = (&twins[0], &twins[1]);
    assert_eq!(a.len(), b.len());
    let (last_a, last_b) = (a.last().unwrap(), b.last().unwrap());
    assert_eq!(last_a.seq, last_b.seq);
    assert_ne!(last_a.hash, last_b.hash);
    let mut changes: Vec<regiosync_core::sync::SignedChange> = a
        .iter()
        .map(|c| regiosync_core::sync::SignedChange {
            change: c.bytes.clone(),
            envelope: c.envelope.clone().unwrap(),
        })
        .collect();
    changes.push(regiosync_core::sync::SignedChange {
        change: last_b.bytes.clone(),
        envelope: last_b.envelope.clone().unwrap(),
    });
    r.start(&[KERN, ZEIST]);
    let roc = Attacker::connect(&r, ROC, KERN).await;
    let answer = roc
        .ask(&Request::Docs {
            docs: vec![regiosync_core::sync::DocMessage {
                doc: plan,
                sync: vec![],
                changes,
                need: vec![],
            }],
        })
        .await;
    assert!(matches!(answer, Ok(Response::Docs { .. })), "{answer:?}");
    roc.close().await;
    // One of the twins is held, the plan loads, and it reads the first one.
    let held = r.node(KERN).store().changes(&plan).unwrap();
    assert!(held.iter().any(|c| c.hash == last_a.hash));
    assert!(!held.iter().any(|c| c.hash == last_b.hash));
    let p = r.node(KERN).plan(&plan).unwrap();
    assert!(p.sections.iter().any(|s| s.text.contains("Versie A.")));
    // The equivocation is on record, with the device and its party, for the admin.
    let faults = r.node(KERN).equivocations().unwrap();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].device, Some(r.id(ROC)));
    assert_eq!(faults[0].party, Some(party("roc-midden")));
    assert_eq!(faults[0].seq, last_b.seq);
    assert_eq!(faults[0].second, hex::encode(last_b.hash));
    assert!(r.node(ZEIST).equivocations().unwrap().is_empty());
    // Sync goes on: the kerngemeente edits, Zeist sees it; a removal reaches Zeist.
    r.node(KERN)
        .set_section(&plan, "Aanpak", "Samen verder.")
        .unwrap();
    wait_until("Zeist sees the edit", LIMIT, || {
        r.node(ZEIST)
            .plan(&plan)
            .is_ok_and(|p| p.sections.iter().any(|s| s.text.contains("Samen verder.")))
    })
    .await;
    let swv = r.id(SWV);
    r.node(KERN).remove_device(swv).unwrap();
    wait_until("Zeist learns of the removal", LIMIT, || {
        r.node(ZEIST)
            .region_state()
            .is_ok_and(|s| s.active_device(&swv).is_none())
    })
    .await;
    // Stopping checks that neither node stopped with an error on the way.
    r.stop_all().await;
}

/// Issue 15, items 3, 5, 6 and 7: a writer (the ROC's device, signing changes
/// crafted with plain Automerge) sends changes that rewrite the plan's owner and
/// kind, set its schema to 99, delete its sections, or nest 100,000 maps. Each is
/// refused on receipt like a bad signature: the plan keeps loading, with its owner
/// and kind, on the receiving node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_cannot_rewrite_a_plans_identity_brick_it_or_overflow_its_readers() {
    use automerge::transaction::Transactable;
    use regiosync_core::envelope::{ChangeEnvelope, SignedFields};
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let (mut r, _id) = build();
    let plan = r
        .node(KERN)
        .create_plan(regiosync_core::plan::PlanKind::Jeugdplan, "Jeugdplan 2027")
        .unwrap();
    let log = r.node(KERN).export().unwrap();
    r.node(ROC).import(&log).unwrap();
    let stored = r.node(KERN).store().changes(&plan).unwrap();
    let mut base = automerge::Automerge::new();
    base.apply_changes(
        stored
            .iter()
            .map(|c| automerge::Change::from_bytes(c.bytes.clone()).unwrap()),
    )
    .unwrap();
    let mut roc = r.node(ROC);
    let folded = roc.control().unwrap().unwrap();
    let author = roc.info().node_id;
    let key = roc.signing_key_for_tests().unwrap().clone();
    type Attack = Box<dyn Fn(&mut automerge::transaction::Transaction<'_>)>;
    let attacks: Vec<Attack> = vec![
        Box::new(|t| t.put(automerge::ROOT, "owner", "roc-midden").unwrap()),
        Box::new(|t| t.put(automerge::ROOT, "kind", "oogo-verslag").unwrap()),
        Box::new(|t| t.put(automerge::ROOT, "schema", 99u64).unwrap()),
        Box::new(|t| t.delete(automerge::ROOT, "sections").unwrap()),
        Box::new(|t| {
            let mut obj = t
                .put_object(automerge::ROOT, "x", automerge::ObjType::Map)
                .unwrap();
            for _ in 0..100_000 {
                obj = t.put_object(&obj, "y", automerge::ObjType::Map).unwrap();
            }
        }),
    ];
    let mut crafted = Vec::new();
    for attack in &attacks {
        let mut doc = base.fork();
        doc.set_actor(author.actor_id());
        let mut t = doc.transaction();
        attack(&mut t);
        t.commit();
        let change = doc.get_last_local_change().unwrap();
        let env = ChangeEnvelope::sign(
            SignedFields {
                region: folded.state.region,
                doc: plan,
                change_hash: change.hash().0,
                author,
                control_heads: folded.state.heads.clone(),
            },
            &key,
        )
        .unwrap();
        crafted.push((change.hash().0, change.raw_bytes().to_vec(), env.encode()));
    }
    r.start(&[KERN]);
    let attacker = Attacker::connect(&r, ROC, KERN).await;
    for (_, bytes, envelope) in &crafted {
        let answer = attacker
            .ask(&Request::Docs {
                docs: vec![regiosync_core::sync::DocMessage {
                    doc: plan,
                    sync: vec![],
                    changes: vec![regiosync_core::sync::SignedChange {
                        change: bytes.clone(),
                        envelope: envelope.clone(),
                    }],
                    need: vec![],
                }],
            })
            .await;
        assert!(matches!(answer, Ok(Response::Docs { .. })), "{answer:?}");
    }
    attacker.close().await;
    let held = r.node(KERN).store().changes(&plan).unwrap();
    for (hash, ..) in &crafted {
        assert!(
            !held.iter().any(|c| c.hash == *hash),
            "a crafted change was stored"
        );
    }
    let p = r.node(KERN).plan(&plan).unwrap();
    assert_eq!(p.owner, party("gemeente-utrecht"));
    assert_eq!(p.kind, regiosync_core::plan::PlanKind::Jeugdplan);

    // Nesting built up over several changes, each within the per-change limit: the
    // changes are held (each alone is fine), but the plan loads without the ones
    // that go deeper than the limit, and without what builds on them.
    let before = r.node(KERN).rejected_changes(&plan).unwrap();
    let mut doc = base.fork();
    doc.set_actor(author.actor_id());
    let mut obj = automerge::ROOT;
    let mut chain = Vec::new();
    for _ in 0..4 {
        let mut t = doc.transaction();
        for _ in 0..15 {
            obj = t.put_object(&obj, "y", automerge::ObjType::Map).unwrap();
        }
        t.commit();
        let change = doc.get_last_local_change().unwrap();
        let env = ChangeEnvelope::sign(
            SignedFields {
                region: folded.state.region,
                doc: plan,
                change_hash: change.hash().0,
                author,
                control_heads: folded.state.heads.clone(),
            },
            &key,
        )
        .unwrap();
        chain.push(regiosync_core::sync::SignedChange {
            change: change.raw_bytes().to_vec(),
            envelope: env.encode(),
        });
    }
    let attacker = Attacker::connect(&r, ROC, KERN).await;
    let answer = attacker
        .ask(&Request::Docs {
            docs: vec![regiosync_core::sync::DocMessage {
                doc: plan,
                sync: vec![],
                changes: chain,
                need: vec![],
            }],
        })
        .await;
    assert!(matches!(answer, Ok(Response::Docs { .. })), "{answer:?}");
    attacker.close().await;
    let p = r.node(KERN).plan(&plan).unwrap();
    assert_eq!(p.owner, party("gemeente-utrecht"));
    assert_eq!(
        r.node(KERN).rejected_changes(&plan).unwrap(),
        before + 3,
        "the first change (15 deep) stands; the second would go past 16, the rest build on it"
    );

    r.stop_all().await;
}

/// Issue 15, item 5: marks built up over several changes, each with the most marks
/// one change may open, nested in one section's text (5,000 made `doc show` take 12 s,
/// growing about cubically). The changes are held, but the plan loads without the one
/// that takes the writing device past its marks budget for that text, and without
/// what builds on it; the plan reads, and honest edits go on and sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_cannot_pile_up_marks_over_many_changes() {
    use automerge::transaction::Transactable;
    use regiosync_core::envelope::{ChangeEnvelope, SignedFields};
    use regiosync_core::plan::received::{MAX_DEVICE_MARKS_PER_TEXT, MAX_MARKS_PER_CHANGE};
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let (mut r, _id) = build();
    let plan = r
        .node(KERN)
        .create_plan(regiosync_core::plan::PlanKind::Jeugdplan, "Jeugdplan 2027")
        .unwrap();
    let log = r.node(KERN).export().unwrap();
    r.node(ROC).import(&log).unwrap();
    r.node(ZEIST).import(&log).unwrap();
    let stored = r.node(KERN).store().changes(&plan).unwrap();
    let mut base = automerge::Automerge::new();
    base.apply_changes(
        stored
            .iter()
            .map(|c| automerge::Change::from_bytes(c.bytes.clone()).unwrap()),
    )
    .unwrap();
    let mut roc = r.node(ROC);
    let folded = roc.control().unwrap().unwrap();
    let author = roc.info().node_id;
    let key = roc.signing_key_for_tests().unwrap().clone();
    drop(roc);
    r.start(&[KERN, ZEIST]);
    let before = r.node(KERN).rejected_changes(&plan).unwrap();
    let mut doc = base.fork();
    doc.set_actor(author.actor_id());
    let sections = automerge::ReadDoc::get(&doc, automerge::ROOT, "sections")
        .unwrap()
        .unwrap()
        .1;
    let section = automerge::ReadDoc::get(&doc, &sections, 0)
        .unwrap()
        .unwrap()
        .1;
    let text = automerge::ReadDoc::get(&doc, &section, "text")
        .unwrap()
        .unwrap()
        .1;
    let len = 2 * MAX_MARKS_PER_CHANGE + 2;
    let mut t = doc.transaction();
    t.splice_text(&text, 0, 0, &"x".repeat(len)).unwrap();
    t.commit();
    let rounds = MAX_DEVICE_MARKS_PER_TEXT as usize / MAX_MARKS_PER_CHANGE + 2;
    for _ in 0..rounds {
        let mut t = doc.transaction();
        for i in 0..MAX_MARKS_PER_CHANGE {
            t.mark(
                &text,
                automerge::marks::Mark::new("strong".into(), true, i, len - i),
                automerge::marks::ExpandMark::None,
            )
            .unwrap();
        }
        t.commit();
    }
    let mut chain = Vec::new();
    for change in doc.get_changes(&base.get_heads()) {
        let env = ChangeEnvelope::sign(
            SignedFields {
                region: folded.state.region,
                doc: plan,
                change_hash: change.hash().0,
                author,
                control_heads: folded.state.heads.clone(),
            },
            &key,
        )
        .unwrap();
        chain.push(regiosync_core::sync::SignedChange {
            change: change.raw_bytes().to_vec(),
            envelope: env.encode(),
        });
    }
    let attacker = Attacker::connect(&r, ROC, KERN).await;
    let answer = attacker
        .ask(&Request::Docs {
            docs: vec![regiosync_core::sync::DocMessage {
                doc: plan,
                sync: vec![],
                changes: chain,
                need: vec![],
            }],
        })
        .await;
    assert!(matches!(answer, Ok(Response::Docs { .. })), "{answer:?}");
    attacker.close().await;
    assert_eq!(
        r.node(KERN).rejected_changes(&plan).unwrap(),
        before + rounds - MAX_DEVICE_MARKS_PER_TEXT as usize / MAX_MARKS_PER_CHANGE,
        "the text and the marks up to the budget stand; the next change goes past it, the rest build on it"
    );
    let p = r.node(KERN).plan(&plan).unwrap();
    assert_eq!(p.owner, party("gemeente-utrecht"));
    r.node(KERN)
        .set_section(&plan, "Aanpak", "Samen verder.")
        .unwrap();
    wait_until("Zeist sees the honest edit", LIMIT, || {
        r.node(ZEIST)
            .plan(&plan)
            .is_ok_and(|p| p.sections.iter().any(|s| s.text.contains("Samen verder.")))
    })
    .await;
    r.stop_all().await;
}

/// Sealed changes are chained per author (PROTOCOL.md, "Sealed change envelopes"):
/// a change's signature vouches for its author's previous one, so that a chain of
/// one device's changes costs one signature check. Zeist, a member with access,
/// makes up a sealed change in the ROC's name (without the ROC's signature) and
/// names it as the predecessor of its own, validly signed, change. A link vouches
/// only for its own author's envelopes: the made-up change is refused as a forgery
/// and never stored, while Zeist's own change is taken (the message was judged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_vouch_for_a_change_made_up_in_another_devices_name() {
    use regiosync_core::envelope::sealed::{
        SealedEnvelope, SealedFields, envelope_hash, sealed_hash,
    };
    use regiosync_core::sync::{FrameFormat, SignedChange};

    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let (mut r, id) = build();
    // Zeist (the student's municipality, granted at opening) gets the dossier.
    r.start(&[ROC, ZEIST]);
    wait_until("Zeist receives the dossier", LIMIT, || {
        r.node(ZEIST).read_dossier(&id, &mentor()).is_ok()
    })
    .await;
    r.stop_all().await;
    // The ROC's own first change gives what a sealed change of the dossier names
    // now: region, control and access heads, and sealed bytes of the current epoch.
    let rows = r.node(ROC).store().changes(&id).unwrap();
    let real = rows.last().unwrap();
    let template = SealedEnvelope::decode(real.envelope.as_deref().unwrap()).unwrap();
    let bytes = |tag: u8| {
        let mut b = real.bytes.clone();
        let last = b.len() - 1;
        b[last] ^= tag;
        b
    };
    // Made up in the ROC's name: signed with its key here only to get a well-formed
    // envelope, then the signature is garbled (the attacker has no such key).
    let made_up_bytes = bytes(1);
    let made_up = SealedEnvelope::sign(
        SealedFields {
            change_hash: [0x42; 32],
            sealed_hash: sealed_hash(&made_up_bytes),
            prev: None,
            ..template.fields().clone()
        },
        r.node(ROC).signing_key_for_tests().unwrap(),
    )
    .unwrap();
    let mut made_up_wire = made_up.encode();
    made_up_wire[1..65].copy_from_slice(&[7; 64]);
    // Zeist's own change, validly signed, naming the made-up one as its predecessor.
    let zeist_bytes = bytes(2);
    let zeist_id = r.id(ZEIST);
    let own = SealedEnvelope::sign(
        SealedFields {
            change_hash: [0x43; 32],
            sealed_hash: sealed_hash(&zeist_bytes),
            author: zeist_id,
            prev: Some(envelope_hash(&made_up_wire)),
            ..template.fields().clone()
        },
        r.node(ZEIST).signing_key_for_tests().unwrap(),
    )
    .unwrap();
    r.start(&[ROC]);
    let zeist = Attacker::connect(&r, ZEIST, ROC).await;
    let mut msg = offer(id, vec![], vec![]);
    msg.changes = vec![
        SignedChange {
            change: made_up_bytes,
            envelope: made_up_wire,
        },
        SignedChange {
            change: zeist_bytes,
            envelope: own.encode(),
        },
    ];
    // In frame format 3, as a peer on `/regiosync/sync/4` sends it (older formats
    // leave out the chained changes, sealed in format 2).
    // The ROC answers, or cuts the forger off first: either way the message was
    // judged (below).
    let frame = dossiers(vec![msg]).encode_as(FrameFormat::Bundled);
    let _ = zeist.net.request(zeist.victim, frame).await;
    zeist.close().await;
    r.stop_all().await;
    let held: Vec<[u8; 32]> = r
        .node(ROC)
        .store()
        .changes(&id)
        .unwrap()
        .iter()
        .map(|c| c.hash)
        .collect();
    assert!(
        !held.contains(&[0x42; 32]),
        "the change made up in the ROC's name was stored"
    );
    assert!(
        held.contains(&[0x43; 32]),
        "Zeist's own change was not judged on its own signature"
    );
}
