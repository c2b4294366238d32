use super::*;
use regiosync_core::plan::{AgreementInput, PlanKind, parse_date};

fn party(s: &str) -> PartyName {
    PartyName::new(s).unwrap()
}

fn new_node() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node_dir = dir.path().join("node");
    Node::init(&node_dir, party("roc-midden"), Role::Roc, None).unwrap();
    let mut node = Node::open(&node_dir).unwrap();
    node.create_region("Regio Midden").unwrap();
    (dir, node)
}

#[test]
fn init_writes_private_key_and_refuses_second_init() {
    let (_d, node) = new_node();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node.dir().join(data_dir::KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(node.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    let before = std::fs::read(node.dir().join(data_dir::KEY_FILE)).unwrap();
    let r = Node::init(node.dir(), party("roc-midden"), Role::Roc, None);
    assert!(matches!(r, Err(NodeError::AlreadyInitialised { .. })));
    assert_eq!(
        std::fs::read(node.dir().join(data_dir::KEY_FILE)).unwrap(),
        before
    );
    let mut node = node;
    node.unlock(None).unwrap();
}

#[test]
fn passphrase_protected_node() {
    let dir = tempfile::tempdir().unwrap();
    let pass = SecretString::from("lange zin met spaties".to_owned());
    let info = Node::init(dir.path(), party("swv-utrecht"), Role::Swv, Some(&pass)).unwrap();
    assert_eq!(info.key_protection, KeyProtection::Passphrase);
    let mut node = Node::open(dir.path()).unwrap();
    assert!(matches!(node.create_region("R"), Err(NodeError::Locked)));
    assert!(node.unlock(None).is_err());
    assert!(
        node.unlock(Some(&SecretString::from("fout".to_owned())))
            .is_err()
    );
    node.unlock(Some(&pass)).unwrap();
    node.create_region("R").unwrap();
    let state = node.region_state().unwrap();
    assert_eq!(
        state.active_device(&info.node_id).unwrap().party,
        party("swv-utrecht")
    );
}

#[test]
fn key_of_another_node_is_refused() {
    let (_d, mut node) = new_node();
    let other = tempfile::tempdir().unwrap();
    Node::init(other.path(), party("roc-midden"), Role::Roc, None).unwrap();
    std::fs::copy(
        other.path().join(data_dir::KEY_FILE),
        node.dir().join(data_dir::KEY_FILE),
    )
    .unwrap();
    assert!(matches!(
        node.unlock(None),
        Err(NodeError::KeyMismatch { .. })
    ));
}

#[test]
fn open_reports_missing_and_damaged_node_files() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Node::open(dir.path()),
        Err(NodeError::NoNode { .. })
    ));
    std::fs::write(dir.path().join(data_dir::NODE_FILE), b"{not json").unwrap();
    assert!(matches!(
        Node::open(dir.path()),
        Err(NodeError::BadNodeFile { .. })
    ));
    std::fs::write(dir.path().join(data_dir::NODE_FILE), br#"{"format": 7}"#).unwrap();
    assert!(matches!(
        Node::open(dir.path()),
        Err(NodeError::NewerNodeFile { version: 7, .. })
    ));
}

#[test]
fn edits_are_durable_and_read_back() {
    let (_d, mut node) = new_node();
    let id = node
        .create_plan(PlanKind::VsvProgramma, "Regionaal programma vsv")
        .unwrap();
    let s = node.set_section(&id, "Aanpak", "Tekst").unwrap();
    assert!(s.value.created && s.change.is_some());
    let same = node.set_section(&id, "aanpak", "Tekst").unwrap();
    assert!(
        same.change.is_none(),
        "an edit that changes nothing makes no change"
    );
    node.add_agreement(
        &id,
        &AgreementInput {
            title: "Verzuimaanpak".into(),
            owner: party("roc-midden"),
            deadline: Some(parse_date("2027-01-31").unwrap()),
        },
    )
    .unwrap();
    let reopened = Node::open(node.dir()).unwrap();
    let plan = reopened.plan(&id).unwrap();
    assert_eq!(plan.owner, party("roc-midden"));
    assert_eq!(plan.titled("Aanpak").unwrap().text, "Tekst");
    assert_eq!(plan.agreements[0].title, "Verzuimaanpak");
    let log = reopened.history(&id).unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|e| e.device == Some(node.info().node_id)));
    assert_eq!(log[0].message.as_deref(), Some("create vsv-programma"));
    assert_eq!(log[1].seq, 2);
}

#[test]
fn attack_a_plan_that_names_another_owner_or_kind_is_shown_as_the_region_log_says() {
    // The owner's creating change is the only one that may set `owner` and `kind`;
    // a hostile owner can still write other values there than its `CreateDoc` op
    // names. Readers take the region log's.
    let (_d, mut node) = new_node();
    let id = node
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan Midden")
        .unwrap();
    let state = node.region_state().unwrap();
    let mut forged = automerge::Automerge::new();
    let mut t = forged.transaction();
    regiosync_core::plan::init_plan(
        &mut t,
        PlanKind::OogoVerslag,
        "Jeugdplan Midden",
        &party("gemeente-zeist"),
    )
    .unwrap();
    t.commit();
    let raw = regiosync_core::plan::read_plan(&forged).unwrap();
    assert_eq!(
        raw.owner,
        party("gemeente-zeist"),
        "the forgery is in the doc"
    );
    let shown = crate::documents::read_plan_of(&forged, &state, &id).unwrap();
    assert_eq!(shown.owner, party("roc-midden"));
    assert_eq!(shown.kind, PlanKind::Jeugdplan);
    assert_eq!(node.plan(&id).unwrap().owner, party("roc-midden"));
}

#[test]
fn failed_edit_changes_nothing() {
    let (_d, mut node) = new_node();
    let id = node.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    let before = node.store().changes(&id).unwrap().len();
    assert!(node.set_section(&id, "", "x").is_err());
    assert!(node.set_section(&id, "Titel\nmet regeleinde", "x").is_err());
    assert_eq!(node.store().changes(&id).unwrap().len(), before);
    // The next edit still works: no sequence number was burnt.
    node.set_section(&id, "Inleiding", "x").unwrap();
    assert_eq!(node.history(&id).unwrap().len(), 2);
}

