//! The driver of sync sessions with one peer over `/regiosync/sync/2` (or `/1`; messages in
//! `regiosync_core::sync`, framing in `regiosync-net`), and what a session reads and
//! stores of plans.
//!
//! The session itself (which request follows which response, rounds, batches,
//! bounds) is the state machine in `regiosync_core::sync::session`: [`sync_with`]
//! runs its requester, [`Node::respond`] its responder, each step under the node's
//! lock against a [`SessionStore`] view of the node (its store and one fold of its
//! region log). This module implements that view for plans (Automerge's sync
//! messages decide what each side lacks, the signed changes travel with their
//! envelopes, `need` repairs bloom false positives) and control ops; dossiers are in
//! `dossier_sync`. Every received op and change is verified before it is stored.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use automerge::ChangeHash;
use regiosync_core::control::{Folded, OpHash, RegionId, SignedOp};
use regiosync_core::envelope::{Candidate, ChangeEnvelope, preverify_signatures};
use regiosync_core::id::{DocId, NodeId};
use regiosync_core::sync::bundle::{OutBundle, PendingBundle};
use regiosync_core::sync::memory::SyncMemory;
use regiosync_core::sync::rules::{
    MAX_BATCH_BYTES, MAX_OPS_PAGE_BYTES, is_forgery, shared_docs, verify_incoming_change,
};
use regiosync_core::sync::session::{
    Answered, Exchange, Received, Requester, SessionStore, Shared, Step, Stop, Tally, answer,
};
use regiosync_core::sync::{
    DigestSet, DocMessage, DossierMessage, FrameFormat, MAX_OPS_PER_MESSAGE, Refusal, Request,
    Response, SignedChange, changes_they_lack, decode_sync_message, holds, missing,
    opening_message,
};
use regiosync_net::StreamProtocol;
use regiosync_store::StoreRead;
use regiosync_store::{ChangeRow, DocumentRow};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::Node;
use crate::clock::now_ms;
use crate::control_log::decode_stored_ops;
use crate::documents::{Verified, change_row};
use crate::error::NodeError;
use crate::events::{ChangeEvent, ChangeKind, Source};
use crate::peers::{DocStates, SharedHeads};

/// Sends one request to a peer and returns the response frame.
pub trait Transport {
    /// One request/response exchange.
    fn request(
        &self,
        peer: NodeId,
        frame: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, String>> + Send;

    /// One exchange of a request that has one form per sync protocol version,
    /// newest first (`/regiosync/sync/3`, `/2`, `/1`): the peer gets the form of the
    /// newest version it speaks. A transport whose peers all speak the newest
    /// version sends the first form.
    fn request_versioned(
        &self,
        peer: NodeId,
        forms: Vec<(StreamProtocol, Vec<u8>)>,
    ) -> impl Future<Output = Result<Vec<u8>, String>> + Send {
        let first = forms.into_iter().next().map(|(_, f)| f).unwrap_or_default();
        self.request(peer, first)
    }
}

impl Transport for regiosync_net::NetHandle {
    async fn request(&self, peer: NodeId, frame: Vec<u8>) -> Result<Vec<u8>, String> {
        regiosync_net::NetHandle::request(self, peer.to_peer_id(), frame)
            .await
            .map_err(|e| e.to_string())
    }

