//! Bundles: what a reader sends comes back byte for byte at another reader, and what
//! a hostile sender or a device without the key makes of it is refused.

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};

use super::*;
use crate::control::OpHash;
use crate::identity::NodeSecret;
use crate::seal::{ContentKey, seal_change};
use crate::sync::{DossierMessage, FrameFormat, Response, SyncError};

const REGION: RegionId = RegionId(OpHash([7; 32]));

struct Fixture {
    dossier: DocId,
    ring: KeyRing,
    /// The changes as stored: the first sealed in format 1 with an unchained
    /// envelope, the rest chained and sealed in format 2.
    changes: Vec<SignedChange>,
}

/// `n` changes of one author in one dossier, as a node writes them.
fn fixture(n: usize) -> Fixture {
    let by = NodeSecret::generate().unwrap();
    let dossier = DocId::from_bytes([4; 16]);
    let key = ContentKey::generate().unwrap();
    let mut ring = KeyRing::new(dossier);
    ring.insert(3, key.clone());
    let mut am = Automerge::new();
    am.set_actor(by.node_id().actor_id());
    let mut changes: Vec<SignedChange> = Vec::new();
    for i in 0..n {
        let mut tx = am.transaction();
        tx.put(
            ROOT,
            format!("contact {i}"),
            "Huisbezoek: gesprek met ouders over verzuim",
        )
        .unwrap();
        tx.commit();
        let c = am.get_last_local_change().unwrap();
        let prev = changes.last().map(|p| envelope_hash(&p.envelope));
        let hash = c.hash().0;
        let sealed = match prev {
            Some(_) => seal_change_rebuildable(&key, &dossier, 3, &hash, c.raw_bytes()).unwrap(),
            None => seal_change(&key, &dossier, 3, &hash, c.raw_bytes()).unwrap(),
        };
        let env = SealedEnvelope::sign(
            SealedFields {
                region: REGION,
                dossier,
                change_hash: hash,
                sealed_hash: sealed_hash(&sealed),
                author: by.node_id(),
                control_heads: vec![OpHash([1; 32])],
                access_heads: vec![OpHash([2; 32])],
                prev,
            },
            by.signing_key(),
        )
        .unwrap();
        changes.push(SignedChange {
            change: sealed,
            envelope: env.encode(),
        });
    }
    Fixture {
        dossier,
        ring,
        changes,
    }
}

/// The plaintexts of `f`'s chained changes (all but the first).
fn plaintexts(f: &Fixture) -> Vec<Zeroizing<Vec<u8>>> {
    f.changes[1..]
        .iter()
        .map(|c| {
            let env = SealedEnvelope::decode(&c.envelope).unwrap();
            f.ring.unseal(&env.fields().change_hash, &c.change).unwrap()
        })
        .collect()
}

fn response(f: &Fixture, changes: Vec<SignedChange>) -> Response {
    Response::Dossiers {
        dossiers: vec![DossierMessage {
            dossier: f.dossier,
            have: vec![],
            ops: vec![],
            changes,
            withheld: false,
        }],
    }
}

/// Sends `f`'s changes in a format 3 frame, bundled, and returns the frame.
fn bundled_frame(f: &Fixture) -> (Vec<u8>, usize) {
    let (bundle, single) = OutBundle::build(&f.ring, f.dossier, f.changes.clone(), |_| true);
    let bundle = bundle.expect("a bundle");
    let n = bundle.changes.len();
    (response(f, single).encode_bundled(&[bundle]), n)
}

