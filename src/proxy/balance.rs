//! Load balancing over a backend's endpoints, with passive health.
//!
//! Per-endpoint state ([`EndpointState`]) lives in a registry keyed by address, so outstanding
//! request counts and "recently refused" marks survive configuration changes: a new snapshot
//! reuses the state objects of the previous one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock::{ms, now_ms};
use super::connect::TlsTarget;
use super::h2pool::H2Pool;
use super::outlier::{OutlierPolicy, OutlierState};
use super::pool::ConnPool;
use crate::model::{Backend, LoadBalancer, UpstreamProtocol, UpstreamTls};

/// How long an endpoint that refused a connection is skipped.
pub const PASSIVE_HEALTH_BACKOFF: Duration = Duration::from_secs(5);

/// How connections to a backend are made when not plain HTTP/1.1: its protocol and, for
/// HTTPS and GRPCS, TLS. Built once per publish for each such backend.
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) protocol: UpstreamProtocol,
    pub(crate) tls: Option<TlsTarget>,
    /// What makes two transports the same (their connections are shared): the protocol, the
    /// TLS settings and the name verified.
    pub(crate) key: (UpstreamProtocol, Option<Arc<UpstreamTls>>, Option<String>),
}

/// An endpoint's connections for one [`Transport`].
#[derive(Clone, Debug)]
pub(crate) enum Conns {
    /// HTTP/1.1 over TLS, pooled.
    H1(Arc<ConnPool>),
    /// One multiplexed HTTP/2 connection.
    H2(Arc<H2Pool>),
}

/// Live state of one endpoint address, shared by every backend that uses it.
#[derive(Debug)]
pub struct EndpointState {
    /// The address.
    pub addr: SocketAddr,
    /// The address as a URI authority, built once so that a request only bumps a reference
    /// count.
    authority: http::uri::Authority,
    /// [`stable_hash`] of the address: the value of an affinity cookie naming this endpoint,
    /// and its identity in rendezvous hashing (the same on every replica).
    key: u64,
    /// Idle HTTP/1.1 connections to this endpoint.
    pool: Arc<ConnPool>,
    /// Connections for the other protocols (h2c, HTTPS, GRPCS), made on first use, one set
    /// per [`Transport`] that reaches this address.
    others: Mutex<Vec<(Arc<Transport>, Conns)>>,
    outstanding: AtomicUsize,
    /// Refused a connection: skipped until then (ms of `clock`).
    down_until_ms: AtomicU64,
    /// Ejected by outlier detection: skipped until then, unless more than half of the
    /// backend's endpoints are.
    ejected_until_ms: AtomicU64,
    /// The failure history outlier detection decides on (locked on failures only).
    outlier: Mutex<OutlierState>,
    /// A failure has been recorded since the last success (a success need not lock).
    failing: std::sync::atomic::AtomicBool,
}

