//! The committed fuzz corpus, replayed on stable in every `cargo test` through the
//! same harnesses as the cargo-fuzz targets (`fuzz/fuzz_targets/`): every file of
//! `fuzz/corpus/<target>/` and of `fuzz/regressions/<target>/` (inputs that once
//! crashed or exhausted the node, each a fixed bug). CI machines have no nightly, so
//! this is how CI runs the fuzzer's findings.
//!
//! A regression input named `refused-*` must also get the peer cut off.
//!
//! `cargo test -p regiosync-node --test fuzz_corpus -- --ignored` rebuilds the
//! fixture (only if `fuzz/fixture/` is absent) and writes the seeds and the
//! regression inputs of issue 14 (items 3 and 4).

use std::path::{Path, PathBuf};

use regiosync_core::sync::{DocMessage, Request, SignedChange};
use regiosync_node::fuzzing::{RespondHarness, build_fixture, copy_node, record_seeds};
use regiosync_store::StoreRead;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let mut all = files(&fuzz_dir().join("corpus").join(target));
    all.extend(files(&fuzz_dir().join("regressions").join(target)));
    all
}

/// Runs `f`; if it panics, fails naming the input that made it panic.
fn named<T>(input: &Path, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!("the input {} crashed the harness", input.display()),
    }
}

#[test]
fn the_respond_corpus_replays_without_a_crash() {
    let inputs = inputs("respond");
    assert!(
        inputs.len() >= 10,
        "the respond corpus is missing ({} files)",
        inputs.len()
    );
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = RespondHarness::open(&fuzz_dir().join("fixture"), scratch.path()).unwrap();
    for path in &inputs {
        let frame = std::fs::read(path).unwrap();
        let answer = named(path, || harness.run(&frame));
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("refused-") {
            assert!(
                answer.misbehaved.is_some(),
                "{name}: the peer must be cut off"
            );
        }
    }
}

#[test]
fn the_seeds_reach_the_fixture_documents() {
    // The corpus is worth little if its requests no longer match the fixture (other
    // keys, another region): the recorded first catch-up must still bring changes.
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = RespondHarness::open(&fuzz_dir().join("fixture"), scratch.path()).unwrap();
    let stored: usize = inputs("respond")
        .iter()
        .map(|p| harness.run(&std::fs::read(p).unwrap()).stored)
        .sum();
    assert!(
        stored > 0,
        "no committed request stores anything in the fixture"
    );
}

#[test]
fn the_automerge_sync_msg_corpus_replays_without_a_crash() {
    let inputs = inputs("automerge_sync_msg");
    assert!(
        !inputs.is_empty(),
        "the automerge_sync_msg corpus is missing"
    );
    for path in &inputs {
        let bytes = std::fs::read(path).unwrap();
        named(path, || {
            regiosync_core::sync::automerge_msg::fuzz_sync_message(&bytes)
        });
    }
}

#[test]
fn the_plan_changes_corpus_replays_without_a_crash() {
    let inputs = inputs("plan_changes");
    assert!(!inputs.is_empty(), "the plan_changes corpus is missing");
    for path in &inputs {
        let bytes = std::fs::read(path).unwrap();
        named(path, || {
            regiosync_core::plan::received::fuzz_plan_changes(&bytes)
        });
    }
}

/// Writes `bytes` to `dir` under a name derived from its content.
fn write_seed(dir: &Path, prefix: &str, bytes: &[u8]) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{prefix}-{:016x}", h.finish())), bytes).unwrap();
}

#[test]
#[ignore = "writes the fuzz fixture and seed corpus into the source tree"]
fn write_fuzz_fixture_and_seeds() {
    let fixture = fuzz_dir().join("fixture");
    if !fixture.exists() {
        build_fixture(&fixture).unwrap();
    }
    let scratch = tempfile::tempdir().unwrap();
    let seeds = record_seeds(&fixture, scratch.path()).unwrap();
    let respond = fuzz_dir().join("corpus/respond");
    // Recorded sessions sign with the current time: replace the old seeds.
    for dir in [&respond, &fuzz_dir().join("corpus/automerge_sync_msg")] {
        for f in files(dir) {
            if f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
            {
                std::fs::remove_file(f).unwrap();
            }
        }
    }
    for frame in &seeds {
        write_seed(&respond, "seed", frame);
    }
    // Issue 14, items 3 and 4, against the fixture's plan: a Bloom filter with no
    // bits, one with u32::MAX probes, and a compressed chunk that inflates to 64 MiB
    // (with a genuine envelope).
    let copy = tempfile::tempdir().unwrap();
    copy_node(&fixture.join("responder"), copy.path()).unwrap();
    let responder = regiosync_node::Node::open(copy.path()).unwrap();
    let plan = responder.documents().unwrap()[0].id;
    let envelope = responder.store().changes(&plan).unwrap()[0]
        .envelope
        .clone()
        .unwrap();
    let zero_bits = vec![0x42, 0, 0, 1, 0, 3, 1, 0, 7, 0];
    let many_probes = vec![
        0x42, 0, 0, 1, 0, 9, 1, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0,
    ];
    let docs = |sync: Vec<u8>, changes: Vec<SignedChange>| {
        Request::Docs {
            docs: vec![DocMessage {
                doc: plan,
                sync,
                changes,
                need: vec![],
            }],
        }
        .encode()
    };
    let regressions = fuzz_dir().join("regressions/respond");
    write_seed(
        &regressions,
        "refused-zero-bit-bloom",
        &docs(zero_bits.clone(), vec![]),
    );
    write_seed(
        &regressions,
        "refused-many-probes",
        &docs(many_probes.clone(), vec![]),
    );
    let bomb = SignedChange {
        change: regiosync_core::change_chunk::compressed_bomb(64 << 20),
        envelope,
    };
    write_seed(
        &regressions,
        "refused-compressed-bomb",
        &docs(vec![], vec![bomb]),
    );
    let regressions = fuzz_dir().join("regressions/automerge_sync_msg");
    write_seed(&regressions, "zero-bit-bloom", &zero_bits);
    write_seed(&regressions, "many-probes", &many_probes);

    // The sync messages inside the recorded Docs requests, for the validator.
    let sync_dir = fuzz_dir().join("corpus/automerge_sync_msg");
    for frame in &seeds {
        let docs = match regiosync_core::sync::Request::decode(frame) {
            Ok(regiosync_core::sync::Request::Docs { docs }) => docs,
            _ => continue,
        };
        for d in docs.iter().filter(|d| !d.sync.is_empty()) {
            write_seed(&sync_dir, "seed", &d.sync);
        }
    }
}
