//! The mapping between a plan's Automerge document and the typed [`Plan`] view.
//!
//! Layout of schema version 2 (root map; the full description for other
//! implementations is docs/SCHEMA.md):
//!
//! | key | value |
//! |---|---|
//! | `type` | `"regiosync/plan"` |
//! | `schema` | uint, [`PLAN_SCHEMA_VERSION`] |
//! | `kind` | `"jeugdplan"`, `"ondersteuningsplan"`, `"vsv-programma"`, `"oogo-verslag"` |
//! | `title` | str |
//! | `owner` | str, party name |
//! | `sections` | list of maps `{id: str, title: str, text: Text, rank: str}`; `text` is rich text (block markers and marks, see [`super::richtext`]); `rank` (optional) orders them, see [`super::order`] |
//! | `agreements` | list of maps `{id, title: str, description: Text, owner: str, deadline: "YYYY-MM-DD" or null, status: str, funding: str or null, sections: map section id → true}` |
//! | `comments` | list of maps `{id, section: str, start: str cursor, end: str cursor, quote: str, author: str party, time: int, text: str, resolved: bool}` |
//!
//! **Migration.** Version 1 had no `comments`, agreements without `description`,
//! `funding` and `sections`, and plain section text. Readers of version 2 read a
//! version-1 document as it is (missing keys are empty; text without block markers is
//! Markdown source). The first version-2 write sets `schema` to 2 and creates a
//! missing container where it needs one. Two nodes may create the same container
//! concurrently (Automerge keeps both as a conflict): readers take the union of all
//! conflicting containers, so nothing written into either is lost.
//!
//! Readers reject documents that break this layout with [`PlanError::Schema`] instead of
//! guessing: a document can arrive from any peer.

use std::collections::BTreeSet;

use automerge::marks::{ExpandMark, UpdateSpansConfig};
use automerge::transaction::Transactable;
use automerge::{Cursor, MoveCursor, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use super::order;
use super::richtext::{self, BLOCK_PLACEHOLDER};
use super::{
    Agreement, AgreementStatus, Comment, Conflict, ConflictValue, MAX_SECTION_BYTES, Plan,
    PlanError, PlanKind, Section, date_format, template, validate_title,
};
use crate::docschema::{get_date_opt, get_obj, get_str, get_uint, new_local_id, violation};
use crate::id::PartyName;

/// The plan schema version this code writes (and the newest it reads).
pub const PLAN_SCHEMA_VERSION: u64 = 2;
/// The value of the root `type` key of every plan.
const TYPE_PLAN: &str = "regiosync/plan";
/// Longest comment or agreement description, in bytes.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Longest funding note, in characters.
pub const MAX_FUNDING_CHARS: usize = 1000;

/// Writes the skeleton of a new plan into an empty document, with the usual sections
/// of its kind ([`template::sections`]), empty.
pub fn init_plan<T: Transactable>(
    tx: &mut T,
    kind: PlanKind,
    title: &str,
    owner: &PartyName,
) -> Result<(), PlanError> {
    let title = validate_title("plan title", title)?;
    tx.put(ROOT, "type", TYPE_PLAN)?;
    tx.put(ROOT, "schema", ScalarValue::Uint(PLAN_SCHEMA_VERSION))?;
    tx.put(ROOT, "kind", kind.as_str())?;
    tx.put(ROOT, "title", title)?;
    tx.put(ROOT, "owner", owner.as_str())?;
    let sections = tx.put_object(ROOT, "sections", ObjType::List)?;
    tx.put_object(ROOT, "agreements", ObjType::List)?;
    tx.put_object(ROOT, "comments", ObjType::List)?;
    let titles = template::sections(kind);
    for (i, (t, rank)) in titles.iter().zip(order::spread(titles.len())).enumerate() {
        let obj = tx.insert_object(&sections, i, ObjType::Map)?;
        tx.put(&obj, "id", new_local_id("s")?.as_str())?;
        tx.put(&obj, "title", *t)?;
        tx.put_object(&obj, "text", ObjType::Text)?;
        tx.put(&obj, "rank", rank)?;
    }
    Ok(())
}

/// What [`set_section`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionEdit {
    /// The id of the section that was written.
    pub id: String,
    /// Whether the section was new (appended at the end).
    pub created: bool,
}

/// How marks grow when text is typed at their edge: bold and italic continue,
/// links do not (as in most editors).
fn spans_config() -> UpdateSpansConfig {
    UpdateSpansConfig::default()
        .with_default_expand(ExpandMark::After)
        .with_mark_expand("link", ExpandMark::None)
}

/// Sets the text of a section from Markdown, creating the section (appended at the
/// end) if no section has `section` as its title (case-insensitively). A reference
/// that looks like a section id (`s-` and 8 hex digits) must name an existing
/// section.
///
/// The text is applied as a minimal diff of text, block markers and marks
/// ([`Transactable::update_spans`]), so concurrent edits of other paragraphs survive.
pub fn set_section<T: Transactable>(
    tx: &mut T,
    section: &str,
    markdown: &str,
) -> Result<SectionEdit, PlanError> {
    if markdown.len() > MAX_SECTION_BYTES {
        return Err(PlanError::TextTooLarge(markdown.len()));
    }
    upgrade(tx)?;
    let sections = get_obj(tx, &ROOT, "sections", ObjType::List)?;
    let (obj, text_obj, id, created) = match find_section(tx, &sections, section)? {
        Some((obj, id)) => (
            obj.clone(),
            get_obj(tx, &obj, "text", ObjType::Text)?,
            id,
            false,
        ),
        None if looks_like_id(section, "s") => {
            return Err(PlanError::UnknownSection(clip(section)));
        }
        None => {
            let title = validate_title("section title", section)?;
            // Last in the order: after the last rank when every section has one;
            // otherwise unranked, which readers show after the ranked ones.
            let ranks = section_ranks(tx, &sections)?;
            let rank = match ranks
                .iter()
                .map(|s| s.rank.as_deref())
                .collect::<Option<Vec<_>>>()
            {
                Some(all) => order::between(all.into_iter().max(), None),
                None => None,
            };
            let id = new_local_id("s")?;
            let idx = tx.length(&sections);
            let obj = tx.insert_object(&sections, idx, ObjType::Map)?;
            tx.put(&obj, "id", id.as_str())?;
            tx.put(&obj, "title", title)?;
            let text = tx.put_object(&obj, "text", ObjType::Text)?;
            if let Some(rank) = rank {
                tx.put(&obj, "rank", rank)?;
            }
            (obj, text, id, true)
        }
    };
    // What this edit starts from (as readers show it) and what it writes, so that a
    // concurrent rewrite of the same lines is a conflict, never a mixture.
    let before = section_view(tx, &obj, &text_obj)?;
    let unresolved = tx.get_all(&obj, "written")?.len() > 1;
    let base = super::paragraphs::base_of(&before.text);
    let blocks = richtext::parse_markdown(markdown);
    tx.update_spans(&text_obj, spans_config(), richtext::to_spans(&blocks))?;
    let (after, rich) = richtext::from_spans(tx.spans(&text_obj)?);
    let written_text = if rich {
        richtext::to_markdown(&after)
    } else {
        tx.text(&text_obj)?
    };
    // The same text again is no edit, unless it settles a conflict.
    if written_text != before.text || unresolved || created {
        let written = tx.put_object(&obj, "written", ObjType::Map)?;
        tx.put(&written, "base", base)?;
        let old = tx.put_object(&written, "old", ObjType::Map)?;
        for (hash, line) in super::paragraphs::changed_lines(&before.text, &written_text) {
            tx.put(&old, hash.as_str(), line)?;
        }
        tx.put(&written, "text", written_text)?;
    }
    Ok(SectionEdit { id, created })
}

/// Renames a section.
pub fn rename_section<T: Transactable>(
    tx: &mut T,
    section: &str,
    title: &str,
) -> Result<String, PlanError> {
    let title = validate_title("section title", title)?;
    upgrade(tx)?;
    let sections = get_obj(tx, &ROOT, "sections", ObjType::List)?;
    let (obj, id) = find_section(tx, &sections, section)?
        .ok_or_else(|| PlanError::UnknownSection(clip(section)))?;
    if let Some((_, other)) = find_section(tx, &sections, &title)?
        && other != id
    {
        return Err(PlanError::DuplicateSection(clip(&title)));
    }
    tx.put(&obj, "title", title)?;
    Ok(id)
}

/// Deletes a section (its text goes with it; history keeps it). Comments on it
/// stay, unanchored, with the text they quoted; agreements no longer link it.
pub fn delete_section<T: Transactable>(tx: &mut T, section: &str) -> Result<String, PlanError> {
    upgrade(tx)?;
    let sections = get_obj(tx, &ROOT, "sections", ObjType::List)?;
    let (obj, id) = find_section(tx, &sections, section)?
        .ok_or_else(|| PlanError::UnknownSection(clip(section)))?;
    let index = (0..tx.length(&sections))
        .find(|&i| get_obj(tx, &sections, i, ObjType::Map).is_ok_and(|o| o == obj))
        .ok_or_else(|| PlanError::UnknownSection(clip(section)))?;
    tx.delete(&sections, index)?;
    let agreements = get_obj(tx, &ROOT, "agreements", ObjType::List)?;
    for i in 0..tx.length(&agreements) {
        let a = get_obj(tx, &agreements, i, ObjType::Map)?;
        for links in all_objects(tx, &a, "sections", ObjType::Map)? {
            if tx.get(&links, id.as_str())?.is_some() {
                tx.delete(&links, id.as_str())?;
            }
        }
    }
    Ok(id)
}

