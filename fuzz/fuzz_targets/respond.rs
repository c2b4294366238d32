//! Arbitrary bytes as sync request frames from a member device, answered by
//! `Node::respond` of the committed fixture's responder (`fuzz/fixture/`, see
//! `regiosync_node::fuzzing`). The same harness replays the corpus in `cargo test`
//! (`crates/node/tests/fuzz_corpus.rs`).
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use regiosync_node::fuzzing::RespondHarness;

struct Fixture {
    harness: RespondHarness,
    _scratch: tempfile::TempDir,
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixture");
        let harness = RespondHarness::open(&dir, scratch.path()).expect("the fuzz fixture opens");
        Mutex::new(Fixture {
            harness,
            _scratch: scratch,
        })
    })
}

fuzz_target!(|frame: &[u8]| {
    let mut f = fixture().lock().unwrap_or_else(|e| e.into_inner());
    f.harness.run(frame);
});
