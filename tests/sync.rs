//! Nodes syncing over real libp2p connections on loopback, several in one process:
//! a plan made on one node reaches the other, edits flow both ways, concurrent edits
//! of one section merge, and an idle re-sync costs one round trip.

use std::sync::Arc;
use std::time::Duration;

use regiosync_core::id::{NodeId, PartyName, Role};
use regiosync_core::plan::PlanKind;
use regiosync_net::{Config, Multiaddr, NetEvent, NetHandle, NetTask, spawn};
use regiosync_node::{DocStates, Node, NodeError, SessionMemory, SyncReport, sync_with};
use regiosync_store::StoreRead;
use tokio::sync::Mutex;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

struct Peer {
    node: Arc<Mutex<Node>>,
    /// What its sync remembers, shared by its sessions and answers (as a running
    /// node keeps it).
    memory: Arc<SessionMemory>,
    net: NetHandle,
    task: NetTask,
    id: NodeId,
    addr: Multiaddr,
}

/// Starts networking for a node: listens on loopback TCP (mDNS off), allows the
/// region's active devices, and answers sync requests from the store.
async fn start(node: Node) -> Peer {
    start_speaking(node, Config::default().max_sync_version).await
}

/// [`start`] for a node that speaks sync protocol versions up to `version` only.
async fn start_speaking(mut node: Node, version: u8) -> Peer {
    let key = node.network_key().unwrap();
    let id = node.info().node_id;
    let config = Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        max_sync_version: version,
        ..Config::default()
    };
    let (net, mut events, task) = spawn(key, config).unwrap();
    let addr = loop {
        match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
            NetEvent::Listening { addr } => break addr,
            _ => continue,
        }
    };
    let members: Vec<_> = node
        .region_state()
        .unwrap()
        .devices
        .keys()
        .filter(|d| **d != id)
        .map(NodeId::to_peer_id)
        .collect();
    net.set_members(members).await.unwrap();
    let node = Arc::new(Mutex::new(node));
    let memory = Arc::new(SessionMemory::default());
    let (responder, answers) = (node.clone(), memory.clone());
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let NetEvent::Request { peer, data, reply } = ev {
                let Ok(from) = NodeId::from_peer_id(&peer) else {
                    continue;
                };
                let answer = responder.lock().await.respond(&answers, &from, &data);
                let _ = reply.send(answer.frame);
            }
        }
    });
    Peer {
        node,
        memory,
        net,
        task,
        id,
        addr,
    }
}

impl Peer {
    /// One sync session with `peer`, this node requesting.
    async fn sync(&self, peer: NodeId) -> Result<SyncReport, NodeError> {
        sync_with(&self.node, &self.memory, &self.net, peer).await
    }
}

fn party(s: &str) -> PartyName {
    PartyName::new(s).unwrap()
}

