//! The live stream of a plan (`GET /plannen/{id}/events`) through the router: who
//! may open it, what it says when the plan changes, that it ends with the session,
//! its bounds, and that a stream that falls behind skips instead of queueing.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Fixture, fixture, send};
use futures::StreamExt;
use regiosync_core::id::PartyName;
use regiosync_core::plan::PlanKind;
use regiosync_node::Node;
use regiosync_node::staff::SessionLimits;
use regiosync_web::live::{MAX_STREAMS, MAX_STREAMS_PER_SESSION};

/// Only to keep a broken test from hanging; nothing is timed.
const DEADLINE: Duration = Duration::from_secs(60);

fn events(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path)
        .header(header::HOST, "127.0.0.1:8443")
        .header(header::ACCEPT, "text/event-stream");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

/// A session of `name` made through the node (no Argon2id per test session), as
/// its cookie.
async fn session(f: &Fixture, name: &str) -> (String, String) {
    let mut node = f.node.lock().await;
    let creds = node.staff_credentials(name).unwrap().unwrap();
    let s = node
        .start_staff_session(&creds, SessionLimits::default())
        .unwrap();
    (format!("__Host-regiosync={}", &*s.token), s.csrf)
}

/// The next server-sent event of a stream: (event name, data), skipping keep-alive
/// comments; `None` when the stream ended.
async fn next_event(
    body: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buf: &mut String,
) -> Option<(String, String)> {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if name.is_empty() && data.is_empty() {
                continue;
            }
            return Some((name, data));
        }
        let chunk = tokio::time::timeout(DEADLINE, body.next())
            .await
            .expect("the stream said something");
        match chunk {
            Some(Ok(b)) => buf.push_str(std::str::from_utf8(&b).unwrap()),
            _ => return None,
        }
    }
}

