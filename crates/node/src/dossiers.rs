//! Sealed student dossiers on a node: creating one (its access log with the first key
//! epoch and the grant to the student's municipality), reading it (unsealing every
//! accepted change with this device's keys, and writing an audit entry), editing it
//! (rotating the key first when someone lost access), granting and revoking.
//!
//! The access log lives in `dossier_ops` (never in the region log); the sealed
//! changes are rows of `changes` under a `documents` row of kind `dossier` with an
//! empty title, each with its [`SealedEnvelope`]. Sync is in `dossier_sync.rs`.

use std::collections::BTreeSet;

use automerge::{Automerge, Change};
use regiosync_core::audit::{AuditEntry, Who};
use regiosync_core::control::{OpHash, Signed};
use regiosync_core::dossier::access::{
    Basis, DossierAccess, DossierBody, DossierOp, KeyWrap, SignedDossierOp, dossier_id,
    ever_granted, fold_dossier, until_of,
};
use regiosync_core::dossier::{self as schema, Dossier, DossierField};
use regiosync_core::envelope::sealed::{
    DossierEnvelopes, SealedCheck, SealedEnvelope, SealedFields, check_unsealed, envelope_hash,
    sealed_hash,
};
use regiosync_core::id::{DocId, NodeId, PartyName, Role, fill_random};
use regiosync_core::seal::{ContentKey, KeyRing, seal_change, seal_change_rebuildable, wrap_key};
use regiosync_store::StoreRead;
use regiosync_store::{ChangeRow, DocumentRow};
use time::Date;

use crate::Node;
use crate::clock::{now_ms, today};
use crate::control_log::control_of;
use crate::error::NodeError;
use crate::events::ChangeKind;

/// The `documents.kind` of a dossier.
pub const KIND_DOSSIER: &str = "dossier";

/// What a new dossier starts with.
#[derive(Clone)]
pub struct NewDossier {
    /// The municipality the student lives in: it is granted access at once.
    pub woongemeente: PartyName,
    /// The legal basis of that grant.
    pub basis: Basis,
    /// Its purpose.
    pub purpose: String,
    /// Initial field values.
    pub fields: Vec<(DossierField, String)>,
}

/// Who reads or writes a dossier, for the audit log: the person and how they reached
/// the node (a web session's signed-in account, or the CLI's OS user), and why.
#[derive(Clone, Debug)]
pub struct Reader {
    /// Who, and how.
    pub who: Who,
    /// Why.
    pub purpose: String,
}

fn refused(why: impl Into<String>) -> NodeError {
    NodeError::DossierRefused(why.into())
}

impl Node {
    /// The dossiers whose access logs this node holds.
    pub fn dossier_ids(&self) -> Result<Vec<DocId>, NodeError> {
        Ok(self.store.dossier_ids()?)
    }

    /// A dossier's access log as stored (ops that do not decode are skipped).
    pub(crate) fn access_log(&self, id: &DocId) -> Result<Vec<SignedDossierOp>, NodeError> {
        Ok(decode_log(id, &self.store.dossier_ops(id)?))
    }

    /// Resolves a dossier reference (an id or an unambiguous prefix); a full id of an
    /// erased dossier resolves too, so that reading it says it was erased.
    pub fn resolve_dossier(&self, reference: &str) -> Result<DocId, NodeError> {
        if let Ok(id) = reference.trim().parse::<DocId>()
            && self.store.dossier_erased(&id)?.is_some()
        {
            return Ok(id);
        }
        let id = self.resolve(reference).map_err(|e| match e {
            NodeError::UnknownDocument(r) => NodeError::UnknownDossier(r),
            e => e,
        })?;
        if self
            .store
            .document(&id)?
            .is_some_and(|row| row.kind != KIND_DOSSIER)
        {
            // A plan's id given where a dossier is meant.
            return Err(NodeError::UnknownDossier(
                reference.trim().chars().take(64).collect(),
            ));
        }
        Ok(id)
    }

