//! The session's state machines against an in-memory store: control ops and sealed
//! documents are sets of 32-byte items (an op's or item's bytes are its hash), which
//! is all the requester and the responder see of them. Two such stores converge
//! through the real [`Requester`] and [`answer`], with no node, socket or clock.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use proptest::prelude::*;

use super::*;
use crate::identity::NodeSecret;
use crate::sync::message::MAX_PUSHED_TO;
use crate::sync::{SignedChange, Summary};

/// A node's state as the session sees it: control ops and sealed documents, each a
/// set of 32-byte items.
#[derive(Clone, Debug, Default)]
struct Mem {
    ops: BTreeSet<[u8; 32]>,
    docs: BTreeMap<DocId, BTreeSet<[u8; 32]>>,
    /// Members other than this node; anyone else is refused.
    members: HashSet<NodeId>,
    /// `note_in_sync` calls.
    in_sync: usize,
    /// The proof a removed peer is shown.
    removed: Option<(NodeId, Vec<Vec<u8>>)>,
    /// Documents (in `docs`) that travel as plans, in `Docs` messages: their `sync`
    /// lists every item held, `changes` carries items, `need` names items.
    plans: BTreeSet<DocId>,
    /// Plans whose received items this node refuses (as a node refuses changes it
    /// cannot verify yet).
    refuse: BTreeSet<DocId>,
}

impl Mem {
    /// This side's `Docs` message for plan `doc`: all it holds in `sync`, and the
    /// items `theirs` (if known) lacks, or what it lacks of `theirs` in `need`.
    fn plan_message(&self, doc: &DocId, theirs: Option<&BTreeSet<[u8; 32]>>) -> DocMessage {
        let mine = self.docs.get(doc).cloned().unwrap_or_default();
        let (changes, need) = match theirs {
            Some(theirs) => (
                mine.difference(theirs)
                    .map(|i| SignedChange {
                        change: i.to_vec(),
                        envelope: vec![],
                    })
                    .collect(),
                theirs.difference(&mine).copied().collect(),
            ),
            None => (vec![], vec![]),
        };
        DocMessage {
            doc: *doc,
            sync: mine.iter().flatten().copied().collect(),
            changes,
            need,
        }
    }
}

/// The items a plan message says its sender holds.
fn held_by(m: &DocMessage) -> BTreeSet<[u8; 32]> {
    m.sync.chunks(32).filter_map(item).collect()
}

fn item(b: &[u8]) -> Option<[u8; 32]> {
    b.try_into().ok()
}

impl SessionStore for Mem {
    type Error = std::convert::Infallible;

