//! The sync benchmark runner: the same workloads through regiosync (real libp2p on
//! loopback, signed, sealed, stored), through samod (the Rust automerge-repo, over its
//! TCP transport on loopback, stored to disk) and through raw Automerge sync in memory
//! (the floor), in one run, with ratios.
//!
//! ```text
//! cargo run --release -p regiosync-bench -- [--quick] [--json FILE] [--smoke]
//! ```
//!
//! Every workload's data comes from a seed (`--seed`), every catch-up checks that
//! regiosync's and samod's end states are the same documents as the source's (same
//! Automerge heads: the same changes), and the run fails if they are not. Times are
//! medians of `--reps` repetitions; bytes and round trips are those of the last one.
//! `--smoke` runs tiny sizes (seconds, even in a debug build) for the test suite.
//! `--workload web` (= `--only web`) runs only the web app workloads of issue 17: a
//! section saved through one node's web app until the other node's live stream says
//! so, and the plan page and dossier list times (see `web_side`).
//! See docs/PERFORMANCE.md for the workloads, targets and a full run.

#![allow(clippy::print_stdout)] // a runner prints its report

mod automerge_side;
mod data;
mod regiosync_side;
mod report;
mod samod_side;
mod web_side;
mod workloads;

use std::path::PathBuf;

use clap::Parser;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "regiosync-bench",
    about = "Sync benchmarks: regiosync vs samod vs raw Automerge"
)]
struct Args {
    /// Smaller sizes and fewer repetitions (under two minutes on two cores); skips
    /// the 10,000-document workloads.
    #[arg(long)]
    quick: bool,
    /// Tiny sizes, for the test suite: checks the runner and the end states.
    #[arg(long)]
    smoke: bool,
    /// Also write the results as JSON rows to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Repetitions per catch-up (the median is reported).
    #[arg(long)]
    reps: Option<usize>,
    /// Dossiers of the start-up workload (`startup-*-dossiers`; the full run's
    /// 100,000 take minutes to set up), e.g. `--only startup --startup-dossiers
    /// 10000`.
    #[arg(long)]
    startup_dossiers: Option<usize>,
    /// Leave samod out of the small-document workloads.
    #[arg(long)]
    without_samod: bool,
    /// Run only the workloads whose name contains this text (`--only web`, or
    /// `--workload web`: the web app workloads of issue 17).
    #[arg(long, alias = "workload")]
    only: Option<String>,
    /// Internal: serve a node's data folder until stdin closes (the separate process
    /// of the start-up and memory measurement).
    #[arg(long, hide = true)]
    serve_node: Option<PathBuf>,
    /// Internal: answer sync requests from a node's data folder until stdin closes
    /// (the source of the catch-ups, in its own process).
    #[arg(long, hide = true)]
    answer_node: Option<PathBuf>,
    /// Internal: where `--serve-node` or `--answer-node` listens.
    #[arg(long, hide = true)]
    listen: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.serve_node.is_some() || args.answer_node.is_some() {
        let listen = args
            .listen
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--serve-node and --answer-node need --listen"))?
            .parse()?;
        return match (&args.serve_node, &args.answer_node) {
            (Some(dir), _) => rt.block_on(regiosync_side::serve(dir, listen)),
            (_, Some(dir)) => rt.block_on(regiosync_side::answer(dir, listen)),
            _ => Ok(()),
        };
    }
    let sizes = if args.smoke {
        workloads::Sizes::smoke()
    } else if args.quick {
        workloads::Sizes::quick()
    } else {
        workloads::Sizes::full()
    };
    let sizes = workloads::Sizes {
        reps: args.reps.unwrap_or(sizes.reps).max(1),
        samod: sizes.samod && !args.without_samod,
        startup: match args.startup_dossiers {
            Some(n) => vec![(workloads::startup_label(n), n)],
            None => sizes.startup.clone(),
        },
        ..sizes
    };
    let started = std::time::Instant::now();
    let report = rt.block_on(workloads::run_all(&sizes, args.seed, args.only.as_deref()))?;
    println!("{}", workloads::header(&sizes, args.seed));
    println!("{}", report.markdown());
    if args.smoke {
        println!("(smoke sizes: the targets of issue 7 are not compared)\n");
    } else {
        println!(
            "## Targets (issues 7 and 17)\n\n{}",
            workloads::targets(&report)
        );
    }
    println!(
        "end states: identical (regiosync = samod = source, same Automerge heads for every document)"
    );
    println!("run took {:.0} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    Ok(())
}
