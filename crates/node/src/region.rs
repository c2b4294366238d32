//! The region control plane on a node: founding a region, invitations, joining,
//! importing and exporting the control log, removing devices, document ACLs.
//!
//! Every op this node makes is checked against the fold *before* it is stored: an op
//! the region rules would reject is never written, and the user hears why.

use std::collections::{BTreeSet, HashSet};

use regiosync_core::control::{
    Cutoff, FoldError, Folded, InviteCode, JoinFields, JoinRequest, Op, OpBody, OpHash, RegionId,
    RegionState, Rejection, SignedOp, decode_bundle, encode_bundle, fold, proof,
};
use regiosync_core::id::{DocId, NodeId, PartyName, Role};
use regiosync_store::{InviteRow, StoreRead, WriteTx};
use serde::Serialize;

use crate::Node;
use crate::clock::{now_ms, now_secs};
use crate::control_log::{SETTING_REGION, decode_stored_ops, region_from_bytes};
use crate::error::NodeError;
use crate::events::ChangeKind;

/// Setting key: the region this node asked to join (32 bytes).
const SETTING_PENDING_JOIN: &str = "pending-join";

/// Who a plan's access list names: every party of the region (the ones that join
/// later included), or exactly these parties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every party of the region, now and later.
    Everyone,
    /// Exactly these parties (the owner always reads and writes).
    Parties(Vec<PartyName>),
}

/// A change of a plan's access lists ([`Node::change_acl`]): lists to set, and
/// parties to add or remove. Setting happens first, then adding, then removing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclChange {
    /// The readers to set, if any.
    pub readers: Option<Audience>,
    /// The writers to set, if any (writers always read).
    pub writers: Option<Audience>,
    /// Readers to add.
    pub add_readers: Vec<PartyName>,
    /// Writers to add.
    pub add_writers: Vec<PartyName>,
    /// Readers to remove.
    pub remove_readers: Vec<PartyName>,
    /// Writers to remove.
    pub remove_writers: Vec<PartyName>,
}

/// What `accept` did.
#[derive(Clone, Debug, Serialize)]
pub struct Accepted {
    /// The new device.
    pub device: NodeId,
    /// Its party.
    pub party: PartyName,
    /// Whether the party was new.
    pub new_party: bool,
    /// The ops issued.
    pub ops: Vec<String>,
}

/// What `import` did.
#[derive(Clone, Debug, Serialize)]
pub struct Imported {
    /// The region.
    pub region: String,
    /// Ops that were new here (and stored).
    pub new_ops: usize,
    /// New ops that were not stored: signed by devices that were not members where
    /// the ops claim to be (as sync refuses them), or waiting for missing parents
    /// beyond [`MAX_PENDING_OPS`].
    pub refused_ops: usize,
    /// Whether this import completed a join.
    pub joined: bool,
}

/// The most ops waiting for a missing parent that a node holds: a member's log
/// normally has none for long, so anything beyond this is refused, not stored.
pub const MAX_PENDING_OPS: usize = 1_000;

/// Which new region ops a node stores, and the fold of what it then holds.
pub(crate) struct Admitted {
    /// The new ops to store.
    pub(crate) ops: Vec<SignedOp>,
    /// How many new ops were refused.
    pub(crate) refused: usize,
    /// The fold of the stored ops and [`Admitted::ops`].
    pub(crate) folded: Folded,
}