/// The editor holds its own changes to the bounds receivers hold them to: an edit
/// that others would leave out is refused with the reason, and nothing is written.
#[test]
fn an_edit_beyond_the_receipt_limits_is_refused_before_it_is_written() {
    use regiosync_core::plan::received::{
        ChangeOutsideSchema, MAX_DEVICE_MARKS_PER_TEXT, MAX_MARKS_PER_CHANGE,
    };
    let (_d, mut node) = new_node();
    let id = node.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    let bold = |word: &str, n: usize| {
        (0..n)
            .map(|i| format!("**{word}{i}**"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let before = node.store().changes(&id).unwrap().len();
    // More marks than one change may open.
    let err = node
        .set_section(&id, "Inleiding", &bold("w", MAX_MARKS_PER_CHANGE + 1))
        .unwrap_err();
    assert!(
        matches!(
            err,
            NodeError::BeyondReceiptLimits {
                why: ChangeOutsideSchema::TooManyMarks,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("other nodes would leave it out"));
    assert_eq!(node.store().changes(&id).unwrap().len(), before);
    // Edits each within that limit, until this device's budget for the section is
    // spent: the next one is refused, other sections can still be written.
    // (A rewrite opens more marks than it has runs: it also ends the old ones.)
    let per_edit = 300;
    let mut edits = 0;
    let err = loop {
        let written = node.store().changes(&id).unwrap().len();
        // Links to other addresses each time: every run needs a new mark.
        let links = (0..per_edit)
            .map(|i| format!("[w{i}](https://example.org/{edits}/{i})"))
            .collect::<Vec<_>>()
            .join(" ");
        match node.set_section(&id, "Inleiding", &links) {
            Ok(_) => edits += 1,
            Err(e) => {
                assert_eq!(node.store().changes(&id).unwrap().len(), written);
                break e;
            }
        }
        assert!(edits * per_edit <= 2 * MAX_DEVICE_MARKS_PER_TEXT as usize);
    };
    assert!(edits >= 2, "{edits}");
    assert!(
        matches!(
            err,
            NodeError::BeyondReceiptLimits {
                why: ChangeOutsideSchema::DeviceMarks,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("another device"), "{err}");
    node.set_section(&id, "Visie en ambities", &bold("v", 10))
        .unwrap();
    assert_eq!(node.rejected_changes(&id).unwrap(), 0);
    assert!(node.plan(&id).unwrap().titled("Inleiding").is_some());
}

#[test]
fn snapshots_are_written_and_loading_uses_them() {
    let (_d, mut node) = new_node();
    let id = node.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    for i in 0..(documents::SNAPSHOT_EVERY * 2 + 5) {
        node.set_section(&id, "Inleiding", &format!("versie {i}"))
            .unwrap();
    }
    let stored = node.store().load(&id).unwrap();
    assert!(stored.snapshot.is_some());
    assert!(stored.tail.len() < documents::SNAPSHOT_EVERY);
    let plan = Node::open(node.dir()).unwrap().plan(&id).unwrap();
    assert_eq!(
        plan.titled("Inleiding").unwrap().text,
        format!("versie {}", documents::SNAPSHOT_EVERY * 2 + 4)
    );
}

#[test]
fn ids_resolve_by_unique_prefix() {
    let (_d, mut node) = new_node();
    let a = node.create_plan(PlanKind::Jeugdplan, "A").unwrap();
    let full = a.to_string();
    assert_eq!(node.resolve(&full).unwrap(), a);
    assert_eq!(node.resolve(&full[..8].to_uppercase()).unwrap(), a);
    assert!(matches!(node.resolve("abc"), Err(NodeError::Id(_))));
    let missing = if full.starts_with('f') {
        "00000000"
    } else {
        "ffffffff"
    };
    assert!(matches!(
        node.resolve(missing),
        Err(NodeError::UnknownDocument(_))
    ));
    let docs = node.documents().unwrap();
    assert_eq!(docs[0].short, full[..8]);
}

#[test]
fn damaged_change_row_is_reported_not_skipped() {
    let (_d, mut node) = new_node();
    let id = node.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    let garbage = regiosync_store::ChangeRow {
        hash: [9; 32],
        actor: vec![1; 32],
        seq: 2,
        bytes: b"\x85\x6f\x4a\x83 not a change".to_vec(),
        stored_ms: 0,
        envelope: None,
    };
    node.store_mut_for_bench()
        .write(|tx| tx.append_change(&id, &garbage))
        .unwrap();
    assert!(matches!(
        node.plan(&id),
        Err(NodeError::DamagedDocument { .. })
    ));
    // An edit on top of a damaged document is refused instead of reusing a seq.
    assert!(matches!(
        node.set_section(&id, "Inleiding", "x"),
        Err(NodeError::DamagedDocument { .. })
    ));
}

#[test]
fn sync_state_tells_ahead_behind_and_in_sync_from_the_peers_known_heads() {
    let (d, mut kern) = new_node();
    let roc_dir = d.path().join("roc");
    Node::init(&roc_dir, party("roc-b"), Role::Roc, None).unwrap();
    let mut roc = Node::open(&roc_dir).unwrap();
    let code = kern.invite(party("roc-b"), Role::Roc, false, 600).unwrap();
    let (_, bundle) = kern
        .accept(&roc.join_request(&code.encode()).unwrap())
        .unwrap();
    roc.import(&bundle).unwrap();
    let peer = roc.info().node_id;
    let doc = kern.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    let first: Vec<[u8; 32]> = kern.store().changes(&doc).unwrap()[..1]
        .iter()
        .map(|c| c.hash)
        .collect();
    kern.set_section(&doc, "Inleiding", "Tekst.\n").unwrap();
    // Never synced: everything here is ahead.
    assert_eq!(kern.sync_state(&peer).unwrap().ahead, vec![doc]);
    // The peer holds an older version: ahead.
    kern.note_peer_heads(&peer, &[(doc, first.clone())])
        .unwrap();
    assert_eq!(kern.sync_state(&peer).unwrap().ahead, vec![doc]);
    // A head list longer than any document's is not kept.
    let flood: Vec<[u8; 32]> = (0..65u8).map(|i| [i; 32]).collect();
    kern.note_peer_heads(&peer, &[(doc, flood)]).unwrap();
    assert_eq!(kern.known_heads(&peer).unwrap().get(&doc), Some(&first));
    // The peer holds a change this node lacks: behind.
    kern.note_peer_heads(&peer, &[(doc, vec![[9; 32]])])
        .unwrap();
    let s = kern.sync_state(&peer).unwrap();
    assert_eq!((s.behind, s.ahead, s.in_sync), (vec![doc], vec![], 0));
    // The same heads: in sync; and it survives reopening.
    let folded = kern.control().unwrap().unwrap();
    let memory = crate::sync::SessionMemory::default();
    let shared = kern.shared_with(&memory, &folded, &peer).unwrap();
    kern.note_in_sync(&memory, &peer, shared.set.summary(), &shared.heads)
        .unwrap();
    let reopened = Node::open(kern.dir()).unwrap();
    assert_eq!(
        reopened.sync_state(&peer).unwrap(),
        DocStates {
            in_sync: 1,
            ..DocStates::default()
        }
    );
}

#[test]
fn a_resident_document_sees_edits_of_other_handles_and_new_control_state() {
    let (_d, mut node) = new_node();
    let doc = node.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    node.set_section(&doc, "Inleiding", "Een.\n").unwrap();
    let reader = Node::open(node.dir()).unwrap();
    assert_eq!(reader.plan(&doc).unwrap().sections[0].text, "Een.");
    // Another handle (the CLI while the node runs) edits: the resident copy catches up.
    node.set_section(&doc, "Inleiding", "Een.\nTwee.\n")
        .unwrap();
    assert_eq!(reader.plan(&doc).unwrap().sections[0].text, "Een.\nTwee.");
    // A control op (new heads) makes the copy stale: it is verified afresh.
    node.set_acl(&doc, Some(vec![]), None).unwrap();
    node.set_section(&doc, "Inleiding", "Drie.\n").unwrap();
    assert_eq!(reader.plan(&doc).unwrap(), node.plan(&doc).unwrap());
    assert_eq!(reader.plan(&doc).unwrap().sections[0].text, "Drie.");
}

/// An edit applies its change to the copy in memory instead of rebuilding the plan
/// from the store, and an edit after another handle (the CLI while the node runs)
/// wrote to the plan builds on that handle's change, not on a stale copy.
#[test]
fn edits_build_on_the_copy_in_memory_unless_another_handle_wrote() {
    let (_d, mut node) = new_node();
    let doc = node.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    node.set_section(&doc, "Inleiding", "Een.\n").unwrap();
    let (_, loads) = node.resident_state(&doc);
    let edits = documents::SNAPSHOT_EVERY + 3;
    for i in 0..edits {
        node.set_section(&doc, "Inleiding", &format!("Versie {i}.\n"))
            .unwrap();
    }
    let (kept, after) = node.resident_state(&doc);
    assert_eq!(after, loads, "no edit rebuilt the plan from the store");
    let last = node.store().last_change(&doc).unwrap();
    let (tail, fresh, covers) = kept.expect("the edited plan stays in memory");
    assert_eq!(covers, last, "the copy covers the last change stored");
    assert!(
        fresh && tail < documents::SNAPSHOT_EVERY,
        "a snapshot was written on the way"
    );
    // What memory holds is what the store holds.
    let in_memory = node.plan(&doc).unwrap();
    assert_eq!(
        in_memory,
        Node::open(node.dir()).unwrap().plan(&doc).unwrap()
    );
    assert_eq!(in_memory.sections[0].text, format!("Versie {}.", edits - 1));

    // Another handle edits: the next edit here sees its change (a stale copy would
    // reuse its sequence number, an equivocation every node refuses).
    let mut other = Node::open(node.dir()).unwrap();
    other
        .set_section(&doc, "Inleiding", "Van de andere.\n")
        .unwrap();
    node.add_agreement(
        &doc,
        &AgreementInput {
            title: "Afspraak".into(),
            owner: party("roc-midden"),
            deadline: None,
        },
    )
    .unwrap();
    let plan = Node::open(node.dir()).unwrap().plan(&doc).unwrap();
    assert_eq!(plan.sections[0].text, "Van de andere.");
    assert_eq!(plan.agreements.len(), 1);
    assert!(node.equivocations().unwrap().is_empty());
    assert_eq!(node.plan(&doc).unwrap(), plan);
}
/// A region of four parties in `root` (the kerngemeente, founder and admin; the ROC;
/// gemeente-zeist; gemeente-houten), joined by files, each knowing every device.
/// The mentor who reads and writes the test dossiers (by the CLI, for guidance).
fn mentor() -> crate::dossiers::Reader {
    crate::dossiers::Reader {
        who: regiosync_core::audit::Who::cli("j.bakker"),
        purpose: "begeleiding".into(),
    }
}

fn dossier_region(root: &std::path::Path) -> [Node; 4] {
    let mk = |name: &str, p: &str, role: Role| {
        let dir = root.join(name);
        Node::init(&dir, party(p), role, None).unwrap();
        Node::open(&dir).unwrap()
    };
    let mut kern = mk("kern", "gemeente-utrecht", Role::Kerngemeente);
    kern.create_region("Regio Utrecht").unwrap();
    let mut others = [
        ("roc", "roc-midden", Role::Roc),
        ("zeist", "gemeente-zeist", Role::Gemeente),
        ("houten", "gemeente-houten", Role::Gemeente),
    ]
    .map(|(name, p, role)| {
        let mut n = mk(name, p, role);
        let code = kern.invite(party(p), role, false, 600).unwrap();
        let (_, bundle) = kern
            .accept(&n.join_request(&code.encode()).unwrap())
            .unwrap();
        n.import(&bundle).unwrap();
        n
    });
    let log = kern.export().unwrap();
    for n in &mut others {
        n.import(&log).unwrap();
    }
    let [roc, zeist, houten] = others;
    [kern, roc, zeist, houten]
}

#[test]
fn a_dossier_is_sealed_granted_revoked_and_audited_on_its_node() {
    use crate::dossiers::NewDossier;
    use regiosync_core::audit::{Who, verify_chain};
    use regiosync_core::dossier::DossierField;
    use regiosync_core::dossier::access::Basis;
    use regiosync_core::seal::SealError;

    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, mut a, mut b] = dossier_region(tmp.path());
    let mentor = mentor();
    let id = roc
        .create_dossier(
            &NewDossier {
                woongemeente: party("gemeente-zeist"),
                basis: Basis::WettelijkeTaak,
                purpose: "Jeugdwet: ondersteuning".into(),
                fields: vec![
                    (DossierField::Naam, "Sanne de Vries".into()),
                    (DossierField::Opleiding, "Verzorgende IG".into()),
                ],
            },
            &mentor,
        )
        .unwrap();
    let d = roc.read_dossier(&id, &mentor).unwrap();
    assert_eq!(
        (d.naam.as_str(), d.woongemeente.as_str()),
        ("Sanne de Vries", "gemeente-zeist")
    );
    // Nothing readable is stored: the name is in no stored change.
    let rows = roc.store().changes(&id).unwrap();
    assert!(
        !rows
            .iter()
            .any(|r| r.bytes.windows(5).any(|w| w == b"Sanne"))
    );
    // Not listed with the plans.
    assert!(roc.documents().unwrap().iter().all(|s| s.id != id));

    // Zeist's device holds the key; Houten's does not.
    let access = roc.dossier_access(&id).unwrap();
    let ring_of = |n: &mut Node| {
        let me = n.info().node_id;
        let secret = n.signer().unwrap();
        access.key_ring(&me, secret.age_identity()).0
    };
    let a_ring = ring_of(&mut a);
    let first = &rows[0];
    assert!(a_ring.unseal(&first.hash, &first.bytes).is_ok());
    assert!(ring_of(&mut b).latest().is_none());

    // The student moves: revoke Zeist. The next note is sealed under a new epoch that
    // Zeist's keys do not open; the old change still opens with them.
    roc.revoke_dossier(
        &id,
        party("gemeente-zeist"),
        "verhuisd naar Houten",
        &mentor,
    )
    .unwrap();
    roc.add_dossier_note(&id, "Intake bij de nieuwe gemeente gepland.", &mentor)
        .unwrap();
    let access = roc.dossier_access(&id).unwrap();
    let a_ring = {
        let me = a.info().node_id;
        let secret = a.signer().unwrap();
        access.key_ring(&me, secret.age_identity()).0
    };
    let rows = roc.store().changes(&id).unwrap();
    let last = rows.last().unwrap();
    assert!(matches!(
        a_ring.unseal(&last.hash, &last.bytes),
        Err(SealError::NoKeyForEpoch(_))
    ));
    assert!(a_ring.unseal(&rows[0].hash, &rows[0].bytes).is_ok());
    let d = roc.read_dossier(&id, &mentor).unwrap();
    assert_eq!(d.contacten.len(), 1);

    // Every read and write is in the audit log, and the chain verifies.
    let log = roc.store().audit_log().unwrap();
    let actions: Vec<&str> = log.iter().map(|(_, e, _)| e.action.as_str()).collect();
    assert_eq!(actions, ["create", "read", "revoke", "note", "read"]);
    assert!(log.iter().all(|(_, e, _)| e.who == Who::cli("j.bakker")));
    assert_eq!(verify_chain(log), Ok(5));

    // Erase: reads fail with who erased it and when, and no byte of its wrapped keys,
    // its sealed changes or its plaintext is left in the store files.
    let wrapped: Vec<Vec<u8>> = access
        .epochs
        .iter()
        .flat_map(|e| e.wraps.values().flatten().cloned())
        .collect();
    let sealed: Vec<Vec<u8>> = rows.iter().map(|r| r.bytes.clone()).collect();
    assert!(!wrapped.is_empty() && !sealed.is_empty());
    roc.erase_dossier(&id, &mentor).unwrap();
    let e = roc.read_dossier(&id, &mentor).unwrap_err();
    assert!(
        e.to_string().contains("erased on") && e.to_string().contains("roc-midden"),
        "{e}"
    );
    assert!(roc.add_dossier_note(&id, "x", &mentor).is_err());
    assert_eq!(roc.resolve_dossier(&id.to_string()).unwrap(), id);
    drop(roc);
    let mut files = Vec::new();
    for f in std::fs::read_dir(tmp.path().join("roc")).unwrap() {
        let f = f.unwrap();
        if f.file_name().to_string_lossy().starts_with("store.sqlite") {
            files.push(std::fs::read(f.path()).unwrap());
        }
    }
    assert!(!files.is_empty());
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for bytes in &files {
        for w in &wrapped {
            assert!(
                !contains(bytes, &w[w.len() - 48..]),
                "a wrapped key survived"
            );
        }
        for c in &sealed {
            assert!(
                !contains(bytes, &c[c.len() - 32..]),
                "a sealed change survived"
            );
        }
        assert!(!contains(bytes, b"Sanne"));
    }
}

#[test]
fn two_processes_writing_one_dossier_at_once_lose_nothing() {
    use crate::dossiers::{NewDossier, Reader};
    use regiosync_core::dossier::access::Basis;
    let tmp = tempfile::tempdir().unwrap();
    let [_, mut node, ..] = dossier_region(tmp.path());
    let by = Reader {
        who: regiosync_core::audit::Who::cli("t"),
        purpose: "test".into(),
    };
    let id = node
        .create_dossier(
            &NewDossier {
                woongemeente: party("gemeente-zeist"),
                basis: Basis::Toestemming,
                purpose: "begeleiding".into(),
                fields: vec![],
            },
            &by,
        )
        .unwrap();
    let dir = node.dir().to_owned();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let dir = dir.clone();
            let by = by.clone();
            std::thread::spawn(move || {
                let mut n = Node::open(&dir).unwrap();
                for i in 0..8 {
                    n.add_dossier_note(&id, &format!("notitie {w}-{i}"), &by)
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let d = node.read_dossier(&id, &by).unwrap();
    assert_eq!(d.contacten.len(), 16, "every note of both writers");
    // The device's changes form one chain (the writes were serialised): its
    // first envelope in format 1, every later one naming its predecessor, so a
    // peer checks one signature for all of them.
    use regiosync_core::envelope::sealed::{CHAINED_FORMAT, DossierEnvelopes};
    let rows = node.store().changes(&id).unwrap();
    let formats: Vec<u8> = rows
        .iter()
        .map(|r| r.envelope.as_ref().unwrap()[0])
        .collect();
    assert_eq!(formats[0], 1);
    assert!(
        formats[1..].iter().all(|f| *f == CHAINED_FORMAT),
        "{formats:?}"
    );
    let envelopes = DossierEnvelopes::decode(id, rows.iter().map(|r| r.envelope.as_deref()));
    assert_eq!(envelopes.tips().len(), 1, "one chain, one tip");
    assert_eq!(
        envelopes.named().len(),
        rows.len() - 1,
        "no two name the same"
    );
}

#[test]
fn hostile_dossier_messages_are_refused_and_never_stored() {
    use crate::dossiers::NewDossier;
    use regiosync_core::control::Signed;
    use regiosync_core::dossier::access::{Basis, DossierBody, DossierOp};
    use regiosync_core::id::DocId;
    use regiosync_core::sync::{DossierMessage, Request, SignedChange};

    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, mut zeist, mut houten] = dossier_region(tmp.path());
    let by = mentor();
    let id = roc
        .create_dossier(
            &NewDossier {
                woongemeente: party("gemeente-zeist"),
                basis: Basis::WettelijkeTaak,
                purpose: "Jeugdwet".into(),
                fields: vec![(regiosync_core::dossier::DossierField::Naam, "Sanne".into())],
            },
            &by,
        )
        .unwrap();
    let roc_id = roc.info().node_id;
    let ops = roc.store().dossier_ops(&id).unwrap();
    let changes: Vec<SignedChange> = roc
        .store()
        .changes(&id)
        .unwrap()
        .into_iter()
        .map(|r| SignedChange {
            change: r.bytes,
            envelope: r.envelope.unwrap(),
        })
        .collect();
    let frame = |dossier: DocId, ops: Vec<Vec<u8>>, changes: Vec<SignedChange>| {
        Request::Dossiers {
            dossiers: vec![DossierMessage {
                dossier,
                have: vec![],
                ops,
                changes,
                withheld: false,
            }],
        }
        .encode()
    };
    let held = |n: &Node| {
        let all = n.store().dossier_items().unwrap().get(&id).cloned();
        // Read alone (as sync answers a batch), the dossier's items are its entry in
        // the full scan.
        let sorted = |i: Option<regiosync_store::DossierItems>| {
            i.map(|mut i| {
                i.ops.sort();
                i.changes.sort();
                i
            })
        };
        assert_eq!(
            sorted(n.store().dossier_items_of(&id).unwrap()),
            sorted(all.clone())
        );
        all.map_or(0, |i| i.ops.len() + i.changes.len())
    };

    // Tampered ciphertext: the sender is cut off, nothing of the change is stored.
    let mut tampered = changes.clone();
    let last = tampered[0].change.len() - 1;
    tampered[0].change[last] ^= 1;
    let a = zeist.respond(
        &crate::sync::SessionMemory::default(),
        &roc_id,
        &frame(id, ops.clone(), tampered),
    );
    assert!(a.misbehaved.is_some());
    assert!(zeist.store().changes(&id).unwrap().is_empty());
    // A forged op signature: refused, counted against the sender.
    let mut forged = ops.clone();
    let end = forged[0].len() - 1;
    forged[0][end] ^= 1;
    let a = zeist.respond(
        &crate::sync::SessionMemory::default(),
        &roc_id,
        &frame(id, forged, vec![]),
    );
    assert!(a.misbehaved.is_some());
    // Another dossier's content filed under this id.
    let other = DocId::random().unwrap();
    let a = zeist.respond(
        &crate::sync::SessionMemory::default(),
        &roc_id,
        &frame(other, ops.clone(), changes.clone()),
    );
    assert!(a.misbehaved.is_some());
    assert!(zeist.store().dossier_ops(&other).unwrap().is_empty());
    // A party without access is sent the dossier: it stores nothing (not an attack by
    // the sender necessarily: its view of the access may be ahead).
    let a = houten.respond(
        &crate::sync::SessionMemory::default(),
        &roc_id,
        &frame(id, ops.clone(), changes.clone()),
    );
    assert!(a.misbehaved.is_none());
    assert_eq!(held(&houten), 0);
    assert!(houten.store().document(&id).unwrap().is_none());

    // The honest message is taken in whole, and reads.
    let a = zeist.respond(
        &crate::sync::SessionMemory::default(),
        &roc_id,
        &frame(id, ops.clone(), changes.clone()),
    );
    assert!(a.misbehaved.is_none(), "{:?}", a.misbehaved);
    assert_eq!(held(&zeist), held(&roc));
    assert_eq!(zeist.read_dossier(&id, &by).unwrap().naam, "Sanne");

    // An erasure by a party that is neither the owner nor an admin changes nothing.
    let state = roc.region_state().unwrap();
    let open = ops
        .iter()
        .map(|b| Signed::<DossierOp>::decode(b).unwrap())
        .find(|o| matches!(o.payload().body, DossierBody::Open { .. }))
        .unwrap();
    let houten_id = houten.info().node_id;
    let erase = Signed::sign(
        DossierOp {
            region: state.region,
            dossier: id,
            parents: vec![open.hash()],
            author: houten_id,
            time: 1_800_000_000,
            body: DossierBody::Erase,
        },
        houten.signing_key_for_tests().unwrap(),
    )
    .unwrap();
    zeist.respond(
        &crate::sync::SessionMemory::default(),
        &houten_id,
        &frame(id, vec![erase.encode()], vec![]),
    );
    assert!(zeist.store().dossier_erased(&id).unwrap().is_none());
    assert_eq!(zeist.read_dossier(&id, &by).unwrap().naam, "Sanne");
    // The owner's erasure is final: the data is gone and comes back from no one.
    let erase = Signed::sign(
        DossierOp {
            region: state.region,
            dossier: id,
            parents: vec![open.hash()],
            author: roc_id,
            time: 1_800_000_000,
            body: DossierBody::Erase,
        },
        roc.signing_key_for_tests().unwrap(),
    )
    .unwrap();
    zeist.respond(
        &crate::sync::SessionMemory::default(),
        &roc_id,
        &frame(id, vec![erase.encode()], vec![]),
    );
    assert!(zeist.store().dossier_erased(&id).unwrap().is_some());
    assert_eq!(held(&zeist), 0);
    zeist.respond(
        &crate::sync::SessionMemory::default(),
        &roc_id,
        &frame(id, ops, changes),
    );
    assert_eq!(held(&zeist), 0, "an erased dossier was taken in again");
    assert!(zeist.read_dossier(&id, &by).is_err());
}

/// Answers sync requests from `from` with `responder`, in memory.
struct Direct {
    responder: std::sync::Mutex<Node>,
    from: regiosync_core::id::NodeId,
}

impl crate::sync::Transport for Direct {
    async fn request(
        &self,
        _peer: regiosync_core::id::NodeId,
        frame: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let mut n = self.responder.lock().map_err(|e| e.to_string())?;
        Ok(
            n.respond(&crate::sync::SessionMemory::default(), &self.from, &frame)
                .frame,
        )
    }
}

#[test]
fn a_revoked_party_that_wrote_offline_is_refused_once_per_session() {
    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, zeist, _houten] = dossier_region(tmp.path());
    let by = test_reader();
    let id = zeist_dossier(&mut roc, &by);
    let (roc_id, zeist_id) = (roc.info().node_id, zeist.info().node_id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let held = |n: &Node| {
        let all = n.store().dossier_items().unwrap().get(&id).cloned();
        // Read alone (as sync answers a batch), the dossier's items are its entry in
        // the full scan.
        let sorted = |i: Option<regiosync_store::DossierItems>| {
            i.map(|mut i| {
                i.ops.sort();
                i.changes.sort();
                i
            })
        };
        assert_eq!(
            sorted(n.store().dossier_items_of(&id).unwrap()),
            sorted(all.clone())
        );
        all.map_or(0, |i| i.ops.len() + i.changes.len())
    };
    // Zeist catches up.
    let zeist = tokio::sync::Mutex::new(zeist);
    let net = Direct {
        responder: std::sync::Mutex::new(roc),
        from: zeist_id,
    };
    rt.block_on(crate::sync::sync_with(
        &zeist,
        &crate::sync::SessionMemory::default(),
        &net,
        roc_id,
    ))
    .unwrap();
    let mut zeist = zeist.into_inner();
    let mut roc = net.responder.into_inner().unwrap();
    assert_eq!(held(&zeist), held(&roc));

    // The ROC revokes Zeist; Zeist, not knowing, writes a note offline.
    roc.revoke_dossier(&id, party("gemeente-zeist"), "verhuisd", &by)
        .unwrap();
    zeist
        .add_dossier_note(&id, "Geschreven na de intrekking.", &by)
        .unwrap();
    let roc_before = held(&roc);
    let zeist_before = held(&zeist);
    let zeist = tokio::sync::Mutex::new(zeist);
    let net = Direct {
        responder: std::sync::Mutex::new(roc),
        from: zeist_id,
    };
    let report = rt
        .block_on(crate::sync::sync_with(
            &zeist,
            &crate::sync::SessionMemory::default(),
            &net,
            roc_id,
        ))
        .unwrap();
    // The ROC answers `withheld` (Zeist held the dossier before): the note is not
    // even sent, the session ends in a few round trips (not MAX_ROUNDS of
    // resending), and Zeist is told nothing new.
    assert!(report.round_trips <= 8, "{report:?}");
    assert_eq!(report.moved.dossier_items_sent, 0, "{report:?}");
    let roc = net.responder.into_inner().unwrap();
    let zeist = zeist.into_inner();
    assert_eq!(
        held(&roc),
        roc_before,
        "the ROC stored the revoked party's note"
    );
    assert_eq!(
        held(&zeist),
        zeist_before,
        "Zeist was sent something after its revocation"
    );
}

#[test]
fn a_bundle_of_ops_from_non_members_is_refused_and_not_stored() {
    use crate::region::MAX_PENDING_OPS;
    use regiosync_core::control::{Op, OpBody, OpHash, SignedOp, decode_bundle, encode_bundle};
    let (_d, mut node) = new_node();
    let region = node.region().unwrap().unwrap();
    let genesis = node.region_state().unwrap().heads;
    let log = decode_bundle(&node.export().unwrap()).unwrap();
    let me = node.info().node_id;
    let key = node.signing_key_for_tests().unwrap().clone();
    let sign = |key: &regiosync_core::identity::SigningKey,
                author: regiosync_core::id::NodeId,
                parents: Vec<OpHash>,
                body: OpBody| {
        SignedOp::sign(
            Op {
                region: Some(region),
                parents,
                author,
                time: 1_800_000_000,
                body,
            },
            key,
        )
        .unwrap()
    };
    let addrs = |i: usize| OpBody::SetAddrs {
        addrs: vec![format!("/ip4/10.0.0.1/tcp/{i}")],
    };

    // A device that was never added signs a chain on the region's heads.
    let outsider = NodeSecret::generate().unwrap();
    let mut hostile = Vec::new();
    let mut parents = genesis.clone();
    for i in 0..2_000 {
        let op = sign(
            outsider.signing_key(),
            outsider.node_id(),
            parents,
            addrs(i),
        );
        parents = vec![op.hash()];
        hostile.push(op);
    }
    // A device added later signs an op that claims to come before its addition.
    let late = NodeSecret::generate().unwrap();
    let add = sign(
        &key,
        me,
        genesis.clone(),
        OpBody::AddDevice {
            party: party("roc-midden"),
            device: late.node_id(),
            age_recipient: late.age_recipient().to_string(),
        },
    );
    let backdated = sign(
        late.signing_key(),
        late.node_id(),
        genesis.clone(),
        addrs(1),
    );
    // A member's ops waiting for a parent nobody has: held up to the cap.
    let waiting: Vec<SignedOp> = (0..MAX_PENDING_OPS + 50)
        .map(|i| sign(&key, me, vec![OpHash([7; 32])], addrs(i)))
        .collect();
    let bundle = encode_bundle(
        log.iter()
            .chain(&hostile)
            .chain([&add, &backdated])
            .chain(&waiting),
    );
    let before = node.store().ops().unwrap().len();
    let imported = node.import(&bundle).unwrap();
    assert_eq!(imported.refused_ops, 2_000 + 1 + 50);
    assert_eq!(imported.new_ops, 1 + MAX_PENDING_OPS);
    assert_eq!(
        node.store().ops().unwrap().len(),
        before + 1 + MAX_PENDING_OPS
    );
    // Nothing more of them is taken in later: the cap counts what is held.
    let again = node.import(&bundle).unwrap();
    assert_eq!((again.new_ops, again.refused_ops), (0, 2_051));
    let state = node.region_state().unwrap();
    assert!(!state.devices.contains_key(&outsider.node_id()));
    assert!(state.active_device(&late.node_id()).is_some());
    assert!(state.devices[&late.node_id()].addrs.is_empty());

    // A member's op that names a refused op as its parent is stored, and that parent
    // with it (the fold needs it to place the member's op).
    let heads = node.region_state().unwrap().heads;
    let on_top = sign(&key, me, vec![hostile[0].hash()], addrs(9_999));
    let bundle = encode_bundle(log.iter().chain([&hostile[0], &on_top]));
    let imported = node.import(&bundle).unwrap();
    assert_eq!((imported.new_ops, imported.refused_ops), (2, 0));
    let state = node.region_state().unwrap();
    assert_eq!(state.devices[&me].addrs, vec!["/ip4/10.0.0.1/tcp/9999"]);
    assert_ne!(state.heads, heads);
}

/// Issue 14, the hostile suite: a former dossier relay (its designation ended) and a
/// party without access hold a dossier's authentic ops and sealed changes (copied
/// while they were allowed to, or from a stolen disk) and offer them to a node of a
/// party with access that lacks them. Neither is taken in: dossier items come only
/// from a designated relay or a party in force; from a relay still designated they
/// are.
#[test]
fn a_former_relay_and_a_party_without_access_cannot_bring_a_dossier() {
    use crate::dossiers::NewDossier;
    use regiosync_core::dossier::access::Basis;
    use regiosync_core::sync::{DossierMessage, Request, SignedChange};

    let tmp = tempfile::tempdir().unwrap();
    let [mut kern, mut roc, mut zeist, houten] = dossier_region(tmp.path());
    let by = mentor();
    let id = roc
        .create_dossier(
            &NewDossier {
                woongemeente: party("gemeente-zeist"),
                basis: Basis::WettelijkeTaak,
                purpose: "Jeugdwet".into(),
                fields: vec![(regiosync_core::dossier::DossierField::Naam, "Sanne".into())],
            },
            &by,
        )
        .unwrap();
    let frame = {
        let ops = roc.store().dossier_ops(&id).unwrap();
        let changes: Vec<SignedChange> = roc
            .store()
            .changes(&id)
            .unwrap()
            .into_iter()
            .map(|r| SignedChange {
                change: r.bytes,
                envelope: r.envelope.unwrap(),
            })
            .collect();
        Request::Dossiers {
            dossiers: vec![DossierMessage {
                dossier: id,
                have: vec![],
                ops,
                changes,
                withheld: false,
            }],
        }
        .encode()
    };
    let houten_id = houten.info().node_id;
    let share = |kern: &Node, to: &mut [&mut Node]| {
        let log = kern.export().unwrap();
        for n in to.iter_mut() {
            n.import(&log).unwrap();
        }
    };
    // Houten (no access) offers the dossier to Zeist: refused.
    let a = zeist.respond(&crate::sync::SessionMemory::default(), &houten_id, &frame);
    assert_eq!(a.stored, 0);
    assert!(!zeist.store().dossier_items().unwrap().contains_key(&id));
    // Houten designated a relay: taken in. (Zeist forgets it again for the next step.)
    kern.set_dossier_relay(houten_id, true).unwrap();
    share(&kern, &mut [&mut zeist]);
    let mut fresh = {
        let dir = tmp.path().join("zeist-copy");
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(zeist.dir()).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
            }
        }
        Node::open(&dir).unwrap()
    };
    let a = zeist.respond(&crate::sync::SessionMemory::default(), &houten_id, &frame);
    assert!(a.stored > 0, "a designated relay's items are taken in");
    // Its designation ends: the same offer to a node that lacks the dossier is refused.
    kern.set_dossier_relay(houten_id, false).unwrap();
    share(&kern, &mut [&mut fresh]);
    let a = fresh.respond(&crate::sync::SessionMemory::default(), &houten_id, &frame);
    assert_eq!(a.stored, 0, "a former relay brought the dossier");
    assert!(!fresh.store().dossier_items().unwrap().contains_key(&id));
}

#[test]
fn a_dossiers_woongemeente_is_a_municipality_of_the_region_and_moves_only_by_grants() {
    use crate::dossiers::NewDossier;
    use regiosync_core::dossier::DossierField;
    use regiosync_core::dossier::access::Basis;
    let tmp = tempfile::tempdir().unwrap();
    let [_, mut roc, ..] = dossier_region(tmp.path());
    let by = mentor();
    let new = |w: &str| NewDossier {
        woongemeente: party(w),
        basis: Basis::WettelijkeTaak,
        purpose: "begeleiding".into(),
        fields: vec![],
    };
    for (wrong, says) in [
        ("roc-midden", "not a municipality"),
        ("gemeente-amersfoort", "not a party of the region"),
    ] {
        let e = roc
            .create_dossier(&new(wrong), &by)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says) && e.contains("gemeente-zeist"), "{e}");
    }
    assert!(roc.dossier_ids().unwrap().is_empty(), "nothing was created");
    let id = roc.create_dossier(&new("gemeente-zeist"), &by).unwrap();
    let e = roc
        .edit_dossier(&id, DossierField::Woongemeente, "gemeente-houten", &by)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dossier grant") && e.contains("dossier revoke"),
        "{e}"
    );
}

#[test]
fn an_agreement_owner_is_a_party_of_the_region() {
    let tmp = tempfile::tempdir().unwrap();
    let [mut kern, ..] = dossier_region(tmp.path());
    let doc = kern.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    let input = |owner: &str| AgreementInput {
        title: "Warme overdracht".into(),
        owner: party(owner),
        deadline: None,
    };
    let e = kern
        .add_agreement(&doc, &input("gemeente-zeits"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gemeente-zeits is not a party") && e.contains("gemeente-zeist"),
        "{e}"
    );
    assert!(kern.plan(&doc).unwrap().agreements.is_empty());
    let a = kern.add_agreement(&doc, &input("gemeente-zeist")).unwrap();
    let e = kern
        .update_agreement(
            &doc,
            &a.value,
            &regiosync_core::plan::AgreementUpdate {
                owner: Some(party("roc-midde")),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("roc-midde is not a party"), "{e}");
}

#[test]
fn a_grant_that_ended_before_it_was_given_is_refused() {
    use crate::dossiers::NewDossier;
    use regiosync_core::dossier::access::Basis;
    let tmp = tempfile::tempdir().unwrap();
    let [_, mut roc, ..] = dossier_region(tmp.path());
    let by = mentor();
    let id = roc
        .create_dossier(
            &NewDossier {
                woongemeente: party("gemeente-zeist"),
                basis: Basis::WettelijkeTaak,
                purpose: "begeleiding".into(),
                fields: vec![],
            },
            &by,
        )
        .unwrap();
    let past = time::macros::date!(2020 - 01 - 31);
    let e = roc
        .grant_dossier(
            &id,
            party("gemeente-houten"),
            Basis::Toestemming,
            "overdracht",
            Some(past),
            &by,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("2020-01-31 is in the past"), "{e}");
    assert!(
        !roc.dossier_access(&id)
            .unwrap()
            .grants
            .contains_key(&party("gemeente-houten"))
    );
    let later = time::OffsetDateTime::now_utc().date() + time::Duration::days(30);
    roc.grant_dossier(
        &id,
        party("gemeente-houten"),
        Basis::Toestemming,
        "overdracht",
        Some(later),
        &by,
    )
    .unwrap();
    let g = &roc.dossier_access(&id).unwrap().grants[&party("gemeente-houten")];
    assert_eq!(g.until, Some(later));
    assert_eq!(g.basis.to_string(), "toestemming");
}

#[test]
fn attack_a_member_cannot_make_a_device_believe_it_was_removed() {
    use regiosync_core::control::{Op, OpBody, SignedOp};
    let tmp = tempfile::tempdir().unwrap();
    let [mut kern, mut roc, mut zeist, _] = dossier_region(tmp.path());
    let region = zeist.region().unwrap().unwrap();
    let heads = zeist.region_state().unwrap().heads;
    let zeist_id = zeist.info().node_id;
    let removal_by = |n: &mut Node| {
        let author = n.info().node_id;
        SignedOp::sign(
            Op {
                region: Some(region),
                parents: heads.clone(),
                author,
                time: 1_800_000_000,
                body: OpBody::RemoveDevice {
                    device: zeist_id,
                    cutoffs: vec![],
                },
            },
            n.signing_key_for_tests().unwrap(),
        )
        .unwrap()
        .encode()
    };
    // The ROC is a member but no admin: its "removal" is not believed, nor is junk.
    let forged = removal_by(&mut roc);
    assert_eq!(
        zeist.take_removal(&[forged, b"junk".to_vec()]).unwrap(),
        None
    );
    assert_eq!(zeist.removal().unwrap(), None);
    // The kerngemeente's admin device: believed and kept, with when and by whom.
    let real = removal_by(&mut kern);
    let removal = zeist.take_removal(&[real]).unwrap().unwrap();
    assert_eq!(removal.by, "gemeente-utrecht");
    assert_eq!(removal.at, 1_800_000_000);
    assert_eq!(zeist.removal().unwrap(), Some(removal));
}

#[test]
fn a_device_believes_its_removal_by_a_device_of_its_own_party_but_not_a_party_removal() {
    use regiosync_core::control::{Op, OpBody, SignedOp};
    let tmp = tempfile::tempdir().unwrap();
    let [mut kern, mut roc, _, _] = dossier_region(tmp.path());
    // A second device of the ROC (no admin party), known to both ROC devices.
    let dir = tmp.path().join("roc-laptop");
    Node::init(&dir, party("roc-midden"), Role::Roc, None).unwrap();
    let mut laptop = Node::open(&dir).unwrap();
    let code = roc
        .invite(party("roc-midden"), Role::Roc, false, 600)
        .unwrap();
    let (_, bundle) = roc
        .accept(&laptop.join_request(&code.encode()).unwrap())
        .unwrap();
    laptop.import(&bundle).unwrap();
    let log = roc.export().unwrap();
    laptop.import(&log).unwrap();
    kern.import(&log).unwrap();
    let region = laptop.region().unwrap().unwrap();
    let heads = laptop.region_state().unwrap().heads;
    let laptop_id = laptop.info().node_id;
    let signed = |n: &mut Node, body: OpBody| {
        let author = n.info().node_id;
        SignedOp::sign(
            Op {
                region: Some(region),
                parents: heads.clone(),
                author,
                time: 1_800_000_000,
                body,
            },
            n.signing_key_for_tests().unwrap(),
        )
        .unwrap()
        .encode()
    };
    // Only an admin may remove a party: a party removal by a device of the same
    // party is not believed.
    let party_removal = signed(
        &mut roc,
        OpBody::RemoveParty {
            party: party("roc-midden"),
            cutoffs: vec![],
        },
    );
    assert_eq!(laptop.take_removal(&[party_removal]).unwrap(), None);
    assert_eq!(laptop.removal().unwrap(), None);
    // The desktop may remove a device of its own party (AUTH.md): believed.
    let own = signed(
        &mut roc,
        OpBody::RemoveDevice {
            device: laptop_id,
            cutoffs: vec![],
        },
    );
    let removal = laptop.take_removal(&[own]).unwrap().unwrap();
    assert_eq!(removal.by, "roc-midden");
    assert_eq!(laptop.removal().unwrap(), Some(removal));
}

/// An invite made through the running node's own handle (the web app) is announced
/// on its change channel, so that the node admits the join identity to its gate at
/// once (a served handle wakes nobody: the channel is how the node hears of it).
#[test]
fn an_invite_is_announced_to_the_running_node() {
    use crate::events::{ChangeKind, Source};
    let (_d, mut node) = new_node();
    node.serve();
    let mut rx = node.events().subscribe();
    node.invite(party("roc-midden"), Role::Roc, false, 3600)
        .unwrap();
    let e = rx.try_recv().expect("the invite was announced");
    assert_eq!(
        (e.doc, e.kind, e.source),
        (None, ChangeKind::Region, Source::Local)
    );
}

#[test]
fn every_committed_plan_change_is_announced_once_with_its_party_and_kind() {
    use crate::events::{ChangeEvent, ChangeKind, Source};
    use tokio::sync::broadcast::error::TryRecvError;

    let drain = |rx: &mut tokio::sync::broadcast::Receiver<ChangeEvent>| {
        let mut out = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(e) => out.push(e),
                Err(TryRecvError::Empty) => return out,
                Err(e) => panic!("{e}"),
            }
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let [mut kern, roc, _zeist, _houten] = dossier_region(tmp.path());
    let (kern_id, roc_id) = (kern.info().node_id, roc.info().node_id);
    let mut here = kern.events().subscribe();
    let doc = kern
        .create_plan(PlanKind::Jeugdplan, "Jeugdplan 2027")
        .unwrap();
    kern.set_section(&doc, "Inleiding", "Samen.").unwrap();
    // Nothing changed: nothing is announced.
    kern.set_section(&doc, "Inleiding", "Samen.").unwrap();
    kern.add_agreement(
        &doc,
        &AgreementInput {
            title: "Overdracht".into(),
            owner: party("roc-midden"),
            deadline: None,
        },
    )
    .unwrap();
    kern.add_comment(&doc, "Inleiding", "Samen", "Met wie?")
        .unwrap();
    kern.approve(&doc, None).unwrap();
    // A refused edit announces nothing.
    assert!(kern.set_section(&doc, "", "x").is_err());
    let got = drain(&mut here);
    let kinds: Vec<_> = got.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Created,
            ChangeKind::Section,
            ChangeKind::Agreement,
            ChangeKind::Comment,
            ChangeKind::Approval
        ]
    );
    for e in &got {
        assert_eq!(e.doc, Some(doc));
        assert_eq!(e.source, Source::Local);
        assert_eq!(e.device, Some(kern_id));
        assert_eq!(e.party, Some(party("gemeente-utrecht")));
    }

    // The ROC syncs with the founder (the ROC asks, the founder answers): each side
    // announces what it stored, as coming from the other, with the author's party.
    let mut there = roc.events().subscribe();
    let roc = tokio::sync::Mutex::new(roc);
    let net = Direct {
        responder: std::sync::Mutex::new(kern),
        from: roc_id,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(crate::sync::sync_with(
        &roc,
        &crate::sync::SessionMemory::default(),
        &net,
        kern_id,
    ))
    .unwrap();
    let got = drain(&mut there);
    assert!(
        got.iter().all(|e| e.source == Source::Sync(kern_id)),
        "{got:?}"
    );
    let plan_events: Vec<_> = got.iter().filter(|e| e.doc == Some(doc)).collect();
    for kind in [
        ChangeKind::Created,
        ChangeKind::Section,
        ChangeKind::Agreement,
        ChangeKind::Comment,
        ChangeKind::Approval,
    ] {
        assert!(
            plan_events.iter().any(|e| e.kind == kind
                && e.party == Some(party("gemeente-utrecht"))
                && e.device == Some(kern_id)),
            "{kind:?} in {plan_events:?}"
        );
    }
    // The ROC edits; the founder, answering the ROC's next session, announces it.
    let mut roc = roc.into_inner();
    let mut kern = net.responder.into_inner().unwrap();
    let mut at_kern = kern.events().subscribe();
    roc.set_section(&doc, "Inleiding", "Samen met het mbo.")
        .unwrap();
    let roc = tokio::sync::Mutex::new(roc);
    let net = Direct {
        responder: std::sync::Mutex::new(kern),
        from: roc_id,
    };
    rt.block_on(crate::sync::sync_with(
        &roc,
        &crate::sync::SessionMemory::default(),
        &net,
        kern_id,
    ))
    .unwrap();
    let got = drain(&mut at_kern);
    assert_eq!(
        got,
        [ChangeEvent {
            doc: Some(doc),
            party: Some(party("roc-midden")),
            device: Some(roc_id),
            kind: ChangeKind::Section,
            source: Source::Sync(roc_id),
        }]
    );
    // An ACL change is announced for its plan; a region change without one.
    kern = net.responder.into_inner().unwrap();
    kern.set_acl(&doc, None, Some(vec![party("gemeente-utrecht")]))
        .unwrap();
    kern.set_dossier_relay(roc_id, true).unwrap();
    let got = drain(&mut at_kern);
    assert_eq!(
        got.iter().map(|e| (e.doc, e.kind)).collect::<Vec<_>>(),
        [(Some(doc), ChangeKind::Acl), (None, ChangeKind::Region)]
    );
}

/// Runs one session of `requester` with `responder` in memory; returns both.
fn sync_once(requester: Node, responder: Node) -> (Node, Node, crate::sync::SyncReport) {
    let (to, from) = (responder.info().node_id, requester.info().node_id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let requester = tokio::sync::Mutex::new(requester);
    let net = Direct {
        responder: std::sync::Mutex::new(responder),
        from,
    };
    let report = rt
        .block_on(crate::sync::sync_with(
            &requester,
            &crate::sync::SessionMemory::default(),
            &net,
            to,
        ))
        .unwrap();
    (
        requester.into_inner(),
        net.responder.into_inner().unwrap(),
        report,
    )
}

#[test]
fn a_revocation_drops_what_the_revoked_party_wrote_that_the_owner_did_not_keep() {
    use regiosync_core::dossier::access::Basis;

    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, zeist, houten] = dossier_region(tmp.path());
    let by = test_reader();
    let id = zeist_dossier(&mut roc, &by);
    roc.grant_dossier(
        &id,
        party("gemeente-houten"),
        Basis::Toestemming,
        "begeleiding",
        None,
        &by,
    )
    .unwrap();
    let changes = |n: &Node| n.store().changes(&id).unwrap().len();
    // Both gemeenten catch up; Houten writes a note that reaches Zeist, not the ROC.
    let (zeist, roc, _) = sync_once(zeist, roc);
    let (mut houten, roc, _) = sync_once(houten, roc);
    houten
        .add_dossier_note(&id, "Huisbezoek gepland.", &by)
        .unwrap();
    let (zeist, houten, _) = sync_once(zeist, houten);
    assert_eq!(changes(&zeist), changes(&houten));
    // The ROC revokes Houten, keeping what it holds of Houten's (nothing).
    let mut roc = roc;
    roc.revoke_dossier(&id, party("gemeente-houten"), "verhuisd", &by)
        .unwrap();
    let before = changes(&zeist);
    // Zeist learns of the revocation and drops Houten's note, which the ROC refuses.
    let (zeist, roc, _) = sync_once(zeist, roc);
    assert_eq!(changes(&zeist), before - 1, "Houten's note was not dropped");
    assert_eq!(changes(&zeist), changes(&roc));
    // The two are in sync: the next session is one round trip, and nothing is
    // offered again.
    let (zeist, roc, report) = sync_once(zeist, roc);
    assert_eq!(report.round_trips, 1, "{report:?}");
    // Zeist still reads the dossier, without the note.
    let mut zeist = zeist;
    let d = zeist.read_dossier(&id, &by).unwrap();
    assert!(d.contacten.iter().all(|c| c.tekst != "Huisbezoek gepland."));
    drop(roc);
}

#[test]
fn every_dossier_write_here_announces_the_dossier_and_nothing_of_its_content() {
    use crate::events::{ChangeKind, Source};
    use regiosync_core::dossier::access::Basis;

    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, _zeist, _houten] = dossier_region(tmp.path());
    let by = test_reader();
    let mut events = roc.events().subscribe();
    fn drain(
        events: &mut tokio::sync::broadcast::Receiver<crate::events::ChangeEvent>,
        what: &str,
    ) -> Vec<crate::events::ChangeEvent> {
        let mut got = vec![];
        while let Ok(e) = events.try_recv() {
            got.push(e);
        }
        assert!(!got.is_empty(), "{what}: no event");
        got
    }
    let id = zeist_dossier(&mut roc, &by);
    let check = |got: Vec<crate::events::ChangeEvent>| {
        for e in got {
            assert_eq!(e.doc, Some(id));
            assert_eq!(e.kind, ChangeKind::Dossier);
            assert_eq!(e.source, Source::Local);
        }
    };
    check(drain(&mut events, "create"));
    roc.add_dossier_note(&id, "Huisbezoek gepland.", &by)
        .unwrap();
    check(drain(&mut events, "note"));
    roc.grant_dossier(
        &id,
        party("gemeente-houten"),
        Basis::Toestemming,
        "begeleiding",
        None,
        &by,
    )
    .unwrap();
    check(drain(&mut events, "grant"));
    roc.revoke_dossier(&id, party("gemeente-houten"), "verhuisd", &by)
        .unwrap();
    check(drain(&mut events, "revoke"));
    // A read announces nothing.
    roc.read_dossier(&id, &by).unwrap();
    assert!(events.try_recv().is_err());
    roc.erase_dossier(&id, &by).unwrap();
    check(drain(&mut events, "erase"));
}

/// A CLI reader for tests.
fn test_reader() -> crate::dossiers::Reader {
    crate::dossiers::Reader {
        who: regiosync_core::audit::Who::cli("t"),
        purpose: "test".into(),
    }
}

/// Grants Gemeente Houten access to dossier `id` of `roc` (the Leerplichtwet).
fn grant_houten(roc: &mut Node, id: &regiosync_core::id::DocId, by: &crate::dossiers::Reader) {
    roc.grant_dossier(
        id,
        party("gemeente-houten"),
        regiosync_core::dossier::access::Basis::WettelijkeTaak,
        "leerplicht",
        None,
        by,
    )
    .unwrap();
}

/// A dossier opened by `node` (the ROC) for a student living in Zeist.
fn zeist_dossier(node: &mut Node, by: &crate::dossiers::Reader) -> regiosync_core::id::DocId {
    node.create_dossier(
        &crate::dossiers::NewDossier {
            woongemeente: party("gemeente-zeist"),
            basis: regiosync_core::dossier::access::Basis::WettelijkeTaak,
            purpose: "Jeugdwet".into(),
            fields: vec![],
        },
        by,
    )
    .unwrap()
}

/// A peer's bloom filter false positive (it believed this node had change `c1`)
/// leaves a gap: `c2`, built on `c1`, is stored but waits, and the peer keeps
/// offering `c2` alone. The node asks for the gap by hash (`need`), in its opening
/// message and in its answers, and the next session closes it.
#[test]
fn a_stored_change_whose_dependency_never_came_is_asked_for_by_hash() {
    use regiosync_core::sync::{DocMessage, Request, Response, opening_message};

    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, zeist, _houten] = dossier_region(tmp.path());
    let plan = roc.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    roc.set_section(&plan, "Visie", "Eerste versie.").unwrap();
    let (mut zeist, mut roc, _) = sync_once(zeist, roc);
    // Two more changes; Zeist is handed only the second.
    roc.set_section(&plan, "Visie", "Tweede versie.").unwrap();
    roc.set_section(&plan, "Visie", "Derde versie.").unwrap();
    let rows = roc.store().changes(&plan).unwrap();
    let (c1, c2) = (&rows[rows.len() - 2], &rows[rows.len() - 1]);
    zeist
        .store
        .write(|tx| tx.append_change(&plan, c2).map(|_| ()))
        .unwrap();
    assert_eq!(zeist.rejected_changes(&plan).unwrap(), 1, "c2 waits for c1");

    // The ROC offers its heads ([c2]) with a bloom filter of everything: Zeist's
    // answer asks for c1 (not only for c2, which it holds).
    let roc_doc = roc
        .verified(&plan, &roc.control().unwrap().unwrap())
        .unwrap();
    let frame = Request::Docs {
        docs: vec![DocMessage {
            doc: plan,
            sync: opening_message(&roc_doc.doc, &[]),
            changes: vec![],
            need: vec![],
        }],
    }
    .encode();
    let answer = zeist.respond(
        &crate::sync::SessionMemory::default(),
        &roc.info().node_id,
        &frame,
    );
    assert!(answer.misbehaved.is_none());
    let Ok(Response::Docs { docs }) = Response::decode(&answer.frame) else {
        panic!("no Docs answer");
    };
    assert!(docs[0].need.contains(&c1.hash), "{:?}", docs[0].need);

    // In a session, Zeist asks at once, and ends at the ROC's heads.
    let (zeist, roc, _) = sync_once(zeist, roc);
    assert_eq!(zeist.rejected_changes(&plan).unwrap(), 0);
    assert_eq!(
        zeist.plan_heads(&plan).unwrap(),
        roc.plan_heads(&plan).unwrap()
    );
}

/// A push (`push_to`) carries the changes of the document just edited in its
/// first request, after the heads the peer was last known to hold; it lands, and
/// the session ends there with the two holding the same. A second push of the same
/// document (a pass-on) sends nothing: the peer is known to hold it.
#[test]
fn a_push_carries_the_new_changes_in_its_first_request() {
    use regiosync_core::sync::Request;

    /// Records the requests it carries to a `Direct` responder.
    struct Recording {
        inner: Direct,
        sent: std::sync::Mutex<Vec<Vec<u8>>>,
    }
    impl crate::sync::Transport for Recording {
        async fn request(
            &self,
            peer: regiosync_core::id::NodeId,
            frame: Vec<u8>,
        ) -> Result<Vec<u8>, String> {
            self.sent
                .lock()
                .map_err(|e| e.to_string())?
                .push(frame.clone());
            self.inner.request(peer, frame).await
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, zeist, houten] = dossier_region(tmp.path());
    let plan = roc.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    roc.set_section(&plan, "Visie", "Eerste versie.").unwrap();
    let houten = houten.info().node_id;
    // Zeist catches up; the ROC learns what Zeist holds.
    let (zeist, mut roc, _) = sync_once(zeist, roc);
    roc.set_section(&plan, "Visie", "Tweede versie.").unwrap();
    let newest = roc.store().changes(&plan).unwrap().pop().unwrap();

    let (to, from) = (zeist.info().node_id, roc.info().node_id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let roc = tokio::sync::Mutex::new(roc);
    let net = Recording {
        inner: Direct {
            responder: std::sync::Mutex::new(zeist),
            from,
        },
        sent: Default::default(),
    };
    let memory = crate::sync::SessionMemory::default();
    // Pushed to Houten as well: the push says so.
    let report = rt
        .block_on(crate::sync::push_to(
            &roc,
            &memory,
            &net,
            to,
            vec![plan],
            vec![houten],
        ))
        .unwrap();
    let sent = net.sent.into_inner().unwrap();
    let Ok(Request::PushDocs { also, docs }) = Request::decode(&sent[0]) else {
        panic!("the first request is not the pushed document");
    };
    assert_eq!(also, vec![houten]);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].doc, plan);
    let hashes: Vec<[u8; 32]> = docs[0]
        .changes
        .iter()
        .map(|c| {
            automerge::Change::from_bytes(c.change.clone())
                .unwrap()
                .hash()
                .0
        })
        .collect();
    assert_eq!(hashes, vec![newest.hash], "only the change Zeist lacks");
    assert_eq!(report.moved.changes_sent, 1, "{report:?}");
    // The push landed: the session ended there, without the Hello.
    assert_eq!(sent.len(), 1, "{report:?}");
    assert!(report.push_only);
    let zeist = net.inner.responder.into_inner().unwrap();
    assert_eq!(
        zeist.plan_heads(&plan).unwrap(),
        roc.blocking_lock().plan_heads(&plan).unwrap()
    );
    // Pushed again (as a pass-on would): Zeist is known to hold it all now, so
    // nothing is sent at all.
    let net = Recording {
        inner: Direct {
            responder: std::sync::Mutex::new(zeist),
            from,
        },
        sent: Default::default(),
    };
    let again = rt
        .block_on(crate::sync::push_to(
            &roc,
            &memory,
            &net,
            to,
            vec![plan],
            Vec::new(),
        ))
        .unwrap();
    assert_eq!(net.sent.into_inner().unwrap().len(), 0, "{again:?}");
    assert_eq!(again.round_trips, 0);
}

/// A catch-up that writes a snapshot keeps the plan in memory as if loaded from
/// that snapshot (no reload from the store for the next read), and the plan reads
/// the same as from the store afresh.
#[test]
fn a_snapshot_written_after_a_catch_up_keeps_the_plan_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, zeist, _houten] = dossier_region(tmp.path());
    let plan = roc.create_plan(PlanKind::Jeugdplan, "Jeugdplan").unwrap();
    for i in 0..crate::documents::SNAPSHOT_EVERY + 2 {
        roc.set_section(&plan, "Visie", &format!("Versie {i}."))
            .unwrap();
    }
    let (zeist, _roc, report) = sync_once(zeist, roc);
    assert!(report.moved.changes_received > crate::documents::SNAPSHOT_EVERY);
    let folded = zeist.control().unwrap().unwrap();
    let (kept, loads) = zeist.resident_state(&plan);
    let last = zeist.store().last_change(&plan).unwrap();
    assert_eq!(
        kept,
        Some((0, true, last)),
        "kept, counted from the new snapshot"
    );
    assert_eq!(loads, 1, "built once when the changes came, never reloaded");
    let snapshot = zeist.store().load(&plan).unwrap().snapshot;
    assert!(
        snapshot.is_some_and(|s| s.covers_upto == last),
        "the snapshot was written"
    );
    let in_memory = zeist.verified(&plan, &folded).unwrap().doc.get_heads();
    zeist.forget_resident(&plan);
    let from_store = zeist.verified(&plan, &folded).unwrap().doc.get_heads();
    assert_eq!(in_memory, from_store);
}

