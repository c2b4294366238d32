//! Login throttling: failed sign-ins are counted per account name and per client
//! address in a window; past the limit, sign-ins for that name or from that address
//! are refused without checking the password until the window ends. In memory
//! (a restart forgets it) and bounded: at most [`MAX_ENTRIES`] keys, the oldest
//! dropped first, so a flood of names cannot exhaust memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most keys remembered.
pub const MAX_ENTRIES: usize = 10_000;

/// The limits.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleLimits {
    /// Failures per account name in a window.
    pub per_user: u32,
    /// Failures per client address in a window (a shared office address has many
    /// staff, so it is higher).
    pub per_addr: u32,
    /// The window.
    pub window: Duration,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            per_user: 5,
            per_addr: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    since: Instant,
}

/// Counts failed sign-ins.
#[derive(Debug, Default)]
pub struct Throttle {
    limits: ThrottleLimits,
    entries: HashMap<Key, Entry>,
}

impl Throttle {
    /// An empty throttle with these limits.
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
        }
    }

    /// `Some(seconds to wait)` if a sign-in for `user` from `addr` is refused now.
    pub fn check(&mut self, user: &str, addr: IpAddr, now: Instant) -> Option<u64> {
        let limits = self.limits;
        [
            (Key::User(user.to_owned()), limits.per_user),
            (Key::Addr(addr), limits.per_addr),
        ]
        .into_iter()
        .filter_map(|(k, limit)| {
            let e = self.entries.get(&k)?;
            let ends = e.since + limits.window;
            (e.failures >= limit && ends > now).then(|| ends.duration_since(now).as_secs().max(1))
        })
        .max()
    }

    /// Records a failed sign-in.
    pub fn failed(&mut self, user: &str, addr: IpAddr, now: Instant) {
        let window = self.limits.window;
        for k in [Key::User(user.to_owned()), Key::Addr(addr)] {
            if !self.entries.contains_key(&k) && self.entries.len() >= MAX_ENTRIES {
                self.make_room(now);
            }
            let e = self.entries.entry(k).or_insert(Entry {
                failures: 0,
                since: now,
            });
            if now.duration_since(e.since) >= window {
                *e = Entry {
                    failures: 0,
                    since: now,
                };
            }
            e.failures = e.failures.saturating_add(1);
        }
    }

    /// Forgets the failures of an account after a successful sign-in (not those of
    /// the address: one person's success does not clear a guesser's count).
    pub fn succeeded(&mut self, user: &str) {
        self.entries.remove(&Key::User(user.to_owned()));
    }

    /// Drops expired entries, and if that is not enough the oldest one.
    fn make_room(&mut self, now: Instant) {
        let window = self.limits.window;
        self.entries
            .retain(|_, e| now.duration_since(e.since) < window);
        if self.entries.len() >= MAX_ENTRIES
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.since)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn per_user_then_window_ends() {
        let mut t = Throttle::new(ThrottleLimits::default());
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(t.check("j.bakker", A, now), None);
            t.failed("j.bakker", A, now);
        }
        assert!(t.check("j.bakker", A, now).is_some());
        // From another address too: the account is throttled.
        assert!(t.check("j.bakker", B, now).is_some());
        // Another account from the first address is not (yet).
        assert_eq!(t.check("a.jansen", A, now), None);
        let later = now + Duration::from_secs(15 * 60 + 1);
        assert_eq!(t.check("j.bakker", A, later), None);
    }

    #[test]
    fn per_address_and_success_clears_only_the_user() {
        let mut t = Throttle::new(ThrottleLimits::default());
        let now = Instant::now();
        for i in 0..20 {
            t.failed(&format!("naam{i}"), A, now);
        }
        assert!(t.check("iemand", A, now).is_some());
        assert_eq!(t.check("iemand", B, now), None);
        t.succeeded("naam1");
        assert!(t.check("naam1", A, now).is_some());
    }

    #[test]
    fn bounded() {
        let mut t = Throttle::new(ThrottleLimits::default());
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES + 500) {
            t.failed(
                &format!("naam{i}"),
                A,
                now + Duration::from_millis(i as u64),
            );
        }
        assert!(t.len() <= MAX_ENTRIES);
    }
}
