//! Replays a long real-world editing trace into a plan section and into a bare
//! Automerge text, and reports time and memory of both, as ratios.
//!
//! ```text
//! cargo bench -p regiosync-core --bench editing_trace [-- PATH] [--quick]
//! ```
//!
//! The trace is `automerge-paper.json.gz` (259,778 single-character edits typing the
//! LaTeX source of the Automerge paper; see `../shared/data/README.md`). Edits are
//! committed in changes of [`EDITS_PER_CHANGE`], as an editor commits on a typing
//! pause. The regiosync side writes into a section of a plan document (schema 2: the
//! text follows a paragraph block marker) and signs an envelope for every change, as
//! a node does before storing it; the baseline is one Automerge text object with the
//! same changes, unsigned. Both results must equal the trace's `endContent`.
//!
//! Memory: each replay runs in a child process of this bench (the same binary, told
//! what to do by an environment variable), which reports its peak resident set
//! (`VmHWM`); a child that only loads the trace shows how much of that peak is the
//! trace itself (its JSON dominates: the replay stays below it). A hand-written harness (not criterion) because one replay takes seconds.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // a bench prints and may panic

use std::io::Read;
use std::time::Instant;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Automerge, ObjType, ROOT, ReadDoc};
use regiosync_core::control::OpHash;
use regiosync_core::control::RegionId;
use regiosync_core::envelope::{ChangeEnvelope, SignedFields};
use regiosync_core::id::{DocId, PartyName};
use regiosync_core::identity::NodeSecret;
use regiosync_core::plan::{self, PlanKind};

/// Edits per Automerge change.
const EDITS_PER_CHANGE: usize = 100;

/// A value from `/proc/self/status` in kB (Linux), 0 elsewhere.
fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The environment variable that makes this binary a child running one phase.
const PHASE: &str = "REGIOSYNC_TRACE_PHASE";

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Trace {
    start_content: String,
    end_content: String,
    txns: Vec<Txn>,
}

#[derive(serde::Deserialize)]
struct Txn {
    patches: Vec<(usize, usize, String)>,
}

fn load(path: &str) -> Trace {
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        panic!("cannot open the trace {path}: {e} (pass its path as the first argument)")
    });
    let mut json = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut json)
        .unwrap_or_else(|e| panic!("cannot decompress {path}: {e}"));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{path} is not an editing trace: {e}"))
}

struct Measured {
    ms: f64,
    peak_mb: f64,
    saved_bytes: usize,
    envelope_bytes: usize,
    changes: usize,
}

/// Replays the trace into `text` of `doc`, at `offset` (the block marker before it).
fn replay(
    doc: &mut Automerge,
    text: &automerge::ObjId,
    offset: usize,
    trace: &Trace,
    mut after_commit: impl FnMut(&Automerge),
) -> usize {
    let mut changes = 0;
    for chunk in trace.txns.chunks(EDITS_PER_CHANGE) {
        let mut tx = doc.transaction();
        for t in chunk {
            for (pos, del, ins) in &t.patches {
                tx.splice_text(text, offset + pos, *del as isize, ins)
                    .expect("splice");
            }
        }
        tx.commit_with(CommitOptions::default().with_time(0));
        changes += 1;
        after_commit(doc);
    }
    changes
}

fn measure(f: impl FnOnce() -> (usize, usize, usize)) -> Measured {
    let t = Instant::now();
    let (saved_bytes, envelope_bytes, changes) = f();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    Measured {
        ms,
        peak_mb: 0.0,
        saved_bytes,
        envelope_bytes,
        changes,
    }
}

fn baseline(trace: &Trace) -> Measured {
    measure(|| {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let text = tx.put_object(ROOT, "text", ObjType::Text).expect("text");
        tx.splice_text(&text, 0, 0, &trace.start_content)
            .expect("start");
        tx.commit();
        let changes = replay(&mut doc, &text, 0, trace, |_| {});
        assert_eq!(
            doc.text(&text).expect("text"),
            trace.end_content,
            "the baseline replay is wrong"
        );
        (doc.save().len(), 0, changes)
    })
}

