//! The audit log's hash chain: every unseal of a dossier for a person is an entry (who
//! and how, when, which dossier, which purpose), and each entry's hash covers the
//! previous one, so removing, reordering or altering an entry breaks the chain from
//! there on.
//!
//! Two entry formats share one chain (docs/PROTOCOL.md, "Audit log"):
//!
//! - format 1 (before the web app): `who` is a name the CLI was given ([`Who::Declared`]);
//!   `hash(n) = SHA-256("regiosync/audit/1\0" || hash(n-1) || postcard(seq, entry))`;
//! - format 2: `who` says how the person reached the node: a web session's signed-in
//!   account ([`Who::Web`]) or the CLI run by an OS user, with the name given to
//!   `--user` kept as declared ([`Who::Cli`]);
//!   `hash(n) = SHA-256("regiosync/audit/2\0" || hash(n-1) || postcard(seq, entry))`.
//!
//! `hash(0)` = 32 zero bytes. Each entry is hashed by its own format, so entries
//! written before format 2 still verify and the chain runs on through them. New
//! entries are always format 2 ([`AuditEntry::check`] refuses format 1).
//!
//! The chain shows tampering by whoever holds the store file; it cannot stop such a
//! person from rewriting the whole chain from some point on. That needs the chain's
//! head kept elsewhere (e.g. printed in a report, or sent to a peer), see
//! docs/SECURITY.md.
//!
//! ```
//! use regiosync_core::audit::{AuditEntry, GENESIS, Who, chain_hash, verify_chain};
//! use regiosync_core::id::DocId;
//!
//! let entry = AuditEntry {
//!     at_ms: 1_790_000_000_000,
//!     device: [1; 32],
//!     who: Who::Web { account: "j.devries".into() },
//!     dossier: DocId::random()?,
//!     action: "read".into(),
//!     purpose: "voorbereiding MDO".into(),
//! };
//! assert_eq!(entry.who.to_string(), "web: j.devries");
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

const CONTEXT_V1: &[u8] = b"regiosync/audit/1\0";
const CONTEXT_V2: &[u8] = b"regiosync/audit/2\0";

/// Who asked for a dossier, and how they reached the node. Its `Debug` form shows
/// only how (`web`, `cli`), never the name.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Who {
    /// A format-1 entry: a name given to the CLI (`--user`, else `$USER`), not
    /// authenticated. Only read from old entries; never written any more.
    Declared(String),
    /// A web session of this node's staff account `account` (signed in with its
    /// password).
    Web {
        /// The staff account's name.
        account: String,
    },
    /// The command line, run by the OS user `os_user` on the node's machine;
    /// `declared` is the name given with `--user`, recorded as declared (the CLI
    /// does not check it).
    Cli {
        /// The OS user that ran the command (`$USER`, else `$USERNAME`).
        os_user: String,
        /// The name given with `--user`, if any.
        declared: Option<String>,
    },
}

impl Who {
    /// The CLI run by `os_user`, without `--user`.
    pub fn cli(os_user: &str) -> Self {
        Self::Cli {
            os_user: os_user.to_owned(),
            declared: None,
        }
    }

    /// How the person reached the node: `web`, `cli`, or `declared` (format 1).
    pub fn via(&self) -> &'static str {
        match self {
            Self::Declared(_) => "declared",
            Self::Web { .. } => "web",
            Self::Cli { .. } => "cli",
        }
    }

    /// The name: the account, the OS user, or the declared name of format 1.
    pub fn name(&self) -> &str {
        match self {
            Self::Declared(n) => n,
            Self::Web { account } => account,
            Self::Cli { os_user, .. } => os_user,
        }
    }

    /// The name given with `--user` on the CLI, if any.
    pub fn declared(&self) -> Option<&str> {
        match self {
            Self::Cli { declared, .. } => declared.as_deref(),
            _ => None,
        }
    }

    /// The entry format this `who` is written in.
    pub fn format(&self) -> u8 {
        match self {
            Self::Declared(_) => 1,
            _ => 2,
        }
    }

    fn texts(&self) -> impl Iterator<Item = &str> {
        [Some(self.name()), self.declared()].into_iter().flatten()
    }
}

impl std::fmt::Debug for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Who")
            .field("via", &self.via())
            .finish_non_exhaustive()
    }
}

/// `web: j.bakker`, `cli: jan (--user j.bakker)`, `j.bakker (declared, format 1)`.
impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Declared(n) => write!(f, "{n} (declared, format 1)"),
            Self::Web { account } => write!(f, "web: {account}"),
            Self::Cli {
                os_user,
                declared: None,
            } => write!(f, "cli: {os_user}"),
            Self::Cli {
                os_user,
                declared: Some(d),
            } => write!(f, "cli: {os_user} (--user {d})"),
        }
    }
}

/// One audit entry. It names the dossier by its pseudonymous id only; its `Debug`
/// form leaves out who and the purpose.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// The device that unsealed (its public key).
    pub device: [u8; 32],
    /// Who asked, and how.
    pub who: Who,
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
    /// Checks an entry before it is appended: format 2 only, every text at most
    /// [`MAX_AUDIT_TEXT`] bytes, a non-empty name and action, and no control
    /// characters in the names and the action.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.who.format() != 2 {
            return Err("new audit entries name the person and how (format 2)");
        }
        let texts = || {
            self.who
                .texts()
                .chain([self.action.as_str(), self.purpose.as_str()])
        };
        if texts().any(|t| t.len() > MAX_AUDIT_TEXT) {
            return Err("an audit text is longer than 512 bytes");
        }
        if self.who.texts().any(|t| t.trim().is_empty()) || self.action.trim().is_empty() {
            return Err("an audit entry needs a user and an action");
        }
        if self
            .who
            .texts()
            .chain([self.action.as_str()])
            .flat_map(str::chars)
            .any(char::is_control)
        {
            return Err("user and action must be one line");
        }
        Ok(())
    }
}

