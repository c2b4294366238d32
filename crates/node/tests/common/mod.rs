//! Shared setup of the hostile-input tests.

#![allow(dead_code, unreachable_pub)]

use regiosync_core::id::{DocId, PartyName, Role};
use regiosync_core::plan::PlanKind;
use regiosync_core::sync::{DocMessage, Request, Response, opening_message};
use regiosync_node::Node;
use regiosync_store::StoreRead;

pub fn party(s: &str) -> PartyName {
    PartyName::new(s).unwrap()
}

/// A kerngemeente that founded the region and made a plan with text, and a ROC that
/// joined and knows the plan from the region log but holds none of its changes.
pub fn region(tmp: &std::path::Path) -> (Node, Node, DocId) {
    Node::init(
        &tmp.join("kern"),
        party("gemeente-utrecht"),
        Role::Kerngemeente,
        None,
    )
    .unwrap();
    Node::init(&tmp.join("roc"), party("roc-midden"), Role::Roc, None).unwrap();
    let mut kern = Node::open(&tmp.join("kern")).unwrap();
    let mut roc = Node::open(&tmp.join("roc")).unwrap();
    kern.create_region("Regio Utrecht").unwrap();
    let code = kern
        .invite(party("roc-midden"), Role::Roc, false, 3600)
        .unwrap();
    let (_, bundle) = kern
        .accept(&roc.join_request(&code.encode()).unwrap())
        .unwrap();
    roc.import(&bundle).unwrap();
    let doc = kern.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    kern.set_section(&doc, "Inleiding", "Samen.\n").unwrap();
    roc.import(&kern.export().unwrap()).unwrap();
    (kern, roc, doc)
}

pub fn docs(answer: &[u8]) -> Vec<DocMessage> {
    match Response::decode(answer).unwrap() {
        Response::Docs { docs } => docs,
        other => panic!("expected Docs, got {other:?}"),
    }
}

/// The node still serves an honest first sync of the plan: the ROC's opening message
/// (it holds nothing) brings every change.
pub fn assert_still_serves(kern: &mut Node, roc: &Node, doc: DocId) {
    let honest = Request::Docs {
        docs: vec![DocMessage {
            doc,
            sync: opening_message(&automerge::Automerge::new(), &[]),
            changes: vec![],
            need: vec![],
        }],
    };
    let a = kern.respond(
        &regiosync_node::SessionMemory::default(),
        &roc.info().node_id,
        &honest.encode(),
    );
    assert!(a.misbehaved.is_none(), "{:?}", a.misbehaved);
    let got = docs(&a.frame);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].changes.len(),
        kern.store().changes(&doc).unwrap().len(),
        "an honest request after the attack is answered in full"
    );
}