    fn region(&self) -> RegionId {
        RegionId(OpHash([7; 32]))
    }
    fn control_heads(&self) -> Vec<OpHash> {
        // The whole set stands in for its heads: equal sets, equal heads.
        self.ops.iter().map(|o| OpHash(*o)).collect()
    }
    fn is_active_member(&self, peer: &NodeId) -> bool {
        self.members.contains(peer)
    }
    fn shared(&self, _peer: &NodeId) -> Result<Shared, Self::Error> {
        let heads: BTreeMap<DocId, Heads> = self
            .docs
            .iter()
            .map(|(d, items)| (*d, items.iter().copied().collect()))
            .collect();
        let set = DigestSet::new(heads.iter());
        Ok(Shared {
            heads: BTreeMap::new(),
            set,
        })
    }
    fn exchange_of(&self, doc: &DocId) -> Exchange {
        if self.plans.contains(doc) {
            Exchange::Automerge
        } else {
            Exchange::Sealed
        }
    }
    fn op_hashes(&self) -> Result<Vec<OpHash>, Self::Error> {
        Ok(self.control_heads())
    }
    fn ops_except(&self, theirs: &HashSet<OpHash>) -> Result<Vec<Vec<u8>>, Self::Error> {
        Ok(self
            .ops
            .iter()
            .filter(|o| !theirs.contains(&OpHash(**o)))
            .take(MAX_OPS_PER_MESSAGE)
            .map(|o| o.to_vec())
            .collect())
    }
    fn receive_ops(&mut self, _peer: &NodeId, ops: &[Vec<u8>]) -> Result<usize, Self::Error> {
        Ok(ops
            .iter()
            .filter_map(|o| item(o))
            .filter(|o| self.ops.insert(*o))
            .count())
    }
    fn opening_docs(&self, _: &NodeId, docs: &[DocId]) -> Result<Vec<DocMessage>, Self::Error> {
        Ok(docs.iter().map(|d| self.plan_message(d, None)).collect())
    }
    fn pushing_docs(&self, _: &NodeId, docs: &[DocId]) -> Result<Vec<DocMessage>, Self::Error> {
        // Everything held: the peer's heads are not known here.
        let nothing = BTreeSet::new();
        Ok(docs
            .iter()
            .map(|d| self.plan_message(d, Some(&nothing)))
            .map(|m| DocMessage { need: vec![], ..m })
            .collect())
    }
    fn receive_docs(&mut self, _: &NodeId, docs: &[DocMessage]) -> Result<Received, Self::Error> {
        let mut got = Received::default();
        for m in docs.iter().filter(|m| !self.refuse.contains(&m.doc)) {
            for c in &m.changes {
                if let Some(i) = item(&c.change)
                    && self.docs.entry(m.doc).or_default().insert(i)
                {
                    got.stored += 1;
                    if !got.docs.contains(&m.doc) {
                        got.docs.push(m.doc);
                    }
                }
            }
        }
        Ok(got)
    }
    fn answer_docs(&self, _: &NodeId, docs: &[DocMessage]) -> Result<Vec<DocMessage>, Self::Error> {
        Ok(docs
            .iter()
            .filter(|m| self.plans.contains(&m.doc))
            .map(|m| {
                let mut answer = self.plan_message(&m.doc, Some(&held_by(m)));
                // What the other side asked for by hash, too.
                for n in &m.need {
                    if self.docs.get(&m.doc).is_some_and(|d| d.contains(n))
                        && !answer.changes.iter().any(|c| c.change == n.to_vec())
                    {
                        answer.changes.push(SignedChange {
                            change: n.to_vec(),
                            envelope: vec![],
                        });
                    }
                }
                answer
            })
            .collect())
    }
    fn opening_dossiers(
        &self,
        _peer: &NodeId,
        dossiers: &[DocId],
    ) -> Result<Vec<DossierMessage>, Self::Error> {
        Ok(dossiers
            .iter()
            .map(|d| DossierMessage {
                dossier: *d,
                have: self
                    .docs
                    .get(d)
                    .map(|i| i.iter().copied().collect())
                    .unwrap_or_default(),
                ops: vec![],
                changes: vec![],
                withheld: false,
            })
            .collect())
    }
    fn item_hash(&self, item: SealedItem<'_>) -> Option<[u8; 32]> {
        match item {
            SealedItem::Op(b) => crate::sync::session::tests::item(b),
            SealedItem::Change(_) => None,
        }
    }
    fn receive_dossiers(
        &mut self,
        _peer: &NodeId,
        dossiers: &[DossierMessage],
    ) -> Result<Received, Self::Error> {
        let mut got = Received::default();
        for m in dossiers {
            for o in &m.ops {
                match item(o) {
                    Some(o) => {
                        if self.docs.entry(m.dossier).or_default().insert(o) {
                            got.stored += 1;
                        }
                    }
                    None => got.forged += 1,
                }
            }
        }
        Ok(got)
    }
    fn answer_dossiers(
        &self,
        _peer: &NodeId,
        dossiers: &[DossierMessage],
    ) -> Result<Vec<DossierMessage>, Self::Error> {
        Ok(dossiers
            .iter()
            .map(|m| {
                let mine = self.docs.get(&m.dossier).cloned().unwrap_or_default();
                let theirs: BTreeSet<[u8; 32]> = m.have.iter().copied().collect();
                DossierMessage {
                    dossier: m.dossier,
                    have: mine.iter().copied().collect(),
                    ops: mine.difference(&theirs).map(|i| i.to_vec()).collect(),
                    changes: vec![],
                    withheld: false,
                }
            })
            .collect())
    }
    fn note_in_sync(&mut self, _peer: &NodeId, _shared: &Shared) -> Result<(), Self::Error> {
        self.in_sync += 1;
        Ok(())
    }
    fn removal_proof(&self, peer: &NodeId) -> Result<Option<Vec<Vec<u8>>>, Self::Error> {
        Ok(self
            .removed
            .as_ref()
            .filter(|(p, _)| p == peer)
            .map(|(_, ops)| ops.clone()))
    }
    fn answer_join(&mut self, _: &NodeId, _: &[u8]) -> Result<Response, Self::Error> {
        Ok(Response::JoinRefused {
            reason: "geen uitnodiging".into(),
        })
    }
}

