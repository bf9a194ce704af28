//! Header maps kept for reuse on the thread that dropped them.
//!
//! The lean path builds two `HeaderMap`s per request (the request's, from the client's head,
//! and the response's, from the upstream's) and drops both once they are written out. Each
//! is two allocations (its index table and its entries), so four allocator round trips per
//! request went to maps alone. A map written out is cleared (its entries dropped, its
//! memory kept) and put on this thread's short list; the next head takes it from there.
//! Only small maps are kept, and only a few of them, so what a thread holds is bounded
//! (16 maps of at most 48 headers) whatever the traffic.

use std::cell::RefCell;

use http::HeaderMap;

/// Spare maps kept per thread.
const SPARES: usize = 16;

/// A map whose capacity grew past this is dropped rather than kept (a head with many
/// headers is rare; its map should not stay around for ever).
const KEEP_CAPACITY: usize = 48;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for `capacity` headers: a spare one if this thread has one.
pub(crate) fn take(capacity: usize) -> HeaderMap {
    let spare = SPARE
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten();
    match spare {
        Some(mut map) => {
            // Empty, so this makes room for `capacity` in all.
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Clears `map` and keeps it for [`take`], if it is small and the list is not full.
pub(crate) fn give(mut map: HeaderMap) {
    let capacity = map.capacity();
    if capacity == 0 || capacity > KEEP_CAPACITY {
        return;
    }
    map.clear();
    // During the thread's teardown the list may be gone: the map is then just dropped.
    let _ = SPARE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut()
            && s.len() < SPARES
        {
            s.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::{CONTENT_TYPE, HOST};

    fn spares() -> usize {
        SPARE.with(|s| s.borrow().len())
    }

    #[test]
    fn a_given_map_comes_back_empty_with_its_room() {
        let mut map = take(10);
        map.insert(HOST, HeaderValue::from_static("a.example"));
        map.append(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let room = map.capacity();
        let before = spares();
        give(map);
        assert_eq!(spares(), before + 1);
        let again = take(4);
        assert!(
            again.is_empty(),
            "a reused map carries nothing of its last message"
        );
        assert!(again.get(HOST).is_none());
        assert_eq!(again.capacity(), room);
        assert_eq!(spares(), before);
        // More room than the spare has: it grows.
        give(again);
        let bigger = take(40);
        assert!(bigger.capacity() >= 40);
    }

    #[test]
    fn large_and_surplus_maps_are_dropped() {
        let before = spares();
        give(HeaderMap::with_capacity(200));
        give(HeaderMap::new());
        assert_eq!(spares(), before);
        for _ in 0..SPARES + 5 {
            give(HeaderMap::with_capacity(8));
        }
        assert_eq!(spares(), SPARES);
    }
}