    /// Erases a dossier (owner party or a region admin): the `Erase` op, then every
    /// key (wrapped in the access log) and every sealed change is destroyed here,
    /// leaving a tombstone without personal data. Reads afterwards fail with who
    /// erased it and when.
    pub fn erase_dossier(&mut self, id: &DocId, by: &Reader) -> Result<(), NodeError> {
        self.check_not_erased(id)?;
        let hash = self.issue_dossier_op(id, DossierBody::Erase)?;
        let log = self.access_log(id)?;
        let op = log
            .iter()
            .find(|o| o.hash() == hash)
            .ok_or_else(|| refused("the erase op was not stored"))?
            .clone();
        let state = self.region_state()?;
        let access = fold_dossier(&state, *id, &log)
            .ok_or_else(|| NodeError::UnknownDocument(id.to_string()))?;
        let erased = access
            .erased
            .clone()
            .ok_or_else(|| refused("the erase op was not accepted"))?;
        let open = log
            .iter()
            .find(|o| {
                matches!(o.payload().body, DossierBody::Open { .. })
                    && !access.rejected.contains_key(&o.hash())
            })
            .ok_or_else(|| refused("the dossier has no valid root"))?
            .clone();
        let audience = ever_granted(&access, &log);
        self.audit(id, by, "erase")?;
        self.purge_dossier(id, &erased, &open, &op, &audience)?;
        self.announce_local(Some(*id), ChangeKind::Dossier);
        tracing::info!(dossier = %id, "erased dossier");
        Ok(())
    }

    fn check_not_erased(&self, id: &DocId) -> Result<(), NodeError> {
        match self.store.dossier_erased(id)? {
            Some(t) => Err(NodeError::Erased {
                by: t.erased_by,
                at: t.erased_at,
            }),
            None => Ok(()),
        }
    }

    /// Who may read a dossier, its grants, its key epochs.
    pub fn dossier_access(&self, id: &DocId) -> Result<DossierAccess, NodeError> {
        self.check_not_erased(id)?;
        let state = self.region_state()?;
        let log = self.access_log(id)?;
        fold_dossier(&state, *id, &log).ok_or_else(|| NodeError::UnknownDocument(id.to_string()))
    }

    /// Signs and stores an op of a dossier's access log on top of its heads, if the
    /// fold accepts it.
    fn issue_dossier_op(&mut self, id: &DocId, body: DossierBody) -> Result<OpHash, NodeError> {
        let state = self.region_state()?;
        let log = self.access_log(id)?;
        let parents = log_heads(&log, &state, id);
        let author = self.info.node_id;
        let key = self.signer()?.signing_key().clone();
        let op = Signed::sign(
            DossierOp {
                region: state.region,
                dossier: *id,
                parents,
                author,
                time: crate::clock::now_secs(),
                body,
            },
            &key,
        )?;
        let mut all = log;
        all.push(op.clone());
        let folded = fold_dossier(&state, *id, &all)
            .ok_or_else(|| refused("the dossier has no valid root"))?;
        if let Some(why) = folded.rejected.get(&op.hash()) {
            return Err(NodeError::DossierRejected(why.clone()));
        }
        self.store.write(|tx| {
            tx.put_dossier_op(id, &op.hash().0, &op.encode(), now_ms())
                .map(|_| ())
        })?;
        self.announce_local(Some(*id), ChangeKind::Dossier);
        Ok(op.hash())
    }

    /// Starts a new key epoch for the devices in force (owner party only).
    fn rotate(&mut self, id: &DocId) -> Result<(), NodeError> {
        let state = self.region_state()?;
        let access = self.dossier_access(id)?;
        let taken: BTreeSet<u32> = access.epochs.iter().map(|e| e.epoch).collect();
        let epoch = loop {
            let mut b = [0u8; 4];
            fill_random(&mut b)?;
            let e = u32::from_be_bytes(b);
            if !taken.contains(&e) {
                break e;
            }
        };
        let key = ContentKey::generate()?;
        let wraps = wraps_for(
            &state,
            &access.devices_in_force(&state, today()),
            &key,
            id,
            epoch,
        )?;
        self.issue_dossier_op(
            id,
            DossierBody::Keys {
                epoch,
                new: true,
                wraps,
            },
        )?;
        Ok(())
    }