    async fn request_versioned(
        &self,
        peer: NodeId,
        forms: Vec<(StreamProtocol, Vec<u8>)>,
    ) -> Result<Vec<u8>, String> {
        regiosync_net::NetHandle::request_versioned(self, peer.to_peer_id(), forms)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The answer to a sync request.
#[derive(Debug)]
pub struct Answer {
    /// The response frame.
    pub frame: Vec<u8>,
    /// Set if the peer broke the protocol and should be disconnected.
    pub misbehaved: Option<String>,
    /// How many ops and changes the request brought that were new here.
    pub stored: usize,
    /// Set if this node's own store failed while answering (full, damaged): the
    /// running node stops syncing.
    pub storage_failure: Option<NodeError>,
    /// The documents that got something new (the running node pushes them on).
    pub received: Vec<DocId>,
    /// The other peers the request says it was pushed to (the running node does not
    /// push `received` on to them).
    pub pushed_to: Vec<NodeId>,
    /// The request brought new control ops or an accepted join: the running node
    /// updates who it lets in.
    pub control_changed: bool,
}

/// What a sync session did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Request/response exchanges.
    pub round_trips: usize,
    /// Bytes of requests sent.
    pub bytes_sent: usize,
    /// Bytes of responses received.
    pub bytes_received: usize,
    /// What moved and what was refused, as the session counted it (flattened into
    /// the report's JSON).
    #[serde(flatten)]
    pub moved: Tally,
    /// How the shared documents compare with the peer's at the end of the session.
    pub docs: DocStates,
    /// The documents that got something new from the peer (the running node pushes
    /// them on to its other peers).
    #[serde(skip)]
    pub received: Vec<DocId>,
    /// The session was a push that landed and ended without comparing the shared
    /// documents ([`Requester::pushing`]): `docs` and `moved.docs_differing` say
    /// nothing about them.
    #[serde(skip)]
    pub push_only: bool,
}

/// Runs one sync session with `peer` as the requesting side: the session's state
/// machine ([`Requester`]) decides each request; this driver performs each step under
/// the node's lock (taken once per step, with one fold of the region log) and does
/// the transport between steps.
pub async fn sync_with(
    node: &Mutex<Node>,
    memory: &SessionMemory,
    net: &impl Transport,
    peer: NodeId,
) -> Result<SyncReport, NodeError> {
    drive(node, memory, net, peer, Requester::new(peer), Vec::new()).await
}

/// A session like [`sync_with`]'s that first pushes `changed`, documents this node
/// just changed ([`Requester::pushing`]): their changes reach `peer` in the first
/// round trip. The push's requests name `also`, the other peers the same documents
/// are pushed to (`PushDocs`, `PushDossiers`), so that `peer` does not pass them on
/// to those; a peer that speaks only `/regiosync/sync/1` gets them without names.
pub async fn push_to(
    node: &Mutex<Node>,
    memory: &SessionMemory,
    net: &impl Transport,
    peer: NodeId,
    changed: Vec<DocId>,
    also: Vec<NodeId>,
) -> Result<SyncReport, NodeError> {
    drive(
        node,
        memory,
        net,
        peer,
        Requester::pushing(peer, changed),
        also,
    )
    .await
}

async fn drive(
    node: &Mutex<Node>,
    memory: &SessionMemory,
    net: &impl Transport,
    peer: NodeId,
    mut session: Requester,
    also: Vec<NodeId>,
) -> Result<SyncReport, NodeError> {
    let mut report = SyncReport::default();
    let mut response: Option<Response> = None;
    let mut pending: Vec<PendingBundle> = Vec::new();
    // The frame format the peer speaks, learnt from its first answer.
    let mut format: Option<FrameFormat> = None;
    loop {
        let (request, bundles) = {
            let mut n = node.lock().await;
            let mut view = SessionView::new(&mut n, memory)?;
            view.bundles = std::mem::take(&mut pending);
            let step = match response.take() {
                None => session.start(&mut view)?,
                Some(r) => session.on_response(&mut view, r)?,
            };
            let folded = view.folded.clone();
            match step {
                // Dossier changes for a peer that reads them travel in bundles,
                // once the peer is known to speak `/4`.
                Step::Send(mut request) if format == Some(FrameFormat::Bundled) => {
                    let bundles = n.bundle_request(&peer, &mut request);
                    (request, bundles)
                }
                Step::Send(request) => (request, Vec::new()),
                Step::Done {
                    tally,
                    shared,
                    received,
                    ..
                } => {
                    report.moved = tally;
                    report.received = received;
                    match shared {
                        Some(shared) => {
                            report.docs = n.doc_states(&folded, &peer, &shared.heads)?;
                        }
                        None => report.push_only = true,
                    }
                    return Ok(report);
                }
                Step::Stop(stop) => return Err(n.stopped(&peer, stop)?),
            }
        };
        report.round_trips += 1;
        let (sent, lengths) = send(
            net,
            peer,
            Outgoing {
                request,
                bundles,
                also: &also,
                pushing: session.is_pushing(),
            },
            format,
        )
        .await;
        let bytes = sent.map_err(|e| NodeError::Sync(format!("peer {}: {e}", peer.short())))?;
        // The peer answers in the format it was asked in: a bundled answer says it
        // speaks `/4`, a compact one `/3`, a full one neither (or was asked in full).
        if format.is_none() {
            format = FrameFormat::of(&bytes);
        }
        report.bytes_sent += lengths.of(format);
        report.bytes_received += bytes.len();
        let (r, b) = Response::decode_bundled(&bytes).map_err(|e| {
            NodeError::Sync(format!("peer {} sent a bad response: {e}", peer.short()))
        })?;
        response = Some(r);
        pending = b;
    }
}

/// A request about to be sent: its bundles (built only once the peer is known to
/// speak `/4`), and for a push the other peers pushed to.
struct Outgoing<'a> {
    request: Request,
    bundles: Vec<OutBundle>,
    also: &'a [NodeId],
    pushing: bool,
}

/// The length of each form of a request that was sent.
struct Lengths {
    bundled: usize,
    compact: usize,
    full: usize,
}

impl Lengths {
    /// The length of the form the peer read, once its format is known.
    fn of(&self, format: Option<FrameFormat>) -> usize {
        match format {
            Some(FrameFormat::Bundled) => self.bundled,
            Some(FrameFormat::Compact) => self.compact,
            _ => self.full,
        }
    }
}

/// Sends a request to `peer` in the forms it may read: bundled (frame format 3) to
/// a peer known to speak `/regiosync/sync/4`, compact (format 2) to one known to
/// speak `/3`; full to one known to speak neither; all forms, newest first, while
/// the session does not know yet (its first request, which carries no bundle). A
/// push names `also` where the version has pushes that name peers (`/2` and
/// later). Returns the answer and the lengths of the forms sent.
async fn send(
    net: &impl Transport,
    peer: NodeId,
    out: Outgoing<'_>,
    format: Option<FrameFormat>,
) -> (Result<Vec<u8>, String>, Lengths) {
    let Outgoing {
        request,
        bundles,
        also,
        pushing,
    } = out;
    let named = (pushing && !also.is_empty()).then(|| request.clone().pushed_with(also.to_vec()));
    let newest = named.as_ref().unwrap_or(&request);
    let one = |frame: Vec<u8>| {
        let len = frame.len();
        let lengths = Lengths {
            bundled: len,
            compact: len,
            full: len,
        };
        (frame, lengths)
    };
    match format {
        Some(FrameFormat::Bundled) => {
            let (frame, lengths) = one(newest.encode_bundled(&bundles));
            return (net.request(peer, frame).await, lengths);
        }
        Some(FrameFormat::Compact) => {
            older_peer(&peer, request.left_out(FrameFormat::Compact));
            let (frame, lengths) = one(newest.encode_as(FrameFormat::Compact));
            return (net.request(peer, frame).await, lengths);
        }
        Some(FrameFormat::Full) => older_peer(&peer, request.left_out(FrameFormat::Full)),
        None => {}
    }
    let full = request.encode();
    let mut lengths = Lengths {
        bundled: full.len(),
        compact: full.len(),
        full: full.len(),
    };
    let mut forms = Vec::with_capacity(4);
    if format.is_none() {
        let bundled = newest.encode_as(FrameFormat::Bundled);
        let compact = newest.encode_as(FrameFormat::Compact);
        lengths.bundled = bundled.len();
        lengths.compact = compact.len();
        forms.push((regiosync_net::SYNC_PROTOCOL, bundled));
        forms.push((regiosync_net::SYNC_PROTOCOL_3, compact));
    }
    match named {
        Some(named) => forms.push((regiosync_net::SYNC_PROTOCOL_2, named.encode())),
        None if forms.is_empty() => return (net.request(peer, full).await, lengths),
        None => forms.push((regiosync_net::SYNC_PROTOCOL_2, full.clone())),
    }
    forms.push((regiosync_net::SYNC_PROTOCOL_1, full));
    (net.request_versioned(peer, forms).await, lengths)
}

/// Logs that `peer`, which speaks only an older sync protocol, is not sent `n`
/// dossier changes in formats it could not read.
fn older_peer(peer: &NodeId, n: usize) {
    if n > 0 {
        tracing::info!(
            peer = %peer.short(),
            changes = n,
            "not sending dossier changes in formats a peer that runs an older regiosync cannot read: upgrade regiosync on that node"
        );
    }
}

/// A node as the session's state machines see it during one step: its store and one
/// fold of its region log (taken afresh only after control ops were stored).
struct SessionView<'a> {
    node: &'a mut Node,
    memory: &'a SessionMemory,
    folded: Arc<Folded>,
    /// The bundles of the message being handled (frame format 3), opened when its
    /// dossiers are received.
    bundles: Vec<PendingBundle>,
}

