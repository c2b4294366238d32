//! Two parties, two running nodes syncing over real libp2p on loopback, each serving
//! its web app over TLS: party B's person has a plan open in headless chromium; an
//! edit committed on party A's node appears in B's open page without a reload,
//! with the notice of who changed which section.
//!
//! The edit is made through A's in-process node API (the handle A's web app and
//! sync service share, as a web save does). The anti-entropy interval is longer
//! than the test: only the push at commit can bring the edit over.
//!
//! Never skipped: without chromium and chromedriver the test fails and says how to
//! install them (`apt-get install -y chromium chromium-driver`; `.ci/run` does).

#![allow(clippy::print_stderr)] // prints the page when the test fails

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::browser::{browser, browser_binaries, screenshots, sign_in, start_chromedriver};
use common::{PASSWORD, pass};
use fantoccini::Locator;
use regiosync_core::id::{DocId, PartyName, Role};
use regiosync_core::plan::PlanKind;
use regiosync_node::Node;
use regiosync_node::service::{ServiceConfig, run_shared};
use regiosync_node::staff::StaffRole;
use regiosync_web::{AppState, WebConfig, router, tls};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Only to keep a broken test from hanging; nothing is timed.
const DEADLINE: Duration = Duration::from_secs(60);

fn party(s: &str) -> PartyName {
    PartyName::new(s).unwrap()
}

/// Gemeente Gouda founds the region, the ROC joins by files; Gouda writes a plan.
fn region(root: &Path) -> (PathBuf, PathBuf, DocId) {
    let (a, b) = (root.join("gouda"), root.join("roc"));
    Node::init(&a, party("gemeente-gouda"), Role::Kerngemeente, None).unwrap();
    Node::init(&b, party("roc-midden-holland"), Role::Roc, None).unwrap();
    let mut gouda = Node::open(&a).unwrap();
    gouda.create_region("Regio Midden-Holland").unwrap();
    let mut roc = Node::open(&b).unwrap();
    let code = gouda
        .invite(party("roc-midden-holland"), Role::Roc, false, 3600)
        .unwrap();
    let (_, bundle) = gouda
        .accept(&roc.join_request(&code.encode()).unwrap())
        .unwrap();
    roc.import(&bundle).unwrap();
    gouda
        .set_party_name(&party("gemeente-gouda"), "Gemeente Gouda")
        .unwrap();
    let doc = gouda
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan Midden-Holland 2027")
        .unwrap();
    gouda
        .set_section(&doc, "Inleiding", "Samen met het onderwijs.")
        .unwrap();
    gouda
        .set_section(&doc, "Visie", "Eén contactpersoon per school.")
        .unwrap();
    roc.import(&gouda.export().unwrap()).unwrap();
    roc.add_staff("l.lezer", StaffRole::Lezer, &pass(PASSWORD), false)
        .unwrap();
    (a, b, doc)
}

/// A node as `regiosync up` runs it: the sync service and the web app over TLS,
/// sharing one node handle.
struct Up {
    node: Arc<Mutex<Node>>,
    web: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn up(
    dir: &Path,
    listen: &regiosync_net::Multiaddr,
    peer: &regiosync_net::Multiaddr,
    cancel: &CancellationToken,
) -> Up {
    let node = Node::open(dir).unwrap();
    let lock = regiosync_node::run_lock::RunLock::acquire(dir).unwrap();
    let node = Arc::new(Mutex::new(node));
    let config = ServiceConfig {
        listen: vec![listen.clone()],
        peers: vec![peer.clone()],
        mdns: false,
        sync_interval: Duration::from_secs(600),
        ..ServiceConfig::default()
    };
    let service = {
        let (node, cancel) = (node.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(e) = run_shared(node, config, cancel, lock).await {
                panic!("node failed: {e}");
            }
        })
    };
    tls::install_crypto_provider();
    let setup = tls::setup(&tls::CertSource::Generated {
        dir: dir.to_owned(),
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = listener.local_addr().unwrap();
    let app = router(AppState::new(node.clone(), WebConfig::default()));
    let server = tokio::spawn(regiosync_web::server::serve(
        listener,
        setup.config,
        app,
        cancel.clone(),
    ));
    Up {
        node,
        web,
        tasks: vec![service, server],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_on_party_a_s_node_appears_in_party_b_s_open_page_without_a_reload() {
    let (chromium, chromedriver) = browser_binaries();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b, doc) = region(tmp.path());
    let (addr_a, addr_b) = (
        regiosync_net::free_loopback_tcp().unwrap(),
        regiosync_net::free_loopback_tcp().unwrap(),
    );
    let cancel = CancellationToken::new();
    let a = up(&dir_a, &addr_a, &addr_b, &cancel).await;
    let b = up(&dir_b, &addr_b, &addr_a, &cancel).await;
    // B receives the plan by sync.
    let deadline = Instant::now() + DEADLINE;
    while b.node.lock().await.plan(&doc).is_err() {
        assert!(Instant::now() < deadline, "the plan did not reach B");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (mut driver, port) = start_chromedriver(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&chromium, port, profile.path(), 1000).await;
    let shots = screenshots();
    let base = format!("https://127.0.0.1:{}", b.web.port());

    let result: Result<(), fantoccini::error::CmdError> = async {
        // B's person signs in and opens the plan.
        sign_in(&client, &base, "l.lezer").await?;
        client.goto(&format!("{base}/plannen/{doc}")).await?;
        // Its live stream is open (the script marks the content).
        client
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css("#plan-live[data-live-state=open]"))
            .await?;
        // A mark in this window: a reload would lose it.
        client
            .execute(
                "window.regiosyncTestMark = 'same page'; return null;",
                vec![],
            )
            .await?;

        // Party A's node commits an edit.
        a.node
            .lock()
            .await
            .set_section(&doc, "Inleiding", "Samen met het onderwijs en het mbo.")
            .unwrap();

        // It appears in B's open page, with the notice.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = client
                .find(Locator::Css("article.plan"))
                .await?
                .text()
                .await?;
            if text.contains("en het mbo.") {
                break;
            }
            assert!(Instant::now() < deadline, "the edit did not appear: {text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let notice = client
            .find(Locator::Css("#live-status[role=status][aria-live=polite]"))
            .await?
            .text()
            .await?;
        assert_eq!(notice, "Gemeente Gouda heeft sectie Inleiding gewijzigd.");
        let mark = client
            .execute("return window.regiosyncTestMark || null;", vec![])
            .await?;
        assert_eq!(
            mark,
            serde_json::json!("same page"),
            "the page was reloaded"
        );
        // The rest of the plan is still there.
        let text = client
            .find(Locator::Css("article.plan"))
            .await?
            .text()
            .await?;
        assert!(text.contains("Eén contactpersoon per school."), "{text}");
        if let Some(d) = &shots {
            std::fs::write(d.join("web-live.png"), client.screenshot().await?).unwrap();
        }
        Ok(())
    }
    .await;
    if result.is_err()
        && let Ok(page) = client.source().await
    {
        eprintln!("the page when the test failed:\n{page}");
    }
    let _ = client.close().await;
    let _ = driver.kill().await;
    cancel.cancel();
    for t in a.tasks.into_iter().chain(b.tasks) {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    result.unwrap();
}
