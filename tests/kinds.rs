//! A third kind of document, defined only here: a "note" (one text, at most 2 KiB
//! per change) registered on two nodes of a region travels between them over real
//! libp2p connections on loopback through the same sync session as plans, with no
//! code of sync, store or node knowing it. The kind's rule holds on the node that
//! edits; a node that does not know the kind takes none of its changes.

use std::sync::Arc;
use std::time::Duration;

use automerge::transaction::{Transactable, Transaction};
use automerge::{Change, ROOT, ReadDoc};
use regiosync_core::envelope::ChangeRejection;
use regiosync_core::id::{PartyName, Role};
use regiosync_core::kind::{DocKind, KindError, KindName};
use regiosync_core::plan::PlanKind;
use regiosync_net::Multiaddr;
use regiosync_node::{Node, NodeError};
use regiosync_tests::{
    free_addr, logs, loopback_config, region_by_files, start_opened, wait_until,
};

/// The test-only kind: everything a note is, in one place.
mod note {
    use super::*;

    /// Longest note change, in bytes.
    pub(crate) const MAX_CHANGE: usize = 2048;

    /// A note: one text under `text`.
    pub(crate) struct Note;

    impl DocKind for Note {
        fn family(&self) -> &'static str {
            "note"
        }

        fn init(
            &self,
            tx: &mut Transaction<'_>,
            _: &KindName,
            title: &str,
            _: &PartyName,
        ) -> Result<(), KindError> {
            tx.put(ROOT, "text", title)?;
            Ok(())
        }

        fn check_change(&self, change: &Change, _: bool) -> Result<(), ChangeRejection> {
            if change.raw_bytes().len() > MAX_CHANGE {
                return Err(ChangeRejection::OutsideKind(
                    "a note change is at most 2 KiB",
                ));
            }
            Ok(())
        }
    }

    pub(crate) fn name() -> KindName {
        KindName::new("note").unwrap()
    }

    /// Opens the node in `dir` knowing notes.
    pub(crate) fn open(dir: &std::path::Path) -> Node {
        let mut node = Node::open(dir).unwrap();
        node.register_kind(Arc::new(Note));
        node
    }

    /// The note's text on `node`, if it holds the note and the note has one.
    pub(crate) fn text(node: &Node, id: &regiosync_core::id::DocId) -> Option<String> {
        node.read_document(id, |doc| {
            doc.get(ROOT, "text")
                .ok()
                .flatten()
                .and_then(|(v, _)| v.into_string().ok())
        })
        .ok()
        .flatten()
    }
}

const PARTIES: [(&str, Role); 3] = [
    ("gemeente-utrecht", Role::Kerngemeente),
    ("roc-midden", Role::Roc),
    ("swv-utrecht", Role::Swv),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_defined_in_a_test_syncs_between_two_nodes_through_the_same_session() {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = region_by_files(tmp.path(), &PARTIES, true);
    let addrs: Vec<Multiaddr> = dirs.iter().map(|_| free_addr()).collect();
    let others = |i: usize| -> Vec<Multiaddr> {
        (0..3)
            .filter(|j| *j != i)
            .map(|j| addrs[j].clone())
            .collect()
    };
    // The kerngemeente and the ROC know notes; the SWV runs a build that does not.
    let mut running: Vec<_> = (0..2)
        .map(|i| start_opened(note::open(&dirs[i]), loopback_config(&addrs[i], &others(i))))
        .collect();
    running.push(start_opened(
        Node::open(&dirs[2]).unwrap(),
        loopback_config(&addrs[2], &others(2)),
    ));

    // The kerngemeente writes a note (a second handle on its data dir, as the CLI
    // would while `up` runs).
    let mut kern = note::open(&dirs[0]);
    let id = kern
        .create_document(&note::name(), "Bel de school")
        .unwrap();
    let roc = note::open(&dirs[1]);
    wait_until("the ROC holds the note", Duration::from_secs(30), || {
        note::text(&roc, &id).as_deref() == Some("Bel de school")
    })
    .await;

    // An edit on the ROC travels back.
    let mut roc = roc;
    let edited = roc
        .edit_document(&id, "edit note", |tx| {
            tx.put(ROOT, "text", "School gebeld, gesprek op dinsdag")
        })
        .unwrap();
    assert!(edited.change.is_some());
    wait_until(
        "the kerngemeente holds the ROC's edit",
        Duration::from_secs(30),
        || note::text(&kern, &id).as_deref() == Some("School gebeld, gesprek op dinsdag"),
    )
    .await;

    // The kind's rule: a change past 2 KiB is refused where it is made, and
    // nothing of it is stored.
    let long = "x".repeat(note::MAX_CHANGE * 2);
    let refused = kern.edit_document(&id, "edit note", |tx| tx.put(ROOT, "text", long.as_str()));
    assert!(
        matches!(
            refused,
            Err(NodeError::RefusedByKind {
                why: ChangeRejection::OutsideKind(_),
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        note::text(&kern, &id).as_deref(),
        Some("School gebeld, gesprek op dinsdag")
    );

    // A plan operation on a note is refused as such.
    assert!(matches!(kern.plan(&id), Err(NodeError::NotAPlan(..))));

    // The SWV, which does not know notes, holds the note's creation in its region
    // log but takes none of its changes: a plan made after the note reaches it
    // (through the same sessions that offered it the note's changes), the note's
    // text does not.
    let plan = kern.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    let mut swv = Node::open(&dirs[2]).unwrap();
    wait_until("the SWV holds the plan", Duration::from_secs(30), || {
        swv.plan(&plan).is_ok_and(|p| p.title == "Jeugdplan")
    })
    .await;
    assert!(swv.region_state().unwrap().docs.contains_key(&id));
    assert_eq!(note::text(&swv, &id), None);
    assert!(matches!(
        swv.create_document(&note::name(), "x"),
        Err(NodeError::Kind(KindError::Unknown(_)))
    ));

    for r in running {
        r.stop().await;
    }
}
