//! Documents, their changes and snapshots: the rows and the queries on them.
//!
//! The queries are free functions on `&Connection` so that the same code serves reads
//! outside a transaction ([`crate::Store`]) and inside one ([`crate::WriteTx`]).

use std::path::Path;

use regiosync_core::id::{DOC_ID_LEN, DocId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{SqliteResultExt, StoreError};

/// The metadata row of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentRow {
    /// The document id.
    pub id: DocId,
    /// The document kind (`plan`, later `dossier`).
    pub kind: String,
    /// The subkind (e.g. `jeugdplan`).
    pub subkind: String,
    /// The title, cached for listings (the document itself is the truth).
    pub title: String,
    /// When the document was created here, in Unix milliseconds.
    pub created_ms: i64,
}

/// A change's hash and its stored envelope, without the change bytes
/// ([`crate::StoreRead::change_envelopes`]).
pub type EnvelopeRow = ([u8; 32], Option<Vec<u8>>);

/// One Automerge change as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRow {
    /// The change hash (32 bytes).
    pub hash: [u8; 32],
    /// The Automerge actor id of the author device.
    pub actor: Vec<u8>,
    /// The author's sequence number.
    pub seq: u64,
    /// The raw change bytes.
    pub bytes: Vec<u8>,
    /// When it was stored here, in Unix milliseconds.
    pub stored_ms: i64,
    /// The signed envelope (author, signature), wire form; `None` for a change stored
    /// before envelopes existed (such a change is never accepted).
    pub envelope: Option<Vec<u8>>,
}

/// A compacted snapshot of a document's accepted changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// An Automerge `save()` of the accepted changes.
    pub bytes: Vec<u8>,
    /// The store position of the newest change it covers.
    pub covers_upto: i64,
    /// The control heads the changes were verified under, concatenated; the snapshot
    /// is only valid while the region state is the same.
    pub control_heads: Vec<u8>,
}

/// Marks of what a store holds, read in one statement: the largest row id of the
/// tables whose rows sync sends (`changes`, `control_ops`, `dossier_ops`,
/// `erased_dossiers`), and for the two small ones (`control_ops`,
/// `erased_dossiers`) the number of rows too. A write by any process moves at
/// least one of them (an insert the largest id; deleting a dossier's changes and
/// ops comes with its tombstone); comparing two tells which kinds of data were
/// written in between.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteMarks {
    /// Changes of documents (plans and sealed dossier changes): the largest id.
    pub changes: i64,
    /// Control ops of the region log: the number and the largest id.
    pub ops: (i64, i64),
    /// Ops of dossiers' access logs: the largest id.
    pub dossier_ops: i64,
    /// Erased dossiers (tombstones): the number and the largest id.
    pub erased: (i64, i64),
}

/// What is needed to rebuild a document: its latest snapshot, if any, and the changes
/// stored after it, in the order they were stored.
#[derive(Clone, Debug)]
pub struct StoredDoc {
    /// The metadata row.
    pub meta: DocumentRow,
    /// The latest compacted snapshot.
    pub snapshot: Option<Snapshot>,
    /// The changes not in the snapshot.
    pub tail: Vec<ChangeRow>,
    /// The store position of the newest change (for [`crate::WriteTx::put_snapshot`]).
    pub last_change: i64,
}

pub(crate) fn document(
    conn: &Connection,
    path: &Path,
    id: &DocId,
) -> Result<Option<DocumentRow>, StoreError> {
    conn.prepare_cached("SELECT id, kind, subkind, title, created_ms FROM documents WHERE id = ?1")
        .at(path)?
        .query_row(params![&id.as_bytes()[..]], row_to_doc)
        .optional()
        .at(path)?
        .transpose()
        .map_err(|detail| StoreError::Malformed {
            path: path.to_owned(),
            detail,
        })
}

pub(crate) fn documents(conn: &Connection, path: &Path) -> Result<Vec<DocumentRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, kind, subkind, title, created_ms FROM documents ORDER BY created_ms, id",
        )
        .at(path)?;
    let rows = stmt.query_map([], row_to_doc).at(path)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r.at(path)?.map_err(|detail| StoreError::Malformed {
            path: path.to_owned(),
            detail,
        })?);
    }
    Ok(out)
}