/// Format 1 as it was hashed: the fields in this order, `user` a plain string.
#[derive(Serialize)]
struct V1<'a> {
    at_ms: i64,
    device: &'a [u8; 32],
    user: &'a str,
    dossier: &'a DocId,
    action: &'a str,
    purpose: &'a str,
}

/// How format 2 names the person (postcard: a varint variant index, then fields).
#[derive(Serialize)]
enum WhoV2<'a> {
    Web {
        account: &'a str,
    },
    Cli {
        os_user: &'a str,
        declared: Option<&'a str>,
    },
}

/// Format 2 as it is hashed.
#[derive(Serialize)]
struct V2<'a> {
    at_ms: i64,
    device: &'a [u8; 32],
    who: WhoV2<'a>,
    dossier: &'a DocId,
    action: &'a str,
    purpose: &'a str,
}

/// The hash of entry `seq` that follows `prev`, by the entry's own format.
pub fn chain_hash(prev: &[u8; 32], seq: i64, entry: &AuditEntry) -> [u8; 32] {
    let v2 = |who: WhoV2<'_>| {
        postcard::to_allocvec(&(
            seq,
            V2 {
                at_ms: entry.at_ms,
                device: &entry.device,
                who,
                dossier: &entry.dossier,
                action: &entry.action,
                purpose: &entry.purpose,
            },
        ))
    };
    let (context, bytes) = match &entry.who {
        Who::Declared(user) => (
            CONTEXT_V1,
            postcard::to_allocvec(&(
                seq,
                V1 {
                    at_ms: entry.at_ms,
                    device: &entry.device,
                    user,
                    dossier: &entry.dossier,
                    action: &entry.action,
                    purpose: &entry.purpose,
                },
            )),
        ),
        Who::Web { account } => (CONTEXT_V2, v2(WhoV2::Web { account })),
        Who::Cli { os_user, declared } => (
            CONTEXT_V2,
            v2(WhoV2::Cli {
                os_user,
                declared: declared.as_deref(),
            }),
        ),
    };
    let mut h = Sha256::new();
    h.update(context);
    h.update(prev);
    // Serialising these plain types into a Vec cannot fail.
    h.update(bytes.unwrap_or_default());
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
            who: if i % 2 == 0 {
                Who::Web {
                    account: format!("user{i}"),
                }
            } else {
                Who::Cli {
                    os_user: format!("user{i}"),
                    declared: Some("j.devries".into()),
                }
            },
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
        e.who = Who::cli("a\nb");
        assert!(e.check().is_err());
        let mut e = entry(1);
        e.who = Who::Cli {
            os_user: "jan".into(),
            declared: Some("x".repeat(MAX_AUDIT_TEXT + 1)),
        };
        assert!(e.check().is_err());
        // Format 1 is read, never written.
        let mut e = entry(1);
        e.who = Who::Declared("j.devries".into());
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

    fn vector_entry(who: Who) -> AuditEntry {
        AuditEntry {
            at_ms: 1_790_000_000_000,
            device: [1; 32],
            who,
            dossier: DocId::from_bytes([3; 16]),
            action: "read".into(),
            purpose: "voorbereiding MDO".into(),
        }
    }

    /// Hashes computed outside Rust from docs/PROTOCOL.md ("Audit log"): format 1
    /// is hashed exactly as before format 2 existed, so old entries still verify.
    #[test]
    fn both_formats_match_their_test_vectors() {
        let cases = [
            (
                Who::Declared("j.devries".into()),
                "faf6f3c25229684e77c6cacde7cf3008d36663077e00adb06a34740991a90f51",
            ),
            (
                Who::Web {
                    account: "j.devries".into(),
                },
                "1d6d059c0902028be23ba4235db87878a0b3144b07d0892a0bab22bf83c63020",
            ),
            (
                Who::Cli {
                    os_user: "jan".into(),
                    declared: Some("j.devries".into()),
                },
                "ea36609333cf9986ddafff8d4b8de9e92addbbb5ff28ee5d61228656eebd4313",
            ),
        ];
        for (who, want) in cases {
            let shown = who.to_string();
            assert_eq!(
                hex::encode(chain_hash(&GENESIS, 1, &vector_entry(who))),
                want,
                "{shown}"
            );
        }
    }

    #[test]
    fn a_chain_runs_on_from_format_1_into_format_2() {
        let mut prev = GENESIS;
        let mut rows = Vec::new();
        for (i, who) in [
            Who::Declared("a".into()),
            Who::Declared("b".into()),
            Who::Web {
                account: "c".into(),
            },
            Who::cli("d"),
        ]
        .into_iter()
        .enumerate()
        {
            let seq = i as i64 + 1;
            let e = vector_entry(who);
            prev = chain_hash(&prev, seq, &e);
            rows.push((seq, e, prev));
        }
        assert_eq!(verify_chain(rows.clone()), Ok(4));
        // Turning a web entry into a CLI entry of the same name is found.
        rows[2].1.who = Who::cli("c");
        assert_eq!(verify_chain(rows.clone()).unwrap_err().seq, 3);
        // So is passing a format-2 entry off as format 1.
        rows[2].1.who = Who::Declared("c".into());
        assert_eq!(verify_chain(rows).unwrap_err().seq, 3);
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
