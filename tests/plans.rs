//! Co-writing a plan across the region: three nodes edit one section offline and
//! converge over real libp2p connections on loopback, with marks and comment anchors
//! where a reader expects them; three parties approve, every node verifies the
//! approvals and counts the changes made since; forged and replayed approvals fail;
//! concurrent moves of sections on three nodes end in one order everywhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regiosync_core::id::{DocId, Role};
use regiosync_core::plan::{Plan, PlanKind, SectionPlace};
use regiosync_net::Multiaddr;
use regiosync_node::Node;
use regiosync_tests::{
    Running, free_addr, logs, loopback_config, region_by_files, start_node, wait_until,
};

const PARTIES: [(&str, Role); 3] = [
    ("gemeente-utrecht", Role::Kerngemeente),
    ("roc-midden", Role::Roc),
    ("swv-utrecht", Role::Swv),
];

const BASE: &str = "Wij werken samen aan **minder thuiszitters** in de regio.\n\n\
De aanpak heeft drie sporen: preventie, verzuim en terugkeer.";

/// The three parties' region (joined by files) and a plan of `kind` by the
/// kerngemeente with [`BASE`] as its introduction, then `more` on the kerngemeente.
fn region_with_plan(
    root: &Path,
    kind: PlanKind,
    more: impl FnOnce(&mut Node, &DocId),
) -> (Vec<PathBuf>, DocId) {
    logs();
    let dirs = region_by_files(root, &PARTIES, true);
    let mut kern = Node::open(&dirs[0]).unwrap();
    let doc = kern.create_plan(kind, "Plan 2027").unwrap();
    kern.set_section(&doc, "Inleiding", BASE).unwrap();
    more(&mut kern, &doc);
    (dirs, doc)
}

fn start_all(dirs: &[PathBuf], addrs: &[Multiaddr]) -> Vec<Running> {
    dirs.iter()
        .enumerate()
        .map(|(i, d)| {
            let others: Vec<Multiaddr> = addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| a.clone())
                .collect();
            start_node(d, loopback_config(&addrs[i], &others))
        })
        .collect()
}

async fn stop_all(nodes: Vec<Running>) {
    for n in nodes {
        n.stop().await;
    }
}

fn plans(dirs: &[PathBuf], doc: &DocId) -> Vec<Option<Plan>> {
    dirs.iter()
        .map(|d| Node::open(d).ok().and_then(|n| n.plan(doc).ok()))
        .collect()
}

/// Waits until every node reads the same plan and `want` holds for it.
async fn converge(dirs: &[PathBuf], doc: &DocId, what: &str, want: impl Fn(&Plan) -> bool) -> Plan {
    wait_until(what, Duration::from_secs(60), || {
        let all = plans(dirs, doc);
        matches!(all.first(), Some(Some(p)) if want(p) && all.iter().all(|q| q.as_ref() == Some(p)))
    })
    .await;
    Node::open(&dirs[0]).unwrap().plan(doc).unwrap()
}

fn edit(dir: &Path, doc: &DocId, text: &str) {
    Node::open(dir)
        .unwrap()
        .set_section(doc, "Inleiding", text)
        .unwrap();
}

fn inleiding(p: &Plan) -> &str {
    &p.titled("Inleiding").unwrap().text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_edit_one_section_offline_and_converge_with_marks_and_anchors() {
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, doc) = region_with_plan(tmp.path(), PlanKind::Jeugdplan, |kern, doc| {
        kern.add_comment(doc, "Inleiding", "minder thuiszitters", "Hoeveel minder?")
            .unwrap();
    });
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let nodes = start_all(&dirs, &addrs);
    converge(&dirs, &doc, "the plan reaches everyone", |p| {
        inleiding(p) == BASE && p.comments.len() == 1
    })
    .await;
    stop_all(nodes).await;

    // Offline, each partner rewrites the same section: inserts in the middle of the
    // first paragraph and deletions that overlap in the second.
    edit(
        &dirs[0],
        &doc,
        "Wij werken samen met het onderwijs aan **minder thuiszitters** in de regio.\n\n\
         De aanpak heeft drie sporen: verzuim en terugkeer.",
    );
    edit(
        &dirs[1],
        &doc,
        "Wij werken samen aan **minder thuiszitters**.\n\n\
         De aanpak heeft drie sporen: terugkeer.",
    );
    edit(
        &dirs[2],
        &doc,
        "Wij werken samen aan veel **minder thuiszitters** in de regio.\n\n\
         De aanpak heeft drie sporen: preventie, verzuim en terugkeer naar school.",
    );

    let nodes = start_all(&dirs, &addrs);
    let plan = converge(&dirs, &doc, "the three offline edits merge", |p| {
        let t = inleiding(p);
        t.contains("met het onderwijs") && t.contains("veel") && t.contains("naar school")
    })
    .await;
    stop_all(nodes).await;

    let section = plan.titled("Inleiding").unwrap();
    let paragraphs: Vec<String> = section.blocks.iter().map(|b| b.plain()).collect();
    // Every insertion survives, every deletion holds.
    assert_eq!(
        paragraphs[0], "Wij werken samen met het onderwijs aan veel minder thuiszitters.",
        "{}",
        section.text
    );
    let second = &paragraphs[1];
    assert!(second.contains("terugkeer naar school"), "{second}");
    assert!(
        !second.contains("preventie") && !second.contains("verzuim"),
        "{second}"
    );
    // The bold run is exactly the words that were bold: not the inserted "veel ".
    let bold: Vec<&str> = section.blocks[0]
        .runs
        .iter()
        .filter(|r| r.strong)
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(bold, ["minder thuiszitters"]);
    // The comment still sits on the words it was made on.
    assert_eq!(
        plan.comments[0].anchored.as_deref(),
        Some("minder thuiszitters")
    );
}

