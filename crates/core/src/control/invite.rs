//! Invitations that work without a network, and the bundle file that carries a
//! region's control log: three versioned formats (docs/PROTOCOL.md, "Invitations").
//!
//! 1. The **invite code** (text, given to the new party out of band): region id,
//!    inviter node id, invite id, a one-time 256-bit secret, expiry, and the party,
//!    role and admin flag it is for.
//! 2. The **join request** (file or, later, a network message), signed by the new
//!    device: which invite, the device's keys and party, and a *proof* that binds the
//!    invite secret to this device's keys, `SHA-256("regiosync/join-proof/1\0" ||
//!    secret || device key || age recipient)`. Whoever intercepts the request cannot
//!    reuse the secret for another key, and the request never contains the secret.
//! 3. The **bundle**: the signed ops of a region log.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::op::{RegionId, SignedOp};
use crate::id::{NodeId, PartyName, Role};

/// Text prefix of an invite code, with its format version.
pub const INVITE_PREFIX: &str = "regiosync-invite-1:";
/// Magic and version of a join request file.
pub const JOIN_MAGIC: &[u8; 9] = b"RGSYJOIN\x01";
/// Magic and version of a bundle file.
pub const BUNDLE_MAGIC: &[u8; 9] = b"RGSYBNDL\x01";
/// Largest join request accepted.
pub const MAX_JOIN_REQUEST: usize = 4096;
/// Largest bundle accepted.
pub const MAX_BUNDLE: usize = 64 * 1024 * 1024;
/// Most ops in one bundle.
pub const MAX_BUNDLE_OPS: usize = 200_000;

const PROOF_CONTEXT: &[u8] = b"regiosync/join-proof/1\0";
const JOIN_SIG_CONTEXT: &[u8] = b"regiosync/join-request/1\0";
const JOIN_PEER_CONTEXT: &[u8] = b"regiosync/join-peer/1\0";

/// What an invite code carries. Its `Debug` form leaves the secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteCode {
    /// The region.
    pub region: RegionId,
    /// The inviting node (it accepts the join request).
    pub inviter: NodeId,
    /// Public id of the invite.
    pub invite_id: [u8; 16],
    /// The one-time secret.
    pub secret: [u8; 32],
    /// Expiry, Unix seconds.
    pub expires: i64,
    /// The party the new device joins.
    pub party: PartyName,
    /// The party's role.
    pub role: Role,
    /// Whether the party becomes a region admin.
    pub admin: bool,
    /// Addresses where the inviter can be reached (filled once networking exists).
    pub addrs: Vec<String>,
}

impl std::fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InviteCode")
            .field("region", &self.region)
            .field("inviter", &self.inviter)
            .field("invite_id", &hex::encode(self.invite_id))
            .field("secret", &"<redacted>")
            .field("expires", &self.expires)
            .field("party", &self.party)
            .field("role", &self.role)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl InviteCode {
    /// The text form.
    pub fn encode(&self) -> String {
        let bytes = postcard::to_allocvec(self).unwrap_or_default();
        format!("{INVITE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parses the text form (whitespace and line breaks from copying are ignored).
    pub fn decode(text: &str) -> Result<Self, InviteError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.len() > 4096 {
            return Err(InviteError::Malformed("invite code is too long"));
        }
        let Some(body) = compact.strip_prefix(INVITE_PREFIX) else {
            if compact.starts_with("regiosync-invite-") {
                return Err(InviteError::UnknownVersion);
            }
            return Err(InviteError::Malformed("not a regiosync invite code"));
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| InviteError::Malformed("invite code is damaged (bad characters)"))?;
        match postcard::take_from_bytes(&bytes) {
            Ok((code, [])) => Ok(code),
            _ => Err(InviteError::Malformed("invite code is damaged")),
        }
    }

    /// The network identity a device uses to reach the inviter before it is a member:
    /// see [`join_peer_seed`].
    pub fn join_peer_seed(&self) -> [u8; 32] {
        join_peer_seed(&self.secret)
    }

    /// The proof that a device holding this invite's secret asks to join with these keys.
    pub fn proof(&self, device: &NodeId, age_recipient: &str) -> [u8; 32] {
        proof(&self.secret, device, age_recipient)
    }
}

/// The proof binding an invite secret to a device's keys.
pub fn proof(secret: &[u8; 32], device: &NodeId, age_recipient: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(PROOF_CONTEXT);
    h.update(secret);
    h.update(device.as_bytes());
    h.update(age_recipient.as_bytes());
    h.finalize().into()
}

/// The Ed25519 seed of the one-time network identity that a joining device uses to
/// reach the inviter, `SHA-256("regiosync/join-peer/1\0" || secret)`.
///
/// The inviter's gate admits only region members. While an invite is open, the
/// inviter also admits the peer id derived from its secret: the Noise handshake then
/// proves that whoever connects holds the secret, strangers stay outside the gate, and
/// that peer may only send a join request. Nothing else about the joiner is known
/// before its request arrives.
pub fn join_peer_seed(secret: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(JOIN_PEER_CONTEXT);
    h.update(secret);
    h.finalize().into()
}

/// The node id of the one-time join identity of an invite (see [`join_peer_seed`]).
pub fn join_peer_id(secret: &[u8; 32]) -> NodeId {
    let key = SigningKey::from_bytes(&join_peer_seed(secret));
    match NodeId::from_public_key_bytes(key.verifying_key().to_bytes()) {
        Ok(id) => id,
        // A verifying key derived from a signing key is always a valid point.
        Err(_) => unreachable!("derived Ed25519 public keys are valid points"),
    }
}

/// The signed fields of a join request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinFields {
    /// The region asked to join.
    pub region: RegionId,
    /// The invite used.
    pub invite_id: [u8; 16],
    /// The new device (and signer).
    pub device: NodeId,
    /// Its age recipient.
    pub age_recipient: String,
    /// The party it is for.
    pub party: PartyName,
    /// See [`proof`].
    pub proof: [u8; 32],
}

