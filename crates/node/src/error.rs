//! Errors of the node runtime, phrased for the person running the node.

use std::path::PathBuf;

use regiosync_core::control::{InviteError, OpError, Rejection, WriteDenied};
use regiosync_core::envelope::EnvelopeError;
use regiosync_core::id::{DocId, IdError};
use regiosync_core::identity::IdentityError;
use regiosync_core::plan::PlanError;
use regiosync_store::StoreError;

/// Why a node operation failed. A failed edit leaves the store as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// There is no node in the data dir.
    #[error(
        "no regiosync node in {dir}: run `regiosync init --party NAME --role ROLE`, or pass the right --data-dir"
    )]
    NoNode {
        /// The data dir.
        dir: PathBuf,
    },
    /// `init` found a node (or part of one) already there.
    #[error("{dir} already holds a regiosync node ({file} exists); refusing to overwrite it")]
    AlreadyInitialised {
        /// The data dir.
        dir: PathBuf,
        /// The file that is in the way.
        file: &'static str,
    },
    /// `node.json` exists but the store file is gone.
    #[error(
        "the store {path} is missing although node.json exists: restore it from a backup, or move the data dir away and run `regiosync init` again"
    )]
    MissingStore {
        /// The store file.
        path: PathBuf,
    },
    /// `node.json` is damaged or not ours.
    #[error("{path} is damaged or not a regiosync node file ({detail}): restore it from a backup")]
    BadNodeFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// `node.json` was written by a newer regiosync.
    #[error("{path} has format version {version}, newer than this regiosync: upgrade regiosync")]
    NewerNodeFile {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
    /// The key file holds keys of another node.
    #[error("the key file {path} does not belong to node {node}: restore the right node.key")]
    KeyMismatch {
        /// The key file.
        path: PathBuf,
        /// The node id in node.json.
        node: String,
    },
    /// A file of the data dir could not be read or written.
    #[error("{path}: {}", describe_io(source))]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file given to read is not a regular file or is too large for its kind.
    #[error(transparent)]
    InputFile(#[from] crate::input_file::InputFileError),
    /// The key file could not be made or opened.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A staff account operation was refused.
    #[error(transparent)]
    Staff(#[from] crate::staff::StaffError),
    /// A plan edit was refused.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// An id or name is malformed.
    #[error(transparent)]
    Id(#[from] IdError),
    /// A change id given with fewer than 8 hex digits.
    #[error(
        "a change id needs at least 8 hex digits, '{0}' has fewer: copy it from `regiosync doc history`"
    )]
    ShortChangeId(String),
    /// No dossier matches the given id or prefix.
    #[error("no dossier matches '{0}' on this node: see `regiosync dossier list`")]
    UnknownDossier(String),
    /// No document matches the given id or prefix.
    #[error("no document matches '{0}': see `regiosync doc list`")]
    UnknownDocument(String),
    /// More than one document matches the given prefix.
    #[error("'{reference}' matches {count} documents: give more digits of the id")]
    AmbiguousDocument {
        /// What the user gave.
        reference: String,
        /// How many match.
        count: usize,
    },
    /// The document exists but is not a plan.
    #[error("document {0} is a {1}, not a plan")]
    NotAPlan(DocId, String),
    /// This node's party may not read the plan, so it cannot approve it.
    #[error(
        "your party cannot read plan {0}, so it cannot approve it: the plan's owner can add it as a reader (`doc acl`)"
    )]
    NotAReader(DocId),
    /// A version (heads) this node does not have.
    #[error("version '{0}' is not on this node: pick one from `doc history`, or sync first")]
    UnknownVersion(String),
    /// A party that has not approved the plan.
    #[error("party '{0}' has not approved this plan: see `doc approvals`")]
    NoApproval(String),
    /// The node has not founded or joined a region.
    #[error(
        "this node is not in a region yet: found one with `regiosync region create NAME`, or join one with `regiosync join CODE`"
    )]
    NotInRegion,
    /// The node is already in a region.
    #[error("this node is already a member of region {0}")]
    AlreadyInRegion(String),
    /// The key file is passphrase-protected and was not unlocked.
    #[error(
        "this command signs with the node's key, which is passphrase-protected: pass --passphrase-file FILE"
    )]
    Locked,
    /// The control plane refused an op this node tried to make.
    #[error("refused by the region rules: {0}")]
    Refused(Rejection),
    /// This device may not write the document.
    #[error("this device may not change the document: {0}")]
    NoWritePermission(WriteDenied),
    /// An invite code, join request or bundle is invalid.
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// An approval comment with a line break or another control character (received
    /// ones are shown escaped; this node makes none).
    #[error(
        "an approval comment must be one line of text without control characters: write it on one line, or add a longer remark with `regiosync doc comment add`"
    )]
    ApprovalCommentNotOneLine,
    /// A join request or bundle was refused.
    #[error("{0}")]
    JoinRefused(String),
    /// A membership change (invite, device removal) this node will not make.
    #[error("{0}")]
    Membership(String),
    /// A name that should be a party of the region is not one.
    #[error("{party} is not a party of the region; its parties are: {parties}")]
    UnknownParty {
        /// The name given.
        party: String,
        /// The region's active parties, comma-separated.
        parties: String,
    },
    /// A party display name that cannot be shown as given.
    #[error(
        "a party's display name must be one line of 1 to {max} characters, without control or text-direction characters"
    )]
    BadDisplayName {
        /// The longest name allowed, in characters.
        max: usize,
    },
    /// An access-list change that names no party of the region or contradicts itself.
    #[error("{0}")]
    Acl(String),
    /// The region's control log in the store does not fold or decode.
    #[error(
        "the region's control log in the store is damaged ({0}): import the log again from a member (`regiosync export` there, `regiosync import` here) or restore a backup"
    )]
    DamagedControlLog(String),
    /// An op could not be made.
    #[error(transparent)]
    Op(#[from] OpError),
    /// An envelope could not be made.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// A dossier operation this node will not do (no access, no key, not the owner).
    #[error("{0}")]
    DossierRefused(String),
    /// A dossier op the region's rules refuse (the reason as the dossier log's fold
    /// gives it, e.g. only the owner party grants); nothing was stored.
    #[error("{0}")]
    DossierRejected(regiosync_core::dossier::access::DossierRejection),
    /// This party may not read or write the dossier.
    #[error("this party has no access to the dossier")]
    NoDossierAccess,
    /// A party lost access to the dossier; only the owner starts the new key (any
    /// edit by the owner does), and until then other parties do not write.
    #[error(
        "someone lost access to this dossier: its owner must start a new key first (any edit by the owner does)"
    )]
    DossierNeedsNewKey,
    /// A grant whose last day is already over.
    #[error(
        "the grant's last day {until} is in the past: give --until a date from today ({today}) on"
    )]
    GrantEndsInPast {
        /// The last day asked for.
        until: time::Date,
        /// Today, on this node's clock.
        today: time::Date,
    },
    /// The dossier was erased.
    #[error("the dossier was erased on {} by {by}: nothing of it can be read or written", erased_on(*at))]
    Erased {
        /// The erasing party.
        by: String,
        /// When, Unix seconds (the eraser's clock).
        at: i64,
    },
    /// A dossier edit broke the dossier schema or a field's rules.
    #[error(transparent)]
    Dossier(#[from] regiosync_core::dossier::DossierError),
    /// Sealing or key wrapping failed.
    #[error(transparent)]
    Seal(#[from] regiosync_core::seal::SealError),
    /// The region removed this device (or its party).
    #[error(
        "this device was removed from the region on {} by {}: the other members no longer sync with it, and changes made here will be refused by the region. If this is a mistake, ask a region admin to invite a new device of your party (`regiosync init` in a new data dir, then `regiosync join`)",
        .0.day(), .0.by
    )]
    Removed(crate::Removal),
    /// Another process runs the node of this data dir (`regiosync up`).
    #[error(
        "the node in {dir} is already running{}: stop that one first (Ctrl-C in its terminal, or `kill` the process), or keep it: every other command works while it runs",
        pid.map(|p| format!(" in process {p}")).unwrap_or_default()
    )]
    AlreadyRunning {
        /// The data dir.
        dir: PathBuf,
        /// The process that holds the node, if it could be read from the lock file.
        pid: Option<u32>,
    },
    /// A sync session with a peer failed.
    #[error("sync failed: {0}")]
    Sync(String),
    /// The stored changes of a document do not load.
    #[error(
        "document {id} cannot be loaded from the store ({detail}): re-sync it from a peer or restore a backup"
    )]
    DamagedDocument {
        /// The document.
        id: DocId,
        /// What Automerge reported.
        detail: String,
    },
    /// This device stored changes to the document that the region's rules refuse
    /// (written while it had no write access), so its next change would reuse their
    /// sequence numbers, which every node refuses as an equivocation.
    #[error(
        "this device's changes {first}..={last} to document {id} were refused by the region's rules (written without write access); it cannot write to this document again until they count (its party is a writer again) — write from another device meanwhile"
    )]
    SequenceTaken {
        /// The document.
        id: DocId,
        /// The first refused sequence number.
        first: u64,
        /// The last stored one.
        last: u64,
    },
    /// A plan edit would make a change that every other node leaves out: it breaks a
    /// rule of `regiosync_core::plan::received` (a change's size, or what one device
    /// may write into one plan over all its changes). Nothing was written.
    #[error(
        "this edit of plan {id} is refused, because other nodes would leave it out ({why}): write less in one edit; if this device has used up what one device may write into this plan, edit from another device of your party"
    )]
    BeyondReceiptLimits {
        /// The plan.
        id: DocId,
        /// The rule it breaks.
        #[source]
        why: regiosync_core::plan::received::ChangeOutsideSchema,
    },
    /// A document's kind refuses the edit, as every receiver would. Nothing was
    /// written.
    #[error("this edit of document {id} is refused: {why}")]
    RefusedByKind {
        /// The document.
        id: DocId,
        /// The rule it breaks.
        #[source]
        why: regiosync_core::envelope::ChangeRejection,
    },
    /// A document kind refused a new document, or the kind is not known here.
    #[error(transparent)]
    Kind(#[from] regiosync_core::kind::KindError),
}

