//! Errors of the network layer.

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The swarm could not be built (transport or behaviour set-up).
    #[error("cannot start networking: {0}")]
    Build(String),
    /// A listen address is invalid or in use.
    #[error("cannot listen on {addr}: {reason}: choose another --listen address or free the port")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A dial could not be started.
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A request failed (peer unreachable, not a member, timed out, protocol error).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The network task has stopped.
    #[error("the network task has stopped")]
    Stopped,
}
