//! The compact form of change envelopes in sync frames (frame format 2, spoken on
//! `/regiosync/sync/3`).
//!
//! A change's envelope (docs/PROTOCOL.md, "Change envelopes", "Sealed change
//! envelopes") repeats what every change of a message shares: the region, the
//! document (already named by the message), the author (one of a few devices), the
//! head lists (the same for runs of changes), and a hash the receiver can compute
//! from the change bytes (the Automerge hash of a plain change; the SHA-256 of a
//! sealed one). In format 2 each envelope travels as its signature, the indices of
//! its author and head lists in a table sent once per frame, and, for a sealed
//! change, the plaintext's change hash (which a relay cannot compute). The receiver
//! rebuilds the envelope's exact bytes from these, so everything after decoding
//! (signature checks, the stored envelope, forwarding to an older node) sees the
//! same envelope as in format 1. An envelope that would not come back byte for byte
//! travels whole ([`Compact::Full`]).
//!
//! Hostile input: a table index out of range, a head list that an envelope may not
//! name (unsorted, over 64), change bytes whose hash cannot be computed, or more
//! rebuilt envelope bytes than [`MAX_SYNC_MESSAGE`] are refused as the whole frame
//! ([`SyncError::Malformed`], [`SyncError::OverLimit`]) before anything is verified
//! or stored.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::bundle::{BundlePrev, OutBundle, PendingBundle, PendingEntry};
use super::message::{MAX_SYNC_MESSAGE, SignedChange, SyncError};
use crate::control::{OpHash, RegionId};
use crate::envelope::sealed::{SealedEnvelope, SealedFields, envelope_hash, sealed_hash};
use crate::envelope::{ChangeEnvelope, EnvelopeFields, SignedFields, check_heads};
use crate::id::{DocId, NodeId};

/// What a frame's envelopes share, sent once before the message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Table {
    /// The region of every compact envelope (none when the frame has none).
    region: Option<RegionId>,
    /// The authors, by index.
    authors: Vec<NodeId>,
    /// The head lists (control heads and access heads alike), by index.
    heads: Vec<Vec<OpHash>>,
}

/// An Ed25519 signature in its two halves (serde has no 64-byte arrays).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Signature {
    r: [u8; 32],
    s: [u8; 32],
}

impl Signature {
    fn from_bytes(b: &[u8; 64]) -> Self {
        let (mut r, mut s) = ([0u8; 32], [0u8; 32]);
        r.copy_from_slice(&b[..32]);
        s.copy_from_slice(&b[32..]);
        Self { r, s }
    }
    fn to_bytes(self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&self.r);
        b[32..].copy_from_slice(&self.s);
        b
    }
}

/// One envelope in format 2 (postcard, in `SignedChange::envelope`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Compact {
    /// The envelope as stored (format 1 wire form): one that does not rebuild
    /// exactly from the parts below.
    Full(Vec<u8>),
    /// A plain change's envelope: the change hash is the change bytes' Automerge
    /// hash, the document the message's.
    Plain {
        signature: Signature,
        author: u32,
        control: u32,
    },
    /// A sealed change's envelope: the sealed hash is the SHA-256 of the sealed
    /// bytes, the dossier the message's.
    Sealed {
        signature: Signature,
        change_hash: [u8; 32],
        author: u32,
        control: u32,
        access: u32,
        prev: Prev,
    },
}

/// The `prev` of a sealed envelope (format 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Prev {
    /// None (a format 1 envelope).
    None,
    /// The envelope of the same author sent last before it in the same dossier's
    /// message, in compact form (the usual case: a chain travels in order).
    Previous,
    /// Another envelope, by its hash.
    Hash([u8; 32]),
}

/// The hash of each author's envelope sent last in compact form, per dossier: what
/// [`Prev::Previous`] names. Kept alike by the compactor and the expander.
#[derive(Default)]
struct LastSent(HashMap<(DocId, u32), [u8; 32]>);

