//! The Beheer pages (role `beheerder` only): staff accounts (add with a one-time
//! password shown once, disable, enable, reset the password), inviting a party (the
//! one-time code and its QR code, an SVG made here), accepting a join request file
//! (upload, capped, the same checks as `regiosync accept`; the region's bundle for
//! download), the region's devices (removal after a confirmation; dossier relays),
//! and the audit log with the result of verifying its hash chain.
//!
//! Every handler takes or checks [`Allowed<ManageNode>`]; every change goes through
//! the node's API, which checks the device's authority in the region as it does for
//! the CLI.

use axum::extract::{FromRequest, FromRequestParts, Multipart, Path, Query, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use regiosync_core::audit::verify_chain;
use regiosync_core::id::{NodeId, PartyName, Role};
use regiosync_core::identity::ExposeSecret;
use regiosync_node::NodeError;
use regiosync_node::StoreRead;
use regiosync_node::input_file::InputKind;
use regiosync_node::staff::{self, StaffError, StaffRole};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{Allowed, CheckedForm, ManageNode, Staff, check_origin, tokens_match};
use crate::error::{WebError, see_other};
use crate::pages::{chrome, format_time};
use crate::templates::{Chrome, SelectOption, render};

/// How long an invite from the web app is valid.
const INVITE_TTL_SECS: i64 = 7 * 24 * 3600;
/// Audit entries on one page.
const AUDIT_PAGE: usize = 100;

fn manager(staff: Staff) -> Result<Staff, WebError> {
    Ok(Allowed::<ManageNode>::check(staff)?.staff)
}

/// A staff or membership refusal as a page a person can act on.
fn refusal(e: NodeError) -> WebError {
    match e {
        NodeError::Staff(StaffError::UnknownUser(_)) => WebError::NotFound,
        NodeError::Staff(StaffError::NameTaken(_)) => {
            WebError::Unprocessable("Er is al een account met deze naam.".into())
        }
        NodeError::Staff(StaffError::BadName(_)) => WebError::Unprocessable(
            "Een naam heeft alleen letters, cijfers en . _ - @ (hoogstens 64 tekens).".into(),
        ),
        NodeError::Staff(StaffError::UnknownRole(_)) => {
            WebError::Unprocessable("Kies een rol uit de lijst.".into())
        }
        NodeError::JoinRefused(why) => {
            WebError::Unprocessable(format!("De aanmelding is geweigerd: {why}."))
        }
        NodeError::Invite(e) => {
            WebError::Unprocessable(format!("Dit is geen geldige aanmelding: {e}."))
        }
        NodeError::Membership(why) | NodeError::Acl(why) => {
            WebError::Unprocessable(format!("De regio staat dit niet toe: {why}."))
        }
        NodeError::Refused(r) => {
            WebError::Unprocessable(format!("De regio staat dit niet toe: {r}."))
        }
        NodeError::BadDisplayName { .. } => WebError::Unprocessable(
            "Die weergavenaam kan niet: leeg, te lang, of al van een andere partij.".into(),
        ),
        NodeError::UnknownParty { .. } => {
            WebError::Unprocessable("Die partij hoort niet bij de regio.".into())
        }
        e => e.into(),
    }
}

fn roles() -> Vec<SelectOption> {
    [
        StaffRole::Lezer,
        StaffRole::Beleid,
        StaffRole::Dossier,
        StaffRole::Beheerder,
    ]
    .into_iter()
    .map(|r| SelectOption {
        value: r.as_str().to_owned(),
        label: format!("{} – {}", r.as_str(), r.description()),
    })
    .collect()
}

/// A staff account line.
pub(crate) struct AccountView {
    name: String,
    role: &'static str,
    role_description: &'static str,
    state: &'static str,
    disabled: bool,
}

#[derive(askama::Template)]
#[template(path = "accounts.html")]
pub(crate) struct AccountsPage {
    chrome: Chrome,
    csrf: String,
    me: String,
    accounts: Vec<(AccountView, String)>,
    roles: Vec<SelectOption>,
}

/// GET /beheer/accounts.
pub(crate) async fn accounts(
    State(state): State<AppState>,
    who: Allowed<ManageNode>,
) -> Result<Response, WebError> {
    let staff = who.staff;
    let accounts = state.with_node(|n| Ok(n.staff_accounts()?)).await?;
    let page = AccountsPage {
        chrome: chrome(&staff, "Beheer: accounts", "beheer"),
        csrf: staff.session.csrf.clone(),
        me: staff.name().to_owned(),
        accounts: accounts
            .into_iter()
            .map(|a| {
                (
                    AccountView {
                        name: a.name,
                        role: a.role.as_str(),
                        role_description: a.role.description(),
                        state: if a.disabled {
                            "uitgeschakeld"
                        } else if a.must_change {
                            "moet wachtwoord nog kiezen"
                        } else {
                            "actief"
                        },
                        disabled: a.disabled,
                    },
                    format_time(a.created_ms / 1000),
                )
            })
            .collect(),
        roles: roles(),
    };
    Ok(render(&page))
}

#[derive(askama::Template)]
#[template(path = "beheer_password.html")]
pub(crate) struct OneTimePasswordPage {
    chrome: Chrome,
    name: String,
    password: String,
    new_account: bool,
}

fn one_time_page(staff: &Staff, name: String, password: &str, new_account: bool) -> Response {
    render(&OneTimePasswordPage {
        chrome: chrome(staff, "Eenmalig wachtwoord", "beheer"),
        name,
        password: password.to_owned(),
        new_account,
    })
}

/// POST /beheer/accounts: a new account with a one-time password, shown once on
/// the answer page (never stored in clear, never logged).
pub(crate) async fn add_account(
    State(state): State<AppState>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    let staff = manager(form.staff.clone())?;
    let name = form
        .fields
        .required("naam", "Naam", staff::MAX_NAME_CHARS * 4)?
        .trim()
        .to_owned();
    let role: StaffRole = form
        .fields
        .required("rol", "Rol", 32)?
        .parse()
        .map_err(|_| WebError::Unprocessable("Kies een rol uit de lijst.".into()))?;
    let password = staff::generate_password().map_err(|e| WebError::Internal(e.to_string()))?;
    let shown = zeroize::Zeroizing::new(password.expose_secret().to_owned());
    let account = state
        .with_node(move |n| n.add_staff(&name, role, &password, true).map_err(refusal))
        .await?;
    tracing::info!(role = %role, "web: staff account added");
    Ok(one_time_page(&staff, account.name, &shown, true))
}

/// POST /beheer/accounts/actie: `actie` = `uitschakelen`, `inschakelen` or
/// `wachtwoord` (a new one-time password; the account's sessions end).
pub(crate) async fn account_action(
    State(state): State<AppState>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    let staff = manager(form.staff.clone())?;
    let name = form
        .fields
        .required("naam", "Naam", staff::MAX_NAME_CHARS * 4)?
        .trim()
        .to_ascii_lowercase();
    let action = form.fields.required("actie", "Actie", 32)?.to_owned();
    if name == staff.name() && action != "inschakelen" {
        return Err(WebError::Unprocessable(
            "Uw eigen account schakelt u hier niet uit en zet u hier geen nieuw wachtwoord: gebruik Wachtwoord wijzigen, of vraag een andere beheerder.".into(),
        ));
    }
    match action.as_str() {
        "uitschakelen" | "inschakelen" => {
            let off = action == "uitschakelen";
            state
                .with_node(move |n| n.set_staff_disabled(&name, off).map_err(refusal))
                .await?;
            tracing::info!(disabled = off, "web: staff account changed");
            Ok(see_other("/beheer/accounts"))
        }
        "wachtwoord" => {
            let password =
                staff::generate_password().map_err(|e| WebError::Internal(e.to_string()))?;
            let shown = zeroize::Zeroizing::new(password.expose_secret().to_owned());
            let n2 = name.clone();
            state
                .with_node(move |n| n.set_staff_password(&n2, &password, true).map_err(refusal))
                .await?;
            tracing::info!("web: staff password reset");
            Ok(one_time_page(&staff, name, &shown, false))
        }
        _ => Err(WebError::BadRequest("Onbekende actie.".into())),
    }
}

#[derive(askama::Template)]
#[template(path = "beheer_invite.html")]
pub(crate) struct InvitePage {
    chrome: Chrome,
    csrf: String,
    roles: Vec<SelectOption>,
    /// The issued invite: party, code, QR SVG (made here from the code), expiry.
    issued: Option<(String, String, String, String)>,
}

fn party_roles() -> Vec<SelectOption> {
    [
        Role::Gemeente,
        Role::Kerngemeente,
        Role::Roc,
        Role::Swv,
        Role::Rmc,
    ]
    .into_iter()
    .map(|r| SelectOption {
        value: r.to_string(),
        label: r.to_string(),
    })
    .collect()
}

/// GET /beheer/uitnodigen.
pub(crate) async fn invite_form(who: Allowed<ManageNode>) -> Response {
    let staff = who.staff;
    render(&InvitePage {
        chrome: chrome(&staff, "Beheer: partij uitnodigen", "beheer"),
        csrf: staff.session.csrf.clone(),
        roles: party_roles(),
        issued: None,
    })
}

/// The QR code of `text` as an SVG element (black on white, at least 240 px).
pub(crate) fn qr_svg(text: &str) -> Result<String, WebError> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| WebError::Internal(format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}

/// POST /beheer/uitnodigen: issues an invite for a party (the node checks that
/// this device's party is a region admin for a new party); shows the one-time code
/// and its QR code. The party's display name is set after it joined.
pub(crate) async fn invite(
    State(state): State<AppState>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    let staff = manager(form.staff.clone())?;
    let party = PartyName::new(form.fields.required("partij", "Partij", 64)?.trim())
        .map_err(|_| {
            WebError::Unprocessable(
                "Een partijnaam is kort, met kleine letters, cijfers en streepjes, bv. gemeente-gouda."
                    .into(),
            )
        })?;
    let role: Role = form
        .fields
        .required("rol", "Rol", 32)?
        .parse()
        .map_err(|_| WebError::Unprocessable("Kies een rol uit de lijst.".into()))?;
    let admin = form.fields.get("beheer") == Some("ja");
    let p = party.clone();
    let code = state
        .with_node(move |n| n.invite(p, role, admin, INVITE_TTL_SECS).map_err(refusal))
        .await?;
    let text = code.encode();
    let svg = qr_svg(&text)?;
    tracing::info!(role = %role, "web: invite issued");
    Ok(render(&InvitePage {
        chrome: chrome(&staff, "Beheer: partij uitnodigen", "beheer"),
        csrf: staff.session.csrf.clone(),
        roles: party_roles(),
        issued: Some((party.to_string(), text, svg, format_time(code.expires))),
    }))
}

#[derive(askama::Template)]
#[template(path = "beheer_join.html")]
pub(crate) struct JoinPage {
    chrome: Chrome,
    csrf: String,
    max_kib: u64,
    /// The accepted device: party, short device id, whether the party is new.
    accepted: Option<(String, String, bool)>,
}

/// GET /beheer/aanmelding.
pub(crate) async fn join_form(who: Allowed<ManageNode>) -> Response {
    let staff = who.staff;
    render(&JoinPage {
        chrome: chrome(&staff, "Beheer: aanmelding accepteren", "beheer"),
        csrf: staff.session.csrf.clone(),
        max_kib: InputKind::JoinRequest.cap().div_ceil(1024),
        accepted: None,
    })
}

/// POST /beheer/aanmelding (multipart: `csrf`, `verzoek` = the join request
/// file, at most the CLI's cap): the same checks as `regiosync accept`
/// (`Node::accept`), then the page offers the region's bundle.
pub(crate) async fn accept(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, WebError> {
    let (mut parts, body) = req.into_parts();
    check_origin(&parts)?;
    let staff = manager(Staff::from_request_parts(&mut parts, &state).await?)?;
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("multipart/form-data") {
        return Err(WebError::BadRequest(
            "Het bestand is niet als upload verstuurd.".into(),
        ));
    }
    let req = Request::from_parts(parts, body);
    let mut multipart = Multipart::from_request(req, &state)
        .await
        .map_err(|_| WebError::BadRequest("Het formulier is geen geldige upload.".into()))?;
    let cap = InputKind::JoinRequest.cap() as usize;
    let mut csrf: Option<String> = None;
    let mut file: Option<Vec<u8>> = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|_| WebError::BadRequest("Het formulier is geen geldige upload.".into()))?
    {
        let name = field.name().unwrap_or("").to_owned();
        let limit = if name == "verzoek" { cap } else { 256 };
        let mut data = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|_| WebError::BadRequest("Het formulier is geen geldige upload.".into()))?
        {
            if data.len() + chunk.len() > limit {
                return Err(WebError::TooLarge);
            }
            data.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "csrf" => {
                csrf = Some(String::from_utf8(data).map_err(|_| WebError::Csrf("token"))?);
            }
            "verzoek" => file = Some(data),
            _ => {}
        }
    }
    let given = csrf.ok_or(WebError::Csrf("missing token"))?;
    if !tokens_match(&given, &staff.session.csrf) {
        return Err(WebError::Csrf("wrong token"));
    }
    let file = file
        .filter(|f| !f.is_empty())
        .ok_or_else(|| WebError::Unprocessable("Kies het aanmeldbestand.".into()))?;
    let accepted = state
        .with_node(move |n| n.accept(&file).map(|(a, _)| a).map_err(refusal))
        .await?;
    tracing::info!(new_party = accepted.new_party, "web: join request accepted");
    let device = accepted.device.to_string();
    Ok(render(&JoinPage {
        chrome: chrome(&staff, "Beheer: aanmelding accepteren", "beheer"),
        csrf: staff.session.csrf.clone(),
        max_kib: InputKind::JoinRequest.cap().div_ceil(1024),
        accepted: Some((
            accepted.party.to_string(),
            device
                .chars()
                .skip(device.len().saturating_sub(8))
                .collect(),
            accepted.new_party,
        )),
    }))
}

