//! # regiosync-store
//!
//! The durable storage of a regiosync node: one SQLite file (bundled SQLite, WAL mode,
//! `synchronous=FULL`) with the node's documents, every Automerge change they are made
//! of, and periodic compacted snapshots that make loading fast.
//!
//! Durability: every write runs in one `BEGIN IMMEDIATE` transaction
//! ([`Store::write`]); when it returns `Ok` the commit has been fsynced, so a caller
//! may report success. We choose `synchronous=FULL` over WAL's usual `NORMAL` because
//! `NORMAL` can lose the last commits on power loss, and a municipality laptop's
//! battery does run out. Only data that can be learnt again (what a peer was last
//! known to hold) is written with [`Store::write_cache`], which does not wait for the
//! disk. `secure_delete=ON` makes deleted rows leave no bytes in the
//! file (dossier erasure relies on it).
//!
//! Opening checks that the file is SQLite, that it is as long as its header says
//! (unless a write-ahead log holds the rest), that its `application_id` is ours and
//! that its schema version is not newer than this build, so a truncated or foreign
//! file gives a clear [`StoreError`] instead of odd behaviour later. These checks read
//! only the header: opening costs the same for a store of 100,000 dossiers as for an
//! empty one. SQLite's `quick_check` reads every page (seconds for a store of a few
//! GB), so it runs apart from opening: [`quick_check_file`] on its own connection,
//! which the running node starts in the background, and [`Store::integrity_check`]
//! on demand. A damaged page is also reported as [`StoreError::Corrupt`] when a
//! query reads it.
//!
//! ```
//! use regiosync_core::id::DocId;
//! use regiosync_store::{DocumentRow, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let mut store = Store::create(&dir.path().join("store.sqlite"))?;
//! let id = DocId::random()?;
//! store.write(|tx| {
//!     tx.insert_document(&DocumentRow {
//!         id,
//!         kind: "plan".into(),
//!         subkind: "jeugdplan".into(),
//!         title: "Jeugdplan 2027".into(),
//!         created_ms: 0,
//!     })
//! })?;
//! // Reads are the same on the store and inside a transaction: `StoreRead`.
//! use regiosync_store::StoreRead;
//! assert_eq!(store.documents()?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

mod audit;
mod control;
mod documents;
mod dossiers;
mod error;
mod faults;
mod migrations;
mod peers;
mod read;
mod staff;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regiosync_core::id::DocId;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use audit::AuditRow;
pub use control::InviteRow;
pub use documents::{ChangeRow, DocumentRow, EnvelopeRow, Snapshot, StoredDoc, WriteMarks};
pub use dossiers::{DossierItems, ReadersRow, Tombstone};
use error::SqliteResultExt;
pub use error::StoreError;
pub use faults::{EquivocationRow, MAX_EQUIVOCATIONS_PER_DEVICE};
pub use peers::{MAX_ADDRS_PER_PEER, PeerDocHeads};
pub use read::StoreRead;
pub use staff::{SessionRow, StaffRow};