#[test]
fn the_readers_index_is_kept_and_follows_another_handles_revocation() {
    use crate::dossiers::NewDossier;
    use regiosync_core::dossier::access::Basis;
    use regiosync_core::id::DocId;

    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, zeist, _houten] = dossier_region(tmp.path());
    let by = mentor();
    let new = |woongemeente: &str| NewDossier {
        woongemeente: party(woongemeente),
        basis: Basis::WettelijkeTaak,
        purpose: "Jeugdwet".into(),
        fields: vec![],
    };
    let shared = roc.create_dossier(&new("gemeente-zeist"), &by).unwrap();
    let other = roc.create_dossier(&new("gemeente-houten"), &by).unwrap();
    let state = roc.region_state().unwrap();
    let zeist_id = zeist.info().node_id;
    let memory = SessionMemory::default();
    let names = |n: &Node| -> Vec<DocId> {
        n.shared_dossiers(&memory, &state, &zeist_id)
            .unwrap()
            .into_keys()
            .collect()
    };
    assert_eq!(names(&roc), vec![shared]);
    // The folds were written to the index, under the region's membership digest,
    // and a new handle (a restart) reads them instead of folding.
    let index = roc.store().dossier_readers_index().unwrap();
    assert_eq!(index.len(), 2);
    assert!(index.iter().all(|(_, row)| {
        row.as_ref()
            .is_some_and(|(d, _)| *d == state.access_digest())
    }));
    let dir = roc.dir().to_owned();
    let mut cli = Node::open(&dir).unwrap();
    assert_eq!(names(&cli), vec![shared]);
    // Another process revokes Zeist: its op deletes the row, and the running
    // handle's next summary no longer offers the dossier.
    cli.revoke_dossier(&shared, party("gemeente-zeist"), "verhuisd", &by)
        .unwrap();
    drop(cli);
    assert_eq!(names(&roc), Vec::<DocId>::new());
    let rows = roc.store().dossier_readers_index().unwrap();
    assert!(
        rows.iter().all(|(_, row)| row.is_some()),
        "folded again and kept"
    );
    assert!(rows.iter().any(|(id, _)| *id == other));
}

