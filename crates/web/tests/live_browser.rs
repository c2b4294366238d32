//! Two parties, two running nodes syncing over real libp2p on loopback, each serving
//! its web app over TLS: party B's person has a plan open in headless chromium; an
//! edit committed on party A's node appears in B's open page without a reload,
//! with the notice of who changed which section.
//!
//! The edit is made through A's in-process node API (the handle A's web app and
//! sync service share, as a web save does). The anti-entropy interval is longer
//! than the test: only the push at commit can bring the edit over.
//!
//! A second test has a `beleid` person of each party edit one section at the same
//! time, each in their own party's web app, from the same version: each rewrites a
//! different paragraph, and both texts survive on both nodes and in both open
//! pages. Then Gouda approves in its browser, the ROC edits in its own, and the
//! ROC's open page shows Gouda's approval with "1 wijziging sinds".
//!
//! A third test needs no browser: a plan that Gouda's node held and showed
//! disappears from Gouda's web app (list, page, editor, export, live stream) once
//! its owner, the ROC, restricts its readers to itself and that op arrives by sync.
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
        .set_section(
            &doc,
            "Visie",
            "Eén contactpersoon per school.\n\nDe partners overleggen elk kwartaal.",
        )
        .unwrap();
    gouda
        .add_staff("g.beleid", StaffRole::Beleid, &pass(PASSWORD), false)
        .unwrap();
    roc.import(&gouda.export().unwrap()).unwrap();
    roc.add_staff("l.lezer", StaffRole::Lezer, &pass(PASSWORD), false)
        .unwrap();
    roc.add_staff("r.beleid", StaffRole::Beleid, &pass(PASSWORD), false)
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
            let text = text_at(&client, ARTICLE).await?.unwrap_or_default();
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
        let text = text_at(&client, ARTICLE).await?.unwrap_or_default();
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

/// The text of the first element an XPath finds, read in one script call: the live
/// script swaps the page's content at any moment, so a found element can be stale
/// by the time its text is asked for. `None` when nothing matches.
async fn text_at(
    c: &fantoccini::Client,
    xpath: &str,
) -> Result<Option<String>, fantoccini::error::CmdError> {
    let v = c
        .execute(
            "var n = document.evaluate(arguments[0], document, null, \
             XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue; \
             return n ? n.innerText : null;",
            vec![serde_json::json!(xpath)],
        )
        .await?;
    Ok(v.as_str().map(str::to_owned))
}

/// The plan's article, as [`text_at`] reads it.
const ARTICLE: &str = "//article[contains(concat(' ', @class, ' '), ' plan ')]";

