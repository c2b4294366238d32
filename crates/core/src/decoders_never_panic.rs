//! Every decoder of untrusted bytes, fed arbitrary bytes and mutations of valid
//! encodings, returns an error or a value and never panics. (The same property a
//! fuzzer checks; this runs in every `cargo test`.) For the Automerge-facing paths
//! also: what the sync-message validator lets through, `changes_they_lack` and
//! `missing` handle; valid-looking messages are not refused; and Automerge's change
//! parser sees only what the chunk guard passed, also for mutated changes with a
//! repaired checksum.

use proptest::prelude::*;

use crate::change_chunk::{ChunkError, change_hash, parse_change};
use crate::control::{
    InviteCode, JoinFields, JoinRequest, RegionId, SignedOp, decode_bundle, encode_bundle,
};
use crate::envelope::{ChangeEnvelope, SignedFields};
use crate::id::{DocId, PartyName, Role};
use crate::identity::NodeSecret;
use crate::sync::{
    automerge_msg, changes_they_lack, decode_sync_message, missing, opening_message,
};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT};
use sha2::Digest;

/// Valid encodings of every format, to mutate.
fn samples() -> Vec<Vec<u8>> {
    let dev = NodeSecret::generate().unwrap();
    let g = crate::testkit::genesis(&dev, "roc-a", Role::Roc);
    let region = RegionId(g.hash());
    let env = ChangeEnvelope::sign(
        SignedFields {
            region,
            doc: DocId::random().unwrap(),
            change_hash: [1; 32],
            author: dev.node_id(),
            control_heads: vec![g.hash()],
        },
        dev.signing_key(),
    )
    .unwrap();
    let join = JoinRequest::sign(
        JoinFields {
            region,
            invite_id: [2; 16],
            device: dev.node_id(),
            age_recipient: dev.age_recipient().to_string(),
            party: PartyName::new("roc-a").unwrap(),
            proof: [3; 32],
        },
        dev.signing_key(),
    )
    .unwrap();
    let code = InviteCode {
        region,
        inviter: dev.node_id(),
        invite_id: [4; 16],
        secret: [5; 32],
        expires: 0,
        party: PartyName::new("roc-a").unwrap(),
        role: Role::Roc,
        admin: true,
        addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
    };
    vec![
        g.encode(),
        env.encode(),
        join.encode(),
        encode_bundle([&g]),
        code.encode().into_bytes(),
        dev.to_file_bytes(None).unwrap().to_vec(),
    ]
}

fn feed(bytes: &[u8]) {
    let _ = SignedOp::decode(bytes);
    let _ = SignedOp::decode_stored(bytes);
    let _ = SignedOp::decode_batch(&[bytes, bytes]);
    let _ = ChangeEnvelope::decode(bytes);
    let _ = crate::envelope::sealed::SealedEnvelope::decode(bytes);
    let _ = crate::envelope::sealed::envelope_hash(bytes);
    let _ = JoinRequest::decode(bytes);
    let _ = decode_bundle(bytes);
    let _ = InviteCode::decode(&String::from_utf8_lossy(bytes));
    let _ = NodeSecret::from_file_bytes(bytes, None);
    automerge_msg::fuzz_sync_message(bytes);
    feed_change(bytes);
    feed_bundles(bytes);
}

