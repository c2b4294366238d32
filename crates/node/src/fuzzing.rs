//! Support for fuzzing the sync responder (`fuzz/fuzz_targets/respond.rs`) and for
//! replaying its corpus in `cargo test` (`tests/fuzz_corpus.rs`): one harness, so
//! both check the same thing. Not part of the node's API.
//!
//! The fixture is a small region of two nodes, built once by [`build_fixture`] and
//! committed under `fuzz/fixture/` (test keys, no passphrase), so that the committed
//! corpus (requests recorded by [`record_seeds`]) keeps meaning the same documents,
//! keys and region on every machine:
//!
//! - `responder/`: the ROC `roc-midden`, which founded the region, made one plan with
//!   a section of text, and one dossier for the student's municipality;
//! - `requester/`: `gemeente-zeist`, a member device (and the dossier's woongemeente)
//!   that has synced nothing yet;
//! - `join_request.bin`: a join request of a third party under an invite of the
//!   responder that is valid for a century.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use regiosync_core::dossier::access::Basis;
use regiosync_core::id::{NodeId, PartyName, Role};
use regiosync_core::plan::PlanKind;
use regiosync_core::sync::{DocMessage, Request, Response, SignedChange};
use regiosync_store::StoreRead;

use crate::dossiers::{NewDossier, Reader};
use crate::sync::{Answer, Transport, sync_with};
use crate::{Node, NodeError};

const RESPONDER: &str = "responder";
const REQUESTER: &str = "requester";
const JOIN_REQUEST: &str = "join_request.bin";
/// An invite that outlives the committed fixture.
const CENTURY_SECS: i64 = 100 * 365 * 24 * 3600;

fn party(name: &str) -> Result<PartyName, NodeError> {
    PartyName::new(name).map_err(|e| NodeError::Sync(format!("fixture party name: {e}")))
}

fn reader() -> Reader {
    Reader {
        who: regiosync_core::audit::Who::cli("fuzz"),
        purpose: "fuzzing".into(),
    }
}

/// Builds the fixture (see the module docs) in `root`, which must not hold one yet.
pub fn build_fixture(root: &Path) -> Result<(), NodeError> {
    let (resp_dir, req_dir) = (root.join(RESPONDER), root.join(REQUESTER));
    Node::init(&resp_dir, party("roc-midden")?, Role::Roc, None)?;
    Node::init(&req_dir, party("gemeente-zeist")?, Role::Gemeente, None)?;
    let mut responder = Node::open(&resp_dir)?;
    let mut requester = Node::open(&req_dir)?;
    responder.create_region("Regio Fuzz")?;
    let code = responder.invite(party("gemeente-zeist")?, Role::Gemeente, false, 3600)?;
    let (_, bundle) = responder.accept(&requester.join_request(&code.encode())?)?;
    requester.import(&bundle)?;
    let plan = responder.create_plan(PlanKind::Jeugdplan, "Jeugdplan 2027")?;
    responder.set_section(&plan, "Inleiding", "Samen met het onderwijs.\n")?;
    responder.set_section(&plan, "Aanpak", "Verzuim eerst.\n")?;
    responder.create_dossier(
        &NewDossier {
            woongemeente: party("gemeente-zeist")?,
            basis: Basis::WettelijkeTaak,
            purpose: "Jeugdwet".into(),
            fields: vec![(regiosync_core::dossier::DossierField::Naam, "Sanne".into())],
        },
        &reader(),
    )?;
    // A third party's join request, answered by the responder.
    let joiner_dir = root.join("joiner");
    Node::init(&joiner_dir, party("gemeente-houten")?, Role::Gemeente, None)?;
    let code = responder.invite(
        party("gemeente-houten")?,
        Role::Gemeente,
        false,
        CENTURY_SECS,
    )?;
    let request = Node::open(&joiner_dir)?.join_request(&code.encode())?;
    std::fs::write(root.join(JOIN_REQUEST), request).map_err(io)?;
    std::fs::remove_dir_all(&joiner_dir).map_err(io)?;
    // Everything in the main database files, nothing in a WAL.
    for n in [&responder, &requester] {
        n.store().checkpoint_truncate()?;
    }
    Ok(())
}

fn io(e: std::io::Error) -> NodeError {
    NodeError::Sync(format!("fuzz fixture: {e}"))
}

/// Copies a node dir (its regular files) from the fixture into `to`.
pub fn copy_node(from: &Path, to: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(to).map_err(io)?;
    for entry in std::fs::read_dir(from).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).map_err(io)?;
        }
    }
    Ok(())
}

