//! The sync protocol's messages and the summary of a shared document set. Pure:
//! the node drives them over `regiosync-net`. Specified in docs/PROTOCOL.md.

pub mod automerge_msg;
pub mod bundle;
mod compact;
pub mod memory;
pub mod message;
pub mod needs;
pub mod rules;
pub mod session;
pub mod summary;

pub use automerge_msg::{SyncMessageError, decode_sync_message};
pub use message::{
    BUNDLED_FORMAT, COMPACT_FORMAT, DocMessage, DossierMessage, FrameFormat, MAX_DOCS_PER_MESSAGE,
    MAX_DOSSIER_OPS_PER_MESSAGE, MAX_NEED_PER_DOC, MAX_OPS_PER_MESSAGE, MAX_REASON,
    MAX_REMOVED_OPS, MAX_SYNC_MESSAGE, Refusal, Request, Response, SYNC_FORMAT, SignedChange,
    SyncError,
};
pub use needs::{changes_they_lack, holds, missing, opening_message};
pub use summary::{BUCKETS, DigestSet, Heads, Summary, doc_digest};
