//! The plan pages through the router (no network): every write allowed for
//! `beleid`, refused for `lezer` (403) and without a CSRF token (403); saves from an
//! old version merge; a rewrite of the same lines is a 409 with both versions; unknown
//! ids are 404; HTML in every field is stored and shown escaped.

mod common;

use axum::body::Body;
use axum::http::{Response, StatusCode, header};
use common::{Fixture, enc, field, fixture, get_as, post_as, send, text_named_escapes};
use regiosync_core::id::DocId;

/// Signs in (as common::login does) and returns the session cookie and the CSRF
/// token of its Overzicht.
async fn login(app: &axum::Router, name: &str) -> (String, String) {
    let cookie = common::login(app, name).await;
    let page = text_named_escapes(send(app, get_as("/overzicht", &cookie)).await).await;
    (cookie, field(&page, "csrf"))
}

struct Ctx {
    f: Fixture,
    beleid: (String, String),
    lezer: (String, String),
    intro: String,
}

async fn ctx() -> Ctx {
    let f = fixture();
    let beleid = login(&f.app, "p.beleid").await;
    let lezer = login(&f.app, "l.lezer").await;
    let intro = f
        .node
        .lock()
        .await
        .plan(&f.plan)
        .unwrap()
        .titled("Inleiding")
        .unwrap()
        .id
        .clone();
    Ctx {
        f,
        beleid,
        lezer,
        intro,
    }
}

async fn heads(c: &Ctx) -> String {
    let page = text_named_escapes(
        send(
            &c.f.app,
            get_as(
                &format!("/plannen/{}/secties/{}/bewerken", c.f.plan, c.intro),
                &c.beleid.0,
            ),
        )
        .await,
    )
    .await;
    field(&page, "versie")
}

async fn plan_text(c: &Ctx) -> String {
    c.f.node
        .lock()
        .await
        .plan(&c.f.plan)
        .unwrap()
        .section(&c.intro)
        .unwrap()
        .text
        .clone()
}

async fn plan_heads(node: &tokio::sync::Mutex<regiosync_node::Node>, plan: &DocId) -> String {
    format!("{:?}", node.lock().await.plan_heads(plan).unwrap())
}

