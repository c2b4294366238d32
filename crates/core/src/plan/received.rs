//! What a plan change must keep to before any node accepts it, checked on the change
//! alone (no document state), like a signature: a writer may edit a plan's content,
//! never its identity or its structure, and no change may cost a reader more than
//! the editor itself would ever produce.
//!
//! The rules (docs/SCHEMA.md, "Changes from other nodes"):
//! - a change is at most [`MAX_CHANGE_BYTES`] long;
//! - `type`, `kind` and `owner` at the root are written only by the change that
//!   creates the plan (sequence number 1, no dependencies, by a device of the owner
//!   party);
//! - `schema` at the root is written by that change or set to exactly
//!   [`super::schema::PLAN_SCHEMA_VERSION`] (the in-place upgrade);
//! - the root containers `sections`, `agreements` and `comments` are created only by
//!   the creating change or by an upgrading change (one that sets `schema`), and
//!   never overwritten with a value;
//! - nothing at the root is deleted;
//! - a `rank` below the root is written only as a valid section rank
//!   ([`super::order::is_valid_rank`]), or deleted;
//! - objects nest at most [`MAX_NEW_DEPTH`] deep within one change (a chain of
//!   100,000 nested maps made every reader overflow its stack), and at most
//!   [`MAX_DEPTH`] below the root over all changes ([`Nesting`], checked where the
//!   document is at hand: when a node loads the plan), and a change opens at
//!   most [`MAX_MARKS_PER_CHANGE`] marks (thousands of nested marks made rendering
//!   take seconds, growing about cubically);
//! - what one device writes into one plan over all its changes is bounded too
//!   ([`Budget`], checked where the document is at hand, like [`Nesting`]): at most
//!   [`MAX_DEVICE_OPS`] operations, [`MAX_DEVICE_BYTES`] bytes of changes, and
//!   [`MAX_DEVICE_MARKS_PER_TEXT`] marks in any one text object, so that many changes,
//!   each within the limits above, cannot add up to a plan that takes every reader
//!   minutes and gigabytes.
//!
//! ```
//! use automerge::{AutoCommit, ROOT, transaction::Transactable};
//! use regiosync_core::plan::received::{check_change, ChangeOutsideSchema};
//!
//! let mut doc = AutoCommit::new();
//! doc.put(ROOT, "title", "Jeugdplan").unwrap();
//! doc.commit();
//! doc.put(ROOT, "owner", "een-andere-partij").unwrap();
//! doc.commit();
//! let changes = doc.get_changes(&[]);
//! assert_eq!(check_change(&changes[0], true), Ok(()));
//! assert_eq!(check_change(&changes[1], true), Err(ChangeOutsideSchema::Identity("owner")));
//! ```

use std::collections::HashMap;

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Change, ScalarValue};

use super::schema::PLAN_SCHEMA_VERSION;

/// Largest plan change accepted, in bytes (a section holds at most 1 MiB of text; a
/// change rewriting a few of them fits).
pub const MAX_CHANGE_BYTES: usize = 4 * 1024 * 1024;
/// Deepest chain of objects one change may create inside each other (the schema's
/// deepest is about 6: root, sections, a section, its text, a block, its attributes).
pub const MAX_NEW_DEPTH: usize = 16;
/// Most marks (bold, links, comment anchors) one change may open.
pub const MAX_MARKS_PER_CHANGE: usize = 1024;
/// Deepest an object may sit in a plan, counted from the root (the root's fields are
/// at depth 1), whatever number of changes built the chain: see [`Nesting`].
pub const MAX_DEPTH: usize = 16;

/// Most operations one device may add to one plan over all its changes (a typed
/// character is one; a rewrite of a section deletes and inserts one per character).
/// An honest plan of the bench's large workload (1,000 transactions of 100
/// insertions) is 100,000; this is 40 times that, or four complete rewrites of a
/// section at its 1 MiB limit.
pub const MAX_DEVICE_OPS: u64 = 4 << 20;
/// Most bytes of changes one device may add to one plan over all its changes (each
/// section edit also stores the section's whole text once, in its `written` record:
/// this is 3,000 edits of a 20 KiB section).
pub const MAX_DEVICE_BYTES: u64 = 64 << 20;
/// Most marks one device may open in one text object (one section) over all its
/// changes. The editor opens one per bold, italic or link run it (re)writes; nested
/// marks make rendering grow about cubically (5,000 took 12 s).
pub const MAX_DEVICE_MARKS_PER_TEXT: u64 = 2048;

/// Root keys that name what a plan is: set once, by the creating change.
const IDENTITY: [&str; 3] = ["type", "kind", "owner"];
/// Root containers of a plan.
const CONTAINERS: [&str; 3] = ["sections", "agreements", "comments"];

