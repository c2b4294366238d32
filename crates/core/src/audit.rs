//! The audit log's hash chain: every unseal of a dossier for a user is an entry (who,
//! when, which dossier, which purpose), and each entry's hash covers the previous
//! one, so removing, reordering or altering an entry breaks the chain from there on.
//!
//! `hash(n) = SHA-256("regiosync/audit/1\0" || hash(n-1) || postcard(seq, entry))`,
//! with `hash(0)` = 32 zero bytes (docs/PROTOCOL.md, "Audit log"). The chain shows
//! tampering by whoever holds the store file; it cannot stop such a person from
//! rewriting the whole chain from some point on. That needs the chain's head kept
//! elsewhere (e.g. printed in a report, or sent to a peer), see docs/SECURITY.md.
//!
//! ```
//! use regiosync_core::audit::{AuditEntry, GENESIS, chain_hash, verify_chain};
//! use regiosync_core::id::DocId;
//!
//! let entry = AuditEntry {
//!     at_ms: 1_790_000_000_000,
//!     device: [1; 32],
//!     user: "j.devries".into(),
//!     dossier: DocId::random()?,
//!     action: "read".into(),
//!     purpose: "voorbereiding MDO".into(),
//! };
//! let h1 = chain_hash(&GENESIS, 1, &entry);
//! assert_eq!(verify_chain([(1, entry, h1)]), Ok(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id::DocId;

/// The hash before the first entry.
pub const GENESIS: [u8; 32] = [0; 32];
/// Longest user name, action or purpose text in an entry.
pub const MAX_AUDIT_TEXT: usize = 512;

const AUDIT_CONTEXT: &[u8] = b"regiosync/audit/1\0";

/// One audit entry. It names the dossier by its pseudonymous id only; its `Debug`
/// form leaves out the user name and the purpose.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// The device that unsealed (its public key).
    pub device: [u8; 32],
    /// Who asked (the user name given to the CLI or web app).
    pub user: String,
    /// Which dossier.
    pub dossier: DocId,
    /// What was done (`read`, `edit`, `note`, `grant`, …).
    pub action: String,
    /// Why (the purpose the user stated).
    pub purpose: String,
}

impl std::fmt::Debug for AuditEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditEntry")
            .field("at_ms", &self.at_ms)
            .field("dossier", &self.dossier)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

impl AuditEntry {
    /// Checks the text fields against [`MAX_AUDIT_TEXT`] (no control characters in
    /// user and action).
    pub fn check(&self) -> Result<(), &'static str> {
        if [&self.user, &self.action, &self.purpose]
            .iter()
            .any(|t| t.len() > MAX_AUDIT_TEXT)
        {
            return Err("an audit text is longer than 512 bytes");
        }
        if self.user.trim().is_empty() || self.action.trim().is_empty() {
            return Err("an audit entry needs a user and an action");
        }
        if self
            .user
            .chars()
            .chain(self.action.chars())
            .any(char::is_control)
        {
            return Err("user and action must be one line");
        }
        Ok(())
    }
}

/// The hash of entry `seq` that follows `prev`.
pub fn chain_hash(prev: &[u8; 32], seq: i64, entry: &AuditEntry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(AUDIT_CONTEXT);
    h.update(prev);
    // Serialising these plain types into a Vec cannot fail.
    h.update(postcard::to_allocvec(&(seq, entry)).unwrap_or_default());
    h.finalize().into()
}

/// Where and why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit log is broken at entry {seq}: {reason}")]
pub struct ChainBroken {
    /// The first entry that does not verify.
    pub seq: i64,
    /// What is wrong.
    pub reason: &'static str,
}

/// Verifies a whole chain given in order as (seq, entry, stored hash): sequence
/// numbers 1, 2, 3, … without gaps, each hash recomputed from its predecessor.
/// Returns the number of entries.
pub fn verify_chain(
    entries: impl IntoIterator<Item = (i64, AuditEntry, [u8; 32])>,
) -> Result<usize, ChainBroken> {
    let mut prev = GENESIS;
    let mut n = 0usize;
    for (seq, entry, stored) in entries {
        n += 1;
        if seq != n as i64 {
            return Err(ChainBroken {
                seq,
                reason: "an entry is missing or out of order",
            });
        }
        if chain_hash(&prev, seq, &entry) != stored {
            return Err(ChainBroken {
                seq,
                reason: "the entry or its hash was altered",
            });
        }
        prev = stored;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: i64) -> AuditEntry {
        AuditEntry {
            at_ms: i,
            device: [2; 32],
            user: format!("user{i}"),
            dossier: DocId::from_bytes([3; 16]),
            action: "read".into(),
            purpose: "zorgoverleg".into(),
        }
    }

    fn chain(n: i64) -> Vec<(i64, AuditEntry, [u8; 32])> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|i| {
                let e = entry(i);
                prev = chain_hash(&prev, i, &e);
                (i, e, prev)
            })
            .collect()
    }

    #[test]
    fn entries_are_checked_and_debug_shows_no_user_or_purpose() {
        assert_eq!(entry(1).check(), Ok(()));
        let mut e = entry(1);
        e.purpose = "x".repeat(MAX_AUDIT_TEXT + 1);
        assert!(e.check().is_err());
        let mut e = entry(1);
        e.user = "a\nb".into();
        assert!(e.check().is_err());
        let mut e = entry(1);
        e.action = " ".into();
        assert!(e.check().is_err());
        let shown = format!("{:?}", entry(7));
        assert!(
            !shown.contains("user7") && !shown.contains("zorgoverleg"),
            "{shown}"
        );
    }

    #[test]
    fn an_intact_chain_verifies_and_every_alteration_is_found() {
        assert_eq!(verify_chain(chain(5)), Ok(5));
        assert_eq!(verify_chain([]), Ok(0));
        // An altered field.
        let mut c = chain(5);
        c[2].1.purpose = "iets anders".into();
        assert_eq!(verify_chain(c).unwrap_err().seq, 3);
        // A removed entry.
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify_chain(c).unwrap_err().seq, 3);
        // A removed last entry cannot be told from a shorter chain: the head must be
        // kept elsewhere (see the module docs); the count shows it.
        let mut c = chain(5);
        c.pop();
        assert_eq!(verify_chain(c), Ok(4));
        // Swapped entries.
        let mut c = chain(5);
        c.swap(1, 2);
        assert!(verify_chain(c).is_err());
        // A flipped bit in a stored hash.
        let mut c = chain(5);
        c[4].2[0] ^= 1;
        assert_eq!(verify_chain(c).unwrap_err().seq, 5);
    }
}
