//! Sealing per-student data (docs/SECURITY.md describes the threat model): a random
//! content key per dossier and epoch; every change sealed with XChaCha20-Poly1305
//! bound to the dossier, the epoch and the change hash; the content key wrapped with
//! age to one device at a time.
//!
//! Two formats, both versioned (docs/PROTOCOL.md, "Sealed changes" and "Wrapped
//! keys"):
//!
//! - A **sealed change**: `[format = 1][epoch: u32 BE][nonce: 24][ciphertext + tag: 16]`,
//!   45 bytes more than the change. The associated data is
//!   `"regiosync/seal/1\0" || dossier id || epoch || change hash`, so a ciphertext
//!   moved to another dossier, epoch or change does not open.
//! - A **wrapped key**: an age file (binary, X25519) to one device's recipient whose
//!   plaintext is `[format = 1][dossier id: 16][epoch: u32 BE][key: 32]`: the key
//!   names what it is for, so a wrapping replayed under another dossier or epoch is
//!   refused after unwrapping.
//!
//! age costs ~70 µs and ~200 bytes per recipient (docs/PERFORMANCE.md): it wraps keys (once per device and
//! epoch), never changes. XChaCha20's 192-bit nonces are drawn at random, which is
//! safe for any number of changes under one key.
//!
//! ```
//! use regiosync_core::identity::NodeSecret;
//! use regiosync_core::id::DocId;
//! use regiosync_core::seal::{ContentKey, KeyRing, seal_change, wrap_key, unwrap_key};
//!
//! let device = NodeSecret::generate()?;
//! let dossier = DocId::random()?;
//! let key = ContentKey::generate()?;
//! let change_hash = [7u8; 32];
//! let sealed = seal_change(&key, &dossier, 0, &change_hash, b"contact: huisbezoek")?;
//!
//! // The key travels wrapped to each authorised device.
//! let wrapped = wrap_key(&key, &dossier, 0, &device.age_recipient())?;
//! let mut ring = KeyRing::new(dossier);
//! ring.insert(0, unwrap_key(&wrapped, &dossier, 0, device.age_identity())?);
//! assert_eq!(&ring.unseal(&change_hash, &sealed)?[..], b"contact: huisbezoek");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, Zeroizing};

use crate::id::{DocId, fill_random};

/// Format byte of a sealed change this build writes and reads.
pub const SEAL_FORMAT: u8 = 1;
/// Format byte of a wrapped key's plaintext.
pub const WRAP_FORMAT: u8 = 1;
/// Bytes a sealed change adds to the change: format, epoch, nonce, tag.
pub const SEAL_OVERHEAD: usize = 1 + 4 + 24 + 16;
/// Largest wrapped key accepted (an age file to one X25519 recipient is ~250 bytes).
pub const MAX_WRAPPED_KEY: usize = 1024;

const SEAL_CONTEXT: &[u8] = b"regiosync/seal/1\0";
const WRAP_PLAIN_LEN: usize = 1 + 16 + 4 + 32;

/// A dossier's content key for one epoch. Wiped from memory when dropped; its
/// `Debug` form shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(<redacted>)")
    }
}

impl ContentKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, SealError> {
        let mut k = Zeroizing::new([0u8; 32]);
        fill_random(&mut k[..]).map_err(|_| SealError::NoRandomness)?;
        Ok(Self(k))
    }

    /// The raw key bytes (to wrap it, or for a byte scan in tests).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Why sealing, unsealing, wrapping or unwrapping failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The system gave no randomness.
    #[error("the operating system provided no randomness")]
    NoRandomness,
    /// Not a sealed change of a format this build knows.
    #[error("sealed change has format {0}, this regiosync reads {SEAL_FORMAT}: upgrade regiosync")]
    UnknownFormat(u8),
    /// Too short to be a sealed change or wrapped key.
    #[error("sealed data is truncated or malformed")]
    Malformed,
    /// Sealed under an epoch whose key this node does not hold (not granted to it,
    /// or granted after it lost access).
    #[error("sealed under epoch {0}, whose key this device does not hold")]
    NoKeyForEpoch(u32),
    /// The ciphertext, or its binding to dossier, epoch and change, was altered.
    #[error("sealed data fails authentication: altered, or moved from another dossier or change")]
    Tampered,
    /// A wrapped key addressed to another device.
    #[error("the wrapped key is not addressed to this device")]
    NotForThisDevice,
    /// A wrapped key that opens but is for another dossier or epoch (replayed).
    #[error("the wrapped key is for another dossier or epoch")]
    WrongBinding,
    /// age failed for another reason.
    #[error("key wrapping failed: {0}")]
    Wrap(String),
}

fn aad(dossier: &DocId, epoch: u32, change_hash: &[u8; 32]) -> Vec<u8> {
    let mut a = Vec::with_capacity(SEAL_CONTEXT.len() + 16 + 4 + 32);
    a.extend_from_slice(SEAL_CONTEXT);
    a.extend_from_slice(dossier.as_bytes());
    a.extend_from_slice(&epoch.to_be_bytes());
    a.extend_from_slice(change_hash);
    a
}

