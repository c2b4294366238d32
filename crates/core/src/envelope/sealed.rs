//! Envelopes of sealed dossier changes. The signature covers the sealed bytes (by
//! hash), so a node that cannot read the dossier (a designated relay) still verifies
//! who wrote what it stores and forwards; readers check after unsealing that the
//! plaintext is the change the author signed.
//!
//! The envelope names the dossier access-log heads the author had seen: the access
//! state there decides whether the author's party had access and which epoch the
//! change had to be sealed with, so a change sealed under a retired epoch after a
//! rotation is refused, by readers and relays alike.
//!
//! Devices removed from the region: all their sealed changes are refused. A removed
//! laptop still holds the old keys and could backdate a change to old access heads;
//! the cutoffs that keep a removed device's earlier plan edits (the region log) cannot
//! name dossiers, so per-dossier cutoffs are future work (docs/AUTH.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Envelope, EnvelopeError, EnvelopeFields, check_heads};
use crate::control::{OpHash, RegionId, RegionState};
use crate::dossier::access::{DossierAccess, SignedDossierOp, fold_dossier, fold_dossier_at};
use crate::id::{DocId, NodeId};
use crate::seal::sealed_epoch;

const SEALED_SIG_CONTEXT: &[u8] = b"regiosync/sealed-change/1\0";
/// The signature context of format 2 (an envelope that names its predecessor).
const SEALED_SIG_CONTEXT_2: &[u8] = b"regiosync/sealed-change/2\0";
/// Domain separation of [`envelope_hash`].
const ENVELOPE_HASH_CONTEXT: &[u8] = b"regiosync/sealed-envelope/1\0";
/// The format byte of a sealed envelope that names its author's previous one.
pub const CHAINED_FORMAT: u8 = 2;

/// The signed fields of a sealed change's envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFields {
    /// The region.
    pub region: RegionId,
    /// The dossier.
    pub dossier: DocId,
    /// The Automerge hash of the plaintext change (readers check it after unsealing).
    pub change_hash: [u8; 32],
    /// SHA-256 of the sealed bytes (anyone holding them checks it).
    pub sealed_hash: [u8; 32],
    /// The author device.
    pub author: NodeId,
    /// The region-log heads the author had (sorted).
    pub control_heads: Vec<OpHash>,
    /// The dossier access-log heads the author had (sorted).
    pub access_heads: Vec<OpHash>,
    /// The [`envelope_hash`] of the author's previous sealed envelope in this
    /// dossier (its chain tip when it wrote this change); `None` for its first.
    /// With `Some`, the envelope is written in format 2 and its signature vouches
    /// for that predecessor too (see [`authentic`]).
    #[serde(skip)]
    pub prev: Option<[u8; 32]>,
}

impl EnvelopeFields for SealedFields {
    const SIG_CONTEXT: &'static [u8] = SEALED_SIG_CONTEXT;
    fn author(&self) -> &NodeId {
        &self.author
    }
    fn normalise(&mut self) {
        self.control_heads.sort();
        self.control_heads.dedup();
        self.access_heads.sort();
        self.access_heads.dedup();
    }
    fn check(&self) -> Result<(), EnvelopeError> {
        check_heads(&self.control_heads)?;
        check_heads(&self.access_heads)?;
        if self.access_heads.is_empty() {
            return Err(EnvelopeError::Malformed(
                "a sealed change names the access log it was made under",
            ));
        }
        Ok(())
    }
    fn format(&self) -> u8 {
        if self.prev.is_some() {
            CHAINED_FORMAT
        } else {
            super::ENVELOPE_FORMAT
        }
    }
    fn context(&self) -> &'static [u8] {
        if self.prev.is_some() {
            SEALED_SIG_CONTEXT_2
        } else {
            SEALED_SIG_CONTEXT
        }
    }
    /// Format 1: the fields; format 2: the fields, then the 32-byte `prev`.
    fn encode_body(&self) -> Vec<u8> {
        let mut body = postcard::to_allocvec(self).unwrap_or_default();
        if let Some(prev) = &self.prev {
            body.extend_from_slice(prev);
        }
        body
    }
    fn decode_body(format: u8, body: &[u8]) -> Result<Self, EnvelopeError> {
        match format {
            super::ENVELOPE_FORMAT => super::decode_canonical(body),
            CHAINED_FORMAT => {
                let split = body
                    .len()
                    .checked_sub(32)
                    .ok_or(EnvelopeError::Malformed("truncated previous envelope"))?;
                let (fields, prev) = body.split_at(split);
                let mut fields: Self = super::decode_canonical(fields)?;
                fields.prev = Some(
                    prev.try_into()
                        .map_err(|_| EnvelopeError::Malformed("previous envelope"))?,
                );
                Ok(fields)
            }
            other => Err(EnvelopeError::UnknownFormat(other)),
        }
    }
}

