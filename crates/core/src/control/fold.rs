//! The fold: from a set of signed ops to a [`RegionState`], deterministically.
//!
//! The rules are specified in docs/AUTH.md; in short:
//! 1. The ops form a DAG rooted at the region's `CreateRegion` op. Ops of another
//!    region are ignored; ops whose parents are not (yet) known are pending.
//! 2. The DAG is put in one linear order: a topological order that, among the ops
//!    whose parents are all placed, takes revocations first, then the smallest hash.
//! 3. The ops are applied in that order. An op is accepted if its author holds the
//!    authority it needs in the state so far, counting only the removals and
//!    demotions of its author that are in its causal past, *and* the ops that gave
//!    the author that authority (its `AddDevice`, an admin grant of its party) are in
//!    the op's causal past. The parties and devices an op names are judged the same
//!    way: a removal it had not seen does not make it invalid (see `target_party`).
//! 4. A revocation beats concurrent ops: if an accepted revocation (remove device,
//!    remove party, revoke admin) takes away authority that a concurrent accepted op
//!    used, directly or through what that authority rests on, that op is excluded,
//!    and the fold runs again without it. Concurrent revocations act only this way,
//!    never through the linear order. Exclusions only grow, so this ends; it usually
//!    takes one extra round.
//!
//! The result depends only on the set of ops, never on their arrival order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::op::{DocCreation, OpBody, OpHash, RegionId, SignedOp};
use super::state::{Approval, DeviceState, DocAcl, PartyState, RegionState};
use crate::id::{NodeId, PartyName};

/// Why an op was not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The op names another region.
    #[error("the op belongs to another region")]
    WrongRegion,
    /// The author device is not a member.
    #[error("the author device is not a member of the region")]
    UnknownAuthor,
    /// The author device, or its party, was removed.
    #[error("the author device or its party was removed")]
    AuthorRemoved,
    /// The author's own addition is not in the op's causal past.
    #[error("the op does not build on the addition of its own author device")]
    AuthorNotInPast,
    /// The op needs a region admin.
    #[error("only a region admin may do this")]
    NotAdmin,
    /// The op needs another authority the author lacks.
    #[error("not authorised: {0}")]
    NotAuthorised(&'static str),
    /// The op is well-formed but makes no sense in the state.
    #[error("invalid in this state: {0}")]
    Invalid(&'static str),
    /// A concurrent revocation took away the authority the op used.
    #[error("overruled by concurrent revocation {0}")]
    ConcurrentlyRevoked(OpHash),
}

/// Why no state could be folded at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FoldError {
    /// The region's `CreateRegion` op is not among the ops.
    #[error("the region's founding op is missing")]
    NoGenesis,
    /// The op with the region's id is not a `CreateRegion`.
    #[error("the region id does not name a create-region op")]
    NotGenesis,
}

/// The result of a fold.
#[derive(Clone, Debug)]
pub struct Folded {
    /// The region state.
    pub state: RegionState,
    /// Every op placed in the DAG, in the linear order.
    pub order: Vec<OpHash>,
    /// The ops that were not applied, and why.
    pub rejected: BTreeMap<OpHash, Rejection>,
    /// Ops waiting for parents that are not known yet.
    pub pending: BTreeSet<OpHash>,
    /// The heads of every placed op, rejected ones included: what a sync session
    /// compares to tell whether two nodes hold the same log. (Two nodes can agree on
    /// the accepted ops, `state.heads`, and still hold different rejected ones, which
    /// changes may name in their envelopes: a node that lacks one cannot verify such
    /// a change.)
    pub log_heads: Vec<OpHash>,
    /// `order` and `pending` as a set, built at the first [`Folded::known_ops`]:
    /// every document checked or built under this fold asks for it, and building
    /// it each time made a catch-up of many documents quadratic in their number
    /// (the region log names every plan).
    known: std::sync::OnceLock<HashSet<OpHash>>,
}

impl Folded {
    /// Every op this node has placed or holds pending: what a change envelope's control
    /// heads may name to count as known (see `envelope::verify_change`).
    pub fn known_ops(&self) -> &HashSet<OpHash> {
        self.known
            .get_or_init(|| self.order.iter().chain(&self.pending).copied().collect())
    }

    /// Whether the op was applied.
    pub fn accepted(&self, hash: &OpHash) -> bool {
        !self.rejected.contains_key(hash)
            && !self.pending.contains(hash)
            && self.order.contains(hash)
    }
}

