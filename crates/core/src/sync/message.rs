//! The messages of `/regiosync/sync/2` (those of `/regiosync/sync/1` and the push
//! requests that name peers) and their versioned encoding.
//!
//! Every frame is `[1 byte format = 1][postcard(Request | Response)]`. A session runs:
//!
//! 1. `Hello` ⇄ `Hello`: region, control heads, and the [`Summary`] of the documents
//!    the pair may share. Equal heads and equal summaries: done, one round trip.
//! 2. If control heads differ: `Ops` ⇄ `Ops` (the op hashes one has, the ops the other
//!    lacks). Control ops always go first: they decide what may be shared.
//! 3. If summaries differ: `Buckets` ⇄ `Buckets`, then `DocDigests` ⇄ `DocDigests` for
//!    the differing buckets, which names the differing documents.
//! 4. `Docs` ⇄ `Docs`: for many documents per round trip, Automerge's sync message
//!    (what each side has) and the signed changes the other side lacks. Sealed
//!    dossiers go in `Dossiers` ⇄ `Dossiers` instead: the hashes each side holds, and
//!    the access-log ops and sealed changes the other lacks (see [`DossierMessage`]).
//!
//! Either side may answer `Refused` with a reason instead.

use serde::{Deserialize, Serialize};

use super::bundle::{OutBundle, PendingBundle};
use super::compact::{Compactor, Expander, Kind, Table, WireBundle};
use super::summary::Summary;
use crate::control::{OpHash, RegionId};
use crate::id::{DocId, NodeId};

/// The format byte of sync messages in their full form, which every version
/// writes and reads.
pub const SYNC_FORMAT: u8 = 1;
/// The format byte of sync messages whose change envelopes travel compact
/// ([`crate::sync::compact`]): written only to peers that speak
/// `/regiosync/sync/3`, read from anyone.
pub const COMPACT_FORMAT: u8 = 2;

/// The format byte of sync messages whose envelopes travel compact and whose
/// dossier changes may travel in bundles ([`crate::sync::bundle`]): written only to
/// peers that speak `/regiosync/sync/4`, read from anyone.
pub const BUNDLED_FORMAT: u8 = 3;

/// The encoding of a sync frame, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameFormat {
    /// Format 1: envelopes as stored.
    Full,
    /// Format 2: envelopes compact.
    Compact,
    /// Format 3: envelopes compact, dossier changes between readers in bundles.
    Bundled,
}

impl FrameFormat {
    /// The format of `frame`, if it has one this build knows.
    pub fn of(frame: &[u8]) -> Option<Self> {
        match frame.first() {
            Some(&SYNC_FORMAT) => Some(Self::Full),
            Some(&COMPACT_FORMAT) => Some(Self::Compact),
            Some(&BUNDLED_FORMAT) => Some(Self::Bundled),
            _ => None,
        }
    }
}
/// Largest encoded message accepted (the transport frame limit is the same).
pub const MAX_SYNC_MESSAGE: usize = 16 * 1024 * 1024;
/// Most documents in one `Docs` or `Dossiers` message: bounds the work one request
/// can ask of a node (a request naming 200,000 dossiers held its lock for seconds).
pub const MAX_DOCS_PER_MESSAGE: usize = 256;
/// Most control ops carried in one `Ops` message; a larger log travels in pages.
pub const MAX_OPS_PER_MESSAGE: usize = 4096;
/// Most access-log ops of one dossier in one `Dossiers` message.
pub const MAX_DOSSIER_OPS_PER_MESSAGE: usize = 1024;
/// Most change hashes one document's `need` may ask for.
pub const MAX_NEED_PER_DOC: usize = 4096;
/// Most peers a push (`PushDocs`, `PushDossiers`) names as also pushed to; a node
/// with more connected peers names the first ones (the others are passed the
/// documents on, as before the names existed).
pub const MAX_PUSHED_TO: usize = 64;

/// One document in a `Docs` message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocMessage {
    /// The document.
    pub doc: DocId,
    /// Automerge's sync message (`sync::Message::encode`), telling the other side what
    /// this side has; empty when there is nothing to say.
    pub sync: Vec<u8>,
    /// Changes the other side lacks, each with its signed envelope.
    pub changes: Vec<SignedChange>,
    /// Hashes of changes this side still lacks (after a bloom false positive, or a
    /// change whose dependencies did not arrive); the other side sends them next.
    pub need: Vec<[u8; 32]>,
}

