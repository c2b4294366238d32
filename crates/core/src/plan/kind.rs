//! Plans as a document kind ([`crate::kind`]): a plan starts with the schema's
//! skeleton ([`super::schema::init_plan`]) and takes only the changes the schema's
//! rules for received changes allow ([`super::received::check_change`]).

use automerge::Change;
use automerge::transaction::Transaction;

use super::{PlanError, PlanKind, received, schema};
use crate::envelope::ChangeRejection;
use crate::id::PartyName;
use crate::kind::{DocKind, KindError, KindName, Kinds};

/// The family of plan kind names (`plan/jeugdplan`, …).
pub const PLAN_FAMILY: &str = "plan";

/// The plan kind of the registry ([`crate::kind::Kinds::builtin`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanDocKind;

impl PlanKind {
    /// The kind name the region log gives a plan of this kind: `plan/<kind>`.
    pub fn kind_name(self) -> KindName {
        // The plan kinds' names are fixed lowercase words with '-' (a test checks
        // that each one is a valid kind name).
        KindName::known(format!("{PLAN_FAMILY}/{}", self.as_str()))
    }

    /// The plan kind a kind name names, if it is one.
    pub fn of_kind_name(name: &KindName) -> Option<Self> {
        if name.family() != PLAN_FAMILY {
            return None;
        }
        let variant = name.variant()?;
        PlanKind::ALL.into_iter().find(|k| k.as_str() == variant)
    }
}

impl Kinds {
    /// The kinds this build ships: plans.
    pub fn builtin() -> Self {
        let mut kinds = Kinds::empty();
        kinds.register(std::sync::Arc::new(PlanDocKind));
        kinds
    }
}

impl Default for Kinds {
    fn default() -> Self {
        Self::builtin()
    }
}

impl DocKind for PlanDocKind {
    fn family(&self) -> &'static str {
        PLAN_FAMILY
    }

    fn knows(&self, name: &KindName) -> bool {
        PlanKind::of_kind_name(name).is_some()
    }

    fn init(
        &self,
        tx: &mut Transaction<'_>,
        name: &KindName,
        title: &str,
        owner: &PartyName,
    ) -> Result<(), KindError> {
        let kind =
            PlanKind::of_kind_name(name).ok_or_else(|| KindError::Unknown(name.to_string()))?;
        schema::init_plan(tx, kind, title, owner).map_err(|e| match e {
            PlanError::Automerge(a) => KindError::Automerge(a),
            other => KindError::Content(other.to_string()),
        })
    }

    fn check_change(&self, change: &Change, owner_device: bool) -> Result<(), ChangeRejection> {
        received::check_change(change, owner_device).map_err(ChangeRejection::OutsideSchema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_kind_round_trips_through_its_kind_name() {
        for k in PlanKind::ALL {
            let name = k.kind_name();
            assert_eq!(KindName::new(name.as_str()).unwrap(), name);
            assert_eq!(name.family(), PLAN_FAMILY);
            assert_eq!(PlanKind::of_kind_name(&name), Some(k));
            assert!(PlanDocKind.knows(&name));
        }
        for other in ["plan", "plan/begroting", "note/jeugdplan"] {
            let name = KindName::new(other).unwrap();
            assert_eq!(PlanKind::of_kind_name(&name), None, "{other}");
            assert!(!PlanDocKind.knows(&name), "{other}");
        }
    }
}
