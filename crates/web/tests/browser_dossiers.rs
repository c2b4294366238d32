//! Dossiers in real browsers across three running nodes that sync over libp2p on
//! loopback, each serving its own web app over TLS as `regiosync up` does: the ROC
//! opens a dossier for a student living in Gouda; a `dossier` user of Gouda finds it
//! and reads it for a stated purpose, and Gouda's audit log names that user; a
//! `dossier` user of Waddinxveen cannot find it; a `lezer` of Gouda cannot open any
//! dossier. Headless Debian chromium through chromedriver (fantoccini).
//!
//! Never skipped: without chromium and chromedriver the test fails and says how to
//! install them. `REGIOSYNC_SCREENSHOTS=DIR` saves `web-dossier.png` and friends.

#![allow(clippy::print_stderr)] // prints the page when the test fails

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::browser::{browser, browser_binaries, screenshots, sign_in, start_chromedriver};
use common::{PASSWORD, pass};
use fantoccini::{Client, Locator};
use regiosync_core::audit::Who;
use regiosync_core::id::{PartyName, Role};
use regiosync_node::Node;
use regiosync_node::StoreRead;
use regiosync_node::service::{ServiceConfig, run_shared};
use regiosync_node::staff::StaffRole;
use regiosync_web::{AppState, WebConfig, router, tls};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// A running node with its web app.
struct Party {
    node: Arc<Mutex<Node>>,
    base: String,
}

