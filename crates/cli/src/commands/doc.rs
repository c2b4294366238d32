//! `regiosync doc …`: create, list, show and edit plan documents.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::Context;
use regiosync_core::plan::{self, AgreementInput, MAX_SECTION_BYTES, date_format};
use serde_json::json;
use time::OffsetDateTime;

use crate::cli::{AgreementCommand, DocCommand, GlobalArgs, NewDoc, SectionCommand, ShowFormat};
use crate::output::Output;

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
                    .map(|d| format!("{:width$}  {:<18}  {}\n", d.short, d.subkind, d.title))
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
                let short = node.short_id(&id)?;
                let ctx = plan::markdown::ExportContext {
                    id: short,
                    comments: true,
                    ..Default::default()
                };
                out.emit(&(), || plan::markdown::render(&plan, &ctx))
            }
        }
        DocCommand::Section(SectionCommand::Set { id, section, file }) => {
            let id = node.resolve(&id)?;
            let text = read_text(file.as_deref())?;
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
        } => {
            let id = node.resolve(&id)?;
            if readers.is_some() || writers.is_some() {
                node.set_acl(&id, readers, writers)?;
            }
            let state = node.region_state()?;
            let acl = state
                .docs
                .get(&id)
                .context("the document is not registered in the region")?;
            out.emit(acl, || {
                let list = |s: &std::collections::BTreeSet<regiosync_core::id::PartyName>| {
                    s.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                };
                format!(
                    "owner:   {}\nreaders: {}\nwriters: {}\n",
                    acl.owner,
                    list(&acl.readers),
                    list(&acl.writers)
                )
            })
        }
        DocCommand::Log { id } => {
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
                            "{}  {:<20}  device …{}  {}\n",
                            super::human_time(h.time),
                            h.party.as_ref().map_or("(other party)", |p| p.as_str()),
                            h.device.map_or_else(|| "unknown".into(), |d| d.short()),
                            h.message.as_deref().unwrap_or(""),
                        )
                    })
                    .collect()
            })
        }
    }
}

/// Reads section text from `file`, or from stdin, refusing more than the section
/// limit and text that is not UTF-8.
fn read_text(file: Option<&Path>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    let limit = MAX_SECTION_BYTES as u64 + 1;
    match file {
        Some(p) => {
            let f =
                std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
            f.take(limit)
                .read_to_end(&mut bytes)
                .with_context(|| format!("cannot read {}", p.display()))?;
        }
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
