//! The task that owns the swarm, and the cloneable handle the rest of the node uses
//! to talk to it (after rust-libp2p's `examples/file-sharing`): commands go in on a
//! bounded channel and are answered on oneshots; events come out on a bounded channel.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    Multiaddr, PeerId, Swarm, allow_block_list, dcutr, identify, mdns, noise, ping, relay, tcp,
    yamux,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::codec::{
    DEFAULT_MAX_FRAME, Frame, FrameCodec, SYNC_PROTOCOL, SYNC_PROTOCOL_1, SYNC_PROTOCOL_2,
    SYNC_PROTOCOL_3,
};
use crate::error::NetError;

/// Commands waiting for the task (bounded: callers wait when it is busy).
const COMMAND_QUEUE: usize = 64;
/// Events waiting for the node. When full, inbound requests are dropped (the peer's
/// request fails and it retries later) rather than stalling the swarm.
const EVENT_QUEUE: usize = 256;

/// Network settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4100` and `/ip4/0.0.0.0/udp/4100/quic-v1`.
    pub listen: Vec<Multiaddr>,
    /// Discover members on the local network with mDNS. Sends multicast on the LAN:
    /// tests must leave it off.
    pub mdns: bool,
    /// Largest request or response frame.
    pub max_frame: usize,
    /// How long a request may take.
    pub request_timeout: Duration,
    /// How long an idle connection stays open.
    pub idle_timeout: Duration,
    /// How often a connection is pinged. A connection whose ping is not answered
    /// within `ping_timeout` is closed: a peer that died without closing (power
    /// loss, cable, a frozen machine) counts as gone within seconds, not when the
    /// idle timeout ends.
    pub ping_interval: Duration,
    /// How long a ping may take before the connection is closed.
    pub ping_timeout: Duration,
    /// How long a member that broke the protocol is refused before it may reconnect.
    pub ban_duration: Duration,
    /// Members allowed from the start, before the node listens: a member that dials
    /// at once is not refused by a gate that is still empty.
    pub members: Vec<PeerId>,
    /// Requests a peer may send in a burst before the rate limit applies.
    pub request_burst: u32,
    /// Sustained requests per second a peer may send; a peer that sends more (a
    /// flood) is disconnected and banned like one that breaks the protocol. Honest
    /// sessions send one request at a time.
    pub requests_per_sec: u32,
    /// Run a circuit relay v2 server for the region's members (`--relay`; for an
    /// always-on node that members behind NAT can reach). Its listen addresses are
    /// announced as its external addresses.
    pub relay_server: bool,
    /// The newest sync protocol version spoken (1 to 4; default 4): a lower one
    /// makes the node speak as one of an older version does (for tests of regions
    /// with old and new nodes).
    pub max_sync_version: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            mdns: false,
            max_frame: DEFAULT_MAX_FRAME,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            ping_interval: Duration::from_secs(3),
            ping_timeout: Duration::from_secs(5),
            ban_duration: Duration::from_secs(300),
            members: Vec::new(),
            request_burst: 1000,
            requests_per_sec: 200,
            relay_server: false,
            max_sync_version: 4,
        }
    }
}

/// What the network tells the node.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetEvent {
    /// A member sent a sync request; answer on `reply` (dropping it fails the request).
    Request {
        /// The requesting peer (a member: others cannot connect).
        peer: PeerId,
        /// The request frame.
        data: Vec<u8>,
        /// Where the response goes.
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// The first connection to a peer is up.
    Connected {
        /// The peer.
        peer: PeerId,
    },
    /// An outbound connection is up: `addr` (as dialled) reached `peer`. Lets the node
    /// learn which peer stands behind a configured `--peer` address.
    Dialled {
        /// The peer.
        peer: PeerId,
        /// The address dialled.
        addr: Multiaddr,
    },
    /// How a connected peer is reached now, after a connection to it opened or
    /// closed: `relayed` when every connection goes through a relay (no direct one).
    Route {
        /// The peer.
        peer: PeerId,
        /// Only through a relay.
        relayed: bool,
    },
    /// The last connection to a peer closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// Listening on a new address.
    Listening {
        /// The address.
        addr: Multiaddr,
    },
    /// A peer broke the protocol (oversized or malformed frame) and was disconnected.
    Misbehaved {
        /// The peer.
        peer: PeerId,
        /// What it did.
        reason: String,
    },
}

