//! The mapping between a plan's Automerge document and the typed [`Plan`] view.
//!
//! Layout of schema version 1 (root map):
//!
//! | key | value |
//! |---|---|
//! | `type` | `"regiosync/plan"` |
//! | `schema` | uint, [`PLAN_SCHEMA_VERSION`] |
//! | `kind` | `"jeugdplan"`, `"ondersteuningsplan"`, `"vsv-programma"`, `"oogo-verslag"` |
//! | `title` | str |
//! | `owner` | str, party name |
//! | `sections` | list of maps `{id: str, title: str, text: Text}` |
//! | `agreements` | list of maps `{id, title, owner: str, deadline: str "YYYY-MM-DD" or null, status: str}` |
//!
//! Readers reject documents that break this layout with [`PlanError::Schema`] instead of
//! guessing: a document can arrive from any peer.

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ROOT, ReadDoc, ScalarValue};

use super::{
    Agreement, AgreementStatus, MAX_SECTION_BYTES, Plan, PlanError, PlanKind, Section, date_format,
    validate_title,
};
use crate::docschema::{get_date_opt, get_obj, get_str, get_uint, new_local_id, violation};
use crate::id::PartyName;

/// The plan schema version this code writes and reads.
pub const PLAN_SCHEMA_VERSION: u64 = 1;
/// The value of the root `type` key of every plan.
const TYPE_PLAN: &str = "regiosync/plan";

/// Writes the skeleton of a new plan into an empty document.
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
    tx.put_object(ROOT, "sections", ObjType::List)?;
    tx.put_object(ROOT, "agreements", ObjType::List)?;
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

/// Sets the text of a section, creating the section (appended at the end) if no
/// section has `section` as its id or (case-insensitively) its title.
///
/// The text is applied as a minimal diff ([`Transactable::update_text`]), so
/// concurrent edits of other paragraphs survive.
pub fn set_section<T: Transactable>(
    tx: &mut T,
    section: &str,
    text: &str,
) -> Result<SectionEdit, PlanError> {
    if text.len() > MAX_SECTION_BYTES {
        return Err(PlanError::TextTooLarge(text.len()));
    }
    check_header(tx)?;
    let sections = get_obj(tx, &ROOT, "sections", ObjType::List)?;
    let (text_obj, id, created) = match find_section(tx, &sections, section)? {
        Some((obj, id)) => (get_obj(tx, &obj, "text", ObjType::Text)?, id, false),
        None => {
            let title = validate_title("section title", section)?;
            let id = new_local_id("s")?;
            let idx = tx.length(&sections);
            let obj = tx.insert_object(&sections, idx, ObjType::Map)?;
            tx.put(&obj, "id", id.as_str())?;
            tx.put(&obj, "title", title)?;
            (tx.put_object(&obj, "text", ObjType::Text)?, id, true)
        }
    };
    tx.update_text(&text_obj, text)?;
    Ok(SectionEdit { id, created })
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
    check_header(tx)?;
    let list = get_obj(tx, &ROOT, "agreements", ObjType::List)?;
    let id = new_local_id("a")?;
    let idx = tx.length(&list);
    let obj = tx.insert_object(&list, idx, ObjType::Map)?;
    tx.put(&obj, "id", id.as_str())?;
    tx.put(&obj, "title", title)?;
    tx.put(&obj, "owner", input.owner.as_str())?;
    match input.deadline {
        Some(d) => tx.put(&obj, "deadline", date_format::format(d))?,
        None => tx.put(&obj, "deadline", ScalarValue::Null)?,
    }
    tx.put(&obj, "status", AgreementStatus::Open.as_str())?;
    Ok(id)
}

