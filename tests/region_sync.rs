//! A five-party region on loopback (ROC, kerngemeente, two buurgemeenten, SWV), each a
//! running node service (`regiosync up` in-process) over real libp2p connections.
//! Edits are made through separate handles on each data dir, as the CLI makes them
//! while the node runs. Convergence is awaited with a timeout, never a fixed sleep.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regiosync_core::id::{DocId, PartyName, Role};
use regiosync_core::plan::{AgreementInput, Plan, PlanKind};
use regiosync_net::Multiaddr;
use regiosync_node::Node;
use regiosync_node::service::{ServiceConfig, run};
use tokio_util::sync::CancellationToken;

const PARTIES: [(&str, Role); 5] = [
    ("gemeente-utrecht", Role::Kerngemeente),
    ("roc-midden", Role::Roc),
    ("gemeente-zeist", Role::Gemeente),
    ("gemeente-houten", Role::Gemeente),
    ("swv-utrecht", Role::Swv),
];

fn party(s: &str) -> PartyName {
    PartyName::new(s).unwrap()
}

/// A free loopback TCP port (bound and released; the node binds it right after).
fn free_addr() -> Multiaddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

/// Five nodes in one region (joined by files), and a plan everyone may write.
fn build_region(root: &Path) -> (Vec<PathBuf>, DocId) {
    let dirs: Vec<PathBuf> = PARTIES.iter().map(|(p, _)| root.join(p)).collect();
    for ((p, role), dir) in PARTIES.iter().zip(&dirs) {
        Node::init(dir, party(p), *role, None).unwrap();
    }
    let mut kern = Node::open(&dirs[0]).unwrap();
    kern.create_region("Regio Utrecht").unwrap();
    for ((p, role), dir) in PARTIES.iter().zip(&dirs).skip(1) {
        let mut n = Node::open(dir).unwrap();
        let code = kern.invite(party(p), *role, false, 3600).unwrap();
        let (_, bundle) = kern
            .accept(&n.join_request(&code.encode()).unwrap())
            .unwrap();
        n.import(&bundle).unwrap();
    }
    let doc = kern
        .create_plan(PlanKind::OogoVerslag, "OOGO-verslag november")
        .unwrap();
    kern.set_section(&doc, "Agenda", "1. Opening\n2. Jeugdplan\n3. Rondvraag\n")
        .unwrap();
    (dirs, doc)
}

struct Running {
    cancel: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

fn start(dir: &Path, listen: &Multiaddr, peers: &[Multiaddr]) -> Running {
    let node = Node::open(dir).unwrap();
    let config = ServiceConfig {
        listen: vec![listen.clone()],
        peers: peers.to_vec(),
        mdns: false,
        sync_interval: Duration::from_secs(1),
        poll_interval: Duration::from_millis(50),
    };
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let join = tokio::spawn(async move {
        if let Err(e) = run(node, config, c).await {
            panic!("node failed: {e}");
        }
    });
    Running { cancel, join }
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        self.join.await.unwrap();
    }
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
    converge(&dirs, &doc, |p| p.sections.len() == 1, "initial plan").await;

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
        plan.sections[0].text.contains("en mbo") && plan.sections[0].text.contains("Sluiting"),
        "{}",
        plan.sections[0].text
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
        |p| p.agreements.len() == 105 && p.sections.len() == 2,
        "after offline",
    )
    .await;
    assert_eq!(plan.sections[1].title, "Notulen SWV");

    for n in nodes.into_iter().flatten() {
        n.stop().await;
    }
}
