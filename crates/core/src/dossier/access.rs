//! The shape of a dossier's own access log: `Open`, `Grant`, `Revoke`, `Erase`.
//!
//! These ops never enter the region log (the region log must not reveal which
//! students exist or where they live): they are a separate signed DAG per dossier,
//! with their own hash and signature contexts, that travels only with its dossier.
//! They are *validated against* the region state: the author must be an active device,
//! a grantee an active party. This module fixes the ops, their authority, their fold
//! and the key epochs they carry ([`DossierAccess::key_ring`]); sealing is in
//! [`crate::seal`], the sync of dossiers in node. Rules in docs/AUTH.md, "Dossier access
//! log".

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::Date;

use crate::control::linear_order;
use crate::control::{
    MAX_LIST, MAX_PARENTS, OpError, OpHash, Payload, RegionId, RegionState, Signed,
};
use crate::id::{DocId, NodeId, PartyName};
use crate::seal::{KeyRing, MAX_WRAPPED_KEY, SealError, unwrap_key};

/// Longest purpose or reason text, in characters.
pub const MAX_PURPOSE: usize = 500;

/// The legal basis of a grant (AVG art. 6/9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Basis {
    /// Consent of the student (or parents of a minor).
    Toestemming,
    /// A statutory task (Jeugdwet, Wmo, leerplicht, WEB).
    WettelijkeTaak,
}

impl Basis {
    /// The name as the CLI and the docs spell it: `toestemming`, `wettelijke-taak`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Basis::Toestemming => "toestemming",
            Basis::WettelijkeTaak => "wettelijke-taak",
        }
    }
}

impl std::fmt::Display for Basis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An op of a dossier's access log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierOp {
    /// The region whose state validates this log.
    pub region: RegionId,
    /// The dossier (a pseudonymous id, never a BSN).
    pub dossier: DocId,
    /// The heads of the dossier's log the author had seen (empty only for `Open`).
    pub parents: Vec<OpHash>,
    /// The signing device.
    pub author: NodeId,
    /// The author's clock, Unix seconds (advisory; shown as "erased on DATE").
    pub time: i64,
    /// What the op does.
    pub body: DossierBody,
}

/// What a dossier op does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DossierBody {
    /// Starts the dossier's log; the author's party becomes its owner. The dossier's
    /// id is derived from this op ([`dossier_id`]), so nobody else can open a
    /// competing log for it.
    Open {
        /// The owning party (the author's).
        owner: PartyName,
        /// Random, so that the id is unpredictable.
        nonce: [u8; 16],
    },
    /// Gives a party access, with the legal basis and purpose recorded.
    Grant {
        /// The party.
        party: PartyName,
        /// The legal basis.
        basis: Basis,
        /// Why (purpose limitation); no personal data.
        purpose: String,
        /// Last day the grant is in force, if it expires.
        until: Option<[u16; 3]>,
    },
    /// Takes a party's access away (student moved, consent withdrawn).
    Revoke {
        /// The party.
        party: PartyName,
        /// Why; no personal data.
        reason: String,
        /// Hashes of the party's changes the revoker holds (sorted): they stay valid.
        /// Any other change of the party, also one that names access heads from
        /// before the revocation, is refused: a revoked party cannot backdate.
        keep: Vec<[u8; 32]>,
    },
    /// Erases the dossier (crypto-shredding). Carries no data at all.
    Erase,
    /// Content keys, wrapped for devices: starts a new epoch (`new`: a fresh key after
    /// a revocation, a device removal or an expired grant; the first epoch after
    /// `Open`) or adds wrappings of an existing epoch's key (a newly granted party, a
    /// new device of a party with access: they see the history).
    Keys {
        /// The epoch: a random id chosen by whoever starts it (sealed changes name it).
        epoch: u32,
        /// Whether this op starts the epoch.
        new: bool,
        /// One wrapping per device, sorted by device.
        wraps: Vec<KeyWrap>,
    },
}

/// The id of the dossier an `Open` by `author` for `owner` with `nonce` creates: the
/// first 16 bytes of `SHA-256("regiosync/dossier-id/1\0" || author || owner || 0x00 ||
/// nonce)`.
pub fn dossier_id(author: &NodeId, owner: &PartyName, nonce: &[u8; 16]) -> DocId {
    let mut h = Sha256::new();
    h.update(b"regiosync/dossier-id/1\0");
    h.update(author.as_bytes());
    h.update(owner.as_str().as_bytes());
    h.update([0]);
    h.update(nonce);
    let d: [u8; 32] = h.finalize().into();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    DocId::from_bytes(id)
}

/// An epoch key wrapped with age to one device (`seal::wrap_key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrap {
    /// The device that can unwrap it.
    pub device: NodeId,
    /// The age file.
    pub wrapped: Vec<u8>,
}

/// A signed dossier op.
pub type SignedDossierOp = Signed<DossierOp>;

impl Payload for DossierOp {
    const HASH_CONTEXT: &'static [u8] = b"regiosync/dossier-op/1\0";
    const SIG_CONTEXT: &'static [u8] = b"regiosync/dossier-op-signature/1\0";

    fn author(&self) -> NodeId {
        self.author
    }

    fn parents(&self) -> &[OpHash] {
        &self.parents
    }

