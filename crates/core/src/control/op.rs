//! Control-plane operations: their types, canonical encoding, hash and signature.
//!
//! Wire form of a signed op (version 1), see docs/PROTOCOL.md:
//!
//! ```text
//! [1 byte format = 1][64 bytes Ed25519 signature][op bytes: postcard(Op)]
//! ```
//!
//! The op hash is `SHA-256("regiosync/op/1\0" || op bytes)`; the signature is the
//! author's Ed25519 signature over `"regiosync/op-signature/1\0" || op hash`. Decoding
//! re-encodes the op and refuses bytes that are not the canonical encoding, so one op
//! has exactly one hash.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id::{DocId, NodeId, PartyName, Role};
use crate::kind::KindName;
use crate::plan::PlanKind;

/// The format byte of signed ops this build writes and reads.
pub const OP_FORMAT: u8 = 1;
/// Largest signed op accepted, in bytes.
pub const MAX_OP_BYTES: usize = 64 * 1024;
/// Most parents an op may name.
pub const MAX_PARENTS: usize = 64;
/// Most entries in any list inside an op (ACL parties, cutoffs).
pub const MAX_LIST: usize = 1024;
/// Longest region name, in characters.
pub const MAX_REGION_NAME: usize = 120;
/// Most addresses a device publishes.
pub const MAX_ADDRS: usize = 8;
/// Longest published address, in bytes.
pub const MAX_ADDR_LEN: usize = 256;
/// Longest approval comment, in characters.
pub const MAX_APPROVAL_COMMENT: usize = 500;
/// The longest display name of a party, in characters.
pub const MAX_DISPLAY_NAME: usize = 80;

const HASH_CONTEXT: &[u8] = b"regiosync/op/1\0";
const SIG_CONTEXT: &[u8] = b"regiosync/op-signature/1\0";

/// The hash of an op: its id in the DAG.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OpHash(pub [u8; 32]);

impl OpHash {
    /// The first 12 hex digits, for logs and listings.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for OpHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for OpHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpHash({})", self.short())
    }
}

/// A region id: the hash of the region's `CreateRegion` op.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RegionId(pub OpHash);

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegionId({})", self.0.short())
    }
}

impl std::str::FromStr for RegionId {
    type Err = OpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).map_err(|_| OpError::Malformed("region id"))?;
        Ok(RegionId(OpHash(b)))
    }
}

/// Which of a removed writer's changes to a document stay valid: those of `device` on
/// `doc` with sequence number below `last_seq`, and the one with `last_seq` if its
/// hash is `last_hash`. `last_seq = 0` keeps none. See docs/AUTH.md, "Cutoffs".
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cutoff {
    /// The document.
    pub doc: DocId,
    /// The device whose writes are cut off.
    pub device: NodeId,
    /// The sequence number of its last valid change on `doc` (0: none).
    pub last_seq: u64,
    /// The hash of that change.
    pub last_hash: Option<[u8; 32]>,
}

/// A control-plane operation, before signing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The region; `None` only for `CreateRegion`, whose hash becomes the region id.
    pub region: Option<RegionId>,
    /// The heads of the region log the author had seen, sorted, no duplicates.
    pub parents: Vec<OpHash>,
    /// The signing device.
    pub author: NodeId,
    /// The author's clock, Unix seconds. Advisory: never used to decide anything.
    pub time: i64,
    /// What the op does.
    pub body: OpBody,
}