pub(crate) fn ids_with_prefix(
    conn: &Connection,
    path: &Path,
    hex_prefix: &str,
) -> Result<Vec<DocId>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id FROM documents WHERE hex(id) LIKE ?1 || '%' ORDER BY id")
        .at(path)?;
    let rows = stmt
        .query_map([hex_prefix.to_ascii_uppercase()], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .at(path)?;
    doc_ids(path, rows, "document id")
}

/// The document ids of a query's rows, each checked.
fn doc_ids(
    path: &Path,
    rows: impl Iterator<Item = rusqlite::Result<Vec<u8>>>,
    what: &str,
) -> Result<Vec<DocId>, StoreError> {
    let mut out = Vec::new();
    for r in rows {
        let bytes = r.at(path)?;
        out.push(
            DocId::from_slice(&bytes).map_err(|_| StoreError::Malformed {
                path: path.to_owned(),
                detail: what.into(),
            })?,
        );
    }
    Ok(out)
}

pub(crate) fn load(conn: &Connection, path: &Path, id: &DocId) -> Result<StoredDoc, StoreError> {
    let meta = document(conn, path, id)?.ok_or(StoreError::UnknownDocument(*id))?;
    let snapshot: Option<Snapshot> = conn
        .query_row(
            "SELECT bytes, covers_upto, control_heads FROM snapshots WHERE doc_id = ?1",
            params![&id.as_bytes()[..]],
            |r| {
                Ok(Snapshot {
                    bytes: r.get(0)?,
                    covers_upto: r.get(1)?,
                    control_heads: r.get(2)?,
                })
            },
        )
        .optional()
        .at(path)?;
    let covers = snapshot.as_ref().map_or(0, |s| s.covers_upto);
    let (tail, last) = change_rows(conn, path, id, covers)?;
    Ok(StoredDoc {
        meta,
        snapshot,
        tail,
        last_change: last.max(covers),
    })
}

/// The store position of the newest change of a document (0: none).
pub(crate) fn last_change(conn: &Connection, path: &Path, id: &DocId) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT coalesce(max(rowid), 0) FROM changes WHERE doc_id = ?1")
        .at(path)?
        .query_row(params![&id.as_bytes()[..]], |r| r.get(0))
        .at(path)
}

/// The changes of a document stored after position `after`, and the last position.
pub(crate) fn change_rows(
    conn: &Connection,
    path: &Path,
    id: &DocId,
    after: i64,
) -> Result<(Vec<ChangeRow>, i64), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT rowid, hash, actor, seq, bytes, stored_ms, envelope FROM changes
             WHERE doc_id = ?1 AND rowid > ?2 ORDER BY rowid",
        )
        .at(path)?;
    let rows = stmt
        .query_map(params![&id.as_bytes()[..], after], raw_change_row)
        .at(path)?;
    let mut out = Vec::new();
    let mut last = after;
    for r in rows {
        let (rowid, row) = change_row_of(path, r.at(path)?)?;
        last = rowid;
        out.push(row);
    }
    Ok((out, last))
}

/// What the store holds, as marks that move with every write of a kind sync sends
/// (see [`crate::StoreRead::write_marks`]).
pub(crate) fn write_marks(conn: &Connection, path: &Path) -> Result<WriteMarks, StoreError> {
    // One statement, so one consistent read of all four tables.
    conn.prepare_cached(
        "SELECT (SELECT coalesce(max(rowid), 0) FROM changes),
                (SELECT count(*) FROM control_ops), (SELECT coalesce(max(rowid), 0) FROM control_ops),
                (SELECT coalesce(max(rowid), 0) FROM dossier_ops),
                (SELECT count(*) FROM erased_dossiers), (SELECT coalesce(max(rowid), 0) FROM erased_dossiers)",
    )
    .at(path)?
    .query_row([], |r| {
        Ok(WriteMarks {
            changes: r.get(0)?,
            ops: (r.get(1)?, r.get(2)?),
            dossier_ops: r.get(3)?,
            erased: (r.get(4)?, r.get(5)?),
        })
    })
    .at(path)
}

