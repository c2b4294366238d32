//! Sealed dossiers in sync sessions: who is sent a dossier, what it adds to the
//! summary, and the `Dossiers` exchange (messages in `regiosync_core::sync`).
//!
//! **Sync policy.** A node sends a dossier only to the active devices of the parties
//! whose access is in force by its own fold of the dossier's access log, and to
//! designated dossier relays (`SetDossierRelay` in the region log). To anyone else
//! the dossier does not exist: it is not in their summary and no message to them
//! names it. A receiver stores a dossier only if, by its own fold of the log it then
//! holds, its party has access or it is a designated relay; every op's signature and
//! every sealed change's envelope (`verify_sealed`) is checked first, so a relay
//! forwards only what its authors were entitled to write, without reading it.
//!
//! **Reconciliation by id.** A relay cannot read sealed changes, so it cannot know
//! their dependencies: dossiers are compared by the hashes of their access-log ops
//! and sealed changes (in the summary, and in `DossierMessage::have`), and each side
//! sends what the other's list lacks.
//!
//! **Erasure.** A node that learns of a valid `Erase` (checked on its own against
//! the dossier's `Open`: a revoked party lacks the ops in between) destroys its copy
//! and keeps a tombstone, which it sends on to the devices of every party that ever
//! had access and to relays, so that they purge theirs. A node that was sent only the
//! `Open` and the `Erase` (it never held the dossier) knows only part of that
//! audience: a peer that shows it holds the erasure joins it, so that both sides
//! offer the tombstone to each other and their summaries agree.
//!
//! **Withheld.** A party whose access ended does not hold the ops that ended it, and
//! keeps offering the dossier; the other side answers `withheld` (or marks its
//! opening message so, when it opened the session), and the offer stops (until new
//! access-log ops for that dossier arrive, that peer sends the dossier without
//! refusing it, or the node restarts). Only a
//! party that once held the dossier is told `withheld`: to a party that never had
//! access, a dossier this node holds is answered exactly as an id it never heard of.
//!
//! **What is taken in.** Items of a dossier are taken only from a designated relay or
//! a device of a party whose access is in force, and only the ops the fold accepts
//! are stored (not refused ones, not ones waiting for parents).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use regiosync_core::control::{Folded, OpError, OpHash, RegionState, Signed};
use regiosync_core::dossier::access::{
    AccessSummary, DossierBody, DossierOp, SignedDossierOp, check_erase, dossier_id, ever_granted,
    fold_dossier,
};
use regiosync_core::envelope::preverify_signatures;
use regiosync_core::envelope::sealed::{DossierEnvelopes, SealedCheck, SealedEnvelope};
use regiosync_core::id::{DocId, NodeId, PartyName};
use regiosync_core::seal::KeyRing;
use regiosync_core::sync::bundle::{
    BundleError, MAX_BUNDLE_PLAIN, MIN_BUNDLED, OutBundle, PendingBundle,
};
use regiosync_core::sync::rules::{
    MAX_DOSSIER_BATCH_BYTES, all_items, is_sealed_forgery, parents_first, tombstone_items,
};
use regiosync_core::sync::session::Received;
use regiosync_core::sync::summary::doc_digest;
use regiosync_core::sync::{
    DossierMessage, MAX_DOSSIER_OPS_PER_MESSAGE, Request, Response, SignedChange,
};
use regiosync_store::StoreRead;
use regiosync_store::{ChangeRow, DossierItems, Tombstone};

use crate::Node;
use crate::clock::{now_ms, today};
use crate::dossiers::dossier_row;
use crate::error::NodeError;
use crate::sync::SessionMemory;

/// [`Node::all_dossier_readers`]'s last result and what it was computed from: the
/// membership digest, the date, and the store's marks of access-log ops and
/// erasures (any process's write moves them).
#[derive(Debug)]
pub(crate) struct AllReaders {
    key: ([u8; 32], time::Date, i64, (i64, i64)),
    readers: Arc<ReadersOfAll>,
}

/// Each dossier held and the parties in force for it.
pub(crate) type ReadersOfAll = Vec<(DocId, BTreeSet<PartyName>)>;

/// Above this many dossiers shared with a peer, their items are read in one scan of
/// every dossier's instead of one read each.
const SCAN_ALL_ITEMS_ABOVE: usize = 2_000;

/// What receiving one dossier leaves to store: its new access-log ops and sealed
/// changes, all verified, written with the other dossiers of the same message in
/// one transaction (`Node::receive_dossiers`).
struct DossierWrite {
    id: DocId,
    ops: Vec<SignedDossierOp>,
    rows: Vec<ChangeRow>,
}

impl Node {
    /// The parties whose access to `id` is in force, by this node's fold of its log;
    /// remembered (`memory`) while the region's control heads, the dossier's
    /// access-log ops and the date stay the same (a fold per dossier and session
    /// would dominate an idle sync of thousands of dossiers).
    fn dossier_readers(
        &self,
        memory: &SessionMemory,
        state: &RegionState,
        id: &DocId,
        op_hashes: &[[u8; 32]],
    ) -> Result<Arc<BTreeSet<PartyName>>, NodeError> {
        let mut ops = op_hashes.to_vec();
        ops.sort_unstable();
        let key: regiosync_core::sync::memory::ReadersKey = (state.access_digest(), ops, today());
        let remembered = memory.lock().readers(id, &key);
        if let Some(readers) = remembered {
            return Ok(readers);
        }
        let log = self.access_log(id)?;
        let readers = Arc::new(
            fold_dossier(state, *id, &log)
                .map(|a| a.in_force(state, key.2))
                .unwrap_or_default(),
        );
        memory.lock().remember_readers(*id, key, readers.clone());
        Ok(readers)
    }