impl<'a> SessionView<'a> {
    fn new(node: &'a mut Node, memory: &'a SessionMemory) -> Result<Self, NodeError> {
        let folded = node.control()?.ok_or(NodeError::NotInRegion)?;
        Ok(SessionView {
            node,
            memory,
            folded,
            bundles: Vec::new(),
        })
    }
}

/// What sync remembers between sessions ([`SyncMemory`]: the summary last recorded
/// in sync per peer, the dossiers peers withheld, each dossier's readers), owned by
/// whoever runs the sessions: the running node (`service`) keeps one for its
/// lifetime and passes it to every session it opens and every request it answers.
/// Losing it (a restart, or a fresh one per session as a one-off CLI sync has)
/// costs work and round trips, never correctness: every decision is checked again
/// against the store.
#[derive(Debug, Default)]
pub struct SessionMemory(std::sync::Mutex<SyncMemory>);

impl SessionMemory {
    /// The memory, for one call: the lock is never held across a store read, and a
    /// poisoned lock is taken over (the memory is only a cache of decisions that
    /// are checked again).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SyncMemory> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets what was remembered of dossier `id` (after a local write or erasure:
    /// a peer that withheld it is offered it again).
    pub fn forget_dossier(&self, id: &DocId) {
        self.lock().forget_dossier(id);
    }
}

