//! The cordon watch: this node's `spec.unschedulable`, and how many other
//! control-plane nodes are uncordoned and Ready, as a
//! [`vip_core::CordonWatch`].
//!
//! Two small reflectors (list, then watch from the list's resourceVersion,
//! re-listing on 410 Gone) run on their own client: one on this node by
//! field selector, one on the control-plane nodes by label selector. Needs
//! RBAC `nodes: get, list, watch`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vip_core::{CordonState, CordonWatch};

use crate::access::{AccessError, ClientOptions, ClusterAccess};
use crate::lease::backoff_or_closed;

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
    let me_sel = Selector::Field(format!("metadata.name={}", config.node_name));
    let peers_sel = Selector::Label(config.control_plane_label.clone());
    tokio::spawn(reflect(api.clone(), me_sel, config.clone(), me_tx));
    tokio::spawn(reflect(api, peers_sel, config.clone(), peers_tx));
    let task = tokio::spawn(async move {
        loop {
            let next = state(
                &config.node_name,
                &me_rx.borrow_and_update(),
                &peers_rx.borrow_and_update(),
            );
            out_tx.send_if_modified(|cur| {
                let changed = *cur != next;
                *cur = next;
                changed
            });
            tokio::select! {
                _ = out_tx.closed() => return,
                r = me_rx.changed() => if r.is_err() { return },
                r = peers_rx.changed() => if r.is_err() { return },
            }
        }
    });
    Ok((out_rx, task))
}

#[derive(Debug, Clone)]
enum Selector {
    Field(String),
    Label(String),
}

/// List + watch of the nodes `selector` picks, published as a map; ends
/// when the receiver is dropped.
async fn reflect(
    api: Api<Node>,
    selector: Selector,
    config: CordonConfig,
    tx: watch::Sender<BTreeMap<String, NodeView>>,
) {
    let (mut lp, mut wp) = (ListParams::default(), WatchParams::default());
    match &selector {
        Selector::Field(f) => {
            lp = lp.fields(f);
            wp = wp.fields(f);
        }
        Selector::Label(l) => {
            lp = lp.labels(l);
            wp = wp.labels(l);
        }
    }
    let timeout_secs = u32::try_from(config.watch_timeout.as_secs().max(1)).unwrap_or(u32::MAX);
    wp = wp.timeout(timeout_secs);
    let idle = config.watch_timeout + Duration::from_secs(5);
    let mut backoff = Duration::from_millis(100);
    let mut resume: Option<String> = None;
    loop {
        if tx.is_closed() {
            return;
        }
        let from = match resume.take() {
            Some(rv) => rv,
            None => {
                let listed = tokio::select! {
                    _ = tx.closed() => return,
                    r = tokio::time::timeout(config.request_timeout, api.list(&lp)) => r,
                };
                match listed {
                    Ok(Ok(list)) => {
                        let map: BTreeMap<_, _> = list
                            .items
                            .iter()
                            .filter_map(|n| n.metadata.name.clone().map(|name| (name, view(n))))
                            .collect();
                        tx.send_if_modified(|cur| {
                            let changed = *cur != map;
                            *cur = map;
                            changed
                        });
                        list.metadata.resource_version.unwrap_or_default()
                    }
                    other => {
                        // A refusal (RBAC) is a warning naming it; it does
                        // not heal by itself.
                        match other {
                            Ok(Err(e)) => {
                                tracing::warn!(?selector, error = %crate::access::error_line(&e), "cordon watch: cannot list nodes")
                            }
                            _ => tracing::debug!(?selector, "cordon watch: list timed out"),
                        }
                        if backoff_or_closed(&tx, &mut backoff, Duration::from_secs(2)).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let opened = tokio::select! {
            _ = tx.closed() => return,
            r = tokio::time::timeout(config.request_timeout, api.watch(&wp, &from)) => r,
        };
        let Ok(Ok(stream)) = opened else {
            resume = Some(from);
            if backoff_or_closed(&tx, &mut backoff, Duration::from_secs(2)).await {
                return;
            }
            continue;
        };
        let mut stream = stream.boxed();
        let mut last = from;
        let mut failed = false;
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                n = tokio::time::timeout(idle, stream.next()) => n,
            };
            match next {
                Err(_) | Ok(None) => break,
                Ok(Some(Ok(WatchEvent::Added(n) | WatchEvent::Modified(n)))) => {
                    backoff = Duration::from_millis(100);
                    if let Some(rv) = &n.metadata.resource_version {
                        last.clone_from(rv);
                    }
                    if let Some(name) = n.metadata.name.clone() {
                        let v = view(&n);
                        tx.send_if_modified(|cur| cur.insert(name, v) != Some(v));
                    }
                }
                Ok(Some(Ok(WatchEvent::Deleted(n)))) => {
                    if let Some(rv) = &n.metadata.resource_version {
                        last.clone_from(rv);
                    }
                    if let Some(name) = &n.metadata.name {
                        tx.send_if_modified(|cur| cur.remove(name).is_some());
                    }
                }
                Ok(Some(Ok(WatchEvent::Bookmark(b)))) => last = b.metadata.resource_version,
                Ok(Some(Ok(WatchEvent::Error(status)))) => {
                    tracing::debug!(?selector, code = status.code, message = %status.message, "cordon watch: error event");
                    last.clear();
                    failed = status.code != 410;
                    break;
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(?selector, error = %e, "cordon watch: stream failed");
                    failed = true;
                    break;
                }
            }
        }
        resume = (!last.is_empty()).then_some(last);
        if failed && backoff_or_closed(&tx, &mut backoff, Duration::from_secs(2)).await {
            return;
        }
    }
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
}