/// Folds the ops of `region` (others are reported as [`Rejection::WrongRegion`]).
pub fn fold<'a>(
    region: RegionId,
    ops: impl IntoIterator<Item = &'a SignedOp>,
) -> Result<Folded, FoldError> {
    let mut all: BTreeMap<OpHash, &SignedOp> = BTreeMap::new();
    for op in ops {
        all.insert(op.hash(), op);
    }
    let genesis = *all.get(&region.0).ok_or(FoldError::NoGenesis)?;
    let OpBody::CreateRegion {
        name,
        party,
        role,
        age_recipient,
    } = &genesis.op().body
    else {
        return Err(FoldError::NotGenesis);
    };

    let mut rejected = BTreeMap::new();
    let mut members: BTreeMap<OpHash, &SignedOp> = BTreeMap::new();
    for (h, op) in &all {
        if *h == region.0 || op.op().region == Some(region) {
            members.insert(*h, op);
        } else {
            rejected.insert(*h, Rejection::WrongRegion);
        }
    }

    let dag = Dag::build(&members, region.0);
    let base = RegionState {
        region,
        name: name.clone(),
        parties: BTreeMap::from([(
            party.clone(),
            PartyState {
                role: *role,
                admin: true,
                admin_since: Some(region.0),
                removed: false,
                display_name: None,
            },
        )]),
        devices: BTreeMap::from([(
            genesis.op().author,
            DeviceState {
                party: party.clone(),
                age_recipient: age_recipient.clone(),
                added_by: region.0,
                removed: false,
                addrs: vec![],
                dossier_relay: false,
            },
        )]),
        docs: BTreeMap::new(),
        approvals: BTreeMap::new(),
        cutoffs: BTreeMap::new(),
        heads: vec![],
    };

    // Excluded ops, each with every sure revocation that overruled it (positions):
    // the first is reported; an op that saw any of them saw the exclusion.
    let mut excluded: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut narrowed: BTreeMap<usize, BTreeSet<NodeId>> = BTreeMap::new();
    // Revocations of admin parties dropped because together they left no admin party.
    // Only grows, also across restarts (below): a restart undoes exclusions, and must
    // not bring back for a round, on a state with no admin party, revocations that
    // were dropped; other revocations would act on that state.
    let mut last_admin: BTreeSet<usize> = BTreeSet::new();
    // Revocations whose exclusions do not count: they were themselves rejected in
    // the end (their authority went with an exclusion or a narrowing made after
    // they took effect), so what they excluded on the way must not stay excluded
    // (exclusions only grow within one pass; a pass that ends with such a cause
    // starts again without it). A cause that is itself excluded stays a cause: that
    // happens only in a cycle of overruling revocations, where all of them go.
    // Only grows, so this ends.
    let mut silenced: BTreeSet<usize> = BTreeSet::new();
    loop {
        let mut state = base.clone();
        let mut revoked = Revoked::default();
        for (&x, by) in &excluded {
            match &dag.ops[x].op().body {
                OpBody::RemoveDevice { device, .. } => {
                    revoked
                        .overruled
                        .entry(Target::Device(*device))
                        .or_default()
                        .push((x, by.clone()));
                }
                OpBody::RemoveParty { .. } if narrowed.contains_key(&x) => {
                    for d in &narrowed[&x] {
                        revoked
                            .overruled
                            .entry(Target::Device(*d))
                            .or_default()
                            .push((x, by.clone()));
                    }
                }
                OpBody::RemoveParty { party, .. } => {
                    revoked
                        .overruled
                        .entry(Target::Party(party.clone()))
                        .or_default()
                        .push((x, by.clone()));
                }
                _ => {}
            }
        }
        let mut outcome: Vec<Result<Applied, Rejection>> = Vec::with_capacity(dag.ops.len());
        outcome.push(Ok(Applied {
            needs_admin: false,
            basis: [None; 2],
        }));
        for i in 1..dag.ops.len() {
            let r = match excluded.get(&i).and_then(|by| by.first()) {
                Some(&by) => Err(Rejection::ConcurrentlyRevoked(dag.ops[by].hash())),
                None if last_admin.contains(&i) => Err(Rejection::Invalid(
                    "the region must keep at least one admin party",
                )),
                None => match narrowed.get(&i) {
                    Some(devices) => apply_narrowed(&mut state, &dag, &mut revoked, i, devices),
                    None => apply(&mut state, &dag, &mut revoked, i),
                },
            };
            if let Ok(applied) = &r {
                revoked.bases.insert(i, applied.basis);
            }
            outcome.push(r);
        }
        let (newly, narrower) = dag.exclusions(&outcome, &state, &excluded, &narrowed, &silenced);
        if newly.is_empty() && narrower.is_empty() && state.admin_parties().next().is_none() {
            // Concurrent revocations that each kept an admin party as they saw it, and
            // together kept none: none of the party-level ones (removals and demotions
            // of parties) takes effect. Which one came first is not asked (a hash).
            let more: Vec<usize> = (1..dag.ops.len())
                .filter(|&i| outcome[i].is_ok() && !narrowed.contains_key(&i))
                .filter(|&i| {
                    matches!(
                        dag.ops[i].op().body,
                        OpBody::RemoveParty { .. } | OpBody::SetAdmin { admin: false, .. }
                    )
                })
                .collect();
            if !more.is_empty() {
                last_admin.extend(more);
                continue;
            }
        }
        if newly.is_empty() && narrower.is_empty() {
            let fallen: BTreeSet<usize> = excluded
                .values()
                .flatten()
                .copied()
                .filter(|&r| {
                    outcome[r].is_err() && !excluded.contains_key(&r) && !silenced.contains(&r)
                })
                .collect();
            if !fallen.is_empty() {
                silenced.extend(fallen);
                excluded.clear();
                narrowed.clear();
                continue;
            }
            state.heads = dag.heads(|i| outcome[i].is_ok());
            let log_heads = dag.heads(|_| true);
            for (i, r) in outcome.into_iter().enumerate() {
                if let Err(why) = r {
                    rejected.insert(dag.ops[i].hash(), why);
                }
            }
            return Ok(Folded {
                state,
                order: dag.ops.iter().map(|o| o.hash()).collect(),
                rejected,
                pending: dag.pending,
                log_heads,
                known: std::sync::OnceLock::new(),
            });
        }
        for (x, by) in newly {
            excluded.entry(x).or_default().extend(by);
        }
        for (i, devices) in narrower {
            narrowed.entry(i).or_default().extend(devices);
        }
    }
}

/// Who revoked what so far in a round of the fold, by op position: an op's
/// authority counts only revocations of its author that are in its causal past
/// (concurrent ones are settled by the exclusion rule, section 4 of AUTH.md).
#[derive(Default)]
struct Revoked {
    /// Removed devices: the positions of every op that removed each (a device
    /// removed twice, once in an op's past and once not, counts as removed for it).
    devices: HashMap<NodeId, Vec<usize>>,
    /// Removals and demotions of each party, in linear order: the position of the
    /// op, whether it removed the party, and the admin grants the party had before
    /// it (none if it was no admin then).
    parties: HashMap<PartyName, Vec<PartyRevocation>>,
    /// Admin grants of parties that were already admin (re-grants, concurrent ones
    /// say), since each last became admin: an op whose past holds any grant of its
    /// party uses it, whichever the linear order placed first (a hash).
    regrants: HashMap<PartyName, Vec<OpHash>>,
    /// Removals excluded by a concurrent revocation: the position of each, and of
    /// the sure revocations that overruled it.
    overruled: HashMap<Target, Vec<(usize, BTreeSet<usize>)>>,
    /// What the authority of each op accepted so far in the round rests on
    /// ([`Applied::basis`]), by position.
    bases: HashMap<usize, [Option<usize>; 2]>,
}