fn titles(p: &Plan) -> Vec<&str> {
    p.sections.iter().map(|s| s.title.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_section_moves_on_three_nodes_end_in_one_order_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, doc) = region_with_plan(tmp.path(), PlanKind::Jeugdplan, |kern, doc| {
        kern.add_comment(doc, "Inleiding", "minder thuiszitters", "Hoeveel minder?")
            .unwrap();
    });
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let nodes = start_all(&dirs, &addrs);
    converge(&dirs, &doc, "the plan reaches everyone", |p| {
        inleiding(p) == BASE && p.comments.len() == 1
    })
    .await;
    stop_all(nodes).await;
    Node::open(&dirs[0]).unwrap().approve(&doc, None).unwrap();

    // Offline: two parties each move a section to the front (the same gap), and two
    // parties move the same section to different places.
    let mv = |i: usize, section: &str, place: SectionPlace| {
        let m = Node::open(&dirs[i])
            .unwrap()
            .move_section(&doc, section, &place)
            .unwrap();
        assert!(m.value.moved && m.change.is_some(), "{section}");
    };
    mv(0, "Financiën", SectionPlace::First);
    mv(1, "Monitoring en evaluatie", SectionPlace::First);
    mv(1, "Inleiding", SectionPlace::Last);
    mv(
        2,
        "Inleiding",
        SectionPlace::After("Doelen en resultaten".into()),
    );

    let nodes = start_all(&dirs, &addrs);
    // `converge` waits until all three nodes read the same plan, order included.
    let plan = converge(&dirs, &doc, "the moves merge into one order", |p| {
        titles(p)[0] == "Financiën" && titles(p)[1] == "Monitoring en evaluatie"
    })
    .await;
    stop_all(nodes).await;

    let t = titles(&plan);
    // Both sections moved to the front are there, in list order (equal ranks);
    // the others kept their order around them.
    let rest: Vec<&str> = t[2..]
        .iter()
        .copied()
        .filter(|s| *s != "Inleiding")
        .collect();
    assert_eq!(
        rest,
        [
            "Visie en ambities",
            "Analyse: cijfers en trends",
            "Doelen en resultaten",
            "Preventie en voorliggend veld",
            "Samenwerking onderwijs en jeugdhulp",
        ]
    );
    // The section moved twice is at one of the two places, the same on every node,
    // with its text and comment.
    let at = t.iter().position(|s| *s == "Inleiding").unwrap();
    assert!(
        at == t.len() - 1 || t[at - 1] == "Doelen en resultaten",
        "{t:?}"
    );
    assert_eq!(inleiding(&plan), BASE);
    assert_eq!(
        plan.comments[0].anchored.as_deref(),
        Some("minder thuiszitters")
    );
    // The diff since the approval shows the moves and who made them.
    let (d, _, _) = Node::open(&dirs[0])
        .unwrap()
        .plan_diff(&doc, "approval:gemeente-utrecht", None)
        .unwrap();
    let moved: Vec<(&str, Vec<&str>)> = d
        .sections
        .iter()
        .filter(|s| s.moved)
        .map(|s| {
            (
                s.title.as_str(),
                s.authors.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(moved.len(), 3, "{moved:?}");
    assert_eq!(moved[0], ("Financiën", vec!["gemeente-utrecht"]));
    assert_eq!(moved[1], ("Monitoring en evaluatie", vec!["roc-midden"]));
    assert!(
        moved.contains(&("Inleiding", vec!["roc-midden", "swv-utrecht"])),
        "{moved:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_by_three_parties_verify_everywhere_and_count_later_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, doc) = region_with_plan(tmp.path(), PlanKind::Ondersteuningsplan, |_, _| {});
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let nodes = start_all(&dirs, &addrs);
    let plan = converge(&dirs, &doc, "the plan reaches everyone", |p| {
        inleiding(p) == BASE
    })
    .await;
    assert_eq!(plan.kind, PlanKind::Ondersteuningsplan);

    // Each party approves on its own node, the version it has.
    let mut approved = Vec::new();
    for d in &dirs {
        let mut n = Node::open(d).unwrap();
        approved.push(n.approve(&doc, Some("akkoord in OOGO")).unwrap());
    }
    assert!(approved.windows(2).all(|w| w[0] == w[1]));
    let all_approved = |dirs: &[PathBuf], since: usize| {
        dirs.iter().all(|d| {
            let a = Node::open(d).unwrap().approvals(&doc).unwrap();
            a.len() == 3 && a.iter().all(|a| a.changes_since == Some(since))
        })
    };
    wait_until(
        "every node sees three approvals of the current version",
        Duration::from_secs(60),
        || all_approved(&dirs, 0),
    )
    .await;

    // One change after the approvals: every node shows "1 change since" for all.
    edit(&dirs[1], &doc, "Een nieuwe inleiding.");
    wait_until(
        "every node counts the change after the approvals",
        Duration::from_secs(60),
        || all_approved(&dirs, 1),
    )
    .await;
    let n = Node::open(&dirs[2]).unwrap();
    for a in n.approvals(&doc).unwrap() {
        assert_eq!(a.comment.as_deref(), Some("akkoord in OOGO"));
        assert_eq!(
            a.heads,
            approved[0]
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
        );
    }
    // The diff against an approval names the party that made the change.
    let (diff, _, _) = n.plan_diff(&doc, "approval:swv-utrecht", None).unwrap();
    assert_eq!(diff.sections.len(), 1);
    assert_eq!(diff.sections[0].title, "Inleiding");
    assert_eq!(diff.sections[0].authors, ["roc-midden"]);
    stop_all(nodes).await;

    // A forged approval: the kerngemeente's approval op, moved to other heads, does
    // not import anywhere; the approvals stay as they were.
    let kern = Node::open(&dirs[0]).unwrap();
    let bundle = kern.export().unwrap();
    let head = approved[0][0].0;
    let at = bundle
        .windows(32)
        .position(|w| w == head)
        .expect("an approval's heads are in the log");
    let mut forged = bundle.clone();
    forged[at] ^= 0x01;
    let mut swv = Node::open(&dirs[2]).unwrap();
    let before = swv.approvals(&doc).unwrap();
    assert!(
        swv.import(&forged).is_err(),
        "a moved approval was accepted"
    );
    assert_eq!(
        format!("{:?}", swv.approvals(&doc).unwrap()),
        format!("{before:?}")
    );
    // A replayed approval (the same signed ops again) changes nothing either.
    let imported = swv.import(&bundle).unwrap();
    assert_eq!(imported.new_ops, 0, "{imported:?}");
    assert_eq!(
        format!("{:?}", swv.approvals(&doc).unwrap()),
        format!("{before:?}")
    );
}

#[test]
fn approving_or_diffing_wrongly_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = region_by_files(tmp.path(), &PARTIES, true);
    let mut kern = Node::open(&dirs[0]).unwrap();
    let doc = kern.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    // The SWV may not read the plan: it cannot approve it.
    let roc = vec![regiosync_tests::party("roc-midden")];
    kern.set_acl(&doc, Some(roc.clone()), Some(roc)).unwrap();
    let log = kern.export().unwrap();
    let mut swv = Node::open(&dirs[2]).unwrap();
    swv.import(&log).unwrap();
    let err = swv.approve(&doc, None).unwrap_err().to_string();
    assert!(err.contains("cannot read plan"), "{err}");
    assert!(swv.region_state().unwrap().approvals.is_empty());
    // Versions the node does not have, and parties that did not approve.
    for bad in ["deadbeef", "approval:roc-midden", "xyz", "approval:"] {
        let err = kern.plan_diff(&doc, bad, None).unwrap_err().to_string();
        assert!(
            err.contains("not on this node") || err.contains("has not approved"),
            "{bad}: {err}"
        );
    }
    // A node outside any region cannot approve.
    let lone = tmp.path().join("lone");
    Node::init(
        &lone,
        regiosync_tests::party("gemeente-zeist"),
        Role::Gemeente,
        None,
    )
    .unwrap();
    let err = Node::open(&lone).unwrap().approve(&doc, None).unwrap_err();
    assert!(err.to_string().contains("not in a region"), "{err}");
}
