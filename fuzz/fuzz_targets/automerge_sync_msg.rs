//! Arbitrary bytes as a peer's Automerge sync message: the validator, then what it
//! lets through fed to `changes_they_lack` and `missing`
//! (`regiosync_core::sync::automerge_msg::fuzz_sync_message`, also replayed over the
//! corpus in `cargo test`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    regiosync_core::sync::automerge_msg::fuzz_sync_message(bytes);
});
