//! A five-party region on loopback (ROC, kerngemeente, two buurgemeenten, SWV), each a
//! running node service (`regiosync up` in-process) over real libp2p connections.
//! Edits are made through separate handles on each data dir, as the CLI makes them
//! while the node runs. Convergence is awaited with a timeout, never a fixed sleep.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regiosync_core::id::{DocId, Role};
use regiosync_core::plan::{AgreementInput, Plan, PlanKind};
use regiosync_net::Multiaddr;
use regiosync_node::service::run;
use regiosync_node::{Node, NodeError};
use regiosync_store::StoreRead;
use regiosync_tests::{
    Running, free_addr, logs, loopback_config, party, region_by_files, start_node,
};
use tokio_util::sync::CancellationToken;

const PARTIES: [(&str, Role); 5] = [
    ("gemeente-utrecht", Role::Kerngemeente),
    ("roc-midden", Role::Roc),
    ("gemeente-zeist", Role::Gemeente),
    ("gemeente-houten", Role::Gemeente),
    ("swv-utrecht", Role::Swv),
];

/// Five nodes in one region (joined by files), and a plan everyone may write.
fn build_region(root: &Path) -> (Vec<PathBuf>, DocId) {
    let dirs = region_by_files(root, &PARTIES, false);
    let mut kern = Node::open(&dirs[0]).unwrap();
    let doc = kern
        .create_plan(PlanKind::OogoVerslag, "OOGO-verslag november")
        .unwrap();
    kern.set_section(&doc, "Agenda", "1. Opening\n2. Jeugdplan\n3. Rondvraag\n")
        .unwrap();
    (dirs, doc)
}

/// The tests of this file each run five nodes; on a 2-core machine they run one at a
/// time, so that a slow machine does not turn into a failed test.
static ONE_REGION_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn start(dir: &Path, listen: &Multiaddr, peers: &[Multiaddr]) -> Running {
    start_node(dir, loopback_config(listen, peers))
}

/// The plan as each node reads it (through its own handle on the store).
fn plans(dirs: &[PathBuf], doc: &DocId) -> Vec<Option<Plan>> {
    dirs.iter()
        .map(|d| Node::open(d).ok().and_then(|n| n.plan(doc).ok()))
        .collect()
}