fn ids() -> (NodeId, NodeId) {
    let a = NodeSecret::generate().expect("a key").node_id();
    let b = NodeSecret::generate().expect("a key").node_id();
    (a, b)
}

/// Two members, `a` requesting from `b`.
fn pair(mut a: Mem, mut b: Mem) -> (NodeId, Mem, NodeId, Mem) {
    let (ia, ib) = ids();
    a.members.insert(ib);
    b.members.insert(ia);
    (ia, a, ib, b)
}

/// Runs a whole session of `a` with `b` through encoded frames (as a transport
/// would carry them); returns how it ended and the round trips.
fn session(ia: NodeId, a: &mut Mem, ib: NodeId, b: &mut Mem) -> (Step, usize) {
    drive(Requester::new(ib), ia, a, b)
}

/// Runs the session `req` of `a` (whose id is `ia`) with `b` to its end.
fn drive(mut req: Requester, ia: NodeId, a: &mut Mem, b: &mut Mem) -> (Step, usize) {
    let mut step = req.start(a).expect("infallible");
    let mut trips = 0;
    while let Step::Send(request) = step {
        trips += 1;
        assert!(trips < 10_000, "the session does not end");
        let frame = Request::decode(&request.encode()).expect("a request decodes");
        let answered = answer(b, &ia, frame).expect("infallible");
        let response = Response::decode(&answered.response.encode()).expect("decodes");
        step = req.on_response(a, response).expect("infallible");
    }
    (step, trips)
}

fn doc(n: u8) -> DocId {
    DocId::from_bytes([n; 16])
}

fn items(range: std::ops::Range<u8>) -> BTreeSet<[u8; 32]> {
    range.map(|i| [i; 32]).collect()
}

#[test]
fn equal_stores_are_in_sync_after_one_round_trip_and_both_record_it() {
    let mut m = Mem {
        ops: items(0..3),
        ..Mem::default()
    };
    m.docs.insert(doc(1), items(10..12));
    let (ia, mut a, ib, mut b) = pair(m.clone(), m);
    let (end, trips) = session(ia, &mut a, ib, &mut b);
    assert_eq!(trips, 1);
    assert!(matches!(end, Step::Done { in_sync: true, .. }), "{end:?}");
    assert_eq!((a.in_sync, b.in_sync), (1, 1));
}

#[test]
fn ops_then_documents_flow_both_ways_and_a_second_session_is_one_round_trip() {
    let mut a = Mem::default();
    let mut b = Mem::default();
    a.ops = items(0..5);
    b.ops = items(3..9);
    a.docs.insert(doc(1), items(20..25));
    b.docs.insert(doc(1), items(23..30));
    b.docs.insert(doc(2), items(40..41));
    a.docs.insert(doc(3), items(50..52));
    let (ia, mut a, ib, mut b) = pair(a, b);
    let (end, _) = session(ia, &mut a, ib, &mut b);
    let Step::Done { tally, in_sync, .. } = end else {
        panic!("{end:?}");
    };
    assert!(in_sync);
    assert_eq!(tally.ops_received, 4);
    assert_eq!(tally.docs_differing, 3);
    assert_eq!(a.ops, items(0..9));
    assert_eq!(a.ops, b.ops);
    assert_eq!(a.docs, b.docs);
    assert_eq!(a.docs[&doc(1)], items(20..30));
    let (end, trips) = session(ia, &mut a, ib, &mut b);
    assert_eq!(trips, 1, "{end:?}");
}