#[tokio::test]
async fn the_plan_page_shows_everything_and_a_lezer_gets_no_forms() {
    let c = ctx().await;
    let plan = c.f.plan;
    let page =
        text_named_escapes(send(&c.f.app, get_as(&format!("/plannen/{plan}"), &c.lezer.0)).await)
            .await;
    for want in [
        "Inleiding",
        "Samen met het onderwijs.",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "<strong>warme overdracht</strong>",
        "id=\"afspraken\"",
        "id=\"goedkeuring\"",
        "nog niet goedgekeurd",
        "/export/html",
        "/export/md",
        "/export/automerge",
    ] {
        assert!(page.contains(want), "{want}");
    }
    assert!(!page.contains("<script>alert"));
    assert!(!page.contains("/bewerken"));
    assert!(!page.contains("/goedkeuren"));
    assert!(!page.contains("plan-editor.js"));
    let page =
        text_named_escapes(send(&c.f.app, get_as(&format!("/plannen/{plan}"), &c.beleid.0)).await)
            .await;
    assert!(page.contains("/bewerken"));
    assert!(page.contains("/goedkeuren"));
    // Exports are downloads of the existing export code.
    for (fmt, want) in [
        ("html", "<!DOCTYPE html>"),
        ("md", "# Jeugdplan"),
        ("automerge", ""),
    ] {
        let resp = send(
            &c.f.app,
            get_as(&format!("/plannen/{plan}/export/{fmt}"), &c.lezer.0),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "{fmt}");
        assert!(
            resp.headers()[header::CONTENT_DISPOSITION]
                .to_str()
                .unwrap()
                .starts_with("attachment")
        );
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains(want));
        assert!(!bytes.is_empty());
    }
    let resp = send(
        &c.f.app,
        get_as(&format!("/plannen/{plan}/export/pdf"), &c.lezer.0),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// Every write of the plan pages, as (path, body without csrf).
fn writes(plan: &DocId, sid: &str, versie: &str) -> Vec<(String, String)> {
    vec![
        (
            format!("/plannen/{plan}/secties/{sid}"),
            format!("versie={versie}&tekst=Nieuw"),
        ),
        (format!("/plannen/{plan}/secties"), "titel=Extra".into()),
        (
            format!("/plannen/{plan}/secties/{sid}/naam"),
            "titel=Anders".into(),
        ),
        (
            format!("/plannen/{plan}/secties/{sid}/verplaatsen"),
            "richting=omlaag".into(),
        ),
        (
            format!("/plannen/{plan}/secties/{sid}/verwijderen"),
            "zeker=ja".into(),
        ),
        (
            format!("/plannen/{plan}/afspraken"),
            "titel=A&eigenaar=gemeente-gouda".into(),
        ),
        (
            format!("/plannen/{plan}/opmerkingen"),
            format!("sectie={sid}&citaat=Samen&tekst=Ja"),
        ),
        (
            format!("/plannen/{plan}/goedkeuren"),
            format!("versie={versie}"),
        ),
        (
            format!("/plannen/{plan}/conflicten"),
            format!("doel=section+{sid}&veld=text&keuze=0"),
        ),
        (format!("/plannen/{plan}/voorbeeld"), "tekst=x".into()),
    ]
}

#[tokio::test]
async fn a_lezer_and_a_missing_csrf_token_are_refused_and_change_nothing() {
    let c = ctx().await;
    let versie = heads(&c).await;
    let before = plan_heads(&c.f.node, &c.f.plan).await;
    for (path, body) in writes(&c.f.plan, &c.intro, &versie) {
        let resp = send(
            &c.f.app,
            post_as(&path, &c.lezer.0, format!("csrf={}&{body}", c.lezer.1)),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "lezer {path}");
        assert!(text_named_escapes(resp).await.contains("Geen toegang"));
        let resp = send(&c.f.app, post_as(&path, &c.beleid.0, body.clone())).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "no csrf {path}");
        assert!(
            text_named_escapes(resp)
                .await
                .contains("Formulier niet geaccepteerd")
        );
        let resp = send(
            &c.f.app,
            post_as(
                &path,
                &c.beleid.0,
                format!("csrf={}&{body}", "0".repeat(64)),
            ),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "wrong csrf {path}");
    }
    // The editor page itself is for beleid only.
    let resp = send(
        &c.f.app,
        get_as(
            &format!("/plannen/{}/secties/{}/bewerken", c.f.plan, c.intro),
            &c.lezer.0,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(plan_heads(&c.f.node, &c.f.plan).await, before);
    assert!(
        c.f.node
            .lock()
            .await
            .approvals(&c.f.plan)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_section_save_is_stored_escaped_and_saves_from_one_version_merge() {
    let c = ctx().await;
    let (plan, sid) = (c.f.plan, c.intro.clone());
    let (cookie, csrf) = c.beleid.clone();
    let base = heads(&c).await;
    let save = |text: &str, versie: &str| {
        post_as(
            &format!("/plannen/{plan}/secties/{sid}"),
            &cookie,
            format!("csrf={csrf}&versie={versie}&tekst={}", enc(text)),
        )
    };
    let resp = send(
        &c.f.app,
        save(
            "Eerste alinea <img src=x onerror=alert(1)>.\r\n\r\nTweede alinea.\r\n\r\nDerde.",
            &base,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let base = heads(&c).await;
    // Two people start from this version; A rewrites the first paragraph, B the third.
    let a = send(
        &c.f.app,
        save(
            "Eerste alinea van **A** <img src=x onerror=alert(1)>.\n\nTweede alinea.\n\nDerde.",
            &base,
        ),
    )
    .await;
    assert_eq!(a.status(), StatusCode::SEE_OTHER);
    assert!(
        a.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("bericht=opgeslagen")
    );
    let b = send(
        &c.f.app,
        save(
            "Eerste alinea <img src=x onerror=alert(1)>.\n\nTweede alinea.\n\nDerde, van B.",
            &base,
        ),
    )
    .await;
    assert_eq!(b.status(), StatusCode::SEE_OTHER);
    assert!(
        b.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("bericht=samengevoegd")
    );
    let now = plan_text(&c).await;
    assert!(now.contains("van **A**"), "{now}");
    assert!(now.contains("Derde, van B."), "{now}");
    let page =
        text_named_escapes(send(&c.f.app, get_as(&format!("/plannen/{plan}"), &cookie)).await)
            .await;
    assert!(page.contains("<strong>A</strong>"));
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!page.contains("<img src=x"));

    // A third save from that old version rewrites A's paragraph too: 409, both
    // versions, nothing written.
    let before = plan_heads(&c.f.node, &plan).await;
    let resp = send(
        &c.f.app,
        save(
            "Iets heel anders <b>hier</b>.\n\nTweede alinea.\n\nDerde.",
            &base,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let page = text_named_escapes(resp).await;
    assert!(page.contains("Tegelijk bewerkt"));
    // The Markdown escapes `<` (`\<`); the page escapes it again.
    assert!(page.contains("Iets heel anders"));
    assert!(page.contains("\\&lt;b\\&gt;hier"));
    assert!(!page.contains("<b>hier"));
    assert!(page.contains("Eerste alinea van **A**"));
    assert!(page.contains("gemeente-gouda") || page.contains("Gemeente"));
    assert_eq!(plan_heads(&c.f.node, &plan).await, before);
    // "Keep mine" from the clash page: saved at the current version, B's text kept.
    let versie = field(&page, "versie");
    let mine = field(&page, "tekst");
    let mine = mine
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#10;", "\n");
    let resp = send(&c.f.app, save(&mine, &versie)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let now = plan_text(&c).await;
    assert!(now.starts_with("Iets heel anders"), "{now}");
    assert!(now.contains("Derde, van B."), "{now}");

    // Unknown, malformed versions and unknown ids change nothing.
    let before = plan_heads(&c.f.node, &plan).await;
    let resp = send(&c.f.app, save("x", &"ab".repeat(32))).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(text_named_escapes(resp).await.contains("Versie verouderd"));
    let resp = send(&c.f.app, save("x", "zz")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let versie = heads(&c).await;
    for path in [
        format!("/plannen/{plan}/secties/s-00000000"),
        format!("/plannen/{plan}/secties/%3Cscript%3E"),
        format!("/plannen/{}/secties/{sid}", "0".repeat(32)),
    ] {
        let resp = send(
            &c.f.app,
            post_as(
                &path,
                &cookie,
                format!("csrf={csrf}&versie={versie}&tekst=x"),
            ),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let resp = send(
        &c.f.app,
        get_as(
            &format!("/plannen/{plan}/secties/s-00000000/bewerken"),
            &cookie,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // A 10 MB text: 413.
    let resp = send(&c.f.app, save(&"a".repeat(10 << 20), &versie)).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(plan_heads(&c.f.node, &plan).await, before);
}

#[tokio::test]
async fn the_editor_works_without_script_and_previews_on_the_server() {
    let c = ctx().await;
    let (plan, sid) = (c.f.plan, c.intro.clone());
    let (cookie, csrf) = c.beleid.clone();
    let page = text_named_escapes(
        send(
            &c.f.app,
            get_as(&format!("/plannen/{plan}/secties/{sid}/bewerken"), &cookie),
        )
        .await,
    )
    .await;
    assert!(page.contains("<textarea id=\"tekst\" name=\"tekst\""));
    assert!(page.contains("Samen met het onderwijs."));
    assert!(page.contains("\\&lt;script\\&gt;alert(1)"));
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("src=\"/assets/plan-editor.js\""));
    let versie = field(&page, "versie");
    let before = plan_heads(&c.f.node, &plan).await;
    let resp = send(
        &c.f.app,
        post_as(
            &format!("/plannen/{plan}/secties/{sid}"),
            &cookie,
            format!(
                "csrf={csrf}&versie={versie}&actie=voorbeeld&tekst={}",
                enc("**vet** <script>x</script>")
            ),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text_named_escapes(resp).await;
    assert!(page.contains("<strong>vet</strong> &lt;script&gt;x&lt;/script&gt;"));
    assert_eq!(plan_heads(&c.f.node, &plan).await, before);
    let resp = send(
        &c.f.app,
        post_as(
            &format!("/plannen/{plan}/voorbeeld"),
            &cookie,
            format!("csrf={csrf}&tekst={}", enc("## Kop\n\n_schuin_")),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = text_named_escapes(resp).await;
    assert!(html.contains("<em>schuin</em>"), "{html}");
    let resp = send(&c.f.app, get_as("/assets/plan-editor.js", &cookie)).await;
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
}

#[tokio::test]
async fn sections_agreements_comments_and_approvals() {
    let c = ctx().await;
    let (plan, sid) = (c.f.plan, c.intro.clone());
    let (cookie, csrf) = c.beleid.clone();
    let app = &c.f.app;
    let ok = |resp: &Response<Body>, what: &str| {
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{what}");
    };
    // New section with HTML in its title, rename, move, delete.
    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/secties"),
            &cookie,
            format!("csrf={csrf}&titel={}", enc("Slot <i>x</i>")),
        ),
    )
    .await;
    ok(&resp, "new section");
    assert!(
        resp.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("/bewerken")
    );
    let dup = send(
        app,
        post_as(
            &format!("/plannen/{plan}/secties"),
            &cookie,
            format!("csrf={csrf}&titel=inleiding"),
        ),
    )
    .await;
    assert_eq!(dup.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The same title written with a combining accent is the same title (NFC): a
    // "new" section must not empty the existing one.
    let cafe = |title: &str| {
        post_as(
            &format!("/plannen/{plan}/secties"),
            &cookie,
            format!("csrf={csrf}&titel={}", enc(title)),
        )
    };
    ok(&send(app, cafe("Caf\u{e9}")).await, "new section Café");
    c.f.node
        .lock()
        .await
        .set_section(&plan, "Caf\u{e9}", "Koffie met de wijkagent.\n")
        .unwrap();
    let dup = send(app, cafe("cafe\u{301}")).await;
    assert_eq!(dup.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let kept = c.f.node.lock().await.plan(&plan).unwrap();
    assert_eq!(
        kept.titled("Caf\u{e9}").unwrap().text.trim_end(),
        "Koffie met de wijkagent."
    );
    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/secties/{sid}/naam"),
            &cookie,
            format!("csrf={csrf}&titel=Aanleiding"),
        ),
    )
    .await;
    ok(&resp, "rename");
    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/secties/{sid}/verplaatsen"),
            &cookie,
            format!("csrf={csrf}&richting=omlaag"),
        ),
    )
    .await;
    ok(&resp, "move");
    {
        let p = c.f.node.lock().await.plan(&plan).unwrap();
        assert_eq!(p.sections[1].id, sid);
        assert_eq!(p.sections[1].title, "Aanleiding");
    }
    let page =
        text_named_escapes(send(app, get_as(&format!("/plannen/{plan}"), &cookie)).await).await;
    assert!(page.contains("Slot &lt;i&gt;x&lt;/i&gt;"));
    let slot =
        c.f.node
            .lock()
            .await
            .plan(&plan)
            .unwrap()
            .titled("Slot <i>x</i>")
            .unwrap()
            .id
            .clone();
    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/secties/{slot}/verwijderen"),
            &cookie,
            format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(
        resp.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "unconfirmed"
    );
    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/secties/{slot}/verwijderen"),
            &cookie,
            format!("csrf={csrf}&zeker=ja"),
        ),
    )
    .await;
    ok(&resp, "delete");
    assert!(
        c.f.node
            .lock()
            .await
            .plan(&plan)
            .unwrap()
            .section(&slot)
            .is_none()
    );

    // Agreements: add (HTML in the title), status by allowed transitions only, remove.
    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/afspraken"),
            &cookie,
            format!(
                "csrf={csrf}&titel={}&eigenaar=roc-midden-holland&deadline=2027-03-31&financiering={}",
                enc("Warme overdracht <script>x</script>"),
                enc("OOGO-budget")
            ),
        ),
    )
    .await;
    ok(&resp, "add agreement");
    for (body, status) in [
        ("titel=X&eigenaar=niemand-hier", 422),
        ("titel=X&eigenaar=gemeente-gouda&deadline=2027-02-30", 422),
        ("titel=&eigenaar=gemeente-gouda", 422),
    ] {
        let resp = send(
            app,
            post_as(
                &format!("/plannen/{plan}/afspraken"),
                &cookie,
                format!("csrf={csrf}&{body}"),
            ),
        )
        .await;
        assert_eq!(resp.status().as_u16(), status, "{body}");
    }
    let aid = c.f.node.lock().await.plan(&plan).unwrap().agreements[0]
        .id
        .clone();
    let page =
        text_named_escapes(send(app, get_as(&format!("/plannen/{plan}"), &cookie)).await).await;
    assert!(page.contains("Warme overdracht &lt;script&gt;x&lt;/script&gt;"));
    assert!(page.contains("2027-03-31"));
    assert!(page.contains("OOGO-budget"));
    assert!(page.contains("<option value=\"in-uitvoering\">"));
    assert!(
        !page.contains("<option value=\"open\">"),
        "open → open is no transition"
    );
    let status = |s: &str| {
        post_as(
            &format!("/plannen/{plan}/afspraken/{aid}/status"),
            &cookie,
            format!("csrf={csrf}&status={s}"),
        )
    };
    ok(&send(app, status("afgerond")).await, "afgerond");
    let resp = send(app, status("vervallen")).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text_named_escapes(resp).await.contains("niet toegestaan"));
    let resp = send(app, status("<b>")).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/afspraken/a-00000000/status"),
            &cookie,
            format!("csrf={csrf}&status=open"),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // A comment on a quoted passage, HTML escaped; a quote not in the text: 422.
    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/opmerkingen"),
            &cookie,
            format!(
                "csrf={csrf}&sectie={sid}&citaat={}&tekst={}",
                enc("met het onderwijs"),
                enc("Eens <script>y</script>")
            ),
        ),
    )
    .await;
    ok(&resp, "comment");
    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/opmerkingen"),
            &cookie,
            format!("csrf={csrf}&sectie={sid}&citaat=bestaat+niet&tekst=x"),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page =
        text_named_escapes(send(app, get_as(&format!("/plannen/{plan}"), &c.lezer.0)).await).await;
    assert!(page.contains("Eens &lt;script&gt;y&lt;/script&gt;"));
    assert!(page.contains("met het onderwijs"));

    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/afspraken/{aid}/verwijderen"),
            &cookie,
            format!("csrf={csrf}"),
        ),
    )
    .await;
    ok(&resp, "remove agreement");
    assert!(
        c.f.node
            .lock()
            .await
            .plan(&plan)
            .unwrap()
            .agreements
            .is_empty()
    );

    // Approve the version shown; an old version is refused (409).
    let page =
        text_named_escapes(send(app, get_as(&format!("/plannen/{plan}"), &cookie)).await).await;
    let shown = page
        .split("action=\"/plannen/")
        .find(|s| s.contains("/goedkeuren"))
        .map(|s| field(s, "versie"))
        .unwrap();
    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/goedkeuren"),
            &cookie,
            format!(
                "csrf={csrf}&versie={shown}&opmerking={}",
                enc("Akkoord <b>")
            ),
        ),
    )
    .await;
    ok(&resp, "approve");
    let page =
        text_named_escapes(send(app, get_as(&format!("/plannen/{plan}"), &cookie)).await).await;
    assert!(page.contains("deze versie"));
    assert!(page.contains("Akkoord &lt;b&gt;"));
    // A later edit: "1 wijziging sinds" and the diff since the approval.
    let versie = heads(&c).await;
    ok(
        &send(
            app,
            post_as(
                &format!("/plannen/{plan}/secties/{sid}"),
                &cookie,
                format!("csrf={csrf}&versie={versie}&tekst=Helemaal+nieuw."),
            ),
        )
        .await,
        "edit after approval",
    );
    let page =
        text_named_escapes(send(app, get_as(&format!("/plannen/{plan}"), &cookie)).await).await;
    assert!(page.contains("1 wijziging sinds"), "{page}");
    assert!(page.contains(&format!("/plannen/{plan}/sinds/gemeente-gouda")));
    let resp = send(
        app,
        post_as(
            &format!("/plannen/{plan}/goedkeuren"),
            &cookie,
            format!("csrf={csrf}&versie={shown}"),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let resp = send(
        app,
        get_as(&format!("/plannen/{plan}/sinds/gemeente-gouda"), &c.lezer.0),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text_named_escapes(resp).await;
    assert!(page.contains("Aanleiding"));
    assert!(page.contains("Helemaal nieuw."));
    for party in ["swv-midden-holland", "geen%20partij"] {
        let resp = send(
            app,
            get_as(&format!("/plannen/{plan}/sinds/{party}"), &cookie),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{party}");
    }
}
