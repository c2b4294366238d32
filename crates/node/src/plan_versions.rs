//! Versions of a plan: approvals (a party's signed consent to exact heads), reading a
//! plan as it was at some heads, diffs that name the party behind each change,
//! exports for the OOGO meeting, and the fields in conflict.
//!
//! An approval is a control-plane op (`Approve`, see docs/AUTH.md): signed by the
//! approving device, bound to the region, the document and the heads, folded like
//! every other op. It does not change the plan itself, so approving never makes the
//! approved version outdated, and two parties approving at once do not see each
//! other's approval as a change.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{Automerge, ChangeHash, ObjId, Prop, ROOT, ReadDoc, Value};
use regiosync_core::control::{OpBody, RegionState};
use regiosync_core::id::{DocId, NodeId, PartyName};
use regiosync_core::plan;
use regiosync_core::plan::diff::PlanDiff;
use regiosync_core::plan::markdown::{ApprovalLine, ExportContext, format_time};
use serde::Serialize;

use crate::Node;
use crate::documents::read_plan_of;
use crate::error::NodeError;

/// A party's approval of a plan, as this node sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ApprovalView {
    /// The approving party.
    pub party: PartyName,
    /// The approved heads, hex.
    pub heads: Vec<String>,
    /// The device that signed it.
    pub device: NodeId,
    /// When (the device's clock), Unix seconds.
    pub time: i64,
    /// The remark, if any.
    pub comment: Option<String>,
    /// Changes made after the approved version; `None` if this node does not have
    /// that version (yet).
    pub changes_since: Option<usize>,
}

/// A field written concurrently with different values.
#[derive(Clone, Debug, Serialize)]
pub struct ConflictView {
    /// What holds the field: `plan`, `section s-…` or `agreement a-…`.
    pub target: String,
    /// A readable name of the target (its title).
    pub label: String,
    /// The field.
    pub field: String,
    /// Every value with who wrote it, in Automerge's order (the one shown by default
    /// is the last).
    pub values: Vec<ConflictEntry>,
}

/// One value of a conflict.
#[derive(Clone, Debug, Serialize)]
pub struct ConflictEntry {
    /// The value as text.
    pub value: String,
    /// The writing device's party, if known.
    pub party: Option<PartyName>,
    /// The writing device, if its actor id is a node id.
    pub device: Option<NodeId>,
}

/// The formats of `doc export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// Markdown with the approvals block.
    Markdown,
    /// A standalone HTML page with the approvals block.
    Html,
    /// The document's standard Automerge binary (accepted changes only).
    Automerge,
}

/// Heads as people read them: the first 8 hex digits of each, comma-separated.
pub fn short_heads(heads: &[ChangeHash]) -> String {
    heads
        .iter()
        .map(|h| hex::encode(&h.0[..4]))
        .collect::<Vec<_>>()
        .join(",")
}

