//! Document kinds: the one place per kind of shared document that says what its
//! documents are.
//!
//! A shared document of the region (a plan today) is registered in the region log
//! by a `CreateDoc` or `CreateDocument` op that names its [`KindName`]; its changes
//! travel as signed Automerge changes through the sync session and are stored like
//! any other document's. What differs per kind is what a document holds when it is
//! created and which changes it accepts besides the signature and authority checks
//! every change passes ([`crate::envelope::select_changes_checked`]): a [`DocKind`]
//! says both, and a [`Kinds`] registry maps the family in a document's kind name to
//! it. The node, the sync session and the store ask the registry; adding a kind is
//! implementing [`DocKind`] and registering it, with no change to them. The kinds
//! this build ships are `Kinds::builtin()` (plans, `plan/kind.rs`).
//!
//! A node that meets a document of a kind it does not know (made by a newer
//! version) takes none of its changes ([`ChangeRejection::UnknownKind`], which does
//! not count against the peer) and says to upgrade.
//!
//! Sealed dossiers are not a [`DocKind`]: they are not in the region log and travel
//! sealed to their grantees (`crate::dossier`), an exchange of their own.
//!
//! ```
//! use regiosync_core::kind::{KindName, Kinds};
//! use regiosync_core::plan::PlanKind;
//!
//! let kinds = Kinds::builtin();
//! let name = PlanKind::Jeugdplan.kind_name();
//! assert_eq!(name.as_str(), "plan/jeugdplan");
//! assert_eq!(name.family(), "plan");
//! assert!(kinds.get(&name).is_some());
//! assert!(kinds.get(&KindName::new("agenda").unwrap()).is_none());
//! assert!(KindName::new("Plan/Jeugd plan").is_err());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use automerge::Change;
use automerge::transaction::Transaction;
use serde::{Deserialize, Serialize};

use crate::control::RegionState;
use crate::envelope::{Candidate, ChangeRejection};
use crate::id::{DocId, NodeId, PartyName};

/// Longest family or variant in a kind name, in characters.
pub const MAX_KIND_PART: usize = 32;

/// The kind of a shared document as the region log names it: a family (`plan`,
/// `note`) and optionally a variant (`plan/jeugdplan`). Lowercase ASCII letters,
/// digits and `-`, each part 1 to [`MAX_KIND_PART`] characters, starting with a
/// letter; decoding refuses anything else, so a name is always safe to show and to
/// store.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KindName(String);

impl KindName {
    /// Checks and wraps a kind name.
    pub fn new(name: &str) -> Result<Self, KindError> {
        let mut parts = name.splitn(2, '/');
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= MAX_KIND_PART
                && p.starts_with(|c: char| c.is_ascii_lowercase())
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        let family_ok = parts.next().is_some_and(ok);
        let variant_ok = parts.next().is_none_or(ok);
        if family_ok && variant_ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(KindError::BadName(name.chars().take(80).collect()))
        }
    }

    /// A name this build writes itself (a plan kind's), known to be well formed.
    pub(crate) fn known(name: String) -> Self {
        debug_assert!(KindName::new(&name).is_ok(), "{name}");
        Self(name)
    }

    /// The whole name, e.g. `plan/jeugdplan`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The family: the part before `/` (the whole name if there is none). The
    /// registry finds a kind by it.
    pub fn family(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The variant: the part after `/`, if any.
    pub fn variant(&self) -> Option<&str> {
        self.0.split_once('/').map(|(_, v)| v)
    }
}

impl TryFrom<String> for KindName {
    type Error = KindError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        KindName::new(&s)
    }
}

impl From<KindName> for String {
    fn from(k: KindName) -> Self {
        k.0
    }
}

impl fmt::Display for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KindName({})", self.0)
    }
}

/// What a kind of shared document is: how a new one starts and which changes it
/// takes. Implemented once per kind and registered in [`Kinds`].
pub trait DocKind: Send + Sync {
    /// The family this kind answers for (the part of a [`KindName`] before `/`).
    fn family(&self) -> &'static str;

    /// Whether `name` (of this family) is one this kind knows, e.g. a plan kind
    /// that exists. Creating a document of an unknown variant is refused.
    fn knows(&self, name: &KindName) -> bool {
        name.family() == self.family()
    }

    /// Writes a new document's first content, in the transaction of its creating
    /// change, made by a device of `owner`.
    fn init(
        &self,
        tx: &mut Transaction<'_>,
        name: &KindName,
        title: &str,
        owner: &PartyName,
    ) -> Result<(), KindError>;

    /// The kind's rule for one change, besides the signature, authority and size
    /// checks every change passes: for plans, that only the owner's creating change
    /// sets the plan's identity and that no change deletes its structure.
    /// `owner_device`: whether the change's author is a device of the document's
    /// owner party. Runs on every change received and every change made here.
    fn check_change(&self, change: &Change, owner_device: bool) -> Result<(), ChangeRejection>;
}