/// The hash by which a later envelope of the same author names this one
/// (`SealedFields::prev`): SHA-256 over a context, the envelope's format byte and
/// its encoded fields, without the signature (what an author's later signature
/// vouches for is what the envelope says, so that it can travel without its own).
pub fn envelope_hash(wire: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ENVELOPE_HASH_CONTEXT);
    match wire.split_first() {
        Some((format, rest)) if rest.len() >= 64 => {
            h.update([*format]);
            h.update(&rest[64..]);
        }
        _ => h.update(wire),
    }
    h.finalize().into()
}

/// For each envelope, the one in the list it names as `prev` if that is the same
/// author's envelope of `dossier`; and how many in the list name each.
fn links(
    dossier: &DocId,
    envelopes: &[(&SealedEnvelope, [u8; 32])],
) -> (Vec<Option<usize>>, Vec<usize>) {
    let by_hash: std::collections::HashMap<&[u8; 32], usize> = envelopes
        .iter()
        .enumerate()
        .map(|(i, (_, h))| (h, i))
        .collect();
    let prev: Vec<Option<usize>> = envelopes
        .iter()
        .map(|(e, _)| {
            let f = e.fields();
            let p = *by_hash.get(f.prev.as_ref()?)?;
            let pf = envelopes[p].0.fields();
            (f.dossier == *dossier && pf.author == f.author).then_some(p)
        })
        .collect();
    let mut successors = vec![0usize; envelopes.len()];
    for p in prev.iter().flatten() {
        successors[*p] += 1;
    }
    (prev, successors)
}

/// The envelopes of the list no other envelope of the same author names as its
/// predecessor: the chain tips, whose signatures [`authentic`] checks (callers
/// check them on all cores first, `preverify_signatures`).
pub fn chain_tips(dossier: &DocId, envelopes: &[(&SealedEnvelope, [u8; 32])]) -> Vec<usize> {
    let (_, successors) = links(dossier, envelopes);
    (0..envelopes.len())
        .filter(|i| successors[*i] == 0)
        .collect()
}

/// Which of one dossier's sealed envelopes are authentic, i.e. written by their
/// author: an envelope is when its own signature verifies, or when an authentic
/// envelope of the same author and dossier names it as `prev` (its author's
/// signature covers the predecessor's hash, so a chain of one author's changes is
/// proven by the signature of its newest one). `envelopes` are decoded envelopes
/// with their [`envelope_hash`]; `vouched_elsewhere` answers for an (envelope
/// hash, author) whether an authentic envelope held outside the list names it.
///
/// Signatures are checked newest first, so an honest chain costs one check; a
/// chain whose newest signature fails falls back to the signatures below it. Only
/// the same author vouches: another device's envelope that names a predecessor
/// proves nothing about it (else a member could make up a change "by" someone
/// else and vouch for it with its own signature).
pub fn authentic(
    dossier: &DocId,
    envelopes: &[(&SealedEnvelope, [u8; 32])],
    vouched_elsewhere: impl Fn(&[u8; 32], &NodeId) -> bool,
) -> Vec<bool> {
    let n = envelopes.len();
    let (prev, mut successors) = links(dossier, envelopes);
    let mut vouched = vec![false; n];
    let mut result = vec![false; n];
    // Newest first: an envelope is decided once every successor in the list is.
    let mut ready: Vec<usize> = (0..n).filter(|i| successors[*i] == 0).collect();
    while let Some(i) = ready.pop() {
        let (e, h) = &envelopes[i];
        result[i] = vouched[i] || vouched_elsewhere(h, &e.fields().author) || e.signature_ok();
        if let Some(p) = prev[i] {
            vouched[p] |= result[i];
            successors[p] -= 1;
            if successors[p] == 0 {
                ready.push(p);
            }
        }
    }
    // Every index is decided: `prev` links point to distinct earlier hashes, so
    // they form no cycle (that would need a SHA-256 collision).
    result
}

/// A sealed change's envelope.
pub type SealedEnvelope = Envelope<SealedFields>;

/// SHA-256 of sealed bytes, as signed in [`SealedFields::sealed_hash`].
pub fn sealed_hash(sealed: &[u8]) -> [u8; 32] {
    Sha256::digest(sealed).into()
}

/// Why a sealed change was refused. Refused changes are never stored or forwarded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum SealedRejection {
    /// Another region.
    #[error("the change belongs to another region")]
    WrongRegion,
    /// The envelope is for another dossier.
    #[error("the envelope is for another dossier")]
    WrongDossier,
    /// The envelope signs other sealed bytes.
    #[error("the envelope signs different sealed bytes")]
    SealedHashMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Control ops this node has not seen yet.
    #[error("the change was made under control ops this node has not seen yet")]
    UnknownControlHeads,
    /// Access-log ops this node has not seen yet.
    #[error("the change was made under access-log ops this node has not seen yet")]
    UnknownAccessHeads,
    /// Access-log ops this node refused (a forked or unauthorised access state).
    #[error("the change was made under access-log ops this node refused")]
    RefusedAccessHeads,
    /// The author is not an active device of the region.
    #[error("the author device is not an active member of the region")]
    AuthorNotActive,
    /// The author's party had no access where the change was made.
    #[error("the author's party had no access to the dossier")]
    NoAccess,
    /// The dossier was erased.
    #[error("the dossier is erased")]
    Erased,
    /// Sealed under another epoch than the one in force where it was made.
    #[error("sealed under epoch {used}, but epoch {current} was in force")]
    RetiredEpoch {
        /// The epoch used.
        used: u32,
        /// The epoch in force.
        current: u32,
    },
    /// The sealed bytes do not parse.
    #[error("the sealed bytes are malformed")]
    Malformed,
    /// After unsealing: the plaintext is not the change the author signed.
    #[error("the unsealed change is not the one the author signed")]
    ChangeMismatch,
}

