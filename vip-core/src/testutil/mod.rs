//! In-memory backends for tests and embedding examples (feature
//! `test-util`): an election store shared by many electors with fault
//! injection, and an in-memory network whose address managers honour
//! address lifetimes the way the kernel does and record every action with
//! its time. The network also carries heartbeats and models the faults of
//! fast failover: links cut, hosts powered off, daemons frozen (as by
//! SIGSTOP), heartbeats filtered while ARP passes.
//!
//! Everything uses [`tokio::time::Instant`], so it works with paused time.
//!
//! By job: `store.rs` (the election store and its faults), `network.rs`
//! (the segment: addresses, announcements, heartbeats); here the health
//! probe and the recording observer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::time::Instant;

use crate::controller::{ControllerEvent, Observer};
use crate::health::{HealthError, HealthProbe};

mod network;
mod store;

pub use network::*;
pub use store::*;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not hide the state from the others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The controller configuration of the in-memory labs: node `name`, the
/// VIP 198.18.0.100 on `eth0`, default timings.
pub fn lab_controller_config(name: &str) -> crate::ControllerConfig {
    crate::ControllerConfig::new(
        crate::NodeIdentity::new(name).expect("a valid node name"),
        "198.18.0.100".parse().expect("a valid address"),
        crate::InterfaceSelector::named("eth0").expect("a valid interface name"),
        crate::Timings::default(),
    )
}

/// A health probe whose answer the test sets.
#[derive(Debug, Clone)]
pub struct MemoryHealth(Arc<AtomicBool>);

impl Default for MemoryHealth {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl MemoryHealth {
    /// A healthy probe.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the probe answer healthy or not.
    pub fn set_healthy(&self, healthy: bool) {
        self.0.store(healthy, Ordering::SeqCst);
    }
}

#[async_trait]
impl HealthProbe for MemoryHealth {
    async fn check(&self) -> Result<(), HealthError> {
        if self.0.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(HealthError {
                reason: "injected: unhealthy".into(),
            })
        }
    }
}

/// An [`Observer`] that records every controller event with its time.
#[derive(Debug, Clone, Default)]
pub struct RecordingObserver {
    node: String,
    events: Arc<Mutex<Vec<(Instant, String, ControllerEvent)>>>,
}

impl RecordingObserver {
    /// A recorder labelling events with `node`.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_string(),
            events: Arc::default(),
        }
    }

    /// The same log, labelled with another node (to share one log).
    pub fn for_node(&self, node: &str) -> Self {
        Self {
            node: node.to_string(),
            events: self.events.clone(),
        }
    }

    /// Every event so far: time, node, event.
    pub fn events(&self) -> Vec<(Instant, String, ControllerEvent)> {
        lock(&self.events).clone()
    }
}

impl Observer for RecordingObserver {
    fn on_event(&self, event: &ControllerEvent) {
        lock(&self.events).push((Instant::now(), self.node.clone(), event.clone()));
    }
}
