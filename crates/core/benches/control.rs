//! Control-plane costs: folding a 10,000-op region log, and verifying 100,000 signed
//! changes, each next to a baseline measured in the same run (bare Ed25519 signature
//! verification of the same number of messages: the floor any signed design pays).
//! Run: `cargo bench -p regiosync-core --bench control`.

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signer, Verifier};
use regiosync_core::control::{Op, OpBody, OpHash, RegionId, SignedOp, fold};
use regiosync_core::envelope::{ChangeEnvelope, ChangeMeta, SignedFields, verify_change};
use regiosync_core::id::{DocId, PartyName, Role};
use regiosync_core::identity::NodeSecret;
use regiosync_core::plan::PlanKind;

const OPS: usize = 10_000;
const CHANGES: usize = 100_000;

/// A region log of `OPS` ops by four admin devices that work concurrently and merge
/// every 50 ops: parties, devices, documents and ACL changes.
fn region_log() -> (RegionId, Vec<SignedOp>) {
    let admins: Vec<NodeSecret> = (0..4)
        .map(|_| NodeSecret::generate().expect("key"))
        .collect();
    let p = |s: String| PartyName::new(&s).expect("party");
    let sign = |by: &NodeSecret, region: Option<RegionId>, parents: Vec<OpHash>, body: OpBody| {
        let mut parents = parents;
        parents.sort();
        parents.dedup();
        SignedOp::sign(
            Op {
                region,
                parents,
                author: by.node_id(),
                time: 0,
                body,
            },
            by.signing_key(),
        )
        .expect("sign")
    };
    let g = sign(
        &admins[0],
        None,
        vec![],
        OpBody::CreateRegion {
            name: "Bench".into(),
            party: p("p-0".into()),
            role: Role::Kerngemeente,
            age_recipient: admins[0].age_recipient().to_string(),
        },
    );
    let region = RegionId(g.hash());
    let mut ops = vec![g.clone()];
    let mut chain = vec![g.hash()];
    // Admin devices all belong to the founding party.
    for a in &admins[1..] {
        let op = sign(
            &admins[0],
            Some(region),
            chain.clone(),
            OpBody::AddDevice {
                party: p("p-0".into()),
                device: a.node_id(),
                age_recipient: a.age_recipient().to_string(),
            },
        );
        chain = vec![op.hash()];
        ops.push(op);
    }
    let mut heads = vec![chain.clone(); 4];
    let mut i = 0;
    while ops.len() < OPS {
        let a = i % 4;
        let body = match i % 10 {
            0 => OpBody::AddParty {
                party: p(format!("p-{}", i + 1)),
                role: Role::Gemeente,
            },
            1 | 2 => {
                let d = NodeSecret::generate().expect("key");
                OpBody::AddDevice {
                    party: p("p-0".into()),
                    device: d.node_id(),
                    age_recipient: d.age_recipient().to_string(),
                }
            }
            _ => {
                let doc = DocId::random().expect("id");
                OpBody::CreateDoc {
                    doc,
                    kind: PlanKind::Jeugdplan,
                    owner: p("p-0".into()),
                    readers: vec![],
                    writers: vec![],
                }
            }
        };
        let op = sign(&admins[a], Some(region), heads[a].clone(), body);
        heads[a] = vec![op.hash()];
        ops.push(op);
        i += 1;
        if i % 50 == 0 {
            let all: Vec<OpHash> = heads.iter().flatten().copied().collect();
            heads = vec![all; 4];
        }
    }
    (region, ops)
}

