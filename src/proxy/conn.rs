//! Connections: what the proxy knows about one ([`ConnInfo`]), tracking open connections for
//! graceful shutdown ([`ConnTracker`]), and WebSocket tunnels.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, watch};

use super::activity::{Activity, Timeouts};
use super::balance::InFlight;

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entrypoint {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

impl Entrypoint {
    /// `http` or `https`: the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Entrypoint::Http => "http",
            Entrypoint::Https => "https",
        }
    }

    /// The URL scheme, for `X-Forwarded-Proto`.
    pub fn scheme(self) -> &'static str {
        self.as_str()
    }
}

/// What the proxy knows about a client connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address the client connected to, or the one a PROXY protocol header gave. Its
    /// port is exact; its IP is the listening socket's, which is unspecified (`0.0.0.0`,
    /// `::`) for a wildcard listener: the accept loop takes it from the listener once rather
    /// than asking the kernel for each connection's (`getsockname`).
    pub local: SocketAddr,
    /// The listener.
    pub entrypoint: Entrypoint,
    /// The SNI the client sent in its TLS handshake.
    pub sni: Option<String>,
    /// The tracker the connection is counted in (upgraded tunnels count there too).
    pub tracker: Arc<ConnTracker>,
    /// `peer`'s IP as a header value (`X-Forwarded-For`, `X-Real-IP`), built once per
    /// connection.
    pub(super) peer_header: HeaderValue,
}

impl ConnInfo {
    pub(super) fn new(
        peer: SocketAddr,
        local: SocketAddr,
        entrypoint: Entrypoint,
        sni: Option<String>,
        tracker: Arc<ConnTracker>,
    ) -> ConnInfo {
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        ConnInfo {
            peer,
            local,
            entrypoint,
            sni,
            tracker,
            peer_header: HeaderValue::from_maybe_shared(peer_bytes(&Text::ip(ip)))
                .unwrap_or(HeaderValue::from_static("unknown")),
        }
    }

    /// `local`'s port as a header value (`X-Forwarded-Port`): the tracker's shared value for
    /// the entrypoint's usual port (asked per request rather than kept here, where it would
    /// take 40 bytes for the connection's whole life).
    pub(super) fn port_header(&self) -> HeaderValue {
        self.tracker.port_header(self.entrypoint, self.local.port())
    }
}

/// The peer's address as the bytes of its header value, which lives as long as the
/// connection and is cloned into each request's forwarded headers. An address of up to 15
/// bytes (every IPv4 one) goes in one 32-byte block that its clones share; a longer one is
/// copied out (an allocation of its length, and `bytes`' shared record at its first clone:
/// two allocations per connection, as every address took before).
fn peer_bytes(text: &Text) -> Bytes {
    let text = text.as_ref();
    match Short::of(text) {
        Some(short) => Bytes::from_owner(short),
        None => Bytes::copy_from_slice(text),
    }
}

/// Up to 15 bytes of text, inline.
struct Short {
    len: u8,
    buf: [u8; 15],
}

impl Short {
    fn of(text: &[u8]) -> Option<Short> {
        let mut buf = [0; 15];
        buf.get_mut(..text.len())?.copy_from_slice(text);
        Some(Short {
            len: text.len() as u8,
            buf,
        })
    }
}

