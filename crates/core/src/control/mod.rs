//! The region control plane: a hash-linked DAG of signed operations (membership,
//! roles, document access lists), folded into a [`RegionState`] by rules that give
//! every node the same state whatever order the ops arrived in. The rules are written
//! down in docs/AUTH.md.
//!
//! ```
//! use regiosync_core::control::{Op, OpBody, SignedOp, RegionId, fold};
//! use regiosync_core::id::{PartyName, Role};
//! use regiosync_core::identity::NodeSecret;
//!
//! let founder = NodeSecret::generate()?;
//! let genesis = SignedOp::sign(
//!     Op {
//!         region: None,
//!         parents: vec![],
//!         author: founder.node_id(),
//!         time: 0,
//!         body: OpBody::CreateRegion {
//!             name: "Regio Utrecht".into(),
//!             party: PartyName::new("gemeente-utrecht")?,
//!             role: Role::Kerngemeente,
//!             age_recipient: founder.age_recipient().to_string(),
//!         },
//!     },
//!     founder.signing_key(),
//! )?;
//! let region = RegionId(genesis.hash());
//! let folded = fold(region, [&genesis])?;
//! assert!(folded.state.active_device(&founder.node_id()).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod fold;
mod invite;
mod op;
mod state;

pub(crate) use fold::linear_order;
pub use fold::{FoldError, Folded, Rejection, fold};
pub use invite::{
    BUNDLE_MAGIC, INVITE_PREFIX, InviteCode, InviteError, JOIN_MAGIC, JoinFields, JoinRequest,
    MAX_BUNDLE, MAX_BUNDLE_OPS, MAX_JOIN_REQUEST, decode_bundle, encode_bundle, join_peer_id,
    join_peer_seed, proof,
};
pub use op::{
    Cutoff, DocCreation, MAX_ADDR_LEN, MAX_ADDRS, MAX_APPROVAL_COMMENT, MAX_DISPLAY_NAME, MAX_LIST,
    MAX_OP_BYTES, MAX_PARENTS, MAX_REGION_NAME, OP_FORMAT, Op, OpBody, OpError, OpHash, Payload,
    RegionId, Signed, SignedOp,
};
pub use state::{Approval, DeviceState, DocAcl, PartyState, RegionState, WriteDenied};

#[cfg(test)]
mod tests;
