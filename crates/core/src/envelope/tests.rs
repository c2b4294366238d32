//! Attack and convergence tests of signed changes.

use automerge::transaction::Transactable;
use automerge::{Automerge, Change, ROOT};
use proptest::prelude::*;

use std::collections::BTreeSet;

use super::*;
use crate::control::{Cutoff, Op, OpBody, RegionId, SignedOp, fold};
use crate::id::{PartyName, Role};
use crate::identity::NodeSecret;
use crate::plan::PlanKind;

struct Region {
    region: RegionId,
    ops: Vec<SignedOp>,
    founder: NodeSecret,
    roc: NodeSecret,
    swv: NodeSecret,
    doc: DocId,
}

fn p(s: &str) -> PartyName {
    PartyName::new(s).unwrap()
}

impl Region {
    fn new() -> Self {
        let founder = NodeSecret::generate().unwrap();
        let roc = NodeSecret::generate().unwrap();
        let swv = NodeSecret::generate().unwrap();
        let g = crate::testkit::genesis(&founder, "gemeente-a", Role::Kerngemeente);
        let mut r = Region {
            region: RegionId(g.hash()),
            ops: vec![g],
            founder,
            roc,
            swv,
            doc: DocId::random().unwrap(),
        };
        r.op(OpBody::AddParty {
            party: p("roc-x"),
            role: Role::Roc,
        });
        r.op(OpBody::AddParty {
            party: p("swv-x"),
            role: Role::Swv,
        });
        let (roc_id, roc_age) = (r.roc.node_id(), r.roc.age_recipient().to_string());
        r.op(OpBody::AddDevice {
            party: p("roc-x"),
            device: roc_id,
            age_recipient: roc_age,
        });
        let (swv_id, swv_age) = (r.swv.node_id(), r.swv.age_recipient().to_string());
        r.op(OpBody::AddDevice {
            party: p("swv-x"),
            device: swv_id,
            age_recipient: swv_age,
        });
        let doc = r.doc;
        r.op(OpBody::CreateDoc {
            doc,
            kind: PlanKind::Jeugdplan,
            owner: p("gemeente-a"),
            readers: vec![p("swv-x")],
            writers: vec![p("roc-x")],
        });
        r
    }

    fn state(&self) -> RegionState {
        fold(self.region, &self.ops).unwrap().state
    }

    fn op(&mut self, body: OpBody) {
        let op = SignedOp::sign(
            Op {
                region: Some(self.region),
                parents: self.state().heads,
                author: self.founder.node_id(),
                time: 0,
                body,
            },
            self.founder.signing_key(),
        )
        .unwrap();
        self.ops.push(op);
    }

    fn envelope(&self, by: &NodeSecret, change: &Change) -> ChangeEnvelope {
        ChangeEnvelope::sign(
            SignedFields {
                region: self.region,
                doc: self.doc,
                change_hash: change.hash().0,
                author: by.node_id(),
                control_heads: self.state().heads,
            },
            by.signing_key(),
        )
        .unwrap()
    }

    fn check(&self, env: &ChangeEnvelope, change: &Change) -> Result<(), ChangeRejection> {
        let known: std::collections::HashSet<_> = self.ops.iter().map(|o| o.hash()).collect();
        verify_change(
            env,
            &self.doc,
            ChangeMeta {
                hash: change.hash().0,
                actor: change.actor_id().to_bytes(),
                seq: change.seq(),
            },
            &self.state(),
            |h| known.contains(h),
        )
    }
}

/// Makes `n` changes by `by` on a document that starts from `base`.
fn changes_by(by: &NodeSecret, base: &Automerge, n: usize, tag: &str) -> (Automerge, Vec<Change>) {
    let mut doc = base.fork();
    doc.set_actor(by.node_id().actor_id());
    let mut out = Vec::new();
    for i in 0..n {
        let mut tx = doc.transaction();
        tx.put(ROOT, format!("{tag}{i}"), i as i64).unwrap();
        tx.commit();
        out.push(doc.get_last_local_change().unwrap());
    }
    (doc, out)
}

