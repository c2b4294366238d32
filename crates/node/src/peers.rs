//! What a node remembers of its peers across restarts: addresses that reached them,
//! so a restarted node (or one that just joined over the network) can dial its
//! members without mDNS or `--peer`; and per document the heads each peer was last
//! known to hold (the per-peer sync state), which shortens the next sync's bloom
//! filters and tells `regiosync status` which documents are ahead or behind.

use std::collections::{BTreeMap, HashMap};

use regiosync_core::control::{Folded, MAX_ADDR_LEN, MAX_ADDRS, OpBody};
use regiosync_core::id::{DocId, NodeId};
use regiosync_core::sync::{Heads, Summary};
use regiosync_net::{Multiaddr, Protocol};
use regiosync_store::StoreRead;
use serde::{Deserialize, Serialize};

use crate::Node;
use crate::clock::now_ms;
use crate::error::NodeError;
use crate::sync::SessionMemory;

/// `addr` without a trailing `/p2p/<peer>`: the peer is stored beside it.
pub(crate) fn without_peer(addr: &Multiaddr) -> Multiaddr {
    let mut a = addr.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a
}

/// The addresses other active devices published in a region state (unreadable ones
/// skipped).
pub(crate) fn published_in(
    state: &regiosync_core::control::RegionState,
    me: &NodeId,
) -> Vec<(NodeId, Multiaddr)> {
    state
        .devices
        .iter()
        .filter(|(d, _)| *d != me && state.active_device(d).is_some())
        .flat_map(|(d, dev)| dev.addrs.iter().filter_map(|a| Some((*d, a.parse().ok()?))))
        .collect()
}

impl Node {
    /// The remembered addresses of peers, newest first per peer. Rows that do not
    /// parse (a damaged or hand-edited store) are skipped with a warning.
    pub fn peer_addrs(&self) -> Result<Vec<(NodeId, Multiaddr)>, NodeError> {
        let rows = self.store.peer_addrs()?;
        Ok(rows
            .into_iter()
            .filter_map(
                |(peer, addr)| match (NodeId::from_public_key_bytes(peer), addr.parse()) {
                    (Ok(id), Ok(a)) => Some((id, a)),
                    _ => {
                        tracing::warn!("skipping an unreadable remembered peer address");
                        None
                    }
                },
            )
            .collect())
    }

    /// Publishes where this device can be reached (a `SetAddrs` op in the region
    /// log), unless the log already says so. Returns whether an op was issued.
    pub(crate) fn publish_addrs(&mut self, addrs: &[Multiaddr]) -> Result<bool, NodeError> {
        let mut addrs: Vec<String> = addrs
            .iter()
            .map(|a| without_peer(a).to_string())
            .filter(|a| a.len() <= MAX_ADDR_LEN)
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs.truncate(MAX_ADDRS);
        let state = self.region_state()?;
        let me = self.info.node_id;
        match state.active_device(&me) {
            Some(d) if d.addrs != addrs => {}
            _ => return Ok(false),
        }
        self.issue_ops(vec![OpBody::SetAddrs { addrs }], |_| Ok(()))?;
        Ok(true)
    }

    /// The addresses members published in the region log, as (device, address);
    /// unreadable ones are skipped.
    pub fn published_addrs(&self) -> Result<Vec<(NodeId, Multiaddr)>, NodeError> {
        Ok(published_in(&self.region_state()?, &self.info.node_id))
    }

    /// Remembers that `addr` reached `peer`.
    pub(crate) fn remember_addr(
        &mut self,
        peer: &NodeId,
        addr: &Multiaddr,
    ) -> Result<(), NodeError> {
        let addr = without_peer(addr).to_string();
        self.store
            .write(|tx| tx.remember_addr(peer.as_bytes(), &addr, now_ms()))?;
        Ok(())
    }
}

/// The heads of each document a node shares with a peer.
pub(crate) type SharedHeads = BTreeMap<DocId, Heads>;

/// Most heads of one document kept for a peer (a document has a handful; more is a
/// peer's message that is not worth storing).
const MAX_KEPT_HEADS: usize = 64;

/// Most documents listed by name as ahead or behind in a [`DocStates`]; beyond that
/// they are counted only.
pub const MAX_LISTED_DOCS: usize = 1000;

/// How the documents a node shares with a peer compare, as far as the node knows at
/// the end of a sync session (from the heads the peer last reported, see
/// docs/PROTOCOL.md "Per-peer sync state").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocStates {
    /// Documents both hold at the same heads.
    pub in_sync: usize,
    /// Documents with changes here that the peer is not known to hold.
    pub ahead: Vec<DocId>,
    /// Documents where the peer holds changes this node lacks (not arrived yet, or
    /// refused here as unverifiable).
    pub behind: Vec<DocId>,
    /// Documents ahead or behind beyond [`MAX_LISTED_DOCS`].
    pub unlisted: usize,
}

