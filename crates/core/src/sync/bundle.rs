//! Bundles: the sealed changes of one dossier that a reader sends another reader in
//! one sync message, as one sealed, compressed plaintext instead of one sealed blob
//! each (frame format 3, spoken on `/regiosync/sync/4`; docs/PROTOCOL.md, "Bundles").
//!
//! A sealed change is ≈45 bytes of sealing around a raw Automerge change that does
//! not compress on its own (≈240 bytes for a contact note); the changes of a dossier
//! together deflate to about a quarter. Only a reader can do this, and only for a
//! reader: the sender opens the changes, the receiver seals each one again and must
//! get the bytes its author signed. So only changes sealed with a synthetic nonce
//! (seal format 2, [`crate::seal::seal_change_rebuildable`]) go into a bundle, each
//! under an epoch whose key the receiving device holds; the receiver rebuilds the
//! sealed bytes, then each envelope (its signature, author, head lists and previous
//! envelope travel beside the bundle), and checks everything as if the changes had
//! come one by one. A bundle adds no trust: a change whose rebuilt bytes differ from
//! what its author signed fails its signature check like any forgery.
//!
//! Hostile input: a bundle that does not open, inflates beyond what is left of
//! its frame's budget (the bundles of one frame together at most
//! [`MAX_BUNDLE_PLAIN`]: never more than the frame could have carried as single
//! changes), holds another number of changes than it has envelopes, or
//! names an epoch the receiver holds no key of is refused whole ([`BundleError`]).
//!
//! ```
//! use automerge::{Automerge, ROOT, transaction::Transactable};
//! use regiosync_core::sync::bundle::{bundle_plaintext, unbundle_plaintext};
//!
//! let mut doc = Automerge::new();
//! for note in ["Huisbezoek", "Gesprek met mentor"] {
//!     let mut tx = doc.transaction();
//!     tx.put(ROOT, "notitie", note)?;
//!     tx.commit();
//! }
//! let raw: Vec<Vec<u8>> = doc.get_changes(&[]).iter().map(|c| c.raw_bytes().to_vec()).collect();
//! // The second change depends on the first: its 32-byte hash travels as "change 0".
//! let plain = bundle_plaintext(&[(0, &raw[0][..]), (0, &raw[1][..])]);
//! let back = unbundle_plaintext(&plain, &mut (1 << 20))?;
//! assert_eq!(back, vec![(0, raw[0].clone()), (0, raw[1].clone())]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::io::{Read, Write};

use zeroize::{Zeroize, Zeroizing};

use super::message::{MAX_SYNC_MESSAGE, SignedChange};
use crate::change_chunk::{change_hash, join_deps, split_deps};
use crate::control::{OpHash, RegionId};
use crate::envelope::Envelope;
use crate::envelope::sealed::{SealedEnvelope, SealedFields, envelope_hash, sealed_hash};
use crate::id::{DocId, NodeId};
use crate::seal::{
    KeyRing, REBUILDABLE_SEAL_FORMAT, SealError, is_rebuildable, seal_bundle,
    seal_change_rebuildable, sealed_epoch, sealed_format,
};

/// Most plaintext the bundles of one frame may inflate to together (the frame
/// limit: bundled changes never add up to more than the frame could have carried as
/// single changes).
pub const MAX_BUNDLE_PLAIN: usize = MAX_SYNC_MESSAGE;
/// Fewest changes worth a bundle (one change gains nothing from it).
pub const MIN_BUNDLED: usize = 2;

/// Why a received bundle was refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleError {
    /// The bundle, or a change in it, could not be sealed or opened (altered, or
    /// sealed under an epoch whose key this device does not hold).
    #[error("bundle: {0}")]
    Seal(#[from] SealError),
    /// The plaintext is not a list of changes.
    #[error("bundle: malformed ({0})")]
    Malformed(&'static str),
    /// The plaintext inflates beyond what is left of the frame's budget.
    #[error("bundles inflate beyond {MAX_BUNDLE_PLAIN} bytes per message")]
    TooLarge,
    /// Another number of changes than envelopes.
    #[error("bundle holds {changes} changes for {envelopes} envelopes")]
    Count {
        /// Changes in the plaintext.
        changes: usize,
        /// Envelopes beside it.
        envelopes: usize,
    },
}

/// A bundle to send: built by the sender from changes it holds
/// ([`OutBundle::build`]), encoded by `Request::encode_bundled` /
/// `Response::encode_bundled`.
#[derive(Clone, Debug)]
pub struct OutBundle {
    /// The dossier.
    pub dossier: DocId,
    /// The sealed, compressed plaintext ([`crate::seal::seal_bundle`]).
    pub sealed: Vec<u8>,
    /// The changes it carries, in its order (their envelopes travel beside it).
    pub changes: Vec<SignedChange>,
}

/// How the previous envelope of a bundled chained envelope travels.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum BundlePrev {
    /// None (a first change: never bundled by this build, accepted for symmetry).
    None,
    /// The envelope of the last earlier change of the same author in this bundle.
    Previous,
    /// Another envelope, by its hash.
    Hash([u8; 32]),
}

