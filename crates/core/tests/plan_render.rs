//! Export and diff output for a fixed scenario, checked against files in
//! `tests/expected/`. The scenario is deterministic (fixed actors, ids and clock), so
//! any change in the output is a change in behaviour: review it, then regenerate the
//! files with `REGIOSYNC_BLESS=1 cargo test -p regiosync-core --test plan_render`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ObjType, ROOT, ScalarValue};
use regiosync_core::id::PartyName;
use regiosync_core::plan::markdown::{ApprovalLine, ExportContext, format_time};
use regiosync_core::plan::{self, AgreementStatus, AgreementUpdate, Plan};

const T0: i64 = 1_795_000_000;

fn party(s: &str) -> PartyName {
    PartyName::new(s).unwrap()
}

/// Commits one edit as `actor` at a fixed time.
fn edit(
    doc: &mut Automerge,
    actor: u8,
    at: i64,
    f: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
) {
    doc.set_actor(ActorId::from([actor; 16]));
    let mut tx = doc.transaction();
    f(&mut tx);
    tx.commit_with(CommitOptions::default().with_time(at).with_message("edit"));
}

/// A plan laid out as `init_plan` does, with fixed ids instead of random ones.
fn base() -> Automerge {
    let mut doc = Automerge::new();
    edit(&mut doc, 1, T0, |tx| {
        tx.put(ROOT, "type", "regiosync/plan").unwrap();
        tx.put(ROOT, "schema", ScalarValue::Uint(2)).unwrap();
        tx.put(ROOT, "kind", "oogo-verslag").unwrap();
        tx.put(ROOT, "title", "OOGO 12 maart 2027 <concept>")
            .unwrap();
        tx.put(ROOT, "owner", "swv-utrecht").unwrap();
        let sections = tx.put_object(ROOT, "sections", ObjType::List).unwrap();
        for (i, title) in ["Agenda", "Bespreking", "Besluiten en afspraken"]
            .iter()
            .enumerate()
        {
            let s = tx.insert_object(&sections, i, ObjType::Map).unwrap();
            tx.put(&s, "id", format!("s-0000000{i}")).unwrap();
            tx.put(&s, "title", *title).unwrap();
            tx.put_object(&s, "text", ObjType::Text).unwrap();
        }
        let agreements = tx.put_object(ROOT, "agreements", ObjType::List).unwrap();
        for (i, (title, owner)) in [
            ("Warme overdracht vo-mbo", "roc-midden"),
            ("Thuiszittersoverleg | maandelijks", "gemeente-utrecht"),
        ]
        .iter()
        .enumerate()
        {
            let a = tx.insert_object(&agreements, i, ObjType::Map).unwrap();
            tx.put(&a, "id", format!("a-0000000{i}")).unwrap();
            tx.put(&a, "title", *title).unwrap();
            tx.put_object(&a, "description", ObjType::Text).unwrap();
            tx.put(&a, "owner", *owner).unwrap();
            tx.put(&a, "deadline", ScalarValue::Null).unwrap();
            tx.put(&a, "status", "open").unwrap();
            tx.put(&a, "funding", ScalarValue::Null).unwrap();
            tx.put_object(&a, "sections", ObjType::Map).unwrap();
        }
        tx.put_object(ROOT, "comments", ObjType::List).unwrap();
    });
    edit(&mut doc, 1, T0 + 60, |tx| {
        plan::set_section(
            tx,
            "Agenda",
            "1. Opening\n2. Ondersteuningsplan 2027\n3. Rondvraag",
        )
        .unwrap();
        plan::set_section(
            tx,
            "Bespreking",
            "De SWV licht het plan toe. Zie de [monitor](https://example.org/monitor?jaar=2027&regio=utrecht).\n\nDe gemeenten vragen **meer aandacht** voor _thuiszitters_.",
        )
        .unwrap();
    });
    doc
}

