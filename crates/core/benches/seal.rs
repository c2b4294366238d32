//! Sealing costs per change, next to a baseline measured in the same run: SHA-256 of
//! the same bytes (every node hashes every change anyway). Also age key wrapping,
//! which happens once per device and epoch, not per change.
//! Run: `cargo bench -p regiosync-core --bench seal`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use regiosync_core::id::DocId;
use regiosync_core::identity::NodeSecret;
use regiosync_core::seal::{ContentKey, KeyRing, seal_change, unwrap_key, wrap_key};
use sha2::{Digest, Sha256};

fn per_change(c: &mut Criterion) {
    let dossier = DocId::random().expect("random");
    let key = ContentKey::generate().expect("random");
    let mut ring = KeyRing::new(dossier);
    ring.insert(0, key.clone());
    // A small dossier change (a contact-log line) and a large one (a pasted report).
    for size in [200usize, 16 * 1024] {
        let plain = vec![0x61u8; size];
        let sealed = seal_change(&key, &dossier, 0, &[9; 32], &plain).expect("seal");
        let mut g = c.benchmark_group(format!("change-{size}B"));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("baseline-sha256", |b| {
            b.iter(|| Sha256::digest(std::hint::black_box(&plain)))
        });
        g.bench_function("seal", |b| {
            b.iter(|| seal_change(&key, &dossier, 0, &[9; 32], std::hint::black_box(&plain)))
        });
        g.bench_function("unseal", |b| {
            b.iter(|| ring.unseal(&[9; 32], std::hint::black_box(&sealed)))
        });
        g.finish();
    }
}

fn wrapping(c: &mut Criterion) {
    let dossier = DocId::random().expect("random");
    let key = ContentKey::generate().expect("random");
    let device = NodeSecret::generate().expect("key");
    let wrapped = wrap_key(&key, &dossier, 0, &device.age_recipient()).expect("wrap");
    let mut g = c.benchmark_group("key-per-device");
    g.bench_function("wrap", |b| {
        b.iter(|| wrap_key(&key, &dossier, 0, &device.age_recipient()))
    });
    g.bench_function("unwrap", |b| {
        b.iter(|| unwrap_key(&wrapped, &dossier, 0, device.age_identity()))
    });
    g.finish();
}

criterion_group!(benches, per_change, wrapping);
criterion_main!(benches);
