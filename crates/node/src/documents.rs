//! The document API of a node: create, list, read and edit plans, durably.
//!
//! Every edit is one Automerge change, made and stored inside one store write
//! transaction: the document is rebuilt from the store, edited, and the change is
//! appended before the transaction commits. Because the rebuild happens under the
//! write lock, two processes editing the same document cannot both take the same
//! Automerge sequence number.

use automerge::transaction::{CommitOptions, Transaction};
use automerge::{Automerge, ChangeHash, ReadDoc};
use regiosync_core::id::{
    DocId, NodeId, PartyName, normalize_doc_id_prefix, shortest_unique_prefix,
};
use regiosync_core::plan::{self, AgreementInput, Plan, PlanError, PlanKind, SectionEdit};
use regiosync_store::{ChangeRow, DocumentRow, StoredDoc};
use serde::Serialize;

use crate::Node;
use crate::error::NodeError;

/// The document kind of plans in the store.
pub const KIND_PLAN: &str = "plan";
/// After this many changes since the last snapshot, a new snapshot is written.
pub const SNAPSHOT_EVERY: usize = 64;

/// A line of `doc list`.
#[derive(Clone, Debug, Serialize)]
pub struct DocSummary {
    /// Full id.
    pub id: DocId,
    /// Shortest unambiguous prefix of the id on this node.
    pub short: String,
    /// Document kind (`plan`).
    pub kind: String,
    /// Subkind (`jeugdplan`, …).
    pub subkind: String,
    /// Title.
    pub title: String,
}

/// One change in the history of a document (`doc log`).
#[derive(Clone, Debug, Serialize)]
pub struct HistoryEntry {
    /// The change hash, hex.
    pub hash: String,
    /// When the author made it (the author's clock), Unix seconds.
    pub time: i64,
    /// The author device, if its actor id is a node id.
    pub device: Option<NodeId>,
    /// The author's party, where this node knows it.
    pub party: Option<PartyName>,
    /// The author device's sequence number.
    pub seq: u64,
    /// What the change did.
    pub message: Option<String>,
}

/// The result of an edit.
#[derive(Clone, Debug)]
pub struct Edited<T> {
    /// What the edit function returned.
    pub value: T,
    /// The new change, or `None` if the edit changed nothing.
    pub change: Option<ChangeHash>,
}

impl Node {
    /// Creates a plan owned by this node's party and returns its id.
    pub fn create_plan(&mut self, kind: PlanKind, title: &str) -> Result<DocId, NodeError> {
        let id = DocId::random()?;
        let owner = self.info.party.clone();
        let title = plan::validate_title("plan title", title)?;
        let row = DocumentRow {
            id,
            kind: KIND_PLAN.into(),
            subkind: kind.as_str().into(),
            title: title.clone(),
            created_ms: now_ms(),
        };
        let actor = self.info.node_id.actor_id();
        let message = format!("create {kind}");
        self.store.write(|tx| {
            tx.insert_document(&row)?;
            let mut doc = Automerge::new();
            doc.set_actor(actor);
            let mut t = doc.transaction();
            plan::init_plan(&mut t, kind, &title, &owner)?;
            commit(t, &message);
            if let Some(c) = doc.get_last_local_change() {
                tx.append_change(&id, &change_row(&c))?;
            }
            Ok::<_, NodeError>(())
        })?;
        tracing::info!(doc = %id, kind = %kind, "created plan");
        Ok(id)
    }

    /// All documents on this node, oldest first.
    pub fn documents(&self) -> Result<Vec<DocSummary>, NodeError> {
        let rows = self.store.documents()?;
        let ids: Vec<DocId> = rows.iter().map(|r| r.id).collect();
        Ok(rows
            .into_iter()
            .map(|r| DocSummary {
                short: shortest_unique_prefix(&r.id, &ids),
                id: r.id,
                kind: r.kind,
                subkind: r.subkind,
                title: r.title,
            })
            .collect())
    }

    /// Resolves a full id or an unambiguous prefix (at least 8 hex digits).
    pub fn resolve(&self, reference: &str) -> Result<DocId, NodeError> {
        let prefix = normalize_doc_id_prefix(reference)?;
        let mut ids = self.store.ids_with_prefix(&prefix)?;
        match ids.len() {
            0 => Err(NodeError::UnknownDocument(prefix)),
            1 => Ok(ids.remove(0)),
            count => Err(NodeError::AmbiguousDocument {
                reference: prefix,
                count,
            }),
        }
    }

    /// The shortest unambiguous form of `id` on this node.
    pub fn short_id(&self, id: &DocId) -> Result<String, NodeError> {
        let ids: Vec<DocId> = self.store.documents()?.iter().map(|r| r.id).collect();
        Ok(shortest_unique_prefix(id, &ids))
    }

    /// Reads a plan.
    pub fn plan(&self, id: &DocId) -> Result<Plan, NodeError> {
        let stored = self.store.load(id)?;
        check_plan(&stored)?;
        let doc = rebuild(&stored)?;
        Ok(plan::read_plan(&doc)?)
    }

