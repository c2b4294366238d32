use super::*;
use std::fs;

fn doc_row(title: &str) -> DocumentRow {
    DocumentRow {
        id: DocId::random().unwrap(),
        kind: "plan".into(),
        subkind: "jeugdplan".into(),
        title: title.into(),
        created_ms: 1,
    }
}

fn change(n: u8, len: usize) -> ChangeRow {
    ChangeRow {
        hash: [n; 32],
        actor: vec![1; 32],
        seq: n as u64,
        bytes: vec![n; len],
        stored_ms: 2,
        envelope: Some(vec![n; 3]),
    }
}

fn snap(bytes: &[u8], covers: i64) -> Snapshot {
    Snapshot {
        bytes: bytes.to_vec(),
        covers_upto: covers,
        control_heads: vec![],
    }
}

/// Two new documents, "a" and "b", stored in one transaction.
fn two_docs(store: &mut Store) -> (DocumentRow, DocumentRow) {
    let (a, b) = (doc_row("a"), doc_row("b"));
    store
        .write(|tx| {
            tx.insert_document(&a)?;
            tx.insert_document(&b)
        })
        .unwrap();
    (a, b)
}

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("store.sqlite")).unwrap();
    (dir, store)
}

#[test]
fn pragmas_take_effect() {
    let (_d, store) = new_store();
    let mode: String = store
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = store
        .conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    let sd: i64 = store
        .conn
        .pragma_query_value(None, "secure_delete", |r| r.get(0))
        .unwrap();
    assert_eq!(sd, 1);
}

/// Finding a device's change by sequence number (done for every change stored) is
/// an index lookup, not a read of every change of the document.
#[test]
fn a_change_is_found_by_device_and_sequence_number_through_an_index() {
    let (_d, store) = new_store();
    for sql in [
        "SELECT hash FROM changes WHERE doc_id = ?1 AND actor = ?2 AND seq = ?3 ORDER BY rowid LIMIT 1",
        "SELECT coalesce(max(seq), 0) FROM changes WHERE doc_id = ?1 AND actor = ?2",
    ] {
        let plan: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(
                rusqlite::params_from_iter(
                    [vec![0u8; 16], vec![1u8; 16], vec![0u8]]
                        .into_iter()
                        .take(sql.matches('?').count()),
                ),
                |r| r.get::<_, String>(3),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|l| l.contains("changes_by_actor_seq")),
            "{sql}: {plan:?}"
        );
    }
}

