//! The health probe: the local API server's `/readyz`.
//!
//! The split of work: [`ReadyzProbe::check`] does one request bounded by
//! the policy's `timeout`; the vip-core controller calls it every `period`
//! and acts on the failure and success thresholds. [`HealthConfig`] carries
//! the one [`HealthPolicy`] both read, so the binary configures it in one
//! place.

use async_trait::async_trait;
use kube::Client;
use vip_core::{HealthError, HealthPolicy, HealthProbe};

use crate::access::{AccessError, ClientOptions, ClusterAccess};

/// Errors of this module (setting the probe up).
#[derive(Debug, thiserror::Error)]
pub enum HealthSetupError {
    /// The probe's client cannot be built.
    #[error("cannot build the health probe's client")]
    Client(#[source] AccessError),
}

/// How the local API server is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// The path probed, `/readyz`.
    pub path: String,
    /// Period, timeout (applied here, per request) and thresholds (applied
    /// by the controller).
    pub policy: HealthPolicy,
}

impl Default for HealthConfig {
    /// `/readyz` with vip-core's default policy.
    fn default() -> Self {
        Self {
            path: "/readyz".into(),
            policy: HealthPolicy::default(),
        }
    }
}

/// Checks the local API server's `/readyz` with its own client.
///
/// ```no_run
/// # async fn run(access: vip_lease::ClusterAccess) -> Result<(), Box<dyn std::error::Error>> {
/// use vip_core::HealthProbe;
/// let probe = vip_lease::ReadyzProbe::new(&access, vip_lease::HealthConfig::default())?;
/// probe.check().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ReadyzProbe {
    client: Client,
    config: HealthConfig,
}

impl std::fmt::Debug for ReadyzProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyzProbe")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ReadyzProbe {
    /// A probe with its own client. Needs a tokio runtime.
    pub fn new(access: &ClusterAccess, config: HealthConfig) -> Result<Self, HealthSetupError> {
        let client = access
            .client(&ClientOptions::requests(config.policy.timeout))
            .map_err(HealthSetupError::Client)?;
        Ok(Self { client, config })
    }

    /// The configuration.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }
}

#[async_trait]
impl HealthProbe for ReadyzProbe {
    async fn check(&self) -> Result<(), HealthError> {
        let path = &self.config.path;
        let request = http::Request::get(path.as_str())
            .body(Vec::new())
            .map_err(|e| HealthError {
                reason: format!("GET {path}: {e}"),
            })?;
        match tokio::time::timeout(
            self.config.policy.timeout,
            self.client.request_text(request),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(kube::Error::Api(status))) => Err(HealthError {
                reason: format!(
                    "GET {path}: {} {}",
                    status.code,
                    status
                        .message
                        .lines()
                        .find(|l| l.starts_with("[-]"))
                        .unwrap_or(status.message.trim())
                ),
            }),
            Ok(Err(e)) => Err(HealthError {
                reason: format!("GET {path}: {e}"),
            }),
            Err(_) => Err(HealthError {
                reason: format!(
                    "GET {path}: no answer within {:?}",
                    self.config.policy.timeout
                ),
            }),
        }
    }
}