impl Node {
    /// The current heads of a plan (accepted changes only).
    pub fn plan_heads(&self, id: &DocId) -> Result<Vec<ChangeHash>, NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        Ok(self.verified(id, &folded)?.doc.get_heads())
    }

    /// Records that this node's party consents to the plan as it is now, signed by
    /// this device. Returns the approved heads.
    pub fn approve(
        &mut self,
        id: &DocId,
        comment: Option<&str>,
    ) -> Result<Vec<ChangeHash>, NodeError> {
        let state = self.region_state()?;
        if !state.docs.contains_key(id) {
            return Err(NodeError::UnknownDocument(id.to_string()));
        }
        if !state.may_read(id, &self.info.party) {
            return Err(NodeError::NotAReader(*id));
        }
        let mut heads = self.plan_heads(id)?;
        heads.sort();
        let comment = comment.map(str::trim).filter(|c| !c.is_empty());
        // One line, so `doc approvals` shows it on the party's line (the op format
        // allows line feeds; readers escape them).
        if comment.is_some_and(|c| c.chars().any(char::is_control)) {
            return Err(NodeError::ApprovalCommentNotOneLine);
        }
        let body = OpBody::Approve {
            doc: *id,
            heads: heads.iter().map(|h| h.0).collect(),
            comment: comment.map(str::to_owned),
        };
        self.issue_ops(vec![body], |_| Ok(()))?;
        tracing::info!(doc = %id, "approved plan");
        Ok(heads)
    }

    /// Every party's latest approval of a plan, by party name.
    pub fn approvals(&self, id: &DocId) -> Result<Vec<ApprovalView>, NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        let v = self.verified(id, &folded)?;
        let Some(approvals) = folded.state.approvals.get(id) else {
            return Ok(Vec::new());
        };
        Ok(approvals
            .iter()
            .map(|(party, a)| {
                let heads: Vec<ChangeHash> = a.heads.iter().map(|h| ChangeHash(*h)).collect();
                ApprovalView {
                    party: party.clone(),
                    heads: a.heads.iter().map(hex::encode).collect(),
                    device: a.device,
                    time: a.time,
                    comment: a.comment.clone(),
                    changes_since: changes_since(&v.doc, &heads),
                }
            })
            .collect())
    }

    /// What changed between two versions (each `head`, the current version;
    /// `approval:PARTY`; or comma-separated change hashes of at least 8 hex digits
    /// that this node has; `to` defaults to the current version), with the parties whose changes touched each
    /// section and agreement. Returns the diff and the two versions' short labels.
    pub fn plan_diff(
        &self,
        id: &DocId,
        from: &str,
        to: Option<&str>,
    ) -> Result<(PlanDiff, String, String), NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        let v = self.verified(id, &folded)?;
        let from = resolve_in(&v.doc, &folded.state, id, from)?;
        let to = resolve_in(&v.doc, &folded.state, id, to.unwrap_or("head"))?;
        let before = read_plan_of(&fork_at(&v.doc, &from)?, &folded.state, id)?;
        let at_to = fork_at(&v.doc, &to)?;
        let after = read_plan_of(&at_to, &folded.state, id)?;
        let authors = authors_between(&at_to, &from, &folded.state);
        Ok((
            plan::diff::diff(&before, &after, &authors),
            short_heads(&from),
            short_heads(&to),
        ))
    }

    /// What a rendering of the current version prints besides the plan: id,
    /// version and approvals.
    pub fn export_context(&self, id: &DocId) -> Result<ExportContext, NodeError> {
        let approvals = self
            .approvals(id)?
            .into_iter()
            .map(|a| ApprovalLine {
                party: a.party.to_string(),
                version: a
                    .heads
                    .iter()
                    .map(|h| h.chars().take(8).collect::<String>())
                    .collect::<Vec<_>>()
                    .join(","),
                time: format_time(a.time),
                comment: a.comment,
                changes_since: a.changes_since,
            })
            .collect();
        Ok(ExportContext {
            id: self.short_id(id)?,
            version: short_heads(&self.plan_heads(id)?),
            approvals,
            comments: false,
        })
    }

    /// Exports the current version of a plan.
    pub fn export_plan(&self, id: &DocId, format: ExportFormat) -> Result<Vec<u8>, NodeError> {
        match format {
            ExportFormat::Automerge => {
                let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
                Ok(self.verified(id, &folded)?.doc.save())
            }
            ExportFormat::Markdown => {
                let p = self.plan(id)?;
                let mut md = plan::markdown::render(&p, &self.export_context(id)?);
                md.push('\n');
                Ok(md.into_bytes())
            }
            ExportFormat::Html => {
                let p = self.plan(id)?;
                Ok(plan::html::render(&p, &self.export_context(id)?).into_bytes())
            }
        }
    }

    /// The fields of a plan written concurrently with different values, with the
    /// party that wrote each value.
    pub fn plan_conflicts(&self, id: &DocId) -> Result<Vec<ConflictView>, NodeError> {
        let p = self.plan(id)?;
        let state = self.region_state()?;
        Ok(p.conflicts
            .iter()
            .map(|c| {
                let label = match c.target.split_once(' ') {
                    Some(("section", sid)) => p.section(sid).map(|s| s.title.clone()),
                    Some(("agreement", aid)) => p
                        .agreements
                        .iter()
                        .find(|a| a.id == aid)
                        .map(|a| a.title.clone()),
                    _ => Some(p.title.clone()),
                }
                .unwrap_or_default();
                ConflictView {
                    target: c.target.clone(),
                    label,
                    field: c.field.clone(),
                    values: c
                        .values
                        .iter()
                        .map(|v| {
                            let device = automerge::ActorId::try_from(v.actor.as_str())
                                .ok()
                                .and_then(|a| NodeId::from_actor_id(&a));
                            ConflictEntry {
                                value: v.value.clone(),
                                party: device
                                    .and_then(|d| state.devices.get(&d))
                                    .map(|d| d.party.clone()),
                                device,
                            }
                        })
                        .collect(),
                }
            })
            .collect())
    }
}

