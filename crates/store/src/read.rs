//! Reading the store: one trait, [`StoreRead`], implemented by [`Store`] (reads of
//! committed data) and by [`WriteTx`] (reads inside a write transaction, which see
//! that transaction's own writes). Each read is written once, here; code that works
//! either way (loading a document, folding the control log) takes `&impl StoreRead`.
//!
//! The trait is sealed: only this crate implements it, so new reads can be added
//! without breaking anyone.

use std::collections::BTreeMap;
use std::path::Path;

use regiosync_core::id::DocId;
use rusqlite::Connection;

use crate::{
    AuditRow, ChangeRow, DocumentRow, DossierItems, EquivocationRow, InviteRow, PeerDocHeads,
    SessionRow, StaffRow, Store, StoreError, StoredDoc, Tombstone, WriteTx, audit, control,
    documents, dossiers, faults, peers, staff,
};

pub(crate) mod sealed {
    use std::path::Path;

    use rusqlite::Connection;

    /// A connection (or an open transaction's) and the file it belongs to, for
    /// error messages. Not nameable outside this crate.
    pub struct Conn<'a>(pub(crate) &'a Connection, pub(crate) &'a Path);

    impl<'a> Conn<'a> {
        pub(crate) fn parts(&self) -> (&'a Connection, &'a Path) {
            (self.0, self.1)
        }
    }

    /// Keeps [`super::StoreRead`] implemented by this crate only.
    pub trait Sealed {
        /// The connection to read through.
        fn conn(&self) -> Conn<'_>;
    }
}

impl sealed::Sealed for Store {
    fn conn(&self) -> sealed::Conn<'_> {
        sealed::Conn(&self.conn, &self.path)
    }
}

impl sealed::Sealed for WriteTx<'_> {
    fn conn(&self) -> sealed::Conn<'_> {
        let c: &Connection = &self.tx;
        let p: &Path = self.path;
        sealed::Conn(c, p)
    }
}

impl StoreRead for Store {}
impl StoreRead for WriteTx<'_> {}

/// The store's reads, the same on a [`Store`] and inside a [`WriteTx`] (bring the
/// trait into scope: `use regiosync_store::StoreRead;`).
pub trait StoreRead: sealed::Sealed {
    /// Every equivocation on record (see [`EquivocationRow`]), oldest first.
    fn equivocations(&self) -> Result<Vec<EquivocationRow>, StoreError> {
        let (c, p) = self.conn().parts();
        faults::equivocations(c, p)
    }

    /// All documents, oldest first.
    fn documents(&self) -> Result<Vec<DocumentRow>, StoreError> {
        let (c, p) = self.conn().parts();
        documents::documents(c, p)
    }

    /// One document's metadata.
    fn document(&self, id: &DocId) -> Result<Option<DocumentRow>, StoreError> {
        let (c, p) = self.conn().parts();
        documents::document(c, p, id)
    }

    /// The ids of documents whose hex id starts with `hex_prefix`.
    fn ids_with_prefix(&self, hex_prefix: &str) -> Result<Vec<DocId>, StoreError> {
        let (c, p) = self.conn().parts();
        documents::ids_with_prefix(c, p, hex_prefix)
    }

    /// The snapshot and tail of changes of a document.
    fn load(&self, id: &DocId) -> Result<StoredDoc, StoreError> {
        let (c, p) = self.conn().parts();
        documents::load(c, p, id)
    }

    /// Every change of a document, in the order it was stored.
    fn changes(&self, id: &DocId) -> Result<Vec<ChangeRow>, StoreError> {
        let (c, p) = self.conn().parts();
        documents::changes(c, p, id)
    }

    /// The hash and envelope of every change of a document, in the order they were
    /// stored, without the change bytes (for checks that need only the envelopes,
    /// e.g. a dossier's chains of signatures).
    fn change_envelopes(&self, id: &DocId) -> Result<Vec<crate::EnvelopeRow>, StoreError> {
        let (c, p) = self.conn().parts();
        documents::change_envelopes(c, p, id)
    }

    /// Every stored control op (wire bytes), ordered by hash.
    fn ops(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let (c, p) = self.conn().parts();
        control::ops(c, p)
    }