    /// Wraps every epoch key this device holds for the devices in force that lack it
    /// (a new grantee reads the history; a new device of a party with access too).
    pub(crate) fn wrap_missing(&mut self, id: &DocId) -> Result<(), NodeError> {
        let state = self.region_state()?;
        let access = self.dossier_access(id)?;
        let missing = access.missing_wraps(&state, today());
        if missing.is_empty() {
            return Ok(());
        }
        let ring = self.key_ring(&access)?;
        for (epoch, devices) in missing {
            let Some(key) = ring.get(epoch) else { continue };
            let to: BTreeSet<NodeId> = devices.into_iter().collect();
            let wraps = wraps_for(&state, &to, key, id, epoch)?;
            if !wraps.is_empty() {
                self.issue_dossier_op(
                    id,
                    DossierBody::Keys {
                        epoch,
                        new: false,
                        wraps,
                    },
                )?;
            }
        }
        Ok(())
    }

    /// The keys this device can unwrap from `access` (another node's view of the
    /// dossier's access log, say), for tests that check what a device can open.
    #[doc(hidden)]
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn key_ring_for_tests(&mut self, access: &DossierAccess) -> Result<KeyRing, NodeError> {
        self.key_ring(access)
    }

    pub(crate) fn key_ring(&mut self, access: &DossierAccess) -> Result<KeyRing, NodeError> {
        let me = self.info.node_id;
        let secret = self.signer()?;
        let (ring, failed) = access.key_ring(&me, secret.age_identity());
        for (epoch, why) in failed {
            tracing::warn!(dossier = %access.dossier, epoch, reason = %why, "a wrapped key for this device does not open");
        }
        Ok(ring)
    }

    /// Creates a dossier owned by this node's party, grants the student's
    /// municipality, and writes the initial fields. Returns its id.
    pub fn create_dossier(&mut self, new: &NewDossier, by: &Reader) -> Result<DocId, NodeError> {
        let state = self.region_state()?;
        check_municipality(&state, &new.woongemeente)?;
        let owner = self.info.party.clone();
        let mut nonce = [0u8; 16];
        fill_random(&mut nonce)?;
        let id = dossier_id(&self.info.node_id, &owner, &nonce);
        self.store
            .write(|tx| tx.insert_document(&dossier_row(id)))?;
        self.issue_dossier_op(
            &id,
            DossierBody::Open {
                owner: owner.clone(),
                nonce,
            },
        )?;
        self.rotate(&id)?;
        if new.woongemeente != owner {
            self.issue_dossier_op(
                &id,
                DossierBody::Grant {
                    party: new.woongemeente.clone(),
                    basis: new.basis,
                    purpose: new.purpose.clone(),
                    until: None,
                },
            )?;
            self.wrap_missing(&id)?;
        }
        let woongemeente = new.woongemeente.clone();
        let fields = new.fields.clone();
        self.write_dossier(&id, by, "create", move |tx| {
            schema::init_dossier(tx, &woongemeente)?;
            for (f, v) in &fields {
                schema::set_field(tx, *f, v)?;
            }
            Ok(())
        })?;
        tracing::info!(dossier = %id, "created dossier");
        Ok(id)
    }

    /// Reads a dossier for a user: unseals every accepted change this device has a
    /// key for, and writes an audit entry.
    pub fn read_dossier(&mut self, id: &DocId, by: &Reader) -> Result<Dossier, NodeError> {
        let doc = self.unsealed_doc(id)?;
        let dossier = schema::read_dossier(&doc)?;
        self.audit(id, by, "read")?;
        Ok(dossier)
    }

    /// Sets a field of a dossier.
    pub fn edit_dossier(
        &mut self,
        id: &DocId,
        field: DossierField,
        value: &str,
        by: &Reader,
    ) -> Result<(), NodeError> {
        if field == DossierField::Woongemeente {
            // The woongemeente's access comes from a grant; changing the field alone
            // would leave the old municipality in and the new one out.
            return Err(refused(format!(
                "the woongemeente is not changed with `dossier edit`: grant the new municipality access (`regiosync dossier grant {id} --party NEW --basis wettelijke-taak --purpose \"verhuizing\"`), revoke the old one (`regiosync dossier revoke {id} --party OLD --reason verhuisd`), and record the move with a note"
            )));
        }
        let value = value.to_owned();
        self.write_dossier(id, by, "edit", move |tx| {
            schema::set_field(tx, field, &value)
        })
    }

