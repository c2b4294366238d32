//! The order of a plan's sections: an order key (`rank`) on each section map.
//!
//! Automerge lists have no move, and moving a section by deleting and re-inserting it
//! would make a new map and a new text object: comment cursors and concurrent edits
//! of the old text would be lost. So the `sections` list keeps its items where they
//! were inserted, and each section map may carry a `rank`, a fractional index: a
//! string that sorts between its neighbours' ranks. Moving a section writes one
//! `rank`, so concurrent edits of its text survive the move.
//!
//! **The rule** (docs/SCHEMA.md, "Order of sections"): readers show the sections that
//! have a valid rank first, sorted by rank (byte-wise), equal ranks by their position
//! in the `sections` list; then the sections without a valid rank, in list order. A
//! plan in which no section has a rank (every plan of earlier releases) therefore
//! reads in list order. List positions are the same on every node once they have the
//! same changes (the list is a CRDT), so every node shows one order: two sections
//! moved concurrently into the same gap get the same rank and stand in list order;
//! two concurrent moves of one section are two values of one register, of which
//! Automerge picks the same winner everywhere.
//!
//! **Ranks** are 1 to [`MAX_RANK_BYTES`] characters of `0-9a-z`, not ending in `0`:
//! base-36 digits of a fraction between 0 and 1 (`"i"` is 18/36). Without a trailing
//! `0` every two different ranks have a third between them, and byte-wise order is
//! the order of the fractions. Anything else (another type, another character, a
//! longer string) reads as no rank, so a hostile writer's value costs a reader at
//! most a comparison of 64 bytes; received changes that write such a value are
//! refused ([`super::received`]).
//!
//! Written by hand (about 60 lines) rather than taken from a crate: the format has to
//! be written down exactly for other implementations and checked on received
//! changes, so it is ours to fix, independent of a crate's encoding and versions. The
//! midpoint is the one of David Greenspan's "Implementing Fractional Indexing"
//! (without its integer part).

/// Longest valid rank, in bytes. Writers give the sections new, short ranks
/// ([`spread`]) before one would grow past it.
pub const MAX_RANK_BYTES: usize = 64;

/// The digits of a rank, in order.
const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const BASE: u8 = 36;

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'z' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Whether `s` is a valid rank: 1 to [`MAX_RANK_BYTES`] characters of `0-9a-z`, not
/// ending in `0`.
pub fn is_valid_rank(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_RANK_BYTES
        && s.bytes().all(|c| digit(c).is_some())
        && !s.ends_with('0')
}

/// Whether a received change's operation on a `rank` key keeps to the format: a put
/// of a valid rank, or a delete ([`super::received::check_change`]).
pub(crate) fn is_valid_rank_op(action: &automerge::legacy::OpType) -> bool {
    use automerge::ScalarValue;
    use automerge::legacy::OpType;
    match action {
        OpType::Put(ScalarValue::Str(s)) => is_valid_rank(s),
        OpType::Delete => true,
        _ => false,
    }
}

/// A rank strictly between `before` and `after` (`None`: the start or the end), or
/// `None` if there is none that is at most [`MAX_RANK_BYTES`] long, or the bounds are
/// invalid or not in order (equal ranks have nothing between them).
pub(crate) fn between(before: Option<&str>, after: Option<&str>) -> Option<String> {
    let valid = |r: Option<&str>| r.is_none_or(is_valid_rank);
    if !valid(before) || !valid(after) {
        return None;
    }
    if let (Some(a), Some(b)) = (before, after)
        && a >= b
    {
        return None;
    }
    let to_digits = |s: &str| s.bytes().filter_map(digit).collect::<Vec<u8>>();
    let a = before.map(to_digits).unwrap_or_default();
    let b = after.map(to_digits);
    let m = midpoint(&a, b.as_deref());
    (m.len() <= MAX_RANK_BYTES).then(|| {
        m.iter()
            .map(|&d| char::from(DIGITS[usize::from(d)]))
            .collect()
    })
}

/// The digits of a fraction strictly between `a` and `b` (`None`: 1), for `a < b`,
/// neither ending in a zero digit; the result does not end in one either.
fn midpoint(a: &[u8], b: Option<&[u8]>) -> Vec<u8> {
    if let Some(b) = b {
        // The common prefix (`a` padded with zeros) is kept; `a < b` ends it before
        // the end of `b`.
        let n = b
            .iter()
            .enumerate()
            .take_while(|&(i, &d)| a.get(i).copied().unwrap_or(0) == d)
            .count();
        if n > 0 {
            let mut out = b[..n].to_vec();
            out.extend(midpoint(a.get(n..).unwrap_or(&[]), Some(&b[n..])));
            return out;
        }
    }
    let da = a.first().copied().unwrap_or(0);
    let db = b.and_then(|b| b.first().copied()).unwrap_or(BASE);
    if db > da + 1 {
        return vec![(da + db) / 2];
    }
    // Consecutive first digits: `b`'s first digit alone is between if `b` goes on,
    // else `a`'s first digit followed by something above the rest of `a`.
    if let Some(b) = b
        && b.len() > 1
    {
        return vec![b[0]];
    }
    let mut out = vec![da];
    out.extend(midpoint(a.get(1..).unwrap_or(&[]), None));
    out
}