    /// The hashes of every stored control op, ordered (without reading the ops).
    fn op_hashes(&self) -> Result<Vec<[u8; 32]>, StoreError> {
        let (c, p) = self.conn().parts();
        control::op_hashes(c, p)
    }

    /// A value that changes whenever a control op is stored, by this connection or
    /// another (ops are never deleted): the number of ops and the largest row id. A
    /// node keeps its fold of the control log while this stays the same.
    fn ops_version(&self) -> Result<(i64, i64), StoreError> {
        let (c, p) = self.conn().parts();
        control::ops_version(c, p)
    }

    /// A node setting.
    fn setting(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (c, p) = self.conn().parts();
        control::setting(c, p, key)
    }

    /// An invitation by id.
    fn invite(&self, id: &[u8; 16]) -> Result<Option<InviteRow>, StoreError> {
        let (c, p) = self.conn().parts();
        control::invite(c, p, id)
    }

    /// Invitations still open at `now_s` (Unix seconds): not expired, and unused or
    /// used at `used_since_ms` (Unix milliseconds) or later. The running node admits
    /// their one-time join identities.
    fn open_invites(&self, now_s: i64, used_since_ms: i64) -> Result<Vec<InviteRow>, StoreError> {
        let (c, p) = self.conn().parts();
        control::open_invites(c, p, now_s, used_since_ms)
    }

    /// The store position of the newest change of a document (0: none). Positions
    /// only grow, so a reader that loaded a document up to this position can tell
    /// whether anything was added since (by any process).
    fn last_change(&self, id: &DocId) -> Result<i64, StoreError> {
        let (c, p) = self.conn().parts();
        documents::last_change(c, p, id)
    }

    /// Marks of what the store holds (see [`crate::WriteMarks`]): compared before
    /// and after another process wrote, they tell which kinds of data it wrote.
    fn write_marks(&self) -> Result<crate::WriteMarks, StoreError> {
        let (c, p) = self.conn().parts();
        documents::write_marks(c, p)
    }

    /// The documents with changes stored after position `after` (a
    /// [`crate::WriteMarks::changes`] largest id), at most `limit` of them.
    fn docs_changed_after(&self, after: i64, limit: usize) -> Result<Vec<DocId>, StoreError> {
        let (c, p) = self.conn().parts();
        documents::docs_changed_after(c, p, after, limit)
    }

    /// The changes of a document with the given hashes, in that order (hashes it
    /// does not hold are left out), each found by its key instead of reading every
    /// change of the document.
    fn changes_by_hash(
        &self,
        id: &DocId,
        hashes: &[[u8; 32]],
    ) -> Result<Vec<ChangeRow>, StoreError> {
        let (c, p) = self.conn().parts();
        documents::changes_by_hash(c, p, id, hashes)
    }

    /// The changes of a document stored after position `after`, and the position of
    /// the last one (`after` if none).
    fn changes_after(&self, id: &DocId, after: i64) -> Result<(Vec<ChangeRow>, i64), StoreError> {
        let (c, p) = self.conn().parts();
        documents::change_rows(c, p, id, after)
    }

    /// The ops of a dossier's access log (wire bytes), ordered by hash.
    fn dossier_ops(&self, dossier: &DocId) -> Result<Vec<Vec<u8>>, StoreError> {
        let (c, p) = self.conn().parts();
        dossiers::dossier_ops(c, p, dossier)
    }

    /// The tombstone of an erased dossier.
    fn dossier_erased(&self, dossier: &DocId) -> Result<Option<Tombstone>, StoreError> {
        let (c, p) = self.conn().parts();
        dossiers::erased(c, p, dossier)
    }

    /// Every tombstone of an erased dossier.
    fn tombstones(&self) -> Result<Vec<Tombstone>, StoreError> {
        let (c, p) = self.conn().parts();
        dossiers::tombstones(c, p)
    }

    /// The hashes of every access-log op and sealed change of every dossier held.
    fn dossier_items(&self) -> Result<BTreeMap<DocId, DossierItems>, StoreError> {
        let (c, p) = self.conn().parts();
        dossiers::dossier_items(c, p)
    }