/// A push sends the changed documents in the first request, before any `Hello`,
/// and the session then goes on as usual: it also brings what the push did not
/// name, and ends with the two in sync.
#[test]
fn a_push_sends_the_changed_documents_first_and_the_session_then_catches_the_rest() {
    let mut a = Mem {
        ops: items(0..3),
        ..Mem::default()
    };
    let mut b = a.clone();
    a.docs.insert(doc(1), items(10..14));
    b.docs.insert(doc(1), items(10..12));
    a.docs.insert(doc(2), items(20..21));
    let (ia, mut a, ib, mut b) = pair(a, b);
    let mut req = Requester::pushing(ib, vec![doc(1)]);
    let Step::Send(first) = req.start(&mut a).expect("infallible") else {
        panic!("a push sends at once");
    };
    let Request::Dossiers { dossiers } = &first else {
        panic!("the first request is the pushed document, not {first:?}");
    };
    assert_eq!(dossiers.len(), 1);
    assert_eq!(dossiers[0].dossier, doc(1));
    let (end, _) = drive(Requester::pushing(ib, vec![doc(1)]), ia, &mut a, &mut b);
    assert!(matches!(end, Step::Done { in_sync: true, .. }), "{end:?}");
    assert_eq!(a.docs, b.docs);
    assert_eq!(b.docs[&doc(2)], items(20..21));
}

/// A push of a plan that lands (the peer took every pushed change, and nothing is
/// left either side lacks) ends after that one round trip, without the `Hello`:
/// a peer that already had the edit (from another member) costs one round trip.
/// Other differences wait for a full session.
#[test]
fn a_push_that_lands_ends_after_one_round_trip() {
    let mut a = Mem {
        ops: items(0..3),
        ..Mem::default()
    };
    a.plans.insert(doc(1));
    let mut b = a.clone();
    a.docs.insert(doc(1), items(10..14));
    b.docs.insert(doc(1), items(10..12));
    // A document the push does not name differs too.
    a.docs.insert(doc(2), items(20..21));
    let (ia, mut a, ib, mut b) = pair(a, b);
    let (end, trips) = drive(Requester::pushing(ib, vec![doc(1)]), ia, &mut a, &mut b);
    assert_eq!(trips, 1, "{end:?}");
    let Step::Done {
        shared,
        in_sync,
        received,
        tally,
    } = end
    else {
        panic!("{end:?}");
    };
    assert!(
        shared.is_none() && !in_sync,
        "nothing compared, nothing recorded"
    );
    // This test store pushes all it holds (it keeps no peer heads).
    assert_eq!(tally.changes_sent, 4);
    assert!(received.is_empty());
    assert_eq!(b.docs[&doc(1)], items(10..14), "the push landed");
    assert!(
        !b.docs.contains_key(&doc(2)),
        "left for the next full session"
    );
    assert_eq!((a.in_sync, b.in_sync), (0, 0));
    // Pushed again to a peer that has it all: still one round trip.
    let (_, trips) = drive(Requester::pushing(ib, vec![doc(1)]), ia, &mut a, &mut b);
    assert_eq!(trips, 1);
}

/// A push the peer does not take (it refuses the changes, as a node that cannot
/// verify them yet) goes on to the `Hello` and the rest of the session after the
/// need rounds, instead of ending as if it had landed.
#[test]
fn a_push_the_peer_does_not_take_goes_on_to_the_hello() {
    let mut a = Mem {
        ops: items(0..3),
        ..Mem::default()
    };
    a.plans.insert(doc(1));
    let mut b = a.clone();
    a.ops.insert([9; 32]);
    a.docs.insert(doc(1), items(10..14));
    b.docs.insert(doc(1), items(10..12));
    b.refuse.insert(doc(1));
    // The push, its need rounds, then the Hello and the rest.
    let b = push_goes_on_to_the_hello(a, b, 2);
    assert_eq!(b.docs[&doc(1)], items(10..12), "still refused");
}

