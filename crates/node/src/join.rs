//! Joining a region over the network: `regiosync join CODE`.
//!
//! The invite code carries the inviter's node id and addresses. The joining device
//! connects under a one-time network identity derived from the invite's secret
//! ([`join_peer_seed`]); the inviter's running node admits that identity while the
//! invite is open ([`Node::join_peers`]), and answers exactly one kind of request from
//! it: `Join` with a signed join request, answered by `Joined` with the region's
//! control log, or `JoinRefused` with the reason. The joiner imports the log (every op
//! verified, as for a bundle file), remembers the inviter's addresses for
//! `regiosync up`, and closes the connection. Its real identity is used from then on.

use std::time::Duration;

use regiosync_core::control::{InviteCode, JoinRequest, join_peer_id, join_peer_seed};
use regiosync_core::id::NodeId;
use regiosync_core::sync::{MAX_REASON, Request, Response};
use regiosync_net::{Multiaddr, NetEvent, Protocol};
use regiosync_store::StoreRead;

use crate::Node;
use crate::clock::{now_ms, now_secs};
use crate::error::NodeError;
use crate::region::Imported;

/// How long after its use an invite's join identity gets the region's log again
/// (its `Joined` answer may have been lost); after that a repeated request is told
/// that the code was used.
pub const JOIN_GRACE_MS: i64 = 60_000;

/// How long a joiner keeps trying while the inviter's node, reached and running,
/// closes every connection of the join identity (its gate does not know the code),
/// before it says so. Covers the inviter's poll of its store after `invite`.
const REFUSED_FOR: Duration = Duration::from_secs(2);

impl Node {
    /// The one-time join identities of this node's unexpired invites, the used ones
    /// included (see the module docs): whoever holds a used code is told at once that
    /// it was used, not left waiting for a gate that stays shut.
    pub fn join_peers(&self) -> Result<Vec<NodeId>, NodeError> {
        let invites = self.store().open_invites(now_secs(), i64::MIN)?;
        Ok(invites.iter().map(|i| join_peer_id(&i.secret)).collect())
    }

    /// Answers a `Join` request from `peer`: only the join identity of the invite the
    /// request names may send it. Errors other than a failing store become
    /// `JoinRefused` with a reason for the joining user.
    pub(crate) fn answer_join(
        &mut self,
        peer: &NodeId,
        request: &[u8],
    ) -> Result<Response, NodeError> {
        let refuse = |reason: String| {
            let mut reason = reason;
            if reason.len() > MAX_REASON {
                let mut cut = MAX_REASON;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
            }
            Ok(Response::JoinRefused { reason })
        };
        let req = match JoinRequest::decode(request) {
            Ok(r) => r,
            Err(e) => return refuse(e.to_string()),
        };
        let invite = self.store().invite(&req.fields().invite_id)?;
        let invite = match invite {
            Some(inv) if join_peer_id(&inv.secret) == *peer => inv,
            _ => {
                tracing::warn!(peer = %peer, "join request from a peer that is not the invite's join identity");
                return refuse(
                    "this connection does not belong to the invite the request names".into(),
                );
            }
        };
        // The same device asking again (its `Joined` answer was lost): it was added, so
        // it gets the log again instead of "already used".
        let device = req.fields().device;
        if invite.used_by.as_deref() == Some(&device.as_bytes()[..])
            && invite
                .used_ms
                .is_some_and(|t| now_ms() - t <= JOIN_GRACE_MS)
        {
            tracing::info!(device = %device, "answering a repeated join request");
            return Ok(Response::Joined {
                bundle: self.export()?,
            });
        }
        match self.accept(request) {
            Ok((accepted, bundle)) => {
                tracing::info!(device = %accepted.device, party = %accepted.party, "accepted a join over the network");
                Ok(Response::Joined { bundle })
            }
            Err(e) if e.is_storage_failure() => Err(e),
            Err(e) => {
                tracing::info!(error = %e, "refused a join request");
                refuse(e.to_string())
            }
        }
    }
}