/// What an op does. The authority each one needs is in docs/AUTH.md.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OpBody {
    /// Founds a region. The author device and its party become the first members; the
    /// party is a region admin.
    CreateRegion {
        /// Human name of the region.
        name: String,
        /// The founding party.
        party: PartyName,
        /// Its role.
        role: Role,
        /// The founding device's age recipient.
        age_recipient: String,
    },
    /// Adds a party.
    AddParty {
        /// The party.
        party: PartyName,
        /// Its role.
        role: Role,
    },
    /// Adds a device to a party.
    AddDevice {
        /// The party.
        party: PartyName,
        /// The device's node id.
        device: NodeId,
        /// The device's age recipient.
        age_recipient: String,
    },
    /// Removes a device; its writes are cut off as listed.
    RemoveDevice {
        /// The device.
        device: NodeId,
        /// Per document, which of its changes stay valid.
        cutoffs: Vec<Cutoff>,
    },
    /// Makes a party a region admin, or not.
    SetAdmin {
        /// The party.
        party: PartyName,
        /// Admin or not.
        admin: bool,
    },
    /// Removes a party and all its devices.
    RemoveParty {
        /// The party.
        party: PartyName,
        /// Per document and device, which changes stay valid.
        cutoffs: Vec<Cutoff>,
    },
    /// Registers a shared plan document with its access lists (a plan's kind; any
    /// other kind is created with [`OpBody::CreateDocument`]).
    CreateDoc {
        /// The document.
        doc: DocId,
        /// The plan kind.
        kind: PlanKind,
        /// The owning party (the author's party).
        owner: PartyName,
        /// Parties that receive and read it (the owner always does).
        readers: Vec<PartyName>,
        /// Parties that may change it (the owner always may).
        writers: Vec<PartyName>,
    },
    /// Replaces a document's access lists.
    SetAcl {
        /// The document.
        doc: DocId,
        /// New readers.
        readers: Vec<PartyName>,
        /// New writers.
        writers: Vec<PartyName>,
        /// For devices of parties that lose write access: which changes stay valid.
        cutoffs: Vec<Cutoff>,
    },
    /// Publishes the addresses (multiaddrs) where the author device can be reached,
    /// replacing the ones it published before. Members dial them; they are hints,
    /// never trusted for identity (the connection proves the peer id).
    SetAddrs {
        /// At most [`MAX_ADDRS`] multiaddrs, each at most [`MAX_ADDR_LEN`] bytes.
        addrs: Vec<String>,
    },
    /// Designates a device as a dossier relay, or ends that (region admins only). A
    /// dossier relay receives every dossier's access log and sealed changes, checks
    /// their signatures and authority, stores them and forwards them to the devices
    /// of the parties with access; it holds no key and cannot read them.
    SetDossierRelay {
        /// The device.
        device: NodeId,
        /// Relay or not.
        relay: bool,
    },
    /// Records that the author's party consents to a plan at exactly these heads
    /// ("op overeenstemming gericht overleg"). The op's signature binds the region,
    /// the document, the heads and the comment to the approving device; a later
    /// approval by the same party replaces the earlier one. See docs/AUTH.md.
    Approve {
        /// The plan.
        doc: DocId,
        /// The Automerge heads of the approved version, sorted, no duplicates.
        heads: Vec<[u8; 32]>,
        /// A short remark for the minutes, at most [`MAX_APPROVAL_COMMENT`] characters.
        comment: Option<String>,
    },
    /// Opens a plan to every party of the region, the ones that join later included
    /// (or ends that): to read, or to read and write. Same authority as `SetAcl`
    /// (the owner's devices, or an admin).
    SetAudience {
        /// The document.
        doc: DocId,
        /// Every party reads it.
        everyone_reads: bool,
        /// Every party writes it (needs `everyone_reads`).
        everyone_writes: bool,
        /// For devices of parties that lose write access: which changes stay valid.
        cutoffs: Vec<Cutoff>,
    },
    /// Gives a party the name people read ("Gemeente Gouda" for `gemeente-gouda`),
    /// replacing the one it had. The party's own devices or an admin; unique in the
    /// region after [`crate::text::sameness_key`], so no party can pass for another.
    SetPartyName {
        /// The party.
        party: PartyName,
        /// One line, 1 to [`MAX_DISPLAY_NAME`] characters, trimmed, nothing that
        /// reads differently from what it holds ([`crate::text::is_misleading`]).
        display_name: String,
    },
    /// Registers a shared document of any kind with its access lists: the form of
    /// [`OpBody::CreateDoc`] whose kind is a [`KindName`], so that a new kind of
    /// document needs no new op. Plans are still created with `CreateDoc`, which
    /// every version reads; a node older than this op refuses it as undecodable.
    CreateDocument {
        /// The document.
        doc: DocId,
        /// Its kind ([`crate::kind`]).
        kind: KindName,
        /// The owning party (the author's party).
        owner: PartyName,
        /// Parties that receive and read it (the owner always does).
        readers: Vec<PartyName>,
        /// Parties that may change it (the owner always may).
        writers: Vec<PartyName>,
    },
}

/// What a `CreateDoc` or `CreateDocument` op registers, in one form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocCreation<'a> {
    /// The document.
    pub doc: &'a DocId,
    /// Its kind (`plan/<kind>` for a `CreateDoc`).
    pub kind: KindName,
    /// The owning party.
    pub owner: &'a PartyName,
    /// Readers named by the op.
    pub readers: &'a [PartyName],
    /// Writers named by the op.
    pub writers: &'a [PartyName],
}

