//! Results: rows of `{workload, system, metric, value}`, the Markdown table with
//! ratios, the JSON file, and the statistics (medians, percentiles) behind them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

/// The systems compared, in table column order.
pub(crate) const SYSTEMS: [&str; 3] = ["regiosync", "samod", "automerge"];

/// One measured value.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Row {
    pub(crate) workload: String,
    pub(crate) system: String,
    pub(crate) metric: String,
    pub(crate) value: f64,
}

/// Every row of a run, in the order measured.
#[derive(Debug, Default)]
pub(crate) struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// Records one value.
    pub(crate) fn add(&mut self, workload: &str, system: &str, metric: &str, value: f64) {
        self.rows.push(Row {
            workload: workload.into(),
            system: system.into(),
            metric: metric.into(),
            value,
        });
    }

    /// The value of one cell, if measured.
    pub(crate) fn get(&self, workload: &str, system: &str, metric: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.workload == workload && r.system == system && r.metric == metric)
            .map(|r| r.value)
    }

    /// Writes the rows as a JSON list.
    pub(crate) fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.rows)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }

    /// The Markdown table: one line per workload and metric, a column per system,
    /// and the ratios regiosync/samod and regiosync/automerge where both exist.
    pub(crate) fn markdown(&self) -> String {
        // Keep the order in which workloads and metrics were first measured.
        let mut order: Vec<(String, String)> = Vec::new();
        let mut cells: BTreeMap<(String, String, String), f64> = BTreeMap::new();
        for r in &self.rows {
            let key = (r.workload.clone(), r.metric.clone());
            if !order.contains(&key) {
                order.push(key);
            }
            cells.insert(
                (r.workload.clone(), r.metric.clone(), r.system.clone()),
                r.value,
            );
        }
        let mut out = String::new();
        out.push_str(
            "| workload | metric | regiosync | samod | raw automerge | regiosync / samod | regiosync / automerge |\n",
        );
        out.push_str("|---|---|---:|---:|---:|---:|---:|\n");
        for (w, m) in order {
            let get = |s: &str| cells.get(&(w.clone(), m.clone(), s.to_owned())).copied();
            let [ours, samod, am] = SYSTEMS.map(get);
            let ratio = |other: Option<f64>| match (ours, other) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
                _ => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {w} | {m} | {} | {} | {} | {} | {} |",
                fmt_value(&m, ours),
                fmt_value(&m, samod),
                fmt_value(&m, am),
                ratio(samod),
                ratio(am)
            );
        }
        out
    }
}

/// A cell: times with one decimal below 10 ms, counts as integers with separators.
fn fmt_value(metric: &str, v: Option<f64>) -> String {
    let Some(v) = v else {
        return "–".into();
    };
    match metric {
        "wall_ms" | "p50_ms" | "p99_ms" | "startup_ms" | "rss_mb" if v < 10.0 => format!("{v:.2}"),
        "wall_ms" | "p50_ms" | "p99_ms" | "startup_ms" | "rss_mb" => format!("{v:.0}"),
        "bytes_per_saved" => format!("{v:.2}"),
        _ => thousands(v.round() as u64),
    }
}

/// 1234567 as "1,234,567".
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The median of `v` (the upper middle one for an even count); 0 for none.
pub(crate) fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

/// The `p` quantile of `v` (nearest rank); 0 for none.
pub(crate) fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s[i.min(s.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(percentile(&[5.0, 1.0, 4.0, 2.0, 3.0], 0.0), 1.0);
        assert_eq!(percentile(&[5.0, 1.0, 4.0, 2.0, 3.0], 1.0), 5.0);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn table_has_ratios_where_both_sides_exist() {
        let mut r = Report::default();
        r.add("catchup-1k", "regiosync", "wall_ms", 300.0);
        r.add("catchup-1k", "samod", "wall_ms", 600.0);
        r.add("catchup-1k", "automerge", "wall_ms", 150.0);
        r.add("catchup-1k", "regiosync", "round_trips", 4.0);
        let t = r.markdown();
        assert!(
            t.contains("| catchup-1k | wall_ms | 300 | 600 | 150 | 0.50x | 2.00x |"),
            "{t}"
        );
        assert!(
            t.contains("| catchup-1k | round_trips | 4 | – | – | – | – |"),
            "{t}"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(r.get("catchup-1k", "samod", "wall_ms"), Some(600.0));
    }
}
