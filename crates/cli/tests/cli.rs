//! Runs the built `regiosync` binary against temporary data dirs and checks its output
//! and exit codes, as a municipality's IT admin would meet them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("node");
        Self { _tmp: tmp, dir }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_regiosync"));
        c.args(args)
            .env_remove("REGIOSYNC_HOME")
            .env_remove("REGIOSYNC_PASSPHRASE_FILE")
            .env_remove("RUST_LOG")
            .env("USER", "testgebruiker")
            .arg("--data-dir")
            .arg(&self.dir);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs with `--json`, expects success, returns the JSON value.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.run(&a);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// A node of the ROC that founded its own region.
    fn init(&self) -> Value {
        let v = self.json(&["init", "--party", "roc-midden", "--role", "roc"]);
        self.json(&["region", "create", "Regio Midden"]);
        v
    }
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts a failure with `code` and a single-line error containing `needle`.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
    if code == 1 {
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "one-line error expected: {stderr}"
        );
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn snapshot_dir(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn init_prints_ids_and_protects_the_key() {
    let env = Env::new();
    let out = env.run(&["init", "--party", "gemeente-zeist", "--role", "gemeente"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("node id:        12D3KooW"), "{text}");
    assert!(text.contains("age recipient:  age1"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.dir.join("node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The printed node id is the one on disk.
    let info: Value =
        serde_json::from_slice(&std::fs::read(env.dir.join("node.json")).unwrap()).unwrap();
    assert!(text.contains(info["node_id"].as_str().unwrap()));
    assert_eq!(info["party"], "gemeente-zeist");
}

#[test]
fn second_init_is_refused_and_changes_nothing() {
    let env = Env::new();
    env.init();
    let before = snapshot_dir(&env.dir);
    let out = env.run(&["init", "--party", "roc-midden", "--role", "roc"]);
    assert_fails(&out, 1, "already holds a regiosync node");
    assert_eq!(snapshot_dir(&env.dir), before);
}

#[test]
fn passphrase_protected_init() {
    let env = Env::new();
    let pass = env._tmp.path().join("pass.txt");
    std::fs::write(&pass, "een lange zin\n").unwrap();
    let v = env.json(&[
        "init",
        "--party",
        "swv-utrecht",
        "--role",
        "swv",
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert_eq!(v["key_protection"], "passphrase");
    let key = std::fs::read_to_string(env.dir.join("node.key")).unwrap();
    assert!(key.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    // Signing needs the passphrase: without it a clear error, with it success.
    assert_fails(
        &env.run(&["region", "create", "R"]),
        1,
        "pass --passphrase-file",
    );
    let p = pass.to_str().unwrap();
    env.json(&["region", "create", "R", "--passphrase-file", p]);
    env.json(&[
        "doc",
        "new",
        "plan",
        "--kind",
        "jeugdplan",
        "--title",
        "J",
        "--passphrase-file",
        p,
    ]);
    // Reading does not need it.
    assert_eq!(env.json(&["doc", "list"]).as_array().unwrap().len(), 1);
    let wrong = env._tmp.path().join("wrong.txt");
    std::fs::write(&wrong, "fout\n").unwrap();
    let out = env.run(&["doc", "list", "--passphrase-file", wrong.to_str().unwrap()]);
    assert_fails(&out, 1, "passphrase does not open");

    let empty = env._tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let other = Env::new();
    let out = other.run(&[
        "init",
        "--party",
        "swv-utrecht",
        "--role",
        "swv",
        "--passphrase-file",
        empty.to_str().unwrap(),
    ]);
    assert_fails(&out, 1, "passphrase file");
    assert!(!other.dir.join("node.key").exists());
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    assert_fails(
        &env.run(&["init", "--party", "roc-midden", "--role", "school"]),
        2,
        "unknown role 'school'",
    );
    assert_fails(
        &env.run(&["init", "--party", "ROC Midden", "--role", "roc"]),
        2,
        "not a valid party name",
    );
    assert!(!env.dir.exists(), "a refused init creates nothing");
    env.json(&["init", "--party", "roc-midden", "--role", "roc"]);
    assert_fails(
        &env.run(&["doc", "new", "plan", "--kind", "jeugdplan", "--title", "x"]),
        1,
        "not in a region yet",
    );
    env.json(&["region", "create", "Regio"]);
    assert_fails(
        &env.run(&["doc", "new", "plan", "--kind", "begroting", "--title", "x"]),
        2,
        "unknown plan kind 'begroting'",
    );
    let id = env.json(&["doc", "new", "plan", "--kind", "jeugdplan", "--title", "J"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in ["31-03-2027", "2027-02-30", "morgen"] {
        assert_fails(
            &env.run(&[
                "doc",
                "agreement",
                "add",
                &id,
                "--title",
                "t",
                "--owner",
                "roc-midden",
                "--deadline",
                bad,
            ]),
            2,
            "write it as YYYY-MM-DD",
        );
    }
    let out = env.run(&["doc", "frobnicate", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "usage");
    // A usage error in JSON names what is missing or wrong.
    let out = env.run(&["doc", "show", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("not provided") && m.contains("<ID>"), "{m}");
    let out = env.run(&[
        "doc",
        "agreement",
        "set",
        "x",
        "a-1",
        "--status",
        "klaar",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("open, in-uitvoering, afgerond, vervallen"),
        "{m}"
    );
}

#[test]
fn missing_and_foreign_data_dirs() {
    let env = Env::new();
    assert_fails(&env.run(&["doc", "list"]), 1, "run `regiosync init");
    std::fs::create_dir_all(&env.dir).unwrap();
    std::fs::write(env.dir.join("notes.txt"), "not a node").unwrap();
    assert_fails(&env.run(&["doc", "list"]), 1, "no regiosync node in");
    std::fs::write(env.dir.join("node.json"), "{\"hello\": 1}").unwrap();
    assert_fails(
        &env.run(&["doc", "list"]),
        1,
        "damaged or not a regiosync node file",
    );
}

#[test]
fn unknown_and_ambiguous_document_ids() {
    let env = Env::new();
    env.init();
    assert_fails(
        &env.run(&["doc", "show", "0123456789abcdef"]),
        1,
        "no document matches",
    );
    assert_fails(&env.run(&["doc", "show", "xyz"]), 1, "is not a document id");
    let out = env.run(&["doc", "show", "0123456789", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no document matches")
    );
}

#[test]
fn section_move_changes_the_order_of_doc_show_and_the_exports() {
    let env = Env::new();
    env.init();
    let id = env.json(&[
        "doc",
        "new",
        "plan",
        "--kind",
        "oogo-verslag",
        "--title",
        "OOGO",
    ])["short"]
        .as_str()
        .unwrap()
        .to_owned();
    let titles = || -> Vec<String> {
        env.json(&["doc", "show", &id, "--format", "json"])["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        titles(),
        [
            "Aanwezigen",
            "Agenda",
            "Bespreking",
            "Besluiten en afspraken",
            "Standpunten van partijen",
            "Vervolg"
        ]
    );
    let moved = env.json(&["doc", "section", "move", &id, "Vervolg", "--first"]);
    assert_eq!(
        (moved["moved"].as_bool(), moved["position"].as_u64()),
        (Some(true), Some(1))
    );
    let vervolg = moved["section"].as_str().unwrap().to_owned();
    assert!(vervolg.starts_with("s-"), "{moved}");
    // By id, relative to a title; the human message says where it went.
    let out = env.run(&[
        "doc",
        "section",
        "move",
        &id,
        &vervolg,
        "--after",
        "bespreking",
    ]);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("Moved section Vervolg (s-")
            && stdout(&out).contains("after bespreking: it is now section 4 of 6"),
        "{}",
        stdout(&out)
    );
    env.json(&["doc", "section", "move", &id, "Aanwezigen", "--last"]);
    env.json(&[
        "doc",
        "section",
        "move",
        &id,
        "Agenda",
        "--before",
        "Besluiten en afspraken",
    ]);
    let want = [
        "Bespreking",
        "Vervolg",
        "Agenda",
        "Besluiten en afspraken",
        "Standpunten van partijen",
        "Aanwezigen",
    ];
    assert_eq!(titles(), want);
    // doc show (Markdown) and the HTML export list them in that order too.
    let positions = |text: &str| -> Vec<usize> {
        want.iter()
            .map(|t| {
                text.find(t)
                    .unwrap_or_else(|| panic!("{t} missing in {text}"))
            })
            .collect()
    };
    for text in [
        stdout(&env.run(&["doc", "show", &id])),
        stdout(&env.run(&["doc", "export", &id, "--format", "html"])),
    ] {
        let p = positions(&text);
        assert!(p.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
    // Where it is already: nothing is written, and it says so.
    let before = env.json(&["doc", "history", &id]);
    let out = env.run(&["doc", "section", "move", &id, "Bespreking", "--first"]);
    assert_ok(&out);
    assert!(stdout(&out).contains("already there"), "{}", stdout(&out));
    assert_eq!(env.json(&["doc", "history", &id]), before);
    // Mistakes: an unknown section, and no place or two places given.
    assert_fails(
        &env.run(&["doc", "section", "move", &id, "Bestaat niet", "--first"]),
        1,
        "no section 'Bestaat niet'",
    );
    assert_fails(
        &env.run(&[
            "doc",
            "section",
            "move",
            &id,
            "Agenda",
            "--after",
            "Bestaat niet",
        ]),
        1,
        "no section 'Bestaat niet'",
    );
    assert_fails(
        &env.run(&["doc", "section", "move", &id, "Agenda"]),
        2,
        "--first",
    );
    assert_fails(
        &env.run(&["doc", "section", "move", &id, "Agenda", "--first", "--last"]),
        2,
        "cannot be used with",
    );
    assert_eq!(titles(), want);
}

#[test]
fn show_json_is_exactly_what_the_edits_wrote() {
    let env = Env::new();
    env.init();
    let created = env.json(&[
        "doc",
        "new",
        "plan",
        "--kind",
        "vsv-programma",
        "--title",
        "Regionaal programma vsv 2025-2028",
    ]);
    let id = created["id"].as_str().unwrap().to_owned();
    let short = created["short"].as_str().unwrap().to_owned();
    assert!(id.starts_with(&short) && short.len() >= 8);

    let s1 = env.run_stdin(
        &["doc", "section", "set", &short, "Inleiding", "--json"],
        "Samen tegen voortijdig schoolverlaten.\n",
    );
    assert_ok(&s1);
    let s1: Value = serde_json::from_slice(&s1.stdout).unwrap();
    let file = env._tmp.path().join("aanpak.md");
    std::fs::write(&file, "1. Verzuim\n2. Thuiszitters\n").unwrap();
    let s2 = env.json(&[
        "doc",
        "section",
        "set",
        &short,
        "Aanpak",
        "--file",
        file.to_str().unwrap(),
    ]);
    // Replace the first section's text by title, case-insensitively.
    let s1b = env.run_stdin(
        &["doc", "section", "set", &short, "inleiding", "--json"],
        "Samen tegen uitval.\n",
    );
    assert_ok(&s1b);
    let s1b: Value = serde_json::from_slice(&s1b.stdout).unwrap();
    assert_eq!(s1b["section"], s1["section"]);
    assert_eq!(s1b["created"], false);
    assert_eq!(s1b["changed"], true);

    let a1 = env.json(&[
        "doc",
        "agreement",
        "add",
        &short,
        "--title",
        "Sluitende aanpak 18-",
        "--owner",
        "roc-midden",
        "--deadline",
        "2026-12-31",
    ]);
    let a2 = env.json(&[
        "doc",
        "agreement",
        "add",
        &short,
        "--title",
        "Warme overdracht vo-mbo",
        "--owner",
        "roc-midden",
    ]);

    let mut shown = env.json(&["doc", "show", &short, "--format", "json"]);
    // The template's other sections are there, empty; the written ones in order.
    let sections = shown["sections"].take();
    let written: Vec<Value> = sections
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["text"] != "")
        .cloned()
        .collect();
    assert_eq!(sections.as_array().unwrap().len(), 8, "{sections}");
    let para = |t: &str| json!({"type": "paragraph", "runs": [{"text": t}]});
    let item = |t: &str| json!({"type": "numbered", "runs": [{"text": t}]});
    assert_eq!(
        written,
        vec![
            json!({"id": s1["section"], "title": "Inleiding", "text": "Samen tegen uitval.", "blocks": [para("Samen tegen uitval.")]}),
            json!({"id": s2["section"], "title": "Aanpak", "text": "1. Verzuim\n2. Thuiszitters", "blocks": [item("Verzuim"), item("Thuiszitters")]}),
        ]
    );
    let expected = json!({
        "id": id,
        "schema": 2,
        "kind": "vsv-programma",
        "title": "Regionaal programma vsv 2025-2028",
        "owner": "roc-midden",
        "sections": null,
        "agreements": [
            {"id": a1["agreement"], "title": "Sluitende aanpak 18-", "description": "", "owner": "roc-midden", "deadline": "2026-12-31", "status": "open", "funding": null, "sections": []},
            {"id": a2["agreement"], "title": "Warme overdracht vo-mbo", "description": "", "owner": "roc-midden", "deadline": null, "status": "open", "funding": null, "sections": []},
        ],
        "comments": [],
        "conflicts": [],
    });
    assert_eq!(shown, expected);

    // The Markdown view carries the same content, in order.
    let md = stdout(&env.run(&["doc", "show", &short]));
    let p = |s: &str| {
        md.find(s)
            .unwrap_or_else(|| panic!("'{s}' missing in:\n{md}"))
    };
    assert!(p("# Regionaal programma vsv 2025-2028") < p("## Inleiding"));
    assert!(
        p("## Inleiding") < p("Samen tegen uitval.") && p("Samen tegen uitval.") < p("## Aanpak")
    );
    assert!(p("## Afspraken") < p("| Sluitende aanpak 18- | roc-midden | 2026-12-31 | open |"));

    // History: one change per edit, all by this device.
    let node_id =
        serde_json::from_slice::<Value>(&std::fs::read(env.dir.join("node.json")).unwrap())
            .unwrap()["node_id"]
            .clone();
    let log = env.json(&["doc", "log", &short]);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 6);
    assert!(log.iter().all(|e| e["party"] == "roc-midden"));
    assert!(
        log.iter()
            .all(|e| e["device"] == node_id && e["party"] == "roc-midden")
    );
    let human_log = stdout(&env.run(&["doc", "log", &short]));
    assert_eq!(human_log.lines().count(), 6);
    assert!(human_log.contains("add agreement Warme overdracht vo-mbo"));

    let list = env.json(&["doc", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["title"], "Regionaal programma vsv 2025-2028");
}

#[test]
fn global_flags_before_or_after_the_subcommand() {
    let env = Env::new();
    env.init();
    let mut c = Command::new(env!("CARGO_BIN_EXE_regiosync"));
    let out = c
        .args(["--json", "--data-dir"])
        .arg(&env.dir)
        .args(["doc", "list"])
        .env_remove("REGIOSYNC_HOME")
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!([])
    );
    // $REGIOSYNC_HOME is used when --data-dir is absent.
    let out = Command::new(env!("CARGO_BIN_EXE_regiosync"))
        .args(["doc", "list", "--json"])
        .env("REGIOSYNC_HOME", &env.dir)
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!([])
    );
}

#[test]
fn invalid_section_input_is_refused_and_changes_nothing() {
    let env = Env::new();
    env.init();
    let id = env.json(&["doc", "new", "plan", "--kind", "jeugdplan", "--title", "J"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = env.json(&["doc", "show", &id]);
    let bad = env._tmp.path().join("latin1.txt");
    std::fs::write(&bad, b"caf\xe9").unwrap();
    assert_fails(
        &env.run(&[
            "doc",
            "section",
            "set",
            &id,
            "X",
            "--file",
            bad.to_str().unwrap(),
        ]),
        1,
        "not UTF-8",
    );
    assert_fails(
        &env.run(&[
            "doc",
            "section",
            "set",
            &id,
            "X",
            "--file",
            "/nonexistent/file",
        ]),
        1,
        "cannot read",
    );
    assert_fails(
        &env.run_stdin(&["doc", "section", "set", &id, " "], "x"),
        1,
        "section title is invalid",
    );
    assert_eq!(env.json(&["doc", "show", &id]), before);
}

#[test]
fn damaged_store_gives_a_clear_error_and_is_left_as_it_was() {
    let env = Env::new();
    env.init();
    let id = env.json(&["doc", "new", "plan", "--kind", "jeugdplan", "--title", "J"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..30 {
        let out = env.run_stdin(
            &["doc", "section", "set", &id, &format!("Sectie {i}")],
            &"tekst ".repeat(200),
        );
        assert_ok(&out);
    }
    let store = env.dir.join("store.sqlite");
    // Make sure everything is in the main file (no WAL) before damaging it.
    assert_ok(&env.run(&["doc", "list"]));
    let _ = std::fs::remove_file(env.dir.join("store.sqlite-wal"));
    let _ = std::fs::remove_file(env.dir.join("store.sqlite-shm"));
    let full = std::fs::read(&store).unwrap();
    assert!(
        full.len() > 8192,
        "store too small for the test: {}",
        full.len()
    );

    let mut bad = full.clone();
    for b in &mut bad[4096..8192] {
        *b ^= 0x5A;
    }
    std::fs::write(&store, &bad).unwrap();
    let out = env.run(&["doc", "show", &id]);
    assert_fails(&out, 1, "is damaged");
    assert_eq!(
        std::fs::read(&store).unwrap(),
        bad,
        "the damaged file must be left as it was"
    );

    std::fs::write(&store, &full[..full.len() / 2]).unwrap();
    assert_fails(&env.run(&["doc", "list"]), 1, "is damaged");

    std::fs::write(&store, b"").unwrap();
    assert_fails(&env.run(&["doc", "list"]), 1, "is damaged");

    std::fs::write(&store, b"hello, I am a text file and not a database at all; long enough for the header check of a hundred bytes").unwrap();
    assert_fails(&env.run(&["doc", "list"]), 1, "not a regiosync store");
}

#[test]
fn broken_pipe_is_not_an_error() {
    let env = Env::new();
    env.init();
    let id = env.json(&["doc", "new", "plan", "--kind", "jeugdplan", "--title", "J"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ok(&env.run_stdin(
        &["doc", "section", "set", &id, "Lang"],
        &"regel\n".repeat(50_000),
    ));
    let mut child = env
        .cmd(&["doc", "show", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read a little, then close the pipe.
    let mut first = [0u8; 16];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn invitation_flow_through_files_and_device_removal() {
    let kern = Env::new();
    kern.json(&[
        "init",
        "--party",
        "gemeente-utrecht",
        "--role",
        "kerngemeente",
    ]);
    kern.json(&["region", "create", "Regio Utrecht"]);
    let roc = Env::new();
    let roc_info = roc.json(&["init", "--party", "roc-midden", "--role", "roc"]);

    let code = kern.json(&[
        "invite",
        "--party",
        "roc-midden",
        "--role",
        "roc",
        "--expires",
        "2h",
    ]);
    let code = code["code"].as_str().unwrap().to_owned();
    let req = roc._tmp.path().join("join.req");
    roc.json(&["join", &code, "--request-out", req.to_str().unwrap()]);
    let bundle = kern._tmp.path().join("region.bundle");
    let accepted = kern.json(&[
        "accept",
        req.to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(accepted["accepted"]["party"], "roc-midden");
    assert_eq!(accepted["accepted"]["new_party"], true);
    let imported = roc.json(&["import", bundle.to_str().unwrap()]);
    assert_eq!(imported["joined"], true);

    // Both nodes see the same region.
    assert_eq!(
        kern.json(&["region", "show"]),
        roc.json(&["region", "show"])
    );
    let parties = roc.json(&["party", "list"]);
    assert_eq!(parties["roc-midden"]["role"], "roc");
    assert_eq!(parties["gemeente-utrecht"]["admin"], true);

    // A reused request is refused with a one-line error; the region is unchanged.
    let before = kern.json(&["region", "show"]);
    assert_fails(
        &kern.run(&[
            "accept",
            req.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ]),
        1,
        "already used",
    );
    assert_eq!(kern.json(&["region", "show"]), before);
    // Garbage instead of a request or a bundle.
    let junk = kern._tmp.path().join("junk");
    std::fs::write(&junk, b"not a request").unwrap();
    assert_fails(
        &kern.run(&[
            "accept",
            junk.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ]),
        1,
        "not a join request",
    );
    assert_fails(
        &roc.run(&["import", junk.to_str().unwrap()]),
        1,
        "not a bundle",
    );
    assert_fails(
        &roc.run(&["join", "regiosync-invite-1:AAAA", "--request-out", "/tmp/x"]),
        1,
        "already a member",
    );

    // The ROC writes a plan; it restricts writers; the kerngemeente removes the ROC device.
    let doc = roc.json(&[
        "doc",
        "new",
        "plan",
        "--kind",
        "vsv-programma",
        "--title",
        "VSV",
    ]);
    let doc = doc["short"].as_str().unwrap().to_owned();
    // A new plan is for every party of the region, now and later.
    let acl = roc.json(&["doc", "acl", &doc]);
    assert_eq!(
        (
            acl["everyone_reads"].clone(),
            acl["everyone_writes"].clone()
        ),
        (json!(true), json!(true))
    );
    // --writers sets the list, and says what it was before.
    let out = roc.run(&["doc", "acl", &doc, "--writers", "roc-midden"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Changed the access lists. Before:"), "{text}");
    assert!(text.contains("writers: roc-midden\n"), "{text}");
    let acl = roc.json(&["doc", "acl", &doc]);
    assert_eq!(acl["writers"], json!(["roc-midden"]));
    assert_eq!(acl["everyone_writes"], json!(false));
    assert_eq!(acl["everyone_reads"], json!(true));
    // --add-writer adds to it; the owner cannot be taken off; one party cannot be
    // taken off "every party" without naming the others.
    let acl = roc.json(&["doc", "acl", &doc, "--add-writer", "gemeente-utrecht"]);
    assert_eq!(acl["writers"], json!(["gemeente-utrecht", "roc-midden"]));
    assert_fails(
        &roc.run(&["doc", "acl", &doc, "--remove-writer", "roc-midden"]),
        1,
        "owns the plan",
    );
    assert_fails(
        &roc.run(&["doc", "acl", &doc, "--remove-reader", "gemeente-utrecht"]),
        1,
        "--readers PARTY",
    );
    assert_fails(
        &roc.run(&["doc", "acl", &doc, "--add-reader", "gemeente-zeist"]),
        1,
        "not a party of the region",
    );
    let acl = roc.json(&["doc", "acl", &doc, "--remove-writer", "gemeente-utrecht"]);
    assert_eq!(acl["writers"], json!(["roc-midden"]));
    let roc_bundle = roc._tmp.path().join("roc.bundle");
    roc.json(&["export", "--out", roc_bundle.to_str().unwrap()]);
    kern.json(&["import", roc_bundle.to_str().unwrap()]);
    let device = roc_info["node_id"].as_str().unwrap();
    let short = &device[device.len() - 8..];
    kern.json(&["device", "remove", short]);
    kern.json(&["export", "--out", bundle.to_str().unwrap()]);
    roc.json(&["import", bundle.to_str().unwrap()]);
    let devices = roc.json(&["device", "list"]);
    assert_eq!(devices[device]["removed"], true);
    let out = roc.run_stdin(
        &["doc", "section", "set", &doc, "Aanpak"],
        "na verwijdering",
    );
    // The removed device says so before anything else, then the one-line error.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (warning, error) = stderr.trim_end().split_once('\n').unwrap();
    assert!(
        warning.starts_with("warning: this device was removed from the region on ")
            && warning
                .contains(" by gemeente-utrecht: changes made here will be refused by the region"),
        "{stderr}"
    );
    assert!(
        error.starts_with("error: ") && error.contains("may not change the document"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1));
    // `status` and `up` give the reason instead of "not running" or a node that dials.
    for args in [
        &["status"][..],
        &[
            "up",
            "--no-mdns",
            "--web-listen",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
    ] {
        assert_fails(
            &run_within(&roc, args, 60),
            1,
            "this device was removed from the region on ",
        );
    }
    // A non-admin cannot invite a new party.
    let out = roc.run(&["invite", "--party", "gemeente-zeist", "--role", "gemeente"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an active member"));
}

#[test]
fn demo_converges_five_parties_on_loopback() {
    let env = Env::new();
    let dir = env._tmp.path().join("demo");
    let out = env.run(&["demo", "--dir", dir.to_str().unwrap(), "--duration", "1"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert_eq!(text.matches("all five nodes agree").count(), 3, "{text}");
    // The dossier reaches the woongemeente and, after the move, the new one; the
    // others hold nothing of it.
    assert!(text.contains("Gemeente Zeist reads it"), "{text}");
    assert_eq!(text.matches("holds nothing of it").count(), 3, "{text}");
    assert!(text.contains("Gemeente Houten reads it"), "{text}");
    // Each party's web app, on loopback, with its two accounts.
    assert_eq!(text.matches("https://127.0.0.1:").count(), 5, "{text}");
    assert_eq!(text.matches("   beleid / ").count(), 5, "{text}");
    assert_eq!(text.matches("   dossier / ").count(), 5, "{text}");
    assert!(
        text.contains("/ip4/127.0.0.1/tcp/"),
        "loopback only: {text}"
    );
    // The nodes are kept with --dir and agree afterwards too.
    let list = |p: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_regiosync"));
        let o = c
            .args(["doc", "list", "--json", "--data-dir"])
            .arg(dir.join(p))
            .output()
            .unwrap();
        assert_ok(&o);
        let mut docs = serde_json::from_slice::<Value>(&o.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        docs.sort_by_key(|d| d["id"].as_str().unwrap().to_owned());
        docs
    };
    assert_eq!(list("roc-midden").len(), 2);
    assert_eq!(list("swv-utrecht"), list("gemeente-houten"));
}

/// A free loopback TCP port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_up_processes_sync_and_stop_cleanly_on_sigterm() {
    let kern = Env::new();
    kern.json(&[
        "init",
        "--party",
        "gemeente-utrecht",
        "--role",
        "kerngemeente",
    ]);
    kern.json(&["region", "create", "Regio Utrecht"]);
    let roc = Env::new();
    roc.json(&["init", "--party", "roc-midden", "--role", "roc"]);
    let code = kern.json(&["invite", "--party", "roc-midden", "--role", "roc"])["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let req = roc._tmp.path().join("join.req");
    roc.json(&["join", &code, "--request-out", req.to_str().unwrap()]);
    let bundle = kern._tmp.path().join("r.bundle");
    kern.json(&[
        "accept",
        req.to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
    ]);
    roc.json(&["import", bundle.to_str().unwrap()]);

    let (pk, pr) = (free_port(), free_port());
    let up = |env: &Env, port: u16, peer: Option<u16>| {
        let mut c = env.cmd(&[
            "up",
            "--no-mdns",
            "--web-listen",
            "127.0.0.1:0",
            "--sync-interval",
            "1",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{port}"),
        ]);
        if let Some(p) = peer {
            c.args(["--peer", &format!("/ip4/127.0.0.1/tcp/{p}")]);
        }
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The ROC starts first: its first dial finds nobody listening, and it must keep
    // redialling its --peer address (a partner's server that is down).
    let mut roc_up = up(&roc, pr, Some(pk));
    let mut kern_up = up(&kern, pk, None);

    // An edit made with the CLI while the node runs reaches the other node.
    let doc = kern.json(&[
        "doc",
        "new",
        "plan",
        "--kind",
        "jeugdplan",
        "--title",
        "Jeugdplan 2027",
    ]);
    let id = doc["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let o = roc.run(&["doc", "show", &id, "--json"]);
        if o.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the plan did not reach the ROC"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The running node reports its peer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let o = roc.run(&["status", "--json"]);
        if o.status.success() {
            let s: Value = serde_json::from_slice(&o.stdout).unwrap();
            if s["peers"]
                .as_object()
                .unwrap()
                .values()
                .any(|p| p["connected"] == true && p["party"] == "gemeente-utrecht")
            {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never showed the peer"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    for child in [&mut kern_up, &mut roc_up] {
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    for child in [kern_up, roc_up] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("Node stopped"));
    }
    // Stopped: status says so.
    assert_fails(&roc.run(&["status"]), 1, "is not running");
}

#[test]
fn join_over_the_network_between_processes() {
    let kern = Env::new();
    kern.json(&[
        "init",
        "--party",
        "gemeente-utrecht",
        "--role",
        "kerngemeente",
    ]);
    kern.json(&["region", "create", "Regio Utrecht"]);
    let port = free_port();
    let mut kern_up = kern
        .cmd(&[
            "up",
            "--no-mdns",
            "--web-listen",
            "127.0.0.1:0",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the node runs, an invite carries its address.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let code = loop {
        if kern.run(&["status"]).status.success() {
            let inv = kern.json(&["invite", "--party", "roc-midden", "--role", "roc"]);
            assert_eq!(
                inv["addrs"],
                serde_json::json!([format!("/ip4/127.0.0.1/tcp/{port}")])
            );
            break inv["code"].as_str().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "the node never ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let roc = Env::new();
    roc.json(&["init", "--party", "roc-midden", "--role", "roc"]);
    let joined = roc.json(&["join", &code, "--timeout", "30"]);
    assert_eq!(joined["joined"], true);
    // Used: a second node is refused with the reason, exit 1.
    let other = Env::new();
    other.json(&["init", "--party", "roc-midden", "--role", "roc"]);
    assert_fails(
        &other.run(&["join", &code, "--timeout", "20"]),
        1,
        "already used",
    );

    // The ROC's node finds the kerngemeente by itself (remembered from the join).
    let mut roc_up = roc
        .cmd(&[
            "up",
            "--no-mdns",
            "--web-listen",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = kern.json(&[
        "doc",
        "new",
        "plan",
        "--kind",
        "jeugdplan",
        "--title",
        "Jeugdplan 2027",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !roc.run(&["doc", "show", &id]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the plan did not reach the joined node"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for child in [&mut kern_up, &mut roc_up] {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    for child in [kern_up, roc_up] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_dossier_from_the_command_line_is_sealed_shown_with_a_purpose_and_audited() {
    let env = Env::new();
    env.json(&[
        "init",
        "--party",
        "gemeente-utrecht",
        "--role",
        "kerngemeente",
    ]);
    env.json(&["region", "create", "Regio Utrecht"]);
    let id = env.json(&[
        "dossier",
        "new",
        "--woongemeente",
        "gemeente-utrecht",
        "--purpose",
        "begeleiding",
        "--set",
        "naam=Sanne de Vries",
        "--set",
        "geboortedatum=2008-04-12",
        "--user",
        "j.bakker",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.json(&[
        "dossier",
        "note",
        &id,
        "Huisbezoek met ouders.",
        "--user",
        "j.bakker",
    ]);
    env.json(&[
        "dossier",
        "agreement",
        &id,
        "Wekelijks gesprek met de mentor",
        "--evaluate",
        "2027-03-01",
        "--user",
        "j.bakker",
    ]);
    assert_fails(
        &env.run(&["dossier", "agreement", &id, " ", "--user", "j.bakker"]),
        1,
        "the agreement is empty",
    );
    // A read needs a purpose.
    assert_fails(
        &env.run(&["dossier", "show", &id, "--user", "j.bakker"]),
        2,
        "--purpose",
    );
    let shown = env.json(&[
        "dossier",
        "show",
        &id,
        "--purpose",
        "zorgoverleg",
        "--user",
        "j.bakker",
    ]);
    assert_eq!(shown["dossier"]["naam"], "Sanne de Vries");
    assert_eq!(shown["dossier"]["geboortedatum"], "2008-04-12");
    assert_eq!(
        shown["dossier"]["contacten"][0]["tekst"],
        "Huisbezoek met ouders."
    );
    assert_eq!(
        shown["dossier"]["afspraken"][0]["tekst"],
        "Wekelijks gesprek met de mentor"
    );
    assert_eq!(shown["dossier"]["afspraken"][0]["evaluatie"], "2027-03-01");
    // Bad input changes nothing.
    assert_fails(
        &env.run(&[
            "dossier",
            "edit",
            &id,
            "geboortedatum",
            "12-04-2008",
            "--user",
            "x",
        ]),
        1,
        "YYYY-MM-DD",
    );
    assert_fails(
        &env.run(&["dossier", "edit", &id, "bsn", "123", "--user", "x"]),
        2,
        "unknown dossier field",
    );
    // Listed by id only; the store file holds no name in clear.
    let list = env.json(&["dossier", "list"]);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["readable"], true);
    for f in std::fs::read_dir(&env.dir).unwrap() {
        let f = f.unwrap();
        if f.file_name().to_string_lossy().starts_with("store.sqlite") {
            let bytes = std::fs::read(f.path()).unwrap();
            assert!(
                !bytes.windows(5).any(|w| w == b"Sanne"),
                "{:?}",
                f.file_name()
            );
        }
    }
    // The audit log names every read and write, and its chain verifies.
    let log = env.json(&["audit"]);
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["create", "note", "agreement", "read"]);
    assert_eq!(log[3]["purpose"], "zorgoverleg");
    // Format 2: the OS user that ran the command, and --user kept as declared.
    for e in log.as_array().unwrap() {
        assert_eq!(e["format"], 2);
        assert_eq!(e["via"], "cli");
        assert_eq!(e["user"], "testgebruiker");
    }
    assert_eq!(log[0]["declared"], "j.bakker");
    let shown = env.run(&["audit"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("cli: testgebruiker (--user j.bakker)"),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
    let v = env.json(&["audit", "--verify"]);
    assert_eq!(
        (v["entries"].as_i64(), v["intact"].as_bool()),
        (Some(4), Some(true))
    );
    // Erased: reading says by whom and when; the audit chain still verifies.
    // Not on a terminal: refused without --yes, and nothing is erased.
    assert_fails(
        &env.run(&["dossier", "erase", &id, "--user", "j.bakker"]),
        1,
        "add --yes",
    );
    assert_eq!(env.json(&["dossier", "list"])[0]["readable"], true);
    env.json(&["dossier", "erase", &id, "--yes", "--user", "j.bakker"]);
    assert_fails(
        &env.run(&[
            "dossier",
            "show",
            &id,
            "--purpose",
            "x",
            "--user",
            "j.bakker",
        ]),
        1,
        "erased on",
    );
    let v = env.json(&["audit", "--verify"]);
    assert_eq!(v["entries"].as_i64(), Some(5));
}

/// Runs `regiosync up` on loopback with `--peer` addresses; killed on drop.
struct Up(std::process::Child);

impl Up {
    fn start(env: &Env, port: u16, peers: &[u16]) -> Self {
        let mut c = env.cmd(&[
            "up",
            "--no-mdns",
            "--web-listen",
            "127.0.0.1:0",
            "--sync-interval",
            "1",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{port}"),
        ]);
        for p in peers {
            c.args(["--peer", &format!("/ip4/127.0.0.1/tcp/{p}")]);
        }
        Self(
            c.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `ok` every 100 ms for up to 60 s.
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_relay_process_forwards_a_sealed_dossier_it_cannot_read_while_the_roc_is_offline() {
    // Three separate data dirs and processes: the kerngemeente (founder, relay), the
    // ROC, and Zeist, where the student lives.
    let kern = Env::new();
    let kern_id = kern.json(&[
        "init",
        "--party",
        "gemeente-utrecht",
        "--role",
        "kerngemeente",
    ])["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    kern.json(&["region", "create", "Regio Utrecht"]);
    let roc = Env::new();
    let zeist = Env::new();
    for (env, p, role) in [
        (&roc, "roc-midden", "roc"),
        (&zeist, "gemeente-zeist", "gemeente"),
    ] {
        env.json(&["init", "--party", p, "--role", role]);
        let code = kern.json(&["invite", "--party", p, "--role", role])["code"]
            .as_str()
            .unwrap()
            .to_owned();
        let req = env._tmp.path().join("join.req");
        env.json(&["join", &code, "--request-out", req.to_str().unwrap()]);
        let bundle = kern._tmp.path().join(format!("{p}.bundle"));
        kern.json(&[
            "accept",
            req.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ]);
        env.json(&["import", bundle.to_str().unwrap()]);
    }
    // Only an admin designates relays.
    assert_fails(&roc.run(&["relay", "designate", &kern_id]), 1, "admin");
    kern.json(&["relay", "designate", &kern_id]);
    let log = kern._tmp.path().join("all.bundle");
    kern.json(&["export", "--out", log.to_str().unwrap()]);
    for env in [&roc, &zeist] {
        env.json(&["import", log.to_str().unwrap()]);
    }
    assert_eq!(roc.json(&["relay", "list"])[0]["device"], kern_id.as_str());

    let (pk, pr, pz) = (free_port(), free_port(), free_port());
    let kern_up = Up::start(&kern, pk, &[]);
    let roc_up = Up::start(&roc, pr, &[pk]);
    let id = roc.json(&[
        "dossier",
        "new",
        "--woongemeente",
        "gemeente-zeist",
        "--purpose",
        "Jeugdwet: ondersteuning",
        "--set",
        "naam=Sanne de Vries",
        "--user",
        "j.bakker",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The relay holds it sealed and cannot open it.
    eventually("the relay holds the dossier", || {
        let o = kern.run(&["dossier", "list", "--json"]);
        o.status.success()
            && serde_json::from_slice::<Value>(&o.stdout)
                .is_ok_and(|v| v[0]["id"] == id.as_str() && v[0]["readable"] == false)
    });
    let o = kern.run(&["dossier", "show", &id, "--purpose", "x", "--user", "beheer"]);
    assert!(!o.status.success());
    // The ROC goes offline before Zeist comes online: Zeist gets it from the relay.
    drop(roc_up);
    let _zeist_up = Up::start(&zeist, pz, &[pk]);
    eventually("Zeist reads the dossier", || {
        let o = zeist.run(&[
            "dossier",
            "show",
            &id,
            "--purpose",
            "intake",
            "--user",
            "m.jansen",
            "--json",
        ]);
        o.status.success()
            && serde_json::from_slice::<Value>(&o.stdout)
                .is_ok_and(|v| v["dossier"]["naam"] == "Sanne de Vries")
    });
    drop(kern_up);
}

/// Issue 15, item 1, with the stock CLI: the ROC (an admin party) has a desktop and a
/// laptop; the founder removes the lost laptop. The thief, offline on the laptop's
/// old log, runs `device remove` on the founder's device; a member that has not heard
/// of the removal imports the thief's log and passes it on. Afterwards, on every
/// node, the laptop stays removed and every node shows the same region.
#[test]
fn attack_a_stolen_laptop_removes_its_remover_but_never_comes_back() {
    let kern = Env::new();
    let kern_info = kern.json(&[
        "init",
        "--party",
        "gemeente-utrecht",
        "--role",
        "kerngemeente",
    ]);
    kern.json(&["region", "create", "Regio Utrecht"]);
    let join = |node: &Env, p: &str, role: &str, admin: bool| {
        let mut args = vec!["invite", "--party", p, "--role", role];
        if admin {
            args.push("--admin");
        }
        let code = kern.json(&args)["code"].as_str().unwrap().to_owned();
        let req = node._tmp.path().join("join.req");
        node.json(&["join", &code, "--request-out", req.to_str().unwrap()]);
        let bundle = node._tmp.path().join("region.bundle");
        kern.json(&[
            "accept",
            req.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ]);
        node.json(&["import", bundle.to_str().unwrap()]);
    };
    let (roc, laptop, zeist) = (Env::new(), Env::new(), Env::new());
    roc.json(&["init", "--party", "roc-midden", "--role", "roc"]);
    join(&roc, "roc-midden", "roc", true);
    let laptop_info = laptop.json(&["init", "--party", "roc-midden", "--role", "roc"]);
    join(&laptop, "roc-midden", "roc", false);
    zeist.json(&["init", "--party", "gemeente-zeist", "--role", "gemeente"]);
    join(&zeist, "gemeente-zeist", "gemeente", false);
    let share = |from: &Env, to: &[&Env]| {
        let b = from._tmp.path().join("share.bundle");
        from.json(&["export", "--out", b.to_str().unwrap()]);
        for t in to {
            t.json(&["import", b.to_str().unwrap()]);
        }
    };
    share(&kern, &[&roc, &laptop, &zeist]);

    // The founder removes the laptop; the thief, offline, removes the founder.
    let laptop_id = laptop_info["node_id"].as_str().unwrap().to_owned();
    let kern_id = kern_info["node_id"].as_str().unwrap().to_owned();
    kern.json(&["device", "remove", &laptop_id[laptop_id.len() - 8..]]);
    laptop.json(&["device", "remove", &kern_id[kern_id.len() - 8..]]);
    // Zeist hears the thief first, then everyone hears everyone.
    share(&laptop, &[&zeist]);
    share(&zeist, &[&kern, &roc]);
    share(&kern, &[&roc, &zeist]);
    share(&roc, &[&kern, &zeist]);

    let shown = kern.json(&["region", "show"]);
    for node in [&roc, &zeist] {
        assert_eq!(node.json(&["region", "show"]), shown);
    }
    for node in [&kern, &roc, &zeist] {
        let devices = node.json(&["device", "list"]);
        assert_eq!(
            devices[&laptop_id]["removed"], true,
            "the stolen laptop came back"
        );
        let parties = node.json(&["party", "list"]);
        assert_eq!(parties["gemeente-utrecht"]["admin"], true);
        assert_eq!(parties["roc-midden"]["admin"], true);
    }
}

/// Escape sequences (clear screen, set the window title, hide text), a bidi override
/// and a line break that would forge a heading, as a hostile writer puts them into a
/// plan.
const HOSTILE_TITLE: &str =
    "Jeugdplan\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}fdp.exe\n## Besluit: goedgekeurd";

/// Whether `text` holds anything a terminal would act on, not show.
fn has_terminal_controls(text: &str) -> bool {
    text.chars().any(|c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

/// Writes a plan the way a received change from a hostile writer would: its title
/// (in the document and in the store's document row, as sync sets it) carries
/// escape sequences. Returns the plan's id.
fn hostile_plan(env: &Env) -> String {
    use regiosync_core::automerge::transaction::Transactable;
    use regiosync_core::automerge::{Automerge, ROOT};
    use regiosync_core::plan::PlanKind;

    let mut node = regiosync_node::Node::open(&env.dir).unwrap();
    let owner = node.info().party.clone();
    let mut am = Automerge::new();
    am.set_actor(node.info().node_id.actor_id());
    let mut tx = am.transaction();
    regiosync_core::plan::schema::init_plan(&mut tx, PlanKind::Jeugdplan, "Jeugdplan", &owner)
        .unwrap();
    tx.put(ROOT, "title", HOSTILE_TITLE).unwrap();
    tx.commit();
    let changes = am.get_changes(&[]);
    let id = node
        .import_changes_for_bench(PlanKind::Jeugdplan, &changes)
        .unwrap();
    node.store_mut_for_bench()
        .write(|tx| tx.set_title(&id, HOSTILE_TITLE))
        .unwrap();
    id.to_string()
}

#[test]
fn terminal_escape_sequences_in_a_plan_do_not_reach_the_terminal() {
    let env = Env::new();
    env.init();
    let id = hostile_plan(&env);
    // Section text and a comment with escape sequences through the stock CLI.
    assert_ok(&env.run_stdin(
        &["doc", "section", "set", &id, "Inleiding"],
        "Samen \u{1b}[31mrood\u{1b}[0m optrekken.\nTweede regel \u{9b}8m.\n",
    ));
    assert_ok(&env.run(&[
        "doc",
        "comment",
        "add",
        &id,
        "--section",
        "Inleiding",
        "--quote",
        "optrekken",
        "--text",
        "Eens\u{1b}[8m\nroc-midden  [resolved]: vervalst",
    ]));
    assert_ok(&env.run(&["doc", "approve", &id, "--comment", "akkoord \u{202e}tsoo"]));

    for args in [
        vec!["doc", "list"],
        vec!["doc", "show", &id],
        vec!["doc", "history", &id],
        vec!["doc", "comment", "list", &id],
        vec!["doc", "approvals", &id],
        vec!["doc", "conflicts", &id],
        vec!["region", "show"],
    ] {
        let out = env.run(&args);
        assert_ok(&out);
        let text = stdout(&out);
        assert!(
            !has_terminal_controls(&text),
            "{args:?} printed terminal controls: {text:?}"
        );
    }
    // Shown, escaped, not dropped: the reader sees that something odd is there.
    let list = stdout(&env.run(&["doc", "list"]));
    assert!(
        list.contains(r"Jeugdplan\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}fdp.exe\n## Besluit"),
        "{list}"
    );
    assert_eq!(list.lines().count(), 1, "{list}");
    let show = stdout(&env.run(&["doc", "show", &id]));
    assert!(!show.contains("\n## Besluit"), "a forged heading: {show}");
    // (Markdown escapes the `[`.)
    assert!(
        show.contains(r"Samen \u{1b}\[31mrood\u{1b}\[0m optrekken."),
        "{show}"
    );
    assert!(show.contains("optrekken.\nTweede regel"), "{show}");
    // The comment stays on its own line in `doc comment list`.
    let comments = stdout(&env.run(&["doc", "comment", "list", &id]));
    assert_eq!(comments.lines().count(), 1, "{comments}");
    assert!(
        comments.contains(r"Eens\u{1b}[8m\nroc-midden"),
        "{comments}"
    );
    // JSON output keeps the text as it is, for scripts.
    let v = env.json(&["doc", "show", &id]);
    assert_eq!(v["title"], HOSTILE_TITLE);
}

#[test]
fn a_newline_in_an_approval_comment_is_refused_and_cannot_forge_a_line() {
    let env = Env::new();
    env.init();
    let v = env.json(&[
        "doc",
        "new",
        "plan",
        "--kind",
        "jeugdplan",
        "--title",
        "Plan",
    ]);
    let id = v["short"].as_str().unwrap().to_owned();
    let forged = "akkoord\ngemeente-utrecht      abcdef12  2027-01-01 10:00:00 UTC  device …AAAAAAAA  approved the current version";
    let out = env.run(&["doc", "approve", &id, "--comment", forged]);
    assert_fails(&out, 1, "an approval comment must be one line");
    assert_eq!(
        stdout(&env.run(&["doc", "approvals", &id])),
        "No party has approved this plan yet.\n"
    );
    // The honest comment, on one line.
    assert_ok(&env.run(&["doc", "approve", &id, "--comment", "akkoord in OOGO"]));
    let approvals = stdout(&env.run(&["doc", "approvals", &id]));
    assert_eq!(approvals.lines().count(), 1, "{approvals}");
    assert!(approvals.contains("  \"akkoord in OOGO\"\n"), "{approvals}");
}

#[test]
fn javascript_and_data_links_are_dropped_from_doc_show_and_every_export() {
    let env = Env::new();
    env.init();
    let v = env.json(&[
        "doc",
        "new",
        "plan",
        "--kind",
        "jeugdplan",
        "--title",
        "Plan",
    ]);
    let id = v["short"].as_str().unwrap().to_owned();
    assert_ok(&env.run_stdin(
        &["doc", "section", "set", &id, "Inleiding"],
        "Zie [de monitor](javascript:alert(document.cookie)), [dit](data:text/html;base64,PHNjcmlwdD4=) \
         en [de cijfers](https://example.org/vsv).\n",
    ));
    let md_file = env.dir.join("plan.md");
    let html_file = env.dir.join("plan.html");
    let md_path = md_file.to_str().unwrap();
    let html_path = html_file.to_str().unwrap();
    assert_ok(&env.run(&["doc", "export", &id, "--format", "md", "-o", md_path]));
    assert_ok(&env.run(&["doc", "export", &id, "--format", "html", "-o", html_path]));
    let show = stdout(&env.run(&["doc", "show", &id]));
    let md = std::fs::read_to_string(&md_file).unwrap();
    let html = std::fs::read_to_string(&html_file).unwrap();
    for (what, text) in [("doc show", &show), ("md", &md), ("html", &html)] {
        assert!(!text.contains("javascript:"), "{what}: {text}");
        assert!(!text.contains("data:"), "{what}: {text}");
        assert!(
            text.contains("de monitor"),
            "{what} lost the link text: {text}"
        );
        assert!(text.contains("https://example.org/vsv"), "{what}: {text}");
    }
}

/// Runs the binary and fails the test if it does not end within `secs` (killing it),
/// so an attack that makes it read forever is a failure, not a hang.
fn run_within(env: &Env, args: &[&str], secs: u64) -> Output {
    let mut child = env
        .cmd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} still ran after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
#[test]
fn a_symlink_to_dev_zero_as_an_input_file_is_refused_at_once() {
    let env = Env::new();
    env.init();
    let v = env.json(&[
        "doc",
        "new",
        "plan",
        "--kind",
        "jeugdplan",
        "--title",
        "Plan",
    ]);
    let id = v["short"].as_str().unwrap().to_owned();
    let zero = env._tmp.path().join("zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let zero = zero.to_str().unwrap();
    let bundle = env._tmp.path().join("out.bundle");
    let bundle = bundle.to_str().unwrap();
    for args in [
        vec!["import", zero],
        vec!["accept", zero, "--out", bundle],
        vec!["doc", "section", "set", &id, "Inleiding", "--file", zero],
        vec!["--passphrase-file", zero, "doc", "list"],
    ] {
        let out = run_within(&env, &args, 20);
        assert_fails(&out, 1, "is a character device, not a regular file");
    }
    // A FIFO with nobody writing to it does not block either.
    let fifo = env._tmp.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = run_within(&env, &["import", fifo.to_str().unwrap()], 20);
    assert_fails(&out, 1, "is a pipe (FIFO), not a regular file");

    // The honest paths: a text file and a passphrase file that are regular files.
    let text = env._tmp.path().join("inleiding.md");
    std::fs::write(&text, "Samen tegen voortijdig schoolverlaten.\n").unwrap();
    assert_ok(&env.run(&[
        "doc",
        "section",
        "set",
        &id,
        "Inleiding",
        "--file",
        text.to_str().unwrap(),
    ]));
    // A bundle larger than the cap is refused by its size, whatever it holds.
    let big = env._tmp.path().join("big.bundle");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(64 * 1024 * 1024 + 1).unwrap();
    let out = run_within(&env, &["import", big.to_str().unwrap()], 60);
    assert_fails(&out, 1, "is larger than 64 MiB: not a region bundle");
}

#[test]
fn join_request_out_does_not_write_through_a_symlink() {
    let env = Env::new();
    env.init();
    let code = env.json(&["invite", "--party", "gemeente-zeist", "--role", "gemeente"])["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let joiner = Env::new();
    joiner.json(&["init", "--party", "gemeente-zeist", "--role", "gemeente"]);
    let target = joiner._tmp.path().join("victim");
    let link = joiner._tmp.path().join("join.req");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let out = joiner.run(&["join", &code, "--request-out", link.to_str().unwrap()]);
        assert_fails(&out, 1, "already exists");
        assert!(!target.exists());
        std::fs::remove_file(&link).unwrap();
    }
    joiner.json(&["join", &code, "--request-out", link.to_str().unwrap()]);
    assert!(std::fs::metadata(&link).unwrap().len() > 0);
}

#[cfg(unix)]
#[test]
fn export_out_replaces_a_symlink_and_never_writes_through_it() {
    let env = Env::new();
    env.init();
    let victim = env._tmp.path().join("victim.txt");
    std::fs::write(&victim, "niet overschrijven").unwrap();
    let link = env._tmp.path().join("region.bundle");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    env.json(&["export", "--out", link.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "niet overschrijven"
    );
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the link was replaced by the bundle"
    );
    assert!(meta.len() > 0);
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn init_into_an_existing_0755_dir_keeps_other_users_out_of_the_store_and_keys() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    // A folder made beforehand, readable by everyone, with a leftover status file.
    std::fs::create_dir(&env.dir).unwrap();
    std::fs::set_permissions(&env.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(env.dir.join("status.json"), "{}").unwrap();
    std::fs::set_permissions(
        env.dir.join("status.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    env.init();
    // Invite secrets are in the store from here on.
    env.json(&["invite", "--party", "gemeente-zeist", "--role", "gemeente"]);
    assert_eq!(mode(&env.dir), 0o700);
    for f in ["node.key", "node.json", "store.sqlite", "status.json"] {
        assert_eq!(mode(&env.dir.join(f)), 0o600, "{f}");
    }
    {
        // While a connection is open, SQLite's -wal and -shm exist: 0600 too.
        let _open = regiosync_node::Node::open(&env.dir).unwrap();
        for f in ["store.sqlite-wal", "store.sqlite-shm"] {
            assert_eq!(mode(&env.dir.join(f)), 0o600, "{f}");
        }
    }

    // Loosened afterwards (a copy, a chmod -R): the next command puts it back and says so.
    std::fs::set_permissions(&env.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["node.key", "store.sqlite"] {
        std::fs::set_permissions(env.dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = env.run(&["doc", "list"]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("was readable by other users"), "{stderr}");
    assert!(stderr.contains("store.sqlite"), "{stderr}");
    assert_eq!(mode(&env.dir), 0o700);
    for f in ["node.key", "store.sqlite"] {
        assert_eq!(mode(&env.dir.join(f)), 0o600, "{f}");
    }
    // Nothing to fix: no warning.
    let out = env.run(&["doc", "list"]);
    assert_ok(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bundle_of_ops_from_non_members_is_refused_by_import() {
    use regiosync_core::control::{Op, OpBody, SignedOp, decode_bundle, encode_bundle};
    let env = Env::new();
    env.init();
    let file = env._tmp.path().join("region.bundle");
    env.json(&["export", "--out", file.to_str().unwrap()]);
    let log = decode_bundle(&std::fs::read(&file).unwrap()).unwrap();
    let region = regiosync_core::control::RegionId(log[0].hash());
    let mut node = regiosync_node::Node::open(&env.dir).unwrap();
    let heads = node.region_state().unwrap().heads;
    let me = node.info().node_id;
    let key = node.signing_key_for_tests().unwrap().clone();
    drop(node);
    let sign = |key: &regiosync_core::identity::SigningKey, author, parents, i: usize| {
        SignedOp::sign(
            Op {
                region: Some(region),
                parents,
                author,
                time: 1_800_000_000,
                body: OpBody::SetAddrs {
                    addrs: vec![format!("/ip4/192.0.2.1/tcp/{i}")],
                },
            },
            key,
        )
        .unwrap()
    };
    // Ops signed by a key that was never a member of the region, in a bundle file.
    let outsider = regiosync_core::identity::NodeSecret::generate().unwrap();
    let hostile: Vec<SignedOp> = (0..20_000)
        .map(|i| sign(outsider.signing_key(), outsider.node_id(), heads.clone(), i))
        .collect();
    std::fs::write(&file, encode_bundle(log.iter().chain(&hostile))).unwrap();
    let before = env.json(&["region", "show"]);
    let out = env.run(&["import", file.to_str().unwrap()]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("Imported 0 new ops"), "{text}");
    assert!(text.contains("Refused 20000 ops of the bundle"), "{text}");
    assert_eq!(env.json(&["region", "show"]), before);
    let exported = env._tmp.path().join("again.bundle");
    env.json(&["export", "--out", exported.to_str().unwrap()]);
    assert_eq!(
        decode_bundle(&std::fs::read(&exported).unwrap())
            .unwrap()
            .len(),
        log.len()
    );

    // The honest path: a member's new op in a bundle is imported.
    let honest = sign(&key, me, heads, 4100);
    std::fs::write(&file, encode_bundle(log.iter().chain([&honest]))).unwrap();
    let v = env.json(&["import", file.to_str().unwrap()]);
    assert_eq!(
        (v["new_ops"].as_u64(), v["refused_ops"].as_u64()),
        (Some(1), Some(0))
    );
}

#[test]
fn an_empty_stdin_does_not_empty_a_section_without_allow_empty() {
    let env = Env::new();
    env.init();
    let doc = env.json(&[
        "doc",
        "new",
        "plan",
        "--kind",
        "jeugdplan",
        "--title",
        "Jeugdplan",
    ])["short"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ok(&env.run_stdin(&["doc", "section", "set", &doc, "Inleiding"], "Tekst.\n"));
    let out = env.run_stdin(&["doc", "section", "set", &doc, "Inleiding"], "");
    assert_fails(&out, 1, "--allow-empty");
    let shown = env.json(&["doc", "show", &doc, "--format", "json"]);
    assert_eq!(
        shown["sections"][0]["text"], "Tekst.",
        "nothing was changed"
    );
    assert_ok(&env.run_stdin(
        &["doc", "section", "set", &doc, "Inleiding", "--allow-empty"],
        "",
    ));
    let shown = env.json(&["doc", "show", &doc, "--format", "json"]);
    assert_eq!(shown["sections"][0]["text"], "");
}

#[test]
fn logs_to_a_file_or_pipe_carry_no_colour_codes() {
    let env = Env::new();
    env.init();
    let out = env.run(&[
        "-v",
        "doc",
        "new",
        "plan",
        "--kind",
        "jeugdplan",
        "--title",
        "Jeugdplan",
    ]);
    assert_ok(&out);
    assert!(!out.stderr.is_empty(), "-v logs the new plan");
    assert!(
        !out.stderr.contains(&0x1b),
        "escape sequences in a piped log: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dossier_messages_name_the_dossier_and_the_empty_field() {
    let env = Env::new();
    env.json(&[
        "init",
        "--party",
        "gemeente-utrecht",
        "--role",
        "kerngemeente",
    ]);
    env.json(&["region", "create", "Regio Utrecht"]);
    assert_fails(
        &env.run(&[
            "dossier",
            "show",
            "0123456789abcdef",
            "--purpose",
            "x",
            "--user",
            "u",
        ]),
        1,
        "no dossier matches '0123456789abcdef' on this node: see `regiosync dossier list`",
    );
    assert_fails(
        &env.run(&[
            "dossier",
            "new",
            "--woongemeente",
            "gemeente-utrecht",
            "--purpose",
            " ",
            "--user",
            "u",
        ]),
        1,
        "--purpose is empty",
    );
    let id = env.json(&[
        "dossier",
        "new",
        "--woongemeente",
        "gemeente-utrecht",
        "--purpose",
        "begeleiding",
        "--user",
        "u",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_fails(
        &env.run(&["dossier", "show", &id, "--purpose", "  ", "--user", "u"]),
        1,
        "--purpose is empty",
    );
    assert_fails(
        &env.run(&["dossier", "note", &id, " ", "--user", "u"]),
        1,
        "the note is empty",
    );
    // A plan's id where a dossier is meant.
    let plan = env.json(&["doc", "new", "plan", "--kind", "jeugdplan", "--title", "J"])["short"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_fails(
        &env.run(&["dossier", "show", &plan, "--purpose", "x", "--user", "u"]),
        1,
        "no dossier matches",
    );
    // A change id with too few digits says so.
    assert_fails(
        &env.run(&["doc", "diff", &plan, "--from", "abc"]),
        1,
        "at least 8 hex digits",
    );
}

#[test]
fn a_second_up_on_one_data_dir_names_the_running_process_and_a_killed_one_frees_it() {
    let env = Env::new();
    env.init();
    let mut first = Up::start(&env, free_port(), &[]);
    eventually("the first node runs", || {
        env.run(&["status"]).status.success()
    });
    let pid = first.0.id();
    let second = run_within(
        &env,
        &[
            "up",
            "--no-mdns",
            "--web-listen",
            "127.0.0.1:0",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{}", free_port()),
        ],
        60,
    );
    assert_fails(&second, 1, &format!("already running in process {pid}"));
    // SIGKILL: no clean-up runs, yet the kernel drops the lock with the process.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let status = env.dir.join("status.json");
    std::fs::remove_file(&status).unwrap();
    let _third = Up::start(&env, free_port(), &[]);
    eventually("a new node runs after the old one was killed", || {
        status.exists()
    });
}

#[test]
fn a_party_display_name_is_checked_and_shown() {
    let env = Env::new();
    env.init();
    let v = env.json(&["party", "name", "roc-midden", "  ROC Midden Nederland "]);
    assert_eq!(v["display_name"], "ROC Midden Nederland");
    let parties = env.json(&["party", "list"]);
    assert_eq!(
        parties["roc-midden"]["display_name"], "ROC Midden Nederland",
        "{parties}"
    );
    assert!(stdout(&env.run(&["party", "list"])).contains("ROC Midden Nederland"));
    for bad in ["", "ROC\nMidden", "ROC \u{202e}nedd", &"x".repeat(81)] {
        let out = env.run(&["party", "name", "roc-midden", bad]);
        assert_fails(
            &out,
            1,
            "display name must be one line of 1 to 80 characters",
        );
    }
    let out = env.run(&["party", "name", "roc-midnen", "ROC"]);
    assert_fails(&out, 1, "roc-midnen is not a party of the region");
    // Nothing of the refused names was stored.
    assert_eq!(
        env.json(&["party", "list"])["roc-midden"]["display_name"],
        "ROC Midden Nederland"
    );
}

#[test]
fn staff_accounts_and_the_web_app_of_up() {
    let env = Env::new();
    env.init();
    let added = env.json(&["user", "add", "J.Bakker", "--role", "beleid"]);
    assert_eq!(added["account"]["name"], "j.bakker");
    assert_eq!(added["account"]["must_change"], true);
    let one_time = added["password"].as_str().unwrap().to_owned();
    assert_eq!(one_time.len(), 23);
    assert_fails(
        &env.run(&["user", "add", "j.bakker", "--role", "lezer"]),
        1,
        "exists already",
    );
    assert_fails(
        &env.run(&["user", "add", "x", "--role", "admin"]),
        2,
        "the roles are beheerder, beleid, dossier, lezer",
    );
    assert_fails(
        &env.run(&["user", "add", "<script>", "--role", "lezer"]),
        1,
        "not a valid account name",
    );
    let file = env.dir.parent().unwrap().join("pw.txt");
    std::fs::write(&file, "kort\n").unwrap();
    assert_fails(
        &env.run(&[
            "user",
            "add",
            "a.smit",
            "--role",
            "lezer",
            "--password-file",
            file.to_str().unwrap(),
        ]),
        1,
        "at least 12 characters",
    );
    std::fs::write(&file, "een lang genoeg wachtwoord\n").unwrap();
    let added = env.json(&[
        "user",
        "add",
        "a.smit",
        "--role",
        "lezer",
        "--password-file",
        file.to_str().unwrap(),
    ]);
    assert!(added.get("password").is_none());
    let again = env.json(&["user", "passwd", "j.bakker"]);
    assert_ne!(again["password"].as_str().unwrap(), one_time);
    env.json(&["user", "disable", "a.smit"]);
    let list = env.json(&["user", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["name"], "a.smit");
    assert_eq!(list[0]["disabled"], true);
    assert_fails(
        &env.run(&["user", "disable", "niemand"]),
        1,
        "no staff account 'niemand'",
    );
    // Neither the store nor the output of `list` holds a password.
    let listed = stdout(&env.run(&["user", "list"]));
    assert!(!listed.contains(&one_time) && !listed.contains("argon2"));

    // `up` serves the web app on a loopback port and prints its certificate's
    // fingerprint; `status` shows the same.
    let up = env
        .cmd(&[
            "up",
            "--no-mdns",
            "--web-listen",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        let o = env.run(&["status", "--json"]);
        if o.status.success() {
            break serde_json::from_slice::<Value>(&o.stdout).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "up did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let url = status["web"]["url"].as_str().unwrap().to_owned();
    let fingerprint = status["web"]["fingerprint"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert_eq!(fingerprint.len(), 95);
    let human = stdout(&env.run(&["status"]));
    assert!(human.contains(&format!("Web app: {url}")), "{human}");
    assert!(human.contains(&fingerprint));
    #[cfg(unix)]
    for f in ["web-cert.pem", "web-key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.dir.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status();
    let out = up.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(&format!("Web app: {url}")), "{printed}");
    assert!(printed.contains(&format!("Certificate SHA-256: {fingerprint}")));
}

/// `up --json` says where it serves, as one line, when it starts: a script gets the
/// web app's address and certificate fingerprint without parsing text, and they
/// match what `status` says.
#[test]
fn up_json_prints_one_line_with_the_web_address_when_it_starts() {
    use std::io::BufRead;
    let env = Env::new();
    env.init();
    let mut child = env
        .cmd(&[
            "--json",
            "up",
            "--no-mdns",
            "--web-listen",
            "127.0.0.1:0",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{}", free_port()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let up = Up(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let web = &v["serving"]["web"];
    let url = web["url"].as_str().unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{v}");
    assert!(!url.ends_with(":0"), "the real port: {v}");
    assert_eq!(web["self_signed"], true);
    eventually("status shows the running node", || {
        env.run(&["status"]).status.success() && env.json(&["status"])["web"]["url"] == url
    });
    assert_eq!(
        env.json(&["status"])["web"]["fingerprint"],
        web["fingerprint"]
    );
    drop(up);
}