/// Pushes plan 1 from `a` to `b` and checks that the session did not end with the
/// push (it took more than `more_than` round trips) but went on as a full one,
/// whose `Hello` brought `a`'s control op `[9; 32]`; returns `b` as the session
/// left it.
fn push_goes_on_to_the_hello(a: Mem, b: Mem, more_than: usize) -> Mem {
    let (ia, mut a, ib, mut b) = pair(a, b);
    let (end, trips) = drive(Requester::pushing(ib, vec![doc(1)]), ia, &mut a, &mut b);
    assert!(trips > more_than, "{trips} round trips: {end:?}");
    assert!(
        matches!(
            end,
            Step::Done {
                shared: Some(_),
                ..
            }
        ),
        "ended as a full session: {end:?}"
    );
    assert!(b.ops.contains(&[9; 32]), "the Hello brought the control op");
    b
}

/// A push of a plan the peer does not share (it lacks the control op that created
/// it, so its answer leaves the plan out) is not taken for one that landed: the
/// session goes on to the `Hello`, which brings the op.
#[test]
fn a_push_the_answer_leaves_out_goes_on_to_the_hello() {
    let mut a = Mem {
        ops: items(0..3),
        ..Mem::default()
    };
    let b = a.clone();
    a.plans.insert(doc(1));
    a.ops.insert([9; 32]);
    a.docs.insert(doc(1), items(10..12));
    push_goes_on_to_the_hello(a, b, 1);
}

#[test]
fn a_response_out_of_turn_stops_the_session() {
    let b = Mem {
        ops: items(0..1),
        ..Mem::default()
    };
    let (_, mut a, ib, _) = pair(Mem::default(), b);
    let mut req = Requester::new(ib);
    assert!(matches!(
        req.start(&mut a),
        Ok(Step::Send(Request::Hello { .. }))
    ));
    let step = req
        .on_response(&mut a, Response::Buckets { differing: vec![] })
        .expect("infallible");
    assert!(matches!(step, Step::Stop(Stop::OutOfTurn)), "{step:?}");
    // And the session stays stopped, whatever comes next.
    let step = req
        .on_response(
            &mut a,
            Response::Hello {
                control_heads: vec![],
                summary: Summary {
                    total: [0; 32],
                    count: 0,
                },
            },
        )
        .expect("infallible");
    assert!(matches!(step, Step::Stop(Stop::OutOfTurn)), "{step:?}");
}

#[test]
fn refusals_and_removals_stop_the_session_with_what_the_peer_said() {
    let (_, mut a, ib, _) = pair(Mem::default(), Mem::default());
    let mut req = Requester::new(ib);
    req.start(&mut a).expect("infallible");
    let step = req
        .on_response(
            &mut a,
            Response::Refused {
                reason: Refusal::WrongRegion,
            },
        )
        .expect("infallible");
    assert!(matches!(
        step,
        Step::Stop(Stop::Refused(Refusal::WrongRegion))
    ));
    let mut req = Requester::new(ib);
    req.start(&mut a).expect("infallible");
    let step = req
        .on_response(
            &mut a,
            Response::Removed {
                ops: vec![b"removal".to_vec()],
            },
        )
        .expect("infallible");
    let Step::Stop(Stop::Removed(ops)) = step else {
        panic!("{step:?}");
    };
    assert_eq!(ops, vec![b"removal".to_vec()]);
}

