//! HTML rendering of a plan (`doc export --format html`): one standalone page, no
//! scripts and no external resources, readable on screen and printable as the agenda
//! of an OOGO meeting. Everything from the document is escaped; links only to http,
//! https and mailto survive.

use std::fmt::Write;

use super::markdown::ExportContext;
use super::richtext::{escape_html as esc, to_html};
use super::{Plan, date_format};

const STYLE: &str = "body{font-family:Georgia,'Times New Roman',serif;max-width:46em;margin:2em auto;padding:0 1em;line-height:1.5;color:#111}
h1{font-size:1.8em;margin-bottom:.2em}h2{border-bottom:1px solid #999;margin-top:1.6em}
.meta{color:#444;font-size:.95em}table{border-collapse:collapse;width:100%;margin:1em 0}
th,td{border:1px solid #999;padding:.3em .5em;text-align:left;vertical-align:top}th{background:#eee}
.conflict{color:#a00;font-weight:bold}code{font-size:.9em}
@media print{body{margin:0;max-width:none}h2{page-break-after:avoid}table{page-break-inside:avoid}}";

/// Renders a plan as a standalone HTML page.
pub fn render(plan: &Plan, ctx: &ExportContext) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"nl\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n",
        esc(&plan.title)
    );
    out.push_str(&render_body(plan, ctx));
    out.push_str("</body>\n</html>\n");
    out
}

/// Renders the content of a plan's page (what [`render`] puts in `<body>`): the
/// title as `<h1>`, sections, conflicts, agreements and approvals, everything from the
/// document escaped; no styles or scripts, so a web page can embed it.
pub fn render_body(plan: &Plan, ctx: &ExportContext) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<h1>{}</h1>", esc(&plan.title));
    let _ = write!(
        out,
        "<p class=\"meta\">{} · eigenaar: {} · document <code>{}</code>",
        esc(plan.kind.label()),
        esc(plan.owner.as_str()),
        esc(&ctx.id)
    );
    if !ctx.version.is_empty() {
        let _ = write!(out, " · versie <code>{}</code>", esc(&ctx.version));
    }
    out.push_str("</p>\n");
    for s in &plan.sections {
        let _ = writeln!(out, "<h2>{}</h2>", esc(&s.title));
        out.push_str(&to_html(&s.blocks));
        for c in plan
            .conflicts
            .iter()
            .filter(|c| c.target == format!("section {}", s.id) && c.field == "text")
        {
            let version = |i: usize| {
                c.values
                    .get(i)
                    .map_or(String::new(), |v| esc(&v.value).replace('\n', "<br>"))
            };
            let _ = writeln!(
                out,
                "<div class=\"conflict\">⚠ Conflict: deze regels zijn tegelijk verschillend herschreven. Hierboven staat:<blockquote>{}</blockquote>De andere versie:<blockquote>{}</blockquote></div>",
                version(0),
                version(1)
            );
        }
    }
    if !plan.agreements.is_empty() {
        out.push_str("<h2>Afspraken</h2>\n<table>\n<tr><th>id</th><th>afspraak</th><th>eigenaar</th><th>deadline</th><th>status</th><th>financiering</th></tr>\n");
        for a in &plan.agreements {
            let target = format!("agreement {}", a.id);
            let conflicted = |f: &str| {
                plan.conflict_values(&target, f)
                    .map(|v| {
                        format!(
                            " <span class=\"conflict\">conflict: {}</span>",
                            esc(&v.join(" / "))
                        )
                    })
                    .unwrap_or_default()
            };
            let deadline = a
                .deadline
                .map(date_format::format)
                .unwrap_or_else(|| "–".into());
            let mut title = esc(&a.title);
            if !a.description.trim().is_empty() {
                let _ = write!(title, "<br>{}", esc(a.description.trim()));
            }
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{title}</td><td>{}</td><td>{}{}</td><td>{}{}</td><td>{}</td></tr>",
                esc(&a.id),
                esc(a.owner.as_str()),
                deadline,
                conflicted("deadline"),
                a.status,
                conflicted("status"),
                esc(a.funding.as_deref().unwrap_or("–")),
            );
        }
        out.push_str("</table>\n");
    }
    if !ctx.approvals.is_empty() {
        out.push_str("<h2>Instemming</h2>\n<table>\n<tr><th>partij</th><th>versie</th><th>wanneer</th><th>stand</th><th>opmerking</th></tr>\n");
        for a in &ctx.approvals {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.party),
                esc(&a.version),
                esc(&a.time),
                esc(&a.status()),
                esc(a.comment.as_deref().unwrap_or("–")),
            );
        }
        out.push_str("</table>\n");
    }
    out
}
