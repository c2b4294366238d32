//! Raw Automerge sync in memory: the floor. No network, no store, no signatures, no
//! sealing: two documents exchange `sync::Message`s (encoded and decoded, so the bytes
//! are real) until neither has anything to say.

use std::time::Instant;

use anyhow::{Context, bail};
use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};

/// What one in-memory sync did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Synced {
    pub(crate) ms: f64,
    pub(crate) bytes: usize,
    /// Message exchanges of the document that needed the most (documents sync side
    /// by side, as they would over one connection).
    pub(crate) round_trips: usize,
}

/// One document pair with the sync states each side keeps for the other.
pub(crate) struct Pair {
    pub(crate) source: Automerge,
    pub(crate) target: Automerge,
    source_state: sync::State,
    target_state: sync::State,
}

impl Pair {
    /// A source document and an empty target.
    pub(crate) fn fresh(source: Automerge) -> Self {
        Self {
            source,
            target: Automerge::new(),
            source_state: sync::State::new(),
            target_state: sync::State::new(),
        }
    }

    /// A reconnect: both sides keep what they learnt of each other (the persisted
    /// part of the sync state), as automerge-repo does between connections.
    fn reconnect(&mut self) -> anyhow::Result<()> {
        self.source_state = sync::State::decode(&self.source_state.encode())
            .context("decoding a persisted sync state")?;
        self.target_state = sync::State::decode(&self.target_state.encode())
            .context("decoding a persisted sync state")?;
        Ok(())
    }

    /// Exchanges messages until both are quiet: (bytes, round trips).
    fn run(&mut self) -> anyhow::Result<(usize, usize)> {
        let (mut bytes, mut rounds) = (0, 0);
        loop {
            let mut moved = false;
            if let Some(m) = self.target.generate_sync_message(&mut self.target_state) {
                let b = m.encode();
                bytes += b.len();
                self.source
                    .receive_sync_message(&mut self.source_state, sync::Message::decode(&b)?)?;
                moved = true;
            }
            if let Some(m) = self.source.generate_sync_message(&mut self.source_state) {
                let b = m.encode();
                bytes += b.len();
                self.target
                    .receive_sync_message(&mut self.target_state, sync::Message::decode(&b)?)?;
                moved = true;
            }
            if !moved {
                break;
            }
            rounds += 1;
            if rounds > 10_000 {
                bail!("automerge sync did not settle");
            }
        }
        Ok((bytes, rounds))
    }
}

/// Syncs every pair, one after the other; checks both sides end with the same heads.
pub(crate) fn sync_all(pairs: &mut [Pair]) -> anyhow::Result<Synced> {
    let t = Instant::now();
    let mut out = Synced::default();
    for p in pairs.iter_mut() {
        let (b, r) = p.run()?;
        out.bytes += b;
        out.round_trips = out.round_trips.max(r);
    }
    out.ms = t.elapsed().as_secs_f64() * 1000.0;
    for p in pairs.iter() {
        if p.source.get_heads() != p.target.get_heads() {
            bail!("automerge sync ended with different heads");
        }
    }
    Ok(out)
}

/// A reconnect of every pair (sync states kept), then a sync.
pub(crate) fn reconnect_all(pairs: &mut [Pair]) -> anyhow::Result<Synced> {
    for p in pairs.iter_mut() {
        p.reconnect()?;
    }
    sync_all(pairs)
}

/// Edit-to-visible in memory: an edit on one of `n` documents, synced to the others
/// one by one (the editor's sync states kept). Returns the latency of each edit in ms.
pub(crate) fn propagation(
    base: &Automerge,
    n: usize,
    edits: usize,
    mut edit: impl FnMut(&mut Automerge, usize) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<f64>> {
    // Copies of `base`, each with its own actor, as each node would have.
    let mut docs: Vec<Automerge> = (0..n)
        .map(|_| base.clone().with_actor(automerge::ActorId::random()))
        .collect();
    // states[i][j]: what i knows of j.
    let mut states: Vec<Vec<sync::State>> = (0..n)
        .map(|_| (0..n).map(|_| sync::State::new()).collect())
        .collect();
    let mut lat = Vec::with_capacity(edits);
    for k in 0..edits {
        let from = k % n;
        let t = Instant::now();
        edit(&mut docs[from], k)?;
        let heads: Vec<ChangeHash> = docs[from].get_heads();
        for to in (0..n).filter(|j| *j != from) {
            let mut rounds = 0;
            loop {
                let mut moved = false;
                let (a, b) = two_mut(&mut docs, from, to);
                let (sa, sb) = two_states(&mut states, from, to);
                if let Some(m) = a.generate_sync_message(sa) {
                    b.receive_sync_message(sb, sync::Message::decode(&m.encode())?)?;
                    moved = true;
                }
                if let Some(m) = b.generate_sync_message(sb) {
                    a.receive_sync_message(sa, sync::Message::decode(&m.encode())?)?;
                    moved = true;
                }
                rounds += 1;
                if !moved || rounds > 1_000 {
                    break;
                }
            }
            if docs[to].get_heads() != heads {
                bail!("edit {k} did not reach document {to}");
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(lat)
}

fn two_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    if a < b {
        let (l, r) = v.split_at_mut(b);
        (&mut l[a], &mut r[0])
    } else {
        let (l, r) = v.split_at_mut(a);
        (&mut r[0], &mut l[b])
    }
}

/// `states[a][b]` and `states[b][a]`.
fn two_states(
    states: &mut [Vec<sync::State>],
    a: usize,
    b: usize,
) -> (&mut sync::State, &mut sync::State) {
    let (ra, rb) = two_mut(states, a, b);
    (&mut ra[b], &mut rb[a])
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ROOT, ReadDoc};

    fn doc(n: usize) -> Automerge {
        let mut d = Automerge::new();
        for i in 0..n {
            let mut t = d.transaction();
            t.put(ROOT, format!("k{i}"), i as i64).unwrap();
            t.commit();
        }
        d
    }

    #[test]
    fn catch_up_then_idle_reconnect_is_cheaper() {
        let mut pairs: Vec<Pair> = (0..3).map(|_| Pair::fresh(doc(20))).collect();
        let first = sync_all(&mut pairs).unwrap();
        assert!(first.bytes > 0 && first.round_trips >= 1);
        assert_eq!(
            pairs[0]
                .target
                .get(ROOT, "k19")
                .unwrap()
                .unwrap()
                .0
                .as_i64(),
            Some(19)
        );
        let again = reconnect_all(&mut pairs).unwrap();
        assert!(again.bytes < first.bytes, "{again:?} vs {first:?}");
    }

    #[test]
    fn propagation_reaches_every_document() {
        let lat = propagation(&doc(1), 3, 4, |d, k| {
            let mut t = d.transaction();
            t.put(ROOT, "k", k as i64)?;
            t.commit();
            Ok(())
        })
        .unwrap();
        assert_eq!(lat.len(), 4);
    }
}
