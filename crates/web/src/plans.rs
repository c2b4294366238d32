//! The plan pages: a plan with its sections, agreements, comments, conflicts and
//! approvals; the section editor; every write on a plan; the diff since a party's
//! approval; the exports.
//!
//! Every write is a POST through [`CheckedForm`] (origin checks, the session's CSRF
//! token, size limits, strict UTF-8) by a role with [`EditPlans`] (`beleid`; anyone
//! else gets 403), then one node call, then a 303 back to the plan with a fixed
//! notice. The node checks what the CLI checks (titles, transitions, parties). A
//! section save carries the plan's heads the person started from (`versie`); the node
//! merges it with what was written since ([`Node::set_section_at`]), and a rewrite of
//! lines someone else rewrote meanwhile gets a 409 page with both versions to settle.

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use regiosync_core::automerge::ChangeHash;
use regiosync_core::control::RegionState;
use regiosync_core::id::{DocId, PartyName};
use regiosync_core::plan::{
    self, AgreementStatus, AgreementUpdate, Plan, PlanError, SectionPlace, richtext,
};
use regiosync_node::StoreRead;
use regiosync_node::documents::KIND_PLAN;
use regiosync_node::plan_versions::{ExportFormat, short_heads};
use regiosync_node::section_at::{SectionClash, SectionSave, normalize_markdown};
use regiosync_node::{Node, NodeError};

use crate::app::AppState;
use crate::auth::{Allowed, CheckedForm, EditPlans, ReadPlans, Staff};
use crate::error::{WebError, see_other};
use crate::form::{Fields, MAX_FIELD_BYTES};
use crate::pages::{chrome, format_time};
use crate::templates::{PlanClashPage, PlanDiffPage, PlanPage, render};

/// Longest title (plan, section, agreement) accepted from a form, in bytes (the
/// node allows 300 characters).
const MAX_TITLE_BYTES: usize = 1200;
/// Longest comment, quote or remark from a form, in bytes.
const MAX_NOTE_BYTES: usize = 8 * 1024;
/// Longest `versie` field: heads of 64 hex digits and a comma each, 64 of them.
const MAX_HEADS_BYTES: usize = 65 * 64;

// ---------------------------------------------------------------- views

/// A plan as its page shows it.
pub(crate) struct PlanView {
    pub(crate) id: String,
    pub(crate) short: String,
    pub(crate) title: String,
    pub(crate) kind: String,
    pub(crate) owner: String,
    /// The heads the page shows, full hex, comma-separated (the `versie` of forms).
    pub(crate) heads: String,
    pub(crate) version: String,
    pub(crate) can_edit: bool,
    pub(crate) csrf: String,
    pub(crate) notice: Option<&'static str>,
    pub(crate) sections: Vec<SectionView>,
    pub(crate) agreements: Vec<AgreementView>,
    pub(crate) parties: Vec<PartyOption>,
    pub(crate) comments: Vec<CommentView>,
    pub(crate) conflicts: Vec<ConflictView>,
    pub(crate) approvals: Vec<ApprovalRow>,
    pub(crate) this_party: String,
}

/// A section; `editor` when the page is in edit mode for it.
pub(crate) struct SectionView {
    pub(crate) id: String,
    pub(crate) title: String,
    /// Its rendered text (escaped by the plan's HTML rendering).
    pub(crate) html: String,
    pub(crate) first: bool,
    pub(crate) last: bool,
    pub(crate) conflicted: bool,
    pub(crate) editor: Option<EditorView>,
}

/// The editor of one section.
pub(crate) struct EditorView {
    pub(crate) text: String,
    pub(crate) heads: String,
    /// The preview asked for without script (rendered by the server, escaped).
    pub(crate) preview: Option<String>,
}

/// An agreement line.
pub(crate) struct AgreementView {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) owner: String,
    pub(crate) deadline: String,
    pub(crate) status: &'static str,
    pub(crate) funding: String,
    /// The statuses it may go to: (value, label).
    pub(crate) next: Vec<(&'static str, &'static str)>,
    pub(crate) conflict: Option<String>,
}

/// A party to choose as an agreement's owner.
pub(crate) struct PartyOption {
    pub(crate) name: String,
    pub(crate) display: String,
}

/// A comment.
pub(crate) struct CommentView {
    pub(crate) id: String,
    pub(crate) section: String,
    pub(crate) quote: String,
    pub(crate) detached: bool,
    pub(crate) author: String,
    pub(crate) time: String,
    pub(crate) text: String,
    pub(crate) resolved: bool,
}

/// A field written concurrently with different values.
pub(crate) struct ConflictView {
    pub(crate) target: String,
    pub(crate) field: String,
    pub(crate) what: String,
    pub(crate) values: Vec<ConflictValueView>,
    /// Whether the web app can settle it by choosing a value.
    pub(crate) settle: bool,
    /// The section to edit instead, for a section text.
    pub(crate) edit_section: Option<String>,
}

/// One value of a conflict.
pub(crate) struct ConflictValueView {
    pub(crate) index: usize,
    pub(crate) value: String,
    pub(crate) by: String,
}

