//! Live plan pages: `GET /plannen/{id}/events` is a stream of server-sent events
//! that tells an open plan page that the plan changed, who changed it and what; the
//! page's script (`assets/live.js`) then fetches the page again and swaps in its
//! content (keeping an open editor), and shows the notice.
//!
//! The stream listens on the node's change channel ([`regiosync_node::events`]):
//! edits made through this web app, by the CLI's own handle in this process, and
//! changes stored from other members by sync. It says only that something changed,
//! by whom and which section; the content itself comes with the page, through the
//! page's own checks.
//!
//! Checks: the same as the plan page (a signed-in session of a role that reads
//! plans, a plan on this node that this party may read: 401 or 403 or 404
//! otherwise), and again before every message and at least every
//! [`SESSION_CHECK`]: when the session has ended or expired, or the party may no
//! longer read the plan, the stream says `end` and closes. Listening does not count
//! as using the session (it does not postpone the idle timeout).
//!
//! Bounds: at most [`MAX_STREAMS_PER_SESSION`] streams per session and
//! [`MAX_STREAMS`] in all (429 beyond); a stream that falls behind the node's
//! channel skips to "the plan changed" instead of queueing events; events that
//! arrive together are one message.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use regiosync_core::id::DocId;
use regiosync_node::Node;
use regiosync_node::events::{ChangeEvent, ChangeKind};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;

use crate::app::AppState;
use crate::auth::{Allowed, ReadPlans};
use crate::error::WebError;

/// Streams one session may hold open: a person with a few plans open in tabs. Over
/// HTTP/1.1 each stream holds one of the browser's six connections to this host,
/// so four leave room for the pages themselves.
pub const MAX_STREAMS_PER_SESSION: usize = 4;
/// Streams open in all: a node serves one party's staff (tens of people). Each
/// holds a connection, and the server takes at most 256: 64 leave most of them for
/// pages and sign-ins.
pub const MAX_STREAMS: usize = 64;
/// A comment line this often keeps proxies and the browser from closing an idle
/// stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The session is checked at least this often, also while nothing changes.
pub const SESSION_CHECK: Duration = Duration::from_secs(30);
/// Notices per message (one per kind of change; more kinds are rare).
const MAX_NOTICES: usize = 3;
/// Section titles in a notice are cut to this many characters.
const MAX_TITLE_CHARS: usize = 80;

#[derive(Debug, Default)]
struct Counts {
    per_session: HashMap<[u8; 32], usize>,
    total: usize,
}

/// The open streams, counted per session (by the SHA-256 of its token) and in all.
#[derive(Debug, Default)]
pub(crate) struct Streams(Arc<Mutex<Counts>>);

/// One open stream's place in [`Streams`], given back when the stream ends.
#[derive(Debug)]
struct Slot {
    counts: Arc<Mutex<Counts>>,
    key: [u8; 32],
}

impl Streams {
    fn take(&self, token: &str) -> Result<Slot, WebError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mine = c.per_session.get(&key).copied().unwrap_or(0);
        if mine >= MAX_STREAMS_PER_SESSION || c.total >= MAX_STREAMS {
            return Err(WebError::TooManyStreams);
        }
        c.per_session.insert(key, mine + 1);
        c.total += 1;
        Ok(Slot {
            counts: self.0.clone(),
            key,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_session.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_session.remove(&self.key);
            }
        }
    }
}

/// What a stream remembers of the plan, to say which section changed.
#[derive(Debug)]
struct PlanView {
    /// Per section: id, title, SHA-256 of title and text.
    sections: Vec<(String, String, [u8; 32])>,
    /// Display names of the parties ("Gemeente Gouda").
    names: HashMap<String, String>,
    /// The plan's heads (sorted, as the plan page's `data-version` lists them).
    heads: Vec<[u8; 32]>,
}

impl PlanView {
    /// Reads the plan, if it is one this party may read (the plan page's checks,
    /// plus the region's access list); [`WebError::NotFound`] otherwise.
    fn read(node: &Node, id: &DocId) -> Result<Self, WebError> {
        crate::plans::check_plan(node, id).map_err(|_| WebError::NotFound)?;
        let state = node.region_state()?;
        let plan = node.plan(id)?;
        let heads = node.plan_heads(id)?.iter().map(|h| h.0).collect();
        Ok(Self {
            heads,
            sections: plan
                .sections
                .iter()
                .map(|s| {
                    let mut h = Sha256::new();
                    h.update(s.title.as_bytes());
                    h.update([0]);
                    h.update(s.text.as_bytes());
                    (s.id.clone(), s.title.clone(), h.finalize().into())
                })
                .collect(),
            names: state
                .parties
                .keys()
                .map(|p| (p.to_string(), state.display_name(p).to_owned()))
                .collect(),
        })
    }
}