impl LastSent {
    fn prev(&self, doc: &DocId, author: u32, prev: Option<[u8; 32]>) -> Prev {
        match prev {
            None => Prev::None,
            Some(p) if self.0.get(&(*doc, author)) == Some(&p) => Prev::Previous,
            Some(p) => Prev::Hash(p),
        }
    }
    fn resolve(
        &self,
        doc: &DocId,
        author: u32,
        prev: &Prev,
    ) -> Result<Option<[u8; 32]>, SyncError> {
        match prev {
            Prev::None => Ok(None),
            Prev::Previous => self
                .0
                .get(&(*doc, author))
                .copied()
                .map(Some)
                .ok_or(SyncError::Malformed),
            Prev::Hash(h) => Ok(Some(*h)),
        }
    }
    fn record(&mut self, doc: &DocId, compact: &Compact, wire: &[u8]) {
        if let Compact::Sealed { author, .. } = compact {
            self.0.insert((*doc, *author), envelope_hash(wire));
        }
    }
}

/// Which kind of envelope a message's changes carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `Docs`: plain change envelopes.
    Plain,
    /// `Dossiers`: sealed change envelopes.
    Sealed,
}

/// Builds a frame's table while its envelopes are made compact.
#[derive(Default)]
pub(crate) struct Compactor {
    table: Table,
    authors: HashMap<NodeId, u32>,
    heads: HashMap<Vec<OpHash>, u32>,
    last: LastSent,
}

impl Compactor {
    /// The table, once every envelope of the frame went through [`Self::compact`].
    pub(crate) fn into_table(self) -> Table {
        self.table
    }

    fn author(&mut self, a: &NodeId) -> u32 {
        let next = self.table.authors.len() as u32;
        *self.authors.entry(*a).or_insert_with(|| {
            self.table.authors.push(*a);
            next
        })
    }

    fn heads(&mut self, h: &[OpHash]) -> u32 {
        if let Some(i) = self.heads.get(h) {
            return *i;
        }
        let i = self.table.heads.len() as u32;
        self.table.heads.push(h.to_vec());
        self.heads.insert(h.to_vec(), i);
        i
    }

    /// Whether envelopes of `region` may be compact in this frame (the first one
    /// decides; an envelope of another region, which no honest node sends, travels
    /// whole).
    fn region_ok(&mut self, region: &RegionId) -> bool {
        *self.table.region.get_or_insert(*region) == *region
    }

    /// Replaces `change.envelope` (format 1 wire form) by its compact form.
    pub(crate) fn compact(&mut self, kind: Kind, doc: &DocId, change: &mut SignedChange) {
        let compact = match self.try_compact(kind, doc, change) {
            Some(c) => {
                self.last.record(doc, &c, &change.envelope);
                c
            }
            None => Compact::Full(std::mem::take(&mut change.envelope)),
        };
        change.envelope = postcard::to_allocvec(&compact).unwrap_or_default();
    }

    fn try_compact(&mut self, kind: Kind, doc: &DocId, change: &SignedChange) -> Option<Compact> {
        let compact = match kind {
            Kind::Plain => {
                let env = ChangeEnvelope::decode(&change.envelope).ok()?;
                let f = env.fields();
                if f.doc != *doc || !self.region_ok(&f.region) {
                    return None;
                }
                Compact::Plain {
                    signature: Signature::from_bytes(env.signature()),
                    author: self.author(&f.author),
                    control: self.heads(&f.control_heads),
                }
            }
            Kind::Sealed => {
                let env = SealedEnvelope::decode(&change.envelope).ok()?;
                let f = env.fields();
                if f.dossier != *doc || !self.region_ok(&f.region) {
                    return None;
                }
                let author = self.author(&f.author);
                Compact::Sealed {
                    signature: Signature::from_bytes(env.signature()),
                    change_hash: f.change_hash,
                    author,
                    control: self.heads(&f.control_heads),
                    access: self.heads(&f.access_heads),
                    prev: self.last.prev(doc, author, f.prev),
                }
            }
        };
        // Only what comes back byte for byte travels compact (a stored envelope
        // is canonical, so this always holds for what honest nodes store).
        let back = expand_one(&self.table, &self.last, kind, doc, &change.change, &compact).ok()?;
        (back == change.envelope).then_some(compact)
    }
}