/// Where [`move_section`] puts a section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionPlace {
    /// Before every other section.
    First,
    /// After every other section.
    Last,
    /// Just before this section (id or title).
    Before(String),
    /// Just after this section (id or title).
    After(String),
}

/// What [`move_section`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionMove {
    /// The id of the section.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its position in the plan's order after the move, from 1.
    pub position: usize,
    /// How many sections the plan has.
    pub count: usize,
    /// Whether anything was written (`false`: it was there already).
    pub moved: bool,
}

/// Moves a section to another place in the plan's order, by writing its `rank`
/// ([`super::order`]): the section keeps its id, text and comments, and concurrent
/// edits of it survive the move. Where no rank fits between the new neighbours (a
/// plan of an earlier release without ranks, a section without one, two equal
/// ranks, or ranks grown too long), every section whose rank changes gets a new,
/// short one, in the new order, in the same change.
pub fn move_section<T: Transactable>(
    tx: &mut T,
    section: &str,
    place: &SectionPlace,
) -> Result<SectionMove, PlanError> {
    check_header(tx)?;
    let sections = get_obj(tx, &ROOT, "sections", ObjType::List)?;
    let (obj, id) = find_section(tx, &sections, section)?
        .ok_or_else(|| PlanError::UnknownSection(clip(section)))?;
    let title = get_str(tx, &obj, "title")?;
    let target = match place {
        SectionPlace::Before(r) | SectionPlace::After(r) => Some(
            find_section(tx, &sections, r)?
                .ok_or_else(|| PlanError::UnknownSection(clip(r)))?
                .1,
        ),
        SectionPlace::First | SectionPlace::Last => None,
    };
    let all = section_ranks(tx, &sections)?;
    let shown = order::display_order(&all.iter().map(|s| s.rank.as_deref()).collect::<Vec<_>>());
    let now = shown
        .iter()
        .position(|&i| all[i].id == id)
        .ok_or_else(|| PlanError::UnknownSection(clip(section)))?;
    let mut others = shown;
    let moving = others.remove(now);
    let at = match (place, &target) {
        (SectionPlace::First, _) => 0,
        (SectionPlace::Last, _) => others.len(),
        // Before or after itself: where it is.
        (_, Some(t)) if *t == id => now,
        (SectionPlace::Before(_), Some(t)) => {
            others.iter().position(|&i| all[i].id == *t).unwrap_or(now)
        }
        (SectionPlace::After(_), Some(t)) => others
            .iter()
            .position(|&i| all[i].id == *t)
            .map_or(now, |p| p + 1),
        (_, None) => now,
    };
    if at == now {
        return Ok(SectionMove {
            id,
            title,
            position: now + 1,
            count: all.len(),
            moved: false,
        });
    }
    upgrade(tx)?;
    let rank_of = |p: Option<usize>| p.and_then(|p| all[others[p]].rank.as_deref());
    let before = at.checked_sub(1);
    let after = (at < others.len()).then_some(at);
    // A rank of its own fits only where every section before the new place has one
    // (readers show unranked sections after all ranked ones); an unranked section
    // after it counts as the end.
    let fits = if others[..at].iter().all(|&i| all[i].rank.is_some()) {
        order::between(rank_of(before), rank_of(after))
    } else {
        None
    };
    match fits {
        Some(rank) => tx.put(&all[moving].obj, "rank", rank)?,
        None => {
            let mut new_order = others;
            new_order.insert(at, moving);
            for (&i, rank) in new_order.iter().zip(order::spread(new_order.len())) {
                if all[i].rank.as_deref() != Some(rank.as_str()) {
                    tx.put(&all[i].obj, "rank", rank)?;
                }
            }
        }
    }
    Ok(SectionMove {
        id,
        title,
        position: at + 1,
        count: all.len(),
        moved: true,
    })
}

/// A section of the `sections` list as the order sees it.
struct Ranked {
    obj: ObjId,
    id: String,
    /// Its rank, if valid ([`order::is_valid_rank`]).
    rank: Option<String>,
}

/// Every section of the list, in list order, with its valid rank.
fn section_ranks<R: ReadDoc>(doc: &R, sections: &ObjId) -> Result<Vec<Ranked>, PlanError> {
    (0..doc.length(sections))
        .map(|i| {
            let obj = get_obj(doc, sections, i, ObjType::Map)?;
            Ok(Ranked {
                id: get_str(doc, &obj, "id")?,
                rank: read_rank(doc, &obj)?,
                obj,
            })
        })
        .collect()
}

/// A section's rank, if it holds a valid one; anything else reads as no rank.
fn read_rank<R: ReadDoc>(doc: &R, section: &ObjId) -> Result<Option<String>, PlanError> {
    Ok(match doc.get(section, "rank")? {
        Some((Value::Scalar(v), _)) => v
            .as_str()
            .filter(|r| order::is_valid_rank(r))
            .map(str::to_owned),
        _ => None,
    })
}

/// Removes an agreement from the plan (history keeps it).
pub fn remove_agreement<T: Transactable>(tx: &mut T, agreement: &str) -> Result<(), PlanError> {
    upgrade(tx)?;
    let obj = find_agreement(tx, agreement)?;
    let list = get_obj(tx, &ROOT, "agreements", ObjType::List)?;
    let index = (0..tx.length(&list))
        .find(|&i| get_obj(tx, &list, i, ObjType::Map).is_ok_and(|o| o == obj))
        .ok_or_else(|| PlanError::UnknownAgreement(clip(agreement)))?;
    tx.delete(&list, index)?;
    Ok(())
}

/// A section title as compared for sameness ([`crate::text::sameness_key`]).
fn title_key(title: &str) -> String {
    crate::text::sameness_key(title)
}

/// A new agreement, as given by a user.
#[derive(Clone, Debug)]
pub struct AgreementInput {
    /// What is agreed.
    pub title: String,
    /// The party that carries it out.
    pub owner: PartyName,
    /// By when, if agreed.
    pub deadline: Option<time::Date>,
}

/// Appends an agreement with status `open` and returns its id.
pub fn add_agreement<T: Transactable>(
    tx: &mut T,
    input: &AgreementInput,
) -> Result<String, PlanError> {
    let title = validate_title("agreement title", &input.title)?;
    upgrade(tx)?;
    let list = get_obj(tx, &ROOT, "agreements", ObjType::List)?;
    let id = new_local_id("a")?;
    let idx = tx.length(&list);
    let obj = tx.insert_object(&list, idx, ObjType::Map)?;
    tx.put(&obj, "id", id.as_str())?;
    tx.put(&obj, "title", title)?;
    tx.put_object(&obj, "description", ObjType::Text)?;
    tx.put(&obj, "owner", input.owner.as_str())?;
    match input.deadline {
        Some(d) => tx.put(&obj, "deadline", date_format::format(d))?,
        None => tx.put(&obj, "deadline", ScalarValue::Null)?,
    }
    tx.put(&obj, "status", AgreementStatus::Open.as_str())?;
    tx.put(&obj, "funding", ScalarValue::Null)?;
    tx.put_object(&obj, "sections", ObjType::Map)?;
    Ok(id)
}

/// Changes to an agreement; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct AgreementUpdate {
    /// New title.
    pub title: Option<String>,
    /// New description (plain text, merged as a minimal edit).
    pub description: Option<String>,
    /// New owner party.
    pub owner: Option<PartyName>,
    /// New deadline (`Some(None)` clears it).
    pub deadline: Option<Option<time::Date>>,
    /// New status; must be an allowed transition ([`AgreementStatus::may_become`]).
    pub status: Option<AgreementStatus>,
    /// New funding note (`Some(None)` clears it).
    pub funding: Option<Option<String>>,
    /// Sections (ids or titles) to link.
    pub link: Vec<String>,
    /// Sections (ids or titles) to unlink.
    pub unlink: Vec<String>,
}

