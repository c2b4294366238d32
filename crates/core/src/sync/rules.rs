//! The sync session's rules that depend on nothing but their inputs: the session's
//! bounds, who may be sent which plan, how a received change is verified and which
//! rejections prove a forgery, how a dossier's items are named and its access-log ops
//! ordered, and the at-most-once rule per item within a session. The node's session
//! driver (`regiosync-node`, `sync.rs` and `dossier_sync.rs`) applies them to what
//! it reads from its store; here they can be tested on their own.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::change_chunk::{ChunkError, change_hash, parse_change};
use crate::control::{Folded, OpHash, RegionState, Signed, WriteDenied};
use crate::dossier::access::{DossierOp, SignedDossierOp};
use crate::dossier::held::{DossierItems, Tombstone};
use crate::envelope::sealed::{SealedEnvelope, SealedRejection};
use crate::envelope::{
    ChangeEnvelope, ChangeMeta, ChangeRejection, verify_change, verify_signed_hash,
};
use crate::id::{DocId, NodeId, PartyName};
use crate::sync::{DossierMessage, SignedChange};

/// Most `need` repair rounds per batch.
pub const MAX_NEED_ROUNDS: usize = 4;
/// Most narrowing-and-exchange rounds per session.
pub const MAX_ROUNDS: usize = 64;
/// Documents per `Docs` request.
pub const MAX_DOCS_PER_ROUND: usize = 256;
/// Bytes of changes per `Docs` message, well under the 16 MiB frame limit.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of control ops per `Ops` message, well under the frame limit with the
/// `have` list beside them.
pub const MAX_OPS_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Most `Ops` pages each way per session (4096 ops each).
pub const MAX_OP_PAGES: usize = 256;

/// Bytes of ops and sealed changes per `Dossiers` message, well under the 16 MiB
/// frame limit.
pub const MAX_DOSSIER_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Verifies one change a peer sent, cheapest and most expanding-proof checks first:
/// the raw bytes must be one uncompressed Automerge change chunk (nothing is inflated),
/// whose hash (computed from the bytes) the envelope must sign; only then is the
/// change parsed and its actor, sequence number and authority checked. Changes of a
/// removed device and changes made under control ops not known here yet are kept
/// (they may be rescued or become valid when the ops arrive).
pub fn verify_incoming_change(
    sc: &SignedChange,
    doc: &DocId,
    folded: &Folded,
    known_op: impl Fn(&OpHash) -> bool,
) -> Result<(automerge::Change, ChangeEnvelope), ChangeRejection> {
    // Why the bytes are refused matters to no one but a debugger: the sender
    // mangled them, which the caller counts as a forgery.
    let chunk = |_: ChunkError| ChangeRejection::Malformed;
    let hash = change_hash(&sc.change).map_err(chunk)?;
    let env = ChangeEnvelope::decode(&sc.envelope).map_err(|_| ChangeRejection::Unsigned)?;
    verify_signed_hash(&env, doc, &hash, &folded.state)?;
    let c = parse_change(&sc.change).map_err(chunk)?;
    let meta = ChangeMeta {
        hash: c.hash().0,
        actor: c.actor_id().to_bytes(),
        seq: c.seq(),
    };
    match verify_change(&env, doc, meta, &folded.state, known_op) {
        // Kept: may be rescued, or become valid when the ops arrive.
        Ok(())
        | Err(ChangeRejection::NoAuthority(WriteDenied::RemovedDevice))
        | Err(ChangeRejection::UnknownControlHeads) => Ok((c, env)),
        // A demoted writer's late change (its device has a cutoff: it was a
        // writer): may be rescued too.
        Err(ChangeRejection::NoAuthority(WriteDenied::NotAWriter))
            if folded
                .state
                .cutoffs
                .contains_key(&(*doc, env.fields().author)) =>
        {
            Ok((c, env))
        }
        Err(e) => Err(e),
    }
}

/// Whether a rejection proves the sender forged or mangled the change (a bad
/// signature, a signature for another change, document or region, an actor that is
/// not the signer, bytes that do not parse), as opposed to an authority question that
/// depends on how far each node's region state has got.
pub fn is_forgery(why: &ChangeRejection) -> bool {
    matches!(
        why,
        ChangeRejection::BadSignature
            | ChangeRejection::HashMismatch
            | ChangeRejection::ActorMismatch
            | ChangeRejection::WrongDocument
            | ChangeRejection::WrongRegion
            | ChangeRejection::Unsigned
            | ChangeRejection::Malformed
    )
}