/// GET /beheer/bundel: the region's log as a bundle file (what `accept --out`
/// writes), for the new node to import.
pub(crate) async fn bundle(
    State(state): State<AppState>,
    _who: Allowed<ManageNode>,
) -> Result<Response, WebError> {
    let bytes = state.with_node(|n| Ok(n.export()?)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"regiosync-bundel.rgsy\"",
            ),
        ],
        bytes,
    )
        .into_response())
}

/// A device of the region.
pub(crate) struct DeviceView {
    id: String,
    short: String,
    party: String,
    relay: bool,
    this: bool,
}

#[derive(askama::Template)]
#[template(path = "beheer_devices.html")]
pub(crate) struct DevicesPage {
    chrome: Chrome,
    csrf: String,
    devices: Vec<DeviceView>,
}

fn short(id: &str) -> String {
    id.chars().skip(id.len().saturating_sub(8)).collect()
}

/// GET /beheer/apparaten: the active devices of the region.
pub(crate) async fn devices(
    State(state): State<AppState>,
    who: Allowed<ManageNode>,
) -> Result<Response, WebError> {
    let staff = who.staff;
    let page = state
        .with_node(move |n| {
            let region = n.region_state()?;
            let me = n.info().node_id;
            let devices = region
                .devices
                .iter()
                .filter(|(_, d)| !d.removed)
                .map(|(id, d)| DeviceView {
                    id: id.to_string(),
                    short: short(&id.to_string()),
                    party: format!("{} ({})", region.display_name(&d.party), d.party),
                    relay: d.dossier_relay,
                    this: *id == me,
                })
                .collect();
            Ok(DevicesPage {
                chrome: chrome(&staff, "Beheer: apparaten", "beheer"),
                csrf: staff.session.csrf.clone(),
                devices,
            })
        })
        .await?;
    Ok(render(&page))
}

