//! A real browser against a real server: Debian's headless chromium, driven through
//! chromedriver (WebDriver, with fantoccini), signs in over TLS on loopback, sees
//! the Overzicht with the region's parties, and opens a plan. Also a plain TLS
//! client checks the served certificate's fingerprint.
//!
//! Never skipped: without chromium and chromedriver the test fails and says how to
//! install them (`apt-get install -y chromium chromium-driver`; `.ci/run` does).
//! `REGIOSYNC_SCREENSHOTS=DIR` saves screenshots of the pages it visits.

#![allow(clippy::print_stderr)] // prints the page when the test fails

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{PASSWORD, fixture};
use fantoccini::{ClientBuilder, Locator};
use regiosync_web::tls;
use tokio_util::sync::CancellationToken;

/// The first of `names` found on the PATH or in /usr/bin, /usr/lib/chromium.
fn find(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/usr/lib/chromium"].map(PathBuf::from));
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn browser_binaries() -> (PathBuf, PathBuf) {
    let chromium = find(&["chromium", "chromium-browser"]);
    let driver = find(&["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => (c, d),
        (c, d) => panic!(
            "the browser tests need Debian's chromium and chromedriver (found chromium: {}, chromedriver: {}): install them with `apt-get install -y chromium chromium-driver` (.ci/run does this)",
            c.is_some(),
            d.is_some()
        ),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves the fixture's app over TLS on a loopback port, as `up` does.
async fn start_server(
    app: axum::Router,
    dir: &Path,
    cancel: CancellationToken,
) -> (SocketAddr, String, tokio::task::JoinHandle<()>) {
    tls::install_crypto_provider();
    let setup = tls::setup(&tls::CertSource::Generated {
        dir: dir.to_owned(),
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(regiosync_web::server::serve(
        listener,
        setup.config,
        app,
        cancel,
    ));
    (addr, setup.fingerprint, task)
}

/// The certificate a TLS client is shown, accepted without checks (we compare its
/// fingerprint instead, as a person would).
#[derive(Debug)]
struct AnyCert(std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_the_fingerprinted_certificate_and_the_app() {
    let f = fixture();
    let cancel = CancellationToken::new();
    let (addr, fingerprint, task) = start_server(f.app.clone(), f.dir.path(), cancel.clone()).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert(seen.clone())))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /inloggen HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("__Host-regiosync-login="));
    let der = seen.lock().unwrap().clone().unwrap();
    assert_eq!(tls::fingerprint(&der), fingerprint);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_sees_the_overview_and_opens_a_plan() {
    let (chromium, chromedriver) = browser_binaries();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    let f = fixture();
    let cancel = CancellationToken::new();
    let (addr, _, task) = start_server(f.app.clone(), f.dir.path(), cancel.clone()).await;

    let port = free_port();
    let mut driver = tokio::process::Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert("acceptInsecureCerts".into(), true.into());
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1200,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let client = ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless chromium");
    let shots = std::env::var_os("REGIOSYNC_SCREENSHOTS").map(PathBuf::from);
    let base = format!("https://127.0.0.1:{}", addr.port());

    let result: Result<(), fantoccini::error::CmdError> = async {
        // Not signed in: the app sends the browser to the sign-in page.
        client.goto(&format!("{base}/overzicht")).await?;
        assert!(client.current_url().await?.path().ends_with("/inloggen"));
        // A wrong password first.
        client
            .find(Locator::Id("naam"))
            .await?
            .send_keys("l.lezer")
            .await?;
        client
            .find(Locator::Id("wachtwoord"))
            .await?
            .send_keys("niet goed genoeg")
            .await?;
        client
            .find(Locator::Css("form.stack button[type=submit]"))
            .await?
            .click()
            .await?;
        let alert = client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("p.error[role=alert]"))
            .await?;
        assert!(alert.text().await?.contains("klopt niet"));
        if let Some(d) = &shots {
            std::fs::write(d.join("web-inloggen.png"), client.screenshot().await?).unwrap();
        }
        // Then the right one (the name field kept its value).
        client
            .find(Locator::Id("wachtwoord"))
            .await?
            .send_keys(PASSWORD)
            .await?;
        client
            .find(Locator::Css("form.stack button[type=submit]"))
            .await?
            .click()
            .await?;
        client.wait().for_element(Locator::Id("partijen")).await?;
        assert!(client.current_url().await?.path().ends_with("/overzicht"));
        let parties = client
            .find(Locator::Css("section[aria-labelledby=partijen] table"))
            .await?
            .text()
            .await?;
        for p in [
            "gemeente-gouda",
            "roc-midden-holland",
            "gemeente-waddinxveen",
            "swv-midden-holland",
        ] {
            assert!(parties.contains(p), "{p} in {parties}");
        }
        let heading = client.find(Locator::Css("main h1")).await?.text().await?;
        assert_eq!(heading, "Overzicht");
        if let Some(d) = &shots {
            std::fs::write(d.join("web-overzicht.png"), client.screenshot().await?).unwrap();
        }
        // Open the plan from the document list, by keyboard-reachable link.
        client
            .find(Locator::LinkText("Jeugdplan Midden-Holland 2027"))
            .await?
            .click()
            .await?;
        client
            .wait()
            .for_element(Locator::Css("article.plan h2"))
            .await?;
        let plan = client
            .find(Locator::Css("article.plan"))
            .await?
            .text()
            .await?;
        assert!(plan.contains("Inleiding"));
        assert!(
            plan.contains("<script>alert(1)</script>"),
            "shown as text: {plan}"
        );
        assert!(plan.contains("warme overdracht"));
        // The script in the text did not run: no alert is open.
        assert!(client.get_alert_text().await.is_err());
        if let Some(d) = &shots {
            std::fs::write(d.join("web-plan.png"), client.screenshot().await?).unwrap();
        }
        // A lezer asking for Beheer gets the refusal page.
        client.goto(&format!("{base}/beheer/accounts")).await?;
        let h1 = client.find(Locator::Css("main h1")).await?.text().await?;
        assert_eq!(h1, "Geen toegang");
        // Sign out.
        client.goto(&format!("{base}/overzicht")).await?;
        client
            .find(Locator::Css(".who button"))
            .await?
            .click()
            .await?;
        client.wait().for_element(Locator::Css("p.notice")).await?;
        assert!(client.current_url().await?.path().ends_with("/inloggen"));
        client.goto(&format!("{base}/plannen")).await?;
        assert!(client.current_url().await?.path().ends_with("/inloggen"));
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
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    result.unwrap();
}
