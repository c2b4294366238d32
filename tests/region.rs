//! The region control plane across several nodes in one process: invitations and
//! their refusals, joining by bundle, device removal, persistence across restarts.
//! (Nodes exchange files here; syncing over the network is tested in `sync.rs` and
//! `region_sync.rs`.)

use regiosync_core::control::{InviteCode, JOIN_MAGIC, JoinFields, JoinRequest};
use regiosync_core::id::{PartyName, Role};
use regiosync_core::identity::NodeSecret;
use regiosync_core::plan::PlanKind;
use regiosync_node::{Node, NodeError};
use regiosync_store::InviteRow;

fn party(s: &str) -> PartyName {
    PartyName::new(s).unwrap()
}

struct Region {
    _tmp: tempfile::TempDir,
    founder: Node,
}

impl Region {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("kerngemeente");
        Node::init(&dir, party("gemeente-utrecht"), Role::Kerngemeente, None).unwrap();
        let mut founder = Node::open(&dir).unwrap();
        founder.create_region("Regio Utrecht").unwrap();
        Self { _tmp: tmp, founder }
    }

    fn new_node(&self, name: &str, p: &str, role: Role) -> Node {
        let dir = self._tmp.path().join(name);
        Node::init(&dir, party(p), role, None).unwrap();
        Node::open(&dir).unwrap()
    }

    /// Invites and joins a new node of party `p`; returns it.
    fn join(&mut self, name: &str, p: &str, role: Role) -> Node {
        let mut node = self.new_node(name, p, role);
        let code = self.founder.invite(party(p), role, false, 3600).unwrap();
        let req = node.join_request(&code.encode()).unwrap();
        let (_, bundle) = self.founder.accept(&req).unwrap();
        let imported = node.import(&bundle).unwrap();
        assert!(imported.joined);
        node
    }
}

fn refused(r: Result<impl std::fmt::Debug, NodeError>, needle: &str) {
    match r {
        Err(e) => assert!(
            e.to_string().contains(needle),
            "expected '{needle}' in: {e}"
        ),
        Ok(v) => panic!("expected refusal '{needle}', got {v:?}"),
    }
}

#[test]
fn join_by_bundle_gives_both_nodes_the_same_state_and_survives_restart() {
    let mut r = Region::new();
    let roc = r.join("roc", "roc-midden", Role::Roc);
    let a = r.founder.region_state().unwrap();
    let b = roc.region_state().unwrap();
    assert_eq!(a, b);
    assert_eq!(
        b.active_device(&roc.info().node_id).unwrap().party,
        party("roc-midden")
    );
    // A second device of the ROC, invited by the ROC itself (no admin needed).
    let mut roc = roc;
    let laptop_dir = r._tmp.path().join("roc-laptop");
    Node::init(&laptop_dir, party("roc-midden"), Role::Roc, None).unwrap();
    let mut laptop = Node::open(&laptop_dir).unwrap();
    let code = roc
        .invite(party("roc-midden"), Role::Roc, false, 600)
        .unwrap();
    let (_, bundle) = roc
        .accept(&laptop.join_request(&code.encode()).unwrap())
        .unwrap();
    laptop.import(&bundle).unwrap();
    assert_eq!(
        laptop
            .region_state()
            .unwrap()
            .devices_of(&party("roc-midden"))
            .count(),
        2
    );
    // Restart: ops come back from the store.
    let reopened = Node::open(&laptop_dir).unwrap();
    assert_eq!(
        reopened.region_state().unwrap(),
        laptop.region_state().unwrap()
    );
}

