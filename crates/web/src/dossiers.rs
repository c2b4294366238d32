//! The Dossiers pages (role `dossier` only): the dossiers this party may read, a
//! dossier opened for a stated purpose (doelbinding), new dossier, note, field edit,
//! grant, revoke, erase (after a confirmation), and a dossier's access history.
//!
//! Every handler takes [`Allowed<WorkWithDossiers>`], so every other role gets 403
//! from the server. A dossier this party may not read today (another party's, an
//! erased one, an unknown or malformed id) is 404, the same answer as an id that
//! names nothing: the page does not tell whether it exists. Reads and writes go
//! through the node's own API (the one the CLI uses), which checks access, seals,
//! and writes the audit entry with the signed-in account ([`Who::Web`]).
//!
//! Opening a dossier is a POST with the purpose: a GET never unseals anything, so
//! neither a prefetch nor a link can write a read into the audit log. A form on
//! the dossier page carries the purpose along, and the page shown after the action
//! is a new (audited) read for that purpose.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use regiosync_core::audit::{MAX_AUDIT_TEXT, Who};
use regiosync_core::control::RegionState;
use regiosync_core::dossier::access::{Basis, DossierRejection};
use regiosync_core::dossier::{Dossier, DossierField, MAX_FIELD_CHARS, MAX_TEXT_BYTES};
use regiosync_core::id::{DocId, PartyName, Role};
use regiosync_core::plan::date_format;
use regiosync_node::StoreRead;
use regiosync_node::dossiers::{NewDossier, Reader};
use regiosync_node::{Node, NodeError};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{Allowed, CheckedForm, Staff, WorkWithDossiers};
use crate::error::{WebError, see_other};
use crate::pages::{chrome, format_time};
use crate::templates::render;
use crate::templates::{Chrome, SelectOption};

/// Dossiers on one page of the list.
pub(crate) const PAGE_SIZE: usize = 50;

/// The dossier's id from the URL: a whole id (32 hex digits), else 404.
fn parse_id(raw: &str) -> Result<DocId, WebError> {
    raw.parse::<DocId>().map_err(|_| WebError::NotFound)
}

/// 404 unless this party may read the dossier today.
fn readable(node: &Node, id: &DocId) -> Result<(), WebError> {
    if node.may_read_dossier(id)? {
        Ok(())
    } else {
        Err(WebError::NotFound)
    }
}

fn reader(staff: &Staff, purpose: &str) -> Reader {
    Reader {
        who: Who::Web {
            account: staff.name().to_owned(),
        },
        purpose: purpose.to_owned(),
    }
}

/// The purpose from a form: required, at most 512 bytes.
fn purpose_of(form: &CheckedForm, name: &str) -> Result<String, WebError> {
    let p = form.fields.required(name, "Doel", MAX_AUDIT_TEXT)?.trim();
    if p.is_empty() {
        return Err(WebError::Unprocessable(
            "Vul het doel in: waarvoor hebt u dit dossier nodig? (doelbinding)".into(),
        ));
    }
    Ok(p.to_owned())
}

/// A node refusal as a page a person can act on (nothing was changed).
fn refusal(e: NodeError) -> WebError {
    match e {
        NodeError::UnknownDossier(_) | NodeError::UnknownDocument(_) | NodeError::Erased { .. } => {
            WebError::NotFound
        }
        NodeError::NoDossierAccess => WebError::NotFound,
        NodeError::DossierNeedsNewKey => WebError::Unprocessable(
            "Een partij heeft de toegang tot dit dossier verloren. De eigenaar moet eerst een nieuwe sleutel maken (dat gebeurt bij elke wijziging door de eigenaar); tot dan schrijven andere partijen niet in dit dossier.".into(),
        ),
        NodeError::GrantEndsInPast { until, today } => WebError::Unprocessable(format!(
            "De einddatum {until} ligt in het verleden: kies vandaag ({today}) of later."
        )),
        NodeError::DossierRejected(why) => WebError::Unprocessable(rejection_nl(&why).into()),
        NodeError::DossierRefused(why) => {
            WebError::Unprocessable(format!("De node voert dit niet uit. Reden: {why}"))
        }
        NodeError::Dossier(e) => WebError::Unprocessable(format!("Ongeldige waarde: {e}")),
        e => e.into(),
    }
}