/// Documents this node's party and the peer's party may both read.
pub fn shared_docs(state: &RegionState, mine: &PartyName, peer: &NodeId) -> Vec<DocId> {
    let Some(theirs) = state.active_device(peer).map(|d| d.party.clone()) else {
        return vec![];
    };
    state
        .docs
        .keys()
        .filter(|d| state.may_read(d, mine) && state.may_read(d, &theirs))
        .copied()
        .collect()
}

/// The hashes a tombstone stands for in the summary: its `Open` and `Erase` ops.
pub fn tombstone_items(t: &Tombstone) -> Vec<[u8; 32]> {
    [&t.open_op, &t.erase_op]
        .into_iter()
        .filter(|b| !b.is_empty())
        .filter_map(|b| Signed::<DossierOp>::decode_stored(b).ok())
        .map(|o| o.hash().0)
        .collect()
}

/// Every item of a dossier held: its access-log ops' and sealed changes' hashes.
pub fn all_items(items: &DossierItems) -> Vec<[u8; 32]> {
    items.ops.iter().chain(&items.changes).copied().collect()
}

/// Whether a rejection proves that the sender forged or mangled a sealed change,
/// as opposed to a question of how far each node's logs have got.
pub fn is_sealed_forgery(why: &SealedRejection) -> bool {
    matches!(
        why,
        SealedRejection::WrongRegion
            | SealedRejection::WrongDossier
            | SealedRejection::SealedHashMismatch
            | SealedRejection::BadSignature
            | SealedRejection::Malformed
    )
}

/// Access-log ops (wire form) ordered so that every op comes after those of its
/// parents that are among them (Kahn's algorithm; ties by hash). Ops that do not
/// decode are left out.
pub fn parents_first(ops: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let decoded: BTreeMap<OpHash, (SignedDossierOp, Vec<u8>)> = ops
        .into_iter()
        .filter_map(|b| {
            let o = Signed::<DossierOp>::decode_stored(&b).ok()?;
            Some((o.hash(), (o, b)))
        })
        .collect();
    let mut waiting: BTreeMap<OpHash, usize> = BTreeMap::new();
    let mut children: HashMap<OpHash, Vec<OpHash>> = HashMap::new();
    for (h, (o, _)) in &decoded {
        let inside: Vec<&OpHash> = o
            .payload()
            .parents
            .iter()
            .filter(|p| decoded.contains_key(*p))
            .collect();
        waiting.insert(*h, inside.len());
        for p in inside {
            children.entry(*p).or_default().push(*h);
        }
    }
    let mut ready: BTreeSet<OpHash> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(h, _)| *h)
        .collect();
    let mut out = Vec::with_capacity(decoded.len());
    while let Some(h) = ready.pop_first() {
        out.push(h);
        for c in children.get(&h).into_iter().flatten() {
            if let Some(n) = waiting.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    ready.insert(*c);
                }
            }
        }
    }
    let mut decoded = decoded;
    out.iter()
        .filter_map(|h| decoded.remove(h).map(|(_, b)| b))
        .collect()
}

