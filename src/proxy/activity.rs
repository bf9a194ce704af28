//! What one client connection is doing, for its timeouts and for the connection limit.
//!
//! Every accepted connection has an [`Activity`]: requests in progress, when it last became
//! idle, whether a request head is arriving (from the HTTP/1.1 pre-parse, `prescan`), and
//! whether the connection limit asked it to close. [`deadline`] turns that into the one
//! timeout that applies now (a pure function of the state and the settings), and the
//! connection task closes the connection when it passes:
//!
//! | state | deadline | on expiry |
//! | --- | --- | --- |
//! | no request yet (TCP accepted, TLS handshake, protocol sniff, first head) | accepted + client header timeout | close |
//! | HTTP/1.1, between requests, a head arriving | its first byte + client header timeout | close |
//! | between requests, nothing arriving (HTTP/1.1 keep-alive, HTTP/2 with no open stream) | last response end + idle timeout | close (HTTP/2: GOAWAY, then close) |
//! | a request in progress | none | - |

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use futures::task::AtomicWaker;

use super::clock::{ms, now_ms};

/// The connection timeouts, from [`super::ProxyConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Timeouts {
    /// From accept to the first request head, and from a head's first byte to its end.
    pub(super) header: Duration,
    /// Between requests.
    pub(super) idle: Duration,
}

/// Why a connection is being closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expiry {
    /// No complete request within the client header timeout of the accept.
    FirstRequest,
    /// A request head did not complete within the client header timeout.
    Header,
    /// Idle longer than the idle timeout.
    Idle,
    /// Closed to make room under the connection limit.
    Evicted,
}

impl Expiry {
    /// The metric label (`phase`).
    pub(super) fn label(self) -> &'static str {
        match self {
            Expiry::FirstRequest => "first_request",
            Expiry::Header => "header",
            Expiry::Idle => "idle",
            Expiry::Evicted => "evicted",
        }
    }
}

/// A copy of an [`Activity`]'s state at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct State {
    /// Requests in progress (service called, response body not finished).
    pub(super) active: u32,
    /// Requests started so far.
    pub(super) requests: u64,
    /// When the connection was accepted (ms, `clock::now_ms`).
    pub(super) accepted_ms: u64,
    /// When the last request finished (or `accepted_ms`).
    pub(super) idle_since_ms: u64,
    /// When the first byte of a still incomplete HTTP/1.1 head arrived; 0: none.
    pub(super) head_started_ms: u64,
    /// HTTP/2: bytes between requests are frames (PINGs, settings), not a head.
    pub(super) h2: bool,
}

/// The deadline that applies in `state` (ms, `clock::now_ms`), and what its expiry means;
/// `None` while a request is in progress.
pub(super) fn deadline(state: &State, t: &Timeouts) -> Option<(u64, Expiry)> {
    if state.active > 0 {
        return None;
    }
    if state.requests == 0 {
        return Some((
            state.accepted_ms.saturating_add(ms(t.header)),
            Expiry::FirstRequest,
        ));
    }
    if !state.h2 && state.head_started_ms != 0 {
        return Some((
            state.head_started_ms.saturating_add(ms(t.header)),
            Expiry::Header,
        ));
    }
    Some((state.idle_since_ms.saturating_add(ms(t.idle)), Expiry::Idle))
}

/// The live state of one client connection, shared by its task, its service, its I/O and
/// the connection tracker.
#[derive(Debug)]
pub(super) struct Activity {
    active: AtomicU32,
    requests: AtomicU64,
    accepted_ms: u64,
    idle_since_ms: AtomicU64,
    head_started_ms: AtomicU64,
    h2: AtomicBool,
    /// The index of the request whose head carried both `Content-Length` and
    /// `Transfer-Encoding` (`u64::MAX`: none).
    ambiguous_request: AtomicU64,
    /// HTTP/1.1 heads completed by the pre-parse.
    heads_seen: AtomicU64,
    evicting: AtomicBool,
    /// The connection's task, woken by [`Activity::evict`], the tracker's sweep and its
    /// shutdown (only that task waits on it).
    evict: AtomicWaker,
    /// The timeouts the tracker's sweep applies, in ms: the header timeout in the high 32
    /// bits, the idle timeout in the low ones (0: the connection keeps its own timer, see
    /// [`Activity::expired`]). One word: this record lives as long as the connection.
    swept_ms: AtomicU64,
    /// What the sweep found (0: nothing yet, else [`Expiry::code`]).
    swept: AtomicU8,
    /// The tracker is shutting down.
    stopping: AtomicBool,
}