/// A kerngemeente node that founded the region, and a ROC node that joined it by files.
fn region(tmp: &std::path::Path) -> (Node, Node) {
    Node::init(
        &tmp.join("kern"),
        party("gemeente-utrecht"),
        Role::Kerngemeente,
        None,
    )
    .unwrap();
    Node::init(&tmp.join("roc"), party("roc-midden"), Role::Roc, None).unwrap();
    let mut kern = Node::open(&tmp.join("kern")).unwrap();
    let mut roc = Node::open(&tmp.join("roc")).unwrap();
    kern.create_region("Regio Utrecht").unwrap();
    let code = kern
        .invite(party("roc-midden"), Role::Roc, false, 3600)
        .unwrap();
    let (_, bundle) = kern
        .accept(&roc.join_request(&code.encode()).unwrap())
        .unwrap();
    roc.import(&bundle).unwrap();
    (kern, roc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_flow_both_ways_and_idle_resync_is_one_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut kern, roc) = region(tmp.path());
    // A plan made after the ROC joined: its CreateDoc op must travel too.
    let doc = kern
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan 2027")
        .unwrap();
    kern.set_section(&doc, "Inleiding", "Samen met het onderwijs.\n")
        .unwrap();

    let kern = start(kern).await;
    let roc = start(roc).await;
    roc.net
        .add_address(kern.id.to_peer_id(), kern.addr.clone())
        .await
        .unwrap();
    kern.net
        .add_address(roc.id.to_peer_id(), roc.addr.clone())
        .await
        .unwrap();

    // The ROC syncs with the kerngemeente and gets the plan.
    let r = timeout(WAIT, roc.sync(kern.id)).await.unwrap().unwrap();
    assert!(r.moved.ops_received >= 1, "{r:?}");
    assert_eq!(r.moved.docs_differing, 1);
    assert!(r.moved.changes_received >= 2);
    assert_eq!(
        roc.node.lock().await.plan(&doc).unwrap(),
        kern.node.lock().await.plan(&doc).unwrap()
    );

    // Both edit the same section offline: different paragraphs.
    kern.node
        .lock()
        .await
        .set_section(&doc, "Inleiding", "Samen met het onderwijs.\nEn de zorg.\n")
        .unwrap();
    roc.node
        .lock()
        .await
        .set_section(&doc, "Inleiding", "Samen met het mbo.\n")
        .unwrap();
    roc.node
        .lock()
        .await
        .set_section(&doc, "Doelen", "Minder uitval.\n")
        .unwrap();
    let r = timeout(WAIT, roc.sync(kern.id)).await.unwrap().unwrap();
    assert!(r.moved.changes_received >= 1, "{r:?}");
    let a = kern.node.lock().await.plan(&doc).unwrap();
    let b = roc.node.lock().await.plan(&doc).unwrap();
    assert_eq!(a, b, "both nodes converge");
    assert!(a.titled("Doelen").is_some());
    assert!(
        a.sections[0].text.contains("mbo") && a.sections[0].text.contains("zorg"),
        "{:?}",
        a.sections[0].text
    );

    // Nothing changed: one round trip, a few hundred bytes.
    let r = timeout(WAIT, roc.sync(kern.id)).await.unwrap().unwrap();
    assert_eq!(r.round_trips, 1, "{r:?}");
    assert!(r.bytes_sent + r.bytes_received < 400, "{r:?}");
    // The other direction too.
    let r = timeout(WAIT, kern.sync(roc.id)).await.unwrap().unwrap();
    assert_eq!(r.round_trips, 1, "{r:?}");
    assert_eq!(r.docs.in_sync, 1, "{r:?}");

    // The per-peer sync state: each knows the other holds the plan at its heads,
    // after a restart too; an edit here makes this node "ahead" of the peer.
    assert_eq!(
        roc.node.lock().await.sync_state(&kern.id).unwrap(),
        DocStates {
            in_sync: 1,
            ..DocStates::default()
        }
    );
    let reopened = Node::open(&tmp.path().join("roc")).unwrap();
    assert_eq!(reopened.sync_state(&kern.id).unwrap().in_sync, 1);
    roc.node
        .lock()
        .await
        .set_section(&doc, "Doelen", "Minder uitval, meer startkwalificaties.\n")
        .unwrap();
    let after_edit = reopened.sync_state(&kern.id).unwrap();
    assert_eq!(after_edit.ahead, vec![doc], "{after_edit:?}");
    assert_eq!(after_edit.in_sync, 0);
    // The session that pushes the edit ends with both in sync again.
    let r = timeout(WAIT, roc.sync(kern.id)).await.unwrap().unwrap();
    assert_eq!((r.docs.in_sync, r.docs.ahead.len()), (1, 0), "{r:?}");

    for p in [kern, roc] {
        p.task.shutdown().await;
    }
}

