//! Dossier access logs: the signed ops of each dossier's own log (who may read it,
//! its wrapped keys). They are kept apart from the region's control log, which must
//! never name a dossier. The sealed changes themselves are rows of `changes` (with
//! their sealed envelopes) under a `documents` row of kind `dossier`.

use std::path::Path;

use regiosync_core::id::DocId;
use rusqlite::{Connection, params};

use crate::error::{SqliteResultExt, StoreError};

/// Stores an op of a dossier's access log; `false` if it was already stored.
pub(crate) fn put_dossier_op(
    conn: &Connection,
    path: &Path,
    dossier: &DocId,
    hash: &[u8; 32],
    bytes: &[u8],
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "INSERT INTO dossier_ops (hash, dossier, bytes, stored_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (hash) DO NOTHING",
            params![&hash[..], &dossier.as_bytes()[..], bytes, now_ms],
        )
        .at(path)?;
    Ok(n == 1)
}

/// The ops of one dossier's access log (wire bytes), ordered by hash.
pub(crate) fn dossier_ops(
    conn: &Connection,
    path: &Path,
    dossier: &DocId,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT bytes FROM dossier_ops WHERE dossier = ?1 ORDER BY hash")
        .at(path)?;
    let rows = stmt
        .query_map([&dossier.as_bytes()[..]], |r| r.get::<_, Vec<u8>>(0))
        .at(path)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r.at(path)?);
    }
    Ok(out)
}

/// Destroys everything of an erased dossier (its access log with the wrapped keys,
/// its sealed changes, snapshots and document row) and keeps a tombstone: who
/// erased it, when, and the signed `Erase` op (no personal data). With
/// `secure_delete` on, the freed pages are overwritten.
pub(crate) fn purge_dossier(
    conn: &Connection,
    path: &Path,
    dossier: &DocId,
    erased_by: &str,
    erased_at: i64,
    erase_op: &[u8],
) -> Result<(), StoreError> {
    let id = &dossier.as_bytes()[..];
    conn.execute(
        "INSERT INTO erased_dossiers (dossier, erased_by, erased_at, erase_op) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (dossier) DO NOTHING",
        params![id, erased_by, erased_at, erase_op],
    )
    .at(path)?;
    for sql in [
        "DELETE FROM dossier_ops WHERE dossier = ?1",
        "DELETE FROM snapshots WHERE doc_id = ?1",
        "DELETE FROM changes WHERE doc_id = ?1",
        "DELETE FROM peer_docs WHERE doc_id = ?1",
        "DELETE FROM documents WHERE id = ?1",
    ] {
        conn.execute(sql, [id]).at(path)?;
    }
    Ok(())
}

/// The tombstone of an erased dossier: (erasing party, Unix seconds, the Erase op).
pub(crate) fn erased(
    conn: &Connection,
    path: &Path,
    dossier: &DocId,
) -> Result<Option<(String, i64, Vec<u8>)>, StoreError> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT erased_by, erased_at, erase_op FROM erased_dossiers WHERE dossier = ?1",
        [&dossier.as_bytes()[..]],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()
    .at(path)
}

/// The ids of the dossiers whose access logs this store holds.
pub(crate) fn dossier_ids(conn: &Connection, path: &Path) -> Result<Vec<DocId>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT DISTINCT dossier FROM dossier_ops ORDER BY dossier")
        .at(path)?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).at(path)?;
    let mut out = Vec::new();
    for r in rows {
        let b: [u8; 16] = r.at(path)?.try_into().map_err(|_| StoreError::Malformed {
            path: path.to_owned(),
            detail: "dossier id".into(),
        })?;
        out.push(DocId::from_bytes(b));
    }
    Ok(out)
}
