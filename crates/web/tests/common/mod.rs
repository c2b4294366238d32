//! A node with a region, a plan and staff accounts, and its web app, for the tests;
//! requests through the router and sign-in helpers; `browser` for the tests that
//! drive headless chromium.

#![allow(dead_code, unreachable_pub)]

pub mod browser;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};

use regiosync_core::id::{DocId, PartyName, Role};
use regiosync_core::identity::SecretString;
use regiosync_core::plan::PlanKind;
use regiosync_node::Node;
use regiosync_node::staff::StaffRole;
use regiosync_web::{AppState, WebConfig, router};
use tokio::sync::Mutex;
use tower::ServiceExt;

pub const PASSWORD: &str = "correct paard batterij niet";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub node: Arc<Mutex<Node>>,
    pub app: axum::Router,
    pub plan: DocId,
}

pub fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// A kerngemeente node in "Regio Midden-Holland" with one plan whose text holds a
/// script tag, and accounts: b.beheer (beheerder), l.lezer (lezer), p.beleid
/// (beleid), n.nieuw (lezer, must change its password).
pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Node::init(
        dir.path(),
        PartyName::new("gemeente-gouda").unwrap(),
        Role::Kerngemeente,
        None,
    )
    .unwrap();
    let mut node = Node::open(dir.path()).unwrap();
    node.create_region("Regio Midden-Holland").unwrap();
    // The other parties join by files (their nodes are not run).
    for (p, role) in [
        ("roc-midden-holland", Role::Roc),
        ("gemeente-waddinxveen", Role::Gemeente),
        ("swv-midden-holland", Role::Swv),
    ] {
        let other = dir.path().join(p);
        Node::init(&other, PartyName::new(p).unwrap(), role, None).unwrap();
        let mut n = Node::open(&other).unwrap();
        let code = node
            .invite(PartyName::new(p).unwrap(), role, false, 3600)
            .unwrap();
        let request = n.join_request(&code.encode()).unwrap();
        let (_, bundle) = node.accept(&request).unwrap();
        n.import(&bundle).unwrap();
    }
    let plan = node
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan Midden-Holland 2027")
        .unwrap();
    node.set_section(
        &plan,
        "Inleiding",
        "Samen met het onderwijs. <script>alert(1)</script>",
    )
    .unwrap();
    node.set_section(
        &plan,
        "Visie en ambities",
        "De partners spreken af:\n\n- een **warme overdracht** van vo naar mbo;\n- één contactpersoon per school;\n- _jaarlijkse_ evaluatie in het OOGO.",
    )
    .unwrap();
    node.create_plan(PlanKind::VsvProgramma, "Regionaal programma vsv 2025-2028")
        .unwrap();
    for (name, role, must_change) in [
        ("b.beheer", StaffRole::Beheerder, false),
        ("l.lezer", StaffRole::Lezer, false),
        ("p.beleid", StaffRole::Beleid, false),
        ("n.nieuw", StaffRole::Lezer, true),
    ] {
        node.add_staff(name, role, &pass(PASSWORD), must_change)
            .unwrap();
    }
    let node = Arc::new(Mutex::new(node));
    let app = router(AppState::new(node.clone(), WebConfig::default()));
    Fixture {
        dir,
        node,
        app,
        plan,
    }
}

pub async fn send(app: &axum::Router, req: Request<Body>) -> Response<Body> {
    app.clone().oneshot(req).await.unwrap()
}

pub async fn text(resp: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The body as text with askama's numeric escapes written as named ones: askama
/// escapes `<` as `&#60;`; tests that look for `&lt;` use this (both are escaped).
pub async fn text_named_escapes(resp: Response<Body>) -> String {
    text(resp)
        .await
        .replace("&#60;", "&lt;")
        .replace("&#62;", "&gt;")
        .replace("&#34;", "&quot;")
        .replace("&#38;", "&amp;")
        .replace("&#39;", "'")
}

pub fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path).header(header::HOST, "127.0.0.1:8443");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

pub fn post(path: &str, cookie: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(path)
        .header(header::HOST, "127.0.0.1:8443")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(body.into()).unwrap()
}

/// A GET with the session cookie `cookie`.
pub fn get_as(path: &str, cookie: &str) -> Request<Body> {
    get(path, Some(cookie))
}

/// A form POST with the session cookie `cookie`.
pub fn post_as(path: &str, cookie: &str, body: String) -> Request<Body> {
    post(path, Some(cookie), body)
}

pub fn location(resp: &Response<Body>) -> &str {
    resp.headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// The `name=value` of the first Set-Cookie of `name`, and its whole header.
pub fn set_cookie(resp: &Response<Body>, name: &str) -> Option<(String, String)> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v))
}

/// The value of the hidden `csrf` field in a page.
pub fn csrf_in(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + 64].to_owned()
}

/// The value of the first hidden field `name` in a page.
pub fn field(page: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&pat)
        .unwrap_or_else(|| panic!("no {name} in page"))
        + pat.len();
    page[at..].split('"').next().unwrap().to_owned()
}

/// Percent-encodes all but `A-Za-z0-9.-_` (for form bodies).
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Opens the sign-in page: the pre-session cookie and the form's token.
pub async fn login_page(app: &axum::Router) -> (String, String) {
    let resp = send(app, get("/inloggen", None)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (cookie, _) = set_cookie(&resp, "__Host-regiosync-login").unwrap();
    let page = text(resp).await;
    (cookie, csrf_in(&page))
}

pub async fn try_login(app: &axum::Router, name: &str, password: &str) -> Response<Body> {
    let (cookie, csrf) = login_page(app).await;
    let body = format!(
        "csrf={csrf}&naam={}&wachtwoord={}",
        enc(name),
        enc(password)
    );
    send(app, post("/inloggen", Some(&cookie), body)).await
}

/// Signs in and returns the session cookie (`name=value`).
pub async fn login(app: &axum::Router, name: &str) -> String {
    let resp = try_login(app, name, PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "sign-in of {name}");
    set_cookie(&resp, "__Host-regiosync").unwrap().0
}

/// The CSRF token of a signed-in page.
pub async fn session_csrf(app: &axum::Router, cookie: &str) -> String {
    let resp = send(app, get("/wachtwoord", Some(cookie))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    csrf_in(&text(resp).await)
}
