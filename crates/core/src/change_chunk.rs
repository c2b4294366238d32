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

use sha2::{Digest, Sha256};

/// Largest change accepted from a peer: a sync frame.
pub const MAX_CHANGE_BYTES: usize = crate::sync::MAX_SYNC_MESSAGE;

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
/// change chunk with a valid checksum. Cheap: one pass of SHA-256, no allocation.
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
    Ok(hash)
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
    let mut len = data.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            chunk.push(byte);
            break;
        }
        chunk.push(byte | 0x80);
    }
    chunk.extend(data);
    chunk
}

/// A LEB128 `u64` and how many bytes it took; `None` if it runs past the input, past
/// 64 bits, or is not minimal.
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