/// One bundled change's envelope with its table references resolved: everything but
/// the two hashes the receiver computes from the rebuilt change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    pub(crate) region: RegionId,
    pub(crate) author: NodeId,
    pub(crate) control_heads: Vec<OpHash>,
    pub(crate) access_heads: Vec<OpHash>,
    pub(crate) signature: [u8; 64],
    pub(crate) prev: BundlePrev,
}

/// A received bundle, decoded from its frame but not yet opened: the receiver opens
/// it ([`Self::open`]) once the access-log ops of the same message are stored,
/// since they may hold its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingBundle {
    /// The dossier.
    pub dossier: DocId,
    pub(crate) sealed: Vec<u8>,
    pub(crate) entries: Vec<PendingEntry>,
}

/// A change in a bundle's plaintext.
#[derive(serde::Serialize, serde::Deserialize)]
enum Packed {
    /// The raw change as it is (one whose dependencies could not be split off).
    Raw(Vec<u8>),
    /// The raw change without its dependency hashes ([`split_deps`]), each given as
    /// the place of an earlier change of the bundle or as the hash.
    Split { deps: Vec<Dep>, rest: Vec<u8> },
}

/// A dependency of a packed change.
#[derive(serde::Serialize, serde::Deserialize)]
enum Dep {
    /// The change at this place in the bundle (an earlier one).
    Earlier(u32),
    /// A change outside the bundle.
    Hash([u8; 32]),
}

impl Packed {
    fn wipe(&mut self) {
        match self {
            Packed::Raw(v) | Packed::Split { rest: v, .. } => v.zeroize(),
        }
    }
}

/// A bundle's plaintext: `postcard(Vec<(epoch, Packed)>)`, deflated. A change's
/// dependency on an earlier change of the bundle travels as that change's place
/// (a dossier's changes mostly depend on the one before: 32 bytes each that do not
/// compress), if the change comes back byte for byte from the parts.
pub fn bundle_plaintext(changes: &[(u32, &[u8])]) -> Zeroizing<Vec<u8>> {
    let mut places: HashMap<[u8; 32], u32> = HashMap::new();
    let mut list: Vec<(u32, Packed)> = Vec::with_capacity(changes.len());
    for (i, (epoch, raw)) in changes.iter().enumerate() {
        let packed = match split_deps(raw) {
            Some(s) if join_deps(&s.deps, &s.rest) == *raw => Packed::Split {
                deps: s
                    .deps
                    .iter()
                    .map(|d| places.get(d).map_or(Dep::Hash(*d), |i| Dep::Earlier(*i)))
                    .collect(),
                rest: s.rest,
            },
            _ => Packed::Raw(raw.to_vec()),
        };
        if let Ok(h) = change_hash(raw) {
            places.insert(h, i as u32);
        }
        list.push((*epoch, packed));
    }
    let encoded = Zeroizing::new(postcard::to_allocvec(&list).unwrap_or_default());
    list.iter_mut().for_each(|(_, p)| p.wipe());
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = z.write_all(&encoded);
    Zeroizing::new(z.finish().unwrap_or_default())
}

/// The packed changes of a bundle's plaintext, inflated to at most `budget` bytes.
fn inflate(plain: &[u8], budget: usize) -> Result<(Vec<(u32, Packed)>, usize), BundleError> {
    let mut list = Zeroizing::new(Vec::new());
    flate2::read::DeflateDecoder::new(plain)
        .take(budget as u64 + 1)
        .read_to_end(&mut list)
        .map_err(|_| BundleError::Malformed("not deflated"))?;
    if list.len() > budget {
        return Err(BundleError::TooLarge);
    }
    match postcard::take_from_bytes(&list) {
        Ok((changes, [])) => Ok((changes, list.len())),
        _ => Err(BundleError::Malformed("not a list of changes")),
    }
}