/// A chain of one author's sealed changes is proven by its newest signature
/// (`authentic`). Zeist garbles the signature of its first change and sends it to
/// Houten together with its second, validly signed change that names it: Houten
/// takes both in. The ROC, which holds Zeist's first change as it was really
/// signed, then revokes Zeist, keeping that change (the second came after). When
/// the revocation reaches Houten and drops the second change, the first no longer
/// has a chain to stand on: Houten drops it too, and takes the genuine copy from
/// the ROC, instead of keeping (and offering every peer) a copy whose signature
/// does not verify.
#[test]
fn a_kept_change_whose_chain_was_dropped_stands_on_its_own_signature() {
    use regiosync_core::sync::{DossierMessage, FrameFormat, Request};

    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, mut zeist, mut houten] = dossier_region(tmp.path());
    let by = mentor();
    let id = zeist_dossier(&mut roc, &by);
    grant_houten(&mut roc, &id, &by);
    let (z, r, _) = sync_once(zeist, roc);
    let (h, r, _) = sync_once(houten, r);
    (zeist, roc, houten) = (z, r, h);
    zeist.add_dossier_note(&id, "Eerste.", &by).unwrap();
    let (z, r, _) = sync_once(zeist, roc);
    (zeist, roc) = (z, r);
    zeist.add_dossier_note(&id, "Tweede.", &by).unwrap();
    let me = zeist.info().node_id;
    let own: Vec<_> = zeist
        .store()
        .changes(&id)
        .unwrap()
        .into_iter()
        .filter(|r| r.actor == me.as_bytes())
        .collect();
    let [first, second] = [&own[own.len() - 2], &own[own.len() - 1]];
    let genuine = first.envelope.clone().unwrap();
    let mut garbled = genuine.clone();
    garbled[1..65].copy_from_slice(&[7; 64]);
    let msg = Request::Dossiers {
        dossiers: vec![DossierMessage {
            dossier: id,
            have: vec![],
            ops: vec![],
            changes: vec![
                regiosync_core::sync::SignedChange {
                    change: first.bytes.clone(),
                    envelope: garbled.clone(),
                },
                regiosync_core::sync::SignedChange {
                    change: second.bytes.clone(),
                    envelope: second.envelope.clone().unwrap(),
                },
            ],
            withheld: false,
        }],
    };
    let answer = houten.respond(
        &crate::sync::SessionMemory::default(),
        &me,
        &msg.encode_as(FrameFormat::Bundled),
    );
    assert!(answer.misbehaved.is_none(), "{:?}", answer.misbehaved);
    let envelope_at_houten = |h: &Node| {
        h.store()
            .changes(&id)
            .unwrap()
            .into_iter()
            .find(|r| r.hash == first.hash)
            .and_then(|r| r.envelope)
    };
    assert_eq!(
        envelope_at_houten(&houten),
        Some(garbled),
        "taken in on the chain"
    );
    // The ROC revokes Zeist; it holds the first change only, which it keeps.
    roc.revoke_dossier(&id, party("gemeente-zeist"), "verhuisd", &by)
        .unwrap();
    let (h, r, _) = sync_once(houten, roc);
    let (h, _r, _) = sync_once(h, r);
    houten = h;
    assert!(
        !houten
            .store()
            .changes(&id)
            .unwrap()
            .iter()
            .any(|r| r.hash == second.hash),
        "the change after the revocation was dropped"
    );
    assert_eq!(
        envelope_at_houten(&houten),
        Some(genuine),
        "the first change as its author signed it"
    );
    assert!(
        houten
            .read_dossier(&id, &by)
            .unwrap()
            .contacten
            .iter()
            .any(|c| c.tekst == "Eerste."),
        "the kept note is still read"
    );
}

