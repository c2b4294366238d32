//! The audit log table: entries appended with their chain hash
//! (`regiosync_core::audit`), never updated or deleted (SQLite triggers refuse it).

use std::path::Path;

use regiosync_core::audit::{AuditEntry, GENESIS, Who, chain_hash};
use regiosync_core::id::DocId;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{SqliteResultExt, StoreError};

/// A stored audit entry: its sequence number, the entry, and its chain hash.
pub type AuditRow = (i64, AuditEntry, [u8; 32]);

/// Appends an entry after the current last one; returns its sequence number.
pub(crate) fn append(
    conn: &Connection,
    path: &Path,
    entry: &AuditEntry,
) -> Result<i64, StoreError> {
    entry.check().map_err(|why| StoreError::Malformed {
        path: path.to_owned(),
        detail: why.into(),
    })?;
    let last: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .at(path)?;
    let (seq, prev) = match last {
        None => (1, GENESIS),
        Some((s, h)) => (
            s + 1,
            h.try_into().map_err(|_| StoreError::Malformed {
                path: path.to_owned(),
                detail: "audit log hash".into(),
            })?,
        ),
    };
    let hash = chain_hash(&prev, seq, entry);
    conn.prepare_cached(
        "INSERT INTO audit_log (seq, at_ms, device, user, dossier, action, purpose, hash, format, via, declared)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .at(path)?
    .execute(params![
        seq,
        entry.at_ms,
        &entry.device[..],
        entry.who.name(),
        &entry.dossier.as_bytes()[..],
        entry.action,
        entry.purpose,
        &hash[..],
        entry.who.format(),
        entry.who.via(),
        entry.who.declared(),
    ])
    .at(path)?;
    Ok(seq)
}

const COLUMNS: &str = "SELECT seq, at_ms, device, user, dossier, action, purpose, hash, format, via, declared FROM audit_log";

/// Every entry, in order.
pub(crate) fn entries(conn: &Connection, path: &Path) -> Result<Vec<AuditRow>, StoreError> {
    query(conn, path, &format!("{COLUMNS} ORDER BY seq"), [])
}

/// One dossier's entries, in order.
pub(crate) fn entries_of(
    conn: &Connection,
    path: &Path,
    dossier: &DocId,
) -> Result<Vec<AuditRow>, StoreError> {
    query(
        conn,
        path,
        &format!("{COLUMNS} WHERE dossier = ?1 ORDER BY seq"),
        [&dossier.as_bytes()[..]],
    )
}

/// At most `limit` entries before `before` (all when `None`), newest first.
pub(crate) fn page(
    conn: &Connection,
    path: &Path,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<AuditRow>, StoreError> {
    query(
        conn,
        path,
        &format!("{COLUMNS} WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"),
        params![
            before.unwrap_or(i64::MAX),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
    )
}

type Raw = (
    i64,
    i64,
    Vec<u8>,
    String,
    Vec<u8>,
    String,
    String,
    Vec<u8>,
    i64,
    String,
    Option<String>,
);

fn query(
    conn: &Connection,
    path: &Path,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<AuditRow>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).at(path)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        })
        .at(path)?;
    let malformed = |what: &str| StoreError::Malformed {
        path: path.to_owned(),
        detail: format!("audit log row: {what}"),
    };
    let mut out = Vec::new();
    for row in rows {
        let raw: Raw = row.at(path)?;
        let (seq, at_ms, device, user, dossier, action, purpose, hash, format, via, declared) = raw;
        let who = match (format, via.as_str()) {
            (1, _) => Who::Declared(user),
            (2, "web") => Who::Web { account: user },
            (2, "cli") => Who::Cli {
                os_user: user,
                declared,
            },
            _ => return Err(malformed("unknown format")),
        };
        let dossier: [u8; 16] = dossier.try_into().map_err(|_| malformed("dossier"))?;
        out.push((
            seq,
            AuditEntry {
                at_ms,
                device: device.try_into().map_err(|_| malformed("device"))?,
                who,
                dossier: DocId::from_bytes(dossier),
                action,
                purpose,
            },
            hash.try_into().map_err(|_| malformed("hash"))?,
        ));
    }
    Ok(out)
}