/// One sealed dossier in a `Dossiers` message. Dossiers are reconciled by id, not
/// with Automerge's sync protocol: a relay cannot read the sealed changes, so it
/// cannot know their dependencies; it knows their hashes (from the signed envelopes)
/// and the hashes of the access-log ops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierMessage {
    /// The dossier.
    pub dossier: DocId,
    /// Hashes of every access-log op and sealed change the sender holds of it (after
    /// storing what this message's counterpart brought).
    pub have: Vec<[u8; 32]>,
    /// Access-log ops the other side lacks (wire form of `SignedDossierOp`).
    pub ops: Vec<Vec<u8>>,
    /// Sealed changes the other side lacks: `change` holds the sealed bytes,
    /// `envelope` the `SealedEnvelope`.
    pub changes: Vec<SignedChange>,
    /// Set by the responder when it will not share this dossier with the requester
    /// (its party has no access any more): the requester stops offering it.
    pub withheld: bool,
}

/// An Automerge change with its envelope, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedChange {
    /// Raw change bytes.
    pub change: Vec<u8>,
    /// The envelope's wire form (`ChangeEnvelope::encode`).
    pub envelope: Vec<u8>,
}

/// A request of the sync protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Request {
    /// Opens a session.
    Hello {
        /// The region.
        region: RegionId,
        /// The requester's control heads.
        control_heads: Vec<OpHash>,
        /// The summary of the documents the pair may share.
        summary: Summary,
    },
    /// Control-log reconciliation.
    Ops {
        /// Hashes of every op the requester has.
        have: Vec<OpHash>,
        /// Ops the requester thinks the responder lacks (wire form).
        ops: Vec<Vec<u8>>,
    },
    /// The requester's 256 bucket digests.
    Buckets {
        /// One per first byte of the doc id.
        buckets: Vec<[u8; 8]>,
    },
    /// The requester's document digests in the differing buckets.
    DocDigests {
        /// The buckets.
        buckets: Vec<u8>,
        /// (doc id, digest) pairs.
        docs: Vec<(DocId, [u8; 8])>,
    },
    /// Per-document sync.
    Docs {
        /// The documents.
        docs: Vec<DocMessage>,
    },
    /// A join request (`JoinRequest::encode`), sent by a device that is not yet a
    /// member under the one-time identity derived from the invite's secret
    /// (`control::join_peer_seed`). The only request such a peer may send.
    Join {
        /// The signed join request.
        request: Vec<u8>,
    },
    /// Sealed-dossier reconciliation for the dossiers that differ.
    Dossiers {
        /// The dossiers.
        dossiers: Vec<DossierMessage>,
    },
    /// `Docs` sent as a push, naming the peers the requester pushes the same
    /// documents to (protocol `/regiosync/sync/2` only): the responder does not pass
    /// what it gets on to them, since they get it from the requester.
    PushDocs {
        /// The other peers pushed to (at most [`MAX_PUSHED_TO`]).
        also: Vec<NodeId>,
        /// As in `Docs`.
        docs: Vec<DocMessage>,
    },
    /// `Dossiers` sent as a push, naming the other peers pushed to, as `PushDocs`.
    PushDossiers {
        /// The other peers pushed to (at most [`MAX_PUSHED_TO`]).
        also: Vec<NodeId>,
        /// As in `Dossiers`.
        dossiers: Vec<DossierMessage>,
    },
}

impl Request {
    /// This request as a push naming `also`, the other peers the same documents are
    /// pushed to: `Docs` and `Dossiers` become `PushDocs` and `PushDossiers` (the
    /// list cut to [`MAX_PUSHED_TO`]); any other request is returned as it is.
    pub fn pushed_with(self, mut also: Vec<NodeId>) -> Request {
        also.truncate(MAX_PUSHED_TO);
        match self {
            Request::Docs { docs } => Request::PushDocs { also, docs },
            Request::Dossiers { dossiers } => Request::PushDossiers { also, dossiers },
            other => other,
        }
    }

    /// This request without the names of a push (`PushDocs` becomes `Docs`,
    /// `PushDossiers` becomes `Dossiers`) and the peers it named; any other request
    /// with none.
    pub fn without_pushed(self) -> (Request, Vec<NodeId>) {
        match self {
            Request::PushDocs { also, docs } => (Request::Docs { docs }, also),
            Request::PushDossiers { also, dossiers } => (Request::Dossiers { dossiers }, also),
            other => (other, Vec::new()),
        }
    }
}

