//! The summary of a shared document set: how two peers learn, in one round trip and
//! a few hundred bytes, whether any shared document differs, and narrow it down
//! (hash buckets, as range-based set reconciliation does) when one does.
//!
//! - The **document digest** is the first 8 bytes of
//!   `SHA-256("regiosync/doc-digest/1\0" || doc id || sorted heads)`. For a sealed
//!   dossier the "heads" are the hashes of every access-log op and sealed change held
//!   (an erased dossier: its `Open` and `Erase` ops), since a relay cannot read the
//!   changes' dependencies.
//! - The **total** is `SHA-256` over the sorted (doc id, document digest) pairs, with the
//!   count: equal totals mean equal sets (up to SHA-256 collisions).
//! - The **buckets**: 256 digests, one per first byte of the doc id, each over the
//!   documents in it. Only differing buckets are listed per document.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id::DocId;

/// Number of buckets (one per first byte of a document id).
pub const BUCKETS: usize = 256;

/// A document's heads, as the summary sees them.
pub type Heads = Vec<[u8; 32]>;

/// The digest of one document's heads.
pub fn doc_digest(doc: &DocId, heads: &[[u8; 32]]) -> [u8; 8] {
    let mut sorted: Vec<&[u8; 32]> = heads.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    h.update(b"regiosync/doc-digest/1\0");
    h.update(doc.as_bytes());
    for head in sorted {
        h.update(head);
    }
    let full: [u8; 32] = h.finalize().into();
    let mut out = [0u8; 8];
    out.copy_from_slice(&full[..8]);
    out
}

/// The top-level summary: 36 bytes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Over every (doc id, digest) pair in order.
    pub total: [u8; 32],
    /// How many documents.
    pub count: u32,
}

/// The digests of a document set, computed once and queried at every level.
#[derive(Clone, Debug, Default)]
pub struct DigestSet {
    digests: BTreeMap<DocId, [u8; 8]>,
}

impl DigestSet {
    /// From documents and their heads.
    pub fn new<'a>(docs: impl IntoIterator<Item = (&'a DocId, &'a Heads)>) -> Self {
        Self {
            digests: docs
                .into_iter()
                .map(|(d, h)| (*d, doc_digest(d, h)))
                .collect(),
        }
    }

    /// From documents and their heads, plus documents whose digests were computed
    /// before (a store keeps those of the sealed dossiers it holds).
    pub fn with_digests<'a>(
        docs: impl IntoIterator<Item = (&'a DocId, &'a Heads)>,
        digests: impl IntoIterator<Item = (DocId, [u8; 8])>,
    ) -> Self {
        let mut set = Self::new(docs);
        set.digests.extend(digests);
        set
    }

    /// The top-level summary.
    pub fn summary(&self) -> Summary {
        let mut h = Sha256::new();
        h.update(b"regiosync/summary/1\0");
        for (d, g) in &self.digests {
            h.update(d.as_bytes());
            h.update(g);
        }
        Summary {
            total: h.finalize().into(),
            count: u32::try_from(self.digests.len()).unwrap_or(u32::MAX),
        }
    }

    /// The 256 bucket digests (2 KiB).
    pub fn buckets(&self) -> Vec<[u8; 8]> {
        let mut hashers: Vec<Sha256> = (0..BUCKETS).map(|_| Sha256::new()).collect();
        for (d, g) in &self.digests {
            let hs = &mut hashers[usize::from(d.as_bytes()[0])];
            hs.update(d.as_bytes());
            hs.update(g);
        }
        hashers
            .into_iter()
            .map(|h| {
                let full: [u8; 32] = h.finalize().into();
                let mut out = [0u8; 8];
                out.copy_from_slice(&full[..8]);
                out
            })
            .collect()
    }

    /// The buckets whose digest differs from `theirs` (all of them if `theirs` is not
    /// a list of 256).
    pub fn differing_buckets(&self, theirs: &[[u8; 8]]) -> Vec<u8> {
        let mine = self.buckets();
        (0..=255u8)
            .filter(|&b| theirs.len() != BUCKETS || mine[usize::from(b)] != theirs[usize::from(b)])
            .collect()
    }

    /// The (doc id, digest) pairs of the documents in `buckets`.
    pub fn in_buckets(&self, buckets: &[u8]) -> Vec<(DocId, [u8; 8])> {
        self.digests
            .iter()
            .filter(|(d, _)| buckets.contains(&d.as_bytes()[0]))
            .map(|(d, g)| (*d, *g))
            .collect()
    }

    /// Documents that differ between this set and `theirs` (restricted to `buckets`):
    /// different digests, or present on one side only.
    pub fn differing_docs(&self, buckets: &[u8], theirs: &[(DocId, [u8; 8])]) -> Vec<DocId> {
        let theirs: BTreeMap<DocId, [u8; 8]> = theirs.iter().copied().collect();
        let mut out: Vec<DocId> = self
            .digests
            .iter()
            .filter(|(d, _)| buckets.contains(&d.as_bytes()[0]))
            .filter(|(d, g)| theirs.get(*d) != Some(*g))
            .map(|(d, _)| *d)
            .collect();
        out.extend(theirs.keys().filter(|d| !self.digests.contains_key(*d)));
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(docs: &[(DocId, Heads)]) -> DigestSet {
        DigestSet::new(docs.iter().map(|(d, h)| (d, h)))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        /// The summary depends on the set, not the order; narrowing finds exactly the
        /// changed, added and removed documents.
        #[test]
        fn narrowing_finds_exactly_the_differences(
            n in 0usize..300, changed in prop::collection::btree_set(0usize..300, 0..20), seed in any::<u8>(),
        ) {
            let docs: Vec<(DocId, Heads)> = (0..n).map(|i| {
                let mut id = [seed; 16];
                id[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
                (DocId::from_bytes(id), vec![[i as u8; 32]])
            }).collect();
            let mut reversed = docs.clone();
            reversed.reverse();
            prop_assert_eq!(set(&docs).summary(), set(&reversed).summary());

            // The other side: some documents with new heads, one missing, one extra.
            let mut other = docs.clone();
            let mut expect = Vec::new();
            for &c in changed.iter().filter(|&&c| c < n) {
                other[c].1.push([0xFF; 32]); // a second head: always a real change
                expect.push(other[c].0);
            }
            if n > 0 && !changed.contains(&0) {
                other.remove(0);
                expect.push(docs[0].0);
            }
            let extra = DocId::from_bytes([0xEE; 16]);
            other.push((extra, vec![]));
            expect.push(extra);
            expect.sort();

            let (a, b) = (set(&docs), set(&other));
            prop_assert_ne!(a.summary(), b.summary());
            let buckets = a.differing_buckets(&b.buckets());
            let found = a.differing_docs(&buckets, &b.in_buckets(&buckets));
            prop_assert_eq!(found, expect);
            // Equal sets: nothing differs.
            prop_assert!(a.differing_buckets(&set(&docs).buckets()).is_empty());
        }
    }

    #[test]
    fn heads_order_does_not_matter_and_sizes_are_small() {
        let d = DocId::from_bytes([1; 16]);
        assert_eq!(
            doc_digest(&d, &[[1; 32], [2; 32]]),
            doc_digest(&d, &[[2; 32], [1; 32]])
        );
        assert_ne!(
            doc_digest(&d, &[[1; 32]]),
            doc_digest(&DocId::from_bytes([2; 16]), &[[1; 32]])
        );
        let s = DigestSet::default().summary();
        assert_eq!(postcard::to_allocvec(&s).unwrap().len(), 33);
    }
}
