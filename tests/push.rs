//! A commit reaches the connected members at once, not at the next poll: an edit
//! made by a separate `regiosync` handle on a data dir while `up` runs on it (the
//! CLI) wakes the running node through the data dir's socket. The nodes here poll
//! their stores only every two minutes and run no anti-entropy within the test, so
//! only the wake-up can carry the edit in time.

use std::time::Duration;

use regiosync_core::id::Role;
use regiosync_core::plan::PlanKind;
use regiosync_net::Multiaddr;
use regiosync_node::Node;
use regiosync_node::service::ServiceConfig;
use regiosync_tests::{free_addr, logs, loopback_config, region_by_files, start_node, wait_until};

const PARTIES: [(&str, Role); 2] = [
    ("gemeente-utrecht", Role::Kerngemeente),
    ("roc-midden", Role::Roc),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_by_another_process_reaches_the_members_without_waiting_for_a_poll() {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = region_by_files(tmp.path(), &PARTIES, true);
    let doc = Node::open(&dirs[0])
        .unwrap()
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan")
        .unwrap();
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let config = |i: usize| ServiceConfig {
        poll_interval: Duration::from_secs(120),
        ..loopback_config(&addrs[i], &[addrs[1 - i].clone()])
    };
    // The ROC listens first, so the kerngemeente's first dial finds it.
    let roc_running = start_node(&dirs[1], config(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kern_running = start_node(&dirs[0], config(0));
    let roc = Node::open(&dirs[1]).unwrap();
    wait_until(
        "the ROC holds the plan (first sync on connecting)",
        Duration::from_secs(30),
        || roc.plan(&doc).is_ok(),
    )
    .await;

    // A CLI command on the kerngemeente's data dir: its own handle, its own commit.
    let mut cli = Node::open(&dirs[0]).unwrap();
    cli.set_section(&doc, "Inleiding", "Samen met het onderwijs.\n")
        .unwrap();
    wait_until(
        "the ROC holds the CLI's edit",
        Duration::from_secs(20),
        || {
            roc.plan(&doc).is_ok_and(|p| {
                p.titled("Inleiding")
                    .is_some_and(|s| s.text.contains("onderwijs"))
            })
        },
    )
    .await;

    kern_running.stop().await;
    roc_running.stop().await;
    // The running node removed its socket when it stopped.
    assert!(!dirs[0].join("wake.sock").exists());
}
