//! The sync session as two state machines without I/O: the [`Requester`], which
//! drives a session with one peer, and the responder, [`answer`], which answers one
//! request. Neither sends, receives, sleeps or locks: the requester takes the peer's
//! last response and returns the next request to send (or how the session ended);
//! [`answer`] takes a request and returns the response. What they read and store
//! goes through [`SessionStore`], which a node implements over its store and its fold
//! of the region log for the length of one step (node's `sync` module is the driver:
//! it takes its lock once per step, performs the step, and does the transport).
//!
//! The session (docs/PROTOCOL.md, "Sync session"):
//!
//! 1. `Hello`: region, control heads and the summary of what the pair may share.
//!    Equal heads and summaries end the session after one round trip.
//! 2. If the control heads differ: `Ops` pages, first pulling what the peer has (a
//!    page that brings nothing new ends the pulling), then pushing what it lacks (a
//!    page it takes nothing of ends the pushing); then a second `Hello`, since what
//!    may be shared can have changed.
//! 3. Rounds of at most [`MAX_ROUNDS`]: `Buckets`, then `DocDigests` for the
//!    differing buckets name the differing documents; each is exchanged the way its
//!    kind travels ([`Exchange`]): sealed documents in batches of `Dossiers`
//!    messages (each item at most once per session), Automerge documents in batches
//!    of `Docs` messages, each batch with at most [`MAX_NEED_ROUNDS`] follow-ups. A
//!    round in which nothing moved ends the session (a later one retries).
//!
//! A driver, in outline (node's `sync::sync_with` is the real one):
//!
//! ```text
//! let mut session = Requester::new(peer);
//! let mut step = session.start(&mut store)?;          // under the node's lock
//! while let Step::Send(request) = step {
//!     let response = transport.request(peer, request.encode()).await?;
//!     step = session.on_response(&mut store, Response::decode(&response)?)?;
//! }
//! ```
//!
//! The unit tests drive both machines against an in-memory store
//! (`session/tests.rs`), without nodes, sockets or clocks.

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::rules::{
    MAX_DOCS_PER_ROUND, MAX_NEED_ROUNDS, MAX_OP_PAGES, MAX_ROUNDS, SealedItem, not_sent_yet,
    sealed_item_hash,
};
use super::{
    DigestSet, DocMessage, DossierMessage, Heads, MAX_OPS_PER_MESSAGE, Refusal, Request, Response,
};
use crate::control::{OpHash, RegionId};
use crate::id::{DocId, NodeId};

/// The documents a node and a peer may both hold, as this node holds them: their
/// heads (for sealed documents, the hashes of what is held) and the digests the
/// summary and the narrowing are computed from.
#[derive(Clone, Debug)]
pub struct Shared {
    /// Heads per Automerge document.
    pub heads: BTreeMap<DocId, Heads>,
    /// Digests of every shared document, sealed ones included.
    pub set: DigestSet,
}

/// How a document's changes travel in a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// Automerge's sync messages and signed changes, in `Docs` (plans).
    Automerge,
    /// Hashes, access-log ops and sealed changes, in `Dossiers` (dossiers): a relay
    /// cannot read them, so they are reconciled by hash.
    Sealed,
}

/// What storing the items of one message did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Items (ops, changes, erasures) that were new here and stored.
    pub stored: usize,
    /// Items that fail verification (forged or mangled): they count against the peer.
    pub forged: usize,
    /// The documents that got something new (to be passed on to other peers).
    pub docs: Vec<DocId>,
}

/// The reads and writes a session performs, implemented by a node over its store and
/// its fold of the region log for the length of one step. The session's rules that
/// decide which documents and items each side may see live in the implementation
/// (a node's gate), the order and the bounds of the exchange here.
pub trait SessionStore {
    /// A failure of the node's own store, which ends the session.
    type Error;

    /// The region this node is in.
    fn region(&self) -> RegionId;
    /// The heads of this node's region log: of every op it holds and placed, those
    /// the rules refused included (equal heads must mean the same log).
    fn control_heads(&self) -> Vec<OpHash>;
    /// Whether `peer` is an active device of the region.
    fn is_active_member(&self, peer: &NodeId) -> bool;
    /// The documents this node and `peer` may both hold.
    fn shared(&self, peer: &NodeId) -> Result<Shared, Self::Error>;
    /// How `doc` travels.
    fn exchange_of(&self, doc: &DocId) -> Exchange;

