//! Header maps and read buffers kept for reuse on the thread that gave them back.
//!
//! The lean path builds two `HeaderMap`s per request (the request's, from the client's head,
//! and the response's, from the upstream's) and drops both once they are written out. Each
//! is two allocations (its index table and its entries), so four allocator round trips per
//! request went to maps alone. A map written out is cleared (its entries dropped, its
//! memory kept) and put on this thread's short list; the next head takes it from there.
//!
//! An upstream connection reads its responses into a 16 KiB buffer, which it gives up when it
//! goes back to the pool (an idle pooled connection holds no buffer), and a client connection
//! gives up its head buffer while it waits for the next request. Freeing those buffers and
//! allocating the next ones cost four allocations per request (each buffer, the upstream's
//! too large for glibc's per-thread cache, and for each `bytes`' shared record, made again
//! the first time a new buffer is split: 11.0 to 7.0 per request in `benches/profile`); a
//! buffer given up now goes on this thread's list instead. It
//! may still be shared with the bytes of the message read into it (header values, a body
//! chunk being written); it is handed out again only once it is not
//! (`BytesMut::try_reclaim`), and waits on the list until then.
//!
//! A buffer handed out is empty (its length is zero; a read fills it from its start), so
//! nothing of the connection that used it before can be read from it, on this connection or
//! in what it forwards.
//!
//! A client connection that ends gives its head buffer back too, and the list of its heads'
//! header ranges (`server::Spans`): a connection per request otherwise allocated both, and
//! `bytes`' shared record for the buffer, for each request.
//!
//! Only so many of each are kept, and only small maps, head buffers and range lists, so what
//! a thread holds is bounded (16 maps of at most 48 headers, 64 upstream read buffers: 1 MiB,
//! 64 head buffers of at most 4 KiB, 64 range lists of at most 48 ranges: 24 KiB) whatever
//! the traffic or the number of connections.

use std::cell::RefCell;
use std::thread::LocalKey;

use bytes::BytesMut;
use http::HeaderMap;

use super::server::Spans;

/// Spare maps kept per thread.
const MAP_SPARES: usize = 16;

/// Spare buffers of each size kept per thread: one for each of 64 requests in flight on it
/// at once. With 16, a burst of 64 responses gave back more than the list kept, and the next
/// burst allocated again (9.3 allocations per request in `benches/profile` against 9.0).
const BUFFER_SPARES: usize = 64;

/// A map whose capacity grew past this is dropped rather than kept (a head with many
/// headers is rare; its map should not stay around for ever).
const KEEP_CAPACITY: usize = 48;

/// Room an upstream connection's read buffer is made with, and how many bytes a read from
/// the upstream asks for at a time.
pub(crate) const READ: usize = 16 * 1024;

/// Room a client connection's buffer is made with for a request head, and how many bytes a
/// read of a head asks for at a time: small heads fit in one read (larger ones take more
/// reads), and the buffer is small enough that the many connections of a burst do not leave
/// large holes in the heap.
pub(crate) const HEAD: usize = 1024;

type List<T> = RefCell<Vec<T>>;

thread_local! {
    static MAPS: List<HeaderMap> = const { RefCell::new(Vec::new()) };
    static READ_BUFFERS: List<BytesMut> = const { RefCell::new(Vec::new()) };
    static HEAD_BUFFERS: List<BytesMut> = const { RefCell::new(Vec::new()) };
    static SPANS: List<Spans> = const { RefCell::new(Vec::new()) };
}

/// Ranges a new list is made with: a head with more grows it.
const SPANS_ROOM: usize = 16;

/// The last spare on `list`, if this thread has one (during its teardown it has none).
fn pop<T>(list: &'static LocalKey<List<T>>) -> Option<T> {
    list.try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten()
}

/// Puts `spare` on `list` if the list has fewer than `keep` (else, or during the thread's
/// teardown, it is dropped).
fn push<T>(list: &'static LocalKey<List<T>>, spare: T, keep: usize) {
    let _ = list.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut()
            && s.len() < keep
        {
            s.push(spare);
        }
    });
}