/// Applies `update` to the agreement with id `agreement`. Every check runs before the
/// first write, so a refused update changes nothing. Writing a field that is in
/// conflict resolves the conflict (the written value replaces all of them).
pub fn update_agreement<T: Transactable>(
    tx: &mut T,
    agreement: &str,
    update: &AgreementUpdate,
) -> Result<(), PlanError> {
    check_header(tx)?;
    let obj = find_agreement(tx, agreement)?;
    let title = update
        .title
        .as_deref()
        .map(|t| validate_title("agreement title", t))
        .transpose()?;
    if let Some(d) = &update.description
        && d.len() > MAX_NOTE_BYTES
    {
        return Err(PlanError::TextTooLarge(d.len()));
    }
    let funding = match &update.funding {
        Some(Some(f)) => Some(Some(validate_funding(f)?)),
        other => other.clone(),
    };
    if let Some(to) = update.status {
        let current = all_strings(tx, &obj, "status")?;
        let ok = current.iter().any(|c| {
            c.parse::<AgreementStatus>()
                .is_ok_and(|from| from == to || from.may_become(to))
        });
        if !ok {
            return Err(PlanError::BadTransition {
                from: current.join(" | "),
                to,
            });
        }
    }
    let sections = get_obj(tx, &ROOT, "sections", ObjType::List)?;
    let mut link = Vec::new();
    for r in &update.link {
        link.push(
            find_section(tx, &sections, r)?
                .ok_or_else(|| PlanError::UnknownSection(clip(r)))?
                .1,
        );
    }
    let mut unlink = Vec::new();
    for r in &update.unlink {
        // Unlinking a section that was since removed must stay possible: ids as given.
        unlink.push(match find_section(tx, &sections, r)? {
            Some((_, id)) => id,
            None if looks_like_id(r, "s") => r.trim().to_owned(),
            None => return Err(PlanError::UnknownSection(clip(r))),
        });
    }

    upgrade(tx)?;
    if let Some(t) = title {
        tx.put(&obj, "title", t)?;
    }
    if let Some(d) = &update.description {
        let text = get_or_create(tx, &obj, "description", ObjType::Text)?;
        tx.update_text(&text, d)?;
    }
    if let Some(o) = &update.owner {
        tx.put(&obj, "owner", o.as_str())?;
    }
    match update.deadline {
        Some(Some(d)) => tx.put(&obj, "deadline", date_format::format(d))?,
        Some(None) => tx.put(&obj, "deadline", ScalarValue::Null)?,
        None => {}
    }
    if let Some(s) = update.status {
        tx.put(&obj, "status", s.as_str())?;
    }
    match funding {
        Some(Some(f)) => tx.put(&obj, "funding", f)?,
        Some(None) => tx.put(&obj, "funding", ScalarValue::Null)?,
        None => {}
    }
    if !link.is_empty() || !unlink.is_empty() {
        let map = get_or_create(tx, &obj, "sections", ObjType::Map)?;
        for id in link {
            tx.put(&map, id.as_str(), true)?;
        }
        for id in unlink {
            for m in all_objects(tx, &obj, "sections", ObjType::Map)? {
                if tx.get(&m, id.as_str())?.is_some() {
                    tx.delete(&m, id.as_str())?;
                }
            }
        }
    }
    Ok(())
}

fn validate_funding(f: &str) -> Result<String, PlanError> {
    let f = f.trim();
    if f.chars().count() > MAX_FUNDING_CHARS || f.chars().any(char::is_control) {
        return Err(PlanError::BadTitle {
            what: "funding note",
            why: "it is longer than 1000 characters or contains a control character",
        });
    }
    Ok(f.to_owned())
}

/// A new comment, as given by a user.
#[derive(Clone, Debug)]
pub struct CommentInput {
    /// The section (id or title).
    pub section: String,
    /// The exact text the comment is about; it must occur once in the section.
    pub quote: String,
    /// The comment.
    pub text: String,
    /// The commenting party.
    pub author: PartyName,
    /// When, Unix seconds.
    pub time: i64,
}

/// Adds a comment anchored to the quoted text of a section and returns its id.
///
/// The anchor is a pair of Automerge cursors on the first and last quoted character:
/// it moves with the text when others insert or delete around it, and shrinks to what
/// remains when part of the quote is deleted.
pub fn add_comment<T: Transactable>(tx: &mut T, input: &CommentInput) -> Result<String, PlanError> {
    check_header(tx)?;
    let text = input.text.trim();
    if text.is_empty() {
        return Err(PlanError::BadTitle {
            what: "comment",
            why: "it is empty",
        });
    }
    if text.len() > MAX_NOTE_BYTES {
        return Err(PlanError::TextTooLarge(text.len()));
    }
    let sections = get_obj(tx, &ROOT, "sections", ObjType::List)?;
    let (sobj, sid) = find_section(tx, &sections, &input.section)?
        .ok_or_else(|| PlanError::UnknownSection(clip(&input.section)))?;
    let tobj = get_obj(tx, &sobj, "text", ObjType::Text)?;
    let visible = visible_text(tx, &tobj)?;
    let quote: Vec<char> = input.quote.chars().collect();
    if quote.is_empty() || input.quote.contains(BLOCK_PLACEHOLDER) {
        return Err(PlanError::QuoteNotFound(clip(&input.quote)));
    }
    let hits: Vec<usize> = (0..visible.len().saturating_sub(quote.len() - 1))
        .filter(|&i| visible[i..i + quote.len()] == quote[..])
        .collect();
    let start = match hits.as_slice() {
        [] => return Err(PlanError::QuoteNotFound(clip(&input.quote))),
        [one] => *one,
        many => {
            return Err(PlanError::AmbiguousQuote {
                quote: clip(&input.quote),
                count: many.len(),
            });
        }
    };
    let end = start + quote.len() - 1;
    let c_start = tx.get_cursor_moving(&tobj, start, None, MoveCursor::After)?;
    let c_end = tx.get_cursor_moving(&tobj, end, None, MoveCursor::Before)?;

    upgrade(tx)?;
    let list = get_or_create(tx, &ROOT, "comments", ObjType::List)?;
    let id = new_local_id("c")?;
    let idx = tx.length(&list);
    let obj = tx.insert_object(&list, idx, ObjType::Map)?;
    tx.put(&obj, "id", id.as_str())?;
    tx.put(&obj, "section", sid.as_str())?;
    tx.put(&obj, "start", c_start.to_string())?;
    tx.put(&obj, "end", c_end.to_string())?;
    tx.put(&obj, "quote", input.quote.as_str())?;
    tx.put(&obj, "author", input.author.as_str())?;
    tx.put(&obj, "time", input.time)?;
    tx.put(&obj, "text", text)?;
    tx.put(&obj, "resolved", false)?;
    Ok(id)
}

/// Marks a comment resolved (or open again).
pub fn resolve_comment<T: Transactable>(
    tx: &mut T,
    comment: &str,
    resolved: bool,
) -> Result<(), PlanError> {
    check_header(tx)?;
    let wanted = comment.trim();
    for list in all_objects(tx, &ROOT, "comments", ObjType::List)? {
        for i in 0..tx.length(&list) {
            let c = get_obj(tx, &list, i, ObjType::Map)?;
            if get_str(tx, &c, "id")? == wanted {
                upgrade(tx)?;
                tx.put(&c, "resolved", resolved)?;
                return Ok(());
            }
        }
    }
    Err(PlanError::UnknownComment(clip(comment)))
}

/// Reads only a plan's title (for the store's document list after a sync, where a
/// full [`read_plan`] would render every section and resolve every comment).
pub fn read_title<R: ReadDoc>(doc: &R) -> Result<String, PlanError> {
    check_header(doc)?;
    Ok(get_str(doc, &ROOT, "title")?)
}