/// Records the requests of real sessions of the fixture's requester with its
/// responder (a first catch-up, then one that brings the requester's own plan edit
/// and dossier note), plus a join request and hand-made `Docs` requests with an
/// Automerge sync message: valid requests of every kind, to seed the corpus. Works on
/// copies in `scratch`; the fixture is not changed.
pub fn record_seeds(fixture: &Path, scratch: &Path) -> Result<Vec<Vec<u8>>, NodeError> {
    copy_node(&fixture.join(RESPONDER), &scratch.join(RESPONDER))?;
    copy_node(&fixture.join(REQUESTER), &scratch.join(REQUESTER))?;
    let responder = Node::open(&scratch.join(RESPONDER))?;
    let requester = tokio::sync::Mutex::new(Node::open(&scratch.join(REQUESTER))?);
    let responder_id = responder.info().node_id;
    let net = Recorder {
        responder: Mutex::new(responder),
        from: requester.blocking_lock().info().node_id,
        frames: Mutex::new(Vec::new()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(io)?;
    rt.block_on(sync_with(
        &requester,
        &crate::sync::SessionMemory::default(),
        &net,
        responder_id,
    ))?;
    {
        let mut n = requester.blocking_lock();
        let plan = n
            .documents()?
            .first()
            .map(|p| p.id)
            .ok_or_else(|| NodeError::Sync("the fixture has no plan".into()))?;
        n.set_section(&plan, "Inleiding", "Samen met het onderwijs en de zorg.\n")?;
        let dossier = n
            .dossier_ids()?
            .first()
            .copied()
            .ok_or_else(|| NodeError::Sync("the fixture has no dossier".into()))?;
        n.add_dossier_note(&dossier, "Gesprek met ouders.", &reader())?;
    }
    rt.block_on(sync_with(
        &requester,
        &crate::sync::SessionMemory::default(),
        &net,
        responder_id,
    ))?;
    let mut frames = net.frames.into_inner().unwrap_or_default();
    frames.push(
        Request::Join {
            request: std::fs::read(fixture.join(JOIN_REQUEST)).map_err(io)?,
        }
        .encode(),
    );
    // A Docs request with the requester's own opening sync message and all its
    // changes of the plan (as in a first sync the other way round).
    let n = requester.blocking_lock();
    if let Some(plan) = n.documents()?.first() {
        let changes = n
            .store()
            .changes(&plan.id)?
            .into_iter()
            .filter_map(|r| {
                r.envelope.map(|envelope| SignedChange {
                    change: r.bytes,
                    envelope,
                })
            })
            .collect();
        let doc = n.plan_doc_for_fuzzing(&plan.id)?;
        frames.push(
            Request::Docs {
                docs: vec![DocMessage {
                    doc: plan.id,
                    sync: regiosync_core::sync::opening_message(&doc, &[]),
                    changes,
                    need: vec![],
                }],
            }
            .encode(),
        );
    }
    frames.sort();
    frames.dedup();
    Ok(frames)
}

/// Records every request frame of a session, answered by the responder in memory.
struct Recorder {
    responder: Mutex<Node>,
    from: NodeId,
    frames: Mutex<Vec<Vec<u8>>>,
}

impl Transport for Recorder {
    async fn request(&self, _peer: NodeId, frame: Vec<u8>) -> Result<Vec<u8>, String> {
        if let Ok(mut f) = self.frames.lock() {
            f.push(frame.clone());
        }
        let mut n = self.responder.lock().map_err(|e| e.to_string())?;
        Ok(
            n.respond(&crate::sync::SessionMemory::default(), &self.from, &frame)
                .frame,
        )
    }
}

/// The responder of the fixture, answering frames from the requester. Every frame is
/// answered by a fresh copy of the fixture's responder, so an input means the same
/// on every run (what it would do to a node that earlier inputs changed is another
/// input's business).
pub struct RespondHarness {
    pristine: PathBuf,
    scratch: PathBuf,
    from: NodeId,
    node: Option<Node>,
}

impl RespondHarness {
    /// Opens the fixture in `fixture` (see [`build_fixture`]), working in `scratch`.
    pub fn open(fixture: &Path, scratch: &Path) -> Result<Self, NodeError> {
        // Read from node.json only: the fixture is never opened as a store.
        let from = crate::data_dir::read_info(&fixture.join(REQUESTER))?.node_id;
        Ok(Self {
            pristine: fixture.join(RESPONDER),
            scratch: scratch.join(RESPONDER),
            from,
            node: None,
        })
    }

    /// Answers `frame` as sent by the requester and checks what must hold for any
    /// input: no panic (the caller notices), an answer that decodes, and no failure
    /// of the node's own store. Panics if one of these breaks.
    pub fn run(&mut self, frame: &[u8]) -> Answer {
        // Close the store before its files are replaced.
        self.node = None;
        let node = match copy_node(&self.pristine, &self.scratch)
            .and_then(|()| Node::open(&self.scratch))
        {
            Ok(n) => self.node.insert(n),
            Err(e) => panic!("the fuzz fixture does not open: {e}"),
        };
        let answer = node.respond(&crate::sync::SessionMemory::default(), &self.from, frame);
        if let Err(e) = Response::decode_bundled(&answer.frame) {
            panic!("the responder wrote an undecodable answer: {e}");
        }
        if let Some(e) = &answer.storage_failure {
            panic!("a request made the node's own store fail: {e}");
        }
        answer
    }
}

impl Node {
    /// The verified Automerge document of a plan (fuzz seeds need its sync message).
    fn plan_doc_for_fuzzing(
        &self,
        id: &regiosync_core::id::DocId,
    ) -> Result<automerge::Automerge, NodeError> {
        let folded = self.control()?.ok_or(NodeError::NotInRegion)?;
        Ok(self.verified(id, &folded)?.doc.clone())
    }
}