/// Most heads a `versie` parameter may list (a plan has a few at most; more is
/// not a page of ours).
const MAX_PAGE_HEADS: usize = 64;

/// The version an open page shows, from `?versie=` (change hashes in hex,
/// comma-separated, the comma possibly percent-encoded as the browser sends it):
/// `None` when the parameter is absent, `Some(None)` when it cannot be read (the
/// stream then assumes the page is behind), sorted hashes otherwise. Parsed here
/// rather than with a query extractor, so that a bad value costs one extra page
/// refresh instead of a refused stream.
fn page_version(q: Option<&str>) -> Option<Option<Vec<[u8; 32]>>> {
    let raw = q?.split('&').find_map(|kv| kv.strip_prefix("versie="))?;
    if raw.is_empty() {
        return Some(None);
    }
    let raw = raw.replace("%2C", ",").replace("%2c", ",");
    let mut heads = Vec::new();
    for part in raw.split(',').take(MAX_PAGE_HEADS + 1) {
        let mut h = [0u8; 32];
        if hex::decode_to_slice(part, &mut h).is_err() {
            return Some(None);
        }
        heads.push(h);
    }
    if heads.len() > MAX_PAGE_HEADS {
        return Some(None);
    }
    heads.sort_unstable();
    Some(Some(heads))
}

