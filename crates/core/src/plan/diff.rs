//! What changed between two versions of a plan (`regiosync doc diff`): per section a
//! line diff of its Markdown and whether it moved, per agreement the fields that
//! changed, each with the parties whose changes touched it. The line diff is
//! `similar`'s (Myers).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write;

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use super::richtext::single_line;
use super::{Agreement, Plan, date_format};

/// How an item differs between the versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Only in the later version.
    Added,
    /// Only in the earlier version.
    Removed,
    /// In both, different.
    Changed,
}

/// A changed section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SectionDiff {
    /// Section id.
    pub id: String,
    /// Its title in the later version (the earlier one if removed).
    pub title: String,
    /// Its earlier title, if it was renamed.
    pub renamed_from: Option<String>,
    /// Added, removed or changed.
    pub change: Change,
    /// Changed lines with up to one line of context: `(tag, line)`, tag `+`, `-` or ` `;
    /// `…` lines stand for unchanged text left out.
    pub lines: Vec<(char, String)>,
    /// Whether it moved to another place among the sections of both versions
    /// ([`moved_sections`]).
    #[serde(default)]
    pub moved: bool,
    /// The parties whose changes touched it.
    pub authors: Vec<String>,
}

/// A changed agreement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgreementDiff {
    /// Agreement id.
    pub id: String,
    /// Its title in the later version (the earlier one if removed).
    pub title: String,
    /// Added, removed or changed.
    pub change: Change,
    /// Changed fields: `(field, before, after)`.
    pub fields: Vec<(String, String, String)>,
    /// The parties whose changes touched it.
    pub authors: Vec<String>,
}

/// Everything that differs between two versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanDiff {
    /// The plan title, if it changed: `(before, after)`.
    pub title: Option<(String, String)>,
    /// Changed sections, in the later version's order (removed ones last).
    pub sections: Vec<SectionDiff>,
    /// Changed agreements, in the later version's order (removed ones last).
    pub agreements: Vec<AgreementDiff>,
}

impl PlanDiff {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.sections.is_empty() && self.agreements.is_empty()
    }
}

/// Compares two versions. `authors` maps a target (`section s-…`, `agreement a-…`) to
/// the parties whose changes between the versions touched it.
pub fn diff(before: &Plan, after: &Plan, authors: &BTreeMap<String, BTreeSet<String>>) -> PlanDiff {
    let who = |target: String| -> Vec<String> {
        authors
            .get(&target)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    };
    let moved = moved_sections(before, after);
    let mut sections = Vec::new();
    for s in &after.sections {
        let old = before.section(&s.id);
        let is_moved = moved.contains(s.id.as_str());
        let (change, lines) = match old {
            None => (Change::Added, line_diff("", &s.text)),
            Some(o) if o.text == s.text && o.title == s.title && !is_moved => continue,
            Some(o) => (Change::Changed, line_diff(&o.text, &s.text)),
        };
        sections.push(SectionDiff {
            id: s.id.clone(),
            title: s.title.clone(),
            renamed_from: old.filter(|o| o.title != s.title).map(|o| o.title.clone()),
            change,
            lines,
            moved: is_moved,
            authors: who(format!("section {}", s.id)),
        });
    }
    for o in before
        .sections
        .iter()
        .filter(|o| after.section(&o.id).is_none())
    {
        sections.push(SectionDiff {
            id: o.id.clone(),
            title: o.title.clone(),
            renamed_from: None,
            change: Change::Removed,
            lines: line_diff(&o.text, ""),
            moved: false,
            authors: who(format!("section {}", o.id)),
        });
    }
    let mut agreements = Vec::new();
    let find = |p: &'_ Plan, id: &str| p.agreements.iter().find(|a| a.id == id).cloned();
    for a in &after.agreements {
        let (change, fields) = match find(before, &a.id) {
            None => (Change::Added, agreement_fields(None, a)),
            Some(o) => {
                let f = agreement_fields(Some(&o), a);
                if f.is_empty() {
                    continue;
                }
                (Change::Changed, f)
            }
        };
        agreements.push(AgreementDiff {
            id: a.id.clone(),
            title: a.title.clone(),
            change,
            fields,
            authors: who(format!("agreement {}", a.id)),
        });
    }
    for o in &before.agreements {
        if find(after, &o.id).is_none() {
            agreements.push(AgreementDiff {
                id: o.id.clone(),
                title: o.title.clone(),
                change: Change::Removed,
                fields: Vec::new(),
                authors: who(format!("agreement {}", o.id)),
            });
        }
    }
    PlanDiff {
        title: (before.title != after.title).then(|| (before.title.clone(), after.title.clone())),
        sections,
        agreements,
    }
}

