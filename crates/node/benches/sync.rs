//! Sync benchmarks over real libp2p on loopback (issue 4), each next to a baseline
//! measured in the same run:
//!
//! 1. **catch-up**: a fresh node joins a region whose kerngemeente holds 20 plans with
//!    50,000 changes in all, and syncs everything in one session. Baseline: the same
//!    documents synced with Automerge's own in-memory sync protocol (no network, no
//!    signatures, no store): the floor.
//! 2. **edit-to-visible**: in a five-node region of running nodes, an edit made through
//!    a separate store handle (as the CLI makes it) until it is stored on all four
//!    other nodes; p50 and p99 over 40 edits.
//!
//! 3. **sealed dossiers**: a new device catches up 1,000 dossiers of 20 sealed changes
//!    each. Baseline: the same dossiers unsealed (their plaintext documents) in
//!    Automerge's in-memory sync.
//!
//! Run: `cargo bench -p regiosync-node --bench sync` (add `-- --quick` for a smaller
//! run, `-- --dossiers` for the dossier workload alone).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // a bench prints and may panic

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regiosync_core::automerge::sync::SyncDoc;
use regiosync_core::automerge::{Automerge, sync};
use regiosync_core::id::{DocId, PartyName, Role};
use regiosync_core::plan::{AgreementInput, PlanKind};
use regiosync_net::{Multiaddr, NetEvent};
use regiosync_node::service::{ServiceConfig, run};
use regiosync_node::{Node, sync_with};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

fn party(s: &str) -> PartyName {
    PartyName::new(s).unwrap()
}

