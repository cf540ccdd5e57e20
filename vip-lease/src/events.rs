//! Kubernetes Events for every leadership change, on the Lease and on the
//! Node, as client-go's event recorder writes them.
//!
//! [`EventRecorder`] is a [`vip_core::Observer`]: it turns the controller's
//! leadership events (acquired, stepped down with its reason, a foreign
//! claim of the VIP) into notes and only *enqueues* them, with `try_send`
//! into a bounded queue, so a slow or hung API server never blocks the
//! controller; a note that does not fit is dropped and counted
//! ([`EventMetrics::dropped`]). A task writes the queue out with its own
//! client, every request bounded by [`EventsConfig::request_timeout`].
//!
//! Each note becomes two `core/v1` Events:
//!
//! - on the Lease (`involvedObject` kind `Lease`, apiVersion
//!   `coordination.k8s.io/v1`, its namespace, name and uid), in the Lease's
//!   namespace;
//! - on the Node (kind `Node`, name = the node identity, its uid), in
//!   `default`, where Events about cluster-scoped objects live (kubelet's
//!   do too).
//!
//! `core/v1` rather than `events.k8s.io/v1`: `kubectl get events` and
//! `--field-selector involvedObject.name=<lease>` work on the core/v1
//! fields (the events.k8s.io view renames `involvedObject` to `regarding`),
//! and every Kubernetes version serves it. The Events carry
//! `reportingComponent: vip` and `reportingInstance: <node>` (and the same
//! in `source`), the message is the controller's log line, and repeats are
//! aggregated like client-go's `EventCorrelator`: the same type, reason,
//! message and object within [`EventsConfig::aggregation_window`] bumps
//! `count` and `lastTimestamp` of the existing Event with a strategic merge
//! patch instead of creating another. Names are
//! `<object name>.<16 hex digits of the unix nanoseconds>`, like client-go's.
//!
//! Needs RBAC `events: create, patch` in the Lease's namespace and in
//! `default`, `leases: get` and `nodes: get` (for the uids).
//!
//! ```no_run
//! # async fn run(access: vip_lease::ClusterAccess) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use vip_lease::events::{EventCounts, EventsConfig, spawn_event_recorder};
//! use vip_lease::LeaseName;
//!
//! let counts = Arc::new(EventCounts::default());
//! let (recorder, _task) =
//!     spawn_event_recorder(&access, EventsConfig::new(LeaseName::default(), "cp-1"), counts.clone())?;
//! // Controller::new(..).with_observer(Arc::new(recorder))
//! # let _ = recorder;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use vip_core::{ControllerEvent, Observer, StepDownReason};

use crate::access::{AccessError, ClientOptions, ClusterAccess};
use crate::lease::LeaseName;

/// The reporting controller of every Event.
pub const REPORTING_CONTROLLER: &str = "vip";

/// The namespace of Events about cluster-scoped objects (Nodes).
pub const NODE_EVENT_NAMESPACE: &str = "default";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The node name is empty.
    #[error("the node name is empty (set vip_nodename, usually from spec.nodeName)")]
    NoNodeName,
    /// The queue capacity is zero.
    #[error("the event queue capacity must be at least 1")]
    NoQueue,
    /// The recorder's client cannot be built.
    #[error("cannot build the event recorder's client")]
    Client(#[source] AccessError),
}

/// What the recorder writes and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// The Lease the Events are about.
    pub lease: LeaseName,
    /// This node: the Node the Events are about and the reporting
    /// instance.
    pub node_name: String,
    /// Notes waiting to be written; more are dropped (and counted).
    pub queue: usize,
    /// Bound of one API request.
    pub request_timeout: Duration,
    /// Repeats within this window update the existing Event.
    pub aggregation_window: Duration,
    /// How many distinct Events the aggregation remembers.
    pub cache: usize,
}

impl EventsConfig {
    /// Defaults: a queue of 64 notes, 5 s requests, client-go's 10 minute
    /// aggregation window, 256 remembered Events.
    pub fn new(lease: LeaseName, node_name: impl Into<String>) -> Self {
        Self {
            lease,
            node_name: node_name.into(),
            queue: 64,
            request_timeout: Duration::from_secs(5),
            aggregation_window: Duration::from_secs(600),
            cache: 256,
        }
    }
}

