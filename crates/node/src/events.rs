//! Change notifications inside one process: every plan change and control op this
//! node commits or accepts is announced on a bounded broadcast channel, after its
//! store transaction committed.
//!
//! Who listens: the running node ([`crate::service`]) wakes its sync at once for a
//! change made or imported here (not at the next poll), and the web app tells open
//! plan pages that they are out of date. An event says which document changed, which
//! party and device changed it and what kind of thing it was; it carries no text of
//! the document and nothing about a person (staff names, dossier contents): a
//! listener that wants the new state reads it through the node, with the node's
//! checks. A dossier written here sends an event with its id and kind
//! [`ChangeKind::Dossier`] only, so that the running node pushes it at once; a
//! dossier received from a peer sends none (it travels on at the next session).
//!
//! The channel is a [`tokio::sync::broadcast`] of [`CAPACITY`] events: a sender never
//! waits and memory never grows; a listener that falls behind loses the oldest events
//! and gets [`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError::Lagged)
//! once, after which it must assume that anything may have changed (re-read,
//! re-sync). Edits made by another process on the same data dir (the CLI while `up`
//! runs) send nothing here: they wake the running node through its socket
//! (`wake.rs`), and its poll of the store finds them too.
//!
//! ```
//! use regiosync_core::id::{PartyName, Role};
//! use regiosync_core::plan::PlanKind;
//! use regiosync_node::Node;
//! use regiosync_node::events::{ChangeKind, Source};
//!
//! let dir = tempfile::tempdir()?;
//! Node::init(dir.path(), PartyName::new("gemeente-utrecht")?, Role::Kerngemeente, None)?;
//! let mut node = Node::open(dir.path())?;
//! node.create_region("Regio Utrecht")?;
//! let mut changes = node.events().subscribe();
//! let id = node.create_plan(PlanKind::Jeugdplan, "Jeugdplan 2027")?;
//! node.set_section(&id, "Inleiding", "Samen met het onderwijs.")?;
//! let created = changes.try_recv()?;
//! assert_eq!((created.doc, created.kind), (Some(id), ChangeKind::Created));
//! let edited = changes.try_recv()?;
//! assert_eq!((edited.kind, edited.source), (ChangeKind::Section, Source::Local));
//! assert_eq!(edited.party.as_ref().map(|p| p.as_str()), Some("gemeente-utrecht"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use regiosync_core::control::{OpBody, RegionState, SignedOp};
use regiosync_core::id::{DocId, NodeId, PartyName};
use tokio::sync::broadcast;

/// Events kept for a listener that has not read them yet. A burst larger than this
/// (a first sync of a whole region) makes slow listeners skip to "something
/// changed", which they handle by re-reading: enough for a busy region's live
/// edits, small enough (about 100 KiB) not to matter.
pub const CAPACITY: usize = 1024;

/// What kind of thing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A plan was created (or first received).
    Created,
    /// A section's text, title, place, or its existence.
    Section,
    /// An agreement (added, changed, status, removed).
    Agreement,
    /// A comment (added, resolved, reopened).
    Comment,
    /// A party approved the plan.
    Approval,
    /// Who may read or write the plan.
    Acl,
    /// The region: members, devices, party names, addresses, relays.
    Region,
    /// Some other change of a plan (e.g. its title).
    Other,
    /// A dossier was written here: its content, its access log (a grant, a
    /// revocation, new keys) or its erasure. The event names the dossier's id and
    /// nothing of what changed; it makes the running node push at once.
    Dossier,
}

impl ChangeKind {
    /// The kind of a plan change, from its change message (`set section …`, `add
    /// agreement …`, `comment on …`: the messages [`Node`](crate::Node) writes; a
    /// peer's message is only classified, never shown).
    pub fn of_message(message: &str) -> Self {
        let mut words = message.split_whitespace();
        let (first, second) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        match (first, second) {
            ("create", _) => Self::Created,
            (_, "section") => Self::Section,
            ("agreement", _) | (_, "agreement") => Self::Agreement,
            ("comment", _) | (_, "comment") => Self::Comment,
            _ => Self::Other,
        }
    }

    /// The kind of a control op, and the plan it is about.
    pub fn of_op(body: &OpBody) -> (Self, Option<DocId>) {
        match body {
            OpBody::CreateDoc { doc, .. } | OpBody::CreateDocument { doc, .. } => {
                (Self::Created, Some(*doc))
            }
            OpBody::SetAcl { doc, .. } | OpBody::SetAudience { doc, .. } => (Self::Acl, Some(*doc)),
            OpBody::Approve { doc, .. } => (Self::Approval, Some(*doc)),
            _ => (Self::Region, None),
        }
    }

    /// Whether this kind is that of a control op (the kinds [`ChangeKind::of_op`]
    /// gives): the running node sends those in a full session, where control ops go
    /// first, not in a push of documents. Exhaustive, so that a new kind needs a
    /// decision here.
    pub fn is_control_op(self) -> bool {
        match self {
            Self::Created | Self::Acl | Self::Approval | Self::Region => true,
            Self::Section | Self::Agreement | Self::Comment | Self::Other | Self::Dossier => false,
        }
    }

