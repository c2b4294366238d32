//! A node with a region, a plan and staff accounts, and its web app, for the tests.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use regiosync_core::id::{DocId, PartyName, Role};
use regiosync_core::identity::SecretString;
use regiosync_core::plan::PlanKind;
use regiosync_node::Node;
use regiosync_node::staff::StaffRole;
use regiosync_web::{AppState, WebConfig, router};
use tokio::sync::Mutex;

pub const PASSWORD: &str = "correct paard batterij niet";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub node: Arc<Mutex<Node>>,
    pub app: axum::Router,
    pub plan: DocId,
}

pub fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// A kerngemeente node in "Regio Midden-Holland" with one plan whose text holds a
/// script tag, and accounts: b.beheer (beheerder), l.lezer (lezer), p.beleid
/// (beleid), n.nieuw (lezer, must change its password).
pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Node::init(
        dir.path(),
        PartyName::new("gemeente-gouda").unwrap(),
        Role::Kerngemeente,
        None,
    )
    .unwrap();
    let mut node = Node::open(dir.path()).unwrap();
    node.create_region("Regio Midden-Holland").unwrap();
    // The other parties join by files (their nodes are not run).
    for (p, role) in [
        ("roc-midden-holland", Role::Roc),
        ("gemeente-waddinxveen", Role::Gemeente),
        ("swv-midden-holland", Role::Swv),
    ] {
        let other = dir.path().join(p);
        Node::init(&other, PartyName::new(p).unwrap(), role, None).unwrap();
        let mut n = Node::open(&other).unwrap();
        let code = node
            .invite(PartyName::new(p).unwrap(), role, false, 3600)
            .unwrap();
        let request = n.join_request(&code.encode()).unwrap();
        let (_, bundle) = node.accept(&request).unwrap();
        n.import(&bundle).unwrap();
    }
    let plan = node
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan Midden-Holland 2027")
        .unwrap();
    node.set_section(
        &plan,
        "Inleiding",
        "Samen met het onderwijs. <script>alert(1)</script>",
    )
    .unwrap();
    node.set_section(
        &plan,
        "Visie en ambities",
        "De partners spreken af:\n\n- een **warme overdracht** van vo naar mbo;\n- één contactpersoon per school;\n- _jaarlijkse_ evaluatie in het OOGO.",
    )
    .unwrap();
    node.create_plan(PlanKind::VsvProgramma, "Regionaal programma vsv 2025-2028")
        .unwrap();
    for (name, role, must_change) in [
        ("b.beheer", StaffRole::Beheerder, false),
        ("l.lezer", StaffRole::Lezer, false),
        ("p.beleid", StaffRole::Beleid, false),
        ("n.nieuw", StaffRole::Lezer, true),
    ] {
        node.add_staff(name, role, &pass(PASSWORD), must_change)
            .unwrap();
    }
    let node = Arc::new(Mutex::new(node));
    let app = router(AppState::new(node.clone(), WebConfig::default()));
    Fixture {
        dir,
        node,
        app,
        plan,
    }
}
