//! The region state: what the fold of the control log yields, and the queries every
//! other layer asks of it (is this device a member, may this party write that plan).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::op::{Cutoff, OpHash, RegionId};
use crate::id::{DocId, NodeId, PartyName, Role};
use crate::kind::KindName;

/// A party in the region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartyState {
    /// Its role.
    pub role: Role,
    /// Whether it is a region admin.
    pub admin: bool,
    /// The op that last made it admin (authority must be in an op's causal past).
    #[serde(skip)]
    pub admin_since: Option<OpHash>,
    /// Whether it was removed.
    pub removed: bool,
    /// The name people read (`SetPartyName`), if one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A device (node) in the region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceState {
    /// The party it speaks for.
    pub party: PartyName,
    /// Its age recipient.
    pub age_recipient: String,
    /// The op that added it.
    #[serde(skip)]
    pub added_by: OpHash,
    /// Whether it was removed.
    pub removed: bool,
    /// Where it says it can be reached (its latest `SetAddrs`).
    pub addrs: Vec<String>,
    /// Whether region admins designated it a dossier relay (`SetDossierRelay`).
    pub dossier_relay: bool,
}

/// The access lists of a shared plan document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DocAcl {
    /// The document's kind ([`crate::kind`]): `plan/<kind>` for plans.
    pub kind: KindName,
    /// The owning party.
    pub owner: PartyName,
    /// Parties that receive and read it (always includes the owner and the writers).
    pub readers: BTreeSet<PartyName>,
    /// Parties that may change it (always includes the owner).
    pub writers: BTreeSet<PartyName>,
    /// Every party of the region reads it, the ones that join later included
    /// (`SetAudience`); `readers` then lists no one beyond the writers.
    pub everyone_reads: bool,
    /// Every party of the region writes it, the ones that join later included.
    pub everyone_writes: bool,
}

impl DocAcl {
    /// Whether `party` is among the readers (by name, or as a party of the region
    /// when everyone reads). Whether the party is still active is the caller's
    /// question ([`RegionState::may_read`]).
    pub fn reads(&self, party: &PartyName) -> bool {
        self.everyone_reads || self.readers.contains(party) || self.writes(party)
    }

    /// Whether `party` is among the writers (the owner always is).
    pub fn writes(&self, party: &PartyName) -> bool {
        self.everyone_writes || self.writers.contains(party) || *party == self.owner
    }
}

/// A party's consent to one exact version of a plan (the latest `Approve` op of
/// that party for that document, in fold order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// The approved version: Automerge heads, sorted.
    #[serde(serialize_with = "hex_heads")]
    pub heads: Vec<[u8; 32]>,
    /// The device that signed it.
    pub device: NodeId,
    /// The device's clock when it approved, Unix seconds (advisory).
    pub time: i64,
    /// The remark, if any.
    pub comment: Option<String>,
    /// The signed op that carries it (its hash), for audits.
    pub op: OpHash,
}

fn hex_heads<S: serde::Serializer>(heads: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(heads.iter().map(hex::encode))
}

/// The state folded from a region's control log. Same ops, same state, on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegionState {
    /// The region id.
    pub region: RegionId,
    /// The region's name.
    pub name: String,
    /// Parties by name (removed ones included: names are never reused).
    pub parties: BTreeMap<PartyName, PartyState>,
    /// Devices by id (removed ones included: a removed device never returns).
    pub devices: BTreeMap<NodeId, DeviceState>,
    /// Shared plan documents.
    pub docs: BTreeMap<DocId, DocAcl>,
    /// Approvals of plans: per document, per party, its latest approval.
    pub approvals: BTreeMap<DocId, BTreeMap<PartyName, Approval>>,
    /// Write cutoffs by (document, device).
    #[serde(skip)]
    pub cutoffs: BTreeMap<(DocId, NodeId), Cutoff>,
    /// The heads of the accepted ops of the control log: what a new op names as its
    /// parents and a change envelope as its control heads.
    pub heads: Vec<OpHash>,
}