    fn check_structure(&self) -> Result<(), OpError> {
        let open = matches!(self.body, DossierBody::Open { .. });
        if open != self.parents.is_empty() {
            return Err(OpError::Structure(
                "only open has no parents, and it has none",
            ));
        }
        if self.parents.len() > MAX_PARENTS || !self.parents.windows(2).all(|w| w[0] < w[1]) {
            return Err(OpError::Structure(
                "parents must be sorted, unique and bounded",
            ));
        }
        let text_ok = |t: &str| !t.trim().is_empty() && t.chars().count() <= MAX_PURPOSE;
        match &self.body {
            DossierBody::Grant { purpose, until, .. } => {
                if !text_ok(purpose) {
                    return Err(OpError::Structure(
                        "a grant needs a purpose of 1-500 characters",
                    ));
                }
                if let Some(d) = until {
                    until_date(d)
                        .ok_or(OpError::Structure("the grant's end date does not exist"))?;
                }
            }
            DossierBody::Revoke { reason, keep, .. } => {
                if !text_ok(reason) {
                    return Err(OpError::Structure(
                        "a revocation needs a reason of 1-500 characters",
                    ));
                }
                if keep.len() > MAX_LIST || !keep.windows(2).all(|w| w[0] < w[1]) {
                    return Err(OpError::Structure(
                        "kept changes must be sorted, unique, at most 1024",
                    ));
                }
            }
            DossierBody::Keys { wraps, .. } => {
                if wraps.is_empty() || wraps.len() > MAX_LIST {
                    return Err(OpError::Structure("a keys op has 1-1024 wrappings"));
                }
                if !wraps.windows(2).all(|w| w[0].device < w[1].device) {
                    return Err(OpError::Structure(
                        "wrappings must be sorted by device, one per device",
                    ));
                }
                if wraps
                    .iter()
                    .any(|w| w.wrapped.is_empty() || w.wrapped.len() > MAX_WRAPPED_KEY)
                {
                    return Err(OpError::Structure("a wrapped key is empty or too large"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn until_date(d: &[u16; 3]) -> Option<Date> {
    let month = time::Month::try_from(u8::try_from(d[1]).ok()?).ok()?;
    Date::from_calendar_date(i32::from(d[0]), month, u8::try_from(d[2]).ok()?).ok()
}

/// Converts a date to the `until` form of a grant.
pub fn until_of(d: Date) -> [u16; 3] {
    [
        d.year().clamp(0, 9999) as u16,
        u8::from(d.month()).into(),
        d.day().into(),
    ]
}

/// A grant in force (or expired: see [`DossierAccess::in_force`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantState {
    /// The legal basis.
    pub basis: Basis,
    /// The purpose.
    pub purpose: String,
    /// Last day in force.
    pub until: Option<Date>,
    /// The op that granted it.
    pub granted_by: OpHash,
}

/// Who erased a dossier, and when (by the eraser's clock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// The erasing party.
    pub by: PartyName,
    /// When, Unix seconds.
    pub at: i64,
}

/// Why a dossier op was not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum DossierRejection {
    /// The op belongs to another dossier or region.
    #[error("the op belongs to another dossier or region")]
    WrongDossier,
    /// The author device is not a device of the region.
    #[error("the author device is not a device of the region")]
    UnknownAuthor,
    /// The author device was removed from the region, and no active device built on
    /// this op.
    #[error("the author device was removed from the region")]
    AuthorRemoved,
    /// Only the owner party may grant or revoke.
    #[error("only the dossier's owner party may do this")]
    NotOwner,
    /// Only the owner party or a region admin may erase.
    #[error("only the dossier's owner party or a region admin may erase it")]
    NotOwnerOrAdmin,
    /// A grant to a party that is not an active member of the region.
    #[error("the party is not an active member of the region")]
    UnknownParty,
    /// A revocation of a party that has no grant.
    #[error("the party has no grant to revoke")]
    NoGrant,
    /// The dossier is erased: nothing more happens to it.
    #[error("the dossier is erased")]
    Erased,
    /// A second `Open`.
    #[error("the dossier's log was already opened")]
    SecondOpen,
    /// Keys from a device whose party has no access to the dossier.
    #[error("the author's party has no access to the dossier")]
    NoAccess,
    /// A key wrapped for a device whose party has no access (or that is not active).
    #[error("a key is wrapped for a device without access to the dossier")]
    WrapToOutsider,
    /// A new epoch with an id already in use.
    #[error("the epoch id is already in use")]
    EpochTaken,
    /// Wrappings for an epoch that was never started.
    #[error("the epoch is unknown")]
    UnknownEpoch,
}

/// One epoch of a dossier's content key: the wrappings made of it, per device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EpochKeys {
    /// The epoch id (named by sealed changes).
    pub epoch: u32,
    /// The op that started it.
    pub started_by: OpHash,
    /// Every device that held this key: the ones it was wrapped for and the authors
    /// of its key ops (who had it in the clear).
    pub holders: BTreeSet<NodeId>,
    /// Wrapped copies by device, in the order they were made. Later copies never
    /// replace earlier ones: a member cannot take a device's key away by filing a
    /// bad copy under it; the device tries each.
    #[serde(skip)]
    pub wraps: BTreeMap<NodeId, Vec<Vec<u8>>>,
}

/// Most wrapped copies of one epoch key kept per device.
pub const MAX_WRAPS_PER_DEVICE: usize = 4;

/// The access state of a dossier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DossierAccess {
    /// The dossier.
    pub dossier: DocId,
    /// The owning party (always has access until erasure).
    pub owner: PartyName,
    /// Grants by party.
    pub grants: BTreeMap<PartyName, GrantState>,
    /// Set once erased.
    pub erased: Option<Erased>,
    /// The key epochs, oldest first; the last is the one to seal with. Emptied on
    /// erasure.
    pub epochs: Vec<EpochKeys>,
    /// Per revoked party, its changes that stay valid (the `keep` lists of its
    /// revocations).
    #[serde(skip)]
    pub kept: BTreeMap<PartyName, BTreeSet<[u8; 32]>>,
    /// Rejected ops and why.
    #[serde(skip)]
    pub rejected: BTreeMap<OpHash, DossierRejection>,
    /// Ops waiting for unknown parents.
    #[serde(skip)]
    pub pending: BTreeSet<OpHash>,
}

/// What decides who may read a dossier on a given day, taken from its fold: the
/// owner and each granted party with the grant's end; nobody once erased. Small and
/// independent of the date and of region ops that do not touch membership, so a
/// node keeps it per dossier (the store's index of readers, keyed by
/// [`RegionState::access_digest`]) instead of folding every dossier's log again at
/// start-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessSummary {
    /// The owner; `None` once erased (nobody may read).
    owner: Option<PartyName>,
    /// Granted parties and the day each grant ends (inclusive), as Julian day
    /// numbers (`None`: no end).
    grants: Vec<(PartyName, Option<i32>)>,
}

/// Format byte of an encoded [`AccessSummary`].
const ACCESS_SUMMARY_FORMAT: u8 = 1;

impl AccessSummary {
    /// Nobody may read (a log without its `Open`, an erased dossier).
    pub fn nobody() -> Self {
        Self {
            owner: None,
            grants: vec![],
        }
    }

    /// Parties that may read the dossier on `today`: the owner and every grant not
    /// expired, while they are active members of the region; nobody once erased.
    pub fn in_force(&self, region: &RegionState, today: Date) -> BTreeSet<PartyName> {
        let Some(owner) = &self.owner else {
            return BTreeSet::new();
        };
        let today = today.to_julian_day();
        std::iter::once(owner)
            .chain(
                self.grants
                    .iter()
                    .filter(|(_, until)| until.is_none_or(|u| today <= u))
                    .map(|(p, _)| p),
            )
            .filter(|p| region.active_party(p).is_some())
            .cloned()
            .collect()
    }

    /// `[format = 1][postcard(self)]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ACCESS_SUMMARY_FORMAT];
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Decodes [`Self::encode`]'s form; `None` for another format or bad bytes
    /// (the caller folds the log again).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes.split_first() {
            Some((&ACCESS_SUMMARY_FORMAT, rest)) => postcard::from_bytes(rest).ok(),
            _ => None,
        }
    }
}

impl DossierAccess {
    /// The [`AccessSummary`] of this fold.
    pub fn summary(&self) -> AccessSummary {
        AccessSummary {
            owner: self.erased.is_none().then(|| self.owner.clone()),
            grants: self
                .grants
                .iter()
                .map(|(p, g)| (p.clone(), g.until.map(Date::to_julian_day)))
                .collect(),
        }
    }

    /// Parties that may read the dossier on `today`: the owner and every grant not
    /// expired, while they are active members of the region; nobody once erased.
    pub fn in_force(&self, region: &RegionState, today: Date) -> BTreeSet<PartyName> {
        self.summary().in_force(region, today)
    }

    /// Whether `party` has access at all (owner, or a grant that may have expired).
    pub fn has_access(&self, party: &PartyName) -> bool {
        *party == self.owner || self.grants.contains_key(party)
    }

    /// The epoch to seal new changes with.
    pub fn current_epoch(&self) -> Option<&EpochKeys> {
        self.epochs.last()
    }

    /// Devices that may hold the dossier's keys on `today`: active devices of the
    /// parties in force.
    pub fn devices_in_force(&self, region: &RegionState, today: Date) -> BTreeSet<NodeId> {
        let parties = self.in_force(region, today);
        region
            .devices
            .iter()
            .filter(|(d, dev)| region.active_device(d).is_some() && parties.contains(&dev.party))
            .map(|(d, _)| *d)
            .collect()
    }