impl Node {
    /// Per document, the heads `peer` was last known to hold.
    pub(crate) fn known_heads(&self, peer: &NodeId) -> Result<HashMap<DocId, Heads>, NodeError> {
        Ok(self.store.peer_docs(peer.as_bytes())?.into_iter().collect())
    }

    /// Records the heads `peer` reported for some documents.
    pub(crate) fn note_peer_heads(
        &mut self,
        peer: &NodeId,
        heads: &[(DocId, Heads)],
    ) -> Result<(), NodeError> {
        if heads.is_empty() {
            return Ok(());
        }
        // Only what changed is written, and a head list longer than any document's
        // (a peer's message is not trusted for size) is not kept at all.
        let known = self.known_heads(peer)?;
        let changed: Vec<(DocId, Heads)> = heads
            .iter()
            .filter(|(_, h)| h.len() <= MAX_KEPT_HEADS)
            .map(|(d, h)| {
                let mut h = h.clone();
                h.sort_unstable();
                h.dedup();
                (*d, h)
            })
            .filter(|(d, h)| known.get(d) != Some(h))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        // A cache (lost, it costs a larger first message): not worth a wait for the
        // disk after every session.
        self.store.write_cache(|tx| {
            for (doc, h) in &changed {
                tx.set_peer_heads(peer.as_bytes(), doc, h, now)?;
            }
            Ok::<_, NodeError>(())
        })
    }

    /// Records that `peer` holds every shared document at the heads this node has
    /// (their summaries were equal). Writes only what changed, and nothing when the
    /// same summary was recorded before.
    pub(crate) fn note_in_sync(
        &mut self,
        memory: &SessionMemory,
        peer: &NodeId,
        summary: Summary,
        shared: &SharedHeads,
    ) -> Result<(), NodeError> {
        if memory.lock().is_recorded_in_sync(peer, &summary) {
            return Ok(());
        }
        let known = self.known_heads(peer)?;
        let changed: Vec<(DocId, Heads)> = shared
            .iter()
            .filter(|(d, h)| known.get(d) != Some(h))
            .map(|(d, h)| (*d, h.clone()))
            .collect();
        self.note_peer_heads(peer, &changed)?;
        memory.lock().record_in_sync(*peer, summary);
        Ok(())
    }

    /// How the documents shared with `peer` compare with what it was last known to
    /// hold (what `regiosync status` shows per member).
    pub fn sync_state(&self, peer: &NodeId) -> Result<DocStates, NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        let heads = self.shared_heads(&folded, peer)?;
        self.doc_states(&folded, peer, &heads)
    }

    /// The hashes of the accepted changes of a document here.
    fn change_hashes(
        &self,
        folded: &Folded,
        doc: &DocId,
    ) -> Result<std::collections::HashSet<[u8; 32]>, NodeError> {
        if self.store.document(doc)?.is_none() {
            return Ok(Default::default());
        }
        let v = self.verified(doc, folded)?;
        Ok(v.doc
            .get_changes_meta(&[])
            .iter()
            .map(|c| c.hash.0)
            .collect())
    }

    /// Compares this node's heads of the shared documents with what `peer` was last
    /// known to hold.
    pub(crate) fn doc_states(
        &self,
        folded: &Folded,
        peer: &NodeId,
        shared: &SharedHeads,
    ) -> Result<DocStates, NodeError> {
        let known = self.known_heads(peer)?;
        let mut states = DocStates::default();
        for (doc, ours) in shared {
            let (ahead, behind) = match known.get(doc) {
                Some(theirs) if theirs == ours => (false, false),
                None => (!ours.is_empty(), false),
                Some(theirs) => {
                    let have = self.change_hashes(folded, doc)?;
                    // They hold a change this node lacks: behind (whether this node
                    // also holds one they lack cannot be told without their history).
                    // Otherwise their heads are in this node's history and differ from
                    // its heads, so this node holds more: ahead.
                    let behind = theirs.iter().any(|h| !have.contains(h));
                    (!behind, behind)
                }
            };
            if !ahead && !behind {
                states.in_sync += 1;
                continue;
            }
            if states.ahead.len() + states.behind.len() >= MAX_LISTED_DOCS {
                states.unlisted += 1;
                continue;
            }
            if ahead {
                states.ahead.push(*doc);
            }
            if behind {
                states.behind.push(*doc);
            }
        }
        Ok(states)
    }
}