impl OpBody {
    /// The document this op registers, if it is a `CreateDoc` or a
    /// `CreateDocument`.
    pub fn doc_creation(&self) -> Option<DocCreation<'_>> {
        match self {
            OpBody::CreateDoc {
                doc,
                kind,
                owner,
                readers,
                writers,
            } => Some(DocCreation {
                doc,
                kind: kind.kind_name(),
                owner,
                readers,
                writers,
            }),
            OpBody::CreateDocument {
                doc,
                kind,
                owner,
                readers,
                writers,
            } => Some(DocCreation {
                doc,
                kind: kind.clone(),
                owner,
                readers,
                writers,
            }),
            _ => None,
        }
    }

    /// A short name for logs and listings.
    pub fn name(&self) -> &'static str {
        match self {
            OpBody::CreateRegion { .. } => "create-region",
            OpBody::AddParty { .. } => "add-party",
            OpBody::AddDevice { .. } => "add-device",
            OpBody::RemoveDevice { .. } => "remove-device",
            OpBody::SetAdmin { .. } => "set-admin",
            OpBody::RemoveParty { .. } => "remove-party",
            OpBody::CreateDoc { .. } => "create-doc",
            OpBody::SetAcl { .. } => "set-acl",
            OpBody::SetAddrs { .. } => "set-addrs",
            OpBody::SetDossierRelay { .. } => "set-dossier-relay",
            OpBody::Approve { .. } => "approve",
            OpBody::SetAudience { .. } => "set-audience",
            OpBody::SetPartyName { .. } => "set-party-name",
            OpBody::CreateDocument { .. } => "create-document",
        }
    }

    /// Whether the op takes authority away (these sort first among concurrent ops).
    pub fn is_revocation(&self) -> bool {
        matches!(
            self,
            OpBody::RemoveDevice { .. }
                | OpBody::RemoveParty { .. }
                | OpBody::SetAdmin { admin: false, .. }
                | OpBody::SetDossierRelay { relay: false, .. }
        )
    }
}

/// A payload that is signed by its author and identified by its hash: a region op,
/// or (see [`crate::dossier::access`]) a dossier access op. The two kinds use
/// different hash and signature contexts, so one can never be taken for the other.
pub trait Payload:
    Serialize + serde::de::DeserializeOwned + Clone + PartialEq + fmt::Debug
{
    /// Domain separation of the hash.
    const HASH_CONTEXT: &'static [u8];
    /// Domain separation of the signature.
    const SIG_CONTEXT: &'static [u8];
    /// The signing device.
    fn author(&self) -> NodeId;
    /// The hashes of the ops this one was made on (its author's signature covers
    /// them, see [`Signed::decode_batch`]).
    fn parents(&self) -> &[OpHash];
    /// Rules that hold whatever the state.
    fn check_structure(&self) -> Result<(), OpError>;
}

impl Payload for Op {
    const HASH_CONTEXT: &'static [u8] = HASH_CONTEXT;
    const SIG_CONTEXT: &'static [u8] = SIG_CONTEXT;
    fn author(&self) -> NodeId {
        self.author
    }
    fn parents(&self) -> &[OpHash] {
        &self.parents
    }
    fn check_structure(&self) -> Result<(), OpError> {
        check_structure(self)
    }
}

/// A signed payload whose signature and encoding have been checked. It can only be
/// made by [`Signed::sign`], [`Signed::decode`] or [`Signed::decode_batch`] (or, for
/// this node's own store, [`Signed::decode_stored`]), so holding one means the named
/// author signed exactly these bytes, or a later op of theirs that names them; whether
/// the author had the *authority* is decided by a fold.
///
/// Wire form: `[format byte][64-byte signature][postcard(payload)]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed<P: Payload> {
    payload: P,
    bytes: Vec<u8>,
    signature: [u8; 64],
    hash: OpHash,
}

/// A signed region op.
pub type SignedOp = Signed<Op>;