/// Reads the typed view of a plan document.
pub fn read_plan<R: ReadDoc>(doc: &R) -> Result<Plan, PlanError> {
    let schema = check_header(doc)?;
    let kind: PlanKind = get_str(doc, &ROOT, "kind")?
        .parse()
        .map_err(|_| PlanError::Schema("unknown plan kind".into()))?;
    let owner = party(&get_str(doc, &ROOT, "owner")?)?;
    let title = get_str(doc, &ROOT, "title")?;

    let sections_obj = get_obj(doc, &ROOT, "sections", ObjType::List)?;
    let mut sections = Vec::new();
    for i in 0..doc.length(&sections_obj) {
        let s = get_obj(doc, &sections_obj, i, ObjType::Map)?;
        let text_obj = get_obj(doc, &s, "text", ObjType::Text)?;
        sections.push(Section {
            id: get_str(doc, &s, "id")?,
            title: get_str(doc, &s, "title")?,
            text: doc.text(&text_obj)?,
        });
    }

    let agreements_obj = get_obj(doc, &ROOT, "agreements", ObjType::List)?;
    let mut agreements = Vec::new();
    for i in 0..doc.length(&agreements_obj) {
        let a = get_obj(doc, &agreements_obj, i, ObjType::Map)?;
        let deadline = get_date_opt(doc, &a, "deadline")?;
        agreements.push(Agreement {
            id: get_str(doc, &a, "id")?,
            title: get_str(doc, &a, "title")?,
            owner: party(&get_str(doc, &a, "owner")?)?,
            deadline,
            status: get_str(doc, &a, "status")?
                .parse()
                .map_err(|_| schema_err("status"))?,
        });
    }

    Ok(Plan {
        schema,
        kind,
        title,
        owner,
        sections,
        agreements,
    })
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

/// Finds a section by id, or else by case-insensitive title.
fn find_section<R: ReadDoc>(
    doc: &R,
    sections: &ObjId,
    reference: &str,
) -> Result<Option<(ObjId, String)>, PlanError> {
    let wanted = reference.trim();
    let mut by_title = Vec::new();
    for i in 0..doc.length(sections) {
        let s = get_obj(doc, sections, i, ObjType::Map)?;
        let id = get_str(doc, &s, "id")?;
        if id == wanted {
            return Ok(Some((s, id)));
        }
        if get_str(doc, &s, "title")?.trim().to_lowercase() == wanted.to_lowercase() {
            by_title.push((s, id));
        }
    }
    match by_title.len() {
        0 => Ok(None),
        1 => Ok(by_title.pop()),
        _ => Err(PlanError::AmbiguousSection(
            wanted.chars().take(80).collect(),
        )),
    }
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

    #[test]
    fn edits_read_back_in_order() {
        let mut doc = new_plan();
        let mut tx = doc.transaction();
        let a = set_section(&mut tx, "Inleiding", "Eerste tekst\n").unwrap();
        assert!(a.created);
        let b = set_section(&mut tx, "Doelen", "Minder thuiszitters").unwrap();
        let a2 = set_section(&mut tx, "inleiding", "Nieuwe tekst\n").unwrap();
        assert_eq!(
            a2,
            SectionEdit {
                id: a.id.clone(),
                created: false
            }
        );
        let b2 = set_section(&mut tx, &b.id, "Minder uitval").unwrap();
        assert_eq!(b2.id, b.id);
        let ag = add_agreement(
            &mut tx,
            &AgreementInput {
                title: "Warme overdracht vo-mbo".into(),
                owner: PartyName::new("swv-utrecht").unwrap(),
                deadline: Some(crate::plan::parse_date("2027-03-31").unwrap()),
            },
        )
        .unwrap();
        tx.commit();

        let plan = read_plan(&doc).unwrap();
        assert_eq!(plan.title, "Jeugdplan 2027");
        assert_eq!(plan.kind, PlanKind::Jeugdplan);
        assert_eq!(plan.schema, PLAN_SCHEMA_VERSION);
        let titles: Vec<_> = plan.sections.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["Inleiding", "Doelen"]);
        assert_eq!(plan.sections[0].text, "Nieuwe tekst\n");
        assert_eq!(plan.sections[1].text, "Minder uitval");
        assert_eq!(plan.agreements.len(), 1);
        assert_eq!(plan.agreements[0].id, ag);
        assert_eq!(plan.agreements[0].status, AgreementStatus::Open);
        assert_eq!(
            plan.agreements[0]
                .deadline
                .map(date_format::format)
                .as_deref(),
            Some("2027-03-31")
        );
    }

    #[test]
    fn concurrent_edits_of_different_paragraphs_both_survive() {
        let mut base = new_plan();
        let mut tx = base.transaction();
        set_section(&mut tx, "Doelen", "alpha\nbeta\ngamma\n").unwrap();
        tx.commit();
        let mut left = base.fork();
        let mut right = base.fork();
        let mut tx = left.transaction();
        set_section(&mut tx, "Doelen", "ALPHA\nbeta\ngamma\n").unwrap();
        tx.commit();
        let mut tx = right.transaction();
        set_section(&mut tx, "Doelen", "alpha\nbeta\nGAMMA\n").unwrap();
        tx.commit();
        left.merge(&mut right).unwrap();
        assert_eq!(
            read_plan(&left).unwrap().sections[0].text,
            "ALPHA\nbeta\nGAMMA\n"
        );
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
            set_section(&mut tx, "Doelen", &big),
            Err(PlanError::TextTooLarge(_))
        ));
        tx.rollback();
        assert_eq!(doc.get_heads(), heads);
    }

    #[test]
    fn foreign_and_newer_documents_are_refused() {
        let mut doc = Automerge::new();
        assert!(matches!(read_plan(&doc), Err(PlanError::Schema(_))));
        let mut tx = doc.transaction();
        tx.put(ROOT, "type", "something-else").unwrap();
        tx.commit();
        assert!(matches!(read_plan(&doc), Err(PlanError::Schema(_))));

        let mut doc = new_plan();
        let mut tx = doc.transaction();
        tx.put(ROOT, "schema", ScalarValue::Uint(99)).unwrap();
        tx.commit();
        assert!(matches!(read_plan(&doc), Err(PlanError::NewerSchema(99))));
        let mut tx = doc.transaction();
        tx.put(ROOT, "schema", ScalarValue::Int(-1)).unwrap();
        tx.commit();
        assert!(matches!(read_plan(&doc), Err(PlanError::Schema(_))));

        let mut doc = new_plan();
        let mut tx = doc.transaction();
        tx.put(ROOT, "sections", "not a list").unwrap();
        tx.commit();
        assert!(matches!(read_plan(&doc), Err(PlanError::Schema(_))));
    }
}
