//! `regiosync demo`: a five-party region (kerngemeente, ROC, two buurgemeenten, SWV)
//! on this machine, over real libp2p connections on loopback only (mDNS off), each
//! node serving its web app on a loopback port. It seeds plans, makes concurrent
//! edits, takes one node offline and back, shares a student's dossier with exactly
//! the woongemeente (and moves the student), shows each node converge, and then keeps
//! the region running with the staff accounts it printed, until Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use anyhow::Context;
use regiosync_core::dossier::DossierField;
use regiosync_core::dossier::access::Basis;
use regiosync_core::id::{DocId, PartyName, Role};
use regiosync_core::plan::{AgreementInput, Plan, PlanKind, parse_date};
use regiosync_net::Multiaddr;
use regiosync_node::Node;
use regiosync_node::dossiers::{NewDossier, Reader};
use regiosync_node::service::ServiceConfig;
use regiosync_node::staff::{StaffRole, generate_password};
use tokio_util::sync::CancellationToken;

use crate::output::{Lines, Output, terminal_safe};

const PARTIES: [(&str, Role, &str); 5] = [
    ("gemeente-utrecht", Role::Kerngemeente, "kerngemeente"),
    ("roc-midden", Role::Roc, "ROC"),
    ("gemeente-zeist", Role::Gemeente, "buurgemeente"),
    ("gemeente-houten", Role::Gemeente, "buurgemeente"),
    ("swv-utrecht", Role::Swv, "samenwerkingsverband"),
];

/// The name people read for each party, in the order of [`PARTIES`].
const DISPLAY_NAMES: [&str; 5] = [
    "Gemeente Utrecht",
    "ROC Midden Nederland",
    "Gemeente Zeist",
    "Gemeente Houten",
    "Samenwerkingsverband Utrecht",
];

/// The staff accounts made on every node: one to work on plans, one for dossiers.
const ACCOUNTS: [(&str, StaffRole); 2] = [
    ("beleid", StaffRole::Beleid),
    ("dossier", StaffRole::Dossier),
];