    /// Hashes of every control op held.
    fn op_hashes(&self) -> Result<Vec<OpHash>, Self::Error>;
    /// A page of the held control ops `theirs` lacks, parents first.
    fn ops_except(&self, theirs: &HashSet<OpHash>) -> Result<Vec<Vec<u8>>, Self::Error>;
    /// Verifies and stores control ops from `peer`; returns how many were new.
    fn receive_ops(&mut self, peer: &NodeId, ops: &[Vec<u8>]) -> Result<usize, Self::Error>;

    /// The opening `Docs` messages for `docs`.
    fn opening_docs(&self, peer: &NodeId, docs: &[DocId]) -> Result<Vec<DocMessage>, Self::Error>;
    /// Opening `Docs` messages for `docs` (documents this node just changed) that
    /// also carry the changes `peer` is not known to hold, so that a local edit
    /// reaches it in one round trip; only documents `peer` may read. By default the
    /// plain opening messages.
    fn pushing_docs(&self, peer: &NodeId, docs: &[DocId]) -> Result<Vec<DocMessage>, Self::Error> {
        self.opening_docs(peer, docs)
    }
    /// Verifies and stores the changes in `Docs` messages from `peer`.
    fn receive_docs(&mut self, peer: &NodeId, docs: &[DocMessage])
    -> Result<Received, Self::Error>;
    /// The answers to `Docs` messages: the changes `peer` lacks, what this side needs.
    fn answer_docs(
        &self,
        peer: &NodeId,
        docs: &[DocMessage],
    ) -> Result<Vec<DocMessage>, Self::Error>;

    /// The opening `Dossiers` messages for `dossiers`.
    fn opening_dossiers(
        &self,
        peer: &NodeId,
        dossiers: &[DocId],
    ) -> Result<Vec<DossierMessage>, Self::Error>;
    /// The hash that names a sealed item, by which the session sends each at most
    /// once; `None` for one that does not decode (it is not sent).
    fn item_hash(&self, item: SealedItem<'_>) -> Option<[u8; 32]> {
        sealed_item_hash(item)
    }
    /// Verifies and stores the items in `Dossiers` messages from `peer`.
    fn receive_dossiers(
        &mut self,
        peer: &NodeId,
        dossiers: &[DossierMessage],
    ) -> Result<Received, Self::Error>;
    /// The answers to `Dossiers` messages: the items `peer` lacks, or `withheld`.
    fn answer_dossiers(
        &self,
        peer: &NodeId,
        dossiers: &[DossierMessage],
    ) -> Result<Vec<DossierMessage>, Self::Error>;

    /// Records that `peer` holds `shared` as this node does (their summaries agree).
    fn note_in_sync(&mut self, peer: &NodeId, shared: &Shared) -> Result<(), Self::Error>;
    /// The ops by which the region removed `peer`, if it did.
    fn removal_proof(&self, peer: &NodeId) -> Result<Option<Vec<Vec<u8>>>, Self::Error>;
    /// Answers a join request (the only request a non-member may send).
    fn answer_join(&mut self, peer: &NodeId, request: &[u8]) -> Result<Response, Self::Error>;
}

/// What a session moved, as counted by the requester.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Control ops stored.
    pub ops_received: usize,
    /// Documents that differed in the first round.
    pub docs_differing: usize,
    /// Changes stored.
    pub changes_received: usize,
    /// Changes and sealed items refused as forged.
    pub changes_rejected: usize,
    /// Changes sent.
    pub changes_sent: usize,
    /// Sealed-dossier items stored (and dossiers purged on erasure).
    pub dossier_items_received: usize,
    /// Sealed-dossier items sent.
    pub dossier_items_sent: usize,
}

impl Tally {
    fn moved(&self) -> usize {
        self.changes_received
            + self.changes_sent
            + self.dossier_items_received
            + self.dossier_items_sent
    }
}

/// Why a session stopped before it ended normally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The peer is no active member of the region (by this node's log).
    NotAMember,
    /// The peer refused a request.
    Refused(Refusal),
    /// The peer says this device was removed, showing these ops (to be checked).
    Removed(Vec<Vec<u8>>),
    /// The peer answered with a response that does not fit the request.
    OutOfTurn,
}

