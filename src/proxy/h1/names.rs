//! The header names of the last heads read on this thread, by position, so that a head whose
//! names come in the order the last one's did gets them without parsing each name again.
//!
//! A client sends the same names in the same order on every request (`Host`, `User-Agent`,
//! `Accept`, ...), and an upstream on every response (`Server`, `Date`, `Content-Type`, ...).
//! `HeaderName::from_bytes` checks and lower-cases each name, and finds a standard name by
//! comparing it with the standard ones of its length: about 100 instructions a name, and for
//! a name that is not standard (`X-Request-Id`, `X-Powered-By`) an allocation too. A name
//! found here at its position, byte for byte as it was received, is the same `HeaderName`
//! (`from_bytes` depends on the bytes alone), and costs a comparison and a clone (a copy, or
//! a reference count for a name that is not standard).
//!
//! Request heads and response heads have a list each (their names differ). A name that
//! differs from the one kept at its position replaces it; only the first [`SLOTS`]
//! positions, and names of at most [`LONGEST`] bytes, are kept, so what a thread holds is
//! bounded (about 2 KiB) whatever the traffic. A head whose names differ from the last one's
//! costs what it did without the lists, and a comparison more.

use std::cell::Cell;
use std::thread::LocalKey;

use http::HeaderName;
use http::header::InvalidHeaderName;

/// Positions kept per list: most heads have fewer headers.
const SLOTS: usize = 16;

/// The longest name kept (`Access-Control-Allow-Credentials` is 32 bytes).
const LONGEST: usize = 32;

/// One position's last name: its bytes as received, and the name they made.
struct Slot {
    len: u8,
    raw: [u8; LONGEST],
    name: Option<HeaderName>,
}

impl Slot {
    const EMPTY: Slot = Slot {
        len: 0,
        raw: [0; LONGEST],
        name: None,
    };
}

/// The names of the last heads, by position.
pub(crate) struct Seen([Slot; SLOTS]);

impl Seen {
    const EMPTY: Seen = Seen([const { Slot::EMPTY }; SLOTS]);

    /// The name of `raw`, the head's `i`th header: the one kept at `i` if it was made from
    /// the same bytes; else parsed, and kept at `i`.
    #[inline]
    fn name(&mut self, i: usize, raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        let Some(slot) = self.0.get_mut(i) else {
            return HeaderName::from_bytes(raw);
        };
        if let Some(name) = &slot.name
            && slot.raw[..usize::from(slot.len)] == *raw
        {
            return Ok(name.clone());
        }
        let name = HeaderName::from_bytes(raw)?;
        if raw.len() <= LONGEST {
            slot.raw[..raw.len()].copy_from_slice(raw);
            slot.len = raw.len() as u8;
            slot.name = Some(name.clone());
        }
        Ok(name)
    }
}

type List = Cell<Option<Box<Seen>>>;

thread_local! {
    static REQUESTS: List = const { Cell::new(None) };
    static RESPONSES: List = const { Cell::new(None) };
}

/// A thread's list, taken for one head (two thread-local accesses a head rather than one a
/// name) and put back when dropped.
pub(crate) struct Names {
    seen: Option<Box<Seen>>,
    list: &'static LocalKey<List>,
}

impl Names {
    /// `HeaderName::from_bytes(raw)` for the head's `i`th header.
    #[inline]
    pub(crate) fn name(&mut self, i: usize, raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        match &mut self.seen {
            Some(seen) => seen.name(i, raw),
            None => HeaderName::from_bytes(raw),
        }
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        if let Some(seen) = self.seen.take() {
            let _ = self.list.try_with(|list| list.set(Some(seen)));
        }
    }
}

/// This thread's names of request heads.
pub(crate) fn requests() -> Names {
    take(&REQUESTS)
}

/// This thread's names of response heads.
pub(crate) fn responses() -> Names {
    take(&RESPONSES)
}

fn take(list: &'static LocalKey<List>) -> Names {
    // The first head on a thread makes its list; so does each during the thread's teardown,
    // when the lists are gone.
    let seen = list
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| Box::new(Seen::EMPTY));
    Names {
        seen: Some(seen),
        list,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_name_is_the_one_its_bytes_make() {
        let mut seen = Seen::EMPTY;
        let heads: &[&[&[u8]]] = &[
            &[b"Host", b"User-Agent", b"X-Request-Id"],
            // The same names: all found.
            &[b"Host", b"User-Agent", b"X-Request-Id"],
            // Another case, another name at a kept position, more names than were kept.
            &[b"host", b"Accept", b"X-Request-Id", b"x-other"],
            // Fewer names, and one longer than is kept.
            &[b"HOST", b"a-name-longer-than-the-thirty-two-bytes-kept"],
            &[b"HOST", b"a-name-longer-than-the-thirty-two-bytes-kept"],
            // A prefix of the kept name is another name.
            &[b"Hos"],
        ];
        for head in heads {
            for (i, raw) in head.iter().enumerate() {
                assert_eq!(
                    seen.name(i, raw).unwrap(),
                    HeaderName::from_bytes(raw).unwrap(),
                    "{i}: {}",
                    String::from_utf8_lossy(raw)
                );
            }
        }
        // Beyond the kept positions: parsed each time.
        assert_eq!(seen.name(SLOTS, b"Accept").unwrap(), http::header::ACCEPT);
    }

    #[test]
    fn a_bad_name_is_refused_whatever_was_kept() {
        let mut seen = Seen::EMPTY;
        assert!(seen.name(0, b"Host").is_ok());
        for bad in [&b""[..], b"Ho st", b"Host:", b"H\x00st", b"\xffost"] {
            assert!(seen.name(0, bad).is_err(), "{bad:?}");
            // What was kept is still found.
            assert_eq!(seen.name(0, b"Host").unwrap(), http::header::HOST);
        }
    }

    #[test]
    fn the_thread_lists_answer_as_from_bytes() {
        for raw in [&b"Content-Type"[..], b"content-type", b"X-Powered-By"] {
            for mut names in [requests(), responses()] {
                assert_eq!(
                    names.name(0, raw).unwrap(),
                    HeaderName::from_bytes(raw).unwrap()
                );
                assert!(names.name(1, b"bad name").is_err());
            }
        }
        // Taken twice at once (not done, but harmless): the second has a list of its own.
        let (mut a, mut b) = (requests(), requests());
        assert_eq!(a.name(0, b"Host").unwrap(), http::header::HOST);
        assert_eq!(b.name(0, b"Accept").unwrap(), http::header::ACCEPT);
    }
}
