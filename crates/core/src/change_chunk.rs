//! The gate in front of Automerge's change parser, for change bytes a peer sent
//! (plan changes in `Docs`, dossier changes after unsealing).
//!
//! An Automerge storage chunk is
//!
//! ```text
//! magic 85 6f 4a 83 | checksum (4 bytes) | chunk type (1 byte) | uleb length | data
//! ```
//!
//! with chunk type 0 = document, 1 = change, 2 = compressed change (the data is
//! deflated), 3 = bundle. `automerge::Change::from_bytes` inflates a compressed chunk
//! completely before checking anything (`storage/chunk.rs`, `read_to_end`): one
//! megabyte of deflate becomes a gigabyte in memory. regiosync never sends compressed
//! chunks: a node stores and ships `Change::raw_bytes()`, which in automerge 0.12 is
//! always the uncompressed chunk (also for large changes; compression happens only in
//! `Change::bytes()`, which regiosync does not use for the wire). So this gate
//! refuses every chunk that is not an uncompressed change, without inflating it.
//!
//! For an uncompressed change chunk the change hash is SHA-256 over
//! `type || uleb(length) || data` (automerge's `storage::chunk::hash`), so it is
//! computed here from the raw bytes, and the signed envelope can be checked against it
//! *before* the change is parsed ([`change_hash`], then
//! [`verify_signed_hash`](crate::envelope::verify_signed_hash)).
//!
//! An uncompressed change can still claim more than its size: its op columns are
//! run-length encoded, and Automerge's parser visits every op the action column
//! claims. So [`change_hash`] also walks the change's header and column layout and
//! bounds the ops ([`MAX_CHANGE_OPS`]), other actors and columns it claims.

use sha2::{Digest, Sha256};

/// Largest change accepted from a peer: a sync frame.
pub const MAX_CHANGE_BYTES: usize = crate::sync::MAX_SYNC_MESSAGE;
/// Most ops a change from a peer may claim (Automerge's parser visits each).
pub const MAX_CHANGE_OPS: u64 = 1 << 24;
/// Most other actors a change may name (each costs Automerge an allocation).
pub const MAX_OTHER_ACTORS: u64 = 1 << 16;
/// Most op columns a change may declare (Automerge writes about a dozen).
pub const MAX_COLUMNS: u64 = 256;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const TYPE_CHANGE: u8 = 1;
const TYPE_COMPRESSED: u8 = 2;