#[test]
fn honest_change_is_accepted_and_envelope_roundtrips() {
    let r = Region::new();
    let (_, ch) = changes_by(&r.roc, &Automerge::new(), 1, "a");
    let env = r.envelope(&r.roc, &ch[0]);
    assert_eq!(r.check(&env, &ch[0]), Ok(()));
    let back = ChangeEnvelope::decode(&env.encode()).unwrap();
    assert_eq!(back, env);
    assert_eq!(r.check(&back, &ch[0]), Ok(()));
}

#[test]
fn attack_forged_signature() {
    let r = Region::new();
    let (_, ch) = changes_by(&r.roc, &Automerge::new(), 1, "a");
    let mut wire = r.envelope(&r.roc, &ch[0]).encode();
    wire[20] ^= 0x01;
    let forged = ChangeEnvelope::decode(&wire).unwrap();
    assert_eq!(r.check(&forged, &ch[0]), Err(ChangeRejection::BadSignature));
}

#[test]
fn attack_change_whose_actor_claims_another_device() {
    let r = Region::new();
    // The SWV (no write permission) makes a change under the ROC's actor id...
    let mut doc = Automerge::new();
    doc.set_actor(r.roc.node_id().actor_id());
    let mut tx = doc.transaction();
    tx.put(ROOT, "x", 1).unwrap();
    tx.commit();
    let ch = doc.get_last_local_change().unwrap();
    // ...and signs it as itself: the actor does not match the signer.
    let env = r.envelope(&r.swv, &ch);
    assert_eq!(r.check(&env, &ch), Err(ChangeRejection::ActorMismatch));
    // ...or names the ROC as author with its own key: the signature fails.
    let mut fields = env.fields().clone();
    fields.author = r.roc.node_id();
    assert_eq!(
        ChangeEnvelope::sign(fields.clone(), r.swv.signing_key()),
        Err(EnvelopeError::WrongKey)
    );
    let honest_shape = ChangeEnvelope::sign(fields, r.roc.signing_key()).unwrap();
    let mut wire = honest_shape.encode();
    let swv_sig = r
        .swv
        .signing_key()
        .sign(&message(honest_shape.fields()).unwrap())
        .to_bytes();
    wire[1..65].copy_from_slice(&swv_sig);
    let forged = ChangeEnvelope::decode(&wire).unwrap();
    assert_eq!(r.check(&forged, &ch), Err(ChangeRejection::BadSignature));
}

#[test]
fn attack_writer_less_party_writes_a_plan() {
    let r = Region::new();
    let (_, ch) = changes_by(&r.swv, &Automerge::new(), 1, "a");
    let env = r.envelope(&r.swv, &ch[0]);
    assert_eq!(
        r.check(&env, &ch[0]),
        Err(ChangeRejection::NoAuthority(WriteDenied::NotAWriter))
    );
}

#[test]
fn attack_envelope_replayed_on_another_document_or_region() {
    let r = Region::new();
    let (_, ch) = changes_by(&r.roc, &Automerge::new(), 1, "a");
    let env = r.envelope(&r.roc, &ch[0]);
    let known = |_: &OpHash| true;
    let other_doc = DocId::random().unwrap();
    let meta = ChangeMeta {
        hash: ch[0].hash().0,
        actor: ch[0].actor_id().to_bytes(),
        seq: 1,
    };
    assert_eq!(
        verify_change(&env, &other_doc, meta, &r.state(), known),
        Err(ChangeRejection::WrongDocument)
    );
    let other = Region::new();
    assert_eq!(
        verify_change(&env, &r.doc, meta, &other.state(), known),
        Err(ChangeRejection::WrongRegion)
    );
    // The envelope of one change does not cover another.
    let (_, ch2) = changes_by(&r.roc, &Automerge::new(), 2, "b");
    assert_eq!(r.check(&env, &ch2[1]), Err(ChangeRejection::HashMismatch));
}

