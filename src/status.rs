//! What to write to the API server about the Ingresses we serve: the address in
//! `status.loadBalancer.ingress` and the Events that turn diagnostics into `kubectl describe`
//! lines. Pure planning; the runtime's status actor performs the writes (leader only) and
//! tells the memories here what succeeded.
//!
//! **Status.** Every Ingress we own gets the published addresses. An Ingress we no longer own
//! (its class changed) is cleared if we wrote it, or if its status is exactly our address (what
//! a restarted process finds after a class change it did not witness); any other Ingress is
//! never touched. A write is planned only when the value differs from the Ingress's current
//! status as the source last saw it, or, while the watch has not caught up with our last write,
//! from what we wrote.
//!
//! **Events.** Each diagnostic about an Ingress becomes one Event (reason as the diagnostic's,
//! note `field: message`). An Event is planned once while its diagnostic persists
//! (deduplicated on Ingress, reason and note) and again only if the diagnostic goes away and
//! comes back. Rate limiting is the caller's, with `sluice::pace::TokenBucket`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;

use crate::model::{Diagnostic, Kind, ObjectRef};

/// Longest Event note the API server accepts (1 KiB); longer notes are cut.
pub const MAX_NOTE_BYTES: usize = 1000;

/// One `status.loadBalancer.ingress[]` entry (ports are not published).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// An IP address.
    pub ip: Option<String>,
    /// A host name.
    pub hostname: Option<String>,
}

impl Address {
    /// `{ip}` for an IP address, else `{hostname}`.
    pub fn parse(s: &str) -> Address {
        let s = s.trim();
        if s.parse::<IpAddr>().is_ok() {
            Address {
                ip: Some(s.to_owned()),
                hostname: None,
            }
        } else {
            Address {
                ip: None,
                hostname: Some(s.to_owned()),
            }
        }
    }

    /// The entry as JSON (`{"ip": ...}` or `{"hostname": ...}`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = json!({});
        if let Some(ip) = &self.ip {
            v["ip"] = json!(ip);
        }
        if let Some(h) = &self.hostname {
            v["hostname"] = json!(h);
        }
        v
    }
}

/// `--publish-address` values in the order given (what `kubectl get ingress` shows), without
/// repeats.
pub fn fixed_addresses(values: &[String]) -> Vec<Address> {
    let mut list: Vec<Address> = Vec::new();
    for a in values.iter().map(|a| Address::parse(a)) {
        if !list.contains(&a) {
            list.push(a);
        }
    }
    list
}

/// Equal as sets: the order of the entries does not matter.
pub fn same(a: &[Address], b: &[Address]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

/// Sorted, de-duplicated addresses from `(ip, hostname)` pairs; empty strings count as unset.
/// Entries with neither are kept only when `keep_empty` (so they show up as a difference).
fn sorted_addresses<'a>(
    pairs: impl Iterator<Item = (Option<&'a String>, Option<&'a String>)>,
    keep_empty: bool,
) -> Vec<Address> {
    let mut out: Vec<Address> = pairs
        .map(|(ip, hostname)| Address {
            ip: ip.filter(|v| !v.is_empty()).cloned(),
            hostname: hostname.filter(|v| !v.is_empty()).cloned(),
        })
        .filter(|a| keep_empty || a.ip.is_some() || a.hostname.is_some())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The addresses in an Ingress's status, sorted.
pub fn ingress_addresses(ing: &Ingress) -> Vec<Address> {
    let list = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    sorted_addresses(
        list.into_iter()
            .flatten()
            .map(|e| (e.ip.as_ref(), e.hostname.as_ref())),
        true,
    )
}

/// The addresses in a Service's LoadBalancer status, sorted.
pub fn service_addresses(svc: &Service) -> Vec<Address> {
    let list = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    sorted_addresses(
        list.into_iter()
            .flatten()
            .map(|e| (e.ip.as_ref(), e.hostname.as_ref())),
        false,
    )
}

/// One planned status write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusWrite {
    /// The Ingress.
    pub ingress: ObjectRef,
    /// The new `status.loadBalancer.ingress` (empty: clear it).
    pub value: Vec<Address>,
    /// The Ingress's resourceVersion as the source saw it when planned.
    pub source_rv: Option<String>,
}

/// A status write of ours, remembered until the watch catches up.
#[derive(Clone, Debug)]
struct Written {
    source_rv: Option<String>,
    value: Vec<Address>,
}

/// The status writes this process made (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct StatusMemory {
    written: HashMap<ObjectRef, Written>,
}