/// The sections of both versions whose place among the others changed: those outside
/// a longest run of sections that kept their order (a longest increasing subsequence
/// of their earlier positions, in O(n log n) whatever a writer made of the order).
/// Moving one section marks that one, not the sections it passed.
fn moved_sections<'a>(before: &Plan, after: &'a Plan) -> HashSet<&'a str> {
    let old_pos: HashMap<&str, usize> = before
        .sections
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let common: Vec<(&str, usize)> = after
        .sections
        .iter()
        .filter_map(|s| old_pos.get(s.id.as_str()).map(|&p| (s.id.as_str(), p)))
        .collect();
    // Patience sorting: `tails[k]` is the item ending the best increasing run of
    // length k + 1 so far, `prev` links each item to the one before it in its run.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; common.len()];
    for (i, &(_, p)) in common.iter().enumerate() {
        let k = tails.partition_point(|&t| common[t].1 < p);
        prev[i] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut kept = HashSet::new();
    let mut cur = tails.last().copied();
    while let Some(i) = cur {
        kept.insert(i);
        cur = prev[i];
    }
    common
        .iter()
        .enumerate()
        .filter(|(i, _)| !kept.contains(i))
        .map(|(_, &(id, _))| id)
        .collect()
}

fn agreement_fields(old: Option<&Agreement>, new: &Agreement) -> Vec<(String, String, String)> {
    let view = |a: Option<&Agreement>| -> Vec<(&'static str, String)> {
        let Some(a) = a else {
            return [
                "title",
                "description",
                "owner",
                "deadline",
                "status",
                "funding",
                "sections",
            ]
            .into_iter()
            .map(|f| (f, String::new()))
            .collect();
        };
        vec![
            ("title", a.title.clone()),
            ("description", a.description.clone()),
            ("owner", a.owner.to_string()),
            (
                "deadline",
                a.deadline.map(date_format::format).unwrap_or_default(),
            ),
            ("status", a.status.to_string()),
            ("funding", a.funding.clone().unwrap_or_default()),
            ("sections", a.sections.join(", ")),
        ]
    };
    view(old)
        .into_iter()
        .zip(view(Some(new)))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((f, a), (_, b))| (f.to_owned(), a, b))
        .collect()
}

fn line_diff(old: &str, new: &str) -> Vec<(char, String)> {
    let d = TextDiff::from_lines(old, new);
    let mut out = Vec::new();
    for (i, group) in d.grouped_ops(1).iter().enumerate() {
        if i > 0 {
            out.push((' ', "…".to_owned()));
        }
        for op in group {
            for c in d.iter_changes(op) {
                let tag = match c.tag() {
                    ChangeTag::Delete => '-',
                    ChangeTag::Insert => '+',
                    ChangeTag::Equal => ' ',
                };
                out.push((tag, c.value().trim_end_matches('\n').to_owned()));
            }
        }
    }
    out
}