/// A join request whose signature has been verified against the device it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    fields: JoinFields,
    signature: [u8; 64],
}

impl JoinRequest {
    /// Signs a request with the new device's key.
    pub fn sign(fields: JoinFields, key: &SigningKey) -> Result<Self, InviteError> {
        if key.verifying_key().to_bytes() != *fields.device.as_bytes() {
            return Err(InviteError::WrongKey);
        }
        let body =
            postcard::to_allocvec(&fields).map_err(|_| InviteError::Malformed("encoding"))?;
        let signature = key.sign(&join_message(&body)).to_bytes();
        Ok(Self { fields, signature })
    }

    /// The file form.
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(&self.fields).unwrap_or_default();
        let mut out = JOIN_MAGIC.to_vec();
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&body);
        out
    }

    /// Decodes untrusted bytes and verifies the signature against the named device.
    pub fn decode(bytes: &[u8]) -> Result<Self, InviteError> {
        if bytes.len() > MAX_JOIN_REQUEST {
            return Err(InviteError::Malformed("join request is too large"));
        }
        let rest = strip_magic(bytes, JOIN_MAGIC, "a join request")?;
        if rest.len() < 64 {
            return Err(InviteError::Malformed("join request is truncated"));
        }
        let (sig, body) = rest.split_at(64);
        let fields: JoinFields = postcard::from_bytes(body)
            .map_err(|_| InviteError::Malformed("join request is damaged"))?;
        if postcard::to_allocvec(&fields).ok().as_deref() != Some(body) {
            return Err(InviteError::Malformed(
                "join request is not canonically encoded",
            ));
        }
        if fields
            .age_recipient
            .parse::<age::x25519::Recipient>()
            .is_err()
        {
            return Err(InviteError::Malformed(
                "join request has an invalid age recipient",
            ));
        }
        let signature: [u8; 64] = sig
            .try_into()
            .map_err(|_| InviteError::Malformed("signature"))?;
        let vk = VerifyingKey::from_bytes(fields.device.as_bytes())
            .map_err(|_| InviteError::BadSignature)?;
        vk.verify_strict(
            &join_message(body),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .map_err(|_| InviteError::BadSignature)?;
        Ok(Self { fields, signature })
    }

    /// The verified fields.
    pub fn fields(&self) -> &JoinFields {
        &self.fields
    }
}

fn join_message(body: &[u8]) -> Vec<u8> {
    let mut m = JOIN_SIG_CONTEXT.to_vec();
    m.extend_from_slice(body);
    m
}

/// Encodes a bundle of ops.
pub fn encode_bundle<'a>(ops: impl IntoIterator<Item = &'a SignedOp>) -> Vec<u8> {
    let list: Vec<Vec<u8>> = ops.into_iter().map(SignedOp::encode).collect();
    let mut out = BUNDLE_MAGIC.to_vec();
    out.extend(postcard::to_allocvec(&list).unwrap_or_default());
    out
}

/// Decodes a bundle from untrusted bytes, verifying every op's signature.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<SignedOp>, InviteError> {
    if bytes.len() > MAX_BUNDLE {
        return Err(InviteError::Malformed("bundle is too large"));
    }
    let rest = strip_magic(bytes, BUNDLE_MAGIC, "a bundle")?;
    let list: Vec<Vec<u8>> = match postcard::take_from_bytes(rest) {
        Ok((list, [])) => list,
        _ => return Err(InviteError::Malformed("bundle is damaged")),
    };
    if list.len() > MAX_BUNDLE_OPS {
        return Err(InviteError::Malformed("bundle has too many ops"));
    }
    list.iter()
        .enumerate()
        .map(|(i, b)| SignedOp::decode(b).map_err(|e| InviteError::BadOp(i, e)))
        .collect()
}

fn strip_magic<'a>(
    bytes: &'a [u8],
    magic: &[u8; 9],
    what: &'static str,
) -> Result<&'a [u8], InviteError> {
    if let Some(rest) = bytes.strip_prefix(&magic[..]) {
        return Ok(rest);
    }
    if bytes.starts_with(&magic[..8]) {
        return Err(InviteError::UnknownVersion);
    }
    Err(InviteError::NotA(what))
}