/// How long a write waits for another process's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The 16 bytes every SQLite database file starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// An open store. One per process and data dir; several processes may open the same
/// file (SQLite's locking serialises their writes).
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Creates a new, empty store file, readable by its owner only (mode 0600 on
    /// Unix; SQLite gives the `-wal` and `-shm` files the same mode). Fails if a file
    /// is already there.
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        // Claim the path atomically, so two concurrent creators cannot both succeed.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists {
                    path: path.to_owned(),
                });
            }
            Err(e) => {
                return Err(StoreError::Io {
                    path: path.to_owned(),
                    detail: e.to_string(),
                });
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).at(path)?;
        configure(&conn, path)?;
        migrations::migrate(&mut conn, 0).at(path)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Opens an existing store, migrating it to the current schema if it is older.
    /// A file that is not ours is refused before anything is written to it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        check_file_header(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).at(path)?;
        conn.busy_timeout(BUSY_TIMEOUT).at(path)?;
        // Read-only checks first: a foreign database must not be switched to WAL.
        let app_id: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .at(path)?;
        if app_id != migrations::APPLICATION_ID {
            return Err(StoreError::Foreign {
                path: path.to_owned(),
            });
        }
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .at(path)?;
        if version > migrations::CURRENT_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_owned(),
                found: version,
                supported: migrations::CURRENT_VERSION,
            });
        }
        configure(&conn, path)?;
        migrations::migrate(&mut conn, version).at(path)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs the full `PRAGMA integrity_check` (slower than [`quick_check_file`]).
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        check_integrity(&self.conn, &self.path, "integrity_check")
    }

    /// Runs `f` in one write transaction. If `f` returns an error, nothing it did is
    /// kept; if this returns `Ok`, everything is committed and on disk.
    pub fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(&self.path)?;
        let w = WriteTx {
            tx,
            path: &self.path,
        };
        let out = f(&w)?;
        w.tx.commit().at(&self.path)?;
        Ok(out)
    }

    /// Like [`write`](Self::write), for data that can be rebuilt from the rest of the
    /// store or learnt again from a peer (what a peer was last known to hold): the
    /// commit does not wait for the disk (SQLite's `synchronous=NORMAL` for this one
    /// transaction). A power loss may lose it, never a transaction committed before
    /// it through `write` (those were on disk when they returned), and never leaves
    /// the store damaged: that is what WAL mode guarantees with `NORMAL`. The next
    /// `write` makes it durable along with its own commit.
    pub fn write_cache<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.conn
            .pragma_update(None, "synchronous", 1i64)
            .at(&self.path)?;
        // Back to FULL for every other write, whatever `f` did, a panic included
        // (the running node survives a panicking session, and its later writes must
        // still wait for the disk).
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.write(f)));
        let restored = self
            .conn
            .pragma_update(None, "synchronous", 2i64)
            .at(&self.path);
        let out = match out {
            Ok(out) => out?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        restored?;
        Ok(out)
    }

    /// Writes rows of the dossier readers index (see
    /// [`StoreRead::dossier_readers_index`]) in one transaction of their own: for
    /// the read paths of a node that fold logs the index lacked. Each row is
    /// (dossier, digest, encoded summary, number of access-log ops folded), and is
    /// written only while the dossier has exactly that many ops (so a fold of a log
    /// that grew meanwhile is not kept). Must not be called inside
    /// [`write`](Self::write) (it cannot be: that borrows the store mutably).
    pub fn cache_dossier_readers(
        &self,
        rows: &[(DocId, [u8; 32], Vec<u8>, usize)],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction().at(&self.path)?;
        dossiers::put_dossier_readers(&tx, &self.path, rows)?;
        tx.commit().at(&self.path)
    }

    /// The sync summary's digest of each of `ids` of which anything is held
    /// (`regiosync_core::sync::summary::doc_digest` over the hashes of its access-log
    /// ops and sealed changes), from the digest index (migration 12), computing and
    /// recording the digests it lacks. The items are read per dossier, or in one
    /// scan of all when more than `scan_all_above` lack a digest. Must not be called
    /// inside [`write`](Self::write) (it cannot be: that borrows the store mutably).
    pub fn dossier_digests(
        &self,
        ids: &[DocId],
        scan_all_above: usize,
    ) -> Result<std::collections::BTreeMap<DocId, [u8; 8]>, StoreError> {
        dossiers::dossier_digests(&self.conn, &self.path, ids, scan_all_above)
    }

    /// Moves every committed page from the WAL into the main file and truncates the
    /// WAL, so that data deleted with `secure_delete` leaves no copy in the WAL.
    /// `false` when another connection kept it from completing.
    pub fn checkpoint_truncate(&self) -> Result<bool, StoreError> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .at(&self.path)?;
        Ok(busy == 0)
    }

    /// Caps the store at its current size, so the next growth fails as on a full disk.
    /// For tests of disk-full handling.
    #[doc(hidden)]
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn fill_disk_for_tests(&self) -> Result<(), StoreError> {
        let pages: i64 = self
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .at(&self.path)?;
        self.conn
            .pragma_update(None, "max_page_count", pages)
            .at(&self.path)
    }

    /// SQLite's `data_version`: changes when *another* connection (another regiosync
    /// process) commits to this store. A running node polls it to notice CLI edits.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "data_version", |r| r.get(0))
            .at(&self.path)
    }
}