#[test]
fn a_reader_rebuilds_every_change_and_envelope_byte_for_byte() {
    let f = fixture(20);
    let (frame, n) = bundled_frame(&f);
    // The first change (format 1, unchained) travels on its own.
    assert_eq!(n, 19);
    let (resp, pending) = Response::decode_bundled(&frame).unwrap();
    assert_eq!(pending.len(), 1);
    let mut budget = MAX_BUNDLE_PLAIN;
    let rebuilt = pending[0].open(&f.ring, &mut budget).unwrap();
    let Response::Dossiers { dossiers } = resp else {
        panic!("not a Dossiers answer")
    };
    let mut all = dossiers[0].changes.clone();
    all.extend(rebuilt);
    assert_eq!(all, f.changes);
    for c in &all {
        assert!(SealedEnvelope::decode(&c.envelope).unwrap().signature_ok());
    }
    // And it is much smaller than the same changes one by one (format 3 without
    // bundles).
    // A `/3` peer (compact frames) gets only the change sealed in format 1: it
    // cannot read format 2.
    let for_3 = response(&f, f.changes.clone());
    assert_eq!(for_3.left_out(FrameFormat::Compact), 19);
    let Response::Dossiers { dossiers } =
        Response::decode(&for_3.encode_as(FrameFormat::Compact)).unwrap()
    else {
        panic!("not a Dossiers answer")
    };
    assert_eq!(dossiers[0].changes, f.changes[..1].to_vec());
    let compact = response(&f, f.changes.clone()).encode_as(FrameFormat::Bundled);
    assert!(
        frame.len() * 2 < compact.len(),
        "bundled {} vs compact {}",
        frame.len(),
        compact.len()
    );
}

#[test]
fn only_what_the_receiver_reads_and_can_be_rebuilt_is_bundled() {
    let f = fixture(6);
    // A receiver without the epoch's key gets every change on its own.
    let (bundle, single) = OutBundle::build(&f.ring, f.dossier, f.changes.clone(), |e| e != 3);
    assert!(bundle.is_none());
    assert_eq!(single, f.changes);
    // A sender without the key cannot bundle (a relay).
    let empty = KeyRing::new(f.dossier);
    let (bundle, single) = OutBundle::build(&empty, f.dossier, f.changes.clone(), |_| true);
    assert!(bundle.is_none());
    assert_eq!(single.len(), 6);
    // One change alone is not worth a bundle.
    let (bundle, single) = OutBundle::build(&f.ring, f.dossier, f.changes[..2].to_vec(), |_| true);
    assert!(bundle.is_none());
    assert_eq!(single.len(), 2);
    // A change whose sealed bytes do not rebuild (format 2 byte on other bytes)
    // travels on its own.
    let mut odd = f.changes.clone();
    let last = odd.len() - 1;
    let n = odd[last].change.len();
    odd[last].change[n - 1] ^= 1;
    let (bundle, single) = OutBundle::build(&f.ring, f.dossier, odd.clone(), |_| true);
    assert_eq!(bundle.unwrap().changes.len(), 4);
    assert_eq!(single, vec![odd[0].clone(), odd[last].clone()]);
}

#[test]
fn a_device_without_the_key_or_an_altered_bundle_opens_nothing() {
    let f = fixture(5);
    let (frame, _) = bundled_frame(&f);
    let (_, pending) = Response::decode_bundled(&frame).unwrap();
    let mut budget = MAX_BUNDLE_PLAIN;
    // Another device's ring: no key of epoch 3.
    let other = KeyRing::new(f.dossier);
    assert_eq!(
        pending[0].open(&other, &mut budget),
        Err(BundleError::Seal(SealError::NoKeyForEpoch(3)))
    );
    // A key of another epoch's number does not open it either.
    let mut wrong = KeyRing::new(f.dossier);
    wrong.insert(3, ContentKey::generate().unwrap());
    assert_eq!(
        pending[0].open(&wrong, &mut budget),
        Err(BundleError::Seal(SealError::Tampered))
    );
    // Altered in transit.
    let mut altered = pending[0].clone();
    let n = altered.sealed.len();
    altered.sealed[n - 3] ^= 0x40;
    assert_eq!(
        altered.open(&f.ring, &mut budget),
        Err(BundleError::Seal(SealError::Tampered))
    );
    // Moved to another dossier.
    let mut moved = pending[0].clone();
    moved.dossier = DocId::from_bytes([5; 16]);
    let mut ring = KeyRing::new(moved.dossier);
    ring.insert(3, f.ring.get(3).unwrap().clone());
    assert_eq!(
        moved.open(&ring, &mut budget),
        Err(BundleError::Seal(SealError::Tampered))
    );
}

/// A member holding the key seals its own plaintext into a bundle beside the
/// envelopes of another author's changes.
fn hostile(f: &Fixture, list: &[(u32, &[u8])]) -> PendingBundle {
    let (frame, _) = bundled_frame(f);
    let (_, pending) = Response::decode_bundled(&frame).unwrap();
    let mut p = pending[0].clone();
    let key = f.ring.get(3).unwrap();
    p.sealed = seal_bundle(key, &f.dossier, 3, &bundle_plaintext(list)).unwrap();
    p
}