/// What the requester does next.
#[derive(Debug)]
pub enum Step {
    /// Send this request and hand the response to [`Requester::on_response`].
    Send(Request),
    /// The session ended: what moved, the shared documents at the end, and whether
    /// the two were found in sync (then recorded with `note_in_sync`).
    Done {
        /// What moved.
        tally: Tally,
        /// The documents that got something new from the peer (a running node
        /// pushes them on to its other peers).
        received: Vec<DocId>,
        /// The shared documents at the end; `None` when a push landed and the
        /// session ended without comparing them (see [`Requester::pushing`]).
        shared: Option<Shared>,
        /// Whether the summaries agreed at the end.
        in_sync: bool,
    },
    /// The session stopped.
    Stop(Stop),
}

/// Where the requester is in the session.
#[derive(Debug)]
enum Phase {
    Start,
    Hello {
        mine: Vec<OpHash>,
    },
    OpsPull {
        page: usize,
    },
    OpsPush {
        page: usize,
        theirs: HashSet<OpHash>,
    },
    Rehello,
    Buckets {
        round: usize,
        shared: Shared,
    },
    DocDigests {
        round: usize,
    },
    Dossiers {
        need_round: usize,
    },
    DocsOpening,
    Docs {
        need_round: usize,
    },
    Ended,
}

/// The exchange of one round: the batches left, and what had moved before it.
#[derive(Debug, Default)]
struct Round {
    round: usize,
    moved_before: usize,
    dossiers: VecDeque<Vec<DocId>>,
    docs: VecDeque<Vec<DocId>>,
    /// The documents of a push (see [`Requester::pushing`]), before the `Hello`.
    pushing: bool,
}

impl Round {
    /// The batches of `docs` (sealed ones first, each kind in batches of at most
    /// `MAX_DOCS_PER_ROUND`).
    fn of<S: SessionStore>(
        store: &S,
        docs: &[DocId],
        round: usize,
        moved_before: usize,
        pushing: bool,
    ) -> Self {
        let (docs, dossiers): (Vec<DocId>, Vec<DocId>) = docs
            .iter()
            .partition(|d| store.exchange_of(d) == Exchange::Automerge);
        let batches = |ids: Vec<DocId>| {
            ids.chunks(MAX_DOCS_PER_ROUND)
                .map(<[DocId]>::to_vec)
                .collect()
        };
        Round {
            round,
            moved_before,
            dossiers: batches(dossiers),
            docs: batches(docs),
            pushing,
        }
    }
}

/// The requesting side of a session with one peer.
#[derive(Debug)]
pub struct Requester {
    peer: NodeId,
    phase: Phase,
    tally: Tally,
    /// The peer's summary from its last `Hello`.
    their_summary: Option<super::Summary>,
    /// The shared set of the last `Hello`, which the first round narrows with.
    digests: Option<Shared>,
    /// Sealed items sent this session: what the peer refuses is not in its next
    /// `have` either, and goes at most once.
    sent: HashSet<[u8; 32]>,
    round: Round,
    /// Documents this node just changed, sent before the `Hello`.
    changed: Vec<DocId>,
    /// A push is out and nothing has shown yet that it did not land: when its
    /// exchange ends with nothing left to send either way, the session ends there,
    /// without the `Hello` (see [`Requester::pushing`]).
    push_landed: bool,
    /// The documents of the push's last opening `Docs` request.
    pushed: Vec<DocId>,
    /// Documents that got something new from the peer in this session.
    received: Vec<DocId>,
}

impl Requester {
    /// A session with `peer`, not started.
    pub fn new(peer: NodeId) -> Self {
        Requester {
            peer,
            phase: Phase::Start,
            tally: Tally::default(),
            their_summary: None,
            digests: None,
            sent: HashSet::new(),
            round: Round::default(),
            changed: Vec::new(),
            push_landed: false,
            pushed: Vec::new(),
            received: Vec::new(),
        }
    }