/// Where the recorder reports what became of its notes (metrics).
pub trait EventMetrics: Send + Sync + 'static {
    /// One Event was created or updated.
    fn written(&self);
    /// A note was dropped: the queue was full.
    fn dropped(&self);
    /// A write failed or timed out (the note is not retried).
    fn failed(&self);
}

/// [`EventMetrics`] as plain counters.
#[derive(Debug, Default)]
pub struct EventCounts {
    /// Events created or updated.
    pub written: AtomicU64,
    /// Notes dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Writes that failed or timed out.
    pub failed: AtomicU64,
}

impl EventMetrics for EventCounts {
    fn written(&self) {
        self.written.fetch_add(1, Ordering::Relaxed);
    }
    fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
    fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Expected.
    Normal,
    /// Worth a look.
    Warning,
}

impl EventType {
    /// The API's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// One leadership change as an Event says it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// The machine-readable reason (CamelCase).
    pub reason: &'static str,
    /// The message: the controller's log line, with the node first.
    pub message: String,
}

/// The Event reason of a step-down (every reason is named, so a new one is
/// a compile error here).
pub fn step_down_reason(reason: StepDownReason, released: bool) -> (EventType, &'static str) {
    match reason {
        StepDownReason::Shutdown if released => (EventType::Normal, "LeaderReleased"),
        StepDownReason::Shutdown => (EventType::Warning, "SteppedDownShutdown"),
        StepDownReason::RenewDeadline | StepDownReason::LeaseLost => {
            (EventType::Warning, "LeaderLost")
        }
        StepDownReason::Unhealthy => (EventType::Warning, "SteppedDownUnhealthy"),
        StepDownReason::Cordoned => (EventType::Normal, "SteppedDownCordoned"),
        StepDownReason::CarrierDown => (EventType::Warning, "SteppedDownCarrier"),
        StepDownReason::AddressFailure => (EventType::Warning, "SteppedDownAddressFailure"),
        StepDownReason::Superseded => (EventType::Warning, "LeaderSuperseded"),
    }
}

/// The note of a controller event, `None` for events that are not a
/// leadership change (renewals, announcements, health samples, …). The
/// messages are the controller's log lines ("became leader", "stepped
/// down: leadership ended", "another host claims our VIP") with their
/// fields.
pub fn describe(node: &str, event: &ControllerEvent) -> Option<Note> {
    match event {
        ControllerEvent::Acquired { new } => Some(Note {
            type_: EventType::Normal,
            reason: "LeaderAcquired",
            message: if *new {
                format!("{node} became leader")
            } else {
                format!("{node} became leader (it already held the lease)")
            },
        }),
        ControllerEvent::SteppedDown { reason, released } => {
            let (type_, why) = step_down_reason(*reason, *released);
            Some(Note {
                type_,
                reason: why,
                message: format!(
                    "{node} stepped down: leadership ended: {reason}; lease {}",
                    if *released {
                        "released"
                    } else {
                        "not released"
                    }
                ),
            })
        }
        ControllerEvent::FastTakeover { from, term, silent } => Some(Note {
            type_: EventType::Normal,
            reason: "FastTakeover",
            message: format!(
                "{node} took the lease over from {from} by compare-and-swap (term {term}): its heartbeats stopped {} ms ago and nobody answered for the VIP",
                silent.as_millis()
            ),
        }),
        ControllerEvent::Conflict(c) => Some(Note {
            type_: EventType::Warning,
            reason: "VIPConflict",
            message: format!(
                "{node}: another host claims our VIP: address {}, mac {}",
                c.address, c.mac
            ),
        }),
        _ => None,
    }
}

/// The controller-facing side: an [`Observer`] that only enqueues.
#[derive(Clone)]
pub struct EventRecorder {
    node: String,
    tx: mpsc::Sender<Note>,
    metrics: Arc<dyn EventMetrics>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("node", &self.node)
            .field("queued", &(self.tx.max_capacity() - self.tx.capacity()))
            .finish()
    }
}

impl EventRecorder {
    /// Enqueue a note (never waits); `false` when it was dropped.
    pub fn record(&self, note: Note) -> bool {
        match self.tx.try_send(note) {
            Ok(()) => true,
            Err(_) => {
                self.metrics.dropped();
                false
            }
        }
    }
}

