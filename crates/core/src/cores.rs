//! Work split over the machine's cores: signature checks, key unwrapping and the
//! sealing of bundled changes, which a catch-up does by the thousand.
//!
//! Hand-written with `std::thread::scope` rather than a thread-pool crate: one split
//! per received message on machines of two to a few cores needs no pool, and the
//! scoped threads borrow the caller's data without `'static` bounds.
//!
//! ```
//! let squares = regiosync_core::cores::map(&[1u64, 2, 3], 1, |x| x * x);
//! assert_eq!(squares, vec![1, 4, 9]);
//! ```

/// `f` applied to every item, in order, split over the cores in runs of at least
/// `min_per_thread` items (fewer are not worth a thread's start, ≈20 µs); on one
/// core, or with few items, on the calling thread.
pub fn map<T: Sync, R: Send>(
    items: &[T],
    min_per_thread: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = cores.min(items.len() / min_per_thread.max(1));
    if threads < 2 {
        return items.iter().map(&f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let parts: Vec<_> = items
            .chunks(per_thread)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| match p.join() {
                Ok(r) => r,
                // `f` panicked: pass the panic on, as a call on this thread would.
                Err(e) => std::panic::resume_unwind(e),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_order_of_the_items_on_any_number_of_threads() {
        let items: Vec<u32> = (0..1001).collect();
        for min in [1, 7, 100, 2000] {
            let out = super::map(&items, min, |x| x * 2);
            assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        }
        assert!(super::map(&[] as &[u32], 1, |x| *x).is_empty());
    }
}
