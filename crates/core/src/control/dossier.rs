//! The shape of a dossier's own access log: `Open`, `Grant`, `Revoke`, `Erase`.
//!
//! These ops never enter the region log (the region log must not reveal which
//! students exist or where they live): they are a separate signed DAG per dossier,
//! with their own hash and signature contexts, that travels only with its dossier.
//! They are *validated against* the region state: the author must be an active device,
//! a grantee an active party. The cryptography (content keys, wrapping, epochs) and the
//! sync policy come with the dossier issue; this module fixes the ops, their authority
//! and their fold. Rules in docs/AUTH.md, "Dossier access log".

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::Date;

use super::fold::linear_order;
use super::op::{MAX_PARENTS, OpError, OpHash, Payload, RegionId, Signed};
use super::state::RegionState;
use crate::id::{DocId, NodeId, PartyName};

/// Longest purpose or reason text, in characters.
pub const MAX_PURPOSE: usize = 500;

/// The legal basis of a grant (AVG art. 6/9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Basis {
    /// Consent of the student (or parents of a minor).
    Toestemming,
    /// A statutory task (Jeugdwet, Wmo, leerplicht, WEB).
    WettelijkeTaak,
}

/// An op of a dossier's access log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierOp {
    /// The region whose state validates this log.
    pub region: RegionId,
    /// The dossier (a pseudonymous id, never a BSN).
    pub dossier: DocId,
    /// The heads of the dossier's log the author had seen (empty only for `Open`).
    pub parents: Vec<OpHash>,
    /// The signing device.
    pub author: NodeId,
    /// The author's clock, Unix seconds (advisory; shown as "erased on DATE").
    pub time: i64,
    /// What the op does.
    pub body: DossierBody,
}

/// What a dossier op does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DossierBody {
    /// Starts the dossier's log; the author's party becomes its owner.
    Open {
        /// The owning party (the author's).
        owner: PartyName,
    },
    /// Gives a party access, with the legal basis and purpose recorded.
    Grant {
        /// The party.
        party: PartyName,
        /// The legal basis.
        basis: Basis,
        /// Why (purpose limitation); no personal data.
        purpose: String,
        /// Last day the grant is in force, if it expires.
        until: Option<[u16; 3]>,
    },
    /// Takes a party's access away (student moved, consent withdrawn).
    Revoke {
        /// The party.
        party: PartyName,
        /// Why; no personal data.
        reason: String,
    },
    /// Erases the dossier (crypto-shredding). Carries no data at all.
    Erase,
}

/// A signed dossier op.
pub type SignedDossierOp = Signed<DossierOp>;

impl Payload for DossierOp {
    const HASH_CONTEXT: &'static [u8] = b"regiosync/dossier-op/1\0";
    const SIG_CONTEXT: &'static [u8] = b"regiosync/dossier-op-signature/1\0";

    fn author(&self) -> NodeId {
        self.author
    }