/// A party's approval line.
pub(crate) struct ApprovalRow {
    pub(crate) party: String,
    pub(crate) display: String,
    pub(crate) approved: bool,
    pub(crate) version: String,
    pub(crate) time: String,
    pub(crate) since: String,
    pub(crate) has_diff: bool,
    pub(crate) comment: String,
}

/// The Dutch label of a status.
fn status_label(s: AgreementStatus) -> &'static str {
    match s {
        AgreementStatus::Open => "open",
        AgreementStatus::InUitvoering => "in uitvoering",
        AgreementStatus::Afgerond => "afgerond",
        AgreementStatus::Vervallen => "vervallen",
        _ => "onbekend",
    }
}

fn heads_hex(heads: &[ChangeHash]) -> String {
    heads
        .iter()
        .map(|h| hex::encode(h.0))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a `versie` field: full change hashes, comma-separated.
fn parse_heads(s: &str) -> Result<Vec<ChangeHash>, WebError> {
    let bad = || {
        WebError::BadRequest(
            "De versie in het formulier is onleesbaar; laad de pagina opnieuw.".into(),
        )
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.len() != 64 {
            return Err(bad());
        }
        let mut h = [0u8; 32];
        hex::decode_to_slice(part, &mut h).map_err(|_| bad())?;
        out.push(ChangeHash(h));
    }
    Ok(out)
}

/// The plan `id` must exist here as a plan (else 404).
/// The plan exists on this node and this party may read it by the region's access
/// lists (a node keeps a plan whose access its party lost): else 404, as for an
/// unknown id, so that the page does not tell which plans exist. Every plan page,
/// form and the live stream check this.
pub(crate) fn check_plan(node: &Node, id: &DocId) -> Result<(), WebError> {
    match node.store().document(id).map_err(NodeError::from)? {
        Some(row) if row.kind == KIND_PLAN => {}
        _ => return Err(NodeError::UnknownDocument(id.to_string()).into()),
    }
    if !node.region_state()?.may_read(id, &node.info().party) {
        return Err(NodeError::UnknownDocument(id.to_string()).into());
    }
    Ok(())
}

fn plan_id(raw: &str) -> Result<DocId, WebError> {
    raw.parse().map_err(|_| WebError::NotFound)
}

/// A section id from a URL: `s-` and 8 hex digits (else 404).
fn section_id(raw: &str) -> Result<String, WebError> {
    let ok = raw.len() == 10
        && raw.starts_with("s-")
        && raw[2..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    ok.then(|| raw.to_owned()).ok_or(WebError::NotFound)
}

/// An agreement or comment id from a URL or form (`a-`/`c-` + 8 hex; else 404).
fn item_id(raw: &str, prefix: &str) -> Result<String, WebError> {
    let ok = raw.len() == 10
        && raw.starts_with(prefix)
        && raw[2..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    ok.then(|| raw.to_owned()).ok_or(WebError::NotFound)
}

fn party_display(state: Option<&RegionState>, p: &PartyName) -> String {
    state.map_or_else(|| p.to_string(), |s| s.display_name(p).to_owned())
}

/// The fixed notices after a write (`?bericht=…`): nothing from the URL is shown.
fn notice(q: Option<&str>) -> Option<&'static str> {
    let code = q?.split('&').find_map(|kv| kv.strip_prefix("bericht="))?;
    Some(match code {
        "opgeslagen" => "De sectie is opgeslagen.",
        "samengevoegd" => {
            "De sectie is opgeslagen en samengevoegd met wat anderen intussen schreven."
        }
        "ongewijzigd" => "Er was niets gewijzigd.",
        "sectie" => "De sectie is toegevoegd.",
        "hernoemd" => "De sectie heeft een nieuwe titel.",
        "verplaatst" => "De sectie is verplaatst.",
        "verwijderd" => "De sectie is verwijderd.",
        "afspraak" => "De afspraak is toegevoegd.",
        "status" => "De status van de afspraak is gewijzigd.",
        "afspraak-weg" => "De afspraak is verwijderd.",
        "opmerking" => "De opmerking is geplaatst.",
        "afgehandeld" => "De opmerking is bijgewerkt.",
        "conflict" => "Het conflict is opgelost.",
        "goedgekeurd" => "Uw partij heeft deze versie goedgekeurd.",
        _ => return None,
    })
}

/// What an editor shows instead of the stored text: the text typed, the version it
/// started from, and a preview.
type Typed = (String, String, Option<String>);

/// Builds the page view of plan `id`; `editing`: the section in edit mode, with the
/// text and base version to show (a failed or previewed save shows what was typed).
fn plan_view(
    node: &Node,
    staff: &Staff,
    id: &DocId,
    editing: Option<(&str, Option<Typed>)>,
) -> Result<(PlanView, String), WebError> {
    check_plan(node, id)?;
    let p: Plan = node.plan(id)?;
    let state = node.region_state().ok();
    let st = state.as_ref();
    let heads = node.plan_heads(id)?;
    let heads_full = heads_hex(&heads);
    if let Some((sid, _)) = editing
        && p.section(sid).is_none()
    {
        return Err(NodeError::from(PlanError::UnknownSection(sid.to_owned())).into());
    }
    let section_title = |sid: &str| {
        p.section(sid)
            .map_or_else(|| "(verwijderde sectie)".to_owned(), |s| s.title.clone())
    };
    let n = p.sections.len();
    let sections = p
        .sections
        .iter()
        .enumerate()
        .map(|(i, s)| SectionView {
            id: s.id.clone(),
            title: s.title.clone(),
            html: richtext::to_html(&s.blocks),
            first: i == 0,
            last: i + 1 == n,
            conflicted: p
                .conflicts
                .iter()
                .any(|c| c.target == format!("section {}", s.id)),
            editor: match editing {
                Some((sid, ref given)) if sid == s.id => Some(match given {
                    Some((text, base, preview)) => EditorView {
                        text: text.clone(),
                        heads: base.clone(),
                        preview: preview.clone(),
                    },
                    None => EditorView {
                        text: s.text.clone(),
                        heads: heads_full.clone(),
                        preview: None,
                    },
                }),
                _ => None,
            },
        })
        .collect();
    let agreements = p
        .agreements
        .iter()
        .map(|a| {
            let target = format!("agreement {}", a.id);
            let conflict = p
                .conflicts
                .iter()
                .filter(|c| c.target == target)
                .map(|c| c.field.clone())
                .collect::<Vec<_>>();
            AgreementView {
                id: a.id.clone(),
                title: a.title.clone(),
                description: a.description.trim().to_owned(),
                owner: party_display(st, &a.owner),
                deadline: a
                    .deadline
                    .map_or_else(|| "–".into(), plan::date_format::format),
                status: status_label(a.status),
                funding: a.funding.clone().unwrap_or_else(|| "–".into()),
                next: AgreementStatus::ALL
                    .into_iter()
                    .filter(|s| a.status.may_become(*s))
                    .map(|s| (s.as_str(), status_label(s)))
                    .collect(),
                conflict: (!conflict.is_empty()).then(|| conflict.join(", ")),
            }
        })
        .collect();
    let parties = st
        .map(|s| {
            s.parties
                .iter()
                .filter(|(_, p)| !p.removed)
                .map(|(name, _)| PartyOption {
                    name: name.to_string(),
                    display: s.display_name(name).to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    let comments = p
        .comments
        .iter()
        .map(|c| CommentView {
            id: c.id.clone(),
            section: section_title(&c.section),
            quote: c.anchored.clone().unwrap_or_else(|| c.quote.clone()),
            detached: c.anchored.is_none(),
            author: party_display(st, &c.author),
            time: format_time(c.time),
            text: c.text.clone(),
            resolved: c.resolved,
        })
        .collect();
    let conflicts = node
        .plan_conflicts(id)?
        .into_iter()
        .map(|c| {
            let section = c.target.strip_prefix("section ").map(str::to_owned);
            let settle = matches!(
                (c.target.split_once(' '), c.field.as_str()),
                (Some(("section", _)), "title" | "text")
                    | (
                        Some(("agreement", _)),
                        "title" | "owner" | "deadline" | "status" | "funding"
                    )
            );
            let kind = match c.target.split_once(' ') {
                Some(("section", _)) => "sectie",
                Some(("agreement", _)) => "afspraak",
                _ => "plan",
            };
            ConflictView {
                what: format!("{kind} ‘{}’, veld {}", c.label, c.field),
                edit_section: section.filter(|_| c.field == "text"),
                target: c.target,
                field: c.field,
                settle,
                values: c
                    .values
                    .into_iter()
                    .enumerate()
                    .map(|(index, v)| ConflictValueView {
                        index,
                        value: v.value,
                        by: v
                            .party
                            .as_ref()
                            .map_or_else(|| "onbekend apparaat".into(), |p| party_display(st, p)),
                    })
                    .collect(),
            }
        })
        .collect();
    let approvals_of = node.approvals(id)?;
    let approvals = st
        .map(|s| {
            s.parties
                .iter()
                .filter(|(_, p)| !p.removed)
                .map(|(name, _)| {
                    let a = approvals_of.iter().find(|a| &a.party == name);
                    ApprovalRow {
                        party: name.to_string(),
                        display: s.display_name(name).to_owned(),
                        approved: a.is_some(),
                        version: a.map_or_else(String::new, |a| {
                            a.heads
                                .iter()
                                .map(|h| h.chars().take(8).collect::<String>())
                                .collect::<Vec<_>>()
                                .join(",")
                        }),
                        time: a.map_or_else(String::new, |a| format_time(a.time)),
                        since: match a.map(|a| a.changes_since) {
                            None => "nog niet goedgekeurd".into(),
                            Some(Some(0)) => "deze versie".into(),
                            Some(Some(1)) => "1 wijziging sinds".into(),
                            Some(Some(k)) => format!("{k} wijzigingen sinds"),
                            Some(None) => "versie nog niet op deze node".into(),
                        },
                        has_diff: a.is_some_and(|a| a.changes_since.is_some_and(|k| k > 0)),
                        comment: a.and_then(|a| a.comment.clone()).unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let last = node.last_change(id)?.map_or_else(
        || "–".into(),
        |(time, party)| {
            format!(
                "{}{}",
                format_time(time),
                party
                    .map(|p| format!(" door {}", party_display(st, &p)))
                    .unwrap_or_default()
            )
        },
    );
    Ok((
        PlanView {
            id: id.to_string(),
            short: node.short_id(id)?,
            title: p.title.clone(),
            kind: p.kind.label().to_owned(),
            owner: party_display(st, &p.owner),
            heads: heads_full,
            version: short_heads(&heads),
            can_edit: Allowed::<EditPlans>::check(staff.clone()).is_ok(),
            csrf: staff.session.csrf.clone(),
            notice: None,
            sections,
            agreements,
            parties,
            comments,
            conflicts,
            approvals,
            this_party: party_display(st, &node.info().party),
        },
        last,
    ))
}

fn plan_page(staff: &Staff, view: PlanView, last_change: String, status: StatusCode) -> Response {
    let page = PlanPage {
        chrome: chrome(staff, &view.title, "plannen"),
        plan: view,
        last_change,
    };
    (status, render(&page)).into_response()
}

// ---------------------------------------------------------------- reading

/// GET /plannen/{id}: the plan page.
pub(crate) async fn show(
    State(state): State<AppState>,
    who: Allowed<ReadPlans>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, WebError> {
    let id = plan_id(&id)?;
    let staff = who.staff;
    let s = staff.clone();
    let (mut view, last) = state
        .with_node(move |node| plan_view(node, &s, &id, None))
        .await?;
    view.notice = notice(q.as_deref());
    Ok(plan_page(&staff, view, last, StatusCode::OK))
}

/// GET /plannen/{id}/secties/{sid}/bewerken: the plan page with that section's
/// editor (beleid only).
pub(crate) async fn edit(
    State(state): State<AppState>,
    who: Allowed<EditPlans>,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let id = plan_id(&id)?;
    let sid = section_id(&sid)?;
    let staff = who.staff;
    let s = staff.clone();
    let (view, last) = state
        .with_node(move |node| plan_view(node, &s, &id, Some((&sid, None))))
        .await
        .map_err(plan_error)?;
    Ok(plan_page(&staff, view, last, StatusCode::OK))
}

/// GET /plannen/{id}/sinds/{party}: what changed since that party's approval.
pub(crate) async fn diff_since(
    State(state): State<AppState>,
    who: Allowed<ReadPlans>,
    Path((id, party)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let id = plan_id(&id)?;
    let party = PartyName::new(&party).map_err(|_| WebError::NotFound)?;
    let staff = who.staff;
    let s = staff.clone();
    let page = state
        .with_node(move |node| {
            check_plan(node, &id)?;
            let p = node.plan(&id)?;
            let region = node.region_state().ok();
            let st = region.as_ref();
            let (d, from, to) = match node.plan_diff(&id, &format!("approval:{party}"), None) {
                Ok(r) => r,
                Err(NodeError::NoApproval(_) | NodeError::UnknownVersion(_)) => {
                    return Err(WebError::NotFound);
                }
                Err(e) => return Err(e.into()),
            };
            let by = |names: &[String]| {
                names
                    .iter()
                    .map(|n| {
                        PartyName::new(n).map_or_else(|_| n.clone(), |p| party_display(st, &p))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let change = |c: plan::diff::Change| match c {
                plan::diff::Change::Added => "nieuw",
                plan::diff::Change::Removed => "verwijderd",
                plan::diff::Change::Changed => "gewijzigd",
            };
            Ok(PlanDiffPage {
                chrome: chrome(&s, &p.title, "plannen"),
                id: id.to_string(),
                title: p.title.clone(),
                party: party_display(st, &party),
                from,
                to,
                empty: d.is_empty(),
                plan_title: d.title.clone(),
                sections: d
                    .sections
                    .iter()
                    .map(|x| crate::templates::DiffSection {
                        title: x.title.clone(),
                        what: if x.moved && x.lines.is_empty() {
                            "verplaatst"
                        } else {
                            change(x.change)
                        },
                        renamed_from: x.renamed_from.clone(),
                        by: by(&x.authors),
                        lines: x
                            .lines
                            .iter()
                            .map(|(t, l)| {
                                (
                                    match t {
                                        '+' => "erbij",
                                        '-' => "eraf",
                                        _ => "",
                                    },
                                    *t,
                                    l.clone(),
                                )
                            })
                            .collect(),
                    })
                    .collect(),
                agreements: d
                    .agreements
                    .iter()
                    .map(|a| crate::templates::DiffAgreement {
                        title: a.title.clone(),
                        what: change(a.change),
                        by: by(&a.authors),
                        fields: a.fields.clone(),
                    })
                    .collect(),
            })
        })
        .await?;
    Ok(render(&page))
}

/// GET /plannen/{id}/export/{format}: `html`, `md` or `automerge`, as a download.
pub(crate) async fn export(
    State(state): State<AppState>,
    _who: Allowed<ReadPlans>,
    Path((id, format)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let id = plan_id(&id)?;
    let (format, mime, ext) = match format.as_str() {
        "html" => (ExportFormat::Html, "text/html; charset=utf-8", "html"),
        "md" => (ExportFormat::Markdown, "text/markdown; charset=utf-8", "md"),
        "automerge" => (
            ExportFormat::Automerge,
            "application/octet-stream",
            "automerge",
        ),
        _ => return Err(WebError::NotFound),
    };
    let (bytes, short) = state
        .with_node(move |node| {
            check_plan(node, &id)?;
            Ok((node.export_plan(&id, format)?, node.short_id(&id)?))
        })
        .await?;
    tracing::info!(doc = %id, format = ext, "web plan export");
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"plan-{short}.{ext}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

// ---------------------------------------------------------------- writing

/// The signed-in person of a write form, if their role may edit plans (403 else).
fn editor(form: &CheckedForm) -> Result<(), WebError> {
    Allowed::<EditPlans>::check(form.staff.clone()).map(|_| ())
}

fn back(id: &DocId, code: &str, anchor: &str) -> Response {
    see_other(&format!("/plannen/{id}?bericht={code}#{anchor}"))
}

/// A field that must be there and not blank.
fn filled<'a>(f: &'a Fields, name: &str, label: &str, max: usize) -> Result<&'a str, WebError> {
    let v = f.required(name, label, max)?;
    if v.trim().is_empty() {
        return Err(WebError::Invalid(format!("Vul ‘{label}’ in.")));
    }
    Ok(v)
}

/// POST /plannen/{id}/secties/{sid}: saves a section's text from the version the
/// editor started from (`versie`), or (`actie=voorbeeld`) shows a preview.
pub(crate) async fn save_section(
    State(state): State<AppState>,
    Path((id, sid)): Path<(String, String)>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let sid = section_id(&sid)?;
    let f = &form.fields;
    let text = f.required("tekst", "Tekst", MAX_FIELD_BYTES)?.to_owned();
    let versie = f.required("versie", "Versie", MAX_HEADS_BYTES)?.to_owned();
    let base = parse_heads(&versie)?;
    let staff = form.staff.clone();
    if f.get("actie") == Some("voorbeeld") {
        let preview = preview_html(&text);
        let s = staff.clone();
        let (view, last) = state
            .with_node(move |node| {
                plan_view(
                    node,
                    &s,
                    &id,
                    Some((&sid, Some((text, versie, Some(preview))))),
                )
            })
            .await
            .map_err(plan_error)?;
        return Ok(plan_page(&staff, view, last, StatusCode::OK));
    }
    let s2 = sid.clone();
    let saved = state
        .with_node(move |node| {
            check_plan(node, &id)?;
            let r = node.set_section_at(&id, &s2, &text, &base);
            match r {
                Ok(SectionSave::Clash(c)) => {
                    // Who wrote the lines meanwhile: the parties whose changes since
                    // the base touched this section.
                    let by = node
                        .plan_diff(&id, &heads_hex(&base), None)
                        .ok()
                        .and_then(|(d, _, _)| {
                            d.sections
                                .into_iter()
                                .find(|x| x.id == c.section)
                                .map(|x| x.authors)
                        })
                        .unwrap_or_default();
                    let st = node.region_state().ok();
                    let by = by
                        .iter()
                        .map(|n| {
                            PartyName::new(n)
                                .map_or_else(|_| n.clone(), |p| party_display(st.as_ref(), &p))
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    let p = node.plan(&id)?;
                    let title = p
                        .section(&c.section)
                        .map_or_else(String::new, |s| s.title.clone());
                    Ok(Err((c, by, p.title, title)))
                }
                Ok(SectionSave::Saved { merged, .. }) => Ok(Ok(merged)),
                Ok(_) => Ok(Ok(false)),
                Err(e) => Err(e.into()),
            }
        })
        .await;
    match saved {
        Ok(Ok(merged)) => {
            tracing::info!(doc = %id, merged, "web section saved");
            Ok(back(
                &id,
                if merged { "samengevoegd" } else { "opgeslagen" },
                &sid,
            ))
        }
        Ok(Err((c, by, plan_title, section_title))) => {
            tracing::info!(status = 409, kind = "edit_clash", doc = %id, "web section save clashed");
            Ok(clash_page(&staff, &id, c, by, plan_title, section_title))
        }
        Err(e) => Err(plan_error(e)),
    }
}

fn clash_page(
    staff: &Staff,
    id: &DocId,
    c: SectionClash,
    by: String,
    plan_title: String,
    section_title: String,
) -> Response {
    let page = PlanClashPage {
        chrome: chrome(staff, "Tegelijk bewerkt", "plannen"),
        id: id.to_string(),
        plan_title,
        section_title,
        section: c.section,
        by: if by.is_empty() {
            "een andere partij".into()
        } else {
            by
        },
        lines: c.lines.into_iter().map(|l| (l.yours, l.theirs)).collect(),
        with_yours: c.with_yours,
        with_theirs: c.with_theirs,
        heads: heads_hex(&c.heads),
        csrf: staff.session.csrf.clone(),
    };
    (StatusCode::CONFLICT, render(&page)).into_response()
}

/// The preview of a section's Markdown, as the plan page will show it (escaped).
fn preview_html(text: &str) -> String {
    let md = normalize_markdown(text);
    richtext::to_html(&richtext::parse_markdown(&md))
}

/// POST /plannen/{id}/voorbeeld: the preview of field `tekst` as an HTML fragment
/// (for the editor's script; escaped by the plan's HTML rendering).
pub(crate) async fn preview(
    Path(id): Path<String>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    plan_id(&id)?;
    let text = form.fields.required("tekst", "Tekst", MAX_FIELD_BYTES)?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        preview_html(text),
    )
        .into_response())
}

/// Runs one write on the node after the common checks.
async fn write(
    state: &AppState,
    id: DocId,
    f: impl FnOnce(&mut Node) -> Result<(), WebError> + Send + 'static,
) -> Result<(), WebError> {
    state
        .with_node(move |node| {
            check_plan(node, &id)?;
            f(node)
        })
        .await
        .map_err(plan_error)
}

/// A plan error a person can act on: 404 for an unknown item, 422 with the reason
/// for input the plan refuses.
fn plan_error(e: WebError) -> WebError {
    let WebError::Node(n) = &e else { return e };
    match &**n {
        NodeError::Plan(
            PlanError::UnknownSection(_) | PlanError::UnknownAgreement(_) | PlanError::UnknownComment(_),
        ) => WebError::NotFound,
        NodeError::Plan(PlanError::BadTitle { why, .. }) => {
            WebError::Invalid(format!("De titel kan zo niet: {why}."))
        }
        NodeError::Plan(PlanError::BadDate(_)) => {
            WebError::Invalid("De datum bestaat niet; schrijf hem als JJJJ-MM-DD.".into())
        }
        NodeError::Plan(PlanError::TextTooLarge(_)) => WebError::TooLarge,
        NodeError::Plan(PlanError::DuplicateSection(_)) => {
            WebError::Invalid("Er is al een sectie met die titel.".into())
        }
        NodeError::Plan(PlanError::AmbiguousSection(_)) => {
            WebError::Invalid("Meer dan één sectie heeft die titel.".into())
        }
        NodeError::Plan(PlanError::QuoteNotFound(_)) => WebError::Invalid(
            "Het geciteerde stuk staat niet (zo) in de sectie. Citeer precies, binnen één alinea."
                .into(),
        ),
        NodeError::Plan(PlanError::AmbiguousQuote { count, .. }) => WebError::Invalid(format!(
            "Het geciteerde stuk staat {count} keer in de sectie. Citeer meer woorden."
        )),
        NodeError::Plan(PlanError::BadTransition { .. }) => WebError::Invalid(
            "Die statuswijziging is niet toegestaan (open → in uitvoering, afgerond, vervallen; in uitvoering → open, afgerond, vervallen; afgerond → in uitvoering; vervallen → open)."
                .into(),
        ),
        NodeError::UnknownParty { .. } => {
            WebError::Invalid("Die partij is geen actieve partij van de regio.".into())
        }
        NodeError::ApprovalCommentNotOneLine => {
            WebError::Invalid("De opmerking bij de goedkeuring moet op één regel.".into())
        }
        NodeError::UnknownVersion(_) => WebError::Stale,
        _ => e,
    }
}

/// POST /plannen/{id}/secties: a new section (`titel`), appended.
pub(crate) async fn add_section(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let title = filled(&form.fields, "titel", "Titel", MAX_TITLE_BYTES)?
        .trim()
        .to_owned();
    if title.starts_with("s-") && section_id(&title).is_ok() {
        return Err(WebError::Invalid(
            "Kies een titel die niet op een sectie-id lijkt.".into(),
        ));
    }
    let sid = state
        .with_node(move |node| {
            check_plan(node, &id)?;
            let p = node.plan(&id)?;
            // The same sameness as the plan schema's (NFC, spaces, case): a title
            // that only looks new would make `set_section` empty an existing section.
            let key = regiosync_core::text::sameness_key;
            if p.sections.iter().any(|s| key(&s.title) == key(&title)) {
                return Err(NodeError::from(PlanError::DuplicateSection(title)).into());
            }
            Ok(node.set_section(&id, &title, "")?.value.id)
        })
        .await
        .map_err(plan_error)?;
    Ok(see_other(&format!(
        "/plannen/{id}/secties/{sid}/bewerken#{sid}"
    )))
}

/// POST /plannen/{id}/secties/{sid}/naam: renames a section (`titel`).
pub(crate) async fn rename_section(
    State(state): State<AppState>,
    Path((id, sid)): Path<(String, String)>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let sid = section_id(&sid)?;
    let title = filled(&form.fields, "titel", "Titel", MAX_TITLE_BYTES)?.to_owned();
    let s = sid.clone();
    write(&state, id, move |n| {
        Ok(n.rename_section(&id, &s, &title).map(|_| ())?)
    })
    .await?;
    Ok(back(&id, "hernoemd", &sid))
}

/// POST /plannen/{id}/secties/{sid}/verplaatsen: `richting` `omhoog` or `omlaag`.
pub(crate) async fn move_section(
    State(state): State<AppState>,
    Path((id, sid)): Path<(String, String)>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let sid = section_id(&sid)?;
    let up = match form.fields.required("richting", "Richting", 16)? {
        "omhoog" => true,
        "omlaag" => false,
        _ => return Err(WebError::BadRequest("Onbekende richting.".into())),
    };
    let s = sid.clone();
    write(&state, id, move |n| {
        let p = n.plan(&id)?;
        let i = p
            .sections
            .iter()
            .position(|x| x.id == s)
            .ok_or_else(|| NodeError::from(PlanError::UnknownSection(s.clone())))?;
        let place = match (up, i) {
            (true, 0) => return Ok(()),
            (true, i) => SectionPlace::Before(p.sections[i - 1].id.clone()),
            (false, i) if i + 1 >= p.sections.len() => return Ok(()),
            (false, i) => SectionPlace::After(p.sections[i + 1].id.clone()),
        };
        Ok(n.move_section(&id, &s, &place).map(|_| ())?)
    })
    .await?;
    Ok(back(&id, "verplaatst", &sid))
}

/// POST /plannen/{id}/secties/{sid}/verwijderen: deletes a section (`zeker=ja`
/// confirms).
pub(crate) async fn delete_section(
    State(state): State<AppState>,
    Path((id, sid)): Path<(String, String)>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let sid = section_id(&sid)?;
    if form.fields.get("zeker") != Some("ja") {
        return Err(WebError::Invalid(
            "Vink ‘Ja, verwijder deze sectie’ aan om de sectie te verwijderen.".into(),
        ));
    }
    write(&state, id, move |n| {
        Ok(n.delete_section(&id, &sid).map(|_| ())?)
    })
    .await?;
    Ok(back(&id, "verwijderd", "secties"))
}

/// POST /plannen/{id}/afspraken: a new agreement (`titel`, `eigenaar`, `deadline`).
pub(crate) async fn add_agreement(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let f = &form.fields;
    let title = filled(f, "titel", "Afspraak", MAX_TITLE_BYTES)?.to_owned();
    let owner = PartyName::new(f.required("eigenaar", "Eigenaar", 64)?.trim())
        .map_err(|_| WebError::Invalid("Kies een partij als eigenaar.".into()))?;
    let deadline = match f.get("deadline").map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) if d.len() <= 10 => Some(plan::parse_date(d).map_err(|_| {
            WebError::Invalid("De deadline bestaat niet; schrijf hem als JJJJ-MM-DD.".into())
        })?),
        Some(_) => {
            return Err(WebError::Invalid(
                "De deadline bestaat niet; schrijf hem als JJJJ-MM-DD.".into(),
            ));
        }
        None => None,
    };
    let funding = f
        .get("financiering")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if funding
        .as_ref()
        .is_some_and(|s| s.chars().count() > 1000 || s.chars().any(char::is_control))
    {
        return Err(WebError::Invalid(
            "De financiering mag hoogstens 1000 tekens op één regel zijn.".into(),
        ));
    }
    write(&state, id, move |n| {
        let input = plan::AgreementInput {
            title,
            owner,
            deadline,
        };
        let aid = n.add_agreement(&id, &input)?.value;
        if let Some(funding) = funding {
            let update = AgreementUpdate {
                funding: Some(Some(funding)),
                ..AgreementUpdate::default()
            };
            n.update_agreement(&id, &aid, &update)?;
        }
        Ok(())
    })
    .await?;
    Ok(back(&id, "afspraak", "afspraken"))
}

/// POST /plannen/{id}/afspraken/{aid}/status: `status`, an allowed transition.
pub(crate) async fn agreement_status(
    State(state): State<AppState>,
    Path((id, aid)): Path<(String, String)>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let aid = item_id(&aid, "a-")?;
    let status: AgreementStatus = form
        .fields
        .required("status", "Status", 32)?
        .parse()
        .map_err(|_| WebError::Invalid("Onbekende status.".into()))?;
    write(&state, id, move |n| {
        let update = AgreementUpdate {
            status: Some(status),
            ..AgreementUpdate::default()
        };
        Ok(n.update_agreement(&id, &aid, &update).map(|_| ())?)
    })
    .await?;
    Ok(back(&id, "status", "afspraken"))
}

/// POST /plannen/{id}/afspraken/{aid}/verwijderen.
pub(crate) async fn remove_agreement(
    State(state): State<AppState>,
    Path((id, aid)): Path<(String, String)>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let aid = item_id(&aid, "a-")?;
    write(&state, id, move |n| {
        Ok(n.remove_agreement(&id, &aid).map(|_| ())?)
    })
    .await?;
    Ok(back(&id, "afspraak-weg", "afspraken"))
}

/// POST /plannen/{id}/opmerkingen: a comment (`sectie`, `citaat`, `tekst`).
pub(crate) async fn add_comment(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let f = &form.fields;
    let sid = section_id(f.required("sectie", "Sectie", 16)?)?;
    let quote = filled(f, "citaat", "Citaat", MAX_NOTE_BYTES)?
        .trim()
        .to_owned();
    let text = filled(f, "tekst", "Opmerking", MAX_NOTE_BYTES)?.to_owned();
    write(&state, id, move |n| {
        Ok(n.add_comment(&id, &sid, &quote, &text).map(|_| ())?)
    })
    .await?;
    Ok(back(&id, "opmerking", "opmerkingen"))
}

/// POST /plannen/{id}/opmerkingen/{cid}: `afgehandeld` `ja` or `nee`.
pub(crate) async fn resolve_comment(
    State(state): State<AppState>,
    Path((id, cid)): Path<(String, String)>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let cid = item_id(&cid, "c-")?;
    let resolved = form.fields.get("afgehandeld") == Some("ja");
    write(&state, id, move |n| {
        Ok(n.resolve_comment(&id, &cid, resolved).map(|_| ())?)
    })
    .await?;
    Ok(back(&id, "afgehandeld", "opmerkingen"))
}

/// POST /plannen/{id}/conflicten: settles a conflict by choosing one of its values
/// (`doel`, `veld`, `keuze`: the value's index as the page listed it). The values
/// are read again; one that is gone (settled meanwhile) is a 409.
pub(crate) async fn settle(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let f = &form.fields;
    let target = f.required("doel", "Doel", 64)?.to_owned();
    let field = f.required("veld", "Veld", 32)?.to_owned();
    let choice: usize = f
        .required("keuze", "Keuze", 4)?
        .parse()
        .map_err(|_| WebError::BadRequest("Onbekende keuze.".into()))?;
    let gone = || {
        WebError::Invalid("Dit conflict bestaat niet (meer): iemand heeft het al opgelost. Bekijk het plan opnieuw.".into())
    };
    state
        .with_node(move |n| {
            check_plan(n, &id)?;
            let conflicts = n.plan_conflicts(&id)?;
            let c = conflicts
                .iter()
                .find(|c| c.target == target && c.field == field)
                .ok_or_else(gone)?;
            let value = c.values.get(choice).ok_or_else(gone)?.value.clone();
            match (target.split_once(' '), field.as_str()) {
                (Some(("section", sid)), "title") => {
                    n.rename_section(&id, sid, &value)?;
                }
                (Some(("section", sid)), "text") => {
                    // The section shows the first value's lines; choosing another
                    // puts those lines in their place.
                    let p = n.plan(&id)?;
                    let text = p.section(sid).ok_or(WebError::NotFound)?.text.clone();
                    let first = c.values.first().map_or("", |v| v.value.as_str());
                    let text = if choice == 0 || first.is_empty() {
                        text
                    } else {
                        text.replacen(first, &value, 1)
                    };
                    n.set_section(&id, sid, &text)?;
                }
                (Some(("agreement", aid)), f) => {
                    let none = value == "(none)";
                    let mut u = AgreementUpdate::default();
                    match f {
                        "title" => u.title = Some(value),
                        "owner" => {
                            u.owner = Some(PartyName::new(&value).map_err(|_| gone())?);
                        }
                        "deadline" if none => u.deadline = Some(None),
                        "deadline" => {
                            u.deadline = Some(Some(plan::parse_date(&value).map_err(|_| gone())?));
                        }
                        "status" => u.status = Some(value.parse().map_err(|_| gone())?),
                        "funding" if none => u.funding = Some(None),
                        "funding" => u.funding = Some(Some(value)),
                        _ => return Err(gone()),
                    }
                    n.update_agreement(&id, aid, &u)?;
                }
                _ => return Err(gone()),
            }
            Ok(())
        })
        .await
        .map_err(plan_error)?;
    Ok(back(&id, "conflict", "conflicten"))
}

/// POST /plannen/{id}/goedkeuren: this party consents to the version the page
/// showed (`versie`); if the plan changed since, 409 and nothing is approved.
pub(crate) async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CheckedForm,
) -> Result<Response, WebError> {
    editor(&form)?;
    let id = plan_id(&id)?;
    let f = &form.fields;
    let mut shown = parse_heads(f.required("versie", "Versie", MAX_HEADS_BYTES)?)?;
    shown.sort();
    let remark = f
        .get("opmerking")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if remark.as_ref().is_some_and(|r| r.len() > MAX_NOTE_BYTES) {
        return Err(WebError::TooLarge);
    }
    write(&state, id, move |n| {
        let mut now = n.plan_heads(&id)?;
        now.sort();
        if now != shown {
            return Err(WebError::Stale);
        }
        Ok(n.approve(&id, remark.as_deref()).map(|_| ())?)
    })
    .await?;
    Ok(back(&id, "goedgekeurd", "goedkeuring"))
}

/// GET /assets/plan-editor.js (in the binary).
pub(crate) async fn editor_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/plan-editor.js"),
    )
        .into_response()
}

/// The plan routes besides `GET /plannen/{id}` (merged into the app's router).
pub(crate) fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/plannen/{id}/secties/{sid}/bewerken", get(edit))
        .route("/plannen/{id}/sinds/{party}", get(diff_since))
        .route("/plannen/{id}/export/{format}", get(export))
        .route("/plannen/{id}/secties", post(add_section))
        .route("/plannen/{id}/secties/{sid}", post(save_section))
        .route("/plannen/{id}/secties/{sid}/naam", post(rename_section))
        .route(
            "/plannen/{id}/secties/{sid}/verplaatsen",
            post(move_section),
        )
        .route(
            "/plannen/{id}/secties/{sid}/verwijderen",
            post(delete_section),
        )
        .route("/plannen/{id}/voorbeeld", post(preview))
        .route("/plannen/{id}/afspraken", post(add_agreement))
        .route(
            "/plannen/{id}/afspraken/{aid}/status",
            post(agreement_status),
        )
        .route(
            "/plannen/{id}/afspraken/{aid}/verwijderen",
            post(remove_agreement),
        )
        .route("/plannen/{id}/opmerkingen", post(add_comment))
        .route("/plannen/{id}/opmerkingen/{cid}", post(resolve_comment))
        .route("/plannen/{id}/conflicten", post(settle))
        .route("/plannen/{id}/goedkeuren", post(approve))
        .route("/assets/plan-editor.js", get(editor_js))
}
