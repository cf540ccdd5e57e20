//! The cordon watch: this node's `spec.unschedulable`, and how many other
//! control-plane nodes are uncordoned and Ready, as a
//! [`vip_core::CordonWatch`].
//!
//! Two of kube's watchers (list, then watch from the list's
//! resourceVersion, resuming, re-listing on 410 Gone, with a bounded
//! back-off) run on their own client: one on this node by field selector,
//! one on the control-plane nodes by label selector. Needs RBAC
//! `nodes: get, list, watch`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vip_core::backend::publish;
use vip_core::{CordonState, CordonWatch};

use crate::access::{AccessError, ClientOptions, ClusterAccess};
use crate::follow::{follow, new_refusal, refusal};

/// The label that marks control-plane nodes (it only has to exist).
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum CordonError {
    /// The node name is empty.
    #[error("the node name is empty (set vip_nodename, usually from spec.nodeName)")]
    NoNodeName,
    /// The watch's client cannot be built.
    #[error("cannot build the cordon watch's client")]
    Client(#[source] AccessError),
}

/// What the cordon watch watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CordonConfig {
    /// This node's name.
    pub node_name: String,
    /// The label (existence) selecting control-plane nodes.
    pub control_plane_label: String,
    /// Bound of list requests and of opening a watch.
    pub request_timeout: Duration,
    /// Server-side timeout of one watch request.
    pub watch_timeout: Duration,
}

impl CordonConfig {
    /// Defaults for `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            control_plane_label: CONTROL_PLANE_LABEL.into(),
            request_timeout: Duration::from_secs(5),
            watch_timeout: Duration::from_secs(60),
        }
    }
}

/// A node as the cordon watch needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeView {
    unschedulable: bool,
    ready: bool,
}

fn view(node: &Node) -> NodeView {
    NodeView {
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        ready: node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
    }
}

/// The state from this node's view and the control-plane nodes' views.
fn state(
    node_name: &str,
    me: &BTreeMap<String, NodeView>,
    peers: &BTreeMap<String, NodeView>,
) -> CordonState {
    CordonState {
        cordoned: me.get(node_name).is_some_and(|v| v.unschedulable),
        schedulable_peers: peers
            .iter()
            .filter(|(name, v)| name.as_str() != node_name && v.ready && !v.unschedulable)
            .count(),
    }
}

/// Starts the cordon watch. The task ends when every receiver of the
/// returned watch is dropped. Needs a tokio runtime.
///
/// ```no_run
/// # async fn run(access: vip_lease::ClusterAccess) -> Result<(), Box<dyn std::error::Error>> {
/// let (mut cordon, _task) = vip_lease::spawn_cordon_watch(&access, vip_lease::CordonConfig::new("cp-1"))?;
/// cordon.changed().await?;
/// println!("cordoned: {}", cordon.borrow().cordoned);
/// # Ok(()) }
/// ```
pub fn spawn_cordon_watch(
    access: &ClusterAccess,
    config: CordonConfig,
) -> Result<(CordonWatch, JoinHandle<()>), CordonError> {
    if config.node_name.is_empty() {
        return Err(CordonError::NoNodeName);
    }
    let client = access
        .client(&ClientOptions::watch(config.request_timeout))
        .map_err(CordonError::Client)?;
    let api: Api<Node> = Api::all(client);
    let (out_tx, out_rx) = watch::channel(CordonState::default());
    let (me_tx, mut me_rx) = watch::channel(BTreeMap::new());
    let (peers_tx, mut peers_rx) = watch::channel(BTreeMap::new());
    let timeout_secs = u32::try_from(config.watch_timeout.as_secs().max(1)).unwrap_or(u32::MAX);
    let base = watcher::Config::default().timeout(timeout_secs);
    let me = base
        .clone()
        .fields(&format!("metadata.name={}", config.node_name));
    let peers = base.labels(&config.control_plane_label);
    let idle = config.watch_timeout + Duration::from_secs(5);
    tokio::spawn(reflect(api.clone(), me, idle, me_tx));
    tokio::spawn(reflect(api, peers, idle, peers_tx));
    let task = tokio::spawn(async move {
        loop {
            let next = state(
                &config.node_name,
                &me_rx.borrow_and_update(),
                &peers_rx.borrow_and_update(),
            );
            publish(&out_tx, next);
            tokio::select! {
                _ = out_tx.closed() => return,
                r = me_rx.changed() => if r.is_err() { return },
                r = peers_rx.changed() => if r.is_err() { return },
            }
        }
    });
    Ok((out_rx, task))
}

/// The nodes one watcher sees, by name, as the cordon watch needs them.
type NodeMap = BTreeMap<String, NodeView>;