/// Why a swept connection was woken ([`Activity::woken`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wake {
    /// A deadline passed, or the connection limit evicted it.
    Expired(Expiry),
    /// Graceful shutdown began.
    Shutdown,
}

impl Expiry {
    fn code(self) -> u8 {
        match self {
            Expiry::FirstRequest => 1,
            Expiry::Header => 2,
            Expiry::Idle => 3,
            Expiry::Evicted => 4,
        }
    }

    fn from_code(code: u8) -> Option<Expiry> {
        Some(match code {
            1 => Expiry::FirstRequest,
            2 => Expiry::Header,
            3 => Expiry::Idle,
            4 => Expiry::Evicted,
            _ => return None,
        })
    }
}

/// How often the tracker's sweep looks at connections with these timeouts: a tenth of the
/// shorter one, between 5 ms and 1 s (a deadline is seen at most that late).
pub(super) fn sweep_period(t: &Timeouts) -> Duration {
    (t.header.min(t.idle) / 10).clamp(Duration::from_millis(5), Duration::from_secs(1))
}

impl Activity {
    /// A connection accepted now.
    pub(super) fn new() -> Activity {
        let now = now_ms();
        Activity {
            active: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            accepted_ms: now,
            idle_since_ms: AtomicU64::new(now),
            head_started_ms: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            ambiguous_request: AtomicU64::new(u64::MAX),
            heads_seen: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
            evict: AtomicWaker::new(),
            swept_ms: AtomicU64::new(0),
            swept: AtomicU8::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// The state now.
    pub(super) fn state(&self) -> State {
        State {
            active: self.active.load(Ordering::Acquire),
            requests: self.requests.load(Ordering::Relaxed),
            accepted_ms: self.accepted_ms,
            idle_since_ms: self.idle_since_ms.load(Ordering::Relaxed),
            head_started_ms: self.head_started_ms.load(Ordering::Relaxed),
            h2: self.h2.load(Ordering::Relaxed),
        }
    }

    /// A request started: returns its index on the connection (0 for the first).
    pub(super) fn request_started(&self) -> u64 {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(0, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed)
    }

    /// A request finished (its response body ended or was dropped).
    pub(super) fn request_finished(&self) {
        self.idle_since_ms.store(now_ms(), Ordering::Relaxed);
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    /// The connection speaks HTTP/2.
    pub(super) fn set_h2(&self) {
        if !self.h2.load(Ordering::Relaxed) {
            self.h2.store(true, Ordering::Relaxed);
        }
    }

    /// The pre-parse saw the first byte of a request head (`true`), or no head is arriving.
    pub(super) fn set_head_arriving(&self, arriving: bool) {
        let current = self.head_started_ms.load(Ordering::Relaxed);
        match (arriving, current) {
            (true, 0) => self
                .head_started_ms
                .store(now_ms().max(1), Ordering::Relaxed),
            (false, c) if c != 0 => self.head_started_ms.store(0, Ordering::Relaxed),
            _ => {}
        }
    }

    /// The pre-parse completed `count` heads; `last_ambiguous`: the last of them carried both
    /// `Content-Length` and `Transfer-Encoding`.
    pub(super) fn heads_completed(&self, count: u64, last_ambiguous: bool) {
        let first = self.heads_seen.fetch_add(count, Ordering::Relaxed);
        if last_ambiguous && count > 0 {
            let _ = self.ambiguous_request.compare_exchange(
                u64::MAX,
                first + count - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Whether request number `index` had both `Content-Length` and `Transfer-Encoding`.
    pub(super) fn is_ambiguous(&self, index: u64) -> bool {
        self.ambiguous_request.load(Ordering::Relaxed) == index
    }

    /// Is the connection idle (no request in progress) and not already being evicted? Then
    /// since when.
    pub(super) fn idle_since(&self) -> Option<u64> {
        let s = self.state();
        (s.active == 0 && !self.evicting.load(Ordering::Relaxed)).then_some(s.idle_since_ms)
    }

    /// Asks the connection to close (the connection limit needs room).
    pub(super) fn evict(&self) {
        self.evicting.store(true, Ordering::Release);
        self.evict.wake();
    }

    /// Resolves once [`Activity::evict`] was called. A flag and one waker slot rather than a
    /// `Notify`: this future sits in every connection's task for its whole life (8 bytes
    /// instead of about 170), and only the connection's own task waits on it.
    pub(super) fn evicted(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            if self.evicting.load(Ordering::Acquire) {
                return std::task::Poll::Ready(());
            }
            self.evict.register(cx.waker());
            if self.evicting.load(Ordering::Acquire) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
    }

    /// From now on the tracker's sweep applies `t` to this connection (instead of a timer of
    /// its own): [`Activity::woken`] resolves when a deadline passes.
    /// (Each timeout in whole ms, from 1 ms to about 49 days.)
    pub(super) fn set_swept(&self, t: Timeouts) {
        let part = |d: Duration| u64::from(u32::try_from(ms(d)).unwrap_or(u32::MAX).max(1));
        self.swept_ms
            .store((part(t.header) << 32) | part(t.idle), Ordering::SeqCst);
    }

    /// The timeouts the sweep applies, when it does.
    pub(super) fn swept_timeouts(&self) -> Option<Timeouts> {
        let packed = self.swept_ms.load(Ordering::SeqCst);
        (packed != 0).then(|| Timeouts {
            header: Duration::from_millis(packed >> 32),
            idle: Duration::from_millis(packed & u64::from(u32::MAX)),
        })
    }

    /// The sweep at `now_ms`: a passed deadline is recorded and the connection woken. Once
    /// recorded, the expiry stays (the connection is closing).
    pub(super) fn sweep(&self, t: &Timeouts, now_ms: u64) {
        if self.swept.load(Ordering::Relaxed) != 0 {
            return;
        }
        if let Some((at, why)) = deadline(&self.state(), t)
            && at <= now_ms
        {
            self.swept.store(why.code(), Ordering::Release);
            self.evict.wake();
        }
    }

    /// Graceful shutdown began: a swept connection is woken.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.evict.wake();
    }

    fn wake_reason(&self) -> Option<Wake> {
        if self.stopping.load(Ordering::Acquire) {
            return Some(Wake::Shutdown);
        }
        if self.evicting.load(Ordering::Acquire) {
            return Some(Wake::Expired(Expiry::Evicted));
        }
        Expiry::from_code(self.swept.load(Ordering::Acquire)).map(Wake::Expired)
    }

    /// Resolves when the tracker's sweep found a deadline passed, the connection was
    /// evicted, or shutdown began; says which. No timer of the connection's own: an idle
    /// connection waits on one waker slot, a few bytes in its task instead of a timer's
    /// few hundred.
    pub(super) fn woken(&self) -> impl Future<Output = Wake> + '_ {
        std::future::poll_fn(|cx| {
            if let Some(w) = self.wake_reason() {
                return std::task::Poll::Ready(w);
            }
            self.evict.register(cx.waker());
            match self.wake_reason() {
                Some(w) => std::task::Poll::Ready(w),
                None => std::task::Poll::Pending,
            }
        })
    }

    /// Resolves when the connection's deadline passes, or it is evicted; says which.
    ///
    /// The state changes without telling this loop, and a change can bring the deadline
    /// closer (the first request done: from accept + header timeout to its end + idle
    /// timeout). Each sleep is therefore at most the shorter of the two timeouts: a new
    /// deadline is never nearer than that to the change that set it, so it is still seen
    /// before it passes.
    pub(super) async fn expired(&self, t: Timeouts) -> Expiry {
        let step = t.header.min(t.idle).max(Duration::from_millis(1));
        loop {
            let now = now_ms();
            let wait = match deadline(&self.state(), &t) {
                Some((at, why)) if at <= now => return why,
                Some((at, _)) => Duration::from_millis(at - now).min(step),
                // A request in progress: look again later; the deadline will count from
                // its end.
                None => step,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.evicted() => return Expiry::Evicted,
            }
        }
    }
}

/// Marks a request in progress on its connection until dropped (kept in the response body).
#[derive(Debug)]
pub(super) struct RequestGuard(pub(super) std::sync::Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    fn state() -> State {
        State {
            accepted_ms: 1_000,
            idle_since_ms: 1_000,
            ..State::default()
        }
    }

    #[test]
    fn before_the_first_request_the_header_timeout_counts_from_the_accept() {
        let s = state();
        assert_eq!(deadline(&s, &T), Some((11_000, Expiry::FirstRequest)));
        // Bytes arriving do not extend it (a slow first head, a TLS handshake, an h2 preface).
        let s = State {
            head_started_ms: 5_000,
            ..s
        };
        assert_eq!(deadline(&s, &T), Some((11_000, Expiry::FirstRequest)));
    }

    #[test]
    fn no_deadline_while_a_request_is_in_progress() {
        let s = State {
            active: 1,
            requests: 1,
            ..state()
        };
        assert_eq!(deadline(&s, &T), None);
    }

    #[test]
    fn between_requests_the_idle_timeout_counts_from_the_last_response() {
        let s = State {
            requests: 3,
            idle_since_ms: 50_000,
            ..state()
        };
        assert_eq!(deadline(&s, &T), Some((110_000, Expiry::Idle)));
    }

    #[test]
    fn an_arriving_http1_head_has_the_header_timeout_from_its_first_byte() {
        let s = State {
            requests: 3,
            idle_since_ms: 50_000,
            head_started_ms: 100_000,
            ..state()
        };
        assert_eq!(deadline(&s, &T), Some((110_000, Expiry::Header)));
        // HTTP/2 frames between streams (PINGs) do not count as a head.
        let h2 = State { h2: true, ..s };
        assert_eq!(deadline(&h2, &T), Some((110_000, Expiry::Idle)));
    }

    #[test]
    fn request_indices_and_the_ambiguous_one() {
        let a = Activity::new();
        a.heads_completed(2, true);
        assert!(!a.is_ambiguous(0));
        assert!(a.is_ambiguous(1));
        assert_eq!(a.request_started(), 0);
        assert_eq!(a.idle_since(), None, "busy");
        a.request_finished();
        assert!(a.idle_since().is_some());
        a.evict();
        assert_eq!(a.idle_since(), None, "already evicted");
    }

    #[tokio::test]
    async fn expiry_is_reported_once_the_deadline_passes() {
        let a = Activity::new();
        let t = Timeouts {
            header: Duration::from_millis(20),
            idle: Duration::from_secs(60),
        };
        assert_eq!(a.expired(t).await, Expiry::FirstRequest);
        let b = std::sync::Arc::new(Activity::new());
        let c = b.clone();
        let waiter = tokio::spawn(async move { c.expired(T).await });
        b.evict();
        assert_eq!(waiter.await.unwrap(), Expiry::Evicted);
    }

    #[test]
    fn the_sweep_records_a_passed_deadline_once_and_keeps_it() {
        let a = Activity::new();
        a.set_swept(T);
        let t = a.swept_timeouts().expect("swept");
        assert_eq!(t, T);
        let accepted = a.state().accepted_ms;
        assert_eq!(a.wake_reason(), None);
        // Before the header timeout: nothing.
        a.sweep(&t, accepted + 9_999);
        assert_eq!(a.wake_reason(), None);
        a.sweep(&t, accepted + 10_000);
        assert_eq!(a.wake_reason(), Some(Wake::Expired(Expiry::FirstRequest)));
        // A request starting afterwards does not take it back (the connection is closing).
        a.request_started();
        a.sweep(&t, accepted + 10_001);
        assert_eq!(a.wake_reason(), Some(Wake::Expired(Expiry::FirstRequest)));
        // Shutdown and eviction come first.
        a.evict();
        assert_eq!(a.wake_reason(), Some(Wake::Expired(Expiry::Evicted)));
        a.stop();
        assert_eq!(a.wake_reason(), Some(Wake::Shutdown));
        // A connection with a timer of its own is not swept.
        assert_eq!(Activity::new().swept_timeouts(), None);
    }

    #[test]
    fn the_sweep_looks_often_enough_for_short_timeouts_and_rarely_for_long_ones() {
        assert_eq!(sweep_period(&T), Duration::from_secs(1));
        let short = Timeouts {
            header: Duration::from_millis(300),
            idle: Duration::from_secs(60),
        };
        assert_eq!(sweep_period(&short), Duration::from_millis(30));
        let tiny = Timeouts {
            header: Duration::from_millis(1),
            idle: Duration::from_millis(1),
        };
        assert_eq!(sweep_period(&tiny), Duration::from_millis(5));
    }
}
