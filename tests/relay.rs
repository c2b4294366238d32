//! Members that cannot reach each other directly sync through a member that runs a
//! circuit relay (`regiosync up --relay`), on loopback. The ROC and the municipality
//! know only the relay's address (the relay is the kerngemeente, which may not read
//! the plan they share, so it cannot have passed the plan on by syncing it itself):
//! the plan still arrives, through a relayed connection or the direct one that DCUtR
//! makes of it, and the relay never holds it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regiosync_core::id::{PartyName, Role};
use regiosync_core::plan::PlanKind;
use regiosync_net::Multiaddr;
use regiosync_node::Node;
use regiosync_node::service::{ServiceConfig, run};
use tokio_util::sync::CancellationToken;

fn party(s: &str) -> PartyName {
    PartyName::new(s).unwrap()
}

fn free_addr() -> Multiaddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

fn start(
    dir: &Path,
    listen: &Multiaddr,
    peers: &[Multiaddr],
    relay: bool,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let node = Node::open(dir).unwrap();
    let config = ServiceConfig {
        listen: vec![listen.clone()],
        peers: peers.to_vec(),
        mdns: false,
        sync_interval: Duration::from_secs(120),
        poll_interval: Duration::from_millis(50),
        relay,
    };
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let join = tokio::spawn(async move {
        if let Err(e) = run(node, config, c).await {
            panic!("node failed: {e}");
        }
    });
    (cancel, join)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_know_only_the_relay_sync_through_it() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let tmp = tempfile::tempdir().unwrap();
    let parties = [
        ("gemeente-utrecht", Role::Kerngemeente),
        ("roc-midden", Role::Roc),
        ("gemeente-zeist", Role::Gemeente),
    ];
    let dirs: Vec<PathBuf> = parties.iter().map(|(p, _)| tmp.path().join(p)).collect();
    for ((p, role), dir) in parties.iter().zip(&dirs) {
        Node::init(dir, party(p), *role, None).unwrap();
    }
    let mut kern = Node::open(&dirs[0]).unwrap();
    kern.create_region("Regio Utrecht").unwrap();
    for ((p, role), dir) in parties.iter().zip(&dirs).skip(1) {
        let mut n = Node::open(dir).unwrap();
        let code = kern.invite(party(p), *role, false, 3600).unwrap();
        let (_, bundle) = kern
            .accept(&n.join_request(&code.encode()).unwrap())
            .unwrap();
        n.import(&bundle).unwrap();
    }
    // The ROC's plan, readable by the ROC and Zeist only; the kerngemeente learns of
    // it (the region log) but may not read it.
    let mut roc = Node::open(&dirs[1]).unwrap();
    roc.import(&kern.export().unwrap()).unwrap();
    let doc = roc
        .create_plan(PlanKind::Ondersteuningsplan, "Overstap Zeist")
        .unwrap();
    roc.set_acl(
        &doc,
        Some(vec![party("roc-midden"), party("gemeente-zeist")]),
        Some(vec![party("roc-midden"), party("gemeente-zeist")]),
    )
    .unwrap();
    roc.set_section(&doc, "Afspraken", "Warme overdracht in januari.\n")
        .unwrap();
    drop((kern, roc));

    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let relay = start(&dirs[0], &addrs[0], &[], true);
    let roc = start(&dirs[1], &addrs[1], &[addrs[0].clone()], false);
    let zeist = start(&dirs[2], &addrs[2], &[addrs[0].clone()], false);

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(plan) = Node::open(&dirs[2]).unwrap().plan(&doc)
            && plan
                .sections
                .iter()
                .any(|s| s.text.contains("Warme overdracht"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the plan never reached Zeist through the relay"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kern = Node::open(&dirs[0]).unwrap();
    assert!(
        kern.store().document(&doc).unwrap().is_none(),
        "the relay holds no copy of a plan it may not read"
    );
    assert!(kern.plan(&doc).is_err());
    for (c, t) in [zeist, roc, relay] {
        c.cancel();
        t.await.unwrap();
    }
}
