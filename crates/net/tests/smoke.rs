//! Real libp2p nodes on loopback: requests over TCP and QUIC, old and new protocol
//! versions side by side, gating of non-members,
//! disconnection of removed members, and peers that send an oversized frame or flood
//! requests.
//! Convergence is awaited with timeouts, never with fixed sleeps as the check.

use std::time::Duration;

use libp2p::identity::Keypair;
use regiosync_net::{Config, Multiaddr, NetEvent, NetHandle, NetTask, PeerId, spawn};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

struct Node {
    handle: NetHandle,
    task: NetTask,
    addrs: Vec<Multiaddr>,
}

/// Starts a node listening on loopback TCP and QUIC that answers every request with
/// the request reversed, and reports its events on `events`.
async fn node(max_frame: usize, events: mpsc::UnboundedSender<(PeerId, String)>) -> Node {
    node_with(
        Config {
            max_frame,
            ..Config::default()
        },
        events,
    )
    .await
}

/// [`node`] with other settings (listen addresses, mDNS and timeout are the test's).
async fn node_with(config: Config, events: mpsc::UnboundedSender<(PeerId, String)>) -> Node {
    let config = Config {
        listen: vec![
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
        ],
        mdns: false,
        request_timeout: Duration::from_secs(10),
        ..config
    };
    let (handle, mut rx, task) = spawn(Keypair::generate_ed25519(), config).unwrap();
    let me = handle.local_peer_id();
    let mut addrs = Vec::new();
    while addrs.len() < 2 {
        match timeout(WAIT, rx.recv()).await.unwrap().unwrap() {
            NetEvent::Listening { addr } => addrs.push(addr),
            other => panic!("unexpected {other:?}"),
        }
    }
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            match ev {
                NetEvent::Request { data, reply, .. } => {
                    let mut d = data;
                    d.reverse();
                    let _ = reply.send(d);
                }
                NetEvent::Connected { peer } => {
                    let _ = events.send((me, format!("connected {peer}")));
                }
                NetEvent::Disconnected { peer } => {
                    let _ = events.send((me, format!("disconnected {peer}")));
                }
                NetEvent::Misbehaved { peer, .. } => {
                    let _ = events.send((me, format!("misbehaved {peer}")));
                }
                _ => {}
            }
        }
    });
    Node {
        handle,
        task,
        addrs,
    }
}

fn tcp(n: &Node) -> Multiaddr {
    n.addrs
        .iter()
        .find(|a| a.to_string().contains("/tcp/"))
        .unwrap()
        .clone()
}

fn quic(n: &Node) -> Multiaddr {
    n.addrs
        .iter()
        .find(|a| a.to_string().contains("/quic-v1"))
        .unwrap()
        .clone()
}

