//! The workloads of issue 7 and how each system runs them:
//!
//! - `catchup-1k`, `catchup-10k`: a fresh device catches up N dossier-sized documents
//!   (~20 changes each). regiosync: sealed dossiers, a new device of the owning party
//!   syncing from the owner's node; samod and Automerge: the same dossiers' plaintext
//!   changes (identical Automerge changes, so identical end states).
//! - `catchup-large`: one plan of 1,000 transactions of 100 text insertions each.
//! - `reconnect-idle-*`, `reconnect-10pct-*`: the caught-up device reconnects when
//!   nothing changed, and after one change in every tenth document.
//! - `catchup-1k-sealed` (the regiosync run of `catchup-1k`) and `catchup-1k-plain`:
//!   the same changes as unsealed (signed) documents of a copy of the same node.
//! - `propagation-5-tcp`, `propagation-5-quic`: edit-to-visible in a five-node region,
//!   an edit made through the running node's own handle and one through a separate
//!   handle (as a CLI command makes it).
//! - `node-*-dossiers`: start-up time and peak RSS of the source node, run as a
//!   separate process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use automerge::transaction::Transactable;
use automerge::{Automerge, Change, ChangeHash, ObjType, ROOT, ReadDoc, Value};
use indicatif::{ProgressBar, ProgressStyle};
use regiosync_core::dossier as schema;
use regiosync_core::id::{DocId, PartyName};
use regiosync_core::plan::{self, AgreementInput, PlanError, PlanKind};
use regiosync_node::{Node, SessionMemory};

use crate::automerge_side::{self, Pair};
use crate::data;
use crate::regiosync_side::{self as ours, Answering, EditPath, Source};
use crate::report::{Report, median, percentile};
use crate::samod_side::{self, Peer};
use crate::web_side::{self, WebSizes};

