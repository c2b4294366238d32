//! `regiosync init`.

use regiosync_core::id::{PartyName, Role};
use regiosync_node::{KeyProtection, Node};
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::output::Output;

pub(crate) fn run(
    global: &GlobalArgs,
    out: Output,
    party: PartyName,
    role: Role,
) -> anyhow::Result<()> {
    let dir = super::data_dir(global)?;
    let passphrase = global
        .passphrase_file
        .as_deref()
        .map(super::read_passphrase)
        .transpose()?;
    let info = Node::init(&dir, party, role, passphrase.as_ref())?;
    let protected = info.key_protection == KeyProtection::Passphrase;
    out.emit(
        &json!({
            "node_id": info.node_id,
            "age_recipient": info.age_recipient,
            "party": info.party,
            "role": info.role,
            "data_dir": dir,
            "key_protection": info.key_protection,
        }),
        || {
            format!(
                "Created node for {} ({}) in {}\n  node id:        {}\n  age recipient:  {}\n  key file:       {}\n",
                info.party,
                info.role,
                dir.display(),
                info.node_id,
                info.age_recipient,
                if protected { "passphrase-protected" } else { "protected by file permissions only (0600)" },
            )
        },
    )
}