fn regiosync(trace: &Trace, secret: &NodeSecret) -> Measured {
    measure(|| {
        let owner = PartyName::new("gemeente-utrecht").expect("party");
        let mut doc = Automerge::new();
        doc.set_actor(secret.node_id().actor_id());
        let mut tx = doc.transaction();
        plan::init_plan(&mut tx, PlanKind::Jeugdplan, "Jeugdplan 2027", &owner).expect("init");
        // An empty paragraph, then the trace's start content after its block marker.
        plan::set_section(&mut tx, "Inleiding", "x").expect("section");
        tx.commit();
        let p = plan::read_plan(&doc).expect("plan");
        let sid = p.sections[0].id.clone();
        let sections = match doc.get(ROOT, "sections").expect("get") {
            Some((_, id)) => id,
            None => panic!("no sections"),
        };
        let section = doc.get(&sections, 0).expect("get").expect("section").1;
        let text = doc.get(&section, "text").expect("get").expect("text").1;
        let mut tx = doc.transaction();
        tx.splice_text(&text, 1, 1, &trace.start_content)
            .expect("start");
        tx.commit();
        let region = RegionId(OpHash([7; 32]));
        let docid = DocId::random().expect("id");
        let heads = vec![OpHash([9; 32])];
        let mut envelopes = 0usize;
        let changes = replay(&mut doc, &text, 1, trace, |d| {
            let c = d.get_last_local_change().expect("change");
            let env = ChangeEnvelope::sign(
                SignedFields {
                    region,
                    doc: docid,
                    change_hash: c.hash().0,
                    author: secret.node_id(),
                    control_heads: heads.clone(),
                },
                secret.signing_key(),
            )
            .expect("sign");
            envelopes += env.encode().len();
        });
        let plan = plan::read_plan(&doc).expect("plan");
        let s = plan.section(&sid).expect("section");
        let plain: String = s.blocks.iter().map(|b| b.plain()).collect();
        assert_eq!(plain, trace.end_content, "the plan replay is wrong");
        (doc.save().len(), envelopes, changes)
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load_for_run(args: &[String]) -> (Trace, usize) {
    let quick = args.iter().any(|a| a == "--quick");
    let path = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "../../../shared/data/automerge-paper.json.gz".into());
    let mut trace = load(&path);
    let edits: usize = trace.txns.iter().map(|t| t.patches.len()).sum();
    if quick {
        trace.txns.truncate(20_000);
        // The end content is no longer known: replay the prefix once to get it.
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let text = tx.put_object(ROOT, "text", ObjType::Text).expect("text");
        tx.splice_text(&text, 0, 0, &trace.start_content)
            .expect("start");
        tx.commit();
        replay(&mut doc, &text, 0, &trace, |_| {});
        trace.end_content = doc.text(&text).expect("text");
    }
    (trace, edits)
}

/// Runs one phase in a child process and reads its report.
fn child(phase: &str, args: &[String]) -> Measured {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .args(args)
        .env(PHASE, phase)
        .output()
        .expect("child runs");
    assert!(
        out.status.success(),
        "{phase}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect();
    Measured {
        ms: v[0],
        peak_mb: v[1],
        saved_bytes: v[2] as usize,
        envelope_bytes: v[3] as usize,
        changes: v[4] as usize,
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let Ok(phase) = std::env::var(PHASE) {
        let (trace, _) = load_for_run(&args);
        let m = match phase.as_str() {
            "baseline" => baseline(&trace),
            "regiosync" => regiosync(&trace, &NodeSecret::generate().expect("key")),
            _ => measure(|| (0, 0, 0)),
        };
        let peak_mb = status_kb("VmHWM:") as f64 / 1024.0;
        println!(
            "{} {peak_mb} {} {} {}",
            m.ms, m.saved_bytes, m.envelope_bytes, m.changes
        );
        return;
    }
    let (trace, edits) = load_for_run(&args);
    let runs = if args.iter().any(|a| a == "--quick") {
        1
    } else {
        3
    };
    println!(
        "editing trace: {} edits ({} replayed), end content {} chars, {EDITS_PER_CHANGE} edits per change, {runs} runs",
        edits,
        trace.txns.iter().map(|t| t.patches.len()).sum::<usize>(),
        trace.end_content.chars().count()
    );
    drop(trace);
    let load_mb = median((0..runs).map(|_| child("load", &args).peak_mb).collect());
    let mut b = Vec::new();
    let mut r = Vec::new();
    for _ in 0..runs {
        b.push(child("baseline", &args));
        r.push(child("regiosync", &args));
    }
    let ms = |v: &[Measured]| median(v.iter().map(|m| m.ms).collect());
    let mb = |v: &[Measured]| median(v.iter().map(|m| m.peak_mb).collect());
    println!("| | raw Automerge text | regiosync plan section (signed) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| replay time (median) | {:.0} ms | {:.0} ms | {:.2}x |",
        ms(&b),
        ms(&r),
        ms(&r) / ms(&b)
    );
    println!(
        "| peak RSS of the process (trace loading included) | {:.1} MB | {:.1} MB | {:.2}x |",
        mb(&b),
        mb(&r),
        mb(&r) / mb(&b)
    );
    println!(
        "| saved document | {} B | {} B | {:.2}x |",
        b[0].saved_bytes,
        r[0].saved_bytes,
        r[0].saved_bytes as f64 / b[0].saved_bytes as f64
    );
    println!(
        "| change envelopes (signatures) | – | {} B ({:.0} B per change) | |",
        r[0].envelope_bytes,
        r[0].envelope_bytes as f64 / r[0].changes.max(1) as f64
    );
    println!("| changes | {} | {} | |", b[0].changes, r[0].changes);
    println!("(peak RSS of loading the trace alone: {load_mb:.1} MB)");
}