impl<P: Payload> fmt::Debug for Signed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("hash", &self.hash)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl<P: Payload> Signed<P> {
    /// Signs `payload` with the author's key. Fails if the key is not the author's or
    /// the payload breaks a structural rule.
    pub fn sign(payload: P, key: &SigningKey) -> Result<Self, OpError> {
        if key.verifying_key().to_bytes() != *payload.author().as_bytes() {
            return Err(OpError::WrongKey);
        }
        payload.check_structure()?;
        let bytes = postcard::to_allocvec(&payload).map_err(|_| OpError::Malformed("encoding"))?;
        if bytes.len() + 65 > MAX_OP_BYTES {
            return Err(OpError::TooLarge(bytes.len() + 65));
        }
        let hash = hash_of::<P>(&bytes);
        let signature = key.sign(&sig_message::<P>(&hash)).to_bytes();
        Ok(Self {
            payload,
            bytes,
            signature,
            hash,
        })
    }

    /// Decodes and checks a signed payload from untrusted bytes: size, format
    /// version, canonical encoding, structure, and the author's signature.
    pub fn decode(wire: &[u8]) -> Result<Self, OpError> {
        Self::decode_inner(wire, true)
    }

    /// Decodes a batch of signed payloads from untrusted bytes (the ops of one
    /// received message), as [`Signed::decode`] does each, with one difference: an
    /// op named as a parent by another op of the batch with the same author, whose
    /// own signature (or such a chain) holds, needs no check of its own signature.
    /// The later op's signature covers its parents' hashes, and so what they say:
    /// its author vouches for its own earlier ops, as a sealed change envelope does
    /// for its predecessor (`envelope::sealed::authentic`). Another author's op
    /// vouches for nothing. The signatures of the ops no same-author op names (the
    /// newest of each author) are checked first, on all cores; an op whose own
    /// signature is bad and that nothing vouches for is `BadSignature`, as in
    /// [`Signed::decode`]. The results are in the order of `wires`.
    pub fn decode_batch(wires: &[&[u8]]) -> Vec<Result<Self, OpError>> {
        let decoded: Vec<Result<Self, OpError>> =
            wires.iter().map(|w| Self::decode_inner(w, false)).collect();
        let n = decoded.len();
        let by_hash: std::collections::HashMap<OpHash, usize> = decoded
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((d.as_ref().ok()?.hash, i)))
            .collect();
        let authors: Vec<Option<NodeId>> = decoded
            .iter()
            .map(|d| d.as_ref().ok().map(|o| o.payload.author()))
            .collect();
        // For each op, its parents in the batch by the same author; how many name each.
        let parents: Vec<Vec<usize>> = decoded
            .iter()
            .zip(&authors)
            .map(|(d, author)| {
                let Ok(op) = d else { return Vec::new() };
                op.payload
                    .parents()
                    .iter()
                    .filter_map(|h| by_hash.get(h).copied())
                    .filter(|p| authors[*p] == *author)
                    .collect()
            })
            .collect();
        let mut children = vec![0usize; n];
        for p in parents.iter().flatten() {
            children[*p] += 1;
        }
        let mut ready: Vec<usize> = (0..n)
            .filter(|i| children[*i] == 0 && decoded[*i].is_ok())
            .collect();
        let tips: Vec<([u8; 32], [u8; 64], Vec<u8>)> = ready
            .iter()
            .filter_map(|i| {
                let op = decoded[*i].as_ref().ok()?;
                Some((
                    *op.payload.author().as_bytes(),
                    op.signature,
                    sig_message::<P>(&op.hash),
                ))
            })
            .collect();
        crate::signature_memo::verify_many(&tips);
        let mut vouched = vec![false; n];
        let mut authentic = vec![false; n];
        while let Some(i) = ready.pop() {
            let Ok(op) = &decoded[i] else { continue };
            authentic[i] = vouched[i] || op.signature_ok();
            for &p in &parents[i] {
                vouched[p] |= authentic[i];
                children[p] -= 1;
                if children[p] == 0 {
                    ready.push(p);
                }
            }
        }
        // Every decoded op is decided: parent links follow hashes of distinct
        // payloads, so they form no cycle.
        decoded
            .into_iter()
            .zip(authentic)
            .map(|(d, ok)| {
                d.and_then(|op| {
                    if ok {
                        Ok(op)
                    } else {
                        Err(OpError::BadSignature)
                    }
                })
            })
            .collect()
    }

    fn signature_ok(&self) -> bool {
        crate::signature_memo::verify(
            self.payload.author().as_bytes(),
            &self.signature,
            &sig_message::<P>(&self.hash),
        )
    }

    /// Decodes a payload from this node's own store, which only holds ops that passed
    /// [`Signed::decode`] or [`Signed::sign`] when they were stored. Skips the
    /// signature check (the dominant cost of loading a large log) but keeps every
    /// other check. Never use it for bytes from a peer or a file.
    pub fn decode_stored(wire: &[u8]) -> Result<Self, OpError> {
        Self::decode_inner(wire, false)
    }

    fn decode_inner(wire: &[u8], verify: bool) -> Result<Self, OpError> {
        if wire.len() > MAX_OP_BYTES {
            return Err(OpError::TooLarge(wire.len()));
        }
        let (&format, rest) = wire.split_first().ok_or(OpError::Malformed("empty"))?;
        if format != OP_FORMAT {
            return Err(OpError::UnknownFormat(format));
        }
        if rest.len() < 64 {
            return Err(OpError::Malformed("truncated signature"));
        }
        let (sig, bytes) = rest.split_at(64);
        let payload: P =
            postcard::from_bytes(bytes).map_err(|_| OpError::Malformed("op encoding"))?;
        let canonical =
            postcard::to_allocvec(&payload).map_err(|_| OpError::Malformed("op encoding"))?;
        if canonical != bytes {
            return Err(OpError::Malformed("non-canonical encoding"));
        }
        payload.check_structure()?;
        let hash = hash_of::<P>(bytes);
        let signature: [u8; 64] = sig
            .try_into()
            .map_err(|_| OpError::Malformed("signature"))?;
        let op = Self {
            payload,
            bytes: bytes.to_vec(),
            signature,
            hash,
        };
        if verify && !op.signature_ok() {
            return Err(OpError::BadSignature);
        }
        Ok(op)
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 64 + self.bytes.len());
        out.push(OP_FORMAT);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.bytes);
        out
    }

    /// The payload.
    pub fn payload(&self) -> &P {
        &self.payload
    }

    /// The hash (the op's id).
    pub fn hash(&self) -> OpHash {
        self.hash
    }
}

