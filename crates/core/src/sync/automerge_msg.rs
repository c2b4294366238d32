//! The gate in front of Automerge's sync-message decoder: a peer's
//! `sync::Message` is scanned and bounded here before Automerge parses or uses it.
//!
//! Why hand-written: automerge 0.12 exposes no validation of a sync message and keeps
//! the fields of its `BloomFilter` private, and two of them crash or exhaust the node
//! when a peer picks them: a filter with entries but zero bits per entry makes
//! `BloomFilter::contains_hash` divide by zero (`sync/bloom.rs`, `% modulo` with
//! `modulo = 8 * bits.len() = 0`), and `num_probes` sizes a `Vec::with_capacity` (up
//! to 16 GiB for `u32::MAX`). Counts of heads, needs and `have` entries are unbounded
//! too (each `have` costs a probe of every candidate change). So this module walks the
//! wire format itself (LEB128 counts and lengths, as in automerge's `sync.rs` and
//! `sync/bloom.rs`), refuses what breaks a limit with a typed [`SyncMessageError`],
//! and only then hands the bytes to `automerge::sync::Message::decode`.
//!
//! Wire form of automerge 0.12 (both versions, `0x42` and `0x43`):
//!
//! ```text
//! version byte
//! heads:  uleb count, count × 32-byte hash
//! need:   uleb count, count × 32-byte hash
//! have:   uleb count, count × { uleb n, n × 32-byte hash (last_sync),
//!                               uleb len, len bytes of Bloom filter }
//! changes: uleb count, count × { uleb len, len bytes }
//! [flags: uleb len, len bytes]
//! Bloom filter: empty, or uleb num_entries, uleb num_bits_per_entry, uleb num_probes,
//!               ceil(num_entries × num_bits_per_entry / 8) bytes of bits
//! ```
//!
//! regiosync's own messages (`opening_message`) never carry changes: changes travel
//! separately with their signed envelopes. A sync message with changes is refused.

use automerge::sync::Message;

/// Most heads a sync message may name (a document's heads are its concurrent
/// branches: a handful in practice).
pub const MAX_HEADS: usize = 1024;
/// Most hashes a sync message may `need`.
pub const MAX_NEED: usize = 4096;
/// Most `have` entries (Automerge sends at most one).
pub const MAX_HAVE: usize = 4;
/// Most `last_sync` hashes in one `have` entry.
pub const MAX_LAST_SYNC: usize = 1024;
/// Most bits per entry of a Bloom filter (Automerge uses 10).
pub const MAX_BITS_PER_ENTRY: u32 = 32;
/// Most probes per hash of a Bloom filter (Automerge uses 7).
pub const MAX_PROBES: u32 = 32;
/// Most bytes of Bloom filter bits (about 3.3 million changes at Automerge's 10 bits
/// per entry). Also keeps `8 * len` and the probe sums in automerge's `u32`
/// arithmetic from overflowing.
pub const MAX_BLOOM_BYTES: usize = 4 * 1024 * 1024;
/// Most bytes of the trailing flags section (Automerge writes 3).
pub const MAX_FLAG_BYTES: usize = 16;

const VERSION_1: u8 = 0x42;
const VERSION_2: u8 = 0x43;