/// The access-log ops of a received message are decoded as a batch: an author's
/// op vouches for its own earlier ops that it names as parents. Zeist makes up a
/// grant "by" the ROC (with no valid signature) and names it as the parent of its
/// own, validly signed op: the made-up grant is refused as a forgery and never
/// stored.
#[test]
fn a_dossier_op_made_up_in_the_owners_name_is_not_vouched_for_by_another_party() {
    use regiosync_core::control::Signed;
    use regiosync_core::dossier::access::{Basis, DossierBody, DossierOp};
    use regiosync_core::sync::{DossierMessage, FrameFormat, Request};

    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, zeist, _houten] = dossier_region(tmp.path());
    let by = mentor();
    let id = zeist_dossier(&mut roc, &by);
    let (mut zeist, mut roc, _) = sync_once(zeist, roc);
    let region = roc.region().unwrap().unwrap();
    let heads: Vec<_> = roc
        .access_log(&id)
        .unwrap()
        .iter()
        .map(Signed::hash)
        .collect();
    let grant = DossierOp {
        region,
        dossier: id,
        parents: heads,
        author: roc.info().node_id,
        time: 1_800_000_000,
        body: DossierBody::Grant {
            party: party("gemeente-houten"),
            basis: Basis::Toestemming,
            purpose: "zomaar".into(),
            until: None,
        },
    };
    let made_up = Signed::sign(grant, roc.signing_key_for_tests().unwrap()).unwrap();
    let mut made_up_wire = made_up.encode();
    made_up_wire[1..65].copy_from_slice(&[7; 64]);
    let own = Signed::sign(
        DossierOp {
            region,
            dossier: id,
            parents: vec![made_up.hash()],
            author: zeist.info().node_id,
            time: 1_800_000_000,
            body: DossierBody::Grant {
                party: party("gemeente-houten"),
                basis: Basis::Toestemming,
                purpose: "ook zomaar".into(),
                until: None,
            },
        },
        zeist.signing_key_for_tests().unwrap(),
    )
    .unwrap();
    let msg = Request::Dossiers {
        dossiers: vec![DossierMessage {
            dossier: id,
            have: vec![],
            ops: vec![made_up_wire, own.encode()],
            changes: vec![],
            withheld: false,
        }],
    };
    let before = roc.access_log(&id).unwrap().len();
    let answer = roc.respond(
        &crate::sync::SessionMemory::default(),
        &zeist.info().node_id,
        &msg.encode_as(FrameFormat::Bundled),
    );
    assert!(
        answer.misbehaved.is_some(),
        "the made-up op was not taken for a forgery"
    );
    let log = roc.access_log(&id).unwrap();
    assert!(
        !log.iter().any(|o| o.hash() == made_up.hash()),
        "the made-up grant was stored"
    );
    // Zeist's own op is judged on its signature (and refused by the rules: it is
    // not the owner, and its parent is unknown here), so nothing was added.
    assert_eq!(log.len(), before);
}

