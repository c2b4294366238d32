//! Opening a store that holds 1,000 documents of 20 changes each (header, pragmas and
//! application id checks), listing them, and SQLite's `quick_check` of every page
//! (which the running node makes in the background).
//! Run: `cargo bench -p regiosync-store --bench open_store`.

use automerge::{Automerge, ROOT, transaction::Transactable};
use criterion::{Criterion, criterion_group, criterion_main};
use regiosync_core::id::DocId;
use regiosync_store::StoreRead;
use regiosync_store::{ChangeRow, DocumentRow, Store};

const DOCS: usize = 1_000;
const CHANGES: usize = 20;

fn fill(path: &std::path::Path) {
    let mut store = Store::create(path).expect("create");
    for d in 0..DOCS {
        let id = DocId::random().expect("id");
        let mut doc = Automerge::new();
        let mut rows = Vec::new();
        for c in 0..CHANGES {
            let mut tx = doc.transaction();
            tx.put(
                ROOT,
                format!("field{c}"),
                format!("waarde {d}-{c} met wat tekst erbij"),
            )
            .expect("put");
            tx.commit();
            let ch = doc.get_last_local_change().expect("change");
            rows.push(ChangeRow {
                hash: ch.hash().0,
                actor: ch.actor_id().to_bytes().to_vec(),
                seq: ch.seq(),
                bytes: ch.raw_bytes().to_vec(),
                stored_ms: 0,
                envelope: None,
            });
        }
        store
            .write(|tx| {
                tx.insert_document(&DocumentRow {
                    id,
                    kind: "plan".into(),
                    subkind: "jeugdplan".into(),
                    title: format!("Plan {d}"),
                    created_ms: d as i64,
                })?;
                for r in &rows {
                    tx.append_change(&id, r)?;
                }
                Ok::<_, regiosync_store::StoreError>(())
            })
            .expect("write");
    }
}

fn open(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.sqlite");
    fill(&path);
    let empty_dir = tempfile::tempdir().expect("tempdir");
    let empty = empty_dir.path().join("empty.sqlite");
    drop(Store::create(&empty).expect("create"));
    let mut g = c.benchmark_group("open_store");
    g.bench_function("baseline_open_empty", |b| {
        b.iter(|| Store::open(&empty).expect("open"))
    });
    g.bench_function("open_1000_docs", |b| {
        b.iter(|| Store::open(&path).expect("open"))
    });
    g.bench_function("open_and_list_1000_docs", |b| {
        b.iter(|| {
            let s = Store::open(&path).expect("open");
            assert_eq!(s.documents().expect("list").len(), DOCS);
        })
    });
    g.bench_function("quick_check_1000_docs", |b| {
        b.iter(|| regiosync_store::quick_check_file(&path).expect("intact"))
    });
    let ids: Vec<DocId> = Store::open(&path)
        .expect("open")
        .documents()
        .expect("list")
        .iter()
        .map(|r| r.id)
        .collect();
    let s = Store::open(&path).expect("open");
    let mut i = 0;
    g.bench_function("load_one_doc_of_1000", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            s.load(&ids[i]).expect("load")
        })
    });
    g.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