enum Command {
    SetMembers {
        peers: HashSet<PeerId>,
        guests: HashSet<PeerId>,
        done: oneshot::Sender<()>,
    },
    AddAddress {
        peer: PeerId,
        addr: Multiaddr,
    },
    Dial {
        addr: Multiaddr,
        done: oneshot::Sender<Result<(), NetError>>,
    },
    Request {
        peer: PeerId,
        frame: Frame,
        done: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Disconnect {
        peer: PeerId,
        reason: String,
    },
    DialPeer {
        peer: PeerId,
    },
    ListenAddrs {
        done: oneshot::Sender<Vec<Multiaddr>>,
    },
    Connected {
        done: oneshot::Sender<Vec<PeerId>>,
    },
}

/// The cloneable client of the network task.
#[derive(Clone, Debug)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    local: PeerId,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl NetHandle {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// Replaces the set of peers allowed to connect (the region's active devices).
    /// Peers no longer in the set are disconnected at once.
    ///
    /// # Cancel safety
    /// If cancelled, the change may or may not have been applied.
    pub async fn set_members(
        &self,
        peers: impl IntoIterator<Item = PeerId>,
    ) -> Result<(), NetError> {
        self.set_members_and_guests(peers, []).await
    }

    /// Sets the members and the guests: peers admitted by the gate that are not
    /// members (the one-time join identities of open invites). A guest may connect
    /// and send requests (the node decides what it answers), but it is not dialled,
    /// not given relayed routes, and a guest that reserves or opens a circuit at this
    /// node's relay is cut off like a peer that breaks the protocol.
    pub async fn set_members_and_guests(
        &self,
        peers: impl IntoIterator<Item = PeerId>,
        guests: impl IntoIterator<Item = PeerId>,
    ) -> Result<(), NetError> {
        let (done, rx) = oneshot::channel();
        self.send(Command::SetMembers {
            peers: peers.into_iter().collect(),
            guests: guests.into_iter().collect(),
            done,
        })
        .await?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Records an address of a peer (from the region state or `--peer`).
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), NetError> {
        self.send(Command::AddAddress { peer, addr }).await
    }

    /// Starts dialling an address; the connection is reported by [`NetEvent::Connected`]
    /// (or silently closed if the peer is not a member).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        let (done, rx) = oneshot::channel();
        self.send(Command::Dial { addr, done }).await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Sends a sync request to a member and waits for its response.
    ///
    /// # Cancel safety
    /// Cancelling drops the response; the request may still reach the peer.
    pub async fn request(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.request_frame(peer, Frame::Data(data)).await
    }

    /// Sends a sync request in one form per protocol version, newest first (see
    /// [`Frame::Versioned`]): the peer gets the form of the newest version it
    /// speaks. Waits for its response.
    ///
    /// # Cancel safety
    /// As [`NetHandle::request`].
    pub async fn request_versioned(
        &self,
        peer: PeerId,
        forms: Vec<(libp2p::StreamProtocol, Vec<u8>)>,
    ) -> Result<Vec<u8>, NetError> {
        self.request_frame(peer, Frame::Versioned(forms)).await
    }

    async fn request_frame(&self, peer: PeerId, frame: Frame) -> Result<Vec<u8>, NetError> {
        let (done, rx) = oneshot::channel();
        self.send(Command::Request { peer, frame, done }).await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Disconnects a peer that sent something malformed (the node found it out), logs
    /// it and reports [`NetEvent::Misbehaved`].
    pub async fn disconnect(
        &self,
        peer: PeerId,
        reason: impl Into<String>,
    ) -> Result<(), NetError> {
        self.send(Command::Disconnect {
            peer,
            reason: reason.into(),
        })
        .await
    }

    /// Dials a member by id, using the addresses known for it (from `add_address`,
    /// identify or mDNS). Does nothing if it is connected.
    pub async fn dial_peer(&self, peer: PeerId) -> Result<(), NetError> {
        self.send(Command::DialPeer { peer }).await
    }

    /// The addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        let (done, rx) = oneshot::channel();
        self.send(Command::ListenAddrs { done }).await?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// The peers with an open connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NetError> {
        let (done, rx) = oneshot::channel();
        self.send(Command::Connected { done }).await?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    async fn send(&self, cmd: Command) -> Result<(), NetError> {
        self.commands.send(cmd).await.map_err(|_| NetError::Stopped)
    }
}

/// The running network task. Dropping it stops the task.
#[must_use = "dropping the task stops the network"]
#[derive(Debug)]
pub struct NetTask {
    cancel: CancellationToken,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl NetTask {
    /// Stops the task and waits until the swarm is gone (connections closed).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
    }
}

impl Drop for NetTask {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(j) = self.join.take() {
            j.abort();
        }
    }
}