/// Decides whether a sealed change is accepted, without reading it: what a relay
/// and a reader both check. Returns the epoch it is sealed under. For several
/// changes of one dossier use [`SealedCheck`], which folds the access log once
/// instead of twice per change.
pub fn verify_sealed(
    envelope: &SealedEnvelope,
    sealed: &[u8],
    dossier: &DocId,
    state: &RegionState,
    access_log: &[SignedDossierOp],
    known_op: impl Fn(&OpHash) -> bool,
) -> Result<u32, SealedRejection> {
    SealedCheck::new(dossier, state, access_log).verify(envelope, sealed, known_op)
}

/// [`verify_sealed`] for the changes of one dossier under one region state and
/// access log: the log's fold, and its fold at each set of access heads the
/// envelopes name, are computed once and kept (a dossier's changes were folded
/// twice each, 40 folds for a dossier of 20 changes). The decisions, and the order
/// in which the reasons are checked, are those of `verify_sealed`.
pub struct SealedCheck<'a> {
    dossier: &'a DocId,
    state: &'a RegionState,
    access_log: &'a [SignedDossierOp],
    /// The fold of the whole log, once needed (`None` inside: no `Open` yet).
    full: Option<Option<DossierAccess>>,
    /// Folds at the access heads envelopes named (sorted, as envelopes keep them).
    at: BTreeMap<Vec<OpHash>, Option<DossierAccess>>,
}

impl<'a> SealedCheck<'a> {
    /// A checker of `dossier`'s sealed changes against `state` and `access_log`.
    pub fn new(
        dossier: &'a DocId,
        state: &'a RegionState,
        access_log: &'a [SignedDossierOp],
    ) -> Self {
        Self {
            dossier,
            state,
            access_log,
            full: None,
            at: BTreeMap::new(),
        }
    }

    /// Decides about one sealed change, as [`verify_sealed`].
    pub fn verify(
        &mut self,
        envelope: &SealedEnvelope,
        sealed: &[u8],
        known_op: impl Fn(&OpHash) -> bool,
    ) -> Result<u32, SealedRejection> {
        self.verify_with(envelope, sealed, known_op, || envelope.signature_ok())
    }

    /// As [`Self::verify`], with the envelope's authenticity decided already (by
    /// [`authentic`], over the dossier's envelopes): `false` is `BadSignature`.
    pub fn verify_authentic(
        &mut self,
        envelope: &SealedEnvelope,
        sealed: &[u8],
        known_op: impl Fn(&OpHash) -> bool,
        authentic: bool,
    ) -> Result<u32, SealedRejection> {
        self.verify_with(envelope, sealed, known_op, || authentic)
    }

    fn verify_with(
        &mut self,
        envelope: &SealedEnvelope,
        sealed: &[u8],
        known_op: impl Fn(&OpHash) -> bool,
        authentic: impl FnOnce() -> bool,
    ) -> Result<u32, SealedRejection> {
        let (state, dossier, log) = (self.state, *self.dossier, self.access_log);
        let f = envelope.fields();
        if f.region != state.region {
            return Err(SealedRejection::WrongRegion);
        }
        if f.dossier != dossier {
            return Err(SealedRejection::WrongDossier);
        }
        if f.sealed_hash != sealed_hash(sealed) {
            return Err(SealedRejection::SealedHashMismatch);
        }
        if !authentic() {
            return Err(SealedRejection::BadSignature);
        }
        if !f.control_heads.iter().all(known_op) {
            return Err(SealedRejection::UnknownControlHeads);
        }
        let device = state
            .active_device(&f.author)
            .ok_or(SealedRejection::AuthorNotActive)?;
        // The access state the author names must be part of the log as this node
        // folds it (not a fork, not ops refused here), and its party must have access
        // now, or the change must be one its revocation kept: a revoked party cannot
        // backdate.
        let full = self
            .full
            .get_or_insert_with(|| fold_dossier(state, dossier, log))
            .as_ref()
            .ok_or(SealedRejection::UnknownAccessHeads)?;
        if f.access_heads
            .iter()
            .any(|h| full.rejected.contains_key(h) || full.pending.contains(h))
        {
            return Err(SealedRejection::RefusedAccessHeads);
        }
        if full.erased.is_some() {
            return Err(SealedRejection::Erased);
        }
        let kept = full
            .kept
            .get(&device.party)
            .is_some_and(|k| k.contains(&f.change_hash));
        if !full.has_access(&device.party) && !kept {
            return Err(SealedRejection::NoAccess);
        }
        let access = self
            .at
            .entry(f.access_heads.clone())
            .or_insert_with(|| fold_dossier_at(state, dossier, log, &f.access_heads))
            .as_ref()
            .ok_or(SealedRejection::UnknownAccessHeads)?;
        if !access.has_access(&device.party) {
            return Err(SealedRejection::NoAccess);
        }
        let used = sealed_epoch(sealed).map_err(|_| SealedRejection::Malformed)?;
        let current = access
            .current_epoch()
            .map(|e| e.epoch)
            .ok_or(SealedRejection::RetiredEpoch { used, current: 0 })?;
        if used != current {
            return Err(SealedRejection::RetiredEpoch { used, current });
        }
        Ok(used)
    }
}