fn device_of(raw: &str) -> Result<NodeId, WebError> {
    raw.parse::<NodeId>().map_err(|_| WebError::NotFound)
}

#[derive(askama::Template)]
#[template(path = "beheer_remove.html")]
pub(crate) struct RemovePage {
    chrome: Chrome,
    csrf: String,
    id: String,
    short: String,
    party: String,
}

/// GET /beheer/apparaten/{id}/verwijderen: the confirmation.
pub(crate) async fn remove_confirm(
    State(state): State<AppState>,
    who: Allowed<ManageNode>,
    Path(raw): Path<String>,
) -> Result<Response, WebError> {
    let id = device_of(&raw)?;
    let staff = who.staff;
    let page = state
        .with_node(move |n| {
            let region = n.region_state()?;
            let d = region.active_device(&id).ok_or(WebError::NotFound)?;
            Ok(RemovePage {
                chrome: chrome(&staff, "Beheer: apparaat verwijderen", "beheer"),
                csrf: staff.session.csrf.clone(),
                id: id.to_string(),
                short: short(&id.to_string()),
                party: format!("{} ({})", region.display_name(&d.party), d.party),
            })
        })
        .await?;
    Ok(render(&page))
}

/// POST /beheer/apparaten/{id}/verwijderen (`zeker=ja`): removes the device from
/// the region (the node checks this device's authority).
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    let id = device_of(&raw)?;
    manager(form.staff.clone())?;
    if form.fields.get("zeker") != Some("ja") {
        return Err(WebError::Unprocessable(
            "Niet bevestigd: vink het vakje aan om het apparaat te verwijderen.".into(),
        ));
    }
    state
        .with_node(move |n| {
            n.region_state()?
                .active_device(&id)
                .ok_or(WebError::NotFound)?;
            n.remove_device(id).map_err(refusal)
        })
        .await?;
    tracing::info!(device = %id, "web: device removed");
    Ok(see_other("/beheer/apparaten"))
}