/// Builds the swarm, starts listening, and spawns the task that owns it.
pub fn spawn(
    key: Keypair,
    config: Config,
) -> Result<(NetHandle, mpsc::Receiver<NetEvent>, NetTask), NetError> {
    let local = key.public().to_peer_id();
    let mut swarm = build_swarm(key, &config)?;
    for p in &config.members {
        swarm.behaviour_mut().gate.allow_peer(*p);
    }
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    let cancel = CancellationToken::new();
    let actor = Actor {
        swarm,
        commands: cmd_rx,
        events: ev_tx,
        pending: HashMap::new(),
        replies: FuturesUnordered::new(),
        members: config.members.iter().copied().collect(),
        banned: HashMap::new(),
        ban_duration: config.ban_duration,
        relay_server: config.relay_server,
        relays: HashMap::new(),
        dialled: HashMap::new(),
        routes: HashMap::new(),
        guests: HashSet::new(),
        request_budget: HashMap::new(),
        request_burst: f64::from(config.request_burst.max(1)),
        requests_per_sec: f64::from(config.requests_per_sec.max(1)),
    };
    let join = tokio::spawn(actor.run(cancel.clone()));
    Ok((
        NetHandle {
            commands: cmd_tx,
            local,
        },
        ev_rx,
        NetTask {
            cancel,
            join: Some(join),
        },
    ))
}

fn build_swarm(key: Keypair, config: &Config) -> Result<Swarm<Behaviour>, NetError> {
    let build = |e: &dyn std::fmt::Display| NetError::Build(e.to_string());
    let mdns_on = config.mdns;
    let codec = FrameCodec::new(config.max_frame);
    let rr_config =
        request_response::Config::default().with_request_timeout(config.request_timeout);
    // Offered in this order on every outgoing stream, accepted on incoming ones.
    let protocols: Vec<(libp2p::StreamProtocol, ProtocolSupport)> = [
        (4, SYNC_PROTOCOL),
        (3, SYNC_PROTOCOL_3),
        (2, SYNC_PROTOCOL_2),
        (1, SYNC_PROTOCOL_1),
    ]
    .into_iter()
    .filter(|(v, _)| *v <= config.max_sync_version.max(1))
    .map(|(_, p)| (p, ProtocolSupport::Full))
    .collect();
    let relay_on = config.relay_server;
    let (ping_interval, ping_timeout) = (config.ping_interval, config.ping_timeout);
    let (dns_config, dns_opts) = dns_settings();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| build(&e))?
        .with_quic_config(|mut c| {
            // QUIC notices a silent peer by itself; as fast as ping does over TCP.
            c.keep_alive_interval = ping_interval;
            c.max_idle_timeout =
                u32::try_from(ping_interval.saturating_add(ping_timeout).as_millis())
                    .unwrap_or(u32::MAX);
            c
        })
        .with_dns_config(dns_config, dns_opts)
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| build(&e))?
        .with_behaviour(|key, relay_client| {
            let peer = key.public().to_peer_id();
            let mdns = if mdns_on {
                Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer)?)
            } else {
                None
            };
            let relay = relay_on.then(|| relay::Behaviour::new(peer, relay_config()));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                gate: allow_block_list::Behaviour::default(),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/regiosync/1".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(ping_interval)
                        .with_timeout(ping_timeout),
                ),
                mdns: Toggle::from(mdns),
                relay: Toggle::from(relay),
                relay_client,
                dcutr: dcutr::Behaviour::new(peer),
                sync: request_response::Behaviour::with_codec(codec, protocols, rr_config),
            })
        })
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    Ok(swarm)
}

/// The system's DNS settings for `/dns…` addresses. Without them (no
/// /etc/resolv.conf, e.g. in a minimal container) names do not resolve, with a warning,
/// rather than falling back to some public resolver the admin did not choose.
fn dns_settings() -> (libp2p::dns::ResolverConfig, libp2p::dns::ResolverOpts) {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok(settings) => settings,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the system's DNS settings; /dns addresses will not resolve");
            (
                libp2p::dns::ResolverConfig::from_parts(None, vec![], vec![]),
                libp2p::dns::ResolverOpts::default(),
            )
        }
    }
}