/// Why an invite code, join request or bundle was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InviteError {
    /// Damaged or not of this format.
    #[error("{0}")]
    Malformed(&'static str),
    /// The file is not of the expected kind.
    #[error("the file is not {0} of regiosync")]
    NotA(&'static str),
    /// A newer format version.
    #[error("the file or code was made by a newer regiosync: upgrade regiosync")]
    UnknownVersion,
    /// The signature does not verify with the key the request names.
    #[error("the join request is not signed by the device key it names")]
    BadSignature,
    /// An op in a bundle failed to decode.
    #[error("op {0} of the bundle is invalid: {1}")]
    BadOp(usize, super::op::OpError),
    /// Signing with a key that is not the device's.
    #[error("the signing key is not the requesting device's")]
    WrongKey,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeSecret;

    fn code(inviter: &NodeSecret) -> InviteCode {
        InviteCode {
            region: RegionId(super::super::OpHash([3; 32])),
            inviter: inviter.node_id(),
            invite_id: [1; 16],
            secret: [2; 32],
            expires: 1_900_000_000,
            party: PartyName::new("gemeente-zeist").unwrap(),
            role: Role::Gemeente,
            admin: false,
            addrs: vec![],
        }
    }

    #[test]
    fn debug_output_leaves_the_secret_out() {
        let c = code(&NodeSecret::generate().unwrap());
        let shown = format!("{c:?}");
        assert!(
            !shown.contains(&format!("{:?}", c.secret)) && !shown.contains(&hex::encode(c.secret))
        );
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn invite_code_roundtrips_and_rejects_garbage() {
        let c = code(&NodeSecret::generate().unwrap());
        let text = c.encode();
        assert!(text.starts_with(INVITE_PREFIX));
        // Copy-pasted with line breaks still works.
        let wrapped: String = text
            .chars()
            .enumerate()
            .flat_map(|(i, ch)| {
                if i % 40 == 39 {
                    vec![ch, '\n']
                } else {
                    vec![ch]
                }
            })
            .collect();
        assert_eq!(InviteCode::decode(&wrapped).unwrap(), c);
        assert_eq!(
            InviteCode::decode("regiosync-invite-9:abc"),
            Err(InviteError::UnknownVersion)
        );
        assert!(InviteCode::decode("hello").is_err());
        assert!(InviteCode::decode(&format!("{INVITE_PREFIX}!!!")).is_err());
        let mut truncated = text.clone();
        truncated.truncate(text.len() - 10);
        assert!(InviteCode::decode(&truncated).is_err());
    }

    #[test]
    fn join_request_signed_by_another_key_is_refused() {
        let dev = NodeSecret::generate().unwrap();
        let other = NodeSecret::generate().unwrap();
        let c = code(&NodeSecret::generate().unwrap());
        let fields = JoinFields {
            region: c.region,
            invite_id: c.invite_id,
            device: dev.node_id(),
            age_recipient: dev.age_recipient().to_string(),
            party: c.party.clone(),
            proof: c.proof(&dev.node_id(), &dev.age_recipient().to_string()),
        };
        assert_eq!(
            JoinRequest::sign(fields.clone(), other.signing_key()),
            Err(InviteError::WrongKey)
        );
        let req = JoinRequest::sign(fields.clone(), dev.signing_key()).unwrap();
        assert_eq!(JoinRequest::decode(&req.encode()).unwrap(), req);
        // The same fields with another key's signature.
        let mut wire = req.encode();
        let body = postcard::to_allocvec(&fields).unwrap();
        let sig = other.signing_key().sign(&join_message(&body)).to_bytes();
        wire[JOIN_MAGIC.len()..JOIN_MAGIC.len() + 64].copy_from_slice(&sig);
        assert_eq!(JoinRequest::decode(&wire), Err(InviteError::BadSignature));
        // A proof is bound to the device's keys.
        assert_ne!(
            c.proof(&other.node_id(), &fields.age_recipient),
            fields.proof
        );
        assert!(matches!(
            JoinRequest::decode(b"RGSYBNDL\x01..."),
            Err(InviteError::NotA(_))
        ));
        assert_eq!(
            JoinRequest::decode(b"RGSYJOIN\x07"),
            Err(InviteError::UnknownVersion)
        );
    }

    #[test]
    fn bundles_reject_tampered_ops() {
        let dev = NodeSecret::generate().unwrap();
        let g = crate::testkit::genesis(&dev, "roc-a", Role::Roc);
        let b = encode_bundle([&g]);
        assert_eq!(decode_bundle(&b).unwrap(), vec![g.clone()]);
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(decode_bundle(&trailing).is_err());
        let mut bad = b.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert!(matches!(decode_bundle(&bad), Err(InviteError::BadOp(0, _))));
        assert!(decode_bundle(b"RGSYBNDL\x01\xff\xff\xff\xff\x0f").is_err());
        assert!(matches!(
            decode_bundle(b"hello world"),
            Err(InviteError::NotA(_))
        ));
    }
}
