//! Issue 14, item 4: a member sends, as a "change" in a `Docs` request, an Automerge
//! compressed chunk of about 260 KB that inflates to 256 MiB. It is refused unopened
//! (regiosync never sends compressed chunks), the peer is cut off, and the node keeps
//! answering honest requests. Alone in its test binary: it watches the process's peak
//! memory, which other tests running in parallel would disturb.

mod common;

use common::{assert_still_serves, region};
use regiosync_core::change_chunk::compressed_bomb;
use regiosync_core::sync::{DocMessage, Request, SignedChange};
use regiosync_store::StoreRead;

/// A field of /proc/self/status in kB (Linux).
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_compressed_change_bomb_is_refused_unopened() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut kern, roc, doc) = region(tmp.path());
    // A genuine envelope (of the plan's first change), so that only the chunk is wrong.
    let row = kern.store().changes(&doc).unwrap().remove(0);
    let before = kern.store().changes(&doc).unwrap().len();
    // 256 MiB of zeros in about 260 KB.
    let bomb = compressed_bomb(256 << 20);
    assert!(bomb.len() < 300 * 1024);
    let frame = Request::Docs {
        docs: vec![DocMessage {
            doc,
            sync: vec![],
            changes: vec![SignedChange {
                change: bomb,
                envelope: row.envelope.unwrap(),
            }],
            need: vec![],
        }],
    }
    .encode();
    // Peak memory of this process while answering, where Linux can reset the peak.
    let measured = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status_kb("VmRSS:");
    let a = kern.respond(
        &regiosync_node::SessionMemory::default(),
        &roc.info().node_id,
        &frame,
    );
    let peak = status_kb("VmHWM:");
    if let (true, Some(rss_before), Some(peak)) = (measured, rss_before, peak) {
        let grown_mib = peak.saturating_sub(rss_before) / 1024;
        assert!(
            grown_mib < 64,
            "answering the bomb took {grown_mib} MiB more memory: it was inflated"
        );
    }
    assert!(a.misbehaved.is_some(), "the peer is cut off");
    assert_eq!(a.stored, 0);
    assert_eq!(kern.store().changes(&doc).unwrap().len(), before);
    assert_still_serves(&mut kern, &roc, doc);
}