/// The documents with changes stored after position `after`, at most `limit`.
pub(crate) fn docs_changed_after(
    conn: &Connection,
    path: &Path,
    after: i64,
    limit: usize,
) -> Result<Vec<DocId>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT DISTINCT doc_id FROM changes WHERE rowid > ?1 LIMIT ?2")
        .at(path)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![after, limit], |r| r.get::<_, Vec<u8>>(0))
        .at(path)?;
    doc_ids(path, rows, "document id of a change")
}

/// The changes of a document with the given hashes, in that order; hashes it does
/// not hold are left out. One lookup per hash on the `(doc_id, hash)` key, so that
/// sending a few changes of a long history does not read the whole history.
pub(crate) fn changes_by_hash(
    conn: &Connection,
    path: &Path,
    id: &DocId,
    hashes: &[[u8; 32]],
) -> Result<Vec<ChangeRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT rowid, hash, actor, seq, bytes, stored_ms, envelope FROM changes
             WHERE doc_id = ?1 AND hash = ?2",
        )
        .at(path)?;
    let mut out = Vec::with_capacity(hashes.len());
    for h in hashes {
        if let Some(raw) = stmt
            .query_row(params![&id.as_bytes()[..], &h[..]], raw_change_row)
            .optional()
            .at(path)?
        {
            out.push(change_row_of(path, raw)?.1);
        }
    }
    Ok(out)
}

/// A `changes` row as SQLite gives it: rowid, hash, actor, seq, bytes, stored_ms,
/// envelope.
type RawChangeRow = (i64, Vec<u8>, Vec<u8>, i64, Vec<u8>, i64, Option<Vec<u8>>);

fn raw_change_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawChangeRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

/// A raw row checked into a [`ChangeRow`], with its store position.
fn change_row_of(path: &Path, raw: RawChangeRow) -> Result<(i64, ChangeRow), StoreError> {
    let (rowid, hash, actor, seq, bytes, stored_ms, envelope) = raw;
    let malformed = || StoreError::Malformed {
        path: path.to_owned(),
        detail: "change row".into(),
    };
    Ok((
        rowid,
        ChangeRow {
            hash: hash.try_into().map_err(|_| malformed())?,
            actor,
            seq: u64::try_from(seq).map_err(|_| malformed())?,
            bytes,
            stored_ms,
            envelope,
        },
    ))
}

pub(crate) fn changes(
    conn: &Connection,
    path: &Path,
    id: &DocId,
) -> Result<Vec<ChangeRow>, StoreError> {
    if document(conn, path, id)?.is_none() {
        return Err(StoreError::UnknownDocument(*id));
    }
    Ok(change_rows(conn, path, id, 0)?.0)
}

pub(crate) fn change_envelopes(
    conn: &Connection,
    path: &Path,
    id: &DocId,
) -> Result<Vec<EnvelopeRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT hash, envelope FROM changes WHERE doc_id = ?1 ORDER BY rowid")
        .at(path)?;
    let rows = stmt
        .query_map(params![&id.as_bytes()[..]], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
        })
        .at(path)?;
    let mut out = Vec::new();
    for r in rows {
        let (hash, envelope) = r.at(path)?;
        let hash = hash.try_into().map_err(|_| StoreError::Malformed {
            path: path.to_owned(),
            detail: "change row".into(),
        })?;
        out.push((hash, envelope));
    }
    Ok(out)
}

