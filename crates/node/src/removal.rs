//! A device the region removed: how it learns so, and what it tells its user.
//!
//! The other members' gates refuse a removed device's sync, so it rarely receives
//! the op that removed it through sync. Instead they admit it as a guest and answer
//! every request of it with `Removed`: the signed `RemoveDevice` (or `RemoveParty`)
//! op. The device checks the signature, that the op names it (or its party) and
//! that its author is a device of an admin party by its own region log, then keeps
//! the op (setting [`REMOVED_NOTICE`]). From then on `up` does not start, `status`
//! says so, and the CLI says that local edits will be refused by the region.

use regiosync_core::control::{OpBody, RegionState, SignedOp};
use regiosync_core::id::NodeId;
use regiosync_core::sync::MAX_REMOVED_OPS;
use regiosync_store::StoreRead;
use serde::Serialize;

use crate::Node;
use crate::error::NodeError;

/// The setting that keeps the removal a member showed this device (a signed op).
pub const REMOVED_NOTICE: &str = "removed-notice";

/// When and by whom this device was removed from the region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// The remover's clock, Unix seconds.
    pub at: i64,
    /// The remover's party (`(onbekend)` if this node does not know the device).
    pub by: String,
}

impl Removal {
    /// The day, `YYYY-MM-DD`.
    pub fn day(&self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.at)
            .map(|t| regiosync_core::plan::date_format::format(t.date()))
            .unwrap_or_else(|_| "an unknown day".into())
    }
}

/// What `op` says about the removal of `device`, if it removes it (or its party).
fn removes(op: &SignedOp, state: &RegionState, device: &NodeId) -> Option<Removal> {
    let party = state.devices.get(device).map(|d| &d.party);
    let hit = match &op.op().body {
        OpBody::RemoveDevice { device: d, .. } => d == device,
        OpBody::RemoveParty { party: p, .. } => Some(p) == party,
        _ => false,
    };
    hit.then(|| Removal {
        at: op.op().time,
        by: state
            .devices
            .get(&op.op().author)
            .map(|d| d.party.to_string())
            .unwrap_or_else(|| "(onbekend)".into()),
    })
}

impl Node {
    /// Whether this device was removed from its region: by its own region log, or by
    /// a removal a member showed it.
    pub fn removal(&self) -> Result<Option<Removal>, NodeError> {
        let me = self.info().node_id;
        let Some(folded) = self.control()? else {
            return Ok(None);
        };
        let state = &folded.state;
        if state.devices.contains_key(&me) && state.active_device(&me).is_none() {
            let latest = self
                .removing_ops(state, &me)?
                .iter()
                .filter_map(|op| removes(op, state, &me))
                .max_by_key(|r| r.at);
            return Ok(Some(latest.unwrap_or(Removal {
                at: 0,
                by: "(onbekend)".into(),
            })));
        }
        if let Some(bytes) = self.store().setting(REMOVED_NOTICE)?
            && let Ok(op) = SignedOp::decode(&bytes)
        {
            return Ok(removes(&op, state, &me));
        }
        Ok(None)
    }

    /// The stored ops that remove `device` or its party, newest last.
    fn removing_ops(
        &self,
        state: &RegionState,
        device: &NodeId,
    ) -> Result<Vec<SignedOp>, NodeError> {
        Ok(self
            .store()
            .ops()?
            .iter()
            .filter_map(|b| SignedOp::decode_stored(b).ok())
            .filter(|op| removes(op, state, device).is_some())
            .collect())
    }

    /// For `Response::Removed`: the ops by which the region removed `device`, if it
    /// was a device of the region and is not active.
    pub(crate) fn removal_proof(&self, device: &NodeId) -> Result<Option<Vec<Vec<u8>>>, NodeError> {
        let Some(folded) = self.control()? else {
            return Ok(None);
        };
        let state = &folded.state;
        if !state.devices.contains_key(device) || state.active_device(device).is_some() {
            return Ok(None);
        }
        let mut ops = self.removing_ops(state, device)?;
        let keep = ops.len().saturating_sub(MAX_REMOVED_OPS);
        let ops: Vec<Vec<u8>> = ops.drain(keep..).map(|op| op.encode()).collect();
        Ok((!ops.is_empty()).then_some(ops))
    }

    /// Checks the removal a peer showed this device and keeps it: the op must verify,
    /// be of this region, remove this device or its party, and be signed by whoever
    /// the region's rules let remove it, by this node's own log: a device of an admin
    /// party, or, for `RemoveDevice`, a device of this device's own party (so no
    /// ordinary member of another party can make a device believe it was removed).
    pub(crate) fn take_removal(&mut self, ops: &[Vec<u8>]) -> Result<Option<Removal>, NodeError> {
        let me = self.info().node_id;
        let Some(folded) = self.control()? else {
            return Ok(None);
        };
        let state = &folded.state;
        for bytes in ops.iter().take(MAX_REMOVED_OPS) {
            let Ok(op) = SignedOp::decode(bytes) else {
                continue;
            };
            let author = state.devices.get(&op.op().author);
            let admin = author.is_some_and(|d| state.admin_parties().any(|p| *p == d.party));
            let own_party = matches!(op.op().body, OpBody::RemoveDevice { .. })
                && author
                    .is_some_and(|d| state.devices.get(&me).is_some_and(|m| m.party == d.party));
            if op.op().region != Some(state.region) || !(admin || own_party) {
                continue;
            }
            if let Some(r) = removes(&op, state, &me) {
                self.store
                    .write(|tx| tx.set_setting(REMOVED_NOTICE, bytes))?;
                return Ok(Some(r));
            }
        }
        Ok(None)
    }
}
