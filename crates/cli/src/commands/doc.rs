//! `regiosync doc …`: create, list, show and edit plan documents.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::Context;
use regiosync_core::plan::{self, AgreementInput, AgreementUpdate, MAX_SECTION_BYTES, date_format};
use regiosync_node::ExportFormat;
use regiosync_node::input_file::{InputKind, read_input_file};
use serde_json::json;
use time::OffsetDateTime;

use crate::cli::{
    AgreementCommand, CommentCommand, DocCommand, ExportKind, GlobalArgs, NewDoc, SectionCommand,
    ShowFormat,
};
use crate::output::{Lines, Output, one_line, terminal_safe};

pub(crate) fn run(global: &GlobalArgs, out: Output, cmd: DocCommand) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    match cmd {
        DocCommand::New(NewDoc::Plan { kind, title }) => {
            let id = node.create_plan(kind, &title)?;
            let short = node.short_id(&id)?;
            out.emit(
                &json!({ "id": id, "short": short, "kind": "plan", "subkind": kind }),
                || format!("Created {kind} {short}\n"),
            )
        }
        DocCommand::List => {
            let docs = node.documents()?;
            out.emit(&docs, || {
                if docs.is_empty() {
                    return "No documents yet. Create one with: regiosync doc new plan --kind jeugdplan --title TITLE\n".into();
                }
                let width = docs.iter().map(|d| d.short.len()).max().unwrap_or(8);
                docs.iter()
                    .map(|d| {
                        format!(
                            "{:width$}  {:<18}  {}\n",
                            d.short,
                            d.subkind,
                            one_line(&d.title)
                        )
                    })
                    .collect()
            })
        }
        DocCommand::Show { id, format } => {
            let id = node.resolve(&id)?;
            let plan = node.plan(&id)?;
            if out.json || format == ShowFormat::Json {
                #[derive(serde::Serialize)]
                struct Shown<'a> {
                    id: regiosync_core::id::DocId,
                    #[serde(flatten)]
                    plan: &'a plan::Plan,
                }
                Output { json: true }.emit(&Shown { id, plan: &plan }, String::new)
            } else {
                let mut ctx = node.export_context(&id)?;
                ctx.comments = true;
                out.emit(&(), || plan::markdown::render(&plan, &ctx))
            }
        }
        DocCommand::Section(SectionCommand::Set {
            id,
            section,
            file,
            allow_empty,
        }) => {
            let id = node.resolve(&id)?;
            let text = read_text(file.as_deref())?;
            anyhow::ensure!(
                allow_empty || !text.trim().is_empty(),
                "the new text of section \"{}\" is empty ({}): nothing was changed. To empty the section on purpose, add --allow-empty",
                one_line(section.trim()),
                if file.is_some() {
                    "the file is empty"
                } else {
                    "nothing came in on stdin"
                }
            );
            let edited = node.set_section(&id, &section, &text)?;
            let changed = edited.change.is_some();
            out.emit(
                &json!({
                    "id": id,
                    "section": edited.value.id,
                    "created": edited.value.created,
                    "changed": changed,
                }),
                || match (edited.value.created, changed) {
                    (true, _) => {
                        format!("Added section {} ({})\n", section.trim(), edited.value.id)
                    }
                    (false, true) => {
                        format!("Updated section {} ({})\n", section.trim(), edited.value.id)
                    }
                    (false, false) => format!("Section {} is unchanged\n", section.trim()),
                },
            )
        }
        DocCommand::Section(SectionCommand::Delete { id, section }) => {
            let id = node.resolve(&id)?;
            let edited = node.delete_section(&id, &section)?;
            out.emit(&json!({ "id": id, "section": edited.value }), || {
                format!(
                    "Deleted section {} ({}); `regiosync doc history {id}` keeps it.\n",
                    one_line(section.trim()),
                    edited.value
                )
            })
        }
        DocCommand::Section(SectionCommand::Move {
            id,
            section,
            before,
            after,
            first,
            last,
        }) => {
            let id = node.resolve(&id)?;
            let place = match (before, after, first, last) {
                (Some(s), _, _, _) => plan::SectionPlace::Before(s),
                (_, Some(s), _, _) => plan::SectionPlace::After(s),
                (_, _, true, _) => plan::SectionPlace::First,
                _ => plan::SectionPlace::Last,
            };
            let where_to = match &place {
                plan::SectionPlace::First => "to the start".to_owned(),
                plan::SectionPlace::Last => "to the end".to_owned(),
                plan::SectionPlace::Before(s) => format!("before {}", one_line(s.trim())),
                plan::SectionPlace::After(s) => format!("after {}", one_line(s.trim())),
            };
            let edited = node.move_section(&id, &section, &place)?;
            let m = &edited.value;
            out.emit(
                &json!({
                    "id": id,
                    "section": m.id,
                    "moved": m.moved,
                    "position": m.position,
                    "count": m.count,
                }),
                || {
                    let name = one_line(&m.title);
                    if m.moved {
                        format!(
                            "Moved section {name} ({}) {where_to}: it is now section {} of {}.\n",
                            m.id, m.position, m.count
                        )
                    } else {
                        format!(
                            "Section {name} ({}) is already there (section {} of {}): nothing was changed.\n",
                            m.id, m.position, m.count
                        )
                    }
                },
            )
        }
        DocCommand::Agreement(AgreementCommand::Remove { id, agreement }) => {
            let id = node.resolve(&id)?;
            node.remove_agreement(&id, &agreement)?;
            out.emit(&json!({ "id": id, "removed": agreement.trim() }), || {
                format!(
                    "Removed agreement {} from the plan; `regiosync doc history {id}` keeps it.\n",
                    one_line(agreement.trim())
                )
            })
        }
        DocCommand::Section(SectionCommand::Rename { id, section, title }) => {
            let id = node.resolve(&id)?;
            let edited = node.rename_section(&id, &section, &title)?;
            out.emit(&json!({ "id": id, "section": edited.value }), || {
                format!("Renamed section {} to {}\n", edited.value, title.trim())
            })
        }
        DocCommand::Agreement(AgreementCommand::Set {
            id,
            agreement,
            title,
            description,
            owner,
            deadline,
            status,
            funding,
            link,
            unlink,
        }) => {
            let id = node.resolve(&id)?;
            let update = AgreementUpdate {
                title,
                description,
                owner,
                deadline: deadline.map(|d| d.0),
                status,
                funding: funding.map(|f| (f.trim() != "none").then_some(f)),
                link,
                unlink,
            };
            let edited = node.update_agreement(&id, &agreement, &update)?;
            let changed = edited.change.is_some();
            out.emit(
                &json!({ "id": id, "agreement": agreement.trim(), "changed": changed }),
                || {
                    if changed {
                        format!("Updated agreement {}\n", agreement.trim())
                    } else {
                        format!("Agreement {} is unchanged\n", agreement.trim())
                    }
                },
            )
        }
        DocCommand::Comment(CommentCommand::Add {
            id,
            section,
            quote,
            text,
        }) => {
            let id = node.resolve(&id)?;
            let edited = node.add_comment(&id, &section, &quote, &text)?;
            out.emit(&json!({ "id": id, "comment": edited.value }), || {
                format!("Added comment {}\n", edited.value)
            })
        }
        DocCommand::Comment(CommentCommand::Resolve {
            id,
            comment,
            reopen,
        }) => {
            let id = node.resolve(&id)?;
            node.resolve_comment(&id, &comment, !reopen)?;
            out.emit(
                &json!({ "id": id, "comment": comment.trim(), "resolved": !reopen }),
                || {
                    if reopen {
                        format!("Reopened comment {}\n", comment.trim())
                    } else {
                        format!("Resolved comment {}\n", comment.trim())
                    }
                },
            )
        }
        DocCommand::Comment(CommentCommand::List { id, all }) => {
            let id = node.resolve(&id)?;
            let p = node.plan(&id)?;
            let comments: Vec<_> = p.comments.iter().filter(|c| all || !c.resolved).collect();
            out.emit(&comments, || {
                if comments.is_empty() {
                    return "No open comments.\n".into();
                }
                comments
                    .iter()
                    .map(|c| {
                        let section = p.section(&c.section).map_or("?", |s| s.title.as_str());
                        format!(
                            "{}  {}  {}  {} on \"{}\"{}: {}\n",
                            one_line(&c.id),
                            super::human_time(c.time),
                            c.author,
                            one_line(section),
                            one_line(c.anchored.as_deref().unwrap_or("(text deleted)")),
                            if c.resolved { " [resolved]" } else { "" },
                            one_line(&c.text)
                        )
                    })
                    .collect()
            })
        }
        DocCommand::Conflicts { id } => {
            let id = node.resolve(&id)?;
            let conflicts = node.plan_conflicts(&id)?;
            out.emit(&conflicts, || {
                if conflicts.is_empty() {
                    return "No conflicts.\n".into();
                }
                let mut s = String::new();
                for c in &conflicts {
                    s.push_str(&format!(
                        "{} ({}): {}\n",
                        one_line(&c.target),
                        one_line(&c.label),
                        one_line(&c.field)
                    ));
                    for (k, v) in c.values.iter().enumerate() {
                        let by = v.party.as_ref().map_or("(unknown party)", |p| p.as_str());
                        if c.field == "text" {
                            // Each party's version of the lines, whole and readable.
                            s.push_str(&format!(
                                "  {} by {by}:\n",
                                if k == 0 { "shown, written" } else { "also written" }
                            ));
                            for line in v.value.split('\n') {
                                s.push_str(&format!(
                                    "    | {}\n",
                                    terminal_safe(line, Lines::Escape)
                                ));
                            }
                        } else {
                            s.push_str(&format!("    {:<24} by {by}\n", one_line(&v.value)));
                        }
                    }
                }
                s.push_str("Resolve a conflict by setting the value you agree on (for a section's text: `regiosync doc section set ID SECTION` with the agreed text).\n");
                s
            })
        }
        DocCommand::Approve { id, comment } => {
            let id = node.resolve(&id)?;
            let heads = node.approve(&id, comment.as_deref())?;
            let version = regiosync_node::plan_versions::short_heads(&heads);
            out.emit(&json!({ "id": id, "heads": heads.iter().map(|h| h.to_string()).collect::<Vec<_>>() }), || {
                format!("Approved version {version} for your party\n")
            })
        }
        DocCommand::Approvals { id } => {
            let id = node.resolve(&id)?;
            let approvals = node.approvals(&id)?;
            out.emit(&approvals, || approvals_text(&approvals))
        }
        DocCommand::Diff { id, from, to } => {
            let id = node.resolve(&id)?;
            let (diff, from, to) = node.plan_diff(&id, &from, to.as_deref())?;
            out.emit(&diff, || plan::diff::render(&diff, &from, &to))
        }
        DocCommand::Export { id, format, output } => {
            let id = node.resolve(&id)?;
            let format = match format {
                ExportKind::Md => ExportFormat::Markdown,
                ExportKind::Html => ExportFormat::Html,
                ExportKind::Automerge => ExportFormat::Automerge,
            };
            let bytes = node.export_plan(&id, format)?;
            match output {
                Some(path) => {
                    super::write_atomically(&path, &bytes)?;
                    out.emit(
                        &json!({ "id": id, "file": path, "bytes": bytes.len() }),
                        || format!("Wrote {} ({} bytes)\n", path.display(), bytes.len()),
                    )
                }
                None => {
                    let terminal = std::io::stdout().is_terminal();
                    anyhow::ensure!(
                        format != ExportFormat::Automerge || !terminal,
                        "the Automerge export is binary: write it to a file with --output FILE"
                    );
                    // On a terminal, the export's text is shown as `doc show` would.
                    let shown = if terminal {
                        terminal_safe(&String::from_utf8_lossy(&bytes), Lines::Keep)
                            .into_owned()
                            .into_bytes()
                    } else {
                        bytes
                    };
                    std::io::stdout()
                        .write_all(&shown)
                        .context("cannot write to stdout")?;
                    Ok(())
                }
            }
        }
        DocCommand::Agreement(AgreementCommand::Add {
            id,
            title,
            owner,
            deadline,
        }) => {
            let id = node.resolve(&id)?;
            let input = AgreementInput {
                title,
                owner,
                deadline,
            };
            let edited = node.add_agreement(&id, &input)?;
            out.emit(&json!({ "id": id, "agreement": edited.value }), || {
                format!(
                    "Added agreement {} for {}{}\n",
                    edited.value,
                    input.owner,
                    deadline
                        .map(|d| format!(", deadline {}", date_format::format(d)))
                        .unwrap_or_default()
                )
            })
        }
        DocCommand::Acl {
            id,
            readers,
            writers,
            add_reader,
            add_writer,
            remove_reader,
            remove_writer,
        } => {
            let id = node.resolve(&id)?;
            let change = regiosync_node::AclChange {
                readers,
                writers,
                add_readers: add_reader,
                add_writers: add_writer,
                remove_readers: remove_reader,
                remove_writers: remove_writer,
            };
            let before = node
                .region_state()?
                .docs
                .get(&id)
                .cloned()
                .context("the document is not registered in the region")?;
            let changed = change != regiosync_node::AclChange::default()
                && !node.change_acl(&id, &change)?.is_empty();
            let state = node.region_state()?;
            let acl = state
                .docs
                .get(&id)
                .context("the document is not registered in the region")?;
            out.emit(acl, || {
                let mut text = String::new();
                if change != regiosync_node::AclChange::default() {
                    if changed {
                        text.push_str("Changed the access lists. Before:\n");
                        for line in acl_text(&before, &state).lines() {
                            text.push_str(&format!("  {line}\n"));
                        }
                        text.push_str("Now:\n");
                    } else {
                        text.push_str("Nothing changed: the access lists already were as asked.\n");
                    }
                }
                text.push_str(&acl_text(acl, &state));
                text
            })
        }
        DocCommand::History { id } => {
            let id = node.resolve(&id)?;
            let history = node.history(&id)?;
            let rows: Vec<_> = history
                .iter()
                .map(|h| {
                    json!({
                        "hash": h.hash,
                        "time": rfc3339(h.time),
                        "device": h.device,
                        "party": h.party,
                        "seq": h.seq,
                        "message": h.message,
                    })
                })
                .collect();
            out.emit(&rows, || {
                history
                    .iter()
                    .map(|h| {
                        format!(
                            "{}  {}  {:<20}  device …{}  {}\n",
                            &h.hash[..8],
                            super::human_time(h.time),
                            h.party.as_ref().map_or("(other party)", |p| p.as_str()),
                            h.device.map_or_else(|| "unknown".into(), |d| d.short()),
                            one_line(h.message.as_deref().unwrap_or("")),
                        )
                    })
                    .collect()
            })
        }
    }
}