/// The scenario: the base version (approved by two parties), then the ROC changes
/// the discussion and an agreement, and the kerngemeente moves the decisions to the
/// top and sets a deadline.
fn scenario() -> (Automerge, Vec<automerge::ChangeHash>) {
    let mut doc = base();
    let approved = doc.get_heads();
    edit(&mut doc, 2, T0 + 3600, |tx| {
        plan::set_section(
            tx,
            "Bespreking",
            "De SWV licht het plan toe. Zie de [monitor](https://example.org/monitor?jaar=2027&regio=utrecht).\n\nDe gemeenten en het ROC vragen **meer aandacht** voor _thuiszitters_ en verzuim.\n\n- Voorstel: één loket",
        )
        .unwrap();
        plan::update_agreement(
            tx,
            "a-00000000",
            &AgreementUpdate {
                status: Some(AgreementStatus::InUitvoering),
                description: Some("Dossier gaat mee <met toestemming>.".into()),
                funding: Some(Some("Regiomiddelen vsv".into())),
                link: vec!["Bespreking".into()],
                ..Default::default()
            },
        )
        .unwrap();
    });
    edit(&mut doc, 3, T0 + 7200, |tx| {
        // A plan without ranks (laid out by hand, as an earlier release did):
        // its first move.
        plan::move_section(tx, "Besluiten en afspraken", &plan::SectionPlace::First).unwrap();
        plan::update_agreement(
            tx,
            "a-00000001",
            &AgreementUpdate {
                deadline: Some(Some(plan::parse_date("2027-06-30").unwrap())),
                ..Default::default()
            },
        )
        .unwrap();
    });
    (doc, approved)
}

fn short(heads: &[automerge::ChangeHash]) -> String {
    heads
        .iter()
        .map(|h| h.to_string()[..8].to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

fn context(doc: &Automerge, approved: &[automerge::ChangeHash]) -> ExportContext {
    let since = doc.get_changes(approved).len();
    let line = |p: &str, comment: Option<&str>| ApprovalLine {
        party: p.into(),
        version: short(approved),
        time: format_time(T0 + 120),
        comment: comment.map(str::to_owned),
        changes_since: Some(since),
    };
    ExportContext {
        id: "7f3a9c1e".into(),
        version: short(&doc.get_heads()),
        approvals: vec![
            line("gemeente-utrecht", Some("akkoord | onder voorbehoud")),
            line("swv-utrecht", None),
        ],
        comments: false,
    }
}

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expected")
        .join(name);
    if std::env::var_os("REGIOSYNC_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with REGIOSYNC_BLESS=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from {}:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

fn current(doc: &Automerge) -> Plan {
    plan::read_plan(doc).unwrap()
}

#[test]
fn markdown_export_matches_the_expected_file() {
    let (doc, approved) = scenario();
    check(
        "oogo.md",
        &plan::markdown::render(&current(&doc), &context(&doc, &approved)),
    );
}

#[test]
fn html_export_matches_the_expected_file() {
    let (doc, approved) = scenario();
    check(
        "oogo.html",
        &plan::html::render(&current(&doc), &context(&doc, &approved)),
    );
}

#[test]
fn diff_since_an_approval_matches_the_expected_file() {
    let (doc, approved) = scenario();
    let before = plan::read_plan(&doc.fork_at(&approved).unwrap()).unwrap();
    let authors: BTreeMap<String, BTreeSet<String>> = [
        ("section s-00000001", "roc-midden"),
        ("agreement a-00000000", "roc-midden"),
        ("agreement a-00000001", "gemeente-utrecht"),
        ("section s-00000002", "gemeente-utrecht"),
    ]
    .into_iter()
    .map(|(t, p)| (t.to_owned(), BTreeSet::from([p.to_owned()])))
    .collect();
    let d = plan::diff::diff(&before, &current(&doc), &authors);
    check(
        "oogo-diff.txt",
        &plan::diff::render(&d, &short(&approved), &short(&doc.get_heads())),
    );
}

#[test]
fn the_automerge_export_reads_back_with_plain_automerge() {
    // What another implementation sees: load the saved bytes and walk the documented
    // layout with nothing but Automerge's own API.
    use automerge::ReadDoc;
    let (doc, _) = scenario();
    let loaded = Automerge::load(&doc.save()).unwrap();
    let sections = match loaded.get(ROOT, "sections").unwrap() {
        Some((automerge::Value::Object(ObjType::List), id)) => id,
        other => panic!("{other:?}"),
    };
    let s1 = loaded.get(&sections, 1).unwrap().unwrap().1;
    let text = loaded.get(&s1, "text").unwrap().unwrap().1;
    let spans: Vec<_> = loaded.spans(&text).unwrap().collect();
    let blocks = spans
        .iter()
        .filter(|s| matches!(s, automerge::iter::Span::Block(_)))
        .count();
    assert_eq!(blocks, 3);
    let marks: BTreeSet<String> = loaded
        .marks(&text)
        .unwrap()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(
        marks,
        BTreeSet::from(["em".into(), "link".into(), "strong".into()])
    );
    assert_eq!(current(&loaded), current(&doc));
    let _ = party("roc-midden");
}
