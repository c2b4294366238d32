//! What a node remembers of its peers across restarts: the addresses that reached
//! them (so a restarted node can dial its members without mDNS or `--peer`), and per
//! peer and document the heads the peer was last known to hold (the per-peer sync
//! state: it shortens the next sync and tells `status` who is ahead or behind).

use std::path::Path;

use regiosync_core::id::DocId;
use rusqlite::{Connection, params};

use crate::error::{SqliteResultExt, StoreError};

/// A document and the heads a peer was last known to hold of it.
pub type PeerDocHeads = (DocId, Vec<[u8; 32]>);

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

/// Splits a `heads` column into hashes (its length is a multiple of 32 by the
/// table's CHECK).
fn split_heads(bytes: &[u8]) -> Vec<[u8; 32]> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| c.try_into().ok())
        .collect()
}

pub(crate) fn peer_docs(
    conn: &Connection,
    path: &Path,
    peer: &[u8; 32],
) -> Result<Vec<PeerDocHeads>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT doc_id, heads FROM peer_docs WHERE peer = ?1")
        .at(path)?;
    let rows = stmt
        .query_map([&peer[..]], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .at(path)?;
    let mut out = Vec::new();
    for row in rows {
        let (doc, heads) = row.at(path)?;
        let doc: [u8; 16] = doc.try_into().map_err(|_| StoreError::Malformed {
            path: path.to_owned(),
            detail: "peer document row".into(),
        })?;
        out.push((DocId::from_bytes(doc), split_heads(&heads)));
    }
    Ok(out)
}

pub(crate) fn set_peer_heads(
    conn: &Connection,
    path: &Path,
    peer: &[u8; 32],
    doc: &DocId,
    heads: &[[u8; 32]],
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO peer_docs (peer, doc_id, heads, updated_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (peer, doc_id) DO UPDATE SET heads = excluded.heads, updated_ms = excluded.updated_ms",
    )
    .at(path)?
    .execute(params![&peer[..], &doc.as_bytes()[..], heads.concat(), now_ms])
    .at(path)?;
    Ok(())
}
