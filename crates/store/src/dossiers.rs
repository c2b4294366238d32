//! Dossier access logs: the signed ops of each dossier's own log (who may read it,
//! its wrapped keys). They are kept apart from the region's control log, which must
//! never name a dossier. The sealed changes themselves are rows of `changes` (with
//! their sealed envelopes) under a `documents` row of kind `dossier`.

pub use regiosync_core::dossier::held::{DossierItems, Tombstone};
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
        .prepare_cached(
            "INSERT INTO dossier_ops (hash, dossier, bytes, stored_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (hash) DO NOTHING",
        )
        .at(path)?
        .execute(params![&hash[..], &dossier.as_bytes()[..], bytes, now_ms])
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
/// its sealed changes, snapshots and document row) and keeps a tombstone (no
/// personal data). With `secure_delete` on, the freed pages are overwritten. A
/// second erasure of the same dossier keeps the first tombstone.
pub(crate) fn purge_dossier(
    conn: &Connection,
    path: &Path,
    t: &Tombstone,
) -> Result<(), StoreError> {
    let id = &t.dossier.as_bytes()[..];
    conn.execute(
        "INSERT INTO erased_dossiers (dossier, erased_by, erased_at, erase_op, open_op, audience)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (dossier) DO NOTHING",
        params![
            id,
            t.erased_by,
            t.erased_at,
            t.erase_op,
            t.open_op,
            t.audience.join("\n")
        ],
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

fn doc_id(path: &Path, bytes: Vec<u8>) -> Result<DocId, StoreError> {
    let b: [u8; 16] = bytes.try_into().map_err(|_| StoreError::Malformed {
        path: path.to_owned(),
        detail: "dossier id".into(),
    })?;
    Ok(DocId::from_bytes(b))
}

fn hash32(path: &Path, bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Malformed {
        path: path.to_owned(),
        detail: "hash".into(),
    })
}

/// Deletes sealed changes of a dossier by hash (with `secure_delete` on, their bytes
/// leave the file); returns how many were held.
pub(crate) fn drop_sealed_changes(
    conn: &Connection,
    path: &Path,
    dossier: &DocId,
    hashes: &[[u8; 32]],
) -> Result<usize, StoreError> {
    let mut n = 0;
    for h in hashes {
        n += conn
            .execute(
                "DELETE FROM changes WHERE doc_id = ?1 AND hash = ?2",
                params![&dossier.as_bytes()[..], &h[..]],
            )
            .at(path)?;
    }
    Ok(n)
}

/// Adds `party` to a tombstone's audience (the parties that are sent the erasure);
/// `false` if there is no tombstone of the dossier or the party is in it already.
pub(crate) fn add_tombstone_audience(
    conn: &Connection,
    path: &Path,
    dossier: &DocId,
    party: &str,
) -> Result<bool, StoreError> {
    let Some(mut t) = erased(conn, path, dossier)? else {
        return Ok(false);
    };
    if t.audience.iter().any(|p| p == party) {
        return Ok(false);
    }
    t.audience.push(party.to_owned());
    t.audience.sort();
    conn.execute(
        "UPDATE erased_dossiers SET audience = ?2 WHERE dossier = ?1",
        params![&dossier.as_bytes()[..], t.audience.join("\n")],
    )
    .at(path)?;
    Ok(true)
}

const TOMBSTONE_COLUMNS: &str =
    "SELECT dossier, erased_by, erased_at, erase_op, open_op, audience FROM erased_dossiers";

type TombstoneRow = (Vec<u8>, String, i64, Vec<u8>, Vec<u8>, String);

fn tombstone(path: &Path, r: TombstoneRow) -> Result<Tombstone, StoreError> {
    let (dossier, erased_by, erased_at, erase_op, open_op, audience) = r;
    Ok(Tombstone {
        dossier: doc_id(path, dossier)?,
        erased_by,
        erased_at,
        erase_op,
        open_op,
        audience: audience
            .split('\n')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn tombstone_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TombstoneRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

/// The tombstone of an erased dossier.
pub(crate) fn erased(
    conn: &Connection,
    path: &Path,
    dossier: &DocId,
) -> Result<Option<Tombstone>, StoreError> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(&format!("{TOMBSTONE_COLUMNS} WHERE dossier = ?1"))
        .at(path)?
        .query_row([&dossier.as_bytes()[..]], tombstone_row)
        .optional()
        .at(path)?
        .map(|r| tombstone(path, r))
        .transpose()
}

/// Every tombstone.
pub(crate) fn tombstones(conn: &Connection, path: &Path) -> Result<Vec<Tombstone>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!("{TOMBSTONE_COLUMNS} ORDER BY dossier"))
        .at(path)?;
    let rows = stmt.query_map([], tombstone_row).at(path)?;
    rows.map(|r| tombstone(path, r.at(path)?)).collect()
}

/// The hashes of every access-log op and sealed change of every dossier held, in one
/// query (sync summarises them on every session).
pub(crate) fn dossier_items(
    conn: &Connection,
    path: &Path,
) -> Result<std::collections::BTreeMap<DocId, DossierItems>, StoreError> {
    collect_items(
        conn,
        path,
        "SELECT dossier, hash, 0 FROM dossier_ops
         UNION ALL
         SELECT c.doc_id, c.hash, 1 FROM changes c JOIN documents d ON d.id = c.doc_id
         WHERE d.kind = 'dossier'",
        [],
    )
}

/// The hashes of the access-log ops and sealed changes of one dossier; `None` if
/// nothing of it is held. Sync answers a batch of dossiers with this rather than
/// reading the items of every dossier held for each request.
pub(crate) fn dossier_items_of(
    conn: &Connection,
    path: &Path,
    dossier: &DocId,
) -> Result<Option<DossierItems>, StoreError> {
    let mut items = collect_items(
        conn,
        path,
        "SELECT dossier, hash, 0 FROM dossier_ops WHERE dossier = ?1
         UNION ALL
         SELECT c.doc_id, c.hash, 1 FROM changes c JOIN documents d ON d.id = c.doc_id
         WHERE c.doc_id = ?1 AND d.kind = 'dossier'",
        [dossier.as_bytes().as_slice()],
    )?;
    Ok(items.remove(dossier))
}

/// Runs `sql` (rows of dossier id, hash, 1 for a change or 0 for an op) and groups
/// the hashes per dossier.
fn collect_items(
    conn: &Connection,
    path: &Path,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<std::collections::BTreeMap<DocId, DossierItems>, StoreError> {
    let mut out: std::collections::BTreeMap<DocId, DossierItems> = Default::default();
    let mut stmt = conn.prepare_cached(sql).at(path)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .at(path)?;
    for r in rows {
        let (d, h, is_change) = r.at(path)?;
        let items = out.entry(doc_id(path, d)?).or_default();
        let list = if is_change == 1 {
            &mut items.changes
        } else {
            &mut items.ops
        };
        list.push(hash32(path, h)?);
    }
    Ok(out)
}

/// The summary digests of `ids` (those of which anything is held; see
/// [`Store::dossier_digests`](crate::Store::dossier_digests)): from the digest index
/// where it has a row, else computed from the items and written to it. One deferred
/// transaction: if another connection commits between the reads and the write, the
/// write fails (SQLite refuses to upgrade a read snapshot that is no longer the
/// latest) and is dropped, so a digest of items that changed meanwhile is never
/// kept; the digests returned are those of the snapshot read.
pub(crate) fn dossier_digests(
    conn: &Connection,
    path: &Path,
    ids: &[DocId],
    scan_all_above: usize,
) -> Result<std::collections::BTreeMap<DocId, [u8; 8]>, StoreError> {
    use regiosync_core::sync::rules::all_items;
    use regiosync_core::sync::summary::doc_digest;
    use rusqlite::OptionalExtension;
    let mut out = std::collections::BTreeMap::new();
    let tx = conn.unchecked_transaction().at(path)?;
    let mut missing = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached("SELECT digest FROM dossier_digests WHERE dossier = ?1")
            .at(path)?;
        for id in ids {
            let row: Option<Vec<u8>> = stmt
                .query_row([&id.as_bytes()[..]], |r| r.get(0))
                .optional()
                .at(path)?;
            match row.and_then(|d| <[u8; 8]>::try_from(d).ok()) {
                Some(d) => {
                    out.insert(*id, d);
                }
                None => missing.push(*id),
            }
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let mut computed = Vec::with_capacity(missing.len());
    if missing.len() > scan_all_above {
        let mut all = dossier_items(&tx, path)?;
        for id in &missing {
            if let Some(items) = all.remove(id) {
                computed.push((*id, doc_digest(id, &all_items(&items))));
            }
        }
    } else {
        for id in &missing {
            if let Some(items) = dossier_items_of(&tx, path, id)? {
                computed.push((*id, doc_digest(id, &all_items(&items))));
            }
        }
    }
    let written = (|| -> rusqlite::Result<()> {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO dossier_digests (dossier, digest) VALUES (?1, ?2)
             ON CONFLICT (dossier) DO UPDATE SET digest = excluded.digest",
        )?;
        for (id, digest) in &computed {
            stmt.execute(params![&id.as_bytes()[..], &digest[..]])?;
        }
        Ok(())
    })();
    match written {
        Ok(()) => {
            if let Err(e) = tx.commit() {
                tracing::debug!(error = %e, "dossier digest index not updated");
            }
        }
        // Busy (another process wrote since the read) or read-only: the index
        // stays as it was; the digests below are right for what was read.
        Err(e) => tracing::debug!(error = %e, "dossier digest index not updated"),
    }
    out.extend(computed);
    Ok(out)
}

/// A row of the dossier readers index: the membership digest the dossier's log was
/// folded under, and the encoded `AccessSummary`.
pub type ReadersRow = ([u8; 32], Vec<u8>);

/// Every dossier whose access log this store holds, with its row of the readers
/// index if there is one.
pub(crate) fn dossier_readers_index(
    conn: &Connection,
    path: &Path,
) -> Result<Vec<(DocId, Option<ReadersRow>)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT o.dossier, r.digest, r.summary
             FROM dossier_ops o LEFT JOIN dossier_readers r ON r.dossier = o.dossier
             GROUP BY o.dossier ORDER BY o.dossier",
        )
        .at(path)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Option<Vec<u8>>>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
            ))
        })
        .at(path)?;
    let mut out = Vec::new();
    for r in rows {
        let (id, digest, summary) = r.at(path)?;
        let row = match (digest, summary) {
            (Some(d), Some(s)) => Some((hash32(path, d)?, s)),
            _ => None,
        };
        out.push((doc_id(path, id)?, row));
    }
    Ok(out)
}

