//! The network as a user sees it (issue 16): real nodes on loopback, each test named
//! after what it protects.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use regiosync_core::id::Role;
use regiosync_net::Multiaddr;
use regiosync_node::service::{read_status, run};
use regiosync_node::{Node, NodeError};
use regiosync_tests::{free_addr, logs, loopback_config, region_by_files, start_node, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_data_dir_is_refused_and_names_the_holder() {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = region_by_files(
        tmp.path(),
        &[
            ("gemeente-utrecht", Role::Kerngemeente),
            ("roc-midden", Role::Roc),
        ],
        true,
    );
    let first = start_node(&dirs[0], loopback_config(&free_addr(), &[]));
    // The first one holds the lock once it has written its status.
    wait_until("the first node runs", Duration::from_secs(30), || {
        dirs[0].join("status.json").exists()
    })
    .await;
    let second = run(
        Node::open(&dirs[0]).unwrap(),
        loopback_config(&free_addr(), &[]),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(second, NodeError::AlreadyRunning { pid: Some(p), .. } if p == std::process::id()),
        "{second:?}"
    );
    let message = second.to_string();
    assert!(
        message.contains(&format!("process {}", std::process::id())),
        "{message}"
    );
    first.stop().await;
    // Once the first stopped, the node starts again.
    let again = start_node(&dirs[0], loopback_config(&free_addr(), &[]));
    wait_until("the node runs again", Duration::from_secs(30), || {
        dirs[0].join("status.json").exists()
    })
    .await;
    again.stop().await;
}

/// A TCP forwarder on loopback that can turn into a black hole: once `frozen`, it
/// neither forwards bytes nor closes anything, like a peer whose machine lost power
/// or whose cable was pulled (no FIN ever arrives).
async fn black_hole_proxy(to: u16, frozen: Arc<AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                return;
            };
            let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                continue;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pipe(ri, wo, frozen.clone()));
            tokio::spawn(pipe(ro, wi, frozen.clone()));
        }
    });
    port
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        if frozen.load(Ordering::SeqCst) || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    if frozen.load(Ordering::SeqCst) {
        // Hold both sockets open for the rest of the test: nothing is ever closed.
        std::future::pending::<()>().await;
    }
}

fn port_of(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            regiosync_net::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap()
}