    /// A session with `peer` that first pushes `changed` (documents this node just
    /// changed): their changes go out in the first request, without the `Hello` and
    /// the narrowing rounds that find differing documents, so that an edit reaches
    /// the peer in one round trip.
    ///
    /// A push of plans that lands (the exchange ends with nothing left that either
    /// side lacks of them, within the usual need rounds) ends the session there: a
    /// peer that got the edit from another member already costs one round trip, not
    /// a `Hello` and its summary of everything shared. Otherwise (a plan the peer
    /// cannot take yet, e.g. it lacks the control ops that created it; any dossier
    /// pushed, since a dossier exchange cannot tell a refusal from a success) the
    /// session goes on as [`Requester::new`]'s (`Hello`, control ops, narrowing),
    /// which catches whatever the push missed. The periodic full session catches
    /// anything else that differs.
    pub fn pushing(peer: NodeId, changed: Vec<DocId>) -> Self {
        Requester {
            changed,
            ..Requester::new(peer)
        }
    }

    /// Whether the session is still sending its push (the requests before the
    /// `Hello`): a driver may name the other peers it pushes to in these requests
    /// ([`Request::pushed_with`]), not in later ones, which carry what the two
    /// peers alone differ in.
    pub fn is_pushing(&self) -> bool {
        self.round.pushing
    }

    /// The first step: the opening `Hello` (to active members only: a removed device
    /// may still be connected for a moment).
    pub fn start<S: SessionStore>(&mut self, store: &mut S) -> Result<Step, S::Error> {
        if !matches!(self.phase, Phase::Start) {
            return Ok(Step::Stop(Stop::OutOfTurn));
        }
        if !store.is_active_member(&self.peer) {
            self.phase = Phase::Ended;
            return Ok(Step::Stop(Stop::NotAMember));
        }
        if !self.changed.is_empty() {
            let changed = std::mem::take(&mut self.changed);
            self.round = Round::of(store, &changed, 0, 0, true);
            self.push_landed = self.round.dossiers.is_empty() && !self.round.docs.is_empty();
            return self.next_batch(store);
        }
        self.opening_hello(store)
    }

    /// The `Hello` that compares control heads and summaries.
    fn opening_hello<S: SessionStore>(&mut self, store: &mut S) -> Result<Step, S::Error> {
        let mine = store.control_heads();
        let hello = self.hello(store)?;
        self.phase = Phase::Hello { mine };
        Ok(Step::Send(hello))
    }

    /// The next step, given the peer's response to the last request.
    pub fn on_response<S: SessionStore>(
        &mut self,
        store: &mut S,
        response: Response,
    ) -> Result<Step, S::Error> {
        let peer = self.peer;
        let phase = std::mem::replace(&mut self.phase, Phase::Ended);
        match (phase, response) {
            (_, Response::Refused { reason }) => Ok(Step::Stop(Stop::Refused(reason))),
            (_, Response::Removed { ops }) => Ok(Step::Stop(Stop::Removed(ops))),
            (
                Phase::Hello { mine },
                Response::Hello {
                    control_heads,
                    summary,
                },
            ) => {
                self.their_summary = Some(summary);
                if control_heads != mine {
                    self.phase = Phase::OpsPull { page: 0 };
                    return Ok(Step::Send(Request::Ops {
                        have: store.op_hashes()?,
                        ops: vec![],
                    }));
                }
                self.narrowing(store)
            }
            (Phase::OpsPull { page }, Response::Ops { have, ops }) => {
                // A page that brings nothing new ends the paging: a peer cannot keep a
                // session going with ops this node refuses.
                let full = ops.len() >= MAX_OPS_PER_MESSAGE;
                let new = store.receive_ops(&peer, &ops)?;
                self.tally.ops_received += new;
                if full && new > 0 && page + 1 < MAX_OP_PAGES {
                    self.phase = Phase::OpsPull { page: page + 1 };
                    return Ok(Step::Send(Request::Ops {
                        have: store.op_hashes()?,
                        ops: vec![],
                    }));
                }
                self.push_ops(store, 0, have.into_iter().collect())
            }
            (Phase::OpsPush { page, theirs }, Response::Ops { have, ops }) => {
                self.tally.ops_received += store.receive_ops(&peer, &ops)?;
                let now: HashSet<OpHash> = have.into_iter().collect();
                if now.len() <= theirs.len() {
                    // The peer took nothing of this page: it refuses these ops.
                    return self.rehello(store);
                }
                self.push_ops(store, page + 1, now)
            }
            (Phase::Rehello, Response::Hello { summary, .. }) => {
                self.their_summary = Some(summary);
                self.narrowing(store)
            }
            (Phase::Buckets { round, shared }, Response::Buckets { differing }) => {
                if differing.is_empty() {
                    return self.finish(store, Some(shared), true);
                }
                let docs = shared.set.in_buckets(&differing);
                self.phase = Phase::DocDigests { round };
                Ok(Step::Send(Request::DocDigests {
                    buckets: differing,
                    docs,
                }))
            }
            (Phase::DocDigests { round }, Response::DocDigests { differing }) => {
                if round == 0 {
                    self.tally.docs_differing = differing.len();
                }
                if differing.is_empty() {
                    return self.finish(store, None, false);
                }
                self.round = Round::of(store, &differing, round, self.tally.moved(), false);
                self.next_batch(store)
            }
            (Phase::Dossiers { need_round }, Response::Dossiers { dossiers }) => {
                let got = store.receive_dossiers(&peer, &dossiers)?;
                self.tally.dossier_items_received += got.stored;
                note_received(&mut self.received, &got.docs);
                self.tally.changes_rejected += got.forged;
                let answers = store.answer_dossiers(&peer, &dossiers)?;
                let outgoing = not_sent_yet(answers, &mut self.sent, |i| store.item_hash(i));
                self.send_dossiers(store, outgoing, need_round + 1)
            }
            (Phase::DocsOpening, Response::Docs { docs }) => {
                // A pushed document the answer leaves out is one the peer does not
                // share (yet): it lacks the control op that created it, or its
                // readers differ. Not a push that landed.
                if self.round.pushing
                    && std::mem::take(&mut self.pushed)
                        .iter()
                        .any(|d| !docs.iter().any(|m| m.doc == *d))
                {
                    self.push_landed = false;
                }
                self.receive_docs(store, &docs)?;
                let outgoing = store.answer_docs(&peer, &docs)?;
                self.send_docs(store, outgoing, 0)
            }
            (Phase::Docs { need_round }, Response::Docs { docs }) => {
                self.receive_docs(store, &docs)?;
                let outgoing = store.answer_docs(&peer, &docs)?;
                self.send_docs(store, outgoing, need_round + 1)
            }
            _ => Ok(Step::Stop(Stop::OutOfTurn)),
        }
    }