/// Why change bytes from a peer were refused before Automerge parsed them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// Larger than [`MAX_CHANGE_BYTES`].
    #[error("a change of {0} bytes exceeds the limit of {MAX_CHANGE_BYTES} bytes")]
    TooLarge(usize),
    /// Does not start like an Automerge chunk, or ends before its header does.
    #[error("the change bytes are not an Automerge chunk")]
    NotAChunk,
    /// A compressed change chunk, which regiosync nodes never send.
    #[error(
        "the change is a compressed Automerge chunk, which regiosync refuses unopened (it could inflate to gigabytes): the peer runs a modified client"
    )]
    Compressed,
    /// A document, bundle or unknown chunk where a change belongs.
    #[error("the change bytes are an Automerge chunk of type {0}, not a change")]
    NotAChange(u8),
    /// The chunk's declared length is not the length of its data.
    #[error("the change chunk declares {declared} bytes of data but has {found}")]
    LengthMismatch {
        /// The declared length.
        declared: u64,
        /// The bytes present after the header.
        found: usize,
    },
    /// The checksum in the header does not match the data.
    #[error("the change chunk's checksum does not match its data")]
    BadChecksum,
    /// The change's header or column layout does not parse.
    #[error("the change is malformed ({0})")]
    Malformed(&'static str),
    /// The change claims more of something than Automerge should be made to
    /// allocate or visit.
    #[error("the change claims {count} {what}, more than the limit of {limit}")]
    TooMany {
        /// What.
        what: &'static str,
        /// How many it claims.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// Passed the checks here but Automerge could not parse it.
    #[error("the change does not parse: {0}")]
    Parse(#[source] automerge::LoadChangeError),
    /// Automerge computed another hash than the raw bytes give (cannot happen with
    /// automerge 0.12; checked so that a future version cannot make a signature
    /// checked against one hash vouch for another change).
    #[error("the change's hash differs from the hash of its bytes")]
    HashMismatch,
}

/// The Automerge change hash of uncompressed change bytes, computed from the raw
/// chunk without parsing the change; refuses anything but one complete, uncompressed
/// change chunk with a valid checksum whose claimed ops, other actors and columns
/// are within bounds. Cheap: one pass of SHA-256 and one over the header and the
/// action column, no allocation.
pub fn change_hash(bytes: &[u8]) -> Result<[u8; 32], ChunkError> {
    if bytes.len() > MAX_CHANGE_BYTES {
        return Err(ChunkError::TooLarge(bytes.len()));
    }
    if bytes.len() < 10 || bytes[..4] != MAGIC {
        return Err(ChunkError::NotAChunk);
    }
    let checksum = &bytes[4..8];
    let chunk_type = bytes[8];
    match chunk_type {
        TYPE_CHANGE => {}
        TYPE_COMPRESSED => return Err(ChunkError::Compressed),
        other => return Err(ChunkError::NotAChange(other)),
    }
    let (declared, len_bytes) = uleb(&bytes[9..]).ok_or(ChunkError::NotAChunk)?;
    let data = &bytes[9 + len_bytes..];
    if declared != data.len() as u64 {
        return Err(ChunkError::LengthMismatch {
            declared,
            found: data.len(),
        });
    }
    // The hashed header is `type || uleb(length)`, as in the chunk itself.
    let hash: [u8; 32] = Sha256::new()
        .chain_update(&bytes[8..9 + len_bytes])
        .chain_update(data)
        .finalize()
        .into();
    if hash[..4] != *checksum {
        return Err(ChunkError::BadChecksum);
    }
    claimed_ops(data)?;
    Ok(hash)
}

/// Walks a change chunk's data far enough to bound what Automerge's parser would do
/// with it: the number of other actors and op columns it declares, and the number
/// of ops its action column claims. The parser visits one op per action-column entry
/// (`ChangeOpsIter` in automerge's `storage/change/change_op_columns.rs`), and the
/// column is run-length encoded, so a few bytes can claim billions of ops. Layout
/// (automerge's `storage/change.rs`, `parse_following_header`):
///
/// ```text
/// deps: uleb n, n × 32 bytes | actor: uleb len, bytes | seq: uleb | start_op: uleb
/// time: sleb | message: uleb len, bytes | other actors: uleb n, n × (uleb len, bytes)
/// columns: uleb n, n × (uleb spec, uleb len) | column data in that order | extra bytes
/// ```
///
/// The action column has spec `0x42` (column 4, integer); its data is runs of
/// `sleb count`: a positive count and one `uleb` value (a run), a negative count and
/// that many `uleb` values (literals), or 0 and a `uleb` count (nulls).
/// Returns the number of ops the action column claims.
fn claimed_ops(data: &[u8]) -> Result<u64, ChunkError> {
    let mut r = Cursor { rest: data };
    let deps = r.uleb("dependencies")?;
    r.skip(deps.saturating_mul(32), "dependencies")?;
    let actor = r.uleb("actor")?;
    r.skip(actor, "actor")?;
    r.uleb("sequence number")?;
    r.uleb("start op")?;
    r.sleb("time")?;
    let message = r.uleb("message")?;
    r.skip(message, "message")?;
    let others = r.uleb("other actors")?;
    if others > MAX_OTHER_ACTORS {
        return Err(ChunkError::TooMany {
            what: "other actors",
            count: others,
            limit: MAX_OTHER_ACTORS,
        });
    }
    for _ in 0..others {
        let len = r.uleb("other actors")?;
        r.skip(len, "other actors")?;
    }
    let columns = r.uleb("columns")?;
    if columns > MAX_COLUMNS {
        return Err(ChunkError::TooMany {
            what: "op columns",
            count: columns,
            limit: MAX_COLUMNS,
        });
    }
    let mut action = None;
    let mut offset: u64 = 0;
    for _ in 0..columns {
        let spec = r.uleb("column spec")?;
        let len = r.uleb("column length")?;
        // Bit 3 is deflate (Automerge refuses compressed columns in a change).
        if spec & !0b1000 == 0x42 {
            action = Some((offset, len));
        }
        offset = offset.saturating_add(len);
    }
    let Some((start, len)) = action else {
        return Ok(0);
    };
    let column = usize::try_from(start)
        .ok()
        .zip(usize::try_from(start.saturating_add(len)).ok())
        .and_then(|(a, b)| r.rest.get(a..b))
        .ok_or(ChunkError::Malformed("op columns"))?;
    let mut c = Cursor { rest: column };
    let mut ops: u64 = 0;
    while !c.rest.is_empty() {
        let count = c.sleb("action column")?;
        let claimed = if count > 0 {
            c.uleb("action column")?;
            count.unsigned_abs()
        } else if count < 0 {
            // Literals take a byte each at least: they cannot amplify; skipped below.
            count.unsigned_abs()
        } else {
            c.uleb("action column")?
        };
        ops = ops.saturating_add(claimed);
        if ops > MAX_CHANGE_OPS {
            return Err(ChunkError::TooMany {
                what: "ops",
                count: ops,
                limit: MAX_CHANGE_OPS,
            });
        }
        if count < 0 {
            for _ in 0..claimed {
                c.uleb("action column")?;
            }
        }
    }
    Ok(ops)
}

/// A cursor over a change's bytes; every read is bounds-checked.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl Cursor<'_> {
    fn uleb(&mut self, what: &'static str) -> Result<u64, ChunkError> {
        let (v, n) = uleb(self.rest).ok_or(ChunkError::Malformed(what))?;
        self.rest = &self.rest[n..];
        Ok(v)
    }

    /// A signed LEB128 `i64` (as the `leb128` crate reads it for Automerge's
    /// columns: at most 10 bytes).
    fn sleb(&mut self, what: &'static str) -> Result<i64, ChunkError> {
        let mut value: i64 = 0;
        for i in 0..10u32 {
            let (&b, rest) = self.rest.split_first().ok_or(ChunkError::Malformed(what))?;
            self.rest = rest;
            value |= i64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if 7 * (i + 1) < 64 && b & 0x40 != 0 {
                    value |= -1i64 << (7 * (i + 1));
                }
                return Ok(value);
            }
        }
        Err(ChunkError::Malformed(what))
    }

    fn skip(&mut self, n: u64, what: &'static str) -> Result<(), ChunkError> {
        let n = usize::try_from(n).map_err(|_| ChunkError::Malformed(what))?;
        self.rest = self.rest.get(n..).ok_or(ChunkError::Malformed(what))?;
        Ok(())
    }
}

