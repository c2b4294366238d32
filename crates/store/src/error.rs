//! Errors of the store, phrased so that an IT admin knows what to do.

use std::path::PathBuf;

use regiosync_core::id::DocId;
use rusqlite::ErrorCode;

/// Why a store operation failed. The store is left as it was in every case: a failed
/// write rolls back its whole transaction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// There is no store file at the path.
    #[error("no store at {path}: run `regiosync init` first, or pass the right --data-dir")]
    NotFound {
        /// The store file.
        path: PathBuf,
    },
    /// `create` found a file already there.
    #[error("a store already exists at {path}; refusing to overwrite it")]
    AlreadyExists {
        /// The store file.
        path: PathBuf,
    },
    /// The file is not an SQLite database at all.
    #[error(
        "{path} is not a regiosync store (not an SQLite database): check --data-dir, or restore the file from a backup"
    )]
    NotADatabase {
        /// The store file.
        path: PathBuf,
    },
    /// The file is an SQLite database of some other program.
    #[error(
        "{path} is an SQLite database of another program, not a regiosync store: check --data-dir"
    )]
    Foreign {
        /// The store file.
        path: PathBuf,
    },
    /// The file was written by a newer regiosync.
    #[error(
        "{path} has store schema version {found}, this regiosync knows up to {supported}: upgrade regiosync"
    )]
    NewerSchema {
        /// The store file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The integrity check failed: the file is damaged or truncated.
    #[error(
        "the store {path} is damaged ({detail}): stop the node, restore the file from a backup or re-sync a fresh node from the region"
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What SQLite reported (first problem only).
        detail: String,
    },
    /// The file or its folder cannot be written.
    #[error("the store {path} is read-only: check the permissions and free space of the data dir")]
    ReadOnly {
        /// The store file.
        path: PathBuf,
    },
    /// The disk is full; nothing was written.
    #[error("the disk holding {path} is full; nothing was saved: free some space and try again")]
    DiskFull {
        /// The store file.
        path: PathBuf,
    },
    /// Another process held the store locked for longer than the busy timeout.
    #[error(
        "the store {path} is locked by another process: try again, or stop the other regiosync process"
    )]
    Busy {
        /// The store file.
        path: PathBuf,
    },
    /// The operating system reported an I/O error.
    #[error("I/O error on the store {path}: {detail}: check the disk")]
    Io {
        /// The store file.
        path: PathBuf,
        /// What SQLite or the OS reported.
        detail: String,
    },
    /// No document with this id is stored.
    #[error("no document {0} in this store: see `regiosync doc list`")]
    UnknownDocument(DocId),
    /// A document with this id is already stored.
    #[error("document {0} already exists")]
    DuplicateDocument(DocId),
    /// A stored row does not have the shape this version writes.
    #[error(
        "the store {path} holds a malformed row ({detail}): run `regiosync` with a matching version or restore a backup"
    )]
    Malformed {
        /// The store file.
        path: PathBuf,
        /// Which row.
        detail: String,
    },
    /// Any other SQLite error.
    #[error("store error on {path}: {source}")]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// Maps an SQLite error on the store at `path` to the variant an admin can act on.
    pub(crate) fn from_sqlite(path: &std::path::Path, e: rusqlite::Error) -> Self {
        let path = path.to_owned();
        let code = e.sqlite_error_code();
        match code {
            Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path },
            Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                path,
                detail: e.to_string(),
            },
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => {
                StoreError::ReadOnly { path }
            }
            Some(ErrorCode::DiskFull) => StoreError::DiskFull { path },
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                StoreError::Busy { path }
            }
            Some(ErrorCode::SystemIoFailure) | Some(ErrorCode::CannotOpen) => StoreError::Io {
                path,
                detail: e.to_string(),
            },
            _ => StoreError::Sqlite { path, source: e },
        }
    }
}

/// Extension to map rusqlite results to [`StoreError`] with the store's path.
pub(crate) trait SqliteResultExt<T> {
    /// Maps the error with [`StoreError::from_sqlite`].
    fn at(self, path: &std::path::Path) -> Result<T, StoreError>;
}

impl<T> SqliteResultExt<T> for Result<T, rusqlite::Error> {
    fn at(self, path: &std::path::Path) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::from_sqlite(path, e))
    }
}