#[test]
fn attack_change_after_removal_beyond_the_cutoff() {
    let mut r = Region::new();
    let (_, ch) = changes_by(&r.roc, &Automerge::new(), 3, "a");
    let envs: Vec<_> = ch.iter().map(|c| r.envelope(&r.roc, c)).collect();
    let (device, doc) = (r.roc.node_id(), r.doc);
    r.op(OpBody::RemoveDevice {
        device,
        cutoffs: vec![Cutoff {
            doc,
            device,
            last_seq: 2,
            last_hash: Some(ch[1].hash().0),
        }],
    });
    assert_eq!(r.check(&envs[0], &ch[0]), Ok(()));
    assert_eq!(r.check(&envs[1], &ch[1]), Ok(()));
    assert_eq!(
        r.check(&envs[2], &ch[2]),
        Err(ChangeRejection::NoAuthority(WriteDenied::RemovedDevice))
    );
}

#[test]
fn unknown_control_heads_are_reported() {
    let r = Region::new();
    let (_, ch) = changes_by(&r.roc, &Automerge::new(), 1, "a");
    let env = r.envelope(&r.roc, &ch[0]);
    let meta = ChangeMeta {
        hash: ch[0].hash().0,
        actor: ch[0].actor_id().to_bytes(),
        seq: 1,
    };
    assert_eq!(
        verify_change(&env, &r.doc, meta, &r.state(), |_| false),
        Err(ChangeRejection::UnknownControlHeads)
    );
}

#[test]
fn garbage_envelopes_are_refused() {
    assert!(ChangeEnvelope::decode(&[]).is_err());
    assert_eq!(
        ChangeEnvelope::decode(&[7; 80]),
        Err(EnvelopeError::UnknownFormat(7))
    );
    assert!(ChangeEnvelope::decode(&[1; 70]).is_err());
    assert!(matches!(
        ChangeEnvelope::decode(&vec![1; MAX_ENVELOPE_BYTES + 1]),
        Err(EnvelopeError::TooLarge(_))
    ));
}

#[test]
fn changes_on_top_of_a_rejected_change_are_rejected() {
    let r = Region::new();
    let (base, ch_roc) = changes_by(&r.roc, &Automerge::new(), 1, "r");
    let (doc_swv, ch_swv) = changes_by(&r.swv, &base, 1, "s"); // SWV may not write
    let (_, ch_roc2) = changes_by(&r.roc, &doc_swv, 1, "q"); // builds on the SWV change
    let envs = [
        r.envelope(&r.roc, &ch_roc[0]),
        r.envelope(&r.swv, &ch_swv[0]),
        r.envelope(&r.roc, &ch_roc2[0]),
    ];
    let changes = [&ch_roc[0], &ch_swv[0], &ch_roc2[0]];
    let cands: Vec<Candidate<'_>> = changes
        .iter()
        .zip(&envs)
        .map(|(c, e)| Candidate {
            change: c,
            envelope: Some(e),
        })
        .collect();
    let sel = select_changes(&r.doc, &cands, &r.state(), |_| true, |_| false);
    assert_eq!(sel.accepted, vec![0]);
    assert_eq!(
        sel.rejected[&ch_swv[0].hash().0],
        ChangeRejection::NoAuthority(WriteDenied::NotAWriter)
    );
    assert_eq!(
        sel.rejected[&ch_roc2[0].hash().0],
        ChangeRejection::DependsOnRejected
    );
    // Unsigned changes are rejected too.
    let unsigned = [Candidate {
        change: &ch_roc[0],
        envelope: None,
    }];
    assert_eq!(
        select_changes(&r.doc, &unsigned, &r.state(), |_| true, |_| false).rejected
            [&ch_roc[0].hash().0],
        ChangeRejection::Unsigned
    );
}

