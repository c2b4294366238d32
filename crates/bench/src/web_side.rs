//! The `web` workloads (issue 17): two parties' nodes, each run as `regiosync up`
//! runs it (the sync service over libp2p on loopback and the web app over TLS,
//! sharing one node handle), and an HTTPS client that signs in and uses the web app
//! as a browser does: forms with the session's `csrf` token and the editor's
//! `versie`, the session cookie `__Host-regiosync`, `Origin` and `Sec-Fetch-Site`
//! headers, and the live stream `GET /plannen/{id}/events` read as server-sent
//! events.
//!
//! - `web-live-2`: party A's person saves a section through the editor's form; the
//!   time from sending the save until party B's open stream delivers the `change`
//!   event for it (A's web app, A's node, libp2p push, B's node, B's stream).
//! - `web-plan-500`: `GET /plannen/{id}` of a plan with 500 agreements.
//! - `web-dossiers-10k`: `GET /dossiers` (the first page) with 10,000 dossiers the
//!   signed-in party may read.
//!
//! The page times are measured by the client over a kept-alive TLS connection on
//! loopback: the server's time plus one loopback round trip and the TLS record work.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use regiosync_core::dossier::access::Basis;
use regiosync_core::id::{DocId, Role};
use regiosync_core::identity::SecretString;
use regiosync_core::plan::{AgreementInput, PlanKind};
use regiosync_net::Multiaddr;
use regiosync_node::Node;
use regiosync_node::dossiers::NewDossier;
use regiosync_node::service::{ServiceConfig, run_shared};
use regiosync_node::staff::StaffRole;
use regiosync_web::{AppState, WebConfig, router, tls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::regiosync_side::{party, reader};

/// How long one wait (a sync, an event, a response) may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(120);
/// The staff accounts' password (bench data only).
const PASSWORD: &str = "benchmark wachtwoord niet geheim";
/// The section the edits go to.
const SECTION: &str = "Inleiding";

/// Sizes of the web workloads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WebSizes {
    /// Section saves timed until B's live event.
    pub(crate) edits: usize,
    /// Agreements of the plan whose page is timed.
    pub(crate) agreements: usize,
    /// Dossiers readable by the signed-in party when the list is timed.
    pub(crate) dossiers: usize,
    /// Requests per page time.
    pub(crate) requests: usize,
}

impl WebSizes {
    /// The sizes of issue 17: 200 edits, 500 agreements, 10,000 dossiers; 100
    /// requests per page.
    pub(crate) fn issue_17() -> Self {
        Self {
            edits: 200,
            agreements: 500,
            dossiers: 10_000,
            requests: 100,
        }
    }
}

/// What the web workloads measured.
pub(crate) struct WebResults {
    /// Save-to-event latencies (ms), one per edit.
    pub(crate) live: Vec<f64>,
    /// Plan page request times (ms).
    pub(crate) plan_page: Vec<f64>,
    /// The plan page's size (KiB).
    pub(crate) plan_page_kb: f64,
    /// `Node::plan` of that plan alone, in process (ms).
    pub(crate) plan_read: Vec<f64>,
    /// Dossier list request times (ms).
    pub(crate) dossier_list: Vec<f64>,
    /// Seconds spent making the dossiers.
    pub(crate) dossier_setup_s: f64,
}

// ---------------------------------------------------------------------------------
// TLS: the client trusts exactly the node's certificate.

/// Accepts the one certificate whose SHA-256 fingerprint the node's TLS setup
/// reported (the fingerprint `regiosync up` prints), and nothing else; the
/// handshake signatures are still checked with the provider's algorithms.
///
/// Why not the usual verification: the node's certificate is self-signed and made
/// for `127.0.0.1`, so no root store knows it. Pinning it is what a person does
/// who compares the fingerprint `up` printed, and it is only for loopback, for a
/// node this process started itself.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if tls::fingerprint(end_entity.as_ref()) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "not the certificate of the node this benchmark started".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client_tls(fingerprint: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint: fingerprint.to_owned(),
            provider,
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

// ---------------------------------------------------------------------------------
// The client: one person's browser, over HTTP/1.1 with keep-alive.

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of the first hidden field `name` in a page.
fn field(page: &str, name: &str) -> anyhow::Result<String> {
    let key = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&key)
        .ok_or_else(|| anyhow!("the page has no field {name}"))?
        + key.len();
    let len = page[start..]
        .find('"')
        .ok_or_else(|| anyhow!("field {name} does not end"))?;
    Ok(page[start..start + len].to_owned())
}