/// One item of a `Dossiers` message: an access-log op's bytes, or a sealed change.
#[derive(Clone, Copy, Debug)]
pub enum SealedItem<'a> {
    /// An access-log op (wire form of `SignedDossierOp`).
    Op(&'a [u8]),
    /// A sealed change with its envelope.
    Change(&'a SignedChange),
}

/// The hash that names a sealed item (an op's hash, a change's hash from its
/// envelope); `None` for one that does not decode.
pub fn sealed_item_hash(item: SealedItem<'_>) -> Option<[u8; 32]> {
    match item {
        SealedItem::Op(b) => Signed::<DossierOp>::decode_stored(b)
            .ok()
            .map(|o| o.hash().0),
        SealedItem::Change(c) => SealedEnvelope::decode(&c.envelope)
            .ok()
            .map(|e| e.fields().change_hash),
    }
}

/// Leaves out of `msgs` every op and sealed change already in `sent` (by the hash
/// `hash` gives it; an item without one is left out), adds the rest to it, and drops
/// messages left empty.
pub fn not_sent_yet(
    msgs: Vec<DossierMessage>,
    sent: &mut HashSet<[u8; 32]>,
    hash: impl Fn(SealedItem<'_>) -> Option<[u8; 32]>,
) -> Vec<DossierMessage> {
    msgs.into_iter()
        .filter_map(|mut m| {
            m.ops
                .retain(|b| hash(SealedItem::Op(b)).is_some_and(|h| sent.insert(h)));
            m.changes
                .retain(|c| hash(SealedItem::Change(c)).is_some_and(|h| sent.insert(h)));
            (!m.ops.is_empty() || !m.changes.is_empty()).then_some(m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::RegionId;
    use crate::dossier::access::DossierBody;
    use crate::identity::NodeSecret;

    /// A signed access-log op of dossier `d` with these parents: an `Open` without
    /// parents, a `Revoke` with (the body does not matter to ordering or naming).
    fn op(by: &NodeSecret, d: DocId, parents: Vec<OpHash>, n: u8) -> SignedDossierOp {
        let mut parents = parents;
        parents.sort();
        let body = if parents.is_empty() {
            DossierBody::Open {
                owner: PartyName::new("roc-x").unwrap(),
                nonce: [n; 16],
            }
        } else {
            DossierBody::Revoke {
                party: PartyName::new("gemeente-a").unwrap(),
                reason: format!("r{n}"),
                keep: vec![],
            }
        };
        Signed::sign(
            DossierOp {
                region: RegionId(OpHash([7; 32])),
                dossier: d,
                parents,
                author: by.node_id(),
                time: 1_700_000_000 + i64::from(n),
                body,
            },
            by.signing_key(),
        )
        .unwrap()
    }

    #[test]
    fn parents_come_first_whatever_the_order_given_and_junk_is_left_out() {
        let by = NodeSecret::generate().unwrap();
        let d = DocId::from_bytes([1; 16]);
        let a = op(&by, d, vec![], 1);
        let b = op(&by, d, vec![a.hash()], 2);
        let c = op(&by, d, vec![b.hash(), a.hash()], 3);
        let given = vec![c.encode(), vec![0xff; 40], a.encode(), b.encode()];
        assert_eq!(
            parents_first(given),
            vec![a.encode(), b.encode(), c.encode()]
        );
        // A parent not among them does not hold a child back.
        assert_eq!(parents_first(vec![c.encode()]), vec![c.encode()]);
    }

    #[test]
    fn an_item_is_sent_at_most_once_per_session_and_empty_messages_are_dropped() {
        let by = NodeSecret::generate().unwrap();
        let (d1, d2) = (DocId::from_bytes([1; 16]), DocId::from_bytes([2; 16]));
        let a = op(&by, d1, vec![], 1);
        let b = op(&by, d2, vec![], 2);
        let msg = |d: DocId, ops: Vec<Vec<u8>>| DossierMessage {
            dossier: d,
            have: vec![],
            ops,
            changes: vec![],
            withheld: false,
        };
        let mut sent = HashSet::from([a.hash().0]);
        let out = not_sent_yet(
            vec![
                msg(d1, vec![a.encode()]),
                msg(d2, vec![b.encode(), vec![0; 8]]),
            ],
            &mut sent,
            sealed_item_hash,
        );
        // d1's only op was sent before: its message is gone; d2 keeps its valid op.
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].dossier, d2);
        assert_eq!(out[0].ops, vec![b.encode()]);
        assert!(sent.contains(&b.hash().0));
        // Asked again in the same session: nothing.
        assert!(
            not_sent_yet(vec![msg(d2, vec![b.encode()])], &mut sent, sealed_item_hash).is_empty()
        );
    }

    #[test]
    fn a_tombstone_is_named_by_its_open_and_erase_ops() {
        let by = NodeSecret::generate().unwrap();
        let d = DocId::from_bytes([3; 16]);
        let open = op(&by, d, vec![], 1);
        let erase = op(&by, d, vec![open.hash()], 2);
        let t = Tombstone {
            dossier: d,
            erased_by: "roc-x".into(),
            erased_at: 0,
            erase_op: erase.encode(),
            open_op: open.encode(),
            audience: vec![],
        };
        assert_eq!(tombstone_items(&t), vec![open.hash().0, erase.hash().0]);
        // An old tombstone without its Open op: only the Erase.
        let old = Tombstone {
            open_op: vec![],
            ..t
        };
        assert_eq!(tombstone_items(&old), vec![erase.hash().0]);
    }

    #[test]
    fn only_mangled_or_misattributed_changes_count_as_forgeries() {
        for forged in [
            ChangeRejection::BadSignature,
            ChangeRejection::HashMismatch,
            ChangeRejection::Malformed,
            ChangeRejection::Unsigned,
        ] {
            assert!(is_forgery(&forged), "{forged:?}");
        }
        // A question of how far each node's region state has got is not.
        assert!(!is_forgery(&ChangeRejection::UnknownControlHeads));
        assert!(!is_forgery(&ChangeRejection::NoAuthority(
            WriteDenied::RemovedDevice
        )));
    }
}
