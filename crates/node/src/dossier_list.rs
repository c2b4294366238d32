//! Listing the dossiers this node's party may read, a page at a time, without
//! unsealing any: only each dossier's access log is folded (who owns it, who holds a
//! grant), so a list of 10,000 dossiers costs one id query and a fold per row shown.
//! Names and other content stay sealed until a person opens one dossier with a
//! purpose ([`Node::read_dossier`], audited).

use regiosync_core::dossier::access::{Basis, fold_dossier};
use regiosync_core::id::{DocId, PartyName};
use regiosync_store::StoreRead;
use time::Date;

use crate::Node;
use crate::clock::today;
use crate::dossiers::decode_log;
use crate::error::NodeError;

/// A dossier as the list shows it: nothing from its sealed content.
#[derive(Clone, Debug)]
pub struct DossierSummary {
    /// The pseudonymous id.
    pub id: DocId,
    /// The owner party (the one that opened it).
    pub owner: PartyName,
    /// The other parties with a grant: basis, last day.
    pub grants: Vec<(PartyName, Basis, Option<Date>)>,
}

/// One page of [`Node::readable_dossiers`].
#[derive(Clone, Debug, Default)]
pub struct DossierPage {
    /// The dossiers of this page, by id.
    pub dossiers: Vec<DossierSummary>,
    /// Where the next page starts (`after`), if there may be more.
    pub next: Option<DocId>,
    /// How many dossiers (readable or not) this node holds.
    pub held: usize,
}

/// Most access logs folded for one page: a relay holds many dossiers it may not
/// read, and a page must stay fast; the rest is on the next page.
pub const MAX_SCANNED: usize = 2_000;

impl Node {
    /// The dossiers this party may read today (owner, or a grant in force), by id,
    /// starting after `after`, at most `limit`; with `prefix`, only ids that start
    /// with it (lowercase hex). Unseals nothing and writes no audit entry.
    pub fn readable_dossiers(
        &self,
        after: Option<&DocId>,
        prefix: Option<&str>,
        limit: usize,
    ) -> Result<DossierPage, NodeError> {
        let mut ids = self.store.dossier_ids()?;
        ids.sort_unstable();
        let held = ids.len();
        let state = self.region_state()?;
        let me = &self.info.party;
        let today = today();
        let start = after.map_or(0, |a| ids.partition_point(|id| id <= a));
        let mut page = DossierPage {
            held,
            ..DossierPage::default()
        };
        let mut last_scanned = None;
        for (scanned, id) in ids[start..].iter().enumerate() {
            if page.dossiers.len() == limit || scanned == MAX_SCANNED {
                page.next = last_scanned;
                break;
            }
            last_scanned = Some(*id);
            if prefix.is_some_and(|p| !id.to_string().starts_with(p)) {
                continue;
            }
            let log = decode_log(id, &self.store.dossier_ops(id)?);
            let Some(access) = fold_dossier(&state, *id, &log) else {
                continue;
            };
            if access.erased.is_some() || !access.in_force(&state, today).contains(me) {
                continue;
            }
            page.dossiers.push(DossierSummary {
                id: *id,
                owner: access.owner.clone(),
                grants: access
                    .grants
                    .iter()
                    .map(|(p, g)| (p.clone(), g.basis, g.until))
                    .collect(),
            });
        }
        Ok(page)
    }

    /// Whether this party may read the dossier today (owner, or a grant in force),
    /// and it is not erased. `false` for an id this node does not hold.
    pub fn may_read_dossier(&self, id: &DocId) -> Result<bool, NodeError> {
        if self.store.dossier_erased(id)?.is_some() {
            return Ok(false);
        }
        let log = decode_log(id, &self.store.dossier_ops(id)?);
        if log.is_empty() {
            return Ok(false);
        }
        let state = self.region_state()?;
        Ok(fold_dossier(&state, *id, &log).is_some_and(|a| {
            a.erased.is_none() && a.in_force(&state, today()).contains(&self.info.party)
        }))
    }
}