impl Observer for EventRecorder {
    fn on_event(&self, event: &ControllerEvent) {
        if let Some(note) = describe(&self.node, event) {
            self.record(note);
        }
    }
}

/// Which object an Event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The Lease.
    Lease,
    /// This node.
    Node,
}

/// What to do with a note for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Create an Event with this name.
    Create {
        /// `<object>.<16 hex of unix nanos>`.
        name: String,
    },
    /// Bump the Event of this name to `count`.
    Patch {
        /// The existing Event.
        name: String,
        /// Its new count.
        count: i32,
        /// Its first timestamp (kept).
        first: SystemTime,
    },
}

#[derive(Debug, Clone)]
struct Seen {
    name: String,
    count: i32,
    first: SystemTime,
    last: Instant,
}

/// client-go's dedupe of identical Events: same object, type, reason and
/// message within the window → the same Event, one count more. Time is
/// `tokio::time::Instant`, so it is tested with paused time.
#[derive(Debug)]
pub struct Correlator {
    window: Duration,
    capacity: usize,
    seen: HashMap<(Target, Note), Seen>,
}

impl Correlator {
    /// Remembering at most `capacity` Events for `window`.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            seen: HashMap::new(),
        }
    }

    /// The decision for `note` about `target` (named `object`) now; `wall`
    /// is the wall-clock time that names a new Event.
    pub fn decide(
        &mut self,
        target: Target,
        object: &str,
        note: &Note,
        wall: SystemTime,
    ) -> Decision {
        let now = Instant::now();
        let key = (target, note.clone());
        if let Some(s) = self.seen.get_mut(&key)
            && now.saturating_duration_since(s.last) < self.window
        {
            s.count = s.count.saturating_add(1);
            s.last = now;
            return Decision::Patch {
                name: s.name.clone(),
                count: s.count,
                first: s.first,
            };
        }
        self.seen
            .retain(|_, s| now.saturating_duration_since(s.last) < self.window);
        if self.seen.len() >= self.capacity
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
        {
            self.seen.remove(&oldest);
        }
        let name = event_name(object, wall);
        self.seen.insert(
            key,
            Seen {
                name: name.clone(),
                count: 1,
                first: wall,
                last: now,
            },
        );
        Decision::Create { name }
    }

    /// Forget an Event (it was deleted or could not be written).
    pub fn forget(&mut self, target: Target, note: &Note) {
        self.seen.remove(&(target, note.clone()));
    }
}

/// client-go's Event name: `<object>.<unix nanos as 16 hex digits>`.
pub fn event_name(object: &str, wall: SystemTime) -> String {
    let nanos = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{object}.{:016x}", nanos as u64)
}