/// Why a received plan change is refused.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error, serde::Serialize,
)]
#[non_exhaustive]
pub enum ChangeOutsideSchema {
    /// Larger than [`MAX_CHANGE_BYTES`].
    #[error("the change is larger than {MAX_CHANGE_BYTES} bytes")]
    TooLarge,
    /// Rewrites what the plan is (its type, kind or owner) after its creation.
    #[error("the change rewrites the plan's {0}, which only its creation sets")]
    Identity(&'static str),
    /// Sets a schema version other than this one.
    #[error("the change sets a schema version other than {PLAN_SCHEMA_VERSION}")]
    SchemaVersion,
    /// Replaces, overwrites or deletes the plan's structure.
    #[error("the change replaces or deletes the plan's {0}")]
    Structure(&'static str),
    /// Deletes a key of the plan's root.
    #[error("the change deletes a field of the plan's root")]
    RootDelete,
    /// Nests objects deeper than [`MAX_NEW_DEPTH`].
    #[error("the change nests objects more than {MAX_NEW_DEPTH} deep")]
    TooDeep,
    /// Opens more than [`MAX_MARKS_PER_CHANGE`] marks.
    #[error("the change opens more than {MAX_MARKS_PER_CHANGE} marks")]
    TooManyMarks,
    /// Would take its device past [`MAX_DEVICE_OPS`] operations or [`MAX_DEVICE_BYTES`]
    /// bytes in this plan ([`Budget`]), or builds on a change that did.
    #[error(
        "the change takes its device past {MAX_DEVICE_OPS} operations or {MAX_DEVICE_BYTES} bytes written into this plan"
    )]
    DeviceBudget,
    /// Would take its device past [`MAX_DEVICE_MARKS_PER_TEXT`] marks in one text of
    /// this plan ([`Budget`]), or builds on a change that did.
    #[error(
        "the change takes its device past {MAX_DEVICE_MARKS_PER_TEXT} marks in one text of this plan"
    )]
    DeviceMarks,
    /// Automerge could not expand the change's operations.
    #[error("the change's operations cannot be read")]
    Undecodable,
    /// Writes a `rank` that is not a valid section rank ([`super::order`]).
    #[error("the change writes a section rank that is not a short string of 0-9a-z")]
    BadRank,
}

