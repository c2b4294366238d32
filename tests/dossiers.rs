//! Sealed student dossiers across a region on loopback: the kerngemeente (founder,
//! admin), the ROC with a desktop and a laptop, buurgemeente A (gemeente-zeist, where
//! the student lives) with two devices, buurgemeente B (gemeente-houten) and the SWV;
//! each a running node service over real libp2p connections, edits made through
//! separate handles on the data dirs as the CLI makes them. Convergence is awaited
//! with a timeout, never a fixed sleep.

use std::path::PathBuf;
use std::time::Duration;

use regiosync_core::audit::verify_chain;
use regiosync_core::dossier::access::Basis;
use regiosync_core::dossier::{Dossier, DossierField};
use regiosync_core::id::{DocId, NodeId, Role};
use regiosync_core::plan::PlanKind;
use regiosync_net::Multiaddr;
use regiosync_node::Node;
use regiosync_node::dossiers::{NewDossier, Reader};
use regiosync_store::StoreRead;
use regiosync_tests::{
    Running, free_addr, logs, loopback_config, party, region_by_files, start_node, wait_until,
};

const KERN: usize = 0;
const ROC: usize = 1;
const ZEIST: usize = 2;
const HOUTEN: usize = 3;
const SWV: usize = 4;
const ROC_LAPTOP: usize = 5;
const ZEIST_2: usize = 6;

const LIMIT: Duration = Duration::from_secs(60);

/// Seven nodes of five parties; every node knows every device from the start.
struct Region {
    _tmp: tempfile::TempDir,
    dirs: Vec<PathBuf>,
    addrs: Vec<Multiaddr>,
    running: Vec<Option<Running>>,
}

/// The tests of this file each run seven nodes; on a 2-core machine they run one at a
/// time.
static ONE_REGION_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn build() -> Region {
    let tmp = tempfile::tempdir().unwrap();
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
    // Second devices: the ROC's laptop and a second device at Zeist.
    let mut founder = Node::open(&dirs[KERN]).unwrap();
    for (name, p, role) in [
        ("roc-laptop", "roc-midden", Role::Roc),
        ("zeist-2", "gemeente-zeist", Role::Gemeente),
    ] {
        let dir = tmp.path().join(name);
        Node::init(&dir, party(p), role, None).unwrap();
        let mut n = Node::open(&dir).unwrap();
        let code = founder.invite(party(p), role, false, 3600).unwrap();
        let (_, bundle) = founder
            .accept(&n.join_request(&code.encode()).unwrap())
            .unwrap();
        n.import(&bundle).unwrap();
        dirs.push(dir);
    }
    let log = founder.export().unwrap();
    for dir in &dirs[1..] {
        Node::open(dir).unwrap().import(&log).unwrap();
    }
    let addrs = dirs.iter().map(|_| free_addr()).collect();
    let running = dirs.iter().map(|_| None).collect();
    Region {
        _tmp: tmp,
        dirs,
        addrs,
        running,
    }
}

impl Region {
    fn start(&mut self, i: usize) {
        let peers: Vec<Multiaddr> = (0..self.dirs.len())
            .filter(|j| *j != i)
            .map(|j| self.addrs[j].clone())
            .collect();
        self.running[i] = Some(start_node(
            &self.dirs[i],
            loopback_config(&self.addrs[i], &peers),
        ));
    }

    fn start_all(&mut self) {
        for i in 0..self.dirs.len() {
            self.start(i);
        }
    }

    async fn stop(&mut self, i: usize) {
        if let Some(r) = self.running[i].take() {
            r.stop().await;
        }
    }

    async fn stop_all(&mut self) {
        for i in 0..self.dirs.len() {
            self.stop(i).await;
        }
    }

    fn node(&self, i: usize) -> Node {
        Node::open(&self.dirs[i]).unwrap()
    }

    fn id(&self, i: usize) -> NodeId {
        self.node(i).info().node_id
    }

    /// The dossier as node `i` reads it, or the error as text.
    fn read(&self, i: usize, id: &DocId) -> Result<Dossier, String> {
        self.node(i)
            .read_dossier(id, &mentor())
            .map_err(|e| e.to_string())
    }