/// A removal or demotion of a party (see [`Revoked::parties`]).
struct PartyRevocation {
    by: usize,
    removal: bool,
    before: Vec<OpHash>,
}

/// What a removal removes.
#[derive(PartialEq, Eq, Hash)]
enum Target {
    Device(NodeId),
    Party(PartyName),
}

impl Revoked {
    /// The admin grants of `party` now (none if it is no admin).
    fn grants(&self, name: &PartyName, party: &PartyState) -> Vec<OpHash> {
        if !party.admin || party.removed {
            return vec![];
        }
        let regrants = self.regrants.get(name).into_iter().flatten();
        party
            .admin_since
            .into_iter()
            .chain(regrants.copied())
            .collect()
    }

    /// Records a removal or demotion of `name` by op `by`.
    fn revoke_party(&mut self, name: &PartyName, party: &PartyState, by: usize, removal: bool) {
        let before = self.grants(name, party);
        self.regrants.remove(name);
        self.parties
            .entry(name.clone())
            .or_default()
            .push(PartyRevocation {
                by,
                removal,
                before,
            });
    }

    /// The admin grants of `party` as an op sees it that has not seen the revocations
    /// for which `unseen` holds: `None` if the party is removed as the op sees it,
    /// none if it is no admin. The party's removals and demotions are undone from
    /// the first one the op has not seen, unless it saw a later one: several may be
    /// unseen (a removed device that backdates both), and the linear order may place
    /// a seen one after an unseen one (concurrent revocations, whose order is a
    /// hash).
    fn seen_grants(
        &self,
        name: &PartyName,
        party: &PartyState,
        unseen: impl Fn(usize) -> bool,
    ) -> Option<Vec<OpHash>> {
        let current = self.grants(name, party);
        let Some(revs) = self.parties.get(name) else {
            return (!party.removed).then_some(current);
        };
        if revs.iter().any(|r| r.removal && !unseen(r.by)) {
            return None;
        }
        match revs.iter().position(|r| unseen(r.by)) {
            // Every one seen: the state as it is.
            None => (!party.removed).then_some(current),
            // A later one seen: not admin, unless granted again since.
            Some(k) if revs[k + 1..].iter().any(|r| !unseen(r.by)) => Some(current),
            Some(k) => Some(revs[k].before.iter().copied().chain(current).collect()),
        }
    }

    /// Whether `name` is removed as an op sees it that has not seen the revocations
    /// for which `unseen` holds: some removal of the party is in its past.
    fn party_removed(&self, name: &PartyName, unseen: impl Fn(usize) -> bool) -> bool {
        self.parties
            .get(name)
            .is_some_and(|revs| revs.iter().any(|r| r.removal && !unseen(r.by)))
    }

    /// The positions of the removals of `name` so far.
    fn party_removals(&self, name: &PartyName) -> Vec<usize> {
        self.parties
            .get(name)
            .into_iter()
            .flatten()
            .filter(|r| r.removal)
            .map(|r| r.by)
            .collect()
    }

    /// Whether revocation `x`, in the causal past of op `i`, is overruled there: `i`
    /// also saw an accepted removal `y` of `x`'s author (device or party), concurrent
    /// with `x`, that `x` cannot hit (`y`'s author is not what `x` takes away, and
    /// what `y`'s authority rests on is in `x`'s past). The exclusion rule will
    /// exclude `x` once `y` is sure; until then, `i` is judged as its author saw it
    /// when signing (an honest device whose removal it saw overruled signs on), so
    /// that a revocation concurrent with `i` cannot act first while `i` is wrongly
    /// held invalid. If `y` falls in the end, so does this reprieve, and what `i`
    /// excluded on the way is undone (the `silenced` step of `fold`).
    fn overruled_in_past(&self, dag: &Dag<'_>, state: &RegionState, x: usize, i: usize) -> bool {
        let remover = dag.ops[x].op().author;
        let Some(removals) = self.devices.get(&remover) else {
            return false;
        };
        removals.iter().any(|&y| {
            if y == x || !dag.is_ancestor(y, i) || dag.is_ancestor(x, y) || dag.is_ancestor(y, x) {
                return false;
            }
            let y_author = dag.ops[y].op().author;
            let y_party = state.devices.get(&y_author).map(|d| &d.party);
            let x_hits_y_directly = match &dag.ops[x].op().body {
                OpBody::RemoveDevice { device, .. } => *device == y_author,
                OpBody::RemoveParty { party, .. } | OpBody::SetAdmin { party, .. } => {
                    y_party == Some(party)
                }
                _ => true,
            };
            !x_hits_y_directly
                && self.bases.get(&y).is_some_and(|basis| {
                    basis
                        .iter()
                        .flatten()
                        .all(|&b| b == 0 || dag.is_ancestor(b, x))
                })
        })
    }

    /// Whether `device` is removed as an op sees it that has not seen the removals
    /// for which `unseen` holds.
    fn device_removed(&self, device: &NodeId, unseen: impl Fn(usize) -> bool) -> bool {
        self.devices
            .get(device)
            .is_none_or(|bys| bys.iter().any(|&by| !unseen(by)))
    }
}

struct Applied {
    needs_admin: bool,
    /// What the op's authority rests on: its author's addition and, if it needed
    /// admin, its party's admin grant (positions).
    basis: [Option<usize>; 2],
}

impl Applied {
    fn new(auth: &Authority, needs_admin: bool) -> Self {
        Self {
            needs_admin,
            basis: [auth.added_by, if needs_admin { auth.grant } else { None }],
        }
    }
}

/// A set of op positions, one bit each.
type Bits = Vec<u64>;