impl Signed<Op> {
    /// The region op.
    pub fn op(&self) -> &Op {
        &self.payload
    }
}

fn hash_of<P: Payload>(bytes: &[u8]) -> OpHash {
    let mut h = Sha256::new();
    h.update(P::HASH_CONTEXT);
    h.update(bytes);
    OpHash(h.finalize().into())
}

fn sig_message<P: Payload>(hash: &OpHash) -> Vec<u8> {
    let mut m = Vec::with_capacity(P::SIG_CONTEXT.len() + 32);
    m.extend_from_slice(P::SIG_CONTEXT);
    m.extend_from_slice(&hash.0);
    m
}

/// Rules every op must meet whatever the state: the shape of genesis and non-genesis
/// ops, sorted unique parents, list and string limits, parseable age recipients.
fn check_structure(op: &Op) -> Result<(), OpError> {
    let genesis = matches!(op.body, OpBody::CreateRegion { .. });
    if genesis != (op.region.is_none() && op.parents.is_empty()) {
        return Err(OpError::Structure(
            "only create-region has no region and no parents, and it has neither",
        ));
    }
    if op.parents.len() > MAX_PARENTS {
        return Err(OpError::Structure("too many parents"));
    }
    if !op.parents.windows(2).all(|w| w[0] < w[1]) {
        return Err(OpError::Structure("parents must be sorted and unique"));
    }
    let age_ok = |r: &str| r.len() < 200 && r.parse::<age::x25519::Recipient>().is_ok();
    match &op.body {
        OpBody::CreateRegion {
            name,
            age_recipient,
            ..
        } => {
            if name.trim().is_empty()
                || name.chars().count() > MAX_REGION_NAME
                || name.chars().any(char::is_control)
            {
                return Err(OpError::Structure(
                    "region name is empty, too long or has control characters",
                ));
            }
            if !age_ok(age_recipient) {
                return Err(OpError::Structure("age recipient does not parse"));
            }
        }
        OpBody::AddDevice { age_recipient, .. } => {
            if !age_ok(age_recipient) {
                return Err(OpError::Structure("age recipient does not parse"));
            }
        }
        OpBody::RemoveDevice { device, cutoffs } => {
            check_cutoffs(cutoffs)?;
            if cutoffs.iter().any(|c| c.device != *device) {
                return Err(OpError::Structure("a cutoff names another device"));
            }
        }
        OpBody::RemoveParty { cutoffs, .. } => check_cutoffs(cutoffs)?,
        OpBody::CreateDoc {
            readers, writers, ..
        }
        | OpBody::CreateDocument {
            readers, writers, ..
        } => {
            check_party_list(readers)?;
            check_party_list(writers)?;
        }
        OpBody::SetAcl {
            readers,
            writers,
            cutoffs,
            ..
        } => {
            check_party_list(readers)?;
            check_party_list(writers)?;
            check_cutoffs(cutoffs)?;
        }
        OpBody::SetAudience {
            everyone_reads,
            everyone_writes,
            cutoffs,
            ..
        } => {
            check_cutoffs(cutoffs)?;
            if *everyone_writes && !everyone_reads {
                return Err(OpError::Structure(
                    "a plan everyone writes is one everyone reads",
                ));
            }
        }
        OpBody::SetAddrs { addrs } => {
            if addrs.len() > MAX_ADDRS {
                return Err(OpError::Structure("too many addresses"));
            }
            if addrs.iter().any(|a| {
                a.is_empty()
                    || a.len() > MAX_ADDR_LEN
                    || !a.starts_with('/')
                    || a.chars().any(|c| c.is_whitespace() || c.is_control())
            }) {
                return Err(OpError::Structure(
                    "an address is empty, too long or not a multiaddr",
                ));
            }
        }
        OpBody::Approve { heads, comment, .. } => {
            if heads.is_empty() || heads.len() > MAX_PARENTS {
                return Err(OpError::Structure(
                    "an approval names between 1 and 64 heads",
                ));
            }
            if !heads.windows(2).all(|w| w[0] < w[1]) {
                return Err(OpError::Structure(
                    "approval heads must be sorted and unique",
                ));
            }
            if let Some(c) = comment
                && (c.chars().count() > MAX_APPROVAL_COMMENT
                    || c.chars().any(|ch| ch.is_control() && ch != '\n'))
            {
                return Err(OpError::Structure(
                    "an approval comment is too long or has control characters",
                ));
            }
        }
        OpBody::SetPartyName { display_name, .. } => {
            if display_name.trim() != display_name
                || display_name.is_empty()
                || display_name.chars().count() > MAX_DISPLAY_NAME
                || display_name.chars().any(crate::text::is_misleading)
            {
                return Err(OpError::Structure(
                    "a display name is empty, too long, not trimmed or has control or direction characters",
                ));
            }
        }
        OpBody::AddParty { .. } | OpBody::SetAdmin { .. } | OpBody::SetDossierRelay { .. } => {}
    }
    Ok(())
}