    /// The parties in force of every dossier whose log this node holds, for what
    /// looks at all of them at once (the summary of what is shared with a peer, the
    /// status): from the store's readers index where its row was folded under the
    /// region's present membership (`RegionState::access_digest`), else folded now
    /// and the row written, so that a node with 100,000 dossiers does not fold every
    /// log again at start-up. Each row is deleted by the store when an op of its
    /// dossier is added, so a row found is the fold of the log as held. The result
    /// is kept in memory while the membership digest, the date and the store's marks
    /// of access-log ops and erasures (by any process) stay the same.
    pub(crate) fn all_dossier_readers(
        &self,
        state: &RegionState,
    ) -> Result<Arc<ReadersOfAll>, NodeError> {
        let marks = self.store.write_marks()?;
        let key = (
            state.access_digest(),
            today(),
            marks.dossier_ops,
            marks.erased,
        );
        if let Ok(kept) = self.all_readers.lock()
            && let Some(kept) = kept.as_ref()
            && kept.key == key
        {
            return Ok(kept.readers.clone());
        }
        let (digest, day) = (key.0, key.1);
        let mut out = Vec::new();
        let mut folded = Vec::new();
        for (id, row) in self.store.dossier_readers_index()? {
            let summary = match row.and_then(|(d, s)| (d == digest).then_some(s)) {
                Some(bytes) => AccessSummary::decode(&bytes),
                None => None,
            };
            let summary = match summary {
                Some(s) => s,
                None => {
                    // The rows read once: their number is what the row is valid for.
                    let raw = self.store.dossier_ops(&id)?;
                    let log = crate::dossiers::decode_log(&id, &raw);
                    let s = fold_dossier(state, id, &log)
                        .map(|a| a.summary())
                        .unwrap_or_else(AccessSummary::nobody);
                    folded.push((id, digest, s.encode(), raw.len()));
                    s
                }
            };
            out.push((id, summary.in_force(state, day)));
        }
        if !folded.is_empty() {
            tracing::debug!(
                dossiers = folded.len(),
                "folded access logs the readers index lacked"
            );
            // An index: losing a row costs a fold, never a wrong answer.
            if let Err(e) = self.store.cache_dossier_readers(&folded) {
                tracing::warn!(error = %e, "cannot write the dossier readers index");
            }
        }
        let readers = Arc::new(out);
        if let Ok(mut kept) = self.all_readers.lock() {
            *kept = Some(AllReaders {
                key,
                readers: readers.clone(),
            });
        }
        Ok(readers)
    }

    /// Whether this node may send the dossier to `peer`: a relay, or a device of a
    /// party whose access is in force.
    fn may_send_dossier(
        &self,
        memory: &SessionMemory,
        state: &RegionState,
        peer: &NodeId,
        id: &DocId,
        items: &DossierItems,
    ) -> Result<bool, NodeError> {
        let Some(dev) = state.active_device(peer) else {
            return Ok(false);
        };
        Ok(state.is_dossier_relay(peer)
            || self
                .dossier_readers(memory, state, id, &items.ops)?
                .contains(&dev.party))
    }

    /// Whether `peer`'s party ever had access to the dossier by this node's fold (the
    /// owner or a party of an accepted grant, revoked or expired since).
    fn held_before(
        &self,
        state: &RegionState,
        peer: &NodeId,
        id: &DocId,
    ) -> Result<bool, NodeError> {
        let Some(dev) = state.active_device(peer) else {
            return Ok(false);
        };
        let log = self.access_log(id)?;
        Ok(fold_dossier(state, *id, &log)
            .is_some_and(|a| ever_granted(&a, &log).contains(&dev.party)))
    }

    /// Whether this node may send a tombstone to `peer`: a relay, or a device of a
    /// party that ever had access.
    fn may_send_tombstone(state: &RegionState, peer: &NodeId, t: &Tombstone) -> bool {
        let Some(dev) = state.active_device(peer) else {
            return false;
        };
        state.is_dossier_relay(peer) || t.audience.iter().any(|p| p == dev.party.as_str())
    }

    /// The dossiers (and tombstones) this node may send to `peer`, with their summary
    /// digests; dossiers `peer` withheld from this node are left out.
    pub(crate) fn shared_dossiers(
        &self,
        memory: &SessionMemory,
        state: &RegionState,
        peer: &NodeId,
    ) -> Result<BTreeMap<DocId, [u8; 8]>, NodeError> {
        let Some(dev) = state.active_device(peer) else {
            return Ok(BTreeMap::new());
        };
        let relay = state.is_dossier_relay(peer);
        let sent: Vec<DocId> = self
            .all_dossier_readers(state)?
            .iter()
            .filter(|(id, readers)| {
                (relay || readers.contains(&dev.party)) && !memory.lock().is_withheld(peer, id)
            })
            .map(|(id, _)| *id)
            .collect();
        // The digests of the dossiers sent, from the store's digest index; the items
        // of those it lacks are read (one read per dossier when a few lack one, one
        // scan of all when many do).
        let mut out = self.store.dossier_digests(&sent, SCAN_ALL_ITEMS_ABOVE)?;
        for t in self.store.tombstones()? {
            if Self::may_send_tombstone(state, peer, &t) {
                out.insert(t.dossier, doc_digest(&t.dossier, &tombstone_items(&t)));
            }
        }
        Ok(out)
    }