fn bench_fold(c: &mut Criterion) {
    let (region, ops) = region_log();
    let wire: Vec<Vec<u8>> = ops.iter().map(SignedOp::encode).collect();
    let folded = fold(region, &ops).expect("fold");
    assert!(
        folded.rejected.is_empty(),
        "bench log must be valid: {:?}",
        folded.rejected.values().next()
    );
    let mut g = c.benchmark_group("control_10k_ops");
    g.sample_size(10);
    g.bench_function("baseline_decode_and_verify_signatures", |b| {
        b.iter(|| wire.iter().filter(|w| SignedOp::decode(w).is_ok()).count())
    });
    g.bench_function("fold", |b| b.iter(|| fold(region, &ops).expect("fold")));
    // What a node does on every command: decode its stored log (no signature
    // checks: they were checked on entry) and fold it.
    g.bench_function("decode_stored_and_fold", |b| {
        b.iter(|| {
            let decoded: Vec<SignedOp> = wire
                .iter()
                .map(|w| SignedOp::decode_stored(w).expect("decode"))
                .collect();
            fold(region, &decoded).expect("fold")
        })
    });
    g.finish();
}

fn bench_verify(c: &mut Criterion) {
    // A small region where one writer device signs CHANGES changes of one plan.
    let writer = NodeSecret::generate().expect("key");
    let founder = NodeSecret::generate().expect("key");
    let g = SignedOp::sign(
        Op {
            region: None,
            parents: vec![],
            author: founder.node_id(),
            time: 0,
            body: OpBody::CreateRegion {
                name: "V".into(),
                party: PartyName::new("roc-a").expect("p"),
                role: Role::Roc,
                age_recipient: founder.age_recipient().to_string(),
            },
        },
        founder.signing_key(),
    )
    .expect("sign");
    let region = RegionId(g.hash());
    let add = SignedOp::sign(
        Op {
            region: Some(region),
            parents: vec![g.hash()],
            author: founder.node_id(),
            time: 0,
            body: OpBody::AddDevice {
                party: PartyName::new("roc-a").expect("p"),
                device: writer.node_id(),
                age_recipient: writer.age_recipient().to_string(),
            },
        },
        founder.signing_key(),
    )
    .expect("sign");
    let doc = DocId::random().expect("id");
    let create = SignedOp::sign(
        Op {
            region: Some(region),
            parents: vec![add.hash()],
            author: founder.node_id(),
            time: 0,
            body: OpBody::CreateDoc {
                doc,
                kind: PlanKind::Jeugdplan,
                owner: PartyName::new("roc-a").expect("p"),
                readers: vec![],
                writers: vec![],
            },
        },
        founder.signing_key(),
    )
    .expect("sign");
    let state = fold(region, [&g, &add, &create]).expect("fold").state;
    let heads = state.heads.clone();
    let actor = writer.node_id();
    let mut items = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES as u64 {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&i.to_le_bytes());
        let env = ChangeEnvelope::sign(
            SignedFields {
                region,
                doc,
                change_hash: hash,
                author: actor,
                control_heads: heads.clone(),
            },
            writer.signing_key(),
        )
        .expect("sign");
        items.push((env.encode(), hash, i + 1));
    }
    let raw_msgs: Vec<([u8; 32], ed25519_dalek::Signature)> = items
        .iter()
        .map(|(_, h, _)| (*h, writer.signing_key().sign(h)))
        .collect();
    let vk = writer.signing_key().verifying_key();

    let mut g = c.benchmark_group("verify_100k_changes");
    g.sample_size(10);
    g.bench_function("baseline_ed25519_verify", |b| {
        b.iter(|| {
            raw_msgs
                .iter()
                .filter(|(m, s)| vk.verify(m, s).is_ok())
                .count()
        })
    });
    g.bench_function("decode_and_verify_change", |b| {
        b.iter(|| {
            items
                .iter()
                .filter(|(wire, hash, seq)| {
                    let env = ChangeEnvelope::decode(wire).expect("decode");
                    verify_change(
                        &env,
                        &doc,
                        ChangeMeta {
                            hash: *hash,
                            actor: actor.as_bytes(),
                            seq: *seq,
                        },
                        &state,
                        |h| heads.contains(h),
                    )
                    .is_ok()
                })
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_fold, bench_verify);
criterion_main!(benches);