impl StatusMemory {
    /// The writes that bring every Ingress in `ingresses` to what it should say, given which
    /// ones we own and the addresses to publish. Also forgets Ingresses that are gone and
    /// writes the watch has caught up with on Ingresses we no longer own.
    pub fn plan(
        &mut self,
        ingresses: &[Ingress],
        owned: &HashSet<&ObjectRef>,
        addresses: &[Address],
    ) -> Vec<StatusWrite> {
        let mut writes = Vec::new();
        let mut seen: HashSet<ObjectRef> = HashSet::new();
        for ing in ingresses {
            let r = ObjectRef::new(
                ing.metadata.namespace.clone().unwrap_or_default(),
                ing.metadata.name.clone().unwrap_or_default(),
            );
            let rv = ing.metadata.resource_version.clone();
            let current = match self.written.get(&r) {
                Some(w) if w.source_rv == rv => w.value.clone(),
                _ => ingress_addresses(ing),
            };
            let want = if owned.contains(&r) {
                addresses.to_vec()
            } else if !current.is_empty()
                && (self.written.contains_key(&r) || same(&current, addresses))
            {
                // No longer ours: clear what we published.
                Vec::new()
            } else {
                // Not ours and nothing of ours in it: forget it once the watch has caught up
                // with our last write.
                if self.written.get(&r).is_some_and(|w| w.source_rv != rv) {
                    self.written.remove(&r);
                }
                seen.insert(r);
                continue;
            };
            if !same(&want, &current) {
                writes.push(StatusWrite {
                    ingress: r.clone(),
                    value: want,
                    source_rv: rv,
                });
            }
            seen.insert(r);
        }
        self.written.retain(|r, _| seen.contains(r));
        writes
    }

    /// Remembers a successful write: until the watch shows it, it is the current value, and
    /// an Ingress we wrote to is cleared when it stops being ours.
    pub fn wrote(&mut self, w: StatusWrite) {
        self.written.insert(
            w.ingress,
            Written {
                source_rv: w.source_rv,
                value: w.value,
            },
        );
    }
}

/// An Event: the Ingress it is about, its reason and its note.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventKey {
    /// The Ingress.
    pub object: ObjectRef,
    /// The diagnostic's reason.
    pub reason: &'static str,
    /// `field: message`, at most [`MAX_NOTE_BYTES`].
    pub note: String,
}

impl EventKey {
    /// The Event for a diagnostic, if it is about an Ingress.
    pub fn of(d: &Diagnostic) -> Option<EventKey> {
        if d.kind != Kind::Ingress {
            return None;
        }
        let mut note = if d.field.is_empty() {
            d.message.clone()
        } else {
            format!("{}: {}", d.field, d.message)
        };
        if note.len() > MAX_NOTE_BYTES {
            let mut cut = MAX_NOTE_BYTES;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        Some(EventKey {
            object: d.object.clone(),
            reason: d.reason.as_str(),
            note,
        })
    }
}

/// The Events this process has sent (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct EventMemory {
    sent: HashSet<EventKey>,
}