#[test]
fn reused_expired_foreign_and_forged_join_requests_are_refused() {
    let mut r = Region::new();
    let mut swv = r.new_node("swv", "swv-utrecht", Role::Swv);
    let code = r
        .founder
        .invite(party("swv-utrecht"), Role::Swv, false, 3600)
        .unwrap();
    let req = swv.join_request(&code.encode()).unwrap();
    let before = r.founder.region_state().unwrap();

    // Signed by a different key than it names.
    let mut forged = req.clone();
    let n = forged.len();
    forged[JOIN_MAGIC.len() + 3] ^= 0x01; // inside the signature
    refused(
        r.founder.accept(&forged),
        "not signed by the device key it names",
    );
    let _ = n;

    // Proof made without the secret (an eavesdropper who saw only the invite id).
    let mallory = NodeSecret::generate().unwrap();
    let fake = JoinRequest::sign(
        JoinFields {
            region: code.region,
            invite_id: code.invite_id,
            device: mallory.node_id(),
            age_recipient: mallory.age_recipient().to_string(),
            party: party("swv-utrecht"),
            proof: [0; 32],
        },
        mallory.signing_key(),
    )
    .unwrap();
    refused(r.founder.accept(&fake.encode()), "does not prove knowledge");

    // A request for another region.
    let other = Region::new();
    let mut stranger = other.new_node("x", "swv-utrecht", Role::Swv);
    let mut other = other;
    let ocode = other
        .founder
        .invite(party("swv-utrecht"), Role::Swv, false, 3600)
        .unwrap();
    let oreq = stranger.join_request(&ocode.encode()).unwrap();
    refused(r.founder.accept(&oreq), "for another region");

    // Nothing of the above changed the region.
    assert_eq!(r.founder.region_state().unwrap(), before);

    // The honest request works once, then the invite is used up.
    r.founder.accept(&req).unwrap();
    refused(r.founder.accept(&req), "already used");

    // An expired invite code is refused by the joining node...
    let mut late = r.new_node("late", "gemeente-zeist", Role::Gemeente);
    let mut expired = r
        .founder
        .invite(party("gemeente-zeist"), Role::Gemeente, false, 3600)
        .unwrap();
    expired.expires = 1_000; // 1970
    refused(late.join_request(&expired.encode()), "expired");
    // ...and by the inviter, whatever the joining node's clock says.
    let id = [7u8; 16];
    let secret = [8u8; 32];
    r.founder
        .store_mut_for_bench()
        .write(|tx| {
            tx.insert_invite(&InviteRow {
                id,
                secret,
                party: "gemeente-zeist".into(),
                role: "gemeente".into(),
                admin: false,
                expires_s: 1_000,
                created_ms: 0,
                used_ms: None,
                used_by: None,
            })
        })
        .unwrap();
    let stale = InviteCode {
        invite_id: id,
        secret,
        expires: i64::MAX,
        ..expired
    };
    let req = late.join_request(&stale.encode()).unwrap();
    refused(r.founder.accept(&req), "expired");

    // Importing a bundle of another region is refused.
    let mut fresh = r.new_node("fresh", "gemeente-ede", Role::Gemeente);
    let code = r
        .founder
        .invite(party("gemeente-ede"), Role::Gemeente, false, 3600)
        .unwrap();
    fresh.join_request(&code.encode()).unwrap();
    refused(
        fresh.import(&other.founder.export().unwrap()),
        "another region",
    );
}

#[test]
fn non_admins_cannot_invite_new_parties_or_admins() {
    let mut r = Region::new();
    let mut roc = r.join("roc", "roc-midden", Role::Roc);
    refused(
        roc.invite(party("gemeente-zeist"), Role::Gemeente, false, 600),
        "only a region admin",
    );
    // Not even as admin of a new party.
    refused(
        roc.invite(party("gemeente-ede"), Role::Gemeente, true, 600),
        "only a region admin",
    );
    refused(
        r.founder.invite(party("roc-midden"), Role::Swv, false, 600),
        "exists with role roc",
    );
    // --admin is for new parties only (it is not silently ignored).
    refused(
        r.founder.invite(party("roc-midden"), Role::Roc, true, 600),
        "new parties only",
    );
    refused(
        roc.invite(party("roc-midden"), Role::Roc, true, 600),
        "new parties only",
    );
}

#[test]
fn a_removed_device_can_no_longer_write_and_its_earlier_work_stays() {
    let mut r = Region::new();
    let mut roc = r.join("roc", "roc-midden", Role::Roc);
    let doc = r
        .founder
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan 2027")
        .unwrap();
    r.founder
        .set_section(&doc, "Inleiding", "Door de kerngemeente.")
        .unwrap();

    // The ROC's own plan, with two edits, then the founder removes the ROC device.
    let rdoc = roc.create_plan(PlanKind::VsvProgramma, "VSV").unwrap();
    roc.set_section(&rdoc, "Aanpak", "Eerste versie").unwrap();
    // The founder learns the ROC's ops (the CreateDoc) by bundle.
    r.founder.import(&roc.export().unwrap()).unwrap();
    let roc_id = roc.info().node_id;
    r.founder.remove_device(roc_id).unwrap();
    // Removing twice is refused with a clear message.
    refused(r.founder.remove_device(roc_id), "not an active member");

    // The ROC learns of its removal.
    roc.import(&r.founder.export().unwrap()).unwrap();
    let state = roc.region_state().unwrap();
    assert!(state.active_device(&roc_id).is_none());
    // Its changes were not seen by the founder, so no cutoff keeps them: its own
    // plan no longer reads, and it cannot write any more.
    refused(
        roc.set_section(&rdoc, "Aanpak", "Tweede versie"),
        "may not change",
    );
    assert!(roc.rejected_changes(&rdoc).unwrap() >= 2);
    // The founder's plan is unaffected.
    assert_eq!(
        r.founder.plan(&doc).unwrap().sections[0].text,
        "Door de kerngemeente."
    );
    // The removed device cannot issue ops either.
    refused(
        roc.invite(party("roc-midden"), Role::Roc, false, 600),
        "not an active member",
    );
}