/// Seals a change (its bytes) for `dossier` under `key` of `epoch`.
pub fn seal_change(
    key: &ContentKey,
    dossier: &DocId,
    epoch: u32,
    change_hash: &[u8; 32],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; 24];
    fill_random(&mut nonce).map_err(|_| SealError::NoRandomness)?;
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    let aad = aad(dossier, epoch, change_hash);
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Tampered)?;
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plaintext.len());
    out.push(SEAL_FORMAT);
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// The epoch a sealed change names (readable without any key: a relay and the
/// access-log rules use it).
pub fn sealed_epoch(sealed: &[u8]) -> Result<u32, SealError> {
    let (&format, rest) = sealed.split_first().ok_or(SealError::Malformed)?;
    if format != SEAL_FORMAT {
        return Err(SealError::UnknownFormat(format));
    }
    if sealed.len() < SEAL_OVERHEAD {
        return Err(SealError::Malformed);
    }
    let epoch: [u8; 4] = rest[..4].try_into().map_err(|_| SealError::Malformed)?;
    Ok(u32::from_be_bytes(epoch))
}

/// The content keys of one dossier that this device holds, by epoch.
#[derive(Clone, Debug)]
pub struct KeyRing {
    dossier: DocId,
    keys: BTreeMap<u32, ContentKey>,
}

impl KeyRing {
    /// An empty ring for a dossier.
    pub fn new(dossier: DocId) -> Self {
        Self {
            dossier,
            keys: BTreeMap::new(),
        }
    }

    /// Adds the key of an epoch.
    pub fn insert(&mut self, epoch: u32, key: ContentKey) {
        self.keys.insert(epoch, key);
    }

    /// The key of an epoch, if held.
    pub fn get(&self, epoch: u32) -> Option<&ContentKey> {
        self.keys.get(&epoch)
    }

    /// The newest epoch held, with its key.
    pub fn latest(&self) -> Option<(u32, &ContentKey)> {
        self.keys.iter().next_back().map(|(e, k)| (*e, k))
    }

    /// Epochs held.
    pub fn epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// Opens a sealed change of this ring's dossier.
    pub fn unseal(
        &self,
        change_hash: &[u8; 32],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let epoch = sealed_epoch(sealed)?;
        let key = self
            .keys
            .get(&epoch)
            .ok_or(SealError::NoKeyForEpoch(epoch))?;
        let nonce = &sealed[5..29];
        let cipher = XChaCha20Poly1305::new(key.expose().into());
        let aad = aad(&self.dossier, epoch, change_hash);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: &sealed[29..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Tampered)
    }

    /// Forgets every key (erasure); the memory is wiped as the keys drop.
    pub fn destroy(&mut self) {
        self.keys.clear();
    }
}

/// Wraps `key` of `epoch` of `dossier` to one device's age recipient.
pub fn wrap_key(
    key: &ContentKey,
    dossier: &DocId,
    epoch: u32,
    recipient: &age::x25519::Recipient,
) -> Result<Vec<u8>, SealError> {
    let mut plain = Zeroizing::new(Vec::with_capacity(WRAP_PLAIN_LEN));
    plain.push(WRAP_FORMAT);
    plain.extend_from_slice(dossier.as_bytes());
    plain.extend_from_slice(&epoch.to_be_bytes());
    plain.extend_from_slice(key.expose());
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
            .map_err(|e| SealError::Wrap(e.to_string()))?;
    let mut out = Vec::new();
    let mut w = encryptor
        .wrap_output(&mut out)
        .map_err(|e| SealError::Wrap(e.to_string()))?;
    w.write_all(&plain)
        .and_then(|_| w.finish().map(|_| ()))
        .map_err(|e| SealError::Wrap(e.to_string()))?;
    Ok(out)
}

/// Unwraps a key with this device's age identity, checking that it is the key of
/// `epoch` of `dossier`.
pub fn unwrap_key(
    wrapped: &[u8],
    dossier: &DocId,
    epoch: u32,
    identity: &age::x25519::Identity,
) -> Result<ContentKey, SealError> {
    if wrapped.len() > MAX_WRAPPED_KEY {
        return Err(SealError::Malformed);
    }
    let decryptor = age::Decryptor::new(wrapped).map_err(|_| SealError::Malformed)?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => SealError::NotForThisDevice,
            age::DecryptError::DecryptionFailed => SealError::Tampered,
            _ => SealError::Malformed,
        })?;
    let mut plain = Zeroizing::new(Vec::with_capacity(WRAP_PLAIN_LEN));
    reader
        .by_ref()
        .take(WRAP_PLAIN_LEN as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|_| SealError::Tampered)?;
    if plain.len() != WRAP_PLAIN_LEN || plain[0] != WRAP_FORMAT {
        return Err(SealError::Malformed);
    }
    if plain[1..17] != dossier.as_bytes()[..] || plain[17..21] != epoch.to_be_bytes() {
        return Err(SealError::WrongBinding);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&plain[21..53]);
    plain.zeroize();
    Ok(ContentKey(key))
}

#[cfg(test)]
mod tests;
