//! The cordon seam: is this node cordoned, and could another node take the
//! VIP over? A cordoned leader hands over only to an uncordoned node, so the
//! VIP is never left ownerless when every node is cordoned.

/// This node's scheduling state as the cordon watch sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CordonState {
    /// This node's `spec.unschedulable`.
    pub cordoned: bool,
    /// How many other control-plane nodes are uncordoned and Ready.
    pub schedulable_peers: usize,
}

/// The cordon watch's output, read by the controller.
pub type CordonWatch = tokio::sync::watch::Receiver<CordonState>;
