//! The health seam: is the local control plane healthy? Leadership follows
//! a healthy API server.

use async_trait::async_trait;

/// Why a health check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct HealthError {
    /// What was seen, e.g. `GET /readyz: 500` or `connection refused`.
    pub reason: String,
}

/// One check of the local control plane. The controller runs it at a
/// period, with a timeout and failure/success thresholds
/// ([`HealthPolicy`](crate::HealthPolicy)).
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait HealthProbe: Send + Sync + 'static {
    /// `Ok` when healthy.
    async fn check(&self) -> Result<(), HealthError>;
}
