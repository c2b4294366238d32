//! The audit log table: entries appended with their chain hash
//! (`regiosync_core::audit`), never updated or deleted (SQLite triggers refuse it).

use std::path::Path;

use regiosync_core::audit::{AuditEntry, GENESIS, chain_hash};
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
    conn.execute(
        "INSERT INTO audit_log (seq, at_ms, device, user, dossier, action, purpose, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            seq,
            entry.at_ms,
            &entry.device[..],
            entry.user,
            &entry.dossier.as_bytes()[..],
            entry.action,
            entry.purpose,
            &hash[..]
        ],
    )
    .at(path)?;
    Ok(seq)
}

/// Every entry, in order.
pub(crate) fn entries(conn: &Connection, path: &Path) -> Result<Vec<AuditRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, at_ms, device, user, dossier, action, purpose, hash
             FROM audit_log ORDER BY seq",
        )
        .at(path)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Vec<u8>>(7)?,
            ))
        })
        .at(path)?;
    let malformed = || StoreError::Malformed {
        path: path.to_owned(),
        detail: "audit log row".into(),
    };
    let mut out = Vec::new();
    for row in rows {
        let (seq, at_ms, device, user, dossier, action, purpose, hash) = row.at(path)?;
        let dossier: [u8; 16] = dossier.try_into().map_err(|_| malformed())?;
        out.push((
            seq,
            AuditEntry {
                at_ms,
                device: device.try_into().map_err(|_| malformed())?,
                user,
                dossier: DocId::from_bytes(dossier),
                action,
                purpose,
            },
            hash.try_into().map_err(|_| malformed())?,
        ));
    }
    Ok(out)
}