/// The raw changes of packed ones, with their hashes, at most `budget` bytes of
/// them (a place given for a dependency turns two bytes into 32).
fn unpack(
    packed: Vec<(u32, Packed)>,
    budget: usize,
) -> Result<(Vec<RawChange>, usize), BundleError> {
    let mut out: Vec<RawChange> = Vec::with_capacity(packed.len());
    let mut total = 0usize;
    for (epoch, p) in packed {
        let size = match &p {
            Packed::Raw(v) => v.len(),
            Packed::Split { deps, rest } => 16 + 32 * deps.len() + rest.len(),
        };
        total = total.saturating_add(size);
        if total > budget {
            return Err(BundleError::TooLarge);
        }
        let raw = match p {
            Packed::Raw(v) => Zeroizing::new(v),
            Packed::Split { deps, rest } => {
                let rest = Zeroizing::new(rest);
                let deps = deps
                    .iter()
                    .map(|d| match d {
                        Dep::Earlier(i) => out
                            .get(*i as usize)
                            .map(|c| c.hash)
                            .ok_or(BundleError::Malformed("a dependency on a later change")),
                        Dep::Hash(h) => Ok(*h),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Zeroizing::new(join_deps(&deps, &rest))
            }
        };
        let hash =
            change_hash(&raw).map_err(|_| BundleError::Malformed("not an Automerge change"))?;
        out.push(RawChange { epoch, raw, hash });
    }
    Ok((out, total))
}

/// A change taken out of a bundle: its epoch, raw bytes and Automerge hash.
struct RawChange {
    epoch: u32,
    raw: Zeroizing<Vec<u8>>,
    hash: [u8; 32],
}

/// The changes of a bundle's plaintext with their epochs, inflated and unpacked to
/// at most `budget` bytes (which is reduced by what they took).
pub fn unbundle_plaintext(
    plain: &[u8],
    budget: &mut usize,
) -> Result<Vec<(u32, Vec<u8>)>, BundleError> {
    let (packed, inflated) = inflate(plain, *budget)?;
    let (changes, total) = unpack(packed, *budget)?;
    *budget -= inflated.max(total);
    Ok(changes
        .into_iter()
        .map(|c| (c.epoch, c.raw.to_vec()))
        .collect())
}

impl OutBundle {
    /// Splits `changes` (sealed changes of `dossier` that the receiver lacks) into a
    /// bundle and the changes that travel on their own. A change goes into the
    /// bundle if it is sealed in format 2 under an epoch `ring` holds and for which
    /// `receiver_reads` holds, its chained envelope (format 2) decodes and is
    /// canonical, and sealing it again gives its sealed bytes (what the receiver
    /// will do). No bundle when fewer than [`MIN_BUNDLED`] qualify.
    pub fn build(
        ring: &KeyRing,
        dossier: DocId,
        changes: Vec<SignedChange>,
        receiver_reads: impl Fn(u32) -> bool,
    ) -> (Option<OutBundle>, Vec<SignedChange>) {
        let mut plain: Vec<(u32, Zeroizing<Vec<u8>>)> = Vec::new();
        let (mut bundled, mut single) = (Vec::new(), Vec::new());
        for c in changes {
            match bundleable(ring, &dossier, &c, &receiver_reads) {
                Some(p) => {
                    plain.push(p);
                    bundled.push(c);
                }
                None => single.push(c),
            }
        }
        if bundled.len() < MIN_BUNDLED {
            single.extend(bundled);
            return (None, single);
        }
        let Some(epoch) = plain.iter().map(|(e, _)| *e).max() else {
            return (None, single);
        };
        let list: Vec<(u32, &[u8])> = plain.iter().map(|(e, p)| (*e, &p[..])).collect();
        let sealed = ring
            .get(epoch)
            .ok_or(SealError::NoKeyForEpoch(epoch))
            .and_then(|key| seal_bundle(key, &dossier, epoch, &bundle_plaintext(&list)));
        match sealed {
            Ok(sealed) => (
                Some(OutBundle {
                    dossier,
                    sealed,
                    changes: bundled,
                }),
                single,
            ),
            Err(_) => {
                single.extend(bundled);
                (None, single)
            }
        }
    }
}

/// The epoch and plaintext of `c` if it may go into a bundle (see [`OutBundle::build`]).
fn bundleable(
    ring: &KeyRing,
    dossier: &DocId,
    c: &SignedChange,
    receiver_reads: &impl Fn(u32) -> bool,
) -> Option<(u32, Zeroizing<Vec<u8>>)> {
    if sealed_format(&c.change) != Some(REBUILDABLE_SEAL_FORMAT) {
        return None;
    }
    let epoch = sealed_epoch(&c.change).ok()?;
    let key = ring.get(epoch)?;
    if !receiver_reads(epoch) {
        return None;
    }
    let env = SealedEnvelope::decode(&c.envelope).ok()?;
    let f = env.fields();
    if f.dossier != *dossier || f.prev.is_none() || env.encode() != c.envelope {
        return None;
    }
    let plain = ring.unseal(&f.change_hash, &c.change).ok()?;
    is_rebuildable(key, dossier, &f.change_hash, &c.change, &plain).then_some((epoch, plain))
}

impl PendingBundle {
    /// The number of changes the bundle says it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Opens the bundle with the dossier's keys and rebuilds each change as it
    /// would have travelled alone: its sealed bytes (sealed again, format 2) and its
    /// envelope's wire form. Nothing is verified here: the changes go through the
    /// same checks as changes that came one by one. `budget` is what the frame's
    /// bundles may still inflate to (start at [`MAX_BUNDLE_PLAIN`] per frame).
    pub fn open(
        &self,
        ring: &KeyRing,
        budget: &mut usize,
    ) -> Result<Vec<SignedChange>, BundleError> {
        self.unbundle(ring, budget)?.rebuild(ring)
    }

    /// The first half of [`Self::open`]: the bundle opened, inflated and its
    /// changes unpacked (cheap; a frame's bundles share one budget, so they are
    /// taken in order).
    pub fn unbundle(
        &self,
        ring: &KeyRing,
        budget: &mut usize,
    ) -> Result<Unbundled<'_>, BundleError> {
        let plain = ring.open_bundle(&self.sealed)?;
        let (packed, inflated) = inflate(&plain, *budget)?;
        if packed.len() != self.entries.len() {
            return Err(BundleError::Count {
                changes: packed.len(),
                envelopes: self.entries.len(),
            });
        }
        let (changes, total) = unpack(packed, *budget)?;
        *budget -= inflated.max(total);
        Ok(Unbundled {
            bundle: self,
            changes,
        })
    }
}

/// A bundle's changes in plaintext, with the envelopes that travelled beside them.
pub struct Unbundled<'a> {
    bundle: &'a PendingBundle,
    changes: Vec<RawChange>,
}