/// A response of the sync protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// Answers `Hello`.
    Hello {
        /// The responder's control heads.
        control_heads: Vec<OpHash>,
        /// The responder's summary of the shared documents.
        summary: Summary,
    },
    /// Answers `Ops`.
    Ops {
        /// Hashes the responder has.
        have: Vec<OpHash>,
        /// Ops the requester lacks.
        ops: Vec<Vec<u8>>,
    },
    /// Answers `Buckets`: which buckets differ.
    Buckets {
        /// Differing bucket numbers.
        differing: Vec<u8>,
    },
    /// Answers `DocDigests`: the documents that differ.
    DocDigests {
        /// The documents.
        differing: Vec<DocId>,
    },
    /// Answers `Docs`.
    Docs {
        /// The documents.
        docs: Vec<DocMessage>,
    },
    /// The request was not served.
    Refused {
        /// Why.
        reason: Refusal,
    },
    /// Answers `Join`: the region's control log as a bundle (`encode_bundle`), which
    /// now adds the joining device.
    Joined {
        /// The bundle.
        bundle: Vec<u8>,
    },
    /// Answers `Join` when the inviter refuses it (used or expired invite, wrong
    /// party, …), with the reason for the joining user.
    JoinRefused {
        /// Why, at most [`MAX_REASON`] bytes.
        reason: String,
    },
    /// Answers `Dossiers`.
    Dossiers {
        /// The dossiers.
        dossiers: Vec<DossierMessage>,
    },
    /// Answers any request of a device the region removed (or whose party it
    /// removed): the signed op that did it (`RemoveDevice` or `RemoveParty`), so the
    /// device can tell its user when and by whom, and stop dialling. Sent only to
    /// the removed device itself, on its own authenticated connection.
    Removed {
        /// The removing op, as in the region log; at most [`MAX_REMOVED_OPS`].
        ops: Vec<Vec<u8>>,
    },
}

/// Most ops in a `Removed` answer.
pub const MAX_REMOVED_OPS: usize = 4;

/// Longest reason text in a `JoinRefused` response.
pub const MAX_REASON: usize = 512;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The requester is in another region.
    #[error("the peer is in another region")]
    WrongRegion,
    /// The message did not decode or broke a limit.
    #[error("the peer could not decode the message")]
    BadMessage,
    /// The responder is overloaded; try later.
    #[error("the peer is busy")]
    Busy,
    /// The requester is not an active device of the region (as the responder sees it).
    #[error("the peer does not see this device as an active member of the region")]
    NotAMember,
}

/// Why a sync message could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncError {
    /// Larger than [`MAX_SYNC_MESSAGE`].
    #[error("sync message of {0} bytes exceeds the limit of {MAX_SYNC_MESSAGE} bytes")]
    TooLarge(usize),
    /// An unknown format byte.
    #[error(
        "sync message has format {0}, this regiosync speaks {SYNC_FORMAT} and {COMPACT_FORMAT}: upgrade the older node"
    )]
    UnknownFormat(u8),
    /// Not a valid message.
    #[error("sync message is malformed")]
    Malformed,
    /// Decodes, but carries more items than a peer may ask for in one message.
    #[error("sync message carries too many {0}")]
    OverLimit(&'static str),
}

fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = vec![SYNC_FORMAT];
    // Serialising these types into a Vec cannot fail.
    out.extend(postcard::to_allocvec(msg).unwrap_or_default());
    out
}

/// A message whose changes' envelopes can travel compact.
trait WithChanges: Serialize + for<'de> Deserialize<'de> + Clone {
    /// The message's change lists, each with its document and envelope kind.
    fn change_lists(&mut self) -> Vec<(Kind, DocId, &mut Vec<SignedChange>)>;

    /// The message's changes, each with the kind of its list.
    fn changes(&self) -> Vec<(Kind, &SignedChange)>;

    /// Checks the per-message limits of a decoded message.
    fn check(&self) -> Result<(), SyncError>;

    /// Calls `f` with each change of the message, its document and envelope kind.
    fn each_change(
        &mut self,
        f: &mut dyn FnMut(Kind, &DocId, &mut SignedChange) -> Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        for (kind, doc, list) in self.change_lists() {
            for c in list {
                f(kind, &doc, c)?;
            }
        }
        Ok(())
    }
}

fn doc_lists(docs: &mut [DocMessage]) -> Vec<(Kind, DocId, &mut Vec<SignedChange>)> {
    docs.iter_mut()
        .map(|d| (Kind::Plain, d.doc, &mut d.changes))
        .collect()
}

fn doc_changes(docs: &[DocMessage]) -> Vec<(Kind, &SignedChange)> {
    docs.iter()
        .flat_map(|d| d.changes.iter().map(|c| (Kind::Plain, c)))
        .collect()
}