/// Sync frames of every format (bundles included), and bundles that open to
/// arbitrary plaintexts: what a member holding the dossier's key could send.
fn feed_bundles(bytes: &[u8]) {
    use crate::seal::{ContentKey, KeyRing, seal_bundle};
    use crate::sync::bundle::{
        BundlePrev, MAX_BUNDLE_PLAIN, PendingBundle, PendingEntry, bundle_plaintext,
        unbundle_plaintext,
    };
    use crate::sync::{Request, Response};
    for format in [1u8, 2, 3] {
        let mut frame = vec![format];
        frame.extend_from_slice(bytes);
        let _ = Request::decode_bundled(&frame);
        let _ = Response::decode_bundled(&frame);
    }
    let _ = unbundle_plaintext(bytes, &mut MAX_BUNDLE_PLAIN.clone());
    if let Some(s) = crate::change_chunk::split_deps(bytes) {
        let _ = crate::change_chunk::join_deps(&s.deps, &s.rest);
    }
    let dossier = DocId::from_bytes([3; 16]);
    let Ok(key) = ContentKey::generate() else {
        return;
    };
    let mut ring = KeyRing::new(dossier);
    ring.insert(0, key.clone());
    let entry = PendingEntry {
        region: RegionId(crate::control::OpHash([1; 32])),
        author: NodeSecret::generate().unwrap().node_id(),
        control_heads: vec![],
        access_heads: vec![crate::control::OpHash([2; 32])],
        signature: [0; 64],
        prev: BundlePrev::Previous,
    };
    // As the deflated plaintext, and as the one change of a well-formed list.
    for plain in [bytes.to_vec(), bundle_plaintext(&[(0, bytes)]).to_vec()] {
        let Ok(sealed) = seal_bundle(&key, &dossier, 0, &plain) else {
            continue;
        };
        let b = PendingBundle {
            dossier,
            sealed,
            entries: vec![entry.clone()],
        };
        let _ = b.open(&ring, &mut MAX_BUNDLE_PLAIN.clone());
    }
}

/// The chunk guard, and Automerge's change parser behind it only.
fn feed_change(bytes: &[u8]) {
    let guarded = change_hash(bytes);
    match parse_change(bytes) {
        Ok(c) => assert_eq!(
            Some(c.hash().0),
            guarded.ok(),
            "the guard's hash is Automerge's"
        ),
        Err(_) => {
            if guarded.is_ok() {
                // Passed the guard: Automerge's own parser may still refuse, never panic.
                let _ = automerge::Change::from_bytes(bytes.to_vec());
            }
        }
    }
}

/// A doc with concurrent changes of three actors.
fn doc() -> Automerge {
    let mut doc = Automerge::new();
    for a in 1..=3u8 {
        let mut b = Automerge::new().with_actor(ActorId::from(&[a; 16][..]));
        for i in 0..4 {
            let mut tx = b.transaction();
            tx.put(ROOT, format!("k{i}"), i64::from(a)).unwrap();
            let text = tx.put_object(ROOT, format!("t{i}"), ObjType::Text).unwrap();
            tx.splice_text(&text, 0, 0, "tekst").unwrap();
            tx.commit();
        }
        doc.merge(&mut b).unwrap();
    }
    doc
}

use crate::change_chunk::write_uleb as uleb;

/// A Bloom filter's (entries, bits per entry, probes, byte length change relative to
/// the right one); `None` for an empty filter.
type Bloom = Option<(u32, u32, u32, i8)>;

/// A sync message in Automerge's wire form from its parts.
fn sync_message(
    heads: &[[u8; 32]],
    need: &[[u8; 32]],
    haves: &[(Vec<[u8; 32]>, Bloom)],
    flags: bool,
) -> Vec<u8> {
    let mut m = vec![0x42];
    for list in [heads, need] {
        uleb(&mut m, list.len() as u64);
        m.extend(list.iter().flatten());
    }
    uleb(&mut m, haves.len() as u64);
    for (last_sync, bloom) in haves {
        uleb(&mut m, last_sync.len() as u64);
        m.extend(last_sync.iter().flatten());
        let mut body = Vec::new();
        if let Some((e, b, p, delta)) = *bloom {
            for v in [e, b, p] {
                uleb(&mut body, u64::from(v));
            }
            let right = (u64::from(e) * u64::from(b)).div_ceil(8) as i64;
            let len = (right + i64::from(delta)).clamp(0, 1 << 16) as usize;
            body.extend((0..len).map(|i| (i * 37) as u8));
        }
        uleb(&mut m, body.len() as u64);
        m.extend(body);
    }
    m.push(0); // no changes
    if flags {
        m.extend([2, 0x02, 0x84]);
    }
    m
}

