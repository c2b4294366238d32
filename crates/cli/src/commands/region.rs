//! `regiosync region|invite|join|accept|import|export|party|device`: the control plane.

use std::path::Path;

use anyhow::Context;
use regiosync_core::control::RegionState;
use regiosync_core::id::{NodeId, PartyName, Role};
use regiosync_node::Node;
use serde_json::json;

use crate::cli::{DeviceCommand, GlobalArgs, PartyCommand, RegionCommand};
use crate::output::Output;

/// Largest file `accept` and `import` read (the formats have their own, lower limits).
const MAX_INPUT: u64 = 64 * 1024 * 1024;

pub(crate) fn region(global: &GlobalArgs, out: Output, cmd: RegionCommand) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    match cmd {
        RegionCommand::Create { name } => {
            let id = node.create_region(&name)?;
            out.emit(&json!({ "region": id.to_string(), "name": name.trim() }), || {
                format!(
                    "Founded region \"{}\" ({}) with {} as its first admin.\nInvite others with: regiosync invite --party NAME --role ROLE\n",
                    name.trim(),
                    &id.to_string()[..12],
                    node.info().party
                )
            })
        }
        RegionCommand::Show => {
            let state = node.region_state()?;
            out.emit(&state, || show(&state, &node))
        }
    }
}

fn show(state: &RegionState, node: &Node) -> String {
    let mut s = format!(
        "Region \"{}\" ({})\n\nParties:\n",
        state.name,
        &state.region.to_string()[..12]
    );
    s.push_str(&parties(state));
    s.push_str("\nDevices:\n");
    s.push_str(&devices(state, &node.info().node_id));
    s.push_str(&format!(
        "\nShared documents: {}\nControl heads: {}\n",
        state.docs.len(),
        state
            .heads
            .iter()
            .map(|h| h.short())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s
}

fn parties(state: &RegionState) -> String {
    state
        .parties
        .iter()
        .map(|(name, p)| {
            format!(
                "  {name:<24} {:<13} {}{}\n",
                p.role,
                if p.admin { "admin" } else { "" },
                if p.removed { "removed" } else { "" }
            )
        })
        .collect()
}

fn devices(state: &RegionState, me: &NodeId) -> String {
    state
        .devices
        .iter()
        .map(|(id, d)| {
            format!(
                "  {id}  {:<24} {}{}\n",
                d.party,
                if d.removed || state.active_device(id).is_none() {
                    "removed"
                } else {
                    "active"
                },
                if id == me { "  (this device)" } else { "" }
            )
        })
        .collect()
}

pub(crate) fn invite(
    global: &GlobalArgs,
    out: Output,
    party: PartyName,
    role: Role,
    admin: bool,
    ttl: i64,
) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    let code = node.invite(party.clone(), role, admin, ttl)?;
    let text = code.encode();
    out.emit(&json!({ "code": text, "party": party, "role": role, "admin": admin, "expires": code.expires }), || {
        format!(
            "One-time invite for a device of {party} ({role}{}), valid until {}:\n\n{text}\n\nOn the new node: regiosync init --party {party} --role {role}\n             regiosync join CODE --request-out join.req\nthen bring join.req here and run: regiosync accept join.req --out region.bundle\n",
            if admin { ", region admin" } else { "" },
            super::human_time(code.expires)
        )
    })
}

pub(crate) fn join(
    global: &GlobalArgs,
    out: Output,
    code: &str,
    request_out: &Path,
) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    anyhow::ensure!(
        !request_out.exists(),
        "{} already exists: choose another --request-out file",
        request_out.display()
    );
    let req = node.join_request(code)?;
    std::fs::write(request_out, &req)
        .with_context(|| format!("cannot write {}", request_out.display()))?;
    out.emit(&json!({ "request": request_out, "node_id": node.info().node_id }), || {
        format!(
            "Wrote the join request to {}.\nGive it to the inviter, who runs: regiosync accept {} --out region.bundle\nThen import the bundle here: regiosync import region.bundle\n",
            request_out.display(),
            request_out.display()
        )
    })
}

pub(crate) fn accept(
    global: &GlobalArgs,
    out: Output,
    request: &Path,
    bundle_out: &Path,
) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    let bytes = read_limited(request)?;
    let (accepted, bundle) = node.accept(&bytes)?;
    std::fs::write(bundle_out, &bundle)
        .with_context(|| format!("cannot write {}", bundle_out.display()))?;
    out.emit(&json!({ "accepted": accepted, "bundle": bundle_out }), || {
        format!(
            "Added device {} to {}{}.\nWrote the region's log to {}: import it on the new node with: regiosync import {}\n",
            accepted.device,
            accepted.party,
            if accepted.new_party { " (new party)" } else { "" },
            bundle_out.display(),
            bundle_out.display()
        )
    })
}

pub(crate) fn import(global: &GlobalArgs, out: Output, bundle: &Path) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    let bytes = read_limited(bundle)?;
    let imported = node.import(&bytes)?;
    out.emit(&imported, || {
        if imported.joined {
            format!(
                "Joined region {} ({} ops).\n",
                &imported.region[..12],
                imported.new_ops
            )
        } else {
            format!(
                "Imported {} new ops of region {}.\n",
                imported.new_ops,
                &imported.region[..12]
            )
        }
    })
}

pub(crate) fn export(global: &GlobalArgs, out: Output, path: &Path) -> anyhow::Result<()> {
    let node = super::open_node(global)?;
    let bytes = node.export()?;
    std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    out.emit(&json!({ "bundle": path, "bytes": bytes.len() }), || {
        format!("Wrote the region's control log to {}.\n", path.display())
    })
}

pub(crate) fn party(global: &GlobalArgs, out: Output, cmd: PartyCommand) -> anyhow::Result<()> {
    let node = super::open_node(global)?;
    let state = node.region_state()?;
    match cmd {
        PartyCommand::List => out.emit(&state.parties, || parties(&state)),
    }
}

pub(crate) fn device(global: &GlobalArgs, out: Output, cmd: DeviceCommand) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    let state = node.region_state()?;
    match cmd {
        DeviceCommand::List => out.emit(&state.devices, || devices(&state, &node.info().node_id)),
        DeviceCommand::Remove { id } => {
            let device = resolve_device(&state, &id)?;
            let op = node.remove_device(device)?;
            out.emit(&json!({ "removed": device, "op": op.to_string() }), || {
                format!("Removed device {device}. Its changes after this point are rejected by every node.\n")
            })
        }
    }
}

/// A full node id, or a unique suffix of at least 8 characters (as `device list` shows).
fn resolve_device(state: &RegionState, text: &str) -> anyhow::Result<NodeId> {
    // `doc log` prints a device as `…A8w6FwWK`; accept that form too.
    let text = text.trim().trim_start_matches(['…', '.']);
    if let Ok(id) = text.parse::<NodeId>() {
        return Ok(id);
    }
    anyhow::ensure!(
        text.len() >= 8,
        "'{text}' is not a node id: give the whole id or its last 8+ characters (see `regiosync device list`)"
    );
    let matches: Vec<NodeId> = state
        .devices
        .keys()
        .filter(|d| d.to_string().ends_with(text))
        .copied()
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => {
            anyhow::bail!("no device of the region matches '{text}': see `regiosync device list`")
        }
        _ => anyhow::bail!("'{text}' matches several devices: give more characters"),
    }
}

fn read_limited(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(
        meta.len() <= MAX_INPUT,
        "{} is larger than 64 MiB: not a regiosync file",
        path.display()
    );
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