fn has(bits: &Bits, i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set(bits: &mut Bits, i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

/// The ops in linear order, with their parents by position. Ancestry is answered
/// from descendant sets computed on demand for the ops asked about (the additions of
/// authors and admin grants, and revocations) and kept for the fold: memory grows
/// with the log times the number of such ops, not with the square of the log (every
/// op's full ancestor set took a gigabyte at 100,000 ops).
struct Dag<'a> {
    ops: Vec<&'a SignedOp>,
    pos: HashMap<OpHash, usize>,
    /// `parents[i]`: the positions of op i's parents (all before i).
    parents: Vec<Vec<usize>>,
    /// Descendant sets by op position, as computed so far.
    descendants: std::cell::RefCell<HashMap<usize, std::rc::Rc<Bits>>>,
    pending: BTreeSet<OpHash>,
}

impl<'a> Dag<'a> {
    fn build(members: &BTreeMap<OpHash, &'a SignedOp>, root: OpHash) -> Self {
        let (order, pending) = linear_order(
            root,
            members
                .iter()
                .map(|(h, op)| (*h, op.op().parents.as_slice(), op.op().body.is_revocation())),
        );
        let ops: Vec<&SignedOp> = order.iter().map(|h| members[h]).collect();
        let pos: HashMap<OpHash, usize> = order.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        let parents = ops
            .iter()
            .map(|op| op.op().parents.iter().map(|p| pos[p]).collect())
            .collect();
        Dag {
            ops,
            pos,
            parents,
            descendants: Default::default(),
            pending,
        }
    }

    fn words(&self) -> usize {
        self.ops.len().div_ceil(64)
    }

    /// The strict descendants of op `a` (one pass over the ops after it: the linear
    /// order is topological), computed once per fold.
    fn descendants_of(&self, a: usize) -> std::rc::Rc<Bits> {
        if let Some(d) = self.descendants.borrow().get(&a) {
            return d.clone();
        }
        let mut d = vec![0u64; self.words()];
        for x in a + 1..self.ops.len() {
            if self.parents[x].iter().any(|&p| p == a || has(&d, p)) {
                set(&mut d, x);
            }
        }
        let d = std::rc::Rc::new(d);
        self.descendants.borrow_mut().insert(a, d.clone());
        d
    }

    /// The strict ancestors of op `r` (one pass backwards from it).
    fn ancestors_of(&self, r: usize) -> Bits {
        let mut anc = vec![0u64; self.words()];
        for &p in &self.parents[r] {
            set(&mut anc, p);
        }
        for x in (0..r).rev() {
            if has(&anc, x) {
                for &p in &self.parents[x] {
                    set(&mut anc, p);
                }
            }
        }
        anc
    }

    fn is_ancestor(&self, ancestor: usize, of: usize) -> bool {
        ancestor < of && has(&self.descendants_of(ancestor), of)
    }

    fn in_past(&self, hash: &OpHash, of: usize) -> bool {
        self.pos.get(hash).is_some_and(|&a| self.is_ancestor(a, of))
    }

    /// The heads among the ops that pass `keep` (the accepted ones): new ops build
    /// on these, so rejected ops never pile up as heads.
    fn heads(&self, keep: impl Fn(usize) -> bool) -> Vec<OpHash> {
        let mut has_child: Vec<bool> = (0..self.ops.len()).map(|i| !keep(i)).collect();
        for (i, op) in self.ops.iter().enumerate() {
            if !keep(i) {
                continue;
            }
            for p in &op.op().parents {
                has_child[self.pos[p]] = true;
            }
        }
        let mut heads: Vec<OpHash> = self
            .ops
            .iter()
            .zip(has_child)
            .filter(|(_, c)| !c)
            .map(|(o, _)| o.hash())
            .collect();
        heads.sort();
        heads
    }

    /// Whether revocation `r` takes away authority that op `x` used directly: `x`'s
    /// author device (`RemoveDevice`), its party (`RemoveParty`), or its party's
    /// admin when `x` needed admin (`SetAdmin(false)`). `None` if `r` is no such
    /// revocation. (`exclusions` adds the ops whose authority rests on an op `r`
    /// hits.)
    fn hits(
        &self,
        r: usize,
        x: usize,
        outcome: &[Result<Applied, Rejection>],
        state: &RegionState,
        narrowed: &BTreeMap<usize, BTreeSet<NodeId>>,
    ) -> Option<bool> {
        let author = self.ops[x].op().author;
        let party_of = |d: &NodeId| state.devices.get(d).map(|s| &s.party);
        if let Some(devices) = narrowed.get(&r) {
            return Some(devices.contains(&author));
        }
        match &self.ops[r].op().body {
            OpBody::RemoveDevice { device, .. } => Some(author == *device),
            // A party's removal also overrules concurrent ops that build the party
            // up (a device added to it, an admin grant), judged as they saw it.
            OpBody::RemoveParty { party, .. } => Some(
                party_of(&author) == Some(party)
                    || matches!(
                        &self.ops[x].op().body,
                        OpBody::AddDevice { party: p, .. }
                            | OpBody::SetAdmin { party: p, admin: true } if p == party
                    ),
            ),
            OpBody::SetAdmin {
                party,
                admin: false,
            } => Some(
                party_of(&author) == Some(party)
                    && matches!(
                        outcome[x],
                        Ok(Applied {
                            needs_admin: true,
                            ..
                        })
                    ),
            ),
            _ => None,
        }
    }

    /// The exclusion rule (AUTH.md section 4): accepted ops that a concurrent
    /// accepted revocation overrules, not yet excluded; and the revocations whose
    /// effect must be narrowed to the devices whose authors they conflict with.
    ///
    /// A revocation overrules a concurrent op that it hits (see `hits`), and a
    /// concurrent op whose authority rests on an op it overrules (the addition of
    /// its author, or the admin grant of its party that it used), transitively.
    ///
    /// Revocations that overrule each other in a cycle (two admins removing each
    /// other, or longer rings of concurrent removals) all stand: none excludes
    /// another of the ring, and once nothing outside the ring overrules one of them,
    /// a party-level one acts only on the devices of the ring it hits directly.
    /// Nothing their signers choose (a hash, a time) decides between them. Only
    /// revocations (and rings) that nothing outside their own ring overrules take
    /// effect in a round (the others may still fall, and exclusions and narrowings
    /// are never undone); the next round judges the rest.
    fn exclusions(
        &self,
        outcome: &[Result<Applied, Rejection>],
        state: &RegionState,
        excluded: &BTreeMap<usize, BTreeSet<usize>>,
        narrowed: &BTreeMap<usize, BTreeSet<NodeId>>,
        silenced: &BTreeSet<usize>,
    ) -> (
        BTreeMap<usize, BTreeSet<usize>>,
        BTreeMap<usize, BTreeSet<NodeId>>,
    ) {
        // Every (victim, revocation) pair first, and whether the revocation hits the
        // victim directly (rather than through what its authority rests on).
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        let mut direct: Vec<bool> = Vec::new();
        for r in 0..self.ops.len() {
            if outcome[r].is_err()
                || silenced.contains(&r)
                || self.hits(r, r, outcome, state, narrowed).is_none()
            {
                continue;
            }
            let (past, future) = (self.ancestors_of(r), self.descendants_of(r));
            let mut hit = vec![false; self.ops.len()];
            for (x, result) in outcome.iter().enumerate().skip(1) {
                if x == r || excluded.contains_key(&x) {
                    continue;
                }
                let Ok(applied) = result else { continue };
                let concurrent = !has(&past, x) && !has(&future, x);
                if !concurrent {
                    continue;
                }
                let head_on = self.hits(r, x, outcome, state, narrowed) == Some(true);
                if !head_on && !applied.basis.iter().flatten().any(|&b| hit[b]) {
                    continue;
                }
                hit[x] = true;
                pairs.push((x, r));
                direct.push(head_on);
            }
        }
        let ring = rings(&pairs);
        let same_ring = |a: usize, b: usize| ring.contains_key(&a) && ring.get(&a) == ring.get(&b);
        // Rings overruled from outside: their members wait.
        let mut waiting: BTreeSet<usize> = BTreeSet::new();
        for &(x, r) in &pairs {
            if !same_ring(x, r) {
                waiting.insert(ring.get(&x).copied().unwrap_or(x));
            }
        }
        let mut narrower: BTreeMap<usize, BTreeSet<NodeId>> = BTreeMap::new();
        for (&(x, r), &head_on) in pairs.iter().zip(&direct) {
            if head_on && same_ring(x, r) && !waiting.contains(&ring[&r]) {
                let party_level = !matches!(self.ops[r].op().body, OpBody::RemoveDevice { .. });
                let author = self.ops[x].op().author;
                if party_level && narrowed.get(&r).is_none_or(|d| !d.contains(&author)) {
                    narrower.entry(r).or_default().insert(author);
                }
            }
        }
        let mut out = BTreeMap::new();
        if !narrower.is_empty() {
            // A revocation to be narrowed must not exclude anything with its full
            // effect (exclusions are never undone): narrow first, then exclude in the
            // next round with the narrowed effects.
            return (out, narrower);
        }
        for (x, r) in pairs {
            let sure = !waiting.contains(&ring.get(&r).copied().unwrap_or(r));
            if sure && !same_ring(x, r) {
                out.entry(x).or_default().insert(r);
            }
        }
        (out, narrower)
    }
}

/// The rings of an overrule graph (its strongly connected components with more than
/// one member): each op in a ring mapped to the ring's smallest position. `pairs`
/// are (victim, revocation). Iterative (Kosaraju's algorithm), so that a long chain
/// of concurrent revocations in a hostile log cannot overflow the stack.
fn rings(pairs: &[(usize, usize)]) -> HashMap<usize, usize> {
    let mut fwd: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut back: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(x, r) in pairs {
        fwd.entry(r).or_default().push(x);
        back.entry(x).or_default().push(r);
        fwd.entry(x).or_default();
        back.entry(r).or_default();
    }
    // First pass: the finishing order of a depth-first search over `fwd`.
    let mut seen: HashSet<usize> = HashSet::new();
    let mut finished: Vec<usize> = Vec::with_capacity(fwd.len());
    for &start in fwd.keys() {
        if !seen.insert(start) {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some((v, next)) = stack.pop() {
            match fwd[&v].get(next) {
                Some(&w) => {
                    stack.push((v, next + 1));
                    if seen.insert(w) {
                        stack.push((w, 0));
                    }
                }
                None => finished.push(v),
            }
        }
    }
    // Second pass: components over `back`, in reverse finishing order.
    let mut component: HashMap<usize, usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for &start in finished.iter().rev() {
        if component.contains_key(&start) {
            continue;
        }
        let id = members.len();
        let mut group = vec![];
        let mut stack = vec![start];
        component.insert(start, id);
        while let Some(v) = stack.pop() {
            group.push(v);
            for &w in &back[&v] {
                if let std::collections::hash_map::Entry::Vacant(e) = component.entry(w) {
                    e.insert(id);
                    stack.push(w);
                }
            }
        }
        members.push(group);
    }
    let mut ring = HashMap::new();
    for group in members.into_iter().filter(|g| g.len() > 1) {
        let least = group.iter().copied().min().unwrap_or_default();
        for v in group {
            ring.insert(v, least);
        }
    }
    ring
}

/// The deterministic linear order of a DAG of ops (docs/AUTH.md, "Linear order"):
/// Kahn's algorithm from `root`; among the ops whose parents are all placed,
/// revocations first, then the smallest hash. Ops whose parents are not all present
/// are returned as pending. Shared by the region fold and the dossier fold.
pub(crate) fn linear_order<'p>(
    root: OpHash,
    nodes: impl IntoIterator<Item = (OpHash, &'p [OpHash], bool)>,
) -> (Vec<OpHash>, BTreeSet<OpHash>) {
    let mut children: HashMap<OpHash, Vec<OpHash>> = HashMap::new();
    let mut missing: HashMap<OpHash, usize> = HashMap::new();
    let mut revocation: HashMap<OpHash, bool> = HashMap::new();
    for (h, parents, revokes) in nodes {
        missing.insert(h, parents.len());
        revocation.insert(h, revokes);
        for p in parents {
            children.entry(*p).or_default().push(h);
        }
    }
    let mut order = Vec::with_capacity(missing.len());
    if !missing.contains_key(&root) {
        return (order, missing.into_keys().collect());
    }
    let mut placed: HashSet<OpHash> = HashSet::new();
    let mut ready: BTreeSet<(u8, OpHash)> = BTreeSet::from([(0, root)]);
    while let Some((_, h)) = ready.pop_first() {
        placed.insert(h);
        order.push(h);
        for c in children.get(&h).into_iter().flatten() {
            if let Some(m) = missing.get_mut(c) {
                *m -= 1;
                if *m == 0 {
                    ready.insert((u8::from(!revocation[c]), *c));
                }
            }
        }
    }
    let pending = missing
        .into_keys()
        .filter(|h| !placed.contains(h))
        .collect();
    (order, pending)
}

/// The access lists as stored: the owner always writes, every writer reads.
fn closed_acl(
    owner: &PartyName,
    readers: &[PartyName],
    writers: &[PartyName],
) -> (BTreeSet<PartyName>, BTreeSet<PartyName>) {
    let writers: BTreeSet<PartyName> = writers.iter().cloned().chain([owner.clone()]).collect();
    let readers = readers
        .iter()
        .cloned()
        .chain(writers.iter().cloned())
        .collect();
    (readers, writers)
}

/// Records cutoffs. Where a (document, device) pair already has one, the lower one
/// stays: cutoffs only ever tighten, whatever order the ops come in.
fn merge_cutoffs<'c>(
    state: &mut RegionState,
    cutoffs: impl Iterator<Item = &'c super::op::Cutoff>,
) {
    for c in cutoffs {
        let key = (c.doc, c.device);
        let new = (c.last_seq, c.last_hash);
        match state.cutoffs.get(&key) {
            Some(old) if (old.last_seq, old.last_hash) <= new => {}
            _ => {
                state.cutoffs.insert(key, c.clone());
            }
        }
    }
}

/// The authority of an op's author in the state, with the causal-past check.
struct Authority {
    party: PartyName,
    admin: bool,
    /// The author's addition and the party's admin grant (if admin), by position.
    added_by: Option<usize>,
    grant: Option<usize>,
}

fn authority(
    state: &RegionState,
    dag: &Dag<'_>,
    revoked: &Revoked,
    i: usize,
) -> Result<Authority, Rejection> {
    let op = dag.ops[i].op();
    let author = op.author;
    // An op is judged without the revocations of its author that it had not seen
    // (concurrent ones): those are settled by the exclusion rule alone, which acts
    // only once a revocation is sure and lets mutual revocations both stand. So the
    // linear order (a hash its signer could grind) never decides whether a
    // concurrent revocation counts against an op.
    // A revocation the op saw overruled in its own past (`overruled_in_past`) counts
    // as not seen.
    let unseen =
        |by: usize| !dag.is_ancestor(by, i) || revoked.overruled_in_past(dag, state, by, i);
    let dev = state.devices.get(&author).ok_or(Rejection::UnknownAuthor)?;
    if dev.removed && revoked.device_removed(&author, unseen) {
        return Err(Rejection::AuthorRemoved);
    }
    // An op signed after its author saw itself removed is never valid, even where
    // that removal was later overruled by a revocation the author had not seen: an
    // honest node does not sign once it counts itself removed, so such an op can
    // only come from a removed device's key (a stolen laptop) that waits for its
    // remover to be revoked concurrently.
    let saw_own_removal = |t: &Target| {
        revoked.overruled.get(t).is_some_and(|rs| {
            rs.iter().any(|(r, by)| {
                dag.is_ancestor(*r, i) && by.iter().all(|&by| !dag.is_ancestor(by, i))
            })
        })
    };
    if saw_own_removal(&Target::Device(author))
        || saw_own_removal(&Target::Party(dev.party.clone()))
    {
        return Err(Rejection::AuthorRemoved);
    }
    if !dag.in_past(&dev.added_by, i) {
        return Err(Rejection::AuthorNotInPast);
    }
    let party = state
        .parties
        .get(&dev.party)
        .ok_or(Rejection::UnknownAuthor)?;
    let grants = revoked
        .seen_grants(&dev.party, party, unseen)
        .ok_or(Rejection::AuthorRemoved)?;
    let grant = grants.iter().find(|h| dag.in_past(h, i));
    let admin = grant.is_some();
    Ok(Authority {
        party: dev.party.clone(),
        admin,
        added_by: dag.pos.get(&dev.added_by).copied(),
        grant: grant.and_then(|h| dag.pos.get(h).copied()),
    })
}

/// The admin parties as op `i` saw them: the current ones, plus those that a
/// revocation not in its causal past removed or demoted (concurrent revocations are
/// settled by the exclusion rule, not by which one the linear order placed first).
fn seen_admins<'s>(
    state: &'s RegionState,
    dag: &Dag<'_>,
    revoked: &Revoked,
    i: usize,
) -> Vec<&'s PartyName> {
    state
        .parties
        .iter()
        .filter(|(name, p)| {
            revoked
                .seen_grants(name, p, |by| !dag.is_ancestor(by, i))
                .is_some_and(|grants| !grants.is_empty())
        })
        .map(|(name, _)| name)
        .collect()
}

