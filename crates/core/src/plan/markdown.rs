//! Markdown rendering of a plan: the default output of `regiosync doc show` and the
//! `md` format of `doc export` (the agenda of an OOGO meeting). Text from the
//! document is escaped; links keep their target only if the HTML export would too
//! ([`super::richtext::safe_url`]: http, https and mailto).

use std::fmt::Write;

use super::richtext::{escape_markdown, single_line};
use super::{Plan, date_format};

/// What a rendering prints besides the plan itself: which document and version it
/// is, and who approved which version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportContext {
    /// The document id as shown to people (short form).
    pub id: String,
    /// The rendered version: its heads, shortened, comma-separated.
    pub version: String,
    /// One line per approving party.
    pub approvals: Vec<ApprovalLine>,
    /// Whether to list open comments and print section ids (`doc show`) or not
    /// (printed exports).
    pub comments: bool,
}

/// A party's approval, as a rendering shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalLine {
    /// The approving party.
    pub party: String,
    /// The approved version, shortened heads.
    pub version: String,
    /// When, as `YYYY-MM-DD HH:MM UTC`.
    pub time: String,
    /// The comment, if any.
    pub comment: Option<String>,
    /// How many changes came after the approved version; `None` when this node does
    /// not have that version (yet).
    pub changes_since: Option<usize>,
}

impl ApprovalLine {
    /// "approved this version" / "N changes since" / "version not on this node".
    pub fn status(&self) -> String {
        match self.changes_since {
            Some(0) => "deze versie".into(),
            Some(1) => "1 wijziging sinds".into(),
            Some(n) => format!("{n} wijzigingen sinds"),
            None => "versie nog niet op dit knooppunt".into(),
        }
    }
}

/// A one-line field escaped for Markdown (titles from a received change may hold
/// line breaks; they must not start a forged heading).
fn esc(text: &str) -> String {
    escape_markdown(&single_line(text))
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM UTC`.
pub fn format_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Text as a Markdown block quote, escaped, every line quoted.
fn quoted(text: &str) -> String {
    text.split('\n')
        .map(|l| format!("> {}", esc(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Renders a plan as Markdown: title, kind, owner and version, the sections in order,
/// the agreements as a table, the approvals and (if asked) the open comments.
pub fn render(plan: &Plan, ctx: &ExportContext) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; ignore the fmt::Result.
    let _ = writeln!(out, "# {}\n", esc(&plan.title));
    let _ = write!(
        out,
        "*{}* · eigenaar: {} · document `{}`",
        plan.kind.label(),
        plan.owner,
        ctx.id
    );
    if !ctx.version.is_empty() {
        let _ = write!(out, " · versie `{}`", ctx.version);
    }
    out.push_str("\n\n");
    for s in &plan.sections {
        if ctx.comments {
            // `doc show`: the id that addresses the section in commands.
            let _ = writeln!(out, "## {} `{}`\n", esc(&s.title), s.id);
        } else {
            let _ = writeln!(out, "## {}\n", esc(&s.title));
        }
        let text = s.text.trim_end();
        if !text.is_empty() {
            let _ = writeln!(out, "{text}\n");
        }
        for c in plan
            .conflicts
            .iter()
            .filter(|c| c.target == format!("section {}", s.id) && c.field == "text")
        {
            let _ = writeln!(
                out,
                "> ⚠ Conflict: deze regels zijn tegelijk verschillend herschreven. Hierboven staat:\n>\n{}\n>\n> De andere versie:\n>\n{}\n",
                quoted(c.values.first().map_or("", |v| v.value.as_str())),
                quoted(c.values.get(1).map_or("", |v| v.value.as_str())),
            );
        }
    }
    if !plan.agreements.is_empty() {
        let _ = writeln!(out, "## Afspraken\n");
        let _ = writeln!(
            out,
            "| id | afspraak | eigenaar | deadline | status | financiering |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for a in &plan.agreements {
            let deadline = a
                .deadline
                .map(date_format::format)
                .unwrap_or_else(|| "–".into());
            let target = format!("agreement {}", a.id);
            let conflicted = |f: &str| {
                plan.conflict_values(&target, f)
                    .map(|v| format!(" ⚠ conflict: {}", v.join(" / ")))
                    .unwrap_or_default()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}{} | {}{} | {} |",
                a.id,
                escape_cell(&a.title),
                a.owner,
                deadline,
                escape_cell(&conflicted("deadline")),
                a.status,
                escape_cell(&conflicted("status")),
                escape_cell(a.funding.as_deref().unwrap_or("–")),
            );
        }
        out.push('\n');
        for a in plan
            .agreements
            .iter()
            .filter(|a| !a.description.trim().is_empty())
        {
            let _ = writeln!(
                out,
                "**{}** {}\n",
                a.id,
                escape_markdown(a.description.trim())
            );
        }
    }
    if !ctx.approvals.is_empty() {
        let _ = writeln!(out, "## Instemming\n");
        let _ = writeln!(out, "| partij | versie | wanneer | stand | opmerking |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for a in &ctx.approvals {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} |",
                a.party,
                a.version,
                a.time,
                a.status(),
                escape_cell(a.comment.as_deref().unwrap_or("–"))
            );
        }
        out.push('\n');
    }
    if ctx.comments {
        let open: Vec<_> = plan.comments.iter().filter(|c| !c.resolved).collect();
        if !open.is_empty() {
            let _ = writeln!(out, "## Opmerkingen\n");
            for c in open {
                let on = c.anchored.as_deref().unwrap_or("(tekst verwijderd)");
                let section = plan.section(&c.section).map_or("?", |s| s.title.as_str());
                let _ = writeln!(
                    out,
                    "- `{}` {} over \"{}\" in {}: {}",
                    c.id,
                    c.author,
                    esc(on),
                    esc(section),
                    esc(&c.text)
                );
            }
            out.push('\n');
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Escapes plain text for a Markdown table cell: Markdown syntax, the cell
/// separator and line breaks.
fn escape_cell(s: &str) -> String {
    single_line(s)
        .split('|')
        .map(esc)
        .collect::<Vec<_>>()
        .join("\\|")
}
