//! What a node remembers of its peers across restarts: addresses that reached them,
//! so a restarted node (or one that just joined over the network) can dial its
//! members without mDNS or `--peer`.

use regiosync_core::id::NodeId;
use regiosync_net::{Multiaddr, Protocol};

use crate::Node;
use crate::documents::now_ms;
use crate::error::NodeError;

/// `addr` without a trailing `/p2p/<peer>`: the peer is stored beside it.
pub(crate) fn without_peer(addr: &Multiaddr) -> Multiaddr {
    let mut a = addr.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a
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

    /// Remembers that `addr` reached `peer`.
    pub fn remember_addr(&mut self, peer: &NodeId, addr: &Multiaddr) -> Result<(), NodeError> {
        let addr = without_peer(addr).to_string();
        self.store
            .write(|tx| tx.remember_addr(peer.as_bytes(), &addr, now_ms()))?;
        Ok(())
    }
}