    /// The hashes of the access-log ops and sealed changes of one dossier, `None` if
    /// nothing of it is held.
    fn dossier_items_of(&self, dossier: &DocId) -> Result<Option<DossierItems>, StoreError> {
        let (c, p) = self.conn().parts();
        dossiers::dossier_items_of(c, p, dossier)
    }

    /// Every dossier whose access log this store holds, with its row of the readers
    /// index if there is one: the membership digest it was folded under and the
    /// encoded `AccessSummary` (migration 11 in docs/PROTOCOL.md).
    fn dossier_readers_index(
        &self,
    ) -> Result<Vec<(DocId, Option<dossiers::ReadersRow>)>, StoreError> {
        let (c, p) = self.conn().parts();
        dossiers::dossier_readers_index(c, p)
    }

    /// The dossiers whose access logs this store holds.
    fn dossier_ids(&self) -> Result<Vec<DocId>, StoreError> {
        let (c, p) = self.conn().parts();
        dossiers::dossier_ids(c, p)
    }

    /// The audit log, in order (check it with `regiosync_core::audit::verify_chain`).
    fn audit_log(&self) -> Result<Vec<AuditRow>, StoreError> {
        let (c, p) = self.conn().parts();
        audit::entries(c, p)
    }

    /// The audit entries of one dossier, in order (its access history).
    fn audit_log_of(&self, dossier: &DocId) -> Result<Vec<AuditRow>, StoreError> {
        let (c, p) = self.conn().parts();
        audit::entries_of(c, p, dossier)
    }

    /// At most `limit` audit entries with a sequence number below `before` (all when
    /// `None`), newest first: a page of the log.
    fn audit_log_page(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let (c, p) = self.conn().parts();
        audit::page(c, p, before, limit)
    }

    /// Remembered peer addresses as (peer public key, multiaddr), newest first per peer.
    fn peer_addrs(&self) -> Result<Vec<([u8; 32], String)>, StoreError> {
        let (c, p) = self.conn().parts();
        peers::peer_addrs(c, p)
    }

    /// Per document, the heads `peer` was last known to hold.
    fn peer_docs(&self, peer: &[u8; 32]) -> Result<Vec<PeerDocHeads>, StoreError> {
        let (c, p) = self.conn().parts();
        peers::peer_docs(c, p, peer)
    }

    /// Every staff account of the web app, by name.
    fn staff_users(&self) -> Result<Vec<StaffRow>, StoreError> {
        let (c, p) = self.conn().parts();
        staff::users(c, p)
    }

    /// A staff account by sign-in name.
    fn staff_user(&self, name: &str) -> Result<Option<StaffRow>, StoreError> {
        let (c, p) = self.conn().parts();
        staff::user_by_name(c, p, name)
    }

    /// A staff account by row id.
    fn staff_user_by_id(&self, id: i64) -> Result<Option<StaffRow>, StoreError> {
        let (c, p) = self.conn().parts();
        staff::user_by_id(c, p, id)
    }

    /// A web session by the SHA-256 of its token.
    fn staff_session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRow>, StoreError> {
        let (c, p) = self.conn().parts();
        staff::session(c, p, token_hash)
    }

    /// The hash of the first stored change of `actor` with sequence number `seq` in
    /// a document: two different changes with the same actor and sequence number are
    /// an equivocation, and only the first one held is kept.
    fn change_with_seq(
        &self,
        id: &DocId,
        actor: &[u8],
        seq: u64,
    ) -> Result<Option<[u8; 32]>, StoreError> {
        let (c, p) = self.conn().parts();
        documents::change_with_seq(c, p, id, actor, seq)
    }

    /// The highest sequence number stored for `actor` in a document (0 if none),
    /// whether or not those changes are accepted: a device's next change must come
    /// after every change it ever stored, or it would equivocate.
    fn max_seq(&self, id: &DocId, actor: &[u8]) -> Result<u64, StoreError> {
        let (c, p) = self.conn().parts();
        documents::max_seq(c, p, id, actor)
    }
}