/// Why a peer's Automerge sync message was refused before Automerge saw it. Each is a
/// protocol violation: no regiosync node writes such a message, so the peer runs a
/// broken or modified client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncMessageError {
    /// Larger than the sync frame limit.
    #[error(
        "the peer's Automerge sync message has {0} bytes, more than the limit of {limit} bytes",
        limit = super::MAX_SYNC_MESSAGE
    )]
    TooLarge(usize),
    /// Not a version Automerge 0.12 writes.
    #[error(
        "the peer's Automerge sync message starts with {0:#04x}, not a known message version: the peer runs an incompatible client"
    )]
    UnknownVersion(u8),
    /// Ends before a field is complete, or has bytes after its end.
    #[error("the peer's Automerge sync message is malformed ({0})")]
    Malformed(&'static str),
    /// A list longer than its limit.
    #[error("the peer's Automerge sync message has {count} {what}, more than the limit of {limit}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// How many the message claims.
        count: u64,
        /// The limit.
        limit: usize,
    },
    /// A Bloom filter with entries but no bits: crashes automerge 0.12 (division by
    /// zero in `BloomFilter::contains_hash`).
    #[error(
        "the peer's Automerge sync message has a Bloom filter with {entries} entries and no bits (this would crash Automerge): the peer is faulty or hostile"
    )]
    BloomWithoutBits {
        /// The claimed number of entries.
        entries: u32,
    },
    /// A Bloom filter whose parameters are outside what Automerge writes.
    #[error(
        "the peer's Automerge sync message has a Bloom filter with {entries} entries, {bits_per_entry} bits per entry and {probes} probes, outside the accepted shape"
    )]
    BloomShape {
        /// Claimed number of entries.
        entries: u32,
        /// Claimed bits per entry.
        bits_per_entry: u32,
        /// Claimed probes per hash.
        probes: u32,
    },
    /// A Bloom filter whose bit array is not the length its parameters give.
    #[error(
        "the peer's Automerge sync message has a Bloom filter of {found} bytes where its parameters give {expected}"
    )]
    BloomLength {
        /// Bytes the parameters give.
        expected: u64,
        /// Bytes present.
        found: usize,
    },
    /// Changes inside the sync message (regiosync sends them with envelopes instead).
    #[error(
        "the peer's Automerge sync message carries {0} changes without signatures (regiosync sends changes only with their signed envelopes)"
    )]
    CarriesChanges(u64),
    /// Passed the checks here but Automerge's own decoder refused it.
    #[error("the peer's Automerge sync message does not decode: {0}")]
    Automerge(#[source] automerge::sync::ReadMessageError),
}

/// Decodes an Automerge sync message from a peer after checking its shape and bounds
/// (see the module docs). The only way node code turns peer bytes into a
/// `sync::Message`; what it returns is safe to pass to
/// [`changes_they_lack`](super::changes_they_lack) and [`missing`](super::missing).
pub fn decode_sync_message(bytes: &[u8]) -> Result<Message, SyncMessageError> {
    check_sync_message(bytes)?;
    Message::decode(bytes).map_err(SyncMessageError::Automerge)
}

/// The shape and bounds checks of [`decode_sync_message`], without decoding.
pub fn check_sync_message(bytes: &[u8]) -> Result<(), SyncMessageError> {
    if bytes.len() > super::MAX_SYNC_MESSAGE {
        return Err(SyncMessageError::TooLarge(bytes.len()));
    }
    let mut r = Reader { rest: bytes };
    let version = r.byte("version")?;
    if version != VERSION_1 && version != VERSION_2 {
        return Err(SyncMessageError::UnknownVersion(version));
    }
    r.hashes("heads", MAX_HEADS)?;
    r.hashes("needed hashes", MAX_NEED)?;
    let haves = r.count("have entries", MAX_HAVE)?;
    for _ in 0..haves {
        r.hashes("last-sync hashes", MAX_LAST_SYNC)?;
        let len = r.uleb("Bloom filter length")?;
        check_bloom(r.take(len, "Bloom filter")?)?;
    }
    let changes = r.uleb("change count")?;
    if changes != 0 {
        return Err(SyncMessageError::CarriesChanges(changes));
    }
    if !r.rest.is_empty() {
        let len = r.uleb("flags length")?;
        if len > MAX_FLAG_BYTES as u64 {
            return Err(SyncMessageError::TooMany {
                what: "flag bytes",
                count: len,
                limit: MAX_FLAG_BYTES,
            });
        }
        r.take(len, "flags")?;
    }
    if !r.rest.is_empty() {
        return Err(SyncMessageError::Malformed("bytes after the end"));
    }
    Ok(())
}