/// The sizes of one run.
#[derive(Clone, Debug)]
pub(crate) struct Sizes {
    /// Name of the run's size ("smoke", "quick", "full").
    pub(crate) name: &'static str,
    /// Small-document sets: workload label ("1k") and document count.
    pub(crate) small: Vec<(&'static str, usize)>,
    /// Changes per small document.
    pub(crate) changes: usize,
    /// Transactions of the large plan.
    pub(crate) large_tx: usize,
    /// Text insertions (ops) per transaction of the large plan.
    pub(crate) large_ops: usize,
    /// Edits per propagation workload.
    pub(crate) edits: usize,
    /// Repetitions of each catch-up.
    pub(crate) reps: usize,
    /// Whether samod runs the small-document workloads too (off: regiosync and
    /// Automerge only, for a quicker look at one side).
    pub(crate) samod: bool,
    /// The web workloads (issue 17).
    pub(crate) web: WebSizes,
    /// Start-up of a large node (`startup-*-dossiers`): workload label and dossier
    /// count.
    pub(crate) startup: Vec<(&'static str, usize)>,
}

impl Sizes {
    /// Tiny: the test suite's check of the runner.
    pub(crate) fn smoke() -> Self {
        Self {
            name: "smoke",
            small: vec![("1k", 12), ("10k", 24)],
            changes: 4,
            large_tx: 10,
            large_ops: 10,
            edits: 5,
            reps: 1,
            samod: true,
            web: WebSizes {
                edits: 3,
                agreements: 5,
                dossiers: 20,
                requests: 3,
            },
            startup: vec![("100k", 40)],
        }
    }
    /// Under two minutes on two cores: the 1,000-document workloads, fewer edits.
    pub(crate) fn quick() -> Self {
        Self {
            name: "quick",
            small: vec![("1k", 1_000)],
            changes: 20,
            large_tx: 1_000,
            large_ops: 100,
            edits: 100,
            reps: 3,
            samod: true,
            web: WebSizes::issue_17(),
            startup: vec![],
        }
    }
    /// Everything at the sizes of issue 7.
    pub(crate) fn full() -> Self {
        Self {
            name: "full",
            small: vec![("1k", 1_000), ("10k", 10_000)],
            changes: 20,
            large_tx: 1_000,
            large_ops: 100,
            edits: 1_000,
            reps: 3,
            samod: true,
            web: WebSizes::issue_17(),
            startup: vec![("100k", 100_000)],
        }
    }
}

/// The run's header: date, machine, sizes.
pub(crate) fn header(sizes: &Sizes, seed: u64) -> String {
    let date = time::OffsetDateTime::now_utc().date();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!(
        "# regiosync sync benchmark ({} run, {date})\n\nmachine: {cpu}, {cores} cores, {mem_gb:.0} GB; seed {seed}; \
         medians of {} repetitions; small documents: {} changes each; large plan: {} transactions x {} ops; \
         propagation: {} edits\n",
        sizes.name, sizes.reps, sizes.changes, sizes.large_tx, sizes.large_ops, sizes.edits
    )
}

fn bar(len: usize, msg: String) -> ProgressBar {
    let b = ProgressBar::new(len as u64).with_message(msg);
    if let Ok(style) = ProgressStyle::with_template("{msg:32} [{bar:30}] {pos}/{len} {elapsed}") {
        b.set_style(style.progress_chars("=> "));
    }
    b
}

fn wanted(only: Option<&str>, names: &[&str]) -> bool {
    only.is_none_or(|o| names.iter().any(|n| n.contains(o)))
}

/// Runs every workload (or those `only` names) and returns the results.
pub(crate) async fn run_all(
    sizes: &Sizes,
    seed: u64,
    only: Option<&str>,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let tmp = tempfile::Builder::new()
        .prefix("regiosync-bench")
        .tempdir()?;
    for (label, n) in &sizes.small {
        let names = [
            format!("catchup-{label}"),
            format!("reconnect-idle-{label}"),
            format!("reconnect-10pct-{label}"),
            format!("catchup-{label}-sealed"),
            format!("catchup-{label}-plain"),
            format!("node-{label}-dossiers"),
        ];
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        if wanted(only, &names) {
            small_docs(
                &tmp.path().join(format!("docs-{label}")),
                label,
                *n,
                sizes,
                seed,
                &mut report,
            )
            .await
            .with_context(|| format!("workloads of {label} documents"))?;
        }
    }
    for (label, n) in &sizes.startup {
        let w = format!("startup-{label}-dossiers");
        if wanted(only, &[&w]) {
            startup(&tmp.path().join(&w), &w, *n, sizes, seed, &mut report)
                .await
                .with_context(|| format!("workload {w}"))?;
        }
    }
    if wanted(only, &["catchup-large"]) {
        large_plan(&tmp.path().join("large"), sizes, seed, &mut report)
            .await
            .context("workload catchup-large")?;
    }
    for transport in ["tcp", "quic"] {
        let w = format!("propagation-5-{transport}");
        if wanted(only, &[&w]) {
            propagation(&tmp.path().join(&w), transport, sizes, &mut report)
                .await
                .with_context(|| format!("workload {w}"))?;
        }
    }
    if wanted(only, &WEB_WORKLOADS) {
        web(&tmp.path().join("web"), sizes, &mut report)
            .await
            .context("the web workloads")?;
    }
    Ok(report)
}

/// The web workloads' names (`--only web` runs them all).
const WEB_WORKLOADS: [&str; 3] = ["web-live", "web-plan-page", "web-dossier-list"];

/// The web workloads (issue 17): a section saved through party A's web app until
/// party B's open live stream says so; the plan page with many agreements and the
/// dossier list with many dossiers. See `web_side`.
async fn web(root: &Path, sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let s = sizes.web;
    let steps = s.edits + 3 + s.dossiers.div_ceil(100);
    let b = bar(steps, "web: regiosync".into());
    let r = web_side::run(root, s, |_| b.inc(1)).await?;
    b.finish_and_clear();
    let [live, plan, list] = WEB_WORKLOADS;
    report.add(live, "regiosync", "p50_ms", percentile(&r.live, 0.5));
    report.add(live, "regiosync", "p99_ms", percentile(&r.live, 0.99));
    report.add(live, "regiosync", "max_ms", percentile(&r.live, 1.0));
    report.add(live, "regiosync", "events", r.live.len() as f64);
    report.add(plan, "regiosync", "agreements", s.agreements as f64);
    report.add(plan, "regiosync", "median_ms", median(&r.plan_page));
    report.add(plan, "regiosync", "p99_ms", percentile(&r.plan_page, 0.99));
    report.add(plan, "regiosync", "requests", r.plan_page.len() as f64);
    report.add(plan, "regiosync", "page_kb", r.plan_page_kb);
    report.add(
        plan,
        "regiosync",
        "node_plan_median_ms",
        median(&r.plan_read),
    );
    report.add(list, "regiosync", "dossiers", s.dossiers as f64);
    report.add(list, "regiosync", "median_ms", median(&r.dossier_list));
    report.add(
        list,
        "regiosync",
        "p99_ms",
        percentile(&r.dossier_list, 0.99),
    );
    report.add(list, "regiosync", "requests", r.dossier_list.len() as f64);
    report.add(list, "regiosync", "setup_s", r.dossier_setup_s);
    Ok(())
}

/// The documents of a catch-up, as the source holds them: ids, plaintext changes,
/// and the heads every side must end with.
struct Corpus {
    ids: Vec<DocId>,
    changes: Vec<Vec<Change>>,
    heads: Vec<Vec<ChangeHash>>,
    sealed: bool,
    saved: usize,
}

impl Corpus {
    fn new(ids: Vec<DocId>, changes: Vec<Vec<Change>>, sealed: bool) -> anyhow::Result<Self> {
        let heads = changes
            .iter()
            .map(|c| ours::heads_of(c))
            .collect::<anyhow::Result<_>>()?;
        let mut saved = 0;
        for c in &changes {
            saved += ours::document(c)?.save().len();
        }
        Ok(Self {
            ids,
            changes,
            heads,
            sealed,
            saved,
        })
    }

    /// Checks that `device` holds every document with the source's heads (sealed
    /// dossiers: opened with the keys wrapped for the device).
    fn check(&self, device: &mut Node) -> anyhow::Result<()> {
        for (i, id) in self.ids.iter().enumerate() {
            let changes = if self.sealed {
                ours::plaintext_changes(device, id)?
            } else {
                ours::plain_changes(device, id)?
            };
            if ours::heads_of(&changes)? != self.heads[i] {
                bail!("regiosync's end state of document {i} differs from the source's");
            }
        }
        Ok(())
    }
}

/// Catch-ups of `corpus` from the `source` node by each device in `devices`
/// (one repetition each), each verifying every signature as a fresh process would.
/// With `unverified`, one more device then catches up with every signature already
/// remembered as verified (the memo left warm): the same catch-up without the
/// signature checks, reported as `{w}-unverified`. Returns the last device, with
/// what its sync remembers.
async fn regiosync_catchup(
    w: &str,
    source: &Answering,
    devices: &[PathBuf],
    unverified: Option<&Path>,
    corpus: &Corpus,
    report: &mut Report,
) -> anyhow::Result<(Node, SessionMemory)> {
    let b = bar(devices.len(), format!("{w}: regiosync"));
    let mut ms = Vec::new();
    let mut last = None;
    for d in devices {
        let device = Node::open(d)?;
        regiosync_core::forget_verified_signatures_for_bench();
        let memory = SessionMemory::default();
        let (t, rep, mut device) = source.session(device, &memory).await?;
        corpus.check(&mut device)?;
        ms.push(t);
        last = Some((rep, device, memory));
        b.inc(1);
    }
    b.finish_and_clear();
    let (rep, device, memory) = last.ok_or_else(|| anyhow!("no repetition ran"))?;
    let bytes = (rep.bytes_sent + rep.bytes_received) as f64;
    session_rows(report, w, median(&ms), &rep);
    report.add(w, "regiosync", "saved_bytes", corpus.saved as f64);
    report.add(
        w,
        "regiosync",
        "bytes_per_saved",
        bytes / corpus.saved as f64,
    );
    let changes: usize = corpus.changes.iter().map(Vec::len).sum();
    report.add(w, "regiosync", "changes", changes as f64);
    if let Some(d) = unverified {
        let (t, rep, mut other) = source
            .session(Node::open(d)?, &SessionMemory::default())
            .await?;
        corpus.check(&mut other)?;
        let u = format!("{w}-unverified");
        session_rows(report, &u, t, &rep);
    }
    Ok((device, memory))
}

/// The rows of one regiosync session: wall time, bytes both ways, round trips.
fn session_rows(report: &mut Report, w: &str, ms: f64, rep: &regiosync_node::SyncReport) {
    report.add(w, "regiosync", "wall_ms", ms);
    report.add(
        w,
        "regiosync",
        "bytes",
        (rep.bytes_sent + rep.bytes_received) as f64,
    );
    report.add(w, "regiosync", "round_trips", rep.round_trips as f64);
}

/// A samod source holding the corpus and a target that caught up from it.
struct SamodLink {
    source: Peer,
    target: Peer,
    dialer: samod::DialerHandle,
    /// The source's handles, one per document of the corpus.
    src_handles: Vec<samod::DocHandle>,
    /// The target's handles (kept open, as an application would).
    handles: Vec<samod::DocHandle>,
}

impl SamodLink {
    /// Drops the connection and dials again; waits until both sides agree on every
    /// document over the new connection (samod's own per-connection sync state), the
    /// documents `changed` have `want`, and the connection is quiet. Returns (ms to
    /// agreement, bytes exchanged).
    async fn reconnect(
        &mut self,
        changed: &[(usize, Vec<ChangeHash>)],
    ) -> anyhow::Result<(f64, u64)> {
        self.dialer.close();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let bytes = Arc::new(AtomicU64::new(0));
        let t = Instant::now();
        self.dialer = self.target.dial(&self.source, bytes.clone()).await?;
        let conn = self
            .dialer
            .connection_id()
            .ok_or_else(|| anyhow!("samod reconnected without a connection"))?;
        let agreed = self.handles.iter().map(|h| {
            let (ours, theirs) = (h.we_have_their_changes(conn), h.they_have_our_changes(conn));
            async move {
                ours.await;
                theirs.await;
            }
        });
        tokio::time::timeout(Duration::from_secs(600), futures::future::join_all(agreed))
            .await
            .context("samod never agreed on every document after reconnecting")?;
        for (i, want) in changed {
            samod_side::wait_for_heads(&self.handles[*i], want).await?;
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        samod_side::settle(&bytes, Duration::from_millis(300)).await;
        Ok((ms, bytes.load(Ordering::Relaxed)))
    }

    async fn stop(self) {
        self.dialer.close();
        self.target.stop().await;
        self.source.stop().await;
    }
}

/// Catch-ups of `corpus` through samod: a source repo holding the documents and, per
/// repetition, a new repo that finds them all over TCP. Returns the last pair.
async fn samod_catchup(
    w: &str,
    root: &Path,
    corpus: &Corpus,
    reps: usize,
    report: &mut Report,
) -> anyhow::Result<SamodLink> {
    let source = Peer::start(&root.join("samod-source")).await?;
    let mut src_handles = Vec::new();
    for (i, c) in corpus.changes.iter().enumerate() {
        let h = source
            .repo
            .create(ours::document(c)?)
            .await
            .map_err(|_| anyhow!("samod repo stopped"))?;
        let mut heads = samod_side::heads(&h);
        heads.sort();
        if heads != corpus.heads[i] {
            bail!("samod changed document {i} on creation");
        }
        src_handles.push(h);
    }
    let docs: Vec<_> = src_handles
        .iter()
        .zip(&corpus.heads)
        .map(|(h, want)| (h.document_id().clone(), want.clone()))
        .collect();
    let b = bar(reps, format!("{w}: samod"));
    let mut ms = Vec::new();
    let mut last: Option<(Peer, samod::DialerHandle, Vec<samod::DocHandle>, u64)> = None;
    for r in 0..reps {
        let target = Peer::start(&root.join(format!("samod-target{r}"))).await?;
        let bytes = Arc::new(AtomicU64::new(0));
        let t = Instant::now();
        let dialer = target.dial(&source, bytes.clone()).await?;
        let handles = samod_side::find_all(&target.repo, &docs).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        // Identical end states: every document has the source's heads (checked by
        // `find_all`) and reads the same as the source's.
        for (i, h) in handles.iter().enumerate() {
            if samod_side::document(h).save() != ours::document(&corpus.changes[i])?.save() {
                bail!("samod's end state of document {i} differs from the source's");
            }
        }
        if let Some((old, d, _, _)) = last.take() {
            d.close();
            old.stop().await;
        }
        last = Some((target, dialer, handles, bytes.load(Ordering::Relaxed)));
        b.inc(1);
    }
    b.finish_and_clear();
    let (target, dialer, handles, bytes) = last.ok_or_else(|| anyhow!("no repetition ran"))?;
    report.add(w, "samod", "wall_ms", median(&ms));
    report.add(w, "samod", "bytes", bytes as f64);
    report.add(w, "samod", "saved_bytes", corpus.saved as f64);
    report.add(
        w,
        "samod",
        "bytes_per_saved",
        bytes as f64 / corpus.saved as f64,
    );
    Ok(SamodLink {
        source,
        target,
        dialer,
        src_handles,
        handles,
    })
}

/// Catch-ups of `corpus` by raw Automerge sync in memory. Returns the last pairs.
fn automerge_catchup(
    w: &str,
    corpus: &Corpus,
    reps: usize,
    report: &mut Report,
) -> anyhow::Result<Vec<Pair>> {
    let mut ms = Vec::new();
    let mut last = None;
    for _ in 0..reps {
        let mut pairs: Vec<Pair> = corpus
            .changes
            .iter()
            .map(|c| ours::document(c).map(Pair::fresh))
            .collect::<anyhow::Result<_>>()?;
        let s = automerge_side::sync_all(&mut pairs)?;
        ms.push(s.ms);
        last = Some((s, pairs));
    }
    let (s, pairs) = last.ok_or_else(|| anyhow!("no repetition ran"))?;
    report.add(w, "automerge", "wall_ms", median(&ms));
    report.add(w, "automerge", "bytes", s.bytes as f64);
    report.add(w, "automerge", "round_trips", s.round_trips as f64);
    report.add(w, "automerge", "saved_bytes", corpus.saved as f64);
    report.add(
        w,
        "automerge",
        "bytes_per_saved",
        s.bytes as f64 / corpus.saved as f64,
    );
    Ok(pairs)
}

/// Copies a folder tree (a node's data folder while no write is running).
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// The small-document workloads for one size: catch-up, reconnects, sealed vs
/// plain, and the node's start-up and memory.
async fn small_docs(
    root: &Path,
    label: &str,
    n: usize,
    sizes: &Sizes,
    seed: u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let reps = sizes.reps;
    let plain_wanted = label == "1k";
    // One more device for the run without signature checks (1k only).
    let mut src = Source::new(root, reps + usize::from(plain_wanted))?;
    // A copy of the node and its devices before any document exists: the same device
    // (same actor) later stores the same changes unsealed (`catchup-*-plain`).
    let plain_root = root.join("plain");
    if plain_wanted {
        copy_dir(&src.dir, &plain_root.join("source"))?;
        for (i, d) in src.devices.iter().enumerate() {
            copy_dir(d, &plain_root.join(format!("device{i}")))?;
        }
    }
    let b = bar(n, format!("setup: {n} dossiers"));
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(src.create_dossier(&data::dossier(seed, i, sizes.changes))?);
        b.inc(1);
    }
    b.finish_and_clear();
    let changes = ids
        .iter()
        .map(|id| src.plaintext_changes(id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut corpus = Corpus::new(ids, changes, true)?;

    // Catch-up.
    let w = format!("catchup-{label}");
    let answering = Answering::start(&src.dir).await?;
    let unverified = src.devices.get(reps).cloned();
    let (device, memory) = regiosync_catchup(
        &w,
        &answering,
        &src.devices[..reps],
        unverified.as_deref(),
        &corpus,
        report,
    )
    .await?;
    let mut link = match sizes.samod {
        true => Some(samod_catchup(&w, root, &corpus, reps, report).await?),
        false => None,
    };
    let mut pairs = automerge_catchup(&w, &corpus, reps, report)?;

    // Reconnect, nothing changed.
    let w = format!("reconnect-idle-{label}");
    let (ms, rep, device) = answering.session(device, &memory).await?;
    session_rows(report, &w, ms, &rep);
    if let Some(link) = &mut link {
        let (ms, bytes) = link.reconnect(&[]).await?;
        report.add(&w, "samod", "wall_ms", ms);
        report.add(&w, "samod", "bytes", bytes as f64);
    }
    let s = automerge_side::reconnect_all(&mut pairs)?;
    report.add(&w, "automerge", "bytes", s.bytes as f64);
    report.add(&w, "automerge", "round_trips", s.round_trips as f64);

    // Reconnect after one change in every tenth document.
    let w = format!("reconnect-10pct-{label}");
    let today = time::OffsetDateTime::now_utc().date();
    let me = src.node.info().party.clone();
    let mut changed = Vec::new();
    for i in (0..n).step_by(10) {
        let id = corpus.ids[i];
        let note = format!("Nagekomen: {}", data::plan_text(seed, i, 60));
        src.node
            .bulk_dossier_edits_for_bench(&id, &ours::reader(), 1, |tx, _| {
                schema::add_contact(tx, today, &me, &note)
            })?;
        let now = src.plaintext_changes(&id)?;
        let new: Vec<Change> = now
            .iter()
            .filter(|c| !corpus.changes[i].iter().any(|o| o.hash() == c.hash()))
            .cloned()
            .collect();
        if let Some(link) = &link {
            link.src_handles[i].with_document(|d| d.apply_changes(new.clone()))?;
        }
        pairs[i].source.apply_changes(new)?;
        corpus.heads[i] = ours::heads_of(&now)?;
        corpus.changes[i] = now;
        changed.push((i, corpus.heads[i].clone()));
    }
    let (ms, rep, mut device) = answering.session(device, &memory).await?;
    answering.stop().await;
    corpus.check(&mut device)?;
    session_rows(report, &w, ms, &rep);
    if let Some(link) = &mut link {
        let (ms, bytes) = link.reconnect(&changed).await?;
        report.add(&w, "samod", "wall_ms", ms);
        report.add(&w, "samod", "bytes", bytes as f64);
    }
    let s = automerge_side::reconnect_all(&mut pairs)?;
    report.add(&w, "automerge", "bytes", s.bytes as f64);
    report.add(&w, "automerge", "round_trips", s.round_trips as f64);
    if let Some(link) = link {
        link.stop().await;
    }
    drop(pairs);

    // Sealed versus plain: the catch-up above, and the same changes unsealed.
    if plain_wanted {
        let sealed = format!("catchup-{label}-sealed");
        let from = format!("catchup-{label}");
        for metric in [
            "wall_ms",
            "bytes",
            "round_trips",
            "saved_bytes",
            "bytes_per_saved",
            "changes",
        ] {
            for system in ["regiosync", "automerge"] {
                if let Some(v) = report.get(&from, system, metric) {
                    report.add(&sealed, system, metric, v);
                }
            }
        }
        let w = format!("catchup-{label}-plain");
        let mut plain_src = Node::open(&plain_root.join("source"))?;
        let b = bar(n, format!("setup: {n} plain documents"));
        let mut plain_ids = Vec::with_capacity(n);
        for c in &corpus.changes {
            plain_ids.push(plain_src.import_changes_for_bench(PlanKind::Jeugdplan, c)?);
            b.inc(1);
        }
        b.finish_and_clear();
        drop(plain_src);
        let plain = Corpus {
            ids: plain_ids,
            changes: corpus.changes.clone(),
            heads: corpus.heads.clone(),
            sealed: false,
            saved: corpus.saved,
        };
        let devices: Vec<PathBuf> = (0..reps)
            .map(|i| plain_root.join(format!("device{i}")))
            .collect();
        let unverified = plain_root.join(format!("device{reps}"));
        let answering = Answering::start(&plain_root.join("source")).await?;
        regiosync_catchup(&w, &answering, &devices, Some(&unverified), &plain, report).await?;
        answering.stop().await;
        automerge_catchup(&w, &plain, reps, report)?;
    }

    // The source node, holding the N dossiers, started as a separate process.
    let w = format!("node-{label}-dossiers");
    drop(src.node);
    let (served, _device) = ours::start_separate(&src.dir, device).await?;
    report.add(&w, "regiosync", "startup_ms", served.startup_ms);
    report.add(&w, "regiosync", "rss_mb", served.rss_mb);
    Ok(())
}

/// The label of a start-up workload of `n` dossiers ("100k", "2500").
pub(crate) fn startup_label(n: usize) -> &'static str {
    match n {
        100_000 => "100k",
        10_000 => "10k",
        1_000 => "1k",
        // A label per run: leaked once, for the run's life.
        _ => Box::leak(n.to_string().into_boxed_str()),
    }
}

/// Of every this many dossiers of `startup-*`, one is about a resident of the
/// municipality whose device syncs with the started node.
const STARTUP_SHARED_EVERY: usize = 100;

/// `startup-*-dossiers`: a node holding `n` dossiers (the kerngemeente's, of
/// `sizes.changes` changes each), one in [`STARTUP_SHARED_EVERY`] of them granted to
/// a neighbouring municipality, is started as a separate process; measured until it
/// has answered a first (idle) sync of that municipality's device, caught up before,
/// and its peak RSS. Unlike `node-*-dossiers` (a device of the node's own party,
/// which shares every dossier), the peer shares a small part, as most peers do.
async fn startup(
    root: &Path,
    w: &str,
    n: usize,
    sizes: &Sizes,
    seed: u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut src = Source::new(root, 0)?;
    let other = ours::party("gemeente-zeist")?;
    let device_dir = root.join("gemeente-zeist");
    src.join_municipality(&device_dir, &other)?;
    let me = src.node.info().party.clone();
    let b = bar(n, format!("setup: {n} dossiers"));
    let set_up = Instant::now();
    for i in 0..n {
        let content = data::dossier(seed, i, sizes.changes);
        let woongemeente = if i % STARTUP_SHARED_EVERY == 0 {
            &other
        } else {
            &me
        };
        src.create_dossier_for(&content, woongemeente)?;
        b.inc(1);
    }
    b.finish_and_clear();
    report.add(w, "regiosync", "setup_s", set_up.elapsed().as_secs_f64());
    let answering = Answering::start(&src.dir).await?;
    let (_, _, device) = answering
        .session(Node::open(&device_dir)?, &SessionMemory::default())
        .await?;
    answering.stop().await;
    let shared = device.dossier_ids()?.len();
    if shared != n.div_ceil(STARTUP_SHARED_EVERY) {
        bail!(
            "the municipality's device holds {shared} dossiers after catching up, not {}",
            n.div_ceil(STARTUP_SHARED_EVERY)
        );
    }
    drop(src.node);
    let (served, _device) = ours::start_separate(&src.dir, device).await?;
    report.add(w, "regiosync", "dossiers", n as f64);
    report.add(w, "regiosync", "shared_with_peer", shared as f64);
    report.add(w, "regiosync", "startup_ms", served.startup_ms);
    report.add(w, "regiosync", "rss_mb", served.rss_mb);
    Ok(())
}

/// The text object of a plan's first section.
fn first_section_text<R: ReadDoc>(doc: &R) -> Result<automerge::ObjId, PlanError> {
    let missing = || PlanError::UnknownSection("the first section".into());
    let Some((Value::Object(ObjType::List), sections)) = doc.get(ROOT, "sections")? else {
        return Err(missing());
    };
    let Some((Value::Object(ObjType::Map), section)) = doc.get(&sections, 0)? else {
        return Err(missing());
    };
    let Some((Value::Object(ObjType::Text), text)) = doc.get(&section, "text")? else {
        return Err(missing());
    };
    Ok(text)
}

/// One large plan: 1,000 transactions of 100 text insertions each (sizes permitting).
async fn large_plan(
    root: &Path,
    sizes: &Sizes,
    seed: u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let w = "catchup-large";
    let mut src = Source::new(root, sizes.reps)?;
    let id = src.node.create_plan(
        PlanKind::Jeugdplan,
        "Regionaal programma voortijdig schoolverlaten",
    )?;
    let b = bar(1, format!("setup: {} transactions", sizes.large_tx));
    src.node
        .bulk_edit_plan_for_bench(&id, sizes.large_tx, |t, i| {
            let text = first_section_text(t)?;
            let at = t.length(&text);
            t.splice_text(&text, at, 0, &data::plan_text(seed, i, sizes.large_ops))?;
            Ok(())
        })?;
    b.finish_and_clear();
    let changes = src.plain_changes(&id)?;
    let corpus = Corpus::new(vec![id], vec![changes], false)?;
    drop(src.node);
    let answering = Answering::start(&src.dir).await?;
    regiosync_catchup(w, &answering, &src.devices, None, &corpus, report).await?;
    answering.stop().await;
    samod_catchup(w, root, &corpus, sizes.reps, report)
        .await?
        .stop()
        .await;
    automerge_catchup(w, &corpus, sizes.reps, report)?;
    Ok(())
}

/// Edit-to-visible latency, five nodes: regiosync over `transport`, samod over TCP
/// (its transport), Automerge in memory.
async fn propagation(
    root: &Path,
    transport: &str,
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let w = format!("propagation-5-{transport}");
    let edits = sizes.edits;
    // Through the running node's own handle (as the web app edits): `p50_ms`,
    // `p99_ms`; through a separate handle per edit (as a CLI command edits while
    // `up` runs): `handle_p50_ms`, `handle_p99_ms`; through a real `regiosync`
    // process per edit, if that binary was built beside this one (`cargo build
    // --release -p regiosync`): `cli_p50_ms`, `cli_p99_ms`.
    let mut paths = vec![(EditPath::Api, ""), (EditPath::Handle, "handle_")];
    match ours::cli_binary() {
        Some(cli) => paths.push((EditPath::Process(cli), "cli_")),
        None => tracing::warn!(
            "no regiosync binary beside the runner: the CLI-process rows are left out (cargo build --release -p regiosync)"
        ),
    }
    for (path, prefix) in paths {
        let how = match path {
            EditPath::Api => "api",
            EditPath::Handle => "handle",
            EditPath::Process(_) => "cli process",
        };
        let b = bar(edits, format!("{w}: regiosync ({how})"));
        let lat = ours::propagation(root, transport, path, edits, || b.inc(1)).await?;
        b.finish_and_clear();
        report.add(
            &w,
            "regiosync",
            &format!("{prefix}p50_ms"),
            percentile(&lat, 0.5),
        );
        report.add(
            &w,
            "regiosync",
            &format!("{prefix}p99_ms"),
            percentile(&lat, 0.99),
        );
    }

    let owner = PartyName::new("gemeente-utrecht").map_err(|e| anyhow!("{e}"))?;
    let mut base = Automerge::new();
    base.transact(|t| plan::init_plan(t, PlanKind::Jeugdplan, "Latency", &owner))
        .map_err(|e| anyhow!("{:?}", e.error))?;
    let input = |k: usize| AgreementInput {
        title: format!("Afspraak {k}"),
        owner: owner.clone(),
        deadline: None,
    };
    if transport == "tcp" {
        let b = bar(edits, format!("{w}: samod"));
        let lat = samod_propagation(root, &base, edits, &input, || b.inc(1)).await?;
        b.finish_and_clear();
        report.add(&w, "samod", "p50_ms", percentile(&lat, 0.5));
        report.add(&w, "samod", "p99_ms", percentile(&lat, 0.99));
    }
    let lat = automerge_side::propagation(&base, 5, edits, |d, k| {
        d.transact(|t| plan::add_agreement(t, &input(k)))
            .map_err(|e| anyhow!("{:?}", e.error))?;
        Ok(())
    })?;
    report.add(&w, "automerge", "p50_ms", percentile(&lat, 0.5));
    report.add(&w, "automerge", "p99_ms", percentile(&lat, 0.99));
    Ok(())
}

/// Five samod repos in a full mesh over TCP on loopback; an edit on one (rotating)
/// until its change is in the document on all four others.
async fn samod_propagation(
    root: &Path,
    base: &Automerge,
    edits: usize,
    input: &dyn Fn(usize) -> AgreementInput,
    mut progress: impl FnMut(),
) -> anyhow::Result<Vec<f64>> {
    let mut peers = Vec::new();
    for i in 0..5 {
        peers.push(Peer::start(&root.join(format!("samod{i}"))).await?);
    }
    let mut dialers = Vec::new();
    for i in 0..5 {
        for j in (i + 1)..5 {
            dialers.push(
                peers[i]
                    .dial(&peers[j], Arc::new(AtomicU64::new(0)))
                    .await?,
            );
        }
    }
    let first = peers[0]
        .repo
        .create(base.clone())
        .await
        .map_err(|_| anyhow!("samod repo stopped"))?;
    let want = samod_side::heads(&first);
    let docs = [(first.document_id().clone(), want)];
    let mut handles = vec![first];
    for p in &peers[1..] {
        handles.extend(samod_side::find_all(&p.repo, &docs).await?);
    }
    let mut lat = Vec::with_capacity(edits);
    for k in 0..edits {
        let from = k % 5;
        let t = Instant::now();
        let head = handles[from].with_document(|d| {
            d.transact(|tx| plan::add_agreement(tx, &input(k)))
                .map_err(|e| anyhow!("{:?}", e.error))?;
            d.get_heads()
                .first()
                .copied()
                .ok_or_else(|| anyhow!("no heads after an edit"))
        })?;
        let waits = handles
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != from)
            .map(|(_, h)| samod_side::wait_for_head(h, head));
        futures::future::try_join_all(waits).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        progress();
    }
    for d in dialers {
        d.close();
    }
    for p in peers {
        p.stop().await;
    }
    Ok(lat)
}

/// The targets of issue 7 against this run's measurements, one line each.
pub(crate) fn targets(report: &Report) -> String {
    let mut out = String::from("| target | measured | met |\n|---|---|---|\n");
    let mut line = |what: &str, measured: Option<f64>, unit: &str, limit: f64| {
        let (m, ok) = match measured {
            Some(v) => (
                format!("{v:.2} {unit}"),
                if v <= limit { "yes" } else { "no" },
            ),
            None => ("not run".into(), "–"),
        };
        out.push_str(&format!("| {what} | {m} | {ok} |\n"));
    };
    let r = |w: &str, m: &str| report.get(w, "regiosync", m);
    line(
        "catch-up of 1,000 sealed dossiers ≤ 500 ms",
        r("catchup-1k", "wall_ms"),
        "ms",
        500.0,
    );
    line(
        "… and ≤ 1.5× their saved size",
        r("catchup-1k", "bytes_per_saved"),
        "×",
        1.5,
    );
    line(
        "catch-up of 10,000 sealed dossiers ≤ 5,000 ms",
        r("catchup-10k", "wall_ms"),
        "ms",
        5000.0,
    );
    line(
        "reconnect of 10,000 unchanged documents: 1 round trip",
        r("reconnect-idle-10k", "round_trips"),
        "round trips",
        1.0,
    );
    line(
        "… and ≤ 2 KB",
        r("reconnect-idle-10k", "bytes").map(|b| b / 1024.0),
        "KB",
        2.0,
    );
    line(
        "five-node propagation p50 ≤ 5 ms (TCP)",
        r("propagation-5-tcp", "p50_ms"),
        "ms",
        5.0,
    );
    line(
        "five-node propagation p99 ≤ 25 ms (TCP)",
        r("propagation-5-tcp", "p99_ms"),
        "ms",
        25.0,
    );
    line(
        "an edit by a separate handle (as a CLI process makes it) while the node runs: p50 ≤ 50 ms (TCP)",
        r("propagation-5-tcp", "handle_p50_ms"),
        "ms",
        50.0,
    );
    line(
        "five-node propagation p50 ≤ 5 ms (QUIC)",
        r("propagation-5-quic", "p50_ms"),
        "ms",
        5.0,
    );
    line(
        "five-node propagation p99 ≤ 25 ms (QUIC)",
        r("propagation-5-quic", "p99_ms"),
        "ms",
        25.0,
    );
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    line(
        "sealed, verified catch-up ≤ 1.2× an unsealed, unverified one (samod's, over TCP)",
        ratio(
            r("catchup-1k", "wall_ms"),
            report.get("catchup-1k", "samod", "wall_ms"),
        ),
        "×",
        1.2,
    );
    line(
        "… and ≤ 1.2× regiosync's own unsealed (signed, verified) catch-up",
        ratio(
            r("catchup-1k-sealed", "wall_ms"),
            r("catchup-1k-plain", "wall_ms"),
        ),
        "×",
        1.2,
    );
    line(
        "sealing and signature checks ≤ 1.2× (sealed, verified / unsealed, unverified catch-up, both regiosync)",
        ratio(
            r("catchup-1k-sealed", "wall_ms"),
            r("catchup-1k-plain-unverified", "wall_ms"),
        ),
        "×",
        1.2,
    );
    let per_change = match (
        r("catchup-1k-sealed", "bytes"),
        r("catchup-1k-plain", "bytes"),
        r("catchup-1k-sealed", "changes"),
    ) {
        (Some(s), Some(p), Some(n)) if n > 0.0 => Some((s - p) / n),
        _ => None,
    };
    line(
        "sealing ≤ 48 bytes per change (sealed − unsealed wire bytes, per change)",
        per_change,
        "B",
        48.0,
    );
    line(
        "start-up of a node with 10,000 dossiers ≤ 1,000 ms",
        r("node-10k-dossiers", "startup_ms"),
        "ms",
        1000.0,
    );
    line(
        "… peak RSS ≤ 300 MB",
        r("node-10k-dossiers", "rss_mb"),
        "MB",
        300.0,
    );
    line(
        "(issue 19) an edit by a separate CLI process while `up` runs, p50 ≤ 50 ms (TCP)",
        r("propagation-5-tcp", "cli_p50_ms"),
        "ms",
        50.0,
    );
    line(
        "(issue 19) start-up of a node with 100,000 dossiers ≤ 1,000 ms",
        r("startup-100k-dossiers", "startup_ms"),
        "ms",
        1000.0,
    );
    line(
        "(issue 19) … peak RSS ≤ 300 MB",
        r("startup-100k-dossiers", "rss_mb"),
        "MB",
        300.0,
    );
    line(
        "(issue 17) web save on A until B's live event, p50 ≤ 50 ms",
        r("web-live", "p50_ms"),
        "ms",
        50.0,
    );
    line(
        "(issue 17) … p99 ≤ 200 ms",
        r("web-live", "p99_ms"),
        "ms",
        200.0,
    );
    line(
        "(issue 17) plan page with 500 agreements ≤ 100 ms (median)",
        r("web-plan-page", "median_ms"),
        "ms",
        100.0,
    );
    line(
        "(issue 17) … p99 ≤ 100 ms",
        r("web-plan-page", "p99_ms"),
        "ms",
        100.0,
    );
    line(
        "(issue 17) dossier list with 10,000 dossiers ≤ 100 ms (median)",
        r("web-dossier-list", "median_ms"),
        "ms",
        100.0,
    );
    line(
        "(issue 17) … p99 ≤ 100 ms",
        r("web-dossier-list", "p99_ms"),
        "ms",
        100.0,
    );
    out
}