fn hash_from(doc: &Automerge) -> impl Strategy<Value = [u8; 32]> + use<> {
    let known: Vec<[u8; 32]> = doc.get_changes(&[]).iter().map(|c| c.hash().0).collect();
    prop_oneof![any::<[u8; 32]>(), prop::sample::select(known),]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        feed(&bytes);
    }

    #[test]
    fn mutated_valid_encodings(which in 0usize..6, flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut s = samples().swap_remove(which);
        for (i, x) in flips {
            let at = i.index(s.len());
            s[at] ^= x;
        }
        feed(&s);
        let keep = cut.index(s.len() + 1);
        s.truncate(keep);
        feed(&s);
    }

    /// Any message shape, sane or not: whatever the validator accepts, Automerge's
    /// sync helpers handle; and a well-formed filter of sane parameters is accepted.
    #[test]
    fn sync_messages_of_any_shape(
        heads in prop::collection::vec(hash_from(&doc()), 0..4),
        need in prop::collection::vec(hash_from(&doc()), 0..4),
        haves in prop::collection::vec((
            prop::collection::vec(hash_from(&doc()), 0..3),
            prop::option::of((
                prop_oneof![Just(0u32), 1u32..50, Just(u32::MAX)],
                prop_oneof![Just(0u32), 1u32..40, Just(u32::MAX)],
                prop_oneof![Just(0u32), 1u32..40, Just(u32::MAX)],
                prop_oneof![4 => Just(0i8), 1 => -2i8..3],
            )),
        ), 0..6),
        flags in any::<bool>(),
    ) {
        let doc = doc();
        let bytes = sync_message(&heads, &need, &haves, flags);
        let sane = haves.len() <= automerge_msg::MAX_HAVE
            && haves.iter().all(|(_, b)| match b {
                None => true,
                Some((e, b, p, delta)) => *e >= 1 && *e < 50 && (1..=32).contains(b)
                    && (1..=32).contains(p) && *delta == 0,
            });
        match decode_sync_message(&bytes) {
            Ok(msg) => {
                prop_assert!(sane, "accepted an insane message: {haves:?}");
                let lack = changes_they_lack(&doc, &msg);
                prop_assert!(lack.len() <= doc.get_changes(&[]).len());
                let _ = missing(&doc, &msg.heads);
            }
            Err(e) => prop_assert!(!sane, "refused a sane message ({e}): {haves:?}"),
        }
    }

    /// Arbitrary bytes and mutations of genuine sync messages through the validator
    /// and, when it accepts, the sync helpers.
    #[test]
    fn mutated_sync_messages(shared in 0usize..4, flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6), cut in any::<prop::sample::Index>()) {
        let doc = doc();
        let heads = doc.get_heads();
        let mut m = opening_message(&doc, &heads[..shared.min(heads.len())]);
        for (i, x) in flips {
            let at = i.index(m.len());
            m[at] ^= x;
        }
        automerge_msg::fuzz_sync_message(&m);
        let keep = cut.index(m.len() + 1);
        automerge_msg::fuzz_sync_message(&m[..keep]);
    }

    /// Genuine changes, mutated, with the chunk's length and checksum repaired: the
    /// guard refuses only claims beyond its bounds, Automerge's parser behind it
    /// refuses or parses, and agrees with the guard on the hash.
    #[test]
    fn mutated_changes_behind_the_guard(which in 0usize..12, flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>()) {
        let doc = doc();
        let changes = doc.get_changes(&[]);
        let raw = changes[which % changes.len()].raw_bytes().to_vec();
        // Header: magic (4), checksum (4), type (1), uleb length; data after it.
        let len_bytes = raw[9..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
        let mut data = raw[9 + len_bytes..].to_vec();
        for (i, x) in flips {
            let at = i.index(data.len());
            data[at] ^= x;
        }
        data.truncate(cut.index(data.len() + 1).max(1));
        let mut header = vec![1u8];
        uleb(&mut header, data.len() as u64);
        let hash = sha2::Sha256::new().chain_update(&header).chain_update(&data).finalize();
        let mut chunk = raw[..4].to_vec();
        chunk.extend(&hash[..4]);
        chunk.extend(&header);
        chunk.extend(&data);
        // Checksum and length are right: only the claims inside may be refused.
        let damaged = matches!(
            change_hash(&chunk),
            Err(ChunkError::BadChecksum | ChunkError::LengthMismatch { .. } | ChunkError::NotAChunk)
        );
        prop_assert!(!damaged);
        feed_change(&chunk);
    }
}
