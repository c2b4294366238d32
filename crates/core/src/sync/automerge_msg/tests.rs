use super::*;
use crate::sync::{changes_they_lack, missing, opening_message};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ChangeHash, ROOT};

fn doc_with(changes: usize, actor: u8) -> Automerge {
    let mut doc = Automerge::new().with_actor(ActorId::from(&[actor; 16][..]));
    for i in 0..changes {
        let mut tx = doc.transaction();
        tx.put(ROOT, format!("k{i}"), i as i64).unwrap();
        tx.commit();
    }
    doc
}

/// The message of issue 14, item 3: one `have` whose Bloom filter claims one entry,
/// zero bits per entry and 7 probes. Automerge 0.12 decodes it, and
/// `BloomFilter::contains_hash` then divides by zero.
pub(crate) const ZERO_BIT_BLOOM: [u8; 9] = [
    0x42, // sync message, version 1
    0x00, // no heads
    0x00, // no need
    0x01, // one have
    0x00, //   no last_sync
    0x03, //   Bloom filter of 3 bytes:
    0x01, //     num_entries = 1
    0x00, //     num_bits_per_entry = 0
    0x07, //     num_probes = 7 (and 0 bytes of bits)
];

fn with_changes_section(mut m: Vec<u8>) -> Vec<u8> {
    m.push(0x00); // no changes
    m
}

#[test]
fn the_messages_regiosync_writes_pass() {
    for n in [0, 1, 2, 300] {
        let doc = doc_with(n, 1);
        for shared in [vec![], doc.get_heads(), vec![ChangeHash([7; 32])]] {
            let m = opening_message(&doc, &shared);
            let msg = decode_sync_message(&m).unwrap_or_else(|e| panic!("{n} changes: {e}"));
            assert_eq!(msg.heads, doc.get_heads());
        }
    }
    // Many concurrent branches: many heads.
    let base = doc_with(1, 1);
    let mut doc = base.fork();
    for a in 2..200u8 {
        let mut other = base.fork().with_actor(ActorId::from(&[a; 16][..]));
        let mut tx = other.transaction();
        tx.put(ROOT, "x", i64::from(a)).unwrap();
        tx.commit();
        doc.merge(&mut other).unwrap();
    }
    assert!(doc.get_heads().len() > 100);
    assert!(decode_sync_message(&opening_message(&doc, &[])).is_ok());
    // Automerge's own messages of both versions, with flags.
    let mut state = automerge::sync::State::new();
    let m = automerge::sync::SyncDoc::generate_sync_message(&doc, &mut state).unwrap();
    let mut v2 = m.clone();
    v2.version = automerge::sync::MessageVersion::V2;
    for m in [m, v2] {
        assert!(decode_sync_message(&m.encode()).is_ok());
    }
}

#[test]
fn a_bloom_filter_with_entries_and_no_bits_is_refused_before_automerge_divides_by_zero() {
    let bytes = with_changes_section(ZERO_BIT_BLOOM.to_vec());
    assert!(matches!(
        decode_sync_message(&bytes),
        Err(SyncMessageError::BloomWithoutBits { entries: 1 })
    ));
    // Why the gate exists: Automerge itself takes the message, and panics on it.
    let doc = doc_with(1, 1);
    let msg = Message::decode(&bytes).expect("automerge 0.12 accepts the message");
    let crash = std::panic::catch_unwind(|| changes_they_lack(&doc, &msg));
    assert!(
        crash.is_err(),
        "automerge no longer divides by zero: the upstream bug is fixed, update docs/SECURITY.md"
    );
}

/// The reproduction in docs/SECURITY.md ("Reports for upstream projects"), through
/// Automerge's public sync API only.
#[test]
fn the_upstream_reproduction_panics() {
    use automerge::sync::{State, SyncDoc};
    let crash = std::panic::catch_unwind(|| {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "k", 1).unwrap();
        tx.commit();
        let msg = Message::decode(&[0x42, 0, 0, 1, 0, 3, 1, 0, 7, 0]).unwrap();
        let mut state = State::new();
        doc.receive_sync_message(&mut state, msg).unwrap();
        doc.generate_sync_message(&mut state);
    });
    assert!(
        crash.is_err(),
        "automerge no longer panics: update docs/SECURITY.md"
    );
}

fn bloom_message(entries: u32, bits_per_entry: u32, probes: u32, bits: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for v in [entries, bits_per_entry, probes] {
        leb(&mut body, u64::from(v));
    }
    body.extend(std::iter::repeat_n(0xffu8, bits));
    let mut m = vec![0x42, 0x00, 0x00, 0x01, 0x00];
    leb(&mut m, body.len() as u64);
    m.extend(body);
    with_changes_section(m)
}

