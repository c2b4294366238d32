//! `regiosync region|invite|join|accept|import|export|party|device`: the control plane.

use std::path::Path;

use anyhow::Context;
use regiosync_core::control::RegionState;
use regiosync_core::id::{NodeId, PartyName, Role};
use regiosync_node::Node;
use regiosync_node::input_file::{InputKind, read_input_file};
use serde_json::json;

use crate::cli::{DeviceCommand, GlobalArgs, PartyCommand, RegionCommand, RelayCommand};
use crate::output::{Output, one_line};

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
            let faults = node.equivocations()?;
            out.emit(&state, || {
                let mut s = show(&state, &node);
                s.push_str(&equivocations(&faults));
                s
            })
        }
    }
}

fn show(state: &RegionState, node: &Node) -> String {
    let mut s = format!(
        "Region \"{}\" ({})\n\nParties:\n",
        one_line(&state.name),
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

/// The equivocations this node refused, with what to do about each.
fn equivocations(faults: &[regiosync_node::Equivocation]) -> String {
    if faults.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\nFaults (a device signed two different changes under one sequence number; the\nfirst one held counts, the second was refused and is kept as evidence):\n",
    );
    for f in faults {
        let device = f
            .device
            .map(|d| d.to_string())
            .unwrap_or_else(|| "an unknown device".into());
        let party = f
            .party
            .as_ref()
            .map(|p| format!(" of {p}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "  {device}{party}: plan {}, sequence number {}, seen {}\n",
            &f.doc.to_string()[..8],
            f.seq,
            super::human_time(f.seen_ms / 1000),
        ));
        match (f.device, f.removed) {
            (_, true) => s.push_str("    the device is removed\n"),
            (Some(d), false) => s.push_str(&format!(
                "    if this device is not under its party's control, remove it: regiosync device remove {d}\n"
            )),
            (None, false) => {}
        }
    }
    s
}

fn parties(state: &RegionState) -> String {
    state
        .parties
        .iter()
        .map(|(name, p)| {
            format!(
                "  {name:<24} {:<28} {:<13} {}{}\n",
                p.display_name.as_deref().unwrap_or("-"),
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
    addrs: Vec<regiosync_net::Multiaddr>,
) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    let mut code = node.invite(party.clone(), role, admin, ttl)?;
    code.addrs = if addrs.is_empty() {
        running_node_addrs(node.dir())
    } else {
        addrs.iter().map(ToString::to_string).collect()
    };
    let text = code.encode();
    let reach = if code.addrs.is_empty() {
        "This node is not running, so the code carries no address: start `regiosync up` and make a new code, or join with files:\n             regiosync join CODE --request-out join.req\nthen bring join.req here and run: regiosync accept join.req --out region.bundle\n".to_string()
    } else {
        format!(
            "             regiosync join CODE\n(it connects to this node at {}; keep `regiosync up` running here until then)\n",
            code.addrs.join(", ")
        )
    };
    out.emit(&json!({ "code": text, "party": party, "role": role, "admin": admin, "expires": code.expires, "addrs": code.addrs }), || {
        format!(
            "One-time invite for a device of {party} ({role}{}), valid until {}:\n\n{text}\n\nOn the new node: regiosync init --party {party} --role {role}\n{reach}",
            if admin { ", region admin" } else { "" },
            super::human_time(code.expires)
        )
    })
}

/// The addresses the running node listens on, routable ones first (from its status
/// file; none if it is not running). Loopback addresses stay in for a second node on
/// the same machine.
fn running_node_addrs(dir: &Path) -> Vec<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let Some(status) = regiosync_node::service::read_status(dir)
        .filter(|s| now - s.updated <= super::up::STALE_SECS)
    else {
        return vec![];
    };
    let mut addrs = status.listen;
    addrs.sort_by_key(|a| a.starts_with("/ip4/127.") || a.starts_with("/ip6/::1/"));
    addrs
}

pub(crate) fn join_network(
    global: &GlobalArgs,
    out: Output,
    code: &str,
    peers: &[regiosync_net::Multiaddr],
    timeout: u64,
) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let imported = rt.block_on(regiosync_node::join_over_network(
        &mut node,
        code,
        peers,
        std::time::Duration::from_secs(timeout),
    ))?;
    out.emit(&imported, || {
        format!(
            "Joined region {} ({} ops). Start the node with: regiosync up\n",
            &imported.region[..12.min(imported.region.len())],
            imported.new_ops
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
    // Refused if anything is at the path, a symlink included (O_EXCL): the request
    // goes into a new file, never through a link into another one.
    let exists = request_out.symlink_metadata().is_ok();
    anyhow::ensure!(
        !exists,
        "{} already exists: choose another --request-out file",
        request_out.display()
    );
    let req = node.join_request(code)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(request_out)
        .with_context(|| format!("cannot create {}", request_out.display()))?;
    std::io::Write::write_all(&mut file, &req)
        .and_then(|()| file.sync_all())
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
    let bytes = read_input_file(request, InputKind::JoinRequest)?;
    let (accepted, bundle) = node.accept(&bytes)?;
    super::write_atomically(bundle_out, &bundle)?;
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
    let bytes = read_input_file(bundle, InputKind::Bundle)?;
    let imported = node.import(&bytes)?;
    out.emit(&imported, || {
        let mut text = if imported.joined {
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
        };
        if imported.refused_ops > 0 {
            text.push_str(&format!(
                "Refused {} ops of the bundle: signed by devices that were not members of the region, or waiting for ops the bundle lacks. Ask whoever made the bundle where it came from.\n",
                imported.refused_ops
            ));
        }
        text
    })
}

pub(crate) fn export(global: &GlobalArgs, out: Output, path: &Path) -> anyhow::Result<()> {
    let node = super::open_node(global)?;
    let bytes = node.export()?;
    super::write_atomically(path, &bytes)?;
    out.emit(&json!({ "bundle": path, "bytes": bytes.len() }), || {
        format!("Wrote the region's control log to {}.\n", path.display())
    })
}

pub(crate) fn party(global: &GlobalArgs, out: Output, cmd: PartyCommand) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    let state = node.region_state()?;
    match cmd {
        PartyCommand::List => out.emit(&state.parties, || parties(&state)),
        PartyCommand::Name {
            party,
            display_name,
        } => {
            let op = node.set_party_name(&party, &display_name)?;
            let display_name = display_name.trim();
            out.emit(
                &json!({ "party": party, "display_name": display_name, "op": op.to_string() }),
                || format!("{party} is now shown as \"{display_name}\" on every node.\n"),
            )
        }
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

pub(crate) fn relay(global: &GlobalArgs, out: Output, cmd: RelayCommand) -> anyhow::Result<()> {
    let mut node = super::open_node(global)?;
    let state = node.region_state()?;
    let relay = matches!(cmd, RelayCommand::Designate { .. });
    match cmd {
        RelayCommand::List => {
            let relays: Vec<(NodeId, String)> = state
                .devices
                .keys()
                .filter(|d| state.is_dossier_relay(d))
                .map(|d| (*d, state.devices[d].party.to_string()))
                .collect();
            out.emit(
                &relays
                    .iter()
                    .map(|(d, p)| json!({ "device": d, "party": p }))
                    .collect::<Vec<_>>(),
                || {
                    if relays.is_empty() {
                        return "No dossier relays: dossiers travel only between the parties with access.\n".to_string();
                    }
                    relays
                        .iter()
                        .map(|(d, p)| format!("{d}  {p}\n"))
                        .collect()
                },
            )
        }
        RelayCommand::Designate { id } | RelayCommand::Undesignate { id } => {
            let device = resolve_device(&state, &id)?;
            let op = node.set_dossier_relay(device, relay)?;
            out.emit(
                &json!({ "device": device, "relay": relay, "op": op.to_string() }),
                || {
                    if relay {
                        format!("Designated {device} as a dossier relay: it stores and forwards sealed dossiers it cannot read.\n")
                    } else {
                        format!("{device} is no longer a dossier relay.\n")
                    }
                },
            )
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