#[tokio::test]
async fn the_stream_is_for_signed_in_readers_of_the_plan_only() {
    let f = fixture();
    let path = format!("/plannen/{}/events", f.plan);
    // No session: 401 for an event stream (it cannot follow a redirect), a browser
    // asking for a page is sent to Inloggen.
    let resp = send(&f.app, events(&path, None)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = send(
        &f.app,
        Request::get(&path)
            .header(header::HOST, "127.0.0.1:8443")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    // A forged session: 401.
    let forged = format!("__Host-regiosync={}", "ab".repeat(32));
    let resp = send(&f.app, events(&path, Some(&forged))).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let (cookie, _) = session(&f, "l.lezer").await;
    // Unknown and malformed ids: 404.
    let unknown = format!("/plannen/{}/events", "0".repeat(32));
    for p in [unknown.as_str(), "/plannen/zzz/events"] {
        let resp = send(&f.app, events(p, Some(&cookie))).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{p}");
    }
    // A plan of another party that this party may not read: the region log names
    // it here (the ROC's ops were imported), but it is 404 as if it did not exist.
    let roc_dir = f.dir.path().join("roc-midden-holland");
    let (secret, bundle) = {
        let mut roc = Node::open(&roc_dir).unwrap();
        roc.import(&f.node.lock().await.export().unwrap()).unwrap();
        let doc = roc
            .create_plan(PlanKind::Jeugdplan, "Intern ROC-plan")
            .unwrap();
        let only_roc = vec![PartyName::new("roc-midden-holland").unwrap()];
        roc.set_acl(&doc, Some(only_roc.clone()), Some(only_roc))
            .unwrap();
        (doc, roc.export().unwrap())
    };
    f.node.lock().await.import(&bundle).unwrap();
    assert!(
        f.node
            .lock()
            .await
            .region_state()
            .unwrap()
            .docs
            .contains_key(&secret)
    );
    let resp = send(
        &f.app,
        events(&format!("/plannen/{secret}/events"), Some(&cookie)),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The plan's own readers: a stream.
    let resp = send(&f.app, events(&path, Some(&cookie))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/event-stream"
    );
    // A script may come only from this origin, as a file.
    let csp = resp
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
}

#[tokio::test]
async fn a_change_is_announced_with_who_and_which_section_and_the_stream_ends_with_the_session() {
    let f = fixture();
    let path = format!("/plannen/{}/events", f.plan);
    let (cookie, csrf) = session(&f, "p.beleid").await;
    let resp = send(&f.app, events(&path, Some(&cookie))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    let mut buf = String::new();
    // Another plan's change says nothing here; this plan's does.
    let other = f
        .node
        .lock()
        .await
        .documents()
        .unwrap()
        .into_iter()
        .find(|d| d.id != f.plan)
        .unwrap()
        .id;
    f.node
        .lock()
        .await
        .set_section(&other, "Doel", "Minder uitval.")
        .unwrap();
    f.node
        .lock()
        .await
        .set_section(&f.plan, "Inleiding", "Samen met het mbo.")
        .unwrap();
    let (name, data) = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(name, "change");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        data["notices"],
        serde_json::json!(["gemeente-gouda heeft sectie Inleiding gewijzigd"])
    );
    assert_eq!(data["kinds"], serde_json::json!(["section"]));
    // No text of the plan travels on the stream.
    assert!(!data.to_string().contains("mbo"));

    // The person signs out: at the next change the stream says `end` and ends.
    let resp = send(
        &f.app,
        Request::post("/uitloggen")
            .header(header::HOST, "127.0.0.1:8443")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &cookie)
            .body(Body::from(format!("csrf={csrf}")))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    f.node
        .lock()
        .await
        .set_section(&f.plan, "Inleiding", "Nog een keer.")
        .unwrap();
    let (name, _) = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(name, "end");
    assert!(next_event(&mut body, &mut buf).await.is_none());
}

#[tokio::test]
async fn streams_are_bounded_per_session_and_in_all() {
    let f = fixture();
    let path = format!("/plannen/{}/events", f.plan);
    let (cookie, _) = session(&f, "l.lezer").await;
    let mut open = Vec::new();
    for _ in 0..MAX_STREAMS_PER_SESSION {
        let resp = send(&f.app, events(&path, Some(&cookie))).await;
        assert_eq!(resp.status(), StatusCode::OK);
        open.push(resp);
    }
    let resp = send(&f.app, events(&path, Some(&cookie))).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // A closed stream gives its place back.
    drop(open.pop());
    let resp = send(&f.app, events(&path, Some(&cookie))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    open.push(resp);
    // In all: other sessions fill up to MAX_STREAMS, then everyone is refused.
    while open.len() < MAX_STREAMS {
        let (other, _) = session(&f, "p.beleid").await;
        for _ in 0..MAX_STREAMS_PER_SESSION.min(MAX_STREAMS - open.len()) {
            let resp = send(&f.app, events(&path, Some(&other))).await;
            assert_eq!(resp.status(), StatusCode::OK);
            open.push(resp);
        }
    }
    let (fresh, _) = session(&f, "b.beheer").await;
    let resp = send(&f.app, events(&path, Some(&fresh))).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    drop(open);
    let resp = send(&f.app, events(&path, Some(&fresh))).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_stream_that_falls_behind_skips_to_one_message() {
    let f = fixture();
    let path = format!("/plannen/{}/events", f.plan);
    let (cookie, _) = session(&f, "l.lezer").await;
    let resp = send(&f.app, events(&path, Some(&cookie))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Far more changes than the node's channel keeps, while the page reads nothing
    // (one real edit, its event sent again: a thousand edits take long in a debug
    // build).
    {
        let mut node = f.node.lock().await;
        let events = node.events();
        let mut rx = events.subscribe();
        node.set_section(&f.plan, "Inleiding", "Versie 2.").unwrap();
        let edit = rx.try_recv().unwrap();
        for _ in 0..regiosync_node::events::CAPACITY + 10 {
            events.resend_for_tests(edit.clone());
        }
    }
    let mut body = resp.into_body().into_data_stream();
    let mut buf = String::new();
    let (name, data) = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(name, "change");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    // Whatever was kept arrives as one message, not a thousand.
    assert_eq!(data["kinds"], serde_json::json!(["section"]));
    assert!(!buf.contains("event:"), "one message: {buf}");
}

/// A change stored between the page's rendering and the stream's start is not
/// lost: the page sends the version it shows (`?versie=`, its `data-version`), and
/// a stream opened for an older version says at once that the plan changed. A
/// stream for the current version stays quiet until the next change; an
/// unreadable version counts as behind.
#[tokio::test]
async fn a_page_behind_the_plan_is_told_at_once_and_a_current_one_is_not() {
    let f = fixture();
    let (cookie, _) = session(&f, "p.beleid").await;
    let hex = |hs: Vec<regiosync_core::automerge::ChangeHash>| {
        hs.iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join("%2C")
    };
    let rendered = hex(f.node.lock().await.plan_heads(&f.plan).unwrap());
    // The page's data-version is the plan's version.
    let page = send(
        &f.app,
        common::get_as(&format!("/plannen/{}", f.plan), &cookie),
    )
    .await;
    let html = common::text(page).await;
    assert!(
        html.contains(&format!(
            "data-version=\"{}\"",
            rendered.replace("%2C", ",")
        )),
        "the page names its version"
    );
    // A change lands before the page's stream opens.
    f.node
        .lock()
        .await
        .set_section(&f.plan, "Inleiding", "Intussen gewijzigd.")
        .unwrap();
    let current = hex(f.node.lock().await.plan_heads(&f.plan).unwrap());
    let path = |v: &str| format!("/plannen/{}/events?versie={v}", f.plan);

    let resp = send(&f.app, events(&path(&rendered), Some(&cookie))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    let mut buf = String::new();
    let (name, data) = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(name, "change");
    assert!(data.contains("sinds deze pagina werd geladen"), "{data}");

    // An unreadable version: behind, not refused.
    let resp = send(&f.app, events(&path("zz%2C%3Cscript%3E"), Some(&cookie))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut bad = resp.into_body().into_data_stream();
    let mut bad_buf = String::new();
    let (name, _) = next_event(&mut bad, &mut bad_buf).await.unwrap();
    assert_eq!(name, "change");

    // The current version: the first message is the next change's.
    let resp = send(&f.app, events(&path(&current), Some(&cookie))).await;
    let mut quiet = resp.into_body().into_data_stream();
    let mut quiet_buf = String::new();
    f.node
        .lock()
        .await
        .set_section(&f.plan, "Inleiding", "Weer gewijzigd.")
        .unwrap();
    let (name, data) = next_event(&mut quiet, &mut quiet_buf).await.unwrap();
    assert_eq!(name, "change");
    assert!(data.contains("heeft sectie Inleiding gewijzigd"), "{data}");
}