/// A reader catching up from another reader gets the dossier's chained changes in a
/// bundle (frame format 3) and stores exactly the sealed bytes and envelopes their
/// author wrote; a party without access gets no bundle, and a request in format 2
/// (a `/3` peer) gets only the change a `/3` build reads.
#[test]
fn a_reader_catches_up_in_a_bundle_and_holds_what_the_author_signed() {
    use regiosync_core::sync::{DossierMessage, FrameFormat, Request, Response};

    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, zeist, houten] = dossier_region(tmp.path());
    let by = mentor();
    let id = zeist_dossier(&mut roc, &by);
    for i in 0..8 {
        roc.add_dossier_note(&id, &format!("Huisbezoek {i}: verzuim besproken."), &by)
            .unwrap();
    }
    // First Zeist gets the access log (and its keys), as a session's first round.
    let (zeist, roc, _) = sync_once(zeist, roc);
    let (mut zeist, mut roc) = (zeist, roc);
    let rows = |n: &Node| {
        let mut r: Vec<_> = n
            .store()
            .changes(&id)
            .unwrap()
            .into_iter()
            .map(|r| (r.hash, r.bytes, r.envelope))
            .collect();
        r.sort();
        r
    };
    assert_eq!(rows(&zeist), rows(&roc));
    assert!(
        zeist
            .read_dossier(&id, &by)
            .unwrap()
            .contacten
            .iter()
            .any(|c| c.tekst.contains("Huisbezoek 7"))
    );
    // What a device of Zeist that holds only the access log is answered.
    let ask = |format: FrameFormat, n: &mut Node, from: &Node| {
        let log = from
            .store()
            .dossier_items()
            .unwrap()
            .get(&id)
            .map(|i| i.ops.clone())
            .unwrap_or_default();
        let req = Request::Dossiers {
            dossiers: vec![DossierMessage {
                dossier: id,
                have: log,
                ops: vec![],
                changes: vec![],
                withheld: false,
            }],
        };
        let me = from.info().node_id;
        let answer = n.respond(
            &crate::sync::SessionMemory::default(),
            &me,
            &req.encode_as(format),
        );
        assert!(answer.misbehaved.is_none());
        answer.frame
    };
    let bundled = ask(FrameFormat::Bundled, &mut roc, &zeist);
    let (resp, bundles) = Response::decode_bundled(&bundled).unwrap();
    let Response::Dossiers { dossiers } = resp else {
        panic!("not a Dossiers answer")
    };
    // The first change (unchained, seal format 1) alone; the eight notes bundled.
    assert_eq!(bundles.len(), 1);
    assert_eq!(bundles[0].len(), 8);
    assert_eq!(dossiers[0].changes.len(), 1);
    let compact = ask(FrameFormat::Compact, &mut roc, &zeist);
    let (resp, none) = Response::decode_bundled(&compact).unwrap();
    assert!(none.is_empty());
    let Response::Dossiers { dossiers } = resp else {
        panic!("not a Dossiers answer")
    };
    // A `/3` peer (compact frames) gets only the change sealed in format 1: a `/3`
    // build cannot read format 2.
    assert_eq!(dossiers[0].changes.len(), 1);
    assert_eq!(dossiers[0].changes[0].change[0], 1);
    // The bundled answer, access log and envelopes included, is smaller than the
    // sealed changes alone.
    let sealed: usize = rows(&roc).iter().map(|(_, b, _)| b.len()).sum();
    assert!(bundled.len() < sealed, "{} vs {sealed}", bundled.len());
    // Zeist answers the ROC in bundles too; Houten, without access, gets nothing.
    let from_zeist = ask(FrameFormat::Bundled, &mut zeist, &roc);
    assert_eq!(Response::decode_bundled(&from_zeist).unwrap().1.len(), 1);
    let to_houten = ask(FrameFormat::Bundled, &mut roc, &houten);
    let (resp, none) = Response::decode_bundled(&to_houten).unwrap();
    assert!(none.is_empty());
    if let Response::Dossiers { dossiers } = resp {
        assert!(dossiers.iter().all(|d| d.changes.is_empty()));
    }
}