/// Why the region's rules refuse a dossier op, in Dutch (the node's own message
/// is English, for the CLI and the log).
fn rejection_nl(why: &DossierRejection) -> &'static str {
    match why {
        DossierRejection::NotOwner => {
            "Alleen de eigenaar van het dossier geeft toegang of trekt die in."
        }
        DossierRejection::NotOwnerOrAdmin => {
            "Alleen de eigenaar van het dossier of een beheerder van de regio wist het."
        }
        DossierRejection::UnknownParty => "Die partij hoort niet (meer) bij de regio.",
        DossierRejection::NoGrant => "Die partij heeft geen toegang die ingetrokken kan worden.",
        DossierRejection::Erased => "Het dossier is gewist.",
        DossierRejection::NoAccess | DossierRejection::WrapToOutsider => {
            "Die partij heeft geen toegang tot het dossier."
        }
        DossierRejection::AuthorRemoved | DossierRejection::UnknownAuthor => {
            "Dit apparaat hoort niet (meer) bij de regio."
        }
        _ => "De regels van de regio staan dit niet toe.",
    }
}

fn party_of(state: &RegionState, raw: &str) -> Result<PartyName, WebError> {
    let p = PartyName::new(raw.trim())
        .map_err(|_| WebError::Unprocessable("Kies een partij uit de lijst.".into()))?;
    if state.active_party(&p).is_none() {
        return Err(WebError::Unprocessable(
            "Die partij hoort niet (meer) bij de regio.".into(),
        ));
    }
    Ok(p)
}

fn basis_of(raw: &str) -> Result<Basis, WebError> {
    match raw {
        "toestemming" => Ok(Basis::Toestemming),
        "wettelijke-taak" => Ok(Basis::WettelijkeTaak),
        _ => Err(WebError::Unprocessable(
            "Kies een grondslag: toestemming of wettelijke taak.".into(),
        )),
    }
}

fn basis_label(b: Basis) -> &'static str {
    match b {
        Basis::Toestemming => "toestemming",
        Basis::WettelijkeTaak => "wettelijke taak",
        _ => "anders",
    }
}

fn field_label(f: DossierField) -> &'static str {
    match f {
        DossierField::Naam => "Naam",
        DossierField::Geboortedatum => "Geboortedatum",
        DossierField::Woongemeente => "Woongemeente",
        DossierField::Opleiding => "Opleiding",
        DossierField::Locatie => "Locatie",
        DossierField::Ondersteuningsbehoefte => "Ondersteuningsbehoefte",
        DossierField::Zorg => "Betrokken zorg",
        _ => "Veld",
    }
}

/// The fields a person may set in the web app (the woongemeente changes by grant
/// and revoke, as on the CLI).
fn editable_fields() -> Vec<SelectOption> {
    DossierField::ALL
        .into_iter()
        .filter(|f| *f != DossierField::Woongemeente)
        .map(|f| SelectOption {
            value: f.as_str().to_owned(),
            label: field_label(f).to_owned(),
        })
        .collect()
}

fn parties_options(state: &RegionState, except: &[&PartyName]) -> Vec<SelectOption> {
    state
        .parties
        .iter()
        .filter(|(n, p)| !p.removed && !except.contains(n))
        .map(|(n, _)| SelectOption {
            value: n.to_string(),
            label: format!("{} ({n})", state.display_name(n)),
        })
        .collect()
}

fn municipalities(state: &RegionState) -> Vec<SelectOption> {
    state
        .parties
        .iter()
        .filter(|(_, p)| !p.removed && matches!(p.role, Role::Gemeente | Role::Kerngemeente))
        .map(|(n, _)| SelectOption {
            value: n.to_string(),
            label: state.display_name(n).to_owned(),
        })
        .collect()
}

/// The list's query: `na` (the id the page starts after), `zoek` (an id prefix).
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    na: Option<String>,
    zoek: Option<String>,
}

