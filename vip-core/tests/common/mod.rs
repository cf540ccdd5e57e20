//! A lab of in-memory nodes for controller tests: one store, one segment,
//! N controllers that can be started, stopped, crashed, partitioned, made
//! unhealthy or cordoned, and a journal that totally orders every
//! operation each node performs on its parts.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use vip_core::heartbeat_auth_mem::MemoryKeys;
use vip_core::testutil::{
    MemoryAddressManager, MemoryAnnouncer, MemoryBackend, MemoryHealth, MemoryNetwork, MemoryStore,
    RecordingObserver,
};
use vip_core::{
    AddressError, AddressManager, AnnounceError, Announcer, BackendError, Conflict, Controller,
    ControllerConfig, ControllerEvent, ControllerHandle, CordonState, ElectionId, HeartbeatKey,
    Interface, InterfaceSelector, LeaderRecord, LinkEvent, LockBackend, MacAddr, NodeIdentity,
    Presence, RecordWatch, Role, ShutdownReport, Status, Timings, VersionedRecord, VipAddress,
    VipSpec,
};

/// One operation, in the order performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub at: Instant,
    pub node: String,
    pub what: String,
}

#[derive(Debug, Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<Op>>>);

impl Journal {
    pub fn push(&self, node: &str, what: String) {
        self.0.lock().unwrap().push(Op {
            at: Instant::now(),
            node: node.into(),
            what,
        });
    }

    pub fn ops(&self) -> Vec<Op> {
        self.0.lock().unwrap().clone()
    }