    /// The opening `Dossiers` messages for differing documents that are not plans:
    /// what this node holds of each (nothing for one it does not hold, or for a
    /// tombstone it may not send to `peer`); a dossier it may not send to `peer` is
    /// left out, or, if `peer`'s party held it before, marked `withheld`.
    pub(crate) fn opening_dossiers(
        &self,
        memory: &SessionMemory,
        state: &RegionState,
        peer: &NodeId,
        ids: &[DocId],
    ) -> Result<Vec<DossierMessage>, NodeError> {
        let mut out = Vec::new();
        for id in ids {
            let have = if let Some(t) = self.store.dossier_erased(id)? {
                if Self::may_send_tombstone(state, peer, &t) {
                    tombstone_items(&t)
                } else {
                    // The peer named it (it differs), so the peer holds it and offers
                    // it to this node: open with what a node that never held it
                    // says (nothing), so that the peer sends the erasure and this
                    // node learns that the peer holds it (`note_erasure_holder`).
                    vec![]
                }
            } else if let Some(items) = self.store.dossier_items_of(id)? {
                if !self.may_send_dossier(memory, state, peer, id, &items)? {
                    // As the responder does (`answer_dossiers`): a party that held the
                    // dossier and lost access is told so, and stops offering it,
                    // whichever side opened the session; anyone else hears nothing.
                    if self.held_before(state, peer, id)? {
                        out.push(DossierMessage {
                            dossier: *id,
                            have: vec![],
                            ops: vec![],
                            changes: vec![],
                            withheld: true,
                        });
                    }
                    continue;
                }
                all_items(&items)
            } else {
                vec![]
            };
            out.push(DossierMessage {
                dossier: *id,
                have,
                ops: vec![],
                changes: vec![],
                withheld: false,
            });
        }
        Ok(out)
    }

    /// For each incoming dossier message: what this node holds of it and what the
    /// other side lacks (within the batch budget), or `withheld`.
    pub(crate) fn answer_dossiers(
        &self,
        memory: &SessionMemory,
        state: &RegionState,
        peer: &NodeId,
        incoming: &[DossierMessage],
    ) -> Result<Vec<DossierMessage>, NodeError> {
        let mut budget = MAX_DOSSIER_BATCH_BYTES;
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for m in incoming
            .iter()
            .filter(|m| !m.withheld && seen.insert(m.dossier))
        {
            let id = m.dossier;
            let theirs: HashSet<[u8; 32]> = m.have.iter().copied().collect();
            let mut reply = DossierMessage {
                dossier: id,
                have: vec![],
                ops: vec![],
                changes: vec![],
                withheld: false,
            };
            if let Some(t) = self.store.dossier_erased(&id)? {
                if Self::may_send_tombstone(state, peer, &t) {
                    reply.have = tombstone_items(&t);
                    for op in [&t.open_op, &t.erase_op] {
                        if let Ok(o) = Signed::<DossierOp>::decode_stored(op)
                            && !theirs.contains(&o.hash().0)
                            && op.len() <= budget
                        {
                            budget -= op.len();
                            reply.ops.push(op.clone());
                        }
                    }
                }
                // Otherwise the answer is the one for a dossier this node never
                // held: nothing.
            } else if let Some(items) = self.store.dossier_items_of(&id)? {
                if !self.may_send_dossier(memory, state, peer, &id, &items)? {
                    // A party that held the dossier and lost access is told so, and
                    // stops offering it. To anyone else the answer is the one for a
                    // dossier this node does not hold (no `withheld`, no hashes): a
                    // party that never had access cannot tell an existing dossier
                    // from a random id. Should the peer hold access this node has not
                    // heard of yet, it sends what it has and this node takes it in.
                    if self.held_before(state, peer, &id)? {
                        reply.withheld = true;
                    }
                } else {
                    reply.have = all_items(&items);
                    let lacking: Vec<Vec<u8>> = self
                        .store
                        .dossier_ops(&id)?
                        .into_iter()
                        .filter(|b| {
                            Signed::<DossierOp>::decode_stored(b)
                                .is_ok_and(|o| !theirs.contains(&o.hash().0))
                        })
                        .collect();
                    for b in parents_first(lacking)
                        .into_iter()
                        .take(MAX_DOSSIER_OPS_PER_MESSAGE)
                    {
                        // Parents first: what the budget cuts off comes in a later
                        // round, after the ops it builds on.
                        if b.len() > budget {
                            break;
                        }
                        budget -= b.len();
                        reply.ops.push(b);
                    }
                    for r in self.store.changes(&id)? {
                        let Some(envelope) = r.envelope else { continue };
                        let size = r.bytes.len() + envelope.len();
                        if theirs.contains(&r.hash) || size > budget {
                            continue;
                        }
                        budget -= size;
                        reply.changes.push(SignedChange {
                            change: r.bytes,
                            envelope,
                        });
                    }
                }
            }
            out.push(reply);
        }
        Ok(out)
    }