fn check_party_list(list: &[PartyName]) -> Result<(), OpError> {
    if list.len() > MAX_LIST {
        return Err(OpError::Structure("too many parties in a list"));
    }
    if !list.windows(2).all(|w| w[0] < w[1]) {
        return Err(OpError::Structure("party lists must be sorted and unique"));
    }
    Ok(())
}

fn check_cutoffs(list: &[Cutoff]) -> Result<(), OpError> {
    if list.len() > MAX_LIST {
        return Err(OpError::Structure("too many cutoffs"));
    }
    if !list
        .windows(2)
        .all(|w| (w[0].doc, w[0].device) < (w[1].doc, w[1].device))
    {
        return Err(OpError::Structure(
            "cutoffs must be sorted by (doc, device) and unique",
        ));
    }
    if list
        .iter()
        .any(|c| (c.last_seq == 0) != c.last_hash.is_none())
    {
        return Err(OpError::Structure(
            "a cutoff has a hash exactly when last_seq > 0",
        ));
    }
    Ok(())
}

/// Why an op could not be signed or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpError {
    /// Larger than [`MAX_OP_BYTES`].
    #[error("control op of {0} bytes exceeds the limit of {MAX_OP_BYTES} bytes")]
    TooLarge(usize),
    /// A format byte this build does not know.
    #[error(
        "control op has format version {0}, this regiosync knows version {OP_FORMAT}: upgrade regiosync"
    )]
    UnknownFormat(u8),
    /// The bytes do not decode, or not canonically.
    #[error("control op is malformed ({0})")]
    Malformed(&'static str),
    /// The op breaks a structural rule.
    #[error("control op is invalid: {0}")]
    Structure(&'static str),
    /// The signature does not verify with the author's key.
    #[error("control op signature does not verify with its author's key")]
    BadSignature,
    /// Signing with a key that is not the author's.
    #[error("the signing key is not the op author's")]
    WrongKey,
}
