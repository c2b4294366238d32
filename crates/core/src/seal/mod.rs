//! Sealing per-student data (docs/SECURITY.md describes the threat model): a random
//! content key per dossier and epoch; every change sealed with XChaCha20-Poly1305
//! bound to the dossier, the epoch and the change hash; the content key wrapped with
//! age to one device at a time.
//!
//! Two formats, both versioned (docs/PROTOCOL.md, "Sealed changes" and "Wrapped
//! keys"):
//!
//! - A **sealed change**: `[format][epoch: u32 BE][nonce: 24][ciphertext + tag: 16]`,
//!   45 bytes more than the change. The associated data is
//!   `"regiosync/seal/<format>\0" || dossier id || epoch || change hash`, so a
//!   ciphertext moved to another dossier, epoch or change does not open. Format 1
//!   draws the nonce at random; format 2 ([`seal_change_rebuildable`]) derives it
//!   from the key, the associated data and the change (a synthetic nonce, as
//!   AES-SIV does), so any holder of the key seals a change to the same bytes: a
//!   reader that received the plaintext in a bundle ([`seal_bundle`]) rebuilds the
//!   sealed bytes its author signed. Equal nonces then mean equal changes, which the
//!   change hash in the envelope says anyway.
//! - A **sealed bundle** (of many changes, for one sync message between two readers):
//!   `[format = 1][epoch: u32 BE][nonce: 24][ciphertext + tag: 16]` with the
//!   associated data `"regiosync/bundle/1\0" || dossier id || epoch`.
//! - A **wrapped key**: an age file (binary, X25519) to one device's recipient whose
//!   plaintext is `[format = 1][dossier id: 16][epoch: u32 BE][key: 32]`: the key
//!   names what it is for, so a wrapping replayed under another dossier or epoch is
//!   refused after unwrapping.
//!
//! age costs ~70 µs and ~200 bytes per recipient (docs/PERFORMANCE.md): it wraps keys (once per device and
//! epoch), never changes. XChaCha20's 192-bit nonces (random, or in format 2 an
//! HMAC-SHA256 of the change under a key derived from the content key) are safe for
//! any number of changes under one key.
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

/// Format byte of a sealed change with a random nonce (read by every version).
pub const SEAL_FORMAT: u8 = 1;
/// Format byte of a sealed change with a synthetic nonce ([`seal_change_rebuildable`]):
/// written only with a chained envelope (envelope format 2), which older versions
/// are never sent.
pub const REBUILDABLE_SEAL_FORMAT: u8 = 2;
/// Format byte of a sealed bundle ([`seal_bundle`]).
pub const BUNDLE_SEAL_FORMAT: u8 = 1;
/// Format byte of a wrapped key's plaintext.
pub const WRAP_FORMAT: u8 = 1;
/// Bytes a sealed change adds to the change: format, epoch, nonce, tag.
pub const SEAL_OVERHEAD: usize = 1 + 4 + 24 + 16;
/// Largest wrapped key accepted (an age file to one X25519 recipient is ~250 bytes).
pub const MAX_WRAPPED_KEY: usize = 1024;

const SEAL_CONTEXT: &[u8] = b"regiosync/seal/1\0";
const SEAL_CONTEXT_2: &[u8] = b"regiosync/seal/2\0";
const BUNDLE_CONTEXT: &[u8] = b"regiosync/bundle/1\0";
const NONCE_KEY_CONTEXT: &[u8] = b"regiosync/seal/2 nonce key";
const WRAP_PLAIN_LEN: usize = 1 + 16 + 4 + 32;

/// A dossier's content key for one epoch, with the key its synthetic nonces are
/// derived under (seal format 2). Wiped from memory when dropped; its `Debug` form
/// shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey {
    key: Zeroizing<[u8; 32]>,
    nonce_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(<redacted>)")
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// HMAC-SHA256 keyed with `key` (any length is a valid HMAC key).
fn hmac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as hmac::Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

impl ContentKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, SealError> {
        let mut k = Zeroizing::new([0u8; 32]);
        fill_random(&mut k[..]).map_err(|_| SealError::NoRandomness)?;
        Ok(Self::from_bytes(k))
    }

    fn from_bytes(key: Zeroizing<[u8; 32]>) -> Self {
        use hmac::Mac;
        let mut derive = hmac(&key[..]);
        derive.update(NONCE_KEY_CONTEXT);
        let mut nonce_key = Zeroizing::new([0u8; 32]);
        nonce_key.copy_from_slice(&derive.finalize().into_bytes());
        Self { key, nonce_key }
    }

    /// The raw key bytes (to wrap it, or for a byte scan in tests).
    pub fn expose(&self) -> &[u8; 32] {
        &self.key
    }
}

/// Why sealing, unsealing, wrapping or unwrapping failed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The system gave no randomness.
    #[error("the operating system provided no randomness")]
    NoRandomness,
    /// Not a sealed change of a format this build knows.
    #[error("sealed data has format {0}, which this regiosync does not read: upgrade regiosync")]
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

fn aad(context: &[u8], dossier: &DocId, epoch: u32, change_hash: Option<&[u8; 32]>) -> Vec<u8> {
    let mut a = Vec::with_capacity(context.len() + 16 + 4 + 32);
    a.extend_from_slice(context);
    a.extend_from_slice(dossier.as_bytes());
    a.extend_from_slice(&epoch.to_be_bytes());
    if let Some(h) = change_hash {
        a.extend_from_slice(h);
    }
    a
}

fn seal_context(format: u8) -> Result<&'static [u8], SealError> {
    match format {
        SEAL_FORMAT => Ok(SEAL_CONTEXT),
        REBUILDABLE_SEAL_FORMAT => Ok(SEAL_CONTEXT_2),
        other => Err(SealError::UnknownFormat(other)),
    }
}

