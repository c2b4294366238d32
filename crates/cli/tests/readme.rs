//! The README's Quickstart, run as a new user would type it: every `sh` block of the
//! "Quickstart" section up to "Running a node", taken from README.md itself (so the
//! README cannot drift from the program), line by line through `sh` on scratch data
//! dirs, with `regiosync` on the PATH. Only the placeholders the README itself
//! explains are filled in (the plan id `3f9a2c1d`, the agreement and comment ids, the
//! invite code), and the one line that needs a second machine on the network (the
//! network join) is left out: its offline equivalent, in the next block, runs.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// The `sh` blocks of the Quickstart, as logical lines (continuations joined,
/// comments and blank lines dropped).
fn quickstart_lines() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let start = readme.find("## Quickstart").expect("a Quickstart section");
    let end = readme[start..]
        .find("Running a node")
        .map_or(readme.len(), |e| start + e);
    let mut lines = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in readme[start..end].lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let code = strip_comment(line);
        if let Some(head) = code.trim_end().strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(code);
        let full = std::mem::take(&mut pending).trim().to_owned();
        if !full.is_empty() {
            lines.push(full);
        }
    }
    lines
}

/// The line without a trailing `# comment` (a `#` after white space, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

struct User {
    home: tempfile::TempDir,
    bin: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl User {
    fn new() -> Self {
        let bin = tempfile::tempdir().unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_regiosync"),
            bin.path().join("regiosync"),
        )
        .unwrap();
        Self {
            home: tempfile::tempdir().unwrap(),
            bin,
            env: vec![],
        }
    }

    fn sh(&self, line: &str) -> Output {
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(self.home.path())
            .env("HOME", self.home.path())
            .env("PATH", path)
            .env_remove("REGIOSYNC_HOME")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, line: &str) -> String {
        let out = self.sh(line);
        assert!(
            out.status.success(),
            "the README line\n    {line}\nfailed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, line: &str) -> Value {
        serde_json::from_str(&self.ok(&format!("{line} --json"))).unwrap()
    }
}

#[cfg(unix)]
#[test]
fn the_readme_quickstart_runs_as_written() {
    let lines = quickstart_lines();
    assert!(lines.len() > 20, "the Quickstart was not found: {lines:?}");
    let user = &mut User::new();
    // The file the README's `--file aanpak.md` reads: the user's own text.
    std::fs::write(
        user.home.path().join("aanpak.md"),
        "Samen met het onderwijs.\n",
    )
    .unwrap();
    let mut subst: Vec<(String, String)> = vec![];
    let mut ran = 0;
    for line in &lines {
        let mut cmd = line.clone();
        for (from, to) in &subst {
            cmd = cmd.replace(from, to);
        }
        if let Some(assign) = cmd.strip_prefix("export ") {
            let (k, v) = assign.split_once('=').unwrap();
            let value = user.ok(&format!("printf %s {v}"));
            user.env.push((k.to_owned(), value));
            continue;
        }
        if cmd.contains(" join ") && !cmd.contains("--request-out") {
            // Needs the inviter's running node on the network: the next block does
            // the same offline.
            continue;
        }
        let out = user.ok(&cmd);
        ran += 1;
        if cmd.contains("doc new plan") {
            let list = user.json("regiosync doc list");
            let short = list[0]["short"].as_str().unwrap().to_owned();
            subst.push(("3f9a2c1d".into(), short));
        }
        if cmd.contains("doc agreement add") {
            let id = subst_value(&subst, "3f9a2c1d");
            let shown = user.json(&format!("regiosync doc show {id} --format json"));
            let a = shown["agreements"][0]["id"].as_str().unwrap().to_owned();
            subst.push(("a-1b2c3d4e".into(), a));
        }
        if cmd.contains("doc comment add") {
            let id = subst_value(&subst, "3f9a2c1d");
            let list = user.json(&format!("regiosync doc comment list {id}"));
            let c = list[0]["id"].as_str().unwrap().to_owned();
            subst.push(("c-5d6e7f80".into(), c));
        }
        if cmd.contains("regiosync invite ") {
            let code = out
                .split_whitespace()
                .find(|w| w.starts_with("regiosync-invite-1:"))
                .expect("invite prints a code")
                .to_owned();
            subst.push(("'regiosync-invite-1:…'".into(), format!("'{code}'")));
        }
    }
    assert!(ran > 20, "only {ran} lines ran");
    // Where the Quickstart leaves the user: the ROC is a member, the plan is theirs.
    let parties = user.json("regiosync --data-dir roc party list");
    assert!(parties.get("roc-midden").is_some(), "{parties}");
    let id = subst_value(&subst, "3f9a2c1d");
    let acl = user.json(&format!("regiosync doc acl {id}"));
    assert_eq!(acl["everyone_writes"], true, "{acl}");
    // The section the Quickstart moved stands where it put it.
    let shown = user.json(&format!("regiosync doc show {id} --format json"));
    let titles: Vec<&str> = shown["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles[..2],
        ["Inleiding", "Aanpak in de regio"],
        "{titles:?}"
    );
}

fn subst_value(subst: &[(String, String)], key: &str) -> String {
    subst
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{key} was never printed"))
}