/// Reads the typed view of a plan document.
pub fn read_plan<R: ReadDoc>(doc: &R) -> Result<Plan, PlanError> {
    let schema = check_header(doc)?;
    let kind: PlanKind = get_str(doc, &ROOT, "kind")?
        .parse()
        .map_err(|_| PlanError::Schema("unknown plan kind".into()))?;
    let owner = party(&get_str(doc, &ROOT, "owner")?)?;
    let title = get_str(doc, &ROOT, "title")?;
    let mut conflicts = Vec::new();
    conflict(doc, &ROOT, "title", "plan", &mut conflicts)?;

    let sections_obj = get_obj(doc, &ROOT, "sections", ObjType::List)?;
    let mut sections = Vec::new();
    let mut texts = Vec::new();
    // The one place that puts the sections in the plan's order: everything that lists
    // them (`doc show`, the exports, diffs) takes `Plan::sections` as it is.
    let mut ranks = Vec::new();
    for i in 0..doc.length(&sections_obj) {
        let s = get_obj(doc, &sections_obj, i, ObjType::Map)?;
        ranks.push(read_rank(doc, &s)?);
    }
    for i in order::display_order(&ranks) {
        let s = get_obj(doc, &sections_obj, i, ObjType::Map)?;
        let text_obj = get_obj(doc, &s, "text", ObjType::Text)?;
        let id = get_str(doc, &s, "id")?;
        let view = section_view(doc, &s, &text_obj)?;
        let (text, blocks) = (view.text, view.blocks);
        if !view.conflicts.is_empty() {
            for (c, first, second) in view.conflicts {
                conflicts.push(Conflict {
                    target: format!("section {id}"),
                    field: "text".into(),
                    values: vec![
                        ConflictValue {
                            value: c.first,
                            actor: first,
                        },
                        ConflictValue {
                            value: c.second,
                            actor: second,
                        },
                    ],
                });
            }
        }
        conflict(doc, &s, "title", &format!("section {id}"), &mut conflicts)?;
        sections.push(Section {
            title: get_str(doc, &s, "title")?,
            text,
            blocks,
            id,
        });
        texts.push(text_obj);
    }

    let mut agreements = Vec::new();
    let agreements_obj = get_obj(doc, &ROOT, "agreements", ObjType::List)?;
    for i in 0..doc.length(&agreements_obj) {
        let a = get_obj(doc, &agreements_obj, i, ObjType::Map)?;
        let id = get_str(doc, &a, "id")?;
        let description = match all_objects(doc, &a, "description", ObjType::Text)?.first() {
            Some(t) => doc.text(t)?,
            None => String::new(),
        };
        let funding = match doc.get(&a, "funding")? {
            None => None,
            Some((Value::Scalar(v), _)) if v.is_null() => None,
            Some((Value::Scalar(v), _)) => {
                Some(v.as_str().ok_or_else(|| schema_err("funding"))?.to_owned())
            }
            Some(_) => return Err(schema_err("funding")),
        };
        let mut linked = BTreeSet::new();
        for m in all_objects(doc, &a, "sections", ObjType::Map)? {
            linked.extend(doc.keys(&m));
        }
        for field in ["title", "owner", "deadline", "status", "funding"] {
            conflict(doc, &a, field, &format!("agreement {id}"), &mut conflicts)?;
        }
        agreements.push(Agreement {
            title: get_str(doc, &a, "title")?,
            description,
            owner: party(&get_str(doc, &a, "owner")?)?,
            deadline: get_date_opt(doc, &a, "deadline")?,
            status: get_str(doc, &a, "status")?
                .parse()
                .map_err(|_| schema_err("status"))?,
            funding,
            sections: linked.into_iter().collect(),
            id,
        });
    }

    let mut comments = Vec::new();
    for list in all_objects(doc, &ROOT, "comments", ObjType::List)? {
        for i in 0..doc.length(&list) {
            let c = get_obj(doc, &list, i, ObjType::Map)?;
            comments.push(read_comment(doc, &c, &sections, &texts)?);
        }
    }

    Ok(Plan {
        schema,
        kind,
        title,
        owner,
        sections,
        agreements,
        comments,
        conflicts,
    })
}

/// A section's text as readers show it ([`super::paragraphs`]): Automerge's merge,
/// or, where edits were made concurrently (two values under the section's `written`
/// key), the line-wise merge of what each writer wrote, with the lines both changed
/// differently as conflicts (the first writer's version shown).
struct SectionView {
    text: String,
    blocks: Vec<richtext::Block>,
    /// Each conflict with the writing devices' actors (hex) of the version shown
    /// and of the other one.
    conflicts: Vec<(super::paragraphs::TextConflict, String, String)>,
}

fn section_view<R: ReadDoc>(
    doc: &R,
    s: &ObjId,
    text_obj: &ObjId,
) -> Result<SectionView, PlanError> {
    let (blocks, rich) = richtext::from_spans(doc.spans(text_obj)?);
    let text = if rich {
        richtext::to_markdown(&blocks)
    } else {
        doc.text(text_obj)?
    };
    let mut written = Vec::new();
    let mut old: std::collections::HashMap<String, String> = Default::default();
    for (value, id) in doc.get_all(s, "written")? {
        if let Value::Object(ObjType::Map) = value {
            let text = get_str(doc, &id, "text")?;
            let base = get_str(doc, &id, "base")?;
            if let Some((Value::Object(ObjType::Map), lines)) = doc.get(&id, "old")? {
                for hash in doc.keys(&lines) {
                    if let Ok(line) = get_str(doc, &lines, &hash) {
                        old.insert(hash, line);
                    }
                }
            }
            let actor = match &id {
                ObjId::Id(_, actor, _) => actor.to_hex_string(),
                ObjId::Root => String::new(),
            };
            written.push((base, text, actor));
        }
    }
    let [(base, first, first_actor), rest @ ..] = written.as_slice() else {
        return Ok(SectionView {
            text,
            blocks,
            conflicts: vec![],
        });
    };
    if rest.is_empty() {
        return Ok(SectionView {
            text,
            blocks,
            conflicts: vec![],
        });
    }
    // Two or more concurrent edits: merge them in Automerge's order, each into the
    // merge of the ones before it. Where they started from different texts, the
    // merge so far is kept and the other text is reported whole.
    let mut merged = first.clone();
    let mut conflicts = Vec::new();
    for (other_base, other, actor) in rest {
        match super::paragraphs::merge_with(base, &merged, other_base, other, |h| {
            old.get(h).cloned()
        }) {
            Some(m) => {
                merged = m.text;
                conflicts.extend(
                    m.conflicts
                        .into_iter()
                        .map(|c| (c, first_actor.clone(), actor.clone())),
                );
            }
            None if *other != merged => conflicts.push((
                super::paragraphs::TextConflict {
                    first: merged.clone(),
                    second: other.clone(),
                },
                first_actor.clone(),
                actor.clone(),
            )),
            None => {}
        }
    }
    let blocks = richtext::parse_markdown(&merged);
    Ok(SectionView {
        text: merged,
        blocks,
        conflicts,
    })
}

fn read_comment<R: ReadDoc>(
    doc: &R,
    c: &ObjId,
    sections: &[Section],
    texts: &[ObjId],
) -> Result<Comment, PlanError> {
    let section = get_str(doc, c, "section")?;
    let cursor = |key: &str| -> Result<Cursor, PlanError> {
        let raw = get_str(doc, c, key)?;
        // Automerge's cursor parser slices the string by bytes and panics on an
        // empty or non-ASCII one; a cursor it wrote is always short ASCII.
        if raw.is_empty() || raw.len() > 128 || !raw.is_ascii() {
            return Err(schema_err(key));
        }
        Cursor::try_from(raw.as_str()).map_err(|_| schema_err(key))
    };
    let (start, end) = (cursor("start")?, cursor("end")?);
    // The anchor: where the cursors point now, if the section still exists and some
    // of the quoted text is left.
    let mut anchor = None;
    if let Some(i) = sections.iter().position(|s| s.id == section) {
        let text = &texts[i];
        let s = doc.get_cursor_position(text, &start, None);
        let e = doc.get_cursor_position(text, &end, None);
        if let (Ok(s), Ok(e)) = (s, e)
            && s <= e
        {
            let visible = visible_text(doc, text)?;
            if e < visible.len() {
                let quoted: String = visible[s..=e]
                    .iter()
                    .filter(|c| **c != BLOCK_PLACEHOLDER)
                    .collect();
                anchor = Some((s, e + 1, quoted));
            }
        }
    }
    let resolved = match doc.get(c, "resolved")? {
        Some((Value::Scalar(v), _)) => matches!(v.as_ref(), ScalarValue::Boolean(true)),
        _ => false,
    };
    let time = match doc.get(c, "time")? {
        Some((Value::Scalar(v), _)) => match v.as_ref() {
            ScalarValue::Int(n) => *n,
            ScalarValue::Uint(n) => i64::try_from(*n).unwrap_or(i64::MAX),
            ScalarValue::Timestamp(n) => *n,
            _ => return Err(schema_err("time")),
        },
        _ => return Err(schema_err("time")),
    };
    Ok(Comment {
        id: get_str(doc, c, "id")?,
        section,
        quote: get_str(doc, c, "quote")?,
        anchored: anchor.as_ref().map(|a| a.2.clone()),
        range: anchor.map(|a| (a.0, a.1)),
        author: party(&get_str(doc, c, "author")?)?,
        time,
        text: get_str(doc, c, "text")?,
        resolved,
    })
}

/// The characters of a text object as Automerge indexes them: block markers are
/// [`BLOCK_PLACEHOLDER`].
fn visible_text<R: ReadDoc>(doc: &R, text: &ObjId) -> Result<Vec<char>, PlanError> {
    let mut out = Vec::new();
    for span in doc.spans(text)? {
        match span {
            automerge::iter::Span::Block(_) => out.push(BLOCK_PLACEHOLDER),
            automerge::iter::Span::Text { text, .. } => out.extend(text.chars()),
        }
    }
    Ok(out)
}

/// Records a conflict at `key` of `obj`: concurrent writes Automerge keeps side by
/// side. The view shows the deterministic winner; this lists all of them.
fn conflict<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    target: &str,
    out: &mut Vec<Conflict>,
) -> Result<(), PlanError> {
    let all = doc.get_all(obj, key)?;
    if all.len() < 2 {
        return Ok(());
    }
    let values = all
        .into_iter()
        .map(|(v, id)| ConflictValue {
            value: match v {
                Value::Scalar(s) if s.is_null() => "(none)".to_owned(),
                Value::Scalar(s) => match s.as_str() {
                    Some(t) => t.to_owned(),
                    None => s.to_string(),
                },
                Value::Object(t) => format!("({t:?})"),
            },
            actor: match id {
                automerge::ObjId::Id(_, actor, _) => actor.to_hex_string(),
                automerge::ObjId::Root => String::new(),
            },
        })
        .collect();
    out.push(Conflict {
        target: target.to_owned(),
        field: key.to_owned(),
        values,
    });
    Ok(())
}