/// A bundle in a frame of format 3 ([`crate::sync::bundle`]): its dossier, its
/// sealed plaintext, and its changes' envelopes without the two hashes the receiver
/// computes from the rebuilt changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireBundle {
    pub(crate) dossier: DocId,
    sealed: Vec<u8>,
    entries: Vec<WireEntry>,
}

/// One bundled change's envelope: signature and table indices, as [`Compact::Sealed`]
/// without the change hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct WireEntry {
    signature: Signature,
    author: u32,
    control: u32,
    access: u32,
    prev: BundlePrev,
}

impl Compactor {
    /// The wire form of a bundle, its envelopes' parts in this frame's table; `None`
    /// if an envelope does not decode or is of another region than the frame's
    /// (the caller then sends the changes on their own).
    pub(crate) fn bundle(&mut self, b: &OutBundle) -> Option<WireBundle> {
        let mut last: HashMap<NodeId, [u8; 32]> = HashMap::new();
        let mut entries = Vec::with_capacity(b.changes.len());
        for c in &b.changes {
            let env = SealedEnvelope::decode(&c.envelope).ok()?;
            let f = env.fields();
            if f.dossier != b.dossier || !self.region_ok(&f.region) {
                return None;
            }
            let prev = match f.prev {
                None => BundlePrev::None,
                Some(p) if last.get(&f.author) == Some(&p) => BundlePrev::Previous,
                Some(p) => BundlePrev::Hash(p),
            };
            last.insert(f.author, envelope_hash(&c.envelope));
            entries.push(WireEntry {
                signature: Signature::from_bytes(env.signature()),
                author: self.author(&f.author),
                control: self.heads(&f.control_heads),
                access: self.heads(&f.access_heads),
                prev,
            });
        }
        Some(WireBundle {
            dossier: b.dossier,
            sealed: b.sealed.clone(),
            entries,
        })
    }
}

/// Rebuilds a frame's envelopes, counting the bytes rebuilt.
pub(crate) struct Expander {
    table: Table,
    rebuilt: usize,
    last: LastSent,
}

impl Expander {
    /// An expander for a frame's `table`; refuses head lists no envelope may name.
    pub(crate) fn new(table: Table) -> Result<Self, SyncError> {
        if table.heads.iter().any(|h| check_heads(h).is_err()) {
            return Err(SyncError::Malformed);
        }
        Ok(Self {
            table,
            rebuilt: 0,
            last: LastSent::default(),
        })
    }

    /// Replaces `change.envelope` (compact form) by the format 1 wire form.
    pub(crate) fn expand(
        &mut self,
        kind: Kind,
        doc: &DocId,
        change: &mut SignedChange,
    ) -> Result<(), SyncError> {
        let compact: Compact = match postcard::take_from_bytes(&change.envelope) {
            Ok((c, [])) => c,
            _ => return Err(SyncError::Malformed),
        };
        let wire = expand_one(&self.table, &self.last, kind, doc, &change.change, &compact)?;
        self.last.record(doc, &compact, &wire);
        self.rebuilt += wire.len();
        if self.rebuilt > MAX_SYNC_MESSAGE {
            return Err(SyncError::OverLimit("rebuilt envelope bytes"));
        }
        change.envelope = wire;
        Ok(())
    }
}