/// Which of `new` (ops not among `stored`) a node may store. An op is refused when
/// its author was not a member where the op stands: first, without folding, ops by
/// a device that no op of `stored` or `new` ever adds (so a flood from outsiders
/// costs no fold); then, in the fold of the rest, ops rejected as `UnknownAuthor` or
/// `AuthorNotInPast` (permanent: an op's causal past is fixed by its parents) or as
/// of another region. Such an op is kept all the same when a kept op builds on it
/// (the fold needs it to place that op). Ops waiting for a missing parent are kept
/// up to [`MAX_PENDING_OPS`] held in all (in the order given). Everything else is
/// kept, rejected or not: others may have built on an op accepted before a concurrent
/// revocation. Used by bundle imports and by `receive_ops` (the same rule
/// over the network).
pub(crate) fn admit_ops(
    region: RegionId,
    stored: &[SignedOp],
    new: Vec<SignedOp>,
) -> Result<Admitted, FoldError> {
    let total = new.len();
    // Devices that any op adds (or that founded the region): nobody else can sign an
    // op the fold accepts.
    let devices: HashSet<NodeId> = stored
        .iter()
        .chain(&new)
        .filter_map(|o| match &o.op().body {
            OpBody::AddDevice { device, .. } => Some(*device),
            OpBody::CreateRegion { .. } if o.hash() == region.0 => Some(o.op().author),
            _ => None,
        })
        .collect();
    let mut keep_first: HashSet<OpHash> = new
        .iter()
        .filter(|o| devices.contains(&o.op().author))
        .map(SignedOp::hash)
        .collect();
    keep_parents(&new, &mut keep_first, |_| true);
    let new: Vec<SignedOp> = new
        .into_iter()
        .filter(|o| keep_first.contains(&o.hash()))
        .collect();
    let all: Vec<&SignedOp> = stored.iter().chain(&new).collect();
    let folded = fold(region, all.iter().copied())?;
    let non_member = |h: &OpHash| {
        matches!(
            folded.rejected.get(h),
            Some(Rejection::UnknownAuthor | Rejection::AuthorNotInPast | Rejection::WrongRegion)
        )
    };
    let already_pending = stored
        .iter()
        .filter(|o| folded.pending.contains(&o.hash()))
        .count();
    let mut pending_room = MAX_PENDING_OPS.saturating_sub(already_pending);
    let mut keep: HashSet<OpHash> = HashSet::new();
    for op in &new {
        let h = op.hash();
        if folded.pending.contains(&h) {
            if pending_room > 0 {
                pending_room -= 1;
                keep.insert(h);
            }
        } else if !non_member(&h) {
            keep.insert(h);
        }
    }
    // The parents of kept placed ops are kept too, refused or not.
    keep_parents(&new, &mut keep, |h| !folded.pending.contains(h));
    let refused = total - keep.len();
    if keep.len() == new.len() {
        return Ok(Admitted {
            ops: new,
            refused,
            folded,
        });
    }
    let ops: Vec<SignedOp> = new
        .into_iter()
        .filter(|o| keep.contains(&o.hash()))
        .collect();
    let folded = fold(region, stored.iter().chain(&ops))?;
    Ok(Admitted {
        ops,
        refused,
        folded,
    })
}

impl Node {
    /// Founds a region with this node's party as its first member and admin.
    pub fn create_region(&mut self, name: &str) -> Result<RegionId, NodeError> {
        if let Some(r) = self.region()? {
            return Err(NodeError::AlreadyInRegion(r.to_string()));
        }
        let info = self.info.clone();
        let secret = self.signer()?;
        let op = SignedOp::sign(
            Op {
                region: None,
                parents: vec![],
                author: info.node_id,
                time: now_secs(),
                body: OpBody::CreateRegion {
                    name: name.trim().to_owned(),
                    party: info.party.clone(),
                    role: info.role,
                    age_recipient: info.age_recipient.clone(),
                },
            },
            secret.signing_key(),
        )?;
        let region = RegionId(op.hash());
        self.store.write(|tx| {
            tx.put_op(&op.hash().0, &op.encode(), now_ms())?;
            tx.set_setting(SETTING_REGION, &region.0.0)?;
            tx.delete_setting(SETTING_PENDING_JOIN)
        })?;
        tracing::info!(region = %region, "founded region");
        self.announce_local(None, ChangeKind::Region);
        Ok(region)
    }