/// Checks `type` and `schema` and returns the schema version.
fn check_header<R: ReadDoc>(doc: &R) -> Result<u64, PlanError> {
    if get_str(doc, &ROOT, "type")? != TYPE_PLAN {
        return Err(PlanError::Schema("the document is not a plan".into()));
    }
    let schema = get_uint(doc, &ROOT, "schema")?;
    if schema > PLAN_SCHEMA_VERSION {
        return Err(PlanError::NewerSchema(schema));
    }
    Ok(schema)
}

/// Checks the header and, for an older document, records the upgrade to this schema
/// version (the first write of this version does it; see the module docs).
fn upgrade<T: Transactable>(tx: &mut T) -> Result<(), PlanError> {
    if check_header(tx)? < PLAN_SCHEMA_VERSION {
        tx.put(ROOT, "schema", ScalarValue::Uint(PLAN_SCHEMA_VERSION))?;
    }
    Ok(())
}

/// Every object of type `want` at `key` of `obj` (more than one after concurrent
/// creation), the deterministic winner first.
fn all_objects<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    want: ObjType,
) -> Result<Vec<ObjId>, PlanError> {
    let mut out = Vec::new();
    if let Some((Value::Object(t), id)) = doc.get(obj, key)? {
        if t != want {
            return Err(schema_err(key));
        }
        out.push(id);
    }
    for (v, id) in doc.get_all(obj, key)? {
        match v {
            Value::Object(t) if t == want => {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            _ => return Err(schema_err(key)),
        }
    }
    Ok(out)
}

/// The object at `key` (the winner if several), created if missing.
fn get_or_create<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    want: ObjType,
) -> Result<ObjId, PlanError> {
    match all_objects(tx, obj, key, want)?.into_iter().next() {
        Some(o) => Ok(o),
        None => Ok(tx.put_object(obj, key, want)?),
    }
}

/// All values of a string field (several when in conflict).
fn all_strings<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Result<Vec<String>, PlanError> {
    doc.get_all(obj, key)?
        .into_iter()
        .map(|(v, _)| match v {
            Value::Scalar(s) => s.as_str().map(str::to_owned).ok_or_else(|| schema_err(key)),
            _ => Err(schema_err(key)),
        })
        .collect()
}

/// Finds a section by id, or else by case-insensitive title.
fn find_section<R: ReadDoc>(
    doc: &R,
    sections: &ObjId,
    reference: &str,
) -> Result<Option<(ObjId, String)>, PlanError> {
    let wanted = reference.trim();
    let wanted_key = title_key(wanted);
    let mut by_title = Vec::new();
    for i in 0..doc.length(sections) {
        let s = get_obj(doc, sections, i, ObjType::Map)?;
        let id = get_str(doc, &s, "id")?;
        if id == wanted {
            return Ok(Some((s, id)));
        }
        if title_key(&get_str(doc, &s, "title")?) == wanted_key {
            by_title.push((s, id));
        }
    }
    match by_title.len() {
        0 => Ok(None),
        1 => Ok(by_title.pop()),
        _ => Err(PlanError::AmbiguousSection(clip(wanted))),
    }
}

/// Finds an agreement by id.
fn find_agreement<R: ReadDoc>(doc: &R, reference: &str) -> Result<ObjId, PlanError> {
    let wanted = reference.trim();
    let list = get_obj(doc, &ROOT, "agreements", ObjType::List)?;
    for i in 0..doc.length(&list) {
        let a = get_obj(doc, &list, i, ObjType::Map)?;
        if get_str(doc, &a, "id")? == wanted {
            return Ok(a);
        }
    }
    Err(PlanError::UnknownAgreement(clip(reference)))
}