/// `n` valid ranks in increasing order, evenly spread and short (two characters for
/// up to 160 sections), with room between them for later moves.
pub(crate) fn spread(n: usize) -> Vec<String> {
    let slots = n as u128 + 1;
    let mut width = 1u32;
    while u128::from(BASE).pow(width) / slots < 8 && width < 24 {
        width += 1;
    }
    let step = (u128::from(BASE).pow(width) / slots).max(1);
    (1..=n as u128)
        .map(|i| {
            let mut v = i * step;
            let mut digits = vec![0u8; width as usize];
            for d in digits.iter_mut().rev() {
                *d = (v % u128::from(BASE)) as u8;
                v /= u128::from(BASE);
            }
            while digits.last() == Some(&0) {
                digits.pop();
            }
            digits
                .iter()
                .map(|&d| char::from(DIGITS[usize::from(d)]))
                .collect()
        })
        .collect()
}

/// The order in which to show items of the `sections` list, given each one's rank as
/// stored (`None`, or an invalid one: no rank): the indices into `ranks`, ranked
/// items first by (rank, list position), then the others by list position.
pub(crate) fn display_order<S: AsRef<str>>(ranks: &[Option<S>]) -> Vec<usize> {
    let key = |i: usize| {
        let r = ranks[i]
            .as_ref()
            .map(AsRef::as_ref)
            .filter(|r| is_valid_rank(r));
        (r.is_none(), r, i)
    };
    let mut order: Vec<usize> = (0..ranks.len()).collect();
    order.sort_by(|&x, &y| key(x).cmp(&key(y)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_checked_for_alphabet_length_and_trailing_zero() {
        for ok in ["i", "0i", "zz", &"a".repeat(MAX_RANK_BYTES)] {
            assert!(is_valid_rank(ok), "{ok:?}");
        }
        for bad in [
            "",
            "0",
            "a0",
            "A",
            "a b",
            "é",
            "a\u{0}",
            &"a".repeat(MAX_RANK_BYTES + 1),
        ] {
            assert!(!is_valid_rank(bad), "{bad:?}");
        }
    }

    #[test]
    fn between_is_strictly_between_and_valid_wherever_it_is_asked() {
        let ranks = spread(5);
        assert_eq!(ranks.len(), 5);
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
        let cases: Vec<(Option<&str>, Option<&str>)> = vec![
            (None, None),
            (None, Some("1")),
            (None, Some("01")),
            (Some("z"), None),
            (Some("zzz"), None),
            (Some("a"), Some("b")),
            (Some("a"), Some("a1")),
            (Some("a"), Some("az")),
            (Some("az"), Some("b")),
            (Some("1"), Some("2")),
            (Some("0z"), Some("1")),
            (Some("a1"), Some("a2")),
        ];
        for (a, b) in cases {
            let m = between(a, b).unwrap_or_else(|| panic!("{a:?} {b:?}"));
            assert!(is_valid_rank(&m), "{a:?} {b:?} → {m:?}");
            assert!(a.is_none_or(|a| a < m.as_str()), "{a:?} {b:?} → {m:?}");
            assert!(b.is_none_or(|b| m.as_str() < b), "{a:?} {b:?} → {m:?}");
        }
        assert_eq!(between(Some("a"), Some("a")), None);
        assert_eq!(between(Some("b"), Some("a")), None);
        assert_eq!(between(Some("a0"), None), None, "invalid bound");
    }

    #[test]
    fn repeated_moves_into_one_gap_grow_ranks_slowly_and_end_in_none() {
        // Always to the front, and always just after the first: the two ways a gap
        // narrows. Ranks grow about one character per five moves.
        let mut first = "i".to_owned();
        let mut moves = 0;
        while let Some(r) = between(None, Some(&first)) {
            assert!(r < first && is_valid_rank(&r));
            first = r;
            moves += 1;
        }
        assert!(moves > 150, "{moves}");
        let (lo, mut hi) = ("i".to_owned(), "j".to_owned());
        let mut moves = 0;
        while let Some(r) = between(Some(&lo), Some(&hi)) {
            assert!(lo < r && r < hi && is_valid_rank(&r));
            hi = r;
            moves += 1;
        }
        assert!(moves > 150, "{moves}");
    }

    #[test]
    fn ranked_sections_come_first_then_the_others_in_list_order() {
        let ranks = [None, Some("m"), Some("b"), Some("bad!"), Some("m"), None];
        assert_eq!(display_order(&ranks), [2, 1, 4, 0, 3, 5]);
        let none: [Option<&str>; 3] = [None, None, None];
        assert_eq!(display_order(&none), [0, 1, 2]);
        let many = spread(1000);
        assert!(many.windows(2).all(|w| w[0] < w[1]));
        assert!(many.iter().all(|r| is_valid_rank(r) && r.len() <= 3));
    }
}
