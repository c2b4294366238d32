//! `regiosync dossier …` and `regiosync audit`: sealed student dossiers on this node,
//! and the audit log of every read and write.

use regiosync_core::audit::{Who, verify_chain};
use regiosync_core::dossier::Dossier;
use regiosync_core::plan::date_format;
use regiosync_node::StoreRead;
use regiosync_node::dossiers::{NewDossier, Reader};
use serde_json::json;

use crate::cli::{DossierCommand, GlobalArgs};
use crate::output::{Output, one_line};

/// Who runs the command, for the audit log: the OS user (`$USER`, else
/// `$USERNAME`, else on Unix the process's user id as `uid N`), and the `--user`
/// name as declared (not checked: the CLI has no sign-in; the web app records its
/// signed-in account).
pub(crate) fn who(declared: Option<&str>) -> anyhow::Result<Who> {
    let os_user = std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("USERNAME").ok())
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .or_else(uid)
        .unwrap_or_default();
    anyhow::ensure!(
        !os_user.is_empty(),
        "no login name found ($USER and $USERNAME are empty): the audit log records which OS user reads, writes or erases a dossier"
    );
    let declared = declared.map(str::trim).filter(|d| !d.is_empty());
    Ok(Who::Cli {
        os_user,
        declared: declared.map(str::to_owned),
    })
}

#[cfg(unix)]
fn uid() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is the process's user (Linux).
    std::fs::metadata("/proc/self")
        .ok()
        .map(|m| format!("uid {}", m.uid()))
}

#[cfg(not(unix))]
fn uid() -> Option<String> {
    None
}

