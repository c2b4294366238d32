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
//!   take seconds, growing about cubically).
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
        let refuse = |this: &mut Self| {
            this.refused.insert(change.hash().0);
            Err(ChangeOutsideSchema::TooDeep)
        };
        if change.deps().iter().any(|d| self.refused.contains(&d.0)) {
            return refuse(self);
        }
        let Ok(expanded) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode()))
        else {
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
/// [`check_change`], and the plan with the accepted ones through `read_plan` and
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
    for change in writer.get_changes(&base.get_heads()) {
        if check_change(&change, false).is_ok()
            && nesting.admit(accepted.document(), &change).is_ok()
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
    use automerge::{AutoCommit, ObjType, ROOT};

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