/// [`Node::resolve_version`] against a document and region state already at hand.
fn resolve_in(
    doc: &Automerge,
    state: &RegionState,
    id: &DocId,
    reference: &str,
) -> Result<Vec<ChangeHash>, NodeError> {
    let reference = reference.trim();
    let shown: String = reference.chars().take(80).collect();
    if reference == "head" || reference == "HEAD" {
        return Ok(doc.get_heads());
    }
    if let Some(party) = reference.strip_prefix("approval:") {
        let a = PartyName::new(party.trim())
            .ok()
            .and_then(|p| state.approvals.get(id)?.get(&p).cloned())
            .ok_or_else(|| NodeError::NoApproval(party.trim().chars().take(60).collect()))?;
        let heads: Vec<ChangeHash> = a.heads.iter().map(|h| ChangeHash(*h)).collect();
        if heads.iter().any(|h| !regiosync_core::sync::holds(doc, h)) {
            return Err(NodeError::UnknownVersion(shown));
        }
        return Ok(heads);
    }
    let all: Vec<ChangeHash> = doc.get_changes_meta(&[]).iter().map(|c| c.hash).collect();
    let mut heads = Vec::new();
    for part in reference.split(',').map(str::trim) {
        let lower = part.to_ascii_lowercase();
        let hex_digits = lower.chars().all(|c| c.is_ascii_hexdigit());
        if hex_digits && !lower.is_empty() && lower.len() < 8 {
            return Err(NodeError::ShortChangeId(part.to_owned()));
        }
        if lower.len() < 8 || lower.len() > 64 || !hex_digits {
            return Err(NodeError::UnknownVersion(shown));
        }
        let hits: Vec<&ChangeHash> = all
            .iter()
            .filter(|h| hex::encode(h.0).starts_with(&lower))
            .collect();
        match hits.as_slice() {
            [one] => heads.push(**one),
            _ => return Err(NodeError::UnknownVersion(shown)),
        }
    }
    heads.sort();
    heads.dedup();
    Ok(heads)
}

/// How many changes the document has that are not in the past of `heads`; `None`
/// if it lacks one of them.
fn changes_since(doc: &Automerge, heads: &[ChangeHash]) -> Option<usize> {
    if heads.iter().any(|h| !regiosync_core::sync::holds(doc, h)) {
        return None;
    }
    Some(doc.get_changes_meta(heads).len())
}

pub(crate) fn fork_at(doc: &Automerge, heads: &[ChangeHash]) -> Result<Automerge, NodeError> {
    if heads.iter().any(|h| !regiosync_core::sync::holds(doc, h)) {
        return Err(NodeError::UnknownVersion(short_heads(heads)));
    }
    doc.fork_at(heads)
        .map_err(|_| NodeError::UnknownVersion(short_heads(heads)))
}

/// For every change in `doc` after `from`: which sections and agreements it touched
/// (from Automerge's patches between the change's dependencies and the change), and
/// the party of its author.
fn authors_between(
    doc: &Automerge,
    from: &[ChangeHash],
    state: &RegionState,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in doc.get_changes(from) {
        let party = NodeId::from_actor_id(c.actor_id())
            .and_then(|d| state.devices.get(&d))
            .map_or_else(|| "(onbekend)".to_owned(), |d| d.party.to_string());
        let deps = c.deps().to_vec();
        let after = [c.hash()];
        for patch in doc.diff(&deps, &after) {
            for target in patch_targets(doc, &patch, &deps, &after) {
                out.entry(target).or_default().insert(party.clone());
            }
        }
    }
    out
}

/// The sections or agreements (`section s-…`, `agreement a-…`) a patch touches, or
/// `plan` for the plan's own fields.
fn patch_targets(
    doc: &Automerge,
    patch: &automerge::Patch,
    before: &[ChangeHash],
    after: &[ChangeHash],
) -> Vec<String> {
    let kind = match patch.path.first() {
        Some((_, Prop::Map(k))) if k == "sections" => "section",
        Some((_, Prop::Map(k))) if k == "agreements" => "agreement",
        Some(_) => return Vec::new(),
        None if patch.obj == ROOT => return vec!["plan".into()],
        None => return Vec::new(),
    };
    let id_of = |obj: &ObjId, heads: &[ChangeHash]| -> Option<String> {
        match doc.get_at(obj, "id", heads).ok()?? {
            (Value::Scalar(s), _) => s.as_str().map(|s| format!("{kind} {s}")),
            _ => None,
        }
    };
    let items: Vec<Option<String>> = match patch.path.len() {
        1 => match &patch.action {
            automerge::PatchAction::Insert { values, .. } => {
                values.iter().map(|(_, obj, _)| id_of(obj, after)).collect()
            }
            automerge::PatchAction::DeleteSeq { index, length } => (*index..index + length)
                .map(|i| match doc.get_at(&patch.obj, i, before).ok()?? {
                    (Value::Object(_), obj) => id_of(&obj, before),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        2 => vec![id_of(&patch.obj, after)],
        _ => vec![id_of(&patch.path[2].0, after)],
    };
    items.into_iter().flatten().collect()
}