pub(crate) fn run(
    global: &GlobalArgs,
    out: Output,
    user_arg: Option<&str>,
    cmd: DossierCommand,
) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    let reader = |purpose: &str| -> anyhow::Result<Reader> {
        anyhow::ensure!(
            !purpose.trim().is_empty(),
            "--purpose is empty: the audit log records why a dossier is made or read; say why (for example --purpose zorgoverleg)"
        );
        Ok(Reader {
            who: who(user_arg)?,
            purpose: purpose.to_owned(),
        })
    };
    match cmd {
        DossierCommand::New {
            woongemeente,
            basis,
            purpose,
            set,
        } => {
            anyhow::ensure!(
                !purpose.trim().is_empty(),
                "--purpose is empty: say why the woongemeente gets access (for example --purpose \"Jeugdwet: ondersteuning\")"
            );
            let id = node.create_dossier(
                &NewDossier {
                    woongemeente: woongemeente.clone(),
                    basis,
                    purpose,
                    fields: set,
                },
                &reader("aanmaken dossier")?,
            )?;
            out.emit(&json!({ "id": id, "woongemeente": woongemeente }), || {
                format!("Created dossier {id} (readable by this party and {woongemeente}).\n")
            })
        }
        DossierCommand::List => {
            let ids = node.dossier_ids()?;
            let rows: Vec<serde_json::Value> = ids
                .iter()
                .map(|id| {
                    let access = node.dossier_access(id).ok();
                    let readable = access
                        .as_ref()
                        .is_some_and(|a| a.has_access(&node.info().party) && a.erased.is_none());
                    // Who has access on what basis and until when (no purposes:
                    // free text stays with `dossier show`, which is audited).
                    let grants: Vec<serde_json::Value> = access
                        .as_ref()
                        .map(|a| {
                            a.grants
                                .iter()
                                .map(|(p, g)| json!({ "party": p, "basis": g.basis, "until": g.until.map(|d| d.to_string()) }))
                                .collect()
                        })
                        .unwrap_or_default();
                    json!({
                        "id": id,
                        "owner": access.as_ref().map(|a| a.owner.to_string()),
                        "readable": readable,
                        "grants": grants,
                    })
                })
                .collect();
            let sealed = rows.iter().filter(|r| r["readable"] == false).count();
            out.emit(&rows, || {
                let mut s: String = rows
                    .iter()
                    .filter(|r| r["readable"] == true)
                    .map(|r| {
                        let grants: Vec<String> = r["grants"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|g| {
                                let until = g["until"]
                                    .as_str()
                                    .map(|u| format!(" until {u}"))
                                    .unwrap_or_default();
                                format!(
                                    "{} ({}{until})",
                                    g["party"].as_str().unwrap_or("?"),
                                    g["basis"].as_str().unwrap_or("?")
                                )
                            })
                            .collect();
                        format!(
                            "{}  owner {}{}\n",
                            r["id"].as_str().unwrap_or(""),
                            r["owner"].as_str().unwrap_or("?"),
                            if grants.is_empty() {
                                String::new()
                            } else {
                                format!("  access: {}", one_line(&grants.join(", ")))
                            }
                        )
                    })
                    .collect();
                if s.is_empty() {
                    s = "No dossiers this party can read.\n".into();
                }
                if sealed > 0 {
                    s.push_str(&format!("({sealed} sealed dossiers held for others)\n"));
                }
                s
            })
        }
        DossierCommand::Show { id, purpose } => {
            let id = node.resolve_dossier(&id)?;
            let dossier = node.read_dossier(&id, &reader(&purpose)?)?;
            let access = node.dossier_access(&id)?;
            out.emit(
                &json!({ "id": id, "dossier": dossier, "owner": access.owner, "grants": access.grants }),
                || render(&id.to_string(), &dossier, &access),
            )
        }
        DossierCommand::Edit { id, field, value } => {
            let id = node.resolve_dossier(&id)?;
            node.edit_dossier(&id, field, &value, &reader("bijwerken dossier")?)?;
            out.emit(&json!({ "id": id, "field": field.as_str() }), || {
                format!("Set {field} of dossier {id}.\n")
            })
        }
        DossierCommand::Note { id, text } => {
            let id = node.resolve_dossier(&id)?;
            anyhow::ensure!(
                !text.trim().is_empty(),
                "the note is empty: write what happened, e.g. regiosync dossier note {id} \"Huisbezoek met ouders.\""
            );
            node.add_dossier_note(&id, &text, &reader("contactmoment")?)?;
            out.emit(&json!({ "id": id }), || {
                format!("Added a note to dossier {id}.\n")
            })
        }
        DossierCommand::Agreement { id, text, evaluate } => {
            let id = node.resolve_dossier(&id)?;
            anyhow::ensure!(
                !text.trim().is_empty(),
                "the agreement is empty: write what is agreed, e.g. regiosync dossier agreement {id} \"Wekelijks gesprek met de mentor\" --evaluate 2027-03-01"
            );
            let made = node.add_dossier_agreement(
                &id,
                text.trim(),
                evaluate,
                &reader("ondersteuningsafspraak")?,
            )?;
            out.emit(&json!({ "id": id, "agreement": made }), || {
                format!("Added support agreement {made} to dossier {id}.\n")
            })
        }
        DossierCommand::Grant {
            id,
            party,
            basis,
            purpose,
            until,
        } => {
            let id = node.resolve_dossier(&id)?;
            anyhow::ensure!(
                !purpose.trim().is_empty(),
                "--purpose is empty: say why {party} gets access (for example --purpose \"verhuizing\")"
            );
            node.grant_dossier(
                &id,
                party.clone(),
                basis,
                &purpose,
                until,
                &reader(&purpose)?,
            )?;
            out.emit(&json!({ "id": id, "granted": party }), || {
                format!("Granted {party} access to dossier {id}; its devices got every key.\n")
            })
        }
        DossierCommand::Erase { id, yes } => {
            let id = node.resolve_dossier(&id)?;
            if !yes {
                use anyhow::Context;
                use std::io::{BufRead, IsTerminal, Write};
                anyhow::ensure!(
                    std::io::stdin().is_terminal() && !out.json,
                    "erasing a dossier cannot be undone: add --yes to erase dossier {id} without being asked"
                );
                let short = &id.to_string()[..8];
                eprint!(
                    "Erase dossier {id}? Its keys and sealed changes are destroyed on this node and on every node that holds it; only who erased it and when remains. Type {short} to erase it: "
                );
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut answer)
                    .context("cannot read the confirmation")?;
                anyhow::ensure!(
                    answer.trim() == short,
                    "not confirmed: dossier {id} was not erased"
                );
            }
            node.erase_dossier(&id, &reader("wissen dossier")?)?;
            out.emit(&json!({ "id": id, "erased": true }), || {
                format!(
                    "Erased dossier {id}: its keys and sealed changes are destroyed on this node; the erasure reaches every node that holds it as they sync.\n"
                )
            })
        }
        DossierCommand::Revoke { id, party, reason } => {
            let id = node.resolve_dossier(&id)?;
            node.revoke_dossier(&id, party.clone(), &reason, &reader("intrekken toegang")?)?;
            out.emit(&json!({ "id": id, "revoked": party }), || {
                format!("Revoked {party}'s access to dossier {id}; what is written from now on is sealed with a new key.\n")
            })
        }
    }
}

