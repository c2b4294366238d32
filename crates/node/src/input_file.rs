//! Reading a file that a user or a data dir names (a bundle, a join request, section
//! text, a passphrase file, `node.json`, `node.key`, the status file): the file is
//! opened, the *opened handle* is checked to be a regular file, and at most a hard
//! cap per kind is read ([`std::io::Read::take`]), so the cap holds even if the file
//! grows while it is read. A symlink to `/dev/zero`, a FIFO or a directory is refused
//! with a clear error instead of being read until memory runs out (or blocking).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use regiosync_core::control::{MAX_BUNDLE, MAX_JOIN_REQUEST};

use crate::error::NodeError;

/// What a file is read as; each kind has its hard cap ([`InputKind::cap`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputKind {
    /// A region bundle (`regiosync import`): 64 MiB.
    Bundle,
    /// A join request (`regiosync accept`): 4 KiB.
    JoinRequest,
    /// Text to put into a plan (`doc section set --file`): 4 MiB.
    Text,
    /// A passphrase file (`--passphrase-file`): 4 KiB.
    Passphrase,
    /// A small file of the data dir (`node.json`, `node.key`, the status file):
    /// 1 MiB.
    DataDirFile,
}

impl InputKind {
    /// The most bytes read from a file of this kind; a larger file is refused.
    pub fn cap(self) -> u64 {
        match self {
            InputKind::Bundle => MAX_BUNDLE as u64,
            InputKind::JoinRequest => MAX_JOIN_REQUEST as u64,
            InputKind::Text => 4 * 1024 * 1024,
            InputKind::Passphrase => 4 * 1024,
            InputKind::DataDirFile => 1024 * 1024,
        }
    }

    /// What the file should be, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            InputKind::Bundle => "region bundle",
            InputKind::JoinRequest => "join request",
            InputKind::Text => "text file",
            InputKind::Passphrase => "passphrase file",
            InputKind::DataDirFile => "regiosync data file",
        }
    }
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputFileError {
    /// The file cannot be opened or read (missing, no permission, I/O error).
    #[error("cannot read the {} {}: {source}", kind.describe(), path.display())]
    Unreadable {
        /// The path given.
        path: PathBuf,
        /// What it should have been.
        kind: InputKind,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The opened file is a device, FIFO, socket or directory.
    #[error(
        "{} is {file_type}, not a regular file: give the {} itself (links to devices or pipes are refused)",
        path.display(),
        kind.describe()
    )]
    NotRegular {
        /// The path given.
        path: PathBuf,
        /// What it is instead ("a character device", …).
        file_type: &'static str,
        /// What it should have been.
        kind: InputKind,
    },
    /// The file holds more than its kind's cap.
    #[error(
        "{} is larger than {}: not a {} (check that you gave the right file)",
        path.display(),
        human_size(kind.cap()),
        kind.describe()
    )]
    TooLarge {
        /// The path given.
        path: PathBuf,
        /// What it should have been.
        kind: InputKind,
    },
}

/// Reads the file at `path` as a `kind`: opens it (without blocking on a FIFO),
/// checks with `fstat` on the open handle that it is a regular file, and reads at
/// most [`InputKind::cap`] bytes; a longer file is refused, not cut.
pub fn read_input_file(path: &Path, kind: InputKind) -> Result<Vec<u8>, NodeError> {
    let file = open_regular(path, kind)?;
    let cap = kind.cap();
    // The size is a hint for the buffer only: the cap is enforced on what is read.
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0).min(cap);
    let mut bytes = Vec::with_capacity(usize::try_from(hint).unwrap_or(0) + 1);
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable(path, kind))?;
    if bytes.len() as u64 > cap {
        return Err(InputFileError::TooLarge {
            path: path.to_owned(),
            kind,
        }
        .into());
    }
    Ok(bytes)
}

/// Opens `path` for reading and checks the opened handle.
fn open_regular(path: &Path, kind: InputKind) -> Result<File, NodeError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // A FIFO would block the open until a writer appears; with O_NONBLOCK the open
    // returns and the check below refuses it. Regular files ignore the flag.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(unreadable(path, kind))?;
    let meta = file.metadata().map_err(unreadable(path, kind))?;
    if !meta.is_file() {
        return Err(InputFileError::NotRegular {
            path: path.to_owned(),
            file_type: file_type(&meta),
            kind,
        }
        .into());
    }
    Ok(file)
}

fn unreadable(path: &Path, kind: InputKind) -> impl FnOnce(std::io::Error) -> NodeError {
    let path = path.to_owned();
    move |source| InputFileError::Unreadable { path, kind, source }.into()
}

fn file_type(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a pipe (FIFO)";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1024 * 1024 && b % (1024 * 1024) == 0 => format!("{} MiB", b / (1024 * 1024)),
        b if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_to_dev_zero_is_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("region.bundle");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
            let err = read_input_file(&link, InputKind::Bundle).unwrap_err();
            assert!(
                matches!(
                    err,
                    NodeError::InputFile(InputFileError::NotRegular {
                        file_type: "a character device",
                        ..
                    })
                ),
                "{err}"
            );
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        // A directory, too.
        let err = read_input_file(dir.path(), InputKind::Text).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pass");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let err = read_input_file(&fifo, InputKind::Passphrase).unwrap_err();
        assert!(err.to_string().contains("a pipe (FIFO)"), "{err}");
    }

    #[test]
    fn the_cap_is_a_hard_limit_and_files_up_to_it_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        assert_eq!(
            read_input_file(&path, InputKind::Passphrase).unwrap().len(),
            4096
        );
        std::fs::write(&path, vec![b'x'; 4097]).unwrap();
        let err = read_input_file(&path, InputKind::Passphrase).unwrap_err();
        assert!(
            err.to_string()
                .contains("larger than 4 KiB: not a passphrase file"),
            "{err}"
        );
        let err = read_input_file(&dir.path().join("missing"), InputKind::Bundle).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read the region bundle /"),
            "{err}"
        );
    }
}