    /// A `Hello` for the documents shared now; keeps their digests for the first
    /// narrowing round.
    fn hello<S: SessionStore>(&mut self, store: &S) -> Result<Request, S::Error> {
        let shared = store.shared(&self.peer)?;
        let hello = Request::Hello {
            region: store.region(),
            control_heads: store.control_heads(),
            summary: shared.set.summary(),
        };
        self.digests = Some(shared);
        Ok(hello)
    }

    /// Pushes a page of the ops the peer lacks, or says `Hello` again when there is
    /// none (what may be shared can have changed: the summaries are compared afresh).
    fn push_ops<S: SessionStore>(
        &mut self,
        store: &mut S,
        page: usize,
        theirs: HashSet<OpHash>,
    ) -> Result<Step, S::Error> {
        let lacking = if page < MAX_OP_PAGES {
            store.ops_except(&theirs)?
        } else {
            vec![]
        };
        if lacking.is_empty() {
            return self.rehello(store);
        }
        self.phase = Phase::OpsPush { page, theirs };
        Ok(Step::Send(Request::Ops {
            have: store.op_hashes()?,
            ops: lacking,
        }))
    }

    fn rehello<S: SessionStore>(&mut self, store: &mut S) -> Result<Step, S::Error> {
        let hello = self.hello(store)?;
        self.phase = Phase::Rehello;
        Ok(Step::Send(hello))
    }

    /// After a `Hello`: done if the summaries agree, else the first round.
    fn narrowing<S: SessionStore>(&mut self, store: &mut S) -> Result<Step, S::Error> {
        let ours = self.digests.as_ref().map(|d| d.set.summary());
        if ours.is_some() && ours == self.their_summary {
            let shared = self.digests.take();
            return self.finish(store, shared, true);
        }
        self.round_start(store, 0)
    }

    /// Starts round `round` (the first narrows with the digests of the last `Hello`,
    /// later ones read afresh).
    fn round_start<S: SessionStore>(
        &mut self,
        store: &mut S,
        round: usize,
    ) -> Result<Step, S::Error> {
        if round >= MAX_ROUNDS {
            return self.finish(store, None, false);
        }
        let shared = match self.digests.take() {
            Some(shared) => shared,
            None => store.shared(&self.peer)?,
        };
        let buckets = shared.set.buckets();
        self.phase = Phase::Buckets { round, shared };
        Ok(Step::Send(Request::Buckets { buckets }))
    }