/// The day of an erasure, `YYYY-MM-DD` (UTC, by the eraser's clock).
fn erased_on(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .map(|t| regiosync_core::plan::date_format::format(t.date()))
        .unwrap_or_else(|_| "an unknown day".into())
}

fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::StorageFull => {
            "the disk is full; nothing was saved: free some space and try again".into()
        }
        K::ReadOnlyFilesystem | K::PermissionDenied => {
            format!("cannot write here ({e}): check the permissions of the data dir")
        }
        K::NotFound => "not found".into(),
        _ => e.to_string(),
    }
}

impl NodeError {
    /// Whether the node's own storage failed (full, damaged, read-only, I/O): a running
    /// node stops syncing on such an error rather than carry on with a store that
    /// cannot keep what it would acknowledge.
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            NodeError::Store(
                StoreError::DiskFull { .. }
                    | StoreError::Corrupt { .. }
                    | StoreError::ReadOnly { .. }
                    | StoreError::Io { .. }
                    | StoreError::NotADatabase { .. }
                    | StoreError::Malformed { .. }
            ) | NodeError::Io { .. }
                | NodeError::DamagedControlLog(_)
                | NodeError::MissingStore { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> NodeError {
        let path = path.into();
        move |source| NodeError::Io { path, source }
    }
}