/// POST /beheer/apparaten/{id}/relay (`aan` = `ja` or `nee`): designates the
/// device a dossier relay, or ends that (region admins only; the node checks).
pub(crate) async fn relay(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    let id = device_of(&raw)?;
    manager(form.staff.clone())?;
    let on = match form.fields.get("aan") {
        Some("ja") => true,
        Some("nee") => false,
        _ => return Err(WebError::BadRequest("Aan of uit?".into())),
    };
    state
        .with_node(move |n| {
            n.region_state()?
                .active_device(&id)
                .ok_or(WebError::NotFound)?;
            n.set_dossier_relay(id, on).map_err(refusal)
        })
        .await?;
    tracing::info!(device = %id, relay = on, "web: dossier relay changed");
    Ok(see_other("/beheer/apparaten"))
}

/// An audit entry as Beheer shows it.
pub(crate) struct AuditView {
    seq: i64,
    at: String,
    who: String,
    action: String,
    dossier: String,
    purpose: String,
}

#[derive(askama::Template)]
#[template(path = "beheer_audit.html")]
pub(crate) struct AuditPage {
    chrome: Chrome,
    intact: Result<usize, String>,
    rows: Vec<AuditView>,
    older: Option<i64>,
}

/// The audit page's query: `voor` (entries below this sequence number).
#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    voor: Option<i64>,
}