impl RegionState {
    /// A digest of everything of the region a dossier's access-log fold reads: the
    /// region id, each party's role, admin flag and removal, and each device's
    /// party, age recipient, removal and relay designation. Published addresses,
    /// plans, approvals, names and the log's heads are left out, so that a fold
    /// remembered under this digest (in memory, or in the store's index of readers)
    /// stays valid across region ops that cannot change it (a node publishing its
    /// addresses at every start, a plan created).
    pub fn access_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"regiosync/access-digest/1\0");
        h.update(self.region.0.0);
        let len = |h: &mut Sha256, n: usize| h.update((n as u64).to_be_bytes());
        len(&mut h, self.parties.len());
        for (name, p) in &self.parties {
            len(&mut h, name.as_str().len());
            h.update(name.as_str());
            len(&mut h, p.role.as_str().len());
            h.update(p.role.as_str());
            h.update([u8::from(p.admin), u8::from(p.removed)]);
        }
        len(&mut h, self.devices.len());
        for (id, d) in &self.devices {
            h.update(id.as_bytes());
            len(&mut h, d.party.as_str().len());
            h.update(d.party.as_str());
            len(&mut h, d.age_recipient.len());
            h.update(&d.age_recipient);
            h.update([u8::from(d.removed), u8::from(d.dossier_relay)]);
        }
        h.finalize().into()
    }

    /// The device, if it is a member and not removed (nor its party).
    pub fn active_device(&self, device: &NodeId) -> Option<&DeviceState> {
        let d = self.devices.get(device)?;
        let p = self.parties.get(&d.party)?;
        (!d.removed && !p.removed).then_some(d)
    }

    /// Active devices of a party.
    pub fn devices_of<'a>(
        &'a self,
        party: &'a PartyName,
    ) -> impl Iterator<Item = (&'a NodeId, &'a DeviceState)> {
        self.devices
            .iter()
            .filter(move |(id, d)| &d.party == party && self.active_device(id).is_some())
    }

    /// Whether the device is an active, designated dossier relay.
    pub fn is_dossier_relay(&self, device: &NodeId) -> bool {
        self.active_device(device).is_some_and(|d| d.dossier_relay)
    }

    /// Whether the party exists and was not removed.
    pub fn active_party(&self, party: &PartyName) -> Option<&PartyState> {
        self.parties.get(party).filter(|p| !p.removed)
    }

    /// The name people read for `party`: its display name, or else its id.
    pub fn display_name<'a>(&'a self, party: &'a PartyName) -> &'a str {
        self.parties
            .get(party)
            .and_then(|p| p.display_name.as_deref())
            .unwrap_or(party.as_str())
    }

    /// Active admin parties.
    pub fn admin_parties(&self) -> impl Iterator<Item = &PartyName> {
        self.parties
            .iter()
            .filter(|(_, p)| p.admin && !p.removed)
            .map(|(n, _)| n)
    }

    /// Whether `party` may currently read `doc`.
    pub fn may_read(&self, doc: &DocId, party: &PartyName) -> bool {
        self.active_party(party).is_some() && self.docs.get(doc).is_some_and(|acl| acl.reads(party))
    }

    /// Decides whether a change by `device` with sequence number `seq` and hash
    /// `hash` on `doc` is within the device's write authority now: the device is
    /// active and its party is a writer, or a cutoff keeps this change valid.
    pub fn change_authority(
        &self,
        doc: &DocId,
        device: &NodeId,
        seq: u64,
        hash: &[u8; 32],
    ) -> Result<(), WriteDenied> {
        let acl = self.docs.get(doc).ok_or(WriteDenied::UnknownDocument)?;
        let dev = self.devices.get(device).ok_or(WriteDenied::UnknownDevice)?;
        let writer_now = self.active_device(device).is_some() && acl.writes(&dev.party);
        if writer_now {
            return Ok(());
        }
        match self.cutoffs.get(&(*doc, *device)) {
            Some(c)
                if seq < c.last_seq
                    || (seq == c.last_seq && c.last_hash.as_ref() == Some(hash)) =>
            {
                Ok(())
            }
            _ if self.active_device(device).is_none() => Err(WriteDenied::RemovedDevice),
            _ => Err(WriteDenied::NotAWriter),
        }
    }
}

/// Why a change is outside its author's write authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum WriteDenied {
    /// The document is not registered in the region.
    #[error("the document is not registered in this region")]
    UnknownDocument,
    /// The device is not a member of the region.
    #[error("the author device is not a member of this region")]
    UnknownDevice,
    /// The device (or its party) was removed and the change is past its cutoff.
    #[error("the author device was removed and the change is past its cutoff")]
    RemovedDevice,
    /// The device's party may not write the document.
    #[error("the author's party may not write this document")]
    NotAWriter,
}