/// An empty map with room for `capacity` headers: a spare one if this thread has one.
pub(crate) fn take(capacity: usize) -> HeaderMap {
    match pop(&MAPS) {
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
    push(&MAPS, map, MAP_SPARES);
}

/// An empty buffer with room for [`READ`] bytes, for an upstream connection's responses: a
/// spare one if this thread has one that nothing shares any more.
pub(crate) fn read_buffer() -> BytesMut {
    buffer(&READ_BUFFERS, READ)
}

/// Keeps `buf`, an upstream connection's, for [`read_buffer`] if it is empty and the list
/// is not full.
pub(crate) fn give_read_buffer(buf: BytesMut) {
    give_buffer(&READ_BUFFERS, buf, usize::MAX);
}

/// An empty buffer with room for [`HEAD`] bytes, for a client connection's next request
/// head: a spare one if this thread has one that nothing shares any more.
pub(crate) fn head_buffer() -> BytesMut {
    buffer(&HEAD_BUFFERS, HEAD)
}

/// Keeps `buf`, a client connection's, for [`head_buffer`] if it is empty, no larger than a
/// few heads (one that grew for a body is dropped) and the list is not full.
pub(crate) fn give_head_buffer(buf: BytesMut) {
    give_buffer(&HEAD_BUFFERS, buf, 4 * HEAD);
}

/// An empty list for a connection's header ranges: a spare one if this thread has one.
pub(crate) fn spans() -> Spans {
    pop(&SPANS).unwrap_or_else(|| Vec::with_capacity(SPANS_ROOM))
}

/// Clears `spans` and keeps it for [`spans`], if it is small and the list is not full.
pub(crate) fn give_spans(mut spans: Spans) {
    if spans.capacity() == 0 || spans.capacity() > KEEP_CAPACITY {
        return;
    }
    spans.clear();
    push(&SPANS, spans, BUFFER_SPARES);
}

fn buffer(list: &'static LocalKey<List<BytesMut>>, room: usize) -> BytesMut {
    let spare = list
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            // A buffer given back may still be shared with the bytes of a message being
            // handled; one that is stays for later.
            let at = s.iter_mut().position(|buf| buf.try_reclaim(room))?;
            Some(s.swap_remove(at))
        })
        .ok()
        .flatten();
    spare.unwrap_or_else(|| BytesMut::with_capacity(room))
}

fn give_buffer(list: &'static LocalKey<List<BytesMut>>, buf: BytesMut, max: usize) {
    // Its capacity is what is left after the bytes split off it (all it was made with again
    // once they are gone).
    if buf.is_empty() && buf.capacity() > 0 && buf.capacity() <= max {
        push(list, buf, BUFFER_SPARES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::{CONTENT_TYPE, HOST};

    fn spares() -> usize {
        MAPS.with(|s| s.borrow().len())
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
        for _ in 0..MAP_SPARES + 5 {
            give(HeaderMap::with_capacity(8));
        }
        assert_eq!(spares(), MAP_SPARES);
    }

    #[test]
    fn range_lists_come_back_empty_and_only_small_ones_are_kept() {
        let spare = |n| SPANS.with(|s| s.borrow().len()) == n;
        let mut list = spans();
        assert!(list.capacity() >= SPANS_ROOM);
        list.push(Default::default());
        let at = list.as_ptr() as usize;
        give_spans(list);
        assert!(spare(1));
        let again = spans();
        assert!(again.is_empty(), "nothing of the last head");
        assert_eq!(again.as_ptr() as usize, at, "the same allocation");
        assert!(spare(0));
        give_spans(Vec::with_capacity(KEEP_CAPACITY + 1));
        give_spans(Vec::new());
        assert!(spare(0));
        for _ in 0..BUFFER_SPARES + 5 {
            give_spans(Vec::with_capacity(4));
        }
        assert!(spare(BUFFER_SPARES));
        drop(again);
    }

    #[test]
    fn a_closed_connections_head_buffer_is_reused() {
        let mut buf = head_buffer();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let at = buf.as_ptr() as usize;
        let head = buf.split().freeze();
        give_head_buffer(buf);
        drop(head);
        let again = head_buffer();
        assert_eq!(again.as_ptr() as usize, at);
        assert!(again.is_empty());
        // One with unread bytes is not kept.
        let mut unread = again;
        unread.extend_from_slice(b"GET");
        give_head_buffer(unread);
        assert_eq!(HEAD_BUFFERS.with(|s| s.borrow().len()), 0);
    }

    fn read_spares() -> usize {
        READ_BUFFERS.with(|s| s.borrow().len())
    }

    #[test]
    fn a_read_buffer_is_reused_once_nothing_shares_it() {
        let mut buf = read_buffer();
        assert!(buf.capacity() >= READ);
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\nbody");
        let at = buf.as_ptr() as usize;
        // The response's head and body are handed out; the buffer is empty and given back.
        let response = buf.split().freeze();
        give_read_buffer(buf);
        assert_eq!(read_spares(), 1);
        // Still shared with the response: the next read gets another buffer, and the
        // shared one stays on the list.
        let other = read_buffer();
        assert_ne!(other.as_ptr() as usize, at);
        assert_eq!(read_spares(), 1);
        assert_eq!(&response[..], b"HTTP/1.1 200 OK\r\n\r\nbody");
        drop(response);
        // Nothing shares it now: it comes back, empty, with its room, from its start.
        let again = read_buffer();
        assert_eq!(again.as_ptr() as usize, at);
        assert!(again.is_empty());
        assert!(again.capacity() >= READ);
        assert_eq!(read_spares(), 0);
        drop(other);
    }

    #[test]
    fn unfinished_and_surplus_read_buffers_are_dropped() {
        let mut unread = read_buffer();
        unread.extend_from_slice(b"HTTP/1.1");
        give_read_buffer(unread);
        give_read_buffer(BytesMut::new());
        assert_eq!(read_spares(), 0);
        for _ in 0..BUFFER_SPARES + 5 {
            give_read_buffer(BytesMut::with_capacity(READ));
        }
        assert_eq!(read_spares(), BUFFER_SPARES);
    }
}
