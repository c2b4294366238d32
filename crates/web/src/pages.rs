//! The handlers of this step's pages: Inloggen, Uitloggen, Wachtwoord wijzigen,
//! Overzicht, Plannen (list and plan), Beheer (accounts).

use axum::extract::{FromRequestParts, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use regiosync_core::identity::SecretString;
use regiosync_node::documents::KIND_PLAN;
use regiosync_node::staff::{self, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, StaffRole};
use regiosync_node::{Node, NodeError};

use crate::app::AppState;
use crate::auth::{
    Allowed, CheckedForm, ClientAddr, LOGIN_COOKIE, ReadPlans, Staff, check_origin, cookie,
    expired_cookie, login_cookie, session_cookie, tokens_match,
};
use crate::error::{WebError, see_other};
use crate::form::Fields;
use crate::templates::{
    Chrome, DocView, LoginPage, OverviewPage, PartyView, PasswordPage, PeerView, PlansPage,
    UserChrome, render,
};

/// Most documents listed on the overview.
const OVERVIEW_DOCS: usize = 20;
/// A status file older than this means the sync service is not running.
const STATUS_STALE_SECS: i64 = 10;

/// The frame of a signed-in page.
pub(crate) fn chrome(staff: &Staff, title: &str, active: &'static str) -> Chrome {
    Chrome {
        title: title.to_owned(),
        user: Some(UserChrome {
            name: staff.name().to_owned(),
            role: staff.role().as_str(),
            csrf: staff.session.csrf.clone(),
            manage: staff.role() == StaffRole::Beheerder,
            dossiers: staff.role() == StaffRole::Dossier,
        }),
        active,
    }
}

/// `12-03-2027 14:05 UTC`.
pub(crate) fn format_time(unix_secs: i64) -> String {
    let f = time::macros::format_description!("[day]-[month]-[year] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| t.format(&f).ok())
        .unwrap_or_else(|| "–".into())
}

fn with_cookie(mut resp: Response, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

fn random_token() -> Result<String, WebError> {
    let mut b = [0u8; 32];
    regiosync_core::id::fill_random(&mut b).map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(hex::encode(b))
}

fn is_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn login_page(
    csrf: &str,
    name: &str,
    error: Option<&str>,
    notice: Option<&str>,
    status: StatusCode,
) -> Response {
    let page = LoginPage {
        chrome: Chrome::anonymous("Inloggen"),
        csrf,
        name,
        error,
        notice,
    };
    let resp = (status, render(&page)).into_response();
    with_cookie(resp, &login_cookie(csrf))
}

/// GET /inloggen: the sign-in form, with a fresh pre-session CSRF token (or the
/// browser's current one).
pub(crate) async fn login_form(
    headers: axum::http::HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, WebError> {
    let token = match cookie(&headers, LOGIN_COOKIE) {
        Some(t) if is_token(t) => t.to_owned(),
        _ => random_token()?,
    };
    let notice = match q.as_deref() {
        Some("uitgelogd") => Some("U bent uitgelogd."),
        Some("gewijzigd") => Some("Uw wachtwoord is gewijzigd. Log in met het nieuwe wachtwoord."),
        _ => None,
    };
    Ok(login_page(&token, "", None, notice, StatusCode::OK))
}

/// POST /inloggen.
pub(crate) async fn login(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, WebError> {
    let (mut parts, body) = req.into_parts();
    check_origin(&parts)?;
    let ClientAddr(addr) = ClientAddr::from_request_parts(&mut parts, &state)
        .await
        .unwrap_or(ClientAddr(std::net::IpAddr::V4(
            std::net::Ipv4Addr::UNSPECIFIED,
        )));
    let fields = Fields::from_body(&parts.headers, body, state.config().max_body).await?;
    let expected = cookie(&parts.headers, LOGIN_COOKIE).ok_or(WebError::Csrf("no login cookie"))?;
    let given = fields.get("csrf").ok_or(WebError::Csrf("missing token"))?;
    if !is_token(expected) || !tokens_match(given, expected) {
        return Err(WebError::Csrf("wrong token"));
    }
    let csrf = expected.to_owned();
    let name = fields
        .required("naam", "Naam", staff::MAX_NAME_CHARS)?
        .trim()
        .to_ascii_lowercase();
    let password = SecretString::from(
        fields
            .required("wachtwoord", "Wachtwoord", MAX_PASSWORD_BYTES)?
            .to_owned(),
    );
    let now = std::time::Instant::now();
    if let Some(retry_after) = state.throttle().check(&name, addr, now) {
        return Err(WebError::Throttled { retry_after });
    }
    let n = name.clone();
    let creds = state
        .with_node(move |node| Ok(node.staff_credentials(&n)?))
        .await?;
    let checked = creds.clone();
    let ok = state
        .hashing(move || match &checked {
            Some(c) => c.verify(&password) && !c.account().disabled,
            None => {
                staff::verify_dummy(&password);
                false
            }
        })
        .await?;
    let Some(creds) = creds.filter(|_| ok) else {
        state.throttle().failed(&name, addr, now);
        tracing::info!(
            status = 401,
            kind = "bad_credentials",
            "web sign-in refused"
        );
        return Ok(login_page(
            &csrf,
            &name,
            Some("De naam of het wachtwoord klopt niet, of het account is uitgeschakeld."),
            None,
            StatusCode::UNAUTHORIZED,
        ));
    };
    state.throttle().succeeded(&name);
    let limits = state.config().session;
    let must_change = creds.account().must_change;
    let role = creds.account().role;
    let session = state
        .with_node(move |node| Ok(node.start_staff_session(&creds, limits)?))
        .await?;
    tracing::info!(role = %role, "web sign-in");
    let to = if must_change {
        "/wachtwoord"
    } else {
        "/overzicht"
    };
    let resp = with_cookie(see_other(to), &session_cookie(&session.token));
    Ok(with_cookie(resp, &expired_cookie(LOGIN_COOKIE)))
}

/// POST /uitloggen: ends the session here and in the store.
pub(crate) async fn logout(
    State(state): State<AppState>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    let token = form.staff.token.clone();
    state
        .with_node(move |n| Ok(n.end_staff_session(&token)?))
        .await?;
    tracing::info!("web sign-out");
    Ok(with_cookie(
        see_other("/inloggen?uitgelogd"),
        &expired_cookie(crate::auth::SESSION_COOKIE),
    ))
}

fn password_page(staff: &Staff, error: Option<&str>, status: StatusCode) -> Response {
    let page = PasswordPage {
        chrome: chrome(staff, "Wachtwoord wijzigen", "wachtwoord"),
        csrf: &staff.session.csrf,
        forced: staff.session.account.must_change,
        error,
        min_chars: MIN_PASSWORD_CHARS,
    };
    (status, render(&page)).into_response()
}

/// GET /wachtwoord.
pub(crate) async fn password_form(staff: Staff) -> Response {
    password_page(&staff, None, StatusCode::OK)
}

/// POST /wachtwoord: checks the current password (counted by the sign-in throttle),
/// sets the new one, which ends every session of the account, and starts a new
/// session for this browser.
pub(crate) async fn change_password(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    form: CheckedForm,
) -> Result<Response, WebError> {
    let staff = form.staff;
    let f = &form.fields;
    let current = f.required("huidig", "Huidig wachtwoord", MAX_PASSWORD_BYTES)?;
    let new = f
        .required("nieuw", "Nieuw wachtwoord", MAX_PASSWORD_BYTES)?
        .to_owned();
    let again = f.required("herhaal", "Nieuw wachtwoord nogmaals", MAX_PASSWORD_BYTES)?;
    let same = new == current;
    let current = SecretString::from(current.to_owned());
    let name = staff.name().to_owned();
    let now = std::time::Instant::now();
    if let Some(retry_after) = state.throttle().check(&name, addr, now) {
        return Err(WebError::Throttled { retry_after });
    }
    let n = name.clone();
    let creds = state
        .with_node(move |node| Ok(node.staff_credentials(&n)?))
        .await?
        .ok_or(WebError::NotSignedIn)?;
    if !state.hashing(move || creds.verify(&current)).await? {
        state.throttle().failed(&name, addr, now);
        return Ok(password_page(
            &staff,
            Some("Het huidige wachtwoord klopt niet."),
            StatusCode::UNAUTHORIZED,
        ));
    }
    if new != again {
        return Ok(password_page(
            &staff,
            Some("De twee nieuwe wachtwoorden zijn niet gelijk."),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    if new.chars().count() < MIN_PASSWORD_CHARS {
        return Ok(password_page(
            &staff,
            Some("Het nieuwe wachtwoord is te kort."),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    if same {
        return Ok(password_page(
            &staff,
            Some("Kies een ander wachtwoord dan het huidige."),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    let new = SecretString::from(new);
    let limits = state.config().session;
    let session = state
        .with_node(move |node| {
            node.set_staff_password(&name, &new, false)?;
            let creds = node
                .staff_credentials(&name)?
                .ok_or_else(|| NodeError::Staff(staff::StaffError::UnknownUser(name.clone())))?;
            Ok(node.start_staff_session(&creds, limits)?)
        })
        .await?;
    tracing::info!("web password changed");
    Ok(with_cookie(
        see_other("/overzicht"),
        &session_cookie(&session.token),
    ))
}

/// The documents of kind plan with their last change, newest first.
fn plan_views(node: &Node, limit: usize) -> Result<(Vec<DocView>, usize), WebError> {
    let state = node.region_state().ok();
    let mut docs: Vec<(i64, DocView)> = Vec::new();
    let plans: Vec<_> = node
        .documents()?
        .into_iter()
        .filter(|d| d.kind == KIND_PLAN)
        .collect();
    let total = plans.len();
    for d in plans {
        // A plan this party may not read is not listed.
        if let Some(s) = &state
            && !s.may_read(&d.id, &node.info().party)
        {
            continue;
        }
        let last = node.last_change(&d.id).ok().flatten();
        let kind = d
            .subkind
            .parse::<regiosync_core::plan::PlanKind>()
            .map(|k| k.label().to_owned())
            .unwrap_or_else(|_| d.subkind.clone());
        docs.push((
            last.as_ref().map_or(0, |e| e.0),
            DocView {
                id: d.id.to_string(),
                short: d.short,
                title: d.title,
                kind,
                last_change: last
                    .as_ref()
                    .map_or_else(|| "–".into(), |e| format_time(e.0)),
                last_by: last
                    .and_then(|e| e.1)
                    .map_or_else(|| "–".into(), |p| p.to_string()),
            },
        ));
    }
    docs.sort_by_key(|d| std::cmp::Reverse(d.0));
    let more = total.saturating_sub(limit.min(docs.len()));
    Ok((docs.into_iter().take(limit).map(|(_, d)| d).collect(), more))
}

/// GET /overzicht.
pub(crate) async fn overview(
    State(state): State<AppState>,
    who: Allowed<ReadPlans>,
) -> Result<Response, WebError> {
    let staff = who.staff;
    let page = state
        .with_node(move |node| {
            let info = node.info().clone();
            let region = node.region_state().ok();
            let parties = region
                .as_ref()
                .map(|r| {
                    r.parties
                        .iter()
                        .filter(|(_, p)| !p.removed)
                        .map(|(name, p)| PartyView {
                            name: name.to_string(),
                            role: p.role.to_string(),
                            admin: p.admin,
                            devices: r.devices_of(name).count(),
                            this_node: *name == info.party,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let status = regiosync_node::service::read_status(node.dir())
                .filter(|s| now - s.updated <= STATUS_STALE_SECS);
            let running = status.is_some();
            let peers = status
                .map(|s| {
                    s.peers
                        .iter()
                        .map(|(id, p)| PeerView {
                            short_id: id
                                .chars()
                                .skip(id.chars().count().saturating_sub(8))
                                .collect(),
                            party: p.party.clone(),
                            state: if p.connected {
                                match p.via.as_deref() {
                                    Some("relay") => "verbonden via relay".into(),
                                    _ => "verbonden".into(),
                                }
                            } else if p.refuses_this_device {
                                "weigert dit apparaat (nog)".into()
                            } else if p.last_error.is_some() {
                                "niet verbonden (fout bij laatste poging)".into()
                            } else {
                                "offline".into()
                            },
                            last_sync: p
                                .last_contact
                                .map_or_else(|| "nog nooit".into(), format_time),
                            docs: if p.last_contact.is_some() {
                                format!(
                                    "{} gelijk, {} voor, {} achter",
                                    p.docs.in_sync,
                                    p.docs.ahead.len(),
                                    p.docs.behind.len()
                                )
                            } else {
                                "–".into()
                            },
                        })
                        .collect()
                })
                .unwrap_or_default();
            let (docs, docs_more) = plan_views(node, OVERVIEW_DOCS)?;
            Ok(OverviewPage {
                chrome: chrome(&staff, "Overzicht", "overzicht"),
                region: region.map(|r| r.name),
                party: info.party.to_string(),
                node_id: info.node_id.to_string(),
                parties,
                running,
                peers,
                docs,
                docs_more,
            })
        })
        .await?;
    Ok(render(&page))
}

/// GET /plannen.
pub(crate) async fn plans(
    State(state): State<AppState>,
    who: Allowed<ReadPlans>,
) -> Result<Response, WebError> {
    let staff = who.staff;
    let page = state
        .with_node(move |node| {
            let (plans, _) = plan_views(node, usize::MAX)?;
            Ok(PlansPage {
                chrome: chrome(&staff, "Plannen", "plannen"),
                plans,
            })
        })
        .await?;
    Ok(render(&page))
}

/// GET /assets/app.css (in the binary).
pub(crate) async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/app.css"),
    )
        .into_response()
}
