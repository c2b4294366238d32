//! The web app's staff accounts and sessions (schema version 8). Local to this node:
//! never synced, never in an export. A password is stored only as its Argon2id PHC
//! string and a session only as the SHA-256 of its token; the hashing is done by the
//! caller (regiosync-node), this module only keeps rows.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{SqliteResultExt, StoreError};

/// A staff account. Its `Debug` form leaves the password hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct StaffRow {
    /// Row id.
    pub id: i64,
    /// Sign-in name, unique on this node.
    pub name: String,
    /// `beheerder`, `beleid`, `dossier` or `lezer`.
    pub role: String,
    /// The Argon2id PHC string of the password.
    pub password_hash: String,
    /// The password was set by someone else (initial or reset): change it at sign-in.
    pub must_change: bool,
    /// The account may not sign in.
    pub disabled: bool,
    /// When the account was made, Unix milliseconds.
    pub created_ms: i64,
    /// When the password was last set, Unix milliseconds.
    pub password_ms: i64,
}

impl std::fmt::Debug for StaffRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("must_change", &self.must_change)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A web session. Its `Debug` form leaves the hashes out.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 of the session token (the cookie holds the token).
    pub token_hash: [u8; 32],
    /// The account.
    pub user_id: i64,
    /// The session's CSRF token (random; compared in constant time).
    pub csrf: [u8; 32],
    /// When it was made, Unix milliseconds.
    pub created_ms: i64,
    /// When it was last used (updated at most once a minute), Unix milliseconds.
    pub last_seen_ms: i64,
}

impl std::fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRow")
            .field("user_id", &self.user_id)
            .field("created_ms", &self.created_ms)
            .field("last_seen_ms", &self.last_seen_ms)
            .finish_non_exhaustive()
    }
}

const USER_COLUMNS: &str =
    "id, name, role, password_hash, must_change, disabled, created_ms, password_ms";

fn user_row(r: &Row<'_>) -> rusqlite::Result<StaffRow> {
    Ok(StaffRow {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        password_hash: r.get(3)?,
        must_change: r.get(4)?,
        disabled: r.get(5)?,
        created_ms: r.get(6)?,
        password_ms: r.get(7)?,
    })
}

pub(crate) fn users(conn: &Connection, path: &Path) -> Result<Vec<StaffRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM staff_users ORDER BY name"
        ))
        .at(path)?;
    let rows = stmt.query_map([], user_row).at(path)?;
    rows.map(|r| r.at(path)).collect()
}

pub(crate) fn user_by_name(
    conn: &Connection,
    path: &Path,
    name: &str,
) -> Result<Option<StaffRow>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM staff_users WHERE name = ?1"
    ))
    .at(path)?
    .query_row(params![name], user_row)
    .optional()
    .at(path)
}

pub(crate) fn user_by_id(
    conn: &Connection,
    path: &Path,
    id: i64,
) -> Result<Option<StaffRow>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM staff_users WHERE id = ?1"
    ))
    .at(path)?
    .query_row(params![id], user_row)
    .optional()
    .at(path)
}

/// Inserts an account; `None` if the name is taken.
pub(crate) fn insert_user(
    conn: &Connection,
    path: &Path,
    row: &StaffRow,
) -> Result<Option<i64>, StoreError> {
    let n = conn
        .prepare_cached(
            "INSERT INTO staff_users (name, role, password_hash, must_change, disabled, created_ms, password_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name) DO NOTHING",
        )
        .at(path)?
        .execute(params![
            row.name,
            row.role,
            row.password_hash,
            row.must_change,
            row.disabled,
            row.created_ms,
            row.password_ms
        ])
        .at(path)?;
    Ok((n == 1).then(|| conn.last_insert_rowid()))
}

/// Sets the password and ends every session of the account; `false` if no account.
pub(crate) fn set_password(
    conn: &Connection,
    path: &Path,
    id: i64,
    hash: &str,
    must_change: bool,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE staff_users SET password_hash = ?2, must_change = ?3, password_ms = ?4 WHERE id = ?1",
        )
        .at(path)?
        .execute(params![id, hash, must_change, now_ms])
        .at(path)?;
    delete_sessions_of(conn, path, id)?;
    Ok(n == 1)
}

/// Disables or enables an account; disabling ends its sessions. `false` if no account.
pub(crate) fn set_disabled(
    conn: &Connection,
    path: &Path,
    id: i64,
    disabled: bool,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("UPDATE staff_users SET disabled = ?2 WHERE id = ?1")
        .at(path)?
        .execute(params![id, disabled])
        .at(path)?;
    if disabled {
        delete_sessions_of(conn, path, id)?;
    }
    Ok(n == 1)
}

pub(crate) fn delete_sessions_of(
    conn: &Connection,
    path: &Path,
    user_id: i64,
) -> Result<usize, StoreError> {
    conn.prepare_cached("DELETE FROM staff_sessions WHERE user_id = ?1")
        .at(path)?
        .execute(params![user_id])
        .at(path)
}

pub(crate) fn insert_session(
    conn: &Connection,
    path: &Path,
    row: &SessionRow,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO staff_sessions (token_hash, user_id, csrf, created_ms, last_seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .at(path)?
    .execute(params![
        row.token_hash,
        row.user_id,
        row.csrf,
        row.created_ms,
        row.last_seen_ms
    ])
    .at(path)?;
    Ok(())
}

pub(crate) fn session(
    conn: &Connection,
    path: &Path,
    token_hash: &[u8; 32],
) -> Result<Option<SessionRow>, StoreError> {
    conn.prepare_cached(
        "SELECT token_hash, user_id, csrf, created_ms, last_seen_ms FROM staff_sessions WHERE token_hash = ?1",
    )
    .at(path)?
    .query_row(params![token_hash], |r| {
        Ok(SessionRow {
            token_hash: r.get(0)?,
            user_id: r.get(1)?,
            csrf: r.get(2)?,
            created_ms: r.get(3)?,
            last_seen_ms: r.get(4)?,
        })
    })
    .optional()
    .at(path)
}

pub(crate) fn touch_session(
    conn: &Connection,
    path: &Path,
    token_hash: &[u8; 32],
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE staff_sessions SET last_seen_ms = ?2 WHERE token_hash = ?1")
        .at(path)?
        .execute(params![token_hash, now_ms])
        .at(path)?;
    Ok(())
}

pub(crate) fn delete_session(
    conn: &Connection,
    path: &Path,
    token_hash: &[u8; 32],
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM staff_sessions WHERE token_hash = ?1")
        .at(path)?
        .execute(params![token_hash])
        .at(path)?;
    Ok(n == 1)
}

/// Deletes sessions idle since `idle_before_ms` or made before `created_before_ms`.
pub(crate) fn delete_expired_sessions(
    conn: &Connection,
    path: &Path,
    idle_before_ms: i64,
    created_before_ms: i64,
) -> Result<usize, StoreError> {
    conn.prepare_cached("DELETE FROM staff_sessions WHERE last_seen_ms < ?1 OR created_ms < ?2")
        .at(path)?
        .execute(params![idle_before_ms, created_before_ms])
        .at(path)
}
