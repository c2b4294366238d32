//! Arbitrary bytes as a hostile writer's edits of a plan with the raw Automerge API:
//! every change goes through the received-change check, and the plan with the
//! accepted ones through `read_plan` and both exports
//! (`regiosync_core::plan::received::fuzz_plan_changes`, also run in `cargo test`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    regiosync_core::plan::received::fuzz_plan_changes(bytes);
});