/// Whether party `p`, named by op `i` as a target (a party it adds a device to,
/// grants admin, names in an access list), is known and not removed *as the op saw
/// it*: `Ok(true)` if it is removed only by revocations the op had not seen
/// (concurrent ones). Such an op is not invalid: the removal overrules it through
/// the exclusion rule where it must (see `Dag::hits`), so that which of the two the
/// linear order placed first (a hash) decides nothing.
fn target_party(
    state: &RegionState,
    dag: &Dag<'_>,
    revoked: &Revoked,
    i: usize,
    p: &PartyName,
) -> Result<bool, Rejection> {
    let party = state
        .parties
        .get(p)
        .ok_or(Rejection::Invalid("unknown or removed party"))?;
    if party.removed && revoked.party_removed(p, |by| !dag.is_ancestor(by, i)) {
        return Err(Rejection::Invalid("unknown or removed party"));
    }
    Ok(party.removed)
}

/// Applies a revocation that stands only as one side of a mutual revocation and
/// whose effect is narrowed to removing `devices` (the authors of the revocations it
/// is mutual with), without cutoffs: a revoked device that backdates a party removal
/// or a demotion of whoever revoked it takes only that device with it.
fn apply_narrowed(
    state: &mut RegionState,
    dag: &Dag<'_>,
    revoked: &mut Revoked,
    i: usize,
    devices: &BTreeSet<NodeId>,
) -> Result<Applied, Rejection> {
    let auth = authority(state, dag, revoked, i)?;
    let mut needs_admin = false;
    for d in devices {
        let Some(dev) = state.devices.get_mut(d) else {
            continue;
        };
        needs_admin |= dev.party != auth.party;
        if needs_admin && !auth.admin {
            return Err(Rejection::NotAdmin);
        }
        dev.removed = true;
        revoked.devices.entry(*d).or_default().push(i);
    }
    Ok(Applied::new(&auth, needs_admin))
}