/// Changes picked by hash come in the order asked, only the document's own, and
/// through the `(doc_id, hash)` key rather than a read of the whole history.
#[test]
fn changes_are_found_by_hash_in_the_order_asked() {
    let (_d, mut store) = new_store();
    let (a, b) = (doc_row("a"), doc_row("b"));
    store
        .write(|tx| {
            tx.insert_document(&a)?;
            tx.insert_document(&b)?;
            for n in 1..=5 {
                tx.append_change(&a.id, &change(n, 10))?;
            }
            tx.append_change(&b.id, &change(9, 10))
        })
        .unwrap();
    let got = store
        .changes_by_hash(&a.id, &[[4; 32], [8; 32], [2; 32], [9; 32]])
        .unwrap();
    assert_eq!(got, vec![change(4, 10), change(2, 10)]);
    assert!(store.changes_by_hash(&a.id, &[]).unwrap().is_empty());
    // The envelopes alone: the document's own, in stored order, as `changes` has them.
    let envelopes = store.change_envelopes(&a.id).unwrap();
    let want: Vec<crate::EnvelopeRow> = store
        .changes(&a.id)
        .unwrap()
        .into_iter()
        .map(|c| (c.hash, c.envelope))
        .collect();
    assert_eq!(envelopes, want);
    assert_eq!(envelopes.len(), 5);
    assert!(store.change_envelopes(&doc_row("c").id).unwrap().is_empty());
    let plan: Vec<String> = store
        .conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT rowid, hash, actor, seq, bytes, stored_ms, envelope
             FROM changes WHERE doc_id = ?1 AND hash = ?2",
        )
        .unwrap()
        .query_map(rusqlite::params![vec![0u8; 16], vec![0u8; 32]], |r| {
            r.get::<_, String>(3)
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(plan.iter().any(|l| l.contains("USING INDEX")), "{plan:?}");
}

/// Each kind of write sync sends moves its own mark, and the documents changed
/// after a mark are found by row id.
#[test]
fn write_marks_tell_which_kinds_of_data_were_written() {
    let (_d, mut store) = new_store();
    let (a, b) = two_docs(&mut store);
    let m0 = store.write_marks().unwrap();
    store
        .write(|tx| tx.append_change(&b.id, &change(1, 10)))
        .unwrap();
    let m1 = store.write_marks().unwrap();
    assert!(m1.changes > m0.changes);
    assert_eq!(
        (m1.ops, m1.dossier_ops, m1.erased),
        (m0.ops, m0.dossier_ops, m0.erased)
    );
    assert_eq!(
        store.docs_changed_after(m0.changes, 10).unwrap(),
        vec![b.id]
    );
    assert!(store.docs_changed_after(m1.changes, 10).unwrap().is_empty());
    store.write(|tx| tx.put_op(&[5; 32], b"op", 1)).unwrap();
    let m2 = store.write_marks().unwrap();
    assert!(m2.ops != m1.ops && m2.changes == m1.changes);
    store
        .write(|tx| tx.put_dossier_op(&a.id, &[6; 32], b"dossier op", 1))
        .unwrap();
    let m3 = store.write_marks().unwrap();
    assert!(m3.dossier_ops > m2.dossier_ops && m3.ops == m2.ops);
}

/// A cache write commits like any other and leaves the connection at
/// `synchronous=FULL` for the writes after it, also when it fails.
#[test]
fn cache_writes_commit_and_restore_full_sync() {
    let (_d, mut store) = new_store();
    let sync = |s: &Store| -> i64 {
        s.conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    };
    let doc = DocId::random().unwrap();
    store
        .write_cache(|tx| tx.set_peer_heads(&[7; 32], &doc, &[[1; 32]], 5))
        .unwrap();
    assert_eq!(sync(&store), 2, "back to FULL after a cache write");
    let got = store.peer_docs(&[7; 32]).unwrap();
    assert_eq!(
        got,
        vec![(doc, vec![[1; 32]])],
        "the cache write was committed"
    );
    let failed: Result<(), StoreError> = store.write_cache(|tx| {
        tx.set_peer_heads(&[7; 32], &doc, &[[2; 32]], 6)?;
        Err(StoreError::Io {
            path: "x".into(),
            detail: "refused".into(),
        })
    });
    assert!(failed.is_err());
    assert_eq!(sync(&store), 2, "back to FULL after a failed cache write");
    assert_eq!(
        store.peer_docs(&[7; 32]).unwrap(),
        vec![(doc, vec![[1; 32]])],
        "nothing of the failed cache write was kept"
    );
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), StoreError> = store.write_cache(|_| panic!("a bug in a cache write"));
    }));
    assert!(panicked.is_err());
    assert_eq!(
        sync(&store),
        2,
        "back to FULL after a panicking cache write"
    );
}

#[test]
fn documents_changes_and_snapshots_roundtrip() {
    let (dir, mut store) = new_store();
    let row = doc_row("Jeugdplan");
    let id = row.id;
    store
        .write(|tx| {
            tx.insert_document(&row)?;
            assert!(tx.append_change(&id, &change(1, 10))?.is_some());
            assert!(
                tx.append_change(&id, &change(1, 10))?.is_none(),
                "duplicate hash is a no-op"
            );
            tx.append_change(&id, &change(2, 10))
        })
        .unwrap();
    let loaded = store.load(&id).unwrap();
    assert_eq!(loaded.snapshot, None);
    assert_eq!(loaded.tail, vec![change(1, 10), change(2, 10)]);

    let covers = loaded.last_change;
    store
        .write(|tx| {
            tx.put_snapshot(&id, &snap(b"snap", covers), 3)?;
            tx.append_change(&id, &change(3, 10))
        })
        .unwrap();
    drop(store);

    let store = Store::open(&dir.path().join("store.sqlite")).unwrap();
    let loaded = store.load(&id).unwrap();
    assert_eq!(loaded.snapshot, Some(snap(b"snap", covers)));
    assert_eq!(
        loaded.tail,
        vec![change(3, 10)],
        "only changes after the snapshot"
    );
    assert_eq!(store.changes(&id).unwrap().len(), 3);
    assert_eq!(store.documents().unwrap(), vec![row]);
}

#[test]
fn older_snapshot_never_replaces_newer() {
    let (_d, mut store) = new_store();
    let row = doc_row("x");
    let id = row.id;
    store
        .write(|tx| {
            tx.insert_document(&row)?;
            tx.put_snapshot(&id, &snap(b"new", 10), 0)?;
            tx.put_snapshot(&id, &snap(b"old", 5), 0)
        })
        .unwrap();
    assert_eq!(store.load(&id).unwrap().snapshot.unwrap().bytes, b"new");
}

