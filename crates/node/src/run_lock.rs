//! One running node per data dir: `regiosync up` holds an OS file lock on
//! [`LOCK_FILE`] for as long as it runs, with its process id in the file. A second
//! `up` on the same data dir is refused and told which process holds the node. The
//! lock is the kernel's (`flock` on Unix, `LockFileEx` on Windows, through std's
//! `File::try_lock`): it goes with the process, however it ends (SIGKILL and power
//! loss included), so a stale file never blocks a restart.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use crate::error::NodeError;

/// The lock file in the data dir; holds the process id of the running node.
pub const LOCK_FILE: &str = "up.lock";

/// Held while a node runs; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
#[must_use = "the node is locked only while this value lives"]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of the node in `dir`, or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, NodeError> {
        let path = dir.join(LOCK_FILE);
        let mut o = OpenOptions::new();
        o.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut file = o.open(&path).map_err(NodeError::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(NodeError::AlreadyRunning {
                    dir: dir.to_path_buf(),
                    pid: holder(&path),
                });
            }
            Err(TryLockError::Error(e)) => return Err(NodeError::io(&path)(e)),
        }
        // Ours now: the process id for the next one that tries.
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(NodeError::io(&path))?;
        Ok(Self { _file: file })
    }
}

/// The process id in a lock file held by another process (none if it has not
/// written it yet, or the file was tampered with).
fn holder(path: &Path) -> Option<u32> {
    let bytes =
        crate::input_file::read_input_file(path, crate::input_file::InputKind::DataDirFile).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}