struct Running {
    cancel: CancellationToken,
    join: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// `duration`: seconds to keep the region running after the scenario (`None`: until
/// Ctrl-C, `Some(0)`: stop at once).
pub(crate) fn run(out: Output, duration: Option<u64>, dir: Option<PathBuf>) -> anyhow::Result<()> {
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
    let (dirs, docs, passwords) = seed(&root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let timings = rt.block_on(async {
        let addrs: Vec<Multiaddr> = (0..5).map(|_| free_addr()).collect::<anyhow::Result<_>>()?;
        let mut nodes: Vec<Option<Running>> = Vec::new();
        let mut urls = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            let (running, url) = start(dir, &addrs, i)?;
            nodes.push(Some(running));
            urls.push(url);
        }
        for (i, (p, _, what)) in PARTIES.iter().enumerate() {
            say(format!("  {p:<18} ({what}) listening on {}", addrs[i]));
        }
        let mut timings = serde_json::Map::new();

        say("\n1. The kerngemeente's and the SWV's plans reach everyone:".into());
        timings.insert("initial_ms".into(), converge(&dirs, &docs, &nodes, &say).await?.into());

        say("\n2. All five edit the jeugdplan at the same moment (two in the same section):".into());
        for (i, d) in dirs.iter().enumerate() {
            Node::open(d)?.add_agreement(&docs[0], &agreement(&format!("Afspraak van {}", PARTIES[i].0), PARTIES[i].0))?;
        }
        Node::open(&dirs[1])?.set_section(&docs[0], "Doelen", "1. Geen jongere uit beeld.\n2. Warme overdracht vo-mbo, met het ROC.\n")?;
        Node::open(&dirs[3])?.set_section(&docs[0], "Doelen", "1. Geen jongere uit beeld, ook niet na verhuizing.\n2. Warme overdracht vo-mbo.\n")?;
        timings.insert("concurrent_ms".into(), converge(&dirs, &docs, &nodes, &say).await?.into());

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
        nodes[4] = Some(start(&dirs[4], &addrs, 4)?.0);
        timings.insert("catch_up_ms".into(), converge(&dirs, &docs, &nodes, &say).await?.into());

        say("\n4. The ROC opens a dossier for a student who lives in Zeist; it is sealed for the ROC and Gemeente Zeist only:".into());
        timings.insert("dossier_ms".into(), dossier_scenario(&dirs, &say).await?.into());

        if duration != Some(0) || _tmp.is_none() {
            say(format!(
                "\nPoint the CLI at any node, e.g.:\n  regiosync --data-dir {} doc list\n  regiosync --data-dir {} doc show {}",
                dirs[1].display(),
                dirs[1].display(),
                &docs[0].to_string()[..8]
            ));
        } else {
            say("\nRun `regiosync demo` without --duration 0 to keep the region up and try the web apps and the CLI against it, or --dir DIR to keep the nodes.".into());
        }
        if duration != Some(0) {
            say("\nThe web apps (self-signed certificates: accept each once; sign in with one of the accounts):".into());
            for (i, url) in urls.iter().enumerate() {
                let accounts: Vec<String> = passwords[i]
                    .iter()
                    .map(|(user, password)| format!("{user} / {password}"))
                    .collect();
                say(format!("  {:<28} {url:<24}  {}", DISPLAY_NAMES[i], accounts.join("   ")));
            }
            match duration {
                Some(secs) => say(format!("Running for {secs} s (Ctrl-C stops); `regiosync --data-dir DIR status` shows a node's peers.")),
                None => say("Running until Ctrl-C; `regiosync --data-dir DIR status` shows a node's peers.".into()),
            }
            let wait = async {
                match duration {
                    Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wait => {}
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

/// The staff accounts of one node: (name, password).
type Accounts = Vec<(&'static str, String)>;

/// Creates the five nodes with their staff accounts, the region (joined by files),
/// the parties' display names, and two plans.
fn seed(root: &Path) -> anyhow::Result<(Vec<PathBuf>, Vec<DocId>, Vec<Accounts>)> {
    let dirs: Vec<PathBuf> = PARTIES.iter().map(|(p, _, _)| root.join(p)).collect();
    let mut passwords = Vec::new();
    for ((p, role, _), dir) in PARTIES.iter().zip(&dirs) {
        Node::init(dir, party(p)?, *role, None)?;
        let mut node = Node::open(dir)?;
        let mut accounts = Vec::new();
        for (name, role) in ACCOUNTS {
            let password = generate_password()?;
            node.add_staff(name, role, &password, false)?;
            accounts.push((name, password.expose_secret().to_owned()));
        }
        passwords.push(accounts);
    }
    let mut kern = Node::open(&dirs[0])?;
    kern.create_region("Regio Utrecht-Midden")?;
    for ((p, role, _), dir) in PARTIES.iter().zip(&dirs).skip(1) {
        let mut n = Node::open(dir)?;
        let code = kern.invite(party(p)?, *role, false, 3600)?;
        let (_, bundle) = kern.accept(&n.join_request(&code.encode())?)?;
        n.import(&bundle)?;
    }
    for ((p, _, _), name) in PARTIES.iter().zip(DISPLAY_NAMES) {
        kern.set_party_name(&party(p)?, name)?;
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
    Ok((dirs, vec![jeugdplan, op], passwords))
}

/// Step 4: the ROC opens a student's dossier for the woongemeente (Zeist), which
/// reads it; Houten, Utrecht and the SWV hold nothing of it. The student moves to
/// Houten: the ROC grants Houten and revokes Zeist, and Houten reads it. Returns how
/// long it took in all.
async fn dossier_scenario(dirs: &[PathBuf], say: &impl Fn(String)) -> anyhow::Result<u64> {
    let start = Instant::now();
    // Audited as the OS user running the demo, declared as "demo".
    let who = super::dossier::who(Some("demo"))?;
    let reader = |purpose: &str| Reader {
        who: who.clone(),
        purpose: purpose.into(),
    };
    let id = Node::open(&dirs[1])?.create_dossier(
        &NewDossier {
            woongemeente: party("gemeente-zeist")?,
            basis: Basis::WettelijkeTaak,
            purpose: "voortijdig schoolverlaten voorkomen".into(),
            fields: vec![
                (DossierField::Naam, "Demo Student".into()),
                (DossierField::Opleiding, "Verzorgende IG, niveau 3".into()),
            ],
        },
        &reader("aanmelding"),
    )?;
    let reads = |i: usize| -> bool {
        Node::open(&dirs[i])
            .is_ok_and(|mut n| n.read_dossier(&id, &reader("trajectbegeleiding")).is_ok())
    };
    wait_for("Gemeente Zeist to read the dossier", || reads(2)).await?;
    say(format!(
        "   Gemeente Zeist reads it ({} ms); every read is in its audit log, with a purpose",
        start.elapsed().as_millis()
    ));
    for i in [0, 3, 4] {
        let held = Node::open(&dirs[i])?.dossier_ids()?.contains(&id);
        anyhow::ensure!(!held, "{} holds the dossier", PARTIES[i].0);
        say(format!("   {:<28} holds nothing of it", DISPLAY_NAMES[i]));
    }
    say("   The student moves to Houten: the ROC grants Houten and revokes Zeist:".into());
    {
        let mut roc = Node::open(&dirs[1])?;
        roc.grant_dossier(
            &id,
            party("gemeente-houten")?,
            Basis::WettelijkeTaak,
            "verhuizing: leerplicht en jeugdhulp",
            None,
            &reader("verhuizing"),
        )?;
        roc.revoke_dossier(
            &id,
            party("gemeente-zeist")?,
            "verhuisd naar Houten",
            &reader("verhuizing"),
        )?;
        roc.add_dossier_note(&id, "Verhuisd naar Houten.", &reader("verhuizing"))?;
    }
    wait_for("Gemeente Houten to read the dossier", || reads(3)).await?;
    say(format!(
        "   Gemeente Houten reads it; Zeist gets no key for what is written from now on ({} ms)",
        start.elapsed().as_millis()
    ));
    Ok(start.elapsed().as_millis() as u64)
}

/// Polls `ok` until it holds, for at most 60 s.
async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !ok() {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "waited 60 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn free_addr() -> anyhow::Result<Multiaddr> {
    Ok(regiosync_net::free_loopback_tcp()?)
}

/// Starts node `me` with its web app on a free loopback port; returns it and the
/// web app's address.
fn start(dir: &Path, addrs: &[Multiaddr], me: usize) -> anyhow::Result<(Running, String)> {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let listen = addrs[me].clone();
    let node = Node::open(dir)?;
    let lock = regiosync_node::run_lock::RunLock::acquire(node.dir())?;
    let web = super::up::prepare_web(
        dir,
        &super::up::WebArgs {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            cert: None,
        },
    )?;
    let url = web.endpoint.url.clone();
    let peers: Vec<Multiaddr> = addrs
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != me)
        .map(|(_, a)| a.clone())
        .collect();
    let config = ServiceConfig {
        listen: vec![listen],
        peers,
        mdns: false,
        sync_interval: Duration::from_secs(2),
        poll_interval: Duration::from_millis(100),
        web: Some(web.endpoint.clone()),
        ..ServiceConfig::default()
    };
    let join = tokio::spawn(super::up::serve(node, config, Some(web), c, lock));
    Ok((Running { cancel, join }, url))
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
async fn converge(
    dirs: &[PathBuf],
    docs: &[DocId],
    nodes: &[Option<Running>],
    say: &impl Fn(String),
) -> anyhow::Result<u64> {
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
        if start.elapsed() >= Duration::from_secs(60) {
            // Say where they differ, so that the failure can be looked into.
            let per_node: Vec<String> = all
                .iter()
                .enumerate()
                .map(|(i, ps)| {
                    let held = ps.iter().flatten().count();
                    let same = if ps == &all[0] { "as" } else { "unlike" };
                    let stopped = match nodes.get(i) {
                        Some(Some(n)) if n.join.is_finished() => " (its node has stopped)",
                        Some(None) => " (its node is down)",
                        _ => "",
                    };
                    format!(
                        "{} reads {held} of {} plans, {same} {}{stopped}",
                        PARTIES[i].0,
                        docs.len(),
                        PARTIES[0].0
                    )
                })
                .collect();
            anyhow::bail!(
                "the nodes did not converge within 60 s: {}",
                per_node.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