impl Expander {
    /// A received bundle with its table references resolved (refused whole if one
    /// is out of range). Its envelopes count against the frame's rebuilt bytes as
    /// single changes' do (a reference of a few bytes can name two lists of 64
    /// heads).
    pub(crate) fn pending(&mut self, w: WireBundle) -> Result<PendingBundle, SyncError> {
        let region = self.table.region.ok_or(SyncError::Malformed)?;
        for e in &w.entries {
            let lists = [e.control, e.access]
                .iter()
                .map(|i| self.table.heads.get(*i as usize).map_or(0, Vec::len))
                .sum::<usize>();
            // Signature, ids, hashes and `prev` (≈230 bytes), and 32 per head.
            self.rebuilt += 256 + 32 * lists;
        }
        if self.rebuilt > MAX_SYNC_MESSAGE {
            return Err(SyncError::OverLimit("rebuilt envelope bytes"));
        }
        let heads = |i: u32| {
            self.table
                .heads
                .get(i as usize)
                .cloned()
                .ok_or(SyncError::Malformed)
        };
        let entries = w
            .entries
            .into_iter()
            .map(|e| {
                Ok(PendingEntry {
                    region,
                    author: *self
                        .table
                        .authors
                        .get(e.author as usize)
                        .ok_or(SyncError::Malformed)?,
                    control_heads: heads(e.control)?,
                    access_heads: heads(e.access)?,
                    signature: e.signature.to_bytes(),
                    prev: e.prev,
                })
            })
            .collect::<Result<Vec<_>, SyncError>>()?;
        Ok(PendingBundle {
            dossier: w.dossier,
            sealed: w.sealed,
            entries,
        })
    }
}

fn expand_one(
    table: &Table,
    last: &LastSent,
    kind: Kind,
    doc: &DocId,
    change: &[u8],
    compact: &Compact,
) -> Result<Vec<u8>, SyncError> {
    let author = |i: &u32| table.authors.get(*i as usize).ok_or(SyncError::Malformed);
    let heads = |i: &u32| table.heads.get(*i as usize).ok_or(SyncError::Malformed);
    let region = || table.region.ok_or(SyncError::Malformed);
    match (kind, compact) {
        (_, Compact::Full(wire)) => Ok(wire.clone()),
        (
            Kind::Plain,
            Compact::Plain {
                signature,
                author: a,
                control,
            },
        ) => {
            let fields = SignedFields {
                region: region()?,
                doc: *doc,
                change_hash: crate::change_chunk::change_hash(change)
                    .map_err(|_| SyncError::Malformed)?,
                author: *author(a)?,
                control_heads: heads(control)?.clone(),
            };
            Ok(wire(fields, signature))
        }
        (
            Kind::Sealed,
            Compact::Sealed {
                signature,
                change_hash,
                author: a,
                control,
                access,
                prev,
            },
        ) => {
            let fields = SealedFields {
                prev: last.resolve(doc, *a, prev)?,
                region: region()?,
                dossier: *doc,
                change_hash: *change_hash,
                sealed_hash: sealed_hash(change),
                author: *author(a)?,
                control_heads: heads(control)?.clone(),
                access_heads: heads(access)?.clone(),
            };
            Ok(wire(fields, signature))
        }
        // A plain envelope in a dossier message or the reverse.
        _ => Err(SyncError::Malformed),
    }
}