use crate::change_chunk::write_uleb as leb;

#[test]
fn bloom_filters_outside_the_accepted_shape_are_refused() {
    // The honest shape passes, and Automerge can use it.
    let ok = bloom_message(3, 10, 7, 4);
    let msg = decode_sync_message(&ok).unwrap();
    let _ = changes_they_lack(&doc_with(5, 1), &msg);
    for (m, what) in [
        (bloom_message(3, 0, 7, 0), "no bits"),
        (bloom_message(u32::MAX, 0, 7, 0), "no bits, many entries"),
        (bloom_message(3, 10, 0, 4), "no probes"),
        // Automerge would reserve a Vec of u32::MAX probes (16 GiB).
        (bloom_message(1, 10, u32::MAX, 2), "too many probes"),
        (bloom_message(1, 64, 7, 8), "too many bits per entry"),
        (bloom_message(3, 10, 7, 3), "too few bits"),
        (bloom_message(3, 10, 7, 5), "trailing bits"),
        (bloom_message(0, 10, 7, 0), "a body without entries"),
        (bloom_message(u32::MAX, 10, 7, 0), "too large"),
    ] {
        assert!(decode_sync_message(&m).is_err(), "{what}");
    }
}

#[test]
fn counts_versions_changes_and_trailing_bytes_are_checked() {
    let mut too_many_haves = vec![0x42, 0x00, 0x00];
    leb(&mut too_many_haves, MAX_HAVE as u64 + 1);
    too_many_haves.extend(std::iter::repeat_n(0u8, 2 * (MAX_HAVE + 1)));
    let too_many_haves = with_changes_section(too_many_haves);
    assert!(matches!(
        decode_sync_message(&too_many_haves),
        Err(SyncMessageError::TooMany {
            what: "have entries",
            ..
        })
    ));
    // One have fewer is fine (empty filters).
    let mut haves = vec![0x42, 0x00, 0x00];
    leb(&mut haves, MAX_HAVE as u64);
    haves.extend(std::iter::repeat_n(0u8, 2 * MAX_HAVE));
    assert!(decode_sync_message(&with_changes_section(haves)).is_ok());

    let mut heads = vec![0x42];
    leb(&mut heads, MAX_HEADS as u64 + 1);
    heads.extend(std::iter::repeat_n(1u8, 32 * (MAX_HEADS + 1)));
    heads.extend([0, 0, 0]);
    assert!(matches!(
        decode_sync_message(&heads),
        Err(SyncMessageError::TooMany { what: "heads", .. })
    ));
    // A count that claims more hashes than there are bytes.
    assert!(decode_sync_message(&[0x42, 0x05, 0x00, 0x00, 0x00]).is_err());
    // An overlong LEB128 count, as Automerge refuses it.
    assert!(decode_sync_message(&[0x42, 0x80, 0x00, 0x00, 0x00, 0x00]).is_err());
    assert!(matches!(
        decode_sync_message(&[0x44, 0, 0, 0, 0]),
        Err(SyncMessageError::UnknownVersion(0x44))
    ));
    assert!(decode_sync_message(&[]).is_err());
    // Changes inside the message (a whole compressed document could hide there).
    assert!(matches!(
        decode_sync_message(&[0x42, 0, 0, 0, 1, 1, 0xff]),
        Err(SyncMessageError::CarriesChanges(1))
    ));
    // Flags, bounded; nothing after them.
    assert!(decode_sync_message(&[0x42, 0, 0, 0, 0, 2, 0x02, 0x84]).is_ok());
    assert!(decode_sync_message(&[0x42, 0, 0, 0, 0, 2, 0x02, 0x84, 0]).is_err());
    let mut flags = vec![0x42, 0, 0, 0, 0, 100];
    flags.extend([0x80; 100]);
    assert!(decode_sync_message(&flags).is_err());
}

#[test]
fn valid_messages_are_safe_for_changes_they_lack_and_missing() {
    let doc = doc_with(20, 1);
    let other = doc_with(5, 2);
    for m in [
        opening_message(&other, &[]),
        opening_message(&doc, &doc.get_heads()[..1]),
        bloom_message(1, 1, 1, 1),
        bloom_message(9, 1, 32, 2),
        bloom_message(1, 32, 32, 4),
    ] {
        let msg = decode_sync_message(&m).unwrap();
        let lack = changes_they_lack(&doc, &msg);
        assert!(lack.len() <= 20);
        let _ = missing(&doc, &msg.heads);
    }
}