    /// The next batch of the round (sealed documents first), or the round's end.
    fn next_batch<S: SessionStore>(&mut self, store: &mut S) -> Result<Step, S::Error> {
        let peer = self.peer;
        if let Some(batch) = self.round.dossiers.pop_front() {
            let outgoing = store.opening_dossiers(&peer, &batch)?;
            return self.send_dossiers(store, outgoing, 0);
        }
        if let Some(batch) = self.round.docs.pop_front() {
            let opening = if self.round.pushing {
                let docs = store.pushing_docs(&peer, &batch)?;
                self.tally.changes_sent += docs.iter().map(|d| d.changes.len()).sum::<usize>();
                self.pushed = docs.iter().map(|d| d.doc).collect();
                docs
            } else {
                store.opening_docs(&peer, &batch)?
            };
            if opening.is_empty() {
                // Nothing to push: the peer may not read these documents, or holds
                // them as they are here already.
                return self.next_batch(store);
            }
            self.phase = Phase::DocsOpening;
            return Ok(Step::Send(Request::Docs { docs: opening }));
        }
        if self.round.pushing {
            self.round = Round::default();
            if std::mem::take(&mut self.push_landed) {
                // Both sides hold the same changes of what was pushed.
                self.phase = Phase::Ended;
                return Ok(Step::Done {
                    tally: self.tally,
                    received: std::mem::take(&mut self.received),
                    shared: None,
                    in_sync: false,
                });
            }
            // The push is out: now the usual session, which catches what it missed.
            return self.opening_hello(store);
        }
        if self.tally.moved() == self.round.moved_before {
            // Nothing moved although documents differ (e.g. changes this side cannot
            // verify yet): stop instead of looping; a later session retries.
            return self.finish(store, None, false);
        }
        self.round_start(store, self.round.round + 1)
    }

    fn send_dossiers<S: SessionStore>(
        &mut self,
        store: &mut S,
        outgoing: Vec<DossierMessage>,
        need_round: usize,
    ) -> Result<Step, S::Error> {
        if outgoing.is_empty() || need_round > MAX_NEED_ROUNDS {
            return self.next_batch(store);
        }
        self.tally.dossier_items_sent += outgoing
            .iter()
            .map(|m| m.ops.len() + m.changes.len())
            .sum::<usize>();
        self.phase = Phase::Dossiers { need_round };
        Ok(Step::Send(Request::Dossiers { dossiers: outgoing }))
    }

    fn send_docs<S: SessionStore>(
        &mut self,
        store: &mut S,
        outgoing: Vec<DocMessage>,
        need_round: usize,
    ) -> Result<Step, S::Error> {
        let idle = outgoing
            .iter()
            .all(|d| d.changes.is_empty() && d.need.is_empty());
        if idle || need_round >= MAX_NEED_ROUNDS {
            // Still something to send after the last need round: the peer does not
            // take it (yet).
            self.push_landed &= idle;
            return self.next_batch(store);
        }
        self.tally.changes_sent += outgoing.iter().map(|d| d.changes.len()).sum::<usize>();
        self.phase = Phase::Docs { need_round };
        Ok(Step::Send(Request::Docs { docs: outgoing }))
    }

    fn receive_docs<S: SessionStore>(
        &mut self,
        store: &mut S,
        docs: &[DocMessage],
    ) -> Result<(), S::Error> {
        let got = store.receive_docs(&self.peer, docs)?;
        self.tally.changes_received += got.stored;
        note_received(&mut self.received, &got.docs);
        self.tally.changes_rejected += got.forged;
        Ok(())
    }

    /// Ends the session with the shared documents as they are now (or as the last
    /// narrowing saw them), recording the peer in sync if it is.
    fn finish<S: SessionStore>(
        &mut self,
        store: &mut S,
        shared: Option<Shared>,
        in_sync: bool,
    ) -> Result<Step, S::Error> {
        let shared = match shared {
            Some(shared) => shared,
            None => store.shared(&self.peer)?,
        };
        if in_sync {
            store.note_in_sync(&self.peer, &shared)?;
        }
        self.phase = Phase::Ended;
        Ok(Step::Done {
            tally: self.tally,
            received: std::mem::take(&mut self.received),
            shared: Some(shared),
            in_sync,
        })
    }
}