/// Writes rows of the readers index (replacing a dossier's row): (dossier, digest,
/// encoded summary, number of access-log ops folded). A row is written only if the
/// dossier still has exactly that many ops: ops are only ever added (or all
/// deleted), so another process that stored an op after the fold read the log
/// leaves the stale row unwritten instead of the trigger's deletion undone.
pub(crate) fn put_dossier_readers(
    conn: &Connection,
    path: &Path,
    rows: &[(DocId, [u8; 32], Vec<u8>, usize)],
) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO dossier_readers (dossier, digest, summary)
             SELECT ?1, ?2, ?3
             WHERE ?4 > 0 AND (SELECT count(*) FROM dossier_ops WHERE dossier = ?1) = ?4
             ON CONFLICT (dossier) DO UPDATE SET digest = excluded.digest, summary = excluded.summary",
        )
        .at(path)?;
    for (id, digest, summary, ops) in rows {
        let ops = i64::try_from(*ops).unwrap_or(i64::MAX);
        stmt.execute(params![&id.as_bytes()[..], &digest[..], summary, ops])
            .at(path)?;
    }
    Ok(())
}

/// The ids of the dossiers whose access logs this store holds.
pub(crate) fn dossier_ids(conn: &Connection, path: &Path) -> Result<Vec<DocId>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT DISTINCT dossier FROM dossier_ops ORDER BY dossier")
        .at(path)?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).at(path)?;
    rows.map(|r| doc_id(path, r.at(path)?)).collect()
}