/// Issue 16: two parties that rewrite the same sentence while offline. Character by
/// character, Automerge merged this into "OfflinGe: husbezoektolen lapop inZist.";
/// now both nodes show one party's sentence whole, report the other's as a conflict
/// with who wrote which, and converge once a party sets the agreed text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_parties_rewriting_one_sentence_offline_get_a_conflict_never_a_mixture() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut kern, roc) = region(tmp.path());
    let doc = kern
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan 2027")
        .unwrap();
    kern.set_section(
        &doc,
        "Aanpak",
        "Samen met het onderwijs.\n\nOffline werken tijdens huisbezoek.\n\nSlot.\n",
    )
    .unwrap();
    let kern = start(kern).await;
    let roc = start(roc).await;
    roc.net
        .add_address(kern.id.to_peer_id(), kern.addr.clone())
        .await
        .unwrap();
    timeout(WAIT, roc.sync(kern.id)).await.unwrap().unwrap();
    // Offline (no sync in between): each rewrites the middle sentence; the ROC also
    // changes the last one, which nobody else touched.
    let ours = "Offline: huisbezoek met laptop.";
    let theirs = "Gouda: huisbezoek in Zeist.";
    kern.node
        .lock()
        .await
        .set_section(
            &doc,
            "Aanpak",
            &format!("Samen met het onderwijs.\n\n{ours}\n\nSlot.\n"),
        )
        .unwrap();
    roc.node
        .lock()
        .await
        .set_section(
            &doc,
            "Aanpak",
            &format!("Samen met het onderwijs.\n\n{theirs}\n\nSlot, herzien.\n"),
        )
        .unwrap();
    for _ in 0..2 {
        timeout(WAIT, roc.sync(kern.id)).await.unwrap().unwrap();
    }
    let a = kern.node.lock().await.plan(&doc).unwrap();
    let b = roc.node.lock().await.plan(&doc).unwrap();
    assert_eq!(a, b, "both nodes show the same");
    let text = &a.titled("Aanpak").unwrap().text;
    let middle = text.split("\n\n").nth(1).unwrap();
    assert!(middle == ours || middle == theirs, "a mixture: {text:?}");
    assert!(
        text.ends_with("Slot, herzien."),
        "the untouched change merged: {text:?}"
    );
    let conflicts = kern.node.lock().await.plan_conflicts(&doc).unwrap();
    let c = conflicts
        .iter()
        .find(|c| c.field == "text")
        .expect("the rewrite is reported as a conflict");
    assert_eq!(c.label, "Aanpak");
    let mut versions: Vec<(String, String)> = c
        .values
        .iter()
        .map(|v| (v.party.as_ref().unwrap().to_string(), v.value.clone()))
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        vec![
            ("gemeente-utrecht".to_owned(), ours.to_owned()),
            ("roc-midden".to_owned(), theirs.to_owned())
        ],
        "each party's version, whole, with who wrote it"
    );
    // The kerngemeente sets the agreed text: the conflict is gone on both nodes.
    let agreed = "Samen met het onderwijs.\n\nGouda: huisbezoek met laptop.\n\nSlot, herzien.\n";
    kern.node
        .lock()
        .await
        .set_section(&doc, "Aanpak", agreed)
        .unwrap();
    timeout(WAIT, roc.sync(kern.id)).await.unwrap().unwrap();
    for p in [&kern, &roc] {
        let plan = p.node.lock().await.plan(&doc).unwrap();
        assert_eq!(plan.titled("Aanpak").unwrap().text, agreed.trim_end());
        assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
    }
    for p in [kern, roc] {
        p.task.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_larger_than_one_batch_takes_several_rounds_and_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut kern, roc) = region(tmp.path());
    let doc = kern.create_plan(PlanKind::Jeugdplan, "Groot").unwrap();
    // ~12,000 signed changes: more than one 4 MiB batch of changes and envelopes.
    kern.bulk_agreements_for_bench(&doc, 12_000).unwrap();
    let total = kern.store().changes(&doc).unwrap().len();
    let bytes: usize = kern
        .store()
        .changes(&doc)
        .unwrap()
        .iter()
        .map(|c| c.bytes.len() + c.envelope.as_ref().map_or(0, Vec::len))
        .sum();
    assert!(
        bytes > 4 * 1024 * 1024,
        "the test needs more than one batch: {bytes}"
    );

    let kern = start(kern).await;
    let roc = start(roc).await;
    roc.net
        .add_address(kern.id.to_peer_id(), kern.addr.clone())
        .await
        .unwrap();
    // A guard against a hang, not a speed check (the runner measures speed): this
    // catch-up takes about two minutes in a debug build on two cores by itself,
    // and longer while the other tests of this file run beside it.
    let r = timeout(Duration::from_secs(900), roc.sync(kern.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.moved.changes_received, total, "{r:?}");
    assert_eq!(
        roc.node.lock().await.plan(&doc).unwrap().agreements.len(),
        12_000
    );
    for p in [kern, roc] {
        p.task.shutdown().await;
    }
}

