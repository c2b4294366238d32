//! What a node holds of a dossier, as sync compares it: the hashes of its access-log
//! ops and sealed changes ([`DossierItems`]), or, once it is erased, its tombstone
//! ([`Tombstone`]). Plain values: the store reads and writes them, the sync rules
//! (`crate::sync::rules`) decide from them what to send.

use crate::id::DocId;

/// What a store holds of one dossier, by hash: what sync compares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DossierItems {
    /// Hashes of its access-log ops.
    pub ops: Vec<[u8; 32]>,
    /// Hashes of its sealed changes.
    pub changes: Vec<[u8; 32]>,
}

/// The tombstone of an erased dossier: no personal data, only what proves the
/// erasure and who must learn of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The dossier.
    pub dossier: DocId,
    /// The party that erased it.
    pub erased_by: String,
    /// When (Unix seconds, from the `Erase` op).
    pub erased_at: i64,
    /// The signed `Erase` op.
    pub erase_op: Vec<u8>,
    /// The signed `Open` op (owner party and nonce: the dossier id derives from it),
    /// empty in tombstones written before schema version 6.
    pub open_op: Vec<u8>,
    /// The parties that ever had access: they may hold ciphertext, so they are sent
    /// the erasure.
    pub audience: Vec<String>,
}