/// One dossier's sealed envelopes as a node holds or receives them (wire forms,
/// some perhaps undecodable), decoded once, with their hashes: what the chain
/// rules ([`chain_tips`], [`authentic`]) take.
pub struct DossierEnvelopes {
    dossier: DocId,
    items: Vec<Option<(SealedEnvelope, [u8; 32])>>,
}

impl DossierEnvelopes {
    /// Decodes `wires` (in order; `None` or an undecodable one stays `None`).
    pub fn decode<'a>(dossier: DocId, wires: impl IntoIterator<Item = Option<&'a [u8]>>) -> Self {
        let items = wires
            .into_iter()
            .map(|w| {
                let w = w?;
                Some((SealedEnvelope::decode(w).ok()?, envelope_hash(w)))
            })
            .collect();
        Self { dossier, items }
    }

    /// The decoded envelope at `i`.
    pub fn get(&self, i: usize) -> Option<&SealedEnvelope> {
        self.items.get(i)?.as_ref().map(|(e, _)| e)
    }

    fn listed(&self) -> (Vec<usize>, Vec<(&SealedEnvelope, [u8; 32])>) {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, x)| x.as_ref().map(|(e, h)| (i, (e, *h))))
            .unzip()
    }

    /// The chain tips among them (see [`chain_tips`]).
    pub fn tips(&self) -> Vec<&SealedEnvelope> {
        let (_, listed) = self.listed();
        chain_tips(&self.dossier, &listed)
            .into_iter()
            .map(|i| listed[i].0)
            .collect()
    }

    /// Per item, whether it is authentic (see [`authentic`]); `false` for one that
    /// did not decode.
    pub fn authentic(&self, vouched_elsewhere: impl Fn(&[u8; 32], &NodeId) -> bool) -> Vec<bool> {
        let (at, listed) = self.listed();
        let mut out = vec![false; self.items.len()];
        for (i, ok) in at
            .into_iter()
            .zip(authentic(&self.dossier, &listed, vouched_elsewhere))
        {
            out[i] = ok;
        }
        out
    }

    /// For each decoded envelope that names a predecessor, (that hash, its
    /// author): what these envelopes vouch for, if they are authentic.
    pub fn named(&self) -> std::collections::HashSet<([u8; 32], NodeId)> {
        self.items
            .iter()
            .flatten()
            .filter(|(e, _)| e.fields().dossier == self.dossier)
            .filter_map(|(e, _)| Some((e.fields().prev?, e.fields().author)))
            .collect()
    }
}