fn join(kern: &mut Node, dir: &Path, p: &str, role: Role) -> Node {
    Node::init(dir, party(p), role, None).unwrap();
    let mut n = Node::open(dir).unwrap();
    let code = kern.invite(party(p), role, false, 3600).unwrap();
    let (_, bundle) = kern
        .accept(&n.join_request(&code.encode()).unwrap())
        .unwrap();
    n.import(&bundle).unwrap();
    n
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn catch_up(plans: usize, changes: usize, reps: usize) {
    let per_plan = changes / plans;
    let tmp = tempfile::tempdir().unwrap();
    Node::init(
        &tmp.path().join("kern"),
        party("gemeente-utrecht"),
        Role::Kerngemeente,
        None,
    )
    .unwrap();
    let mut kern = Node::open(&tmp.path().join("kern")).unwrap();
    kern.create_region("Bench").unwrap();
    // The fresh nodes join first: a plan's readers are the parties that exist when it
    // is created. They hold no document until they sync.
    let mut fresh_nodes: Vec<Node> = (0..reps)
        .map(|r| {
            join(
                &mut kern,
                &tmp.path().join(format!("roc{r}")),
                &format!("roc-{r}"),
                Role::Roc,
            )
        })
        .collect();
    let mut docs = Vec::new();
    for i in 0..plans {
        let d = kern
            .create_plan(PlanKind::Jeugdplan, &format!("Plan {i}"))
            .unwrap();
        kern.bulk_agreements_for_bench(&d, per_plan.saturating_sub(1))
            .unwrap();
        docs.push(d);
    }
    let total_changes: usize = docs
        .iter()
        .map(|d| kern.store().changes(d).unwrap().len())
        .sum();
    // Baseline: Automerge's in-memory sync of the same documents.
    let sources: Vec<Automerge> = docs
        .iter()
        .map(|d| {
            let mut am = Automerge::new();
            for c in kern.store().changes(d).unwrap() {
                am.load_incremental(&c.bytes).unwrap();
            }
            am
        })
        .collect();
    let saved: usize = sources.iter().map(|a| a.clone().save().len()).sum();
    let (b, base_bytes) = baseline(&sources, reps);

    // regiosync: a fresh node joins and syncs from the kerngemeente over loopback.
    let mut ours_ms = Vec::new();
    let mut last = None;
    for _ in 0..reps {
        let fresh = fresh_nodes.remove(0);
        let (ms, report, fresh) = session(&tmp.path().join("kern"), fresh).await;
        ours_ms.push(ms);
        let got: usize = docs
            .iter()
            .map(|d| fresh.store().changes(d).map(|c| c.len()).unwrap_or(0))
            .sum();
        assert_eq!(got, total_changes, "the fresh node must have every change");
        last = Some(report);
    }
    let report = last.unwrap();
    let o = median(&mut ours_ms);
    println!(
        "\n## catch-up of a fresh node: {plans} plans, {total_changes} changes, saved size {saved} bytes\n"
    );
    println!("| system | median wall | bytes on the wire | bytes / saved size | round trips |");
    println!("|---|---|---|---|---|");
    println!(
        "| automerge in-memory sync (baseline) | {b:.0} ms | {base_bytes} | {:.2} | - |",
        base_bytes as f64 / saved as f64
    );
    println!(
        "| regiosync over libp2p (signed, verified, stored) | {o:.0} ms | {} | {:.2} | {} |",
        report.bytes_sent + report.bytes_received,
        (report.bytes_sent + report.bytes_received) as f64 / saved as f64,
        report.round_trips
    );
    println!("\nratio regiosync / baseline (wall): {:.1}x", o / b);
}

/// One sync session over libp2p on loopback: the node in `source_dir` answers, the
/// `fresh` node asks. Returns the session's wall time in ms, its report and the node.
async fn session(source_dir: &Path, fresh: Node) -> (f64, regiosync_node::SyncReport, Node) {
    let mut kern_node = Node::open(source_dir).unwrap();
    let (kern_net, mut events, kern_task) = regiosync_net::spawn(
        kern_node.network_key().unwrap(),
        regiosync_net::Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..regiosync_net::Config::default()
        },
    )
    .unwrap();
    let addr = loop {
        if let Some(NetEvent::Listening { addr }) = events.recv().await {
            break addr;
        }
    };
    let fresh_id = fresh.info().node_id;
    kern_net.set_members([fresh_id.to_peer_id()]).await.unwrap();
    let kern_id = kern_node.info().node_id;
    let responder = Arc::new(Mutex::new(kern_node));
    let r2 = responder.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let NetEvent::Request { peer, data, reply } = ev {
                let from = regiosync_core::id::NodeId::from_peer_id(&peer).unwrap();
                let _ = reply.send(r2.lock().await.respond(&from, &data).frame);
            }
        }
    });
    let mut fresh = fresh;
    let (net, _ev, task) = regiosync_net::spawn(
        fresh.network_key().unwrap(),
        regiosync_net::Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..regiosync_net::Config::default()
        },
    )
    .unwrap();
    net.set_members([kern_id.to_peer_id()]).await.unwrap();
    net.add_address(kern_id.to_peer_id(), addr).await.unwrap();
    let fresh = Mutex::new(fresh);
    let t = Instant::now();
    let report = sync_with(&fresh, &net, kern_id).await.unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    task.shutdown().await;
    kern_task.shutdown().await;
    (ms, report, fresh.into_inner())
}