/// Adds `docs` to `received`, each once.
fn note_received(received: &mut Vec<DocId>, docs: &[DocId]) {
    for d in docs {
        if !received.contains(d) {
            received.push(*d);
        }
    }
}

/// A response and what answering the request stored.
#[derive(Debug)]
pub struct Answered {
    /// The response.
    pub response: Response,
    /// Ops, changes and items the request brought that were new here.
    pub stored: usize,
    /// Changes, items and sync messages in the request that fail verification: the
    /// requester broke the protocol (honest nodes verify before they store, so they
    /// never pass such things on).
    pub forged: usize,
    /// The documents that got something new (a running node pushes them on).
    pub received: Vec<DocId>,
    /// The other peers the request was pushed to, by its own word (`PushDocs`,
    /// `PushDossiers`): a running node does not push `received` on to them. A peer
    /// that names peers it did not push to only delays their copy until their next
    /// session with anyone; it could as well not push at all.
    pub pushed_to: Vec<NodeId>,
    /// The request brought new control ops (or was a join that was accepted): who
    /// is a member may have changed, so a running node updates its gate.
    pub control: bool,
}

/// Answers one request from `peer` (the responding side of a session). A join
/// request is the only one a non-member may send; a removed device is told so, with
/// the ops that removed it.
pub fn answer<S: SessionStore>(
    store: &mut S,
    peer: &NodeId,
    request: Request,
) -> Result<Answered, S::Error> {
    let (request, pushed_to) = request.without_pushed();
    let mut done = Answered {
        response: Response::Refused {
            reason: Refusal::BadMessage,
        },
        stored: 0,
        forged: 0,
        received: Vec::new(),
        pushed_to,
        control: false,
    };
    if let Request::Join { request } = &request {
        done.response = store.answer_join(peer, request)?;
        if matches!(done.response, Response::Joined { .. }) {
            // New control ops: the running node updates its gate and pushes them.
            done.stored = 1;
            done.control = true;
        }
        return Ok(done);
    }
    if !store.is_active_member(peer) {
        done.response = match store.removal_proof(peer)? {
            Some(ops) => Response::Removed { ops },
            None => Response::Refused {
                reason: Refusal::NotAMember,
            },
        };
        return Ok(done);
    }
    done.response = match request {
        Request::Hello { region, .. } if region != store.region() => Response::Refused {
            reason: Refusal::WrongRegion,
        },
        Request::Hello {
            summary: theirs, ..
        } => {
            let shared = store.shared(peer)?;
            let summary = shared.set.summary();
            if summary == theirs {
                store.note_in_sync(peer, &shared)?;
            }
            Response::Hello {
                control_heads: store.control_heads(),
                summary,
            }
        }
        Request::Ops { have, ops } => {
            let new = store.receive_ops(peer, &ops)?;
            done.stored += new;
            done.control = new > 0;
            let theirs: HashSet<OpHash> = have.into_iter().collect();
            Response::Ops {
                have: store.op_hashes()?,
                ops: store.ops_except(&theirs)?,
            }
        }
        Request::Buckets { buckets } => {
            let shared = store.shared(peer)?;
            let differing = shared.set.differing_buckets(&buckets);
            if differing.is_empty() {
                // The round ends with the two in sync: this side records it too (as
                // for an equal `Hello`), so that a later push knows what the peer
                // holds.
                store.note_in_sync(peer, &shared)?;
            }
            Response::Buckets { differing }
        }
        Request::DocDigests { buckets, docs } => Response::DocDigests {
            differing: store.shared(peer)?.set.differing_docs(&buckets, &docs),
        },
        Request::Dossiers { dossiers } => {
            let got = store.receive_dossiers(peer, &dossiers)?;
            done.stored += got.stored;
            done.forged += got.forged;
            done.received = got.docs;
            Response::Dossiers {
                dossiers: store.answer_dossiers(peer, &dossiers)?,
            }
        }
        Request::Docs { docs } => {
            let got = store.receive_docs(peer, &docs)?;
            done.stored += got.stored;
            done.forged += got.forged;
            done.received = got.docs;
            Response::Docs {
                docs: store.answer_docs(peer, &docs)?,
            }
        }
        _ => Response::Refused {
            reason: Refusal::BadMessage,
        },
    };
    Ok(done)
}

#[cfg(test)]
mod tests;