fn time(t: SystemTime) -> Time {
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0));
    // metav1.Time has whole seconds on the wire.
    let secs = i64::try_from(nanos / 1_000_000_000).unwrap_or(0);
    Time(jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// Start the recorder: the [`EventRecorder`] to pass to the controller as
/// its observer, and the writing task (it ends when every recorder is
/// dropped). Needs a tokio runtime.
pub fn spawn_event_recorder(
    access: &ClusterAccess,
    config: EventsConfig,
    metrics: Arc<dyn EventMetrics>,
) -> Result<(EventRecorder, JoinHandle<()>), EventsError> {
    if config.node_name.is_empty() {
        return Err(EventsError::NoNodeName);
    }
    if config.queue == 0 {
        return Err(EventsError::NoQueue);
    }
    let client = access
        .client(&ClientOptions::requests(config.request_timeout))
        .map_err(EventsError::Client)?;
    let (tx, rx) = mpsc::channel(config.queue);
    let recorder = EventRecorder {
        node: config.node_name.clone(),
        tx,
        metrics: metrics.clone(),
    };
    let writer = Writer {
        correlator: Correlator::new(config.aggregation_window, config.cache),
        leases: Api::namespaced(client.clone(), &config.lease.namespace),
        nodes: Api::all(client.clone()),
        client,
        lease_uid: None,
        node_uid: None,
        config,
        metrics,
    };
    Ok((recorder, tokio::spawn(writer.run(rx))))
}

struct Writer {
    config: EventsConfig,
    client: kube::Client,
    leases: Api<Lease>,
    nodes: Api<Node>,
    lease_uid: Option<String>,
    node_uid: Option<String>,
    correlator: Correlator,
    metrics: Arc<dyn EventMetrics>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Note>) {
        while let Some(note) = rx.recv().await {
            for target in [Target::Lease, Target::Node] {
                self.write(target, &note).await;
            }
        }
    }

    /// The uid of the object, looked up once (bounded); `None` while
    /// unknown (the Event is written without it).
    async fn uid(&mut self, target: Target) -> Option<String> {
        let timeout = self.config.request_timeout;
        match target {
            Target::Lease if self.lease_uid.is_none() => {
                if let Ok(Ok(l)) =
                    tokio::time::timeout(timeout, self.leases.get(&self.config.lease.name)).await
                {
                    self.lease_uid = l.metadata.uid;
                }
            }
            Target::Node if self.node_uid.is_none() => {
                if let Ok(Ok(n)) =
                    tokio::time::timeout(timeout, self.nodes.get(&self.config.node_name)).await
                {
                    self.node_uid = n.metadata.uid;
                }
            }
            _ => {}
        }
        match target {
            Target::Lease => self.lease_uid.clone(),
            Target::Node => self.node_uid.clone(),
        }
    }

    fn involved(&self, target: Target, uid: Option<String>) -> (String, ObjectReference) {
        match target {
            Target::Lease => (
                self.config.lease.namespace.clone(),
                ObjectReference {
                    api_version: Some("coordination.k8s.io/v1".into()),
                    kind: Some("Lease".into()),
                    namespace: Some(self.config.lease.namespace.clone()),
                    name: Some(self.config.lease.name.clone()),
                    uid,
                    ..ObjectReference::default()
                },
            ),
            Target::Node => (
                NODE_EVENT_NAMESPACE.to_owned(),
                ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(self.config.node_name.clone()),
                    uid,
                    ..ObjectReference::default()
                },
            ),
        }
    }

    async fn write(&mut self, target: Target, note: &Note) {
        let uid = self.uid(target).await;
        let (namespace, involved) = self.involved(target, uid);
        let object = involved.name.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let wall = SystemTime::now();
        let timeout = self.config.request_timeout;
        let decision = self.correlator.decide(target, &object, note, wall);
        let result = match &decision {
            Decision::Patch { name, count, .. } => {
                let patch = serde_json::json!({
                    "count": count,
                    "lastTimestamp": time(wall),
                    "message": note.message,
                });
                match tokio::time::timeout(
                    timeout,
                    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)),
                )
                .await
                {
                    // Deleted meanwhile (or expired): start a new one, as
                    // client-go does.
                    Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
                        self.correlator.forget(target, note);
                        let Decision::Create { name } =
                            self.correlator.decide(target, &object, note, wall)
                        else {
                            return self.metrics.failed();
                        };
                        self.create(&api, &namespace, name, involved, note, wall, wall)
                            .await
                    }
                    Ok(r) => r.map(|_| ()).map_err(|e| crate::access::error_line(&e)),
                    Err(_) => Err(format!("timed out after {timeout:?}")),
                }
            }
            Decision::Create { name } => {
                self.create(&api, &namespace, name.clone(), involved, note, wall, wall)
                    .await
            }
        };
        match result {
            Ok(()) => self.metrics.written(),
            Err(error) => {
                if matches!(decision, Decision::Create { .. }) {
                    self.correlator.forget(target, note);
                }
                self.metrics.failed();
                tracing::warn!(%error, reason = note.reason, object = %object, "cannot write a Kubernetes Event");
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        api: &Api<Event>,
        namespace: &str,
        name: String,
        involved: ObjectReference,
        note: &Note,
        first: SystemTime,
        last: SystemTime,
    ) -> Result<(), String> {
        let node = &self.config.node_name;
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            involved_object: involved,
            reason: Some(note.reason.to_owned()),
            message: Some(note.message.clone()),
            type_: Some(note.type_.as_str().to_owned()),
            count: Some(1),
            first_timestamp: Some(time(first)),
            last_timestamp: Some(time(last)),
            source: Some(EventSource {
                component: Some(REPORTING_CONTROLLER.to_owned()),
                host: Some(node.clone()),
            }),
            reporting_component: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(node.clone()),
            ..Event::default()
        };
        let timeout = self.config.request_timeout;
        match tokio::time::timeout(timeout, api.create(&PostParams::default(), &event)).await {
            Ok(r) => r.map(|_| ()).map_err(|e| crate::access::error_line(&e)),
            Err(_) => Err(format!("timed out after {timeout:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(message: &str) -> Note {
        Note {
            type_: EventType::Normal,
            reason: "LeaderAcquired",
            message: message.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn repeats_within_the_window_patch_the_same_event() {
        let mut c = Correlator::new(Duration::from_secs(600), 8);
        let wall = UNIX_EPOCH + Duration::from_nanos(0x1234_5678_9abc_def0);
        let first = c.decide(Target::Lease, "plndr-cp-lock", &note("a"), wall);
        assert_eq!(
            first,
            Decision::Create {
                name: "plndr-cp-lock.123456789abcdef0".into()
            }
        );
        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(
            c.decide(
                Target::Lease,
                "plndr-cp-lock",
                &note("a"),
                wall + Duration::from_secs(599)
            ),
            Decision::Patch {
                name: "plndr-cp-lock.123456789abcdef0".into(),
                count: 2,
                first: wall
            }
        );
        // Another message, or the same one about the Node: another Event.
        let other = c.decide(
            Target::Lease,
            "plndr-cp-lock",
            &note("b"),
            wall + Duration::from_secs(1),
        );
        assert!(matches!(other, Decision::Create { .. }));
        let node = c.decide(Target::Node, "cp-1", &note("a"), wall);
        assert!(matches!(node, Decision::Create { name } if name.starts_with("cp-1.")));
        // The window counts from the last repeat; past it, a new Event.
        tokio::time::advance(Duration::from_secs(599)).await;
        assert!(matches!(
            c.decide(Target::Lease, "plndr-cp-lock", &note("a"), wall),
            Decision::Patch { count: 3, .. }
        ));
        tokio::time::advance(Duration::from_secs(601)).await;
        assert!(matches!(
            c.decide(
                Target::Lease,
                "plndr-cp-lock",
                &note("a"),
                wall + Duration::from_secs(2000)
            ),
            Decision::Create { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded() {
        let mut c = Correlator::new(Duration::from_secs(600), 2);
        for m in ["a", "b", "c"] {
            c.decide(Target::Lease, "l", &note(m), SystemTime::now());
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(c.seen.len(), 2);
        // "a" was the oldest and is forgotten: a new Event.
        assert!(matches!(
            c.decide(Target::Lease, "l", &note("a"), SystemTime::now()),
            Decision::Create { .. }
        ));
    }

    #[test]
    fn notes_use_the_log_wording() {
        let n = describe("cp-1", &ControllerEvent::Acquired { new: true }).unwrap();
        assert_eq!(
            (n.reason, n.message.as_str()),
            ("LeaderAcquired", "cp-1 became leader")
        );
        let n = describe(
            "cp-1",
            &ControllerEvent::SteppedDown {
                reason: StepDownReason::Cordoned,
                released: true,
            },
        )
        .unwrap();
        assert_eq!(n.reason, "SteppedDownCordoned");
        assert_eq!(
            n.message,
            format!(
                "cp-1 stepped down: leadership ended: {}; lease released",
                StepDownReason::Cordoned
            )
        );
        let n = describe(
            "cp-1",
            &ControllerEvent::SteppedDown {
                reason: StepDownReason::Shutdown,
                released: true,
            },
        )
        .unwrap();
        assert_eq!((n.type_, n.reason), (EventType::Normal, "LeaderReleased"));
        assert!(
            describe(
                "cp-1",
                &ControllerEvent::Renewed {
                    latency: Duration::ZERO
                }
            )
            .is_none()
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let (tx, _rx) = mpsc::channel(2);
        let counts = Arc::new(EventCounts::default());
        let r = EventRecorder {
            node: "cp-1".into(),
            tx,
            metrics: counts.clone(),
        };
        for _ in 0..5 {
            r.on_event(&ControllerEvent::Acquired { new: true });
        }
        // Renewals are not leadership changes: not queued, not dropped.
        r.on_event(&ControllerEvent::Renewed {
            latency: Duration::ZERO,
        });
        assert_eq!(counts.dropped.load(Ordering::Relaxed), 3);
    }
}