/// An open write transaction; see [`Store::write`].
pub struct WriteTx<'a> {
    tx: rusqlite::Transaction<'a>,
    path: &'a Path,
}

impl WriteTx<'_> {
    /// Adds a new document. Fails if the id is taken.
    pub fn insert_document(&self, row: &DocumentRow) -> Result<(), StoreError> {
        documents::insert_document(&self.tx, self.path, row)
    }

    /// Appends a change and returns its store position, or `None` if the document
    /// already had it.
    pub fn append_change(&self, id: &DocId, change: &ChangeRow) -> Result<Option<i64>, StoreError> {
        documents::append_change(&self.tx, self.path, id, change)
    }

    /// Records evidence of an equivocation; `false` if it was on record, or the
    /// device has [`MAX_EQUIVOCATIONS_PER_DEVICE`] already.
    pub fn record_equivocation(&self, row: &EquivocationRow) -> Result<bool, StoreError> {
        faults::record_equivocation(&self.tx, self.path, row)
    }

    /// Stores a control op (wire bytes) under its hash; `false` if it was there.
    pub fn put_op(&self, hash: &[u8; 32], bytes: &[u8], now_ms: i64) -> Result<bool, StoreError> {
        control::put_op(&self.tx, self.path, hash, bytes, now_ms)
    }

    /// Sets a node setting.
    pub fn set_setting(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        control::set_setting(&self.tx, self.path, key, value)
    }

    /// Deletes a node setting.
    pub fn delete_setting(&self, key: &str) -> Result<(), StoreError> {
        control::delete_setting(&self.tx, self.path, key)
    }

    /// Destroys an erased dossier's data and keeps a tombstone (see the store docs).
    pub fn purge_dossier(&self, tombstone: &Tombstone) -> Result<(), StoreError> {
        dossiers::purge_dossier(&self.tx, self.path, tombstone)
    }

    /// Deletes sealed changes of a dossier (a revocation refused them: see node's
    /// `dossier_sync`); returns how many were held.
    pub fn drop_sealed_changes(
        &self,
        dossier: &DocId,
        hashes: &[[u8; 32]],
    ) -> Result<usize, StoreError> {
        dossiers::drop_sealed_changes(&self.tx, self.path, dossier, hashes)
    }

    /// Adds a party to an erased dossier's tombstone audience: a peer of that party
    /// showed it holds the erasure, so it may be sent it (and the two sides' summaries
    /// agree); `false` if nothing changed.
    pub fn add_tombstone_audience(&self, dossier: &DocId, party: &str) -> Result<bool, StoreError> {
        dossiers::add_tombstone_audience(&self.tx, self.path, dossier, party)
    }

    /// Stores an op of a dossier's access log; `false` if it was already stored.
    pub fn put_dossier_op(
        &self,
        dossier: &DocId,
        hash: &[u8; 32],
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        dossiers::put_dossier_op(&self.tx, self.path, dossier, hash, bytes, now_ms)
    }

    /// Appends an audit entry, chained to the last one; returns its sequence number.
    pub fn append_audit(
        &self,
        entry: &regiosync_core::audit::AuditEntry,
    ) -> Result<i64, StoreError> {
        audit::append(&self.tx, self.path, entry)
    }

    /// Remembers that `addr` reached `peer` (keeps the newest few per peer).
    pub fn remember_addr(
        &self,
        peer: &[u8; 32],
        addr: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        peers::remember_addr(&self.tx, self.path, peer, addr, now_ms)
    }

    /// Records the heads `peer` is known to hold of `doc` (replacing older ones).
    pub fn set_peer_heads(
        &self,
        peer: &[u8; 32],
        doc: &DocId,
        heads: &[[u8; 32]],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        peers::set_peer_heads(&self.tx, self.path, peer, doc, heads, now_ms)
    }

    /// Records an invitation.
    pub fn insert_invite(&self, invite: &InviteRow) -> Result<(), StoreError> {
        control::insert_invite(&self.tx, self.path, invite)
    }

    /// Marks an unused invitation as used by `by`; `false` if it was already used.
    pub fn use_invite(&self, id: &[u8; 16], by: &[u8], now_ms: i64) -> Result<bool, StoreError> {
        control::use_invite(&self.tx, self.path, id, by, now_ms)
    }

    /// Adds a staff account (its `id` is ignored); `None` if the name is taken.
    pub fn insert_staff_user(&self, row: &StaffRow) -> Result<Option<i64>, StoreError> {
        staff::insert_user(&self.tx, self.path, row)
    }

    /// Sets a staff account's password hash and ends all its sessions; `false` if
    /// there is no such account.
    pub fn set_staff_password(
        &self,
        id: i64,
        password_hash: &str,
        must_change: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        staff::set_password(&self.tx, self.path, id, password_hash, must_change, now_ms)
    }

    /// Disables (ending all its sessions) or enables a staff account; `false` if
    /// there is no such account.
    pub fn set_staff_disabled(&self, id: i64, disabled: bool) -> Result<bool, StoreError> {
        staff::set_disabled(&self.tx, self.path, id, disabled)
    }

    /// Stores a new web session.
    pub fn insert_staff_session(&self, row: &SessionRow) -> Result<(), StoreError> {
        staff::insert_session(&self.tx, self.path, row)
    }

    /// Records that a session was used at `now_ms`.
    pub fn touch_staff_session(
        &self,
        token_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        staff::touch_session(&self.tx, self.path, token_hash, now_ms)
    }

    /// Deletes one session; `false` if it was not there.
    pub fn delete_staff_session(&self, token_hash: &[u8; 32]) -> Result<bool, StoreError> {
        staff::delete_session(&self.tx, self.path, token_hash)
    }

    /// Deletes the sessions last used before `idle_before_ms` or made before
    /// `created_before_ms`; returns how many.
    pub fn delete_expired_staff_sessions(
        &self,
        idle_before_ms: i64,
        created_before_ms: i64,
    ) -> Result<usize, StoreError> {
        staff::delete_expired_sessions(&self.tx, self.path, idle_before_ms, created_before_ms)
    }

    /// Updates the cached title of a document.
    pub fn set_title(&self, id: &DocId, title: &str) -> Result<(), StoreError> {
        documents::set_title(&self.tx, self.path, id, title)
    }

    /// Stores a compacted snapshot that contains every accepted change up to store
    /// position `snapshot.covers_upto` ([`StoredDoc::last_change`]). An older snapshot
    /// never replaces a newer one.
    pub fn put_snapshot(
        &self,
        id: &DocId,
        snapshot: &Snapshot,
        stored_ms: i64,
    ) -> Result<(), StoreError> {
        documents::put_snapshot(&self.tx, self.path, id, snapshot, stored_ms)
    }
}