#[test]
fn failed_write_keeps_nothing() {
    let (_d, mut store) = new_store();
    let row = doc_row("x");
    let r: Result<(), StoreError> = store.write(|tx| {
        tx.insert_document(&row)?;
        Err(StoreError::UnknownDocument(row.id))
    });
    assert!(r.is_err());
    assert!(store.documents().unwrap().is_empty());
}

#[test]
fn prefix_lookup() {
    let (_d, mut store) = new_store();
    let row = doc_row("x");
    let id = row.id;
    store.write(|tx| tx.insert_document(&row)).unwrap();
    let hex = id.to_string();
    assert_eq!(store.ids_with_prefix(&hex[..8]).unwrap(), vec![id]);
    assert_eq!(store.ids_with_prefix(&hex).unwrap(), vec![id]);
    let other = if hex.starts_with('0') {
        "11111111"
    } else {
        "00000000"
    };
    assert!(store.ids_with_prefix(other).unwrap().is_empty());
    assert!(matches!(
        store.load(&DocId::random().unwrap()),
        Err(StoreError::UnknownDocument(_))
    ));
}

#[test]
fn create_refuses_existing_file() {
    let (dir, _store) = new_store();
    assert!(matches!(
        Store::create(&dir.path().join("store.sqlite")),
        Err(StoreError::AlreadyExists { .. })
    ));
}

#[test]
fn missing_empty_foreign_and_garbage_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.sqlite");
    assert!(matches!(Store::open(&p), Err(StoreError::NotFound { .. })));

    fs::write(&p, b"").unwrap();
    assert!(matches!(Store::open(&p), Err(StoreError::Corrupt { .. })));
    assert!(matches!(
        Store::create(&p),
        Err(StoreError::AlreadyExists { .. })
    ));

    fs::write(&p, b"PK\x03\x04 this is a zip file, not a store, and it is long enough to pass the header length check of one hundred bytes").unwrap();
    assert!(matches!(
        Store::open(&p),
        Err(StoreError::NotADatabase { .. })
    ));

    fs::remove_file(&p).unwrap();
    let c = Connection::open(&p).unwrap();
    c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(c);
    let before = fs::read(&p).unwrap();
    assert!(matches!(Store::open(&p), Err(StoreError::Foreign { .. })));
    // The foreign file is untouched: same bytes, no WAL files created.
    assert_eq!(fs::read(&p).unwrap(), before);
    assert!(!dir.path().join("s.sqlite-wal").exists());
    let c = Connection::open(&p).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn newer_schema_is_refused() {
    let (dir, store) = new_store();
    store.conn.pragma_update(None, "user_version", 99).unwrap();
    drop(store);
    assert!(matches!(
        Store::open(&dir.path().join("store.sqlite")),
        Err(StoreError::NewerSchema { found: 99, .. })
    ));
}