/// Relay limits for a region's relay: only members reach it (the gate), so circuits
/// may carry a whole catch-up; the defaults of libp2p (2 minutes, 128 KiB per
/// circuit) are meant for public relays that only help a hole punch.
fn relay_config() -> relay::Config {
    relay::Config {
        max_circuit_duration: Duration::from_secs(60 * 60),
        max_circuit_bytes: 1 << 30,
        ..relay::Config::default()
    }
}

/// Whether an address goes through a relay.
fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Who is waiting for the response to an outbound request.
type PendingRequest = (PeerId, oneshot::Sender<Result<Vec<u8>, NetError>>);

type Reply = BoxFuture<
    'static,
    (
        Result<Vec<u8>, oneshot::error::RecvError>,
        ResponseChannel<Vec<u8>>,
    ),
>;

struct Actor {
    swarm: Swarm<Behaviour>,
    /// Per connected peer, its connections and whether each goes through a relay.
    routes: HashMap<PeerId, HashMap<libp2p::swarm::ConnectionId, bool>>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    pending: HashMap<OutboundRequestId, PendingRequest>,
    replies: FuturesUnordered<Reply>,
    members: HashSet<PeerId>,
    /// Members refused until the instant, after breaking the protocol.
    banned: HashMap<PeerId, tokio::time::Instant>,
    ban_duration: Duration,
    /// This node runs a relay server.
    relay_server: bool,
    /// Members running a relay where this node holds a reservation, with the address
    /// that reaches them.
    relays: HashMap<PeerId, Multiaddr>,
    /// The address of this node's outbound connection to a peer.
    dialled: HashMap<PeerId, Multiaddr>,
    /// Peers the gate admits that are not members (see `set_members_and_guests`).
    guests: HashSet<PeerId>,
    /// Per peer, a token bucket of inbound requests: (tokens, last refill).
    request_budget: HashMap<PeerId, (f64, tokio::time::Instant)>,
    request_burst: f64,
    requests_per_sec: f64,
}