async fn wait_for(rx: &mut mpsc::UnboundedReceiver<(PeerId, String)>, who: PeerId, what: &str) {
    timeout(WAIT, async {
        while let Some((at, ev)) = rx.recv().await {
            if at == who && ev == what {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for '{what}'"));
}

/// Makes `a` and each of `spokes` members of each other, the spokes knowing `a`'s
/// address.
async fn hub(a: &Node, spokes: &[&Node]) {
    a.handle
        .set_members(spokes.iter().map(|n| n.handle.local_peer_id()))
        .await
        .unwrap();
    for n in spokes {
        n.handle
            .set_members([a.handle.local_peer_id()])
            .await
            .unwrap();
        n.handle
            .add_address(a.handle.local_peer_id(), tcp(a))
            .await
            .unwrap();
    }
}

/// A request in the forms of `/4`, `/3`, `/2` and `/1`.
fn forms() -> Vec<(libp2p::StreamProtocol, Vec<u8>)> {
    vec![
        (regiosync_net::SYNC_PROTOCOL, b"start/4".to_vec()),
        (regiosync_net::SYNC_PROTOCOL_3, b"start/3".to_vec()),
        (regiosync_net::SYNC_PROTOCOL_2, b"st/2".to_vec()),
        (regiosync_net::SYNC_PROTOCOL_1, b"s/1".to_vec()),
    ]
}

/// `from` gets an answer from `to` (which echoes requests reversed).
async fn assert_served(from: &Node, to: &Node) {
    let r = timeout(
        WAIT,
        from.handle
            .request(to.handle.local_peer_id(), b"ok".to_vec()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r, b"ko");
}

async fn members(a: &Node, b: &Node) {
    a.handle
        .set_members([b.handle.local_peer_id()])
        .await
        .unwrap();
    b.handle
        .set_members([a.handle.local_peer_id()])
        .await
        .unwrap();
    a.handle
        .add_address(b.handle.local_peer_id(), tcp(b))
        .await
        .unwrap();
    b.handle
        .add_address(a.handle.local_peer_id(), tcp(a))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_exchange_requests_over_tcp_and_quic() {
    let (ev, _rx) = mpsc::unbounded_channel();
    let a = node(1 << 20, ev.clone()).await;
    let b = node(1 << 20, ev).await;
    members(&a, &b).await;
    let resp = timeout(
        WAIT,
        b.handle
            .request(a.handle.local_peer_id(), b"hallo".to_vec()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp, b"ollah");

    // QUIC: a third node that only knows A's QUIC address.
    let (ev, _rx2) = mpsc::unbounded_channel();
    let c = node(1 << 20, ev).await;
    a.handle
        .set_members([b.handle.local_peer_id(), c.handle.local_peer_id()])
        .await
        .unwrap();
    c.handle
        .set_members([a.handle.local_peer_id()])
        .await
        .unwrap();
    c.handle
        .add_address(a.handle.local_peer_id(), quic(&a))
        .await
        .unwrap();
    let resp = timeout(
        WAIT,
        c.handle.request(a.handle.local_peer_id(), vec![1, 2, 3]),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp, vec![3, 2, 1]);
    let connected = a.handle.connected_peers().await.unwrap();
    assert!(connected.contains(&c.handle.local_peer_id()));
    for n in [a, b, c] {
        n.task.shutdown().await;
    }
}

/// A request in one form per version reaches a node that speaks
/// `/regiosync/sync/4` in the newest form, ones that speak up to `/3` or `/2` in that
/// version's form, and one that speaks only `/1` (an older version) in the oldest;
/// both directions work between old and new, over TCP and QUIC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_several_forms_reaches_each_peer_in_the_form_it_speaks() {
    let (ev, _rx) = mpsc::unbounded_channel();
    let new = node(1 << 20, ev.clone()).await;
    let newer = node(1 << 20, ev.clone()).await;
    let three = node_with(
        Config {
            max_sync_version: 3,
            ..Config::default()
        },
        ev.clone(),
    )
    .await;
    let older = node_with(
        Config {
            max_sync_version: 2,
            ..Config::default()
        },
        ev.clone(),
    )
    .await;
    let old = node_with(
        Config {
            max_sync_version: 1,
            ..Config::default()
        },
        ev,
    )
    .await;
    hub(&new, &[&newer, &three, &older, &old]).await;
    // The spokes dial (the old ones on `/3`, `/2` and `/1`) and are answered.
    assert_served(&newer, &new).await;
    assert_served(&three, &new).await;
    assert_served(&older, &new).await;
    assert_served(&old, &new).await;
    // The echo answers reversed: what came back tells which form arrived.
    for (to, want) in [
        (&newer, b"4/trats".to_vec()),
        (&three, b"3/trats".to_vec()),
        (&older, b"2/ts".to_vec()),
        (&old, b"1/s".to_vec()),
    ] {
        let r = timeout(
            WAIT,
            new.handle
                .request_versioned(to.handle.local_peer_id(), forms()),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(r, want);
    }
    // Over QUIC: an old node that knows only the new one's QUIC address.
    let (ev, _rx2) = mpsc::unbounded_channel();
    let old_quic = node_with(
        Config {
            max_sync_version: 1,
            ..Config::default()
        },
        ev,
    )
    .await;
    let ids = [&newer, &three, &older, &old, &old_quic].map(|n| n.handle.local_peer_id());
    new.handle.set_members(ids).await.unwrap();
    old_quic
        .handle
        .set_members([new.handle.local_peer_id()])
        .await
        .unwrap();
    old_quic
        .handle
        .add_address(new.handle.local_peer_id(), quic(&new))
        .await
        .unwrap();
    assert_served(&old_quic, &new).await;
    let r = timeout(
        WAIT,
        new.handle
            .request_versioned(old_quic.handle.local_peer_id(), forms()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r, b"1/s");
    for n in [new, newer, older, old, old_quic] {
        n.task.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_cannot_connect_and_removed_members_are_cut_off() {
    let (ev, mut rx) = mpsc::unbounded_channel();
    let a = node(1 << 20, ev.clone()).await;
    let b = node(1 << 20, ev.clone()).await;
    let stranger = node(1 << 20, ev).await;
    members(&a, &b).await;

    // The stranger allows A, but A does not allow the stranger: refused.
    stranger
        .handle
        .set_members([a.handle.local_peer_id()])
        .await
        .unwrap();
    stranger
        .handle
        .add_address(a.handle.local_peer_id(), tcp(&a))
        .await
        .unwrap();
    let r = timeout(
        WAIT,
        stranger
            .handle
            .request(a.handle.local_peer_id(), b"let me in".to_vec()),
    )
    .await
    .unwrap();
    assert!(r.is_err(), "a non-member got an answer: {r:?}");
    assert!(
        !a.handle
            .connected_peers()
            .await
            .unwrap()
            .contains(&stranger.handle.local_peer_id())
    );

    // B is a member and connects; then A removes it: disconnected at once, refused after.
    let r = timeout(
        WAIT,
        b.handle.request(a.handle.local_peer_id(), b"x".to_vec()),
    )
    .await
    .unwrap();
    assert!(r.is_ok());
    a.handle.set_members([]).await.unwrap();
    wait_for(
        &mut rx,
        a.handle.local_peer_id(),
        &format!("disconnected {}", b.handle.local_peer_id()),
    )
    .await;
    let r = timeout(
        WAIT,
        b.handle
            .request(a.handle.local_peer_id(), b"again".to_vec()),
    )
    .await
    .unwrap();
    assert!(r.is_err(), "a removed member got an answer");
    for n in [a, b, stranger] {
        n.task.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_disconnects_the_sender_and_others_keep_working() {
    let (ev, mut rx) = mpsc::unbounded_channel();
    // A accepts frames up to 1 KiB; B and C send up to 1 MiB.
    let a = node(1024, ev.clone()).await;
    let b = node(1 << 20, ev.clone()).await;
    let c = node(1 << 20, ev).await;
    hub(&a, &[&b, &c]).await;
    let r = timeout(
        WAIT,
        b.handle.request(a.handle.local_peer_id(), vec![7; 100_000]),
    )
    .await
    .unwrap();
    assert!(r.is_err());
    wait_for(
        &mut rx,
        a.handle.local_peer_id(),
        &format!("misbehaved {}", b.handle.local_peer_id()),
    )
    .await;
    // An honest peer is still served.
    assert_served(&c, &a).await;
    for n in [a, b, c] {
        n.task.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_requests_is_cut_off_and_others_keep_working() {
    let (ev, mut rx) = mpsc::unbounded_channel();
    // A allows bursts of 20 requests and 5 a second after that.
    let a = node_with(
        Config {
            request_burst: 20,
            requests_per_sec: 5,
            ..Config::default()
        },
        ev.clone(),
    )
    .await;
    let b = node(1 << 20, ev.clone()).await;
    let c = node(1 << 20, ev).await;
    hub(&a, &[&b, &c]).await;
    // An honest burst is served.
    for _ in 0..10 {
        assert_served(&c, &a).await;
    }
    // B sends 200 requests at once.
    let flood = (0..200).map(|i| {
        let h = b.handle.clone();
        let to = a.handle.local_peer_id();
        tokio::spawn(async move { h.request(to, vec![i as u8; 8]).await })
    });
    let results = futures::future::join_all(flood).await;
    let failed = results
        .into_iter()
        .filter(|r| !matches!(r, Ok(Ok(_))))
        .count();
    assert!(failed > 0, "a flood must not be served in full");
    wait_for(
        &mut rx,
        a.handle.local_peer_id(),
        &format!("misbehaved {}", b.handle.local_peer_id()),
    )
    .await;
    // C keeps being served.
    assert_served(&c, &a).await;
    for n in [a, b, c] {
        n.task.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_uses_the_relay_is_cut_off() {
    let (ev, mut rx) = mpsc::unbounded_channel();
    let relay = node_with(
        Config {
            relay_server: true,
            ..Config::default()
        },
        ev.clone(),
    )
    .await;
    let guest = node(1 << 20, ev.clone()).await;
    let member = node(1 << 20, ev).await;
    relay
        .handle
        .set_members_and_guests(
            [member.handle.local_peer_id()],
            [guest.handle.local_peer_id()],
        )
        .await
        .unwrap();
    // The guest and the member know the relay as a member of theirs: once connected,
    // identify tells them it relays, and each tries to reserve a slot there.
    for n in [&guest, &member] {
        n.handle
            .set_members([relay.handle.local_peer_id()])
            .await
            .unwrap();
        n.handle.dial(tcp(&relay)).await.unwrap();
    }
    // Both, in whichever order they come: the relay cuts the guest off, and the
    // member's own connection to the relay is up (asking before it is would race the
    // dial: the member knows the relay by no address it could dial again).
    let mut waiting = vec![
        (
            relay.handle.local_peer_id(),
            format!("misbehaved {}", guest.handle.local_peer_id()),
        ),
        (
            member.handle.local_peer_id(),
            format!("connected {}", relay.handle.local_peer_id()),
        ),
    ];
    timeout(WAIT, async {
        while let Some(ev) = rx.recv().await {
            waiting.retain(|w| *w != ev);
            if waiting.is_empty() {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {waiting:?}"));
    // The member keeps its connection and is served.
    assert_served(&member, &relay).await;
    for n in [relay, guest, member] {
        n.task.shutdown().await;
    }
}