impl Unbundled<'_> {
    /// The second half of [`PendingBundle::open`]: each change sealed again and its
    /// envelope rebuilt (the costly half: may run on any thread).
    pub fn rebuild(&self, ring: &KeyRing) -> Result<Vec<SignedChange>, BundleError> {
        let b = self.bundle;
        let mut last: HashMap<NodeId, [u8; 32]> = HashMap::new();
        let mut out = Vec::with_capacity(self.changes.len());
        for (c, e) in self.changes.iter().zip(&b.entries) {
            let (epoch, change_hash) = (c.epoch, c.hash);
            let key = ring.get(epoch).ok_or(SealError::NoKeyForEpoch(epoch))?;
            let sealed = seal_change_rebuildable(key, &b.dossier, epoch, &change_hash, &c.raw)?;
            let prev = match &e.prev {
                BundlePrev::None => None,
                BundlePrev::Previous => Some(
                    *last
                        .get(&e.author)
                        .ok_or(BundleError::Malformed("no earlier change of that author"))?,
                ),
                BundlePrev::Hash(h) => Some(*h),
            };
            let fields = SealedFields {
                prev,
                region: e.region,
                dossier: b.dossier,
                change_hash,
                sealed_hash: sealed_hash(&sealed),
                author: e.author,
                control_heads: e.control_heads.clone(),
                access_heads: e.access_heads.clone(),
            };
            let envelope = Envelope::from_parts(fields, e.signature).encode();
            last.insert(e.author, envelope_hash(&envelope));
            out.push(SignedChange {
                change: sealed,
                envelope,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