/// Registers a document (`CreateDoc`, `CreateDocument`): owned by its creator's
/// party, under an id no document has, readable and writable by parties of the
/// region.
fn create_doc(
    state: &mut RegionState,
    dag: &Dag<'_>,
    revoked: &Revoked,
    i: usize,
    auth: &Authority,
    DocCreation {
        doc,
        kind,
        owner,
        readers,
        writers,
    }: DocCreation<'_>,
) -> Result<Applied, Rejection> {
    if *owner != auth.party {
        return Err(Rejection::NotAuthorised(
            "a document's owner is its creator's party",
        ));
    }
    if state.docs.contains_key(doc) {
        return Err(Rejection::Invalid("document id is taken"));
    }
    for p in readers.iter().chain(writers) {
        target_party(state, dag, revoked, i, p)?;
    }
    let (readers, writers) = closed_acl(owner, readers, writers);
    state.docs.insert(
        *doc,
        DocAcl {
            kind,
            owner: owner.clone(),
            readers,
            writers,
            everyone_reads: false,
            everyone_writes: false,
        },
    );
    Ok(Applied::new(auth, false))
}

fn apply(
    state: &mut RegionState,
    dag: &Dag<'_>,
    revoked: &mut Revoked,
    i: usize,
) -> Result<Applied, Rejection> {
    let op = dag.ops[i];
    let hash = op.hash();
    let auth = authority(state, dag, revoked, i)?;
    let need_admin = |auth: &Authority| {
        if auth.admin {
            Ok(())
        } else {
            Err(Rejection::NotAdmin)
        }
    };
    match &op.op().body {
        OpBody::CreateRegion { .. } => Err(Rejection::Invalid("a region has one create-region op")),
        OpBody::AddParty { party, role } => {
            need_admin(&auth)?;
            if state.parties.contains_key(party) {
                return Err(Rejection::Invalid("party name is taken"));
            }
            state.parties.insert(
                party.clone(),
                PartyState {
                    role: *role,
                    admin: false,
                    admin_since: None,
                    removed: false,
                    display_name: None,
                },
            );
            Ok(Applied::new(&auth, true))
        }
        OpBody::AddDevice {
            party,
            device,
            age_recipient,
        } => {
            let removed = target_party(state, dag, revoked, i, party)?;
            let own = auth.party == *party;
            if !own {
                need_admin(&auth)?;
            }
            if state.devices.contains_key(device) {
                return Err(Rejection::Invalid(
                    "device is already known (removed devices never return)",
                ));
            }
            if removed {
                // Added to a party removed concurrently: removed with it (for the ops
                // that saw that removal); the removal excludes this op once sure.
                revoked
                    .devices
                    .insert(*device, revoked.party_removals(party));
            }
            state.devices.insert(
                *device,
                DeviceState {
                    party: party.clone(),
                    age_recipient: age_recipient.clone(),
                    added_by: hash,
                    removed,
                    addrs: vec![],
                    dossier_relay: false,
                },
            );
            Ok(Applied::new(&auth, !own))
        }
        OpBody::RemoveDevice { device, cutoffs } => {
            let target = state
                .devices
                .get(device)
                .ok_or(Rejection::Invalid("unknown device"))?;
            let own = target.party == auth.party;
            if !own {
                need_admin(&auth)?;
            }
            // Removing an already removed device changes its state only through its
            // cutoffs (e.g. after it removed itself with generous ones), but it is
            // accepted all the same: its exclusion of the device's concurrent ops
            // must not depend on whether another removal (say, the device's own,
            // backdated) was placed first.
            if let Some(d) = state.devices.get_mut(device) {
                d.removed = true;
                revoked.devices.entry(*device).or_default().push(i);
            }
            merge_cutoffs(state, cutoffs.iter());
            Ok(Applied::new(&auth, !own))
        }
        OpBody::SetAdmin { party, admin } => {
            need_admin(&auth)?;
            if !admin && state.parties.get(party).is_some_and(|p| p.removed) {
                // A demotion of a party already removed (concurrently, say): accepted
                // as a no-op and recorded, like a second removal, so that whether it
                // counts does not depend on which of the two the linear order placed
                // first (a hash).
                if let Some(p) = state.parties.get(party) {
                    revoked.revoke_party(party, p, i, false);
                }
                return Ok(Applied::new(&auth, true));
            }
            if target_party(state, dag, revoked, i, party)? {
                // A grant to a party removed concurrently: the state keeps the party
                // removed, but an op that saw this grant and not the removal counts
                // it (the party's grants before each revocation the grant had not
                // seen), and the removal excludes it once sure.
                if let Some(revs) = revoked.parties.get_mut(party) {
                    for r in revs.iter_mut().filter(|r| !dag.is_ancestor(r.by, i)) {
                        r.before.push(hash);
                    }
                }
                return Ok(Applied::new(&auth, true));
            }
            if !admin
                && seen_admins(state, dag, revoked, i)
                    .iter()
                    .all(|p| *p == party)
            {
                return Err(Rejection::Invalid(
                    "the region must keep at least one admin party",
                ));
            }
            if let Some(p) = state.parties.get_mut(party) {
                if !admin {
                    // Every demotion is recorded, also of a party the linear order
                    // had already demoted (concurrently, say): an op that saw this
                    // one and not the other counts the party as demoted.
                    revoked.revoke_party(party, p, i, false);
                }
                // Re-granting admin to an admin keeps the original grant, so that the
                // party's concurrent admin ops stay valid, and adds this one: an op
                // that saw it and not the first is admin too.
                if *admin && p.admin {
                    revoked
                        .regrants
                        .entry(party.clone())
                        .or_default()
                        .push(hash);
                } else {
                    p.admin = *admin;
                    p.admin_since = admin.then_some(hash);
                }
            }
            Ok(Applied::new(&auth, true))
        }
        OpBody::RemoveParty { party, cutoffs } => {
            need_admin(&auth)?;
            if state.parties.get(party).is_some_and(|p| p.removed) {
                // Already removed (concurrently, say): accepted as a no-op, so that
                // its exclusion of the party's concurrent ops still holds, and
                // recorded, so that an op that saw this removal and not the other
                // one counts the party as removed.
                if let Some(p) = state.parties.get(party) {
                    revoked.revoke_party(party, p, i, true);
                }
                for (id, _) in state.devices.iter().filter(|(_, d)| &d.party == party) {
                    revoked.devices.entry(*id).or_default().push(i);
                }
                return Ok(Applied::new(&auth, true));
            }
            target_party(state, dag, revoked, i, party)?;
            if seen_admins(state, dag, revoked, i)
                .iter()
                .all(|p| *p == party)
            {
                return Err(Rejection::Invalid(
                    "the region must keep at least one admin party",
                ));
            }
            if cutoffs
                .iter()
                .any(|c| state.devices.get(&c.device).map(|d| &d.party) != Some(party))
            {
                return Err(Rejection::Invalid(
                    "a cutoff names a device of another party",
                ));
            }
            if let Some(p) = state.parties.get_mut(party) {
                revoked.revoke_party(party, p, i, true);
                p.removed = true;
                p.admin = false;
            }
            for (id, d) in state.devices.iter_mut().filter(|(_, d)| &d.party == party) {
                d.removed = true;
                revoked.devices.entry(*id).or_default().push(i);
            }
            merge_cutoffs(state, cutoffs.iter());
            Ok(Applied::new(&auth, true))
        }
        body @ (OpBody::CreateDoc { .. } | OpBody::CreateDocument { .. }) => {
            match body.doc_creation() {
                Some(created) => create_doc(state, dag, revoked, i, &auth, created),
                None => Err(Rejection::Invalid("not a document creation")),
            }
        }
        OpBody::SetAcl {
            doc,
            readers,
            writers,
            cutoffs,
        } => {
            let acl = state
                .docs
                .get(doc)
                .ok_or(Rejection::Invalid("unknown document"))?;
            let own = acl.owner == auth.party;
            if !own {
                need_admin(&auth)?;
            }
            for p in readers.iter().chain(writers) {
                target_party(state, dag, revoked, i, p)?;
            }
            let (readers, writers) = closed_acl(&acl.owner, readers, writers);
            if let Some(acl) = state.docs.get_mut(doc) {
                acl.readers = readers;
                acl.writers = writers;
            }
            merge_cutoffs(state, cutoffs.iter().filter(|c| c.doc == *doc));
            Ok(Applied::new(&auth, !own))
        }
        OpBody::SetAudience {
            doc,
            everyone_reads,
            everyone_writes,
            cutoffs,
        } => {
            let acl = state
                .docs
                .get_mut(doc)
                .ok_or(Rejection::Invalid("unknown document"))?;
            let own = acl.owner == auth.party;
            if !own {
                need_admin(&auth)?;
            }
            acl.everyone_reads = *everyone_reads;
            acl.everyone_writes = *everyone_writes;
            merge_cutoffs(state, cutoffs.iter().filter(|c| c.doc == *doc));
            Ok(Applied::new(&auth, !own))
        }
        OpBody::SetPartyName {
            party,
            display_name,
        } => {
            target_party(state, dag, revoked, i, party)?;
            let own = auth.party == *party;
            if !own {
                need_admin(&auth)?;
            }
            let key = crate::text::sameness_key(display_name);
            if state.parties.iter().any(|(name, p)| {
                name != party
                    && !p.removed
                    && p.display_name
                        .as_deref()
                        .is_some_and(|n| crate::text::sameness_key(n) == key)
            }) {
                return Err(Rejection::Invalid("another party has this display name"));
            }
            if let Some(p) = state.parties.get_mut(party) {
                p.display_name = Some(display_name.clone());
            }
            Ok(Applied::new(&auth, !own))
        }
        OpBody::SetAddrs { addrs } => {
            // A device speaks only for itself (`authority` checked it is active).
            if let Some(d) = state.devices.get_mut(&op.op().author) {
                d.addrs.clone_from(addrs);
            }
            Ok(Applied::new(&auth, false))
        }
        OpBody::SetDossierRelay { device, relay } => {
            need_admin(&auth)?;
            // Judged as the op saw it, like a party it names (`target_party`): a
            // designation of a device removed concurrently is harmless (a removed
            // device relays nothing) and stays.
            let dev = state
                .devices
                .get(device)
                .ok_or(Rejection::Invalid("unknown or removed device"))?;
            if dev.removed && revoked.device_removed(device, |by| !dag.is_ancestor(by, i)) {
                return Err(Rejection::Invalid("unknown or removed device"));
            }
            target_party(state, dag, revoked, i, &dev.party)?;
            if let Some(d) = state.devices.get_mut(device) {
                d.dossier_relay = *relay;
            }
            Ok(Applied::new(&auth, true))
        }
        OpBody::Approve {
            doc,
            heads,
            comment,
        } => {
            // Only a party that may read the plan can consent to it; the heads are
            // bound by the signature, whether this node has them is the reader's
            // concern (an approval can arrive before the changes it names).
            if !state.docs.contains_key(doc) {
                return Err(Rejection::Invalid("unknown document"));
            }
            if !state.may_read(doc, &auth.party) {
                return Err(Rejection::NotAuthorised(
                    "only a party that reads a plan can approve it",
                ));
            }
            state.approvals.entry(*doc).or_default().insert(
                auth.party.clone(),
                Approval {
                    heads: heads.clone(),
                    device: op.op().author,
                    time: op.op().time,
                    comment: comment.clone(),
                    op: hash,
                },
            );
            Ok(Applied::new(&auth, false))
        }
    }
}