impl SessionStore for SessionView<'_> {
    type Error = NodeError;

    fn region(&self) -> RegionId {
        self.folded.state.region
    }
    fn control_heads(&self) -> Vec<OpHash> {
        // All placed ops, rejected ones included: changes may name those.
        self.folded.log_heads.clone()
    }
    fn is_active_member(&self, peer: &NodeId) -> bool {
        self.folded.state.active_device(peer).is_some()
    }
    fn shared(&self, peer: &NodeId) -> Result<Shared, NodeError> {
        self.node.shared_with(self.memory, &self.folded, peer)
    }
    fn exchange_of(&self, doc: &DocId) -> Exchange {
        // Plans are in the region log; anything else is a sealed dossier.
        if self.folded.state.docs.contains_key(doc) {
            Exchange::Automerge
        } else {
            Exchange::Sealed
        }
    }
    fn op_hashes(&self) -> Result<Vec<OpHash>, NodeError> {
        self.node.op_hashes()
    }
    fn ops_except(&self, theirs: &HashSet<OpHash>) -> Result<Vec<Vec<u8>>, NodeError> {
        self.node.ops_except(&self.folded, theirs)
    }
    fn receive_ops(&mut self, peer: &NodeId, ops: &[Vec<u8>]) -> Result<usize, NodeError> {
        let new = self.node.receive_ops(peer, ops)?;
        if new > 0 {
            self.folded = self.node.control()?.ok_or(NodeError::NotInRegion)?;
        }
        Ok(new)
    }
    fn opening_docs(&self, peer: &NodeId, docs: &[DocId]) -> Result<Vec<DocMessage>, NodeError> {
        self.node.opening_messages(&self.folded, peer, docs, false)
    }
    fn pushing_docs(&self, peer: &NodeId, docs: &[DocId]) -> Result<Vec<DocMessage>, NodeError> {
        self.node.opening_messages(&self.folded, peer, docs, true)
    }
    fn receive_docs(&mut self, peer: &NodeId, docs: &[DocMessage]) -> Result<Received, NodeError> {
        let folded = self.folded.clone();
        self.node.receive_docs(&folded, peer, docs)
    }
    fn answer_docs(
        &self,
        peer: &NodeId,
        docs: &[DocMessage],
    ) -> Result<Vec<DocMessage>, NodeError> {
        self.node.answer_docs(&self.folded, peer, docs)
    }
    fn opening_dossiers(
        &self,
        peer: &NodeId,
        dossiers: &[DocId],
    ) -> Result<Vec<DossierMessage>, NodeError> {
        self.node
            .opening_dossiers(self.memory, &self.folded.state, peer, dossiers)
    }
    fn receive_dossiers(
        &mut self,
        peer: &NodeId,
        dossiers: &[DossierMessage],
    ) -> Result<Received, NodeError> {
        let folded = self.folded.clone();
        let bundles = std::mem::take(&mut self.bundles);
        self.node
            .receive_dossiers(self.memory, &folded, peer, dossiers, bundles)
    }
    fn answer_dossiers(
        &self,
        peer: &NodeId,
        dossiers: &[DossierMessage],
    ) -> Result<Vec<DossierMessage>, NodeError> {
        self.node
            .answer_dossiers(self.memory, &self.folded.state, peer, dossiers)
    }
    fn note_in_sync(&mut self, peer: &NodeId, shared: &Shared) -> Result<(), NodeError> {
        self.node
            .note_in_sync(self.memory, peer, shared.set.summary(), &shared.heads)
    }
    fn removal_proof(&self, peer: &NodeId) -> Result<Option<Vec<Vec<u8>>>, NodeError> {
        self.node.removal_proof(peer)
    }
    fn answer_join(&mut self, peer: &NodeId, request: &[u8]) -> Result<Response, NodeError> {
        self.node.answer_join(peer, request)
    }
}