impl Actor {
    async fn run(mut self, cancel: CancellationToken) {
        let mut unban = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = unban.tick(), if !self.banned.is_empty() => self.lift_bans(),
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                Some((answer, channel)) = self.replies.next(), if !self.replies.is_empty() => {
                    if let Ok(bytes) = answer {
                        let _ = self.swarm.behaviour_mut().sync.send_response(channel, bytes);
                    }
                }
                ev = self.swarm.select_next_some() => self.swarm_event(ev),
            }
        }
        tracing::debug!("network task stopped");
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::SetMembers {
                peers,
                guests,
                done,
            } => {
                let before: HashSet<PeerId> = self.members.union(&self.guests).copied().collect();
                let after: HashSet<PeerId> = peers.union(&guests).copied().collect();
                let gate = &mut self.swarm.behaviour_mut().gate;
                for gone in before.difference(&after) {
                    gate.disallow_peer(*gone);
                }
                for p in after.iter().filter(|p| !self.banned.contains_key(p)) {
                    gate.allow_peer(*p);
                }
                // A member that became a guest (a removed device, admitted only to be
                // told so) loses the connections it had as a member.
                for demoted in self
                    .members
                    .difference(&peers)
                    .filter(|p| guests.contains(p))
                {
                    let _ = self.swarm.disconnect_peer_id(*demoted);
                }
                self.members = peers;
                self.guests = guests;
                self.relays.retain(|r, _| self.members.contains(r));
                self.add_relayed_addrs();
                let _ = done.send(());
            }
            Command::AddAddress { peer, addr } => {
                self.swarm.add_peer_address(peer, addr);
            }
            Command::Dial { addr, done } => {
                let r = self.swarm.dial(addr.clone()).map_err(|e| NetError::Dial {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                });
                let _ = done.send(r);
            }
            Command::Request { peer, frame, done } => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, frame);
                self.pending.insert(id, (peer, done));
            }
            Command::Disconnect { peer, reason } => self.misbehaved(peer, reason),
            Command::DialPeer { peer } => {
                if !self.swarm.is_connected(&peer)
                    && let Err(e) = self.swarm.dial(peer)
                {
                    tracing::debug!(peer = %peer, error = %e, "redial failed");
                }
            }
            Command::ListenAddrs { done } => {
                let _ = done.send(self.swarm.listeners().cloned().collect());
            }
            Command::Connected { done } => {
                let _ = done.send(self.swarm.connected_peers().copied().collect());
            }
        }
    }

    /// Tells the node how `peer` is reached now (direct, or only through a relay).
    fn emit_route(&mut self, peer: PeerId) {
        if let Some(r) = self.routes.get(&peer).filter(|r| !r.is_empty()) {
            let relayed = r.values().all(|relayed| *relayed);
            self.emit(NetEvent::Route { peer, relayed });
        }
    }

    fn swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(addr = %address, "listening");
                if self.relay_server && !is_circuit(&address) {
                    // A relay tells its clients where it can be reached; an always-on
                    // node's listen addresses are those.
                    self.swarm.add_external_address(address.clone());
                }
                self.emit(NetEvent::Listening { addr: address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let relayed = match &endpoint {
                    libp2p::core::ConnectedPoint::Dialer { address, .. } => is_circuit(address),
                    libp2p::core::ConnectedPoint::Listener {
                        local_addr,
                        send_back_addr,
                    } => is_circuit(local_addr) || is_circuit(send_back_addr),
                };
                self.routes
                    .entry(peer_id)
                    .or_default()
                    .insert(connection_id, relayed);
                if endpoint.is_dialer() {
                    // Remember where a dialled peer was found (a `--peer` address carries
                    // no peer id), so that a later redial by id knows where to go.
                    let addr = endpoint.get_remote_address().clone();
                    self.swarm.add_peer_address(peer_id, addr.clone());
                    if !is_circuit(&addr) {
                        self.dialled.insert(peer_id, addr.clone());
                    }
                    self.emit(NetEvent::Dialled {
                        peer: peer_id,
                        addr,
                    });
                }
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, "connected");
                    self.emit(NetEvent::Connected { peer: peer_id });
                }
                self.emit_route(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } if num_established > 0 => {
                if let Some(r) = self.routes.get_mut(&peer_id) {
                    r.remove(&connection_id);
                }
                self.emit_route(peer_id);
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } => {
                self.routes.remove(&peer_id);
                tracing::info!(peer = %peer_id, "disconnected");
                // Its reservation listener closes with the connection; reserve again
                // when it is back (identify tells).
                self.relays.remove(&peer_id);
                self.request_budget.remove(&peer_id);
                self.emit(NetEvent::Disconnected { peer: peer_id });
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "incoming connection refused or failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.sync_event(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            })) if !matches!(error, ping::Failure::Unsupported) => {
                // libp2p leaves closing to us: a connection that does not answer pings
                // is dead, whatever TCP believes.
                tracing::info!(peer = %peer, %error, "no answer to ping; closing the connection");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let is_relay = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
                for addr in &info.listen_addrs {
                    self.swarm.add_peer_address(peer_id, addr.clone());
                }
                if is_relay && self.members.contains(&peer_id) {
                    self.reserve_at(peer_id, &info.listen_addrs);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
            )) => {
                tracing::info!(relay = %relay_peer_id, "reachable through the relay of a member");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(
                relay::Event::ReservationReqAccepted { src_peer_id, .. }
                | relay::Event::CircuitReqAccepted { src_peer_id, .. },
            )) if self.guests.contains(&src_peer_id) && !self.members.contains(&src_peer_id) => {
                self.misbehaved(src_peer_id, "a join identity used the relay".into());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(ev)) => {
                tracing::debug!(peer = %ev.remote_peer_id, result = ?ev.result.as_ref().map(|_| ()), "direct connection upgrade");
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::info!(%error, "a listener failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.swarm.add_peer_address(peer, addr);
                    if self.members.contains(&peer) && !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(peer);
                    }
                }
            }
            _ => {}
        }
    }

    fn sync_event(&mut self, ev: request_response::Event<Frame, Vec<u8>>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request: Frame::Oversized(len),
                        ..
                    },
                ..
            } => {
                self.misbehaved(peer, format!("sent a frame of {len} bytes, over the limit"));
            }
            // The codec reads frames as `Data` or `Oversized` only; two forms exist
            // only in what this node sends.
            Event::Message {
                message:
                    Message::Request {
                        request: Frame::Versioned(_),
                        ..
                    },
                ..
            } => {}
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request: Frame::Data(request),
                        channel,
                        ..
                    },
                ..
            } => {
                if !self.admit_request(peer) {
                    let why = format!(
                        "sent requests faster than {} per second (burst {})",
                        self.requests_per_sec, self.request_burst
                    );
                    self.misbehaved(peer, why);
                    return;
                }
                let (reply, rx) = oneshot::channel();
                match self.events.try_send(NetEvent::Request {
                    peer,
                    data: request,
                    reply,
                }) {
                    Ok(()) => self
                        .replies
                        .push(Box::pin(async move { (rx.await, channel) })),
                    Err(_) => {
                        tracing::warn!(peer = %peer, "node is overloaded; dropping a sync request")
                    }
                }
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((_, done)) = self.pending.remove(&request_id) {
                    let _ = done.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, done)) = self.pending.remove(&request_id) {
                    let _ = done.send(Err(NetError::Request {
                        peer: peer.to_string(),
                        reason: error.to_string(),
                    }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(peer = %peer, %error, "inbound request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// Disconnects a peer that broke the protocol and refuses it for `ban_duration`,
    /// logs it and tells the node.
    fn misbehaved(&mut self, peer: PeerId, reason: String) {
        tracing::warn!(peer = %peer, %reason, ban_secs = self.ban_duration.as_secs(), "protocol violation; disconnecting");
        self.banned
            .insert(peer, tokio::time::Instant::now() + self.ban_duration);
        self.swarm.behaviour_mut().gate.disallow_peer(peer);
        let _ = self.swarm.disconnect_peer_id(peer);
        self.emit(NetEvent::Misbehaved { peer, reason });
    }

    /// Listens through the relay of member `relay` (a reservation), once, and makes
    /// every other member dialable through it.
    fn reserve_at(&mut self, relay: PeerId, listen_addrs: &[Multiaddr]) {
        if self.relays.contains_key(&relay) || relay == *self.swarm.local_peer_id() {
            return;
        }
        let base = self
            .dialled
            .get(&relay)
            .cloned()
            .or_else(|| listen_addrs.iter().find(|a| !is_circuit(a)).cloned());
        let Some(mut base) = base else { return };
        if matches!(base.iter().last(), Some(Protocol::P2p(_))) {
            base.pop();
        }
        let circuit = base
            .clone()
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit) {
            Ok(_) => {
                tracing::info!(relay = %relay, "reserving a slot at a member's relay");
                self.relays.insert(relay, base);
                self.add_relayed_addrs();
            }
            Err(e) => tracing::warn!(relay = %relay, error = %e, "cannot listen through a relay"),
        }
    }

    /// Adds, for every member, its address through each relay this node uses (a
    /// member behind NAT that holds a reservation there is reached that way).
    fn add_relayed_addrs(&mut self) {
        let local = *self.swarm.local_peer_id();
        let routes: Vec<(PeerId, Multiaddr)> = self
            .relays
            .iter()
            .flat_map(|(r, base)| {
                self.members
                    .iter()
                    .filter(move |m| **m != *r && **m != local)
                    .map(move |m| {
                        (
                            *m,
                            base.clone()
                                .with(Protocol::P2p(*r))
                                .with(Protocol::P2pCircuit),
                        )
                    })
            })
            .collect();
        for (m, addr) in routes {
            self.swarm.add_peer_address(m, addr);
        }
    }

    /// Takes one token from the peer's request bucket (a token bucket: up to
    /// `request_burst` tokens, refilled at `requests_per_sec`); false when empty.
    /// Hand-written: a dozen lines, where a rate-limit crate would bring a clock and
    /// keyed-store abstraction this task does not need.
    fn admit_request(&mut self, peer: PeerId) -> bool {
        let now = tokio::time::Instant::now();
        let (burst, rate) = (self.request_burst, self.requests_per_sec);
        let (tokens, last) = self.request_budget.entry(peer).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Re-allows banned members whose ban has run out.
    fn lift_bans(&mut self) {
        let now = tokio::time::Instant::now();
        let expired: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            self.banned.remove(&p);
            if self.members.contains(&p) {
                self.swarm.behaviour_mut().gate.allow_peer(p);
            }
        }
    }

    fn emit(&self, ev: NetEvent) {
        if self.events.try_send(ev).is_err() {
            tracing::warn!("event queue full; dropping a network event");
        }
    }
}