/// Waits until the open page's `article.plan` (swapped in by the live script, never
/// reloaded here) contains every one of `texts`.
async fn wait_for_texts(
    c: &fantoccini::Client,
    texts: &[&str],
) -> Result<(), fantoccini::error::CmdError> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = text_at(c, ARTICLE).await?.unwrap_or_default();
        if texts.iter().all(|t| text.contains(t)) {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed all of {texts:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens section `sid`'s editor and rewrites its text, without saving.
async fn type_section(
    c: &fantoccini::Client,
    base: &str,
    doc: &DocId,
    sid: &str,
    text: &str,
) -> Result<(), fantoccini::error::CmdError> {
    c.goto(&format!("{base}/plannen/{doc}/secties/{sid}/bewerken"))
        .await?;
    let area = c
        .wait()
        .at_most(DEADLINE)
        .for_element(Locator::Id("tekst"))
        .await?;
    area.clear().await?;
    area.send_keys(text).await?;
    Ok(())
}

/// Presses the editor's save button and waits for the plan page's notice.
async fn save(c: &fantoccini::Client) -> Result<(), fantoccini::error::CmdError> {
    c.find(Locator::Css(
        "form.editor .buttons button[type=submit]:not([name])",
    ))
    .await?
    .click()
    .await?;
    c.wait()
        .at_most(DEADLINE)
        .for_element(Locator::Css("p.notice[role=status]"))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_parties_edit_one_section_at_once_in_their_own_web_apps_and_approvals_travel() {
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
    // B holds the plan at A's version: both people start from the same one.
    let deadline = Instant::now() + DEADLINE;
    let visie = loop {
        let heads_a = a.node.lock().await.plan_heads(&doc).unwrap();
        let on_b = b.node.lock().await.plan_heads(&doc).ok();
        if on_b.as_ref() == Some(&heads_a) {
            break a
                .node
                .lock()
                .await
                .plan(&doc)
                .unwrap()
                .titled("Visie")
                .unwrap()
                .id
                .clone();
        }
        assert!(Instant::now() < deadline, "the plan did not reach B");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let (mut driver, port) = start_chromedriver(&chromedriver).await;
    let (pa, pb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca = browser(&chromium, port, pa.path(), 1400).await;
    let cb = browser(&chromium, port, pb.path(), 1400).await;
    let base_a = format!("https://127.0.0.1:{}", a.web.port());
    let base_b = format!("https://127.0.0.1:{}", b.web.port());
    let first = "Eén vaste contactpersoon per school, ook in de zomer (Gouda).";
    let second = "De partners overleggen elke maand (ROC).";

    let result: Result<(), fantoccini::error::CmdError> = async {
        sign_in(&ca, &base_a, "g.beleid").await?;
        sign_in(&cb, &base_b, "r.beleid").await?;
        // Both open the editor before either saves: same base version.
        type_section(
            &ca,
            &base_a,
            &doc,
            &visie,
            &format!("{first}\n\nDe partners overleggen elk kwartaal."),
        )
        .await?;
        type_section(
            &cb,
            &base_b,
            &doc,
            &visie,
            &format!("Eén contactpersoon per school.\n\n{second}"),
        )
        .await?;
        let (ra, rb) = tokio::join!(save(&ca), save(&cb));
        ra?;
        rb?;
        // Both texts, in both open pages (the live script swaps them in) ...
        wait_for_texts(&ca, &[first, second]).await?;
        wait_for_texts(&cb, &[first, second]).await?;
        // ... and in both nodes' stores, with nothing of the old paragraphs left.
        for node in [&a.node, &b.node] {
            let deadline = Instant::now() + DEADLINE;
            loop {
                let text = node.lock().await.plan(&doc).unwrap().titled("Visie").unwrap().text.clone();
                if text.contains(first) && text.contains(second) {
                    assert!(!text.contains("elk kwartaal"), "{text}");
                    assert!(!text.contains("Eén contactpersoon per school."), "{text}");
                    break;
                }
                assert!(Instant::now() < deadline, "a node lacks an edit: {text}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        // Gouda approves in its browser; the ROC's open page shows it live.
        ca.find(Locator::Css("form.approve button[type=submit]"))
            .await?
            .click()
            .await?;
        ca.wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css("p.notice[role=status]"))
            .await?;
        let gouda_row = "//section[@id='goedkeuring']//tr[th[normalize-space()='Gemeente Gouda']]/td[@class='since']";
        let deadline = Instant::now() + DEADLINE;
        loop {
            if text_at(&cb, gouda_row)
                .await?
                .is_some_and(|t| t.contains("deze versie"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "the approval did not reach the ROC's page");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The ROC edits; its page then counts one change since Gouda's approval.
        type_section(&cb, &base_b, &doc, &visie, "Een latere wijziging van het ROC.").await?;
        save(&cb).await?;
        let since = text_at(&cb, gouda_row).await?.unwrap_or_default();
        assert!(since.contains("1 wijziging sinds"), "{since}");
        // Gouda's own page says the same, live.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let since = text_at(&ca, gouda_row).await?.unwrap_or_default();
            if since.contains("1 wijziging sinds") {
                break;
            }
            assert!(Instant::now() < deadline, "Gouda's page: {since}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        for c in [&ca, &cb] {
            if let Ok(page) = c.source().await {
                eprintln!("a page when the test failed:\n{page}");
            }
        }
    }
    let _ = ca.close().await;
    let _ = cb.close().await;
    let _ = driver.kill().await;
    cancel.cancel();
    for t in a.tasks.into_iter().chain(b.tasks) {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_this_party_may_no_longer_read_leaves_its_web_app() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b, _) = region(tmp.path());
    let (addr_a, addr_b) = (
        regiosync_net::free_loopback_tcp().unwrap(),
        regiosync_net::free_loopback_tcp().unwrap(),
    );
    let cancel = CancellationToken::new();
    let a = up(&dir_a, &addr_a, &addr_b, &cancel).await;
    let b = up(&dir_b, &addr_b, &addr_a, &cancel).await;
    // The ROC writes a plan every party may read; Gouda's node receives it.
    let doc = {
        let mut roc = b.node.lock().await;
        let doc = roc
            .create_plan(PlanKind::Ondersteuningsplan, "Ondersteuningsplan ROC")
            .unwrap();
        roc.set_section(&doc, "Inleiding", "Vertrouwelijke passage.")
            .unwrap();
        doc
    };
    let deadline = Instant::now() + DEADLINE;
    while a.node.lock().await.plan(&doc).is_err() {
        assert!(Instant::now() < deadline, "the plan did not reach Gouda");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Gouda's web app (the same node handle as its server's), signed in as beleid.
    let app = router(AppState::new(a.node.clone(), WebConfig::default()));
    let cookie = {
        let mut node = a.node.lock().await;
        let creds = node.staff_credentials("g.beleid").unwrap().unwrap();
        let s = node
            .start_staff_session(&creds, regiosync_node::staff::SessionLimits::default())
            .unwrap();
        format!("__Host-regiosync={}", &*s.token)
    };
    let get = |path: String, accept: &'static str| {
        let app = app.clone();
        let cookie = cookie.clone();
        async move {
            app.oneshot(
                Request::get(path)
                    .header(header::HOST, "127.0.0.1:8443")
                    .header(header::ACCEPT, accept)
                    .header(header::COOKIE, cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
        }
    };
    let sid = a
        .node
        .lock()
        .await
        .plan(&doc)
        .unwrap()
        .titled("Inleiding")
        .unwrap()
        .id
        .clone();
    let pages = [
        format!("/plannen/{doc}"),
        format!("/plannen/{doc}/secties/{sid}/bewerken"),
        format!("/plannen/{doc}/export/html"),
    ];
    for p in &pages {
        assert_eq!(
            get(p.clone(), "text/html").await.status(),
            StatusCode::OK,
            "{p}"
        );
    }
    let list = get("/plannen".into(), "text/html").await;
    let list = axum::body::to_bytes(list.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&list).contains("Ondersteuningsplan ROC"));
    // A live stream open on the plan.
    let stream = get(format!("/plannen/{doc}/events"), "text/event-stream").await;
    assert_eq!(stream.status(), StatusCode::OK);
    let mut stream = stream.into_body().into_data_stream();

    // The ROC restricts the plan to itself.
    let only_roc = vec![party("roc-midden-holland")];
    b.node
        .lock()
        .await
        .set_acl(&doc, Some(only_roc.clone()), Some(only_roc))
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let may = a
            .node
            .lock()
            .await
            .region_state()
            .unwrap()
            .may_read(&doc, &party("gemeente-gouda"));
        if !may {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restriction did not reach Gouda"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every page of it is now 404, as for a plan that does not exist, and the
    // list no longer names it.
    for p in &pages {
        let resp = get(p.clone(), "text/html").await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{p}");
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains("Vertrouwelijke"),
            "{p}"
        );
    }
    let list = get("/plannen".into(), "text/html").await;
    let list = axum::body::to_bytes(list.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&list).contains("Ondersteuningsplan ROC"));
    assert_eq!(
        get(format!("/plannen/{doc}/events"), "text/event-stream")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // The open stream says `end` (at its next check) and closes, without the text.
    let mut seen = String::new();
    let ended = tokio::time::timeout(DEADLINE, async {
        use futures::StreamExt;
        while let Some(Ok(chunk)) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: end") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ended.ok(), Some(true), "the stream did not end: {seen}");
    assert!(!seen.contains("Vertrouwelijke"));

    cancel.cancel();
    for t in a.tasks.into_iter().chain(b.tasks) {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
}
