//! For the browser tests: Debian's headless chromium driven through chromedriver
//! (WebDriver, with fantoccini), a web app served over TLS on loopback, signing in.
//!
//! Never skipped: without chromium and chromedriver `browser_binaries` fails the
//! test and says how to install them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use regiosync_web::tls;
use tokio_util::sync::CancellationToken;

use super::PASSWORD;

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

/// Chromium and chromedriver; panics with the install hint when either is missing.
pub fn browser_binaries() -> (PathBuf, PathBuf) {
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves the fixture's app over TLS on a loopback port, as `up` does.
pub async fn start_server(
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

/// Starts `chromedriver` on a free loopback port and waits until it listens: the
/// process (killed on drop) and its port.
pub async fn start_chromedriver(chromedriver: &Path) -> (tokio::process::Child, u16) {
    let port = free_port();
    let driver = tokio::process::Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (driver, port)
}

/// A WebDriver session with headless `chromium` through the chromedriver on `port`,
/// with its profile in `profile` and a window 1200 pixels wide and `height` high.
pub async fn browser(chromium: &Path, port: u16, profile: &Path, height: u32) -> Client {
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
                "--disable-dev-shm-usage", format!("--window-size=1200,{height}"),
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless chromium")
}

/// The folder `REGIOSYNC_SCREENSHOTS` names, if set.
pub fn screenshots() -> Option<PathBuf> {
    std::env::var_os("REGIOSYNC_SCREENSHOTS").map(PathBuf::from)
}

/// Signs `name` in with the test password (any earlier session's cookies deleted
/// first) and waits for the Overzicht.
pub async fn sign_in(
    c: &Client,
    base: &str,
    name: &str,
) -> Result<(), fantoccini::error::CmdError> {
    c.delete_all_cookies().await?;
    c.goto(&format!("{base}/inloggen")).await?;
    c.find(Locator::Id("naam")).await?.send_keys(name).await?;
    c.find(Locator::Id("wachtwoord"))
        .await?
        .send_keys(PASSWORD)
        .await?;
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await?
        .click()
        .await?;
    // The Overzicht's own element: the sign-in page has a `main h1` too, so waiting
    // for that raced the navigation under load.
    c.wait().for_element(Locator::Id("partijen")).await?;
    assert!(
        c.current_url().await?.path().ends_with("/overzicht"),
        "{name} signed in"
    );
    Ok(())
}

/// Waits (up to 10 s) until the browser's address path satisfies `arrived`: after a
/// click that navigates, an element the next page shares with the page before (a
/// heading, a field name) would be found before the navigation ends.
pub async fn wait_for_path(
    c: &Client,
    arrived: impl Fn(&str) -> bool,
) -> Result<(), fantoccini::error::CmdError> {
    for _ in 0..200 {
        if arrived(c.current_url().await?.path()) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}