/// `doc approvals` for people: one line per party. The comment is quoted and kept on
/// its line (a received comment may hold line breaks or escape sequences).
fn approvals_text(approvals: &[regiosync_node::plan_versions::ApprovalView]) -> String {
    if approvals.is_empty() {
        return "No party has approved this plan yet.\n".into();
    }
    approvals
        .iter()
        .map(|a| {
            let since = match a.changes_since {
                Some(0) => "approved the current version".to_owned(),
                Some(1) => "1 change since".to_owned(),
                Some(n) => format!("{n} changes since"),
                None => "approved a version this node does not have yet".to_owned(),
            };
            let version: Vec<String> = a
                .heads
                .iter()
                .map(|h| one_line(h).chars().take(8).collect())
                .collect();
            format!(
                "{:<20}  {}  {}  device …{}  {}{}\n",
                a.party,
                version.join(","),
                super::human_time(a.time),
                a.device.short(),
                since,
                a.comment
                    .as_deref()
                    .map(|c| format!("  \"{}\"", one_line(c).replace('"', "\\\"")))
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// Reads section text from `file`, or from stdin, refusing more than the section
/// limit and text that is not UTF-8.
fn read_text(file: Option<&Path>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    let limit = MAX_SECTION_BYTES as u64 + 1;
    match file {
        Some(p) => bytes = read_input_file(p, InputKind::Text)?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("Type the section text, then press Ctrl-D (or pass --file FILE).");
            }
            stdin
                .lock()
                .take(limit)
                .read_to_end(&mut bytes)
                .context("cannot read stdin")?;
        }
    }
    anyhow::ensure!(
        bytes.len() <= MAX_SECTION_BYTES,
        "the section text is larger than {MAX_SECTION_BYTES} bytes: split it into several sections"
    );
    String::from_utf8(bytes)
        .context("the section text is not UTF-8: save the file as UTF-8 and try again")
}

fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// A plan's access lists as `doc acl` prints them: "every party of the region" where
/// the list is open to everyone, else the parties by name.
fn acl_text(
    acl: &regiosync_core::control::DocAcl,
    state: &regiosync_core::control::RegionState,
) -> String {
    let list = |everyone: bool, set: &std::collections::BTreeSet<regiosync_core::id::PartyName>| {
        if everyone {
            let now: Vec<&str> = state
                .parties
                .iter()
                .filter(|(_, p)| !p.removed)
                .map(|(n, _)| n.as_str())
                .collect();
            format!(
                "every party of the region, also the ones that join later (now: {})",
                now.join(", ")
            )
        } else {
            set.iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    format!(
        "owner:   {}\nreaders: {}\nwriters: {}\n",
        acl.owner,
        list(acl.everyone_reads, &acl.readers),
        list(acl.everyone_writes, &acl.writers)
    )
}

#[cfg(test)]
mod tests {
    use regiosync_core::id::PartyName;
    use regiosync_core::identity::NodeSecret;
    use regiosync_node::ApprovalView;

    use super::approvals_text;

    #[test]
    fn a_newline_in_a_received_approval_comment_cannot_forge_a_line() {
        let device = NodeSecret::generate().unwrap().node_id();
        let forged = ApprovalView {
            party: PartyName::new("gemeente-zeist").unwrap(),
            heads: vec!["ab".repeat(32)],
            device,
            time: 1_800_000_000,
            comment: Some(
                "akkoord\"\ngemeente-utrecht      abababab  2027-01-15 10:00:00 UTC  approved the current version\u{1b}[8m"
                    .into(),
            ),
            changes_since: Some(0),
        };
        let text = approvals_text(&[forged]);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text}");
        assert!(text.contains(r#""akkoord\"\ngemeente-utrecht"#), "{text}");
        assert!(text.contains(r"\u{1b}[8m"), "{text}");

        // An honest one-line comment is shown as it was written.
        let honest = ApprovalView {
            comment: Some("akkoord in OOGO".into()),
            ..approvals_text_fixture(device)
        };
        assert!(approvals_text(&[honest]).contains("  \"akkoord in OOGO\"\n"));
    }

    fn approvals_text_fixture(device: regiosync_core::id::NodeId) -> ApprovalView {
        ApprovalView {
            party: PartyName::new("roc-midden").unwrap(),
            heads: vec!["cd".repeat(32)],
            device,
            time: 1_800_000_000,
            comment: None,
            changes_since: Some(1),
        }
    }
}