#[test]
fn a_change_altered_in_a_bundle_fails_its_authors_signature() {
    let f = fixture(4);
    let plain = plaintexts(&f);
    // Another change of the member's own making in place of the second.
    let mut am = Automerge::new();
    let mut tx = am.transaction();
    tx.put(ROOT, "contact 2", "Made up").unwrap();
    tx.commit();
    let made_up = am.get_last_local_change().unwrap().raw_bytes().to_vec();
    let list = [(3, &plain[0][..]), (3, &made_up[..]), (3, &plain[2][..])];
    let rebuilt = hostile(&f, &list)
        .open(&f.ring, &mut MAX_BUNDLE_PLAIN.clone())
        .unwrap();
    let ok: Vec<bool> = rebuilt
        .iter()
        .map(|c| SealedEnvelope::decode(&c.envelope).unwrap().signature_ok())
        .collect();
    // The made-up change does not carry its signature; the change after it names
    // an envelope hash that is no longer there, so it fails too.
    assert_eq!(ok, vec![true, false, false]);
    assert_eq!(rebuilt[0], f.changes[1]);
}

#[test]
fn hostile_plaintexts_are_refused_whole() {
    let f = fixture(4);
    let mut budget = MAX_BUNDLE_PLAIN;
    // Fewer changes than envelopes.
    let a = hostile(&f, &[(3, b"x")]);
    assert_eq!(
        a.open(&f.ring, &mut budget),
        Err(BundleError::Count {
            changes: 1,
            envelopes: 3
        })
    );
    // Not Automerge changes.
    let b = hostile(&f, &[(3, b"x"), (3, b"y"), (3, b"z")]);
    assert!(matches!(
        b.open(&f.ring, &mut budget),
        Err(BundleError::Malformed(_))
    ));
    // An epoch the receiver holds no key of.
    let plain = plaintexts(&f);
    let c = hostile(&f, &[(3, &plain[0]), (9, &plain[1]), (3, &plain[2])]);
    assert_eq!(
        c.open(&f.ring, &mut budget),
        Err(BundleError::Seal(SealError::NoKeyForEpoch(9)))
    );
    // Not deflated at all.
    let mut d = hostile(&f, &[]);
    d.sealed = seal_bundle(f.ring.get(3).unwrap(), &f.dossier, 3, b"\xff\xff\xff").unwrap();
    assert!(matches!(
        d.open(&f.ring, &mut budget),
        Err(BundleError::Malformed(_))
    ));
}

#[test]
fn a_deflate_bomb_stops_at_the_frames_budget() {
    let f = fixture(3);
    // 17 MiB of one byte deflates to a small fraction of a frame.
    let big = vec![0u8; MAX_BUNDLE_PLAIN + 1024 * 1024];
    let bomb = hostile(&f, &[(3, &big[..])]);
    assert!(
        bomb.sealed.len() < MAX_BUNDLE_PLAIN / 20,
        "{}",
        bomb.sealed.len()
    );
    let mut budget = MAX_BUNDLE_PLAIN;
    assert_eq!(bomb.open(&f.ring, &mut budget), Err(BundleError::TooLarge));
    // The bundles of one frame share the budget: a second bundle that would take
    // more than is left is refused.
    let plain = plaintexts(&f);
    let list: Vec<(u32, &[u8])> = plain.iter().map(|p| (3, &p[..])).collect();
    let one = bundle_plaintext(&list);
    let size: usize = plain.iter().map(|p| p.len()).sum();
    let mut budget = size + size / 2;
    assert_eq!(unbundle_plaintext(&one, &mut budget).unwrap().len(), 2);
    assert_eq!(
        unbundle_plaintext(&one, &mut budget),
        Err(BundleError::TooLarge)
    );
}