    /// Issues an invitation for a device of `party` (a new party needs a region
    /// admin; a new device of one's own party does not). Returns the invite code.
    pub fn invite(
        &mut self,
        party: PartyName,
        role: Role,
        admin: bool,
        ttl_secs: i64,
    ) -> Result<InviteCode, NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        let state = &folded.state;
        let me = state.active_device(&self.info.node_id).ok_or_else(|| {
            NodeError::Membership("this device is not an active member of the region".into())
        })?;
        let we_are_admin = state.active_party(&me.party).is_some_and(|p| p.admin);
        match state.parties.get(&party) {
            Some(p) if p.removed => {
                return Err(NodeError::Membership(format!(
                    "party {party} was removed from the region; names are not reused"
                )));
            }
            Some(p) if p.role != role => {
                return Err(NodeError::Membership(format!(
                    "party {party} exists with role {}, not {role}",
                    p.role
                )));
            }
            Some(_) if me.party != party && !we_are_admin => {
                return Err(NodeError::Refused(
                    regiosync_core::control::Rejection::NotAdmin,
                ));
            }
            None if !we_are_admin => {
                return Err(NodeError::Refused(
                    regiosync_core::control::Rejection::NotAdmin,
                ));
            }
            _ => {}
        }
        if admin && state.parties.contains_key(&party) {
            return Err(NodeError::Membership(format!(
                "party {party} already exists; --admin applies to new parties only"
            )));
        }
        if admin && !we_are_admin {
            return Err(NodeError::Refused(
                regiosync_core::control::Rejection::NotAdmin,
            ));
        }
        if ttl_secs <= 0 {
            return Err(NodeError::Membership(
                "the invite must expire in the future".into(),
            ));
        }
        let mut id = [0u8; 16];
        let mut secret = [0u8; 32];
        getrandom_fill(&mut id)?;
        getrandom_fill(&mut secret)?;
        let code = InviteCode {
            region: state.region,
            inviter: self.info.node_id,
            invite_id: id,
            secret,
            expires: now_secs().saturating_add(ttl_secs),
            party: party.clone(),
            role,
            admin,
            addrs: vec![],
        };
        self.store.write(|tx| {
            tx.insert_invite(&InviteRow {
                id,
                secret,
                party: party.to_string(),
                role: role.to_string(),
                admin,
                expires_s: code.expires,
                created_ms: now_ms(),
                used_ms: None,
                used_by: None,
            })
        })?;
        // A running node admits the invite's join identity to its gate now: told on
        // its change channel when this is its own handle (the web app), else woken.
        self.announce_local(None, ChangeKind::Region);
        Ok(code)
    }

    /// On the new node: makes a signed join request for an invite code.
    pub fn join_request(&mut self, code_text: &str) -> Result<Vec<u8>, NodeError> {
        if let Some(r) = self.region()? {
            return Err(NodeError::AlreadyInRegion(r.to_string()));
        }
        let code = InviteCode::decode(code_text)?;
        if code.expires < now_secs() {
            return Err(NodeError::JoinRefused(
                "the invite code has expired: ask for a new one".into(),
            ));
        }
        if code.party != self.info.party || code.role != self.info.role {
            return Err(NodeError::JoinRefused(format!(
                "the invite is for party {} ({}), but this node was initialised for {} ({}): run `regiosync init` with the invite's party in a new data dir",
                code.party, code.role, self.info.party, self.info.role
            )));
        }
        let info = self.info.clone();
        let secret = self.signer()?;
        let req = JoinRequest::sign(
            JoinFields {
                region: code.region,
                invite_id: code.invite_id,
                device: info.node_id,
                age_recipient: info.age_recipient.clone(),
                party: info.party.clone(),
                proof: code.proof(&info.node_id, &info.age_recipient),
            },
            secret.signing_key(),
        )?;
        self.store
            .write(|tx| tx.set_setting(SETTING_PENDING_JOIN, &code.region.0.0))?;
        Ok(req.encode())
    }

    /// On the inviter's node: checks a join request, issues the ops that add the
    /// device (and its party), marks the invite used, and returns the bundle of the
    /// whole control log for the new node.
    pub fn accept(&mut self, request: &[u8]) -> Result<(Accepted, Vec<u8>), NodeError> {
        let req = JoinRequest::decode(request)?;
        let f = req.fields().clone();
        let region = self.region()?.ok_or(NodeError::NotInRegion)?;
        if f.region != region {
            return Err(NodeError::JoinRefused(
                "the join request is for another region".into(),
            ));
        }
        let invite = self.store.invite(&f.invite_id)?.ok_or_else(|| {
            NodeError::JoinRefused(
                "the join request names an invite this node did not issue".into(),
            )
        })?;
        if invite.used_ms.is_some() {
            return Err(NodeError::JoinRefused(
                "the invite code was already used: issue a new invite".into(),
            ));
        }
        if invite.expires_s < now_secs() {
            return Err(NodeError::JoinRefused(
                "the invite code has expired: issue a new invite".into(),
            ));
        }
        let expected = proof(&invite.secret, &f.device, &f.age_recipient);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &f.proof[..])) {
            return Err(NodeError::JoinRefused(
                "the join request does not prove knowledge of the invite's secret".into(),
            ));
        }
        if f.party.as_str() != invite.party {
            return Err(NodeError::JoinRefused(format!(
                "the invite is for party {}, the request for {}",
                invite.party, f.party
            )));
        }
        let role: Role = invite.role.parse()?;
        let state = self.region_state()?;
        let new_party = !state.parties.contains_key(&f.party);
        let mut bodies = Vec::new();
        if new_party {
            bodies.push(OpBody::AddParty {
                party: f.party.clone(),
                role,
            });
            if invite.admin {
                bodies.push(OpBody::SetAdmin {
                    party: f.party.clone(),
                    admin: true,
                });
            }
        }
        bodies.push(OpBody::AddDevice {
            party: f.party.clone(),
            device: f.device,
            age_recipient: f.age_recipient.clone(),
        });
        let ops = self.issue_ops(bodies, |tx| {
            if tx.use_invite(&f.invite_id, f.device.as_bytes(), now_ms())? {
                Ok(())
            } else {
                Err(NodeError::JoinRefused(
                    "the invite code was already used: issue a new invite".into(),
                ))
            }
        })?;
        let bundle = self.export()?;
        Ok((
            Accepted {
                device: f.device,
                party: f.party,
                new_party,
                ops: ops.iter().map(|h| h.to_string()).collect(),
            },
            bundle,
        ))
    }

    /// The whole control log as a bundle.
    pub fn export(&self) -> Result<Vec<u8>, NodeError> {
        let ops = decode_stored_ops(&self.store.ops()?);
        Ok(encode_bundle(&ops))
    }

    /// Imports a bundle: the region's log (to complete a join) or newer ops of our
    /// region (sneakernet). Every op is verified; ops of other regions are refused.
    pub fn import(&mut self, bundle: &[u8]) -> Result<Imported, NodeError> {
        let ops = decode_bundle(bundle)?;
        let genesis = ops
            .iter()
            .find(|o| matches!(o.op().body, OpBody::CreateRegion { .. }))
            .map(|o| RegionId(o.hash()));
        let (region, joining) = match (self.region()?, self.store.setting(SETTING_PENDING_JOIN)?) {
            (Some(r), _) => (r, false),
            (None, Some(p)) => (region_from_bytes(&p)?, true),
            (None, None) => {
                return Err(NodeError::JoinRefused(
                    "this node has not asked to join a region: run `regiosync join CODE --request-out FILE` first".into(),
                ));
            }
        };
        if let Some(g) = genesis
            && g != region
        {
            return Err(NodeError::JoinRefused(
                "the bundle is for another region".into(),
            ));
        }
        if ops
            .iter()
            .any(|o| o.hash() != region.0 && o.op().region != Some(region))
        {
            return Err(NodeError::JoinRefused(
                "the bundle contains ops of another region".into(),
            ));
        }
        let stored = decode_stored_ops(&self.store.ops()?);
        let known: HashSet<OpHash> = stored.iter().map(SignedOp::hash).collect();
        let mut seen = HashSet::new();
        let new: Vec<SignedOp> = ops
            .into_iter()
            .filter(|o| !known.contains(&o.hash()) && seen.insert(o.hash()))
            .collect();
        let Admitted {
            ops: new,
            refused,
            folded,
        } = admit_ops(region, &stored, new)
            .map_err(|e| NodeError::JoinRefused(format!("the bundle is incomplete: {e}")))?;
        if refused > 0 {
            tracing::warn!(
                refused,
                "refused ops of the bundle: signed by devices that were not members, or waiting for missing parents"
            );
        }
        if joining && folded.state.active_device(&self.info.node_id).is_none() {
            return Err(NodeError::JoinRefused(
                "the bundle does not add this device to the region: was the join request accepted?"
                    .into(),
            ));
        }
        self.store.write(|tx| {
            for op in &new {
                tx.put_op(&op.hash().0, &op.encode(), now_ms())?;
            }
            if joining {
                tx.set_setting(SETTING_REGION, &region.0.0)?;
                tx.delete_setting(SETTING_PENDING_JOIN)?;
            }
            Ok::<_, NodeError>(())
        })?;
        for op in &new {
            self.events.send(crate::events::ChangeEvent::of_op(
                op,
                crate::events::Source::Import,
                &folded.state,
            ));
        }
        if !new.is_empty() {
            self.wake_running_node();
        }
        Ok(Imported {
            region: region.to_string(),
            new_ops: new.len(),
            refused_ops: refused,
            joined: joining,
        })
    }

    /// Removes a device. Its changes that this node has accepted stay valid (the
    /// cutoff); anything else it wrote, or writes later, is rejected everywhere.
    pub fn remove_device(&mut self, device: NodeId) -> Result<OpHash, NodeError> {
        let state = self.region_state()?;
        if state.active_device(&device).is_none() {
            return Err(NodeError::Membership(format!(
                "device {device} is not an active member"
            )));
        }
        let cutoffs = self.cutoffs_for(&state, |d| d == &device, |_| true)?;
        let h = self.issue_ops(vec![OpBody::RemoveDevice { device, cutoffs }], |_| Ok(()))?;
        Ok(h[0])
    }

    /// Gives `party` the name people read, e.g. "Gemeente Gouda" (its own devices, or
    /// a region admin's). Refused when the party is not active, or the name is
    /// taken by another party after case, spaces and Unicode normalisation.
    pub fn set_party_name(
        &mut self,
        party: &PartyName,
        display_name: &str,
    ) -> Result<OpHash, NodeError> {
        self.check_active_party(party)?;
        let display_name = display_name.trim();
        let max = regiosync_core::control::MAX_DISPLAY_NAME;
        if display_name.is_empty()
            || display_name.chars().count() > max
            || display_name
                .chars()
                .any(regiosync_core::text::is_misleading)
        {
            return Err(NodeError::BadDisplayName { max });
        }
        let body = OpBody::SetPartyName {
            party: party.clone(),
            display_name: display_name.to_owned(),
        };
        Ok(self.issue_ops(vec![body], |_| Ok(()))?[0])
    }

    /// Designates a device as a dossier relay, or ends that (region admins only): it
    /// then receives, checks, stores and forwards every dossier's sealed changes and
    /// access log, and can read none of them.
    pub fn set_dossier_relay(&mut self, device: NodeId, relay: bool) -> Result<OpHash, NodeError> {
        let state = self.region_state()?;
        if state.active_device(&device).is_none() {
            return Err(NodeError::Membership(format!(
                "device {device} is not an active member"
            )));
        }
        let h = self.issue_ops(vec![OpBody::SetDossierRelay { device, relay }], |_| Ok(()))?;
        Ok(h[0])
    }

    /// Replaces a document's access lists with exactly these parties (`None` keeps a
    /// list as it is): a list given here also ends "every party of the region" for
    /// it. See [`Node::change_acl`] for adding, removing and opening to everyone.
    pub fn set_acl(
        &mut self,
        doc: &DocId,
        readers: Option<Vec<PartyName>>,
        writers: Option<Vec<PartyName>>,
    ) -> Result<Vec<OpHash>, NodeError> {
        self.change_acl(
            doc,
            &AclChange {
                readers: readers.map(Audience::Parties),
                writers: writers.map(Audience::Parties),
                ..AclChange::default()
            },
        )
    }

    /// Changes a plan's access lists as `change` says, and issues the ops that do it
    /// (none if nothing changes): `SetAcl` for the lists of parties, `SetAudience`
    /// for "every party of the region, now and later". Parties that lose write access
    /// get cutoffs at their last accepted change. Refused, with what to do instead:
    /// naming a party that is not an active party of the region, removing the owner,
    /// removing a reader that still writes, or removing one party from a list that is
    /// "every party".
    pub fn change_acl(
        &mut self,
        doc: &DocId,
        change: &AclChange,
    ) -> Result<Vec<OpHash>, NodeError> {
        let state = self.region_state()?;
        let acl = state
            .docs
            .get(doc)
            .ok_or(NodeError::UnknownDocument(doc.to_string()))?;
        let named = change
            .readers
            .iter()
            .chain(&change.writers)
            .flat_map(|a| match a {
                Audience::Everyone => &[][..],
                Audience::Parties(p) => p.as_slice(),
            })
            .chain(&change.add_readers)
            .chain(&change.add_writers)
            .chain(&change.remove_readers)
            .chain(&change.remove_writers);
        for p in named {
            if state.active_party(p).is_none() {
                return Err(NodeError::Acl(format!(
                    "{p} is not a party of the region (see `regiosync region show`)"
                )));
            }
        }
        let (mut everyone_reads, mut everyone_writes) = (acl.everyone_reads, acl.everyone_writes);
        let (mut readers, mut writers) = (acl.readers.clone(), acl.writers.clone());
        match &change.readers {
            Some(Audience::Everyone) => everyone_reads = true,
            Some(Audience::Parties(list)) => {
                everyone_reads = false;
                readers = list.iter().cloned().collect();
            }
            None => {}
        }
        match &change.writers {
            Some(Audience::Everyone) => everyone_writes = true,
            Some(Audience::Parties(list)) => {
                everyone_writes = false;
                writers = list.iter().cloned().collect();
            }
            None => {}
        }
        readers.extend(change.add_readers.iter().cloned());
        writers.extend(change.add_writers.iter().cloned());
        for p in &change.remove_writers {
            if *p == acl.owner {
                return Err(NodeError::Acl(format!(
                    "{p} owns the plan and always writes it"
                )));
            }
            if everyone_writes {
                return Err(NodeError::Acl(format!(
                    "every party of the region writes this plan: name the writers with --writers PARTY,… to leave {p} out"
                )));
            }
            writers.remove(p);
        }
        for p in &change.remove_readers {
            if *p == acl.owner {
                return Err(NodeError::Acl(format!(
                    "{p} owns the plan and always reads it"
                )));
            }
            if everyone_reads {
                return Err(NodeError::Acl(format!(
                    "every party of the region reads this plan: name the readers with --readers PARTY,… to leave {p} out"
                )));
            }
            if everyone_writes || writers.contains(p) {
                return Err(NodeError::Acl(format!(
                    "{p} writes this plan, and writers read it: take {p} off the writers too (--remove-writer {p})"
                )));
            }
            readers.remove(p);
        }
        // Writers read; the owner does both (the fold closes the lists the same way).
        everyone_reads |= everyone_writes;
        writers.insert(acl.owner.clone());
        readers.extend(writers.iter().cloned());
        let after = regiosync_core::control::DocAcl {
            kind: acl.kind.clone(),
            owner: acl.owner.clone(),
            readers: readers.clone(),
            writers: writers.clone(),
            everyone_reads,
            everyone_writes,
        };
        let losing: BTreeSet<PartyName> = state
            .parties
            .keys()
            .filter(|p| state.active_party(p).is_some() && acl.writes(p) && !after.writes(p))
            .cloned()
            .collect();
        let party_of = |d: &NodeId| state.devices.get(d).map(|s| s.party.clone());
        let mut cutoffs = self.cutoffs_for(
            &state,
            |d| party_of(d).is_some_and(|p| losing.contains(&p)),
            |id| id == doc,
        )?;
        let mut ops = Vec::new();
        if (&readers, &writers) != (&acl.readers, &acl.writers) {
            ops.push(OpBody::SetAcl {
                doc: *doc,
                readers: readers.into_iter().collect(),
                writers: writers.into_iter().collect(),
                cutoffs: std::mem::take(&mut cutoffs),
            });
        }
        if (everyone_reads, everyone_writes) != (acl.everyone_reads, acl.everyone_writes) {
            ops.push(OpBody::SetAudience {
                doc: *doc,
                everyone_reads,
                everyone_writes,
                cutoffs,
            });
        }
        if ops.is_empty() {
            return Ok(vec![]);
        }
        self.issue_ops(ops, |_| Ok(()))
    }

    /// For every document (passing `doc_filter`) and device (passing `device_filter`)
    /// with accepted changes: the cutoff at its last accepted change.
    fn cutoffs_for(
        &self,
        state: &RegionState,
        device_filter: impl Fn(&NodeId) -> bool,
        doc_filter: impl Fn(&DocId) -> bool,
    ) -> Result<Vec<Cutoff>, NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        let mut out = Vec::new();
        for doc in state.docs.keys().filter(|d| doc_filter(d)) {
            if self.store.document(doc)?.is_none() {
                continue;
            }
            let verified = self.verified(doc, &folded)?;
            let mut last: std::collections::BTreeMap<NodeId, (u64, [u8; 32])> = Default::default();
            for c in verified.doc.get_changes_meta(&[]) {
                if let Some(dev) = NodeId::from_actor_id(&c.actor)
                    && device_filter(&dev)
                {
                    let e = last.entry(dev).or_insert((0, [0; 32]));
                    if c.seq > e.0 {
                        *e = (c.seq, c.hash.0);
                    }
                }
            }
            for (device, (seq, hash)) in last {
                out.push(Cutoff {
                    doc: *doc,
                    device,
                    last_seq: seq,
                    last_hash: Some(hash),
                });
            }
        }
        out.sort_by_key(|c| (c.doc, c.device));
        Ok(out)
    }

    /// Signs `bodies` as a chain on top of the current heads, checks that the fold
    /// accepts every one, and stores them in one transaction together with `also`.
    pub(crate) fn issue_ops(
        &mut self,
        bodies: Vec<OpBody>,
        also: impl FnOnce(&WriteTx<'_>) -> Result<(), NodeError>,
    ) -> Result<Vec<OpHash>, NodeError> {
        let region = self.region()?.ok_or(NodeError::NotInRegion)?;
        let author = self.info.node_id;
        let key = self.signer()?.signing_key().clone();
        // One event per plan and kind; creating a plan (its CreateDoc with its
        // audience) is one `Created`.
        let mut kinds: Vec<(ChangeKind, Option<DocId>)> = Vec::new();
        for (kind, doc) in bodies.iter().map(ChangeKind::of_op) {
            let created = doc.is_some() && kinds.contains(&(ChangeKind::Created, doc));
            if !created && !kinds.contains(&(kind, doc)) {
                kinds.push((kind, doc));
            }
        }
        let made = self.store.write(|tx| {
            let mut all = decode_stored_ops(&tx.ops()?);
            let mut heads = fold(region, &all)
                .map_err(|e| NodeError::DamagedControlLog(e.to_string()))?
                .state
                .heads;
            let mut made = Vec::new();
            for body in bodies {
                let op = SignedOp::sign(
                    Op {
                        region: Some(region),
                        parents: heads,
                        author,
                        time: now_secs(),
                        body,
                    },
                    &key,
                )?;
                all.push(op.clone());
                let folded =
                    fold(region, &all).map_err(|e| NodeError::DamagedControlLog(e.to_string()))?;
                if let Some(why) = folded.rejected.get(&op.hash()) {
                    return Err(NodeError::Refused(why.clone()));
                }
                tx.put_op(&op.hash().0, &op.encode(), now_ms())?;
                heads = vec![op.hash()];
                made.push(op.hash());
            }
            also(tx)?;
            Ok(made)
        })?;
        for (kind, doc) in kinds {
            self.announce_local(doc, kind);
        }
        Ok(made)
    }
}

/// Adds to `keep` the ancestors, among `ops`, of the kept ops that pass `from`.
fn keep_parents(ops: &[SignedOp], keep: &mut HashSet<OpHash>, from: impl Fn(&OpHash) -> bool) {
    let by_hash: std::collections::HashMap<OpHash, &SignedOp> =
        ops.iter().map(|o| (o.hash(), o)).collect();
    let mut todo: Vec<OpHash> = keep.iter().filter(|h| from(h)).copied().collect();
    while let Some(h) = todo.pop() {
        let Some(op) = by_hash.get(&h) else { continue };
        for p in &op.op().parents {
            if by_hash.contains_key(p) && keep.insert(*p) {
                todo.push(*p);
            }
        }
    }
}

fn getrandom_fill(buf: &mut [u8]) -> Result<(), NodeError> {
    regiosync_core::id::fill_random(buf).map_err(NodeError::Id)
}
