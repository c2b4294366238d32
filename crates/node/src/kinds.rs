//! Documents of any kind ([`regiosync_core::kind`]): registering a kind, and
//! creating, editing and reading its documents.
//!
//! Plans have their own, richer API (`documents.rs`); it is built on the same
//! steps. A document of any kind is registered in the region log, its changes are
//! signed, held to its kind's rule here and on every receiver, stored, and synced
//! through the same session as plans: a new kind needs a [`DocKind`] and nothing
//! else.
//!
//! ```
//! use std::sync::Arc;
//! use automerge::{Change, ReadDoc, ROOT, transaction::{Transactable, Transaction}};
//! use regiosync_core::envelope::ChangeRejection;
//! use regiosync_core::id::{PartyName, Role};
//! use regiosync_core::kind::{DocKind, KindError, KindName};
//! use regiosync_node::Node;
//!
//! /// A note: one text under `text`.
//! struct Note;
//! impl DocKind for Note {
//!     fn family(&self) -> &'static str { "note" }
//!     fn init(&self, tx: &mut Transaction<'_>, _: &KindName, title: &str, _: &PartyName)
//!         -> Result<(), KindError> {
//!         tx.put(ROOT, "text", title)?;
//!         Ok(())
//!     }
//!     fn check_change(&self, change: &Change, _: bool) -> Result<(), ChangeRejection> {
//!         if change.raw_bytes().len() > 4096 {
//!             return Err(ChangeRejection::OutsideKind("a note change is at most 4 KiB"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # let dir = tempfile::tempdir()?;
//! # Node::init(dir.path(), PartyName::new("gemeente-gouda")?, Role::Kerngemeente, None)?;
//! let mut node = Node::open(dir.path())?;
//! # node.create_region("Midden-Holland")?;
//! node.register_kind(Arc::new(Note));
//! let note = KindName::new("note")?;
//! let id = node.create_document(&note, "Bel de school")?;
//! node.edit_document(&id, "edit note", |tx| tx.put(ROOT, "text", "Gebeld"))?;
//! let text = node.read_document(&id, |doc| {
//!     doc.get(ROOT, "text").ok().flatten().and_then(|(v, _)| v.into_string().ok())
//! })?;
//! assert_eq!(text.as_deref(), Some("Gebeld"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use automerge::transaction::Transaction;
use automerge::{Automerge, AutomergeError};
use regiosync_core::id::DocId;
use regiosync_core::kind::{DocKind, KindError, KindName, Kinds};

use crate::Node;
use crate::control_log::control_of;
use crate::documents::{Edited, commit, signed_row};
use crate::error::NodeError;

impl Node {
    /// Teaches this node a document kind: from now on it creates, checks, stores
    /// and syncs documents of the kind's family. A kind of the same family is
    /// replaced. Every node that should hold such documents must know the kind; a
    /// node that does not takes none of their changes (see [`regiosync_core::kind`]).
    pub fn register_kind(&mut self, kind: Arc<dyn DocKind>) {
        self.kinds.register(kind);
    }

    /// The document kinds this node knows.
    pub fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    /// Creates a document of `kind`, owned by this node's party, read and written
    /// by every party of the region (change that with [`Node::change_acl`]), with
    /// the first content the kind writes ([`DocKind::init`]); returns its id.
    pub fn create_document(&mut self, kind: &KindName, title: &str) -> Result<DocId, NodeError> {
        // A copy of the registry (a few `Arc`s): the kind is used across calls
        // that need `&mut self`.
        let kinds = self.kinds.clone();
        let known = kinds
            .get(kind)
            .filter(|k| k.knows(kind))
            .ok_or_else(|| KindError::Unknown(kind.to_string()))?;
        let (id, row, ops) = self.new_document(kind, title)?;
        let owner = self.info.party.clone();
        let actor = self.info.node_id.actor_id();
        let key = self.signer()?.signing_key().clone();
        let author = self.info.node_id;
        let message = format!("create {}", kind.variant().unwrap_or(kind.family()));
        // The first change is made before anything is stored, so that a kind that
        // refuses the content leaves nothing behind.
        let mut doc = Automerge::new();
        doc.set_actor(actor);
        let mut t = doc.transaction();
        if let Err(e) = known.init(&mut t, kind, title, &owner) {
            t.rollback();
            return Err(e.into());
        }
        commit(t, &message);
        let first = doc.get_last_local_change();
        self.issue_ops(ops, |tx| {
            tx.insert_document(&row)?;
            let folded = control_of(tx)?.ok_or(NodeError::NotInRegion)?;
            if let Some(c) = &first {
                kinds
                    .check_by(&id, &folded.state, c, &author)
                    .map_err(|why| NodeError::RefusedByKind { id, why })?;
                tx.append_change(&id, &signed_row(c, &id, &folded, author, &key)?)?;
            }
            Ok(())
        })?;
        tracing::info!(doc = %id, kind = %kind, "created document");
        Ok(id)
    }

    /// Runs one edit of a document of any kind as one signed Automerge change,
    /// held to the document kind's rule as every receiver will hold it. Plans have
    /// their own edits (sections, agreements, …), which keep a plan well formed.
    pub fn edit_document<T>(
        &mut self,
        id: &DocId,
        message: &str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, AutomergeError>,
    ) -> Result<Edited<T>, NodeError> {
        // Automerge's refusal reads "document operation failed: …" (PlanError's
        // wording serves any document).
        self.edit_document_with(
            id,
            message,
            |_, _| Ok(()),
            |t, ()| f(t).map_err(regiosync_core::plan::PlanError::from),
        )
    }

    /// Reads a document of any kind, from its accepted changes only.
    pub fn read_document<T>(
        &self,
        id: &DocId,
        f: impl FnOnce(&Automerge) -> T,
    ) -> Result<T, NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        if !folded.state.docs.contains_key(id) {
            return Err(NodeError::UnknownDocument(id.to_string()));
        }
        Ok(f(&self.verified(id, &folded)?.doc))
    }
}
