//! The region's control log as this node holds it: which region the node is in
//! (a setting), and the fold of the stored ops into the region state, cached while
//! no op is stored. Everything else reads the region through [`Node::control`] and
//! [`Node::region_state`], or through [`control_of`] inside a write transaction.

use std::sync::Arc;

use regiosync_core::control::{Folded, OpHash, RegionId, RegionState, SignedOp, fold};
use regiosync_store::StoreRead;

use crate::Node;
use crate::error::NodeError;

/// Setting key: the region this node is a member of (32 bytes).
pub(crate) const SETTING_REGION: &str = "region";

impl Node {
    /// The region this node is a member of.
    pub fn region(&self) -> Result<Option<RegionId>, NodeError> {
        region_of(&self.store)
    }

    /// The fold of the stored control log; `None` if the node is in no region. The
    /// fold is kept while no op is stored (by this process or another: see
    /// `Store::ops_version`), so that answering a sync request does not refold the
    /// whole log.
    pub fn control(&self) -> Result<Option<Arc<Folded>>, NodeError> {
        let Some(region) = self.region()? else {
            return Ok(None);
        };
        let version = self.store.ops_version()?;
        if let Ok(cache) = self.control_cache.lock()
            && let Some(c) = cache.as_ref()
            && c.region == region
            && c.version == version
        {
            return Ok(Some(c.folded.clone()));
        }
        let folded = Arc::new(fold_stored(region, &self.store.ops()?)?);
        if let Ok(mut cache) = self.control_cache.lock() {
            *cache = Some(ControlCache {
                region,
                version,
                folded: folded.clone(),
            });
        }
        Ok(Some(folded))
    }

    /// The region state; [`NodeError::NotInRegion`] if there is none.
    pub fn region_state(&self) -> Result<RegionState, NodeError> {
        Ok(self.control()?.ok_or(NodeError::NotInRegion)?.state.clone())
    }
}

pub(crate) fn region_of(src: &impl StoreRead) -> Result<Option<RegionId>, NodeError> {
    src.setting(SETTING_REGION)?
        .map(|b| region_from_bytes(&b))
        .transpose()
}

pub(crate) fn control_of(src: &impl StoreRead) -> Result<Option<Folded>, NodeError> {
    let Some(region) = region_of(src)? else {
        return Ok(None);
    };
    Ok(Some(fold_stored(region, &src.ops()?)?))
}

/// Folds stored ops (wire bytes) of `region`.
pub(crate) fn fold_stored(region: RegionId, raw: &[Vec<u8>]) -> Result<Folded, NodeError> {
    let ops = decode_stored_ops(raw);
    fold(region, &ops).map_err(|e| {
        NodeError::DamagedControlLog(format!("the stored control log is incomplete: {e}"))
    })
}

/// A fold of the control log and the store's ops version it was made at.
#[derive(Debug)]
pub(crate) struct ControlCache {
    region: RegionId,
    version: (i64, i64),
    folded: Arc<Folded>,
}

/// Decodes stored ops; an op that no longer decodes is skipped with a warning (it
/// was verified when stored, so this means the store was damaged). Signatures were
/// checked when the ops were stored and are not checked again here.
pub(crate) fn decode_stored_ops(raw: &[Vec<u8>]) -> Vec<SignedOp> {
    raw.iter()
        .filter_map(|b| match SignedOp::decode_stored(b) {
            Ok(op) => Some(op),
            Err(e) => {
                tracing::warn!(error = %e, "skipping a stored control op that does not decode");
                None
            }
        })
        .collect()
}

pub(crate) fn region_from_bytes(b: &[u8]) -> Result<RegionId, NodeError> {
    let arr: [u8; 32] = b
        .try_into()
        .map_err(|_| NodeError::DamagedControlLog("the stored region id is damaged".into()))?;
    Ok(RegionId(OpHash(arr)))
}