/// Two devices of the kerngemeente (where the student lives, so it reads the
/// dossier) catch up on a dossier the ROC wrote offline, over TCP: the one that
/// speaks `/regiosync/sync/4` gets the ROC's chained notes in a bundle, in fewer
/// bytes than the sealed notes alone take, and ends with exactly the sealed bytes and
/// envelopes the ROC holds; the one that speaks only `/3` is sent only what a `/3`
/// build reads (the change sealed in format 1), never a change it would take for a
/// forgery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_catches_up_on_a_dossier_in_a_bundle_and_an_older_node_gets_what_it_reads() {
    use regiosync_core::dossier::access::Basis;
    use regiosync_node::dossiers::{NewDossier, Reader};

    let tmp = tempfile::tempdir().unwrap();
    let (mut kern, mut roc) = region(tmp.path());
    Node::init(
        &tmp.path().join("kern-2"),
        party("gemeente-utrecht"),
        Role::Kerngemeente,
        None,
    )
    .unwrap();
    let mut kern2 = Node::open(&tmp.path().join("kern-2")).unwrap();
    let code = kern
        .invite(party("gemeente-utrecht"), Role::Kerngemeente, false, 3600)
        .unwrap();
    let (_, bundle) = kern
        .accept(&kern2.join_request(&code.encode()).unwrap())
        .unwrap();
    kern2.import(&bundle).unwrap();
    roc.import(&kern.export().unwrap()).unwrap();
    let by = Reader {
        who: regiosync_core::audit::Who::cli("j.bakker"),
        purpose: "begeleiding".into(),
    };
    let id = roc
        .create_dossier(
            &NewDossier {
                woongemeente: party("gemeente-utrecht"),
                basis: Basis::WettelijkeTaak,
                purpose: "Leerplichtwet".into(),
                fields: vec![],
            },
            &by,
        )
        .unwrap();
    let notes: Vec<String> = (0..40)
        .map(|i| format!("Huisbezoek {i}: verzuim besproken met ouders en mentor."))
        .collect();
    for n in &notes {
        roc.add_dossier_note(&id, n, &by).unwrap();
    }
    let rows = |n: &Node| {
        let mut r: Vec<_> = n
            .store()
            .changes(&id)
            .unwrap()
            .into_iter()
            .map(|r| (r.hash, r.bytes, r.envelope))
            .collect();
        r.sort();
        r
    };
    let at_roc = rows(&roc);

    let sealed_alone: usize = at_roc.iter().map(|(_, bytes, _)| bytes.len()).sum();
    let readable_by_3: Vec<_> = at_roc
        .iter()
        .filter(|(_, bytes, _)| bytes.first() == Some(&1))
        .cloned()
        .collect();
    assert_eq!(readable_by_3.len(), 1, "the ROC's first change only");

    let roc = start(roc).await;
    let new = start(kern).await;
    let old = start_speaking(kern2, 3).await;
    for p in [&new, &old] {
        p.net
            .add_address(roc.id.to_peer_id(), roc.addr.clone())
            .await
            .unwrap();
    }
    let r = timeout(WAIT, new.sync(roc.id)).await.unwrap().unwrap();
    {
        let mut n = new.node.lock().await;
        assert_eq!(rows(&n), at_roc, "{r:?}");
        let d = n.read_dossier(&id, &by).unwrap();
        assert!(
            notes
                .iter()
                .all(|t| d.contacten.iter().any(|c| &c.tekst == t))
        );
    }
    // The whole session (access log, envelopes, the bundle) in fewer bytes than the
    // sealed changes alone.
    assert!(
        r.bytes_received < sealed_alone,
        "received {} vs {sealed_alone} sealed",
        r.bytes_received
    );
    let r = timeout(WAIT, old.sync(roc.id)).await.unwrap().unwrap();
    assert_eq!(rows(&*old.node.lock().await), readable_by_3, "{r:?}");
    assert_eq!(r.moved.changes_rejected, 0);
    for p in [roc, new, old] {
        p.task.shutdown().await;
    }
}