    /// Adds an entry to a dossier's contact log, written by this node's party today.
    pub fn add_dossier_note(
        &mut self,
        id: &DocId,
        text: &str,
        by: &Reader,
    ) -> Result<(), NodeError> {
        let party = self.info.party.clone();
        let text = text.to_owned();
        self.write_dossier(id, by, "note", move |tx| {
            schema::add_contact(tx, today(), &party, &text)
        })
    }

    /// Appends a support agreement (ondersteuningsafspraak) with its evaluation date,
    /// if any; returns its id. Audited as `agreement` under `by`.
    pub fn add_dossier_agreement(
        &mut self,
        id: &DocId,
        text: &str,
        evaluate: Option<time::Date>,
        by: &Reader,
    ) -> Result<String, NodeError> {
        let text = text.to_owned();
        let mut made = String::new();
        self.write_dossier(id, by, "agreement", |tx| {
            made = schema::add_support_agreement(tx, &text, evaluate)?;
            Ok(())
        })?;
        Ok(made)
    }

    /// Grants a party access (owner party only) and gives its devices every key;
    /// audited as `grant` under `by` (its purpose is the grant's).
    pub fn grant_dossier(
        &mut self,
        id: &DocId,
        party: PartyName,
        basis: Basis,
        purpose: &str,
        until: Option<Date>,
        by: &Reader,
    ) -> Result<(), NodeError> {
        if let Some(end) = until
            && end < today()
        {
            return Err(NodeError::GrantEndsInPast {
                until: end,
                today: today(),
            });
        }
        self.issue_dossier_op(
            id,
            DossierBody::Grant {
                party,
                basis,
                purpose: purpose.to_owned(),
                until: until.map(until_of),
            },
        )?;
        self.audit(id, by, "grant")?;
        self.wrap_missing(id)
    }

    /// Revokes a party's access (owner party only), keeping the changes of its
    /// devices this node holds, and starts a new key epoch without it; audited as
    /// `revoke` under `by`.
    pub fn revoke_dossier(
        &mut self,
        id: &DocId,
        party: PartyName,
        reason: &str,
        by: &Reader,
    ) -> Result<(), NodeError> {
        let state = self.region_state()?;
        let mut keep: Vec<[u8; 32]> = self
            .store
            .changes(id)?
            .into_iter()
            .filter_map(|r| {
                let env = SealedEnvelope::decode(r.envelope.as_deref()?).ok()?;
                let dev = state.devices.get(&env.fields().author)?;
                (dev.party == party).then_some(r.hash)
            })
            .collect();
        keep.sort_unstable();
        keep.dedup();
        self.issue_dossier_op(
            id,
            DossierBody::Revoke {
                party,
                reason: reason.to_owned(),
                keep,
            },
        )?;
        self.audit(id, by, "revoke")?;
        self.rotate(id)
    }

    /// Makes one change: rotates first if a holder of the current key lost access,
    /// seals the change under the current epoch and stores it with its envelope.
    fn write_dossier(
        &mut self,
        id: &DocId,
        by: &Reader,
        action: &str,
        f: impl FnOnce(
            &mut automerge::transaction::Transaction<'_>,
        ) -> Result<(), regiosync_core::dossier::DossierError>,
    ) -> Result<(), NodeError> {
        let mut f = Some(f);
        self.write_dossier_changes(id, by, action, 1, |tx, _| match f.take() {
            Some(f) => f(tx),
            None => Ok(()),
        })
    }

