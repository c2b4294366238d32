//! Evidence of faults by member devices: two different changes that one device
//! signed under the same sequence number of a plan (equivocation). The node keeps
//! the first it held and refuses the second; the second is kept here, with its
//! signed envelope, so that an admin can see who did it and prove it, and remove
//! the device.

use std::path::Path;

use regiosync_core::id::DocId;
use rusqlite::{Connection, params};

use crate::error::{SqliteResultExt, StoreError};

/// Most equivocations kept per device: a device that equivocates more is reported
/// all the same, and its evidence cannot fill the disk.
pub const MAX_EQUIVOCATIONS_PER_DEVICE: usize = 16;

/// One equivocation: the change held first, and the refused second one with its
/// signed envelope (the proof that the device signed both).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EquivocationRow {
    /// The plan.
    pub doc: DocId,
    /// The Automerge actor id of the device.
    pub actor: Vec<u8>,
    /// The sequence number both changes carry.
    pub seq: u64,
    /// The hash of the change held (the first one).
    pub first: [u8; 32],
    /// The hash of the refused change.
    pub second: [u8; 32],
    /// The refused change's bytes.
    pub second_bytes: Vec<u8>,
    /// The refused change's signed envelope, wire form.
    pub second_envelope: Vec<u8>,
    /// When this node first saw it, Unix milliseconds.
    pub seen_ms: i64,
}

/// Records an equivocation; `false` if it was known, or the device has
/// [`MAX_EQUIVOCATIONS_PER_DEVICE`] on record already.
pub(crate) fn record_equivocation(
    conn: &Connection,
    path: &Path,
    row: &EquivocationRow,
) -> Result<bool, StoreError> {
    let held: i64 = conn
        .prepare_cached("SELECT count(*) FROM equivocations WHERE actor = ?1")
        .at(path)?
        .query_row(params![row.actor], |r| r.get(0))
        .at(path)?;
    if held as usize >= MAX_EQUIVOCATIONS_PER_DEVICE {
        return Ok(false);
    }
    let seq = i64::try_from(row.seq).map_err(|_| StoreError::Malformed {
        path: path.to_owned(),
        detail: "equivocation sequence number".into(),
    })?;
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO equivocations
             (doc_id, actor, seq, first, second, second_bytes, second_envelope, seen_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .at(path)?
        .execute(params![
            &row.doc.as_bytes()[..],
            row.actor,
            seq,
            &row.first[..],
            &row.second[..],
            row.second_bytes,
            row.second_envelope,
            row.seen_ms
        ])
        .at(path)?;
    Ok(n == 1)
}

/// Every equivocation on record, oldest first.
pub(crate) fn equivocations(
    conn: &Connection,
    path: &Path,
) -> Result<Vec<EquivocationRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT doc_id, actor, seq, first, second, second_bytes, second_envelope, seen_ms
             FROM equivocations ORDER BY seen_ms, rowid",
        )
        .at(path)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, Vec<u8>>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .at(path)?;
    let malformed = || StoreError::Malformed {
        path: path.to_owned(),
        detail: "equivocation row".into(),
    };
    let mut out = Vec::new();
    for row in rows {
        let (doc, actor, seq, first, second, second_bytes, second_envelope, seen_ms) =
            row.at(path)?;
        out.push(EquivocationRow {
            doc: DocId::from_bytes(doc.as_slice().try_into().map_err(|_| malformed())?),
            actor,
            seq: u64::try_from(seq).map_err(|_| malformed())?,
            first: first.try_into().map_err(|_| malformed())?,
            second: second.try_into().map_err(|_| malformed())?,
            second_bytes,
            second_envelope,
            seen_ms,
        });
    }
    Ok(out)
}
