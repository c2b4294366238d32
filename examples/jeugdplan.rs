#![allow(clippy::print_stdout)] // an example prints its result
//! A kerngemeente's node drafts a jeugdplan with a section and two agreements, then
//! prints it as Markdown. Everything is stored durably in a temporary data dir.
//!
//! Run: `cargo run -p regiosync-examples --example jeugdplan`

use regiosync_core::id::{PartyName, Role};
use regiosync_core::plan::{AgreementInput, PlanKind, markdown, parse_date};
use regiosync_node::Node;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let info = Node::init(
        dir.path(),
        PartyName::new("gemeente-utrecht")?,
        Role::Kerngemeente,
        None,
    )?;
    println!(
        "node {} ({}) in {}\n",
        info.node_id,
        info.party,
        dir.path().display()
    );

    let mut node = Node::open(dir.path())?;
    node.create_region("Regio Utrecht")?;
    let id = node.create_plan(PlanKind::Jeugdplan, "Beleidsplan jeugd 2027-2030")?;
    node.set_section(
        &id,
        "Inleiding",
        "Dit plan is afgestemd met het ROC en het samenwerkingsverband in het OOGO.\n",
    )?;
    node.set_section(
        &id,
        "Doelen",
        "1. Geen jongere zonder startkwalificatie uit beeld.\n2. Warme overdracht vo-mbo.\n",
    )?;
    for (title, owner, deadline) in [
        ("Verzuimaanpak 18-", "roc-midden", Some("2027-03-31")),
        ("Jeugdhulp op school", "gemeente-utrecht", None),
    ] {
        node.add_agreement(
            &id,
            &AgreementInput {
                title: title.into(),
                owner: PartyName::new(owner)?,
                deadline: deadline.map(parse_date).transpose()?,
            },
        )?;
    }

    // Reopen, as a later process would: everything acknowledged is on disk.
    let node = Node::open(dir.path())?;
    let plan = node.plan(&id)?;
    println!("{}", markdown::render(&plan, &node.export_context(&id)?));
    println!("\nhistory:");
    for h in node.history(&id)? {
        println!("  seq {:>2}  {}", h.seq, h.message.unwrap_or_default());
    }
    Ok(())
}