    /// Whether the next change must be sealed under a new epoch first: a device that
    /// held the current key (it was wrapped for it, or it made a key op of it) no
    /// longer has access (its party was revoked or its grant expired, or the device
    /// was removed), or there is no epoch yet.
    pub fn needs_rotation(&self, region: &RegionState, today: Date) -> bool {
        let allowed = self.devices_in_force(region, today);
        match self.current_epoch() {
            None => true,
            Some(e) => e.holders.iter().any(|d| !allowed.contains(d)),
        }
    }

    /// Devices with access that lack a wrapping of some epoch, per epoch (a newly
    /// granted party, a new device): they are given every epoch, the history too.
    pub fn missing_wraps(&self, region: &RegionState, today: Date) -> BTreeMap<u32, Vec<NodeId>> {
        let allowed = self.devices_in_force(region, today);
        self.epochs
            .iter()
            .map(|e| {
                (
                    e.epoch,
                    allowed
                        .iter()
                        .filter(|d| !e.wraps.contains_key(d))
                        .copied()
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }

    /// Unwraps every epoch key addressed to `device` with its age identity. Keys that
    /// do not unwrap (altered, or bound to another dossier or epoch) are left out and
    /// reported with the reason; the others still open what they sealed.
    pub fn key_ring(
        &self,
        device: &NodeId,
        identity: &age::x25519::Identity,
    ) -> (KeyRing, Vec<(u32, SealError)>) {
        let mut ring = KeyRing::new(self.dossier);
        let mut failed = Vec::new();
        for (epoch, copies) in self.wraps_for(device) {
            let mut last_error = None;
            for wrapped in copies {
                match unwrap_key(wrapped, &self.dossier, epoch, identity) {
                    Ok(k) => {
                        ring.insert(epoch, k);
                        last_error = None;
                        break;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if let Some(e) = last_error {
                failed.push((epoch, e));
            }
        }
        (ring, failed)
    }

    /// The wrapped copies addressed to `device`, by epoch.
    pub fn wraps_for(&self, device: &NodeId) -> Vec<(u32, &[Vec<u8>])> {
        self.epochs
            .iter()
            .filter_map(|e| e.wraps.get(device).map(|w| (e.epoch, w.as_slice())))
            .collect()
    }
}

/// Folds the part of a dossier's access log that an author had seen: the ops in the
/// causal past of `heads` (inclusive). This is the state a change was made under
/// when its envelope names those heads, e.g. the epoch it had to be sealed with.
/// `None` if a head is unknown here (the op has not arrived yet) or there is no
/// `Open` in that past.
pub fn fold_dossier_at<'a>(
    region: &RegionState,
    dossier: DocId,
    ops: impl IntoIterator<Item = &'a SignedDossierOp>,
    heads: &[OpHash],
) -> Option<DossierAccess> {
    let by_hash: BTreeMap<OpHash, &SignedDossierOp> =
        ops.into_iter().map(|o| (o.hash(), o)).collect();
    let mut past: BTreeSet<OpHash> = BTreeSet::new();
    let mut stack: Vec<OpHash> = heads.to_vec();
    while let Some(h) = stack.pop() {
        let op = by_hash.get(&h)?;
        if past.insert(h) {
            stack.extend(op.payload().parents.iter().copied());
        }
    }
    fold_dossier(
        region,
        dossier,
        past.iter().filter_map(|h| by_hash.get(h).copied()),
    )
}

/// Folds a dossier's access log, validated against the region state. `None` if the
/// log has no `Open` op for `dossier` yet.
pub fn fold_dossier<'a>(
    region: &RegionState,
    dossier: DocId,
    ops: impl IntoIterator<Item = &'a SignedDossierOp>,
) -> Option<DossierAccess> {
    let mut all: BTreeMap<OpHash, &SignedDossierOp> = BTreeMap::new();
    let mut rejected = BTreeMap::new();
    for op in ops {
        let p = op.payload();
        if p.dossier == dossier && p.region == region.region {
            all.insert(op.hash(), op);
        } else {
            rejected.insert(op.hash(), DossierRejection::WrongDossier);
        }
    }
    // The root: the `Open` the dossier's id was derived from (only its author can
    // make it; should it sign two, the smaller hash). Any other `Open` is refused.
    let mut opens: Vec<(OpHash, &PartyName)> = Vec::new();
    for (h, o) in &all {
        if let DossierBody::Open { owner, nonce } = &o.payload().body {
            if dossier_id(&o.payload().author, owner, nonce) == dossier {
                opens.push((*h, owner));
            } else {
                rejected.insert(*h, DossierRejection::WrongDossier);
            }
        }
    }
    let &(root, owner) = opens.first()?;
    for (h, _) in &opens[1..] {
        rejected.insert(*h, DossierRejection::SecondOpen);
    }
    let (order, pending) = linear_order(
        root,
        all.iter().map(|(h, o)| {
            (
                *h,
                o.payload().parents.as_slice(),
                matches!(
                    o.payload().body,
                    DossierBody::Revoke { .. } | DossierBody::Erase
                ),
            )
        }),
    );
    // Ops by devices removed from the region stand only where an accepted op of an
    // active device of the owner party built on them (that device saw them before it
    // learned of the removal): a lost laptop's past work stays, what it signs
    // afterwards does not. Only the owner party vouches: a member of another party
    // (with or without access) could otherwise name a thief's backdated grant to
    // itself as a parent and so make it stand. Only accepted ops vouch: the fold
    // starts from every placed op of the owner party's active devices and refolds
    // without those it rejects; the set only shrinks, so this ends (usually after
    // one fold).
    let owner_device = |o: &SignedDossierOp| {
        region
            .active_device(&o.payload().author)
            .is_some_and(|d| d.party == *owner)
    };
    let mut vouchers: BTreeSet<OpHash> = order
        .iter()
        .filter(|h| owner_device(all[*h]))
        .copied()
        .collect();
    loop {
        let vouched = ancestors(&all, &vouchers);
        let acc = apply_in_order(
            region, dossier, owner, &order, &all, &vouched, &rejected, &pending,
        )?;
        let still: BTreeSet<OpHash> = vouchers
            .iter()
            .filter(|h| !acc.rejected.contains_key(*h))
            .copied()
            .collect();
        if still.len() == vouchers.len() {
            return Some(acc);
        }
        vouchers = still;
    }
}

/// The strict ancestors of `of` among `all` (parents not in `all` are skipped).
fn ancestors(all: &BTreeMap<OpHash, &SignedDossierOp>, of: &BTreeSet<OpHash>) -> BTreeSet<OpHash> {
    let mut out: BTreeSet<OpHash> = BTreeSet::new();
    let mut stack: Vec<OpHash> = of
        .iter()
        .filter_map(|h| all.get(h))
        .flat_map(|o| o.payload().parents.iter().copied())
        .collect();
    while let Some(h) = stack.pop() {
        if let Some(op) = all.get(&h)
            && out.insert(h)
        {
            stack.extend(op.payload().parents.iter().copied());
        }
    }
    out
}

/// Applies the placed ops in their linear order; `None` if the root is refused.
#[allow(clippy::too_many_arguments)]
fn apply_in_order(
    region: &RegionState,
    dossier: DocId,
    owner: &PartyName,
    order: &[OpHash],
    all: &BTreeMap<OpHash, &SignedDossierOp>,
    vouched: &BTreeSet<OpHash>,
    rejected: &BTreeMap<OpHash, DossierRejection>,
    pending: &BTreeSet<OpHash>,
) -> Option<DossierAccess> {
    let mut acc = DossierAccess {
        dossier,
        owner: owner.clone(),
        grants: BTreeMap::new(),
        erased: None,
        epochs: Vec::new(),
        kept: BTreeMap::new(),
        rejected: rejected.clone(),
        pending: pending.clone(),
    };
    for (i, h) in order.iter().enumerate() {
        let op = all[h].payload();
        if let Err(why) = apply_dossier(&mut acc, region, op, *h, vouched.contains(h)) {
            if i == 0 {
                // Without a valid root there is no dossier to apply anything to.
                return None;
            }
            acc.rejected.insert(*h, why);
        }
    }
    Some(acc)
}

/// Checks an `Erase` op on its own, against the dossier's `Open`: what a node checks
/// when it lacks part of the access log (a revoked party was not sent what came after
/// its revocation) before it destroys its copy. The author must be an active device
/// of the owner party or of a region admin party; the op's parents do not matter
/// (erasure is final whatever it was built on). Returns who erased it and when.
pub fn check_erase(
    region: &RegionState,
    dossier: DocId,
    open: &SignedDossierOp,
    erase: &SignedDossierOp,
) -> Result<Erased, DossierRejection> {
    let (o, e) = (open.payload(), erase.payload());
    let DossierBody::Open { owner, nonce } = &o.body else {
        return Err(DossierRejection::WrongDossier);
    };
    if !matches!(e.body, DossierBody::Erase)
        || dossier_id(&o.author, owner, nonce) != dossier
        || o.dossier != dossier
        || e.dossier != dossier
        || o.region != region.region
        || e.region != region.region
    {
        return Err(DossierRejection::WrongDossier);
    }
    let device = match region.active_device(&e.author) {
        Some(d) => d,
        None if region.devices.contains_key(&e.author) => {
            return Err(DossierRejection::AuthorRemoved);
        }
        None => return Err(DossierRejection::UnknownAuthor),
    };
    let admin = region.active_party(&device.party).is_some_and(|p| p.admin);
    if device.party != *owner && !admin {
        return Err(DossierRejection::NotOwnerOrAdmin);
    }
    Ok(Erased {
        by: device.party.clone(),
        at: e.time,
    })
}

/// Every party that ever had access by `log`: the owner and every party of an
/// accepted grant, revoked ones included. They may hold ciphertext of the dossier,
/// so they are the ones that must learn of its erasure.
pub fn ever_granted<'a>(
    access: &DossierAccess,
    log: impl IntoIterator<Item = &'a SignedDossierOp>,
) -> BTreeSet<PartyName> {
    let mut out = BTreeSet::from([access.owner.clone()]);
    for op in log {
        if let DossierBody::Grant { party, .. } = &op.payload().body {
            let h = op.hash();
            if !access.rejected.contains_key(&h) && !access.pending.contains(&h) {
                out.insert(party.clone());
            }
        }
    }
    out
}

fn apply_dossier(
    acc: &mut DossierAccess,
    region: &RegionState,
    op: &DossierOp,
    hash: OpHash,
    vouched: bool,
) -> Result<(), DossierRejection> {
    if acc.erased.is_some() {
        return Err(DossierRejection::Erased);
    }
    let party = match region.active_device(&op.author) {
        Some(d) => &d.party,
        None => match region.devices.get(&op.author) {
            Some(d) if vouched => &d.party,
            Some(_) => return Err(DossierRejection::AuthorRemoved),
            None => return Err(DossierRejection::UnknownAuthor),
        },
    };
    let owner = *party == acc.owner;
    match &op.body {
        DossierBody::Open { owner: o, .. } => {
            if o != party {
                return Err(DossierRejection::NotOwner);
            }
        }
        DossierBody::Grant {
            party: grantee,
            basis,
            purpose,
            until,
        } => {
            if !owner {
                return Err(DossierRejection::NotOwner);
            }
            if region.active_party(grantee).is_none() {
                return Err(DossierRejection::UnknownParty);
            }
            acc.grants.insert(
                grantee.clone(),
                GrantState {
                    basis: *basis,
                    purpose: purpose.clone(),
                    until: until.as_ref().and_then(until_date),
                    granted_by: hash,
                },
            );
        }
        DossierBody::Revoke {
            party: grantee,
            keep,
            ..
        } => {
            if !owner {
                return Err(DossierRejection::NotOwner);
            }
            if acc.grants.remove(grantee).is_none() {
                return Err(DossierRejection::NoGrant);
            }
            acc.kept
                .entry(grantee.clone())
                .or_default()
                .extend(keep.iter().copied());
        }
        DossierBody::Erase => {
            let admin = region.active_party(party).is_some_and(|p| p.admin);
            if !owner && !admin {
                return Err(DossierRejection::NotOwnerOrAdmin);
            }
            acc.erased = Some(Erased {
                by: party.clone(),
                at: op.time,
            });
            acc.grants.clear();
            acc.epochs.clear();
        }
        DossierBody::Keys { epoch, new, wraps } => {
            if !acc.has_access(party) {
                return Err(DossierRejection::NoAccess);
            }
            for w in wraps {
                // A device removed since counts where the op stands on its own past
                // (vouched): the wrapping was made while the device was a member.
                let device = match region.active_device(&w.device) {
                    Some(d) => Some(d),
                    None if vouched => region.devices.get(&w.device),
                    None => None,
                };
                let ok = device.is_some_and(|d| acc.has_access(&d.party));
                if !ok {
                    return Err(DossierRejection::WrapToOutsider);
                }
            }
            if *new && !owner {
                // Starting an epoch decides which key writers must use: the owner's.
                return Err(DossierRejection::NotOwner);
            }
            let existing = acc.epochs.iter().position(|e| e.epoch == *epoch);
            let target = match (new, existing) {
                (true, Some(_)) => return Err(DossierRejection::EpochTaken),
                (false, None) => return Err(DossierRejection::UnknownEpoch),
                (true, None) => {
                    acc.epochs.push(EpochKeys {
                        epoch: *epoch,
                        started_by: hash,
                        holders: BTreeSet::new(),
                        wraps: BTreeMap::new(),
                    });
                    acc.epochs.len() - 1
                }
                (false, Some(i)) => i,
            };
            acc.epochs[target].holders.insert(op.author);
            for w in wraps {
                acc.epochs[target].holders.insert(w.device);
                let copies = acc.epochs[target].wraps.entry(w.device).or_default();
                if copies.len() < MAX_WRAPS_PER_DEVICE && !copies.contains(&w.wrapped) {
                    copies.push(w.wrapped.clone());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{OpBody, SignedOp, fold};
    use crate::id::Role;
    use crate::identity::NodeSecret;

    fn p(s: &str) -> PartyName {
        PartyName::new(s).unwrap()
    }

    struct R {
        state: RegionState,
        roc: NodeSecret,
        gem_a: NodeSecret,
        gem_b: NodeSecret,
        admin: NodeSecret,
    }

    fn region() -> R {
        let admin = NodeSecret::generate().unwrap();
        let roc = NodeSecret::generate().unwrap();
        let gem_a = NodeSecret::generate().unwrap();
        let gem_b = NodeSecret::generate().unwrap();
        let sign = crate::testkit::sign_op;
        let g = crate::testkit::genesis(&admin, "gemeente-kern", Role::Kerngemeente);
        let r = Some(RegionId(g.hash()));
        let mut ops = vec![g];
        for (party, role, dev) in [
            ("roc-x", Role::Roc, &roc),
            ("gemeente-a", Role::Gemeente, &gem_a),
            ("gemeente-b", Role::Gemeente, &gem_b),
        ] {
            let last = ops.last().unwrap().hash();
            let op = sign(
                &admin,
                r,
                vec![last],
                OpBody::AddParty {
                    party: p(party),
                    role,
                },
            );
            let h = op.hash();
            ops.push(op);
            ops.push(sign(
                &admin,
                r,
                vec![h],
                OpBody::AddDevice {
                    party: p(party),
                    device: dev.node_id(),
                    age_recipient: dev.age_recipient().to_string(),
                },
            ));
        }
        let state = fold(RegionId(ops[0].hash()), &ops).unwrap().state;
        R {
            state,
            roc,
            gem_a,
            gem_b,
            admin,
        }
    }

    fn dop(
        r: &R,
        by: &NodeSecret,
        dossier: DocId,
        parents: Vec<OpHash>,
        body: DossierBody,
    ) -> SignedDossierOp {
        let mut parents = parents;
        parents.sort();
        Signed::sign(
            DossierOp {
                region: r.state.region,
                dossier,
                parents,
                author: by.node_id(),
                time: 1_700_000_000,
                body,
            },
            by.signing_key(),
        )
        .unwrap()
    }

    /// Opens a new dossier by `by` for `owner`: its id and the `Open` op.
    fn open_dossier(r: &R, by: &NodeSecret, owner: &str) -> (DocId, SignedDossierOp) {
        let nonce: [u8; 16] = rand_nonce();
        let d = dossier_id(&by.node_id(), &p(owner), &nonce);
        let op = dop(
            r,
            by,
            d,
            vec![],
            DossierBody::Open {
                owner: p(owner),
                nonce,
            },
        );
        (d, op)
    }

    fn rand_nonce() -> [u8; 16] {
        let mut n = [0u8; 16];
        crate::id::fill_random(&mut n).unwrap();
        n
    }

    fn grant(party: &str) -> DossierBody {
        DossierBody::Grant {
            party: p(party),
            basis: Basis::WettelijkeTaak,
            purpose: "Jeugdwet: ondersteuning".into(),
            until: None,
        }
    }

    #[test]
    fn owner_grants_revokes_and_erases() {
        let r = region();
        let (d, open) = open_dossier(&r, &r.roc, "roc-x");
        let g = dop(&r, &r.roc, d, vec![open.hash()], grant("gemeente-a"));
        let acc = fold_dossier(&r.state, d, [&open, &g]).unwrap();
        let today = Date::from_calendar_date(2027, time::Month::January, 1).unwrap();
        assert_eq!(
            acc.in_force(&r.state, today),
            BTreeSet::from([p("roc-x"), p("gemeente-a")])
        );
        // The student moves: revoke A, grant B.
        let rv = dop(
            &r,
            &r.roc,
            d,
            vec![g.hash()],
            DossierBody::Revoke {
                party: p("gemeente-a"),
                reason: "verhuisd".into(),
                keep: vec![],
            },
        );
        let gb = dop(&r, &r.roc, d, vec![rv.hash()], grant("gemeente-b"));
        let acc = fold_dossier(&r.state, d, [&open, &g, &rv, &gb]).unwrap();
        assert_eq!(
            acc.in_force(&r.state, today),
            BTreeSet::from([p("roc-x"), p("gemeente-b")])
        );
        // A region admin erases; nothing is in force and later ops are refused.
        let er = dop(&r, &r.admin, d, vec![gb.hash()], DossierBody::Erase);
        let late = dop(&r, &r.roc, d, vec![er.hash()], grant("gemeente-a"));
        let acc = fold_dossier(&r.state, d, [&open, &g, &rv, &gb, &er, &late]).unwrap();
        assert!(acc.in_force(&r.state, today).is_empty());
        assert_eq!(acc.erased.as_ref().unwrap().by, p("gemeente-kern"));
        assert_eq!(
            acc.rejected.get(&late.hash()),
            Some(&DossierRejection::Erased)
        );
    }

    #[test]
    fn an_erase_checks_on_its_own_and_former_parties_are_listed() {
        let r = region();
        let (d, open) = open_dossier(&r, &r.roc, "roc-x");
        let g = dop(&r, &r.roc, d, vec![open.hash()], grant("gemeente-a"));
        let rv = dop(
            &r,
            &r.roc,
            d,
            vec![g.hash()],
            DossierBody::Revoke {
                party: p("gemeente-a"),
                reason: "verhuisd".into(),
                keep: vec![],
            },
        );
        let gb = dop(&r, &r.roc, d, vec![rv.hash()], grant("gemeente-b"));
        let bad = dop(&r, &r.gem_a, d, vec![gb.hash()], grant("gemeente-a"));
        let log = [&open, &g, &rv, &gb, &bad];
        let acc = fold_dossier(&r.state, d, log).unwrap();
        // The revoked party is still listed (it holds old ciphertext); a refused
        // grant adds nobody.
        assert_eq!(
            ever_granted(&acc, log),
            BTreeSet::from([p("roc-x"), p("gemeente-a"), p("gemeente-b")])
        );
        // An erase whose parents a revoked party never received still checks.
        let er = dop(&r, &r.admin, d, vec![gb.hash()], DossierBody::Erase);
        let e = check_erase(&r.state, d, &open, &er).unwrap();
        assert_eq!(e.by, p("gemeente-kern"));
        assert_eq!(
            check_erase(
                &r.state,
                d,
                &open,
                &dop(&r, &r.roc, d, vec![open.hash()], DossierBody::Erase)
            )
            .unwrap()
            .by,
            p("roc-x")
        );
        // Attacks: erase by a party that is neither owner nor admin, an erase of
        // another dossier, a non-erase op, a wrong open.
        let by_b = dop(&r, &r.gem_b, d, vec![open.hash()], DossierBody::Erase);
        assert_eq!(
            check_erase(&r.state, d, &open, &by_b),
            Err(DossierRejection::NotOwnerOrAdmin)
        );
        let (d2, open2) = open_dossier(&r, &r.roc, "roc-x");
        let er2 = dop(&r, &r.roc, d2, vec![open2.hash()], DossierBody::Erase);
        assert_eq!(
            check_erase(&r.state, d, &open, &er2),
            Err(DossierRejection::WrongDossier)
        );
        assert_eq!(
            check_erase(&r.state, d, &open2, &er),
            Err(DossierRejection::WrongDossier)
        );
        assert_eq!(
            check_erase(&r.state, d, &open, &g),
            Err(DossierRejection::WrongDossier)
        );
        // A removed device cannot erase.
        let stranger = NodeSecret::generate().unwrap();
        let by_stranger = dop(&r, &stranger, d, vec![open.hash()], DossierBody::Erase);
        assert_eq!(
            check_erase(&r.state, d, &open, &by_stranger),
            Err(DossierRejection::UnknownAuthor)
        );
    }

    #[test]
    fn attacks_on_the_access_log_are_rejected() {
        let r = region();
        let (d, open) = open_dossier(&r, &r.roc, "roc-x");
        // A grant by a party without authority (gemeente-a grants itself gemeente-b).
        let by_other = dop(&r, &r.gem_a, d, vec![open.hash()], grant("gemeente-b"));
        // A grant to an unknown party.
        let unknown = dop(&r, &r.roc, d, vec![open.hash()], grant("gemeente-nergens"));
        // Erase by a non-owner, non-admin.
        let erase = dop(&r, &r.gem_b, d, vec![open.hash()], DossierBody::Erase);
        // An op of another dossier mixed in.
        let other = dop(
            &r,
            &r.roc,
            DocId::random().unwrap(),
            vec![open.hash()],
            grant("gemeente-a"),
        );
        let acc = fold_dossier(&r.state, d, [&open, &by_other, &unknown, &erase, &other]).unwrap();
        assert_eq!(acc.rejected[&by_other.hash()], DossierRejection::NotOwner);
        assert_eq!(
            acc.rejected[&unknown.hash()],
            DossierRejection::UnknownParty
        );
        assert_eq!(
            acc.rejected[&erase.hash()],
            DossierRejection::NotOwnerOrAdmin
        );
        assert_eq!(acc.rejected[&other.hash()], DossierRejection::WrongDossier);
        assert!(acc.grants.is_empty() && acc.erased.is_none());
        // A competing `Open` for this dossier by someone else: it cannot derive to the
        // dossier's id, so it is refused, whatever its hash.
        let fake_open = dop(
            &r,
            &r.gem_a,
            d,
            vec![],
            DossierBody::Open {
                owner: p("gemeente-a"),
                nonce: rand_nonce(),
            },
        );
        assert!(fold_dossier(&r.state, d, [&fake_open]).is_none());
        let acc = fold_dossier(&r.state, d, [&open, &fake_open]).unwrap();
        assert_eq!(acc.owner, p("roc-x"));
        assert_eq!(
            acc.rejected[&fake_open.hash()],
            DossierRejection::WrongDossier
        );
        // An `Open` whose id derives but names another party as owner.
        let nonce = rand_nonce();
        let d2 = dossier_id(&r.roc.node_id(), &p("gemeente-a"), &nonce);
        let claimed = dop(
            &r,
            &r.roc,
            d2,
            vec![],
            DossierBody::Open {
                owner: p("gemeente-a"),
                nonce,
            },
        );
        // Its root is invalid, so there is no dossier at all, whatever builds on it.
        let on_top = dop(&r, &r.roc, d2, vec![claimed.hash()], grant("gemeente-b"));
        assert!(fold_dossier(&r.state, d2, [&claimed, &on_top]).is_none());
        // A dossier op is not a region op: it does not decode as one.
        assert!(SignedOp::decode(&open.encode()).is_err());
    }

    #[test]
    fn expired_grants_are_not_in_force() {
        let r = region();
        let (d, open) = open_dossier(&r, &r.roc, "roc-x");
        let until = Date::from_calendar_date(2027, time::Month::July, 31).unwrap();
        let g = dop(
            &r,
            &r.roc,
            d,
            vec![open.hash()],
            DossierBody::Grant {
                party: p("gemeente-a"),
                basis: Basis::Toestemming,
                purpose: "Toestemming ouders: afstemming zorg".into(),
                until: Some(until_of(until)),
            },
        );
        let acc = fold_dossier(&r.state, d, [&open, &g]).unwrap();
        assert!(acc.in_force(&r.state, until).contains(&p("gemeente-a")));
        assert!(
            !acc.in_force(&r.state, until.next_day().unwrap())
                .contains(&p("gemeente-a"))
        );
        // Structure: no purpose, impossible dates.
        let bad = DossierOp {
            region: r.state.region,
            dossier: d,
            parents: vec![open.hash()],
            author: r.roc.node_id(),
            time: 0,
            body: DossierBody::Grant {
                party: p("gemeente-a"),
                basis: Basis::Toestemming,
                purpose: " ".into(),
                until: None,
            },
        };
        assert!(Signed::sign(bad.clone(), r.roc.signing_key()).is_err());
        let bad_date = DossierOp {
            body: DossierBody::Grant {
                party: p("gemeente-a"),
                basis: Basis::Toestemming,
                purpose: "x".into(),
                until: Some([2027, 2, 30]),
            },
            ..bad
        };
        assert!(Signed::sign(bad_date, r.roc.signing_key()).is_err());
    }

    fn keys(
        d: DocId,
        epoch: u32,
        new: bool,
        key: &crate::seal::ContentKey,
        to: &[&NodeSecret],
    ) -> DossierBody {
        let mut wraps: Vec<KeyWrap> = to
            .iter()
            .map(|s| KeyWrap {
                device: s.node_id(),
                wrapped: crate::seal::wrap_key(key, &d, epoch, &s.age_recipient()).unwrap(),
            })
            .collect();
        wraps.sort_by_key(|w| w.device);
        DossierBody::Keys { epoch, new, wraps }
    }

    #[test]
    fn key_epochs_follow_grants_revocations_and_erasure() {
        use crate::seal::ContentKey;
        let r = region();
        let today = Date::from_calendar_date(2027, time::Month::January, 1).unwrap();
        let ring_of = |acc: &DossierAccess, s: &NodeSecret| -> Vec<u32> {
            let (ring, failed) = acc.key_ring(&s.node_id(), s.age_identity());
            assert!(failed.is_empty(), "{failed:?}");
            ring.epochs().collect()
        };
        let (d, open) = open_dossier(&r, &r.roc, "roc-x");
        let mut log: Vec<SignedDossierOp> = vec![open];
        let add = |log: &mut Vec<SignedDossierOp>, by: &NodeSecret, body| {
            let acc = fold_dossier(&r.state, d, log.iter()).unwrap();
            let heads: Vec<OpHash> = log
                .iter()
                .map(|o| o.hash())
                .filter(|h| !log.iter().any(|o| o.payload().parents.contains(h)))
                .filter(|h| !acc.rejected.contains_key(h))
                .collect();
            let op = dop(&r, by, d, heads, body);
            log.push(op.clone());
            op
        };
        let folded = |log: &Vec<SignedDossierOp>| fold_dossier(&r.state, d, log.iter()).unwrap();
        assert!(folded(&log).needs_rotation(&r.state, today), "no epoch yet");
        let k7 = ContentKey::generate().unwrap();
        add(&mut log, &r.roc, keys(d, 7, true, &k7, &[&r.roc]));
        let acc = folded(&log);
        assert_eq!(acc.current_epoch().map(|e| e.epoch), Some(7));
        assert!(!acc.needs_rotation(&r.state, today));
        assert_eq!(ring_of(&acc, &r.roc), vec![7]);

        // Grant A; A's device gets epoch 7.
        add(&mut log, &r.roc, grant("gemeente-a"));
        assert_eq!(
            folded(&log).missing_wraps(&r.state, today),
            BTreeMap::from([(7, vec![r.gem_a.node_id()])])
        );
        add(&mut log, &r.roc, keys(d, 7, false, &k7, &[&r.gem_a]));
        let acc = folded(&log);
        assert!(acc.missing_wraps(&r.state, today).is_empty());
        assert_eq!(ring_of(&acc, &r.gem_a), vec![7]);

        // Attacks: keys from a party without access, a key for an outsider, a reused
        // epoch id, wrappings for an epoch never started.
        let k_evil = ContentKey::generate().unwrap();
        for (by, body, why) in [
            (
                &r.gem_b,
                keys(d, 9, true, &k_evil, &[&r.gem_b]),
                DossierRejection::NoAccess,
            ),
            (
                &r.roc,
                keys(d, 7, false, &k7, &[&r.gem_b]),
                DossierRejection::WrapToOutsider,
            ),
            (
                &r.roc,
                keys(d, 7, true, &k_evil, &[&r.roc]),
                DossierRejection::EpochTaken,
            ),
            (
                &r.roc,
                keys(d, 99, false, &k_evil, &[&r.roc]),
                DossierRejection::UnknownEpoch,
            ),
        ] {
            let mut l = log.clone();
            let op = add(&mut l, by, body);
            let acc = folded(&l);
            assert_eq!(acc.rejected.get(&op.hash()), Some(&why));
            assert_eq!(acc.epochs, folded(&log).epochs, "nothing changed");
        }

        // A key op concurrent with the revocation of A, still wrapping for A.
        let before_revoke: Vec<OpHash> = vec![log.last().unwrap().hash()];
        let k_late = ContentKey::generate().unwrap();
        let concurrent = dop(
            &r,
            &r.roc,
            d,
            before_revoke,
            keys(d, 11, true, &k_late, &[&r.gem_a, &r.roc]),
        );
        // Revoke A: the current key was given to A, so the next change needs a new one.
        add(
            &mut log,
            &r.roc,
            DossierBody::Revoke {
                party: p("gemeente-a"),
                reason: "verhuisd".into(),
                keep: vec![],
            },
        );
        assert!(folded(&log).needs_rotation(&r.state, today));
        let k8 = ContentKey::generate().unwrap();
        add(&mut log, &r.roc, keys(d, 8, true, &k8, &[&r.roc]));
        let acc = folded(&log);
        assert!(!acc.needs_rotation(&r.state, today));
        assert_eq!(acc.current_epoch().map(|e| e.epoch), Some(8));
        assert_eq!(ring_of(&acc, &r.gem_a), vec![7], "A keeps the old key only");
        let mut with_concurrent = log.clone();
        with_concurrent.push(concurrent.clone());
        assert_eq!(
            folded(&with_concurrent).rejected.get(&concurrent.hash()),
            Some(&DossierRejection::WrapToOutsider),
            "the revocation sorts first"
        );

        // Grant B: it is given every epoch, the history too.
        add(&mut log, &r.roc, grant("gemeente-b"));
        assert_eq!(
            folded(&log).missing_wraps(&r.state, today),
            BTreeMap::from([(7, vec![r.gem_b.node_id()]), (8, vec![r.gem_b.node_id()])])
        );
        add(&mut log, &r.roc, keys(d, 7, false, &k7, &[&r.gem_b]));
        add(&mut log, &r.roc, keys(d, 8, false, &k8, &[&r.gem_b]));
        assert_eq!(ring_of(&folded(&log), &r.gem_b), vec![7, 8]);

        // A bad copy filed under a device (here B's wrapping filed as the ROC's) does
        // not take the ROC's key away: it keeps every earlier copy and tries each.
        let mut misfiled = keys(d, 8, false, &k8, &[&r.gem_b]);
        if let DossierBody::Keys { wraps, .. } = &mut misfiled {
            wraps[0].device = r.roc.node_id();
        }
        add(&mut log, &r.roc, misfiled);
        let acc = folded(&log);
        assert_eq!(acc.epochs[1].wraps[&r.roc.node_id()].len(), 2);
        assert_eq!(ring_of(&acc, &r.roc), vec![7, 8]);
        // A device that holds only a bad copy is told why.
        let mut only_bad = acc.clone();
        only_bad.epochs[1].wraps.insert(
            r.roc.node_id(),
            vec![acc.epochs[1].wraps[&r.roc.node_id()][1].clone()],
        );
        let (ring, failed) = only_bad.key_ring(&r.roc.node_id(), r.roc.age_identity());
        assert_eq!(ring.epochs().collect::<Vec<_>>(), vec![7]);
        assert_eq!(failed, vec![(8, SealError::NotForThisDevice)]);

        // The state an author had seen: before the revocation of A, epoch 7 was the
        // one to seal with; at the current heads it is 8.
        let revoke_at = log
            .iter()
            .position(|o| matches!(o.payload().body, DossierBody::Revoke { .. }))
            .unwrap();
        let before = log[revoke_at - 1].hash();
        let then = fold_dossier_at(&r.state, d, log.iter(), &[before]).unwrap();
        assert_eq!(then.current_epoch().map(|e| e.epoch), Some(7));
        assert!(then.grants.contains_key(&p("gemeente-a")));
        let heads = vec![log.last().unwrap().hash()];
        let now = fold_dossier_at(&r.state, d, log.iter(), &heads).unwrap();
        assert_eq!(now.current_epoch().map(|e| e.epoch), Some(8));
        assert!(
            fold_dossier_at(&r.state, d, log.iter(), &[OpHash([0xaa; 32])]).is_none(),
            "an unknown head"
        );

        // Erase: no keys are left in the state.
        add(&mut log, &r.roc, DossierBody::Erase);
        let acc = folded(&log);
        assert!(acc.epochs.is_empty());
        assert!(
            acc.key_ring(&r.gem_b.node_id(), r.gem_b.age_identity())
                .0
                .latest()
                .is_none()
        );
    }

    #[test]
    fn a_party_that_made_a_key_without_wrapping_it_to_itself_still_forces_a_rotation() {
        use crate::seal::ContentKey;
        let r = region();
        let today = Date::from_calendar_date(2027, time::Month::January, 1).unwrap();
        let (d, open) = open_dossier(&r, &r.roc, "roc-x");
        let k1 = ContentKey::generate().unwrap();
        let e1 = dop(
            &r,
            &r.roc,
            d,
            vec![open.hash()],
            keys(d, 1, true, &k1, &[&r.roc]),
        );
        let g = dop(&r, &r.roc, d, vec![e1.hash()], grant("gemeente-a"));
        // A may not start an epoch (the owner decides which key writers use), but it
        // may file wrappings of one it holds: then it is a holder of that key.
        let k2 = ContentKey::generate().unwrap();
        let started = dop(
            &r,
            &r.gem_a,
            d,
            vec![g.hash()],
            keys(d, 2, true, &k2, &[&r.roc]),
        );
        let with_start = fold_dossier(&r.state, d, [&open, &e1, &g, &started]).unwrap();
        assert_eq!(
            with_start.rejected.get(&started.hash()),
            Some(&DossierRejection::NotOwner)
        );
        let e2 = dop(
            &r,
            &r.gem_a,
            d,
            vec![g.hash()],
            keys(d, 1, false, &k1, &[&r.roc]),
        );
        let revoke = dop(
            &r,
            &r.roc,
            d,
            vec![e2.hash()],
            DossierBody::Revoke {
                party: p("gemeente-a"),
                reason: "verhuisd".into(),
                keep: vec![],
            },
        );
        let acc = fold_dossier(&r.state, d, [&open, &e1, &g, &e2, &revoke]).unwrap();
        assert_eq!(acc.current_epoch().map(|e| e.epoch), Some(1));
        assert!(
            acc.current_epoch()
                .unwrap()
                .holders
                .contains(&r.gem_a.node_id())
        );
        assert!(
            acc.needs_rotation(&r.state, today),
            "A handled the current key: it must not read anything new"
        );
    }

    #[test]
    fn a_removed_devices_past_ops_stand_where_others_built_on_them() {
        use crate::control::{OpBody, fold};
        use crate::seal::ContentKey;
        let admin = NodeSecret::generate().unwrap();
        let (laptop, desktop) = (
            NodeSecret::generate().unwrap(),
            NodeSecret::generate().unwrap(),
        );
        let g = crate::testkit::genesis(&admin, "roc-x", Role::Roc);
        let region_id = RegionId(g.hash());
        let mut ops = vec![g];
        for dev in [&laptop, &desktop] {
            let last = ops.last().unwrap().hash();
            ops.push(crate::testkit::sign_op(
                &admin,
                Some(region_id),
                vec![last],
                OpBody::AddDevice {
                    party: p("roc-x"),
                    device: dev.node_id(),
                    age_recipient: dev.age_recipient().to_string(),
                },
            ));
        }
        let state = fold(region_id, &ops).unwrap().state;
        let r = R {
            state,
            roc: laptop,
            gem_a: desktop,
            gem_b: NodeSecret::generate().unwrap(),
            admin,
        };
        let (laptop, desktop) = (&r.roc, &r.gem_a);
        let today = Date::from_calendar_date(2027, time::Month::January, 1).unwrap();
        // The laptop opens the dossier and makes the first key; the desktop builds on it.
        let (d, open) = open_dossier(&r, laptop, "roc-x");
        let k1 = ContentKey::generate().unwrap();
        let e1 = dop(
            &r,
            laptop,
            d,
            vec![open.hash()],
            keys(d, 1, true, &k1, &[laptop, desktop]),
        );
        let seen = dop(
            &r,
            desktop,
            d,
            vec![e1.hash()],
            keys(d, 1, false, &k1, &[desktop]),
        );
        // The laptop is lost and removed; whoever has it signs a new op.
        let last = ops.last().unwrap().hash();
        ops.push(crate::testkit::sign_op(
            &r.admin,
            Some(region_id),
            vec![last],
            OpBody::RemoveDevice {
                device: laptop.node_id(),
                cutoffs: vec![],
            },
        ));
        let state = fold(region_id, &ops).unwrap().state;
        let thief = dop(&r, laptop, d, vec![seen.hash()], grant("roc-x"));
        let acc = fold_dossier(&state, d, [&open, &e1, &seen, &thief]).unwrap();
        assert_eq!(acc.owner, p("roc-x"));
        assert_eq!(
            acc.current_epoch().map(|e| e.epoch),
            Some(1),
            "history kept"
        );
        assert_eq!(
            acc.rejected.get(&thief.hash()),
            Some(&DossierRejection::AuthorRemoved)
        );
        assert!(acc.needs_rotation(&state, today), "the laptop held the key");
        // Nothing built on the laptop's last op: it does not stand.
        let lone = dop(
            &r,
            laptop,
            d,
            vec![open.hash()],
            keys(d, 9, true, &k1, &[laptop]),
        );
        let acc = fold_dossier(&state, d, [&open, &e1, &seen, &lone]).unwrap();
        assert_eq!(
            acc.rejected.get(&lone.hash()),
            Some(&DossierRejection::AuthorRemoved)
        );
    }

    /// Issue 14, item 1: the thief of a removed ROC laptop signs a backdated grant to
    /// the SWV; the SWV (a member without access) names it as a parent of its own op,
    /// pending (with a made-up parent) or placed (a key op of its own). Neither makes
    /// the grant stand: only accepted ops of the owner party's active devices vouch.
    #[test]
    fn a_thiefs_grant_vouched_by_a_member_without_access_does_not_stand() {
        use crate::seal::ContentKey;
        let mut r = region();
        let laptop = NodeSecret::generate().unwrap();
        let swv = &r.gem_b; // a member party without access to this dossier
        // A region of the ROC (desktop and laptop) and the SWV; the laptop is removed.
        let mut ops: Vec<SignedOp> = Vec::new();
        let g = crate::testkit::genesis(&r.admin, "gemeente-kern", Role::Kerngemeente);
        let rid = Some(RegionId(g.hash()));
        ops.push(g);
        for (party, role, devs) in [
            ("roc-x", Role::Roc, vec![&r.roc, &laptop]),
            ("gemeente-b", Role::Swv, vec![swv]),
        ] {
            let last = ops.last().unwrap().hash();
            ops.push(crate::testkit::sign_op(
                &r.admin,
                rid,
                vec![last],
                OpBody::AddParty {
                    party: p(party),
                    role,
                },
            ));
            for dev in devs {
                let last = ops.last().unwrap().hash();
                ops.push(crate::testkit::sign_op(
                    &r.admin,
                    rid,
                    vec![last],
                    OpBody::AddDevice {
                        party: p(party),
                        device: dev.node_id(),
                        age_recipient: dev.age_recipient().to_string(),
                    },
                ));
            }
        }
        let last = ops.last().unwrap().hash();
        ops.push(crate::testkit::sign_op(
            &r.admin,
            rid,
            vec![last],
            OpBody::RemoveDevice {
                device: laptop.node_id(),
                cutoffs: vec![],
            },
        ));
        r.state = fold(RegionId(ops[0].hash()), &ops).unwrap().state;
        let (d, open) = open_dossier(&r, &r.roc, "roc-x");
        let k = ContentKey::generate().unwrap();
        let e0 = dop(
            &r,
            &r.roc,
            d,
            vec![open.hash()],
            keys(d, 0, true, &k, &[&r.roc]),
        );
        // The thief's backdated grant, on the dossier's root.
        let forged = dop(&r, &laptop, d, vec![open.hash()], grant("gemeente-b"));
        // Pending: the SWV's op names the grant and a made-up parent.
        let pending = dop(
            &r,
            swv,
            d,
            vec![forged.hash(), OpHash([7; 32])],
            grant("gemeente-b"),
        );
        // Placed: the SWV wraps "the key" for itself on top of the grant.
        let placed = dop(
            &r,
            swv,
            d,
            vec![forged.hash(), e0.hash()],
            keys(d, 0, false, &k, &[swv]),
        );
        for attempt in [
            vec![&open, &e0, &forged, &pending],
            vec![&open, &e0, &forged, &placed],
        ] {
            let acc = fold_dossier(&r.state, d, attempt).unwrap();
            assert!(
                !acc.grants.contains_key(&p("gemeente-b")),
                "the forged grant stands"
            );
            assert_eq!(
                acc.rejected.get(&forged.hash()),
                Some(&DossierRejection::AuthorRemoved)
            );
            assert!(!acc.in_force(&r.state, Date::MIN).contains(&p("gemeente-b")));
        }
        // An honest ROC device that built on the laptop's op before it learned of the
        // removal does vouch for it (the lost laptop's past work stays).
        let honest = dop(
            &r,
            &r.roc,
            d,
            vec![forged.hash(), e0.hash()],
            keys(d, 0, false, &k, &[&r.roc]),
        );
        let acc = fold_dossier(&r.state, d, [&open, &e0, &forged, &honest]).unwrap();
        assert!(acc.grants.contains_key(&p("gemeente-b")));
    }
}