    /// Sets a section's text (creating the section if needed); see
    /// [`plan::set_section`].
    pub fn set_section(
        &mut self,
        id: &DocId,
        section: &str,
        text: &str,
    ) -> Result<Edited<SectionEdit>, NodeError> {
        let message = format!("set section {}", section.trim());
        self.edit_plan(id, &message, |t| plan::set_section(t, section, text))
    }

    /// Adds an agreement and returns its id.
    pub fn add_agreement(
        &mut self,
        id: &DocId,
        input: &AgreementInput,
    ) -> Result<Edited<String>, NodeError> {
        let message = format!("add agreement {}", input.title.trim());
        self.edit_plan(id, &message, |t| plan::add_agreement(t, input))
    }

    /// The history of a document in causal order (a change after the ones it builds on).
    pub fn history(&self, id: &DocId) -> Result<Vec<HistoryEntry>, NodeError> {
        let stored = self.store.load(id)?;
        let doc = rebuild(&stored)?;
        let out: Vec<HistoryEntry> = doc
            .get_changes(&[])
            .into_iter()
            .map(|c| {
                let device = NodeId::from_actor_id(c.actor_id());
                HistoryEntry {
                    hash: c.hash().to_string(),
                    time: c.timestamp(),
                    party: (device == Some(self.info.node_id)).then(|| self.info.party.clone()),
                    device,
                    seq: c.seq(),
                    message: c.message().map(str::to_owned),
                }
            })
            .collect();
        // `get_changes` returns a causal order; sorting by the authors' clocks could
        // list a change before one it depends on.
        Ok(out)
    }

    /// Runs one plan edit as one Automerge change in one store transaction.
    fn edit_plan<T>(
        &mut self,
        id: &DocId,
        message: &str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, PlanError>,
    ) -> Result<Edited<T>, NodeError> {
        let actor = self.info.node_id.actor_id();
        let (edited, snapshot) = self.store.write(|tx| {
            let stored = tx.load(id)?;
            check_plan(&stored)?;
            let mut doc = rebuild(&stored)?;
            doc.set_actor(actor);
            let mut t = doc.transaction();
            let value = match f(&mut t) {
                Ok(v) => v,
                Err(e) => {
                    t.rollback();
                    return Err(e.into());
                }
            };
            let change = commit(t, message);
            let mut covers = None;
            if change.is_some()
                && let Some(c) = doc.get_last_local_change()
            {
                covers = tx.append_change(id, &change_row(&c))?;
            }
            // Compact when the tail is long. This runs after the edit's commit (the edit
            // is durable either way), so a failed snapshot never fails the edit.
            let snapshot = match covers {
                Some(rowid) if stored.tail.len() + 1 >= SNAPSHOT_EVERY => Some((doc, rowid)),
                _ => None,
            };
            Ok::<_, NodeError>((Edited { value, change }, snapshot))
        })?;
        if let Some((doc, rowid)) = snapshot {
            let bytes = doc.save();
            if let Err(e) = self
                .store
                .write(|tx| tx.put_snapshot(id, &bytes, rowid, now_ms()))
            {
                // The edit itself is committed; a missing snapshot only slows loading.
                tracing::warn!(doc = %id, error = %e, "could not write a snapshot");
            }
        }
        Ok(edited)
    }
}

fn check_plan(stored: &StoredDoc) -> Result<(), NodeError> {
    if stored.meta.kind != KIND_PLAN {
        return Err(NodeError::NotAPlan(
            stored.meta.id,
            stored.meta.kind.clone(),
        ));
    }
    Ok(())
}

/// Rebuilds an Automerge document from its snapshot and the changes after it.
pub(crate) fn rebuild(stored: &StoredDoc) -> Result<Automerge, NodeError> {
    let damaged = |e: automerge::AutomergeError| NodeError::DamagedDocument {
        id: stored.meta.id,
        detail: e.to_string(),
    };
    let mut doc = match &stored.snapshot {
        Some(bytes) => Automerge::load(bytes).map_err(damaged)?,
        None => Automerge::new(),
    };
    // Parse every change strictly: `load_incremental` would skip a damaged change with
    // only a log line, and a later local edit could then reuse its sequence number.
    let mut changes = Vec::with_capacity(stored.tail.len());
    for bytes in &stored.tail {
        let change = automerge::Change::from_bytes(bytes.clone()).map_err(|e| {
            NodeError::DamagedDocument {
                id: stored.meta.id,
                detail: e.to_string(),
            }
        })?;
        changes.push(change);
    }
    doc.apply_changes(changes).map_err(damaged)?;
    if !doc.get_missing_deps(&[]).is_empty() {
        return Err(NodeError::DamagedDocument {
            id: stored.meta.id,
            detail: "changes are missing from the store".into(),
        });
    }
    Ok(doc)
}

fn commit(t: Transaction<'_>, message: &str) -> Option<ChangeHash> {
    let secs = time::OffsetDateTime::now_utc().unix_timestamp();
    t.commit_with(
        CommitOptions::default()
            .with_message(message)
            .with_time(secs),
    )
    .0
}

fn change_row(c: &automerge::Change) -> ChangeRow {
    ChangeRow {
        hash: c.hash().0,
        actor: c.actor_id().to_bytes().to_vec(),
        seq: c.seq(),
        bytes: c.raw_bytes().to_vec(),
        stored_ms: now_ms(),
    }
}

pub(crate) fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