#[test]
fn truncated_and_corrupted_files_are_detected() {
    let (dir, mut store) = new_store();
    let p = dir.path().join("store.sqlite");
    let row = doc_row("x");
    let id = row.id;
    store
        .write(|tx| {
            tx.insert_document(&row)?;
            for i in 0..200u8 {
                tx.append_change(&id, &change(i, 3000))?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    store
        .conn
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(store);
    let full = fs::read(&p).unwrap();
    assert!(full.len() > 100_000);

    // Truncated in the middle: opening reads the header's page count, not the pages.
    fs::write(&p, &full[..full.len() / 2]).unwrap();
    let r = Store::open(&p);
    assert!(
        matches!(&r, Err(StoreError::Corrupt { detail, .. }) if detail.contains("truncated")),
        "{r:?}"
    );
    assert!(matches!(
        crate::quick_check_file(&p),
        Err(StoreError::Corrupt { .. })
    ));

    // Truncated inside the header.
    fs::write(&p, &full[..50]).unwrap();
    assert!(matches!(Store::open(&p), Err(StoreError::Corrupt { .. })));

    // Bytes overwritten in the b-tree pages.
    let mut bad = full.clone();
    for b in &mut bad[4096..4096 * 6] {
        *b = 0xA5;
    }
    fs::write(&p, &bad).unwrap();
    let r = Store::open(&p).and_then(|s| s.changes(&id).map(|_| ()));
    assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
    // The check the running node makes in the background finds it without a query
    // reaching the damaged pages.
    assert!(matches!(
        crate::quick_check_file(&p),
        Err(StoreError::Corrupt { .. })
    ));

    // The intact file passes both.
    fs::write(&p, &full).unwrap();
    crate::quick_check_file(&p).unwrap();
    Store::open(&p).unwrap().changes(&id).unwrap();
}

#[test]
fn full_disk_is_reported_and_nothing_is_kept() {
    let (_d, mut store) = new_store();
    let row = doc_row("x");
    let id = row.id;
    store.write(|tx| tx.insert_document(&row)).unwrap();
    // Simulate a full disk: SQLite reports SQLITE_FULL when the page limit is hit.
    let pages: i64 = store
        .conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    store
        .conn
        .pragma_update(None, "max_page_count", pages)
        .unwrap();
    let r = store.write(|tx| tx.append_change(&id, &change(1, 100_000)));
    assert!(matches!(r, Err(StoreError::DiskFull { .. })), "{r:?}");
    assert!(store.changes(&id).unwrap().is_empty());
    assert!(r.unwrap_err().to_string().contains("full"));
}

#[test]
fn read_only_store_is_reported() {
    let (dir, store) = new_store();
    drop(store);
    let p = dir.path().join("store.sqlite");
    // Open as a read-only connection (permissions alone do not stop root).
    let conn = Connection::open_with_flags(&p, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut store = Store { conn, path: p };
    let r = store.write(|tx| tx.insert_document(&doc_row("x")));
    assert!(matches!(r, Err(StoreError::ReadOnly { .. })), "{r:?}");
}

#[test]
fn old_version_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.sqlite");
    let c = Connection::open(&p).unwrap();
    c.pragma_update(None, "application_id", migrations::APPLICATION_ID)
        .unwrap();
    drop(c);
    let store = Store::open(&p).unwrap();
    let v: i64 = store
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, migrations::CURRENT_VERSION);
    assert!(store.documents().unwrap().is_empty());
}

#[test]
fn control_ops_settings_and_invites() {
    let (dir, mut store) = new_store();
    let inv = InviteRow {
        id: [1; 16],
        secret: [2; 32],
        party: "gemeente-zeist".into(),
        role: "gemeente".into(),
        admin: false,
        expires_s: 100,
        created_ms: 5,
        used_ms: None,
        used_by: None,
    };
    store
        .write(|tx| {
            assert!(tx.put_op(&[9; 32], b"op", 1)?);
            assert!(!tx.put_op(&[9; 32], b"op", 1)?);
            tx.set_setting("region", b"r1")?;
            tx.set_setting("region", b"r2")?;
            tx.insert_invite(&inv)
        })
        .unwrap();
    drop(store);
    let mut store = Store::open(&dir.path().join("store.sqlite")).unwrap();
    assert_eq!(store.ops().unwrap(), vec![b"op".to_vec()]);
    assert_eq!(
        store.setting("region").unwrap().as_deref(),
        Some(&b"r2"[..])
    );
    assert_eq!(store.invite(&[1; 16]).unwrap(), Some(inv));
    assert!(
        store
            .write(|tx| tx.use_invite(&[1; 16], b"dev", 7))
            .unwrap()
    );
    assert!(
        !store
            .write(|tx| tx.use_invite(&[1; 16], b"dev", 8))
            .unwrap(),
        "an invite is used once"
    );
    assert_eq!(store.invite(&[1; 16]).unwrap().unwrap().used_ms, Some(7));
    // Open invites: unexpired, and unused or used recently.
    assert_eq!(store.open_invites(100, 7).unwrap().len(), 1);
    assert!(
        store.open_invites(100, 8).unwrap().is_empty(),
        "used before 8"
    );
    assert!(store.open_invites(101, 0).unwrap().is_empty(), "expired");
}

#[test]
fn peer_addresses_and_sync_state_survive_reopening() {
    let (dir, mut store) = new_store();
    let doc = DocId::from_bytes([4; 16]);
    store
        .write(|tx| {
            for i in 0..(MAX_ADDRS_PER_PEER as i64 + 3) {
                tx.remember_addr(&[1; 32], &format!("/ip4/127.0.0.1/tcp/{}", 4000 + i), i)?;
            }
            tx.remember_addr(&[2; 32], "/ip4/10.0.0.2/tcp/4100", 1)?;
            // Seen again: refreshed, not duplicated.
            tx.remember_addr(&[2; 32], "/ip4/10.0.0.2/tcp/4100", 50)?;
            tx.set_peer_heads(&[1; 32], &doc, &[[5; 32]], 1)?;
            tx.set_peer_heads(&[1; 32], &doc, &[[6; 32], [7; 32]], 2)
        })
        .unwrap();
    drop(store);
    let store = Store::open(&dir.path().join("store.sqlite")).unwrap();
    let addrs = store.peer_addrs().unwrap();
    let of = |p: u8| -> Vec<String> {
        addrs
            .iter()
            .filter(|(k, _)| *k == [p; 32])
            .map(|(_, a)| a.clone())
            .collect()
    };
    assert_eq!(of(1).len(), MAX_ADDRS_PER_PEER, "the oldest are forgotten");
    assert_eq!(
        of(1)[0],
        format!("/ip4/127.0.0.1/tcp/{}", 4000 + MAX_ADDRS_PER_PEER + 2)
    );
    assert!(!of(1).contains(&"/ip4/127.0.0.1/tcp/4000".to_string()));
    assert_eq!(of(2), vec!["/ip4/10.0.0.2/tcp/4100".to_string()]);
    assert_eq!(
        store.peer_docs(&[1; 32]).unwrap(),
        vec![(doc, vec![[6; 32], [7; 32]])],
        "replaced, not added"
    );
    assert!(store.peer_docs(&[3; 32]).unwrap().is_empty());
}

#[test]
fn data_version_moves_when_another_connection_commits() {
    let (dir, store) = new_store();
    let v0 = store.data_version().unwrap();
    let mut other = Store::open(&dir.path().join("store.sqlite")).unwrap();
    other.write(|tx| tx.insert_document(&doc_row("x"))).unwrap();
    let v1 = store.data_version().unwrap();
    assert_ne!(v0, v1, "a commit by another connection must be visible");
    assert_eq!(
        store.data_version().unwrap(),
        v1,
        "stable without new commits"
    );
}

#[test]
fn the_audit_log_is_append_only_and_a_flipped_byte_is_detected() {
    use regiosync_core::audit::{AuditEntry, Who, verify_chain};
    let (dir, mut store) = new_store();
    let entry = |i: i64| AuditEntry {
        at_ms: 1000 + i,
        device: [7; 32],
        who: Who::Web {
            account: "m.jansen".into(),
        },
        dossier: DocId::from_bytes([i as u8; 16]),
        action: "read".into(),
        purpose: "voorbereiding zorgoverleg".into(),
    };
    for i in 1..=4 {
        let seq = store.write(|tx| tx.append_audit(&entry(i))).unwrap();
        assert_eq!(seq, i);
    }
    let log = store.audit_log().unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(log[2].1, entry(3));
    assert_eq!(verify_chain(log), Ok(4));
    // The store refuses to change or drop entries.
    for sql in [
        "UPDATE audit_log SET purpose = 'x' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 4",
        "INSERT OR REPLACE INTO audit_log SELECT * FROM audit_log WHERE seq = 3",
    ] {
        let e = store
            .write(|tx| tx.tx.execute(sql, []).at(tx.path).map(|_| ()))
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
    }
    assert_eq!(verify_chain(store.audit_log().unwrap()), Ok(4));
    drop(store);
    // Someone with the file drops the guard and flips one byte of entry 2.
    let path = dir.path().join("store.sqlite");
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TRIGGER audit_log_no_update;
         UPDATE audit_log SET purpose = 'voorbereiding zorgoverlef' WHERE seq = 2;",
    )
    .unwrap();
    drop(raw);
    let store = Store::open(&path).unwrap();
    let broken = verify_chain(store.audit_log().unwrap()).unwrap_err();
    assert_eq!(broken.seq, 2);
}

/// Entries written before format 2 (rows of schema version 8 and older: `format`
/// takes its default 1) still verify, and new entries chain on from them; a row of
/// an unknown format is refused, not guessed.
#[test]
fn format_1_rows_verify_and_format_2_entries_chain_on_from_them() {
    use regiosync_core::audit::{AuditEntry, GENESIS, Who, chain_hash, verify_chain};
    let (dir, mut store) = new_store();
    let dossier = DocId::from_bytes([9; 16]);
    let old = |i: i64| AuditEntry {
        at_ms: i,
        device: [7; 32],
        who: Who::Declared("j.devries".into()),
        dossier,
        action: "read".into(),
        purpose: "zorgoverleg".into(),
    };
    // As a version-8 node wrote them: no format, via or declared columns.
    let mut prev = GENESIS;
    for i in 1..=2 {
        let e = old(i);
        prev = chain_hash(&prev, i, &e);
        let h = prev;
        store
            .write(|tx| {
                tx.tx
                    .execute(
                        "INSERT INTO audit_log (seq, at_ms, device, user, dossier, action, purpose, hash)
                         VALUES (?1, ?2, ?3, 'j.devries', ?4, 'read', 'zorgoverleg', ?5)",
                        rusqlite::params![i, i, &[7u8; 32][..], &dossier.as_bytes()[..], &h[..]],
                    )
                    .at(tx.path)
                    .map(|_| ())
            })
            .unwrap();
    }
    // A format-1 entry is not written any more.
    assert!(store.write(|tx| tx.append_audit(&old(3))).is_err());
    let web = AuditEntry {
        who: Who::Web {
            account: "a.smit".into(),
        },
        ..old(3)
    };
    let cli = AuditEntry {
        who: Who::Cli {
            os_user: "jan".into(),
            declared: Some("j.devries".into()),
        },
        dossier: DocId::from_bytes([8; 16]),
        ..old(4)
    };
    assert_eq!(store.write(|tx| tx.append_audit(&web)).unwrap(), 3);
    assert_eq!(store.write(|tx| tx.append_audit(&cli)).unwrap(), 4);
    let log = store.audit_log().unwrap();
    assert_eq!(log[0].1, old(1));
    assert_eq!(log[2].1, web);
    assert_eq!(log[3].1, cli);
    assert_eq!(verify_chain(log), Ok(4));
    let of: Vec<i64> = store
        .audit_log_of(&dossier)
        .unwrap()
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(of, [1, 2, 3]);
    let page: Vec<i64> = store
        .audit_log_page(Some(4), 2)
        .unwrap()
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(page, [3, 2]);
    drop(store);
    let path = dir.path().join("store.sqlite");
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET via = 'fax' WHERE seq = 3;",
    )
    .unwrap();
    drop(raw);
    assert!(Store::open(&path).unwrap().audit_log().is_err());
}