fn dossier_changes(dossiers: &[DossierMessage]) -> Vec<(Kind, &SignedChange)> {
    dossiers
        .iter()
        .flat_map(|d| d.changes.iter().map(|c| (Kind::Sealed, c)))
        .collect()
}

fn dossier_lists(dossiers: &mut [DossierMessage]) -> Vec<(Kind, DocId, &mut Vec<SignedChange>)> {
    dossiers
        .iter_mut()
        .map(|d| (Kind::Sealed, d.dossier, &mut d.changes))
        .collect()
}

impl WithChanges for Request {
    fn check(&self) -> Result<(), SyncError> {
        match self {
            Request::Ops { ops, .. } => check_ops(ops)?,
            Request::Docs { docs } => check_docs(docs)?,
            Request::Dossiers { dossiers } => check_dossiers(dossiers)?,
            Request::PushDocs { also, docs } => {
                check_pushed_to(also)?;
                check_docs(docs)?
            }
            Request::PushDossiers { also, dossiers } => {
                check_pushed_to(also)?;
                check_dossiers(dossiers)?
            }
            _ => {}
        }
        Ok(())
    }
    fn changes(&self) -> Vec<(Kind, &SignedChange)> {
        match self {
            Request::Docs { docs } | Request::PushDocs { docs, .. } => doc_changes(docs),
            Request::Dossiers { dossiers } | Request::PushDossiers { dossiers, .. } => {
                dossier_changes(dossiers)
            }
            _ => Vec::new(),
        }
    }
    fn change_lists(&mut self) -> Vec<(Kind, DocId, &mut Vec<SignedChange>)> {
        match self {
            Request::Docs { docs } | Request::PushDocs { docs, .. } => doc_lists(docs),
            Request::Dossiers { dossiers } | Request::PushDossiers { dossiers, .. } => {
                dossier_lists(dossiers)
            }
            _ => Vec::new(),
        }
    }
}

impl WithChanges for Response {
    fn check(&self) -> Result<(), SyncError> {
        match self {
            Response::Ops { ops, .. } => check_ops(ops)?,
            Response::Docs { docs } => check_docs(docs)?,
            Response::Dossiers { dossiers } => check_dossiers(dossiers)?,
            Response::Removed { ops } if ops.len() > MAX_REMOVED_OPS => {
                return Err(SyncError::OverLimit("removal ops"));
            }
            _ => {}
        }
        Ok(())
    }
    fn changes(&self) -> Vec<(Kind, &SignedChange)> {
        match self {
            Response::Docs { docs } => doc_changes(docs),
            Response::Dossiers { dossiers } => dossier_changes(dossiers),
            _ => Vec::new(),
        }
    }
    fn change_lists(&mut self) -> Vec<(Kind, DocId, &mut Vec<SignedChange>)> {
        match self {
            Response::Docs { docs } => doc_lists(docs),
            Response::Dossiers { dossiers } => dossier_lists(dossiers),
            _ => Vec::new(),
        }
    }
}

/// Whether a frame of `format` carries change `c` (of a list of `kind`): a peer
/// that speaks neither `/3` nor `/4` (full frames) reads only format 1 envelopes and
/// seals, a peer of `/3` (compact frames) no change sealed in format 2; each takes
/// any other for a forgery. Only `/4` peers get everything.
fn carries(format: FrameFormat, kind: Kind, c: &SignedChange) -> bool {
    let newer_seal = kind == Kind::Sealed
        && crate::seal::sealed_format(&c.change) == Some(crate::seal::REBUILDABLE_SEAL_FORMAT);
    let newer_envelope = c
        .envelope
        .first()
        .is_some_and(|f| *f > crate::envelope::ENVELOPE_FORMAT);
    match format {
        FrameFormat::Full => !newer_envelope && !newer_seal,
        FrameFormat::Compact => !newer_seal,
        FrameFormat::Bundled => true,
    }
}

/// How many changes of `msg` a frame of `format` leaves out (see [`carries`]).
fn left_out<T: WithChanges>(msg: &T, format: FrameFormat) -> usize {
    msg.changes()
        .into_iter()
        .filter(|(kind, c)| !carries(format, *kind, c))
        .count()
}

/// `msg` without the changes a frame of `format` leaves out.
fn only_carried<T: WithChanges>(msg: &T, format: FrameFormat) -> std::borrow::Cow<'_, T> {
    let mut msg = std::borrow::Cow::Borrowed(msg);
    if left_out(msg.as_ref(), format) > 0 {
        for (kind, _, list) in msg.to_mut().change_lists() {
            list.retain(|c| carries(format, kind, c));
        }
    }
    msg
}

