//! Identifiers shared by every layer: node ids, document ids, party names and roles.
//!
//! These are small value types with strict parsers, because every one of them also
//! arrives from outside (the command line, a peer, a file).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The length in bytes of a [`DocId`].
pub const DOC_ID_LEN: usize = 16;

/// The shortest prefix of a document id that the CLI prints and accepts.
pub const DOC_ID_MIN_PREFIX: usize = 8;

/// A node (device) id: the device's Ed25519 public key.
///
/// It is shown as the libp2p `PeerId` of that key (`12D3KooW…`), so the id a user sees
/// in `regiosync status` is the id the network layer uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 32]);

/// Public keys that decoded as valid Ed25519 points in this process. Every node id
/// read from the wire or the store is checked (a point decompression, ≈15 µs), and a
/// region has few devices whose ids recur in every op and envelope: a dossier catch-up
/// decoded the same few keys tens of thousands of times. Only keys that passed the
/// check are kept; a peer can fill the set with valid keys of its own, and when full
/// it is emptied, which costs time, not correctness. Hand-written for the same reason
/// as the signature memo (`signature_memo.rs`): a bounded set behind a mutex.
static VALID_KEYS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>> =
    std::sync::LazyLock::new(Default::default);

/// Most keys kept in [`VALID_KEYS`] (32 bytes each: 128 KiB).
const VALID_KEYS_CAPACITY: usize = 1 << 12;

impl NodeId {
    /// Wraps a public key. Fails if the bytes are not a valid Ed25519 point.
    pub fn from_public_key_bytes(bytes: [u8; 32]) -> Result<Self, IdError> {
        let known = VALID_KEYS
            .lock()
            .map(|k| k.contains(&bytes))
            .unwrap_or(false);
        if !known {
            ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| IdError::BadNodeKey)?;
            if let Ok(mut k) = VALID_KEYS.lock() {
                if k.len() >= VALID_KEYS_CAPACITY {
                    k.clear();
                }
                k.insert(bytes);
            }
        }
        Ok(Self(bytes))
    }

    /// The raw Ed25519 public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The libp2p peer id of this node.
    pub fn to_peer_id(&self) -> libp2p_identity::PeerId {
        // The bytes were checked in the constructor; the libp2p type checks them again.
        match libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0) {
            Ok(pk) => libp2p_identity::PublicKey::from(pk).to_peer_id(),
            Err(_) => unreachable_key(),
        }
    }

    /// The node id of a libp2p peer id, if it is an Ed25519 key (every regiosync node).
    pub fn from_peer_id(peer: &libp2p_identity::PeerId) -> Result<Self, IdError> {
        // An Ed25519 peer id is the identity multihash of the protobuf-encoded key:
        // 0x00 (identity), 36 (length), then 0x08 0x01 0x12 0x20 and the 32 key bytes.
        let bytes = peer.to_bytes();
        let key = bytes
            .strip_prefix(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
            .ok_or(IdError::BadNodeId)?;
        let key: [u8; 32] = key.try_into().map_err(|_| IdError::BadNodeId)?;
        Self::from_public_key_bytes(key)
    }

    /// The Automerge actor id that this device writes with: its public key, so every
    /// change names its author device (docs/PROTOCOL.md, "node.key").
    pub fn actor_id(&self) -> automerge::ActorId {
        automerge::ActorId::from(&self.0[..])
    }

    /// Recovers the node id from an Automerge actor id written by [`NodeId::actor_id`].
    pub fn from_actor_id(actor: &automerge::ActorId) -> Option<Self> {
        let bytes: [u8; 32] = actor.to_bytes().try_into().ok()?;
        Self::from_public_key_bytes(bytes).ok()
    }

    /// A short form for human output: the last 8 characters of the peer id (the start is
    /// the same `12D3KooW` for every Ed25519 key).
    pub fn short(&self) -> String {
        let full = self.to_string();
        full[full.len().saturating_sub(8)..].to_owned()
    }
}

#[cold]
fn unreachable_key() -> ! {
    // NodeId can only be built from bytes that ed25519-dalek accepted as a point, and
    // libp2p-identity accepts the same set.
    panic!("NodeId holds a key that libp2p-identity rejects")
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_peer_id(), f)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let peer: libp2p_identity::PeerId = s.parse().map_err(|_| IdError::BadNodeId)?;
        Self::from_peer_id(&peer)
    }
}

/// Text formats (JSON) carry the peer id string; binary formats the 32 key bytes.
impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let b = <[u8; 32]>::deserialize(d)?;
            Self::from_public_key_bytes(b).map_err(serde::de::Error::custom)
        }
    }
}

/// A document id: 128 random bits, unguessable, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId([u8; DOC_ID_LEN]);

