//! Crash safety: a child process appends edits in a loop and reports each one after
//! the node said it was committed; the parent kills it with SIGKILL at random moments,
//! many times. Every reported edit must be present afterwards, and the store must open
//! cleanly (integrity check) every time.
//!
//! The child is this same test binary, started with `--ignored --exact crash_child`
//! and the data dir in an environment variable.

#![allow(clippy::print_stdout)] // the child reports acknowledged edits on stdout

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use regiosync_core::id::{PartyName, Role};
use regiosync_core::plan::{AgreementInput, PlanKind};
use regiosync_node::Node;

const ENV_DIR: &str = "REGIOSYNC_CRASH_DIR";
const ENV_DOC: &str = "REGIOSYNC_CRASH_DOC";
const ENV_RUN: &str = "REGIOSYNC_CRASH_RUN";
const KILLS: usize = 30;

#[test]
#[ignore = "child process of crash_safety_under_sigkill; started by it"]
fn crash_child() {
    let (Ok(dir), Ok(doc), Ok(run)) = (
        std::env::var(ENV_DIR),
        std::env::var(ENV_DOC),
        std::env::var(ENV_RUN),
    ) else {
        panic!("crash_child is started by crash_safety_under_sigkill");
    };
    let mut node = Node::open(Path::new(&dir)).unwrap();
    let id = node.resolve(&doc).unwrap();
    let owner = PartyName::new("roc-midden").unwrap();
    for i in 0.. {
        let title = format!("run{run}-edit{i}");
        node.add_agreement(
            &id,
            &AgreementInput {
                title: title.clone(),
                owner: owner.clone(),
                deadline: None,
            },
        )
        .unwrap();
        // Every third edit also rewrites a section, so snapshots and text edits are
        // interrupted too.
        if i % 3 == 0 {
            node.set_section(&id, "Log", &format!("{title}\n").repeat(i % 50 + 1))
                .unwrap();
        }
        println!("committed {title}");
    }
}

#[test]
fn crash_safety_under_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    Node::init(&dir, PartyName::new("roc-midden").unwrap(), Role::Roc, None).unwrap();
    let mut node = Node::open(&dir).unwrap();
    node.create_region("Regio").unwrap();
    let id = node.create_plan(PlanKind::Jeugdplan, "Crash").unwrap();
    drop(node);
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
    let mut acknowledged: Vec<String> = Vec::new();

    for run in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, &dir)
            .env(ENV_DOC, id.to_string())
            .env(ENV_RUN, run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(t) = line.strip_prefix("committed ") {
                    let _ = tx.send(t.to_owned());
                }
            }
        });
        // Wait for the first acknowledged edit (so the kill lands mid-loop, not during
        // start-up), then kill at a random moment.
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child made no edit");
        acknowledged.push(first);
        let delay = Duration::from_millis(rng.random_range(1..150));
        let start = Instant::now();
        while start.elapsed() < delay {
            if let Ok(t) = rx.recv_timeout(delay - start.elapsed().min(delay)) {
                acknowledged.push(t);
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        reader.join().unwrap();
        acknowledged.extend(rx.try_iter());

        // The store must open cleanly and hold every acknowledged edit.
        let node =
            Node::open(&dir).unwrap_or_else(|e| panic!("run {run}: store does not open: {e}"));
        node.store().integrity_check().unwrap();
        let plan = node.plan(&id).unwrap();
        let titles: std::collections::HashSet<&str> =
            plan.agreements.iter().map(|a| a.title.as_str()).collect();
        for t in &acknowledged {
            assert!(
                titles.contains(t.as_str()),
                "run {run}: acknowledged edit {t} was lost"
            );
        }
    }
    assert!(
        acknowledged.len() >= KILLS,
        "too few edits to mean anything"
    );
}
