//! `regiosync demo`: a five-party region (kerngemeente, ROC, two buurgemeenten, SWV)
//! on this machine, over real libp2p connections on loopback only (mDNS off). It seeds
//! plans, makes concurrent edits, takes one node offline and back, and shows each
//! node converge.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use regiosync_core::id::{DocId, PartyName, Role};
use regiosync_core::plan::{AgreementInput, Plan, PlanKind, parse_date};
use regiosync_net::Multiaddr;
use regiosync_node::Node;
use regiosync_node::service::{ServiceConfig, run as run_node};
use tokio_util::sync::CancellationToken;

use crate::output::{Lines, Output, terminal_safe};

const PARTIES: [(&str, Role, &str); 5] = [
    ("gemeente-utrecht", Role::Kerngemeente, "kerngemeente"),
    ("roc-midden", Role::Roc, "ROC"),
    ("gemeente-zeist", Role::Gemeente, "buurgemeente"),
    ("gemeente-houten", Role::Gemeente, "buurgemeente"),
    ("swv-utrecht", Role::Swv, "samenwerkingsverband"),
];

struct Running {
    cancel: CancellationToken,
    join: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub(crate) fn run(out: Output, duration: u64, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (root, _tmp) = match dir {
        Some(d) => {
            anyhow::ensure!(
                !d.exists() || std::fs::read_dir(&d)?.next().is_none(),
                "{} is not empty: give an empty or new folder for the demo",
                d.display()
            );
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
            (d, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("regiosync-demo-")
                .tempdir()?;
            (t.path().to_owned(), Some(t))
        }
    };
    let say = |s: String| {
        if !out.json {
            println!("{}", terminal_safe(&s, Lines::Keep));
        }
    };
    say(format!("Setting up five parties in {}", root.display()));
    let (dirs, docs) = seed(&root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let timings = rt.block_on(async {
        let addrs: Vec<Multiaddr> = (0..5).map(|_| free_addr()).collect::<anyhow::Result<_>>()?;
        let mut nodes: Vec<Option<Running>> = (0..5).map(|i| Some(start(&dirs[i], &addrs, i))).collect();
        for (i, (p, _, what)) in PARTIES.iter().enumerate() {
            say(format!("  {p:<18} ({what}) listening on {}", addrs[i]));
        }
        let mut timings = serde_json::Map::new();

        say("\n1. The kerngemeente's and the SWV's plans reach everyone:".into());
        timings.insert("initial_ms".into(), converge(&dirs, &docs, &say).await?.into());

        say("\n2. All five edit the jeugdplan at the same moment (two in the same section):".into());
        for (i, d) in dirs.iter().enumerate() {
            Node::open(d)?.add_agreement(&docs[0], &agreement(&format!("Afspraak van {}", PARTIES[i].0), PARTIES[i].0))?;
        }
        Node::open(&dirs[1])?.set_section(&docs[0], "Doelen", "1. Geen jongere uit beeld.\n2. Warme overdracht vo-mbo, met het ROC.\n")?;
        Node::open(&dirs[3])?.set_section(&docs[0], "Doelen", "1. Geen jongere uit beeld, ook niet na verhuizing.\n2. Warme overdracht vo-mbo.\n")?;
        timings.insert("concurrent_ms".into(), converge(&dirs, &docs, &say).await?.into());

        say("\n3. The SWV's server goes down; the others keep working; the SWV edits offline:".into());
        if let Some(n) = nodes[4].take() {
            n.cancel.cancel();
            n.join.await??;
        }
        for k in 0..20 {
            let i = k % 4;
            Node::open(&dirs[i])?.add_agreement(&docs[0], &agreement(&format!("Actiepunt {k}"), PARTIES[i].0))?;
        }
        Node::open(&dirs[4])?.set_section(&docs[1], "Inleiding", "Bijgewerkt in de trein, zonder netwerk.\n")?;
        show(&dirs, &docs, &say);
        say("   The SWV comes back:".into());
        nodes[4] = Some(start(&dirs[4], &addrs, 4));
        timings.insert("catch_up_ms".into(), converge(&dirs, &docs, &say).await?.into());

        if duration > 0 || _tmp.is_none() {
            say(format!(
                "\nPoint the CLI at any node, e.g.:\n  regiosync --data-dir {} doc list\n  regiosync --data-dir {} doc show {}\n",
                dirs[1].display(),
                dirs[1].display(),
                &docs[0].to_string()[..8]
            ));
        } else {
            say("\nRun `regiosync demo --duration 300` to keep the region up and try the CLI against it, or --dir DIR to keep the nodes.".into());
        }
        if duration > 0 {
            say(format!("Running for {duration} s (Ctrl-C stops); `regiosync --data-dir DIR status` shows a node's peers."));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(duration)) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        for n in nodes.into_iter().flatten() {
            n.cancel.cancel();
            n.join.await??;
        }
        Ok::<_, anyhow::Error>(timings)
    })?;
    if out.json {
        out.emit(
            &serde_json::json!({ "dir": root, "converged": timings }),
            String::new,
        )?;
    }
    Ok(())
}

fn party(s: &str) -> anyhow::Result<PartyName> {
    Ok(PartyName::new(s)?)
}

fn agreement(title: &str, owner: &str) -> AgreementInput {
    AgreementInput {
        title: title.into(),
        owner: PartyName::new(owner).unwrap_or_else(|_| unreachable!()),
        deadline: None,
    }
}

/// Creates the five nodes, the region (joined by files), and two plans.
fn seed(root: &Path) -> anyhow::Result<(Vec<PathBuf>, Vec<DocId>)> {
    let dirs: Vec<PathBuf> = PARTIES.iter().map(|(p, _, _)| root.join(p)).collect();
    for ((p, role, _), dir) in PARTIES.iter().zip(&dirs) {
        Node::init(dir, party(p)?, *role, None)?;
    }
    let mut kern = Node::open(&dirs[0])?;
    kern.create_region("Regio Utrecht-Midden")?;
    for ((p, role, _), dir) in PARTIES.iter().zip(&dirs).skip(1) {
        let mut n = Node::open(dir)?;
        let code = kern.invite(party(p)?, *role, false, 3600)?;
        let (_, bundle) = kern.accept(&n.join_request(&code.encode())?)?;
        n.import(&bundle)?;
    }
    let jeugdplan = kern.create_plan(PlanKind::Jeugdplan, "Beleidsplan jeugd 2027-2030")?;
    kern.set_section(
        &jeugdplan,
        "Inleiding",
        "Dit plan is afgestemd met onderwijs in het OOGO.\n",
    )?;
    kern.set_section(
        &jeugdplan,
        "Doelen",
        "1. Geen jongere uit beeld.\n2. Warme overdracht vo-mbo.\n",
    )?;
    kern.add_agreement(
        &jeugdplan,
        &AgreementInput {
            title: "Sluitende aanpak 18-".into(),
            owner: party("roc-midden")?,
            deadline: Some(parse_date("2027-03-31")?),
        },
    )?;
    let mut swv = Node::open(&dirs[4])?;
    let op = swv.create_plan(PlanKind::Ondersteuningsplan, "Ondersteuningsplan 2026-2030")?;
    swv.set_section(&op, "Inleiding", "Passend onderwijs in de regio.\n")?;
    Ok((dirs, vec![jeugdplan, op]))
}

fn free_addr() -> anyhow::Result<Multiaddr> {
    Ok(regiosync_net::free_loopback_tcp()?)
}

fn start(dir: &Path, addrs: &[Multiaddr], me: usize) -> Running {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let dir = dir.to_owned();
    let listen = addrs[me].clone();
    let peers: Vec<Multiaddr> = addrs
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != me)
        .map(|(_, a)| a.clone())
        .collect();
    let join = tokio::spawn(async move {
        let node = Node::open(&dir)?;
        let config = ServiceConfig {
            listen: vec![listen],
            peers,
            mdns: false,
            sync_interval: Duration::from_secs(2),
            poll_interval: Duration::from_millis(100),
            ..ServiceConfig::default()
        };
        run_node(node, config, c).await?;
        Ok(())
    });
    Running { cancel, join }
}

fn plans(dirs: &[PathBuf], docs: &[DocId]) -> Vec<Vec<Option<Plan>>> {
    dirs.iter()
        .map(|d| match Node::open(d) {
            Ok(n) => docs.iter().map(|doc| n.plan(doc).ok()).collect(),
            Err(_) => vec![None; docs.len()],
        })
        .collect()
}

/// One line per node: how many plans, sections and agreements it holds.
fn show(dirs: &[PathBuf], docs: &[DocId], say: &impl Fn(String)) {
    for (i, ps) in plans(dirs, docs).iter().enumerate() {
        let have: Vec<&Plan> = ps.iter().flatten().collect();
        let sections: usize = have.iter().map(|p| p.sections.len()).sum();
        let agreements: usize = have.iter().map(|p| p.agreements.len()).sum();
        say(format!(
            "   {:<18} plans {}  sections {:>2}  agreements {:>3}",
            PARTIES[i].0,
            have.len(),
            sections,
            agreements
        ));
    }
}

/// Waits until every node reads the same plans; returns how long it took.
async fn converge(dirs: &[PathBuf], docs: &[DocId], say: &impl Fn(String)) -> anyhow::Result<u64> {
    let start = Instant::now();
    loop {
        let all = plans(dirs, docs);
        let done = all
            .iter()
            .all(|p| p == &all[0] && p.iter().all(Option::is_some));
        if done {
            show(dirs, docs, say);
            let ms = start.elapsed().as_millis() as u64;
            say(format!("   ✓ all five nodes agree ({ms} ms)"));
            return Ok(ms);
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "the nodes did not converge within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