    /// Verifies and stores the ops and sealed changes in incoming dossier messages,
    /// purges dossiers whose erasure arrived, and notes the dossiers withheld.
    pub(crate) fn receive_dossiers(
        &mut self,
        memory: &SessionMemory,
        folded: &Folded,
        peer: &NodeId,
        incoming: &[DossierMessage],
        bundles: Vec<PendingBundle>,
    ) -> Result<Received, NodeError> {
        let mut total = Received::default();
        let mut seen = HashSet::new();
        let mut writes: Vec<DossierWrite> = Vec::new();
        // The access-log ops of all the message's dossiers in one batch: each
        // author's newest op vouches for the earlier ones it names as parents, and
        // those newest ones are checked on all cores (`Signed::decode_batch`).
        let wires: Vec<&[u8]> = incoming
            .iter()
            .flat_map(|m| m.ops.iter().map(Vec::as_slice))
            .collect();
        let mut ops = Signed::<DossierOp>::decode_batch(&wires).into_iter();
        let ops: Vec<Vec<Result<SignedDossierOp, OpError>>> = incoming
            .iter()
            .map(|m| ops.by_ref().take(m.ops.len()).collect())
            .collect();
        // Bundled changes join their dossier's others, opened with the keys the
        // access log (with this message's ops) gives this device.
        let opened;
        let incoming = if bundles.is_empty() {
            incoming
        } else {
            opened = self.open_bundles(folded, peer, incoming, &ops, bundles, &mut total)?;
            &opened[..]
        };
        // Each dossier's envelopes decoded once. The signatures a dossier's chains
        // rest on (each author's newest envelope, `chain_tips`) are checked on
        // all cores first; the checks below find them checked, and the older
        // envelopes of a chain need no check of their own (`authentic`).
        let decoded: Vec<DossierEnvelopes> = incoming
            .iter()
            .map(|m| {
                DossierEnvelopes::decode(m.dossier, m.changes.iter().map(|c| Some(&c.envelope[..])))
            })
            .collect();
        let tips: Vec<&SealedEnvelope> = decoded
            .iter()
            .zip(incoming)
            .flat_map(|(d, m)| {
                d.tips().into_iter().filter(move |e| {
                    e.fields().dossier == m.dossier && e.fields().region == folded.state.region
                })
            })
            .collect();
        preverify_signatures(tips);
        for ((m, envelopes), ops) in incoming.iter().zip(&decoded).zip(ops) {
            if !seen.insert(m.dossier) {
                // A dossier named twice in one message: only the first counts.
                continue;
            }
            if m.withheld {
                if self.store.document(&m.dossier)?.is_some() {
                    memory.lock().withhold(*peer, m.dossier);
                }
                continue;
            }
            // The peer shares the dossier (again): a refusal it sent earlier, perhaps
            // delivered after the grant that ended it, no longer holds.
            memory.lock().unwithhold(peer, &m.dossier);
            self.note_erasure_holder(&folded.state, peer, m)?;
            if m.ops.is_empty() && m.changes.is_empty() {
                continue;
            }
            let (r, write) = self.receive_dossier(memory, folded, peer, m, ops, envelopes)?;
            if r.stored > 0 {
                // An erasure (the only thing stored here): passed on too.
                total.docs.push(m.dossier);
            }
            total.stored += r.stored;
            total.forged += r.forged;
            writes.extend(write);
        }
        // What the message's dossiers brought is stored in one transaction: a
        // catch-up of hundreds of dossiers pays one commit per message, not one per
        // dossier. Each dossier's items were verified on their own above; none of
        // them depends on another dossier's.
        let counts = self.store.write(|tx| {
            let mut counts = Vec::with_capacity(writes.len());
            for w in &writes {
                if tx.document(&w.id)?.is_none() {
                    tx.insert_document(&dossier_row(w.id))?;
                }
                let mut n = 0;
                for op in &w.ops {
                    if tx.put_dossier_op(&w.id, &op.hash().0, &op.encode(), now_ms())? {
                        n += 1;
                    }
                }
                for r in &w.rows {
                    if tx.append_change(&w.id, r)?.is_some() {
                        n += 1;
                    }
                }
                counts.push(n);
            }
            Ok::<_, NodeError>(counts)
        })?;
        for (w, n) in writes.iter().zip(counts) {
            total.stored += n;
            if n > 0 {
                total.docs.push(w.id);
            }
            if !w.ops.is_empty() {
                self.drop_revoked_changes(&folded.state, &w.id, &w.ops)?;
                // The access may have changed: offer the dossier to everyone again.
                memory.lock().forget_withheld(&w.id);
                self.wrap_for_new_devices(&w.id);
            }
        }
        Ok(total)
    }

