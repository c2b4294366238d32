//! The document API of a node: create, list, read and edit plans, durably, with every
//! change signed and every read rebuilt from accepted changes only.
//!
//! Every edit is one Automerge change, made and stored inside one store write
//! transaction: the control log is folded, the document is rebuilt from its accepted
//! changes, edited, and the change is appended with its signed envelope before the
//! transaction commits. Because the rebuild happens under the write lock, two
//! processes editing the same document cannot both take the same sequence number.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use automerge::transaction::{CommitOptions, Transaction};
use automerge::{Automerge, Change, ChangeHash};
use regiosync_core::control::{Folded, OpBody};
use regiosync_core::envelope::{
    Candidate, ChangeEnvelope, ChangeRejection, SignedFields, select_changes_checked,
};
use regiosync_core::id::{
    DocId, NodeId, PartyName, normalize_doc_id_prefix, shortest_unique_prefix,
};
use regiosync_core::kind::{KindName, Kinds};
use regiosync_core::plan::received::{self, Budget};
use regiosync_core::plan::{
    self, AgreementInput, AgreementUpdate, CommentInput, Plan, PlanError, PlanKind, SectionEdit,
    SectionMove, SectionPlace,
};
use regiosync_store::{ChangeRow, DocumentRow, Snapshot, StoreRead};
use serde::Serialize;

use crate::Node;
use crate::clock::now_ms;
use crate::control_log::control_of;
use crate::error::NodeError;

