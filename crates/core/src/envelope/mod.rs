//! Signed change envelopes: every Automerge change travels and is stored with its
//! author device and that device's Ed25519 signature over the change hash, the
//! document, the region and the control heads it was made under.
//!
//! Wire form (version 1), see docs/PROTOCOL.md:
//!
//! ```text
//! [1 byte format = 1][64 bytes signature][postcard(SignedFields)]
//! ```
//!
//! The signature covers `"regiosync/change/1\0" || postcard(SignedFields)`.
//! [`verify_change`] is the one function that decides whether a change is accepted;
//! [`select_changes`] applies it to a whole document, dependencies included.

use std::collections::{BTreeMap, HashMap, HashSet};

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::control::{OpHash, RegionId, RegionState, WriteDenied};
use crate::id::{DocId, NodeId};

/// The format byte of plain change envelopes, and of sealed ones that start their
/// author's chain in a dossier.
pub const ENVELOPE_FORMAT: u8 = 1;
/// The newest envelope format this build reads: 2, sealed change envelopes that
/// name their author's previous one (`sealed::SealedFields::prev`).
pub const MAX_ENVELOPE_FORMAT: u8 = 2;
/// Largest encoded envelope accepted (the heads list is bounded).
pub const MAX_ENVELOPE_BYTES: usize = 4096;
/// Most control heads an envelope may name.
pub const MAX_CONTROL_HEADS: usize = 64;
const SIG_CONTEXT: &[u8] = b"regiosync/change/1\0";

/// The signed fields of an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedFields {
    /// The region the document belongs to.
    pub region: RegionId,
    /// The document.
    pub doc: DocId,
    /// The Automerge change hash.
    pub change_hash: [u8; 32],
    /// The author device.
    pub author: NodeId,
    /// The control-log heads the author had when making the change (sorted).
    pub control_heads: Vec<OpHash>,
}

/// The signed fields of an envelope kind: plain changes ([`SignedFields`]) and sealed
/// dossier changes ([`sealed::SealedFields`]) share the wire form and differ in their
/// fields and signature context.
pub trait EnvelopeFields: Serialize + for<'de> Deserialize<'de> + Clone + PartialEq {
    /// Domain separation of the signature.
    const SIG_CONTEXT: &'static [u8];
    /// The signing device.
    fn author(&self) -> &NodeId;
    /// Sorts and deduplicates head lists before signing.
    fn normalise(&mut self);
    /// Structural checks (bounded, sorted head lists), on signing and decoding.
    fn check(&self) -> Result<(), EnvelopeError>;
    /// The format byte these fields are written under ([`ENVELOPE_FORMAT`] unless
    /// a kind has a later format for some of its envelopes).
    fn format(&self) -> u8 {
        ENVELOPE_FORMAT
    }
    /// Domain separation of the signature of these fields (by format).
    fn context(&self) -> &'static [u8] {
        Self::SIG_CONTEXT
    }
    /// The encoded fields, as signed and sent after the signature.
    fn encode_body(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
    /// Decodes the fields of an envelope of `format` (canonical encoding only).
    fn decode_body(format: u8, body: &[u8]) -> Result<Self, EnvelopeError> {
        if format != ENVELOPE_FORMAT {
            return Err(EnvelopeError::UnknownFormat(format));
        }
        decode_canonical(body)
    }
}

/// Decodes postcard-encoded fields and refuses any other encoding of them than
/// the canonical one (a second encoding would be a second envelope hash).
pub(crate) fn decode_canonical<T: Serialize + for<'de> Deserialize<'de>>(
    body: &[u8],
) -> Result<T, EnvelopeError> {
    let fields: T = postcard::from_bytes(body).map_err(|_| EnvelopeError::Malformed("fields"))?;
    if postcard::to_allocvec(&fields).ok().as_deref() != Some(body) {
        return Err(EnvelopeError::Malformed("non-canonical encoding"));
    }
    Ok(fields)
}

impl EnvelopeFields for SignedFields {
    const SIG_CONTEXT: &'static [u8] = SIG_CONTEXT;
    fn author(&self) -> &NodeId {
        &self.author
    }
    fn normalise(&mut self) {
        self.control_heads.sort();
        self.control_heads.dedup();
    }
    fn check(&self) -> Result<(), EnvelopeError> {
        check_heads(&self.control_heads)
    }
}