/// Checks a plan change against the rules of this module. `owner_device`: whether
/// its author is a device of the plan's owner party (only such a device's creating
/// change may write the plan's identity).
pub fn check_change(change: &Change, owner_device: bool) -> Result<(), ChangeOutsideSchema> {
    if change.raw_bytes().len() > MAX_CHANGE_BYTES {
        return Err(ChangeOutsideSchema::TooLarge);
    }
    // The change parsed, so Automerge validated it; its expansion documents panics
    // for invalid input all the same: a panic here refuses the change instead of
    // taking the node down.
    let expanded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode()))
        .map_err(|_| ChangeOutsideSchema::Undecodable)?;
    let creating = owner_device && change.seq() == 1 && change.deps().is_empty();
    let upgrading = expanded.operations.iter().any(|op| {
        matches!(&op.obj, ObjectId::Root)
            && matches!(&op.key, Key::Map(k) if k == "schema")
            && matches!(&op.action, OpType::Put(ScalarValue::Uint(v)) if *v == PLAN_SCHEMA_VERSION)
    });
    let start = change.start_op().get();
    let actor = change.actor_id();
    // Depth of the objects made in this change, by their op counter.
    let mut depth: HashMap<u64, usize> = HashMap::new();
    let mut marks = 0usize;
    for (i, op) in expanded.operations.iter().enumerate() {
        let counter = start + i as u64;
        if let ObjectId::Root = &op.obj
            && let Key::Map(key) = &op.key
        {
            let key = key.as_str();
            if let Some(k) = IDENTITY.iter().find(|k| **k == key) {
                if !creating {
                    return Err(ChangeOutsideSchema::Identity(k));
                }
            } else if key == "schema" {
                let exact = matches!(&op.action, OpType::Put(ScalarValue::Uint(v)) if *v == PLAN_SCHEMA_VERSION);
                if !creating && !exact {
                    return Err(ChangeOutsideSchema::SchemaVersion);
                }
            } else if let Some(k) = CONTAINERS.iter().find(|k| **k == key) {
                let make = matches!(&op.action, OpType::Make(_));
                if !make || !(creating || upgrading) {
                    return Err(ChangeOutsideSchema::Structure(k));
                }
            }
            if matches!(&op.action, OpType::Delete) {
                return Err(ChangeOutsideSchema::RootDelete);
            }
        }
        if !matches!(&op.obj, ObjectId::Root)
            && matches!(&op.key, Key::Map(k) if k == "rank")
            && !super::order::is_valid_rank_op(&op.action)
        {
            return Err(ChangeOutsideSchema::BadRank);
        }
        match &op.action {
            OpType::Make(_) => {
                let parent = match &op.obj {
                    ObjectId::Id(id) if id.1 == *actor => depth.get(&id.0).copied().unwrap_or(0),
                    _ => 0,
                };
                if parent + 1 > MAX_NEW_DEPTH {
                    return Err(ChangeOutsideSchema::TooDeep);
                }
                depth.insert(counter, parent + 1);
            }
            OpType::MarkBegin(_) => {
                marks += 1;
                if marks > MAX_MARKS_PER_CHANGE {
                    return Err(ChangeOutsideSchema::TooManyMarks);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The depth of every object in a plan as its changes are applied, so that nesting
/// built up over many changes (each within [`MAX_NEW_DEPTH`]) is bounded too: a
/// change that would put an object deeper than [`MAX_DEPTH`] below the root is
/// refused, and so is what builds on it. Objects made by earlier changes that the
/// tracker has not seen (a saved snapshot) are looked up in the document they were
/// applied to, walking at most [`MAX_DEPTH`] parents.
///
/// ```
/// use automerge::{AutoCommit, ObjType, ROOT, transaction::Transactable};
/// use regiosync_core::plan::received::{Nesting, MAX_DEPTH};
///
/// let mut doc = AutoCommit::new();
/// let mut obj = doc.put_object(ROOT, "a", ObjType::Map).unwrap();
/// let mut nesting = Nesting::default();
/// let base = automerge::Automerge::new();
/// let mut refused = 0;
/// for _ in 0..MAX_DEPTH + 4 {
///     doc.commit();
///     obj = doc.put_object(&obj, "a", ObjType::Map).unwrap();
/// }
/// doc.commit();
/// for change in doc.get_changes(&[]) {
///     if nesting.admit(&base, &change).is_err() {
///         refused += 1;
///     }
/// }
/// assert_eq!(refused, 5);
/// ```
#[derive(Default, Debug)]
pub struct Nesting {
    /// Depth of the objects made by admitted changes, by (counter, actor).
    depth: HashMap<(u64, Vec<u8>), usize>,
    /// Changes refused, and what builds on them.
    refused: std::collections::HashSet<[u8; 32]>,
}

impl Nesting {
    /// Admits `change` if neither it nor a change it depends on puts an object
    /// deeper than [`MAX_DEPTH`]; `base` is the document the admitted changes are
    /// applied to (for objects made before the tracker started).
    pub fn admit(
        &mut self,
        base: &automerge::Automerge,
        change: &Change,
    ) -> Result<(), ChangeOutsideSchema> {
        self.admit_expanded(base, change, expand(change).as_ref())
    }

    /// [`Nesting::admit`] with the change's operations expanded once by the caller
    /// ([`expand`]; `None`: it cannot be expanded), who needs them for other checks
    /// too: expanding a change costs as much as the checks together.
    pub fn admit_expanded(
        &mut self,
        base: &automerge::Automerge,
        change: &Change,
        expanded: Option<&automerge::legacy::Change>,
    ) -> Result<(), ChangeOutsideSchema> {
        let refuse = |this: &mut Self| {
            this.refused.insert(change.hash().0);
            Err(ChangeOutsideSchema::TooDeep)
        };
        if change.deps().iter().any(|d| self.refused.contains(&d.0)) {
            return refuse(self);
        }
        let Some(expanded) = expanded else {
            self.refused.insert(change.hash().0);
            return Err(ChangeOutsideSchema::Undecodable);
        };
        let start = change.start_op().get();
        let actor = change.actor_id().to_bytes().to_vec();
        let mut made = Vec::new();
        for (i, op) in expanded.operations.iter().enumerate() {
            if !matches!(op.action, OpType::Make(_)) {
                continue;
            }
            let parent = match &op.obj {
                ObjectId::Root => 0,
                ObjectId::Id(id) => {
                    let key = (id.0, id.1.to_bytes().to_vec());
                    match made.iter().find(|(k, _)| *k == key) {
                        Some((_, d)) => *d,
                        None => match self.depth.get(&key) {
                            Some(d) => *d,
                            None => depth_in(base, id),
                        },
                    }
                }
            };
            if parent + 1 > MAX_DEPTH {
                return refuse(self);
            }
            made.push(((start + i as u64, actor.clone()), parent + 1));
        }
        self.depth.extend(made);
        Ok(())
    }
}

/// What each device has written into a plan, as its changes are applied, so that
/// many changes, each within the per-change limits, cannot add up to a plan that
/// costs every reader minutes and gigabytes: a change that would take its device
/// past [`MAX_DEVICE_OPS`], [`MAX_DEVICE_BYTES`] or [`MAX_DEVICE_MARKS_PER_TEXT`] is
/// refused, and so is what builds on it (as with [`Nesting`]).
///
/// The budget is per device (Automerge actor), not per plan: a device's changes
/// form one chain (each names its previous one), so whether one of them passes
/// depends only on that device's earlier changes, never on the order in which
/// concurrent changes of others arrive. Every node therefore leaves out the same
/// changes, and two honest devices writing at once never push each other out. A
/// plan as a whole holds at most the budget times its writing devices.
///
/// Cost: [`Budget::admit`] is O(operations of the change) (one expansion to count
/// its marks) plus a hash lookup per device and per marked text; nothing rescans
/// the document. A tracker for a document loaded from a snapshot is built once
/// from that document's changes ([`Budget::record`]) and then carried along.
///
/// ```
/// use automerge::{AutoCommit, ObjType, ROOT, transaction::Transactable};
/// use automerge::marks::{ExpandMark, Mark};
/// use regiosync_core::plan::received::{Budget, ChangeOutsideSchema};
/// use regiosync_core::plan::received::{MAX_DEVICE_MARKS_PER_TEXT, MAX_MARKS_PER_CHANGE};
///
/// let mut doc = AutoCommit::new();
/// let text = doc.put_object(ROOT, "text", ObjType::Text).unwrap();
/// doc.splice_text(&text, 0, 0, &"x".repeat(4096)).unwrap();
/// doc.commit();
/// for _ in 0..3 {
///     for i in 0..MAX_MARKS_PER_CHANGE {
///         let mark = Mark::new("strong".into(), true, i, 4096 - i);
///         doc.mark(&text, mark, ExpandMark::None).unwrap();
///     }
///     doc.commit();
/// }
/// let mut budget = Budget::default();
/// let verdicts: Vec<_> = doc.get_changes(&[]).iter().map(|c| budget.admit(c)).collect();
/// assert_eq!(MAX_DEVICE_MARKS_PER_TEXT as usize, 2 * MAX_MARKS_PER_CHANGE);
/// assert_eq!(verdicts, [Ok(()), Ok(()), Ok(()), Err(ChangeOutsideSchema::DeviceMarks)]);
/// ```
#[derive(Clone, Debug)]
pub struct Budget {
    limits: Limits,
    /// Operations and bytes written, by device (actor).
    spent: HashMap<Vec<u8>, (u64, u64)>,
    /// Marks opened, by device and text object (counter and actor of the object's
    /// creation; the root is (0, [])).
    marks: HashMap<(Vec<u8>, TextKey), u64>,
    /// Changes refused, and what builds on them, with the reason.
    refused: HashMap<[u8; 32], ChangeOutsideSchema>,
}

/// A text object: the counter and actor of the op that made it ((0, []) for the root).
type TextKey = (u64, Vec<u8>);

/// The bounds a [`Budget`] holds devices to (the constants of this module, or
/// smaller ones in tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub struct Limits {
    /// [`MAX_DEVICE_OPS`].
    pub ops: u64,
    /// [`MAX_DEVICE_BYTES`].
    pub bytes: u64,
    /// [`MAX_DEVICE_MARKS_PER_TEXT`].
    pub marks: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self::with_limits(Limits {
            ops: MAX_DEVICE_OPS,
            bytes: MAX_DEVICE_BYTES,
            marks: MAX_DEVICE_MARKS_PER_TEXT,
        })
    }
}

impl Budget {
    /// A budget with other bounds (tests: the real ones take millions of operations
    /// to reach).
    #[doc(hidden)]
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            spent: HashMap::new(),
            marks: HashMap::new(),
            refused: HashMap::new(),
        }
    }

    /// Admits `change` if neither it nor a change it depends on takes its device
    /// past a bound, and counts it.
    pub fn admit(&mut self, change: &Change) -> Result<(), ChangeOutsideSchema> {
        self.admit_expanded(change, expand(change).as_ref())
    }

    /// [`Budget::admit`] with the change's operations expanded once by the caller
    /// ([`expand`]; `None`: it cannot be expanded).
    pub fn admit_expanded(
        &mut self,
        change: &Change,
        expanded: Option<&automerge::legacy::Change>,
    ) -> Result<(), ChangeOutsideSchema> {
        if let Some(why) = change
            .deps()
            .iter()
            .find_map(|d| self.refused.get(&d.0).copied())
        {
            self.refused.insert(change.hash().0, why);
            return Err(why);
        }
        let Some(marks) = expanded.map(marks_of) else {
            self.refused
                .insert(change.hash().0, ChangeOutsideSchema::Undecodable);
            return Err(ChangeOutsideSchema::Undecodable);
        };
        let actor = change.actor_id().to_bytes().to_vec();
        let (ops, bytes) = self.spent.get(&actor).copied().unwrap_or((0, 0));
        let ops = ops.saturating_add(change.len() as u64);
        let bytes = bytes.saturating_add(change.raw_bytes().len() as u64);
        let mut verdict = Ok(());
        if ops > self.limits.ops || bytes > self.limits.bytes {
            verdict = Err(ChangeOutsideSchema::DeviceBudget);
        } else if marks.iter().any(|(obj, n)| {
            let had = self.marks.get(&(actor.clone(), obj.clone())).copied();
            had.unwrap_or(0).saturating_add(*n) > self.limits.marks
        }) {
            verdict = Err(ChangeOutsideSchema::DeviceMarks);
        }
        if let Err(why) = verdict {
            self.refused.insert(change.hash().0, why);
            return Err(why);
        }
        self.count(actor, ops, bytes, marks);
        Ok(())
    }

    /// Counts a change that is in the document already (built from a snapshot's
    /// changes): never refuses, whatever the totals come to.
    pub fn record(&mut self, change: &Change) {
        let actor = change.actor_id().to_bytes().to_vec();
        let (ops, bytes) = self.spent.get(&actor).copied().unwrap_or((0, 0));
        let ops = ops.saturating_add(change.len() as u64);
        let bytes = bytes.saturating_add(change.raw_bytes().len() as u64);
        self.count(actor, ops, bytes, marks_by_text(change).unwrap_or_default());
    }

    fn count(&mut self, actor: Vec<u8>, ops: u64, bytes: u64, marks: HashMap<TextKey, u64>) {
        for (obj, n) in marks {
            let e = self.marks.entry((actor.clone(), obj)).or_insert(0);
            *e = e.saturating_add(n);
        }
        self.spent.insert(actor, (ops, bytes));
    }
}

