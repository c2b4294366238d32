//! The web app through its router (no network): sign-in, sessions, CSRF, roles,
//! throttling, limits and bad input.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{
    Fixture, PASSWORD, enc, fixture, get, location, login, login_page, post, send, session_csrf,
    set_cookie, text, try_login,
};

#[tokio::test]
async fn sign_in_right_and_wrong() {
    let Fixture { app, .. } = fixture();
    let resp = try_login(&app, "l.lezer", "fout wachtwoord!!").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&resp, "__Host-regiosync").is_none());
    assert!(text(resp).await.contains("klopt niet"));
    // An unknown name gets the same answer.
    let resp = try_login(&app, "niemand", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp = try_login(&app, "L.Lezer", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/overzicht");
    let (cookie, header) = set_cookie(&resp, "__Host-regiosync").unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attr), "{header} lacks {attr}");
    }
    assert!(!header.contains("Domain"));
    let resp = send(&app, get("/overzicht", Some(&cookie))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    assert!(page.contains("Regio Midden-Holland"));
    assert!(page.contains("gemeente-gouda"));
    assert!(page.contains("l.lezer"));
}

#[tokio::test]
async fn pages_need_a_session_and_refuse_forged_or_expired_ones() {
    let Fixture { app, node, .. } = fixture();
    let resp = send(&app, get("/overzicht", None)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/inloggen");
    // A JSON client gets 401 and a JSON error.
    let mut req = get("/plannen", None);
    req.headers_mut()
        .insert(header::ACCEPT, "application/json".parse().unwrap());
    let resp = send(&app, req).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(v["error"]["code"], "not_signed_in");

    for forged in [
        format!("__Host-regiosync={}", "ab".repeat(32)),
        "__Host-regiosync=<script>".to_owned(),
        "__Host-regiosync=".to_owned(),
    ] {
        let resp = send(&app, get("/overzicht", Some(&forged))).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{forged}");
        assert_eq!(location(&resp), "/inloggen");
    }

    // Idle timeout: a session unused for 31 minutes has ended.
    let cookie = login(&app, "l.lezer").await;
    let token = cookie.split_once('=').unwrap().1.to_owned();
    node.lock()
        .await
        .age_staff_session_for_tests(&token, std::time::Duration::from_secs(31 * 60))
        .unwrap();
    let resp = send(&app, get("/overzicht", Some(&cookie))).await;
    assert_eq!(location(&resp), "/inloggen");
    // Absolute lifetime: used a minute ago, but made 11 hours ago.
    let cookie = login(&app, "l.lezer").await;
    let token = cookie.split_once('=').unwrap().1.to_owned();
    {
        let mut n = node.lock().await;
        n.age_staff_session_for_tests(&token, std::time::Duration::from_secs(11 * 3600))
            .unwrap();
    }
    let resp = send(&app, get("/overzicht", Some(&cookie))).await;
    assert_eq!(location(&resp), "/inloggen");
    // Disabling the account ends its sessions.
    let cookie = login(&app, "p.beleid").await;
    node.lock()
        .await
        .set_staff_disabled("p.beleid", true)
        .unwrap();
    let resp = send(&app, get("/overzicht", Some(&cookie))).await;
    assert_eq!(location(&resp), "/inloggen");
    assert_eq!(
        try_login(&app, "p.beleid", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn csrf_missing_wrong_or_cross_site_is_refused_and_changes_nothing() {
    let Fixture { app, .. } = fixture();
    let cookie = login(&app, "l.lezer").await;
    let token = session_csrf(&app, &cookie).await;
    // Sign-out without a token, with a wrong one, from another site.
    let cases: Vec<(Request<Body>, &str)> = vec![
        (post("/uitloggen", Some(&cookie), ""), "missing"),
        (
            post(
                "/uitloggen",
                Some(&cookie),
                format!("csrf={}", "0".repeat(64)),
            ),
            "wrong",
        ),
        (
            post(
                "/uitloggen",
                Some(&cookie),
                format!("csrf={}", &token[..10]),
            ),
            "short",
        ),
        (
            {
                let mut r = post("/uitloggen", Some(&cookie), format!("csrf={token}"));
                r.headers_mut()
                    .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
                r
            },
            "origin",
        ),
        (
            {
                let mut r = post("/uitloggen", Some(&cookie), format!("csrf={token}"));
                r.headers_mut()
                    .insert("sec-fetch-site", "cross-site".parse().unwrap());
                r
            },
            "sec-fetch-site",
        ),
    ];
    for (req, what) in cases {
        let resp = send(&app, req).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{what}");
        assert!(text(resp).await.contains("Formulier niet geaccepteerd"));
        // Still signed in: nothing changed.
        let resp = send(&app, get("/overzicht", Some(&cookie))).await;
        assert_eq!(resp.status(), StatusCode::OK, "after {what}");
    }
    // The sign-in form needs its token too.
    let (pre, _) = login_page(&app).await;
    let resp = send(
        &app,
        post(
            "/inloggen",
            Some(&pre),
            format!("naam=l.lezer&wachtwoord={}", enc(PASSWORD)),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // The right token, from this origin, signs out; the cookie no longer works.
    let mut req = post("/uitloggen", Some(&cookie), format!("csrf={token}"));
    req.headers_mut()
        .insert(header::ORIGIN, "https://127.0.0.1:8443".parse().unwrap());
    req.headers_mut()
        .insert("sec-fetch-site", "same-origin".parse().unwrap());
    let resp = send(&app, req).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookie(&resp, "__Host-regiosync")
            .unwrap()
            .1
            .contains("Max-Age=0")
    );
    let resp = send(&app, get("/overzicht", Some(&cookie))).await;
    assert_eq!(location(&resp), "/inloggen");
}

#[tokio::test]
async fn roles_are_enforced_by_the_server() {
    let Fixture { app, .. } = fixture();
    let lezer = login(&app, "l.lezer").await;
    let resp = send(&app, get("/beheer/accounts", Some(&lezer))).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let page = text(resp).await;
    assert!(page.contains("Geen toegang"));
    assert!(page.contains("beheerder"));
    assert!(!page.contains("b.beheer"));
    // The menu does not offer it either.
    let page = text(send(&app, get("/overzicht", Some(&lezer))).await).await;
    assert!(!page.contains("/beheer/accounts"));

    let beheer = login(&app, "b.beheer").await;
    let resp = send(&app, get("/beheer/accounts", Some(&beheer))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    for name in ["b.beheer", "l.lezer", "p.beleid", "n.nieuw"] {
        assert!(page.contains(name), "{name}");
    }
    assert!(page.contains("moet wachtwoord nog kiezen"));
    assert!(!page.contains("argon2"));
}

#[tokio::test]
async fn sign_in_is_throttled() {
    let Fixture { app, .. } = fixture();
    for _ in 0..5 {
        let resp = try_login(&app, "l.lezer", "verkeerd verkeerd").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused for a while, without being checked.
    let resp = try_login(&app, "l.lezer", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key(header::RETRY_AFTER));
    assert!(text(resp).await.contains("Te veel pogingen"));
    // Another account is not affected.
    login(&app, "p.beleid").await;
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let Fixture { app, .. } = fixture();
    let (pre, csrf) = login_page(&app).await;
    // A form with a 10 MB field.
    let body = format!(
        "csrf={csrf}&naam=l.lezer&wachtwoord={}",
        "a".repeat(10 << 20)
    );
    let resp = send(&app, post("/inloggen", Some(&pre), body)).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text(resp).await.contains("Te veel gegevens"));
    // Malformed UTF-8, raw and percent-encoded.
    for bad in [
        [
            b"csrf=".as_slice(),
            csrf.as_bytes(),
            b"&naam=\xff\xfe&wachtwoord=x",
        ]
        .concat(),
        format!("csrf={csrf}&naam=%C3%28&wachtwoord=x").into_bytes(),
    ] {
        let resp = send(&app, post("/inloggen", Some(&pre), bad)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(text(resp).await.contains("UTF-8"));
    }
    // None of that counted as a sign-in attempt, and the account still works.
    login(&app, "l.lezer").await;
}

#[tokio::test]
async fn html_in_fields_is_shown_escaped() {
    let Fixture { app, .. } = fixture();
    let resp = try_login(&app, "<script>alert(1)</script>", "x").await;
    // Not a possible account name: refused like a wrong password.
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let page = text(resp).await;
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") || page.contains("&#60;script"));
}

#[tokio::test]
async fn plans_are_listed_and_shown_escaped() {
    let Fixture { app, plan, .. } = fixture();
    let cookie = login(&app, "l.lezer").await;
    let page = text(send(&app, get("/plannen", Some(&cookie))).await).await;
    assert!(page.contains(&format!("/plannen/{plan}")));
    assert!(page.contains("Jeugdplan Midden-Holland 2027"));
    let resp = send(&app, get(&format!("/plannen/{plan}"), Some(&cookie))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    assert!(page.contains(">Inleiding</h2>"));
    assert!(page.contains("Samen met het onderwijs."));
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("<strong>warme overdracht</strong>"));
    // Unknown and malformed ids: 404.
    for path in [
        format!("/plannen/{}", "0".repeat(32)),
        "/plannen/xyz".into(),
        "/plannen/%3Cscript%3E".into(),
        "/bestaat-niet".into(),
    ] {
        let resp = send(&app, get(&path, Some(&cookie))).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(text(resp).await.contains("Niet gevonden"));
    }
}

#[tokio::test]
async fn a_set_password_must_be_changed_first() {
    let Fixture { app, node, .. } = fixture();
    let resp = try_login(&app, "n.nieuw", PASSWORD).await;
    assert_eq!(location(&resp), "/wachtwoord");
    let cookie = set_cookie(&resp, "__Host-regiosync").unwrap().0;
    let resp = send(&app, get("/overzicht", Some(&cookie))).await;
    assert_eq!(location(&resp), "/wachtwoord");
    let token = session_csrf(&app, &cookie).await;
    // Wrong current password, different repeats, too short: refused, nothing changed.
    for (cur, new, again, status) in [
        (
            "fout fout fout",
            "een nieuw lang wachtwoord",
            "een nieuw lang wachtwoord",
            401,
        ),
        (
            PASSWORD,
            "een nieuw lang wachtwoord",
            "een ander lang wachtwoord",
            422,
        ),
        (PASSWORD, "kort", "kort", 422),
        (PASSWORD, PASSWORD, PASSWORD, 422),
    ] {
        let body = format!(
            "csrf={token}&huidig={}&nieuw={}&herhaal={}",
            enc(cur),
            enc(new),
            enc(again)
        );
        let resp = send(&app, post("/wachtwoord", Some(&cookie), body)).await;
        assert_eq!(resp.status().as_u16(), status, "{new}");
    }
    let body = format!(
        "csrf={token}&huidig={}&nieuw={}&herhaal={}",
        enc(PASSWORD),
        enc("een nieuw lang wachtwoord"),
        enc("een nieuw lang wachtwoord")
    );
    let resp = send(&app, post("/wachtwoord", Some(&cookie), body)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/overzicht");
    let fresh = set_cookie(&resp, "__Host-regiosync").unwrap().0;
    // The old session ended; the new one works.
    assert_eq!(
        location(&send(&app, get("/overzicht", Some(&cookie))).await),
        "/inloggen"
    );
    assert_eq!(
        send(&app, get("/overzicht", Some(&fresh))).await.status(),
        StatusCode::OK
    );
    let acc = node
        .lock()
        .await
        .staff_credentials("n.nieuw")
        .unwrap()
        .unwrap();
    assert!(!acc.account().must_change);
}

#[tokio::test]
async fn every_response_has_the_security_headers() {
    let Fixture { app, .. } = fixture();
    for path in ["/inloggen", "/overzicht", "/nergens", "/assets/app.css"] {
        let resp = send(&app, get(path, None)).await;
        let h = resp.headers();
        let csp = h
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert_eq!(h.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
        assert_eq!(h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
        assert_eq!(h.get(header::REFERRER_POLICY).unwrap(), "same-origin");
        if !path.starts_with("/assets/") {
            assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-store", "{path}");
        }
    }
    let resp = send(&app, get("/assets/app.css", None)).await;
    assert_eq!(
        resp.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/css; charset=utf-8"
    );
}