impl EventMemory {
    /// The Events to send for the diagnostics active now, in their order and without repeats;
    /// forgets Events whose diagnostic went away (so they are sent again if it comes back).
    pub fn plan<'a>(&mut self, active: impl IntoIterator<Item = &'a Diagnostic>) -> Vec<EventKey> {
        let keys: Vec<EventKey> = active.into_iter().filter_map(EventKey::of).collect();
        let now: HashSet<&EventKey> = keys.iter().collect();
        self.sent.retain(|k| now.contains(k));
        let mut planned = HashSet::new();
        keys.iter()
            .filter(|k| !self.sent.contains(*k) && planned.insert(*k))
            .cloned()
            .collect()
    }

    /// Remembers a sent Event.
    pub fn sent(&mut self, key: EventKey) {
        self.sent.insert(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Reason, Severity};
    use k8s_openapi::api::networking::v1::{
        IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ing(name: &str, rv: &str, status: &[&str]) -> Ingress {
        Ingress {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            status: (!status.is_empty()).then(|| IngressStatus {
                load_balancer: Some(IngressLoadBalancerStatus {
                    ingress: Some(
                        status
                            .iter()
                            .map(|s| {
                                let a = Address::parse(s);
                                IngressLoadBalancerIngress {
                                    ip: a.ip,
                                    hostname: a.hostname,
                                    ports: None,
                                }
                            })
                            .collect(),
                    ),
                }),
            }),
            ..Ingress::default()
        }
    }

    fn r(name: &str) -> ObjectRef {
        ObjectRef::new("default", name)
    }

    fn addrs(list: &[&str]) -> Vec<Address> {
        list.iter().map(|s| Address::parse(s)).collect()
    }

    #[test]
    fn addresses_parse_as_ip_or_hostname() {
        assert_eq!(Address::parse("10.0.0.1").ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(Address::parse("::1").ip.as_deref(), Some("::1"));
        assert_eq!(
            Address::parse(" lb.example.com ").hostname.as_deref(),
            Some("lb.example.com")
        );
        let fixed = fixed_addresses(&["b.test".into(), "10.0.0.1".into(), "b.test".into()]);
        assert_eq!(fixed, addrs(&["b.test", "10.0.0.1"]));
    }

    #[test]
    fn owned_ingresses_get_the_address_once() {
        let mut m = StatusMemory::default();
        let (a, b) = (r("a"), r("b"));
        let owned: HashSet<&ObjectRef> = [&a, &b].into_iter().collect();
        let list = [ing("a", "1", &[]), ing("b", "1", &["10.0.0.1"])];
        let writes = m.plan(&list, &owned, &addrs(&["10.0.0.1"]));
        assert_eq!(writes.len(), 1, "b already says it: {writes:?}");
        assert_eq!(writes[0].ingress, a);
        m.wrote(writes[0].clone());
        // The watch has not caught up (same resourceVersion): no second write.
        assert!(m.plan(&list, &owned, &addrs(&["10.0.0.1"])).is_empty());
        // The order of entries does not matter.
        let list = [ing("a", "2", &["10.0.0.1"]), ing("b", "1", &["10.0.0.1"])];
        assert!(m.plan(&list, &owned, &addrs(&["10.0.0.1"])).is_empty());
    }

    #[test]
    fn an_ingress_we_stop_owning_is_cleared_only_if_it_carries_our_address() {
        let mut m = StatusMemory::default();
        let none: HashSet<&ObjectRef> = HashSet::new();
        let list = [
            ing("ours-before", "5", &["10.0.0.1"]),
            ing("foreign", "5", &["192.0.2.9"]),
            ing("empty", "5", &[]),
        ];
        let writes = m.plan(&list, &none, &addrs(&["10.0.0.1"]));
        assert_eq!(
            writes,
            vec![StatusWrite {
                ingress: r("ours-before"),
                value: vec![],
                source_rv: Some("5".into())
            }]
        );
    }

    #[test]
    fn an_ingress_we_wrote_is_cleared_even_when_the_address_changed() {
        let mut m = StatusMemory::default();
        let a = r("a");
        let owned: HashSet<&ObjectRef> = [&a].into_iter().collect();
        let list = [ing("a", "1", &[])];
        let w = m.plan(&list, &owned, &addrs(&["10.0.0.1"]));
        m.wrote(w[0].clone());
        let list = [ing("a", "2", &["10.0.0.1"])];
        let none: HashSet<&ObjectRef> = HashSet::new();
        let w = m.plan(&list, &none, &addrs(&["10.0.0.2"]));
        assert_eq!(w.len(), 1);
        assert!(w[0].value.is_empty());
    }

    #[test]
    fn gone_ingresses_are_forgotten() {
        let mut m = StatusMemory::default();
        let a = r("a");
        let owned: HashSet<&ObjectRef> = [&a].into_iter().collect();
        let w = m.plan(&[ing("a", "1", &[])], &owned, &addrs(&["10.0.0.1"]));
        m.wrote(w[0].clone());
        m.plan(&[], &owned, &addrs(&["10.0.0.1"]));
        assert!(m.written.is_empty());
    }

    fn diag(name: &str, reason: Reason, field: &str, message: &str) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            reason,
            kind: Kind::Ingress,
            object: r(name),
            field: field.into(),
            message: message.into(),
        }
    }

    #[test]
    fn events_are_sent_once_while_the_diagnostic_persists() {
        let mut m = EventMemory::default();
        let d = diag(
            "a",
            Reason::ServiceNotFound,
            "spec.rules[0]",
            "Service x not found",
        );
        let plan = m.plan([&d, &d]);
        assert_eq!(plan.len(), 1, "duplicates folded");
        assert_eq!(plan[0].note, "spec.rules[0]: Service x not found");
        m.sent(plan[0].clone());
        assert!(m.plan([&d]).is_empty());
        // Gone, then back: sent again.
        assert!(m.plan([]).is_empty());
        assert_eq!(m.plan([&d]).len(), 1);
    }

    #[test]
    fn two_messages_with_one_reason_are_two_events() {
        let mut m = EventMemory::default();
        let d1 = diag("a", Reason::ServiceNotFound, "f", "one");
        let d2 = diag("a", Reason::ServiceNotFound, "f", "two");
        assert_eq!(m.plan([&d1, &d2]).len(), 2);
    }

    #[test]
    fn only_ingress_diagnostics_become_events_and_notes_are_cut_on_a_char_boundary() {
        let mut other = diag("a", Reason::ServiceNotFound, "", "x");
        other.kind = Kind::Secret;
        assert!(EventKey::of(&other).is_none());
        let long = diag("a", Reason::ServiceNotFound, "", &"é".repeat(700));
        let key = EventKey::of(&long).unwrap();
        assert!(key.note.len() <= MAX_NOTE_BYTES);
        assert!(key.note.chars().all(|c| c == 'é'));
    }
}