#[test]
fn equivocations_are_kept_once_and_at_most_sixteen_per_device() {
    let (_d, mut store) = new_store();
    let doc = DocId::random().unwrap();
    let row = |actor: u8, seq: u64| EquivocationRow {
        doc,
        actor: vec![actor; 32],
        seq,
        first: [1; 32],
        second: [2; 32],
        second_bytes: vec![3; 10],
        second_envelope: vec![4; 10],
        seen_ms: seq as i64,
    };
    let recorded = store
        .write(|tx| {
            let mut n = 0;
            for seq in 0..40 {
                n += usize::from(tx.record_equivocation(&row(7, seq))?);
            }
            // The same again changes nothing; another device still gets its own.
            assert!(!tx.record_equivocation(&row(7, 0))?);
            assert!(tx.record_equivocation(&row(8, 0))?);
            Ok::<_, StoreError>(n)
        })
        .unwrap();
    assert_eq!(recorded, MAX_EQUIVOCATIONS_PER_DEVICE);
    let all = store.equivocations().unwrap();
    assert_eq!(all.len(), MAX_EQUIVOCATIONS_PER_DEVICE + 1);
    assert_eq!(all[0], row(7, 0));
}

fn staff(name: &str, role: &str) -> StaffRow {
    StaffRow {
        id: 0,
        name: name.into(),
        role: role.into(),
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        must_change: true,
        disabled: false,
        created_ms: 1,
        password_ms: 1,
    }
}

