//! What a node remembers between sync sessions, in memory only: per peer, the
//! summary at which everything shared was last recorded in sync; the dossiers each
//! peer said it will not share with this node; and, per dossier, the parties whose
//! access is in force. All of it can be lost at any time (a restart): it only saves
//! work and round trips, and every decision is checked again against the store.
//!
//! Plain data with no I/O. Whoever runs sync sessions owns one (the running node
//! keeps one for its lifetime, shared by the sessions it opens and the requests it
//! answers) and passes it to every session and answer.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use time::Date;

use crate::id::{DocId, NodeId, PartyName};
use crate::sync::Summary;

/// What the readers of a dossier were computed from: the region's
/// [`access_digest`](crate::control::RegionState::access_digest), the dossier's
/// access-log op hashes (sorted), and the date (grants end by date).
pub type ReadersKey = ([u8; 32], Vec<[u8; 32]>, Date);

/// A node's in-memory sync state (see the module docs).
#[derive(Debug, Default)]
pub struct SyncMemory {
    in_sync: HashMap<NodeId, Summary>,
    withheld: HashSet<(NodeId, DocId)>,
    readers: HashMap<DocId, (ReadersKey, Arc<BTreeSet<PartyName>>)>,
}

impl SyncMemory {
    /// Whether `summary` is the one last recorded as in sync with `peer` (then
    /// nothing needs writing again).
    pub fn is_recorded_in_sync(&self, peer: &NodeId, summary: &Summary) -> bool {
        self.in_sync.get(peer) == Some(summary)
    }

    /// Remembers that everything shared with `peer` was recorded in sync at
    /// `summary`.
    pub fn record_in_sync(&mut self, peer: NodeId, summary: Summary) {
        self.in_sync.insert(peer, summary);
    }

    /// Whether `peer` said it will not share dossier `id` with this node.
    pub fn is_withheld(&self, peer: &NodeId, id: &DocId) -> bool {
        self.withheld.contains(&(*peer, *id))
    }

    /// Remembers that `peer` will not share dossier `id` with this node: it is not
    /// offered to that peer again until something of it changes here.
    pub fn withhold(&mut self, peer: NodeId, id: DocId) {
        self.withheld.insert((peer, id));
    }

    /// Forgets that `peer` refused dossier `id`: it shares it again (it sent a
    /// message about it that was not a refusal). A refusal can arrive late, after
    /// the access-log op that ended it (a delayed answer of the peer's older
    /// view), so a change here alone does not always clear it.
    pub fn unwithhold(&mut self, peer: &NodeId, id: &DocId) {
        self.withheld.remove(&(*peer, *id));
    }

    /// Forgets every peer's refusal of dossier `id` (something of it changed, or it
    /// was erased).
    pub fn forget_withheld(&mut self, id: &DocId) {
        self.withheld.retain(|(_, d)| d != id);
    }

    /// The parties in force for dossier `id`, if they were computed from `key`.
    pub fn readers(&self, id: &DocId, key: &ReadersKey) -> Option<Arc<BTreeSet<PartyName>>> {
        match self.readers.get(id) {
            Some((k, r)) if k == key => Some(r.clone()),
            _ => None,
        }
    }

    /// Remembers the parties in force for dossier `id`, computed from `key`.
    pub fn remember_readers(
        &mut self,
        id: DocId,
        key: ReadersKey,
        readers: Arc<BTreeSet<PartyName>>,
    ) {
        self.readers.insert(id, (key, readers));
    }

    /// Forgets what was computed for dossier `id` (it was erased).
    pub fn forget_dossier(&mut self, id: &DocId) {
        self.forget_withheld(id);
        self.readers.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_are_only_given_for_the_key_they_were_computed_from() {
        let mut m = SyncMemory::default();
        let id = DocId::from_bytes([1; 16]);
        let day = time::macros::date!(2027 - 01 - 01);
        let key: ReadersKey = ([1; 32], vec![[2; 32]], day);
        let who = Arc::new(BTreeSet::from([PartyName::new("roc-x").unwrap()]));
        m.remember_readers(id, key.clone(), who.clone());
        assert_eq!(m.readers(&id, &key), Some(who));
        // A new op, another membership or the next day: computed again.
        let next_day = (key.0, key.1.clone(), day.next_day().unwrap());
        assert_eq!(m.readers(&id, &next_day), None);
        let members = ([9; 32], key.1.clone(), day);
        assert_eq!(m.readers(&id, &members), None);
        let new_op = (key.0, vec![[2; 32], [3; 32]], day);
        assert_eq!(m.readers(&id, &new_op), None);
        m.forget_dossier(&id);
        assert_eq!(m.readers(&id, &key), None);
    }

    #[test]
    fn a_withheld_dossier_is_per_peer_and_forgotten_when_it_changes() {
        let mut m = SyncMemory::default();
        let (p, q) = (
            crate::identity::NodeSecret::generate().unwrap().node_id(),
            crate::identity::NodeSecret::generate().unwrap().node_id(),
        );
        let id = DocId::from_bytes([9; 16]);
        m.withhold(p, id);
        assert!(m.is_withheld(&p, &id));
        assert!(!m.is_withheld(&q, &id));
        m.forget_withheld(&id);
        assert!(!m.is_withheld(&p, &id));
        m.withhold(p, id);
        m.withhold(q, id);
        m.unwithhold(&p, &id);
        assert!(!m.is_withheld(&p, &id));
        assert!(m.is_withheld(&q, &id));
    }
}