fn wire<F: EnvelopeFields>(fields: F, signature: &Signature) -> Vec<u8> {
    crate::envelope::Envelope::from_parts(fields, signature.to_bytes()).encode()
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ROOT};

    use super::*;
    use crate::envelope::sealed::CHAINED_FORMAT;
    use crate::identity::NodeSecret;
    use crate::sync::{DocMessage, DossierMessage, FrameFormat, Request, Response};

    /// `n` real changes by `by` with their signed plain envelopes, and the same
    /// changes as "sealed" bytes (any bytes do for the wire) with sealed envelopes.
    fn signed(by: &NodeSecret, doc: DocId, n: usize) -> (Vec<SignedChange>, Vec<SignedChange>) {
        let region = RegionId(OpHash([7; 32]));
        let heads = vec![OpHash([1; 32]), OpHash([2; 32])];
        let mut am = Automerge::new();
        am.set_actor(by.node_id().actor_id());
        let (mut plain, mut sealed) = (Vec::new(), Vec::new());
        for i in 0..n {
            let mut tx = am.transaction();
            tx.put(ROOT, "veld", i as i64).unwrap();
            tx.commit();
            let c = am.get_last_local_change().unwrap();
            let env = ChangeEnvelope::sign(
                SignedFields {
                    region,
                    doc,
                    change_hash: c.hash().0,
                    author: by.node_id(),
                    control_heads: heads.clone(),
                },
                by.signing_key(),
            )
            .unwrap();
            plain.push(SignedChange {
                change: c.raw_bytes().to_vec(),
                envelope: env.encode(),
            });
            // Any bytes do for the wire, but not those of a change sealed in format
            // 2 (first byte 2), which compact frames (for `/3` peers) leave out.
            let mut bytes = vec![i as u8; 100];
            bytes[0] = 1;
            // A chain: each names the one before (format 2), but the first.
            let prev = sealed
                .last()
                .map(|p: &SignedChange| envelope_hash(&p.envelope));
            let env = SealedEnvelope::sign(
                SealedFields {
                    region,
                    dossier: doc,
                    change_hash: c.hash().0,
                    sealed_hash: sealed_hash(&bytes),
                    author: by.node_id(),
                    control_heads: heads.clone(),
                    access_heads: vec![OpHash([3; 32])],
                    prev,
                },
                by.signing_key(),
            )
            .unwrap();
            sealed.push(SignedChange {
                change: bytes,
                envelope: env.encode(),
            });
        }
        (plain, sealed)
    }

    fn messages(n: usize) -> (Request, Response) {
        let (a, b) = (
            NodeSecret::generate().unwrap(),
            NodeSecret::generate().unwrap(),
        );
        let doc = DocId::from_bytes([9; 16]);
        let (mut plain, mut sealed) = signed(&a, doc, n);
        let (p2, s2) = signed(&b, doc, n);
        plain.extend(p2);
        sealed.extend(s2);
        // Something no honest node stores: travels whole, comes back the same.
        sealed.push(SignedChange {
            change: vec![1, 2, 3],
            envelope: vec![1, 0, 0],
        });
        let req = Request::Docs {
            docs: vec![DocMessage {
                doc,
                sync: vec![],
                changes: plain,
                need: vec![],
            }],
        };
        let resp = Response::Dossiers {
            dossiers: vec![DossierMessage {
                dossier: doc,
                have: vec![],
                ops: vec![],
                changes: sealed,
                withheld: false,
            }],
        };
        (req, resp)
    }

    #[test]
    fn compact_frames_decode_to_the_same_envelopes_and_are_smaller() {
        let (req, resp) = messages(20);
        let (full, compact) = (req.encode(), req.encode_as(FrameFormat::Compact));
        assert_eq!(FrameFormat::of(&compact), Some(FrameFormat::Compact));
        assert_eq!(Request::decode(&compact).unwrap(), req);
        // 40 plain envelopes: each loses region, document, change hash, author and
        // heads (about 150 bytes).
        assert!(
            compact.len() + 40 * 120 < full.len(),
            "{} vs {}",
            compact.len(),
            full.len()
        );
        // The full form as it would be with every change (a full frame leaves out
        // the chained ones, below).
        let full = [
            &[crate::sync::SYNC_FORMAT][..],
            &postcard::to_allocvec(&resp).unwrap(),
        ]
        .concat();
        let compact = resp.encode_as(FrameFormat::Compact);
        assert_eq!(Response::decode(&compact).unwrap(), resp);
        // The chains' links travel as "the previous one".
        let Response::Dossiers { dossiers } = &resp else {
            unreachable!()
        };
        assert!(dossiers[0].changes[1].envelope[0] == CHAINED_FORMAT);
        // A full frame, for a peer of an older version, carries only the changes
        // whose envelopes it reads: each author's first (unchained) one, and the
        // format 1 junk.
        assert_eq!(resp.left_out(FrameFormat::Full), 38);
        let Response::Dossiers { dossiers: old } = Response::decode(&resp.encode()).unwrap() else {
            unreachable!()
        };
        assert_eq!(old[0].changes.len(), 3);
        assert!(old[0].changes.iter().all(|c| c.envelope[0] == 1));
        assert!(
            compact.len() + 40 * 120 < full.len(),
            "{} vs {}",
            compact.len(),
            full.len()
        );
        // Messages without changes differ by the format byte and an empty table.
        let hello = Response::Refused {
            reason: crate::sync::Refusal::Busy,
        };
        assert_eq!(
            Response::decode(&hello.encode_as(FrameFormat::Compact)).unwrap(),
            hello
        );
    }

    /// A frame built by hand: `table`, then a `Dossiers` response whose one change
    /// carries `compact`.
    fn frame(table: &Table, change: Vec<u8>, compact: &Compact, copies: usize) -> Vec<u8> {
        let envelope = postcard::to_allocvec(compact).unwrap();
        let resp = Response::Dossiers {
            dossiers: vec![DossierMessage {
                dossier: DocId::from_bytes([9; 16]),
                have: vec![],
                ops: vec![],
                changes: vec![SignedChange { change, envelope }; copies],
                withheld: false,
            }],
        };
        let mut out = vec![crate::sync::COMPACT_FORMAT];
        out.extend(postcard::to_allocvec(table).unwrap());
        out.extend(postcard::to_allocvec(&resp).unwrap());
        out
    }

    fn sealed_ref(author: u32, control: u32, access: u32) -> Compact {
        Compact::Sealed {
            signature: Signature::from_bytes(&[5; 64]),
            change_hash: [6; 32],
            author,
            control,
            access,
            prev: Prev::None,
        }
    }

    #[test]
    fn hostile_compact_frames_are_refused_whole() {
        let table = Table {
            region: Some(RegionId(OpHash([7; 32]))),
            authors: vec![NodeSecret::generate().unwrap().node_id()],
            heads: vec![vec![OpHash([1; 32])]],
        };
        let ok = frame(&table, vec![0; 10], &sealed_ref(0, 0, 0), 1);
        assert!(Response::decode(&ok).is_ok());
        // An author or head list the table does not have.
        for bad in [
            sealed_ref(1, 0, 0),
            sealed_ref(0, 1, 0),
            sealed_ref(0, 0, 9),
        ] {
            assert_eq!(
                Response::decode(&frame(&table, vec![0; 10], &bad, 1)),
                Err(SyncError::Malformed)
            );
        }
        // "The previous one" where there is none.
        let orphan = Compact::Sealed {
            signature: Signature::from_bytes(&[5; 64]),
            change_hash: [6; 32],
            author: 0,
            control: 0,
            access: 0,
            prev: Prev::Previous,
        };
        assert_eq!(
            Response::decode(&frame(&table, vec![0; 10], &orphan, 1)),
            Err(SyncError::Malformed)
        );
        // A plain envelope in a dossier message.
        let plain = Compact::Plain {
            signature: Signature::from_bytes(&[5; 64]),
            author: 0,
            control: 0,
        };
        assert_eq!(
            Response::decode(&frame(&table, vec![0; 10], &plain, 1)),
            Err(SyncError::Malformed)
        );
        // No region for the envelopes.
        let no_region = Table {
            region: None,
            ..table.clone()
        };
        assert_eq!(
            Response::decode(&frame(&no_region, vec![0; 10], &sealed_ref(0, 0, 0), 1)),
            Err(SyncError::Malformed)
        );
        // A head list no envelope may name (unsorted; too long).
        for heads in [
            vec![OpHash([2; 32]), OpHash([1; 32])],
            (0..65u8).map(|i| OpHash([i; 32])).collect(),
        ] {
            let t = Table {
                heads: vec![heads],
                ..table.clone()
            };
            assert_eq!(
                Response::decode(&frame(&t, vec![0; 10], &sealed_ref(0, 0, 0), 1)),
                Err(SyncError::Malformed)
            );
        }
    }

    #[test]
    fn a_frame_that_would_rebuild_into_too_many_bytes_is_refused() {
        // 64 heads in both lists: each 70-byte reference rebuilds to about 4 KB, so
        // 5,000 of them (350 KB on the wire) would make 20 MB.
        let heads: Vec<OpHash> = (0..64u8).map(|i| OpHash([i; 32])).collect();
        let table = Table {
            region: Some(RegionId(OpHash([7; 32]))),
            authors: vec![NodeSecret::generate().unwrap().node_id()],
            heads: vec![heads],
        };
        let bomb = frame(&table, vec![], &sealed_ref(0, 0, 0), 5000);
        assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
        assert_eq!(
            Response::decode(&bomb),
            Err(SyncError::OverLimit("rebuilt envelope bytes"))
        );
        // The same with fewer copies is fine.
        assert!(Response::decode(&frame(&table, vec![], &sealed_ref(0, 0, 0), 100)).is_ok());
        // Bundled envelopes count alike: 5,000 entries naming the 64-head lists.
        let entry = WireEntry {
            signature: Signature::from_bytes(&[5; 64]),
            author: 0,
            control: 0,
            access: 0,
            prev: BundlePrev::Previous,
        };
        let dossier = DocId::from_bytes([9; 16]);
        let bundles = |n: usize| {
            vec![WireBundle {
                dossier,
                sealed: vec![1; 64],
                entries: vec![entry.clone(); n],
            }]
        };
        let msg = Response::Dossiers {
            dossiers: vec![DossierMessage {
                dossier,
                have: vec![],
                ops: vec![],
                changes: vec![],
                withheld: false,
            }],
        };
        let bundled = |n: usize| {
            let mut f = vec![crate::sync::BUNDLED_FORMAT];
            f.extend(postcard::to_allocvec(&table).unwrap());
            f.extend(postcard::to_allocvec(&msg).unwrap());
            f.extend(postcard::to_allocvec(&bundles(n)).unwrap());
            f
        };
        assert!(bundled(5000).len() < 1024 * 1024);
        assert_eq!(
            Response::decode_bundled(&bundled(5000)),
            Err(SyncError::OverLimit("rebuilt envelope bytes"))
        );
        assert_eq!(
            Response::decode_bundled(&bundled(100)).unwrap().1[0].len(),
            100
        );
    }

    #[test]
    fn a_plain_change_whose_hash_cannot_be_computed_is_refused() {
        let table = Table {
            region: Some(RegionId(OpHash([7; 32]))),
            authors: vec![NodeSecret::generate().unwrap().node_id()],
            heads: vec![vec![]],
        };
        let envelope = postcard::to_allocvec(&Compact::Plain {
            signature: Signature::from_bytes(&[5; 64]),
            author: 0,
            control: 0,
        })
        .unwrap();
        let req = Request::Docs {
            docs: vec![DocMessage {
                doc: DocId::from_bytes([9; 16]),
                sync: vec![],
                changes: vec![SignedChange {
                    change: b"not a change".to_vec(),
                    envelope,
                }],
                need: vec![],
            }],
        };
        let mut f = vec![crate::sync::COMPACT_FORMAT];
        f.extend(postcard::to_allocvec(&table).unwrap());
        f.extend(postcard::to_allocvec(&req).unwrap());
        assert_eq!(Request::decode(&f), Err(SyncError::Malformed));
    }
}