/// Parses change bytes from a peer behind the gate: [`change_hash`] first, then
/// Automerge's parser, then a check that both agree on the hash. The one function
/// node code uses to turn a peer's change bytes into an `automerge::Change`.
pub fn parse_change(bytes: &[u8]) -> Result<automerge::Change, ChunkError> {
    let hash = change_hash(bytes)?;
    let change = automerge::Change::try_from(bytes).map_err(ChunkError::Parse)?;
    if change.hash().0 != hash {
        return Err(ChunkError::HashMismatch);
    }
    Ok(change)
}

/// A compressed change chunk (type 2) whose deflate data inflates to `inflated`
/// zero bytes (rounded up to whole runs of 258), about 1/1000 of that in size: what
/// a hostile peer would send as a "change" (tests and fuzz seeds only). The header's
/// checksum is zero: automerge 0.12 inflates before it checks it.
#[doc(hidden)]
pub fn compressed_bomb(inflated: usize) -> Vec<u8> {
    // One dynamic-Huffman deflate block (RFC 1951, 3.2.7) in which a match of length
    // 258 at distance 1 costs two bits: a literal 0, then the matches, then
    // end-of-block. Huffman codes go most significant bit first into a
    // least-significant-bit-first stream.
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }
    impl Bits {
        fn put(&mut self, value: u32, len: u32) {
            self.acc |= value << self.n;
            self.n += len;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        fn code(&mut self, code: u32, len: u32) {
            self.put(code.reverse_bits() >> (32 - len), len);
        }
    }
    let mut b = Bits {
        out: Vec::with_capacity(inflated / 1000 + 64),
        acc: 0,
        n: 0,
    };
    b.put(1, 1); // BFINAL
    b.put(2, 2); // BTYPE = 10, dynamic Huffman
    b.put(286 - 257, 5); // HLIT: literal/length codes 0..=285
    b.put(2 - 1, 5); // HDIST: distance codes 0 and 1
    b.put(18 - 4, 4); // HCLEN: 18 code-length code lengths
    // Code-length code: 18 -> "0", 1 -> "10", 2 -> "11" (lengths 1, 2, 2), given in
    // the order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1.
    for len in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        b.put(len, 3);
    }
    // Literal/length lengths: 0 -> 2, 256 -> 2, 285 -> 1, all else 0; then the two
    // distance lengths 1, 1. As code-length symbols: 2, 18(138), 18(117), 2,
    // 18(28), 1, 1, 1.
    let (two, eighteen, one) = ((0b11, 2), (0b0, 1), (0b10, 2));
    b.code(two.0, two.1);
    for zeros in [138, 117] {
        b.code(eighteen.0, eighteen.1);
        b.put(zeros - 11, 7);
    }
    b.code(two.0, two.1);
    b.code(eighteen.0, eighteen.1);
    b.put(28 - 11, 7);
    for _ in 0..3 {
        b.code(one.0, one.1);
    }
    // The data. Codes: 285 -> "0", literal 0 -> "10", end of block -> "11";
    // distance 0 -> "0".
    b.code(0b10, 2);
    for _ in 0..inflated.saturating_sub(1).div_ceil(258) {
        b.code(0, 1);
        b.code(0, 1);
    }
    b.code(0b11, 2);
    b.put(0, 7); // flush the last partial byte
    let data = b.out;
    let mut chunk = MAGIC.to_vec();
    chunk.extend([0, 0, 0, 0, TYPE_COMPRESSED]);
    write_uleb(&mut chunk, data.len() as u64);
    chunk.extend(data);
    chunk
}

