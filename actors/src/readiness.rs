//! Readiness: the first configuration is live and the listeners are bound, and we are not
//! shutting down. `/readyz` answers from it.

use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness flags, shared by the runtime, the router (config live) and the admin API.
#[derive(Debug, Default)]
pub struct Readiness {
    config_live: AtomicBool,
    listening: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// The first configuration was published.
    pub fn set_config_live(&self) {
        self.config_live.store(true, Ordering::SeqCst);
    }
    /// The traffic listeners are bound.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }
    /// Shutdown started: report not ready so that load balancers stop sending.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
    /// Ready to take traffic.
    pub fn is_ready(&self) -> bool {
        self.config_live.load(Ordering::SeqCst)
            && self.listening.load(Ordering::SeqCst)
            && !self.draining.load(Ordering::SeqCst)
    }
}