    /// The messages with the changes of their bundles added, as if they had come
    /// one by one (they are verified as such below). A bundle is opened with this
    /// device's keys of the dossier, by the access log as stored plus the ops of
    /// the same message (a device catching up gets its key and the bundle
    /// together). A bundle that does not open is left out with a warning; one that
    /// opens to something other than a list of changes counts against the peer.
    fn open_bundles(
        &mut self,
        folded: &Folded,
        peer: &NodeId,
        incoming: &[DossierMessage],
        ops: &[Vec<Result<SignedDossierOp, OpError>>],
        bundles: Vec<PendingBundle>,
        total: &mut Received,
    ) -> Result<Vec<DossierMessage>, NodeError> {
        let mut out = incoming.to_vec();
        // Each bundle with its dossier's place in the message and access log.
        let mut work = Vec::with_capacity(bundles.len());
        for b in bundles {
            let Some(i) = out.iter().position(|m| m.dossier == b.dossier) else {
                continue;
            };
            let mut log = self.access_log(&b.dossier)?;
            log.extend(
                ops.get(i)
                    .into_iter()
                    .flatten()
                    .filter_map(|o| o.as_ref().ok())
                    .filter(|o| o.payload().dossier == b.dossier)
                    .cloned(),
            );
            work.push((i, b, log));
        }
        let me = self.info.node_id;
        let identity = self.signer()?.age_identity();
        let state = &folded.state;
        // Unwrapping the keys (age: one X25519 each) and sealing every change again
        // is most of the work: on all cores.
        let opened = regiosync_core::cores::map(&work, 8, |(_, b, log)| {
            let (ring, failed) = match fold_dossier(state, b.dossier, log) {
                Some(access) => access.key_ring(&me, identity),
                None => (KeyRing::new(b.dossier), Vec::new()),
            };
            (failed, ring)
        });
        let mut rings = Vec::with_capacity(opened.len());
        for ((_, b, _), (failed, ring)) in work.iter().zip(opened) {
            for (epoch, why) in failed {
                tracing::warn!(dossier = %b.dossier, epoch, reason = %why, "a wrapped key for this device does not open");
            }
            rings.push(ring);
        }
        // Opened and inflated in order, sharing the frame's budget (a bomb stops at
        // the frame's limit however the frame splits it), then rebuilt on all cores.
        let mut budget = MAX_BUNDLE_PLAIN;
        let unbundled: Vec<_> = work
            .iter()
            .zip(&rings)
            .map(|((_, b, _), ring)| b.unbundle(ring, &mut budget).map(|u| (u, ring)))
            .collect();
        let results = regiosync_core::cores::map(&unbundled, 8, |u| match u {
            Ok((u, ring)) => u.rebuild(ring),
            Err(e) => Err(e.clone()),
        });
        for ((i, b, _), result) in work.iter().zip(results) {
            match result {
                Ok(changes) => out[*i].changes.extend(changes),
                Err(e) => {
                    if !matches!(e, BundleError::Seal(_)) {
                        total.forged += b.len();
                    }
                    tracing::warn!(peer = %peer, dossier = %b.dossier, changes = b.len(), error = %e, "could not open a bundle of dossier changes");
                }
            }
        }
        Ok(out)
    }

    /// Moves the changes of `dossiers` that `peer` can read (its device holds their
    /// epochs' keys, and so does this one) into bundles, one per dossier, for a
    /// frame of format 3. Best effort: a dossier this node cannot read, or whose
    /// access cannot be folded, keeps its changes one by one.
    pub(crate) fn bundle_dossiers(
        &mut self,
        peer: &NodeId,
        dossiers: &mut [DossierMessage],
    ) -> Vec<OutBundle> {
        let me = self.info.node_id;
        let Ok(identity) = self.signer().map(|s| s.age_identity().clone()) else {
            return Vec::new();
        };
        let mut work = Vec::new();
        for (i, m) in dossiers.iter_mut().enumerate() {
            if m.changes.len() < MIN_BUNDLED {
                continue;
            }
            let Ok(access) = self.dossier_access(&m.dossier) else {
                continue;
            };
            let theirs: BTreeSet<u32> = access.wraps_for(peer).iter().map(|(e, _)| *e).collect();
            if theirs.is_empty() || access.wraps_for(&me).is_empty() {
                continue;
            }
            work.push((i, access, theirs, std::mem::take(&mut m.changes)));
        }
        // Unwrapping this device's keys and opening the changes: on all cores.
        let built = regiosync_core::cores::map(&work, 8, |(_, access, theirs, changes)| {
            let (ring, _) = access.key_ring(&me, &identity);
            OutBundle::build(&ring, access.dossier, changes.clone(), |e| {
                theirs.contains(&e)
            })
        });
        let mut out = Vec::new();
        for ((i, ..), (bundle, single)) in work.iter().zip(built) {
            dossiers[*i].changes = single;
            out.extend(bundle);
        }
        out
    }

    /// [`Self::bundle_dossiers`] for the dossiers of a request.
    pub(crate) fn bundle_request(
        &mut self,
        peer: &NodeId,
        request: &mut Request,
    ) -> Vec<OutBundle> {
        match request {
            Request::Dossiers { dossiers } | Request::PushDossiers { dossiers, .. } => {
                self.bundle_dossiers(peer, dossiers)
            }
            _ => Vec::new(),
        }
    }

    /// [`Self::bundle_dossiers`] for the dossiers of a response.
    pub(crate) fn bundle_response(
        &mut self,
        peer: &NodeId,
        response: &mut Response,
    ) -> Vec<OutBundle> {
        match response {
            Response::Dossiers { dossiers } => self.bundle_dossiers(peer, dossiers),
            _ => Vec::new(),
        }
    }

