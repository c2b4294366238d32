//! A process-wide memo of Ed25519 signatures that verified.
//!
//! A node checks the same signature many times: a change when it arrives and again
//! each time its document is rebuilt from the store, a control or dossier op each
//! time a log is folded. Verification (`verify_strict`, ≈40 µs with the key's point
//! decompression) dominated catch-ups of thousands of documents (docs/PERFORMANCE.md).
//! The memo remembers, per process, the SHA-256 of every (key, signature, message)
//! triple that verified, so each is checked with the curve once.
//!
//! Why it is safe: only triples that passed `verify_strict` are remembered, and a hit
//! needs the digest of the exact same key, signature and message (a collision of
//! SHA-256). Authority (who may sign what, under which region state) is never
//! memoised: callers check it every time. A peer can fill the memo with its own valid
//! signatures; when full it is emptied, which costs time, not correctness.
//!
//! Hand-written rather than a cache crate: a bounded set of 32-byte digests behind a
//! mutex is all it needs.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// Most digests kept (32 bytes each: 8 MiB), about 260,000 signatures.
const CAPACITY: usize = 1 << 18;

static VERIFIED: LazyLock<Mutex<HashSet<[u8; 32]>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

fn digest(key: &[u8; 32], signature: &[u8; 64], message: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"regiosync signature memo v1");
    h.update(key);
    h.update(signature);
    h.update((message.len() as u64).to_be_bytes());
    h.update(message);
    h.finalize().into()
}

/// Whether `signature` is `key`'s valid (strict) Ed25519 signature of `message`.
pub(crate) fn verify(key: &[u8; 32], signature: &[u8; 64], message: &[u8]) -> bool {
    let d = digest(key, signature, message);
    if VERIFIED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&d)
    {
        return true;
    }
    let Ok(vk) = VerifyingKey::from_bytes(key) else {
        return false;
    };
    if vk
        .verify_strict(message, &Signature::from_bytes(signature))
        .is_err()
    {
        return false;
    }
    let mut memo = VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
    if memo.len() >= CAPACITY {
        memo.clear();
    }
    memo.insert(d);
    true
}

/// Checks many `(key, signature, message)` triples at once, split over the
/// machine's cores, and remembers those that verify. A catch-up receives hundreds of
/// signed changes per message, and checking them one by one (≈40 µs each) left the
/// other core idle. Returns nothing: callers still check each signature with
/// [`verify`] (then a memo hit), together with the rules around it, so a triple
/// that fails here is simply checked (and refused) again there.
///
pub(crate) fn verify_many(items: &[([u8; 32], [u8; 64], Vec<u8>)]) {
    /// Fewer than this per thread is not worth a thread's start (≈20 µs).
    const MIN_PER_THREAD: usize = 16;
    if items.len() < 2 * MIN_PER_THREAD {
        // One core's worth: the one-by-one checks that follow do it.
        return;
    }
    crate::cores::map(items, MIN_PER_THREAD, |(key, signature, message)| {
        verify(key, signature, message)
    });
}

/// Forgets every remembered signature, so the next check of each goes to the curve
/// again. For benchmarks that run several nodes in one process: each repetition must
/// verify as a fresh process would, and a run with the memo left warm measures a
/// catch-up without signature checks.
#[cfg(any(test, feature = "test-hooks"))]
pub fn forget_all() {
    VERIFIED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    /// Checking many at once remembers exactly the valid ones: a forged signature
    /// among them is not remembered, and is refused when checked on its own.
    #[test]
    fn many_at_once_remembers_only_valid_signatures() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let pk = key.verifying_key().to_bytes();
        let mut items: Vec<([u8; 32], [u8; 64], Vec<u8>)> = (0..200u32)
            .map(|i| {
                let m = format!("verify_many {i}").into_bytes();
                (pk, key.sign(&m).to_bytes(), m)
            })
            .collect();
        // Item 0 carries item 1's signature: forged.
        items[0].1 = items[1].1;
        verify_many(&items);
        let remembered = |(k, s, m): &([u8; 32], [u8; 64], Vec<u8>)| {
            VERIFIED.lock().unwrap().contains(&digest(k, s, m))
        };
        assert!(!remembered(&items[0]));
        if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
            assert!(items[1..].iter().all(remembered));
        }
        assert!(!verify(&items[0].0, &items[0].1, &items[0].2));
        assert!(items[1..].iter().all(|(k, s, m)| verify(k, s, m)));
    }

    #[test]
    fn a_remembered_signature_does_not_vouch_for_anything_else() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let pk = key.verifying_key().to_bytes();
        let msg = b"change 1 of dossier d";
        let sig = key.sign(msg).to_bytes();
        assert!(verify(&pk, &sig, msg));
        // Remembered now; the same triple still verifies.
        assert!(verify(&pk, &sig, msg));
        // Another message, another key, a flipped signature byte: all refused, even
        // though the original triple is in the memo.
        assert!(!verify(&pk, &sig, b"change 2 of dossier d"));
        assert!(!verify(&other.verifying_key().to_bytes(), &sig, msg));
        let mut bad = sig;
        bad[5] ^= 1;
        assert!(!verify(&pk, &bad, msg));
        // A refused triple is not remembered as valid.
        assert!(!verify(&pk, &bad, msg));
        // Length framing: moving bytes between key/signature and message cannot
        // produce the same digest.
        assert_ne!(digest(&pk, &sig, msg), digest(&pk, &sig, b""));
    }
}