impl AsRef<[u8]> for Short {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// An IP address or port as text, formatted without a heap allocation.
struct Text {
    len: usize,
    /// The longest IPv6 text, `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`, is 45 bytes.
    buf: [u8; 45],
}

impl Text {
    /// An IP address: IPv4 written digit by digit (the formatting machinery costs more than
    /// the rest of setting up the connection's header values), IPv6 formatted.
    fn ip(ip: IpAddr) -> Text {
        let IpAddr::V4(v4) = ip else {
            return Text::of(ip);
        };
        let mut text = Text {
            len: 0,
            buf: [0; 45],
        };
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                text.push(b'.');
            }
            if octet >= 100 {
                text.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                text.push(b'0' + octet / 10 % 10);
            }
            text.push(b'0' + octet % 10);
        }
        text
    }

    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn of(value: impl std::fmt::Display) -> Text {
        let mut buf = [0; 45];
        let mut rest = &mut buf[..];
        // Cannot fail: an address or port fits.
        let _ = std::io::Write::write_fmt(&mut rest, format_args!("{value}"));
        let len = 45 - rest.len();
        Text { len, buf }
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Counts open connections, tells them to shut down gracefully, and knows which ones are idle
/// (for the connection limit: the oldest idle one is closed first).
#[derive(Debug)]
pub struct ConnTracker {
    open: AtomicUsize,
    idle: Notify,
    /// A connection closed.
    freed: Notify,
    /// The client connections (not tunnels), by id.
    live: Mutex<foldhash::HashMap<u64, Arc<Activity>>>,
    /// The sweep task (timeouts of the connections that have no timer of their own) runs.
    sweeping: AtomicBool,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    force: watch::Sender<bool>,
    /// `sluice_open_connections` handles by (entrypoint, protocol), looked up in the metrics
    /// registry once instead of twice per connection.
    gauges: [std::sync::OnceLock<metrics::Gauge>; 4],
    /// The `X-Forwarded-Port` value of each entrypoint's first connection (its listener's
    /// port, unless a PROXY protocol header gave another), shared by the later ones.
    ports: [std::sync::OnceLock<(u16, HeaderValue)>; 2],
}

impl Default for ConnTracker {
    fn default() -> Self {
        ConnTracker {
            open: AtomicUsize::new(0),
            idle: Notify::new(),
            freed: Notify::new(),
            live: Mutex::new(foldhash::HashMap::default()),
            sweeping: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            shutdown: watch::channel(false).0,
            force: watch::channel(false).0,
            gauges: Default::default(),
            ports: Default::default(),
        }
    }
}

impl ConnTracker {
    /// Open connections (upgraded tunnels included).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Asks every connection to finish its in-flight requests and close; idle keep-alive
    /// connections close at once.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
        // Swept connections wait on their activity rather than on the signal.
        for a in self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            a.stop();
        }
    }

    /// Applies `t` to `activity`'s connection by the tracker's sweep (one task for every such
    /// connection) instead of a timer of its own; starts the sweep if it is not running.
    /// The connection waits on [`Activity::woken`].
    pub(super) fn sweep_timeouts(self: &Arc<Self>, activity: &Activity, t: Timeouts) {
        activity.set_swept(t);
        if self.is_shutting_down() {
            activity.stop();
        }
        if !self.sweeping.swap(true, Ordering::SeqCst) {
            tokio::spawn(sweep(self.clone()));
        }
    }

    /// One sweep over the swept connections at `now`: the shortest period they ask for, or
    /// `None` when there are none.
    fn sweep_once(&self, now: u64) -> Option<Duration> {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let mut period: Option<Duration> = None;
        for a in live.values() {
            if let Some(t) = a.swept_timeouts() {
                a.sweep(&t, now);
                let p = super::activity::sweep_period(&t);
                period = Some(period.map_or(p, |q| q.min(p)));
            }
        }
        period
    }

    /// Closes every connection and tunnel still open (the grace period is over).
    pub fn force_close(&self) {
        self.force.send_replace(true);
    }

    /// Resolves once [`ConnTracker::force_close`] was called.
    pub(super) async fn forced(&self) {
        let mut rx = self.force.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }

    /// Changes to true when [`ConnTracker::shutdown`] is called.
    pub(super) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// True once [`ConnTracker::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Waits until no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Resolves after a connection closed (check [`ConnTracker::open`] again: another
    /// accept loop may have taken the slot).
    /// (Create it before checking, so that a close in between is not missed.)
    pub(super) fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// Asks the client connection that has been idle longest (no request in progress, never
    /// asked before) to close. False when every connection is busy.
    pub(super) fn evict_oldest_idle(&self) -> bool {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = live
            .values()
            .filter_map(|a| a.idle_since().map(|since| (since, a)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, a)) => {
                a.evict();
                true
            }
            None => false,
        }
    }

    /// `port` as a header value (`X-Forwarded-Port`): shared when it is the port the
    /// entrypoint's connections usually have.
    fn port_header(&self, entrypoint: Entrypoint, port: u16) -> HeaderValue {
        let make = || {
            HeaderValue::from_maybe_shared(Bytes::from_owner(Text::of(port)))
                .unwrap_or_else(|_| HeaderValue::from(port))
        };
        let slot = match entrypoint {
            Entrypoint::Http => 0,
            Entrypoint::Https => 1,
        };
        match self.ports[slot].get_or_init(|| (port, make())) {
            (p, value) if *p == port => value.clone(),
            _ => make(),
        }
    }

    /// Counts a new client connection and registers its activity (idle since now).
    pub(super) fn enter_client(
        self: &Arc<Self>,
        entrypoint: Entrypoint,
        protocol: &'static str,
    ) -> (ConnGuard, Arc<Activity>) {
        let activity = Arc::new(Activity::new());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, activity.clone());
        let mut guard = self.enter(entrypoint, protocol);
        guard.id = Some(id);
        (guard, activity)
    }

    /// Counts an open connection or tunnel until the guard is dropped.
    pub(super) fn enter(
        self: &Arc<Self>,
        entrypoint: Entrypoint,
        protocol: &'static str,
    ) -> ConnGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        let slot = match (entrypoint, protocol) {
            (Entrypoint::Http, "upgraded") => 1,
            (Entrypoint::Http, _) => 0,
            (Entrypoint::Https, "upgraded") => 3,
            (Entrypoint::Https, _) => 2,
        };
        let gauge = self.gauges[slot]
            .get_or_init(|| {
                metrics::gauge!("sluice_open_connections", "entrypoint" => entrypoint.as_str(), "protocol" => protocol)
            })
            .clone();
        gauge.increment(1.0);
        ConnGuard {
            tracker: self.clone(),
            gauge,
            id: None,
        }
    }
}

