//! The composed libp2p behaviour of a regiosync node.

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{allow_block_list, dcutr, identify, mdns, ping, relay, request_response};

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
    /// Circuit relay v2 server (`--relay`, an always-on node): relays connections
    /// between members that cannot reach each other directly. Only members and
    /// guests (join identities) get past the gate, and a guest that reserves or opens
    /// a circuit is cut off at once, so only members use the relay.
    pub(crate) relay: Toggle<relay::Behaviour>,
    /// Circuit relay v2 client: reserves a slot at a member that runs a relay, so
    /// that members behind NAT can reach this node through it, and dials through it.
    pub(crate) relay_client: relay::client::Behaviour,
    /// Direct connection upgrade through relay (hole punching): replaces a relayed
    /// connection by a direct one where the NATs allow it.
    pub(crate) dcutr: dcutr::Behaviour,
    /// The sync protocol, `/regiosync/sync/2` and `/1` (see `codec`).
    pub(crate) sync: request_response::Behaviour<FrameCodec>,
}