/// A refusal (`withheld`) can reach a node after the grant that ended it (a late
/// answer of the peer's older view): once the peer sends the dossier without
/// refusing it, the node offers the dossier to that peer again, instead of leaving
/// it out of its summary for that peer until it restarts (the simulation's seed
/// 1018 never converged).
#[test]
fn a_late_refusal_is_forgotten_once_the_peer_shares_the_dossier() {
    use regiosync_core::sync::{DossierMessage, FrameFormat, Request};

    let tmp = tempfile::tempdir().unwrap();
    let [_kern, mut roc, zeist, houten] = dossier_region(tmp.path());
    let by = mentor();
    let id = zeist_dossier(&mut roc, &by);
    grant_houten(&mut roc, &id, &by);
    let (zeist, roc, _) = sync_once(zeist, roc);
    let (mut houten, _roc, _) = sync_once(houten, roc);
    let zeist_id = zeist.info().node_id;
    let memory = crate::sync::SessionMemory::default();
    // Houten took an old refusal of Zeist's to heart.
    memory.lock().withhold(zeist_id, id);
    let shared = |h: &Node, m: &crate::sync::SessionMemory| {
        h.shared_dossiers(m, &h.region_state().unwrap(), &zeist_id)
            .unwrap()
            .iter()
            .any(|(d, _)| *d == id)
    };
    assert!(!shared(&houten, &memory));
    // Zeist sends the dossier, not refusing it.
    let have = zeist
        .store()
        .dossier_items()
        .unwrap()
        .get(&id)
        .map(|i| [i.ops.clone(), i.changes.clone()].concat())
        .unwrap();
    let msg = Request::Dossiers {
        dossiers: vec![DossierMessage {
            dossier: id,
            have,
            ops: vec![],
            changes: vec![],
            withheld: false,
        }],
    };
    let answer = houten.respond(&memory, &zeist_id, &msg.encode_as(FrameFormat::Bundled));
    assert!(answer.misbehaved.is_none());
    assert!(shared(&houten, &memory));
}