/// The sweep task: while connections ask for it, looks at each one's deadline every period
/// (the shortest any of them asks for) and wakes the ones whose deadline passed. It ends when
/// none is left, and the next one to ask starts it again.
async fn sweep(tracker: Arc<ConnTracker>) {
    /// Marks the sweep stopped however it ends, so that the next connection starts another.
    struct Running<'a>(&'a AtomicBool);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let running = Running(&tracker.sweeping);
    loop {
        let period = match tracker.sweep_once(super::clock::now_ms()) {
            Some(p) => p,
            None => {
                // None left: stop, unless one arrived as this sweep decided to (it saw the
                // sweep running and did not start another).
                tracker.sweeping.store(false, Ordering::SeqCst);
                match tracker.sweep_once(super::clock::now_ms()) {
                    Some(p) if !tracker.sweeping.swap(true, Ordering::SeqCst) => p,
                    _ => {
                        std::mem::forget(running);
                        return;
                    }
                }
            }
        };
        tokio::time::sleep(period).await;
    }
}

/// Counts one open connection (or tunnel) until dropped.
pub(super) struct ConnGuard {
    tracker: Arc<ConnTracker>,
    gauge: metrics::Gauge,
    /// The registered activity of a client connection.
    id: Option<u64>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.tracker
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        }
        self.gauge.decrement(1.0);
        if self.tracker.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.tracker.idle.notify_waiters();
        }
        self.tracker.freed.notify_waiters();
    }
}

/// Copies bytes both ways between an upgraded client connection and an upgraded upstream
/// connection (WebSocket), keeping the endpoint's outstanding count up meanwhile.
pub(super) async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    inflight: InFlight,
    guard: ConnGuard,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    let tracker = guard.tracker.clone();
    tokio::select! {
        res = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "tunnel closed with error");
            }
        }
        () = tracker.forced() => {}
    }
    drop(inflight);
    drop(guard);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sweep_wakes_swept_connections_and_stops_when_none_is_left() {
        let tracker = Arc::new(ConnTracker::default());
        let t = Timeouts {
            header: Duration::from_millis(30),
            idle: Duration::from_secs(60),
        };
        let (guard, a) = tracker.enter_client(Entrypoint::Http, "http");
        tracker.sweep_timeouts(&a, t);
        // A second connection, idle after one request, is not due yet.
        let (guard2, b) = tracker.enter_client(Entrypoint::Http, "http");
        b.request_started();
        b.request_finished();
        tracker.sweep_timeouts(&b, t);
        let woken = tokio::time::timeout(Duration::from_secs(10), a.woken())
            .await
            .expect("woken by the sweep");
        assert_eq!(
            woken,
            super::super::activity::Wake::Expired(super::super::activity::Expiry::FirstRequest)
        );
        // Shutdown wakes the other.
        tracker.shutdown();
        let woken = tokio::time::timeout(Duration::from_secs(10), b.woken())
            .await
            .expect("woken by shutdown");
        assert_eq!(woken, super::super::activity::Wake::Shutdown);
        // With no connection left the sweep ends; the next one starts it again.
        drop((guard, guard2, a, b));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tracker.sweeping.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the sweep did not end"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (_g, c) = tracker.enter_client(Entrypoint::Http, "http");
        tracker.sweep_timeouts(&c, t);
        assert!(tracker.sweeping.load(Ordering::SeqCst), "started again");
        // Accepted after shutdown began: woken at once.
        let woken = tokio::time::timeout(Duration::from_secs(10), c.woken())
            .await
            .expect("woken");
        assert_eq!(woken, super::super::activity::Wake::Shutdown);
    }

    #[test]
    fn addresses_and_ports_as_text() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "9.99.199.200",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(Text::ip(parsed).as_ref(), ip.as_bytes());
        }
        assert_eq!(Text::of(65535u16).as_ref(), b"65535");
        let tracker = Arc::new(ConnTracker::default());
        let info = ConnInfo::new(
            "[::ffff:192.0.2.7]:4000".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            Entrypoint::Http,
            None,
            tracker.clone(),
        );
        assert_eq!(info.peer_header, "192.0.2.7");
        assert_eq!(info.peer_header.clone(), "192.0.2.7");
        assert_eq!(info.port_header(), "8080");
        // The longest IPv4 text and longer (copied) ones.
        for ip in ["255.255.255.255", "2001:db8::8a2e:370:7334", "::1"] {
            let parsed: IpAddr = ip.parse().unwrap();
            let bytes = peer_bytes(&Text::ip(parsed));
            assert_eq!(bytes, ip.as_bytes());
            assert_eq!(bytes.clone(), ip.as_bytes());
        }
        // Another port on the same entrypoint (from a PROXY protocol header).
        assert_eq!(tracker.port_header(Entrypoint::Http, 80), "80");
        assert_eq!(tracker.port_header(Entrypoint::Http, 8080), "8080");
        assert_eq!(tracker.port_header(Entrypoint::Https, 443), "443");
    }
}
