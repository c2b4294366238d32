//! Shared fixtures of the core's unit tests: founding a region and signing ops.

use crate::control::{Op, OpBody, OpHash, RegionId, SignedOp};
use crate::id::{PartyName, Role};
use crate::identity::NodeSecret;

/// A party name that must be valid.
pub(crate) fn party(s: &str) -> PartyName {
    PartyName::new(s).unwrap()
}

/// Signs a region op by `by` (parents sorted and deduplicated, time 0).
pub(crate) fn sign_op(
    by: &NodeSecret,
    region: Option<RegionId>,
    parents: Vec<OpHash>,
    body: OpBody,
) -> SignedOp {
    let mut parents = parents;
    parents.sort();
    parents.dedup();
    SignedOp::sign(
        Op {
            region,
            parents,
            author: by.node_id(),
            time: 0,
            body,
        },
        by.signing_key(),
    )
    .unwrap()
}

/// The `CreateRegion` op of a region founded by `founder` for `founding_party`.
pub(crate) fn genesis(founder: &NodeSecret, founding_party: &str, role: Role) -> SignedOp {
    sign_op(
        founder,
        None,
        vec![],
        OpBody::CreateRegion {
            name: "Regio".into(),
            party: party(founding_party),
            role,
            age_recipient: founder.age_recipient().to_string(),
        },
    )
}