fn session_of(user_id: i64, n: u8, at: i64) -> SessionRow {
    SessionRow {
        token_hash: [n; 32],
        user_id,
        csrf: [n + 100; 32],
        created_ms: at,
        last_seen_ms: at,
    }
}

#[test]
fn staff_accounts_and_sessions() {
    let (_dir, mut store) = new_store();
    let id = store
        .write(|tx| tx.insert_staff_user(&staff("j.bakker", "beleid")))
        .unwrap()
        .unwrap();
    // A name is unique; an unknown role is refused by the schema.
    assert_eq!(
        store
            .write(|tx| tx.insert_staff_user(&staff("j.bakker", "lezer")))
            .unwrap(),
        None
    );
    assert!(
        store
            .write(|tx| tx.insert_staff_user(&staff("x", "admin")))
            .is_err()
    );
    assert_eq!(
        store.staff_user("j.bakker").unwrap().unwrap().role,
        "beleid"
    );
    assert!(!format!("{:?}", store.staff_user("j.bakker").unwrap()).contains("argon2"));

    store
        .write(|tx| {
            tx.insert_staff_session(&session_of(id, 1, 1000))?;
            tx.insert_staff_session(&session_of(id, 2, 5000))
        })
        .unwrap();
    assert_eq!(
        store.staff_session(&[1; 32]).unwrap().unwrap().csrf,
        [101; 32]
    );
    // Expiry: idle before 2000 goes, the other stays.
    let gone = store
        .write(|tx| tx.delete_expired_staff_sessions(2000, 0))
        .unwrap();
    assert_eq!(gone, 1);
    assert!(store.staff_session(&[1; 32]).unwrap().is_none());
    // A new password ends every session of the account.
    store
        .write(|tx| tx.set_staff_password(id, "$argon2id$new", false, 9))
        .unwrap();
    assert!(store.staff_session(&[2; 32]).unwrap().is_none());
    let u = store.staff_user_by_id(id).unwrap().unwrap();
    assert!(!u.must_change);
    assert_eq!(u.password_ms, 9);
    // So does disabling it.
    store
        .write(|tx| tx.insert_staff_session(&session_of(id, 3, 10)))
        .unwrap();
    assert!(store.write(|tx| tx.set_staff_disabled(id, true)).unwrap());
    assert!(store.staff_session(&[3; 32]).unwrap().is_none());
    assert!(store.staff_users().unwrap()[0].disabled);
}