/// GET /dossiers: the dossiers this party may read, [`PAGE_SIZE`] at a time, from
/// their access logs only (nothing is unsealed, nothing audited).
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Allowed<WorkWithDossiers>,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let staff = who.staff;
    let after =
        match q.na.as_deref().filter(|s| !s.is_empty()) {
            Some(a) => Some(a.parse::<DocId>().map_err(|_| {
                WebError::BadRequest("De paginering (na=) is geen dossier-id.".into())
            })?),
            None => None,
        };
    let search = q
        .zoek
        .as_deref()
        .map(|z| z.trim().to_ascii_lowercase())
        .filter(|z| !z.is_empty());
    if let Some(z) = &search
        && (z.len() > 32 || !z.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(WebError::Unprocessable(
            "Zoek op (het begin van) een dossier-id: alleen de cijfers 0-9 en letters a-f.".into(),
        ));
    }
    let page = state
        .with_node(move |node| {
            let region = node.region_state()?;
            let page = node.readable_dossiers(after.as_ref(), search.as_deref(), PAGE_SIZE)?;
            let me = node.info().party.clone();
            let rows = page
                .dossiers
                .iter()
                .map(|d| ListRow {
                    id: d.id.to_string(),
                    owner: region.display_name(&d.owner).to_owned(),
                    own: d.owner == me,
                    access: d
                        .grants
                        .iter()
                        .map(|(p, b, until)| {
                            format!(
                                "{} ({}{})",
                                region.display_name(p),
                                basis_label(*b),
                                until
                                    .map(|u| format!(" t/m {}", date_format::format(u)))
                                    .unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                })
                .collect();
            Ok(DossierListPage {
                chrome: chrome(&staff, "Dossiers", "dossiers"),
                rows,
                next: page.next.map(|n| n.to_string()),
                search: search.unwrap_or_default(),
                held: page.held,
                first_page: after.is_none(),
            })
        })
        .await?;
    Ok(render(&page))
}

/// GET /dossiers/{id}: asks for the purpose before anything is unsealed.
pub(crate) async fn ask_purpose(
    State(state): State<AppState>,
    who: Allowed<WorkWithDossiers>,
    Path(raw): Path<String>,
) -> Result<Response, WebError> {
    let id = parse_id(&raw)?;
    let staff = who.staff;
    state.with_node(move |node| readable(node, &id)).await?;
    Ok(render(&DossierPurposePage {
        chrome: chrome(&staff, "Dossier openen", "dossiers"),
        csrf: staff.session.csrf.clone(),
        id: id.to_string(),
        error: None,
    }))
}

/// Reads the dossier for `purpose` (audited as `read` under the signed-in account)
/// and renders its page, with `notice` on top.
fn show(
    node: &mut Node,
    staff: &Staff,
    id: &DocId,
    purpose: &str,
    notice: Option<String>,
) -> Result<DossierPage, WebError> {
    let dossier: Dossier = node
        .read_dossier(id, &reader(staff, purpose))
        .map_err(refusal)?;
    let access = node.dossier_access(id).map_err(refusal)?;
    let region = node.region_state()?;
    let me = node.info().party.clone();
    let date = |d: Option<time::Date>| d.map(date_format::format).unwrap_or_else(|| "–".into());
    let mut grants: Vec<AccessRow> = vec![AccessRow {
        party: region.display_name(&access.owner).to_owned(),
        party_id: access.owner.to_string(),
        basis: "eigenaar".into(),
        purpose: String::new(),
        until: String::new(),
        revocable: false,
    }];
    let owner = access.owner == me;
    grants.extend(access.grants.iter().map(|(p, g)| AccessRow {
        party: region.display_name(p).to_owned(),
        party_id: p.to_string(),
        basis: basis_label(g.basis).into(),
        purpose: g.purpose.clone(),
        until: g.until.map(date_format::format).unwrap_or_default(),
        revocable: owner,
    }));
    let granted: Vec<&PartyName> = std::iter::once(&access.owner)
        .chain(access.grants.keys())
        .collect();
    Ok(DossierPage {
        chrome: chrome(staff, "Dossier", "dossiers"),
        csrf: staff.session.csrf.clone(),
        id: id.to_string(),
        purpose: purpose.to_owned(),
        notice,
        fields: vec![
            ("Naam", dossier.naam.clone()),
            ("Geboortedatum", date(dossier.geboortedatum)),
            (
                "Woongemeente",
                region.display_name(&dossier.woongemeente).to_owned(),
            ),
            ("Opleiding", dossier.opleiding.clone()),
            ("Locatie", dossier.locatie.clone()),
            ("Betrokken zorg", dossier.zorg.clone()),
        ],
        need: dossier.ondersteuningsbehoefte.clone(),
        agreements: dossier
            .afspraken
            .iter()
            .map(|a| (a.tekst.clone(), date(a.evaluatie)))
            .collect(),
        absences: dossier
            .verzuim
            .iter()
            .map(|v| (date_format::format(v.datum), v.signaal.clone()))
            .collect(),
        contacts: dossier
            .contacten
            .iter()
            .rev()
            .map(|c| {
                (
                    date_format::format(c.datum),
                    region.display_name(&c.partij).to_owned(),
                    c.tekst.clone(),
                )
            })
            .collect(),
        grants,
        owner,
        editable: editable_fields(),
        grantable: parties_options(&region, &granted),
        max_field: MAX_FIELD_CHARS,
    })
}

/// POST /dossiers/{id}/openen: the purpose given, the dossier read and shown.
pub(crate) async fn open(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    let id = parse_id(&raw)?;
    let staff = Allowed::<WorkWithDossiers>::check(form.staff.clone())?.staff;
    let purpose = match purpose_of(&form, "doel") {
        Ok(p) => p,
        Err(WebError::Unprocessable(msg)) => {
            state.with_node(move |node| readable(node, &id)).await?;
            let page = DossierPurposePage {
                chrome: chrome(&staff, "Dossier openen", "dossiers"),
                csrf: staff.session.csrf.clone(),
                id: id.to_string(),
                error: Some(msg),
            };
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
        }
        Err(e) => return Err(e),
    };
    let page = state
        .with_node(move |node| {
            readable(node, &id)?;
            show(node, &staff, &id, &purpose, None)
        })
        .await?;
    tracing::info!(dossier = %id, "web dossier read");
    Ok(render(&page))
}

/// What a dossier form does, after the common checks.
enum Action {
    Note(String),
    Edit(DossierField, String),
    Grant {
        party: String,
        basis: String,
        purpose: String,
        until: Option<String>,
    },
    Revoke {
        party: String,
        reason: String,
    },
    Agreement {
        text: String,
        evaluate: Option<String>,
    },
}

/// A date from a form's date field (`jjjj-mm-dd`, as browsers send it).
fn date_of(s: &str) -> Result<time::Date, WebError> {
    regiosync_core::plan::parse_date(s)
        .map_err(|_| WebError::Unprocessable("Dat is geen datum (jjjj-mm-dd).".into()))
}

/// POST /dossiers/{id}/{actie}: note, support agreement, edit, grant, revoke; then
/// the dossier again.
pub(crate) async fn act(
    State(state): State<AppState>,
    Path((raw, action)): Path<(String, String)>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    let id = parse_id(&raw)?;
    let staff = Allowed::<WorkWithDossiers>::check(form.staff.clone())?.staff;
    let purpose = purpose_of(&form, "doel")?;
    let f = &form.fields;
    let action = match action.as_str() {
        "notitie" => {
            let text = f.required("tekst", "Notitie", MAX_TEXT_BYTES)?.trim();
            if text.is_empty() {
                return Err(WebError::Unprocessable(
                    "De notitie is leeg: schrijf op wat er is gebeurd.".into(),
                ));
            }
            Action::Note(text.to_owned())
        }
        "afspraak" => {
            let text = f.required("afspraak", "Afspraak", MAX_TEXT_BYTES)?.trim();
            if text.is_empty() {
                return Err(WebError::Unprocessable(
                    "De afspraak is leeg: schrijf op wat er is afgesproken.".into(),
                ));
            }
            Action::Agreement {
                text: text.to_owned(),
                evaluate: f
                    .get("evaluatie")
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            }
        }
        "veld" => {
            let field: DossierField = f
                .required("veld", "Veld", 64)?
                .parse()
                .map_err(|_| WebError::Unprocessable("Kies een veld uit de lijst.".into()))?;
            if field == DossierField::Woongemeente {
                return Err(WebError::Unprocessable(
                    "De woongemeente verandert door de nieuwe gemeente toegang te geven en de oude in te trekken (hieronder, Toegang).".into(),
                ));
            }
            Action::Edit(
                field,
                f.required("waarde", "Waarde", MAX_TEXT_BYTES)?.to_owned(),
            )
        }
        "toegang" => Action::Grant {
            party: f.required("partij", "Partij", 64)?.to_owned(),
            basis: f.required("grondslag", "Grondslag", 32)?.to_owned(),
            purpose: {
                let p = f.required("doel_toegang", "Doel van de toegang", MAX_AUDIT_TEXT)?;
                if p.trim().is_empty() {
                    return Err(WebError::Unprocessable(
                        "Vul het doel van de toegang in.".into(),
                    ));
                }
                p.trim().to_owned()
            },
            until: f
                .get("tot")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        },
        "intrekken" => Action::Revoke {
            party: f.required("partij", "Partij", 64)?.to_owned(),
            reason: {
                let r = f.required("reden", "Reden", MAX_AUDIT_TEXT)?.trim();
                if r.is_empty() {
                    return Err(WebError::Unprocessable(
                        "Vul de reden van het intrekken in.".into(),
                    ));
                }
                r.to_owned()
            },
        },
        _ => return Err(WebError::NotFound),
    };
    let page = state
        .with_node(move |node| {
            readable(node, &id)?;
            let by = reader(&staff, &purpose);
            let notice = match action {
                Action::Note(text) => {
                    node.add_dossier_note(&id, &text, &by).map_err(refusal)?;
                    "De notitie is toegevoegd aan het contactlog."
                }
                Action::Agreement { text, evaluate } => {
                    let evaluate = evaluate.map(|d| date_of(&d)).transpose()?;
                    node.add_dossier_agreement(&id, &text, evaluate, &by)
                        .map_err(refusal)?;
                    "De ondersteuningsafspraak is toegevoegd."
                }
                Action::Edit(field, value) => {
                    node.edit_dossier(&id, field, &value, &by)
                        .map_err(refusal)?;
                    "Het veld is bijgewerkt."
                }
                Action::Grant {
                    party,
                    basis,
                    purpose: grant_purpose,
                    until,
                } => {
                    let region = node.region_state()?;
                    let party = party_of(&region, &party)?;
                    let basis = basis_of(&basis)?;
                    let until = until.map(|u| date_of(&u)).transpose()?;
                    let by = reader(&staff, &grant_purpose);
                    node.grant_dossier(&id, party, basis, &grant_purpose, until, &by)
                        .map_err(refusal)?;
                    "De partij heeft toegang gekregen; haar apparaten krijgen de sleutels."
                }
                Action::Revoke { party, reason } => {
                    let region = node.region_state()?;
                    let party = party_of(&region, &party)?;
                    let by = reader(&staff, &format!("intrekken toegang: {reason}"));
                    node.revoke_dossier(&id, party, &reason, &by)
                        .map_err(refusal)?;
                    "De toegang is ingetrokken; wat nu geschreven wordt, is met een nieuwe sleutel verzegeld."
                }
            };
            show(node, &staff, &id, &purpose, Some(notice.to_owned()))
        })
        .await?;
    tracing::info!(dossier = %id, "web dossier changed");
    Ok(render(&page))
}

/// GET /dossiers/nieuw.
pub(crate) async fn new_form(
    State(state): State<AppState>,
    who: Allowed<WorkWithDossiers>,
) -> Result<Response, WebError> {
    let staff = who.staff;
    let page = state
        .with_node(move |node| {
            let region = node.region_state()?;
            Ok(DossierNewPage {
                chrome: chrome(&staff, "Nieuw dossier", "dossiers"),
                csrf: staff.session.csrf.clone(),
                municipalities: municipalities(&region),
                max_field: MAX_FIELD_CHARS,
            })
        })
        .await?;
    Ok(render(&page))
}

/// POST /dossiers/nieuw: creates the dossier (owned by this party, the woongemeente
/// granted), then shows the purpose form of the new dossier.
pub(crate) async fn create(
    State(state): State<AppState>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    let staff = Allowed::<WorkWithDossiers>::check(form.staff.clone())?.staff;
    let f = &form.fields;
    let woongemeente = f.required("woongemeente", "Woongemeente", 64)?.to_owned();
    let basis = basis_of(f.required("grondslag", "Grondslag", 32)?)?;
    let purpose = purpose_of(&form, "doel")?;
    let mut fields = Vec::new();
    for field in DossierField::ALL {
        if field == DossierField::Woongemeente {
            continue;
        }
        if let Some(v) = f
            .get(field.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            if v.len() > MAX_TEXT_BYTES {
                return Err(WebError::TooLarge);
            }
            fields.push((field, v.to_owned()));
        }
    }
    let id = state
        .with_node(move |node| {
            let region = node.region_state()?;
            let woongemeente = party_of(&region, &woongemeente)?;
            node.create_dossier(
                &NewDossier {
                    woongemeente,
                    basis,
                    purpose: purpose.clone(),
                    fields,
                },
                &reader(&staff, &purpose),
            )
            .map_err(refusal)
        })
        .await?;
    tracing::info!(dossier = %id, "web dossier created");
    Ok(see_other(&format!("/dossiers/{id}")))
}

/// GET /dossiers/{id}/wissen: what erasing destroys, without unsealing anything.
pub(crate) async fn erase_confirm(
    State(state): State<AppState>,
    who: Allowed<WorkWithDossiers>,
    Path(raw): Path<String>,
) -> Result<Response, WebError> {
    let id = parse_id(&raw)?;
    let staff = who.staff;
    let page = state
        .with_node(move |node| erase_page(node, &staff, &id, None))
        .await?;
    Ok(render(&page))
}

fn erase_page(
    node: &Node,
    staff: &Staff,
    id: &DocId,
    error: Option<String>,
) -> Result<EraseConfirmPage, WebError> {
    readable(node, id)?;
    let access = node.dossier_access(id).map_err(refusal)?;
    let region = node.region_state()?;
    let changes = node.store().changes(id).map_err(NodeError::from)?.len();
    let parties: Vec<String> = std::iter::once(&access.owner)
        .chain(access.grants.keys())
        .map(|p| region.display_name(p).to_owned())
        .collect();
    Ok(EraseConfirmPage {
        chrome: chrome(staff, "Dossier wissen", "dossiers"),
        csrf: staff.session.csrf.clone(),
        id: id.to_string(),
        short: id.to_string()[..8].to_owned(),
        owner: region.display_name(&access.owner).to_owned(),
        parties,
        changes,
        epochs: access.epochs.len(),
        error,
    })
}

/// POST /dossiers/{id}/wissen: erases after the id (or its first 8 characters) was
/// typed, or the explicit checkbox ticked.
pub(crate) async fn erase(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    let id = parse_id(&raw)?;
    let staff = Allowed::<WorkWithDossiers>::check(form.staff.clone())?.staff;
    let typed = form
        .fields
        .get("bevestig")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let full = id.to_string();
    let ticked = form.fields.get("zeker") == Some("ja");
    let confirmed = ticked || (typed.len() >= 8 && full.starts_with(&typed));
    if !confirmed {
        let page = state
            .with_node(move |node| {
                erase_page(
                    node,
                    &staff,
                    &id,
                    Some("Niet bevestigd: typ het dossier-id (of de eerste 8 tekens) of vink het vakje aan. Er is niets gewist.".into()),
                )
            })
            .await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
    }
    state
        .with_node(move |node| {
            readable(node, &id)?;
            node.erase_dossier(&id, &reader(&staff, "wissen dossier"))
                .map_err(refusal)
        })
        .await?;
    tracing::info!(dossier = %id, "web dossier erased");
    Ok(see_other("/dossiers?gewist"))
}

/// GET /dossiers/{id}/toegangslog: who read or wrote this dossier on this node,
/// when, how and why (from the audit log; nothing is unsealed).
pub(crate) async fn history(
    State(state): State<AppState>,
    who: Allowed<WorkWithDossiers>,
    Path(raw): Path<String>,
) -> Result<Response, WebError> {
    let id = parse_id(&raw)?;
    let staff = who.staff;
    let page = state
        .with_node(move |node| {
            readable(node, &id)?;
            let rows = node
                .store()
                .audit_log_of(&id)
                .map_err(NodeError::from)?
                .into_iter()
                .rev()
                .map(|(seq, e, _)| HistoryRow {
                    seq,
                    at: format_time(e.at_ms / 1000),
                    who: e.who.to_string(),
                    action: e.action,
                    purpose: e.purpose,
                })
                .collect();
            Ok(DossierHistoryPage {
                chrome: chrome(&staff, "Toegangslog", "dossiers"),
                id: id.to_string(),
                rows,
            })
        })
        .await?;
    Ok(render(&page))
}

/// A dossier line of the list (nothing from the sealed content).
pub(crate) struct ListRow {
    id: String,
    owner: String,
    own: bool,
    access: String,
}

#[derive(askama::Template)]
#[template(path = "dossier_list.html")]
pub(crate) struct DossierListPage {
    chrome: Chrome,
    rows: Vec<ListRow>,
    next: Option<String>,
    search: String,
    held: usize,
    first_page: bool,
}

#[derive(askama::Template)]
#[template(path = "dossier_purpose.html")]
pub(crate) struct DossierPurposePage {
    chrome: Chrome,
    csrf: String,
    id: String,
    error: Option<String>,
}

/// A party with access, as the dossier page shows it.
pub(crate) struct AccessRow {
    party: String,
    party_id: String,
    basis: String,
    purpose: String,
    until: String,
    revocable: bool,
}

#[derive(askama::Template)]
#[template(path = "dossier_view.html")]
pub(crate) struct DossierPage {
    chrome: Chrome,
    csrf: String,
    id: String,
    purpose: String,
    notice: Option<String>,
    fields: Vec<(&'static str, String)>,
    need: String,
    agreements: Vec<(String, String)>,
    absences: Vec<(String, String)>,
    contacts: Vec<(String, String, String)>,
    grants: Vec<AccessRow>,
    owner: bool,
    editable: Vec<SelectOption>,
    grantable: Vec<SelectOption>,
    max_field: usize,
}

#[derive(askama::Template)]
#[template(path = "dossier_new.html")]
pub(crate) struct DossierNewPage {
    chrome: Chrome,
    csrf: String,
    municipalities: Vec<SelectOption>,
    max_field: usize,
}

#[derive(askama::Template)]
#[template(path = "dossier_erase.html")]
pub(crate) struct EraseConfirmPage {
    chrome: Chrome,
    csrf: String,
    id: String,
    short: String,
    owner: String,
    parties: Vec<String>,
    changes: usize,
    epochs: usize,
    error: Option<String>,
}

/// An audit entry of one dossier.
pub(crate) struct HistoryRow {
    seq: i64,
    at: String,
    who: String,
    action: String,
    purpose: String,
}

#[derive(askama::Template)]
#[template(path = "dossier_history.html")]
pub(crate) struct DossierHistoryPage {
    chrome: Chrome,
    id: String,
    rows: Vec<HistoryRow>,
}

/// The Dossiers routes.
pub(crate) fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/dossiers", get(list))
        .route("/dossiers/nieuw", get(new_form).post(create))
        .route("/dossiers/{id}", get(ask_purpose))
        .route("/dossiers/{id}/openen", post(open))
        .route("/dossiers/{id}/wissen", get(erase_confirm).post(erase))
        .route("/dossiers/{id}/toegangslog", get(history))
        .route("/dossiers/{id}/{actie}", post(act))
}