/// Checks a head list: sorted, unique, at most [`MAX_CONTROL_HEADS`].
pub(crate) fn check_heads(heads: &[OpHash]) -> Result<(), EnvelopeError> {
    if heads.len() > MAX_CONTROL_HEADS || !heads.windows(2).all(|w| w[0] < w[1]) {
        return Err(EnvelopeError::Malformed(
            "heads must be sorted, unique, bounded",
        ));
    }
    Ok(())
}

/// An envelope: the signed fields and the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope<F> {
    fields: F,
    signature: [u8; 64],
}

/// A plain change's envelope.
pub type ChangeEnvelope = Envelope<SignedFields>;

impl<F: std::fmt::Debug> std::fmt::Debug for Envelope<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl<F: EnvelopeFields> Envelope<F> {
    /// Signs the fields with the author's key. The signature is checked later by
    /// [`verify_change`] (or `sealed::verify_sealed`), never trusted on decode.
    pub fn sign(mut fields: F, key: &SigningKey) -> Result<Self, EnvelopeError> {
        if key.verifying_key().to_bytes() != *fields.author().as_bytes() {
            return Err(EnvelopeError::WrongKey);
        }
        fields.normalise();
        fields.check()?;
        let signature = key.sign(&message(&fields)?).to_bytes();
        let envelope = Self { fields, signature };
        // What a receiver would refuse to decode must not be made.
        let size = envelope.encode().len();
        if size > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge(size));
        }
        Ok(envelope)
    }

    /// The signed fields (not yet verified).
    pub fn fields(&self) -> &F {
        &self.fields
    }

    /// The signature (not yet verified).
    pub(crate) fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// An envelope from fields and a signature that travelled apart (the compact
    /// wire form, `sync::compact`); checked like any decoded one, never trusted.
    pub(crate) fn from_parts(fields: F, signature: [u8; 64]) -> Self {
        Self { fields, signature }
    }

    /// Encodes the wire form.
    pub fn encode(&self) -> Vec<u8> {
        let body = self.fields.encode_body();
        let mut out = Vec::with_capacity(65 + body.len());
        out.push(self.fields.format());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&body);
        out
    }

    /// Decodes the wire form from untrusted bytes (size, version, canonical encoding).
    /// The signature is *not* checked here.
    pub fn decode(wire: &[u8]) -> Result<Self, EnvelopeError> {
        if wire.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge(wire.len()));
        }
        let (&format, rest) = wire
            .split_first()
            .ok_or(EnvelopeError::Malformed("empty"))?;
        if format == 0 || format > MAX_ENVELOPE_FORMAT {
            return Err(EnvelopeError::UnknownFormat(format));
        }
        if rest.len() < 64 {
            return Err(EnvelopeError::Malformed("truncated signature"));
        }
        let (sig, body) = rest.split_at(64);
        let fields = F::decode_body(format, body)?;
        fields.check()?;
        let signature: [u8; 64] = sig
            .try_into()
            .map_err(|_| EnvelopeError::Malformed("signature"))?;
        Ok(Self { fields, signature })
    }

    pub(crate) fn signature_ok(&self) -> bool {
        let Ok(msg) = message(&self.fields) else {
            return false;
        };
        crate::signature_memo::verify(self.fields.author().as_bytes(), &self.signature, &msg)
    }
}

/// Checks the signatures of `envelopes` on all cores and remembers those that
/// verify, so that [`verify_change`] and [`sealed::verify_sealed`], which still
/// check each one together with the rules around it, find them checked. For the
/// changes of one received message (the caller passes only envelopes addressed to
/// the documents the message is about, so that a peer's junk costs no more than
/// before), or of a document rebuilt from the store.
pub fn preverify_signatures<'a, F: EnvelopeFields + 'a>(
    envelopes: impl IntoIterator<Item = &'a Envelope<F>>,
) {
    let items: Vec<([u8; 32], [u8; 64], Vec<u8>)> = envelopes
        .into_iter()
        .filter_map(|e| {
            let msg = message(&e.fields).ok()?;
            Some((*e.fields.author().as_bytes(), e.signature, msg))
        })
        .collect();
    crate::signature_memo::verify_many(&items);
}

fn message<F: EnvelopeFields>(fields: &F) -> Result<Vec<u8>, EnvelopeError> {
    let body = fields.encode_body();
    if body.is_empty() {
        return Err(EnvelopeError::Malformed("encoding"));
    }
    let context = fields.context();
    let mut m = Vec::with_capacity(context.len() + body.len());
    m.extend_from_slice(context);
    m.extend_from_slice(&body);
    Ok(m)
}