/// `[1][postcard(msg)]`. A full frame goes to a peer that may run an older
/// version, which reads only format 1 envelopes and seals (and takes any other for
/// a forgery): changes in newer formats are left out of it.
fn encode_full<T: WithChanges>(msg: &T) -> Vec<u8> {
    encode(only_carried(msg, FrameFormat::Full).as_ref())
}

/// `[2][postcard(table)][postcard(msg with compact envelopes)]`, or in format 3
/// the same followed by `postcard(bundles)`: each of `bundles` whose dossier the
/// message names travels as a bundle, beside the dossier's other changes.
fn encode_compact<T: WithChanges>(msg: &T, format: u8, bundles: &[OutBundle]) -> Vec<u8> {
    // A `/3` peer reads no change sealed in format 2.
    let frame = match format {
        COMPACT_FORMAT => FrameFormat::Compact,
        _ => FrameFormat::Bundled,
    };
    let mut msg = only_carried(msg, frame).into_owned();
    let mut compactor = Compactor::default();
    let mut wire: Vec<WireBundle> = Vec::new();
    let mut lists = msg.change_lists();
    for b in bundles {
        let Some((_, _, list)) = lists
            .iter_mut()
            .find(|(kind, doc, _)| *kind == Kind::Sealed && *doc == b.dossier)
        else {
            continue;
        };
        match compactor.bundle(b) {
            Some(w) if !wire.iter().any(|x| x.dossier == b.dossier) => wire.push(w),
            // Travels on its own after all.
            _ => list.extend(b.changes.iter().cloned()),
        }
    }
    for (kind, doc, list) in lists {
        for change in list {
            compactor.compact(kind, &doc, change);
        }
    }
    let mut out = vec![format];
    out.extend(postcard::to_allocvec(&compactor.into_table()).unwrap_or_default());
    out.extend(postcard::to_allocvec(&msg).unwrap_or_default());
    if format == BUNDLED_FORMAT {
        out.extend(postcard::to_allocvec(&wire).unwrap_or_default());
    }
    out
}

fn encode_in<T: WithChanges>(msg: &T, format: FrameFormat) -> Vec<u8> {
    match format {
        FrameFormat::Full => encode_full(msg),
        FrameFormat::Compact => encode_compact(msg, COMPACT_FORMAT, &[]),
        FrameFormat::Bundled => encode_compact(msg, BUNDLED_FORMAT, &[]),
    }
}

fn decode<T: WithChanges>(bytes: &[u8]) -> Result<(T, Vec<PendingBundle>), SyncError> {
    if bytes.len() > MAX_SYNC_MESSAGE {
        return Err(SyncError::TooLarge(bytes.len()));
    }
    let (&format, body) = bytes.split_first().ok_or(SyncError::Malformed)?;
    match format {
        SYNC_FORMAT => match postcard::take_from_bytes(body) {
            Ok((msg, [])) => Ok((msg, Vec::new())),
            _ => Err(SyncError::Malformed),
        },
        COMPACT_FORMAT | BUNDLED_FORMAT => {
            let (table, body): (Table, _) =
                postcard::take_from_bytes(body).map_err(|_| SyncError::Malformed)?;
            let (mut msg, rest): (T, _) =
                postcard::take_from_bytes(body).map_err(|_| SyncError::Malformed)?;
            let wire: Vec<WireBundle> = match (format, rest) {
                (COMPACT_FORMAT, []) => Vec::new(),
                (BUNDLED_FORMAT, rest) => match postcard::take_from_bytes(rest) {
                    Ok((wire, [])) => wire,
                    _ => return Err(SyncError::Malformed),
                },
                _ => return Err(SyncError::Malformed),
            };
            let mut expander = Expander::new(table)?;
            msg.each_change(&mut |kind, doc, change| expander.expand(kind, doc, change))?;
            // At most one bundle per dossier, and only for a dossier the message names.
            let mut named: Vec<DocId> = msg
                .change_lists()
                .into_iter()
                .filter(|(kind, _, _)| *kind == Kind::Sealed)
                .map(|(_, doc, _)| doc)
                .collect();
            let mut bundles = Vec::with_capacity(wire.len());
            for w in wire {
                let Some(i) = named.iter().position(|d| *d == w.dossier) else {
                    return Err(SyncError::Malformed);
                };
                named.swap_remove(i);
                bundles.push(expander.pending(w)?);
            }
            Ok((msg, bundles))
        }
        other => Err(SyncError::UnknownFormat(other)),
    }
}