    /// After a `Revoke` arrived: drops the revoked party's sealed changes held here
    /// that the revocation did not keep (its `keep` list: what the owner held when
    /// it revoked). The owner refuses them, and so does every node once it knows the
    /// revocation; a node that took them in earlier (a relay, another party) would
    /// otherwise keep offering them in every session, and keep what the revoked
    /// party wrote after it lost access.
    fn drop_revoked_changes(
        &mut self,
        state: &RegionState,
        id: &DocId,
        new_ops: &[SignedDossierOp],
    ) -> Result<(), NodeError> {
        let revoked: Vec<(&PartyName, &Vec<[u8; 32]>)> = new_ops
            .iter()
            .filter_map(|o| match &o.payload().body {
                DossierBody::Revoke { party, keep, .. } => Some((party, keep)),
                _ => None,
            })
            .collect();
        if revoked.is_empty() {
            return Ok(());
        }
        let log = self.access_log(id)?;
        let Some(access) = fold_dossier(state, *id, &log) else {
            return Ok(());
        };
        let rows = self.store.change_envelopes(id)?;
        let mut drop: Vec<[u8; 32]> = rows
            .iter()
            .filter_map(|(hash, envelope)| {
                let env = SealedEnvelope::decode(envelope.as_deref()?).ok()?;
                let party = &state.devices.get(&env.fields().author)?.party;
                let hit = revoked
                    .iter()
                    .any(|(p, keep)| *p == party && !keep.contains(hash));
                // Only while the revocation stands (not granted again since).
                (hit && !access.has_access(party)).then_some(*hash)
            })
            .collect();
        if drop.is_empty() {
            return Ok(());
        }
        // A kept change that was taken in on the word of a later change of its
        // author (a chain, `authentic`) stands on its own signature once that later
        // change is dropped: one whose own signature does not verify (made so by
        // its author) goes too, on every node alike, instead of being offered on
        // and refused as a forgery by every peer that judges it alone.
        let remaining: Vec<&regiosync_store::EnvelopeRow> =
            rows.iter().filter(|(h, _)| !drop.contains(h)).collect();
        let envelopes = DossierEnvelopes::decode(*id, remaining.iter().map(|(_, e)| e.as_deref()));
        for ((hash, _), ok) in remaining.iter().zip(envelopes.authentic(|_, _| false)) {
            if !ok {
                drop.push(*hash);
            }
        }
        let n = self.store.write(|tx| tx.drop_sealed_changes(id, &drop))?;
        tracing::info!(dossier = %id, changes = n, "dropped changes of a revoked party that its revocation did not keep");
        Ok(())
    }

    /// For a dossier erased here: a peer that shows it holds the erasure (the `Erase`
    /// op's hash, which only a holder knows, or the op itself) is of a party that may
    /// be sent it, so its party joins the tombstone's audience. Both sides then offer
    /// the tombstone to each other and their summaries agree: a node that never held
    /// the dossier (it was sent only the `Open` and the `Erase`) learns the audience
    /// only this way, and without it a relay and a party would differ on the
    /// tombstone in every session.
    fn note_erasure_holder(
        &mut self,
        state: &RegionState,
        peer: &NodeId,
        m: &DossierMessage,
    ) -> Result<(), NodeError> {
        let Some(t) = self.store.dossier_erased(&m.dossier)? else {
            return Ok(());
        };
        let Some(dev) = state.active_device(peer) else {
            return Ok(());
        };
        if t.audience.iter().any(|p| p == dev.party.as_str()) {
            return Ok(());
        }
        let Ok(erase) = Signed::<DossierOp>::decode_stored(&t.erase_op) else {
            return Ok(());
        };
        let hash = erase.hash();
        let shown = m.have.contains(&hash.0)
            || m.ops
                .iter()
                .any(|w| Signed::<DossierOp>::decode(w).is_ok_and(|o| o.hash() == hash));
        if shown {
            let party = dev.party.to_string();
            self.store
                .write(|tx| tx.add_tombstone_audience(&m.dossier, &party))?;
        }
        Ok(())
    }