/// Dependencies on earlier changes of the bundle travel as places: a place that
/// names a later change, or many places that would unpack beyond the budget, are
/// refused.
#[test]
fn dependencies_travel_as_places_and_bad_places_are_refused() {
    let f = fixture(12);
    let plain = plaintexts(&f);
    let list: Vec<(u32, &[u8])> = plain.iter().map(|p| (3, &p[..])).collect();
    let packed = bundle_plaintext(&list);
    // Each change but the first names the one before by place, not by hash.
    let mut places_only = packed.clone();
    let back = unbundle_plaintext(&places_only, &mut MAX_BUNDLE_PLAIN.clone()).unwrap();
    assert_eq!(
        back,
        plain.iter().map(|p| (3, p.to_vec())).collect::<Vec<_>>()
    );
    let raw_size: usize = plain.iter().map(|p| p.len()).sum();
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    for p in &plain {
        z.write_all(p).unwrap();
    }
    let deflated_raw = z.finish().unwrap().len();
    assert!(
        packed.len() + 20 * plain.len() < deflated_raw,
        "packed {} vs deflated raw {deflated_raw} (of {raw_size})",
        packed.len()
    );
    // A place of a later change.
    let forward = vec![(
        3u32,
        Packed::Split {
            deps: vec![Dep::Earlier(0)],
            rest: vec![1, 2, 3],
        },
    )];
    places_only = deflate(&postcard::to_allocvec(&forward).unwrap());
    assert_eq!(
        unbundle_plaintext(&places_only, &mut MAX_BUNDLE_PLAIN.clone()),
        Err(BundleError::Malformed("a dependency on a later change"))
    );
    // A first real change, then one naming it a million times: 32 MB from a few KB.
    let first = split_deps(&plain[0]).unwrap();
    let bomb = vec![
        (
            3u32,
            Packed::Split {
                deps: vec![],
                rest: first.rest.clone(),
            },
        ),
        (
            3u32,
            Packed::Split {
                deps: (0..1_000_000).map(|_| Dep::Earlier(0)).collect(),
                rest: vec![],
            },
        ),
    ];
    let bomb = deflate(&postcard::to_allocvec(&bomb).unwrap());
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    assert_eq!(
        unbundle_plaintext(&bomb, &mut MAX_BUNDLE_PLAIN.clone()),
        Err(BundleError::TooLarge)
    );
}

fn deflate(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).unwrap();
    Zeroizing::new(z.finish().unwrap())
}

#[test]
fn frames_with_misplaced_bundles_are_refused() {
    let f = fixture(5);
    let (frame, _) = bundled_frame(&f);
    // A caller that takes no bundles refuses the frame instead of dropping them.
    assert_eq!(Response::decode(&frame), Err(SyncError::Malformed));
    // A bundle for a dossier the message does not name.
    let (bundle, _) = OutBundle::build(&f.ring, f.dossier, f.changes.clone(), |_| true);
    let bundle = bundle.unwrap();
    let other = Response::Dossiers {
        dossiers: vec![DossierMessage {
            dossier: DocId::from_bytes([6; 16]),
            have: vec![],
            ops: vec![],
            changes: vec![],
            withheld: false,
        }],
    };
    let frame = other.encode_bundled(std::slice::from_ref(&bundle));
    // The encoder leaves it out.
    let (_, pending) = Response::decode_bundled(&frame).unwrap();
    assert!(pending.is_empty());
    // Hand-made: the same bundle twice for one dossier, or one for an unnamed dossier.
    let mut compactor = crate::sync::compact::Compactor::default();
    let w = compactor.bundle(&bundle).unwrap();
    let table = compactor.into_table();
    let msg = response(&f, vec![]);
    let mut elsewhere = w.clone();
    elsewhere.dossier = DocId::from_bytes([6; 16]);
    for wire in [vec![w.clone(), w.clone()], vec![elsewhere]] {
        let mut frame = vec![crate::sync::BUNDLED_FORMAT];
        frame.extend(postcard::to_allocvec(&table).unwrap());
        frame.extend(postcard::to_allocvec(&msg).unwrap());
        frame.extend(postcard::to_allocvec(&wire).unwrap());
        assert_eq!(
            Response::decode_bundled(&frame).map(|(_, p)| p.len()),
            Err(SyncError::Malformed)
        );
    }
    // An older frame format with bundle bytes after the message.
    let mut frame = response(&f, vec![]).encode_as(FrameFormat::Compact);
    frame.extend(postcard::to_allocvec(&vec![w]).unwrap());
    assert_eq!(Response::decode_bundled(&frame), Err(SyncError::Malformed));
}
