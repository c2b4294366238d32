//! Concurrent rewrites of one section, merged line by line instead of character by
//! character.
//!
//! Automerge merges two concurrent rewrites of one sentence character by character:
//! "Offline: huisbezoek met laptop." and "Gouda: huisbezoek in Zeist." became
//! "OfflinGe: husbezoektolen lapop inZist.". So every section edit also records
//! what its writer saw and wrote (the section map's `written` key, see
//! docs/SCHEMA.md): the hashes of the lines it started from (`base`) and the whole
//! Markdown it wrote (`text`). Two edits made without seeing each other leave two
//! values under that key (an Automerge conflict). A reader then merges the two
//! texts three ways against their common base, one line (a paragraph, a list item,
//! a heading) at a time: a line only one side changed takes that side's version;
//! where both changed the same lines differently, the first writer's version is
//! shown and the other's is reported as a conflict ([`TextConflict`]), to be
//! resolved by setting the text the parties agree on. No line is ever a mixture.
//!
//! ```
//! use regiosync_core::plan::paragraphs::{base_of, merge};
//!
//! let base = "Inleiding.\n\nOffline werken.\n\nSlot.";
//! let a = "Inleiding, herzien.\n\nOffline: huisbezoek met laptop.\n\nSlot.";
//! let b = "Inleiding.\n\nGouda: huisbezoek in Zeist.\n\nSlot, herzien.";
//! let merged = merge(&base_of(base), a, &base_of(base), b).unwrap();
//! assert_eq!(
//!     merged.text,
//!     "Inleiding, herzien.\n\nOffline: huisbezoek met laptop.\n\nSlot, herzien."
//! );
//! assert_eq!(merged.conflicts.len(), 1);
//! assert_eq!(merged.conflicts[0].first, "Offline: huisbezoek met laptop.");
//! assert_eq!(merged.conflicts[0].second, "Gouda: huisbezoek in Zeist.");
//! ```

use sha2::{Digest, Sha256};
use similar::{Algorithm, DiffOp, capture_diff_slices};

/// A line's identity in a `base`: the first 8 bytes of its SHA-256, hex.
fn line_hash(line: &str) -> String {
    hex::encode(&Sha256::digest(line.as_bytes())[..8])
}

/// The `base` value of an edit that starts from `markdown`: its lines' hashes,
/// comma-separated.
pub fn base_of(markdown: &str) -> String {
    markdown
        .split('\n')
        .map(line_hash)
        .collect::<Vec<_>>()
        .join(",")
}

/// Where two concurrent edits changed the same lines differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextConflict {
    /// The first writer's version of those lines (the one shown).
    pub first: String,
    /// The second writer's version.
    pub second: String,
}

/// The result of [`merge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    /// The merged Markdown: every line is one writer's, none a mixture.
    pub text: String,
    /// The lines both changed differently (the first writer's version is in `text`).
    pub conflicts: Vec<TextConflict>,
}

/// One side's change of the base: base units `start..end` replaced by `units`.
struct Hunk<'a> {
    start: usize,
    end: usize,
    units: Vec<&'a str>,
}

/// What one side did to the base (given by its units' keys), and which base units it
/// kept (by base index, the unit's text in that side). `keys[i]` identifies
/// `texts[i]` (a line's hash, or a word itself).
fn hunks<'a>(
    base: &[&str],
    keys: &[&str],
    texts: &[&'a str],
) -> (Vec<Hunk<'a>>, Vec<Option<&'a str>>) {
    let mut kept = vec![None; base.len()];
    let mut out = Vec::new();
    for op in capture_diff_slices(Algorithm::Myers, base, keys) {
        let (start, end, new) = match op {
            DiffOp::Equal {
                old_index,
                new_index,
                len,
            } => {
                for k in 0..len {
                    kept[old_index + k] = Some(texts[new_index + k]);
                }
                continue;
            }
            DiffOp::Delete {
                old_index, old_len, ..
            } => (old_index, old_index + old_len, 0..0),
            DiffOp::Insert {
                old_index,
                new_index,
                new_len,
            } => (old_index, old_index, new_index..new_index + new_len),
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => (
                old_index,
                old_index + old_len,
                new_index..new_index + new_len,
            ),
        };
        out.push(Hunk {
            start,
            end,
            units: texts[new].to_vec(),
        });
    }
    (out, kept)
}