#[test]
fn non_members_get_no_session_and_a_removed_device_is_shown_its_removal() {
    let (stranger, _) = ids();
    let mut a = Mem::default();
    let mut req = Requester::new(stranger);
    assert!(matches!(
        req.start(&mut a),
        Ok(Step::Stop(Stop::NotAMember))
    ));
    let hello = Request::Hello {
        region: a.region(),
        control_heads: vec![],
        summary: Summary {
            total: [0; 32],
            count: 0,
        },
    };
    let refused = answer(&mut a, &stranger, hello.clone()).expect("infallible");
    assert_eq!(
        refused.response,
        Response::Refused {
            reason: Refusal::NotAMember
        }
    );
    a.removed = Some((stranger, vec![b"remove-device".to_vec()]));
    let told = answer(&mut a, &stranger, hello).expect("infallible");
    assert_eq!(
        told.response,
        Response::Removed {
            ops: vec![b"remove-device".to_vec()]
        }
    );
    // Nothing a non-member sends is stored.
    let ops = Request::Ops {
        have: vec![],
        ops: vec![[9; 32].to_vec()],
    };
    assert_eq!(
        answer(&mut a, &stranger, ops).expect("infallible").stored,
        0
    );
    assert!(a.ops.is_empty());
}

#[test]
fn a_hello_for_another_region_is_refused() {
    let (ia, _, _, mut b) = pair(Mem::default(), Mem::default());
    let hello = Request::Hello {
        region: RegionId(OpHash([8; 32])),
        control_heads: vec![],
        summary: Summary {
            total: [0; 32],
            count: 0,
        },
    };
    assert_eq!(
        answer(&mut b, &ia, hello).expect("infallible").response,
        Response::Refused {
            reason: Refusal::WrongRegion
        }
    );
}

#[test]
fn forged_items_count_against_the_sender_and_are_not_stored() {
    let (ia, _, _, mut b) = pair(Mem::default(), Mem::default());
    let request = Request::Dossiers {
        dossiers: vec![DossierMessage {
            dossier: doc(1),
            have: vec![],
            ops: vec![b"not 32 bytes".to_vec(), [5; 32].to_vec()],
            changes: vec![],
            withheld: false,
        }],
    };
    let answered = answer(&mut b, &ia, request).expect("infallible");
    assert_eq!((answered.stored, answered.forged), (1, 1));
    assert_eq!(b.docs[&doc(1)], items(5..6));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Whatever each side holds, one session leaves both with the union, and the
    /// next session is one round trip.
    #[test]
    fn one_session_converges_any_two_stores(
        a_ops in proptest::collection::btree_set(any::<u8>(), 0..40),
        b_ops in proptest::collection::btree_set(any::<u8>(), 0..40),
        a_docs in proptest::collection::btree_map(0u8..20, proptest::collection::btree_set(any::<u8>(), 0..8), 0..12),
        b_docs in proptest::collection::btree_map(0u8..20, proptest::collection::btree_set(any::<u8>(), 0..8), 0..12),
    ) {
        let mem = |ops: &BTreeSet<u8>, docs: &BTreeMap<u8, BTreeSet<u8>>| {
            Mem {
                ops: ops.iter().map(|o| [*o; 32]).collect(),
                docs: docs
                .iter()
                .filter(|(_, i)| !i.is_empty())
                .map(|(d, i)| {
                    // Items are unique across documents, as hashes are.
                    let items = i.iter().map(|x| {
                        let mut item = [*x; 32];
                        item[0] = *d;
                        item
                    });
                    (doc(*d), items.collect())
                })
                .collect(),
                ..Mem::default()
            }
        };
        let (ia, mut a, ib, mut b) = pair(mem(&a_ops, &a_docs), mem(&b_ops, &b_docs));
        let (end, _) = session(ia, &mut a, ib, &mut b);
        prop_assert!(matches!(end, Step::Done { in_sync: true, .. }), "{:?}", end);
        prop_assert_eq!(&a.ops, &b.ops);
        prop_assert_eq!(&a.docs, &b.docs);
        prop_assert_eq!(a.ops.len(), a_ops.union(&b_ops).count());
        let (_, trips) = session(ib, &mut b, ia, &mut a);
        prop_assert_eq!(trips, 1);
    }
}

