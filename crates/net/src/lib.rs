//! # regiosync-net
//!
//! The network layer of a regiosync node on libp2p: TCP (Noise, Yamux) and QUIC
//! transports, identify, ping, optional mDNS, connection gating to the region's active
//! devices, and the sync protocol (`/regiosync/sync/4`, and `/3`, `/2`, `/1` for older nodes) as
//! length-prefixed, size-limited request/response frames. One task owns the swarm ([`spawn`]); the node talks to it
//! through a cloneable [`NetHandle`] and receives [`NetEvent`]s. What the frames mean
//! (control ops, summaries, envelopes) is defined by `regiosync_core`'s sync messages.
//!
//! ```no_run
//! # async fn demo() -> Result<(), regiosync_net::NetError> {
//! use regiosync_net::{Config, NetEvent, spawn};
//!
//! let key = libp2p::identity::Keypair::generate_ed25519();
//! let config = Config { listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()], ..Config::default() };
//! let (net, mut events, task) = spawn(key, config)?;
//! net.set_members([/* the region's active devices */]).await?;
//! while let Some(ev) = events.recv().await {
//!     if let NetEvent::Request { data, reply, .. } = ev {
//!         let _ = reply.send(data); // answer the request
//!     }
//! }
//! task.shutdown().await;
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

mod behaviour;
mod codec;
mod error;
mod network;

pub use codec::{
    DEFAULT_MAX_FRAME, Frame, FrameCodec, SYNC_PROTOCOL, SYNC_PROTOCOL_1, SYNC_PROTOCOL_2,
    SYNC_PROTOCOL_3,
};
pub use error::NetError;
pub use libp2p::identity::Keypair;
pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId, StreamProtocol};
pub use network::{Config, NetEvent, NetHandle, NetTask, spawn};

/// A loopback TCP address on a port that was free a moment ago (bound and released:
/// the caller listens on it right after). For the demo region, tests and benchmarks,
/// which run several nodes on one machine and must never leave loopback.
pub fn free_loopback_tcp() -> std::io::Result<Multiaddr> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(Multiaddr::empty()
        .with(Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST))
        .with(Protocol::Tcp(port)))
}

/// A loopback QUIC address on a UDP port that was free a moment ago (as
/// [`free_loopback_tcp`]).
pub fn free_loopback_quic() -> std::io::Result<Multiaddr> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(Multiaddr::empty()
        .with(Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST))
        .with(Protocol::Udp(port))
        .with(Protocol::QuicV1))
}