/// The tombstone of `dossier` erased by its owner, the ROC.
fn erased_by_roc(dossier: DocId) -> Tombstone {
    Tombstone {
        dossier,
        erased_by: "roc-x".into(),
        erased_at: 1,
        erase_op: vec![1],
        open_op: vec![2],
        audience: vec!["roc-x".into()],
    }
}

#[test]
fn the_readers_index_holds_only_rows_of_the_log_as_it_was_folded() {
    let (_d, mut store) = new_store();
    let (a, b) = (DocId::from_bytes([1; 16]), DocId::from_bytes([2; 16]));
    store
        .write(|tx| {
            tx.put_dossier_op(&a, &[1; 32], b"open a", 1)?;
            tx.put_dossier_op(&a, &[2; 32], b"keys a", 1)?;
            tx.put_dossier_op(&b, &[3; 32], b"open b", 1)
        })
        .unwrap();
    let index = |s: &Store| s.dossier_readers_index().unwrap();
    assert_eq!(index(&store), vec![(a, None), (b, None)]);
    store
        .cache_dossier_readers(&[
            (a, [7; 32], b"a's readers".to_vec(), 2),
            // Folded from its one op: kept.
            (b, [7; 32], b"b's readers".to_vec(), 1),
            // A dossier whose log is not held: not written.
            (DocId::from_bytes([3; 16]), [7; 32], b"x".to_vec(), 1),
        ])
        .unwrap();
    assert_eq!(
        index(&store),
        vec![
            (a, Some(([7; 32], b"a's readers".to_vec()))),
            (b, Some(([7; 32], b"b's readers".to_vec())))
        ]
    );
    // A new op of `a` (from this or another process) makes its row go.
    store
        .write(|tx| tx.put_dossier_op(&a, &[4; 32], b"grant a", 1))
        .unwrap();
    assert_eq!(index(&store)[0], (a, None));
    // A fold of the log before that op (two ops) is not written back.
    store
        .cache_dossier_readers(&[(a, [7; 32], b"stale".to_vec(), 2)])
        .unwrap();
    assert_eq!(index(&store)[0], (a, None));
    store
        .cache_dossier_readers(&[(a, [8; 32], b"fresh".to_vec(), 3)])
        .unwrap();
    assert_eq!(index(&store)[0], (a, Some(([8; 32], b"fresh".to_vec()))));
    // Erasure deletes the log, and with it the row.
    store
        .write(|tx| tx.purge_dossier(&erased_by_roc(a)))
        .unwrap();
    assert_eq!(
        index(&store),
        vec![(b, Some(([7; 32], b"b's readers".to_vec())))]
    );
    let left: i64 = store
        .conn
        .query_row("SELECT count(*) FROM dossier_readers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 1);
}

/// A cached statement is parsed and planned once, not on every execution: without the
/// query planner stability guarantee this SQLite build planned a statement again each
/// time a value was bound to a parameter of its WHERE clause.
#[test]
fn cached_statements_are_not_planned_again_per_execution() {
    use rusqlite::StatementStatus;
    let (_d, mut store) = new_store();
    let (a, b) = two_docs(&mut store);
    for i in 0..4u8 {
        let id = if i % 2 == 0 { a.id } else { b.id };
        store
            .write(|w| w.append_change(&id, &change(i + 1, 10)))
            .unwrap();
        assert!(store.last_change(&id).unwrap() > 0);
        store.changes(&id).unwrap();
    }
    for sql in [
        "SELECT coalesce(max(rowid), 0) FROM changes WHERE doc_id = ?1",
        "SELECT rowid, hash, actor, seq, bytes, stored_ms, envelope FROM changes
             WHERE doc_id = ?1 AND rowid > ?2 ORDER BY rowid",
    ] {
        let st = store.conn.prepare_cached(sql).unwrap();
        assert_eq!(st.get_status(StatementStatus::RePrepare), 0, "{sql}");
    }
}

#[test]
fn the_digest_index_follows_every_op_and_change_of_a_dossier() {
    use regiosync_core::sync::summary::doc_digest;
    let (_d, mut store) = new_store();
    let (a, b) = (DocId::from_bytes([1; 16]), DocId::from_bytes([2; 16]));
    let dossier_row = |id: DocId| DocumentRow {
        id,
        kind: "dossier".into(),
        subkind: String::new(),
        title: String::new(),
        created_ms: 1,
    };
    store
        .write(|tx| {
            tx.put_dossier_op(&a, &[1; 32], b"open a", 1)?;
            tx.put_dossier_op(&b, &[3; 32], b"open b", 1)?;
            tx.insert_document(&dossier_row(a))?;
            tx.append_change(&a, &change(9, 10))
        })
        .unwrap();
    let rows = |s: &Store| -> i64 {
        s.conn
            .query_row("SELECT count(*) FROM dossier_digests", [], |r| r.get(0))
            .unwrap()
    };
    let not_held = DocId::from_bytes([3; 16]);
    let expect_a = |hashes: &[[u8; 32]]| doc_digest(&a, hashes);
    // Computed from the items (a dossier not held has none), and recorded.
    let got = store.dossier_digests(&[a, b, not_held], 100).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[&a], expect_a(&[[1; 32], [9; 32]]));
    assert_eq!(got[&b], doc_digest(&b, &[[3; 32]]));
    assert_eq!(rows(&store), 2);
    // The scan of all items gives the same digests.
    store
        .conn
        .execute("DELETE FROM dossier_digests", [])
        .unwrap();
    assert_eq!(store.dossier_digests(&[a, b], 0).unwrap(), got);
    assert_eq!(rows(&store), 2);
    // A recorded digest is what is read: rewrite a's row and see it come back.
    store
        .conn
        .execute(
            "UPDATE dossier_digests SET digest = ?1 WHERE dossier = ?2",
            rusqlite::params![&[7u8; 8][..], &a.as_bytes()[..]],
        )
        .unwrap();
    assert_eq!(store.dossier_digests(&[a], 100).unwrap()[&a], [7; 8]);
    // A new op, a new change, and a deleted change of `a` each make its row go;
    // b's stays.
    store
        .write(|tx| tx.put_dossier_op(&a, &[2; 32], b"grant a", 1))
        .unwrap();
    assert_eq!(rows(&store), 1);
    assert_eq!(
        store.dossier_digests(&[a], 100).unwrap()[&a],
        expect_a(&[[1; 32], [2; 32], [9; 32]])
    );
    store
        .write(|tx| tx.append_change(&a, &change(10, 10)))
        .unwrap();
    assert_eq!(rows(&store), 1);
    assert_eq!(
        store.dossier_digests(&[a], 100).unwrap()[&a],
        expect_a(&[[1; 32], [2; 32], [9; 32], [10; 32]])
    );
    store.dossier_digests(&[a], 100).unwrap();
    assert_eq!(rows(&store), 2);
    store
        .write(|tx| tx.drop_sealed_changes(&a, &[[10; 32]]))
        .unwrap();
    assert_eq!(rows(&store), 1);
    assert_eq!(
        store.dossier_digests(&[a], 100).unwrap()[&a],
        expect_a(&[[1; 32], [2; 32], [9; 32]])
    );
    // Erasure deletes the log and the changes, and with them the row.
    store.dossier_digests(&[a], 100).unwrap();
    assert_eq!(rows(&store), 2);
    store
        .write(|tx| tx.purge_dossier(&erased_by_roc(a)))
        .unwrap();
    assert_eq!(rows(&store), 1);
    assert!(!store.dossier_digests(&[a], 100).unwrap().contains_key(&a));
}

/// What keeps the digest index from recording a digest of items that changed while
/// they were read (`dossiers::dossier_digests`): a deferred transaction that read
/// before another connection committed cannot write afterwards.
#[test]
fn a_read_that_another_process_overtook_cannot_write() {
    let (d, store) = new_store();
    let mut other = Store::open(&d.path().join("store.sqlite")).unwrap();
    let a = DocId::from_bytes([1; 16]);
    let tx = store.conn.unchecked_transaction().unwrap();
    let _: i64 = tx
        .query_row("SELECT count(*) FROM dossier_ops", [], |r| r.get(0))
        .unwrap();
    other
        .write(|w| w.put_dossier_op(&a, &[1; 32], b"open a", 1))
        .unwrap();
    let write = tx.execute(
        "INSERT INTO dossier_digests (dossier, digest) VALUES (?1, ?2)",
        rusqlite::params![&a.as_bytes()[..], &[7u8; 8][..]],
    );
    assert!(write.is_err(), "{write:?}");
}
