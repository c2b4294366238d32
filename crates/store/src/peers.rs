//! What a node remembers of its peers across restarts: the addresses that reached
//! them (so a restarted node can dial its members without mDNS or `--peer`), and one
//! opaque per-peer sync-state blob whose format belongs to the sync layer
//! (docs/PROTOCOL.md, "Per-peer sync state").

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{SqliteResultExt, StoreError};

/// Most addresses remembered per peer; the oldest are forgotten first.
pub const MAX_ADDRS_PER_PEER: usize = 8;

pub(crate) fn peer_addrs(
    conn: &Connection,
    path: &Path,
) -> Result<Vec<([u8; 32], String)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT peer, addr FROM peer_addrs ORDER BY peer, seen_ms DESC")
        .at(path)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })
        .at(path)?;
    let mut out = Vec::new();
    for row in rows {
        let (peer, addr) = row.at(path)?;
        let peer: [u8; 32] = peer.try_into().map_err(|_| StoreError::Malformed {
            path: path.to_owned(),
            detail: "peer address row".into(),
        })?;
        out.push((peer, addr));
    }
    Ok(out)
}

pub(crate) fn remember_addr(
    conn: &Connection,
    path: &Path,
    peer: &[u8; 32],
    addr: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO peer_addrs (peer, addr, seen_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (peer, addr) DO UPDATE SET seen_ms = excluded.seen_ms",
        params![&peer[..], addr, now_ms],
    )
    .at(path)?;
    conn.execute(
        "DELETE FROM peer_addrs WHERE peer = ?1 AND addr NOT IN
           (SELECT addr FROM peer_addrs WHERE peer = ?1 ORDER BY seen_ms DESC LIMIT ?2)",
        params![&peer[..], MAX_ADDRS_PER_PEER as i64],
    )
    .at(path)?;
    Ok(())
}

pub(crate) fn peer_sync(
    conn: &Connection,
    path: &Path,
    peer: &[u8; 32],
) -> Result<Option<Vec<u8>>, StoreError> {
    conn.query_row(
        "SELECT state FROM peer_sync WHERE peer = ?1",
        [&peer[..]],
        |r| r.get(0),
    )
    .optional()
    .at(path)
}

pub(crate) fn set_peer_sync(
    conn: &Connection,
    path: &Path,
    peer: &[u8; 32],
    state: &[u8],
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO peer_sync (peer, state, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (peer) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
        params![&peer[..], state, now_ms],
    )
    .at(path)?;
    Ok(())
}