    fn check_structure(&self) -> Result<(), OpError> {
        let open = matches!(self.body, DossierBody::Open { .. });
        if open != self.parents.is_empty() {
            return Err(OpError::Structure(
                "only open has no parents, and it has none",
            ));
        }
        if self.parents.len() > MAX_PARENTS || !self.parents.windows(2).all(|w| w[0] < w[1]) {
            return Err(OpError::Structure(
                "parents must be sorted, unique and bounded",
            ));
        }
        let text_ok = |t: &str| !t.trim().is_empty() && t.chars().count() <= MAX_PURPOSE;
        match &self.body {
            DossierBody::Grant { purpose, until, .. } => {
                if !text_ok(purpose) {
                    return Err(OpError::Structure(
                        "a grant needs a purpose of 1-500 characters",
                    ));
                }
                if let Some(d) = until {
                    until_date(d)
                        .ok_or(OpError::Structure("the grant's end date does not exist"))?;
                }
            }
            DossierBody::Revoke { reason, .. } if !text_ok(reason) => {
                return Err(OpError::Structure(
                    "a revocation needs a reason of 1-500 characters",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

fn until_date(d: &[u16; 3]) -> Option<Date> {
    let month = time::Month::try_from(u8::try_from(d[1]).ok()?).ok()?;
    Date::from_calendar_date(i32::from(d[0]), month, u8::try_from(d[2]).ok()?).ok()
}

/// Converts a date to the `until` form of a grant.
pub fn until_of(d: Date) -> [u16; 3] {
    [
        d.year().clamp(0, 9999) as u16,
        u8::from(d.month()).into(),
        d.day().into(),
    ]
}

/// A grant in force (or expired: see [`DossierAccess::in_force`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantState {
    /// The legal basis.
    pub basis: Basis,
    /// The purpose.
    pub purpose: String,
    /// Last day in force.
    pub until: Option<Date>,
    /// The op that granted it.
    pub granted_by: OpHash,
}

/// Who erased a dossier, and when (by the eraser's clock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// The erasing party.
    pub by: PartyName,
    /// When, Unix seconds.
    pub at: i64,
}

/// Why a dossier op was not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum DossierRejection {
    /// The op belongs to another dossier or region.
    #[error("the op belongs to another dossier or region")]
    WrongDossier,
    /// The author is not an active device of the region.
    #[error("the author device is not an active member of the region")]
    UnknownAuthor,
    /// Only the owner party may grant or revoke.
    #[error("only the dossier's owner party may do this")]
    NotOwner,
    /// Only the owner party or a region admin may erase.
    #[error("only the dossier's owner party or a region admin may erase it")]
    NotOwnerOrAdmin,
    /// A grant to a party that is not an active member of the region.
    #[error("the party is not an active member of the region")]
    UnknownParty,
    /// A revocation of a party that has no grant.
    #[error("the party has no grant to revoke")]
    NoGrant,
    /// The dossier is erased: nothing more happens to it.
    #[error("the dossier is erased")]
    Erased,
    /// A second `Open`.
    #[error("the dossier's log was already opened")]
    SecondOpen,
}

/// The access state of a dossier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DossierAccess {
    /// The dossier.
    pub dossier: DocId,
    /// The owning party (always has access until erasure).
    pub owner: PartyName,
    /// Grants by party.
    pub grants: BTreeMap<PartyName, GrantState>,
    /// Set once erased.
    pub erased: Option<Erased>,
    /// Rejected ops and why.
    #[serde(skip)]
    pub rejected: BTreeMap<OpHash, DossierRejection>,
    /// Ops waiting for unknown parents.
    #[serde(skip)]
    pub pending: BTreeSet<OpHash>,
}

impl DossierAccess {
    /// Parties that may read the dossier on `today`: the owner and every grant not
    /// expired, while they are active members of the region; nobody once erased.
    pub fn in_force(&self, region: &RegionState, today: Date) -> BTreeSet<PartyName> {
        if self.erased.is_some() {
            return BTreeSet::new();
        }
        std::iter::once(&self.owner)
            .chain(
                self.grants
                    .iter()
                    .filter(|(_, g)| g.until.is_none_or(|u| today <= u))
                    .map(|(p, _)| p),
            )
            .filter(|p| region.active_party(p).is_some())
            .cloned()
            .collect()
    }
}

/// Folds a dossier's access log, validated against the region state. `None` if the
/// log has no `Open` op for `dossier` yet.
pub fn fold_dossier<'a>(
    region: &RegionState,
    dossier: DocId,
    ops: impl IntoIterator<Item = &'a SignedDossierOp>,
) -> Option<DossierAccess> {
    let mut all: BTreeMap<OpHash, &SignedDossierOp> = BTreeMap::new();
    let mut rejected = BTreeMap::new();
    for op in ops {
        let p = op.payload();
        if p.dossier == dossier && p.region == region.region {
            all.insert(op.hash(), op);
        } else {
            rejected.insert(op.hash(), DossierRejection::WrongDossier);
        }
    }
    // The root: the smallest-hash `Open`; any other `Open` is rejected.
    let mut opens = all
        .iter()
        .filter(|(_, o)| matches!(o.payload().body, DossierBody::Open { .. }));
    let (&root, root_op) = opens.next()?;
    for (h, _) in opens {
        rejected.insert(*h, DossierRejection::SecondOpen);
    }
    let DossierBody::Open { owner } = &root_op.payload().body else {
        return None;
    };
    let (order, pending) = linear_order(
        root,
        all.iter().map(|(h, o)| {
            (
                *h,
                o.payload().parents.as_slice(),
                matches!(
                    o.payload().body,
                    DossierBody::Revoke { .. } | DossierBody::Erase
                ),
            )
        }),
    );
    let mut acc = DossierAccess {
        dossier,
        owner: owner.clone(),
        grants: BTreeMap::new(),
        erased: None,
        rejected,
        pending,
    };
    for h in order {
        let op = all[&h].payload();
        if let Err(why) = apply_dossier(&mut acc, region, op, h) {
            acc.rejected.insert(h, why);
        }
    }
    Some(acc)
}

fn apply_dossier(
    acc: &mut DossierAccess,
    region: &RegionState,
    op: &DossierOp,
    hash: OpHash,
) -> Result<(), DossierRejection> {
    if acc.erased.is_some() {
        return Err(DossierRejection::Erased);
    }
    let party = &region
        .active_device(&op.author)
        .ok_or(DossierRejection::UnknownAuthor)?
        .party;
    let owner = *party == acc.owner;
    match &op.body {
        DossierBody::Open { owner: o } => {
            if o != party {
                return Err(DossierRejection::NotOwner);
            }
        }
        DossierBody::Grant {
            party: grantee,
            basis,
            purpose,
            until,
        } => {
            if !owner {
                return Err(DossierRejection::NotOwner);
            }
            if region.active_party(grantee).is_none() {
                return Err(DossierRejection::UnknownParty);
            }
            acc.grants.insert(
                grantee.clone(),
                GrantState {
                    basis: *basis,
                    purpose: purpose.clone(),
                    until: until.as_ref().and_then(until_date),
                    granted_by: hash,
                },
            );
        }
        DossierBody::Revoke { party: grantee, .. } => {
            if !owner {
                return Err(DossierRejection::NotOwner);
            }
            if acc.grants.remove(grantee).is_none() {
                return Err(DossierRejection::NoGrant);
            }
        }
        DossierBody::Erase => {
            let admin = region.active_party(party).is_some_and(|p| p.admin);
            if !owner && !admin {
                return Err(DossierRejection::NotOwnerOrAdmin);
            }
            acc.erased = Some(Erased {
                by: party.clone(),
                at: op.time,
            });
            acc.grants.clear();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{OpBody, SignedOp, fold};
    use crate::id::Role;
    use crate::identity::NodeSecret;

    fn p(s: &str) -> PartyName {
        PartyName::new(s).unwrap()
    }

    struct R {
        state: RegionState,
        roc: NodeSecret,
        gem_a: NodeSecret,
        gem_b: NodeSecret,
        admin: NodeSecret,
    }

    fn region() -> R {
        let admin = NodeSecret::generate().unwrap();
        let roc = NodeSecret::generate().unwrap();
        let gem_a = NodeSecret::generate().unwrap();
        let gem_b = NodeSecret::generate().unwrap();
        let sign = crate::testkit::sign_op;
        let g = crate::testkit::genesis(&admin, "gemeente-kern", Role::Kerngemeente);
        let r = Some(RegionId(g.hash()));
        let mut ops = vec![g];
        for (party, role, dev) in [
            ("roc-x", Role::Roc, &roc),
            ("gemeente-a", Role::Gemeente, &gem_a),
            ("gemeente-b", Role::Gemeente, &gem_b),
        ] {
            let last = ops.last().unwrap().hash();
            let op = sign(
                &admin,
                r,
                vec![last],
                OpBody::AddParty {
                    party: p(party),
                    role,
                },
            );
            let h = op.hash();
            ops.push(op);
            ops.push(sign(
                &admin,
                r,
                vec![h],
                OpBody::AddDevice {
                    party: p(party),
                    device: dev.node_id(),
                    age_recipient: dev.age_recipient().to_string(),
                },
            ));
        }
        let state = fold(RegionId(ops[0].hash()), &ops).unwrap().state;
        R {
            state,
            roc,
            gem_a,
            gem_b,
            admin,
        }
    }

    fn dop(
        r: &R,
        by: &NodeSecret,
        dossier: DocId,
        parents: Vec<OpHash>,
        body: DossierBody,
    ) -> SignedDossierOp {
        let mut parents = parents;
        parents.sort();
        Signed::sign(
            DossierOp {
                region: r.state.region,
                dossier,
                parents,
                author: by.node_id(),
                time: 1_700_000_000,
                body,
            },
            by.signing_key(),
        )
        .unwrap()
    }

    fn grant(party: &str) -> DossierBody {
        DossierBody::Grant {
            party: p(party),
            basis: Basis::WettelijkeTaak,
            purpose: "Jeugdwet: ondersteuning".into(),
            until: None,
        }
    }

    #[test]
    fn owner_grants_revokes_and_erases() {
        let r = region();
        let d = DocId::random().unwrap();
        let open = dop(
            &r,
            &r.roc,
            d,
            vec![],
            DossierBody::Open { owner: p("roc-x") },
        );
        let g = dop(&r, &r.roc, d, vec![open.hash()], grant("gemeente-a"));
        let acc = fold_dossier(&r.state, d, [&open, &g]).unwrap();
        let today = Date::from_calendar_date(2027, time::Month::January, 1).unwrap();
        assert_eq!(
            acc.in_force(&r.state, today),
            BTreeSet::from([p("roc-x"), p("gemeente-a")])
        );
        // The student moves: revoke A, grant B.
        let rv = dop(
            &r,
            &r.roc,
            d,
            vec![g.hash()],
            DossierBody::Revoke {
                party: p("gemeente-a"),
                reason: "verhuisd".into(),
            },
        );
        let gb = dop(&r, &r.roc, d, vec![rv.hash()], grant("gemeente-b"));
        let acc = fold_dossier(&r.state, d, [&open, &g, &rv, &gb]).unwrap();
        assert_eq!(
            acc.in_force(&r.state, today),
            BTreeSet::from([p("roc-x"), p("gemeente-b")])
        );
        // A region admin erases; nothing is in force and later ops are refused.
        let er = dop(&r, &r.admin, d, vec![gb.hash()], DossierBody::Erase);
        let late = dop(&r, &r.roc, d, vec![er.hash()], grant("gemeente-a"));
        let acc = fold_dossier(&r.state, d, [&open, &g, &rv, &gb, &er, &late]).unwrap();
        assert!(acc.in_force(&r.state, today).is_empty());
        assert_eq!(acc.erased.as_ref().unwrap().by, p("gemeente-kern"));
        assert_eq!(
            acc.rejected.get(&late.hash()),
            Some(&DossierRejection::Erased)
        );
    }

    #[test]
    fn attacks_on_the_access_log_are_rejected() {
        let r = region();
        let d = DocId::random().unwrap();
        let open = dop(
            &r,
            &r.roc,
            d,
            vec![],
            DossierBody::Open { owner: p("roc-x") },
        );
        // A grant by a party without authority (gemeente-a grants itself gemeente-b).
        let by_other = dop(&r, &r.gem_a, d, vec![open.hash()], grant("gemeente-b"));
        // A grant to an unknown party.
        let unknown = dop(&r, &r.roc, d, vec![open.hash()], grant("gemeente-nergens"));
        // Erase by a non-owner, non-admin.
        let erase = dop(&r, &r.gem_b, d, vec![open.hash()], DossierBody::Erase);
        // An op of another dossier mixed in.
        let other = dop(
            &r,
            &r.roc,
            DocId::random().unwrap(),
            vec![open.hash()],
            grant("gemeente-a"),
        );
        let acc = fold_dossier(&r.state, d, [&open, &by_other, &unknown, &erase, &other]).unwrap();
        assert_eq!(acc.rejected[&by_other.hash()], DossierRejection::NotOwner);
        assert_eq!(
            acc.rejected[&unknown.hash()],
            DossierRejection::UnknownParty
        );
        assert_eq!(
            acc.rejected[&erase.hash()],
            DossierRejection::NotOwnerOrAdmin
        );
        assert_eq!(acc.rejected[&other.hash()], DossierRejection::WrongDossier);
        assert!(acc.grants.is_empty() && acc.erased.is_none());
        // Open by someone claiming another owner.
        let fake_open = dop(
            &r,
            &r.gem_a,
            d,
            vec![],
            DossierBody::Open { owner: p("roc-x") },
        );
        let acc = fold_dossier(&r.state, d, [&fake_open]).unwrap();
        assert_eq!(acc.rejected[&fake_open.hash()], DossierRejection::NotOwner);
        // A dossier op is not a region op: it does not decode as one.
        assert!(SignedOp::decode(&open.encode()).is_err());
    }

    #[test]
    fn expired_grants_are_not_in_force() {
        let r = region();
        let d = DocId::random().unwrap();
        let open = dop(
            &r,
            &r.roc,
            d,
            vec![],
            DossierBody::Open { owner: p("roc-x") },
        );
        let until = Date::from_calendar_date(2027, time::Month::July, 31).unwrap();
        let g = dop(
            &r,
            &r.roc,
            d,
            vec![open.hash()],
            DossierBody::Grant {
                party: p("gemeente-a"),
                basis: Basis::Toestemming,
                purpose: "Toestemming ouders: afstemming zorg".into(),
                until: Some(until_of(until)),
            },
        );
        let acc = fold_dossier(&r.state, d, [&open, &g]).unwrap();
        assert!(acc.in_force(&r.state, until).contains(&p("gemeente-a")));
        assert!(
            !acc.in_force(&r.state, until.next_day().unwrap())
                .contains(&p("gemeente-a"))
        );
        // Structure: no purpose, impossible dates.
        let bad = DossierOp {
            region: r.state.region,
            dossier: d,
            parents: vec![open.hash()],
            author: r.roc.node_id(),
            time: 0,
            body: DossierBody::Grant {
                party: p("gemeente-a"),
                basis: Basis::Toestemming,
                purpose: " ".into(),
                until: None,
            },
        };
        assert!(Signed::sign(bad.clone(), r.roc.signing_key()).is_err());
        let bad_date = DossierOp {
            body: DossierBody::Grant {
                party: p("gemeente-a"),
                basis: Basis::Toestemming,
                purpose: "x".into(),
                until: Some([2027, 2, 30]),
            },
            ..bad
        };
        assert!(Signed::sign(bad_date, r.roc.signing_key()).is_err());
    }
}