    /// Appends `n` changes to a dossier in one store transaction, for benchmarks that
    /// need many dossiers fast (one transaction instead of one per change). Not for
    /// normal use: a real edit goes through [`Node::add_dossier_note`] and friends.
    #[doc(hidden)]
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn bulk_dossier_edits_for_bench(
        &mut self,
        id: &DocId,
        by: &Reader,
        n: usize,
        f: impl FnMut(
            &mut automerge::transaction::Transaction<'_>,
            usize,
        ) -> Result<(), regiosync_core::dossier::DossierError>,
    ) -> Result<(), NodeError> {
        self.write_dossier_changes(id, by, "bench", n, f)
    }

    /// Rebuilds a dossier, makes `n` changes with `f` (given the change's index),
    /// seals, signs and stores them with one audit entry, in one store transaction.
    fn write_dossier_changes(
        &mut self,
        id: &DocId,
        by: &Reader,
        action: &str,
        n: usize,
        mut f: impl FnMut(
            &mut automerge::transaction::Transaction<'_>,
            usize,
        ) -> Result<(), regiosync_core::dossier::DossierError>,
    ) -> Result<(), NodeError> {
        let state = self.region_state()?;
        let access = self.dossier_access(id)?;
        if let Some(e) = &access.erased {
            return Err(erased(e));
        }
        if !access.has_access(&self.info.party) {
            return Err(NodeError::NoDossierAccess);
        }
        if access.needs_rotation(&state, today()) {
            if access.owner != self.info.party {
                return Err(NodeError::DossierNeedsNewKey);
            }
            self.rotate(id)?;
        }
        self.wrap_missing(id)?;
        let me = self.info.node_id;
        let secret = self.signer()?;
        let identity = secret.age_identity().clone();
        let signing = secret.signing_key().clone();
        let entry = self.audit_entry(id, by, action);
        // Rebuild, edit, seal and store in one write transaction: a second process
        // writing the same dossier waits, and sees this change when it rebuilds.
        let written = self.store.write(|tx| {
            let folded = control_of(tx)?.ok_or(NodeError::NotInRegion)?;
            let state = &folded.state;
            let log = decode_log(id, &tx.dossier_ops(id)?);
            let access = fold_dossier(state, *id, &log)
                .ok_or_else(|| NodeError::UnknownDocument(id.to_string()))?;
            let (ring, _) = access.key_ring(&me, &identity);
            let epoch = access
                .current_epoch()
                .map(|e| e.epoch)
                .ok_or_else(|| refused("the dossier has no key yet"))?;
            let key = ring
                .get(epoch)
                .ok_or_else(|| refused("this device has no key of the dossier's current epoch"))?;
            let rows = tx.changes(id)?;
            let mut doc = build_doc(id, &rows, &log, state, folded.known_ops(), &ring)?;
            doc.set_actor(me.actor_id());
            // Each change names this device's previous one in the dossier (the
            // writes of one device are serialised by this transaction), so that a
            // peer checks one signature for the whole run (`authentic`).
            let mut prev = rows
                .iter()
                .rev()
                .find(|r| r.actor == me.as_bytes())
                .and_then(|r| r.envelope.as_deref())
                .map(envelope_hash);
            let access_heads = log_heads(&log, state, id);
            let mut written = false;
            for i in 0..n {
                let mut t = doc.transaction();
                if let Err(e) = f(&mut t, i) {
                    t.rollback();
                    return Err(e.into());
                }
                if t.commit().0.is_none() {
                    continue;
                }
                let Some(change) = doc.get_last_local_change() else {
                    continue;
                };
                written = true;
                // A chained change (envelope format 2, never sent to older versions)
                // is sealed with a synthetic nonce (seal format 2), so that a reader
                // can rebuild its sealed bytes from a bundle; a first change stays in
                // the formats every version reads.
                let sealed = match prev {
                    Some(_) => seal_change_rebuildable(
                        key,
                        id,
                        epoch,
                        &change.hash().0,
                        change.raw_bytes(),
                    )?,
                    None => seal_change(key, id, epoch, &change.hash().0, change.raw_bytes())?,
                };
                let envelope = SealedEnvelope::sign(
                    SealedFields {
                        region: state.region,
                        dossier: *id,
                        change_hash: change.hash().0,
                        sealed_hash: sealed_hash(&sealed),
                        author: me,
                        control_heads: state.heads.clone(),
                        access_heads: access_heads.clone(),
                        prev,
                    },
                    &signing,
                )?;
                let envelope = envelope.encode();
                prev = Some(envelope_hash(&envelope));
                tx.append_change(
                    id,
                    &ChangeRow {
                        hash: change.hash().0,
                        actor: me.as_bytes().to_vec(),
                        seq: change.seq(),
                        bytes: sealed,
                        stored_ms: now_ms(),
                        envelope: Some(envelope),
                    },
                )?;
            }
            // The changes and their audit entry commit together.
            if written {
                tx.append_audit(&entry)?;
            }
            Ok::<_, NodeError>(written)
        })?;
        if written {
            self.announce_local(Some(*id), ChangeKind::Dossier);
        }
        Ok(())
    }