    /// Short lowercase name (`section`, `agreement`, …), for logs and the web app.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Section => "section",
            Self::Agreement => "agreement",
            Self::Comment => "comment",
            Self::Approval => "approval",
            Self::Acl => "acl",
            Self::Region => "region",
            Self::Other => "other",
            Self::Dossier => "dossier",
        }
    }
}

/// Where a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Made in this process (the web app, a CLI command's own handle).
    Local,
    /// Imported in this process from a bundle file (sneakernet).
    Import,
    /// Stored from a sync session with this peer (either side of the session).
    Sync(NodeId),
}

/// One change, committed to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChangeEvent {
    /// The plan, or `None` for a change of the region itself.
    pub doc: Option<DocId>,
    /// The party that made the change, if the region state names the device.
    pub party: Option<PartyName>,
    /// The device that signed the change.
    pub device: Option<NodeId>,
    /// What changed.
    pub kind: ChangeKind,
    /// Where it came from.
    pub source: Source,
}

impl ChangeEvent {
    /// An event for a change signed by `device`, its party looked up in `state`.
    pub(crate) fn by_device(
        doc: Option<DocId>,
        device: Option<NodeId>,
        kind: ChangeKind,
        source: Source,
        state: &RegionState,
    ) -> Self {
        Self {
            doc,
            party: device
                .and_then(|d| state.devices.get(&d))
                .map(|d| d.party.clone()),
            device,
            kind,
            source,
        }
    }

    /// The event of a control op.
    pub(crate) fn of_op(op: &SignedOp, source: Source, state: &RegionState) -> Self {
        let (kind, doc) = ChangeKind::of_op(&op.op().body);
        Self::by_device(doc, Some(op.op().author), kind, source, state)
    }
}

/// The sending side, owned by a [`Node`](crate::Node); clone it to subscribe without
/// locking the node.
#[derive(Clone, Debug)]
pub struct Events {
    tx: broadcast::Sender<ChangeEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Events {
    /// A new listener: it receives the events sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.tx.subscribe()
    }

    /// Sends an event again, for tests of listeners that fall behind.
    #[doc(hidden)]
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn resend_for_tests(&self, event: ChangeEvent) {
        self.send(event);
    }

    /// Announces a committed change (nobody listening is fine). Never blocks.
    pub(crate) fn send(&self, event: ChangeEvent) {
        tracing::trace!(doc = ?event.doc, kind = event.kind.as_str(), "change event");
        let _ = self.tx.send(event);
    }
}

impl crate::Node {
    /// The change notifications of this node (see [`crate::events`]).
    pub fn events(&self) -> Events {
        self.events.clone()
    }

    /// Tells the sync that this handle committed something: a handle that a
    /// running node serves does so through its change channel (the event already
    /// sent); any other wakes the node running on the data dir, if one does
    /// (`wake.rs`).
    pub(crate) fn wake_running_node(&self) {
        if !self.served {
            crate::wake::wake(&self.dir);
        }
    }

    /// Marks this handle as the one a running node serves (see
    /// [`Self::wake_running_node`]).
    pub(crate) fn serve(&mut self) {
        self.served = true;
    }

    /// Announces a change this process made, by this device.
    pub(crate) fn announce_local(&self, doc: Option<DocId>, kind: ChangeKind) {
        self.events.send(ChangeEvent {
            doc,
            party: Some(self.info.party.clone()),
            device: Some(self.info.node_id),
            kind,
            source: Source::Local,
        });
        self.wake_running_node();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_s_change_messages_are_classified() {
        for (m, k) in [
            ("create jeugdplan", ChangeKind::Created),
            ("set section Inleiding", ChangeKind::Section),
            ("rename section Inleiding", ChangeKind::Section),
            ("delete section Inleiding", ChangeKind::Section),
            ("move section Inleiding", ChangeKind::Section),
            ("add agreement Overdracht", ChangeKind::Agreement),
            ("update agreement a-01234567", ChangeKind::Agreement),
            ("remove agreement a-01234567", ChangeKind::Agreement),
            ("agreement a-01234567 afgerond", ChangeKind::Agreement),
            ("comment on Inleiding", ChangeKind::Comment),
            ("resolve comment c-01234567", ChangeKind::Comment),
            ("reopen comment c-01234567", ChangeKind::Comment),
            ("", ChangeKind::Other),
            ("set title", ChangeKind::Other),
        ] {
            assert_eq!(ChangeKind::of_message(m), k, "{m}");
        }
    }

    /// The kinds of control ops are the ones the running node sends in a full
    /// session (an approval pushed as a document would be left behind by a push
    /// that lands); the kinds of plan edits are pushed.
    #[test]
    fn control_op_kinds_are_told_from_edits() {
        let doc = DocId::from_bytes([1; 16]);
        for body in [
            OpBody::Approve {
                doc,
                heads: vec![],
                comment: None,
            },
            OpBody::SetAddrs { addrs: vec![] },
        ] {
            let (kind, _) = ChangeKind::of_op(&body);
            assert!(kind.is_control_op(), "{kind:?}");
        }
        for m in [
            "set section Inleiding",
            "add agreement X",
            "comment on Inleiding",
            "set title",
        ] {
            assert!(!ChangeKind::of_message(m).is_control_op(), "{m}");
        }
        assert!(!ChangeKind::Dossier.is_control_op());
    }
}