    fn receive_dossier(
        &mut self,
        memory: &SessionMemory,
        folded: &Folded,
        peer: &NodeId,
        m: &DossierMessage,
        ops: Vec<Result<SignedDossierOp, OpError>>,
        envelopes: &DossierEnvelopes,
    ) -> Result<(Received, Option<DossierWrite>), NodeError> {
        let id = m.dossier;
        let state = &folded.state;
        let mut got = Received::default();
        // Decoded before anything else is looked up, so that what the sender sees
        // (a disconnect for a forged op) is the same whether or not this node holds
        // the dossier.
        let mut new_ops: Vec<SignedDossierOp> = Vec::new();
        let mut wire_hashes = HashSet::new();
        for decoded in ops {
            match decoded {
                Ok(op) if op.payload().dossier != id || op.payload().region != state.region => {
                    got.forged += 1;
                    tracing::warn!(peer = %peer, dossier = %id, "refusing a dossier op filed under another dossier or region");
                }
                Ok(op) => {
                    if wire_hashes.insert(op.hash()) {
                        new_ops.push(op);
                    }
                }
                Err(e) => {
                    got.forged += 1;
                    tracing::warn!(peer = %peer, dossier = %id, error = %e, "refusing an invalid dossier op");
                }
            }
        }
        if self.store.dossier_erased(&id)?.is_some() {
            // Erased here: nothing of it is taken in again (`receive_dossiers` noted
            // the peer as a holder of the erasure).
            return Ok((got, None));
        }
        let log = self.access_log(&id)?;
        let known: HashSet<OpHash> = log.iter().map(Signed::hash).collect();
        new_ops.retain(|o| !known.contains(&o.hash()));
        let mut all = log;
        all.extend(new_ops.iter().cloned());

        // Erasure first: it is final, whatever it was built on. Every new `Erase` is
        // checked (a refused one must not hide a valid one behind it).
        let open = all
            .iter()
            .find(|o| match &o.payload().body {
                DossierBody::Open { owner, nonce } => {
                    dossier_id(&o.payload().author, owner, nonce) == id
                }
                _ => false,
            })
            .cloned();
        let erases: Vec<SignedDossierOp> = new_ops
            .iter()
            .filter(|o| matches!(o.payload().body, DossierBody::Erase))
            .cloned()
            .collect();
        for erase in erases {
            let Some(open) = &open else {
                tracing::info!(dossier = %id, "an erasure of a dossier whose root this node lacks waits");
                break;
            };
            match check_erase(state, id, open, &erase) {
                Ok(erased) => {
                    let audience = fold_dossier(state, id, &all)
                        .map(|a| ever_granted(&a, &all))
                        .unwrap_or_else(|| BTreeSet::from([self.info.party.clone()]));
                    let held = self.store.document(&id)?.is_some();
                    self.purge_dossier(&id, &erased, open, &erase, &audience)?;
                    memory.lock().forget_dossier(&id);
                    if held {
                        tracing::info!(dossier = %id, by = %erased.by, "erased dossier (erasure received from a peer)");
                    } else {
                        tracing::debug!(dossier = %id, by = %erased.by, "recorded the erasure of a dossier this node never held");
                    }
                    got.stored += 1;
                    return Ok((got, None));
                }
                Err(why) => {
                    tracing::warn!(peer = %peer, dossier = %id, reason = %why, "refusing an erasure");
                    let h = erase.hash();
                    new_ops.retain(|o| o.hash() != h);
                    all.retain(|o| o.hash() != h);
                }
            }
        }

        let Some(access) = fold_dossier(state, id, &all) else {
            tracing::info!(peer = %peer, dossier = %id, "dossier ops without a valid root are not stored");
            return Ok((got, None));
        };
        // Only what the rules accept is stored, forwarded or counted: ops the fold
        // refuses (no authority, another dossier's root, a removed device's op that
        // nobody vouches for) and ops waiting for parents are dropped (an honest
        // sender sends a log's ops together, parents first; what is dropped comes
        // again in a later session once its parents are here).
        let accepted = |o: &SignedDossierOp| {
            let h = o.hash();
            !access.rejected.contains_key(&h) && !access.pending.contains(&h)
        };
        new_ops.retain(|o| accepted(o));
        all.retain(|o| accepted(o));
        let in_force = access.in_force(state, today());
        // Only a designated relay or a device of a party whose access is in force
        // (by this node's fold, with what the message brought) may bring a dossier's
        // items: anyone else is refused whatever it sends, as for a dossier this node
        // does not hold.
        let sender_may = state.is_dossier_relay(peer)
            || state
                .active_device(peer)
                .is_some_and(|d| in_force.contains(&d.party));
        if !sender_may {
            tracing::info!(peer = %peer, dossier = %id, "not taking dossier items from a peer whose party has no access to it");
            return Ok((got, None));
        }
        let me = self.info.node_id;
        if !state.is_dossier_relay(&me) && !in_force.contains(&self.info.party) {
            // Not for this node (the sender's view of the access is ahead or behind):
            // nothing is stored.
            tracing::info!(peer = %peer, dossier = %id, "not storing a dossier this party has no access to");
            return Ok((got, None));
        }
        let known_ops = folded.known_ops();
        let mut check = SealedCheck::new(&id, state, &all);
        let mut rows = Vec::new();
        let mut authentic = envelopes.authentic(|_, _| false);
        if authentic
            .iter()
            .enumerate()
            .any(|(i, ok)| !ok && envelopes.get(i).is_some())
        {
            // Not proven within the message: an envelope may be the predecessor
            // of one this node stored before (a chain that came in two parts).
            let held = self.store.change_envelopes(&id)?;
            let named =
                DossierEnvelopes::decode(id, held.iter().map(|(_, e)| e.as_deref())).named();
            authentic = envelopes.authentic(|h, a| named.contains(&(*h, *a)));
        }
        for (i, sc) in m.changes.iter().enumerate() {
            let Some(env) = envelopes.get(i) else {
                got.forged += 1;
                let e = SealedEnvelope::decode(&sc.envelope).err();
                tracing::warn!(peer = %peer, dossier = %id, error = ?e, "refusing a sealed change without a valid envelope");
                continue;
            };
            match check.verify_authentic(env, &sc.change, |h| known_ops.contains(h), authentic[i]) {
                Ok(_) => rows.push(ChangeRow {
                    hash: env.fields().change_hash,
                    actor: env.fields().author.as_bytes().to_vec(),
                    // The sequence number is inside the sealed bytes.
                    seq: 0,
                    bytes: sc.change.clone(),
                    stored_ms: now_ms(),
                    envelope: Some(sc.envelope.clone()),
                }),
                Err(why) => {
                    if is_sealed_forgery(&why) {
                        got.forged += 1;
                    }
                    tracing::warn!(peer = %peer, dossier = %id, reason = %why, "refusing a sealed change");
                }
            }
        }
        // Stored by the caller, with the message's other dossiers.
        Ok((
            got,
            Some(DossierWrite {
                id,
                ops: new_ops,
                rows,
            }),
        ))
    }

