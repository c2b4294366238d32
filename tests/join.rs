//! Joining a region over the network with an invite code, against a running node on
//! loopback: the joiner connects under the invite's one-time identity, gets the
//! region's log, and afterwards syncs as a member with only what it remembered from
//! the join (no --peer, no mDNS). A used code, a code with a wrong secret, and a
//! stranger get nowhere.

use std::path::Path;
use std::time::{Duration, Instant};

use regiosync_core::control::InviteCode;
use regiosync_core::id::Role;
use regiosync_core::plan::PlanKind;
use regiosync_net::Multiaddr;
use regiosync_node::{Node, NodeError, join_over_network};
use regiosync_tests::{Running, free_addr, logs, loopback_config, party, start_node};

fn start(dir: &Path, listen: &Multiaddr) -> Running {
    start_node(dir, loopback_config(listen, &[]))
}

fn init(dir: &Path, p: &str, role: Role) -> Node {
    Node::init(dir, party(p), role, None).unwrap();
    Node::open(dir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_joins_over_the_network_and_then_syncs_as_a_member() {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let (kern_dir, roc_dir) = (tmp.path().join("kern"), tmp.path().join("roc"));
    let mut kern = init(&kern_dir, "gemeente-utrecht", Role::Kerngemeente);
    kern.create_region("Regio Utrecht").unwrap();
    // A plan for every party, made while the kerngemeente is the only one: a party
    // that joins later receives it in its first sync and may write it.
    let earlier = kern
        .create_plan(PlanKind::VsvProgramma, "Regionaal programma vsv")
        .unwrap();
    let kern_addr = free_addr();
    let kern_node = start(&kern_dir, &kern_addr);

    // The invite is made (as by the CLI) while the node runs, with its address.
    let mut code = kern
        .invite(party("roc-midden"), Role::Roc, false, 3600)
        .unwrap();
    code.addrs = vec![kern_addr.to_string()];
    let text = code.encode();

    // A stranger cannot use a code whose secret it guessed: the gate refuses the
    // identity, and the join ends with the reason, before the timeout: not "could not
    // reach", and no more than "not an open invite there".
    let mut forged = code.clone();
    forged.secret[0] ^= 1;
    let mut stranger = init(&tmp.path().join("s"), "roc-midden", Role::Roc);
    let e = join_over_network(
        &mut stranger,
        &forged.encode(),
        &[],
        Duration::from_secs(60),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, NodeError::JoinRefused(m) if m.contains("running but does not accept this code")),
        "{e}"
    );
    assert!(stranger.region().unwrap().is_none());

    let mut roc = init(&roc_dir, "roc-midden", Role::Roc);
    let joined = join_over_network(&mut roc, &text, &[], Duration::from_secs(30))
        .await
        .unwrap();
    assert!(joined.joined);
    let me = roc.info().node_id;
    assert!(roc.region_state().unwrap().active_device(&me).is_some());
    assert_eq!(
        roc.region_state().unwrap(),
        Node::open(&kern_dir).unwrap().region_state().unwrap(),
        "the joiner has the inviter's whole region state"
    );
    assert!(
        roc.peer_addrs()
            .unwrap()
            .iter()
            .any(|(p, a)| *p == code.inviter && *a == kern_addr),
        "the inviter's address is remembered for `up`"
    );

    // The code is spent: a second device with it is refused, with the reason.
    let mut second = init(&tmp.path().join("second"), "roc-midden", Role::Roc);
    let e = join_over_network(&mut second, &text, &[], Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
    assert!(second.region().unwrap().is_none());
    drop((roc, second, stranger));

    // A plan made (as by the CLI, while the node runs) now that the ROC is a member.
    let doc = kern
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan 2027")
        .unwrap();

    // The new member starts with no --peer and no mDNS: it dials the inviter at the
    // remembered address, and the plan arrives.
    let roc_node = start(&roc_dir, &free_addr());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Node::open(&roc_dir).unwrap().plan(&doc).is_err() {
        assert!(
            Instant::now() < deadline,
            "the plan never reached the joiner"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Node::open(&roc_dir).unwrap().plan(&earlier).is_err() {
        assert!(
            Instant::now() < deadline,
            "the plan made before the ROC joined never reached it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = Node::open(&roc_dir).unwrap().documents().unwrap();
    assert!(
        listed.iter().any(|d| d.id == earlier),
        "`doc list` shows it"
    );
    Node::open(&roc_dir)
        .unwrap()
        .set_section(&earlier, "Aanpak", "Het ROC schrijft mee.\n")
        .unwrap();
    // And the edit of the new member reaches the inviter.
    Node::open(&roc_dir)
        .unwrap()
        .set_section(&doc, "Inleiding", "Het ROC doet mee.\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let plan = Node::open(&kern_dir).unwrap().plan(&doc).unwrap();
        if plan
            .sections
            .iter()
            .any(|s| s.text.contains("Het ROC doet mee."))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the joiner's edit never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for r in [roc_node, kern_node] {
        r.stop().await;
    }
}

#[test]
fn an_invite_code_without_addresses_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let mut kern = init(
        &tmp.path().join("kern"),
        "gemeente-utrecht",
        Role::Kerngemeente,
    );
    kern.create_region("Regio Utrecht").unwrap();
    let code: InviteCode = kern
        .invite(party("roc-midden"), Role::Roc, false, 3600)
        .unwrap();
    let mut roc = init(&tmp.path().join("roc"), "roc-midden", Role::Roc);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(join_over_network(
            &mut roc,
            &code.encode(),
            &[],
            Duration::from_secs(5),
        ))
        .unwrap_err();
    assert!(e.to_string().contains("--peer"), "{e}");
    assert!(roc.region().unwrap().is_none());
}

#[test]
fn a_join_request_is_answered_only_on_the_invites_own_connection() {
    use regiosync_core::control::join_peer_id;
    use regiosync_core::sync::{Request, Response};
    let tmp = tempfile::tempdir().unwrap();
    let mut kern = init(
        &tmp.path().join("kern"),
        "gemeente-utrecht",
        Role::Kerngemeente,
    );
    kern.create_region("Regio Utrecht").unwrap();
    let code = kern
        .invite(party("roc-midden"), Role::Roc, false, 3600)
        .unwrap();
    let mut roc = init(&tmp.path().join("roc"), "roc-midden", Role::Roc);
    let frame = Request::Join {
        request: roc.join_request(&code.encode()).unwrap(),
    }
    .encode();
    // Someone who intercepted the request replays it on its own connection (a member's
    // or another invite's identity): refused, and the invite stays unused.
    let other = init(&tmp.path().join("o"), "roc-midden", Role::Roc)
        .info()
        .node_id;
    let answer = kern.respond(&regiosync_node::SessionMemory::default(), &other, &frame);
    match Response::decode(&answer.frame).unwrap() {
        Response::JoinRefused { reason } => assert!(reason.contains("does not belong"), "{reason}"),
        r => panic!("{r:?}"),
    }
    assert!(
        kern.join_peers()
            .unwrap()
            .contains(&join_peer_id(&code.secret))
    );
    // Garbage in place of a request: a reason, no crash.
    let garbage = Request::Join {
        request: b"RGSYJOIN\x01garbage".to_vec(),
    }
    .encode();
    let peer = join_peer_id(&code.secret);
    assert!(matches!(
        Response::decode(
            &kern
                .respond(&regiosync_node::SessionMemory::default(), &peer, &garbage)
                .frame
        )
        .unwrap(),
        Response::JoinRefused { .. }
    ));
    // On the invite's own identity it is accepted, once.
    let answer = kern.respond(&regiosync_node::SessionMemory::default(), &peer, &frame);
    let Response::Joined { bundle } = Response::decode(&answer.frame).unwrap() else {
        panic!("not joined");
    };
    assert!(roc.import(&bundle).unwrap().joined);
    // The same device asking again (its answer was lost) gets the log again; another
    // device with the same code is refused.
    assert!(matches!(
        Response::decode(
            &kern
                .respond(&regiosync_node::SessionMemory::default(), &peer, &frame)
                .frame
        )
        .unwrap(),
        Response::Joined { .. }
    ));
    let mut other_dev = init(&tmp.path().join("o2"), "roc-midden", Role::Roc);
    let frame2 = Request::Join {
        request: other_dev.join_request(&code.encode()).unwrap(),
    }
    .encode();
    assert!(matches!(
        Response::decode(&kern.respond(&regiosync_node::SessionMemory::default(), &peer, &frame2).frame).unwrap(),
        Response::JoinRefused { reason } if reason.contains("already used")
    ));
    // A member (not a join identity) asking to sync is served; the join identity is not.
    let hello = Request::Hello {
        region: kern.region().unwrap().unwrap(),
        control_heads: vec![],
        summary: regiosync_core::sync::DigestSet::default().summary(),
    }
    .encode();
    assert!(matches!(
        Response::decode(
            &kern
                .respond(&regiosync_node::SessionMemory::default(), &peer, &hello)
                .frame
        )
        .unwrap(),
        Response::Refused { .. }
    ));
    assert!(matches!(
        Response::decode(
            &kern
                .respond(
                    &regiosync_node::SessionMemory::default(),
                    &roc.info().node_id,
                    &hello
                )
                .frame
        )
        .unwrap(),
        Response::Hello { .. }
    ));
}