/// What the verifier needs to know of the Automerge change itself.
#[derive(Clone, Copy, Debug)]
pub struct ChangeMeta<'a> {
    /// The change hash.
    pub hash: [u8; 32],
    /// The change's actor id bytes.
    pub actor: &'a [u8],
    /// The actor's sequence number.
    pub seq: u64,
}

/// Why a change was rejected. A rejected change never enters a document.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum ChangeRejection {
    /// The change has no envelope.
    #[error("the change is unsigned")]
    Unsigned,
    /// The signature does not verify with the named author's key.
    #[error("bad signature")]
    BadSignature,
    /// The envelope names another region.
    #[error("the change belongs to another region")]
    WrongRegion,
    /// The envelope is for another document.
    #[error("the envelope is for another document")]
    WrongDocument,
    /// The envelope signs another change.
    #[error("the envelope signs a different change")]
    HashMismatch,
    /// The change's Automerge actor is not the signing device.
    #[error("the change's actor id does not match the signing device")]
    ActorMismatch,
    /// The envelope names control ops this node does not know (yet).
    #[error("the change was made under control ops this node has not seen yet")]
    UnknownControlHeads,
    /// The author is not allowed to write (see [`WriteDenied`]).
    #[error("{0}")]
    NoAuthority(WriteDenied),
    /// The change builds on a rejected or missing change.
    #[error("the change depends on a rejected or missing change")]
    DependsOnRejected,
    /// Another change of the same device with the same sequence number is held
    /// first: the device equivocated (signed two different changes under one
    /// number); only the first one held counts.
    #[error("the device signed another change with the same sequence number (equivocation)")]
    Equivocation,
    /// The change breaks the plan schema's rules for received changes (rewrites the
    /// plan's identity, deletes its structure, or goes past a limit).
    #[error("{0}")]
    OutsideSchema(crate::plan::received::ChangeOutsideSchema),
    /// The change breaks its document kind's rules ([`crate::kind::DocKind`]) for
    /// a kind other than plans.
    #[error("the change breaks the rules of its document kind: {0}")]
    OutsideKind(&'static str),
    /// The document is of a kind this node does not know ([`crate::kind`]), or not
    /// in the region log: its changes cannot be checked here.
    #[error("the document is of a kind this version of regiosync does not know: upgrade regiosync")]
    UnknownKind,
    /// The change bytes are not one uncompressed Automerge change (see
    /// [`crate::change_chunk`]).
    #[error("the change bytes are not a valid uncompressed Automerge change")]
    Malformed,
}

/// The checks of [`verify_change`] that need only the change hash, not the parsed
/// change: region, document, hash, an author that is a device of the region (active
/// or removed: a removed device's changes may still be kept), and the signature. Run
/// on the hash of the raw chunk ([`crate::change_chunk::change_hash`]) before the
/// change is parsed, so that a peer cannot make this node parse bytes that no device
/// of the region signed.
pub fn verify_signed_hash(
    envelope: &ChangeEnvelope,
    doc: &DocId,
    hash: &[u8; 32],
    state: &RegionState,
) -> Result<(), ChangeRejection> {
    let f = &envelope.fields;
    check_addressed(f, doc, hash, state)?;
    if !state.devices.contains_key(&f.author) {
        return Err(ChangeRejection::NoAuthority(WriteDenied::UnknownDevice));
    }
    if !envelope.signature_ok() {
        return Err(ChangeRejection::BadSignature);
    }
    Ok(())
}

/// The envelope names this region, this document and this change hash.
fn check_addressed(
    f: &SignedFields,
    doc: &DocId,
    hash: &[u8; 32],
    state: &RegionState,
) -> Result<(), ChangeRejection> {
    if f.region != state.region {
        return Err(ChangeRejection::WrongRegion);
    }
    if f.doc != *doc {
        return Err(ChangeRejection::WrongDocument);
    }
    if f.change_hash != *hash {
        return Err(ChangeRejection::HashMismatch);
    }
    Ok(())
}