    /// The operations of `node` (just their text), from index `from` on.
    pub fn of(&self, node: &str) -> Vec<String> {
        self.ops()
            .into_iter()
            .filter(|o| o.node == node)
            .map(|o| o.what)
            .collect()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// Wraps a part and journals every call.
#[derive(Debug)]
pub struct Journaled<T> {
    inner: T,
    node: String,
    journal: Journal,
}

#[async_trait]
impl LockBackend for Journaled<Arc<MemoryBackend>> {
    async fn get(&self) -> Result<Option<VersionedRecord>, BackendError> {
        self.inner.get().await
    }
    async fn create(&self, record: &LeaderRecord) -> Result<VersionedRecord, BackendError> {
        let r = self.inner.create(record).await;
        if r.is_ok() {
            self.journal.push(
                &self.node,
                format!("create holder={}", record.holder_identity),
            );
        }
        r
    }
    async fn update(
        &self,
        current: &VersionedRecord,
        record: &LeaderRecord,
    ) -> Result<VersionedRecord, BackendError> {
        let r = self.inner.update(current, record).await;
        if r.is_ok() {
            if record.holder_identity.is_empty() {
                self.journal.push(&self.node, "release".into());
            } else {
                self.journal.push(
                    &self.node,
                    format!("update holder={}", record.holder_identity),
                );
            }
        }
        r
    }
    fn watch(&self) -> Option<RecordWatch> {
        self.inner.watch()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[async_trait]
impl AddressManager for Journaled<MemoryAddressManager> {
    async fn resolve(&self, s: &InterfaceSelector, v: &VipSpec) -> Result<Interface, AddressError> {
        self.inner.resolve(s, v).await
    }
    async fn ensure_present(
        &self,
        i: &Interface,
        vip: &VipAddress,
        l: Option<Duration>,
    ) -> Result<Presence, AddressError> {
        let r = self.inner.ensure_present(i, vip, l).await;
        match &r {
            Ok(Presence::Added) => self
                .journal
                .push(&self.node, format!("add {} lifetime={:?}", vip.addr(), l)),
            Ok(Presence::Refreshed) => self.journal.push(
                &self.node,
                format!("refresh {} lifetime={:?}", vip.addr(), l),
            ),
            Err(_) => {}
        }
        r
    }
    async fn ensure_absent(&self, i: &Interface, vip: &VipAddress) -> Result<bool, AddressError> {
        let r = self.inner.ensure_absent(i, vip).await;
        if let Ok(true) = r {
            self.journal
                .push(&self.node, format!("remove {}", vip.addr()));
        }
        r
    }
    async fn is_present(&self, i: &Interface, vip: &VipAddress) -> Result<bool, AddressError> {
        self.inner.is_present(i, vip).await
    }
    async fn subscribe(
        &self,
        i: &Interface,
        v: &VipSpec,
    ) -> Result<mpsc::Receiver<LinkEvent>, AddressError> {
        self.inner.subscribe(i, v).await
    }
}

#[async_trait]
impl Announcer for Journaled<MemoryAnnouncer> {
    async fn announce(&self, i: &Interface, vip: IpAddr) -> Result<(), AnnounceError> {
        self.journal.push(&self.node, format!("announce {vip}"));
        self.inner.announce(i, vip).await
    }
    async fn probe(
        &self,
        i: &Interface,
        a: IpAddr,
        t: Duration,
    ) -> Result<Option<MacAddr>, AnnounceError> {
        self.inner.probe(i, a, t).await
    }
    async fn subscribe_conflicts(
        &self,
        i: &Interface,
        v: &[IpAddr],
    ) -> Result<mpsc::Receiver<Conflict>, AnnounceError> {
        self.inner.subscribe_conflicts(i, v).await
    }
}

pub struct Node {
    pub name: String,
    pub mac: MacAddr,
    pub backend: Arc<MemoryBackend>,
    pub health: MemoryHealth,
    pub cordon: watch::Sender<CordonState>,
    pub handle: Option<ControllerHandle>,
    pub status: Option<watch::Receiver<Status>>,
    pub starts: u32,
}

pub struct Lab {
    pub store: MemoryStore,
    pub net: MemoryNetwork,
    pub journal: Journal,
    pub events: RecordingObserver,
    pub nodes: Vec<Node>,
    pub timings: Timings,
    pub vips: VipSpec,
    pub tweak: fn(&mut ControllerConfig),
    /// Give the controllers a heartbeat channel (fast failover), except
    /// the nodes listed in `no_heartbeats`.
    pub fast: bool,
    pub no_heartbeats: Vec<usize>,
    /// The cluster's heartbeat key store (identity [`CLUSTER`]).
    pub keys: MemoryKeys,
}

/// The lab cluster's identity (its Lease's uid).
pub const CLUSTER: &str = "lab-cluster-uid";

pub fn vip() -> IpAddr {
    "198.18.0.100".parse().unwrap()
}

pub fn name(i: usize) -> String {
    format!("node-{i}")
}

impl Lab {
    pub fn new(n: usize) -> Self {
        Self::with_vips(n, "198.18.0.100".parse().unwrap())
    }

    pub fn with_vips(n: usize, vips: VipSpec) -> Self {
        let store = MemoryStore::new();
        let net = MemoryNetwork::new(Duration::from_secs(1));
        let nodes = (0..n)
            .map(|i| {
                let (cordon, _) = watch::channel(CordonState::default());
                Node {
                    name: name(i),
                    mac: MacAddr([2, 0, 0, 0, 0, i as u8 + 1]),
                    backend: Arc::new(store.client(&name(i))),
                    health: MemoryHealth::new(),
                    cordon,
                    handle: None,
                    status: None,
                    starts: 0,
                }
            })
            .collect();
        Self {
            store,
            net,
            journal: Journal::default(),
            events: RecordingObserver::new("lab"),
            nodes,
            timings: Timings::default(),
            vips,
            tweak: |_| {},
            fast: false,
            no_heartbeats: vec![],
            keys: MemoryKeys::new(CLUSTER),
        }
    }

    /// The cluster's heartbeat key and the election scope of its beats, as
    /// the controllers derive them.
    pub async fn heartbeat_auth(&self) -> (HeartbeatKey, ElectionId) {
        use vip_core::HeartbeatKeySource;
        let key = self.keys.shared_key().await.expect("the lab's key");
        let vips: Vec<IpAddr> = self.vips.addresses().iter().map(VipAddress::addr).collect();
        let scope = vip_core::election_scope(CLUSTER, "vip", &vips).expect("a scope");
        (key, scope)
    }

    /// `n` nodes, node-0 started first and leading, the others following
    /// for 2 s.
    pub async fn led(n: usize) -> Self {
        let mut lab = Self::new(n);
        lab.start(0);
        lab.wait_leader(Duration::from_secs(2))
            .await
            .expect("node-0 leads");
        for i in 1..n {
            lab.start(i);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        lab
    }

    pub fn config(&self, i: usize) -> ControllerConfig {
        let mut c = ControllerConfig::new(
            NodeIdentity::new(&self.nodes[i].name).unwrap(),
            self.vips.clone(),
            InterfaceSelector::named("eth0").unwrap(),
            self.timings,
        );
        (self.tweak)(&mut c);
        c
    }

    pub fn start(&mut self, i: usize) {
        let config = self.config(i);
        let node = &self.nodes[i];
        let (addresses, announcer) = self.net.node(&node.name, node.mac);
        let journal = self.journal.clone();
        let n = node.name.clone();
        let handle = Controller::new(
            config,
            Arc::new(Journaled {
                inner: node.backend.clone(),
                node: n.clone(),
                journal: journal.clone(),
            }),
            Arc::new(Journaled {
                inner: addresses,
                node: n.clone(),
                journal: journal.clone(),
            }),
            Arc::new(Journaled {
                inner: announcer,
                node: n.clone(),
                journal,
            }),
        )
        .with_health(Arc::new(node.health.clone()))
        .with_cordon(node.cordon.subscribe())
        .with_observer(Arc::new(self.events.for_node(&n)));
        let handle = if self.fast && !self.no_heartbeats.contains(&i) {
            handle.with_heartbeats(
                Arc::new(self.net.heartbeats(&n, node.mac)),
                Arc::new(self.keys.clone()),
            )
        } else {
            handle
        };
        let handle = handle.spawn().expect("valid config");
        let node = &mut self.nodes[i];
        node.status = Some(handle.status());
        node.handle = Some(handle);
        node.starts += 1;
    }

    pub async fn stop(&mut self, i: usize) -> ShutdownReport {
        let h = self.nodes[i].handle.take().expect("running");
        self.nodes[i].status = None;
        h.shutdown().await
    }

    pub fn crash(&mut self, i: usize) {
        if let Some(h) = self.nodes[i].handle.take() {
            h.abort();
        }
        self.nodes[i].status = None;
    }

    /// A node crash: the host loses power (its addresses and link go at
    /// once) and the daemon dies.
    pub fn power_off(&mut self, i: usize) {
        self.crash(i);
        self.net.power_off(&self.nodes[i].name);
    }

    /// Freeze a daemon as SIGSTOP would (its parts' calls and its store
    /// requests wait), or thaw it.
    pub fn freeze(&self, i: usize, frozen: bool) {
        self.net.set_frozen(&self.nodes[i].name, frozen);
        self.nodes[i].backend.faults().set_frozen(frozen);
    }

    pub fn running(&self, i: usize) -> bool {
        self.nodes[i].handle.is_some()
    }

    pub fn status(&self, i: usize) -> Status {
        self.nodes[i]
            .status
            .as_ref()
            .expect("running")
            .borrow()
            .clone()
    }

    pub fn role(&self, i: usize) -> Option<Role> {
        self.nodes[i].status.as_ref().map(|s| s.borrow().role)
    }

    /// Nodes whose status says leader.
    pub fn leaders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.role(i) == Some(Role::Leader))
            .collect()
    }

    pub fn holder(&self) -> Option<String> {
        self.store.current().map(|r| r.record.holder_identity)
    }

    /// Advance paused time in small steps, up to `d`, until `f` holds.
    pub async fn run_until(&self, d: Duration, mut f: impl FnMut(&Self) -> bool) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if f(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        f(self)
    }

    pub async fn wait_leader(&self, d: Duration) -> Option<usize> {
        let ok = self.run_until(d, |l| l.leaders().len() == 1).await;
        if ok {
            self.leaders().first().copied()
        } else {
            None
        }
    }

    pub fn events_of(&self, node: &str) -> Vec<(Instant, ControllerEvent)> {
        self.events
            .events()
            .into_iter()
            .filter(|(_, n, _)| n == node)
            .map(|(t, _, e)| (t, e))
            .collect()
    }
}

/// Check that no two nodes' kernels answered for the same address at the
/// same instant (held it with their link up).
pub fn assert_no_answer_overlap(net: &MemoryNetwork) {
    let iv = net.answering();
    for (i, a) in iv.iter().enumerate() {
        for b in &iv[i + 1..] {
            if a.address != b.address || a.node == b.node {
                continue;
            }
            let far = Instant::now() + Duration::from_secs(3600);
            let (a_end, b_end) = (a.end.unwrap_or(far), b.end.unwrap_or(far));
            assert!(
                a_end <= b.start || b_end <= a.start,
                "two nodes answered for the VIP at once: {a:?} and {b:?}"
            );
        }
    }
}

/// Check that every time a node added the VIP, the last write to the
/// store before it was that node's own, as holder: no VIP without a
/// successful Lease write.
pub fn assert_added_after_own_write(net: &MemoryNetwork, store: &MemoryStore) {
    let log = store.log();
    for a in net.actions() {
        if a.action != vip_core::testutil::AddressAction::Added {
            continue;
        }
        let last = log.iter().rfind(|w| w.at <= a.at);
        assert!(
            last.is_some_and(|w| w.record.holder_identity == a.node),
            "{} added {} at {:?}, but the last write before was {last:?}",
            a.node,
            a.address,
            a.at
        );
    }
}

/// Check that no two nodes held the same address at the same instant.
pub fn assert_no_overlap(net: &MemoryNetwork) {
    let iv = net.intervals();
    for (i, a) in iv.iter().enumerate() {
        for b in &iv[i + 1..] {
            if a.address != b.address || a.node == b.node {
                continue;
            }
            let a_end = a.end.unwrap_or(Instant::now() + Duration::from_secs(3600));
            let b_end = b.end.unwrap_or(Instant::now() + Duration::from_secs(3600));
            assert!(
                a_end <= b.start || b_end <= a.start,
                "overlap: {a:?} and {b:?}"
            );
        }
    }
}

/// `leaseTransitions` increments exactly when the holder changes to a
/// different non-empty identity.
pub fn check_transitions(lab: &Lab) {
    let log = lab.store.log();
    let mut expected = 0;
    let mut prev = String::new();
    for (k, w) in log.iter().enumerate() {
        let h = &w.record.holder_identity;
        if k > 0 && !h.is_empty() && *h != prev {
            expected += 1;
        }
        assert_eq!(
            w.record.lease_transitions, expected,
            "write {k} of {log:#?}"
        );
        prev = h.clone();
    }
}

/// A current-thread runtime with paused time, for the property tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}