/// Automerge's in-memory sync of `sources` into empty documents: (ms, bytes).
fn automerge_sync(sources: &[Automerge]) -> (f64, usize) {
    let mut pairs: Vec<(Automerge, Automerge)> = sources
        .iter()
        .map(|s| (s.clone(), Automerge::new()))
        .collect();
    let t = Instant::now();
    let mut bytes = 0;
    for (src, dst) in &mut pairs {
        let (mut s1, mut s2) = (sync::State::new(), sync::State::new());
        loop {
            let mut moved = false;
            if let Some(m) = src.generate_sync_message(&mut s1) {
                let b = m.encode();
                bytes += b.len();
                dst.receive_sync_message(&mut s2, sync::Message::decode(&b).unwrap())
                    .unwrap();
                moved = true;
            }
            if let Some(m) = dst.generate_sync_message(&mut s2) {
                let b = m.encode();
                bytes += b.len();
                src.receive_sync_message(&mut s1, sync::Message::decode(&b).unwrap())
                    .unwrap();
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    for (src, dst) in &pairs {
        assert_eq!(src.get_heads(), dst.get_heads());
    }
    (ms, bytes)
}

/// The median time of `reps` in-memory syncs of `sources`, and their bytes.
fn baseline(sources: &[Automerge], reps: usize) -> (f64, usize) {
    let mut ms = Vec::new();
    let mut bytes = 0;
    for _ in 0..reps {
        let (t, b) = automerge_sync(sources);
        ms.push(t);
        bytes = b;
    }
    (median(&mut ms), bytes)
}

/// Catch-up of sealed dossiers: a new device of the owner party syncs `n` dossiers
/// of `changes` sealed changes each (plus their access logs) from the owner's node.
/// Baseline: the same dossiers unsealed (their plaintext Automerge documents) in
/// Automerge's in-memory sync: no sealing, no signatures, no network, no store.
async fn dossier_catch_up(n: usize, changes: usize, reps: usize) {
    use regiosync_core::control::dossier::Basis;
    use regiosync_core::dossier::DossierField;
    use regiosync_node::dossiers::{NewDossier, Reader};
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("roc");
    Node::init(&src_dir, party("roc-midden"), Role::Roc, None).unwrap();
    let mut roc = Node::open(&src_dir).unwrap();
    roc.create_region("Bench").unwrap();
    // The new devices join first: every dossier's keys are wrapped for them.
    let mut fresh_nodes: Vec<Node> = (0..reps)
        .map(|r| {
            join(
                &mut roc,
                &tmp.path().join(format!("laptop{r}")),
                "roc-midden",
                Role::Roc,
            )
        })
        .collect();
    let by = Reader {
        user: "bench".into(),
        purpose: "bench".into(),
    };
    let mut ids = Vec::new();
    for i in 0..n {
        let id = roc
            .create_dossier(
                &NewDossier {
                    woongemeente: party("roc-midden"),
                    basis: Basis::Toestemming,
                    purpose: "bench".into(),
                    fields: vec![
                        (DossierField::Naam, format!("Student {i}")),
                        (DossierField::Opleiding, "Verzorgende IG niveau 3".into()),
                    ],
                },
                &by,
            )
            .unwrap();
        for k in 1..changes {
            roc.add_dossier_note(
                &id,
                &format!("Contactmoment {k}: gesprek over voortgang en aanwezigheid."),
                &by,
            )
            .unwrap();
        }
        ids.push(id);
    }
    // The plaintext documents, as a device with the keys reads them.
    let mut sources = Vec::new();
    let mut sealed_bytes = 0;
    for id in &ids {
        let access = roc.dossier_access(id).unwrap();
        let ring = roc.key_ring_for_tests(&access).unwrap();
        let mut am = Automerge::new();
        for c in roc.store().changes(id).unwrap() {
            sealed_bytes += c.bytes.len() + c.envelope.as_ref().map_or(0, Vec::len);
            am.load_incremental(&ring.unseal(&c.hash, &c.bytes).unwrap())
                .unwrap();
        }
        sources.push(am);
    }
    let saved: usize = sources.iter().map(|a| a.clone().save().len()).sum();
    let total: usize = ids
        .iter()
        .map(|d| roc.store().changes(d).unwrap().len())
        .sum();
    drop(roc);
    let (b, base_bytes) = baseline(&sources, reps);
    let mut ours_ms = Vec::new();
    let mut last = None;
    for _ in 0..reps {
        let fresh = fresh_nodes.remove(0);
        let (ms, report, fresh) = session(&src_dir, fresh).await;
        ours_ms.push(ms);
        let got: usize = ids
            .iter()
            .map(|d| fresh.store().changes(d).map(|c| c.len()).unwrap_or(0))
            .sum();
        assert_eq!(got, total, "the new device must hold every sealed change");
        let mut fresh = fresh;
        let d = fresh.read_dossier(&ids[n - 1], &by).unwrap();
        assert_eq!(d.contacten.len(), changes - 1);
        last = Some(report);
    }
    let report = last.unwrap();
    let wire = report.bytes_sent + report.bytes_received;
    let o = median(&mut ours_ms);
    println!(
        "\n## catch-up of {n} dossiers, {total} changes: sealed through regiosync vs the same dossiers unsealed\n"
    );
    println!(
        "plaintext saved size {saved} bytes; sealed changes with envelopes {sealed_bytes} bytes\n"
    );
    println!("| system | median wall | bytes on the wire | bytes / saved size | round trips |");
    println!("|---|---|---|---|---|");
    println!(
        "| unsealed: automerge in-memory sync (baseline) | {b:.0} ms | {base_bytes} | {:.2} | - |",
        base_bytes as f64 / saved as f64
    );
    println!(
        "| sealed: regiosync over libp2p (verified, stored) | {o:.0} ms | {wire} | {:.2} | {} |",
        wire as f64 / saved as f64,
        report.round_trips
    );
    println!("\nratio sealed / unsealed (wall): {:.1}x", o / b);
}

async fn edit_to_visible(edits: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let names = [
        ("gemeente-utrecht", Role::Kerngemeente),
        ("roc-midden", Role::Roc),
        ("gemeente-zeist", Role::Gemeente),
        ("gemeente-houten", Role::Gemeente),
        ("swv-utrecht", Role::Swv),
    ];
    let dirs: Vec<PathBuf> = names.iter().map(|(p, _)| tmp.path().join(p)).collect();
    Node::init(&dirs[0], party(names[0].0), names[0].1, None).unwrap();
    let mut kern = Node::open(&dirs[0]).unwrap();
    kern.create_region("Bench").unwrap();
    for (i, (p, role)) in names.iter().enumerate().skip(1) {
        join(&mut kern, &dirs[i], p, *role);
    }
    let doc: DocId = kern.create_plan(PlanKind::Jeugdplan, "Latency").unwrap();
    drop(kern);
    let addrs: Vec<Multiaddr> = (0..5)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("/ip4/127.0.0.1/tcp/{}", l.local_addr().unwrap().port())
                .parse()
                .unwrap()
        })
        .collect();
    let mut running = Vec::new();
    for i in 0..5 {
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
            sync_interval: Duration::from_secs(5),
            poll_interval: Duration::from_millis(200),
            ..ServiceConfig::default()
        };
        let node = Node::open(&dirs[i]).unwrap();
        let c = cancel.clone();
        running.push((
            cancel,
            tokio::spawn(async move { run(node, config, c).await.unwrap() }),
        ));
    }
    let watchers: Vec<Node> = dirs.iter().map(|d| Node::open(d).unwrap()).collect();
    let count = |n: &Node| n.store().changes(&doc).map(|c| c.len()).unwrap_or(0);
    // Wait until everyone has the plan.
    let deadline = Instant::now() + Duration::from_secs(60);
    while watchers.iter().any(|w| count(w) == 0) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut lat = Vec::new();
    for k in 0..edits {
        let i = k % 5;
        let before: Vec<usize> = watchers.iter().map(count).collect();
        let t = Instant::now();
        Node::open(&dirs[i])
            .unwrap()
            .add_agreement(
                &doc,
                &AgreementInput {
                    title: format!("E{k}"),
                    owner: party(names[i].0),
                    deadline: None,
                },
            )
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while watchers.iter().zip(&before).any(|(w, b)| count(w) <= *b) {
            assert!(Instant::now() < deadline, "edit {k} never became visible");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        tracing::debug!(edit = k, ms = lat[lat.len() - 1], "visible everywhere");
    }
    for (c, j) in running {
        c.cancel();
        j.await.unwrap();
    }
    let (p50, p99) = (
        percentile(&mut lat.clone(), 0.5),
        percentile(&mut lat, 0.99),
    );
    println!("\n## edit-to-visible latency, five running nodes on loopback, {edits} edits\n");
    println!("| p50 | p99 | poll interval of the sending node (baseline) |");
    println!("|---|---|---|");
    println!("| {p50:.0} ms | {p99:.0} ms | 200 ms |");
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let only_latency = std::env::args().any(|a| a == "--latency");
    let only_dossiers = std::env::args().any(|a| a == "--dossiers");
    let (plans, changes, reps, edits, dossiers) = if quick {
        (4, 2_000, 1, 10, 50)
    } else {
        (20, 50_000, 3, 40, 1_000)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if only_dossiers {
            dossier_catch_up(dossiers, 20, reps).await;
            return;
        }
        if !only_latency {
            catch_up(plans, changes, reps).await;
            dossier_catch_up(dossiers, 20, reps).await;
        }
        edit_to_visible(edits).await;
    });
}