/// Decides whether one change is accepted, with a typed reason if not. `known_op`
/// tells whether a control op is known to this node.
pub fn verify_change(
    envelope: &ChangeEnvelope,
    doc: &DocId,
    change: ChangeMeta<'_>,
    state: &RegionState,
    known_op: impl Fn(&OpHash) -> bool,
) -> Result<(), ChangeRejection> {
    let f = &envelope.fields;
    check_addressed(f, doc, &change.hash, state)?;
    if change.actor != f.author.as_bytes() {
        return Err(ChangeRejection::ActorMismatch);
    }
    if !envelope.signature_ok() {
        return Err(ChangeRejection::BadSignature);
    }
    if !f.control_heads.iter().all(known_op) {
        return Err(ChangeRejection::UnknownControlHeads);
    }
    state
        .change_authority(doc, &f.author, change.seq, &change.hash)
        .map_err(ChangeRejection::NoAuthority)
}

/// One stored change of a document, as input to [`select_changes`].
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    /// The parsed Automerge change.
    pub change: &'a automerge::Change,
    /// Its envelope, if it has one.
    pub envelope: Option<&'a ChangeEnvelope>,
}

/// The verdict on a document's changes.
#[derive(Debug, Default)]
pub struct Selection {
    /// Indices (into the input) of accepted changes, in an order that satisfies their
    /// dependencies.
    pub accepted: Vec<usize>,
    /// Rejected changes by hash.
    pub rejected: BTreeMap<[u8; 32], ChangeRejection>,
}