/// [`decode`], then the per-message limits.
fn decode_checked<T: WithChanges>(bytes: &[u8]) -> Result<(T, Vec<PendingBundle>), SyncError> {
    let (msg, bundles): (T, _) = decode(bytes)?;
    msg.check()?;
    Ok((msg, bundles))
}

/// [`decode_checked`] for a caller that does not take bundles: a frame with one is
/// refused.
fn decode_unbundled<T: WithChanges>(bytes: &[u8]) -> Result<T, SyncError> {
    match decode_checked(bytes)? {
        (msg, b) if b.is_empty() => Ok(msg),
        _ => Err(SyncError::Malformed),
    }
}

impl Request {
    /// The frame bytes, in the full form (format 1) every version reads, without
    /// the changes in formats only newer versions read.
    pub fn encode(&self) -> Vec<u8> {
        encode_full(self)
    }
    /// How many changes a frame of `format` leaves out (for a peer of an older
    /// version, which could not read them).
    pub fn left_out(&self, format: FrameFormat) -> usize {
        left_out(self, format)
    }
    /// The frame bytes in `format` (compact only for a peer that speaks
    /// `/regiosync/sync/3`).
    pub fn encode_as(&self, format: FrameFormat) -> Vec<u8> {
        encode_in(self, format)
    }
    /// The frame bytes in format 3 (only for a peer that speaks
    /// `/regiosync/sync/4`), with `bundles` (built from this request's dossiers,
    /// their changes no longer in it) travelling as bundles.
    pub fn encode_bundled(&self, bundles: &[OutBundle]) -> Vec<u8> {
        encode_compact(self, BUNDLED_FORMAT, bundles)
    }
    /// Decodes untrusted frame bytes and checks the per-message limits; a frame
    /// holding a bundle is refused (see [`Self::decode_bundled`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, SyncError> {
        decode_unbundled(bytes)
    }
    /// Decodes untrusted frame bytes with the bundles they hold (to be opened
    /// once the message's access-log ops are stored).
    pub fn decode_bundled(bytes: &[u8]) -> Result<(Self, Vec<PendingBundle>), SyncError> {
        decode_checked(bytes)
    }
}

fn check_pushed_to(also: &[NodeId]) -> Result<(), SyncError> {
    if also.len() > MAX_PUSHED_TO {
        return Err(SyncError::OverLimit("peers named in a push"));
    }
    Ok(())
}

fn check_ops(ops: &[Vec<u8>]) -> Result<(), SyncError> {
    if ops.len() > MAX_OPS_PER_MESSAGE {
        return Err(SyncError::OverLimit("control ops"));
    }
    Ok(())
}

fn check_docs(docs: &[DocMessage]) -> Result<(), SyncError> {
    if docs.len() > MAX_DOCS_PER_MESSAGE {
        return Err(SyncError::OverLimit("documents"));
    }
    if docs.iter().any(|d| d.need.len() > MAX_NEED_PER_DOC) {
        return Err(SyncError::OverLimit("needed changes"));
    }
    Ok(())
}

fn check_dossiers(dossiers: &[DossierMessage]) -> Result<(), SyncError> {
    if dossiers.len() > MAX_DOCS_PER_MESSAGE {
        return Err(SyncError::OverLimit("dossiers"));
    }
    if dossiers
        .iter()
        .any(|d| d.ops.len() > MAX_DOSSIER_OPS_PER_MESSAGE)
    {
        return Err(SyncError::OverLimit("dossier ops"));
    }
    Ok(())
}