async fn converge(dirs: &[PathBuf], doc: &DocId, want: impl Fn(&Plan) -> bool, what: &str) -> Plan {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = plans(dirs, doc);
        if let Some(Some(first)) = all.first()
            && want(first)
            && all.iter().all(|p| p.as_ref() == Some(first))
        {
            return first.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no convergence ({what}): {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn agreement(title: &str, owner: &str) -> AgreementInput {
    AgreementInput {
        title: title.into(),
        owner: party(owner),
        deadline: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_parties_converge_and_an_offline_node_catches_up() {
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, doc) = build_region(tmp.path());
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let mut nodes: Vec<Option<Running>> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let others: Vec<Multiaddr> = addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| a.clone())
                .collect();
            Some(start(d, &addrs[i], &others))
        })
        .collect();

    // Everyone receives the plan.
    converge(
        &dirs,
        &doc,
        |p| p.titled("Agenda").is_some_and(|s| !s.text.is_empty()),
        "initial plan",
    )
    .await;

    // All five edit concurrently: an agreement each, and two edit the same section.
    for (i, d) in dirs.iter().enumerate() {
        let mut n = Node::open(d).unwrap();
        n.add_agreement(&doc, &agreement(&format!("Afspraak {i}"), PARTIES[i].0))
            .unwrap();
    }
    Node::open(&dirs[1])
        .unwrap()
        .set_section(
            &doc,
            "Agenda",
            "1. Opening\n2. Jeugdplan en mbo\n3. Rondvraag\n",
        )
        .unwrap();
    Node::open(&dirs[4])
        .unwrap()
        .set_section(
            &doc,
            "Agenda",
            "1. Opening\n2. Jeugdplan\n3. Rondvraag\n4. Sluiting\n",
        )
        .unwrap();
    let plan = converge(
        &dirs,
        &doc,
        |p| p.agreements.len() == 5,
        "five concurrent edits",
    )
    .await;
    assert!(
        plan.titled("Agenda").unwrap().text.contains("en mbo")
            && plan.titled("Agenda").unwrap().text.contains("Sluiting"),
        "{}",
        plan.titled("Agenda").unwrap().text
    );

    // The SWV's node goes offline; the others make a hundred edits; the SWV edits too.
    nodes[4].take().unwrap().stop().await;
    for k in 0..100 {
        let i = k % 4;
        Node::open(&dirs[i])
            .unwrap()
            .add_agreement(&doc, &agreement(&format!("Offline {k}"), PARTIES[i].0))
            .unwrap();
    }
    Node::open(&dirs[4])
        .unwrap()
        .set_section(&doc, "Notulen SWV", "Opgesteld in de trein.\n")
        .unwrap();
    // Back online: it catches up and its own edit reaches everyone.
    let others: Vec<Multiaddr> = addrs[..4].to_vec();
    nodes[4] = Some(start(&dirs[4], &addrs[4], &others));
    let plan = converge(
        &dirs,
        &doc,
        |p| p.agreements.len() == 105 && p.titled("Notulen SWV").is_some(),
        "after offline",
    )
    .await;
    assert_eq!(plan.sections.last().unwrap().title, "Notulen SWV");

    for n in nodes.into_iter().flatten() {
        n.stop().await;
    }
}

/// Starts nodes `which` of the region, each dialling only the addresses in `peers_of(i)`.
fn start_some(
    dirs: &[PathBuf],
    addrs: &[Multiaddr],
    which: &[usize],
    peers_of: impl Fn(usize) -> Vec<usize>,
) -> Vec<(usize, Running)> {
    which
        .iter()
        .map(|&i| {
            let peers: Vec<Multiaddr> = peers_of(i)
                .into_iter()
                .filter(|j| *j != i)
                .map(|j| addrs[j].clone())
                .collect();
            (i, start(&dirs[i], &addrs[i], &peers))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_to_one_state() {
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, doc) = build_region(tmp.path());
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    // Everyone gets the plan first.
    let all = start_some(&dirs, &addrs, &[0, 1, 2, 3, 4], |_| (0..5).collect());
    converge(
        &dirs,
        &doc,
        |p| p.titled("Agenda").is_some_and(|s| !s.text.is_empty()),
        "initial",
    )
    .await;
    for (_, r) in all {
        r.stop().await;
    }
    // {kerngemeente, ROC} and {buurgemeenten, SWV} cannot reach each other: every
    // node comes back on a new port (nodes remember the addresses that reached their
    // peers, so the old ones must be dead) and learns only its own side's.
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let left = [0usize, 1];
    let right = [2usize, 3, 4];
    let mut nodes = start_some(&dirs, &addrs, &left, |_| left.to_vec());
    nodes.extend(start_some(&dirs, &addrs, &right, |_| right.to_vec()));
    Node::open(&dirs[0])
        .unwrap()
        .add_agreement(&doc, &agreement("Links", "gemeente-utrecht"))
        .unwrap();
    Node::open(&dirs[3])
        .unwrap()
        .add_agreement(&doc, &agreement("Rechts", "gemeente-houten"))
        .unwrap();
    Node::open(&dirs[1])
        .unwrap()
        .set_section(
            &doc,
            "Agenda",
            "1. Opening\n2. Jeugdplan (ROC)\n3. Rondvraag\n",
        )
        .unwrap();
    Node::open(&dirs[4])
        .unwrap()
        .set_section(
            &doc,
            "Agenda",
            "1. Opening\n2. Jeugdplan\n3. Rondvraag\n4. Sluiting (SWV)\n",
        )
        .unwrap();
    converge(&dirs[..2], &doc, |p| p.agreements.len() == 1, "left side").await;
    converge(&dirs[2..], &doc, |p| p.agreements.len() == 1, "right side").await;
    // Heal: the kerngemeente restarts knowing everyone.
    let pos = nodes.iter().position(|(i, _)| *i == 0).unwrap();
    nodes.remove(pos).1.stop().await;
    nodes.extend(start_some(&dirs, &addrs, &[0], |_| (0..5).collect()));
    let plan = converge(&dirs, &doc, |p| p.agreements.len() == 2, "healed").await;
    assert!(
        plan.titled("Agenda").unwrap().text.contains("(ROC)")
            && plan.titled("Agenda").unwrap().text.contains("(SWV)"),
        "{}",
        plan.titled("Agenda").unwrap().text
    );
    for (_, r) in nodes {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_is_cut_off_and_receives_nothing_after_removal() {
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, doc) = build_region(tmp.path());
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let nodes = start_some(&dirs, &addrs, &[0, 1, 4], |_| vec![0, 1, 4]);
    converge(
        &[dirs[0].clone(), dirs[1].clone(), dirs[4].clone()],
        &doc,
        |p| p.titled("Agenda").is_some_and(|s| !s.text.is_empty()),
        "initial",
    )
    .await;

    // The SWV's laptop is lost: the kerngemeente (admin) removes it.
    let swv_id = Node::open(&dirs[4]).unwrap().info().node_id;
    Node::open(&dirs[0]).unwrap().remove_device(swv_id).unwrap();
    // Work after the removal.
    Node::open(&dirs[0])
        .unwrap()
        .add_agreement(&doc, &agreement("Na verwijdering", "gemeente-utrecht"))
        .unwrap();
    Node::open(&dirs[4])
        .unwrap()
        .add_agreement(&doc, &agreement("Van de gestolen laptop", "swv-utrecht"))
        .unwrap();
    let members = [dirs[0].clone(), dirs[1].clone()];
    converge(
        &members,
        &doc,
        |p| p.agreements.iter().any(|a| a.title == "Na verwijdering"),
        "members",
    )
    .await;
    // Give the removed device every chance: several sync intervals.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let swv = Node::open(&dirs[4]).unwrap().plan(&doc).unwrap();
    assert!(
        !swv.agreements.iter().any(|a| a.title == "Na verwijdering"),
        "the removed device received new work"
    );
    for d in &members {
        let p = Node::open(d).unwrap().plan(&doc).unwrap();
        assert!(
            !p.agreements
                .iter()
                .any(|a| a.title == "Van de gestolen laptop"),
            "the removed device's later edit got in"
        );
    }
    for (i, r) in nodes {
        if i == 4 {
            // The removed laptop's node was told so by the members and stopped.
            let ended = r.ended(Duration::from_secs(60)).await;
            assert!(matches!(ended, Err(NodeError::Removed(_))), "{ended:?}");
        } else {
            r.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sending_forged_changes_or_garbage_is_cut_off_while_others_keep_syncing() {
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    logs();
    use regiosync_core::automerge::transaction::Transactable;
    use regiosync_core::envelope::{ChangeEnvelope, SignedFields};
    use regiosync_core::sync::{DocMessage, Request, SignedChange};

    let tmp = tempfile::tempdir().unwrap();
    let (dirs, doc) = build_region(tmp.path());
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let nodes = start_some(&dirs, &addrs, &[0, 1], |_| vec![0, 1]);
    converge(
        &dirs[..2],
        &doc,
        |p| p.titled("Agenda").is_some_and(|s| !s.text.is_empty()),
        "initial",
    )
    .await;

    // Gemeente Zeist's device is a member, but runs a hostile client.
    let mut zeist = Node::open(&dirs[2]).unwrap();
    let state = zeist.region_state().unwrap();
    let me = zeist.info().node_id;
    let key = zeist.network_key().unwrap();
    let (net, _events, task) = regiosync_net::spawn(
        key,
        regiosync_net::Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..regiosync_net::Config::default()
        },
    )
    .unwrap();
    let kern_id = Node::open(&dirs[0]).unwrap().info().node_id;
    net.set_members([kern_id.to_peer_id()]).await.unwrap();
    net.add_address(kern_id.to_peer_id(), addrs[0].clone())
        .await
        .unwrap();

    // A change with a forged envelope (valid shape, broken signature).
    let mut am = regiosync_core::automerge::Automerge::new();
    am.set_actor(me.actor_id());
    let mut tx = am.transaction();
    tx.put(regiosync_core::automerge::ROOT, "vals", "vervalst")
        .unwrap();
    tx.commit();
    let change = am.get_last_local_change().unwrap();
    let mut envelope = ChangeEnvelope::sign(
        SignedFields {
            region: state.region,
            doc,
            change_hash: change.hash().0,
            author: me,
            control_heads: state.heads.clone(),
        },
        zeist.signing_key_for_tests().unwrap(),
    )
    .unwrap()
    .encode();
    envelope[10] ^= 1;
    let forged = Request::Docs {
        docs: vec![DocMessage {
            doc,
            sync: vec![],
            changes: vec![SignedChange {
                change: change.raw_bytes().to_vec(),
                envelope,
            }],
            need: vec![],
        }],
    };
    // Refused, and the connection is closed (possibly before the refusal arrives).
    let _ = net.request(kern_id.to_peer_id(), forged.encode()).await;
    // Cut off: further requests fail (garbage included), for the ban's duration.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = net.request(kern_id.to_peer_id(), b"garbage".to_vec()).await;
        if r.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hostile member was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Banned: even a well-formed request is refused now.
    let hello = Request::Hello {
        region: state.region,
        control_heads: state.heads.clone(),
        summary: regiosync_core::sync::DigestSet::default().summary(),
    };
    assert!(
        net.request(kern_id.to_peer_id(), hello.encode())
            .await
            .is_err(),
        "a banned member was served"
    );
    // Nothing forged got in, and the honest members keep syncing.
    Node::open(&dirs[1])
        .unwrap()
        .add_agreement(&doc, &agreement("Gewoon verder", "roc-midden"))
        .unwrap();
    let plan = converge(
        &dirs[..2],
        &doc,
        |p| p.agreements.iter().any(|a| a.title == "Gewoon verder"),
        "honest sync",
    )
    .await;
    assert_eq!(plan.agreements.len(), 1);
    assert_eq!(
        Node::open(&dirs[0])
            .unwrap()
            .store()
            .changes(&doc)
            .unwrap()
            .iter()
            .filter(|c| c.actor == me.as_bytes())
            .count(),
        0
    );
    task.shutdown().await;
    for (_, r) in nodes {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_are_passed_on_through_a_node_in_the_middle() {
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, doc) = build_region(tmp.path());
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    // A line: ROC — kerngemeente — SWV. The ROC and the SWV never connect.
    let nodes = start_some(&dirs, &addrs, &[0, 1, 4], |i| {
        if i == 0 { vec![1, 4] } else { vec![0] }
    });
    let line = [dirs[0].clone(), dirs[1].clone(), dirs[4].clone()];
    converge(
        &line,
        &doc,
        |p| p.titled("Agenda").is_some_and(|s| !s.text.is_empty()),
        "initial",
    )
    .await;
    for round in 0..5 {
        Node::open(&dirs[1])
            .unwrap()
            .add_agreement(
                &doc,
                &agreement(&format!("Van het ROC {round}"), "roc-midden"),
            )
            .unwrap();
        Node::open(&dirs[4])
            .unwrap()
            .add_agreement(
                &doc,
                &agreement(&format!("Van het SWV {round}"), "swv-utrecht"),
            )
            .unwrap();
        converge(
            &line,
            &doc,
            |p| p.agreements.len() == 2 * (round + 1),
            "through the middle",
        )
        .await;
    }
    for (_, r) in nodes {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_is_full_stops_syncing_with_a_clear_error() {
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, doc) = build_region(tmp.path());
    Node::open(&dirs[0])
        .unwrap()
        .bulk_agreements_for_bench(&doc, 300)
        .unwrap();
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let nodes = start_some(&dirs, &addrs, &[0], |_| vec![1]);

    // The ROC's disk is full: its store cannot grow.
    let roc = Node::open(&dirs[1]).unwrap();
    let before = roc.store().changes(&doc).map(|c| c.len()).unwrap_or(0);
    roc.store().fill_disk_for_tests().unwrap();
    let config = loopback_config(&addrs[1], &addrs[..1]);
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        run(roc, config, CancellationToken::new()),
    )
    .await;
    let err = result
        .expect("the node kept running on a full disk")
        .expect_err("the node must stop");
    assert!(err.to_string().contains("full"), "{err}");
    // Nothing half-stored: the store opens cleanly and holds what it held.
    let roc = Node::open(&dirs[1]).unwrap();
    roc.store().integrity_check().unwrap();
    assert_eq!(
        roc.store().changes(&doc).map(|c| c.len()).unwrap_or(0),
        before
    );
    for (_, r) in nodes {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_store_is_damaged_where_start_up_does_not_read_stops_with_a_clear_error() {
    let _one = ONE_REGION_AT_A_TIME.lock().await;
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, doc) = build_region(tmp.path());
    let mut node = Node::open(&dirs[0]).unwrap();
    node.bulk_agreements_for_bench(&doc, 300).unwrap();
    assert!(node.store().checkpoint_truncate().unwrap());
    let path = node.store().path().to_owned();
    drop(node);
    // Damage pages near the end of the file (the plan's change rows): opening the
    // store reads only its header, so only the background check can find them
    // before a session reads the plan.
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    assert!(len > 200_000, "{len}");
    for b in &mut bytes[len - 4096 * 8..len - 4096 * 2] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let node = Node::open(&dirs[0]).expect("opening reads only the header");
    let addr = free_addr();
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        run(node, loopback_config(&addr, &[]), CancellationToken::new()),
    )
    .await;
    let err = result
        .expect("the node kept running on a damaged store")
        .expect_err("the node must stop");
    assert!(err.to_string().contains("damaged"), "{err}");
}