/// A change's operations, expanded (`None` if it cannot be: Automerge documents
/// panics for invalid input, which refuse the change here instead of taking the
/// node down).
pub fn expand(change: &Change) -> Option<automerge::legacy::Change> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode())).ok()
}

/// The marks a change opens, by text object; `None` if it cannot be expanded.
fn marks_by_text(change: &Change) -> Option<HashMap<TextKey, u64>> {
    expand(change).as_ref().map(marks_of)
}

/// The marks the expanded operations open, by text object.
fn marks_of(expanded: &automerge::legacy::Change) -> HashMap<TextKey, u64> {
    let mut marks: HashMap<TextKey, u64> = HashMap::new();
    for op in &expanded.operations {
        if matches!(op.action, OpType::MarkBegin(_)) {
            let obj = match &op.obj {
                ObjectId::Root => (0, Vec::new()),
                ObjectId::Id(id) => (id.0, id.1.to_bytes().to_vec()),
            };
            *marks.entry(obj).or_insert(0) += 1;
        }
    }
    marks
}

/// The depth of an object of `doc` (0 if it is not there), walking at most
/// [`MAX_DEPTH`] + 1 parents: a deeper chain only ever counts as too deep.
fn depth_in(doc: &automerge::Automerge, id: &automerge::legacy::OpId) -> usize {
    use automerge::ReadDoc;
    doc.import_obj(&format!("{}@{}", id.0, id.1))
        .and_then(|obj| doc.parents(obj))
        .map(|p| p.take(MAX_DEPTH + 1).count())
        .unwrap_or(0)
}

