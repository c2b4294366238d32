//! Control-plane rows: signed ops, node settings and invitations.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{SqliteResultExt, StoreError};

/// An invitation issued by this node (the secret never leaves this store except in
/// the invite code itself). Its `Debug` form leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteRow {
    /// Random id, public (it names the invite in a join request).
    pub id: [u8; 16],
    /// The one-time secret.
    pub secret: [u8; 32],
    /// The party the new device joins.
    pub party: String,
    /// That party's role (used if the party is new).
    pub role: String,
    /// Whether the party becomes a region admin.
    pub admin: bool,
    /// Expiry, Unix seconds.
    pub expires_s: i64,
    /// When it was made, Unix milliseconds.
    pub created_ms: i64,
    /// When it was used, if it was.
    pub used_ms: Option<i64>,
    /// The device that used it (its public key), if it was used.
    pub used_by: Option<Vec<u8>>,
}

impl std::fmt::Debug for InviteRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InviteRow")
            .field("party", &self.party)
            .field("role", &self.role)
            .field("admin", &self.admin)
            .field("expires_s", &self.expires_s)
            .field("used_ms", &self.used_ms)
            .finish_non_exhaustive()
    }
}

pub(crate) fn ops(conn: &Connection, path: &Path) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT bytes FROM control_ops ORDER BY hash")
        .at(path)?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).at(path)?;
    rows.map(|r| r.at(path)).collect()
}

pub(crate) fn op_hashes(conn: &Connection, path: &Path) -> Result<Vec<[u8; 32]>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT hash FROM control_ops ORDER BY hash")
        .at(path)?;
    let rows = stmt.query_map([], |r| r.get::<_, [u8; 32]>(0)).at(path)?;
    rows.map(|r| r.at(path)).collect()
}

pub(crate) fn ops_version(conn: &Connection, path: &Path) -> Result<(i64, i64), StoreError> {
    conn.prepare_cached("SELECT count(*), coalesce(max(rowid), 0) FROM control_ops")
        .at(path)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .at(path)
}

pub(crate) fn put_op(
    conn: &Connection,
    path: &Path,
    hash: &[u8; 32],
    bytes: &[u8],
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "INSERT INTO control_ops (hash, bytes, stored_ms) VALUES (?1, ?2, ?3) ON CONFLICT (hash) DO NOTHING",
            params![&hash[..], bytes, now_ms],
        )
        .at(path)?;
    Ok(n == 1)
}

pub(crate) fn setting(
    conn: &Connection,
    path: &Path,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    conn.prepare_cached("SELECT value FROM settings WHERE key = ?1")
        .at(path)?
        .query_row([key], |r| r.get(0))
        .optional()
        .at(path)
}

pub(crate) fn set_setting(
    conn: &Connection,
    path: &Path,
    key: &str,
    value: &[u8],
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .at(path)?;
    Ok(())
}

pub(crate) fn delete_setting(conn: &Connection, path: &Path, key: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM settings WHERE key = ?1", [key])
        .at(path)?;
    Ok(())
}

pub(crate) fn insert_invite(
    conn: &Connection,
    path: &Path,
    inv: &InviteRow,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO invites (id, secret, party, role, admin, expires_s, created_ms, used_ms, used_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            &inv.id[..],
            &inv.secret[..],
            inv.party,
            inv.role,
            inv.admin,
            inv.expires_s,
            inv.created_ms,
            inv.used_ms,
            inv.used_by
        ],
    )
    .at(path)?;
    Ok(())
}

const INVITE_COLUMNS: &str =
    "SELECT id, secret, party, role, admin, expires_s, created_ms, used_ms, used_by FROM invites";

pub(crate) fn invite(
    conn: &Connection,
    path: &Path,
    id: &[u8; 16],
) -> Result<Option<InviteRow>, StoreError> {
    let mut rows = invites_where(conn, path, "WHERE id = ?1", params![&id[..]])?;
    Ok(rows.pop())
}

/// Invites that have not expired at `now_s` and were not used, or were used at
/// `used_since_ms` or later.
pub(crate) fn open_invites(
    conn: &Connection,
    path: &Path,
    now_s: i64,
    used_since_ms: i64,
) -> Result<Vec<InviteRow>, StoreError> {
    invites_where(
        conn,
        path,
        "WHERE expires_s >= ?1 AND (used_ms IS NULL OR used_ms >= ?2)",
        params![now_s, used_since_ms],
    )
}

fn invites_where(
    conn: &Connection,
    path: &Path,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<InviteRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!("{INVITE_COLUMNS} {filter}"))
        .at(path)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<Vec<u8>>>(8)?,
            ))
        })
        .at(path)?;
    let malformed = || StoreError::Malformed {
        path: path.to_owned(),
        detail: "invite row".into(),
    };
    let mut out = Vec::new();
    for row in rows {
        let (id, secret, party, role, admin, expires_s, created_ms, used_ms, used_by) =
            row.at(path)?;
        out.push(InviteRow {
            id: id.try_into().map_err(|_| malformed())?,
            secret: secret.try_into().map_err(|_| malformed())?,
            party,
            role,
            admin,
            expires_s,
            created_ms,
            used_ms,
            used_by,
        });
    }
    Ok(out)
}

/// Marks an unused invite as used; `false` if it was already used.
pub(crate) fn use_invite(
    conn: &Connection,
    path: &Path,
    id: &[u8; 16],
    by: &[u8],
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "UPDATE invites SET used_ms = ?2, used_by = ?3 WHERE id = ?1 AND used_ms IS NULL",
            params![&id[..], now_ms, by],
        )
        .at(path)?;
    Ok(n == 1)
}