fn connected_to(dir: &Path, peer: &str) -> Option<bool> {
    read_status(dir)?.peers.get(peer).map(|p| p.connected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_died_without_closing_is_not_shown_as_connected() {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = region_by_files(
        tmp.path(),
        &[
            ("gemeente-utrecht", Role::Kerngemeente),
            ("roc-midden", Role::Roc),
        ],
        true,
    );
    let roc_id = Node::open(&dirs[1]).unwrap().info().node_id.to_string();
    let roc_addr = free_addr();
    let roc = start_node(&dirs[1], loopback_config(&roc_addr, &[]));
    let frozen = Arc::new(AtomicBool::new(false));
    let proxy = black_hole_proxy(port_of(&roc_addr), frozen.clone()).await;
    let through_proxy: Multiaddr = format!("/ip4/127.0.0.1/tcp/{proxy}").parse().unwrap();
    let kern = start_node(&dirs[0], loopback_config(&free_addr(), &[through_proxy]));
    wait_until(
        "the kerngemeente connects to the ROC",
        Duration::from_secs(30),
        || connected_to(&dirs[0], &roc_id) == Some(true),
    )
    .await;

    // The ROC's machine dies: its connection goes silent, and it is not there when
    // the kerngemeente redials.
    frozen.store(true, Ordering::SeqCst);
    roc.stop().await;
    // Without pings that close a silent connection it would count as connected
    // until the idle timeout (two minutes).
    wait_until(
        "the kerngemeente no longer calls the dead ROC connected",
        Duration::from_secs(30),
        || connected_to(&dirs[0], &roc_id) == Some(false),
    )
    .await;
    kern.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_is_told_when_and_by_whom_and_stops_dialling() {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = region_by_files(
        tmp.path(),
        &[
            ("gemeente-utrecht", Role::Kerngemeente),
            ("roc-midden", Role::Roc),
        ],
        true,
    );
    let roc_id = Node::open(&dirs[1]).unwrap().info().node_id;
    let kern_addr = free_addr();
    let kern = start_node(&dirs[0], loopback_config(&kern_addr, &[]));
    // The ROC's laptop runs `up`; its result is what the user would see.
    let cancel = CancellationToken::new();
    let laptop = tokio::spawn(run(
        Node::open(&dirs[1]).unwrap(),
        loopback_config(&free_addr(), &[kern_addr]),
        cancel.clone(),
    ));
    wait_until("the laptop connects", Duration::from_secs(30), || {
        connected_to(&dirs[0], &roc_id.to_string()) == Some(true)
    })
    .await;

    // The admin removes the laptop (as `regiosync device remove` while `up` runs).
    Node::open(&dirs[0]).unwrap().remove_device(roc_id).unwrap();
    // The laptop's `up` ends by itself with the reason: it no longer dials anyone.
    let ended = tokio::time::timeout(Duration::from_secs(60), laptop)
        .await
        .expect("the removed laptop's node stops by itself")
        .unwrap();
    cancel.cancel();
    let Err(e @ NodeError::Removed(_)) = ended else {
        panic!("expected a removal, got {ended:?}");
    };
    let message = e.to_string();
    let today = regiosync_core::plan::date_format::format(time::OffsetDateTime::now_utc().date());
    assert!(
        message.contains(&format!(
            "removed from the region on {today} by gemeente-utrecht"
        )),
        "{message}"
    );
    assert!(
        message.contains("will be refused by the region"),
        "{message}"
    );
    // Restarting it is refused at once with the same reason; `status` and the CLI read
    // the same removal.
    let again = run(
        Node::open(&dirs[1]).unwrap(),
        loopback_config(&free_addr(), &[]),
        CancellationToken::new(),
    )
    .await;
    assert!(matches!(again, Err(NodeError::Removed(_))), "{again:?}");
    let removal = Node::open(&dirs[1]).unwrap().removal().unwrap().unwrap();
    assert_eq!(removal.by, "gemeente-utrecht");
    kern.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_tells_a_refusing_member_from_an_offline_one_and_reports_a_dossier_that_cannot_reach_its_party()
 {
    use regiosync_core::dossier::DossierField;
    use regiosync_core::dossier::access::Basis;
    use regiosync_node::dossiers::{NewDossier, Reader};
    logs();
    let tmp = tempfile::tempdir().unwrap();
    // Without a shared log: the ROC joined before Zeist and does not know Zeist's
    // device yet; Zeist's log has every member.
    let dirs = region_by_files(
        tmp.path(),
        &[
            ("gemeente-utrecht", Role::Kerngemeente),
            ("roc-midden", Role::Roc),
            ("gemeente-zeist", Role::Gemeente),
        ],
        false,
    );
    let id = |i: usize| Node::open(&dirs[i]).unwrap().info().node_id.to_string();
    let (kern_id, roc_id) = (id(0), id(1));
    // Zeist's dossier of a student living in Utrecht: the kerngemeente is in force.
    let dossier = Node::open(&dirs[2])
        .unwrap()
        .create_dossier(
            &NewDossier {
                woongemeente: regiosync_tests::party("gemeente-utrecht"),
                basis: Basis::WettelijkeTaak,
                purpose: "Jeugdwet: ondersteuning".into(),
                fields: vec![(DossierField::Opleiding, "Verzorgende IG".into())],
            },
            &Reader {
                who: regiosync_core::audit::Who::cli("j.bakker"),
                purpose: "begeleiding".into(),
            },
        )
        .unwrap();

    let roc_addr = free_addr();
    let roc = start_node(&dirs[1], loopback_config(&roc_addr, &[]));
    let zeist = start_node(&dirs[2], loopback_config(&free_addr(), &[roc_addr]));
    // The ROC runs but its gate does not know Zeist's device: "refuses", not
    // "offline"; the kerngemeente does not run at all.
    wait_until(
        "Zeist sees the ROC refuse it",
        Duration::from_secs(30),
        || {
            read_status(&dirs[2])
                .and_then(|s| s.peers.get(&roc_id).cloned())
                .is_some_and(|p| p.refuses_this_device && !p.connected)
        },
    )
    .await;
    let status = read_status(&dirs[2]).unwrap();
    let kern_status = &status.peers[&kern_id];
    assert!(!kern_status.connected && !kern_status.refuses_this_device);
    assert_eq!(kern_status.last_seen, None);
    // The dossier cannot reach Utrecht: no device of it and no dossier relay is up.
    wait_until(
        "the dossier is reported as unreached",
        Duration::from_secs(30),
        || {
            read_status(&dirs[2]).is_some_and(|s| {
                s.dossiers_held == 1
                    && s.dossiers_unreached
                        .iter()
                        .any(|u| u.dossier == dossier && u.party == "gemeente-utrecht")
            })
        },
    )
    .await;

    // The kerngemeente comes up: Zeist reaches it directly, it is no longer
    // unreached, and the ROC learns Zeist's device from it and lets it in.
    let kern_addr = free_addr();
    let kern = start_node(&dirs[0], loopback_config(&kern_addr, &[]));
    zeist.stop().await;
    let zeist = start_node(
        &dirs[2],
        loopback_config(&free_addr(), std::slice::from_ref(&kern_addr)),
    );
    wait_until(
        "Zeist is connected to Utrecht directly",
        Duration::from_secs(30),
        || {
            read_status(&dirs[2])
                .and_then(|s| s.peers.get(&kern_id).cloned())
                .is_some_and(|p| {
                    p.connected && p.via.as_deref() == Some("direct") && p.last_seen.is_some()
                })
        },
    )
    .await;
    wait_until(
        "the dossier reaches its party",
        Duration::from_secs(30),
        || {
            read_status(&dirs[2]).is_some_and(|s| {
                s.dossiers_unreached.is_empty()
                    && s.peers
                        .get(&kern_id)
                        .is_some_and(|p| p.dossiers_shared == 1)
            })
        },
    )
    .await;
    for r in [zeist, kern, roc] {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_members_first_sync_is_started_by_the_connection_not_by_a_timer() {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = region_by_files(
        tmp.path(),
        &[
            ("gemeente-utrecht", Role::Kerngemeente),
            ("roc-midden", Role::Roc),
        ],
        true,
    );
    let plan = Node::open(&dirs[0])
        .unwrap()
        .create_plan(regiosync_core::plan::PlanKind::Jeugdplan, "Jeugdplan 2027")
        .unwrap();
    // No timer can start a session here: anti-entropy and the store poll wait an hour
    // (their first tick, at start, comes before any connection). Only the connection
    // event can bring the plan.
    let slow = |listen: &Multiaddr, peers: &[Multiaddr]| regiosync_node::service::ServiceConfig {
        sync_interval: Duration::from_secs(3600),
        poll_interval: Duration::from_secs(3600),
        ..loopback_config(listen, peers)
    };
    let kern_addr = free_addr();
    let kern = start_node(&dirs[0], slow(&kern_addr, &[]));
    // The kerngemeente listens before the ROC dials once, at start.
    let port = port_of(&kern_addr);
    wait_until("the kerngemeente listens", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let roc = start_node(&dirs[1], slow(&free_addr(), &[kern_addr]));
    wait_until(
        "the plan reaches the new member",
        Duration::from_secs(30),
        || Node::open(&dirs[1]).unwrap().plan(&plan).is_ok(),
    )
    .await;
    roc.stop().await;
    kern.stop().await;
}