#[test]
fn a_change_that_arrives_before_its_dependency_is_not_lost_to_a_snapshot() {
    use regiosync_core::sync::{DocMessage, Request, SignedChange};
    let tmp = tempfile::tempdir().unwrap();
    let (mut kern, mut roc) = region(tmp.path());
    let doc = kern.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    roc.import(&kern.export().unwrap()).unwrap(); // the plan's CreateDoc op
    // The ROC gets the plan's changes through the responder, in memory.
    let ask = |from: &mut Node, to: &mut Node, req: Request| {
        let id = from.info().node_id;
        regiosync_core::sync::Response::decode(
            &to.respond(
                &regiosync_node::SessionMemory::default(),
                &id,
                &req.encode(),
            )
            .frame,
        )
        .unwrap()
    };
    let rows = kern.store().changes(&doc).unwrap();
    let first = Request::Docs {
        docs: vec![DocMessage {
            doc,
            sync: vec![],
            changes: rows
                .iter()
                .map(|r| SignedChange {
                    change: r.bytes.clone(),
                    envelope: r.envelope.clone().unwrap(),
                })
                .collect(),
            need: vec![],
        }],
    };
    ask(&mut kern, &mut roc, first);
    assert_eq!(roc.plan(&doc).unwrap().title, "Jeugdplan");
    // The ROC makes two edits, C1 then C2 (C2 depends on C1).
    roc.set_section(&doc, "Een", "eerste").unwrap();
    roc.set_section(&doc, "Twee", "tweede").unwrap();
    let roc_rows: Vec<_> = roc
        .store()
        .changes(&doc)
        .unwrap()
        .into_iter()
        .rev()
        .take(2)
        .collect();
    let (c2, c1) = (&roc_rows[0], &roc_rows[1]);
    let send = |r: &regiosync_store::ChangeRow| Request::Docs {
        docs: vec![DocMessage {
            doc,
            sync: vec![],
            changes: vec![SignedChange {
                change: r.bytes.clone(),
                envelope: r.envelope.clone().unwrap(),
            }],
            need: vec![],
        }],
    };
    // C2 reaches the kerngemeente first; then it edits enough to want a snapshot.
    ask(&mut roc, &mut kern, send(c2));
    for i in 0..70 {
        kern.set_section(&doc, "Drie", &format!("versie {i}"))
            .unwrap();
    }
    // C1 arrives: C2 must now apply, not be skipped.
    ask(&mut roc, &mut kern, send(c1));
    let plan = kern.plan(&doc).unwrap();
    let titles: Vec<&str> = plan.sections.iter().map(|s| s.title.as_str()).collect();
    assert!(
        titles.contains(&"Een") && titles.contains(&"Twee"),
        "{titles:?}"
    );
}
