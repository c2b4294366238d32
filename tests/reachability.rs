//! How members find each other, on loopback: through the addresses members publish
//! in the region log, and through a member that runs a circuit relay.
//!
//! Relay: members that cannot reach each other directly sync through a member that
//! runs a circuit relay (`regiosync up --relay`). The ROC and the municipality
//! know only the relay's address (the relay is the kerngemeente, which may not read
//! the plan they share, so it cannot have passed the plan on by syncing it itself):
//! the plan still arrives, through a relayed connection or the direct one that DCUtR
//! makes of it, and the relay never holds it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regiosync_core::id::Role;
use regiosync_core::plan::PlanKind;
use regiosync_net::Multiaddr;
use regiosync_node::Node;
use regiosync_node::service::ServiceConfig;
use regiosync_store::StoreRead;
use regiosync_tests::{
    Running, free_addr, logs, loopback_config, party, region_by_files, start_node, wait_until,
};

fn start(
    dir: &Path,
    listen: &Multiaddr,
    peers: &[Multiaddr],
    relay: bool,
    announce: &[Multiaddr],
) -> Running {
    start_node(
        dir,
        ServiceConfig {
            relay,
            announce: announce.to_vec(),
            ..loopback_config(listen, peers)
        },
    )
}

/// A kerngemeente, a ROC and a municipality in one region, all knowing the whole
/// log (joined by files).
fn three_parties(root: &Path) -> Vec<PathBuf> {
    region_by_files(
        root,
        &[
            ("gemeente-utrecht", Role::Kerngemeente),
            ("roc-midden", Role::Roc),
            ("gemeente-zeist", Role::Gemeente),
        ],
        true,
    )
}

async fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(90), ok).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_no_address_configured_dials_the_addresses_published_in_the_log() {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = three_parties(tmp.path());
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    // The kerngemeente (always on) announces where it can be reached; the ROC
    // receives that op.
    let kern = start(&dirs[0], &addrs[0], &[], false, &[addrs[0].clone()]);
    let roc = start(&dirs[1], &addrs[1], &[addrs[0].clone()], false, &[]);
    let kern_id = Node::open(&dirs[0]).unwrap().info().node_id;
    wait_for("the ROC learns the kerngemeente's address", || {
        Node::open(&dirs[1])
            .unwrap()
            .published_addrs()
            .unwrap()
            .contains(&(kern_id, addrs[0].clone()))
    })
    .await;
    // Zeist gets the log by file (sneakernet) and starts with no --peer, no mDNS and
    // nothing remembered: the published address is all it has.
    let log = Node::open(&dirs[1]).unwrap().export().unwrap();
    Node::open(&dirs[2]).unwrap().import(&log).unwrap();
    assert!(
        Node::open(&dirs[2])
            .unwrap()
            .peer_addrs()
            .unwrap()
            .is_empty()
    );
    let zeist = start(&dirs[2], &addrs[2], &[], false, &[]);
    let doc = Node::open(&dirs[0])
        .unwrap()
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan 2027")
        .unwrap();
    wait_for("the plan reaches Zeist", || {
        Node::open(&dirs[2]).unwrap().plan(&doc).is_ok()
    })
    .await;
    for r in [zeist, roc, kern] {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_know_only_the_relay_sync_through_it() {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = three_parties(tmp.path());
    // The ROC's plan, readable by the ROC and Zeist only; the kerngemeente learns of
    // it (the region log) but may not read it.
    let mut roc = Node::open(&dirs[1]).unwrap();
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
    drop(roc);

    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let relay = start(&dirs[0], &addrs[0], &[], true, &[]);
    // They announce nothing, so the log cannot tell them where the other is.
    let roc = start(&dirs[1], &addrs[1], &[addrs[0].clone()], false, &[]);
    let zeist = start(&dirs[2], &addrs[2], &[addrs[0].clone()], false, &[]);

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
    for r in [zeist, roc, relay] {
        r.stop().await;
    }
}
