//! The composed libp2p behaviour of a regiosync node.

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{allow_block_list, identify, mdns, ping, request_response};

use crate::codec::FrameCodec;

/// Gate first: a connection from or to a non-member is denied before any other
/// behaviour sees it.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Only region members may connect or be dialled; removing a member closes its
    /// connections at once. (libp2p's own allow list; no hand-written gate.)
    pub(crate) gate: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    /// Learns the listen addresses of connected peers.
    pub(crate) identify: identify::Behaviour,
    /// Keeps connections alive and measures round trips.
    pub(crate) ping: ping::Behaviour,
    /// Finds members on the local network (off with `--no-mdns`, and in tests).
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    /// The sync protocol `/regiosync/sync/1`.
    pub(crate) sync: request_response::Behaviour<FrameCodec>,
}