impl EndpointState {
    fn new(addr: SocketAddr) -> Self {
        let authority =
            http::uri::Authority::from_maybe_shared(bytes::Bytes::from(addr.to_string()))
                .expect("a socket address is a valid URI authority");
        EndpointState {
            addr,
            key: stable_hash(addr.to_string().as_bytes()),
            authority,
            pool: Arc::new(ConnPool::new(addr)),
            others: Mutex::new(Vec::new()),
            outstanding: AtomicUsize::new(0),
            down_until_ms: AtomicU64::new(0),
            ejected_until_ms: AtomicU64::new(0),
            outlier: Mutex::new(OutlierState::default()),
            failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The address as a URI authority (`10.0.0.1:8080`, `[fd00::1]:8080`).
    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// The endpoint's stable key (see [`stable_hash`]).
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The pool of idle HTTP/1.1 connections to this endpoint.
    pub(crate) fn pool(&self) -> &Arc<ConnPool> {
        &self.pool
    }

    /// The connections to this endpoint for `transport` (not plain HTTP/1.1), created on
    /// first use. Transports equal in protocol and TLS settings share them.
    pub(crate) fn conns(&self, transport: &Arc<Transport>) -> Conns {
        let mut others = self
            .others
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = others
            .iter_mut()
            .find(|(t, _)| Arc::ptr_eq(t, transport) || t.key == transport.key)
        {
            // The latest publish's transport keeps the entry alive (see below).
            if !Arc::ptr_eq(&entry.0, transport) {
                entry.0 = transport.clone();
            }
            return entry.1.clone();
        }
        let tls = transport.tls.clone();
        let conns = if transport.protocol.is_h2() {
            Conns::H2(Arc::new(H2Pool::new(self.addr, tls)))
        } else {
            Conns::H1(Arc::new(ConnPool::with_tls(self.addr, tls)))
        };
        // A transport no longer published is dropped with its connections.
        others.retain(|(t, _)| Arc::strong_count(t) > 1);
        others.push((transport.clone(), conns.clone()));
        conns
    }

    /// Requests sent to this endpoint and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// True while the endpoint is skipped after a refused connection.
    pub fn is_down(&self) -> bool {
        self.down_until_ms.load(Ordering::Relaxed) > now_ms()
    }

    /// Marks the endpoint as refusing connections for [`PASSIVE_HEALTH_BACKOFF`].
    pub fn mark_down(&self) {
        let until = now_ms().saturating_add(ms(PASSIVE_HEALTH_BACKOFF));
        self.down_until_ms.store(until, Ordering::Relaxed);
    }

    /// Clears the down mark (the endpoint answered).
    pub fn mark_up(&self) {
        if self.down_until_ms.load(Ordering::Relaxed) != 0 {
            self.down_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Whether outlier detection has ejected the endpoint.
    pub fn is_ejected(&self) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms()
    }

    /// Records a failure (a 5xx answer, a refused or reset connection, a timeout); true when
    /// it ejects the endpoint.
    pub fn record_failure(&self, policy: &OutlierPolicy) -> bool {
        self.failing.store(true, Ordering::Relaxed);
        let now = now_ms();
        let until = self
            .outlier
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .failure(policy, now);
        match until {
            Some(until) => {
                self.ejected_until_ms.store(until, Ordering::Relaxed);
                metrics::counter!("sluice_upstream_ejections_total").increment(1);
                tracing::info!(endpoint = %self.addr, ejected_for_ms = until - now, "endpoint ejected by outlier detection");
                true
            }
            None => false,
        }
    }

    /// Records a success: the run of failures ends, and an ejection (the endpoint was tried
    /// anyway) is lifted.
    pub fn record_success(&self) {
        if self.failing.load(Ordering::Relaxed) {
            self.failing.store(false, Ordering::Relaxed);
            self.outlier
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .success();
            self.ejected_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a request as outstanding until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// An outstanding request on an endpoint; decrements the count on drop.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointState>);

impl InFlight {
    /// The endpoint.
    pub fn endpoint(&self) -> &Arc<EndpointState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Registry of endpoint states, owned by whoever publishes snapshots.
#[derive(Debug, Default)]
pub struct EndpointRegistry {
    states: Mutex<HashMap<SocketAddr, Arc<EndpointState>>>,
}

impl EndpointRegistry {
    /// Builds the balancers for a table's backends, reusing known endpoint states and forgetting
    /// the ones no longer referenced.
    pub fn balancers(&self, backends: &[Arc<Backend>]) -> Vec<Balancer> {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next: HashMap<SocketAddr, Arc<EndpointState>> = HashMap::new();
        let out = backends
            .iter()
            .map(|b| {
                let endpoints = b
                    .endpoints
                    .iter()
                    .map(|e| {
                        // One state per address: shared with the backends already built in
                        // this call, else carried over from the previous snapshot.
                        let st = next
                            .get(&e.addr)
                            .or_else(|| states.get(&e.addr))
                            .cloned()
                            .unwrap_or_else(|| Arc::new(EndpointState::new(e.addr)));
                        next.insert(e.addr, st.clone());
                        st
                    })
                    .collect();
                Balancer {
                    policy: b.settings.load_balancer,
                    endpoints,
                    next: AtomicUsize::new(0),
                }
            })
            .collect();
        *states = next;
        out
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every process and release, for keys that
/// several replicas must agree on (affinity cookies, `upstream-hash-by`).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// splitmix64's finaliser: mixes a key and an endpoint's key into a rendezvous score.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Chooses endpoints for one backend.
#[derive(Debug)]
pub struct Balancer {
    policy: LoadBalancer,
    endpoints: Vec<Arc<EndpointState>>,
    next: AtomicUsize,
}

impl Balancer {
    /// The endpoints, in address order.
    pub fn endpoints(&self) -> &[Arc<EndpointState>] {
        &self.endpoints
    }

    /// Picks an endpoint other than `avoid`, preferring ones not marked down. Returns `None` only
    /// when there is no endpoint at all (or only `avoid`).
    pub fn pick(&self, avoid: Option<SocketAddr>) -> Option<&Arc<EndpointState>> {
        let eps = &self.endpoints;
        let usable = |e: &&Arc<EndpointState>| Some(e.addr) != avoid;
        match eps.len() {
            0 => return None,
            1 => return eps.first().filter(usable),
            _ => {}
        }
        // Ejections are honoured while at most half of the endpoints carry one (counted only
        // when an ejected endpoint comes up).
        let too_many_ejected = std::cell::Cell::new(None::<bool>);
        let ejection_honoured = || {
            let too_many = too_many_ejected.get().unwrap_or_else(|| {
                let n = eps.iter().filter(|x| x.is_ejected()).count();
                n * 2 > eps.len()
            });
            too_many_ejected.set(Some(too_many));
            !too_many
        };
        let healthy = |e: &&Arc<EndpointState>| {
            usable(e) && !e.is_down() && (!e.is_ejected() || !ejection_honoured())
        };
        let chosen = match self.policy {
            LoadBalancer::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..eps.len())
                    .map(|k| &eps[(start + k) % eps.len()])
                    .find(healthy)
            }
            LoadBalancer::LeastRequest => {
                let a = &eps[fastrand::usize(..eps.len())];
                let mut b = &eps[fastrand::usize(..eps.len() - 1)];
                if Arc::ptr_eq(a, b) {
                    b = &eps[eps.len() - 1];
                }
                match (healthy(&a), healthy(&b)) {
                    (true, true) => Some(if b.outstanding() < a.outstanding() {
                        b
                    } else {
                        a
                    }),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => eps.iter().filter(healthy).min_by_key(|e| e.outstanding()),
                }
            }
        };
        // Everything is marked down: try one anyway rather than refuse the request.
        chosen.or_else(|| eps.iter().find(usable))
    }

    /// The endpoint an affinity cookie names (its [`EndpointState::key`] in hex), if it is
    /// still one of this backend's, is not `avoid` and is not marked down.
    pub fn by_cookie(&self, value: &str, avoid: Option<SocketAddr>) -> Option<&Arc<EndpointState>> {
        let key = u64::from_str_radix(value, 16).ok()?;
        self.endpoints
            .iter()
            .find(|e| e.key == key && Some(e.addr) != avoid && !e.is_down() && !e.is_ejected())
    }

    /// The endpoint for a hash key (`upstream-hash-by`): rendezvous hashing, so a key keeps
    /// its endpoint while that endpoint stays, and only the keys of an endpoint that goes move.
    /// Endpoints marked down or equal to `avoid` are passed over.
    pub fn pick_hashed(&self, key: u64, avoid: Option<SocketAddr>) -> Option<&Arc<EndpointState>> {
        let best = |healthy_only: bool| {
            self.endpoints
                .iter()
                .filter(|e| {
                    Some(e.addr) != avoid && !(healthy_only && (e.is_down() || e.is_ejected()))
                })
                .max_by_key(|e| mix(key ^ e.key))
        };
        best(true).or_else(|| best(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackendSettings, Endpoint, ObjectRef, ServicePort};

    fn backend(n: u16, lb: LoadBalancer) -> Arc<Backend> {
        Arc::new(Backend {
            ingress: ObjectRef::new("d", "i"),
            service: ObjectRef::new("d", "s"),
            port: ServicePort::Number(80),
            endpoints: (0..n)
                .map(|i| Endpoint {
                    addr: ([127, 0, 0, 1], 1000 + i).into(),
                    ready: true,
                })
                .collect(),
            settings: BackendSettings {
                load_balancer: lb,
                ..BackendSettings::default()
            },
        })
    }

    #[test]
    fn hashing_keeps_keys_on_their_endpoint_and_moves_only_a_removed_ones_keys() {
        let reg = EndpointRegistry::default();
        let four = &reg.balancers(&[backend(4, LoadBalancer::RoundRobin)])[0];
        let before: Vec<u16> = (0..400u64)
            .map(|k| {
                four.pick_hashed(stable_hash(&k.to_be_bytes()), None)
                    .unwrap()
                    .addr
                    .port()
            })
            .collect();
        // Every endpoint gets some keys, and the same key always gets the same one.
        for p in 1000..1004 {
            assert!(before.iter().filter(|&&x| x == p).count() > 40, "{p}");
        }
        assert_eq!(
            four.pick_hashed(stable_hash(b"7"), None).unwrap().addr,
            four.pick_hashed(stable_hash(b"7"), None).unwrap().addr
        );
        // Endpoint 1003 gone: only its keys move.
        let three = &reg.balancers(&[backend(3, LoadBalancer::RoundRobin)])[0];
        for (k, was) in (0..400u64).zip(&before) {
            let now = three
                .pick_hashed(stable_hash(&k.to_be_bytes()), None)
                .unwrap()
                .addr
                .port();
            if *was != 1003 {
                assert_eq!(now, *was, "key {k} moved");
            }
        }
        // A down endpoint is passed over.
        let key = stable_hash(b"x");
        let first = four.pick_hashed(key, None).unwrap().clone();
        first.mark_down();
        assert_ne!(four.pick_hashed(key, None).unwrap().addr, first.addr);
        first.mark_up();
    }

    #[test]
    fn a_cookie_names_its_endpoint_while_it_is_usable() {
        let reg = EndpointRegistry::default();
        let bal = &reg.balancers(&[backend(3, LoadBalancer::RoundRobin)])[0];
        let e = bal.endpoints()[2].clone();
        let value = format!("{:016x}", e.key());
        assert_eq!(bal.by_cookie(&value, None).unwrap().addr, e.addr);
        assert!(bal.by_cookie(&value, Some(e.addr)).is_none());
        assert!(bal.by_cookie("zz", None).is_none());
        e.mark_down();
        assert!(bal.by_cookie(&value, None).is_none());
        e.mark_up();
        // The key is the same in every process: FNV-1a of the address text.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn round_robin_cycles_and_skips_down() {
        let reg = EndpointRegistry::default();
        let bal = &reg.balancers(&[backend(3, LoadBalancer::RoundRobin)])[0];
        let picks: Vec<u16> = (0..6)
            .map(|_| bal.pick(None).unwrap().addr.port())
            .collect();
        assert_eq!(picks, [1000, 1001, 1002, 1000, 1001, 1002]);
        bal.endpoints()[1].mark_down();
        let picks: Vec<u16> = (0..4)
            .map(|_| bal.pick(None).unwrap().addr.port())
            .collect();
        assert!(!picks.contains(&1001), "{picks:?}");
        bal.endpoints()[1].mark_up();
        assert!((0..3).any(|_| bal.pick(None).unwrap().addr.port() == 1001));
    }

    #[test]
    fn all_down_still_picks_and_avoid_is_respected() {
        let reg = EndpointRegistry::default();
        let bal = &reg.balancers(&[backend(2, LoadBalancer::RoundRobin)])[0];
        for e in bal.endpoints() {
            e.mark_down();
        }
        assert!(bal.pick(None).is_some());
        let avoid = bal.endpoints()[0].addr;
        for _ in 0..10 {
            assert_eq!(bal.pick(Some(avoid)).unwrap().addr.port(), 1001);
        }
        let one = &reg.balancers(&[backend(1, LoadBalancer::RoundRobin)])[0];
        assert!(one.pick(Some(one.endpoints()[0].addr)).is_none());
        assert!(
            reg.balancers(&[backend(0, LoadBalancer::RoundRobin)])[0]
                .pick(None)
                .is_none()
        );
    }

    #[test]
    fn least_request_prefers_idle_endpoint() {
        let reg = EndpointRegistry::default();
        let bal = &reg.balancers(&[backend(2, LoadBalancer::LeastRequest)])[0];
        let _busy: Vec<InFlight> = (0..5).map(|_| bal.endpoints()[0].start()).collect();
        for _ in 0..50 {
            assert_eq!(bal.pick(None).unwrap().addr.port(), 1001);
        }
    }

    #[test]
    fn backends_with_the_same_address_share_its_state() {
        let reg = EndpointRegistry::default();
        let (a, b) = (
            backend(2, LoadBalancer::RoundRobin),
            backend(3, LoadBalancer::LeastRequest),
        );
        let bals = reg.balancers(&[a, b]);
        for i in 0..2 {
            assert!(
                Arc::ptr_eq(&bals[0].endpoints()[i], &bals[1].endpoints()[i]),
                "endpoint {i}: one state (pool, counters, down mark) per address"
            );
        }
        bals[0].endpoints()[0].mark_down();
        assert!(bals[1].endpoints()[0].is_down());
    }

    #[test]
    fn state_survives_rebuild() {
        let reg = EndpointRegistry::default();
        let b = backend(2, LoadBalancer::RoundRobin);
        let first = reg.balancers(std::slice::from_ref(&b));
        let guard = first[0].endpoints()[0].start();
        first[0].endpoints()[1].mark_down();
        let second = reg.balancers(&[b]);
        assert_eq!(second[0].endpoints()[0].outstanding(), 1);
        assert!(second[0].endpoints()[1].is_down());
        drop(guard);
        assert_eq!(second[0].endpoints()[0].outstanding(), 0);
    }
}