/// Prepared statements kept per connection: more than the store has.
const STATEMENT_CACHE: usize = 256;

/// Sets the per-connection pragmas. They are checked, not trusted: SQLite ignores an
/// unsupported pragma silently.
fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT).at(path)?;
    // Room for every statement the store prepares (rusqlite keeps 16 by default:
    // a sync step uses more, so they evicted each other and were parsed again on
    // every use; a profile of edit propagation found SQLite's parser in the top).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // The query planner stability guarantee: one plan per statement, whatever the
    // values bound. Without it this SQLite build (STAT4 enabled) marks a statement
    // with a bound parameter in its WHERE clause to be planned again whenever a
    // parameter is bound anew, so every cached statement was parsed and planned on
    // every execution (a third of a sealed catch-up's time). The store's queries
    // are all equality and range lookups on keys, whose plan does not depend on the
    // value.
    let qpsg = conn
        .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .at(path)?;
    if !qpsg {
        return Err(StoreError::Io {
            path: path.to_owned(),
            detail: "SQLite refused the query planner stability guarantee (QPSG)".into(),
        });
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .at(path)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io {
            path: path.to_owned(),
            detail: format!("the file system does not support WAL mode (got {mode})"),
        });
    }
    for (pragma, value) in [
        ("synchronous", 2i64),
        ("foreign_keys", 1),
        ("secure_delete", 1),
    ] {
        conn.pragma_update(None, pragma, value).at(path)?;
        let got: i64 = conn
            .pragma_query_value(None, pragma, |r| r.get(0))
            .at(path)?;
        if got != value {
            return Err(StoreError::Io {
                path: path.to_owned(),
                detail: format!("SQLite refused PRAGMA {pragma}={value} (got {got})"),
            });
        }
    }
    Ok(())
}