/// What one side has in base units `start..end` (and what it inserted at `start`
/// when the range is empty): whether it changed anything there, and its units.
fn side_in<'a>(
    hunks: &[Hunk<'a>],
    kept: &[Option<&'a str>],
    start: usize,
    end: usize,
) -> (bool, Vec<&'a str>) {
    let mut changed = false;
    let mut out = Vec::new();
    let mut i = start;
    let mut hs = hunks
        .iter()
        .filter(|h| h.start >= start && (h.start < end || (h.start == end && h.end == end)))
        .peekable();
    loop {
        while let Some(h) = hs.peek().filter(|h| h.start == i) {
            changed = true;
            out.extend(h.units.iter().copied());
            i = i.max(h.end);
            hs.next();
        }
        if i >= end {
            break;
        }
        if let Some(unit) = kept.get(i).copied().flatten() {
            out.push(unit);
        }
        i += 1;
    }
    (changed, out)
}

/// A region both sides changed differently: its base units, and each side's units.
struct Clash<'a> {
    /// Where side a's units of the clash start in the merged units.
    at: usize,
    base: std::ops::Range<usize>,
    a: Vec<&'a str>,
    b: Vec<&'a str>,
}

/// The three-way merge of two sides against a common base, unit by unit: the merged
/// units, with the first side's version where both changed the same units
/// differently, and those places.
fn merge_units<'a>(
    base: &[&str],
    a: (&[&str], &[&'a str]),
    b: (&[&str], &[&'a str]),
) -> (Vec<&'a str>, Vec<Clash<'a>>) {
    let (ha, ka) = hunks(base, a.0, a.1);
    let (hb, kb) = hunks(base, b.0, b.1);
    let mut out: Vec<&str> = Vec::new();
    let mut clashes = Vec::new();
    let mut i = 0;
    while i <= base.len() {
        // The region starting here: every hunk of either side that starts at `i`,
        // grown while another hunk starts inside it (an insertion exactly at its end
        // is a region of its own).
        let Some(mut e) = ha
            .iter()
            .chain(&hb)
            .filter(|h| h.start == i)
            .map(|h| h.end)
            .max()
        else {
            if let Some(unit) = ka.get(i).copied().flatten() {
                out.push(unit);
            }
            i += 1;
            continue;
        };
        while let Some(more) = ha
            .iter()
            .chain(&hb)
            .filter(|h| h.start > i && h.start < e && h.end > e)
            .map(|h| h.end)
            .max()
        {
            e = more;
        }
        let (changed_a, in_a) = side_in(&ha, &ka, i, e);
        let (changed_b, in_b) = side_in(&hb, &kb, i, e);
        // Deletions only, on both sides: every deletion holds (what both kept).
        let kept_in = |k: &[Option<&str>]| {
            (i..e)
                .filter(|&x| k.get(x).copied().flatten().is_some())
                .count()
        };
        let only_deletes = in_a.len() == kept_in(&ka) && in_b.len() == kept_in(&kb);
        match (changed_a, changed_b) {
            (true, true) if in_a != in_b && only_deletes => {
                out.extend((i..e).filter_map(|x| match (ka.get(x), kb.get(x)) {
                    (Some(Some(a)), Some(Some(_))) => Some(*a),
                    _ => None,
                }));
            }
            (true, true) if in_a != in_b => {
                let at = out.len();
                out.extend(in_a.iter().copied());
                clashes.push(Clash {
                    at,
                    base: i..e,
                    a: in_a,
                    b: in_b,
                });
            }
            (false, true) => out.extend(in_b),
            _ => out.extend(in_a),
        }
        if e == i {
            // Only insertions here: the base unit at `i` comes next.
            if let Some(unit) = ka.get(i).copied().flatten() {
                out.push(unit);
            }
            i += 1;
        } else {
            i = e;
        }
    }
    (out, clashes)
}

/// Words and the spaces between them, in order (joined, they give `line` back).
fn words(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut space = None;
    for (i, c) in line.char_indices() {
        let is_space = c.is_whitespace();
        if space.is_some_and(|s| s != is_space) {
            out.push(&line[start..i]);
            start = i;
        }
        space = Some(is_space);
    }
    if start < line.len() {
        out.push(&line[start..]);
    }
    out
}

/// Most lines (or words of one line) merged; past it, the edits are not merged
/// unit by unit and count as one conflict.
pub const MAX_MERGE_UNITS: usize = 4096;

/// Merges two rewrites of one line word by word, if they changed different words.
fn merge_words(base: &str, a: &str, b: &str) -> Option<String> {
    let (wb, wa, wo) = (words(base), words(a), words(b));
    if [wb.len(), wa.len(), wo.len()]
        .iter()
        .any(|&n| n > MAX_MERGE_UNITS)
    {
        return None;
    }
    let (merged, clashes) = merge_units(&wb, (&wa, &wa), (&wo, &wo));
    clashes.is_empty().then(|| merged.concat())
}

/// Merges two concurrent edits of one section, each given as the `base` it started
/// from ([`base_of`]) and the Markdown it wrote; `old` gives the text of a base line
/// by its hash where an edit recorded it (the lines it changed), so that two
/// rewrites of one line that changed different words merge word by word. `None` if
/// the edits started from different texts (then no line-wise merge is possible: the
/// caller shows the first and reports the whole texts as a conflict).
pub fn merge_with(
    base_a: &str,
    a: &str,
    base_b: &str,
    b: &str,
    old: impl Fn(&str) -> Option<String>,
) -> Option<Merged> {
    if base_a != base_b {
        return None;
    }
    let base: Vec<&str> = base_a.split(',').collect();
    // The texts come from writers, so their size is a writer's choice: a diff of
    // two huge texts would run on every read. Past the bound, no line-wise merge.
    if [base.len(), a.lines().count(), b.lines().count()]
        .iter()
        .any(|&n| n > MAX_MERGE_UNITS)
    {
        return None;
    }
    let (lines_a, lines_b): (Vec<&str>, Vec<&str>) =
        (a.split('\n').collect(), b.split('\n').collect());
    let hashes = |lines: &[&str]| -> Vec<String> { lines.iter().map(|l| line_hash(l)).collect() };
    let (keys_a, keys_b) = (hashes(&lines_a), hashes(&lines_b));
    let keys_a: Vec<&str> = keys_a.iter().map(String::as_str).collect();
    let keys_b: Vec<&str> = keys_b.iter().map(String::as_str).collect();
    let (merged, clashes) = merge_units(&base, (&keys_a, &lines_a), (&keys_b, &lines_b));
    // Each clash's lines are in `merged` as side a's; replace a clash of one line
    // rewritten on both sides by the word-wise merge where the words do not clash.
    let mut text: Vec<String> = merged.iter().map(|l| (*l).to_owned()).collect();
    let mut conflicts = Vec::new();
    for c in clashes {
        let word_merged = match (c.base.len(), c.a.as_slice(), c.b.as_slice()) {
            (1, [la], [lb]) => old(base[c.base.start]).and_then(|o| merge_words(&o, la, lb)),
            _ => None,
        };
        match word_merged {
            Some(line) => text[c.at] = line,
            None => conflicts.push(TextConflict {
                first: c.a.join("\n"),
                second: c.b.join("\n"),
            }),
        }
    }
    Some(Merged {
        text: text.join("\n"),
        conflicts,
    })
}

/// [`merge_with`] without the text of any base line (no word-wise merge).
pub fn merge(base_a: &str, a: &str, base_b: &str, b: &str) -> Option<Merged> {
    merge_with(base_a, a, base_b, b, |_| None)
}

/// The base lines an edit from `before` to `after` changed or deleted, by hash: what
/// an edit records (`old`) so that readers can merge two rewrites of one line word by
/// word.
pub fn changed_lines(before: &str, after: &str) -> Vec<(String, String)> {
    let base: Vec<&str> = before.split('\n').collect();
    let keys: Vec<String> = base.iter().map(|l| line_hash(l)).collect();
    let lines: Vec<&str> = after.split('\n').collect();
    let new_keys: Vec<String> = lines.iter().map(|l| line_hash(l)).collect();
    let k: Vec<&str> = keys.iter().map(String::as_str).collect();
    let nk: Vec<&str> = new_keys.iter().map(String::as_str).collect();
    let (hunks, _) = hunks(&k, &nk, &lines);
    let mut out: Vec<(String, String)> = Vec::new();
    for h in hunks {
        for i in h.start..h.end {
            if !out.iter().any(|(key, _)| *key == keys[i]) {
                out.push((keys[i].clone(), base[i].to_owned()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(base: &str, a: &str, b: &str) -> Merged {
        merge(&base_of(base), a, &base_of(base), b).unwrap()
    }

    #[test]
    fn edits_of_different_lines_both_stay_and_no_line_is_mixed() {
        let r = m("een\ntwee\ndrie", "EEN\ntwee\ndrie", "een\ntwee\nDRIE");
        assert_eq!(r.text, "EEN\ntwee\nDRIE");
        assert!(r.conflicts.is_empty());
    }

    #[test]
    fn the_same_line_rewritten_twice_is_a_conflict_with_both_versions() {
        let base = "Offline werken tijdens huisbezoek.";
        let a = "Offline: huisbezoek met laptop.";
        let b = "Gouda: huisbezoek in Zeist.";
        let r = m(base, a, b);
        assert_eq!(r.text, a, "the first writer's line, whole");
        assert_eq!(
            r.conflicts,
            vec![TextConflict {
                first: a.into(),
                second: b.into()
            }]
        );
    }

    #[test]
    fn the_same_change_on_both_sides_is_taken_once() {
        let r = m("teh plan", "the plan", "the plan");
        assert_eq!(r.text, "the plan");
        assert!(r.conflicts.is_empty());
    }

    #[test]
    fn two_rewrites_of_one_line_that_change_different_words_merge_word_by_word() {
        let base = "Wij willen minder thuiszitters in de regio.";
        let a = "Samen met het onderwijs willen wij minder thuiszitters in de regio.";
        let b = "Wij willen minder thuiszitters in heel de regio.";
        let old: std::collections::HashMap<String, String> = changed_lines(base, a)
            .into_iter()
            .chain(changed_lines(base, b))
            .collect();
        let r = merge_with(&base_of(base), a, &base_of(base), b, |h| {
            old.get(h).cloned()
        })
        .unwrap();
        assert_eq!(
            r.text,
            "Samen met het onderwijs willen wij minder thuiszitters in heel de regio."
        );
        assert!(r.conflicts.is_empty());
        // The same words changed differently: a conflict, whole lines, no mixture.
        let c = "Wij willen geen thuiszitters in de regio.";
        let d = "Wij willen nul thuiszitters in de regio.";
        let r = merge_with(&base_of(base), c, &base_of(base), d, |_| Some(base.into())).unwrap();
        assert_eq!(r.text, c);
        assert_eq!(r.conflicts[0].second, d);
    }

    #[test]
    fn attack_huge_texts_are_not_diffed_on_every_read() {
        let base = "x\n".repeat(MAX_MERGE_UNITS + 1);
        let a = base.replace('x', "a");
        assert!(merge(&base_of(&base), &a, &base_of(&base), &base).is_none());
        let line = "w ".repeat(MAX_MERGE_UNITS);
        assert!(merge_words(&line, &format!("a{line}"), &format!("{line}b")).is_none());
    }

    #[test]
    fn overlapping_deletions_all_hold() {
        let base = "drie sporen: preventie, verzuim en terugkeer.";
        let a = "drie sporen: verzuim en terugkeer.";
        let b = "drie sporen: terugkeer.";
        let r = merge_with(&base_of(base), a, &base_of(base), b, |_| Some(base.into())).unwrap();
        assert_eq!(r.text, "drie sporen: terugkeer.");
        assert!(r.conflicts.is_empty());
    }

    #[test]
    fn insertions_deletions_and_different_bases() {
        let r = m("a\nb\nc", "a\nnieuw\nb\nc", "a\nb");
        assert_eq!(r.text, "a\nnieuw\nb");
        assert!(r.conflicts.is_empty());
        // Both insert at the same place, differently: a conflict, nothing lost.
        let r = m("a\nc", "a\nx\nc", "a\ny\nc");
        assert_eq!(r.text, "a\nx\nc");
        assert_eq!(r.conflicts.len(), 1);
        assert_eq!(r.conflicts[0].second, "y");
        // One deletes a line the other rewrote: a conflict (empty vs. the rewrite).
        let r = m("a\nb\nc", "a\nc", "a\nB\nc");
        assert_eq!(r.conflicts.len(), 1);
        assert_eq!(r.conflicts[0].second, "B");
        assert!(merge(&base_of("x"), "a", &base_of("y"), "b").is_none());
    }
}