/// After unsealing: checks that the plaintext is the change the envelope's author
/// signed (its hash and its Automerge actor).
pub fn check_unsealed(
    envelope: &SealedEnvelope,
    change: &automerge::Change,
) -> Result<(), SealedRejection> {
    let f = envelope.fields();
    if change.hash().0 != f.change_hash || change.actor_id().to_bytes() != f.author.as_bytes() {
        return Err(SealedRejection::ChangeMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ActorId, Automerge, ROOT};

    use super::*;
    use crate::control::{OpBody, Signed, fold};
    use crate::dossier::access::{Basis, DossierBody, DossierOp, KeyWrap, dossier_id};
    use crate::id::Role;
    use crate::identity::NodeSecret;
    use crate::seal::{ContentKey, seal_change, wrap_key};
    use crate::testkit::{genesis, party, sign_op};

    /// A region (kerngemeente admin; a ROC and two municipalities with one device
    /// each) and a dossier opened by the ROC and granted to municipality A.
    struct World {
        region_ops: Vec<crate::control::SignedOp>,
        state: RegionState,
        admin: NodeSecret,
        roc: NodeSecret,
        a: NodeSecret,
        b: NodeSecret,
        dossier: DocId,
        log: Vec<SignedDossierOp>,
        keys: Vec<(u32, ContentKey)>,
    }

    impl World {
        fn new() -> Self {
            let admin = NodeSecret::generate().unwrap();
            let g = genesis(&admin, "gemeente-kern", Role::Kerngemeente);
            let region = Some(RegionId(g.hash()));
            let mut region_ops = vec![g];
            let (roc, a, b) = (
                NodeSecret::generate().unwrap(),
                NodeSecret::generate().unwrap(),
                NodeSecret::generate().unwrap(),
            );
            for (name, role, dev) in [
                ("roc-x", Role::Roc, &roc),
                ("gemeente-a", Role::Gemeente, &a),
                ("gemeente-b", Role::Gemeente, &b),
            ] {
                for body in [
                    OpBody::AddParty {
                        party: party(name),
                        role,
                    },
                    OpBody::AddDevice {
                        party: party(name),
                        device: dev.node_id(),
                        age_recipient: dev.age_recipient().to_string(),
                    },
                ] {
                    let last = region_ops.last().unwrap().hash();
                    region_ops.push(sign_op(&admin, region, vec![last], body));
                }
            }
            let state = fold(RegionId(region_ops[0].hash()), &region_ops)
                .unwrap()
                .state;
            let mut w = World {
                region_ops,
                state,
                admin,
                roc,
                a,
                b,
                dossier: DocId::from_bytes([0; 16]),
                log: vec![],
                keys: vec![],
            };
            let roc = w.roc.clone_for_tests();
            let nonce = [5u8; 16];
            w.dossier = dossier_id(&roc.node_id(), &party("roc-x"), &nonce);
            w.access(
                &roc,
                DossierBody::Open {
                    owner: party("roc-x"),
                    nonce,
                },
            );
            w.rotate(1, &[&roc]);
            w.access(
                &roc,
                DossierBody::Grant {
                    party: party("gemeente-a"),
                    basis: Basis::WettelijkeTaak,
                    purpose: "Jeugdwet".into(),
                    until: None,
                },
            );
            let a = w.a.clone_for_tests();
            w.wrap(1, &[&a]);
            w
        }

        fn heads(&self) -> Vec<OpHash> {
            self.log
                .iter()
                .map(|o| o.hash())
                .filter(|h| !self.log.iter().any(|o| o.payload().parents.contains(h)))
                .collect()
        }

        fn access(&mut self, by: &NodeSecret, body: DossierBody) -> OpHash {
            let op = Signed::sign(
                DossierOp {
                    region: self.state.region,
                    dossier: self.dossier,
                    parents: self.heads(),
                    author: by.node_id(),
                    time: 0,
                    body,
                },
                by.signing_key(),
            )
            .unwrap();
            self.log.push(op.clone());
            op.hash()
        }

        fn wraps(&self, epoch: u32, key: &ContentKey, to: &[&NodeSecret]) -> Vec<KeyWrap> {
            let mut w: Vec<KeyWrap> = to
                .iter()
                .map(|s| KeyWrap {
                    device: s.node_id(),
                    wrapped: wrap_key(key, &self.dossier, epoch, &s.age_recipient()).unwrap(),
                })
                .collect();
            w.sort_by_key(|k| k.device);
            w
        }

        fn rotate(&mut self, epoch: u32, to: &[&NodeSecret]) {
            let key = ContentKey::generate().unwrap();
            let wraps = self.wraps(epoch, &key, to);
            let roc = self.roc.clone_for_tests();
            self.access(
                &roc,
                DossierBody::Keys {
                    epoch,
                    new: true,
                    wraps,
                },
            );
            self.keys.push((epoch, key));
        }

        fn wrap(&mut self, epoch: u32, to: &[&NodeSecret]) {
            let key = self.key(epoch).clone();
            let wraps = self.wraps(epoch, &key, to);
            let roc = self.roc.clone_for_tests();
            self.access(
                &roc,
                DossierBody::Keys {
                    epoch,
                    new: false,
                    wraps,
                },
            );
        }

        /// The student moves: A is revoked, keeping `kept` (a note it wrote before),
        /// and the key rotated to epoch 2 for the ROC alone.
        fn move_student_away(&mut self, kept: [u8; 32]) {
            let roc = self.roc.clone_for_tests();
            self.access(
                &roc,
                DossierBody::Revoke {
                    party: party("gemeente-a"),
                    reason: "verhuisd".into(),
                    keep: vec![kept],
                },
            );
            self.rotate(2, &[&roc]);
        }

        fn key(&self, epoch: u32) -> &ContentKey {
            &self.keys.iter().find(|(e, _)| *e == epoch).unwrap().1
        }

        /// A change by `by`, sealed under `epoch`, made under `access_heads`.
        fn change(
            &self,
            by: &NodeSecret,
            epoch: u32,
            access_heads: Vec<OpHash>,
        ) -> (SealedEnvelope, Vec<u8>, automerge::Change) {
            let mut doc = Automerge::new().with_actor(ActorId::from(&by.node_id().as_bytes()[..]));
            let mut tx = doc.transaction();
            // A fresh value each time: two changes are never the same change.
            let mut salt = [0u8; 8];
            crate::id::fill_random(&mut salt).unwrap();
            tx.put(ROOT, "contact", hex::encode(salt)).unwrap();
            tx.commit();
            let change = doc.get_changes(&[]).pop().unwrap().clone();
            let sealed = seal_change(
                self.key(epoch),
                &self.dossier,
                epoch,
                &change.hash().0,
                change.raw_bytes(),
            )
            .unwrap();
            let env = SealedEnvelope::sign(
                SealedFields {
                    region: self.state.region,
                    dossier: self.dossier,
                    change_hash: change.hash().0,
                    sealed_hash: sealed_hash(&sealed),
                    author: by.node_id(),
                    control_heads: self.state.heads.clone(),
                    access_heads,
                    prev: None,
                },
                by.signing_key(),
            )
            .unwrap();
            (env, sealed, change)
        }

        /// An envelope by `by` of this dossier naming `prev` (its fields made up:
        /// the chain tests need no change behind them).
        fn chained(&self, by: &NodeSecret, n: u8, prev: Option<[u8; 32]>) -> SealedEnvelope {
            SealedEnvelope::sign(
                SealedFields {
                    region: self.state.region,
                    dossier: self.dossier,
                    change_hash: [n; 32],
                    sealed_hash: [n; 32],
                    author: by.node_id(),
                    control_heads: self.state.heads.clone(),
                    access_heads: self.heads(),
                    prev,
                },
                by.signing_key(),
            )
            .unwrap()
        }

        fn verify(&self, env: &SealedEnvelope, sealed: &[u8]) -> Result<u32, SealedRejection> {
            let known: Vec<OpHash> = self.region_ops.iter().map(|o| o.hash()).collect();
            verify_sealed(env, sealed, &self.dossier, &self.state, &self.log, |h| {
                known.contains(h)
            })
        }
    }

    /// `env` with its signature replaced by garbage (as a forger would send it).
    fn unsigned(env: &SealedEnvelope) -> SealedEnvelope {
        let mut wire = env.encode();
        wire[1..65].copy_from_slice(&[7; 64]);
        SealedEnvelope::decode(&wire).unwrap()
    }

    fn hashed(envs: &[SealedEnvelope]) -> Vec<(&SealedEnvelope, [u8; 32])> {
        envs.iter()
            .map(|e| (e, envelope_hash(&e.encode())))
            .collect()
    }

    #[test]
    fn a_chained_envelope_is_format_2_and_its_signature_covers_the_link() {
        let w = World::new();
        let first = w.chained(&w.a, 1, None);
        let second = w.chained(&w.a, 2, Some(envelope_hash(&first.encode())));
        assert_eq!(first.encode()[0], crate::envelope::ENVELOPE_FORMAT);
        let wire = second.encode();
        assert_eq!(wire[0], CHAINED_FORMAT);
        assert_eq!(SealedEnvelope::decode(&wire).unwrap(), second);
        assert!(second.signature_ok());
        // Another link under the same signature does not verify.
        let mut relinked = wire.clone();
        let last = relinked.len() - 1;
        relinked[last] ^= 1;
        assert!(!SealedEnvelope::decode(&relinked).unwrap().signature_ok());
        // Read as format 1, the trailing link is not a valid encoding; a format 2
        // envelope without a link is truncated; an unknown format is refused.
        let mut as_1 = wire.clone();
        as_1[0] = 1;
        assert!(SealedEnvelope::decode(&as_1).is_err());
        let cut = &first.encode()[..65 + 20];
        let mut short = cut.to_vec();
        short[0] = CHAINED_FORMAT;
        assert!(SealedEnvelope::decode(&short).is_err());
        let mut three = wire;
        three[0] = 3;
        assert_eq!(
            SealedEnvelope::decode(&three),
            Err(EnvelopeError::UnknownFormat(3))
        );
    }

    #[test]
    fn a_chain_is_proven_by_the_newest_signature_that_verifies() {
        let w = World::new();
        let e1 = w.chained(&w.a, 1, None);
        let e2 = w.chained(&w.a, 2, Some(envelope_hash(&e1.encode())));
        let e3 = w.chained(&w.a, 3, Some(envelope_hash(&e2.encode())));
        // Only the newest carries a valid signature: the chain is proven by it.
        let envs = [unsigned(&e1), unsigned(&e2), e3.clone()];
        assert_eq!(
            authentic(&w.dossier, &hashed(&envs), |_, _| false),
            vec![true, true, true]
        );
        // In any order.
        let envs = [e3.clone(), unsigned(&e1), unsigned(&e2)];
        assert_eq!(
            authentic(&w.dossier, &hashed(&envs), |_, _| false),
            vec![true, true, true]
        );
        // The newest is forged: the ones below stand on their own signatures.
        let envs = [e1.clone(), unsigned(&e2), unsigned(&e3)];
        assert_eq!(
            authentic(&w.dossier, &hashed(&envs), |_, _| false),
            vec![true, false, false]
        );
        // A held envelope outside the list (stored before) vouches as well.
        let h2 = envelope_hash(&e2.encode());
        let author = w.a.node_id();
        let envs = [unsigned(&e1), unsigned(&e2)];
        assert_eq!(
            authentic(&w.dossier, &hashed(&envs), |h, a| *h == h2 && *a == author),
            vec![true, true]
        );
        // The newest is the chain's one tip.
        let all = [e1.clone(), e2.clone(), e3.clone()];
        assert_eq!(chain_tips(&w.dossier, &hashed(&all)), vec![2]);
        // But not for another author.
        let b = w.b.node_id();
        assert_eq!(
            authentic(&w.dossier, &hashed(&envs), |h, a| *h == h2 && *a == b),
            vec![false, false]
        );
    }

    #[test]
    fn attack_an_envelope_made_up_for_another_author_is_not_vouched_by_the_forger() {
        let w = World::new();
        // Municipality B makes up a change "by" the ROC (with no valid signature)
        // and names it as the predecessor of its own, validly signed, change.
        let forged = unsigned(&w.chained(&w.roc, 1, None));
        let own = w.chained(&w.b, 2, Some(envelope_hash(&forged.encode())));
        let envs = [forged, own];
        assert_eq!(
            authentic(&w.dossier, &hashed(&envs), |_, _| false),
            vec![false, true]
        );
        // Nor does the same author's envelope of another dossier: links count
        // within one dossier.
        let e1 = unsigned(&w.chained(&w.a, 1, None));
        let elsewhere = SealedEnvelope::sign(
            SealedFields {
                dossier: DocId::from_bytes([9; 16]),
                prev: Some(envelope_hash(&e1.encode())),
                ..w.chained(&w.a, 2, None).fields().clone()
            },
            w.a.signing_key(),
        )
        .unwrap();
        let envs = [e1, elsewhere];
        assert_eq!(
            authentic(&w.dossier, &hashed(&envs), |_, _| false),
            vec![false, true]
        );
    }

    #[test]
    fn a_forked_chain_is_proven_by_each_branch() {
        // Two processes of one device wrote on the same predecessor.
        let w = World::new();
        let e1 = w.chained(&w.a, 1, None);
        let h1 = envelope_hash(&e1.encode());
        let left = w.chained(&w.a, 2, Some(h1));
        let right = w.chained(&w.a, 3, Some(h1));
        let envs = [unsigned(&e1), unsigned(&left), right];
        assert_eq!(
            authentic(&w.dossier, &hashed(&envs), |_, _| false),
            vec![true, false, true]
        );
    }

    #[test]
    fn a_granted_party_writes_and_anyone_can_verify_without_reading() {
        let w = World::new();
        let (env, sealed, change) = w.change(&w.a, 1, w.heads());
        assert_eq!(w.verify(&env, &sealed), Ok(1));
        assert_eq!(check_unsealed(&env, &change), Ok(()));
        assert_eq!(SealedEnvelope::decode(&env.encode()).unwrap(), env);
        // The plaintext change of someone else is not the one signed.
        let (_, _, other) = w.change(&w.roc, 1, w.heads());
        assert_eq!(
            check_unsealed(&env, &other),
            Err(SealedRejection::ChangeMismatch)
        );
    }

    #[test]
    fn one_check_for_many_changes_decides_each_as_verify_sealed_does() {
        let mut w = World::new();
        let mut cases = Vec::new();
        let before_revoke = w.heads();
        let (kept_env, kept_sealed, kept_change) = w.change(&w.a, 1, before_revoke.clone());
        cases.push((kept_env, kept_sealed));
        let two = |(e, s, _): (SealedEnvelope, Vec<u8>, automerge::Change)| (e, s);
        cases.push(two(w.change(&w.a, 1, before_revoke.clone())));
        cases.push(two(w.change(&w.b, 1, before_revoke.clone())));
        w.move_student_away(kept_change.hash().0);
        // Under the old heads and the new ones, alternating, so that a fold kept for
        // one set of heads would be reused wrongly for the other.
        for heads in [before_revoke.clone(), w.heads(), before_revoke, w.heads()] {
            cases.push(two(w.change(&w.roc, 1, heads.clone())));
            cases.push(two(w.change(&w.roc, 2, heads.clone())));
            cases.push(two(w.change(&w.a, 1, heads.clone())));
        }
        let (mut env, sealed, _) = w.change(&w.roc, 2, w.heads());
        cases.push((env.clone(), {
            let mut bad = sealed.clone();
            bad[3] ^= 1;
            bad
        }));
        env = SealedEnvelope::decode(&env.encode()).unwrap();
        cases.push((env, sealed));
        let known: Vec<OpHash> = w.region_ops.iter().map(|o| o.hash()).collect();
        let mut check = SealedCheck::new(&w.dossier, &w.state, &w.log);
        let mut outcomes = std::collections::BTreeSet::new();
        for (env, sealed) in &cases {
            let one = check.verify(env, sealed, |h| known.contains(h));
            assert_eq!(one, w.verify(env, sealed));
            outcomes.insert(format!("{one:?}"));
        }
        // The cases cover acceptance under both epochs and several refusals.
        assert!(outcomes.len() >= 4, "{outcomes:?}");
    }

    #[test]
    fn an_envelope_too_large_to_decode_is_not_made() {
        let w = World::new();
        let (env, _, _) = w.change(&w.a, 1, w.heads());
        let many: Vec<OpHash> = (0..64u8).map(|i| OpHash([i; 32])).collect();
        let big = SealedEnvelope::sign(
            SealedFields {
                control_heads: many.clone(),
                access_heads: many,
                ..env.fields().clone()
            },
            w.a.signing_key(),
        );
        assert!(matches!(big, Err(EnvelopeError::TooLarge(_))), "{big:?}");
    }

    #[test]
    fn attacks_on_sealed_changes_are_refused_with_a_reason() {
        let mut w = World::new();
        // Tampered ciphertext (the relay or the network flipped a byte).
        let (env, mut sealed, _) = w.change(&w.a, 1, w.heads());
        sealed[10] ^= 1;
        assert_eq!(
            w.verify(&env, &sealed),
            Err(SealedRejection::SealedHashMismatch)
        );
        // A party without a grant (B) writes with a key it somehow obtained.
        let (env, sealed, _) = w.change(&w.b, 1, w.heads());
        assert_eq!(w.verify(&env, &sealed), Err(SealedRejection::NoAccess));
        // Access heads this node does not have.
        let (env, sealed, _) = w.change(&w.a, 1, vec![OpHash([0xcc; 32])]);
        assert_eq!(
            w.verify(&env, &sealed),
            Err(SealedRejection::UnknownAccessHeads)
        );
        // A signature by another key over the same fields.
        let (env, sealed, _) = w.change(&w.a, 1, w.heads());
        let forged = SealedEnvelope::sign(
            SealedFields {
                author: w.b.node_id(),
                ..env.fields().clone()
            },
            w.b.signing_key(),
        )
        .unwrap();
        let mut wire = env.encode();
        let forged_wire = forged.encode();
        wire[1..65].copy_from_slice(&forged_wire[1..65]);
        let spliced = SealedEnvelope::decode(&wire).unwrap();
        assert_eq!(
            w.verify(&spliced, &sealed),
            Err(SealedRejection::BadSignature)
        );

        // The student moves: A is revoked (keeping the note it wrote before) and the
        // key rotated. A change sealed with the retired epoch under the new access
        // state is refused.
        let (kept_env, kept_sealed, kept_change) = w.change(&w.a, 1, w.heads());
        let before_revoke = w.heads();
        w.move_student_away(kept_change.hash().0);
        let (env, sealed, _) = w.change(&w.roc, 1, w.heads());
        assert_eq!(
            w.verify(&env, &sealed),
            Err(SealedRejection::RetiredEpoch {
                used: 1,
                current: 2
            })
        );
        let (env, sealed, _) = w.change(&w.a, 1, w.heads());
        assert_eq!(w.verify(&env, &sealed), Err(SealedRejection::NoAccess));
        // A's note from before stays; a new one backdated to before the revocation,
        // sealed with the old key A still holds, does not.
        assert_eq!(w.verify(&kept_env, &kept_sealed), Ok(1));
        let (env, sealed, _) = w.change(&w.a, 1, before_revoke.clone());
        assert_eq!(w.verify(&env, &sealed), Err(SealedRejection::NoAccess));
        let (env, sealed, _) = w.change(&w.roc, 2, w.heads());
        assert_eq!(w.verify(&env, &sealed), Ok(2));

        // A fork: B opens its own log under this dossier id and names it. The fork's
        // ops are refused in the full log, so is the change.
        let b = w.b.clone_for_tests();
        let fork = Signed::sign(
            DossierOp {
                region: w.state.region,
                dossier: w.dossier,
                parents: vec![],
                author: b.node_id(),
                time: 0,
                body: DossierBody::Open {
                    owner: party("gemeente-b"),
                    nonce: [9; 16],
                },
            },
            b.signing_key(),
        )
        .unwrap();
        w.log.push(fork.clone());
        let (env, sealed, _) = w.change(&w.b, 2, vec![fork.hash()]);
        assert_eq!(
            w.verify(&env, &sealed),
            Err(SealedRejection::RefusedAccessHeads)
        );
        w.log.pop();

        // A removed device: every sealed change of it is refused, also one that
        // names old access heads with a key it still holds.
        let old_heads = vec![w.log[1].hash()];
        let (env, sealed, _) = w.change(&w.roc, 1, old_heads);
        assert_eq!(w.verify(&env, &sealed), Ok(1), "before the removal");
        let last = w.region_ops.last().unwrap().hash();
        w.region_ops.push(sign_op(
            &w.admin,
            Some(w.state.region),
            vec![last],
            OpBody::RemoveDevice {
                device: w.roc.node_id(),
                cutoffs: vec![],
            },
        ));
        w.state = fold(w.state.region, &w.region_ops).unwrap().state;
        assert_eq!(
            w.verify(&env, &sealed),
            Err(SealedRejection::AuthorNotActive)
        );
    }
}