    /// The dossier's document from every accepted change this device can open.
    fn unsealed_doc(&mut self, id: &DocId) -> Result<Automerge, NodeError> {
        self.check_not_erased(id)?;
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        let state = &folded.state;
        let known = folded.known_ops();
        let log = self.access_log(id)?;
        let access = fold_dossier(state, *id, &log)
            .ok_or_else(|| NodeError::UnknownDocument(id.to_string()))?;
        if let Some(e) = &access.erased {
            return Err(erased(e));
        }
        let ring = self.key_ring(&access)?;
        if ring.latest().is_none() {
            return Err(refused(
                "this device holds no key of this dossier: its party has no access",
            ));
        }
        build_doc(id, &self.store.changes(id)?, &log, state, known, &ring)
    }

    fn audit_entry(&self, id: &DocId, by: &Reader, action: &str) -> AuditEntry {
        AuditEntry {
            at_ms: now_ms(),
            device: *self.info.node_id.as_bytes(),
            who: by.who.clone(),
            dossier: *id,
            action: action.to_owned(),
            purpose: by.purpose.clone(),
        }
    }

    fn audit(&mut self, id: &DocId, by: &Reader, action: &str) -> Result<(), NodeError> {
        let entry = self.audit_entry(id, by, action);
        self.store.write(|tx| tx.append_audit(&entry).map(|_| ()))?;
        Ok(())
    }
}

/// The `documents` row of a dossier: no title, nothing that says whose it is.
pub(crate) fn dossier_row(id: DocId) -> DocumentRow {
    DocumentRow {
        id,
        kind: KIND_DOSSIER.into(),
        subkind: String::new(),
        title: String::new(),
        created_ms: now_ms(),
    }
}

/// Decodes a stored access log; ops that do not decode are skipped with a warning.
/// Signatures were checked before the ops were stored (as for the region log).
pub(crate) fn decode_log(id: &DocId, stored: &[Vec<u8>]) -> Vec<SignedDossierOp> {
    stored
        .iter()
        .filter_map(|b| match Signed::<DossierOp>::decode_stored(b) {
            Ok(op) => Some(op),
            Err(e) => {
                tracing::warn!(dossier = %id, error = %e, "skipping a stored dossier op that does not decode");
                None
            }
        })
        .collect()
}

/// The dossier document from the stored sealed changes: each verified
/// (`verify_sealed`), unsealed with `ring` and checked against its envelope; the rest
/// is skipped with the reason in the log.
fn build_doc(
    id: &DocId,
    rows: &[ChangeRow],
    log: &[SignedDossierOp],
    state: &regiosync_core::control::RegionState,
    known: &std::collections::HashSet<OpHash>,
    ring: &KeyRing,
) -> Result<Automerge, NodeError> {
    let mut changes: Vec<Change> = Vec::new();
    let mut check = SealedCheck::new(id, state, log);
    let envelopes = DossierEnvelopes::decode(*id, rows.iter().map(|r| r.envelope.as_deref()));
    let authentic = envelopes.authentic(|_, _| false);
    for (i, row) in rows.iter().enumerate() {
        let Some(env) = envelopes.get(i) else {
            tracing::warn!(dossier = %id, "a stored dossier change has no readable envelope");
            continue;
        };
        if let Err(why) =
            check.verify_authentic(env, &row.bytes, |h| known.contains(h), authentic[i])
        {
            tracing::info!(dossier = %id, reason = %why, "ignoring a refused dossier change");
            continue;
        }
        let plain = match ring.unseal(&env.fields().change_hash, &row.bytes) {
            Ok(p) => p,
            Err(why) => {
                tracing::info!(dossier = %id, reason = %why, "a dossier change this device cannot open");
                continue;
            }
        };
        match regiosync_core::change_chunk::parse_change(&plain) {
            Ok(c) if check_unsealed(env, &c).is_ok() => changes.push(c),
            _ => {
                tracing::warn!(dossier = %id, "a sealed change is not the change its author signed")
            }
        }
    }
    let mut doc = Automerge::new();
    doc.apply_changes(changes)
        .map_err(|e| NodeError::DamagedDocument {
            id: *id,
            detail: e.to_string(),
        })?;
    Ok(doc)
}