impl Node {
    /// Answers a sync request from `peer` ([`answer`] performs it). Never fails:
    /// problems become `Refused`. `misbehaved` says why the peer should be
    /// disconnected (an undecodable request, or changes that fail verification:
    /// honest nodes verify before they store, so they never pass such changes on).
    pub fn respond(&mut self, memory: &SessionMemory, peer: &NodeId, frame: &[u8]) -> Answer {
        // Answered in the format asked in: only a peer that speaks
        // `/regiosync/sync/3` asks in the compact one.
        let format = FrameFormat::of(frame).unwrap_or(FrameFormat::Full);
        let (req, bundles) = match Request::decode_bundled(frame) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "undecodable sync request");
                let refused = Response::Refused {
                    reason: Refusal::BadMessage,
                };
                return Answer {
                    frame: refused.encode_as(format),
                    misbehaved: Some(format!("undecodable request: {e}")),
                    stored: 0,
                    storage_failure: None,
                    received: Vec::new(),
                    pushed_to: Vec::new(),
                    control_changed: false,
                };
            }
        };
        let mut storage_failure = None;
        let answered = SessionView::new(self, memory)
            .and_then(|mut view| {
                view.bundles = bundles;
                answer(&mut view, peer, req)
            })
            .unwrap_or_else(|e| {
                tracing::warn!(peer = %peer, error = %e, "could not answer a sync request");
                if e.is_storage_failure() {
                    storage_failure = Some(e);
                }
                Answered {
                    response: Response::Refused {
                        reason: Refusal::Busy,
                    },
                    stored: 0,
                    forged: 0,
                    received: Vec::new(),
                    pushed_to: Vec::new(),
                    control: false,
                }
            });
        let forged = answered.forged;
        older_peer(peer, answered.response.left_out(format));
        let mut response = answered.response;
        let frame = match format {
            FrameFormat::Bundled => {
                let bundles = self.bundle_response(peer, &mut response);
                response.encode_bundled(&bundles)
            }
            _ => response.encode_as(format),
        };
        Answer {
            frame,
            misbehaved: (forged > 0)
                .then(|| format!("sent {forged} changes or sync messages that fail verification")),
            stored: answered.stored,
            storage_failure,
            received: answered.received,
            pushed_to: answered.pushed_to,
            control_changed: answered.control,
        }
    }

    /// The error a stopped session ends with (a removal the peer showed is checked,
    /// and kept if it holds).
    fn stopped(&mut self, peer: &NodeId, stop: Stop) -> Result<NodeError, NodeError> {
        Ok(match stop {
            Stop::NotAMember => NodeError::Sync(format!(
                "peer {} is not an active member of the region",
                peer.short()
            )),
            Stop::Refused(reason) => {
                NodeError::Sync(format!("peer {} refused: {reason}", peer.short()))
            }
            Stop::Removed(ops) => match self.take_removal(&ops)? {
                Some(removal) => NodeError::Removed(removal),
                None => NodeError::Sync(format!(
                    "peer {} says this device was removed from the region, but showed no removal signed by a region admin or by a device of its own party",
                    peer.short()
                )),
            },
            Stop::OutOfTurn => {
                NodeError::Sync(format!("peer {} answered out of turn", peer.short()))
            }
        })
    }

    /// The heads and digests of the documents this node and `peer` may both read.
    pub(crate) fn shared_with(
        &self,
        memory: &SessionMemory,
        folded: &Folded,
        peer: &NodeId,
    ) -> Result<Shared, NodeError> {
        let heads = self.shared_heads(folded, peer)?;
        // Sealed dossiers count by the hashes of what is held of them (a relay cannot
        // know their Automerge heads); ids never collide with plans'.
        let dossiers = self.shared_dossiers(memory, &folded.state, peer)?;
        let set = DigestSet::with_digests(heads.iter(), dossiers);
        Ok(Shared { heads, set })
    }

    /// The heads of the documents of the region log this node and `peer` may both
    /// read.
    pub(crate) fn shared_heads(
        &self,
        folded: &Folded,
        peer: &NodeId,
    ) -> Result<SharedHeads, NodeError> {
        shared_docs(&folded.state, &self.info.party, peer)
            .into_iter()
            .filter_map(|d| quarantined(self.heads_of(folded, &d)).map(|h| h.map(|h| (d, h))))
            .collect()
    }

    fn heads_of(&self, folded: &Folded, doc: &DocId) -> Result<Vec<[u8; 32]>, NodeError> {
        if self.store.document(doc)?.is_none() {
            return Ok(vec![]);
        }
        self.verified_heads(doc, folded)
    }

    fn op_hashes(&self) -> Result<Vec<OpHash>, NodeError> {
        Ok(self.store.op_hashes()?.into_iter().map(OpHash).collect())
    }

    /// A page of the stored ops `theirs` lacks, in the fold's linear order (parents
    /// first, so the receiver can place every op of the page), at most
    /// MAX_OPS_PER_MESSAGE ops and MAX_OPS_PAGE_BYTES bytes. Ops waiting for their
    /// parents here are not passed on.
    fn ops_except(
        &self,
        folded: &Folded,
        theirs: &HashSet<OpHash>,
    ) -> Result<Vec<Vec<u8>>, NodeError> {
        let mut by_hash: HashMap<OpHash, SignedOp> = decode_stored_ops(&self.store.ops()?)
            .into_iter()
            .map(|o| (o.hash(), o))
            .filter(|(h, _)| !theirs.contains(h))
            .collect();
        let mut out = Vec::new();
        let mut bytes = 0;
        for h in &folded.order {
            let Some(op) = by_hash.remove(h) else {
                continue;
            };
            let wire = op.encode();
            if out.len() >= MAX_OPS_PER_MESSAGE || bytes + wire.len() > MAX_OPS_PAGE_BYTES {
                break;
            }
            bytes += wire.len();
            out.push(wire);
        }
        Ok(out)
    }

    /// Verifies and stores ops from a peer; returns how many were new. Only ops the
    /// region's rules let in are stored, by the same rule as a bundle import
    /// (`region::admit_ops`): ops of keys that were never members are refused (a
    /// stranger's junk never enters the log, its fold or the next `Ops` exchange), a
    /// member's refused op is kept (a later op can change whether it stands, and every
    /// node must fold the same set), ops waiting for parents up to a limit.
    /// Each op stored is announced ([`crate::events`]) as coming from `peer`.
    pub(crate) fn receive_ops(
        &mut self,
        peer: &NodeId,
        ops: &[Vec<u8>],
    ) -> Result<usize, NodeError> {
        let region = self.region()?.ok_or(NodeError::NotInRegion)?;
        let known: HashSet<OpHash> = self.op_hashes()?.into_iter().collect();
        let mut new: Vec<SignedOp> = Vec::new();
        let mut seen = HashSet::new();
        // As a batch: an author's newest op vouches for its earlier ones that it
        // names as parents (`Signed::decode_batch`), so a log of one admin's ops
        // costs one signature check.
        let wires: Vec<&[u8]> = ops.iter().map(Vec::as_slice).collect();
        for decoded in SignedOp::decode_batch(&wires) {
            match decoded {
                Ok(op)
                    if op.op().region == Some(region)
                        && !known.contains(&op.hash())
                        && seen.insert(op.hash()) =>
                {
                    new.push(op)
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "refusing an invalid control op from a peer"),
            }
        }
        if new.is_empty() {
            return Ok(0);
        }
        let stored = decode_stored_ops(&self.store.ops()?);
        let admitted = crate::region::admit_ops(region, &stored, new).map_err(|e| {
            NodeError::DamagedControlLog(format!("the stored control log is incomplete: {e}"))
        })?;
        if admitted.refused > 0 {
            tracing::info!(
                refused = admitted.refused,
                "not storing control ops by keys that are no members of the region (or past the limit of ops waiting for parents)"
            );
        }
        let new = admitted.ops;
        self.store.write(|tx| {
            for op in &new {
                tx.put_op(&op.hash().0, &op.encode(), now_ms())?;
            }
            Ok::<_, NodeError>(())
        })?;
        for op in &new {
            self.events.send(crate::events::ChangeEvent::of_op(
                op,
                crate::events::Source::Sync(*peer),
                &admitted.folded.state,
            ));
        }
        if new.iter().any(|o| {
            matches!(
                o.op().body,
                regiosync_core::control::OpBody::AddDevice { .. }
            )
        }) {
            // A new device of a party with access gets the dossiers' keys.
            self.wrap_dossiers_for_new_devices();
        }
        Ok(new.len())
    }

    /// The opening `Docs` messages for `docs`; with `push`, only for documents
    /// `peer` may read and is not known to hold at this node's heads already (a
    /// peer that passed the edit on to this node, or answered it, is), each
    /// carrying the changes after the heads `peer` was last known to hold (none if
    /// those are not known here), within the batch budget.
    fn opening_messages(
        &self,
        folded: &Folded,
        peer: &NodeId,
        docs: &[DocId],
        push: bool,
    ) -> Result<Vec<DocMessage>, NodeError> {
        let known = self.known_heads(peer)?;
        let readable: HashSet<DocId> = if push {
            shared_docs(&folded.state, &self.info.party, peer)
                .into_iter()
                .collect()
        } else {
            HashSet::new()
        };
        let mut budget = MAX_BATCH_BYTES;
        docs.iter()
            .filter(|d| !push || readable.contains(d))
            .filter_map(|d| quarantined(self.doc_or_empty(folded, d)).map(|v| v.map(|v| (d, v))))
            .map(|r| {
                let (d, v) = r?;
                let doc = &v.doc;
                let shared: Vec<ChangeHash> = known
                    .get(d)
                    .map(|h| h.iter().map(|h| ChangeHash(*h)).collect())
                    .unwrap_or_default();
                let mut changes = Vec::new();
                if push && !shared.is_empty() && shared.iter().all(|h| holds(doc, h)) {
                    let after: Vec<ChangeHash> = doc
                        .get_changes_meta(&shared)
                        .iter()
                        .map(|c| c.hash)
                        .collect();
                    if after.is_empty() && v.missing_deps.is_empty() {
                        // It holds everything this node holds of the document.
                        return Ok(None);
                    }
                    for c in self.signed_changes(d, &after)? {
                        let size = c.change.len() + c.envelope.len();
                        if size > budget {
                            // In causal order: the rest follows in the session.
                            break;
                        }
                        budget -= size;
                        changes.push(c);
                    }
                }
                Ok(Some(DocMessage {
                    doc: *d,
                    sync: opening_message(doc, &shared),
                    changes,
                    // What stored changes wait for, asked for at once.
                    need: v
                        .missing_deps
                        .iter()
                        .take(regiosync_core::sync::MAX_NEED_PER_DOC)
                        .copied()
                        .collect(),
                }))
            })
            .filter_map(Result::transpose)
            .collect()
    }

    fn doc_or_empty(&self, folded: &Folded, doc: &DocId) -> Result<Arc<Verified>, NodeError> {
        if self.store.document(doc)?.is_none() {
            return Ok(Arc::new(Verified::empty()));
        }
        self.verified(doc, folded)
    }

    /// For each incoming document message: the changes the peer lacks (by its sync
    /// message and its `need`), and what this side still needs.
    fn answer_docs(
        &self,
        folded: &Folded,
        peer: &NodeId,
        incoming: &[DocMessage],
    ) -> Result<Vec<DocMessage>, NodeError> {
        let shared: HashSet<DocId> = shared_docs(&folded.state, &self.info.party, peer)
            .into_iter()
            .collect();
        let known = self.known_heads(peer)?;
        let mut out = Vec::new();
        let mut budget = MAX_BATCH_BYTES;
        for m in incoming.iter().filter(|m| shared.contains(&m.doc)) {
            let Some(v) = quarantined(self.doc_or_empty(folded, &m.doc)) else {
                continue;
            };
            let v = v?;
            let doc = &v.doc;
            // Checked before Automerge sees it (a crafted Bloom filter crashes
            // automerge 0.12); `receive_docs`, which runs first on the same messages,
            // counts a bad one against the peer, so it is only skipped here.
            let msg = if m.sync.is_empty() {
                None
            } else {
                decode_sync_message(&m.sync).ok()
            };
            let mut send: Vec<ChangeHash> = msg
                .as_ref()
                .map(|msg| changes_they_lack(doc, msg))
                .unwrap_or_default();
            send.extend(
                m.need
                    .iter()
                    .map(|h| ChangeHash(*h))
                    .filter(|h| holds(doc, h)),
            );
            send.dedup();
            // What stored changes wait for first (see `Verified::missing_deps`),
            // then the peer's heads this side lacks.
            let mut need: Vec<[u8; 32]> = v.missing_deps.clone();
            for h in msg
                .as_ref()
                .map(|msg| missing(doc, &msg.heads))
                .unwrap_or_default()
            {
                if !need.contains(&h.0) {
                    need.push(h.0);
                }
            }
            // The rest is asked for in a later round (a message may ask for at most
            // MAX_NEED_PER_DOC).
            need.truncate(regiosync_core::sync::MAX_NEED_PER_DOC);
            let mut changes = self.signed_changes(&m.doc, &send)?;
            // Keep to the batch budget (changes are in causal order, so what is cut
            // off comes in a later round, after what it depends on).
            let mut keep = 0;
            for c in &changes {
                let size = c.change.len() + c.envelope.len();
                if size > budget {
                    break;
                }
                budget -= size;
                keep += 1;
            }
            changes.truncate(keep);
            out.push(DocMessage {
                doc: m.doc,
                sync: if m.sync.is_empty() {
                    vec![]
                } else {
                    // The peer holds the heads it just sent, and those it was known to
                    // hold: the filter need only cover what came after them.
                    let mut theirs = msg.as_ref().map(|m| m.heads.clone()).unwrap_or_default();
                    theirs.extend(
                        known
                            .get(&m.doc)
                            .into_iter()
                            .flatten()
                            .map(|h| ChangeHash(*h)),
                    );
                    opening_message(doc, &theirs)
                },
                changes,
                need,
            });
        }
        Ok(out)
    }

    fn signed_changes(
        &self,
        doc: &DocId,
        hashes: &[ChangeHash],
    ) -> Result<Vec<SignedChange>, NodeError> {
        if hashes.is_empty() {
            return Ok(vec![]);
        }
        let wanted: Vec<[u8; 32]> = hashes.iter().map(|h| h.0).collect();
        Ok(self
            .store
            .changes_by_hash(doc, &wanted)?
            .into_iter()
            .filter_map(|r| {
                r.envelope.map(|envelope| SignedChange {
                    change: r.bytes,
                    envelope,
                })
            })
            .collect())
    }

    /// Verifies and stores the changes in incoming document messages; changes refused
    /// for lack of authority are logged, not counted as forged.
    fn receive_docs(
        &mut self,
        folded: &Folded,
        peer: &NodeId,
        incoming: &[DocMessage],
    ) -> Result<Received, NodeError> {
        let shared: HashSet<DocId> = shared_docs(&folded.state, &self.info.party, peer)
            .into_iter()
            .collect();
        let known = folded.known_ops();
        let (mut stored, mut refused) = (0, 0);
        let mut writes: Vec<DocWrite> = Vec::new();
        // The signatures of the message's changes on all cores first; the checks
        // below find them checked.
        let envelopes: Vec<ChangeEnvelope> = incoming
            .iter()
            .filter(|m| shared.contains(&m.doc))
            .flat_map(|m| {
                m.changes.iter().filter_map(move |sc| {
                    ChangeEnvelope::decode(&sc.envelope).ok().filter(|e| {
                        e.fields().doc == m.doc && e.fields().region == folded.state.region
                    })
                })
            })
            .collect();
        preverify_signatures(&envelopes);
        drop(envelopes);
        for m in incoming
            .iter()
            .filter(|m| shared.contains(&m.doc) && !m.changes.is_empty())
        {
            let Some(acl) = folded.state.docs.get(&m.doc) else {
                continue;
            };
            // A document of a kind this version does not know (made by a newer
            // one): none of its changes can be checked, so none is taken; said once
            // per message, and not held against the peer.
            if self.kinds.get(&acl.kind).is_none() {
                tracing::warn!(
                    peer = %peer,
                    doc = %m.doc,
                    kind = %acl.kind,
                    "not taking changes of a document whose kind this version of regiosync does not know: upgrade regiosync"
                );
                continue;
            }
            let mut rows = Vec::new();
            // Per row: who signed it and what kind of change it is, for the events.
            let mut what = Vec::new();
            let kind_check = self.kinds.change_check(&m.doc, &folded.state);
            for sc in &m.changes {
                let verdict = verify_incoming_change(sc, &m.doc, folded, |h| known.contains(h))
                    .and_then(|(c, env)| {
                        // Held to its kind's rules for received changes (for plans:
                        // no rewrite of the plan's identity or structure, bounded
                        // size, nesting and marks), like a signature.
                        kind_check(&Candidate {
                            change: &c,
                            envelope: Some(&env),
                        })?;
                        Ok(c)
                    });
                match verdict {
                    Ok(c) => {
                        what.push((
                            NodeId::from_actor_id(c.actor_id()),
                            ChangeKind::of_message(c.message().unwrap_or("")),
                        ));
                        rows.push(change_row(&c, sc.change.clone(), sc.envelope.clone()));
                    }
                    Err(why) => {
                        // Only forgery counts against the peer: an authority failure
                        // can mean that this node's region state lags behind the peer's.
                        if is_forgery(&why) {
                            refused += 1;
                        }
                        tracing::warn!(peer = %peer, doc = %m.doc, reason = %why, "refusing a change from a peer");
                    }
                }
            }
            drop(kind_check);
            writes.push(DocWrite {
                doc: m.doc,
                kind: acl.kind.clone(),
                rows,
                what,
            });
        }
        // What the message's documents brought is stored in one transaction (each
        // change verified on its own above): a catch-up of many documents pays one
        // commit per message, not one per document.
        let announced = self.store.write(|tx| {
            writes
                .iter()
                .map(|w| store_doc_changes(tx, peer, w))
                .collect::<Result<Vec<_>, NodeError>>()
        })?;
        let mut received = Vec::new();
        for (w, (n, announce)) in writes.iter().zip(announced) {
            stored += n;
            if n > 0 {
                received.push(w.doc);
            }
            // One event per device and kind of change in this message, not per change.
            for (device, kind) in announce {
                self.events.send(ChangeEvent::by_device(
                    Some(w.doc),
                    device,
                    kind,
                    Source::Sync(*peer),
                    &folded.state,
                ));
            }
        }
        self.after_receive(folded, &received);
        // What the peer holds now, per its sync messages: the per-peer sync state.
        // Every sync message is checked here before Automerge decodes it; one that
        // fails (a Bloom filter that would crash Automerge, counts beyond the limits)
        // is a protocol violation and counts against the peer like a forged change.
        let mut reported: Vec<(DocId, Vec<[u8; 32]>)> = Vec::new();
        for m in incoming
            .iter()
            .filter(|m| shared.contains(&m.doc) && !m.sync.is_empty())
        {
            match decode_sync_message(&m.sync) {
                Ok(msg) => reported.push((m.doc, msg.heads.iter().map(|h| h.0).collect())),
                Err(e) => {
                    refused += 1;
                    tracing::warn!(peer = %peer, doc = %m.doc, error = %e, "refusing a sync message from a peer");
                }
            }
        }
        self.note_peer_heads(peer, &reported)?;
        Ok(Received {
            stored,
            forged: refused,
            docs: received,
        })
    }

    /// After remote changes: updates the cached title and writes a verified snapshot,
    /// so that the next read verifies only what comes after it (best effort: a
    /// document whose dependencies have not all arrived may not read yet).
    fn after_receive(&mut self, folded: &Folded, docs: &[DocId]) {
        // Titles and snapshots of the documents a message changed, in one
        // transaction after the changes (a failure here loses only a cache), and
        // none when no title changed and no snapshot is due: most received messages
        // (an edit pushed) change neither, and each commit waits for the disk.
        let mut updates = Vec::with_capacity(docs.len());
        for doc in docs {
            let Ok(v) = self.verified(doc, folded) else {
                continue;
            };
            let cached = self.store.document(doc).ok().flatten().map(|d| d.title);
            let title = regiosync_core::plan::read_title(&v.doc)
                .ok()
                .filter(|t| cached.as_ref() != Some(t));
            let snapshot = v.snapshot(folded);
            if title.is_some() || snapshot.is_some() {
                updates.push((*doc, title, snapshot));
            }
        }
        if updates.is_empty() {
            return;
        }
        let written = self
            .store
            .write(|tx| {
                for (doc, title, snapshot) in &updates {
                    if let Some(t) = title {
                        tx.set_title(doc, t)?;
                    }
                    if let Some(s) = snapshot {
                        tx.put_snapshot(doc, s, now_ms())?;
                    }
                }
                Ok::<_, NodeError>(())
            })
            .is_ok();
        for (doc, _, snapshot) in &updates {
            match snapshot {
                Some(s) if written => self.snapshot_written(doc, folded, s.covers_upto),
                // The resident copy still counts the changes since the old snapshot.
                Some(_) => self.forget_resident(doc),
                None => {}
            }
        }
    }
}

