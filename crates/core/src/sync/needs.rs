//! What the other side lacks, decided by Automerge's sync protocol but without letting
//! Automerge ship the changes: every change must travel with its author's signed
//! envelope, and in 0.12 a sync message may carry a whole compressed document instead
//! of changes. This mirrors Automerge's own `get_changes_to_send`: the changes since
//! the peer's `last_sync` that none of its bloom filters contains, everything that
//! depends on them, and whatever it explicitly `need`s.

use std::collections::{BTreeSet, HashMap};

use automerge::sync::Message;
use automerge::{Automerge, ChangeHash, ReadDoc};

/// Our opening sync message for a document: its heads and a bloom filter of its
/// changes since `shared`, heads the peer is known to hold (from an earlier sync; the
/// per-peer sync state). With no shared heads the filter covers every change. Hashes
/// this side does not have are ignored. Sent with no changes in it.
pub fn opening_message(doc: &Automerge, shared: &[ChangeHash]) -> Vec<u8> {
    let mut state = automerge::sync::State::new();
    state.shared_heads = shared.iter().filter(|h| holds(doc, h)).copied().collect();
    // Automerge encodes them as a sorted list.
    state.shared_heads.sort_unstable();
    state.shared_heads.dedup();
    automerge::sync::SyncDoc::generate_sync_message(doc, &mut state)
        .map(Message::encode)
        .unwrap_or_default()
}

/// The changes the peer has that `doc` lacks, given the peer's heads: its heads we do
/// not know, and the missing dependencies of changes we hold but cannot apply yet.
/// Sent back as `need` in the next round; this is how a bloom filter false positive
/// (a change the peer wrongly believed we had) gets repaired, as in Automerge.
pub fn missing(doc: &Automerge, their_heads: &[ChangeHash]) -> Vec<ChangeHash> {
    doc.get_missing_deps(their_heads)
}

/// Whether `doc` holds the change `hash`. From Automerge's change graph: unlike
/// `get_change_by_hash`, which rebuilds the change from the op set, this does not
/// grow with the change's ops.
pub fn holds(doc: &Automerge, hash: &ChangeHash) -> bool {
    doc.get_change_meta_by_hash(hash).is_some()
}

/// The hashes of the changes of `doc` that the sender of `msg` lacks, in an order
/// that puts dependencies first.
///
/// Works on Automerge's change metadata (hashes and dependencies from its change
/// graph), never on the changes themselves: rebuilding every change of a document
/// (`get_changes`) on each answer made answering a push of one change cost time in
/// proportion to the document's whole history.
pub fn changes_they_lack(doc: &Automerge, msg: &Message) -> Vec<ChangeHash> {
    let mut send: BTreeSet<ChangeHash> = BTreeSet::new();
    let mut after: Vec<ChangeHash> = Vec::new();
    if !msg.have.is_empty() {
        after = msg
            .have
            .iter()
            .flat_map(|h| h.last_sync.iter().copied())
            .collect();
        // Hashes we do not know cannot anchor the search: fall back to everything.
        if after.iter().any(|h| !holds(doc, h)) {
            after.clear();
        }
        let changes = doc.get_changes_meta(&after);
        let mut dependents: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
        for c in &changes {
            for d in &c.deps {
                dependents.entry(*d).or_default().push(c.hash);
            }
        }
        let mut stack: Vec<ChangeHash> = changes
            .iter()
            .map(|c| c.hash)
            .filter(|h| msg.have.iter().all(|have| !have.bloom.contains_hash(h)))
            .collect();
        while let Some(h) = stack.pop() {
            if send.insert(h) {
                stack.extend(dependents.get(&h).into_iter().flatten().copied());
            }
        }
    }
    let needed: Vec<ChangeHash> = msg
        .need
        .iter()
        .filter(|h| !send.contains(h) && holds(doc, h))
        .copied()
        .collect();
    if send.is_empty() && needed.is_empty() {
        return Vec::new();
    }
    // Keep Automerge's causal order: what comes after `after` is in that order
    // already; a needed change from before it puts the search back to the start.
    if !needed.is_empty() {
        after.clear();
    }
    send.extend(needed);
    doc.get_changes_meta(&after)
        .iter()
        .map(|c| c.hash)
        .filter(|h| send.contains(h))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};

    fn edit(doc: &mut Automerge, key: &str) {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, 1).unwrap();
        tx.commit();
    }

    /// Exchanging opening messages and the changes each lacks, then repairing what
    /// bloom false positives left out with `need`, makes both documents equal, for
    /// disjoint, shared and empty histories, without resending much.
    #[test]
    fn exchanges_converge_with_little_overshoot() {
        for (shared, only_a, only_b, round_with_state) in [
            (0, 3, 0, false),
            (5, 2, 3, false),
            (5, 0, 0, false),
            (0, 0, 4, false),
            (20, 7, 1, false),
            (200, 150, 120, false),
            (5, 2, 3, true),
            (20, 7, 1, true),
            (200, 150, 120, true),
        ] {
            let mut base = Automerge::new();
            base.set_actor(ActorId::from(&[1u8; 32][..]));
            for i in 0..shared {
                edit(&mut base, &format!("s{i}"));
            }
            let mut a = base.fork().with_actor(ActorId::from(&[2u8; 32][..]));
            let mut b = base.fork().with_actor(ActorId::from(&[3u8; 32][..]));
            for i in 0..only_a {
                edit(&mut a, &format!("a{i}"));
            }
            for i in 0..only_b {
                edit(&mut b, &format!("b{i}"));
            }
            // Without and with the heads both are known to share.
            // Unknown, duplicated and unsorted hashes are tolerated.
            let shared_heads = if round_with_state {
                [
                    base.get_heads(),
                    vec![ChangeHash([0xee; 32])],
                    base.get_heads(),
                ]
                .concat()
            } else {
                vec![]
            };
            let open_a = opening_message(&a, &shared_heads);
            let open_b = opening_message(&b, &shared_heads);
            if round_with_state && shared >= 200 {
                assert!(
                    open_a.len() < opening_message(&a, &[]).len(),
                    "known shared heads shrink the bloom filter"
                );
            }
            let msg_a = Message::decode(&open_a).unwrap();
            let msg_b = Message::decode(&open_b).unwrap();
            let to_a = changes_they_lack(&b, &msg_a);
            let to_b = changes_they_lack(&a, &msg_b);
            let mut sent = to_a.len() + to_b.len();
            a.apply_changes(to_a.iter().map(|h| b.get_change_by_hash(h).unwrap()))
                .unwrap();
            b.apply_changes(to_b.iter().map(|h| a.get_change_by_hash(h).unwrap()))
                .unwrap();
            for _round in 0..10 {
                let need_a = missing(&a, &b.get_heads());
                let need_b = missing(&b, &a.get_heads());
                if need_a.is_empty() && need_b.is_empty() {
                    break;
                }
                sent += need_a.len() + need_b.len();
                a.apply_changes(need_a.iter().filter_map(|h| b.get_change_by_hash(h)))
                    .unwrap();
                b.apply_changes(need_b.iter().filter_map(|h| a.get_change_by_hash(h)))
                    .unwrap();
            }
            let (mut ha, mut hb) = (a.get_heads(), b.get_heads());
            ha.sort();
            hb.sort();
            assert_eq!(
                ha, hb,
                "converged for {shared}/{only_a}/{only_b}/{round_with_state}"
            );
            assert!(
                sent <= only_a + only_b + 2,
                "sent {sent} for {only_a}+{only_b} missing changes"
            );
        }
    }
}