/// A LEB128 `u64` and how many bytes it took; `None` if it runs past the input, past
/// 64 bits, or is not minimal.
/// A change chunk taken apart at its dependencies: the hashes of the changes it
/// depends on, and the rest of its data. A bundle of a dossier's changes sends a
/// dependency on an earlier change of the same bundle as that change's place
/// (`sync::bundle`): the 32 bytes of a hash do not compress, and most changes of a
/// dossier depend on the one before. [`join_deps`] puts the chunk back together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitChange {
    /// The dependency hashes, in the chunk's order.
    pub deps: Vec<[u8; 32]>,
    /// The chunk's data after the dependencies.
    pub rest: Vec<u8>,
}

/// Splits an uncompressed change chunk at its dependencies, if `raw` is one whose
/// header parses and whose length is right; `None` otherwise (the caller sends
/// such bytes as they are).
pub fn split_deps(raw: &[u8]) -> Option<SplitChange> {
    if raw.len() < 10 || raw[..4] != MAGIC || raw[8] != TYPE_CHANGE {
        return None;
    }
    let (declared, len_bytes) = uleb(&raw[9..])?;
    let data = &raw[9 + len_bytes..];
    if declared != data.len() as u64 {
        return None;
    }
    let (n, n_bytes) = uleb(data)?;
    let deps_end = usize::try_from(n)
        .ok()?
        .checked_mul(32)?
        .checked_add(n_bytes)?;
    let deps = data
        .get(n_bytes..deps_end)?
        .chunks_exact(32)
        .map(|h| {
            let mut d = [0u8; 32];
            d.copy_from_slice(h);
            d
        })
        .collect();
    Some(SplitChange {
        deps,
        rest: data[deps_end..].to_vec(),
    })
}

/// The change chunk of `deps` and `rest` (as [`split_deps`] took it apart): the
/// checksum is the first four bytes of the chunk's hash, as Automerge writes it.
pub fn join_deps(deps: &[[u8; 32]], rest: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(10 + 32 * deps.len() + rest.len());
    write_uleb(&mut data, deps.len() as u64);
    for d in deps {
        data.extend_from_slice(d);
    }
    data.extend_from_slice(rest);
    let mut header = vec![TYPE_CHANGE];
    write_uleb(&mut header, data.len() as u64);
    let hash = Sha256::new()
        .chain_update(&header)
        .chain_update(&data)
        .finalize();
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&hash[..4]);
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    out
}