impl Response {
    /// The frame bytes, in the full form (format 1) every version reads, without
    /// the changes in formats only newer versions read.
    pub fn encode(&self) -> Vec<u8> {
        encode_full(self)
    }
    /// How many changes a frame of `format` leaves out (for a peer of an older
    /// version, which could not read them).
    pub fn left_out(&self, format: FrameFormat) -> usize {
        left_out(self, format)
    }
    /// The frame bytes in `format`: a responder answers in the format it was asked
    /// in, so a peer that asked in format 1 (an older version) gets format 1.
    pub fn encode_as(&self, format: FrameFormat) -> Vec<u8> {
        encode_in(self, format)
    }
    /// The frame bytes in format 3, with `bundles` (as [`Request::encode_bundled`]):
    /// the answer to a request asked in format 3.
    pub fn encode_bundled(&self, bundles: &[OutBundle]) -> Vec<u8> {
        encode_compact(self, BUNDLED_FORMAT, bundles)
    }
    /// Decodes untrusted frame bytes and checks the per-message limits; a frame
    /// holding a bundle is refused (see [`Self::decode_bundled`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, SyncError> {
        decode_unbundled(bytes)
    }
    /// Decodes untrusted frame bytes with the bundles they hold.
    pub fn decode_bundled(bytes: &[u8]) -> Result<(Self, Vec<PendingBundle>), SyncError> {
        decode_checked(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::summary::DigestSet;
    use proptest::prelude::*;

    fn doc_message() -> impl Strategy<Value = DocMessage> {
        (
            any::<[u8; 16]>(),
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 0..64),
                    prop::collection::vec(any::<u8>(), 0..64),
                ),
                0..4,
            ),
        )
            .prop_map(|(d, sync, ch)| DocMessage {
                doc: DocId::from_bytes(d),
                sync,
                changes: ch
                    .into_iter()
                    .map(|(change, envelope)| SignedChange { change, envelope })
                    .collect(),
                need: vec![[d[0]; 32]],
            })
    }

    fn dossier_message() -> impl Strategy<Value = DossierMessage> {
        (
            any::<[u8; 16]>(),
            prop::collection::vec(any::<[u8; 32]>(), 0..4),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..32), 0..3),
            doc_message(),
            any::<bool>(),
        )
            .prop_map(|(d, have, ops, m, withheld)| DossierMessage {
                dossier: DocId::from_bytes(d),
                have,
                ops,
                changes: m.changes,
                withheld,
            })
    }

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            (
                any::<[u8; 32]>(),
                prop::collection::vec(any::<[u8; 32]>(), 0..4),
                any::<u32>()
            )
                .prop_map(|(r, h, c)| Request::Hello {
                    region: RegionId(OpHash(r)),
                    control_heads: h.into_iter().map(OpHash).collect(),
                    summary: Summary { total: r, count: c },
                }),
            (
                prop::collection::vec(any::<[u8; 32]>(), 0..4),
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..32), 0..3)
            )
                .prop_map(|(h, ops)| Request::Ops {
                    have: h.into_iter().map(OpHash).collect(),
                    ops
                }),
            prop::collection::vec(any::<[u8; 8]>(), 0..300)
                .prop_map(|buckets| Request::Buckets { buckets }),
            (
                prop::collection::vec(any::<u8>(), 0..10),
                prop::collection::vec((any::<[u8; 16]>(), any::<[u8; 8]>()), 0..10)
            )
                .prop_map(|(buckets, d)| Request::DocDigests {
                    buckets,
                    docs: d
                        .into_iter()
                        .map(|(i, g)| (DocId::from_bytes(i), g))
                        .collect()
                }),
            prop::collection::vec(doc_message(), 0..3).prop_map(|docs| Request::Docs { docs }),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(|request| Request::Join { request }),
            prop::collection::vec(dossier_message(), 0..3)
                .prop_map(|dossiers| Request::Dossiers { dossiers }),
        ]
    }

    fn only_format_1<T: WithChanges>(msg: T) -> T {
        only_carried(&msg, FrameFormat::Full).into_owned()
    }

    proptest! {
        #[test]
        fn requests_roundtrip(r in request()) {
            // The full form leaves out changes whose envelopes older peers cannot
            // read (the junk here that does not start like a format 1 envelope).
            prop_assert_eq!(Request::decode(&r.encode()).unwrap(), only_format_1(r.clone()));
            // Envelopes that are not real ones travel whole in formats 2 and 3.
            prop_assert_eq!(
                Request::decode(&r.encode_as(FrameFormat::Compact)).unwrap(),
                only_carried(&r, FrameFormat::Compact).into_owned()
            );
            prop_assert_eq!(Request::decode(&r.encode_as(FrameFormat::Bundled)).unwrap(), r);
        }

        #[test]
        fn responses_roundtrip(docs in prop::collection::vec(doc_message(), 0..3), d in prop::collection::vec(any::<[u8; 16]>(), 0..5)) {
            for r in [
                Response::Docs { docs: docs.clone() },
                Response::DocDigests { differing: d.iter().map(|i| DocId::from_bytes(*i)).collect() },
                Response::Refused { reason: Refusal::WrongRegion },
                Response::Joined { bundle: d.iter().flatten().copied().collect() },
                Response::JoinRefused { reason: format!("{} docs", d.len()) },
                Response::Removed { ops: d.iter().map(|i| i.to_vec()).take(MAX_REMOVED_OPS).collect() },
                Response::Dossiers { dossiers: docs.iter().map(|m| DossierMessage {
                    dossier: m.doc,
                    have: m.need.clone(),
                    ops: vec![m.sync.clone()],
                    changes: m.changes.clone(),
                    withheld: m.sync.is_empty(),
                }).collect() },
            ] {
                prop_assert_eq!(Response::decode(&r.encode()).unwrap(), only_format_1(r.clone()));
                // A compact frame (a `/3` peer) leaves out what looks sealed in format
                // 2 (junk starting with byte 2); format 3 carries everything.
                prop_assert_eq!(
                    Response::decode(&r.encode_as(FrameFormat::Compact)).unwrap(),
                    only_carried(&r, FrameFormat::Compact).into_owned()
                );
                prop_assert_eq!(Response::decode(&r.encode_as(FrameFormat::Bundled)).unwrap(), r);
            }
        }

        #[test]
        fn garbage_never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
            // The same behind the compact format's byte.
            bytes.insert(0, COMPACT_FORMAT);
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }
    }

    #[test]
    fn a_request_naming_too_many_dossiers_or_ops_is_refused_at_decoding() {
        let dossier = |i: u16| DossierMessage {
            dossier: DocId::from_bytes([
                i.to_le_bytes()[0],
                i.to_le_bytes()[1],
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ]),
            have: vec![],
            ops: vec![],
            changes: vec![],
            withheld: false,
        };
        let ok = Request::Dossiers {
            dossiers: (0..MAX_DOCS_PER_MESSAGE as u16).map(dossier).collect(),
        };
        assert!(Request::decode(&ok.encode()).is_ok());
        let too_many = Request::Dossiers {
            dossiers: (0..=MAX_DOCS_PER_MESSAGE as u16).map(dossier).collect(),
        };
        assert_eq!(
            Request::decode(&too_many.encode()),
            Err(SyncError::OverLimit("dossiers"))
        );
        let mut fat = dossier(1);
        fat.ops = vec![vec![]; MAX_DOSSIER_OPS_PER_MESSAGE + 1];
        assert_eq!(
            Response::decode(
                &Response::Dossiers {
                    dossiers: vec![fat]
                }
                .encode()
            ),
            Err(SyncError::OverLimit("dossier ops"))
        );
        let ops = Request::Ops {
            have: vec![],
            ops: vec![vec![]; MAX_OPS_PER_MESSAGE + 1],
        };
        assert_eq!(
            Request::decode(&ops.encode()),
            Err(SyncError::OverLimit("control ops"))
        );
        let docs = Request::Docs {
            docs: vec![DocMessage {
                doc: DocId::from_bytes([0; 16]),
                sync: vec![],
                changes: vec![],
                need: vec![[0; 32]; MAX_NEED_PER_DOC + 1],
            }],
        };
        assert_eq!(
            Request::decode(&docs.encode()),
            Err(SyncError::OverLimit("needed changes"))
        );
    }

    #[test]
    fn an_idle_hello_is_small_and_versions_are_checked() {
        let hello = Request::Hello {
            region: RegionId(OpHash([1; 32])),
            control_heads: vec![OpHash([2; 32])],
            summary: DigestSet::default().summary(),
        };
        // One round trip of two such frames is well under a few hundred bytes.
        assert!(hello.encode().len() < 120, "{}", hello.encode().len());
        // In format 2 it costs three bytes more (an empty table).
        let compact = hello.encode_as(FrameFormat::Compact);
        assert_eq!(compact.len(), hello.encode().len() + 3);
        assert_eq!(Request::decode(&compact).unwrap(), hello);
        // In format 3 one more (no bundle).
        let bundled = hello.encode_as(FrameFormat::Bundled);
        assert_eq!(bundled.len(), compact.len() + 1);
        assert_eq!(Request::decode(&bundled).unwrap(), hello);
        assert_eq!(
            Request::decode_bundled(&bundled).unwrap(),
            (hello.clone(), vec![])
        );
        let mut wire = hello.encode();
        wire[0] = 4;
        assert_eq!(Request::decode(&wire), Err(SyncError::UnknownFormat(4)));
        assert!(
            SyncError::UnknownFormat(4)
                .to_string()
                .contains("upgrade the older node")
        );
        let mut trailing = hello.encode();
        trailing.push(0);
        assert_eq!(Request::decode(&trailing), Err(SyncError::Malformed));
        assert_eq!(Request::decode(&[]), Err(SyncError::Malformed));
    }
}