/// The inviter's addresses from an invite code plus `extra` ones, each ending in
/// `/p2p/<inviter>`. Addresses that do not parse or name another peer are skipped.
fn inviter_addrs(code: &InviteCode, extra: &[Multiaddr]) -> Vec<Multiaddr> {
    let inviter = code.inviter.to_peer_id();
    let mut out: Vec<Multiaddr> = Vec::new();
    let parsed = code
        .addrs
        .iter()
        .filter_map(|a| match a.parse::<Multiaddr>() {
            Ok(m) => Some(m),
            Err(_) => {
                tracing::warn!(addr = %a, "skipping an unreadable address in the invite code");
                None
            }
        });
    for mut addr in parsed.chain(extra.iter().cloned()) {
        match addr.iter().last() {
            Some(Protocol::P2p(p)) if p == inviter => {}
            Some(Protocol::P2p(_)) => {
                tracing::warn!(addr = %addr, "skipping an address of another node than the inviter");
                continue;
            }
            _ => addr.push(Protocol::P2p(inviter)),
        }
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// Joins a region over the network with an invite code: dials the inviter at the
/// addresses in the code (and `extra`), sends the signed join request, imports the
/// control log it answers with, and remembers the addresses that worked. Fails with a
/// clear error if the inviter cannot be reached within `timeout` or refuses.
pub async fn join_over_network(
    node: &mut Node,
    code_text: &str,
    extra: &[Multiaddr],
    timeout: Duration,
) -> Result<Imported, NodeError> {
    let code = InviteCode::decode(code_text)?;
    let addrs = inviter_addrs(&code, extra);
    if addrs.is_empty() {
        return Err(NodeError::JoinRefused(
            "the invite code has no address of the inviter's node: pass one with --peer MULTIADDR, or ask for a code made while the inviter's node runs (`regiosync up`)".into(),
        ));
    }
    let request = node.join_request(code_text)?;
    let mut seed = join_peer_seed(&code.secret);
    let key = regiosync_net::Keypair::ed25519_from_bytes(&mut seed)
        .map_err(|e| NodeError::Sync(format!("cannot make the join identity: {e}")))?;
    let inviter = code.inviter.to_peer_id();
    let config = regiosync_net::Config {
        members: vec![inviter],
        ..regiosync_net::Config::default()
    };
    let (net, mut events, task) =
        regiosync_net::spawn(key, config).map_err(|e| NodeError::Sync(e.to_string()))?;
    let frame = Request::Join { request }.encode();
    let mut last_error = String::from("no connection");
    // Connections the inviter's node took and closed without an answer: its gate
    // does not admit this code's identity.
    let mut refused: Option<(std::time::Instant, u32)> = None;
    let outcome = tokio::time::timeout(timeout, async {
        // Dial every address, again each second, and ask once connected. A connection
        // can come up on this side and still be refused by the inviter's gate: its node
        // admits this identity only once it has seen the invite (it polls its store),
        // and never for a wrong code. So a failed request means: try again.
        let mut redial = tokio::time::interval(Duration::from_secs(1));
        loop {
            let reached = loop {
                tokio::select! {
                    _ = redial.tick() => {
                        for addr in &addrs {
                            if let Err(e) = net.dial(addr.clone()).await {
                                tracing::debug!(addr = %addr, error = %e, "cannot dial the inviter");
                            }
                        }
                    }
                    ev = events.recv() => match ev {
                        Some(NetEvent::Dialled { peer, addr }) if peer == inviter => break addr,
                        Some(_) => {}
                        None => return Err(NodeError::Sync("the network stopped".into())),
                    },
                }
            };
            match net.request(inviter, frame.clone()).await {
                Ok(answer) => return Ok::<_, NodeError>((reached, answer)),
                Err(e) => {
                    tracing::debug!(error = %e, "join request failed; retrying");
                    last_error = e.to_string();
                    let (since, times) = refused.get_or_insert((std::time::Instant::now(), 0));
                    *times += 1;
                    if *times >= 3 && since.elapsed() >= REFUSED_FOR {
                        // The same words for every code its node does not hold open:
                        // a guessed secret, an expired or withdrawn invite, a code cut
                        // short. Nothing here tells a guesser more than that.
                        return Err(NodeError::JoinRefused(
                            "the inviter's node is running but does not accept this code: it is not an open invite there (mistyped or incomplete, expired, or withdrawn). Check that the whole code was copied, or ask the inviter for a new one".into(),
                        ));
                    }
                    redial.tick().await;
                }
            }
        }
    })
    .await;
    task.shutdown().await;
    let (reached, answer) = match outcome {
        Ok(r) => r?,
        Err(_) => {
            return Err(NodeError::JoinRefused(format!(
                "could not reach the inviter's node within {} s at {} (last: {last_error}): is `regiosync up` running there, is the address reachable from here, and is the code complete and unexpired?",
                timeout.as_secs(),
                addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let bundle = match Response::decode(&answer) {
        Ok(Response::Joined { bundle }) => bundle,
        Ok(Response::JoinRefused { reason }) => {
            return Err(NodeError::JoinRefused(format!(
                "the inviter refused the join: {reason}"
            )));
        }
        Ok(Response::Refused { reason }) => {
            return Err(NodeError::JoinRefused(format!(
                "the inviter refused the join: {reason}"
            )));
        }
        Ok(_) => return Err(NodeError::Sync("the inviter answered out of turn".into())),
        Err(e) => return Err(NodeError::Sync(format!("the inviter's answer: {e}"))),
    };
    let imported = node.import(&bundle)?;
    // The address that worked last, so it is tried first.
    for addr in addrs.iter().filter(|a| **a != reached).chain([&reached]) {
        node.remember_addr(&code.inviter, addr)?;
    }
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regiosync_core::control::{OpHash, RegionId};
    use regiosync_core::id::{PartyName, Role};
    use regiosync_core::identity::NodeSecret;

    #[test]
    fn inviter_addresses_get_the_inviter_id_and_foreign_ones_are_skipped() {
        let inviter = NodeSecret::generate().unwrap().node_id();
        let other = NodeSecret::generate().unwrap().node_id();
        let code = InviteCode {
            region: RegionId(OpHash([1; 32])),
            inviter,
            invite_id: [0; 16],
            secret: [7; 32],
            expires: 0,
            party: PartyName::new("gemeente-zeist").unwrap(),
            role: Role::Gemeente,
            admin: false,
            addrs: vec![
                "/ip4/127.0.0.1/tcp/4100".into(),
                format!("/ip4/127.0.0.1/tcp/4101/p2p/{other}"),
                "not an address".into(),
                format!("/ip4/127.0.0.1/tcp/4100/p2p/{inviter}"),
            ],
        };
        let got = inviter_addrs(&code, &["/ip4/10.1.1.1/udp/4100/quic-v1".parse().unwrap()]);
        let want: Vec<Multiaddr> = vec![
            format!("/ip4/127.0.0.1/tcp/4100/p2p/{inviter}")
                .parse()
                .unwrap(),
            format!("/ip4/10.1.1.1/udp/4100/quic-v1/p2p/{inviter}")
                .parse()
                .unwrap(),
        ];
        assert_eq!(got, want);
        // The join identity is bound to the secret, and is not the inviter or joiner.
        assert_eq!(join_peer_id(&code.secret), join_peer_id(&[7; 32]));
        assert_ne!(join_peer_id(&code.secret), join_peer_id(&[8; 32]));
    }
}