/// Appends `v` as unsigned LEB128 (Automerge's lengths and counts).
pub(crate) fn write_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn uleb(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let low = u64::from(b & 0x7f);
        if i == 9 && low > 1 {
            return None;
        }
        value |= low << (7 * i);
        if b & 0x80 == 0 {
            // A redundant trailing zero byte: automerge refuses it, and the hash is
            // over the canonical encoding.
            if i > 0 && b == 0 {
                return None;
            }
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ROOT};
    use std::io::Read;

    #[test]
    fn a_change_split_at_its_dependencies_joins_back_byte_for_byte() {
        let mut a = Automerge::new();
        let mut tx = a.transaction();
        tx.put(ROOT, "naam", "Sanne").unwrap();
        tx.commit();
        let mut b = a.fork();
        for (doc, v) in [(&mut a, "a"), (&mut b, "b")] {
            let mut tx = doc.transaction();
            tx.put(ROOT, "notitie", v).unwrap();
            tx.commit();
        }
        a.merge(&mut b).unwrap();
        let mut tx = a.transaction();
        tx.put(ROOT, "samen", true).unwrap();
        tx.commit();
        let changes = a.get_changes(&[]);
        let deps: Vec<usize> = changes.iter().map(|c| c.deps().len()).collect();
        assert!(
            deps.contains(&0) && deps.contains(&1) && deps.contains(&2),
            "{deps:?}"
        );
        for c in &changes {
            let raw = c.raw_bytes();
            let split = split_deps(raw).unwrap();
            assert_eq!(split.deps.len(), c.deps().len());
            assert_eq!(join_deps(&split.deps, &split.rest), raw);
            assert_eq!(change_hash(raw).unwrap(), c.hash().0);
        }
        // Not a change chunk, or a length that does not match: not split.
        let raw = changes[0].raw_bytes();
        assert!(split_deps(&raw[..raw.len() - 1]).is_none());
        assert!(split_deps(b"not a chunk at all").is_none());
        let mut compressed = raw.to_vec();
        compressed[8] = TYPE_COMPRESSED;
        assert!(split_deps(&compressed).is_none());
    }

    fn change(text_len: usize) -> automerge::Change {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "text", "x".repeat(text_len)).unwrap();
        tx.commit();
        doc.get_changes(&[]).pop().unwrap().clone()
    }

    #[test]
    fn the_hash_of_raw_bytes_is_automerges_hash_for_small_and_large_changes() {
        for n in [0, 10, 300_000] {
            let mut c = change(n);
            // Large changes compress in `bytes()`, but `raw_bytes()` stays uncompressed.
            if n > 1000 {
                assert!(c.clone().bytes().len() < c.raw_bytes().len());
                assert_eq!(c.raw_bytes()[8], TYPE_CHANGE);
            }
            assert_eq!(change_hash(c.raw_bytes()).unwrap(), c.hash().0);
            assert_eq!(parse_change(c.raw_bytes()).unwrap().hash(), c.hash());
            // What automerge would ship compressed is refused unopened.
            if n > 1000 {
                assert!(matches!(
                    parse_change(&c.bytes()),
                    Err(ChunkError::Compressed)
                ));
            }
        }
    }

    #[test]
    fn a_deflate_bomb_is_refused_without_inflating() {
        // The bomb is real: its data inflates to what it says.
        let small = compressed_bomb(1 << 20);
        let (_, n) = uleb(&small[9..]).unwrap();
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&small[9 + n..])
            .read_to_end(&mut out)
            .unwrap();
        assert!((1 << 20..(1 << 20) + 258).contains(&out.len()));
        assert!(out.iter().all(|b| *b == 0));
        // 256 MiB from about 260 KB, refused unopened.
        let bomb = compressed_bomb(256 << 20);
        assert!(bomb.len() < 300 * 1024, "{}", bomb.len());
        assert!(matches!(change_hash(&bomb), Err(ChunkError::Compressed)));
        assert!(matches!(parse_change(&bomb), Err(ChunkError::Compressed)));
    }

    /// A change chunk around `data`, with a correct length and checksum.
    fn chunk(data: &[u8]) -> Vec<u8> {
        let mut header = vec![TYPE_CHANGE];
        let mut len = data.len() as u64;
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                header.push(b);
                break;
            }
            header.push(b | 0x80);
        }
        let hash = Sha256::new()
            .chain_update(&header)
            .chain_update(data)
            .finalize();
        let mut out = MAGIC.to_vec();
        out.extend(&hash[..4]);
        out.extend(&header);
        out.extend(data);
        out
    }

    fn sleb(out: &mut Vec<u8>, mut v: i64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0) {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// Change data with no deps, a 1-byte actor, seq 1, start op 1, time 0, no
    /// message, no other actors, and one column: the action column with `action`.
    fn claiming(action: &[u8]) -> Vec<u8> {
        let mut d = vec![0, 1, 7, 1, 1, 0, 0, 0, 1, 0x42, action.len() as u8];
        d.extend(action);
        d
    }

    #[test]
    fn the_ops_a_change_claims_are_counted_as_automerge_counts_them() {
        use automerge::ObjType;
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let text = tx.put_object(ROOT, "text", ObjType::Text).unwrap();
        tx.splice_text(&text, 0, 0, &"ab".repeat(500)).unwrap();
        tx.put(ROOT, "k", 1).unwrap();
        tx.commit();
        let mut tx = doc.transaction();
        tx.splice_text(&text, 10, 900, "").unwrap();
        tx.put(ROOT, "k", "twee").unwrap();
        tx.delete(ROOT, "k").unwrap();
        tx.commit();
        let mut tx = doc.transaction();
        tx.put(ROOT, "leeg", automerge::ScalarValue::Null).unwrap();
        tx.commit();
        let mut all = doc.get_changes(&[]);
        all.extend([change(20), change(300_000)]);
        assert_eq!(all.len(), 5);
        for c in &all {
            let raw = c.raw_bytes();
            let (_, n) = uleb(&raw[9..]).unwrap();
            assert_eq!(claimed_ops(&raw[9 + n..]).unwrap(), c.len() as u64);
        }
    }

    #[test]
    fn a_change_claiming_billions_of_ops_in_a_few_bytes_is_refused() {
        // One run: 2^40 times action 3.
        let mut run = Vec::new();
        sleb(&mut run, 1 << 40);
        run.push(3);
        let bomb = chunk(&claiming(&run));
        assert!(bomb.len() < 40);
        assert!(matches!(
            change_hash(&bomb),
            Err(ChunkError::TooMany { what: "ops", .. })
        ));
        // Runs, nulls and literals add up; just under the limit passes the guard.
        let mut runs = Vec::new();
        sleb(&mut runs, (MAX_CHANGE_OPS / 2) as i64);
        runs.push(3);
        sleb(&mut runs, 0);
        runs.extend([0x80, 0x80, 0x80, 0x02]); // uleb 2^22: nulls
        sleb(&mut runs, -2);
        runs.extend([1, 2]);
        let ops = MAX_CHANGE_OPS / 2 + (1 << 22) + 2;
        assert_eq!(claimed_ops(&claiming(&runs)).unwrap(), ops);
        assert!(change_hash(&chunk(&claiming(&runs))).is_ok());
        // One more run past the limit.
        sleb(&mut runs, (MAX_CHANGE_OPS - ops + 1) as i64);
        runs.push(3);
        assert!(matches!(
            change_hash(&chunk(&claiming(&runs))),
            Err(ChunkError::TooMany { what: "ops", .. })
        ));
        // A count Automerge cannot even negate (i64::MIN).
        let mut min = Vec::new();
        sleb(&mut min, i64::MIN);
        assert!(change_hash(&chunk(&claiming(&min))).is_err());
        // Too many other actors or columns.
        let mut actors = vec![0, 1, 7, 1, 1, 0, 0];
        actors.extend([0x81, 0x80, 0x04]); // 65537 other actors
        assert!(matches!(
            change_hash(&chunk(&actors)),
            Err(ChunkError::TooMany {
                what: "other actors",
                ..
            })
        ));
        let columns = vec![0, 1, 7, 1, 1, 0, 0, 0, 0x81, 0x02];
        assert!(matches!(
            change_hash(&chunk(&columns)),
            Err(ChunkError::TooMany {
                what: "op columns",
                ..
            })
        ));
    }

    #[test]
    fn damaged_chunks_are_refused() {
        let c = change(20);
        let raw = c.raw_bytes().to_vec();
        let mut bad_sum = raw.clone();
        bad_sum[5] ^= 1;
        let mut bad_data = raw.clone();
        *bad_data.last_mut().unwrap() ^= 1;
        let mut doc_type = raw.clone();
        doc_type[8] = 0;
        let mut trailing = raw.clone();
        trailing.push(0);
        let short = raw[..raw.len() - 1].to_vec();
        for (bytes, what) in [
            (bad_sum, "checksum"),
            (bad_data, "data"),
            (doc_type, "document chunk"),
            (trailing, "trailing byte"),
            (short, "short"),
            (raw[..9].to_vec(), "header only"),
            (vec![], "empty"),
        ] {
            assert!(change_hash(&bytes).is_err(), "{what}");
            assert!(parse_change(&bytes).is_err(), "{what}");
        }
    }
}