    /// Ops and sealed changes of the dossier in node `i`'s store.
    fn held(&self, i: usize, id: &DocId) -> usize {
        self.node(i)
            .store()
            .dossier_items()
            .unwrap()
            .get(id)
            .map_or(0, |it| it.ops.len() + it.changes.len())
    }

    /// Every byte of node `i`'s store files (database, WAL, journal).
    fn store_bytes(&self, i: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for f in std::fs::read_dir(&self.dirs[i]).unwrap() {
            let f = f.unwrap();
            if f.file_name().to_string_lossy().starts_with("store.sqlite") {
                out.extend(std::fs::read(f.path()).unwrap());
            }
        }
        assert!(!out.is_empty());
        out
    }
}

fn mentor() -> Reader {
    Reader {
        who: regiosync_core::audit::Who::cli("j.bakker"),
        purpose: "begeleiding".into(),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The ROC opens a dossier for a student living in Zeist.
fn open_dossier(r: &Region) -> DocId {
    r.node(ROC)
        .create_dossier(
            &NewDossier {
                woongemeente: party("gemeente-zeist"),
                basis: Basis::WettelijkeTaak,
                purpose: "Wet educatie en beroepsonderwijs: verzuim en ondersteuning".into(),
                fields: vec![
                    (DossierField::Naam, "Sanne de Vries".into()),
                    (DossierField::Opleiding, "Verzorgende IG niveau 3".into()),
                    (DossierField::Zorg, "Jeugdhulp ambulant".into()),
                ],
            },
            &mentor(),
        )
        .unwrap()
}

fn note(r: &Region, i: usize, id: &DocId, text: &str) {
    r.node(i).add_dossier_note(id, text, &mentor()).unwrap();
}

fn has_note(d: &Dossier, text: &str) -> bool {
    d.contacten.iter().any(|c| c.tekst == text)
}

/// The student moves to Houten: the ROC revokes Zeist's access and grants Houten.
fn move_to_houten(r: &Region, id: &DocId, basis: Basis, purpose: &str) {
    let mut roc = r.node(ROC);
    roc.revoke_dossier(
        id,
        party("gemeente-zeist"),
        "verhuisd naar Houten",
        &mentor(),
    )
    .unwrap();
    roc.grant_dossier(
        id,
        party("gemeente-houten"),
        basis,
        purpose,
        None,
        &mentor(),
    )
    .unwrap();
}

/// Waits until each of `nodes` reads the note `text` in the dossier.
async fn wait_for_note(r: &Region, nodes: &[usize], id: &DocId, text: &str) {
    for &i in nodes {
        wait_until(&format!("node {i} reads the note"), LIMIT, || {
            r.read(i, id).is_ok_and(|d| has_note(&d, text))
        })
        .await;
    }
}

/// A plan everyone reads, edited by `by` and awaited on `on`: shows sync is alive.
async fn plans_still_sync(r: &Region, plan: &DocId, by: usize, on: &[usize], text: &str) {
    wait_until(&format!("node {by} has the plan"), LIMIT, || {
        r.node(by).plan(plan).is_ok()
    })
    .await;
    r.node(by).set_section(plan, "Voortgang", text).unwrap();
    for &i in on {
        wait_until(&format!("node {i} sees the plan edit"), LIMIT, || {
            r.node(i).plan(plan).is_ok_and(|p| {
                p.sections
                    .iter()
                    .any(|s| s.title == "Voortgang" && s.text == text)
            })
        })
        .await;
    }
}

fn plan_for_all(r: &Region) -> DocId {
    let mut kern = r.node(KERN);
    let plan = kern
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan 2027")
        .unwrap();
    kern.set_acl(
        &plan,
        Some(
            [
                "roc-midden",
                "gemeente-zeist",
                "gemeente-houten",
                "swv-utrecht",
            ]
            .map(party)
            .to_vec(),
        ),
        Some(vec![party("roc-midden")]),
    )
    .unwrap();
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dossier_reaches_exactly_its_parties_and_a_relay_forwards_what_it_cannot_read() {
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let mut r = build();
    let plan = plan_for_all(&r);
    r.start_all();
    let id = open_dossier(&r);

    // The ROC and Zeist read it on all their devices.
    for i in [ROC_LAPTOP, ZEIST, ZEIST_2] {
        wait_until(&format!("node {i} reads the dossier"), LIMIT, || {
            r.read(i, &id).is_ok_and(|d| d.naam == "Sanne de Vries")
        })
        .await;
    }
    // Houten, the kerngemeente and the SWV receive nothing of it, although they keep
    // syncing plans with the others (the ROC's edit reaches them after the dossier
    // reached Zeist).
    plans_still_sync(&r, &plan, ROC, &[KERN, HOUTEN, SWV], "Dossier gedeeld.").await;
    for i in [KERN, HOUTEN, SWV] {
        let n = r.node(i);
        assert_eq!(r.held(i, &id), 0, "node {i} holds dossier data");
        assert!(n.store().document(&id).unwrap().is_none());
        assert!(n.store().dossier_ops(&id).unwrap().is_empty());
        assert!(
            !contains(&r.store_bytes(i), id.as_bytes()),
            "node {i}'s store names the dossier"
        );
        assert!(r.read(i, &id).is_err());
    }

    // The kerngemeente becomes the region's dossier relay: it receives the dossier,
    // and cannot open it.
    let kern_id = r.id(KERN);
    r.node(KERN).set_dossier_relay(kern_id, true).unwrap();
    let full = r.held(ROC, &id);
    wait_until("the relay holds the dossier", LIMIT, || {
        r.held(KERN, &id) == full
    })
    .await;
    let e = r.read(KERN, &id).unwrap_err();
    assert!(e.contains("no key"), "{e}");
    assert!(!contains(&r.store_bytes(KERN), b"Sanne de Vries"));
    // Houten and the SWV still have nothing.
    assert_eq!(r.held(HOUTEN, &id) + r.held(SWV, &id), 0);

    // Zeist is offline; the ROC writes a note, the relay takes it, the ROC goes
    // offline; Zeist comes back and gets the note from the relay alone.
    r.stop(ZEIST).await;
    r.stop(ZEIST_2).await;
    let text = "Huisbezoek: afspraak met ouders op dinsdag.";
    note(&r, ROC, &id, text);
    let full = r.held(ROC, &id);
    wait_until("the relay holds the note", LIMIT, || {
        r.held(KERN, &id) == full
    })
    .await;
    r.stop(ROC).await;
    r.stop(ROC_LAPTOP).await;
    r.start(ZEIST);
    wait_until("Zeist reads the note forwarded by the relay", LIMIT, || {
        r.read(ZEIST, &id).is_ok_and(|d| has_note(&d, text))
    })
    .await;
    assert_eq!(r.held(HOUTEN, &id) + r.held(SWV, &id), 0);
    r.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_student_moves_and_a_lost_laptop_is_removed() {
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let mut r = build();
    let plan = plan_for_all(&r);
    r.start_all();
    let id = open_dossier(&r);
    let before = "Intake: ondersteuning bij plannen.";
    note(&r, ROC, &id, before);
    wait_for_note(&r, &[ZEIST, ZEIST_2, ROC_LAPTOP], &id, before).await;

    // The student moves to Houten: revoke Zeist, grant Houten.
    move_to_houten(
        &r,
        &id,
        Basis::WettelijkeTaak,
        "Jeugdwet: ondersteuning na verhuizing",
    );
    let after = "Overdracht aan Houten besproken.";
    note(&r, ROC, &id, after);
    // Houten reads the whole history.
    wait_until("Houten reads the whole history", LIMIT, || {
        r.read(HOUTEN, &id).is_ok_and(|d| {
            d.naam == "Sanne de Vries" && has_note(&d, before) && has_note(&d, after)
        })
    })
    .await;
    // Zeist keeps syncing plans, but reads nothing written after its revocation: it
    // was not sent the new change, and its keys do not open it either.
    plans_still_sync(&r, &plan, ROC, &[ZEIST, ZEIST_2], "Na de verhuizing.").await;
    let roc = r.node(ROC);
    let access = roc.dossier_access(&id).unwrap();
    let newest = roc.store().changes(&id).unwrap().pop().unwrap();
    for i in [ZEIST, ZEIST_2] {
        let d = r.read(i, &id).unwrap();
        assert!(has_note(&d, before) && !has_note(&d, after));
        assert!(
            r.node(i)
                .store()
                .changes(&id)
                .unwrap()
                .iter()
                .all(|c| c.hash != newest.hash),
            "node {i} was sent a change written after its revocation"
        );
        let ring = r.node(i).key_ring_for_tests(&access).unwrap();
        assert!(ring.unseal(&newest.hash, &newest.bytes).is_err());
    }

    // The ROC's laptop is lost: the kerngemeente (admin) removes it. The next edit
    // starts a new key epoch the laptop never gets.
    r.stop(ROC_LAPTOP).await;
    let laptop = r.id(ROC_LAPTOP);
    r.node(KERN).remove_device(laptop).unwrap();
    wait_until("the ROC knows the laptop is removed", LIMIT, || {
        r.node(ROC)
            .region_state()
            .is_ok_and(|s| s.active_device(&laptop).is_none())
    })
    .await;
    let lost = "Na verlies laptop: nieuwe afspraken.";
    note(&r, ROC, &id, lost);
    wait_until(
        "Houten reads the edit made after the removal",
        LIMIT,
        || r.read(HOUTEN, &id).is_ok_and(|d| has_note(&d, lost)),
    )
    .await;
    let roc = r.node(ROC);
    let access = roc.dossier_access(&id).unwrap();
    let newest = roc.store().changes(&id).unwrap().pop().unwrap();
    let ring = r.node(ROC_LAPTOP).key_ring_for_tests(&access).unwrap();
    assert!(
        ring.unseal(&newest.hash, &newest.bytes).is_err(),
        "the lost laptop's keys open an edit made after its removal"
    );
    // Its keys did open the history (the test can fail).
    let first = roc.store().changes(&id).unwrap().remove(0);
    assert!(ring.unseal(&first.hash, &first.bytes).is_ok());
    r.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_reaches_every_holder_and_leaves_no_trace_and_the_audit_chain_holds() {
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let mut r = build();
    let kern_id = r.id(KERN);
    r.node(KERN).set_dossier_relay(kern_id, true).unwrap();
    r.start_all();
    let id = open_dossier(&r);
    let text = "Verzuimgesprek: afspraken over aanwezigheid.";
    note(&r, ROC, &id, text);
    wait_for_note(&r, &[ZEIST, ZEIST_2, ROC_LAPTOP], &id, text).await;
    // Zeist becomes a former party (it keeps its old copy); Houten a new one.
    move_to_houten(&r, &id, Basis::Toestemming, "begeleiding na verhuizing");
    wait_until("Houten reads the dossier", LIMIT, || {
        r.read(HOUTEN, &id).is_ok_and(|d| has_note(&d, text))
    })
    .await;
    let full = r.held(ROC, &id);
    wait_until("the relay holds all of it", LIMIT, || {
        r.held(KERN, &id) == full
    })
    .await;

    // What must not survive: every content key (in the clear, as the devices unwrap
    // them), every wrapped key, every sealed change, the plaintext.
    let roc = r.node(ROC);
    let access = roc.dossier_access(&id).unwrap();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for i in [ROC, ROC_LAPTOP, ZEIST, ZEIST_2, HOUTEN] {
        let ring = r.node(i).key_ring_for_tests(&access).unwrap();
        for e in ring.epochs().collect::<Vec<_>>() {
            keys.push(ring.get(e).unwrap().expose().to_vec());
        }
    }
    assert!(keys.len() >= 5);
    let wrapped: Vec<Vec<u8>> = access
        .epochs
        .iter()
        .flat_map(|e| e.wraps.values().flatten().cloned())
        .collect();
    let sealed: Vec<Vec<u8>> = roc
        .store()
        .changes(&id)
        .unwrap()
        .into_iter()
        .map(|c| c.bytes)
        .collect();
    assert!(!wrapped.is_empty() && !sealed.is_empty());
    drop(roc);

    // The ROC erases; every node that held the dossier learns it and purges, the
    // relay and the former party Zeist included.
    r.node(ROC).erase_dossier(&id, &mentor()).unwrap();
    for i in [KERN, ROC_LAPTOP, ZEIST, ZEIST_2, HOUTEN] {
        wait_until(&format!("node {i} learns of the erasure"), LIMIT, || {
            r.node(i).store().dossier_erased(&id).unwrap().is_some()
        })
        .await;
    }
    for i in [KERN, ROC, ROC_LAPTOP, ZEIST, ZEIST_2, HOUTEN] {
        let e = r.read(i, &id).unwrap_err();
        assert!(
            e.contains("erased on") && e.contains("roc-midden"),
            "node {i}: {e}"
        );
        assert_eq!(r.held(i, &id), 0);
    }
    // The SWV never had it, and is not told it existed.
    assert!(r.node(SWV).store().dossier_erased(&id).unwrap().is_none());
    r.stop_all().await;

    // A byte scan of every node's store files.
    for i in 0..r.dirs.len() {
        let bytes = r.store_bytes(i);
        for k in &keys {
            assert!(!contains(&bytes, k), "node {i}: a content key survived");
        }
        for w in &wrapped {
            assert!(
                !contains(&bytes, &w[w.len() - 48..]),
                "node {i}: a wrapped key survived"
            );
        }
        for c in &sealed {
            assert!(
                !contains(&bytes, &c[c.len() - 32..]),
                "node {i}: a sealed change survived"
            );
        }
        for plain in [&b"Sanne de Vries"[..], text.as_bytes(), b"Verzorgende IG"] {
            assert!(!contains(&bytes, plain), "node {i}: plaintext survived");
        }
    }

    // The ROC's audit chain verifies; a byte flipped in its file is detected.
    let log = r.node(ROC).store().audit_log().unwrap();
    let n = log.len();
    assert!(n >= 3);
    assert_eq!(verify_chain(log), Ok(n));
    let path = r.dirs[ROC].join("store.sqlite");
    let mut file = std::fs::read(&path).unwrap();
    let at = file
        .windows(b"begeleiding".len())
        .position(|w| w == b"begeleiding")
        .expect("an audit entry in the file");
    file[at] ^= 0x01;
    std::fs::write(&path, &file).unwrap();
    let broken = verify_chain(r.node(ROC).store().audit_log().unwrap());
    assert!(
        broken.is_err(),
        "a flipped byte in the audit log went unnoticed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_added_later_gets_the_keys_and_reads_the_dossier() {
    logs();
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    let mut r = build();
    r.start_all();
    let id = open_dossier(&r);
    wait_until("Zeist reads the dossier", LIMIT, || {
        r.read(ZEIST, &id).is_ok_and(|d| d.naam == "Sanne de Vries")
    })
    .await;
    // Zeist adds a third device while everything runs (its own party: no admin needed).
    let dir = r._tmp.path().join("zeist-3");
    Node::init(&dir, party("gemeente-zeist"), Role::Gemeente, None).unwrap();
    {
        let mut n = Node::open(&dir).unwrap();
        let mut zeist = r.node(ZEIST);
        let code = zeist
            .invite(party("gemeente-zeist"), Role::Gemeente, false, 600)
            .unwrap();
        let (_, bundle) = zeist
            .accept(&n.join_request(&code.encode()).unwrap())
            .unwrap();
        n.import(&bundle).unwrap();
        n.import(&zeist.export().unwrap()).unwrap();
    }
    r.dirs.push(dir);
    r.addrs.push(free_addr());
    r.running.push(None);
    let new = r.dirs.len() - 1;
    assert!(r.read(new, &id).is_err(), "no keys yet");
    r.start(new);
    wait_until("the new device reads the dossier", LIMIT, || {
        r.read(new, &id).is_ok_and(|d| d.naam == "Sanne de Vries")
    })
    .await;
    // Devices of the owner party and of its own party wrap for it (each may, being
    // online when it learns of the device); the access log keeps a bounded number.
    let access = r.node(ROC).dossier_access(&id).unwrap();
    let new_id = r.id(new);
    let copies = access.epochs[0].wraps.get(&new_id).map_or(0, Vec::len);
    assert!(
        (1..=regiosync_core::dossier::access::MAX_WRAPS_PER_DEVICE).contains(&copies),
        "{copies} copies"
    );
    r.stop_all().await;
}