/// Runs SQLite's `PRAGMA quick_check(1)` on the store at `path` over a connection of
/// its own, opened read-only: every page is read (seconds for a large store), so
/// the running node calls it off its own connection, in the background, instead of
/// every `Store::open` paying it. `Corrupt` with SQLite's first finding.
pub fn quick_check_file(path: &Path) -> Result<(), StoreError> {
    check_file_header(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).at(path)?;
    conn.busy_timeout(BUSY_TIMEOUT).at(path)?;
    check_integrity(&conn, path, "quick_check")
}

/// Refuses files that are missing, empty, truncated, or not SQLite, before SQLite
/// gets to interpret them (SQLite treats an empty file as a new database).
///
/// Truncation past the header: SQLite's header holds the database size in pages
/// (offset 28), valid when the change counter (offset 24) equals the
/// "version-valid-for" number (offset 92), and the page size (offset 16, where 1
/// means 65,536). A file shorter than that is cut off, unless a write-ahead log
/// (`-wal`) is not empty: after a crash in the middle of a checkpoint the header may
/// already count pages that only the log holds, and SQLite completes the checkpoint
/// from it on opening. Written by hand: reading four header fields needs no crate.
fn check_file_header(path: &Path) -> Result<(), StoreError> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::NotFound {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(StoreError::ReadOnly {
                path: path.to_owned(),
            });
        }
        Err(e) => {
            return Err(StoreError::Io {
                path: path.to_owned(),
                detail: e.to_string(),
            });
        }
    };
    let mut header = [0u8; 100];
    let mut n = 0;
    while n < header.len() {
        match f.read(&mut header[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => {
                return Err(StoreError::Io {
                    path: path.to_owned(),
                    detail: e.to_string(),
                });
            }
        }
    }
    if n == 0 {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: "the file is empty".into(),
        });
    }
    if !header.starts_with(SQLITE_MAGIC) {
        return Err(StoreError::NotADatabase {
            path: path.to_owned(),
        });
    }
    if n < header.len() {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: "the file is truncated".into(),
        });
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        s => u64::from(s),
    };
    let pages = u64::from(be32(28));
    let size_valid = pages > 0 && be32(24) == be32(92);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_holds_pages = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    let len = f
        .metadata()
        .map_err(|e| StoreError::Io {
            path: path.to_owned(),
            detail: e.to_string(),
        })?
        .len();
    if size_valid && !wal_holds_pages && len < pages.saturating_mul(page_size) {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!(
                "the file is truncated: {len} bytes, where its header counts {pages} pages of {page_size} bytes"
            ),
        });
    }
    Ok(())
}

fn check_integrity(conn: &Connection, path: &Path, pragma: &str) -> Result<(), StoreError> {
    let first: String = conn
        .query_row(&format!("PRAGMA {pragma}(1)"), [], |r| r.get(0))
        .at(path)?;
    if first != "ok" {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: first,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