/// The document kind of plans in the store (the family of their kind names).
pub const KIND_PLAN: &str = regiosync_core::plan::PLAN_FAMILY;
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
    /// The author's party, from the region state.
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
    /// Creates a plan owned by this node's party, read and written by every party of
    /// the region, now and later (change that with [`Node::change_acl`]), and
    /// returns its id.
    pub fn create_plan(&mut self, kind: PlanKind, title: &str) -> Result<DocId, NodeError> {
        let title = plan::validate_title("plan title", title)?;
        self.create_document(&kind.kind_name(), &title)
    }

    /// A new document's id, its store row and the ops that create it: owned by
    /// this node's party, read and written by every party of the region, the ones
    /// that join later included (`SetAudience`). Plans are created with
    /// `CreateDoc`, which every version reads; other kinds with `CreateDocument`.
    pub(crate) fn new_document(
        &self,
        kind: &KindName,
        title: &str,
    ) -> Result<(DocId, DocumentRow, Vec<OpBody>), NodeError> {
        let id = DocId::random()?;
        let owner = self.info.party.clone();
        let row = DocumentRow {
            id,
            kind: kind.family().into(),
            subkind: kind.variant().unwrap_or_default().into(),
            title: title.to_owned(),
            created_ms: now_ms(),
        };
        let create = match PlanKind::of_kind_name(kind) {
            Some(plan_kind) => OpBody::CreateDoc {
                doc: id,
                kind: plan_kind,
                owner,
                readers: vec![],
                writers: vec![],
            },
            None => OpBody::CreateDocument {
                doc: id,
                kind: kind.clone(),
                owner,
                readers: vec![],
                writers: vec![],
            },
        };
        let ops = vec![
            create,
            OpBody::SetAudience {
                doc: id,
                everyone_reads: true,
                everyone_writes: true,
                cutoffs: vec![],
            },
        ];
        Ok((id, row, ops))
    }

    /// All plans on this node, oldest first (dossiers are listed by
    /// [`Node::dossier_ids`]: they have no title that may be shown).
    pub fn documents(&self) -> Result<Vec<DocSummary>, NodeError> {
        let mut rows = self.store.documents()?;
        rows.retain(|r| r.kind == KIND_PLAN);
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

    /// Reads a plan, from its accepted changes only.
    pub fn plan(&self, id: &DocId) -> Result<Plan, NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        ensure_plan(id, &folded)?;
        let v = self.verified(id, &folded)?;
        if let Some(p) = v.plan.get() {
            return Ok(p.clone());
        }
        let p = read_plan_of(&v.doc, &folded.state, id)?;
        // The key of the resident document includes the control heads, so the
        // region state that `read_plan_of` holds the plan to is the same for `v`.
        let _ = v.plan.set(p.clone());
        Ok(p)
    }

    /// The newest change among a plan's current heads: when it was made (the
    /// author's clock, Unix seconds) and by which party. Every other change is an
    /// ancestor of a head; this reads the heads only instead of the whole history
    /// ([`Node::history`]), so lists and pages can show "last change" cheaply. A
    /// head's author clock can be behind an ancestor's (clocks differ); the time
    /// shown is then the head's, which is when the plan last changed to its
    /// current state as far as this node can tell.
    pub fn last_change(&self, id: &DocId) -> Result<Option<(i64, Option<PartyName>)>, NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        let v = self.verified(id, &folded)?;
        Ok(v.doc
            .get_heads()
            .iter()
            .filter_map(|h| v.doc.get_change_meta_by_hash(h))
            .max_by_key(|c| c.timestamp)
            .map(|c| {
                let party = NodeId::from_actor_id(&c.actor)
                    .and_then(|d| folded.state.devices.get(&d))
                    .map(|d| d.party.clone());
                (c.timestamp, party)
            }))
    }

    /// The equivocations this node refused (a device that signed two different
    /// changes under one sequence number of a plan), oldest first, with the device
    /// and its party as the region state names them.
    pub fn equivocations(&self) -> Result<Vec<Equivocation>, NodeError> {
        let state = self.region_state()?;
        Ok(self
            .store
            .equivocations()?
            .into_iter()
            .map(|row| {
                let device = NodeId::from_actor_id(&automerge::ActorId::from(row.actor.as_slice()));
                let party = device
                    .and_then(|d| state.devices.get(&d))
                    .map(|d| d.party.clone());
                let removed = device.is_some_and(|d| state.active_device(&d).is_none());
                Equivocation {
                    doc: row.doc,
                    device,
                    party,
                    removed,
                    seq: row.seq,
                    first: hex::encode(row.first),
                    second: hex::encode(row.second),
                    seen_ms: row.seen_ms,
                }
            })
            .collect())
    }

    /// How many stored changes of a document are rejected (forged, unauthorised, past
    /// a cutoff, or built on such a change).
    pub fn rejected_changes(&self, id: &DocId) -> Result<usize, NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        Ok(self.verified(id, &folded)?.rejected)
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

    /// Renames a section.
    pub fn rename_section(
        &mut self,
        id: &DocId,
        section: &str,
        title: &str,
    ) -> Result<Edited<String>, NodeError> {
        let message = format!("rename section {}", section.trim());
        self.edit_plan(id, &message, |t| plan::rename_section(t, section, title))
    }

    /// Deletes a section ([`plan::delete_section`]): a signed change, in history.
    pub fn delete_section(
        &mut self,
        id: &DocId,
        section: &str,
    ) -> Result<Edited<String>, NodeError> {
        let message = format!("delete section {}", section.trim());
        self.edit_plan(id, &message, |t| plan::delete_section(t, section))
    }

    /// Moves a section to another place in the plan's order ([`plan::move_section`]):
    /// a signed change, in history; nothing is written if it is there already.
    pub fn move_section(
        &mut self,
        id: &DocId,
        section: &str,
        place: &SectionPlace,
    ) -> Result<Edited<SectionMove>, NodeError> {
        let message = format!("move section {}", section.trim());
        self.edit_plan(id, &message, |t| plan::move_section(t, section, place))
    }

    /// Removes an agreement ([`plan::remove_agreement`]): a signed change, in history.
    pub fn remove_agreement(
        &mut self,
        id: &DocId,
        agreement: &str,
    ) -> Result<Edited<()>, NodeError> {
        let message = format!("remove agreement {}", agreement.trim());
        self.edit_plan(id, &message, |t| plan::remove_agreement(t, agreement))
    }

    /// Adds an agreement and returns its id. Its owner must be an active party of the
    /// region.
    pub fn add_agreement(
        &mut self,
        id: &DocId,
        input: &AgreementInput,
    ) -> Result<Edited<String>, NodeError> {
        self.check_active_party(&input.owner)?;
        let message = format!("add agreement {}", input.title.trim());
        self.edit_plan(id, &message, |t| plan::add_agreement(t, input))
    }

    /// A party named by a user (an agreement's owner, a party to rename) must be an
    /// active party of the region: a typo would otherwise name a party nobody is.
    pub(crate) fn check_active_party(&self, owner: &PartyName) -> Result<(), NodeError> {
        let state = self.region_state()?;
        if state.active_party(owner).is_some() {
            return Ok(());
        }
        let parties: Vec<&str> = state
            .parties
            .iter()
            .filter(|(_, p)| !p.removed)
            .map(|(n, _)| n.as_str())
            .collect();
        Err(NodeError::UnknownParty {
            party: owner.to_string(),
            parties: parties.join(", "),
        })
    }

    /// Changes an agreement (fields, status, linked sections); see
    /// [`plan::update_agreement`].
    pub fn update_agreement(
        &mut self,
        id: &DocId,
        agreement: &str,
        update: &AgreementUpdate,
    ) -> Result<Edited<()>, NodeError> {
        if let Some(owner) = &update.owner {
            self.check_active_party(owner)?;
        }
        let message = match update.status {
            Some(s) => format!("agreement {} {s}", agreement.trim()),
            None => format!("update agreement {}", agreement.trim()),
        };
        self.edit_plan(id, &message, |t| {
            plan::update_agreement(t, agreement, update)
        })
    }

    /// Comments on a quoted passage of a section as this node's party.
    pub fn add_comment(
        &mut self,
        id: &DocId,
        section: &str,
        quote: &str,
        text: &str,
    ) -> Result<Edited<String>, NodeError> {
        let input = CommentInput {
            section: section.to_owned(),
            quote: quote.to_owned(),
            text: text.to_owned(),
            author: self.info.party.clone(),
            time: now_ms() / 1000,
        };
        let message = format!("comment on {}", section.trim());
        self.edit_plan(id, &message, |t| plan::add_comment(t, &input))
    }

    /// Marks a comment resolved, or open again.
    pub fn resolve_comment(
        &mut self,
        id: &DocId,
        comment: &str,
        resolved: bool,
    ) -> Result<Edited<()>, NodeError> {
        let message = if resolved {
            format!("resolve comment {}", comment.trim())
        } else {
            format!("reopen comment {}", comment.trim())
        };
        self.edit_plan(id, &message, |t| {
            plan::resolve_comment(t, comment, resolved)
        })
    }

    /// The history of a document in causal order (a change after the ones it builds
    /// on), accepted changes only.
    pub fn history(&self, id: &DocId) -> Result<Vec<HistoryEntry>, NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        let v = self.verified(id, &folded)?;
        Ok(v.doc
            .get_changes_meta(&[])
            .into_iter()
            .map(|c| {
                let device = NodeId::from_actor_id(&c.actor);
                HistoryEntry {
                    hash: c.hash.to_string(),
                    time: c.timestamp,
                    party: device
                        .and_then(|d| folded.state.devices.get(&d))
                        .map(|d| d.party.clone()),
                    device,
                    seq: c.seq,
                    message: c.message.as_deref().map(one_line),
                }
            })
            .collect())
    }

    /// Appends `n` signed changes (one agreement each) to a plan in one transaction,
    /// for benchmarks that need large histories fast. Not for normal use: a real edit
    /// goes through [`Node::add_agreement`].
    #[doc(hidden)]
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn bulk_agreements_for_bench(&mut self, id: &DocId, n: usize) -> Result<(), NodeError> {
        let owner = self.info.party.clone();
        self.bulk_edit_plan_for_bench(id, n, |t, i| {
            let input = AgreementInput {
                title: format!("Afspraak {i}"),
                owner: owner.clone(),
                deadline: None,
            };
            plan::add_agreement(t, &input).map(|_| ())
        })
    }

    /// Appends `n` signed changes made by `f` (given the change's index) to a plan in
    /// one store transaction, for benchmarks. Not for normal use: `f` is not checked
    /// against the plan schema.
    #[doc(hidden)]
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn bulk_edit_plan_for_bench(
        &mut self,
        id: &DocId,
        n: usize,
        mut f: impl FnMut(&mut Transaction<'_>, usize) -> Result<(), PlanError>,
    ) -> Result<(), NodeError> {
        let actor = self.info.node_id.actor_id();
        let author = self.info.node_id;
        let key = self.signer()?.signing_key().clone();
        self.store.write(|tx| {
            let folded = control_of(tx)?.ok_or(NodeError::NotInRegion)?;
            let mut doc = load_verified(tx, id, &folded, &self.kinds)?.doc;
            doc.set_actor(actor.clone());
            for i in 0..n {
                let mut t = doc.transaction();
                f(&mut t, i)?;
                if commit(t, "bench").is_some()
                    && let Some(c) = doc.get_last_local_change()
                {
                    tx.append_change(id, &signed_row(&c, id, &folded, author, &key)?)?;
                }
            }
            Ok::<_, NodeError>(())
        })
    }

    /// Stores Automerge changes made elsewhere as a new, unsealed document (a plan of
    /// `kind` as far as the control plane is concerned), each signed by this device,
    /// for benchmarks that sync the same changes sealed and unsealed. The changes must
    /// be this device's own (their actor is its actor), or they fail verification on
    /// every receiver. Not for normal use.
    #[doc(hidden)]
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn import_changes_for_bench(
        &mut self,
        kind: PlanKind,
        changes: &[Change],
    ) -> Result<DocId, NodeError> {
        let (id, row, ops) = self.new_document(&kind.kind_name(), "")?;
        let key = self.signer()?.signing_key().clone();
        let author = self.info.node_id;
        self.issue_ops(ops, |tx| {
            tx.insert_document(&row)?;
            let folded = control_of(tx)?.ok_or(NodeError::NotInRegion)?;
            for c in changes {
                tx.append_change(&id, &signed_row(c, &id, &folded, author, &key)?)?;
            }
            Ok(())
        })?;
        Ok(id)
    }

    /// Runs one plan edit as one signed Automerge change in one store transaction.
    fn edit_plan<T>(
        &mut self,
        id: &DocId,
        message: &str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, PlanError>,
    ) -> Result<Edited<T>, NodeError> {
        self.edit_plan_with(id, message, |_, _| Ok(()), |t, ()| f(t))
    }

    /// [`Node::edit_plan`] with a look at the plan first: `prepare` reads the
    /// verified document (inside the same store transaction, so nothing is written
    /// between the look and the edit) and hands `f` what it found.
    pub(crate) fn edit_plan_with<P, T>(
        &mut self,
        id: &DocId,
        message: &str,
        prepare: impl FnOnce(&Automerge, &Folded) -> Result<P, NodeError>,
        f: impl FnOnce(&mut Transaction<'_>, P) -> Result<T, PlanError>,
    ) -> Result<Edited<T>, NodeError> {
        let prepare = |doc: &Automerge, folded: &Folded| {
            ensure_plan(id, folded)?;
            prepare(doc, folded)
        };
        self.edit_document_with(id, message, prepare, f)
    }

    /// Runs one edit of a document of the region log, of any kind, as one signed
    /// Automerge change in one store transaction: `prepare` reads the verified
    /// document first (inside the same transaction), `f` edits it with what
    /// `prepare` found. The change is held to its kind's rule and to the per-device
    /// budget before it is stored, as every receiver will hold it.
    pub(crate) fn edit_document_with<P, T, E>(
        &mut self,
        id: &DocId,
        message: &str,
        prepare: impl FnOnce(&Automerge, &Folded) -> Result<P, NodeError>,
        f: impl FnOnce(&mut Transaction<'_>, P) -> Result<T, E>,
    ) -> Result<Edited<T>, NodeError>
    where
        NodeError: From<E>,
    {
        let actor = self.info.node_id.actor_id();
        let author = self.info.node_id;
        let key = self.signer()?.signing_key().clone();
        let (resident, kinds) = (&self.resident, &self.kinds);
        let (edited, kept) = self.store.write(|tx| {
            let folded = control_of(tx)?.ok_or(NodeError::NotInRegion)?;
            // The copy in memory when it is the document as the store holds it now
            // (same control state, nothing stored since, read inside this write
            // transaction): an edit in the running node applies one change to it
            // instead of rebuilding and re-verifying the plan from the store.
            let mut v = take_verified(resident, kinds, tx, id, &folded)?;
            // This device's accepted changes: counted once per copy from the change
            // graph's metadata (which builds every change's clock: for a plan with
            // thousands of changes it was most of an edit's time), then carried.
            let seq = match v.own_changes {
                Some(n) => n,
                None => v
                    .doc
                    .get_changes_meta(&[])
                    .iter()
                    .filter(|c| *c.actor == actor)
                    .count() as u64,
            } + 1;
            folded
                .state
                .change_authority(id, &author, seq, &[0; 32])
                .map_err(NodeError::NoWritePermission)?;
            // Automerge numbers the change after this device's accepted ones; if the
            // store holds later ones of it (refused: written without write access),
            // that number is taken, and a second change under it would be an
            // equivocation that every node refuses.
            let stored = tx.max_seq(id, actor.to_bytes())?;
            if stored >= seq {
                return Err(NodeError::SequenceTaken {
                    id: *id,
                    first: seq,
                    last: stored,
                });
            }
            let prepared = prepare(&v.doc, &folded)?;
            let doc = &mut v.doc;
            doc.set_actor(actor.clone());
            let mut t = doc.transaction();
            let value = match f(&mut t, prepared) {
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
                // The number checked above is the one Automerge gave the change (a
                // copy whose count went wrong must not write: nothing is stored, and
                // the copy is dropped, so the next edit rebuilds it).
                if c.seq() != seq {
                    return Err(damaged(
                        id,
                        format!(
                            "the new change is number {} of this device, not {seq}",
                            c.seq()
                        ),
                    ));
                }
                // The bounds every receiver holds the change to (the change alone by
                // its kind's rule, and what this device has written into the
                // document): an honest node never makes a change that others leave out.
                self.kinds
                    .check_by(id, &folded.state, &c, &author)
                    .map_err(|why| match why {
                        ChangeRejection::OutsideSchema(why) => {
                            NodeError::BeyondReceiptLimits { id: *id, why }
                        }
                        why => NodeError::RefusedByKind { id: *id, why },
                    })?;
                v.budget
                    .admit(&c)
                    .map_err(|why| NodeError::BeyondReceiptLimits { id: *id, why })?;
                covers = tx.append_change(id, &signed_row(&c, id, &folded, author, &key)?)?;
            }
            // The edited copy is kept in memory if it is the store's document once
            // this transaction commits: unchanged, or with exactly the change stored.
            let kept = match (change, covers) {
                (None, _) => Some(v),
                (Some(_), Some(rowid)) => {
                    v.own_changes = Some(seq);
                    v.last_change = rowid;
                    v.tail_len += 1;
                    v.plan = std::sync::OnceLock::new();
                    Some(v)
                }
                (Some(_), None) => None,
            };
            Ok::<_, NodeError>((Edited { value, change }, kept.map(|v| (v, folded))))
        })?;
        if edited.change.is_some() {
            self.announce_local(Some(*id), crate::events::ChangeKind::of_message(message));
        }
        if let Some((mut v, folded)) = kept {
            // Compact when the tail is long or the snapshot is stale. This runs after
            // the edit's commit (the edit is durable either way), so a failed snapshot
            // never fails the edit. Not while a stored change is held back: see
            // `Verified::snapshot`.
            if let Some(snap) = v.snapshot(&folded) {
                match self.store.write(|tx| tx.put_snapshot(id, &snap, now_ms())) {
                    Ok(()) => {
                        v.tail_len = 0;
                        v.snapshot_fresh = true;
                    }
                    Err(e) => tracing::warn!(doc = %id, error = %e, "could not write a snapshot"),
                }
            }
            keep_resident(&self.resident, id, &folded, v);
        }
        Ok(edited)
    }
}

/// A document rebuilt from its accepted changes.
#[derive(Clone)]
pub(crate) struct Verified {
    pub(crate) doc: Automerge,
    /// Stored changes that were rejected.
    pub(crate) rejected: usize,
    /// Changes after the snapshot that was used.
    pub(crate) tail_len: usize,
    /// Whether a snapshot verified under the current control heads was used.
    pub(crate) snapshot_fresh: bool,
    /// The store position of the newest change at load time.
    pub(crate) last_change: i64,
    /// What each device has written into `doc`, carried along so that changes
    /// applied on top are held to it without rescanning the document.
    pub(crate) budget: Budget,
    /// Dependencies of stored changes that this node holds nowhere (neither in
    /// `doc` nor among its stored changes), so those changes wait. Asked of peers
    /// by hash (`need`): a peer's bloom filter false positive (it believed this
    /// node had a change) leaves such a gap that nothing else would ever fill,
    /// because the changes built on it are stored already and offered again in
    /// vain. Automerge reports these from its queue; a verified document never
    /// queues, so they are found here.
    pub(crate) missing_deps: Vec<[u8; 32]>,
    /// How many changes this node's own device has in `doc`, once an edit counted
    /// them (the next edit's sequence number follows).
    pub(crate) own_changes: Option<u64>,
    /// The plan read out of `doc`, once: a resident document is immutable (a new
    /// change makes a new `Verified`), and reading a plan with hundreds of agreements
    /// costs tens of milliseconds, which every page view would otherwise pay again.
    pub(crate) plan: std::sync::OnceLock<Plan>,
}

impl Verified {
    /// A document with no changes (one this node does not hold yet).
    pub(crate) fn empty() -> Self {
        Self {
            doc: Automerge::new(),
            rejected: 0,
            tail_len: 0,
            snapshot_fresh: false,
            last_change: 0,
            budget: Budget::default(),
            missing_deps: Vec::new(),
            own_changes: None,
            plan: std::sync::OnceLock::new(),
        }
    }

    /// A snapshot worth writing: the loaded document, if every stored change up to
    /// `last_change` is in it. A snapshot covers every stored row up to its position,
    /// so one taken while some change was held back (missing dependencies, control
    /// ops not yet known, a removed device's change awaiting rescue) would skip that
    /// change for good; such documents get no snapshot until nothing is held back.
    pub(crate) fn snapshot(&self, folded: &Folded) -> Option<Snapshot> {
        let useful = !self.snapshot_fresh || self.tail_len >= SNAPSHOT_EVERY;
        (useful && self.rejected == 0 && self.last_change > 0).then(|| Snapshot {
            bytes: self.doc.save(),
            covers_upto: self.last_change,
            control_heads: heads_key(folded),
        })
    }
}

/// Rebuilds a plan from the store, keeping only accepted changes. A snapshot is used
/// when it was verified under the current control heads; otherwise every change is
/// verified again (a revocation may have made some of them invalid).
pub(crate) fn load_verified(
    src: &impl StoreRead,
    id: &DocId,
    folded: &Folded,
    kinds: &Kinds,
) -> Result<Verified, NodeError> {
    let stored = src.load(id)?;
    // Every document of the region log is verified here; a dossier (sealed, not in
    // the region log) never is.
    if stored.meta.kind == crate::dossiers::KIND_DOSSIER {
        return Err(NodeError::NotAPlan(
            stored.meta.id,
            stored.meta.kind.clone(),
        ));
    }
    let key = heads_key(folded);
    let (doc, rows, fresh) = match stored.snapshot {
        Some(s) if s.control_heads == key => {
            let doc = Automerge::load(&s.bytes).map_err(|e| damaged(id, e.to_string()))?;
            (doc, stored.tail, true)
        }
        _ => (Automerge::new(), src.changes(id)?, false),
    };
    let mut v = apply_verified(doc, None, &rows, id, folded, kinds)?;
    v.tail_len = rows.len();
    v.snapshot_fresh = fresh;
    v.last_change = stored.last_change;
    Ok(v)
}

/// A device that signed two different changes under one sequence number of a plan
/// (see [`Node::equivocations`]). The first one held counts; the second was refused,
/// and is kept in the store with its signature as evidence.
#[derive(Clone, Debug, Serialize)]
pub struct Equivocation {
    /// The plan.
    pub doc: DocId,
    /// The device, if its actor id names one.
    pub device: Option<NodeId>,
    /// Its party, if the region knows the device.
    pub party: Option<PartyName>,
    /// Whether the device is removed by now.
    pub removed: bool,
    /// The sequence number both changes carry.
    pub seq: u64,
    /// The change held, hex.
    pub first: String,
    /// The change refused, hex.
    pub second: String,
    /// When this node first saw it, Unix milliseconds.
    pub seen_ms: i64,
}

/// Reads a plan and holds what it says of itself to the region log: the owner and
/// the kind are the ones its `CreateDoc` op named, whatever the document's own keys
/// say. A received change may not rewrite them (`plan::received::check_change`), so
/// a difference means a change stored before that check; the region log wins, and
/// the difference is logged (ids only).
pub(crate) fn read_plan_of<R: automerge::ReadDoc>(
    doc: &R,
    state: &regiosync_core::control::RegionState,
    id: &DocId,
) -> Result<Plan, NodeError> {
    let mut p = plan::read_plan(doc)?;
    if let Some(acl) = state.docs.get(id)
        && (p.owner != acl.owner || PlanKind::of_kind_name(&acl.kind) != Some(p.kind))
    {
        tracing::warn!(
            doc = %id,
            "the plan's own owner or kind differs from its creation in the region log; showing the region log's"
        );
        p.owner = acl.owner.clone();
        if let Some(kind) = PlanKind::of_kind_name(&acl.kind) {
            p.kind = kind;
        }
    }
    Ok(p)
}

/// Refuses a document of the region log whose kind is not a plan (a plan-only
/// read or edit of another kind's document).
fn ensure_plan(id: &DocId, folded: &Folded) -> Result<(), NodeError> {
    match folded.state.docs.get(id) {
        Some(acl) if acl.kind.family() != KIND_PLAN => {
            Err(NodeError::NotAPlan(*id, acl.kind.to_string()))
        }
        _ => Ok(()),
    }
}

fn damaged(id: &DocId, detail: String) -> NodeError {
    NodeError::DamagedDocument { id: *id, detail }
}

/// Verifies stored change rows against the region state and applies the accepted
/// ones to `doc` (which holds only accepted changes). `budget`: what each device has
/// written into `doc`, if known (otherwise it is counted from `doc`'s changes).
fn apply_verified(
    mut doc: Automerge,
    budget: Option<Budget>,
    rows: &[ChangeRow],
    id: &DocId,
    folded: &Folded,
    kinds: &Kinds,
) -> Result<Verified, NodeError> {
    let mut changes = Vec::with_capacity(rows.len());
    let mut envelopes = Vec::with_capacity(rows.len());
    for row in rows {
        // A change that does not parse means the store is damaged: refuse instead of
        // skipping it, which could make the next local edit reuse its sequence number.
        changes
            // Through the same guard as a peer's change: a compressed chunk stored
            // before the guard existed is not inflated on every load.
            .push(
                regiosync_core::change_chunk::parse_change(&row.bytes)
                    .map_err(|e| damaged(id, e.to_string()))?,
            );
        envelopes.push(
            row.envelope
                .as_deref()
                .and_then(|b| ChangeEnvelope::decode(b).ok()),
        );
    }
    // A rebuild from the store after a restart checks every signature again: on all
    // cores (a no-op for the few changes of an incremental load).
    regiosync_core::envelope::preverify_signatures(envelopes.iter().flatten());
    let candidates: Vec<Candidate<'_>> = changes
        .iter()
        .zip(&envelopes)
        .map(|(c, e)| Candidate {
            change: c,
            envelope: e.as_ref(),
        })
        .collect();
    let known = folded.known_ops();
    // The change graph's metadata, not the changes rebuilt from the op set: this
    // runs for every change received or made.
    let in_doc: HashSet<[u8; 32]> = doc.get_changes_meta(&[]).iter().map(|c| c.hash.0).collect();
    // A document from a snapshot: count what its changes wrote, once (then the
    // budget is carried along with the document, see `Node::verified`).
    let mut budget = budget.unwrap_or_else(|| {
        let mut b = Budget::default();
        for c in &doc.get_changes(&[]) {
            b.record(c);
        }
        b
    });
    let selection = select_changes_checked(
        id,
        &candidates,
        &folded.state,
        |h| known.contains(h),
        |h| in_doc.contains(h),
        kinds.change_check(id, &folded.state),
    );
    // Nesting and what each device writes, built up over many changes (each within
    // the per-change limits), are bounded here, where the document is at hand: a
    // change that puts an object too deep or takes its device past its budget is
    // left out with what builds on it (`accepted` is in dependency order). Both cost
    // O(ops of the change) per change, not a scan of the document.
    let mut nesting = received::Nesting::default();
    let admitted: Vec<Change> = selection
        .accepted
        .iter()
        .map(|&i| &changes[i])
        .filter(|c| {
            // Expanded once for both checks.
            let expanded = received::expand(c);
            nesting.admit_expanded(&doc, c, expanded.as_ref()).is_ok()
                && budget.admit_expanded(c, expanded.as_ref()).is_ok()
        })
        .cloned()
        .collect();
    let rejected = selection.rejected.len() + selection.accepted.len() - admitted.len();
    if rejected > 0 {
        tracing::debug!(doc = %id, rejected, "ignoring rejected changes");
    }
    let missing_deps = if rejected == 0 {
        Vec::new()
    } else {
        let applied: HashSet<[u8; 32]> = admitted.iter().map(|c| c.hash().0).collect();
        let stored: HashSet<[u8; 32]> = changes.iter().map(|c| c.hash().0).collect();
        let mut missing: BTreeSet<[u8; 32]> = BTreeSet::new();
        for c in changes
            .iter()
            .filter(|c| !applied.contains(&c.hash().0) && !in_doc.contains(&c.hash().0))
        {
            missing.extend(
                c.deps()
                    .iter()
                    .map(|d| d.0)
                    .filter(|d| !in_doc.contains(d) && !stored.contains(d)),
            );
        }
        missing.into_iter().collect()
    };
    doc.apply_changes(admitted)
        .map_err(|e| damaged(id, e.to_string()))?;
    Ok(Verified {
        doc,
        rejected,
        tail_len: rows.len(),
        snapshot_fresh: false,
        last_change: 0,
        budget,
        missing_deps,
        own_changes: None,
        plan: std::sync::OnceLock::new(),
    })
}

/// What a resident document (or its heads) is valid for: the control heads, and how
/// many ops are known (a pending op leaves the heads as they are but can make a
/// held-back change verifiable).
fn resident_key(folded: &Folded) -> Vec<u8> {
    let mut key = heads_key(folded);
    key.extend_from_slice(&((folded.order.len() + folded.pending.len()) as u64).to_be_bytes());
    key
}

/// A document's heads as last computed: the validity key, the store position they
/// cover, the heads.
type ResidentHeads = (Vec<u8>, i64, Vec<[u8; 32]>);

/// Most verified documents a node keeps in memory.
const RESIDENT_DOCS: usize = 256;

/// Verified documents kept in memory between reads, so that a running node does not
/// rebuild and re-verify a document for every sync message. An entry is valid for
/// the control heads it was verified under; changes stored since (by this or another
/// process: store positions only grow) are verified and applied on top, as after a
/// snapshot.
///
/// The heads of every document read are kept too (a few dozen bytes each, so for
/// all of them, not only the last [`RESIDENT_DOCS`]): summarising the documents
/// shared with a peer needs every shared document's heads several times per
/// session, and re-verifying thousands of documents for that dominated catch-ups.
#[derive(Default)]
pub(crate) struct ResidentDocs {
    docs: HashMap<DocId, (u64, Vec<u8>, Arc<Verified>)>,
    /// Per document: the validity key, the store position covered, the heads.
    heads: HashMap<DocId, ResidentHeads>,
    tick: u64,
    /// Documents loaded from the store in full (not from memory, nor by applying
    /// new changes to the copy in memory), for tests.
    loads: u64,
}

impl std::fmt::Debug for ResidentDocs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidentDocs")
            .field("docs", &self.docs.len())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// The heads of a plan's accepted changes, from memory while neither its stored
    /// changes nor the control state changed since they were computed.
    pub(crate) fn verified_heads(
        &self,
        id: &DocId,
        folded: &Folded,
    ) -> Result<Vec<[u8; 32]>, NodeError> {
        let key = resident_key(folded);
        let last = self.store.last_change(id)?;
        {
            let r = self.resident.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((k, l, h)) = r.heads.get(id)
                && *k == key
                && *l == last
            {
                return Ok(h.clone());
            }
        }
        let v = self.verified(id, folded)?;
        let heads: Vec<[u8; 32]> = v.doc.get_heads().iter().map(|h| h.0).collect();
        self.resident
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .heads
            .insert(*id, (key, v.last_change, heads.clone()));
        Ok(heads)
    }

    /// After a snapshot of the resident copy of `id` (covering the store up to
    /// `covers_upto`) was written: the copy now counts as loaded from it, as a
    /// reload would find it, without the reload (for a large plan, loading the
    /// snapshot and counting what each device wrote cost as much as the catch-up
    /// that wrote it). Forgets the copy if it is not the one the snapshot was made
    /// of, or is in use elsewhere.
    pub(crate) fn snapshot_written(&self, id: &DocId, folded: &Folded, covers_upto: i64) {
        let key = resident_key(folded);
        let mut r = self.resident.lock().unwrap_or_else(|e| e.into_inner());
        let Some((tick, k, v)) = r.docs.remove(id) else {
            return;
        };
        if k != key || v.last_change != covers_upto {
            return;
        }
        if let Ok(mut v) = Arc::try_unwrap(v) {
            v.tail_len = 0;
            v.snapshot_fresh = true;
            r.docs.insert(*id, (tick, k, Arc::new(v)));
        }
    }

    /// The resident copy of `id`, if held (changes after its snapshot, whether the
    /// snapshot was fresh, the store position covered),
    /// and how many documents were loaded from the store in full so far.
    #[cfg(test)]
    pub(crate) fn resident_state(&self, id: &DocId) -> (Option<(usize, bool, i64)>, u64) {
        let r = self.resident.lock().unwrap_or_else(|e| e.into_inner());
        let state = r
            .docs
            .get(id)
            .map(|(_, _, v)| (v.tail_len, v.snapshot_fresh, v.last_change));
        (state, r.loads)
    }

    /// Drops a document from memory (its next read loads it from the store).
    pub(crate) fn forget_resident(&self, id: &DocId) {
        self.resident
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .docs
            .remove(id);
    }

    /// The verified document, from memory when nothing changed since it was loaded.
    pub(crate) fn verified(&self, id: &DocId, folded: &Folded) -> Result<Arc<Verified>, NodeError> {
        verified_in(&self.resident, &self.kinds, &self.store, id, folded)
    }
}

/// The verified document `id` as `src` holds it under `folded`: the copy in memory
/// when neither the control state nor the document's stored changes changed since it
/// was verified, that copy with the changes stored since applied on top, or else
/// rebuilt from the store. The result is kept in memory for the next read.
fn verified_in(
    resident: &std::sync::Mutex<ResidentDocs>,
    kinds: &Kinds,
    src: &impl StoreRead,
    id: &DocId,
    folded: &Folded,
) -> Result<Arc<Verified>, NodeError> {
    let key = resident_key(folded);
    let last = src.last_change(id)?;
    let cached = {
        let mut r = resident.lock().unwrap_or_else(|e| e.into_inner());
        r.tick += 1;
        let tick = r.tick;
        match r.docs.get_mut(id) {
            Some(e) if e.1 == key => {
                e.0 = tick;
                Some(e.2.clone())
            }
            _ => None,
        }
    };
    let v = match cached {
        Some(v) if v.last_change == last => return Ok(v),
        Some(v) if v.rejected == 0 && v.last_change < last => {
            let (rows, upto) = src.changes_after(id, v.last_change)?;
            // The copy itself when nothing else holds it (it is replaced below),
            // else a clone: applying a received change does not copy the document.
            let v = {
                let mut r = resident.lock().unwrap_or_else(|e| e.into_inner());
                if r.docs.get(id).is_some_and(|e| Arc::ptr_eq(&e.2, &v)) {
                    r.docs.remove(id);
                }
                drop(r);
                Arc::try_unwrap(v).unwrap_or_else(|v| (*v).clone())
            };
            let mut next = apply_verified(v.doc, Some(v.budget), &rows, id, folded, kinds)?;
            next.tail_len = v.tail_len + rows.len();
            next.snapshot_fresh = v.snapshot_fresh;
            next.last_change = upto;
            next
        }
        _ => {
            let v = load_verified(src, id, folded, kinds)?;
            resident.lock().unwrap_or_else(|e| e.into_inner()).loads += 1;
            v
        }
    };
    let v = Arc::new(v);
    resident
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(*id, key, v.clone());
    Ok(v)
}

/// The verified document `id` as `src` holds it (see [`verified_in`]), owned, for an
/// edit: it leaves memory (the edit changes it) and returns through
/// [`keep_resident`] once the edit is stored. Owned without a copy unless a reader
/// holds it at the moment.
fn take_verified(
    resident: &std::sync::Mutex<ResidentDocs>,
    kinds: &Kinds,
    src: &impl StoreRead,
    id: &DocId,
    folded: &Folded,
) -> Result<Verified, NodeError> {
    let v = verified_in(resident, kinds, src, id, folded)?;
    resident
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .docs
        .remove(id);
    Ok(Arc::try_unwrap(v).unwrap_or_else(|v| (*v).clone()))
}

/// Keeps `v`, the document `id` as the store now holds it under `folded`, in memory.
fn keep_resident(
    resident: &std::sync::Mutex<ResidentDocs>,
    id: &DocId,
    folded: &Folded,
    v: Verified,
) {
    resident.lock().unwrap_or_else(|e| e.into_inner()).insert(
        *id,
        resident_key(folded),
        Arc::new(v),
    );
}

impl ResidentDocs {
    /// Keeps `v` under validity key `key`, forgetting the least recently used
    /// document when [`RESIDENT_DOCS`] are held.
    fn insert(&mut self, id: DocId, key: Vec<u8>, v: Arc<Verified>) {
        if self.docs.len() >= RESIDENT_DOCS
            && !self.docs.contains_key(&id)
            && let Some(oldest) = self.docs.iter().min_by_key(|(_, e)| e.0).map(|(k, _)| *k)
        {
            self.docs.remove(&oldest);
        }
        self.tick += 1;
        let tick = self.tick;
        self.docs.insert(id, (tick, key, v));
    }
}

fn heads_key(folded: &Folded) -> Vec<u8> {
    folded.state.heads.iter().flat_map(|h| h.0).collect()
}

pub(crate) fn signed_row(
    c: &Change,
    doc: &DocId,
    folded: &Folded,
    author: NodeId,
    key: &regiosync_core::identity::SigningKey,
) -> Result<ChangeRow, NodeError> {
    let env = ChangeEnvelope::sign(
        SignedFields {
            region: folded.state.region,
            doc: *doc,
            change_hash: c.hash().0,
            author,
            control_heads: folded.state.heads.clone(),
        },
        key,
    )?;
    Ok(change_row(c, c.raw_bytes().to_vec(), env.encode()))
}

/// The store row of a change with its envelope (`bytes`: the change as it arrived or
/// was made).
pub(crate) fn change_row(c: &Change, bytes: Vec<u8>, envelope: Vec<u8>) -> ChangeRow {
    ChangeRow {
        hash: c.hash().0,
        actor: c.actor_id().to_bytes().to_vec(),
        seq: c.seq(),
        bytes,
        stored_ms: now_ms(),
        envelope: Some(envelope),
    }
}

pub(crate) fn commit(t: Transaction<'_>, message: &str) -> Option<ChangeHash> {
    let secs = time::OffsetDateTime::now_utc().unix_timestamp();
    t.commit_with(
        CommitOptions::default()
            .with_message(message)
            .with_time(secs),
    )
    .0
}

/// A peer's change message as one short line: control characters (a terminal escape
/// sequence, a forged second line) are dropped, length is capped.
fn one_line(m: &str) -> String {
    let s: String = m
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect();
    s.trim().to_owned()
}