impl DocId {
    /// A fresh random id from the operating system's CSPRNG.
    pub fn random() -> Result<Self, IdError> {
        let mut bytes = [0u8; DOC_ID_LEN];
        getrandom::fill(&mut bytes).map_err(|_| IdError::NoRandomness)?;
        Ok(Self(bytes))
    }

    /// Wraps raw bytes, e.g. read back from the store.
    pub fn from_bytes(bytes: [u8; DOC_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses raw bytes of unknown length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        Ok(Self(bytes.try_into().map_err(|_| IdError::BadDocId)?))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; DOC_ID_LEN] {
        &self.0
    }

    /// The first [`DOC_ID_MIN_PREFIX`] hex digits; see also [`shortest_unique_prefix`].
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(DOC_ID_MIN_PREFIX);
        s
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({self})")
    }
}

impl FromStr for DocId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != DOC_ID_LEN * 2 {
            return Err(IdError::BadDocId);
        }
        let mut bytes = [0u8; DOC_ID_LEN];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| IdError::BadDocId)?;
        Ok(Self(bytes))
    }
}

/// Text formats (JSON) carry the hex string; binary formats the 16 bytes.
impl Serialize for DocId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for DocId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            Ok(Self(<[u8; DOC_ID_LEN]>::deserialize(d)?))
        }
    }
}

/// Fills `buf` from the operating system's CSPRNG (for ids and one-time secrets).
pub fn fill_random(buf: &mut [u8]) -> Result<(), IdError> {
    getrandom::fill(buf).map_err(|_| IdError::NoRandomness)
}

/// Checks that `prefix` could be the start of a document id (hex, at least
/// [`DOC_ID_MIN_PREFIX`] characters, at most a whole id) and returns it lowercased.
pub fn normalize_doc_id_prefix(prefix: &str) -> Result<String, IdError> {
    let p = prefix.trim().to_ascii_lowercase();
    if p.len() < DOC_ID_MIN_PREFIX
        || p.len() > DOC_ID_LEN * 2
        || !p.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(IdError::BadDocIdPrefix(prefix.chars().take(80).collect()));
    }
    Ok(p)
}

/// The shortest prefix of `id` (at least [`DOC_ID_MIN_PREFIX`] characters) that no id
/// in `others` shares, like git's abbreviated commit ids.
pub fn shortest_unique_prefix(id: &DocId, others: &[DocId]) -> String {
    let full = id.to_string();
    let mut len = DOC_ID_MIN_PREFIX;
    for other in others.iter().filter(|o| *o != id) {
        let common = full
            .bytes()
            .zip(other.to_string().bytes())
            .take_while(|(a, b)| a == b)
            .count();
        len = len.max(common + 1);
    }
    full[..len.min(full.len())].to_owned()
}

/// The name of a party (organisation) in the region, e.g. `roc-midden` or
/// `gemeente-zeist`: 2 to 64 characters of lowercase letters, digits and `-`,
/// starting with a letter. Names are ids: they appear in ACLs and grants.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PartyName(String);