/// `[format][epoch][nonce][XChaCha20-Poly1305(key, nonce, plaintext, aad)]`.
fn seal_with(
    key: &ContentKey,
    format: u8,
    epoch: u32,
    nonce: &[u8; 24],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Tampered)?;
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plaintext.len());
    out.push(format);
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens `[format][epoch][nonce][ciphertext]` with `key` and `aad`.
fn open_with(key: &ContentKey, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(SealError::Malformed);
    }
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    cipher
        .decrypt(
            XNonce::from_slice(&sealed[5..29]),
            Payload {
                msg: &sealed[29..],
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Tampered)
}

/// The synthetic nonce of format 2: HMAC-SHA256 over the associated data and the
/// plaintext, keyed with a key derived from the content key (so the nonce says
/// nothing about the change to anyone without the key), cut to 24 bytes. Written
/// by hand on the `hmac` crate: no maintained crate offers XChaCha20-Poly1305 with
/// synthetic nonces (the `aes-siv` family is AES only).
fn synthetic_nonce(key: &ContentKey, aad: &[u8], plaintext: &[u8]) -> [u8; 24] {
    use hmac::Mac;
    let mut mac = hmac(&key.nonce_key[..]);
    mac.update(&(aad.len() as u64).to_be_bytes());
    mac.update(aad);
    mac.update(plaintext);
    let tag = mac.finalize().into_bytes();
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&tag[..24]);
    nonce
}

/// Seals a change in format 2: as [`seal_change`], but with a synthetic nonce, so
/// that sealing the same change of the same dossier under the same key always gives
/// the same bytes (what lets a reader rebuild them from a bundle).
pub fn seal_change_rebuildable(
    key: &ContentKey,
    dossier: &DocId,
    epoch: u32,
    change_hash: &[u8; 32],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let aad = aad(SEAL_CONTEXT_2, dossier, epoch, Some(change_hash));
    let nonce = synthetic_nonce(key, &aad, plaintext);
    seal_with(key, REBUILDABLE_SEAL_FORMAT, epoch, &nonce, &aad, plaintext)
}

/// Whether `sealed` (a change of `dossier` with `change_hash`, sealed in format 2)
/// is what [`seal_change_rebuildable`] makes of `plaintext` under `key`: its nonce
/// is the synthetic one. Given that the sealed bytes opened with that key and
/// nonce, sealing `plaintext` again gives exactly them (one HMAC instead of a
/// second encryption).
pub fn is_rebuildable(
    key: &ContentKey,
    dossier: &DocId,
    change_hash: &[u8; 32],
    sealed: &[u8],
    plaintext: &[u8],
) -> bool {
    let Ok(epoch) = sealed_epoch(sealed) else {
        return false;
    };
    sealed[0] == REBUILDABLE_SEAL_FORMAT
        && sealed[5..29]
            == synthetic_nonce(
                key,
                &aad(SEAL_CONTEXT_2, dossier, epoch, Some(change_hash)),
                plaintext,
            )
}

/// The format byte of sealed data, if it is one a sealed change may have.
pub fn sealed_format(sealed: &[u8]) -> Option<u8> {
    sealed.first().copied().filter(|f| seal_context(*f).is_ok())
}

/// Seals a bundle's plaintext (the changes of one dossier that a reader sends
/// another in one sync message) under `key` of `epoch`, with a random nonce.
pub fn seal_bundle(
    key: &ContentKey,
    dossier: &DocId,
    epoch: u32,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; 24];
    fill_random(&mut nonce).map_err(|_| SealError::NoRandomness)?;
    let aad = aad(BUNDLE_CONTEXT, dossier, epoch, None);
    seal_with(key, BUNDLE_SEAL_FORMAT, epoch, &nonce, &aad, plaintext)
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
    let aad = aad(SEAL_CONTEXT, dossier, epoch, Some(change_hash));
    seal_with(key, SEAL_FORMAT, epoch, &nonce, &aad, plaintext)
}

/// The epoch a sealed change names (readable without any key: a relay and the
/// access-log rules use it).
pub fn sealed_epoch(sealed: &[u8]) -> Result<u32, SealError> {
    let (&format, rest) = sealed.split_first().ok_or(SealError::Malformed)?;
    seal_context(format)?;
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

    /// Opens a sealed change of this ring's dossier (format 1 or 2).
    pub fn unseal(
        &self,
        change_hash: &[u8; 32],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let epoch = sealed_epoch(sealed)?;
        let context = seal_context(sealed[0])?;
        self.open(sealed, epoch, context, Some(change_hash))
    }

    /// Opens a sealed bundle of this ring's dossier ([`seal_bundle`]).
    pub fn open_bundle(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (&format, rest) = sealed.split_first().ok_or(SealError::Malformed)?;
        if format != BUNDLE_SEAL_FORMAT {
            return Err(SealError::UnknownFormat(format));
        }
        let epoch: [u8; 4] = rest
            .get(..4)
            .and_then(|e| e.try_into().ok())
            .ok_or(SealError::Malformed)?;
        self.open(sealed, u32::from_be_bytes(epoch), BUNDLE_CONTEXT, None)
    }

    /// Opens `sealed` with the key of `epoch` under the associated data of
    /// `context`.
    fn open(
        &self,
        sealed: &[u8],
        epoch: u32,
        context: &[u8],
        change_hash: Option<&[u8; 32]>,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let key = self
            .keys
            .get(&epoch)
            .ok_or(SealError::NoKeyForEpoch(epoch))?;
        open_with(
            key,
            sealed,
            &aad(context, &self.dossier, epoch, change_hash),
        )
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
    Ok(ContentKey::from_bytes(key))
}

#[cfg(test)]
mod tests;
