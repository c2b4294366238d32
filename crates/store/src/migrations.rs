//! Numbered schema migrations. Migration `n` (1-based) takes the schema from version
//! `n - 1` to `n`; the version lives in SQLite's `user_version`. Never edit a shipped
//! migration: add a new one. The on-disk format is documented in docs/PROTOCOL.md.

use rusqlite::Connection;

/// `PRAGMA application_id` of every regiosync store: "RGSY".
pub(crate) const APPLICATION_ID: i64 = 0x5247_5359;

/// The migrations, in order.
const MIGRATIONS: &[&str] = &[
    // 1: documents, their changes, compacted snapshots.
    "CREATE TABLE documents (
        id          BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        kind        TEXT NOT NULL,
        subkind     TEXT NOT NULL,
        title       TEXT NOT NULL,
        created_ms  INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE changes (
        rowid       INTEGER PRIMARY KEY,
        doc_id      BLOB NOT NULL REFERENCES documents(id),
        hash        BLOB NOT NULL CHECK (length(hash) = 32),
        actor       BLOB NOT NULL,
        seq         INTEGER NOT NULL,
        bytes       BLOB NOT NULL,
        stored_ms   INTEGER NOT NULL,
        UNIQUE (doc_id, hash)
     ) STRICT;
     CREATE TABLE snapshots (
        doc_id      BLOB PRIMARY KEY NOT NULL REFERENCES documents(id),
        bytes       BLOB NOT NULL,
        covers_upto INTEGER NOT NULL,
        stored_ms   INTEGER NOT NULL
     ) STRICT;",
    // 2: the region control plane: signed ops, change envelopes, node settings,
    //    invitations, and the control heads a snapshot was verified under.
    "CREATE TABLE control_ops (
        hash        BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
        bytes       BLOB NOT NULL,
        stored_ms   INTEGER NOT NULL
     ) STRICT;
     ALTER TABLE changes ADD COLUMN envelope BLOB;
     ALTER TABLE snapshots ADD COLUMN control_heads BLOB NOT NULL DEFAULT x'';
     CREATE TABLE settings (
        key         TEXT PRIMARY KEY NOT NULL,
        value       BLOB NOT NULL
     ) STRICT;
     CREATE TABLE invites (
        id          BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        secret      BLOB NOT NULL CHECK (length(secret) = 32),
        party       TEXT NOT NULL,
        role        TEXT NOT NULL,
        admin       INTEGER NOT NULL,
        expires_s   INTEGER NOT NULL,
        created_ms  INTEGER NOT NULL,
        used_ms     INTEGER,
        used_by     BLOB
     ) STRICT;",
    // 3: what a node remembers of its peers across restarts: addresses that reached
    //    them, and the per-peer sync state: the heads each peer was last known to hold
    //    per document.
    "CREATE TABLE peer_addrs (
        peer        BLOB NOT NULL CHECK (length(peer) = 32),
        addr        TEXT NOT NULL,
        seen_ms     INTEGER NOT NULL,
        PRIMARY KEY (peer, addr)
     ) STRICT, WITHOUT ROWID;
     CREATE TABLE peer_docs (
        peer        BLOB NOT NULL CHECK (length(peer) = 32),
        doc_id      BLOB NOT NULL CHECK (length(doc_id) = 16),
        heads       BLOB NOT NULL CHECK (length(heads) % 32 = 0),
        updated_ms  INTEGER NOT NULL,
        PRIMARY KEY (peer, doc_id)
     ) STRICT, WITHOUT ROWID;",
    // 4: the audit log of unseals: append-only (triggers refuse UPDATE and DELETE)
    //    and hash-chained (regiosync_core::audit).
    "CREATE TABLE audit_log (
        seq         INTEGER PRIMARY KEY NOT NULL,
        at_ms       INTEGER NOT NULL,
        device      BLOB NOT NULL CHECK (length(device) = 32),
        user        TEXT NOT NULL,
        dossier     BLOB NOT NULL CHECK (length(dossier) = 16),
        action      TEXT NOT NULL,
        purpose     TEXT NOT NULL,
        hash        BLOB NOT NULL CHECK (length(hash) = 32)
     ) STRICT;
     CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
        WHEN EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq)
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 5: the access logs of dossiers (kept apart from the region log, which never
    //    names a dossier).
    "CREATE TABLE dossier_ops (
        hash        BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
        dossier     BLOB NOT NULL CHECK (length(dossier) = 16),
        bytes       BLOB NOT NULL,
        stored_ms   INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX dossier_ops_by_dossier ON dossier_ops (dossier);
     CREATE TABLE erased_dossiers (
        dossier     BLOB PRIMARY KEY NOT NULL CHECK (length(dossier) = 16),
        erased_by   TEXT NOT NULL,
        erased_at   INTEGER NOT NULL,
        erase_op    BLOB NOT NULL
     ) STRICT;",
    // 6: a tombstone keeps the dossier's `Open` op (so the erasure can be checked by
    //    a node that never held the dossier's log) and the parties that ever had
    //    access (who must learn of the erasure), newline-separated.
    "ALTER TABLE erased_dossiers ADD COLUMN open_op BLOB NOT NULL DEFAULT x'';
     ALTER TABLE erased_dossiers ADD COLUMN audience TEXT NOT NULL DEFAULT '';",
    // 7: evidence of equivocation (two changes one device signed under one sequence
    //    number of a plan): the second, refused one, with its signed envelope.
    "CREATE TABLE equivocations (
        doc_id          BLOB NOT NULL CHECK (length(doc_id) = 16),
        actor           BLOB NOT NULL,
        seq             INTEGER NOT NULL,
        first           BLOB NOT NULL CHECK (length(first) = 32),
        second          BLOB NOT NULL CHECK (length(second) = 32),
        second_bytes    BLOB NOT NULL,
        second_envelope BLOB NOT NULL,
        seen_ms         INTEGER NOT NULL,
        PRIMARY KEY (doc_id, actor, seq)
     ) STRICT;",
    // 8: the web app's staff accounts of this node (never synced) and their sessions.
    //    A password is kept only as an Argon2id PHC string, a session only as the
    //    SHA-256 of its token; deleting an account's row ends its sessions.
    "CREATE TABLE staff_users (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE,
        role            TEXT NOT NULL CHECK (role IN ('beheerder', 'beleid', 'dossier', 'lezer')),
        password_hash   TEXT NOT NULL,
        must_change     INTEGER NOT NULL CHECK (must_change IN (0, 1)),
        disabled        INTEGER NOT NULL CHECK (disabled IN (0, 1)),
        created_ms      INTEGER NOT NULL,
        password_ms     INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE staff_sessions (
        token_hash      BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
        user_id         INTEGER NOT NULL REFERENCES staff_users(id) ON DELETE CASCADE,
        csrf            BLOB NOT NULL CHECK (length(csrf) = 32),
        created_ms      INTEGER NOT NULL,
        last_seen_ms    INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX staff_sessions_by_user ON staff_sessions (user_id);",
    // 9: audit entries of format 2 name how the person reached the node
    //    (regiosync_core::audit::Who): `format` 1 rows (older) keep a declared name in
    //    `user`; format 2 rows have `via` 'web' (user = the staff account) or 'cli'
    //    (user = the OS user, `declared` = the name given with --user). The index
    //    serves a dossier's access history.
    "ALTER TABLE audit_log ADD COLUMN format INTEGER NOT NULL DEFAULT 1 CHECK (format IN (1, 2));
     ALTER TABLE audit_log ADD COLUMN via TEXT NOT NULL DEFAULT '';
     ALTER TABLE audit_log ADD COLUMN declared TEXT;
     CREATE INDEX audit_log_by_dossier ON audit_log (dossier, seq);",
    // 10: a device's changes of a document by sequence number, looked up for every
    //    change stored (equivocation: the same device and number twice) and every
    //    change made here (the next number). Without it each lookup read every change
    //    of the document, so storing a plan's history cost time in its square.
    "CREATE INDEX changes_by_actor_seq ON changes (doc_id, actor, seq);",
    // 11: per dossier, who may read it as its access log's fold decided
    //    (`regiosync_core::dossier::access::AccessSummary`, encoded) under the region
    //    membership of `digest` (`RegionState::access_digest`): an index that saves
    //    folding every dossier's log again at start-up. A row is valid only while the
    //    log is what it was folded from: adding or deleting an op of the dossier
    //    deletes it (the triggers), and a row of another digest is folded again.
    "CREATE TABLE dossier_readers (
        dossier     BLOB PRIMARY KEY NOT NULL CHECK (length(dossier) = 16),
        digest      BLOB NOT NULL CHECK (length(digest) = 32),
        summary     BLOB NOT NULL
     ) STRICT;
     CREATE TRIGGER dossier_readers_after_op AFTER INSERT ON dossier_ops
     BEGIN DELETE FROM dossier_readers WHERE dossier = NEW.dossier; END;
     CREATE TRIGGER dossier_readers_after_op_gone AFTER DELETE ON dossier_ops
     BEGIN DELETE FROM dossier_readers WHERE dossier = OLD.dossier; END;",
    // 12: per dossier, the digest of what is held of it as the sync summary counts
    //    it (`regiosync_core::sync::summary::doc_digest` over the hashes of its
    //    access-log ops and sealed changes): an index that saves reading every item
    //    of every shared dossier for each session's summary. Adding or deleting an op
    //    or a change of the dossier deletes its row (the triggers; for a plan's
    //    changes they find no row).
    "CREATE TABLE dossier_digests (
        dossier     BLOB PRIMARY KEY NOT NULL CHECK (length(dossier) = 16),
        digest      BLOB NOT NULL CHECK (length(digest) = 8)
     ) STRICT;
     CREATE TRIGGER dossier_digests_after_op AFTER INSERT ON dossier_ops
     BEGIN DELETE FROM dossier_digests WHERE dossier = NEW.dossier; END;
     CREATE TRIGGER dossier_digests_after_op_gone AFTER DELETE ON dossier_ops
     BEGIN DELETE FROM dossier_digests WHERE dossier = OLD.dossier; END;
     CREATE TRIGGER dossier_digests_after_change AFTER INSERT ON changes
     BEGIN DELETE FROM dossier_digests WHERE dossier = NEW.doc_id; END;
     CREATE TRIGGER dossier_digests_after_change_gone AFTER DELETE ON changes
     BEGIN DELETE FROM dossier_digests WHERE dossier = OLD.doc_id; END;",
];

/// The schema version this build writes.
pub(crate) const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies every migration after `from`, each in its own transaction with the
/// version bump, so a crash leaves the store at a whole version.
pub(crate) fn migrate(conn: &mut Connection, from: i64) -> rusqlite::Result<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if i == 0 {
            // Mark the file as ours in the same transaction as the first schema.
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
