//! The runner's `--smoke` mode, as the test suite runs it: tiny sizes, every workload
//! (the web workloads with 3 edits),
//! a JSON file with the rows issue 7 names, and end states that the runner itself
//! checks to be identical across regiosync, samod and the source (it exits non-zero
//! otherwise). Nothing here asserts on a time.

use std::process::Command;

#[test]
fn smoke_run_covers_every_workload_with_identical_end_states() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("rows.json");
    let out = Command::new(env!("CARGO_BIN_EXE_regiosync-bench"))
        .arg("--smoke")
        .arg("--json")
        .arg(&json)
        .output()
        .expect("the runner starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "runner failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("end states: identical"),
        "no end-state line:\n{stdout}"
    );
    assert!(stdout.contains("| workload | metric | regiosync | samod | raw automerge |"));

    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid json");
    let has = |w: &str, s: &str, m: &str| {
        rows.iter().any(|r| {
            r["workload"] == w
                && r["system"] == s
                && r["metric"] == m
                && r["value"]
                    .as_f64()
                    .is_some_and(|v| v.is_finite() && v >= 0.0)
        })
    };
    for w in ["catchup-1k", "catchup-10k", "catchup-large"] {
        for s in ["regiosync", "samod", "automerge"] {
            for m in ["wall_ms", "bytes", "saved_bytes"] {
                assert!(has(w, s, m), "missing {w} {s} {m}");
            }
        }
        assert!(
            has(w, "regiosync", "round_trips"),
            "missing {w} round trips"
        );
    }
    for w in [
        "reconnect-idle-1k",
        "reconnect-idle-10k",
        "reconnect-10pct-1k",
    ] {
        for s in ["regiosync", "samod", "automerge"] {
            assert!(has(w, s, "bytes"), "missing {w} {s} bytes");
        }
        assert!(has(w, "regiosync", "round_trips"));
    }
    for w in ["propagation-5-tcp", "propagation-5-quic"] {
        assert!(has(w, "regiosync", "p50_ms") && has(w, "regiosync", "p99_ms"));
        assert!(has(w, "automerge", "p50_ms"));
    }
    assert!(has("propagation-5-tcp", "samod", "p99_ms"));
    for w in ["catchup-1k-sealed", "catchup-1k-plain"] {
        assert!(has(w, "regiosync", "wall_ms") && has(w, "regiosync", "bytes"));
    }
    // The web workloads (issue 17), at smoke size: every one of the 3 saves through
    // A's web app arrived as a `change` event on B's open live stream (the runner
    // fails otherwise); the pages answered.
    let value = |w: &str, m: &str| {
        rows.iter()
            .find(|r| r["workload"] == w && r["system"] == "regiosync" && r["metric"] == m)
            .and_then(|r| r["value"].as_f64())
    };
    assert_eq!(value("web-live", "events"), Some(3.0));
    assert!(has("web-live", "regiosync", "p50_ms") && has("web-live", "regiosync", "p99_ms"));
    for w in ["web-plan-page", "web-dossier-list"] {
        assert!(has(w, "regiosync", "median_ms") && has(w, "regiosync", "p99_ms"));
        assert_eq!(value(w, "requests"), Some(3.0));
    }
    assert!(has("node-10k-dossiers", "regiosync", "rss_mb"));
    assert!(has("node-10k-dossiers", "regiosync", "startup_ms"));
    // The same documents on every side: the saved size is the source's, everywhere.
    let saved = |s: &str| {
        rows.iter()
            .find(|r| {
                r["workload"] == "catchup-1k" && r["system"] == s && r["metric"] == "saved_bytes"
            })
            .and_then(|r| r["value"].as_f64())
    };
    assert_eq!(saved("regiosync"), saved("samod"));
    assert!(saved("regiosync").is_some_and(|v| v > 0.0));
}