/// A push names the other peers it goes to in its push requests only: the
/// responder reports them (`pushed_to`) and answers as it answers `Docs` and
/// `Dossiers`; the requests after the push (the `Hello` and the rest) name none. A
/// list over the limit does not decode.
#[test]
fn a_push_names_the_other_peers_in_its_push_requests_only() {
    let mut a = Mem {
        ops: items(0..3),
        ..Mem::default()
    };
    a.plans.insert(doc(1));
    let mut b = a.clone();
    a.docs.insert(doc(1), items(10..14));
    a.docs.insert(doc(3), items(30..32));
    b.docs.insert(doc(1), items(10..12));
    let (ia, mut a, ib, mut b) = pair(a, b);
    let (c, d) = ids();
    // A dossier and a plan pushed: the dossier push goes on to the `Hello`.
    let mut req = Requester::pushing(ib, vec![doc(1), doc(3)]);
    let mut step = req.start(&mut a).expect("infallible");
    let mut named = Vec::new();
    let mut plain = 0;
    while let Step::Send(request) = step {
        let request = if req.is_pushing() {
            request.pushed_with(vec![c, d])
        } else {
            request
        };
        let frame = Request::decode(&request.encode()).expect("a request decodes");
        let kind = std::mem::discriminant(&frame);
        let answered = answer(&mut b, &ia, frame).expect("infallible");
        if answered.pushed_to.is_empty() {
            plain += 1;
        } else {
            assert_eq!(answered.pushed_to, vec![c, d]);
            named.push(kind);
        }
        step = req
            .on_response(&mut a, answered.response)
            .expect("infallible");
    }
    assert!(matches!(step, Step::Done { .. }), "{step:?}");
    let push_docs = std::mem::discriminant(&Request::PushDocs {
        also: vec![],
        docs: vec![],
    });
    let push_dossiers = std::mem::discriminant(&Request::PushDossiers {
        also: vec![],
        dossiers: vec![],
    });
    named.dedup();
    assert_eq!(
        named,
        vec![push_dossiers, push_docs],
        "the dossier push's rounds, then the plan push's, named them"
    );
    assert!(plain > 0, "the rest of the session named nobody");
    assert_eq!(b.docs[&doc(1)], items(10..14), "the push landed");
    assert_eq!(b.docs[&doc(3)], items(30..32));

    // Over the limit: refused when decoding, and `pushed_with` cuts its list to it.
    let many: Vec<NodeId> = (0..=MAX_PUSHED_TO).map(|_| ids().0).collect();
    let over = Request::PushDocs {
        also: many.clone(),
        docs: vec![],
    };
    assert_eq!(
        Request::decode(&over.encode()),
        Err(crate::sync::message::SyncError::OverLimit(
            "peers named in a push"
        ))
    );
    let cut = Request::Docs { docs: vec![] }.pushed_with(many);
    assert!(matches!(&cut, Request::PushDocs { also, .. } if also.len() == MAX_PUSHED_TO));
    assert!(Request::decode(&cut.encode()).is_ok());
    // Other requests are not pushes.
    let hello = Request::Buckets { buckets: vec![] };
    assert_eq!(hello.clone().pushed_with(vec![c]), hello);
}

/// An answer says when the request brought new control ops (who is a member may
/// have changed): not for ops it held already, nor for documents.
#[test]
fn an_answer_says_when_control_ops_came() {
    let b = Mem {
        ops: items(0..3),
        ..Mem::default()
    };
    let (ia, _a, _ib, mut b) = pair(Mem::default(), b);
    let ops = |r: std::ops::Range<u8>| -> Vec<Vec<u8>> { r.map(|i| vec![i; 32]).collect() };
    let old = answer(
        &mut b,
        &ia,
        Request::Ops {
            have: vec![],
            ops: ops(0..3),
        },
    )
    .expect("infallible");
    assert!(!old.control && old.stored == 0);
    let new = answer(
        &mut b,
        &ia,
        Request::Ops {
            have: vec![],
            ops: ops(2..5),
        },
    )
    .expect("infallible");
    assert!(new.control && new.stored == 2);
    let docs = answer(&mut b, &ia, Request::Docs { docs: vec![] }).expect("infallible");
    assert!(!docs.control);
}