/// Fuzz harness (cargo-fuzz target `plan_changes`, and a deterministic run in
/// `cargo test`): `bytes` drive a writer that edits a plan with the raw Automerge API,
/// the way a hostile writer's own software could (root fields, nested objects, text,
/// marks, deletions, in any place); every change it makes goes through
/// [`check_change`], [`Nesting`] and a [`Budget`], and the plan with the accepted ones
/// through `read_plan` and
/// both exports. Panics (and stack overflows) are the findings.
#[doc(hidden)]
pub fn fuzz_plan_changes(bytes: &[u8]) {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};

    let mut base = AutoCommit::new();
    let Ok(owner) = crate::id::PartyName::new("roc-x") else {
        return;
    };
    if super::schema::init_plan(&mut base, super::PlanKind::Jeugdplan, "Plan", &owner).is_err() {
        return;
    }
    base.commit();
    let mut accepted = base.fork();
    let mut writer = base.fork();
    writer.set_actor(automerge::ActorId::from(&[7u8; 32][..]));
    let keys = [
        "type",
        "kind",
        "owner",
        "schema",
        "title",
        "sections",
        "agreements",
        "comments",
        "text",
        "id",
        "rank",
    ];
    let mut objs = vec![ROOT];
    let sections = match writer.get(ROOT, "sections") {
        Ok(Some((_, id))) => id,
        _ => return,
    };
    if let Ok(Some((_, s))) = writer.get(&sections, 0)
        && let Ok(Some((_, t))) = writer.get(&s, "text")
    {
        objs.push(s);
        objs.push(t);
    }
    for chunk in bytes.chunks(4).take(256) {
        let [op, a, b, c] = [0, 1, 2, 3].map(|i| chunk.get(i).copied().unwrap_or(0));
        let obj = objs[a as usize % objs.len()].clone();
        let key = keys[b as usize % keys.len()];
        let _ = match op % 9 {
            0 => writer.put(&obj, key, format!("v{c}")).map(|_| ()),
            1 => writer.put(&obj, key, c as u64).map(|_| ()),
            2 => writer.delete(&obj, key),
            3 => writer
                .put_object(&obj, key, ObjType::Map)
                .map(|o| objs.push(o)),
            4 => {
                let mut o = obj;
                for _ in 0..(c as usize * 8) {
                    match writer.put_object(&o, "n", ObjType::Map) {
                        Ok(n) => o = n,
                        Err(_) => break,
                    }
                }
                Ok(())
            }
            5 => {
                let len = writer.length(&obj);
                writer.splice_text(
                    &obj,
                    (b as usize).min(len),
                    0,
                    &"x".repeat(c as usize % 64 + 1),
                )
            }
            6 => {
                let len = writer.length(&obj);
                let start = (b as usize).min(len);
                let end = (start + c as usize % 16 + 1).min(len);
                writer
                    .mark(
                        &obj,
                        automerge::marks::Mark::new(
                            ["bold", "italic", "link", "comment"][c as usize % 4].into(),
                            format!("https://x/{c}"),
                            start,
                            end,
                        ),
                        automerge::marks::ExpandMark::None,
                    )
                    .map(|_| ())
            }
            7 => writer
                .put_object(&obj, key, ObjType::Text)
                .map(|o| objs.push(o)),
            _ => {
                writer.commit();
                Ok(())
            }
        };
    }
    writer.commit();
    let mut nesting = Nesting::default();
    // Small bounds, so that inputs reach the refusals (and what builds on them).
    let mut budget = Budget::with_limits(Limits {
        ops: 2048,
        bytes: 64 * 1024,
        marks: 16,
    });
    for change in writer.get_changes(&base.get_heads()) {
        if check_change(&change, false).is_ok()
            && nesting.admit(accepted.document(), &change).is_ok()
            && budget.admit(&change).is_ok()
        {
            let _ = accepted.apply_changes([change.clone()]);
        }
    }
    if let Ok(plan) = super::schema::read_plan(&accepted) {
        let ctx = super::markdown::ExportContext {
            id: "fuzz".into(),
            version: String::new(),
            approvals: vec![],
            comments: true,
        };
        let _ = super::markdown::render(&plan, &ctx);
        let _ = super::html::render(&plan, &ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};

    fn last(doc: &mut AutoCommit) -> Change {
        doc.commit();
        doc.get_last_local_change().unwrap()
    }

    fn plan() -> AutoCommit {
        let mut doc = AutoCommit::new();
        crate::plan::schema::init_plan(
            &mut doc,
            crate::plan::PlanKind::Jeugdplan,
            "Jeugdplan",
            &crate::id::PartyName::new("roc-x").unwrap(),
        )
        .unwrap();
        doc.commit();
        doc
    }

    #[test]
    fn the_creating_change_and_ordinary_edits_pass() {
        let mut doc = plan();
        let create = doc.get_changes(&[]).into_iter().next().unwrap();
        assert_eq!(check_change(&create, true), Ok(()));
        // The same change by a device of another party may not create the plan.
        assert_eq!(
            check_change(&create, false),
            Err(ChangeOutsideSchema::Identity("type"))
        );
        doc.put(ROOT, "title", "Jeugdplan 2027").unwrap();
        assert_eq!(check_change(&last(&mut doc), true), Ok(()));
    }

    #[test]
    fn attack_a_writer_rewrites_owner_kind_type_or_schema_or_deletes_the_structure() {
        for (key, value) in [
            ("owner", ScalarValue::Str("gemeente-x".into())),
            ("kind", ScalarValue::Str("oogo-verslag".into())),
            ("type", ScalarValue::Str("iets-anders".into())),
            ("schema", ScalarValue::Uint(99)),
            ("sections", ScalarValue::Null),
        ] {
            let mut doc = plan();
            doc.put(ROOT, key, value).unwrap();
            assert!(check_change(&last(&mut doc), true).is_err(), "{key}");
        }
        for key in ["sections", "agreements", "title"] {
            let mut doc = plan();
            doc.delete(ROOT, key).unwrap();
            assert!(check_change(&last(&mut doc), true).is_err(), "delete {key}");
        }
        let mut doc = plan();
        doc.put_object(ROOT, "sections", ObjType::Map).unwrap();
        assert_eq!(
            check_change(&last(&mut doc), true),
            Err(ChangeOutsideSchema::Structure("sections"))
        );
    }

    #[test]
    fn attack_deep_nesting_and_many_marks_in_one_change_are_refused() {
        let mut doc = plan();
        let mut obj = doc.put_object(ROOT, "x", ObjType::Map).unwrap();
        for _ in 0..MAX_NEW_DEPTH + 4 {
            obj = doc.put_object(&obj, "y", ObjType::Map).unwrap();
        }
        assert_eq!(
            check_change(&last(&mut doc), true),
            Err(ChangeOutsideSchema::TooDeep)
        );
        let mut doc = plan();
        let text = doc.put_object(ROOT, "t", ObjType::Text).unwrap();
        doc.splice_text(&text, 0, 0, &"x".repeat(MAX_MARKS_PER_CHANGE + 2))
            .unwrap();
        for i in 0..=MAX_MARKS_PER_CHANGE {
            doc.mark(
                &text,
                automerge::marks::Mark::new("bold".into(), true, i, i + 1),
                automerge::marks::ExpandMark::None,
            )
            .unwrap();
        }
        assert_eq!(
            check_change(&last(&mut doc), true),
            Err(ChangeOutsideSchema::TooManyMarks)
        );
    }

    fn marked(doc: &mut AutoCommit, text: &automerge::ObjId, n: usize) -> Change {
        let len = doc.length(text);
        for i in 0..n {
            doc.mark(
                text,
                automerge::marks::Mark::new("strong".into(), true, i % len, len - i % len),
                automerge::marks::ExpandMark::None,
            )
            .unwrap();
        }
        last(doc)
    }

    #[test]
    fn attack_many_changes_each_with_the_most_marks_are_refused_past_the_devices_budget() {
        let mut doc = plan();
        let mut budget = Budget::default();
        for c in doc.get_changes(&[]) {
            budget.record(&c);
        }
        let text = doc.put_object(ROOT, "t", ObjType::Text).unwrap();
        doc.splice_text(&text, 0, 0, &"x".repeat(4096)).unwrap();
        assert_eq!(budget.admit(&last(&mut doc)), Ok(()));
        let mut other = doc.fork();
        other.set_actor(automerge::ActorId::from(&[9u8; 32][..]));
        let per_budget = (MAX_DEVICE_MARKS_PER_TEXT as usize) / MAX_MARKS_PER_CHANGE;
        for _ in 0..per_budget {
            let c = marked(&mut doc, &text, MAX_MARKS_PER_CHANGE);
            assert_eq!(check_change(&c, false), Ok(()));
            assert_eq!(budget.admit(&c), Ok(()));
        }
        // Every further change of the attacker, each within the per-change limit, is
        // refused: one more mark, and anything built on it.
        let over = marked(&mut doc, &text, 1);
        assert_eq!(check_change(&over, false), Ok(()));
        assert_eq!(budget.admit(&over), Err(ChangeOutsideSchema::DeviceMarks));
        doc.put(ROOT, "title", "later").unwrap();
        assert_eq!(
            budget.admit(&last(&mut doc)),
            Err(ChangeOutsideSchema::DeviceMarks)
        );
        // Another text of the same device, and another device in the same text, have
        // budgets of their own.
        let c = marked(&mut other, &text, 8);
        assert_eq!(budget.admit(&c), Ok(()));
        let mut fresh = doc.fork_at(&[over.deps()[0]]).unwrap();
        let second = fresh.put_object(ROOT, "u", ObjType::Text).unwrap();
        fresh.splice_text(&second, 0, 0, "abc").unwrap();
        assert_eq!(budget.admit(&last(&mut fresh)), Ok(()));
        assert_eq!(budget.admit(&marked(&mut fresh, &second, 2)), Ok(()));
    }

    #[test]
    fn attack_many_changes_each_adding_large_text_are_refused_past_the_devices_budget() {
        // The real bounds take millions of operations; the same rule with small ones.
        let limits = Limits {
            ops: 10_000,
            bytes: 1 << 20,
            marks: 64,
        };
        let mut doc = plan();
        let mut budget = Budget::with_limits(limits);
        for c in doc.get_changes(&[]) {
            budget.record(&c);
        }
        let text = doc.put_object(ROOT, "t", ObjType::Text).unwrap();
        let mut refused = 0;
        for _ in 0..8 {
            let len = doc.length(&text);
            doc.splice_text(&text, len, 0, &"x".repeat(2000)).unwrap();
            if budget.admit(&last(&mut doc)).is_err() {
                refused += 1;
            }
        }
        assert_eq!(
            refused, 4,
            "4 x 2000 insertions fit with the plan's creation, 5 do not"
        );
        // Few operations, many bytes: one long string value per change.
        let mut doc = plan();
        let mut budget = Budget::with_limits(limits);
        let big = "y".repeat(300 * 1024);
        let mut verdicts = Vec::new();
        for i in 0..4 {
            doc.put(ROOT, format!("k{i}"), big.as_str()).unwrap();
            verdicts.push(budget.admit(&last(&mut doc)));
        }
        assert_eq!(
            verdicts,
            [
                Ok(()),
                Ok(()),
                Ok(()),
                Err(ChangeOutsideSchema::DeviceBudget)
            ]
        );
    }

    #[test]
    fn a_budget_built_from_a_snapshot_refuses_what_the_running_one_refuses() {
        let limits = Limits {
            ops: 3_500,
            bytes: 1 << 20,
            marks: 64,
        };
        let mut doc = plan();
        let text = doc.put_object(ROOT, "t", ObjType::Text).unwrap();
        let mut changes = doc.get_changes(&[]);
        for _ in 0..4 {
            let len = doc.length(&text);
            doc.splice_text(&text, len, 0, &"x".repeat(1000)).unwrap();
            changes.push(last(&mut doc));
        }
        let (early, late) = changes.split_at(3);
        let mut running = Budget::with_limits(limits);
        let all: Vec<_> = changes.iter().map(|c| running.admit(c).is_ok()).collect();
        let mut resumed = Budget::with_limits(limits);
        for c in early {
            resumed.record(c);
        }
        let tail: Vec<_> = late.iter().map(|c| resumed.admit(c).is_ok()).collect();
        assert_eq!(&all[3..], &tail[..]);
        assert_eq!(all.iter().filter(|ok| !**ok).count(), 1);
    }

    /// A deterministic run of the fuzz harness over pseudo-random inputs (the
    /// cargo-fuzz target `plan_changes` runs it on whatever libFuzzer finds).
    #[test]
    fn hostile_writers_edits_never_crash_read_plan_or_the_exports() {
        let mut x: u64 = 0x2026_1206;
        for len in 0..48usize {
            let bytes: Vec<u8> = (0..len * 4)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect();
            fuzz_plan_changes(&bytes);
        }
    }

    #[test]
    fn a_writer_may_move_a_section_but_not_write_a_junk_rank() {
        use automerge::ReadDoc;
        let mut doc = plan();
        crate::plan::schema::move_section(&mut doc, "Inleiding", &crate::plan::SectionPlace::Last)
            .unwrap();
        assert_eq!(check_change(&last(&mut doc), false), Ok(()));
        let sections = match doc.get(ROOT, "sections").unwrap() {
            Some((_, id)) => id,
            None => panic!("no sections"),
        };
        let s = match doc.get(&sections, 0).unwrap() {
            Some((_, id)) => id,
            None => panic!("no section"),
        };
        doc.delete(&s, "rank").unwrap();
        assert_eq!(check_change(&last(&mut doc), false), Ok(()));
        for junk in [
            ScalarValue::Uint(7),
            ScalarValue::Null,
            ScalarValue::Str("".into()),
            ScalarValue::Str("a0".into()),
            ScalarValue::Str("<script>".into()),
            ScalarValue::Str("a".repeat(crate::plan::order::MAX_RANK_BYTES + 1).into()),
        ] {
            let mut d = doc.fork();
            d.put(&s, "rank", junk.clone()).unwrap();
            assert_eq!(
                check_change(&last(&mut d), false),
                Err(ChangeOutsideSchema::BadRank),
                "{junk:?}"
            );
        }
        let mut d = doc.fork();
        d.put_object(&s, "rank", ObjType::Text).unwrap();
        assert_eq!(
            check_change(&last(&mut d), false),
            Err(ChangeOutsideSchema::BadRank)
        );
    }

    #[test]
    fn an_upgrade_may_set_the_schema_and_create_containers() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "schema", ScalarValue::Uint(1)).unwrap();
        doc.commit();
        doc.put(ROOT, "schema", ScalarValue::Uint(PLAN_SCHEMA_VERSION))
            .unwrap();
        doc.put_object(ROOT, "comments", ObjType::List).unwrap();
        assert_eq!(check_change(&last(&mut doc), true), Ok(()));
    }
}
