//! Issue 14, item 3: a member sends `Docs` requests whose Automerge sync message is
//! crafted to crash the responder (a Bloom filter with entries and no bits) or to
//! keep it busy (billions of probes). Both are refused as protocol violations before
//! Automerge sees them, and the node keeps answering honest requests. Item 4's
//! compressed-chunk bomb is in `compressed_change_bomb.rs` (it measures the
//! process's memory, so it runs alone); an honest large change still syncs (here).

mod common;

use std::sync::Mutex;

use common::{assert_still_serves, docs, region};
use regiosync_core::id::NodeId;
use regiosync_core::sync::{DocMessage, Request};
use regiosync_node::{Node, Transport, sync_with};
use regiosync_store::StoreRead;

#[test]
fn a_bloom_filter_with_entries_and_no_bits_does_not_crash_the_responder() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut kern, roc, doc) = region(tmp.path());
    // The whole request frame, byte for byte: format 1, postcard `Request::Docs` with
    // one `DocMessage` whose Automerge sync message has one `have` with a Bloom
    // filter of 1 entry, 0 bits per entry, 7 probes.
    let mut frame = vec![0x01, 0x04, 0x01];
    frame.extend(doc.as_bytes());
    frame.extend([
        0x0a, 0x42, 0x00, 0x00, 0x01, 0x00, 0x03, 0x01, 0x00, 0x07, 0x00,
    ]);
    frame.extend([0x00, 0x00]);
    assert_eq!(frame.len(), 32);
    assert!(
        matches!(Request::decode(&frame), Ok(Request::Docs { .. })),
        "the frame is a well-formed Docs request"
    );
    let a = kern.respond(
        &regiosync_node::SessionMemory::default(),
        &roc.info().node_id,
        &frame,
    );
    assert!(a.misbehaved.is_some(), "the peer is cut off");
    // The message is not used: nothing is sent for it.
    assert!(docs(&a.frame).iter().all(|d| d.changes.is_empty()));
    assert_still_serves(&mut kern, &roc, doc);
}

#[test]
fn bloom_filters_that_would_exhaust_the_responder_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut kern, roc, doc) = region(tmp.path());
    // u32::MAX probes: automerge would reserve 16 GiB for them.
    let sync = vec![
        0x42, 0x00, 0x00, 0x01, 0x00, 0x09, 0x01, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff,
        0x00,
    ];
    let frame = Request::Docs {
        docs: vec![DocMessage {
            doc,
            sync,
            changes: vec![],
            need: vec![],
        }],
    }
    .encode();
    let a = kern.respond(
        &regiosync_node::SessionMemory::default(),
        &roc.info().node_id,
        &frame,
    );
    assert!(a.misbehaved.is_some());
    assert_still_serves(&mut kern, &roc, doc);
}

/// Answers sync requests with the responder, in memory.
struct Direct {
    responder: Mutex<Node>,
    from: NodeId,
}

impl Transport for Direct {
    async fn request(&self, _peer: NodeId, frame: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut n = self.responder.lock().map_err(|e| e.to_string())?;
        Ok(n.respond(
            &regiosync_node::SessionMemory::default(),
            &self.from,
            &frame,
        )
        .frame)
    }
}

#[test]
fn an_honest_large_change_still_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut kern, roc, doc) = region(tmp.path());
    // About 200 KB of section text in one change.
    let text: String = (0..20_000).map(|i| format!("regel {i:04}\n")).collect();
    assert!(text.len() >= 200_000);
    kern.set_section(&doc, "Bijlage", &text).unwrap();
    let largest = kern
        .store()
        .changes(&doc)
        .unwrap()
        .iter()
        .map(|r| r.bytes.len())
        .max()
        .unwrap();
    assert!(largest > 100_000, "one large change ({largest} bytes)");
    let (kern_id, roc_id) = (kern.info().node_id, roc.info().node_id);
    let roc = tokio::sync::Mutex::new(roc);
    let net = Direct {
        responder: Mutex::new(kern),
        from: roc_id,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt
        .block_on(sync_with(
            &roc,
            &regiosync_node::SessionMemory::default(),
            &net,
            kern_id,
        ))
        .unwrap();
    assert_eq!(report.moved.changes_rejected, 0, "{report:?}");
    let bijlage = |n: &Node| {
        let plan = n.plan(&doc).unwrap();
        let s = plan.sections.into_iter().find(|s| s.title == "Bijlage");
        s.map(|s| s.text).unwrap_or_default()
    };
    let (roc, kern) = (roc.into_inner(), net.responder.into_inner().unwrap());
    let (theirs, ours) = (bijlage(&roc), bijlage(&kern));
    assert!(ours.len() >= 200_000, "{} bytes of text", ours.len());
    assert!(
        theirs == ours,
        "the ROC's copy of the large section differs"
    );
}