/// GET /beheer/auditlog: the chain verified, and a page of entries, newest first.
pub(crate) async fn audit(
    State(state): State<AppState>,
    who: Allowed<ManageNode>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, WebError> {
    let staff = who.staff;
    let page = state
        .with_node(move |n| {
            let store = n.store();
            let intact = verify_chain(store.audit_log().map_err(NodeError::from)?)
                .map_err(|b| format!("gebroken bij regel {}: {}", b.seq, b.reason));
            let rows = store
                .audit_log_page(q.voor, AUDIT_PAGE)
                .map_err(NodeError::from)?;
            let older = (rows.len() == AUDIT_PAGE)
                .then(|| rows.last().map(|r| r.0))
                .flatten()
                .filter(|s| *s > 1);
            Ok(AuditPage {
                chrome: chrome(&staff, "Beheer: auditlog", "beheer"),
                intact,
                rows: rows
                    .into_iter()
                    .map(|(seq, e, _)| AuditView {
                        seq,
                        at: format_time(e.at_ms / 1000),
                        who: e.who.to_string(),
                        action: e.action,
                        dossier: e.dossier.to_string(),
                        purpose: e.purpose,
                    })
                    .collect(),
                older,
            })
        })
        .await?;
    Ok(render(&page))
}

/// The Beheer routes.
pub(crate) fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/beheer", get(|| async { see_other("/beheer/accounts") }))
        .route("/beheer/accounts", get(accounts).post(add_account))
        .route("/beheer/accounts/actie", post(account_action))
        .route("/beheer/uitnodigen", get(invite_form).post(invite))
        .route("/beheer/aanmelding", get(join_form).post(accept))
        .route("/beheer/bundel", get(bundle))
        .route("/beheer/apparaten", get(devices))
        .route(
            "/beheer/apparaten/{id}/verwijderen",
            get(remove_confirm).post(remove),
        )
        .route("/beheer/apparaten/{id}/relay", post(relay))
        .route("/beheer/auditlog", get(audit))
}
