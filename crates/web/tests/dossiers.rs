//! The Dossiers and Beheer pages through the router (no network): every action,
//! and every refusal (role, CSRF, a dossier this party may not read, unknown and
//! malformed ids, oversized fields and uploads, HTML in fields), each of which
//! changes nothing.

mod common;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use common::{
    Fixture, PASSWORD, enc, fixture, get, location, login, pass, post, send, session_csrf, text,
    try_login,
};
use regiosync_core::audit::{Who, verify_chain};
use regiosync_core::id::{DocId, PartyName, Role};
use regiosync_node::Node;
use regiosync_node::StoreRead;
use regiosync_node::dossiers::{NewDossier, Reader};
use regiosync_node::staff::StaffRole;

fn multipart(path: &str, cookie: &str, csrf: &str, file: &[u8]) -> Request<Body> {
    let boundary = "----regiosynctestgrens";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"verzoek\"; filename=\"aanmelding.rgsy\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Request::post(path)
        .header(header::HOST, "127.0.0.1:8443")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header(header::COOKIE, cookie)
        .body(Body::from(body))
        .unwrap()
}

/// The fixture with a `dossier` account (d.dossier) of the kerngemeente.
async fn with_dossier_user() -> Fixture {
    let f = fixture();
    f.node
        .lock()
        .await
        .add_staff("d.dossier", StaffRole::Dossier, &pass(PASSWORD), false)
        .unwrap();
    f
}

async fn audit_len(f: &Fixture) -> usize {
    f.node.lock().await.store().audit_log().unwrap().len()
}