/// Verifies every change of `doc` and keeps those that are accepted *and* whose
/// dependencies are all accepted or `already` applied (a change on top of a rejected
/// one cannot be applied). `already` names changes accepted earlier, e.g. those in a
/// verified snapshot.
///
/// Two rules keep the result fair and order-independent (docs/AUTH.md, "Changes"):
/// - a change is valid if *any* stored copy of it carries a valid envelope, so a
///   forged copy that arrived first cannot shadow the genuine one;
/// - a change of a removed device past its cutoff is kept if an accepted change of an
///   author in good standing builds on it (that author saw and vouched for it before
///   the removal reached them), so a removal never destroys other parties' work.
///
/// The result depends only on the set of candidates, not their order.
pub fn select_changes(
    doc: &DocId,
    candidates: &[Candidate<'_>],
    state: &RegionState,
    known_op: impl Fn(&OpHash) -> bool,
    already: impl Fn(&[u8; 32]) -> bool,
) -> Selection {
    select_changes_checked(doc, candidates, state, known_op, already, |_| Ok(()))
}

/// [`select_changes`] with a further check of every change whose envelope verifies
/// (the document kind's rule: [`crate::kind::Kinds::change_check`]); a change that fails it is rejected like one
/// without authority, and so is what builds on it.
pub fn select_changes_checked(
    doc: &DocId,
    candidates: &[Candidate<'_>],
    state: &RegionState,
    known_op: impl Fn(&OpHash) -> bool,
    already: impl Fn(&[u8; 32]) -> bool,
    check: impl Fn(&Candidate<'_>) -> Result<(), ChangeRejection>,
) -> Selection {
    let mut sel = Selection::default();
    let mut valid: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    // Changes past their author's authority that stand if an accepted change builds
    // on them (the rescue rule), with the reason they fail otherwise.
    let mut provisional: BTreeMap<[u8; 32], (usize, ChangeRejection)> = BTreeMap::new();
    let mut failed: BTreeMap<[u8; 32], ChangeRejection> = BTreeMap::new();
    for (i, c) in candidates.iter().enumerate() {
        let hash = c.change.hash().0;
        if valid.contains_key(&hash) || already(&hash) {
            continue;
        }
        let verdict = match c.envelope {
            None => Err(ChangeRejection::Unsigned),
            Some(env) => verify_change(
                env,
                doc,
                ChangeMeta {
                    hash,
                    actor: c.change.actor_id().to_bytes(),
                    seq: c.change.seq(),
                },
                state,
                &known_op,
            ),
        };
        let verdict = match verdict {
            Ok(()) => check(c),
            Err(ChangeRejection::NoAuthority(w)) => {
                check(c).and(Err(ChangeRejection::NoAuthority(w)))
            }
            e => e,
        };
        match verdict {
            Ok(()) => {
                valid.insert(hash, i);
                provisional.remove(&hash);
                failed.remove(&hash);
            }
            // A removed device's change past its cutoff, or a change of a party taken
            // off the writers past its cutoff (it was a writer: the demotion wrote a
            // cutoff for the device), that another author built on before it learned
            // of the revocation: rescued below, so that no honest later writer loses
            // work. A party that never wrote the document has no cutoff: no rescue.
            Err(
                why @ ChangeRejection::NoAuthority(
                    WriteDenied::RemovedDevice | WriteDenied::NotAWriter,
                ),
            ) if why == ChangeRejection::NoAuthority(WriteDenied::RemovedDevice)
                || c.envelope
                    .is_some_and(|e| state.cutoffs.contains_key(&(*doc, e.fields().author))) =>
            {
                provisional.insert(hash, (i, why));
            }
            Err(why) => {
                // Keep the smallest reason, so the verdict does not depend on order.
                let e = failed.entry(hash).or_insert_with(|| why.clone());
                if why < *e {
                    *e = why;
                }
            }
        }
    }
    // Rescue: provisional changes that accepted changes build on (transitively).
    let mut stack: Vec<[u8; 32]> = valid.keys().copied().collect();
    let mut seen: HashSet<[u8; 32]> = stack.iter().copied().collect();
    while let Some(h) = stack.pop() {
        let i = valid
            .get(&h)
            .copied()
            .or_else(|| provisional.get(&h).map(|(i, _)| *i));
        let Some(i) = i else { continue };
        for d in candidates[i].change.deps() {
            if seen.insert(d.0) {
                if let Some((pi, _)) = provisional.remove(&d.0) {
                    valid.insert(d.0, pi);
                    failed.remove(&d.0);
                }
                stack.push(d.0);
            }
        }
    }
    for (h, (_, why)) in provisional {
        failed.entry(h).or_insert(why);
    }
    // Equivocation: of valid changes with the same actor and sequence number, only
    // the first held (the smallest candidate index: candidates come in store order)
    // counts; Automerge would refuse to load both.
    let mut by_seq: BTreeMap<(Vec<u8>, u64), usize> = BTreeMap::new();
    for &i in valid.values() {
        let c = candidates[i].change;
        let slot = by_seq
            .entry((c.actor_id().to_bytes().to_vec(), c.seq()))
            .or_insert(i);
        *slot = (*slot).min(i);
    }
    let first: HashSet<usize> = by_seq.into_values().collect();
    valid.retain(|h, i| {
        let keep = first.contains(i);
        if !keep {
            failed.insert(*h, ChangeRejection::Equivocation);
        }
        keep
    });
    for (h, why) in failed {
        if !valid.contains_key(&h) {
            sel.rejected.insert(h, why);
        }
    }
    // Dependency closure (Kahn's algorithm): a change is placed once all its deps are
    // placed; what is never placed depends on something rejected or missing.
    let mut missing: HashMap<[u8; 32], usize> = HashMap::with_capacity(valid.len());
    let mut dependents: HashMap<[u8; 32], Vec<[u8; 32]>> = HashMap::new();
    let mut ready: Vec<[u8; 32]> = Vec::new();
    for (h, &i) in &valid {
        let deps: Vec<[u8; 32]> = candidates[i]
            .change
            .deps()
            .iter()
            .map(|d| d.0)
            .filter(|d| !already(d))
            .collect();
        missing.insert(*h, deps.len());
        if deps.is_empty() {
            ready.push(*h);
        }
        for d in deps {
            dependents.entry(d).or_default().push(*h);
        }
    }
    let mut placed: HashSet<[u8; 32]> = HashSet::with_capacity(valid.len());
    while let Some(h) = ready.pop() {
        placed.insert(h);
        sel.accepted.push(valid[&h]);
        for c in dependents.get(&h).into_iter().flatten() {
            if let Some(m) = missing.get_mut(c) {
                *m -= 1;
                if *m == 0 {
                    ready.push(*c);
                }
            }
        }
    }
    for h in valid.keys().filter(|h| !placed.contains(*h)) {
        sel.rejected.insert(*h, ChangeRejection::DependsOnRejected);
    }
    sel
}

/// Why an envelope could not be made or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Larger than [`MAX_ENVELOPE_BYTES`].
    #[error("change envelope of {0} bytes exceeds the limit of {MAX_ENVELOPE_BYTES} bytes")]
    TooLarge(usize),
    /// Unknown format byte.
    #[error(
        "change envelope has format version {0}, this regiosync knows 1 to {MAX_ENVELOPE_FORMAT}: upgrade regiosync"
    )]
    UnknownFormat(u8),
    /// Does not decode.
    #[error("change envelope is malformed ({0})")]
    Malformed(&'static str),
    /// Signing with a key that is not the author's.
    #[error("the signing key is not the envelope author's")]
    WrongKey,
}

pub mod sealed;

#[cfg(test)]
mod tests;