/// Applies the accepted changes of a selection and returns the document heads.
fn materialize(cands: &[Candidate<'_>], r: &Region) -> Vec<automerge::ChangeHash> {
    let sel = select_changes(&r.doc, cands, &r.state(), |_| true, |_| false);
    let mut doc = Automerge::new();
    doc.apply_changes(sel.accepted.iter().map(|&i| cands[i].change.clone()))
        .unwrap();
    let mut heads = doc.get_heads();
    heads.sort();
    heads
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    /// Any delivery order and duplication of the same changes gives the same document,
    /// also when some changes are forged or unauthorised, and a node that saw a removed
    /// device's later changes rebuilds to the state of one that never saw them.
    #[test]
    fn same_changes_same_document_in_any_order(
        n_roc in 1usize..6, n_swv in 0usize..3, n_after in 0usize..4, seed in any::<u64>(),
    ) {
        let mut r = Region::new();
        let (d1, roc) = changes_by(&r.roc, &Automerge::new(), n_roc, "r");
        let (_, swv) = changes_by(&r.swv, &d1, n_swv, "s");
        let (_, founder) = changes_by(&r.founder, &d1, 2, "f");
        let mut all: Vec<(Change, ChangeEnvelope)> = Vec::new();
        for c in roc.iter() { all.push((c.clone(), r.envelope(&r.roc, c))); }
        for c in swv.iter() { all.push((c.clone(), r.envelope(&r.swv, c))); }
        for c in founder.iter() { all.push((c.clone(), r.envelope(&r.founder, c))); }
        // The ROC device keeps writing, then is removed with a cutoff at its n_roc-th change.
        let (_, later) = changes_by(&r.roc, &d1, n_after, "late");
        for c in later.iter() { all.push((c.clone(), r.envelope(&r.roc, c))); }
        let (device, doc) = (r.roc.node_id(), r.doc);
        let last = roc.last().unwrap();
        r.op(OpBody::RemoveDevice {
            device,
            cutoffs: vec![Cutoff { doc, device, last_seq: last.seq(), last_hash: Some(last.hash().0) }],
        });

        let cands: Vec<Candidate<'_>> = all.iter().map(|(c, e)| Candidate { change: c, envelope: Some(e) }).collect();
        let reference = materialize(&cands, &r);

        let mut shuffled = cands.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let dups: Vec<_> = shuffled.iter().step_by(2).cloned().collect();
        shuffled.extend(dups);
        prop_assert_eq!(materialize(&shuffled, &r), reference.clone());

        // A node that never saw the late changes ends up identical.
        let without_late: Vec<_> = cands.iter().filter(|c| !later.iter().any(|l| l.hash() == c.change.hash())).cloned().collect();
        prop_assert_eq!(materialize(&without_late, &r), reference);
    }
}

#[test]
fn a_forged_copy_does_not_shadow_the_genuine_change() {
    let r = Region::new();
    let (_, ch) = changes_by(&r.roc, &Automerge::new(), 1, "a");
    let good = r.envelope(&r.roc, &ch[0]);
    let mut wire = good.encode();
    wire[30] ^= 0x10;
    let forged = ChangeEnvelope::decode(&wire).unwrap();
    for cands in [
        vec![
            Candidate {
                change: &ch[0],
                envelope: Some(&forged),
            },
            Candidate {
                change: &ch[0],
                envelope: Some(&good),
            },
        ],
        vec![
            Candidate {
                change: &ch[0],
                envelope: Some(&good),
            },
            Candidate {
                change: &ch[0],
                envelope: Some(&forged),
            },
        ],
    ] {
        let sel = select_changes(&r.doc, &cands, &r.state(), |_| true, |_| false);
        assert_eq!(sel.accepted.len(), 1);
        assert!(sel.rejected.is_empty());
    }
}

#[test]
fn removal_never_destroys_work_that_honest_writers_built_on() {
    let mut r = Region::new();
    // The ROC writes 2 changes; the founder builds on the second one.
    let (d1, roc) = changes_by(&r.roc, &Automerge::new(), 2, "r");
    let (_, founder) = changes_by(&r.founder, &d1, 1, "f");
    // The ROC also writes a change nobody built on.
    let (_, lone) = changes_by(&r.roc, &d1, 1, "lone");
    // The ROC device is removed by a node that had seen none of its changes.
    let (device, doc) = (r.roc.node_id(), r.doc);
    r.op(OpBody::RemoveDevice {
        device,
        cutoffs: vec![Cutoff {
            doc,
            device,
            last_seq: 0,
            last_hash: None,
        }],
    });
    let all: Vec<(&Change, ChangeEnvelope)> = roc
        .iter()
        .map(|c| (c, r.envelope(&r.roc, c)))
        .chain(founder.iter().map(|c| (c, r.envelope(&r.founder, c))))
        .chain(lone.iter().map(|c| (c, r.envelope(&r.roc, c))))
        .collect();
    let cands: Vec<Candidate<'_>> = all
        .iter()
        .map(|(c, e)| Candidate {
            change: c,
            envelope: Some(e),
        })
        .collect();
    let sel = select_changes(&r.doc, &cands, &r.state(), |_| true, |_| false);
    let accepted: BTreeSet<[u8; 32]> = sel
        .accepted
        .iter()
        .map(|&i| cands[i].change.hash().0)
        .collect();
    // The founder's change and the two ROC changes under it survive...
    assert!(accepted.contains(&founder[0].hash().0));
    assert!(accepted.contains(&roc[0].hash().0) && accepted.contains(&roc[1].hash().0));
    // ...but the removed device's change that nobody vouched for does not.
    assert_eq!(
        sel.rejected[&lone[0].hash().0],
        ChangeRejection::NoAuthority(WriteDenied::RemovedDevice)
    );
    assert_eq!(accepted.len(), 3);
}

/// Issue 15, item 2: a writer signs two different changes with the same sequence
/// number. Only the first held counts (Automerge would refuse to load both), what
/// builds on the second is refused with it, and the selection loads.
#[test]
fn attack_two_changes_with_one_sequence_number_keep_only_the_first_held() {
    let r = Region::new();
    let (base, first) = changes_by(&r.roc, &Automerge::new(), 1, "a");
    let (twin_doc, twin) = changes_by(&r.roc, &Automerge::new(), 1, "b");
    assert_eq!(first[0].seq(), twin[0].seq());
    assert_ne!(first[0].hash(), twin[0].hash());
    let (_, on_twin) = changes_by(&r.roc, &twin_doc, 1, "c");
    let envs = [
        r.envelope(&r.roc, &first[0]),
        r.envelope(&r.roc, &twin[0]),
        r.envelope(&r.roc, &on_twin[0]),
    ];
    let changes = [&first[0], &twin[0], &on_twin[0]];
    let cands: Vec<Candidate<'_>> = changes
        .iter()
        .zip(&envs)
        .map(|(c, e)| Candidate {
            change: c,
            envelope: Some(e),
        })
        .collect();
    let sel = select_changes(&r.doc, &cands, &r.state(), |_| true, |_| false);
    assert_eq!(sel.accepted, vec![0]);
    assert_eq!(
        sel.rejected.get(&twin[0].hash().0),
        Some(&ChangeRejection::Equivocation)
    );
    assert!(sel.rejected.contains_key(&on_twin[0].hash().0));
    let mut doc = Automerge::new();
    doc.apply_changes(sel.accepted.iter().map(|&i| changes[i].clone()))
        .unwrap();
    assert_eq!(doc.get_heads(), base.get_heads());
}

/// Issue 15, item 4: the owner takes the ROC off the writers; the ROC, not yet aware,
/// writes; the founder builds on that late change. Both stand (the rescue rule
/// covers a demotion as it covers a removal); a late change nobody built on does not.
#[test]
fn a_demotion_keeps_honest_work_built_on_a_late_change() {
    let mut r = Region::new();
    let (d1, early) = changes_by(&r.roc, &Automerge::new(), 1, "e");
    let late_env_heads = r.state().heads;
    let (d2, late) = changes_by(&r.roc, &d1, 1, "l");
    let (_, lone) = changes_by(&r.roc, &d1, 1, "x");
    let (_, founder) = changes_by(&r.founder, &d2, 1, "f");
    // Signed before the demotion (the ROC did not know of it).
    let env = |by: &NodeSecret, c: &Change| {
        ChangeEnvelope::sign(
            SignedFields {
                region: r.region,
                doc: r.doc,
                change_hash: c.hash().0,
                author: by.node_id(),
                control_heads: late_env_heads.clone(),
            },
            by.signing_key(),
        )
        .unwrap()
    };
    let envs = [
        env(&r.roc, &early[0]),
        env(&r.roc, &late[0]),
        env(&r.roc, &lone[0]),
    ];
    let (device, doc) = (r.roc.node_id(), r.doc);
    r.op(OpBody::SetAcl {
        doc,
        readers: vec![p("roc-x"), p("swv-x")],
        writers: vec![],
        cutoffs: vec![Cutoff {
            doc,
            device,
            last_seq: early[0].seq(),
            last_hash: Some(early[0].hash().0),
        }],
    });
    let founder_env = r.envelope(&r.founder, &founder[0]);
    let changes = [&early[0], &late[0], &lone[0], &founder[0]];
    let all_envs = [&envs[0], &envs[1], &envs[2], &founder_env];
    let cands: Vec<Candidate<'_>> = changes
        .iter()
        .zip(all_envs)
        .map(|(c, e)| Candidate {
            change: c,
            envelope: Some(e),
        })
        .collect();
    let sel = select_changes(&r.doc, &cands, &r.state(), |_| true, |_| false);
    let accepted: BTreeSet<usize> = sel.accepted.iter().copied().collect();
    assert_eq!(accepted, BTreeSet::from([0, 1, 3]), "{:?}", sel.rejected);
    assert_eq!(
        sel.rejected[&lone[0].hash().0],
        ChangeRejection::NoAuthority(WriteDenied::NotAWriter)
    );
}

/// The checks before a peer's change is parsed: only a device of the region that
/// signed exactly these bytes gets them parsed.
#[test]
fn the_signed_hash_is_checked_before_parsing() {
    let r = Region::new();
    let state = r.state();
    let (_, ch) = changes_by(&r.roc, &Automerge::new(), 1, "a");
    let hash = crate::change_chunk::change_hash(ch[0].raw_bytes()).unwrap();
    assert_eq!(hash, ch[0].hash().0);
    let env = r.envelope(&r.roc, &ch[0]);
    assert_eq!(verify_signed_hash(&env, &r.doc, &hash, &state), Ok(()));
    // Another hash, another document.
    assert_eq!(
        verify_signed_hash(&env, &r.doc, &[0; 32], &state),
        Err(ChangeRejection::HashMismatch)
    );
    let other = DocId::random().unwrap();
    assert_eq!(
        verify_signed_hash(&env, &other, &hash, &state),
        Err(ChangeRejection::WrongDocument)
    );
    // A key that is no device of the region, signing genuinely.
    let stranger = NodeSecret::generate().unwrap();
    let env = r.envelope(&stranger, &ch[0]);
    assert_eq!(
        verify_signed_hash(&env, &r.doc, &hash, &state),
        Err(ChangeRejection::NoAuthority(WriteDenied::UnknownDevice))
    );
    // A device of the region named as author, signed by someone else.
    let mut wire = r.envelope(&r.swv, &ch[0]).encode();
    wire[1] ^= 1;
    let forged = ChangeEnvelope::decode(&wire).unwrap();
    assert_eq!(
        verify_signed_hash(&forged, &r.doc, &hash, &state),
        Err(ChangeRejection::BadSignature)
    );
}