impl PartyName {
    /// Validates a party name.
    pub fn new(name: &str) -> Result<Self, IdError> {
        let ok = (2..=64).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.ends_with('-');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(IdError::BadPartyName(name.chars().take(80).collect()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for PartyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartyName({})", self.0)
    }
}

impl FromStr for PartyName {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for PartyName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The role of a party in the regional network (see DOMAIN.md, "Parties").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Role {
    /// A regional vocational college (mbo-instelling).
    Roc,
    /// The municipality of the ROC's main location, often the coordinator.
    Kerngemeente,
    /// Any other municipality (buurgemeente, woongemeente).
    Gemeente,
    /// A samenwerkingsverband passend onderwijs.
    Swv,
    /// An RMC region / leerplicht office.
    Rmc,
    /// A youth or adult care provider.
    Zorgaanbieder,
}

impl Role {
    /// Every role, in the order the CLI lists them.
    pub const ALL: [Role; 6] = [
        Role::Roc,
        Role::Kerngemeente,
        Role::Gemeente,
        Role::Swv,
        Role::Rmc,
        Role::Zorgaanbieder,
    ];

    /// The name used on the command line and in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Roc => "roc",
            Role::Kerngemeente => "kerngemeente",
            Role::Gemeente => "gemeente",
            Role::Swv => "swv",
            Role::Rmc => "rmc",
            Role::Zorgaanbieder => "zorgaanbieder",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdError::UnknownRole(s.chars().take(80).collect()))
    }
}

/// Why an id could not be parsed or made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    /// The bytes are not an Ed25519 public key.
    #[error("not a valid Ed25519 public key")]
    BadNodeKey,
    /// The text is not an Ed25519 libp2p peer id.
    #[error("not a valid node id (expected a peer id such as 12D3KooW…)")]
    BadNodeId,
    /// The text is not a whole document id.
    #[error("not a valid document id (expected 32 hex digits)")]
    BadDocId,
    /// The text cannot be the start of a document id.
    #[error(
        "'{0}' is not a document id: give at least {DOC_ID_MIN_PREFIX} hex digits of it (see `regiosync doc list`)"
    )]
    BadDocIdPrefix(String),
    /// The party name breaks the naming rule.
    #[error(
        "'{0}' is not a valid party name: use 2-64 lowercase letters, digits and '-', starting with a letter (e.g. gemeente-zeist)"
    )]
    BadPartyName(String),
    /// The role is not one of [`Role::ALL`].
    #[error("unknown role '{0}': use one of roc, kerngemeente, gemeente, swv, rmc, zorgaanbieder")]
    UnknownRole(String),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator is unavailable")]
    NoRandomness,
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_ids_decode_as_their_keys_check_says_the_second_time_too() {
        // Valid and invalid points among these; the second pass meets the keys the
        // first pass remembered.
        let candidates: Vec<[u8; 32]> = (0..=255u8).map(|k| [k; 32]).collect();
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..2 {
            for c in &candidates {
                let want = ed25519_dalek::VerifyingKey::from_bytes(c).is_ok();
                assert_eq!(NodeId::from_public_key_bytes(*c).is_ok(), want, "{c:?}");
                if want { valid += 1 } else { invalid += 1 }
            }
        }
        assert!(valid > 0 && invalid > 0, "{valid} valid, {invalid} invalid");
    }

    use super::*;

    #[test]
    fn doc_id_roundtrips_and_rejects_garbage() {
        let id = DocId::random().unwrap();
        assert_eq!(id.to_string().parse::<DocId>().unwrap(), id);
        assert_eq!(id.to_string().len(), 32);
        assert!("xyz".parse::<DocId>().is_err());
        assert!("0".repeat(31).parse::<DocId>().is_err());
        assert!("g".repeat(32).parse::<DocId>().is_err());
        assert_ne!(DocId::random().unwrap(), id);
    }

    #[test]
    fn unique_prefix_grows_past_shared_digits() {
        let a = DocId::from_bytes([0xab; 16]);
        let mut b_bytes = [0xab; 16];
        b_bytes[6] = 0x00; // ids agree on 12 hex digits
        let b = DocId::from_bytes(b_bytes);
        assert_eq!(shortest_unique_prefix(&a, &[a]), "abababab");
        assert_eq!(shortest_unique_prefix(&a, &[a, b]), "ababababababa");
        assert!(
            !b.to_string()
                .starts_with(&shortest_unique_prefix(&a, &[a, b]))
        );
    }

    #[test]
    fn prefix_validation() {
        assert_eq!(normalize_doc_id_prefix("ABCDEF01").unwrap(), "abcdef01");
        assert!(normalize_doc_id_prefix("abc").is_err());
        assert!(normalize_doc_id_prefix("abcdefgh").is_err());
        assert!(normalize_doc_id_prefix(&"a".repeat(33)).is_err());
    }

    #[test]
    fn party_names() {
        assert!(PartyName::new("gemeente-zeist").is_ok());
        assert!(PartyName::new("roc2").is_ok());
        for bad in [
            "",
            "a",
            "Gemeente",
            "-x",
            "x-",
            "1roc",
            "roc midden",
            "roc_midden",
        ] {
            assert!(PartyName::new(bad).is_err(), "{bad} accepted");
        }
        assert!(PartyName::new(&"a".repeat(65)).is_err());
        assert!(serde_json::from_str::<PartyName>("\"BAD NAME\"").is_err());
    }

    #[test]
    fn roles_parse_and_print() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(
            "school".parse::<Role>().unwrap_err(),
            IdError::UnknownRole("school".into())
        );
    }

    #[test]
    fn node_id_is_the_libp2p_peer_id_of_the_key() {
        let mut seed = [7u8; 32];
        let sk = libp2p_identity::ed25519::SecretKey::try_from_bytes(&mut seed).unwrap();
        let kp = libp2p_identity::ed25519::Keypair::from(sk);
        let pk = kp.public().to_bytes();
        let id = NodeId::from_public_key_bytes(pk).unwrap();
        let peer = libp2p_identity::PublicKey::from(kp.public()).to_peer_id();
        assert_eq!(id.to_string(), peer.to_string());
        assert!(id.to_string().starts_with("12D3KooW"));
        assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        assert_eq!(NodeId::from_actor_id(&id.actor_id()), Some(id));
        assert!("12D3KooWnotakey".parse::<NodeId>().is_err());
    }
}