/// The state of one watcher's nodes: the map published, and the one being
/// rebuilt while a (re)list is under way.
#[derive(Debug, Default)]
struct Nodes {
    relisting: Option<NodeMap>,
}

impl Nodes {
    /// Apply one watcher event to `current`; returns the map to publish
    /// when it changes (`None`: nothing to publish yet).
    fn apply(&mut self, current: &NodeMap, event: Event<Node>) -> Option<NodeMap> {
        match event {
            // A (re)list starts: build the map afresh, publish it whole.
            Event::Init => {
                self.relisting = Some(NodeMap::new());
                None
            }
            Event::InitApply(n) => {
                if let (Some(map), Some(name)) = (self.relisting.as_mut(), n.metadata.name.clone())
                {
                    map.insert(name, view(&n));
                }
                None
            }
            Event::InitDone => self.relisting.take(),
            Event::Apply(n) => {
                let name = n.metadata.name.clone()?;
                let mut next = current.clone();
                next.insert(name, view(&n));
                Some(next)
            }
            Event::Delete(n) => {
                let mut next = current.clone();
                next.remove(n.metadata.name.as_deref()?);
                Some(next)
            }
        }
    }
}

/// kube's watcher over the nodes `config` selects (see [`follow`]),
/// published as a map; ends when the receiver is dropped.
async fn reflect(
    api: Api<Node>,
    config: watcher::Config,
    idle: Duration,
    tx: watch::Sender<NodeMap>,
) {
    let selector = config
        .field_selector
        .clone()
        .or_else(|| config.label_selector.clone());
    let mut nodes = Nodes::default();
    let mut refused: Option<String> = None;
    follow(api, config, idle, &tx, |r| match r {
        Ok(event) => {
            refused = None;
            // The borrow ends before publishing (which writes).
            let next = nodes.apply(&tx.borrow(), event);
            if let Some(map) = next {
                publish(&tx, map);
            }
        }
        Err(e) => {
            // A refusal (RBAC) does not heal by itself: a warning naming
            // it, once until it changes or the watch works.
            if let Some(line) = new_refusal(&mut refused, &e) {
                tracing::warn!(?selector, error = %line, "cordon watch: cannot list or watch nodes");
            } else if refusal(&e).is_none() {
                tracing::debug!(error = %e, ?selector, "cordon watch failed; backing off");
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_counts_other_ready_uncordoned_nodes() {
        let v = |unschedulable, ready| NodeView {
            unschedulable,
            ready,
        };
        let me: BTreeMap<_, _> = [("a".to_string(), v(true, true))].into();
        let peers: BTreeMap<_, _> = [
            ("a".to_string(), v(true, true)),
            ("b".to_string(), v(false, true)),
            ("c".to_string(), v(false, false)),
            ("d".to_string(), v(true, true)),
        ]
        .into();
        assert_eq!(
            state("a", &me, &peers),
            CordonState {
                cordoned: true,
                schedulable_peers: 1
            }
        );
        assert_eq!(
            state("x", &me, &peers),
            CordonState {
                cordoned: false,
                schedulable_peers: 1
            }
        );
    }

    fn node(name: &str, unschedulable: bool) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            unschedulable: Some(unschedulable),
            ..Default::default()
        });
        n
    }

    #[test]
    fn a_relist_replaces_the_map_whole_and_watch_events_edit_it() {
        let mut nodes = Nodes::default();
        let stale: NodeMap = [("gone".to_string(), view(&node("gone", false)))].into();
        assert_eq!(nodes.apply(&stale, Event::Init), None);
        assert_eq!(nodes.apply(&stale, Event::InitApply(node("a", true))), None);
        assert_eq!(
            nodes.apply(&stale, Event::InitApply(node("b", false))),
            None
        );
        let listed = nodes.apply(&stale, Event::InitDone).unwrap();
        assert_eq!(
            listed.keys().collect::<Vec<_>>(),
            ["a", "b"],
            "the stale node is gone"
        );
        assert!(listed["a"].unschedulable);
        let edited = nodes
            .apply(&listed, Event::Apply(node("a", false)))
            .unwrap();
        assert!(!edited["a"].unschedulable);
        let deleted = nodes
            .apply(&edited, Event::Delete(node("b", false)))
            .unwrap();
        assert_eq!(deleted.keys().collect::<Vec<_>>(), ["a"]);
        // Init events outside a relist change nothing.
        assert_eq!(
            nodes.apply(&deleted, Event::InitApply(node("c", false))),
            None
        );
        assert_eq!(nodes.apply(&deleted, Event::InitDone), None);
    }
}