/// The fuzz target `automerge_sync_msg` and its corpus replay (`cargo test`): bytes
/// through [`decode_sync_message`], and what passes through
/// [`changes_they_lack`](super::changes_they_lack) and [`missing`](super::missing)
/// of a small document with concurrent histories. Panics are the finding.
#[doc(hidden)]
pub fn fuzz_sync_message(bytes: &[u8]) {
    static DOC: std::sync::OnceLock<automerge::Automerge> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        use automerge::transaction::Transactable;
        let mut doc = automerge::Automerge::new();
        for actor in 1..=3u8 {
            // Concurrent branches: each actor starts from the empty document.
            let mut fork =
                automerge::Automerge::new().with_actor(automerge::ActorId::from(&[actor; 16][..]));
            for i in 0..10i64 {
                let mut tx = fork.transaction();
                let _ = tx.put(automerge::ROOT, format!("k{i}"), i);
                tx.commit();
            }
            let _ = doc.merge(&mut fork);
        }
        doc
    });
    if let Ok(msg) = decode_sync_message(bytes) {
        let _ = super::changes_they_lack(doc, &msg);
        let _ = super::missing(doc, &msg.heads);
    }
}

/// Checks one encoded Bloom filter (`BloomFilter::to_bytes`): empty (no entries), or
/// entries with at least one bit each, a sane probe count, and exactly the bits its
/// parameters give (Automerge writes exactly these; it would ignore extra bytes).
fn check_bloom(bytes: &[u8]) -> Result<(), SyncMessageError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut r = Reader { rest: bytes };
    let entries = r.uleb_u32("Bloom filter entries")?;
    let bits_per_entry = r.uleb_u32("Bloom filter bits per entry")?;
    let probes = r.uleb_u32("Bloom filter probes")?;
    if entries == 0 {
        // Automerge writes an empty filter as no bytes at all.
        return Err(SyncMessageError::Malformed(
            "a Bloom filter with no entries but a body",
        ));
    }
    if bits_per_entry == 0 {
        return Err(SyncMessageError::BloomWithoutBits { entries });
    }
    if bits_per_entry > MAX_BITS_PER_ENTRY || probes == 0 || probes > MAX_PROBES {
        return Err(SyncMessageError::BloomShape {
            entries,
            bits_per_entry,
            probes,
        });
    }
    // automerge's `bits_capacity`: ceil(entries × bits_per_entry / 8), here exact in
    // integers (both factors fit in u32, so the product fits in u64).
    let expected = (u64::from(entries) * u64::from(bits_per_entry)).div_ceil(8);
    if expected > MAX_BLOOM_BYTES as u64 {
        return Err(SyncMessageError::TooMany {
            what: "bytes of Bloom filter bits",
            count: expected,
            limit: MAX_BLOOM_BYTES,
        });
    }
    if r.rest.len() as u64 != expected {
        return Err(SyncMessageError::BloomLength {
            expected,
            found: r.rest.len(),
        });
    }
    Ok(())
}

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &'static str) -> Result<u8, SyncMessageError> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or(SyncMessageError::Malformed(what))?;
        self.rest = rest;
        Ok(b)
    }

    /// An unsigned LEB128 number, refused where automerge's `leb128_u64` refuses it
    /// (more than 64 bits, or a redundant trailing zero byte).
    fn uleb(&mut self, what: &'static str) -> Result<u64, SyncMessageError> {
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let b = self.byte(what)?;
            let low = u64::from(b & 0x7f);
            if i == 9 && low > 1 {
                return Err(SyncMessageError::Malformed(what));
            }
            value |= low << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(SyncMessageError::Malformed(what));
                }
                return Ok(value);
            }
        }
        Err(SyncMessageError::Malformed(what))
    }

    fn uleb_u32(&mut self, what: &'static str) -> Result<u32, SyncMessageError> {
        u32::try_from(self.uleb(what)?).map_err(|_| SyncMessageError::Malformed(what))
    }

    fn count(&mut self, what: &'static str, limit: usize) -> Result<u64, SyncMessageError> {
        let count = self.uleb(what)?;
        if count > limit as u64 {
            return Err(SyncMessageError::TooMany { what, count, limit });
        }
        Ok(count)
    }

    fn take(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], SyncMessageError> {
        let len = usize::try_from(len).map_err(|_| SyncMessageError::Malformed(what))?;
        if len > self.rest.len() {
            return Err(SyncMessageError::Malformed(what));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    /// A counted list of 32-byte hashes.
    fn hashes(&mut self, what: &'static str, limit: usize) -> Result<(), SyncMessageError> {
        let n = self.count(what, limit)?;
        self.take(n * 32, what)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