/// Starts the node in `dir` (sync on `listen`, dialling `peers`) and its web app on a
/// loopback port.
async fn start(
    dir: &Path,
    listen: &regiosync_net::Multiaddr,
    peers: &[regiosync_net::Multiaddr],
    cancel: &CancellationToken,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Party {
    let node = Arc::new(Mutex::new(Node::open(dir).unwrap()));
    let lock = regiosync_node::run_lock::RunLock::acquire(dir).unwrap();
    let config = ServiceConfig {
        listen: vec![listen.clone()],
        peers: peers.to_vec(),
        mdns: false,
        sync_interval: Duration::from_secs(2),
        poll_interval: Duration::from_millis(50),
        ..ServiceConfig::default()
    };
    let n = node.clone();
    let c = cancel.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = run_shared(n, config, c, lock).await {
            panic!("node failed: {e}");
        }
    }));
    let setup = tls::setup(&tls::CertSource::Generated {
        dir: dir.to_owned(),
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = router(AppState::new(node.clone(), WebConfig::default()));
    tasks.push(tokio::spawn(regiosync_web::server::serve(
        listener,
        setup.config,
        app,
        cancel.clone(),
    )));
    Party {
        node,
        base: format!("https://127.0.0.1:{port}"),
    }
}

async fn h1(c: &Client) -> Result<String, fantoccini::error::CmdError> {
    c.find(Locator::Css("main h1")).await?.text().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_woongemeente_reads_the_rocs_dossier_with_a_purpose_and_others_cannot() {
    let (chromium, chromedriver) = browser_binaries();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    tls::install_crypto_provider();
    // Three parties; everybody holds the founder's whole log.
    let root = tempfile::tempdir().unwrap();
    let parties = [
        ("gemeente-gouda", Role::Kerngemeente),
        ("roc-midden-holland", Role::Roc),
        ("gemeente-waddinxveen", Role::Gemeente),
    ];
    let dirs: Vec<PathBuf> = parties.iter().map(|(p, _)| root.path().join(p)).collect();
    for ((p, role), dir) in parties.iter().zip(&dirs) {
        Node::init(dir, PartyName::new(p).unwrap(), *role, None).unwrap();
    }
    {
        let mut founder = Node::open(&dirs[0]).unwrap();
        founder.create_region("Regio Midden-Holland").unwrap();
        for ((p, role), dir) in parties.iter().zip(&dirs).skip(1) {
            let mut n = Node::open(dir).unwrap();
            let code = founder
                .invite(PartyName::new(p).unwrap(), *role, false, 3600)
                .unwrap();
            let (_, bundle) = founder
                .accept(&n.join_request(&code.encode()).unwrap())
                .unwrap();
            n.import(&bundle).unwrap();
        }
        founder
            .set_party_name(&PartyName::new("gemeente-gouda").unwrap(), "Gemeente Gouda")
            .unwrap();
        let log = founder.export().unwrap();
        for dir in &dirs[1..] {
            Node::open(dir).unwrap().import(&log).unwrap();
        }
        founder
            .add_staff("a.jansen", StaffRole::Dossier, &pass(PASSWORD), false)
            .unwrap();
        founder
            .add_staff("l.lezer", StaffRole::Lezer, &pass(PASSWORD), false)
            .unwrap();
        Node::open(&dirs[1])
            .unwrap()
            .add_staff("z.coord", StaffRole::Dossier, &pass(PASSWORD), false)
            .unwrap();
        Node::open(&dirs[2])
            .unwrap()
            .add_staff("w.consulent", StaffRole::Dossier, &pass(PASSWORD), false)
            .unwrap();
    }
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    let gouda_addr = regiosync_net::free_loopback_tcp().unwrap();
    let gouda = start(&dirs[0], &gouda_addr, &[], &cancel, &mut tasks).await;
    let roc = start(
        &dirs[1],
        &regiosync_net::free_loopback_tcp().unwrap(),
        std::slice::from_ref(&gouda_addr),
        &cancel,
        &mut tasks,
    )
    .await;
    let wadd = start(
        &dirs[2],
        &regiosync_net::free_loopback_tcp().unwrap(),
        std::slice::from_ref(&gouda_addr),
        &cancel,
        &mut tasks,
    )
    .await;

    let (mut driver, port) = start_chromedriver(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&chromium, port, profile.path(), 1400).await;
    let shots = screenshots();
    let shot = |name: &'static str, png: Vec<u8>| {
        if let Some(d) = &shots {
            std::fs::write(d.join(name), png).unwrap();
        }
    };

    let result: Result<(), fantoccini::error::CmdError> = async {
        // The ROC's zorgcoördinator opens a dossier for a student living in Gouda.
        sign_in(&c, &roc.base, "z.coord").await?;
        c.find(Locator::LinkText("Dossiers")).await?.click().await?;
        c.find(Locator::LinkText("Nieuw dossier"))
            .await?
            .click()
            .await?;
        c.find(Locator::Css("#woongemeente option[value=gemeente-gouda]"))
            .await?
            .click()
            .await?;
        c.find(Locator::Id("doel"))
            .await?
            .send_keys("Jeugdwet: ondersteuning bij de opleiding")
            .await?;
        c.find(Locator::Id("naam"))
            .await?
            .send_keys("Sanne de Vries")
            .await?;
        c.find(Locator::Id("opleiding"))
            .await?
            .send_keys("Verzorgende IG, niveau 3")
            .await?;
        c.find(Locator::Id("locatie"))
            .await?
            .send_keys("Gouda, Burgemeester Jamessingel")
            .await?;
        c.find(Locator::Id("zorg"))
            .await?
            .send_keys("Wijkteam Gouda-Oost")
            .await?;
        c.find(Locator::Id("ondersteuningsbehoefte"))
            .await?
            .send_keys("Rustige werkplek bij toetsen; extra tijd. <script>alert(1)</script>")
            .await?;
        c.find(Locator::Css("form.stack button[type=submit]"))
            .await?
            .click()
            .await?;
        // The new-dossier form has a `doel` field too: wait for the dossier's address.
        common::browser::wait_for_path(&c, |p| p != "/dossiers/nieuw").await?;
        c.wait().for_element(Locator::Id("doel")).await?;
        let url = c.current_url().await?;
        let id = url.path().trim_start_matches("/dossiers/").to_owned();
        assert_eq!(id.len(), 32, "{url}");
        c.find(Locator::Id("doel"))
            .await?
            .send_keys("intake")
            .await?;
        c.find(Locator::Css("form.stack button[type=submit]"))
            .await?
            .click()
            .await?;
        c.wait().for_element(Locator::Id("contactlog")).await?;
        c.find(Locator::XPath("//summary[text()='Notitie toevoegen']"))
            .await?
            .click()
            .await?;
        c.find(Locator::Id("tekst"))
            .await?
            .send_keys("Intakegesprek met Sanne en haar moeder; afspraken over toetsen gemaakt.")
            .await?;
        c.find(Locator::Css(
            "section[aria-labelledby=contactlog] button[type=submit]",
        ))
        .await?
        .click()
        .await?;
        c.wait().for_element(Locator::Css("p.notice")).await?;

        // Gouda's dossier user finds it (once synced) and reads it with a purpose.
        sign_in(&c, &gouda.base, "a.jansen").await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            c.goto(&format!("{}/dossiers", gouda.base)).await?;
            // Listed, and the ROC's note arrived too (create and note are two
            // sealed changes, which may come in two sync rounds).
            let doc: regiosync_core::id::DocId = id.parse().unwrap();
            let held = gouda
                .node
                .lock()
                .await
                .store()
                .changes(&doc)
                .map_or(0, |c| c.len());
            if c.find(Locator::LinkText(&id)).await.is_ok() && held >= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "the dossier did not reach Gouda");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        shot("web-dossiers.png", c.screenshot().await?);
        c.find(Locator::LinkText(&id)).await?.click().await?;
        assert_eq!(h1(&c).await?, "Dossier openen");
        c.find(Locator::Id("doel"))
            .await?
            .send_keys("voorbereiding zorgoverleg")
            .await?;
        c.find(Locator::Css("form.stack button[type=submit]"))
            .await?
            .click()
            .await?;
        c.wait().for_element(Locator::Id("contactlog")).await?;
        assert_eq!(h1(&c).await?, "Sanne de Vries");
        let body = c.find(Locator::Css("main")).await?.text().await?;
        assert!(body.contains("Intakegesprek met Sanne"), "{body}");
        assert!(body.contains("<script>alert(1)</script>"), "shown as text");
        assert!(c.get_alert_text().await.is_err(), "no script ran");
        assert!(body.contains("voorbereiding zorgoverleg"));
        shot("web-dossier.png", c.screenshot().await?);
        // Gouda's audit log names the signed-in user, how, and why.
        {
            let n = gouda.node.lock().await;
            let log = n.store().audit_log().unwrap();
            let (_, e, _) = log.last().unwrap();
            assert_eq!(
                e.who,
                Who::Web {
                    account: "a.jansen".into()
                }
            );
            assert_eq!(e.action, "read");
            assert_eq!(e.purpose, "voorbereiding zorgoverleg");
            assert_eq!(e.dossier.to_string(), id);
        }
        c.find(Locator::LinkText("Toegangslog"))
            .await?
            .click()
            .await?;
        let history = c.find(Locator::Css("main table")).await?.text().await?;
        assert!(history.contains("web: a.jansen"), "{history}");

        // Waddinxveen's dossier user cannot find it.
        sign_in(&c, &wadd.base, "w.consulent").await?;
        c.goto(&format!("{}/dossiers", wadd.base)).await?;
        let page = c.find(Locator::Css("main")).await?.text().await?;
        assert!(!page.contains(&id), "{page}");
        c.goto(&format!("{}/dossiers/{id}", wadd.base)).await?;
        assert_eq!(h1(&c).await?, "Niet gevonden");

        // A lezer of Gouda cannot open any dossier.
        sign_in(&c, &gouda.base, "l.lezer").await?;
        assert!(
            c.find(Locator::LinkText("Dossiers")).await.is_err(),
            "no menu item"
        );
        c.goto(&format!("{}/dossiers/{id}", gouda.base)).await?;
        assert_eq!(h1(&c).await?, "Geen toegang");
        c.goto(&format!("{}/dossiers", gouda.base)).await?;
        assert_eq!(h1(&c).await?, "Geen toegang");
        Ok(())
    }
    .await;
    if result.is_err()
        && let Ok(page) = c.source().await
    {
        eprintln!("the page when the test failed:\n{page}");
    }
    let _ = c.close().await;
    let _ = driver.kill().await;
    cancel.cancel();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    result.unwrap();
}