fn render(
    id: &str,
    d: &Dossier,
    access: &regiosync_core::dossier::access::DossierAccess,
) -> String {
    let date = |x: Option<time::Date>| x.map(date_format::format).unwrap_or_else(|| "-".into());
    let mut s = format!(
        "Dossier {id}\n\nNaam:                   {}\nGeboortedatum:          {}\nWoongemeente:           {}\nOpleiding:              {}\nLocatie:                {}\nZorg:                   {}\n\nOndersteuningsbehoefte:\n{}\n",
        one_line(&d.naam),
        date(d.geboortedatum),
        d.woongemeente,
        one_line(&d.opleiding),
        one_line(&d.locatie),
        one_line(&d.zorg),
        d.ondersteuningsbehoefte
    );
    s.push_str("\nAfspraken (bijlage onderwijsovereenkomst):\n");
    for a in &d.afspraken {
        s.push_str(&format!(
            "  - {} (evaluatie {})\n",
            one_line(&a.tekst),
            date(a.evaluatie)
        ));
    }
    s.push_str("\nVerzuimsignalen:\n");
    for v in &d.verzuim {
        s.push_str(&format!(
            "  - {}: {}\n",
            date_format::format(v.datum),
            one_line(&v.signaal)
        ));
    }
    s.push_str("\nContactlog:\n");
    for c in &d.contacten {
        s.push_str(&format!(
            "  - {} {}: {}\n",
            date_format::format(c.datum),
            c.partij,
            c.tekst
        ));
    }
    s.push_str(&format!("\nToegang: {} (eigenaar)", access.owner));
    for (p, g) in &access.grants {
        let until = g.until.map(|d| format!(", until {d}")).unwrap_or_default();
        s.push_str(&format!(
            ", {p} ({}{until}: {})",
            g.basis,
            one_line(&g.purpose)
        ));
    }
    s.push('\n');
    s
}

pub(crate) fn audit(global: &GlobalArgs, out: Output, verify: bool) -> anyhow::Result<()> {
    let node = super::open_node(global)?;
    let log = node.store().audit_log()?;
    if verify {
        let n = verify_chain(log.clone())?;
        return out.emit(&json!({ "entries": n, "intact": true }), || {
            format!("The audit log is intact: {n} entries, hash chain verified.\n")
        });
    }
    let rows: Vec<serde_json::Value> = log
        .iter()
        .map(|(seq, e, _)| {
            json!({
                "seq": seq,
                "at_ms": e.at_ms,
                "format": e.who.format(),
                "via": e.who.via(),
                "user": e.who.name(),
                "declared": e.who.declared(),
                "dossier": e.dossier,
                "action": e.action,
                "purpose": e.purpose,
            })
        })
        .collect();
    out.emit(&rows, || {
        log.iter()
            .map(|(seq, e, _)| {
                format!(
                    "{seq:>5}  {}  {:<24} {:<8} {}  {}\n",
                    super::human_time(e.at_ms / 1000),
                    one_line(&e.who.to_string()),
                    one_line(&e.action),
                    e.dossier,
                    one_line(&e.purpose)
                )
            })
            .collect()
    })
}
