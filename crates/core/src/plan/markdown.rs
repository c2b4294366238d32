//! Markdown rendering of a plan, the default output of `regiosync doc show`.

use std::fmt::Write;

use super::{Plan, date_format};

/// Renders a plan as Markdown: title, kind and owner, the sections in order, then the
/// agreements as a table. `id` is printed under the title so a reader can refer to it.
pub fn render(plan: &Plan, id: &str) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; ignore the fmt::Result.
    let _ = writeln!(out, "# {}\n", plan.title);
    let _ = writeln!(
        out,
        "*{}* · eigenaar: {} · document `{id}`\n",
        plan.kind.label(),
        plan.owner
    );
    for s in &plan.sections {
        let _ = writeln!(out, "## {}\n", s.title);
        let text = s.text.trim_end();
        if !text.is_empty() {
            let _ = writeln!(out, "{text}\n");
        }
    }
    if !plan.agreements.is_empty() {
        let _ = writeln!(out, "## Afspraken\n");
        let _ = writeln!(out, "| id | afspraak | eigenaar | deadline | status |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for a in &plan.agreements {
            let deadline = a
                .deadline
                .map(date_format::format)
                .unwrap_or_else(|| "–".into());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                a.id,
                escape_cell(&a.title),
                a.owner,
                deadline,
                a.status
            );
        }
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Escapes the characters that would break a Markdown table cell.
fn escape_cell(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::PartyName;
    use crate::plan::{Agreement, AgreementStatus, PlanKind, Section};

    #[test]
    fn renders_sections_and_agreements() {
        let plan = Plan {
            schema: 1,
            kind: PlanKind::Ondersteuningsplan,
            title: "Ondersteuningsplan 2027".into(),
            owner: PartyName::new("swv-utrecht").unwrap(),
            sections: vec![Section {
                id: "s-1".into(),
                title: "Inleiding".into(),
                text: "Tekst\n".into(),
            }],
            agreements: vec![Agreement {
                id: "a-1".into(),
                title: "A | B".into(),
                owner: PartyName::new("roc-midden").unwrap(),
                deadline: None,
                status: AgreementStatus::Open,
            }],
        };
        let md = render(&plan, "abcd1234");
        assert_eq!(
            md,
            "# Ondersteuningsplan 2027\n\n*Ondersteuningsplan* · eigenaar: swv-utrecht · document `abcd1234`\n\n## Inleiding\n\nTekst\n\n## Afspraken\n\n| id | afspraak | eigenaar | deadline | status |\n|---|---|---|---|---|\n| a-1 | A \\| B | roc-midden | – | open |\n"
        );
    }
}