/// Renders a diff for people. `from` and `to` name the versions.
pub fn render(d: &PlanDiff, from: &str, to: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Wijzigingen van {from} naar {to}");
    if d.is_empty() {
        out.push_str("\nGeen wijzigingen.\n");
        return out;
    }
    if let Some((a, b)) = &d.title {
        let (a, b) = (single_line(a), single_line(b));
        let _ = writeln!(out, "\nTitel: \"{a}\" → \"{b}\"");
    }
    for s in &d.sections {
        let what = match s.change {
            Change::Added => "nieuw",
            Change::Removed => "verwijderd",
            Change::Changed if s.moved && s.lines.is_empty() && s.renamed_from.is_none() => {
                "verplaatst"
            }
            Change::Changed if s.moved => "gewijzigd, verplaatst",
            Change::Changed => "gewijzigd",
        };
        let _ = write!(out, "\n## {} ({what}", single_line(&s.title));
        if let Some(r) = &s.renamed_from {
            let _ = write!(out, ", was \"{}\"", single_line(r));
        }
        let _ = writeln!(out, ") door {}", by(&s.authors));
        for (tag, line) in &s.lines {
            let _ = writeln!(out, "{tag} {line}");
        }
    }
    if !d.agreements.is_empty() {
        out.push_str("\n## Afspraken\n");
        for a in &d.agreements {
            let what = match a.change {
                Change::Added => "nieuw",
                Change::Removed => "verwijderd",
                Change::Changed => "gewijzigd",
            };
            let _ = writeln!(
                out,
                "- {} {} ({what}) door {}",
                single_line(&a.id),
                single_line(&a.title),
                by(&a.authors)
            );
            for (f, old, new) in &a.fields {
                let show = |v: &str| {
                    if v.is_empty() {
                        "–".to_owned()
                    } else {
                        single_line(v).into_owned()
                    }
                };
                let _ = writeln!(out, "    {f}: {} → {}", show(old), show(new));
            }
        }
    }
    out
}

fn by(authors: &[String]) -> String {
    if authors.is_empty() {
        "onbekend".into()
    } else {
        authors.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PlanKind, Section};

    fn plan(ids: &[&str]) -> Plan {
        Plan {
            schema: 2,
            kind: PlanKind::Jeugdplan,
            title: "P".into(),
            owner: crate::id::PartyName::new("roc-x").unwrap(),
            sections: ids
                .iter()
                .map(|id| Section {
                    id: (*id).into(),
                    title: id.to_uppercase(),
                    text: String::new(),
                    blocks: vec![],
                })
                .collect(),
            agreements: vec![],
            comments: vec![],
            conflicts: vec![],
        }
    }

    fn moved(before: &[&str], after: &[&str]) -> Vec<String> {
        let d = diff(&plan(before), &plan(after), &BTreeMap::new());
        d.sections
            .iter()
            .filter(|s| s.moved)
            .map(|s| s.id.clone())
            .collect()
    }

    #[test]
    fn a_moved_section_is_reported_and_the_ones_it_passed_are_not() {
        assert!(moved(&["a", "b", "c", "d"], &["a", "b", "c", "d"]).is_empty());
        assert!(diff(&plan(&["a", "b"]), &plan(&["a", "b"]), &BTreeMap::new()).is_empty());
        assert_eq!(moved(&["a", "b", "c", "d"], &["b", "c", "d", "a"]), ["a"]);
        assert_eq!(moved(&["a", "b", "c", "d"], &["d", "a", "b", "c"]), ["d"]);
        assert_eq!(moved(&["a", "b", "c", "d"], &["a", "c", "b", "d"]).len(), 1);
        // Added and removed sections are not moves, and do not make others moved.
        assert!(moved(&["a", "b", "c"], &["x", "a", "c"]).is_empty());
        let d = diff(
            &plan(&["a", "b", "c"]),
            &plan(&["c", "a", "b"]),
            &BTreeMap::new(),
        );
        let text = render(&d, "v1", "v2");
        assert!(text.contains("## C (verplaatst) door onbekend"), "{text}");
    }
}
