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

use std::time::Duration;

use common::browser::{browser, browser_binaries, screenshots, start_chromedriver, start_server};
use common::{PASSWORD, fixture};
use fantoccini::Locator;
use regiosync_web::tls;
use tokio_util::sync::CancellationToken;

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

    let (mut driver, port) = start_chromedriver(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&chromium, port, profile.path(), 1000).await;
    let shots = screenshots();
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
        // Wait for the sign-in page's own notice: the overview may carry a
        // `p.notice` of its own (the node does not sync), which is no proof
        // that the sign-out has landed.
        let notice = client
            .wait()
            .for_element(Locator::Css("p.notice[role=status]"))
            .await?
            .text()
            .await?;
        assert_eq!(notice, "U bent uitgelogd.");
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