struct Client {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    cookies: BTreeMap<String, String>,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    fn new(addr: SocketAddr, fingerprint: &str) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            tls: client_tls(fingerprint)?,
            cookies: BTreeMap::new(),
            conn: None,
        })
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .context("TLS handshake with the node's web app")?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    /// A request as the browser sends it from a page of this origin, with the
    /// cookies it holds; on a new connection when `fresh` (the live stream).
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
        fresh: bool,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.host())
            .header("sec-fetch-site", "same-origin");
        if !self.cookies.is_empty() {
            let c = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            b = b.header(header::COOKIE, c);
        }
        let body = match body {
            Some(f) => {
                b = b
                    .header(header::ORIGIN, format!("https://{}", self.host()))
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let req = b.body(body)?;
        let mut send = match (fresh, self.conn.take()) {
            (false, Some(s)) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        send.ready().await?;
        let resp = tokio::time::timeout(PATIENCE, send.send_request(req))
            .await
            .context("no response from the web app")??;
        if !fresh {
            self.conn = Some(send);
        }
        for v in resp.headers().get_all(header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let pair = v.split(';').next().unwrap_or_default();
            if let Some((k, val)) = pair.split_once('=') {
                let expired = v.to_ascii_lowercase().contains("max-age=0");
                if val.is_empty() || expired {
                    self.cookies.remove(k.trim());
                } else {
                    self.cookies
                        .insert(k.trim().to_owned(), val.trim().to_owned());
                }
            }
        }
        Ok(resp)
    }

    /// A whole response: status and body text.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<(StatusCode, String)> {
        let resp = self.send(method, path, body, false).await?;
        let status = resp.status();
        let bytes = tokio::time::timeout(PATIENCE, resp.into_body().collect())
            .await
            .context("the response body did not end")??
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<String> {
        let (status, page) = self.call(Method::GET, path, None).await?;
        if status != StatusCode::OK {
            bail!("GET {path}: {status}");
        }
        Ok(page)
    }

    /// Signs in through the form, as a person does.
    async fn sign_in(&mut self, name: &str) -> anyhow::Result<()> {
        let page = self.get("/inloggen").await?;
        let csrf = field(&page, "csrf")?;
        let body = form(&[("csrf", &csrf), ("naam", name), ("wachtwoord", PASSWORD)]);
        let (status, _) = self.call(Method::POST, "/inloggen", Some(body)).await?;
        if status != StatusCode::SEE_OTHER || !self.cookies.contains_key("__Host-regiosync") {
            bail!("signing in as {name} failed: {status}");
        }
        Ok(())
    }

    /// Opens the live stream of a plan; its events arrive on the returned channel
    /// as (arrival time, event name, data), read by a task of their own.
    async fn events(
        &mut self,
        plan: &DocId,
    ) -> anyhow::Result<mpsc::UnboundedReceiver<(Instant, String, String)>> {
        let resp = self
            .send(Method::GET, &format!("/plannen/{plan}/events"), None, true)
            .await?;
        if resp.status() != StatusCode::OK {
            bail!("the live stream answered {}", resp.status());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut body = resp.into_body();
        tokio::spawn(async move {
            let mut buf = String::new();
            while let Some(Ok(frame)) = body.frame().await {
                let at = Instant::now();
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.push_str(&String::from_utf8_lossy(&data));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    let (mut name, mut data) = (String::new(), String::new());
                    for line in frame.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim());
                        }
                    }
                    if (!name.is_empty() || !data.is_empty()) && tx.send((at, name, data)).is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

// ---------------------------------------------------------------------------------
// The nodes.

/// A node as `regiosync up` runs it.
struct Up {
    node: Arc<Mutex<Node>>,
    web: SocketAddr,
    fingerprint: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn up(
    dir: &Path,
    listen: &Multiaddr,
    peer: &Multiaddr,
    cancel: &CancellationToken,
) -> anyhow::Result<Up> {
    let lock = regiosync_node::run_lock::RunLock::acquire(dir)?;
    let node = Arc::new(Mutex::new(Node::open(dir)?));
    let config = ServiceConfig {
        listen: vec![listen.clone()],
        peers: vec![peer.clone()],
        mdns: false,
        ..ServiceConfig::default()
    };
    let service = {
        let (node, cancel) = (node.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(e) = run_shared(node, config, cancel.clone(), lock).await {
                tracing::error!("node failed: {e}");
                cancel.cancel();
            }
        })
    };
    tls::install_crypto_provider();
    let setup = tls::setup(&tls::CertSource::Generated {
        dir: dir.to_owned(),
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let web = listener.local_addr()?;
    let app = router(AppState::new(node.clone(), WebConfig::default()));
    let server = tokio::spawn(regiosync_web::server::serve(
        listener,
        setup.config,
        app,
        cancel.clone(),
    ));
    Ok(Up {
        node,
        web,
        fingerprint: setup.fingerprint,
        tasks: vec![service, server],
    })
}

/// Gemeente Gouda founds the region, the ROC joins by files; Gouda writes a plan
/// and has a `beleid` and a `dossier` account, the ROC a `lezer`.
fn region(root: &Path) -> anyhow::Result<(PathBuf, PathBuf, DocId)> {
    let (a, b) = (root.join("gouda"), root.join("roc"));
    let pw = SecretString::from(PASSWORD.to_owned());
    Node::init(&a, party("gemeente-gouda")?, Role::Kerngemeente, None)?;
    Node::init(&b, party("roc-midden-holland")?, Role::Roc, None)?;
    let mut gouda = Node::open(&a)?;
    gouda.create_region("Regio Midden-Holland")?;
    let mut roc = Node::open(&b)?;
    let code = gouda.invite(party("roc-midden-holland")?, Role::Roc, false, 3600)?;
    let (_, bundle) = gouda.accept(&roc.join_request(&code.encode())?)?;
    roc.import(&bundle)?;
    gouda.set_party_name(&party("gemeente-gouda")?, "Gemeente Gouda")?;
    let doc = gouda.create_plan(PlanKind::Jeugdplan, "Jeugdplan Midden-Holland 2027")?;
    gouda.set_section(&doc, SECTION, "Samen met het onderwijs.")?;
    gouda.set_section(&doc, "Visie", "Eén contactpersoon per school.")?;
    gouda.add_staff("p.beleid", StaffRole::Beleid, &pw, false)?;
    gouda.add_staff("d.dossier", StaffRole::Dossier, &pw, false)?;
    roc.import(&gouda.export()?)?;
    roc.add_staff("l.lezer", StaffRole::Lezer, &pw, false)?;
    Ok((a, b, doc))
}

/// Runs the web workloads in `root`; `progress` is called after each step.
pub(crate) async fn run(
    root: &Path,
    sizes: WebSizes,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<WebResults> {
    let (dir_a, dir_b, doc) = region(root)?;
    let (addr_a, addr_b) = (
        regiosync_net::free_loopback_tcp()?,
        regiosync_net::free_loopback_tcp()?,
    );
    let cancel = CancellationToken::new();
    let a = up(&dir_a, &addr_a, &addr_b, &cancel).await?;
    let b = match up(&dir_b, &addr_b, &addr_a, &cancel).await {
        Ok(b) => b,
        Err(e) => {
            cancel.cancel();
            return Err(e);
        }
    };
    let result = measure(&a, &b, &doc, sizes, &mut progress).await;
    cancel.cancel();
    for t in a.tasks.into_iter().chain(b.tasks) {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    result
}

async fn measure(
    a: &Up,
    b: &Up,
    doc: &DocId,
    sizes: WebSizes,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<WebResults> {
    // B receives the plan by sync.
    let deadline = Instant::now() + PATIENCE;
    while b.node.lock().await.plan(doc).is_err() {
        if Instant::now() > deadline {
            bail!("the plan never reached B");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sid = a
        .node
        .lock()
        .await
        .plan(doc)?
        .sections
        .iter()
        .find(|s| s.title == SECTION)
        .map(|s| s.id.clone())
        .ok_or_else(|| anyhow!("the plan has no section {SECTION}"))?;

    let mut alice = Client::new(a.web, &a.fingerprint)?;
    alice.sign_in("p.beleid").await?;
    let mut bob = Client::new(b.web, &b.fingerprint)?;
    bob.sign_in("l.lezer").await?;
    let _ = bob.get(&format!("/plannen/{doc}")).await?;
    let mut events = bob.events(doc).await?;

    let mut live = Vec::with_capacity(sizes.edits);
    let editor = format!("/plannen/{doc}/secties/{sid}/bewerken");
    let save = format!("/plannen/{doc}/secties/{sid}");
    for k in 0..sizes.edits {
        // The person opens the editor (the version it starts from), then saves.
        let page = alice.get(&editor).await?;
        let (csrf, versie) = (field(&page, "csrf")?, field(&page, "versie")?);
        let text = format!("Samen met het onderwijs. Bewerking {k} in de browser van Gouda.");
        while events.try_recv().is_ok() {}
        let t = Instant::now();
        let (status, _) = alice
            .call(
                Method::POST,
                &save,
                Some(form(&[
                    ("csrf", &csrf),
                    ("versie", &versie),
                    ("tekst", &text),
                ])),
            )
            .await?;
        if status != StatusCode::SEE_OTHER {
            bail!("save {k}: {status}");
        }
        let arrived = loop {
            match tokio::time::timeout(PATIENCE, events.recv()).await {
                Ok(Some((at, name, data))) if name == "change" => {
                    if !data.contains(SECTION) {
                        bail!("edit {k}: a change event that does not name the section: {data}");
                    }
                    break at;
                }
                Ok(Some((_, name, data))) if name == "end" => {
                    bail!("B's live stream ended at edit {k}: {data}")
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("B's live stream closed at edit {k}"),
                Err(_) => bail!("edit {k} never reached B's live stream"),
            }
        };
        live.push(arrived.duration_since(t).as_secs_f64() * 1000.0);
        progress("edit");
    }

    // A plan with many agreements, on A (pushed to B as it is written).
    let owner = party("gemeente-gouda")?;
    let big = {
        let mut node = a.node.lock().await;
        let big = node.create_plan(PlanKind::Jeugdplan, "Plan met veel afspraken")?;
        node.set_section(&big, SECTION, "Een plan met veel afspraken.")?;
        big
    };
    let today = time::OffsetDateTime::now_utc().date();
    for i in 0..sizes.agreements {
        a.node.lock().await.add_agreement(
            &big,
            &AgreementInput {
                title: format!("Afspraak {i}: warme overdracht vo-mbo, school {i}"),
                owner: owner.clone(),
                deadline: today.checked_add(time::Duration::days((i % 365) as i64)),
            },
        )?;
    }
    progress("plan");
    let path = format!("/plannen/{big}");
    let page = alice.get(&path).await?;
    let last = format!("Afspraak {}:", sizes.agreements.saturating_sub(1));
    if sizes.agreements > 0 && !page.contains(&last) {
        bail!("the plan page does not show every agreement");
    }
    let plan_page_kb = page.len() as f64 / 1024.0;
    let mut plan_page = Vec::with_capacity(sizes.requests);
    for _ in 0..sizes.requests {
        let t = Instant::now();
        let _ = alice.get(&path).await?;
        plan_page.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // Where the page's time goes: the node's read of the plan alone (the document
    // is resident; this is reading 500 agreements out of it), same process.
    let mut plan_read = Vec::with_capacity(sizes.requests);
    for _ in 0..sizes.requests {
        let node = a.node.lock().await;
        let t = Instant::now();
        let _ = node.plan(&big)?;
        plan_read.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    progress("plan page");

    // Dossiers this party may read: its own (the kerngemeente is the woongemeente
    // of its residents), made through the node API in batches, so that the sync
    // service and the web app get the node handle in between.
    let started = Instant::now();
    let by = reader();
    let mut made = 0;
    while made < sizes.dossiers {
        let mut node = a.node.lock().await;
        for _ in 0..100.min(sizes.dossiers - made) {
            node.create_dossier(
                &NewDossier {
                    woongemeente: owner.clone(),
                    basis: Basis::Toestemming,
                    purpose: "benchmark".into(),
                    fields: Vec::new(),
                },
                &by,
            )?;
            made += 1;
        }
        drop(node);
        progress("dossiers");
    }
    let dossier_setup_s = started.elapsed().as_secs_f64();
    let mut dora = Client::new(a.web, &a.fingerprint)?;
    dora.sign_in("d.dossier").await?;
    let page = dora.get("/dossiers").await?;
    if sizes.dossiers > 0 && !page.contains("/dossiers/") {
        bail!("the dossier list shows no dossier");
    }
    let mut dossier_list = Vec::with_capacity(sizes.requests);
    for _ in 0..sizes.requests {
        let t = Instant::now();
        let _ = dora.get("/dossiers").await?;
        dossier_list.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    progress("dossier list");
    Ok(WebResults {
        live,
        plan_page,
        plan_page_kb,
        plan_read,
        dossier_list,
        dossier_setup_s,
    })
}