    /// Gives devices in force that lack a key of the dossier every key this device
    /// holds (best effort: a locked node or a device without keys does nothing).
    /// A device of the owner party wraps whenever a device lacks a key; a device of
    /// another party in force only when a device of its own party lacks one (it then
    /// wraps for every device lacking one), so that a new device does not get a copy
    /// from every member.
    pub(crate) fn wrap_for_new_devices(&mut self, id: &DocId) {
        if self.secret.is_none() {
            return;
        }
        let Ok(state) = self.region_state() else {
            return;
        };
        let Ok(access) = self.dossier_access(id) else {
            return;
        };
        let mine = &self.info.party;
        let missing = access.missing_wraps(&state, today());
        let for_us = access.owner == *mine
            || missing
                .values()
                .flatten()
                .any(|d| state.devices.get(d).is_some_and(|d| d.party == *mine));
        if missing.is_empty() || !for_us || !access.in_force(&state, today()).contains(mine) {
            return;
        }
        if let Err(e) = self.wrap_missing(id) {
            tracing::debug!(dossier = %id, error = %e, "could not wrap keys for new devices");
        }
    }

    /// After control ops that added devices: wraps the keys of every dossier this
    /// device holds for the new devices of parties with access.
    pub(crate) fn wrap_dossiers_for_new_devices(&mut self) {
        if self.secret.is_none() {
            return;
        }
        let Ok(ids) = self.store.dossier_ids() else {
            return;
        };
        for id in ids {
            self.wrap_for_new_devices(&id);
        }
    }

    /// Destroys a dossier's access log, keys and sealed changes and keeps a
    /// tombstone (no personal data): after a local erasure or one received.
    pub(crate) fn purge_dossier(
        &mut self,
        id: &DocId,
        erased: &regiosync_core::dossier::access::Erased,
        open: &SignedDossierOp,
        erase: &SignedDossierOp,
        audience: &BTreeSet<PartyName>,
    ) -> Result<(), NodeError> {
        let tombstone = Tombstone {
            dossier: *id,
            erased_by: erased.by.to_string(),
            erased_at: erased.at,
            erase_op: erase.encode(),
            open_op: open.encode(),
            audience: audience.iter().map(ToString::to_string).collect(),
        };
        self.store.write(|tx| tx.purge_dossier(&tombstone))?;
        if !self.store.checkpoint_truncate()? {
            tracing::warn!(dossier = %id, "another process holds the store open: the WAL file keeps old pages until the next checkpoint (stop `regiosync up` and run any command to clear it)");
        }
        self.forget_resident(id);
        Ok(())
    }
}

/// A dossier that cannot reach a party now: no device of the party is reachable and
/// no dossier relay is (`regiosync status` lists it; ids and party names only).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnreachedDossier {
    /// The dossier (a pseudonymous id).
    pub dossier: DocId,
    /// The party in force that it cannot reach.
    pub party: String,
}

impl Node {
    /// The dossiers held here and the parties in force they cannot reach now, given
    /// which devices are `reachable` (connected): none while a designated dossier
    /// relay is reachable, which takes every dossier on. Also the number of dossiers
    /// held.
    pub(crate) fn dossier_reach(
        &self,
        reachable: &dyn Fn(&NodeId) -> bool,
    ) -> Result<(usize, Vec<UnreachedDossier>), NodeError> {
        let Some(folded) = self.control()? else {
            return Ok((0, vec![]));
        };
        let state = &folded.state;
        let me = self.info().node_id;
        let Some(mine) = state.devices.get(&me).map(|d| d.party.clone()) else {
            return Ok((0, vec![]));
        };
        let readers = self.all_dossier_readers(state)?;
        let relay_up = state
            .devices
            .keys()
            .any(|d| *d != me && state.is_dossier_relay(d) && reachable(d));
        let mut out = Vec::new();
        if !relay_up {
            for (id, parties) in readers.iter() {
                for party in parties {
                    if *party != mine && !state.devices_of(party).any(|(d, _)| reachable(d)) {
                        out.push(UnreachedDossier {
                            dossier: *id,
                            party: party.to_string(),
                        });
                    }
                }
            }
        }
        Ok((readers.len(), out))
    }

    /// How many dossiers (and tombstones) this node may send `peer`.
    pub(crate) fn dossiers_shared_with(
        &self,
        memory: &SessionMemory,
        peer: &NodeId,
    ) -> Result<usize, NodeError> {
        let Some(folded) = self.control()? else {
            return Ok(0);
        };
        Ok(self.shared_dossiers(memory, &folded.state, peer)?.len())
    }
}