/// Creates a dossier through the web app; returns its id.
async fn create(app: &axum::Router, cookie: &str, csrf: &str, naam: &str) -> String {
    let body = format!(
        "csrf={csrf}&woongemeente=gemeente-gouda&grondslag=wettelijke-taak&doel={}&naam={}&geboortedatum=2008-04-12&opleiding={}&ondersteuningsbehoefte={}",
        enc("Jeugdwet: ondersteuning"),
        enc(naam),
        enc("Verzorgende IG <b>niveau 3</b>"),
        enc("Rustige werkplek.\n<script>alert('x')</script>")
    );
    let resp = send(app, post("/dossiers/nieuw", Some(cookie), body)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{}", text(resp).await);
    let to = location(&resp).to_owned();
    to.trim_start_matches("/dossiers/").to_owned()
}

async fn open(
    app: &axum::Router,
    cookie: &str,
    csrf: &str,
    id: &str,
    doel: &str,
) -> Response<Body> {
    send(
        app,
        post(
            &format!("/dossiers/{id}/openen"),
            Some(cookie),
            format!("csrf={csrf}&doel={}", enc(doel)),
        ),
    )
    .await
}

/// A dossier of the ROC for gemeente-waddinxveen whose access log the kerngemeente
/// holds (as a relay would) but may not read.
async fn foreign_dossier(f: &Fixture) -> DocId {
    let gouda = f.dir.path();
    let log = f.node.lock().await.export().unwrap();
    let mut roc = Node::open(&gouda.join("roc-midden-holland")).unwrap();
    roc.import(&log).unwrap();
    let id = roc
        .create_dossier(
            &NewDossier {
                woongemeente: PartyName::new("gemeente-waddinxveen").unwrap(),
                basis: regiosync_core::dossier::access::Basis::WettelijkeTaak,
                purpose: "Jeugdwet".into(),
                fields: vec![],
            },
            &Reader {
                who: Who::cli("roc"),
                purpose: "aanmaken".into(),
            },
        )
        .unwrap();
    let ops = roc.store().dossier_ops(&id).unwrap();
    let mut store = regiosync_store::Store::open(&gouda.join("store.sqlite")).unwrap();
    store
        .write(|tx| {
            for op in &ops {
                let hash = regiosync_core::control::Signed::<
                    regiosync_core::dossier::access::DossierOp,
                >::decode_stored(op)
                .unwrap()
                .hash();
                tx.put_dossier_op(&id, &hash.0, op, 0)?;
            }
            Ok::<_, regiosync_store::StoreError>(())
        })
        .unwrap();
    id
}

#[tokio::test]
async fn only_the_dossier_role_reaches_dossiers_and_only_the_beheerder_beheer() {
    let f = with_dossier_user().await;
    let app = &f.app;
    let d = login(app, "d.dossier").await;
    let d_csrf = session_csrf(app, &d).await;
    let id = create(app, &d, &d_csrf, "Sanne de Vries").await;
    let before = audit_len(&f).await;
    for name in ["l.lezer", "p.beleid", "b.beheer"] {
        let c = login(app, name).await;
        let csrf = session_csrf(app, &c).await;
        for path in [
            "/dossiers".to_owned(),
            format!("/dossiers/{id}"),
            "/dossiers/nieuw".into(),
            format!("/dossiers/{id}/toegangslog"),
            format!("/dossiers/{id}/wissen"),
        ] {
            let resp = send(app, get(&path, Some(&c))).await;
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{name} {path}");
            assert!(text(resp).await.contains("met dossiers werken"));
        }
        let resp = open(app, &c, &csrf, &id, "nieuwsgierig").await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{name}");
        for action in [
            "notitie",
            "afspraak",
            "veld",
            "toegang",
            "intrekken",
            "wissen",
        ] {
            let resp = send(
                app,
                post(
                    &format!("/dossiers/{id}/{action}"),
                    Some(&c),
                    format!("csrf={csrf}&doel=x&tekst=x&afspraak=x&zeker=ja"),
                ),
            )
            .await;
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{name} {action}");
        }
        // The menu does not offer Dossiers.
        let page = text(send(app, get("/overzicht", Some(&c))).await).await;
        assert!(!page.contains("href=\"/dossiers\""), "{name}");
    }
    assert_eq!(
        audit_len(&f).await,
        before,
        "no refused request was audited"
    );
    // A dossier user gets no Beheer.
    for path in [
        "/beheer/accounts",
        "/beheer/auditlog",
        "/beheer/apparaten",
        "/beheer/uitnodigen",
        "/beheer/aanmelding",
        "/beheer/bundel",
    ] {
        let resp = send(app, get(path, Some(&d))).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let resp = send(
        app,
        post(
            "/beheer/accounts",
            Some(&d),
            format!("csrf={d_csrf}&naam=x.y&rol=beheerder"),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        f.node
            .lock()
            .await
            .staff_credentials("x.y")
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_dossier_is_created_opened_with_a_purpose_and_audited_under_the_signed_in_account() {
    let f = with_dossier_user().await;
    let app = &f.app;
    let d = login(app, "d.dossier").await;
    let csrf = session_csrf(app, &d).await;
    let naam = "Sanne <script>alert(1)</script> de Vries";
    let id = create(app, &d, &csrf, naam).await;
    // The list shows it from the access log: no name, nothing unsealed or audited.
    let n = audit_len(&f).await;
    let page = text(send(app, get("/dossiers", Some(&d))).await).await;
    assert!(page.contains(&id), "{page}");
    assert!(!page.contains("Sanne"));
    // Opening asks for the purpose first (a GET unseals nothing).
    let page = text(send(app, get(&format!("/dossiers/{id}"), Some(&d))).await).await;
    assert!(page.contains("Doel van de inzage"));
    assert!(!page.contains("Sanne"));
    assert_eq!(audit_len(&f).await, n);
    // No purpose: refused, not read.
    let resp = open(app, &d, &csrf, &id, "   ").await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!text(resp).await.contains("Sanne"));
    assert_eq!(audit_len(&f).await, n);
    // With a purpose: the dossier, escaped.
    let resp = open(app, &d, &csrf, &id, "voorbereiding <i>zorgoverleg</i>").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    assert!(
        page.contains("Sanne &#60;script&#62;alert(1)&#60;/script&#62; de Vries"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("&#60;b&#62;niveau 3&#60;/b&#62;"));
    assert!(page.contains("voorbereiding &#60;i&#62;zorgoverleg&#60;/i&#62;"));
    let log = f.node.lock().await.store().audit_log().unwrap();
    let (_, last, _) = log.last().unwrap();
    assert_eq!(last.action, "read");
    assert_eq!(last.purpose, "voorbereiding <i>zorgoverleg</i>");
    assert_eq!(
        last.who,
        Who::Web {
            account: "d.dossier".into()
        }
    );
    assert_eq!(log[0].1.action, "create");
    assert_eq!(
        log[0].1.who,
        Who::Web {
            account: "d.dossier".into()
        }
    );
    assert_eq!(verify_chain(log), Ok(n + 1));
    // The access history names the account and how.
    let page = text(send(app, get(&format!("/dossiers/{id}/toegangslog"), Some(&d))).await).await;
    assert!(page.contains("web: d.dossier"));
    assert!(page.contains("voorbereiding &#60;i&#62;zorgoverleg&#60;/i&#62;"));
}

#[tokio::test]
async fn note_edit_grant_revoke_and_erase_work_and_are_audited() {
    let f = with_dossier_user().await;
    let app = &f.app;
    let d = login(app, "d.dossier").await;
    let csrf = session_csrf(app, &d).await;
    let id = create(app, &d, &csrf, "Sanne de Vries").await;
    let act = |action: &str, extra: String| {
        post(
            &format!("/dossiers/{id}/{action}"),
            Some(&d),
            format!("csrf={csrf}&doel=zorgoverleg&{extra}"),
        )
    };
    let resp = send(
        app,
        act(
            "notitie",
            format!("tekst={}", enc("Huisbezoek <img src=x onerror=alert(1)>")),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    assert!(page.contains("De notitie is toegevoegd"));
    assert!(page.contains("Huisbezoek &#60;img src=x onerror=alert(1)&#62;"));
    // A support agreement with an evaluation date; one with a bad date or no text
    // is refused and adds nothing.
    let resp = send(
        app,
        act(
            "afspraak",
            format!(
                "afspraak={}&evaluatie=2027-03-01",
                enc("Wekelijks gesprek met de <b>mentor</b>")
            ),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    assert!(page.contains("De ondersteuningsafspraak is toegevoegd"));
    assert!(page.contains("Wekelijks gesprek met de &#60;b&#62;mentor&#60;/b&#62;"));
    assert!(
        page.contains("2027-03-01") || page.contains("1 maart 2027"),
        "{page}"
    );
    for extra in ["afspraak=x&evaluatie=morgen", "afspraak=+&evaluatie="] {
        let resp = send(app, act("afspraak", extra.into())).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{extra}");
    }
    let dossier = f
        .node
        .lock()
        .await
        .read_dossier(
            &id.parse().unwrap(),
            &Reader {
                who: Who::cli("test"),
                purpose: "controle".into(),
            },
        )
        .unwrap();
    assert_eq!(
        dossier.afspraken.len(),
        1,
        "only the valid agreement was added"
    );
    let resp = send(
        app,
        act(
            "veld",
            "veld=locatie&waarde=Gouda%2C+Burgemeester+Jamessingel".into(),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(text(resp).await.contains("Burgemeester Jamessingel"));
    // The woongemeente is not a field to edit; an unknown field neither.
    for extra in [
        "veld=woongemeente&waarde=gemeente-waddinxveen",
        "veld=bsn&waarde=123",
    ] {
        let resp = send(app, act("veld", extra.into())).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{extra}");
    }
    let resp = send(
        app,
        act(
            "toegang",
            "partij=gemeente-waddinxveen&grondslag=toestemming&doel_toegang=verhuizing&tot=".into(),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let access = f
        .node
        .lock()
        .await
        .dossier_access(&id.parse().unwrap())
        .unwrap();
    assert!(
        access
            .grants
            .contains_key(&PartyName::new("gemeente-waddinxveen").unwrap())
    );
    // A date in the past, an unknown party, a wrong basis: refused.
    for extra in [
        "partij=swv-midden-holland&grondslag=toestemming&doel_toegang=x&tot=2020-01-31",
        "partij=gemeente-nergens&grondslag=toestemming&doel_toegang=x",
        "partij=swv-midden-holland&grondslag=omdat&doel_toegang=x",
        "partij=swv-midden-holland&grondslag=toestemming&doel_toegang=+",
    ] {
        let resp = send(app, act("toegang", extra.into())).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{extra}");
        // In Dutch, as the rest of the page: no English node message.
        let page = text(resp).await;
        assert!(!page.contains(" the "), "{extra}: {page}");
        if extra.contains("2020-01-31") {
            assert!(
                page.contains("De einddatum 2020-01-31 ligt in het verleden"),
                "{page}"
            );
        }
    }
    // Revoking a party that has no grant: the region's rule, in Dutch.
    let resp = send(
        app,
        act("intrekken", "partij=swv-midden-holland&reden=x".into()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        text(resp)
            .await
            .contains("Die partij heeft geen toegang die ingetrokken kan worden.")
    );
    let resp = send(
        app,
        act(
            "intrekken",
            "partij=gemeente-waddinxveen&reden=verhuisd".into(),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let access = f
        .node
        .lock()
        .await
        .dossier_access(&id.parse().unwrap())
        .unwrap();
    assert!(
        !access
            .grants
            .contains_key(&PartyName::new("gemeente-waddinxveen").unwrap())
    );
    let actions: Vec<String> = f
        .node
        .lock()
        .await
        .store()
        .audit_log()
        .unwrap()
        .into_iter()
        .map(|r| r.1.action)
        .collect();
    for a in ["create", "note", "edit", "grant", "revoke", "read"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    // Erase: the confirmation names what is destroyed; unconfirmed changes nothing.
    let page = text(send(app, get(&format!("/dossiers/{id}/wissen"), Some(&d))).await).await;
    assert!(
        page.contains(&id) && page.contains("verzegelde wijzigingen") && page.contains("sleutels")
    );
    for confirm in ["", "bevestig=abc", "bevestig=00000000", "zeker=nee"] {
        let resp = send(
            app,
            post(
                &format!("/dossiers/{id}/wissen"),
                Some(&d),
                format!("csrf={csrf}&{confirm}"),
            ),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{confirm}");
        assert!(
            f.node
                .lock()
                .await
                .may_read_dossier(&id.parse().unwrap())
                .unwrap()
        );
    }
    let resp = send(
        app,
        post(
            &format!("/dossiers/{id}/wissen"),
            Some(&d),
            format!("csrf={csrf}&bevestig={}", &id[..8]),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let resp = open(app, &d, &csrf, &id, "zorgoverleg").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let log = f.node.lock().await.store().audit_log().unwrap();
    assert_eq!(log.last().unwrap().1.action, "erase");
    assert!(verify_chain(log).is_ok());
}

#[tokio::test]
async fn a_dossier_this_party_may_not_read_is_not_found_like_an_unknown_one() {
    let f = with_dossier_user().await;
    let app = &f.app;
    let foreign = foreign_dossier(&f).await.to_string();
    let d = login(app, "d.dossier").await;
    let csrf = session_csrf(app, &d).await;
    let n = audit_len(&f).await;
    let unknown = DocId::random().unwrap().to_string();
    let mut bodies = Vec::new();
    for id in [
        foreign.as_str(),
        unknown.as_str(),
        "niet-een-id",
        &foreign[..8],
    ] {
        for path in [
            format!("/dossiers/{id}"),
            format!("/dossiers/{id}/toegangslog"),
            format!("/dossiers/{id}/wissen"),
        ] {
            let resp = send(app, get(&path, Some(&d))).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
            bodies.push(text(resp).await);
        }
        let resp = open(app, &d, &csrf, id, "zorgoverleg").await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{id}");
        for action in ["notitie", "intrekken"] {
            let resp = send(
                app,
                post(
                    &format!("/dossiers/{id}/{action}"),
                    Some(&d),
                    format!("csrf={csrf}&doel=x&tekst=x&partij=gemeente-gouda&reden=x"),
                ),
            )
            .await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{id} {action}");
        }
        let resp = send(
            app,
            post(
                &format!("/dossiers/{id}/wissen"),
                Some(&d),
                format!("csrf={csrf}&zeker=ja"),
            ),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{id}");
    }
    // The answers for the held-but-sealed and the unknown dossier are the same page.
    assert_eq!(bodies[0], bodies[3]);
    // The list does not show it, and JSON clients get JSON.
    assert!(
        !text(send(app, get("/dossiers", Some(&d))).await)
            .await
            .contains(&foreign)
    );
    let mut req = get(&format!("/dossiers/{foreign}"), Some(&d));
    req.headers_mut()
        .insert(header::ACCEPT, "application/json".parse().unwrap());
    let json = text(send(app, req).await).await;
    assert!(json.contains("\"not_found\""), "{json}");
    assert_eq!(audit_len(&f).await, n, "nothing was read");
    assert!(
        f.node
            .lock()
            .await
            .may_read_dossier(&foreign.parse().unwrap())
            .is_ok_and(|r| !r)
    );
}

#[tokio::test]
async fn csrf_oversized_and_malformed_dossier_forms_change_nothing() {
    let f = with_dossier_user().await;
    let app = &f.app;
    let d = login(app, "d.dossier").await;
    let csrf = session_csrf(app, &d).await;
    let id = create(app, &d, &csrf, "Sanne de Vries").await;
    let n = audit_len(&f).await;
    let note = |body: String| post(&format!("/dossiers/{id}/notitie"), Some(&d), body);
    // Missing, wrong token; another site.
    for body in [
        "doel=x&tekst=hallo".to_owned(),
        format!("csrf={}&doel=x&tekst=hallo", "0".repeat(64)),
    ] {
        let resp = send(app, note(body)).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    let mut req = note(format!("csrf={csrf}&doel=x&tekst=hallo"));
    req.headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(send(app, req).await.status(), StatusCode::FORBIDDEN);
    let resp = open(app, &d, &"0".repeat(64), &id, "x").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A 10 MB field; a field over 64 KiB; malformed UTF-8; a purpose over 512 bytes.
    let resp = send(
        app,
        note(format!("csrf={csrf}&doel=x&tekst={}", "a".repeat(10 << 20))),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = send(
        app,
        note(format!(
            "csrf={csrf}&doel=x&tekst={}",
            "a".repeat(70 * 1024)
        )),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = send(app, note(format!("csrf={csrf}&doel=x&tekst=%C3%28"))).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = send(
        app,
        note(format!("csrf={csrf}&doel={}&tekst=hallo", "a".repeat(600))),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = send(app, note(format!("csrf={csrf}&doel=x&tekst=+"))).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A name over the field limit is refused by the node's schema check.
    let resp = send(
        app,
        post(
            &format!("/dossiers/{id}/veld"),
            Some(&d),
            format!("csrf={csrf}&doel=x&veld=naam&waarde={}", "a".repeat(400)),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Bad list queries.
    assert_eq!(
        send(app, get("/dossiers?na=xyz", Some(&d))).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(app, get("/dossiers?zoek=%3Cscript%3E", Some(&d)))
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let page = text(send(app, get(&format!("/dossiers?zoek={}", &id[..6]), Some(&d))).await).await;
    assert!(page.contains(&id));
    assert_eq!(audit_len(&f).await, n, "nothing was written or read");
    let resp = open(app, &d, &csrf, &id, "controle").await;
    assert!(!text(resp).await.contains("hallo"));
}

#[tokio::test]
async fn beheer_manages_accounts_with_one_time_passwords() {
    let Fixture { app, node, .. } = fixture();
    let b = login(&app, "b.beheer").await;
    let csrf = session_csrf(&app, &b).await;
    let resp = send(
        &app,
        post(
            "/beheer/accounts",
            Some(&b),
            format!("csrf={csrf}&naam=J.Bakker&rol=dossier"),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    let at = page.find("id=\"wachtwoord\">").unwrap() + 16;
    let once = page[at..at + page[at..].find('<').unwrap()].to_owned();
    assert!(once.len() >= 12, "{once}");
    // The one-time password signs in, and must be changed first.
    let resp = try_login(&app, "j.bakker", &once).await;
    assert_eq!(location(&resp), "/wachtwoord");
    // Taken, bad names and roles are refused; nothing is added.
    for body in [
        "naam=j.bakker&rol=lezer",
        "naam=%3Cb%3E&rol=lezer",
        "naam=x.y&rol=koning",
    ] {
        let resp = send(
            &app,
            post("/beheer/accounts", Some(&b), format!("csrf={csrf}&{body}")),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    assert_eq!(node.lock().await.staff_accounts().unwrap().len(), 5);
    // Disable, enable, reset.
    let action = |name: &str, a: &str| {
        post(
            "/beheer/accounts/actie",
            Some(&b),
            format!("csrf={csrf}&naam={name}&actie={a}"),
        )
    };
    assert_eq!(
        send(&app, action("l.lezer", "uitschakelen")).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        try_login(&app, "l.lezer", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, action("l.lezer", "inschakelen")).await.status(),
        StatusCode::SEE_OTHER
    );
    login(&app, "l.lezer").await;
    let resp = send(&app, action("l.lezer", "wachtwoord")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(text(resp).await.contains("maar één keer"));
    assert_eq!(
        try_login(&app, "l.lezer", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Not one's own account; not an unknown one.
    assert_eq!(
        send(&app, action("b.beheer", "uitschakelen"))
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        send(&app, action("niemand", "uitschakelen")).await.status(),
        StatusCode::NOT_FOUND
    );
    // The list page escapes and shows the state.
    let page = text(send(&app, get("/beheer/accounts", Some(&b))).await).await;
    assert!(page.contains("j.bakker") && page.contains("moet wachtwoord nog kiezen"));
}

#[tokio::test]
async fn beheer_invites_accepts_a_join_request_and_manages_devices_and_the_audit_log() {
    let Fixture { app, node, dir, .. } = fixture();
    let b = login(&app, "b.beheer").await;
    let csrf = session_csrf(&app, &b).await;
    let resp = send(
        &app,
        post(
            "/beheer/uitnodigen",
            Some(&b),
            format!("csrf={csrf}&partij=gemeente-bodegraven&rol=gemeente"),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    assert!(
        page.contains("<svg") && page.contains("</svg>"),
        "a QR code"
    );
    let at = page.find("id=\"uitnodiging\">").unwrap() + 17;
    let code = page[at..at + page[at..].find('<').unwrap()].to_owned();
    assert!(code.starts_with("regiosync-invite-"), "{code}");
    for body in [
        "partij=%3Cscript%3E&rol=gemeente",
        "partij=gemeente-x&rol=koninkrijk",
    ] {
        let resp = send(
            &app,
            post(
                "/beheer/uitnodigen",
                Some(&b),
                format!("csrf={csrf}&{body}"),
            ),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    // The new node's join request, uploaded.
    let other = dir.path().join("gemeente-bodegraven");
    Node::init(
        &other,
        PartyName::new("gemeente-bodegraven").unwrap(),
        Role::Gemeente,
        None,
    )
    .unwrap();
    let request = Node::open(&other).unwrap().join_request(&code).unwrap();
    // Without or with a wrong token: refused, nothing accepted.
    let resp = send(
        &app,
        multipart("/beheer/aanmelding", &b, &"0".repeat(64), &request),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Too large; not a join request.
    let resp = send(
        &app,
        multipart("/beheer/aanmelding", &b, &csrf, &vec![7u8; 8 * 1024]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = send(
        &app,
        multipart(
            "/beheer/aanmelding",
            &b,
            &csrf,
            b"<script>geen aanmelding</script>",
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let devices = node.lock().await.region_state().unwrap().devices.len();
    let resp = send(&app, multipart("/beheer/aanmelding", &b, &csrf, &request)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(text(resp).await.contains("gemeente-bodegraven"));
    assert_eq!(
        node.lock().await.region_state().unwrap().devices.len(),
        devices + 1
    );
    // Used once only.
    let resp = send(&app, multipart("/beheer/aanmelding", &b, &csrf, &request)).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The bundle imports on the new node.
    let resp = send(&app, get("/beheer/bundel", Some(&b))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let bundle = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let new_id = {
        let mut n = Node::open(&other).unwrap();
        n.import(&bundle).unwrap();
        n.info().node_id
    };
    // Devices: designate a relay, then remove the device after confirming.
    let page = text(send(&app, get("/beheer/apparaten", Some(&b))).await).await;
    assert!(page.contains(&new_id.to_string()));
    let resp = send(
        &app,
        post(
            &format!("/beheer/apparaten/{new_id}/relay"),
            Some(&b),
            format!("csrf={csrf}&aan=ja"),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        node.lock()
            .await
            .region_state()
            .unwrap()
            .is_dossier_relay(&new_id)
    );
    let page = text(
        send(
            &app,
            get(&format!("/beheer/apparaten/{new_id}/verwijderen"), Some(&b)),
        )
        .await,
    )
    .await;
    assert!(page.contains("kan niet ongedaan"));
    let resp = send(
        &app,
        post(
            &format!("/beheer/apparaten/{new_id}/verwijderen"),
            Some(&b),
            format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        node.lock()
            .await
            .region_state()
            .unwrap()
            .active_device(&new_id)
            .is_some()
    );
    let resp = send(
        &app,
        post(
            &format!("/beheer/apparaten/{new_id}/verwijderen"),
            Some(&b),
            format!("csrf={csrf}&zeker=ja"),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        node.lock()
            .await
            .region_state()
            .unwrap()
            .active_device(&new_id)
            .is_none()
    );
    for path in [
        format!("/beheer/apparaten/{new_id}/verwijderen"),
        "/beheer/apparaten/12D3KooWnietbestaand/verwijderen".into(),
    ] {
        assert_eq!(
            send(&app, get(&path, Some(&b))).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // The audit log page verifies the chain.
    let mut n = node.lock().await;
    n.create_dossier(
        &NewDossier {
            woongemeente: PartyName::new("gemeente-gouda").unwrap(),
            basis: regiosync_core::dossier::access::Basis::WettelijkeTaak,
            purpose: "Jeugdwet".into(),
            fields: vec![],
        },
        &Reader {
            who: Who::Cli {
                os_user: "jan".into(),
                declared: Some("<b>j.bakker</b>".into()),
            },
            purpose: "aanmaken".into(),
        },
    )
    .unwrap();
    drop(n);
    let page = text(send(&app, get("/beheer/auditlog", Some(&b))).await).await;
    assert!(page.contains("De hashketen is intact: 1 regels"), "{page}");
    assert!(page.contains("cli: jan (--user &#60;b&#62;j.bakker&#60;/b&#62;)"));
}