pub(crate) fn insert_document(
    conn: &Connection,
    path: &Path,
    row: &DocumentRow,
) -> Result<(), StoreError> {
    if document(conn, path, &row.id)?.is_some() {
        return Err(StoreError::DuplicateDocument(row.id));
    }
    conn.prepare_cached(
        "INSERT INTO documents (id, kind, subkind, title, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .at(path)?
    .execute(params![
        &row.id.as_bytes()[..],
        row.kind,
        row.subkind,
        row.title,
        row.created_ms
    ])
    .at(path)?;
    Ok(())
}

pub(crate) fn append_change(
    conn: &Connection,
    path: &Path,
    id: &DocId,
    c: &ChangeRow,
) -> Result<Option<i64>, StoreError> {
    let seq = i64::try_from(c.seq).map_err(|_| StoreError::Malformed {
        path: path.to_owned(),
        detail: "change seq out of range".into(),
    })?;
    let n = conn
        .prepare_cached(
            "INSERT INTO changes (doc_id, hash, actor, seq, bytes, stored_ms, envelope)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (doc_id, hash) DO NOTHING",
        )
        .at(path)?
        .execute(params![
            &id.as_bytes()[..],
            &c.hash[..],
            c.actor,
            seq,
            c.bytes,
            c.stored_ms,
            c.envelope
        ])
        .at(path)?;
    Ok((n == 1).then(|| conn.last_insert_rowid()))
}

pub(crate) fn change_with_seq(
    conn: &Connection,
    path: &Path,
    id: &DocId,
    actor: &[u8],
    seq: u64,
) -> Result<Option<[u8; 32]>, StoreError> {
    let Ok(seq) = i64::try_from(seq) else {
        return Ok(None);
    };
    conn.prepare_cached(
        "SELECT hash FROM changes WHERE doc_id = ?1 AND actor = ?2 AND seq = ?3 ORDER BY rowid LIMIT 1",
    )
    .at(path)?
    .query_row(params![&id.as_bytes()[..], actor, seq], |r| {
        r.get::<_, [u8; 32]>(0)
    })
    .optional()
    .at(path)
}

pub(crate) fn max_seq(
    conn: &Connection,
    path: &Path,
    id: &DocId,
    actor: &[u8],
) -> Result<u64, StoreError> {
    let max: i64 = conn
        .prepare_cached(
            "SELECT coalesce(max(seq), 0) FROM changes WHERE doc_id = ?1 AND actor = ?2",
        )
        .at(path)?
        .query_row(params![&id.as_bytes()[..], actor], |r| r.get(0))
        .at(path)?;
    Ok(u64::try_from(max).unwrap_or(0))
}

pub(crate) fn set_title(
    conn: &Connection,
    path: &Path,
    id: &DocId,
    title: &str,
) -> Result<(), StoreError> {
    let n = conn
        .execute(
            "UPDATE documents SET title = ?2 WHERE id = ?1",
            params![&id.as_bytes()[..], title],
        )
        .at(path)?;
    if n == 0 {
        return Err(StoreError::UnknownDocument(*id));
    }
    Ok(())
}

pub(crate) fn put_snapshot(
    conn: &Connection,
    path: &Path,
    id: &DocId,
    snap: &Snapshot,
    stored_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO snapshots (doc_id, bytes, covers_upto, stored_ms, control_heads) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (doc_id) DO UPDATE SET bytes = excluded.bytes, covers_upto = excluded.covers_upto,
                                            stored_ms = excluded.stored_ms, control_heads = excluded.control_heads
         WHERE excluded.covers_upto > snapshots.covers_upto
            OR (excluded.covers_upto = snapshots.covers_upto AND excluded.control_heads <> snapshots.control_heads)",
    )
    .at(path)?
    .execute(params![
        &id.as_bytes()[..],
        snap.bytes,
        snap.covers_upto,
        stored_ms,
        snap.control_heads
    ])
    .at(path)?;
    Ok(())
}

type RowResult = Result<DocumentRow, String>;

fn row_to_doc(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let id: Vec<u8> = r.get(0)?;
    let Ok(bytes) = <[u8; DOC_ID_LEN]>::try_from(id.as_slice()) else {
        return Ok(Err("document id".into()));
    };
    Ok(Ok(DocumentRow {
        id: DocId::from_bytes(bytes),
        kind: r.get(1)?,
        subkind: r.get(2)?,
        title: r.get(3)?,
        created_ms: r.get(4)?,
    }))
}