fn erased(e: &regiosync_core::dossier::access::Erased) -> NodeError {
    NodeError::Erased {
        by: e.by.to_string(),
        at: e.at,
    }
}

/// The heads of an access log: accepted ops nothing else names as a parent.
fn log_heads(
    log: &[SignedDossierOp],
    state: &regiosync_core::control::RegionState,
    id: &DocId,
) -> Vec<OpHash> {
    let folded = fold_dossier(state, *id, log);
    let accepted = |h: &OpHash| {
        folded
            .as_ref()
            .is_none_or(|f| !f.rejected.contains_key(h) && !f.pending.contains(h))
    };
    // Only accepted ops count as naming a parent: an op that is pending or refused
    // (e.g. one naming every hash of the log plus a made-up one) must not hide the
    // heads the owner builds on.
    let named: BTreeSet<OpHash> = log
        .iter()
        .filter(|o| accepted(&o.hash()))
        .flat_map(|o| o.payload().parents.iter().copied())
        .collect();
    let mut heads: Vec<OpHash> = log
        .iter()
        .map(|o| o.hash())
        .filter(|h| !named.contains(h) && accepted(h))
        .collect();
    heads.sort();
    heads.dedup();
    heads
}

/// Wraps `key` for each of `devices`.
fn wraps_for(
    state: &regiosync_core::control::RegionState,
    devices: &BTreeSet<NodeId>,
    key: &ContentKey,
    id: &DocId,
    epoch: u32,
) -> Result<Vec<KeyWrap>, NodeError> {
    let mut wraps = Vec::new();
    for d in devices {
        let Some(dev) = state.devices.get(d) else {
            continue;
        };
        let Ok(recipient) = dev.age_recipient.parse::<age::x25519::Recipient>() else {
            tracing::warn!(device = %d, "a device's age recipient does not parse; it gets no key");
            continue;
        };
        wraps.push(KeyWrap {
            device: *d,
            wrapped: wrap_key(key, id, epoch, &recipient)?,
        });
    }
    Ok(wraps)
}

/// A dossier's woongemeente must be a municipality of the region (a party with the
/// role gemeente or kerngemeente that was not removed).
fn check_municipality(
    state: &regiosync_core::control::RegionState,
    party: &PartyName,
) -> Result<(), NodeError> {
    let municipalities: Vec<&str> = state
        .parties
        .iter()
        .filter(|(_, p)| !p.removed && matches!(p.role, Role::Gemeente | Role::Kerngemeente))
        .map(|(n, _)| n.as_str())
        .collect();
    let choose = if municipalities.is_empty() {
        "the region has no municipality yet: invite one first (`regiosync invite --party gemeente-… --role gemeente`)".to_owned()
    } else {
        format!("the woongemeente is one of: {}", municipalities.join(", "))
    };
    match state.active_party(party) {
        Some(p) if matches!(p.role, Role::Gemeente | Role::Kerngemeente) => Ok(()),
        Some(p) => Err(refused(format!(
            "{party} is a party of the region with the role {}, not a municipality; {choose}",
            p.role
        ))),
        None => Err(refused(format!(
            "{party} is not a party of the region; {choose}"
        ))),
    }
}