/// The verified changes of one document from one received message, stored with
/// the message's other documents in one transaction.
struct DocWrite {
    doc: DocId,
    kind: regiosync_core::kind::KindName,
    rows: Vec<ChangeRow>,
    /// Per row: who signed it and what kind of change it is, for the events.
    what: Vec<Announce>,
}

/// Who signed a change (its device, if its actor is one) and what kind of change it
/// is: what an event announces.
type Announce = (Option<NodeId>, ChangeKind);

/// Stores one document's verified changes in `tx` (its `documents` row first if
/// it has none), refusing a second change of a device under a sequence number it
/// holds (equivocation, kept as evidence). Returns how many changes were new and
/// the (device, kind) pairs to announce.
fn store_doc_changes(
    tx: &regiosync_store::WriteTx<'_>,
    peer: &NodeId,
    write: &DocWrite,
) -> Result<(usize, Vec<Announce>), NodeError> {
    let mut announce: Vec<Announce> = Vec::new();
    if tx.document(&write.doc)?.is_none() {
        tx.insert_document(&DocumentRow {
            id: write.doc,
            kind: write.kind.family().into(),
            subkind: write.kind.variant().unwrap_or_default().into(),
            title: String::new(),
            created_ms: now_ms(),
        })?;
    }
    let mut n = 0;
    for (r, what) in write.rows.iter().zip(&write.what) {
        // Equivocation: another change of this device under the same
        // sequence number is held already (or came earlier in this
        // message). The first one held wins; the second is refused, and
        // never stored or passed on.
        if let Some(first) = tx.change_with_seq(&write.doc, &r.actor, r.seq)?
            && first != r.hash
        {
            // Kept as evidence (the second change and its signature), and
            // shown by `region show`.
            tx.record_equivocation(&regiosync_store::EquivocationRow {
                doc: write.doc,
                actor: r.actor.clone(),
                seq: r.seq,
                first,
                second: r.hash,
                second_bytes: r.bytes.clone(),
                second_envelope: r.envelope.clone().unwrap_or_default(),
                seen_ms: now_ms(),
            })?;
            let device = automerge::ActorId::from(r.actor.as_slice());
            tracing::warn!(
                peer = %peer,
                doc = %write.doc,
                device = %NodeId::from_actor_id(&device).map(|d| d.to_string()).unwrap_or_default(),
                seq = r.seq,
                "refusing a change: its device signed another change with the same sequence number (equivocation); if that device is not under your control, remove it with `regiosync device remove`"
            );
            continue;
        }
        if tx.append_change(&write.doc, r)?.is_some() {
            n += 1;
            if !announce.contains(what) {
                announce.push(*what);
            }
        }
    }
    Ok((n, announce))
}

/// A document that cannot be loaded (damaged, or holding changes Automerge refuses) is
/// quarantined: left out of the sync (`None`), reported, and everything else keeps
/// flowing; other errors pass through.
fn quarantined<T>(r: Result<T, NodeError>) -> Option<Result<T, NodeError>> {
    match r {
        Err(NodeError::DamagedDocument { id, detail }) => {
            tracing::error!(doc = %id, %detail, "a document cannot be loaded and is left out of sync until it is repaired (re-sync it from a peer or restore a backup); the other documents keep syncing");
            None
        }
        r => Some(r),
    }
}
