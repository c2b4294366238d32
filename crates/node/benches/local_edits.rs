//! Local edit throughput: one durable plan edit (one Automerge change, fsynced
//! commit) per iteration, on a plan that grows as it is edited: through a node handle
//! that keeps the plan in memory between edits (the running node, the web app), and
//! through a handle opened afresh for each edit (a CLI command), which rebuilds the
//! plan from the store.
//! Run: `cargo bench -p regiosync-node --bench local_edits`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use regiosync_core::id::{PartyName, Role};
use regiosync_core::plan::{AgreementInput, PlanKind};
use regiosync_node::Node;

fn node() -> (tempfile::TempDir, Node, regiosync_core::id::DocId) {
    let dir = tempfile::tempdir().expect("tempdir");
    Node::init(
        dir.path(),
        PartyName::new("roc-midden").expect("party"),
        Role::Roc,
        None,
    )
    .expect("init");
    let mut node = Node::open(dir.path()).expect("open");
    node.create_region("Regio").expect("region");
    let id = node
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan 2027")
        .expect("plan");
    (dir, node, id)
}

fn edits(c: &mut Criterion) {
    let mut g = c.benchmark_group("local_edit");
    g.throughput(Throughput::Elements(1));
    g.sample_size(50);

    // Baseline: one fsynced store transaction appending a change row of the same size,
    // without Automerge. The edit benches report against this floor.
    let (_d0, mut n0, id0) = node();
    let mut k = 0u64;
    g.bench_function("baseline_fsync_commit", |b| {
        b.iter(|| {
            k += 1;
            let row = regiosync_store::ChangeRow {
                hash: {
                    let mut h = [0u8; 32];
                    h[..8].copy_from_slice(&k.to_le_bytes());
                    h
                },
                actor: vec![0; 32],
                seq: k,
                bytes: vec![0; 120],
                stored_ms: 0,
                envelope: None,
            };
            n0.store_mut_for_bench()
                .write(|tx| tx.append_change(&id0, &row))
                .expect("write")
        })
    });

    let (_d, mut n, id) = node();
    let mut i = 0u64;
    g.bench_function("section_set", |b| {
        b.iter(|| {
            i += 1;
            n.set_section(&id, "Inleiding", &format!("Versie {i} van de inleiding.\n"))
                .expect("edit")
        })
    });

    // The CLI path: a handle opened for the edit (store open, plan rebuilt from the
    // latest snapshot and the changes after it), on the same plan as `section_set`.
    g.bench_function("section_set_fresh_handle", |b| {
        b.iter(|| {
            i += 1;
            Node::open(n.dir())
                .expect("open")
                .set_section(&id, "Inleiding", &format!("Versie {i} van de inleiding.\n"))
                .expect("edit")
        })
    });

    let (_d2, mut n2, id2) = node();
    let owner = PartyName::new("gemeente-zeist").expect("party");
    g.bench_function("agreement_add", |b| {
        b.iter_batched(
            || AgreementInput {
                title: "Warme overdracht".into(),
                owner: owner.clone(),
                deadline: None,
            },
            |input| n2.add_agreement(&id2, &input).expect("edit"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, edits);
criterion_main!(benches);
