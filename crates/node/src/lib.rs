//! # regiosync-node
//!
//! The runtime of a regiosync node: the owner of a node's data dir (the keys in
//! `node.key`, the description in `node.json`, the store in `store.sqlite`), the region
//! control plane as seen from this node (found, invite, join, remove), the API that
//! reads and edits plans and dossiers durably, signing every change and reading only
//! accepted ones, the sync session with a peer ([`sync`]) and the running service that
//! drives it over libp2p ([`service`]).
//!
//! ```
//! use regiosync_core::id::{PartyName, Role};
//! use regiosync_core::plan::PlanKind;
//! use regiosync_node::Node;
//!
//! let dir = tempfile::tempdir()?;
//! Node::init(dir.path(), PartyName::new("gemeente-utrecht")?, Role::Kerngemeente, None)?;
//! let mut node = Node::open(dir.path())?;
//! node.create_region("Regio Utrecht")?;
//! let id = node.create_plan(PlanKind::Jeugdplan, "Jeugdplan 2027")?;
//! node.set_section(&id, "Inleiding", "Samen met het onderwijs.")?;
//! // The edit is committed to disk: a new handle sees it.
//! let again = Node::open(dir.path())?;
//! assert_eq!(again.plan(&id)?.sections[0].text, "Samen met het onderwijs.");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

mod clock;
mod control_log;
pub mod data_dir;
pub mod documents;
pub mod dossier_list;
mod dossier_sync;
pub mod dossiers;
mod error;
pub mod events;
#[doc(hidden)]
#[cfg(any(test, feature = "test-hooks"))]
pub mod fuzzing;
pub mod input_file;
pub mod join;
pub mod kinds;
mod peers;
pub mod plan_versions;
pub mod section_at;
pub use dossier_sync::UnreachedDossier;
pub use peers::{DocStates, MAX_LISTED_DOCS};
pub use plan_versions::{ApprovalView, ConflictEntry, ConflictView, ExportFormat};
pub mod region;
mod removal;
pub use removal::{REMOVED_NOTICE, Removal};
pub mod run_lock;
pub mod service;
pub mod staff;
pub mod sync;
mod wake;

use std::path::{Path, PathBuf};

use regiosync_core::id::{PartyName, Role};
use regiosync_core::identity::{NodeSecret, SecretString};
use regiosync_store::Store;

pub use data_dir::{KeyProtection, NodeInfo};
pub use documents::{DocSummary, Edited, Equivocation, HistoryEntry};
pub use error::NodeError;
pub use join::join_over_network;
pub use region::{Accepted, AclChange, Audience, Imported};
/// The store's reads (on [`Node::store`]'s result), re-exported so that crates
/// built on the node (the web app) need not depend on the store crate for them.
pub use regiosync_store::StoreRead;
pub use sync::{Answer, SessionMemory, SyncReport, Transport, sync_with};

/// An open node: its description, its store and, once unlocked, its secret keys.
#[derive(Debug)]
pub struct Node {
    dir: PathBuf,
    info: NodeInfo,
    store: Store,
    secret: Option<NodeSecret>,
    /// Verified documents kept in memory (see `documents::ResidentDocs`).
    resident: std::sync::Mutex<documents::ResidentDocs>,
    /// The last fold of the control log, kept while no op is stored (see
    /// `region::Node::control`): every sync request needs it.
    control_cache: std::sync::Mutex<Option<control_log::ControlCache>>,
    /// The parties in force of every dossier held, with what they were computed
    /// from (see `dossier_sync::Node::all_dossier_readers`): a session's summary, the
    /// answer to a peer's and the status all need them.
    all_readers: std::sync::Mutex<Option<dossier_sync::AllReaders>>,
    /// Change notifications of this process (see `events.rs`).
    events: events::Events,
    /// The document kinds this node knows (`core::kind`): plans, and any a program
    /// registers with [`Node::register_kind`].
    kinds: regiosync_core::kind::Kinds,
    /// Whether this handle is the one a running node (`regiosync up`) serves: its
    /// commits reach the sync through the change channel; any other handle's wake
    /// the running node through the data dir's socket (`wake.rs`).
    served: bool,
}

impl Node {
    /// Creates a new node in `dir` (see [`data_dir::init`]).
    pub fn init(
        dir: &Path,
        party: PartyName,
        role: Role,
        passphrase: Option<&SecretString>,
    ) -> Result<NodeInfo, NodeError> {
        data_dir::init(dir, party, role, passphrase)
    }

    /// Opens the node in `dir`. Does not need the passphrase: reading and editing
    /// documents uses only the public node id.
    pub fn open(dir: &Path) -> Result<Self, NodeError> {
        let info = data_dir::read_info(dir)?;
        // Before SQLite opens the store (and makes `-wal` and `-shm` with its mode).
        data_dir::secure_permissions(dir, true);
        let store = match Store::open(&dir.join(data_dir::STORE_FILE)) {
            Err(regiosync_store::StoreError::NotFound { path }) => {
                return Err(NodeError::MissingStore { path });
            }
            other => other?,
        };
        Ok(Self {
            dir: dir.to_owned(),
            info,
            store,
            secret: None,
            resident: Default::default(),
            all_readers: Default::default(),
            control_cache: Default::default(),
            events: Default::default(),
            kinds: regiosync_core::kind::Kinds::builtin(),
            served: false,
        })
    }

    /// Who this node is.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the node's secret keys so that it can sign (needs the passphrase if the
    /// key file has one). Nodes without a passphrase unlock by themselves when needed.
    pub fn unlock(&mut self, passphrase: Option<&SecretString>) -> Result<(), NodeError> {
        self.secret = Some(data_dir::read_secret(&self.dir, &self.info, passphrase)?);
        Ok(())
    }

    /// The secret keys, unlocking a key file without passphrase on first use.
    pub(crate) fn signer(&mut self) -> Result<&NodeSecret, NodeError> {
        if self.secret.is_none() {
            if self.info.key_protection == KeyProtection::Passphrase {
                return Err(NodeError::Locked);
            }
            self.unlock(None)?;
        }
        self.secret.as_ref().ok_or(NodeError::Locked)
    }

    /// The libp2p identity of this node: the same Ed25519 key as its node id.
    pub fn network_key(&mut self) -> Result<regiosync_net::Keypair, NodeError> {
        let mut bytes = self.signer()?.signing_key_bytes();
        let secret: &mut [u8] = &mut bytes[..];
        regiosync_net::Keypair::ed25519_from_bytes(secret)
            .map_err(|e| NodeError::Sync(format!("cannot use the node key for networking: {e}")))
    }

    /// The signing key, for tests that play a hostile member.
    #[doc(hidden)]
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn signing_key_for_tests(
        &mut self,
    ) -> Result<&regiosync_core::identity::SigningKey, NodeError> {
        Ok(self.signer()?.signing_key())
    }

    /// The underlying store (for maintenance commands and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Mutable access to the store, for benchmarks that measure the store's floor.
    #[doc(hidden)]
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn store_mut_for_bench(&mut self) -> &mut Store {
        &mut self.store
    }
}

#[cfg(test)]
mod tests;