/// The document kinds a node knows, by family.
#[derive(Clone)]
pub struct Kinds {
    by_family: BTreeMap<&'static str, Arc<dyn DocKind>>,
}

impl fmt::Debug for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_family.keys()).finish()
    }
}

impl Kinds {
    /// A registry with no kind. The kinds this build ships are `Kinds::builtin()`,
    /// defined beside them (`plan/kind.rs`), so that this module depends on no kind.
    pub fn empty() -> Self {
        Self {
            by_family: BTreeMap::new(),
        }
    }

    /// Adds a kind, replacing one of the same family.
    pub fn register(&mut self, kind: Arc<dyn DocKind>) {
        self.by_family.insert(kind.family(), kind);
    }

    /// The kind that answers for `name`'s family, if known.
    pub fn get(&self, name: &KindName) -> Option<&dyn DocKind> {
        self.by_family.get(name.family()).map(|k| k.as_ref())
    }

    /// The families known, sorted.
    pub fn families(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_family.keys().copied()
    }

    /// The check a change of `doc` must pass besides its envelope: its kind's rule
    /// ([`DocKind::check_change`]) with `owner_device` read from the region state;
    /// [`ChangeRejection::UnknownKind`] for a document of a kind this node does not
    /// know or one not in the region log. For a change whose envelope is not
    /// checked yet (one made here), see [`Kinds::check_by`].
    pub fn change_check<'a>(
        &'a self,
        doc: &'a DocId,
        state: &'a RegionState,
    ) -> impl Fn(&Candidate<'_>) -> Result<(), ChangeRejection> + 'a {
        move |c: &Candidate<'_>| match c.envelope {
            Some(e) => self.check_by(doc, state, c.change, &e.fields().author),
            // No envelope: no author to credit with the owner's rights.
            None => self.check_as(doc, state, c.change, false),
        }
    }

    /// [`Kinds::change_check`] for a change by `author`.
    pub fn check_by(
        &self,
        doc: &DocId,
        state: &RegionState,
        change: &Change,
        author: &NodeId,
    ) -> Result<(), ChangeRejection> {
        let owner_device = state.docs.get(doc).is_some_and(|acl| {
            state
                .devices
                .get(author)
                .is_some_and(|d| d.party == acl.owner)
        });
        self.check_as(doc, state, change, owner_device)
    }

    fn check_as(
        &self,
        doc: &DocId,
        state: &RegionState,
        change: &Change,
        owner_device: bool,
    ) -> Result<(), ChangeRejection> {
        let kind = state
            .docs
            .get(doc)
            .and_then(|acl| self.get(&acl.kind))
            .ok_or(ChangeRejection::UnknownKind)?;
        kind.check_change(change, owner_device)
    }
}

/// Why a kind name or a new document of a kind was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KindError {
    /// Not a well-formed kind name.
    #[error(
        "{0:?} is not a document kind name (lowercase letters, digits and '-', a family and optionally '/variant', at most {MAX_KIND_PART} characters each)"
    )]
    BadName(String),
    /// No kind of this node answers for the name.
    #[error("documents of kind {0} are not known to this version of regiosync: upgrade regiosync")]
    Unknown(String),
    /// The kind refused the new document's content.
    #[error("{0}")]
    Content(String),
    /// Automerge refused the write.
    #[error("could not write the new document: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_checked_when_made_and_when_decoded() {
        for good in ["plan", "plan/jeugdplan", "note", "a-1/b-2"] {
            assert!(KindName::new(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_KIND_PART + 1);
        for bad in [
            "",
            "/",
            "plan/",
            "/x",
            "Plan",
            "plan/a/b",
            "1plan",
            "plan x",
            "plan\n",
            "plän",
            long.as_str(),
        ] {
            assert!(KindName::new(bad).is_err(), "{bad:?}");
            let bytes = postcard::to_allocvec(&bad.to_owned()).unwrap();
            assert!(postcard::from_bytes::<KindName>(&bytes).is_err(), "{bad:?}");
        }
        let k = KindName::new("plan/jeugdplan").unwrap();
        assert_eq!((k.family(), k.variant()), ("plan", Some("jeugdplan")));
        let bytes = postcard::to_allocvec(&k).unwrap();
        assert_eq!(postcard::from_bytes::<KindName>(&bytes).unwrap(), k);
    }

    #[test]
    fn the_registry_finds_kinds_by_family_and_knows_plans() {
        let kinds = Kinds::builtin();
        assert_eq!(kinds.families().collect::<Vec<_>>(), vec!["plan"]);
        let plan = kinds
            .get(&KindName::new("plan/jeugdplan").unwrap())
            .unwrap();
        assert!(plan.knows(&KindName::new("plan/jeugdplan").unwrap()));
        assert!(!plan.knows(&KindName::new("plan/begroting").unwrap()));
        assert!(kinds.get(&KindName::new("note").unwrap()).is_none());
    }
}