/// Whether `s` has the shape of a local id with this prefix (`s-1a2b3c4d`).
fn looks_like_id(s: &str, prefix: &str) -> bool {
    let s = s.trim();
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|h| h.len() == 8 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A user-supplied reference, shortened for an error message.
fn clip(s: &str) -> String {
    s.trim().chars().take(80).collect()
}

fn party(s: &str) -> Result<PartyName, PlanError> {
    PartyName::new(s).map_err(|_| schema_err("owner"))
}

fn schema_err(key: &str) -> PlanError {
    violation(key).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::parse_date;
    use automerge::Automerge;

    fn owner() -> PartyName {
        PartyName::new("gemeente-utrecht").unwrap()
    }

    fn new_plan() -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init_plan(&mut tx, PlanKind::Jeugdplan, "Jeugdplan 2027", &owner()).unwrap();
        tx.commit();
        doc
    }

    fn edit<T>(
        doc: &mut Automerge,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> T,
    ) -> T {
        let mut tx = doc.transaction();
        let r = f(&mut tx);
        tx.commit();
        r
    }

    #[test]
    fn section_titles_are_unique_after_nfc_case_and_spaces_and_sections_and_agreements_go() {
        let mut doc = new_plan();
        edit(&mut doc, |tx| {
            set_section(tx, "Café  Aanpak", "Een.").unwrap()
        });
        // The same title written with a combining accent, other case and spacing is
        // the same section: its text is replaced, no second section appears.
        let n = read_plan(&doc).unwrap().sections.len();
        let e = edit(&mut doc, |tx| {
            set_section(tx, "cafe\u{301} aanpak", "Twee.").unwrap()
        });
        assert!(!e.created);
        assert_eq!(read_plan(&doc).unwrap().sections.len(), n);
        assert_eq!(section_text(&doc, "Café  Aanpak"), "Twee.");
        // A rename onto another section's title is refused.
        edit(&mut doc, |tx| set_section(tx, "Slot", "Drie.").unwrap());
        let mut tx = doc.transaction();
        assert!(matches!(
            rename_section(&mut tx, "Slot", "CAFÉ aanpak"),
            Err(PlanError::DuplicateSection(_))
        ));
        tx.rollback();
        // Renaming a section to its own title in another case is fine.
        edit(&mut doc, |tx| rename_section(tx, "Slot", "SLOT").unwrap());
        // A section linked by an agreement is deleted and unlinked.
        let a = edit(&mut doc, |tx| {
            add_agreement(
                tx,
                &AgreementInput {
                    title: "Overdracht".into(),
                    owner: owner(),
                    deadline: None,
                },
            )
            .unwrap()
        });
        edit(&mut doc, |tx| {
            update_agreement(
                tx,
                &a,
                &AgreementUpdate {
                    link: vec!["SLOT".into()],
                    ..Default::default()
                },
            )
            .unwrap()
        });
        let slot = read_plan(&doc).unwrap().titled("SLOT").unwrap().id.clone();
        assert_eq!(
            read_plan(&doc).unwrap().agreements[0].sections,
            vec![slot.clone()]
        );
        edit(&mut doc, |tx| delete_section(tx, &slot).unwrap());
        let p = read_plan(&doc).unwrap();
        assert!(p.section(&slot).is_none());
        assert!(p.agreements[0].sections.is_empty());
        edit(&mut doc, |tx| remove_agreement(tx, &a).unwrap());
        assert!(read_plan(&doc).unwrap().agreements.is_empty());
        let mut tx = doc.transaction();
        assert!(matches!(
            remove_agreement(&mut tx, &a),
            Err(PlanError::UnknownAgreement(_))
        ));
        tx.rollback();
    }

    fn titles(doc: &Automerge) -> Vec<String> {
        read_plan(doc)
            .unwrap()
            .sections
            .into_iter()
            .map(|s| s.title)
            .collect()
    }

    fn move_to(doc: &mut Automerge, section: &str, place: SectionPlace) -> SectionMove {
        edit(doc, |tx| move_section(tx, section, &place).unwrap())
    }

    /// A plan with four sections A, B, C, D, made by `init`-style writers.
    fn abcd() -> Automerge {
        let mut doc = new_plan();
        edit(&mut doc, |tx| {
            let sections = get_obj(tx, &ROOT, "sections", ObjType::List).unwrap();
            while tx.length(&sections) > 0 {
                tx.delete(&sections, 0).unwrap();
            }
            for t in ["A", "B", "C", "D"] {
                set_section(tx, t, t).unwrap();
            }
        });
        doc
    }

    #[test]
    fn sections_move_first_last_before_and_after_keeping_their_text_and_comments() {
        let mut doc = abcd();
        assert_eq!(titles(&doc), ["A", "B", "C", "D"]);
        let input = CommentInput {
            section: "C".into(),
            quote: "C".into(),
            text: "Waarom hier?".into(),
            author: owner(),
            time: 1,
        };
        edit(&mut doc, |tx| add_comment(tx, &input).unwrap());
        let m = move_to(&mut doc, "c", SectionPlace::First);
        assert_eq!((m.position, m.moved), (1, true));
        assert_eq!(titles(&doc), ["C", "A", "B", "D"]);
        move_to(&mut doc, "A", SectionPlace::Last);
        assert_eq!(titles(&doc), ["C", "B", "D", "A"]);
        move_to(&mut doc, "A", SectionPlace::Before("B".into()));
        assert_eq!(titles(&doc), ["C", "A", "B", "D"]);
        let m = move_to(&mut doc, "C", SectionPlace::After("D".into()));
        assert_eq!(m.position, 4);
        assert_eq!(titles(&doc), ["A", "B", "D", "C"]);
        // One rank was written per move: the sections are the same maps, so the
        // comment is still on its text and the text is the same.
        let p = read_plan(&doc).unwrap();
        assert_eq!(p.comments[0].anchored.as_deref(), Some("C"));
        assert_eq!(p.titled("C").unwrap().text, "C");
        // Where it is already: nothing is written.
        let heads = doc.get_heads();
        for place in [
            SectionPlace::First,
            SectionPlace::Before("B".into()),
            SectionPlace::After("A".into()),
            SectionPlace::Before("A".into()),
        ] {
            let mut tx = doc.transaction();
            let m = move_section(&mut tx, "A", &place).unwrap();
            assert!(!m.moved, "{place:?}");
            assert_eq!(tx.pending_ops(), 0);
            tx.rollback();
        }
        assert_eq!(doc.get_heads(), heads);
        // Unknown sections are refused and change nothing.
        let mut tx = doc.transaction();
        assert!(matches!(
            move_section(&mut tx, "Bestaat niet", &SectionPlace::First),
            Err(PlanError::UnknownSection(_))
        ));
        assert!(matches!(
            move_section(&mut tx, "A", &SectionPlace::After("s-00000000".into())),
            Err(PlanError::UnknownSection(_))
        ));
        assert_eq!(tx.pending_ops(), 0);
        tx.rollback();
        // A section added later comes last, also after moves.
        edit(&mut doc, |tx| set_section(tx, "E", "E").unwrap());
        assert_eq!(titles(&doc), ["A", "B", "D", "C", "E"]);
    }

    #[test]
    fn many_moves_into_one_gap_stay_in_order_and_ranks_stay_bounded() {
        let mut doc = abcd();
        // Ping-pong two sections into the gap after A, 400 times: the gap narrows
        // until no rank fits, then the sections get new short ranks.
        for i in 0..400 {
            let s = if i % 2 == 0 { "C" } else { "D" };
            move_to(&mut doc, s, SectionPlace::After("A".into()));
            let t = titles(&doc);
            assert_eq!(t[0], "A");
            assert_eq!(t[1], s, "move {i}: {t:?}");
        }
        let sections = get_obj(&doc, &ROOT, "sections", ObjType::List).unwrap();
        for r in section_ranks(&doc, &sections).unwrap() {
            let rank = r.rank.unwrap();
            assert!(rank.len() <= order::MAX_RANK_BYTES, "{rank}");
        }
    }

    #[test]
    fn plans_without_ranks_keep_their_list_order_and_get_ranks_on_the_first_move() {
        // A schema-1 plan and a plan of an earlier release: no section has a rank.
        let mut doc = v1_plan();
        edit(&mut doc, |tx| {
            let sections = get_obj(tx, &ROOT, "sections", ObjType::List).unwrap();
            for (i, t) in ["Tweede", "Derde"].iter().enumerate() {
                let s = tx.insert_object(&sections, i + 1, ObjType::Map).unwrap();
                tx.put(&s, "id", format!("s-0000001{i}")).unwrap();
                tx.put(&s, "title", *t).unwrap();
                tx.put_object(&s, "text", ObjType::Text).unwrap();
            }
        });
        assert_eq!(titles(&doc), ["Inleiding", "Tweede", "Derde"]);
        // A section added to such a plan gets no rank and comes last.
        edit(&mut doc, |tx| set_section(tx, "Vierde", "x").unwrap());
        assert_eq!(titles(&doc), ["Inleiding", "Tweede", "Derde", "Vierde"]);
        move_to(&mut doc, "Derde", SectionPlace::First);
        assert_eq!(titles(&doc), ["Derde", "Inleiding", "Tweede", "Vierde"]);
        assert_eq!(read_plan(&doc).unwrap().schema, PLAN_SCHEMA_VERSION);
        // Only the moved section got a rank: the others are shown after it, in list
        // order, as before.
        let sections = get_obj(&doc, &ROOT, "sections", ObjType::List).unwrap();
        let ranked = |doc: &Automerge| {
            section_ranks(doc, &sections)
                .unwrap()
                .iter()
                .filter(|r| r.rank.is_some())
                .count()
        };
        assert_eq!(ranked(&doc), 1);
        // A move behind unranked sections gives every section a rank, in the new order.
        move_to(&mut doc, "Inleiding", SectionPlace::Last);
        assert_eq!(titles(&doc), ["Derde", "Tweede", "Vierde", "Inleiding"]);
        assert_eq!(ranked(&doc), 4);
        // A section an older node appends (no rank) is shown after the ranked ones.
        edit(&mut doc, |tx| {
            let s = tx.insert_object(&sections, 4, ObjType::Map).unwrap();
            tx.put(&s, "id", "s-000000ff").unwrap();
            tx.put(&s, "title", "Van een oude node").unwrap();
            tx.put_object(&s, "text", ObjType::Text).unwrap();
        });
        assert_eq!(
            titles(&doc),
            [
                "Derde",
                "Tweede",
                "Vierde",
                "Inleiding",
                "Van een oude node"
            ]
        );
        // It can be moved like any other.
        move_to(
            &mut doc,
            "Van een oude node",
            SectionPlace::After("Derde".into()),
        );
        assert_eq!(
            titles(&doc),
            [
                "Derde",
                "Van een oude node",
                "Tweede",
                "Vierde",
                "Inleiding"
            ]
        );
    }

    #[test]
    fn concurrent_moves_converge_to_one_order_on_every_node() {
        let base = abcd();
        // The same section moved to two places, and two sections moved into one gap.
        let scenarios: Vec<Vec<(&str, SectionPlace)>> = vec![
            vec![
                ("A", SectionPlace::Last),
                ("A", SectionPlace::After("B".into())),
            ],
            vec![("C", SectionPlace::First), ("D", SectionPlace::First)],
            vec![
                ("D", SectionPlace::After("A".into())),
                ("C", SectionPlace::Before("B".into())),
            ],
        ];
        for moves in scenarios {
            let mut left = base.fork();
            let mut right = base.fork();
            move_to(&mut left, moves[0].0, moves[0].1.clone());
            move_to(&mut right, moves[1].0, moves[1].1.clone());
            // Merged in either direction: one order.
            let mut l2 = left.fork();
            let mut r2 = right.fork();
            l2.merge(&mut right).unwrap();
            r2.merge(&mut left).unwrap();
            let (a, b) = (titles(&l2), titles(&r2));
            assert_eq!(a, b, "{moves:?}");
            let mut sorted = a.clone();
            sorted.sort();
            assert_eq!(sorted, ["A", "B", "C", "D"], "no section lost or doubled");
            // Each node's own move is kept where the other did not touch it.
            if moves[0].0 != moves[1].0 {
                match &moves[..] {
                    [(_, SectionPlace::First), (_, SectionPlace::First)] => {
                        let mut first_two = a[..2].to_vec();
                        first_two.sort();
                        assert_eq!(first_two, ["C", "D"], "{a:?}");
                    }
                    // Both into the gap between A and B: the same rank, so list
                    // order (C before D) decides.
                    _ => assert_eq!(a, ["A", "C", "D", "B"], "{a:?}"),
                }
            }
            // Another move after the merge works on the merged order.
            move_to(&mut l2, "B", SectionPlace::First);
            assert_eq!(titles(&l2)[0], "B");
        }
    }

    #[test]
    fn attack_junk_ranks_read_as_no_rank() {
        let mut doc = abcd();
        move_to(&mut doc, "D", SectionPlace::First);
        let huge = "a".repeat(1 << 20);
        for junk in [
            ScalarValue::Uint(1),
            ScalarValue::Str(huge.as_str().into()),
            ScalarValue::Str("0".into()),
            ScalarValue::Str("Z!".into()),
            ScalarValue::Null,
        ] {
            let mut d = doc.fork();
            edit(&mut d, |tx| {
                let sections = get_obj(tx, &ROOT, "sections", ObjType::List).unwrap();
                // D was moved first; its list position is still the last.
                let s = get_obj(tx, &sections, 3, ObjType::Map).unwrap();
                tx.put(&s, "rank", junk.clone()).unwrap();
            });
            assert_eq!(titles(&d), ["A", "B", "C", "D"], "{junk:?}");
        }
        let mut d = doc.fork();
        edit(&mut d, |tx| {
            let sections = get_obj(tx, &ROOT, "sections", ObjType::List).unwrap();
            let s = get_obj(tx, &sections, 3, ObjType::Map).unwrap();
            tx.put_object(&s, "rank", ObjType::Text).unwrap();
        });
        assert_eq!(titles(&d), ["A", "B", "C", "D"]);
    }

    fn section_text(doc: &Automerge, title: &str) -> String {
        let p = read_plan(doc).unwrap();
        p.sections
            .iter()
            .find(|s| s.title == title)
            .unwrap()
            .text
            .clone()
    }

    fn agreement(doc: &mut Automerge) -> String {
        edit(doc, |tx| {
            add_agreement(
                tx,
                &AgreementInput {
                    title: "Warme overdracht vo-mbo".into(),
                    owner: PartyName::new("swv-utrecht").unwrap(),
                    deadline: Some(parse_date("2027-03-31").unwrap()),
                },
            )
            .unwrap()
        })
    }

    #[test]
    fn a_new_plan_has_its_templates_sections_and_edits_read_back() {
        let mut doc = new_plan();
        let plan = read_plan(&doc).unwrap();
        let titles: Vec<_> = plan.sections.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, template::sections(PlanKind::Jeugdplan));
        assert_eq!(plan.schema, PLAN_SCHEMA_VERSION);

        let e = edit(&mut doc, |tx| {
            set_section(tx, "inleiding", "Eerste **tekst**.").unwrap()
        });
        assert!(!e.created);
        let n = edit(&mut doc, |tx| {
            set_section(tx, "Bijlage", "- een\n- twee").unwrap()
        });
        assert!(n.created);
        assert_eq!(section_text(&doc, "Inleiding"), "Eerste **tekst**.");
        assert_eq!(section_text(&doc, "Bijlage"), "- een\n- twee");
        let plan = read_plan(&doc).unwrap();
        assert_eq!(plan.sections.last().unwrap().id, n.id);
        // The same text again is no change at all.
        let heads = doc.get_heads();
        let mut tx = doc.transaction();
        set_section(&mut tx, &e.id, "Eerste **tekst**.").unwrap();
        assert_eq!(tx.pending_ops(), 0);
        tx.rollback();
        assert_eq!(doc.get_heads(), heads);
        // An id that does not exist is an error, not a new section called "s-…".
        let mut tx = doc.transaction();
        assert!(matches!(
            set_section(&mut tx, "s-00000000", "x"),
            Err(PlanError::UnknownSection(_))
        ));
        tx.rollback();
    }

    #[test]
    fn rich_text_is_stored_as_automerge_blocks_and_marks() {
        let mut doc = new_plan();
        edit(&mut doc, |tx| {
            set_section(
                tx,
                "Doelen en resultaten",
                "## Doel\n\nMinder **thuiszitters**, zie [monitor](https://example.org).",
            )
            .unwrap()
        });
        let p = read_plan(&doc).unwrap();
        let s = p
            .sections
            .iter()
            .find(|s| s.title == "Doelen en resultaten")
            .unwrap();
        let sections = get_obj(&doc, &ROOT, "sections", ObjType::List).unwrap();
        let (obj, _) = find_section(&doc, &sections, &s.id).unwrap().unwrap();
        let text = get_obj(&doc, &obj, "text", ObjType::Text).unwrap();
        let mut marks = doc.marks(&text).unwrap();
        marks.sort_by_key(|m| m.start);
        let names: Vec<_> = marks.iter().map(|m| m.name().to_owned()).collect();
        assert_eq!(names, ["strong", "link"]);
        let visible: String = visible_text(&doc, &text).unwrap().into_iter().collect();
        assert_eq!(
            visible,
            "\u{fffc}Doel\u{fffc}Minder thuiszitters, zie monitor."
        );
        let bold: String = visible
            .chars()
            .skip(marks[0].start)
            .take(marks[0].end - marks[0].start)
            .collect();
        assert_eq!(bold, "thuiszitters");
    }

    #[test]
    fn concurrent_edits_of_different_paragraphs_both_survive_with_their_marks() {
        let mut base = new_plan();
        edit(&mut base, |tx| {
            set_section(tx, "Doelen en resultaten", "alpha\n\nbeta **vet**\n\ngamma").unwrap()
        });
        let mut left = base.fork();
        let mut right = base.fork();
        edit(&mut left, |tx| {
            set_section(tx, "Doelen en resultaten", "ALPHA\n\nbeta **vet**\n\ngamma").unwrap()
        });
        edit(&mut right, |tx| {
            set_section(
                tx,
                "Doelen en resultaten",
                "alpha\n\nnieuw beta **vet**\n\nGAMMA _schuin_",
            )
            .unwrap()
        });
        left.merge(&mut right).unwrap();
        assert_eq!(
            section_text(&left, "Doelen en resultaten"),
            "ALPHA\n\nnieuw beta **vet**\n\nGAMMA _schuin_"
        );
    }

    #[test]
    fn agreements_update_with_allowed_transitions_only() {
        let mut doc = new_plan();
        let a = agreement(&mut doc);
        let sid = read_plan(&doc).unwrap().sections[3].id.clone();
        edit(&mut doc, |tx| {
            update_agreement(
                tx,
                &a,
                &AgreementUpdate {
                    status: Some(AgreementStatus::InUitvoering),
                    description: Some("Dossier gaat mee.".into()),
                    funding: Some(Some("Regiomiddelen vsv 2027".into())),
                    link: vec![sid.clone()],
                    deadline: Some(None),
                    ..AgreementUpdate::default()
                },
            )
            .unwrap()
        });
        let p = read_plan(&doc).unwrap();
        let got = &p.agreements[0];
        assert_eq!(got.status, AgreementStatus::InUitvoering);
        assert_eq!(got.description, "Dossier gaat mee.");
        assert_eq!(got.funding.as_deref(), Some("Regiomiddelen vsv 2027"));
        assert_eq!(got.sections, [sid]);
        assert_eq!(got.deadline, None);

        edit(&mut doc, |tx| {
            update_agreement(
                tx,
                &a,
                &AgreementUpdate {
                    status: Some(AgreementStatus::Afgerond),
                    ..Default::default()
                },
            )
            .unwrap()
        });
        // Finished work does not lapse; nothing of a refused update is written.
        let heads = doc.get_heads();
        let mut tx = doc.transaction();
        let r = update_agreement(
            &mut tx,
            &a,
            &AgreementUpdate {
                title: Some("Andere titel".into()),
                status: Some(AgreementStatus::Vervallen),
                ..Default::default()
            },
        );
        assert!(matches!(r, Err(PlanError::BadTransition { .. })), "{r:?}");
        assert_eq!(tx.pending_ops(), 0);
        let unknown = update_agreement(&mut tx, "a-00000000", &AgreementUpdate::default());
        assert!(matches!(unknown, Err(PlanError::UnknownAgreement(_))));
        let bad_link = update_agreement(
            &mut tx,
            &a,
            &AgreementUpdate {
                link: vec!["Bestaat niet".into()],
                ..Default::default()
            },
        );
        assert!(matches!(bad_link, Err(PlanError::UnknownSection(_))));
        assert_eq!(tx.pending_ops(), 0);
        tx.rollback();
        assert_eq!(doc.get_heads(), heads);
    }

    #[test]
    fn concurrent_status_writes_stay_visible_until_resolved() {
        let mut base = new_plan();
        let a = agreement(&mut base);
        let mut left = base.fork();
        let mut right = base.fork();
        let set = |doc: &mut Automerge, s| {
            edit(doc, |tx| {
                update_agreement(
                    tx,
                    &a,
                    &AgreementUpdate {
                        status: Some(s),
                        ..Default::default()
                    },
                )
                .unwrap()
            })
        };
        set(&mut left, AgreementStatus::InUitvoering);
        set(&mut right, AgreementStatus::Vervallen);
        left.merge(&mut right).unwrap();
        let p = read_plan(&left).unwrap();
        assert_eq!(p.conflicts.len(), 1, "{:?}", p.conflicts);
        let c = &p.conflicts[0];
        assert_eq!(
            (c.target.as_str(), c.field.as_str()),
            (format!("agreement {a}").as_str(), "status")
        );
        let mut values: Vec<_> = c.values.iter().map(|v| v.value.as_str()).collect();
        values.sort();
        assert_eq!(values, ["in-uitvoering", "vervallen"]);
        assert!(c.values.iter().all(|v| v.actor.len() == 32));
        // Either side's value may be chosen to resolve it; the write replaces both.
        set(&mut left, AgreementStatus::Vervallen);
        let p = read_plan(&left).unwrap();
        assert!(p.conflicts.is_empty());
        assert_eq!(p.agreements[0].status, AgreementStatus::Vervallen);
    }

    #[test]
    fn comments_stay_on_their_text_while_it_changes_around_them() {
        let mut doc = new_plan();
        edit(&mut doc, |tx| {
            set_section(
                tx,
                "Inleiding",
                "Wij willen minder thuiszitters in de regio.",
            )
            .unwrap()
        });
        let input = CommentInput {
            section: "Inleiding".into(),
            quote: "minder thuiszitters".into(),
            text: "Hoeveel minder?".into(),
            author: PartyName::new("roc-midden").unwrap(),
            time: 1_800_000_000,
        };
        let id = edit(&mut doc, |tx| add_comment(tx, &input).unwrap());
        let mut other = doc.fork();
        edit(&mut doc, |tx| {
            set_section(
                tx,
                "Inleiding",
                "Samen met het onderwijs willen wij minder thuiszitters in de regio.",
            )
            .unwrap()
        });
        edit(&mut other, |tx| {
            set_section(
                tx,
                "Inleiding",
                "Wij willen minder thuiszitters in heel de regio.",
            )
            .unwrap()
        });
        doc.merge(&mut other).unwrap();
        let p = read_plan(&doc).unwrap();
        assert_eq!(
            section_text(&doc, "Inleiding"),
            "Samen met het onderwijs willen wij minder thuiszitters in heel de regio."
        );
        let c = &p.comments[0];
        assert_eq!(c.id, id);
        assert_eq!(c.anchored.as_deref(), Some("minder thuiszitters"));
        // Part of the quote deleted: the anchor shrinks to what is left.
        edit(&mut doc, |tx| {
            set_section(
                tx,
                "Inleiding",
                "Samen met het onderwijs willen wij thuiszitters in heel de regio.",
            )
            .unwrap()
        });
        assert_eq!(
            read_plan(&doc).unwrap().comments[0].anchored.as_deref(),
            Some("thuiszitters")
        );
        // All of it deleted: detached, the original quote kept.
        edit(&mut doc, |tx| {
            set_section(tx, "Inleiding", "Samen met het onderwijs.").unwrap()
        });
        let c = &read_plan(&doc).unwrap().comments[0];
        assert_eq!(c.anchored, None);
        assert_eq!(c.quote, "minder thuiszitters");
        edit(&mut doc, |tx| resolve_comment(tx, &id, true).unwrap());
        assert!(read_plan(&doc).unwrap().comments[0].resolved);

        let mut tx = doc.transaction();
        let missing = add_comment(
            &mut tx,
            &CommentInput {
                quote: "bestaat niet".into(),
                ..input.clone()
            },
        );
        assert!(matches!(missing, Err(PlanError::QuoteNotFound(_))));
        set_section(&mut tx, "Doelen en resultaten", "de regio en de regio").unwrap();
        let twice = add_comment(
            &mut tx,
            &CommentInput {
                section: "Doelen en resultaten".into(),
                quote: "regio".into(),
                ..input.clone()
            },
        );
        assert!(matches!(
            twice,
            Err(PlanError::AmbiguousQuote { count: 2, .. })
        ));
        assert!(matches!(
            resolve_comment(&mut tx, "c-00000000", true),
            Err(PlanError::UnknownComment(_))
        ));
        tx.rollback();
    }

    /// A schema-1 document as the previous release wrote it.
    fn v1_plan() -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "type", TYPE_PLAN).unwrap();
        tx.put(ROOT, "schema", ScalarValue::Uint(1)).unwrap();
        tx.put(ROOT, "kind", "jeugdplan").unwrap();
        tx.put(ROOT, "title", "Oud plan").unwrap();
        tx.put(ROOT, "owner", "gemeente-utrecht").unwrap();
        let sections = tx.put_object(ROOT, "sections", ObjType::List).unwrap();
        let s = tx.insert_object(&sections, 0, ObjType::Map).unwrap();
        tx.put(&s, "id", "s-0000000a").unwrap();
        tx.put(&s, "title", "Inleiding").unwrap();
        let t = tx.put_object(&s, "text", ObjType::Text).unwrap();
        tx.splice_text(&t, 0, 0, "Oude tekst met *nadruk*.\n")
            .unwrap();
        let agreements = tx.put_object(ROOT, "agreements", ObjType::List).unwrap();
        let a = tx.insert_object(&agreements, 0, ObjType::Map).unwrap();
        tx.put(&a, "id", "a-0000000b").unwrap();
        tx.put(&a, "title", "Afspraak").unwrap();
        tx.put(&a, "owner", "roc-midden").unwrap();
        tx.put(&a, "deadline", ScalarValue::Null).unwrap();
        tx.put(&a, "status", "open").unwrap();
        tx.commit();
        doc
    }

    #[test]
    fn schema_1_documents_read_and_upgrade_without_losing_concurrent_work() {
        let mut doc = v1_plan();
        let p = read_plan(&doc).unwrap();
        assert_eq!(p.schema, 1);
        assert_eq!(p.sections[0].text, "Oude tekst met *nadruk*.\n");
        assert!(
            p.sections[0].blocks[0].runs[1].em,
            "legacy text reads as Markdown"
        );
        assert_eq!(p.agreements[0].description, "");
        assert!(p.comments.is_empty());
        // Two partners upgrade concurrently, each by adding a comment and linking a
        // section: both create the same containers; both comments and links survive.
        let mut other = doc.fork();
        let comment = |quote: &str, by: &str| CommentInput {
            section: "s-0000000a".into(),
            quote: quote.into(),
            text: format!("opmerking over {quote}"),
            author: PartyName::new(by).unwrap(),
            time: 1,
        };
        let link = |doc: &mut Automerge| {
            edit(doc, |tx| {
                update_agreement(
                    tx,
                    "a-0000000b",
                    &AgreementUpdate {
                        link: vec!["Inleiding".into()],
                        description: Some("x".into()),
                        ..Default::default()
                    },
                )
                .unwrap()
            })
        };
        edit(&mut doc, |tx| {
            add_comment(tx, &comment("Oude", "roc-midden")).unwrap()
        });
        link(&mut doc);
        edit(&mut other, |tx| {
            add_comment(tx, &comment("tekst", "swv-utrecht")).unwrap()
        });
        link(&mut other);
        doc.merge(&mut other).unwrap();
        let p = read_plan(&doc).unwrap();
        assert_eq!(p.schema, 2);
        let mut quotes: Vec<_> = p
            .comments
            .iter()
            .map(|c| c.anchored.clone().unwrap())
            .collect();
        quotes.sort();
        assert_eq!(quotes, ["Oude", "tekst"]);
        assert_eq!(p.agreements[0].sections, ["s-0000000a"]);
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let mut doc = new_plan();
        let heads = doc.get_heads();
        let mut tx = doc.transaction();
        assert!(matches!(
            set_section(&mut tx, "", "x"),
            Err(PlanError::BadTitle { .. })
        ));
        assert!(matches!(
            set_section(&mut tx, "a\nb", "x"),
            Err(PlanError::BadTitle { .. })
        ));
        let big = "x".repeat(MAX_SECTION_BYTES + 1);
        assert!(matches!(
            set_section(&mut tx, "Inleiding", &big),
            Err(PlanError::TextTooLarge(_))
        ));
        tx.rollback();
        assert_eq!(doc.get_heads(), heads);
    }

    #[test]
    fn foreign_and_newer_documents_are_refused() {
        let mut doc = Automerge::new();
        assert!(matches!(read_plan(&doc), Err(PlanError::Schema(_))));
        edit(&mut doc, |tx| {
            tx.put(ROOT, "type", "something-else").unwrap()
        });
        assert!(matches!(read_plan(&doc), Err(PlanError::Schema(_))));

        let mut doc = new_plan();
        edit(&mut doc, |tx| {
            tx.put(ROOT, "schema", ScalarValue::Uint(99)).unwrap()
        });
        assert!(matches!(read_plan(&doc), Err(PlanError::NewerSchema(99))));
        edit(&mut doc, |tx| {
            tx.put(ROOT, "schema", ScalarValue::Int(-1)).unwrap()
        });
        assert!(matches!(read_plan(&doc), Err(PlanError::Schema(_))));

        let mut doc = new_plan();
        edit(&mut doc, |tx| {
            tx.put(ROOT, "sections", "not a list").unwrap()
        });
        assert!(matches!(read_plan(&doc), Err(PlanError::Schema(_))));
        // A comment with a cursor that does not parse is a schema error, not a panic.
        let mut doc = new_plan();
        edit(&mut doc, |tx| {
            let list = get_obj(tx, &ROOT, "comments", ObjType::List).unwrap();
            let c = tx.insert_object(&list, 0, ObjType::Map).unwrap();
            for k in ["id", "section", "quote", "author", "text"] {
                tx.put(&c, k, "x").unwrap();
            }
            tx.put(&c, "author", "roc-midden").unwrap();
            tx.put(&c, "start", "garbage@@").unwrap();
            tx.put(&c, "start", "é").unwrap();
            tx.put(&c, "end", "e").unwrap();
            tx.put(&c, "time", 1).unwrap();
        });
        assert!(matches!(read_plan(&doc), Err(PlanError::Schema(_))));
        // Empty and non-ASCII cursors (which make Automerge's parser panic) too.
        for bad in ["garbage@@", "", "é", "-é@x", "1@é"] {
            let mut d = doc.fork();
            edit(&mut d, |tx| {
                let list = get_obj(tx, &ROOT, "comments", ObjType::List).unwrap();
                let c = get_obj(tx, &list, 0, ObjType::Map).unwrap();
                tx.put(&c, "start", bad).unwrap();
            });
            assert!(
                matches!(read_plan(&d), Err(PlanError::Schema(_))),
                "{bad:?}"
            );
        }
    }
}