/// `GET /plannen/{id}/events?versie=HEADS`: the plan's change stream (see the
/// module docs). When the page's version (`versie`, its `data-version`) is not the
/// plan's version any more, because a change was stored between the page's
/// rendering and this request, the first message says so at once.
pub(crate) async fn events(
    State(state): State<AppState>,
    who: Allowed<ReadPlans>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, WebError> {
    let id: DocId = id.parse().map_err(|_| WebError::NotFound)?;
    // Subscribed under the node's lock, with the plan read: no change can fall
    // between the two.
    let (rx, view) = state
        .with_node(move |node| {
            let rx = node.events().subscribe();
            Ok((rx, PlanView::read(node, &id)?))
        })
        .await?;
    let slot = state.streams().take(&who.staff.token)?;
    let behind = match page_version(q.as_deref()) {
        None => false,
        Some(None) => true,
        Some(Some(heads)) => heads != view.heads,
    };
    tracing::debug!(doc = %id, behind, "live stream opened");
    let live = Live {
        behind,
        state,
        id,
        token: who.staff.token,
        rx,
        view,
        next_check: Instant::now() + SESSION_CHECK,
        done: false,
        _slot: slot,
    };
    let stream = futures::stream::unfold(live, |mut live| async move {
        let ev = live.next().await?;
        Some((Ok::<_, Infallible>(ev), live))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// One open stream.
struct Live {
    /// The page is behind the plan already: the first message says so.
    behind: bool,
    state: AppState,
    id: DocId,
    token: String,
    rx: broadcast::Receiver<ChangeEvent>,
    view: PlanView,
    next_check: Instant,
    done: bool,
    _slot: Slot,
}

/// What woke a stream.
enum Wake {
    Changed(Vec<ChangeEvent>, bool),
    Check,
    Closed,
}

impl Live {
    /// The next message, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        if std::mem::take(&mut self.behind) {
            let data = serde_json::json!({
                "notices": ["Het plan is gewijzigd sinds deze pagina werd geladen"],
                "kinds": [],
            });
            return Some(Event::default().event("change").data(data.to_string()));
        }
        loop {
            let wake = tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(e) if e.doc == Some(self.id) => Wake::Changed(vec![e], false),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => Wake::Changed(vec![], true),
                    Err(RecvError::Closed) => Wake::Closed,
                },
                () = tokio::time::sleep_until(self.next_check) => Wake::Check,
            };
            let (mut batch, mut lagged) = match wake {
                Wake::Closed => return None,
                Wake::Check => (vec![], false),
                Wake::Changed(b, l) => (b, l),
            };
            // What arrived meanwhile is one message.
            loop {
                match self.rx.try_recv() {
                    Ok(e) if e.doc == Some(self.id) => batch.push(e),
                    Ok(_) => {}
                    Err(TryRecvError::Lagged(_)) => lagged = true,
                    Err(_) => break,
                }
            }
            let changed = lagged || !batch.is_empty();
            self.next_check = Instant::now() + SESSION_CHECK;
            let (token, id) = (self.token.clone(), self.id);
            let limits = self.state.config().session;
            let fresh = self
                .state
                .with_node(move |node| {
                    if !node.staff_session_is_live(&token, limits)? {
                        return Ok(None);
                    }
                    if !changed {
                        return Ok(Some(None));
                    }
                    match PlanView::read(node, &id) {
                        Ok(v) => Ok(Some(Some(v))),
                        Err(WebError::NotFound) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .await;
            match fresh {
                Ok(Some(None)) => continue,
                Ok(Some(Some(view))) => {
                    let notices = notices(&self.view, &view, &batch, lagged);
                    self.view = view;
                    let mut kinds: Vec<&str> = Vec::new();
                    for k in batch.iter().map(|e| e.kind.as_str()) {
                        if !kinds.contains(&k) {
                            kinds.push(k);
                        }
                    }
                    let data = serde_json::json!({ "notices": notices, "kinds": kinds });
                    return Some(Event::default().event("change").data(data.to_string()));
                }
                Ok(None) => {
                    tracing::debug!(doc = %self.id, "live stream ends: session over or no access");
                }
                Err(e) => tracing::warn!(doc = %self.id, error = %e, "live stream ends"),
            }
            self.done = true;
            return Some(Event::default().event("end").data("{}"));
        }
    }
}

/// "A", "A en B", "A, B en C".
fn join_names(names: &[String]) -> String {
    match names {
        [] => "Een partij".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} en {last}", rest.join(", ")),
    }
}

fn short(title: &str) -> String {
    if title.chars().count() > MAX_TITLE_CHARS {
        let mut s: String = title.chars().take(MAX_TITLE_CHARS - 1).collect();
        s.push('…');
        s
    } else {
        title.to_owned()
    }
}

/// The notices of one message, in Dutch: per kind of change, who made it and, for
/// sections, which one ("Gemeente Gouda heeft sectie Inleiding gewijzigd").
fn notices(old: &PlanView, new: &PlanView, batch: &[ChangeEvent], lagged: bool) -> Vec<String> {
    let mut by_kind: Vec<(ChangeKind, Vec<String>)> = Vec::new();
    for e in batch {
        let name = e.party.as_ref().map(|p| {
            new.names
                .get(p.as_str())
                .cloned()
                .unwrap_or_else(|| p.to_string())
        });
        let i = match by_kind.iter().position(|(k, _)| *k == e.kind) {
            Some(i) => i,
            None => {
                by_kind.push((e.kind, vec![]));
                by_kind.len() - 1
            }
        };
        if let Some(n) = name
            && !by_kind[i].1.contains(&n)
        {
            by_kind[i].1.push(n);
        }
    }
    let mut out: Vec<String> = by_kind
        .iter()
        .map(|(kind, names)| {
            let who = join_names(names);
            let has = if names.len() > 1 { "hebben" } else { "heeft" };
            let what = match kind {
                ChangeKind::Section => section_change(old, new),
                ChangeKind::Agreement => "de afspraken gewijzigd".into(),
                ChangeKind::Comment => "een opmerking geplaatst of bijgewerkt".into(),
                ChangeKind::Approval => "het plan goedgekeurd".into(),
                ChangeKind::Acl => "gewijzigd wie dit plan mag lezen of bewerken".into(),
                _ => "het plan gewijzigd".into(),
            };
            format!("{who} {has} {what}")
        })
        .collect();
    if out.is_empty() && lagged {
        out.push("Het plan is gewijzigd".into());
    }
    out.truncate(MAX_NOTICES);
    out
}

/// "sectie Inleiding gewijzigd", "sectie X toegevoegd", "3 secties gewijzigd".
fn section_change(old: &PlanView, new: &PlanView) -> String {
    let before: HashMap<&str, &[u8; 32]> = old
        .sections
        .iter()
        .map(|(id, _, h)| (id.as_str(), h))
        .collect();
    let mut changes: Vec<String> = Vec::new();
    for (id, title, h) in &new.sections {
        match before.get(id.as_str()) {
            None => changes.push(format!("sectie {} toegevoegd", short(title))),
            Some(old_h) if *old_h != h => {
                changes.push(format!("sectie {} gewijzigd", short(title)))
            }
            Some(_) => {}
        }
    }
    for (id, title, _) in &old.sections {
        if !new.sections.iter().any(|(n, _, _)| n == id) {
            changes.push(format!("sectie {} verwijderd", short(title)));
        }
    }
    match changes.len() {
        0 => "de secties gewijzigd".into(),
        1 => changes.remove(0),
        n => format!("{n} secties gewijzigd"),
    }
}

/// `GET /assets/live.js`: the live page's script.
pub(crate) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/live.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use regiosync_core::id::PartyName;
    use regiosync_node::events::Source;

    fn view(sections: &[(&str, &str, &str)]) -> PlanView {
        PlanView {
            sections: sections
                .iter()
                .map(|(id, title, text)| {
                    let mut h = Sha256::new();
                    h.update(title.as_bytes());
                    h.update([0]);
                    h.update(text.as_bytes());
                    ((*id).to_owned(), (*title).to_owned(), h.finalize().into())
                })
                .collect(),
            names: HashMap::from([("gemeente-gouda".into(), "Gemeente Gouda".into())]),
            heads: Vec::new(),
        }
    }

    #[test]
    fn a_page_version_is_read_strictly_and_bounded() {
        let h = "ab".repeat(32);
        let g = "01".repeat(32);
        assert_eq!(page_version(None), None);
        assert_eq!(page_version(Some("bericht=x")), None);
        assert_eq!(page_version(Some("versie=")), Some(None));
        // Sorted, whichever way the page listed them; the comma encoded or not.
        let want = Some(Some(vec![[0x01; 32], [0xab; 32]]));
        assert_eq!(page_version(Some(&format!("versie={h}%2C{g}"))), want);
        assert_eq!(page_version(Some(&format!("versie={g},{h}"))), want);
        // Not hex, too short, too many: unreadable, so "behind".
        assert_eq!(page_version(Some("versie=%3Cscript%3E")), Some(None));
        assert_eq!(page_version(Some("versie=abab")), Some(None));
        let many = vec![h.clone(); MAX_PAGE_HEADS + 1].join(",");
        assert_eq!(page_version(Some(&format!("versie={many}"))), Some(None));
    }

    #[test]
    fn notices_name_the_party_and_the_section() {
        let old = view(&[("s-1", "Inleiding", "a"), ("s-2", "Visie", "b")]);
        let new = view(&[("s-1", "Inleiding", "a2"), ("s-2", "Visie", "b")]);
        let by = |p: &str, kind| {
            let mut e = regiosync_node::events::ChangeEvent::clone(&template());
            e.party = Some(PartyName::new(p).unwrap());
            e.kind = kind;
            e
        };
        let one = notices(
            &old,
            &new,
            &[by("gemeente-gouda", ChangeKind::Section)],
            false,
        );
        assert_eq!(one, ["Gemeente Gouda heeft sectie Inleiding gewijzigd"]);
        let two = notices(
            &old,
            &old,
            &[
                by("gemeente-gouda", ChangeKind::Agreement),
                by("roc-midden", ChangeKind::Agreement),
            ],
            false,
        );
        assert_eq!(
            two,
            ["Gemeente Gouda en roc-midden hebben de afspraken gewijzigd"]
        );
        assert_eq!(notices(&old, &old, &[], true), ["Het plan is gewijzigd"]);
    }

    /// An event to vary (the type cannot be built outside its crate).
    fn template() -> ChangeEvent {
        let tmp = tempfile::tempdir().unwrap();
        regiosync_node::Node::init(
            tmp.path(),
            PartyName::new("gemeente-gouda").unwrap(),
            regiosync_core::id::Role::Kerngemeente,
            None,
        )
        .unwrap();
        let mut node = Node::open(tmp.path()).unwrap();
        let mut rx = node.events().subscribe();
        node.create_region("Regio").unwrap();
        let e = rx.try_recv().unwrap();
        assert_eq!(e.source, Source::Local);
        e
    }
}
