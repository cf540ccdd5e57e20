//! [`LeaseHeartbeatKeys`]: the heartbeat key and cluster identity of the
//! Lease backend (see `vip_core::heartbeat_auth` for the design).
//!
//! - **Cluster identity**: the Lease's `metadata.uid`. The API server
//!   assigns it when the Lease is created; two clusters never share it, and
//!   it stays while the Lease exists (vip never deletes it). Before the
//!   Lease exists the identity is "not available yet".
//! - **Key**: the Secret `<lease>-heartbeat` in the Lease's namespace
//!   (type `Opaque`, data `key`: 32 random bytes). The first node that
//!   finds it missing creates it; when that create conflicts (another node
//!   was first), the winner's Secret is read, so every node ends with the
//!   same key. A Secret, not a Lease annotation: RBAC, audit and
//!   encryption at rest treat Secrets as confidential, and whoever may
//!   read Leases (`kubectl get lease` is commonly granted) must not be
//!   able to forge heartbeats.
//!
//! Permissions (granted by `vip manifest rbac`): `get` on
//! `secrets/<lease>-heartbeat` (by `resourceNames`) and `create` on
//! `secrets` in the namespace (Kubernetes cannot restrict `create` by
//! name). Without them the source answers
//! [`HeartbeatKeyError::Forbidden`], one line naming the missing verb:
//! fast failover stays off, Lease expiry still works.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use vip_core::{HeartbeatKey, HeartbeatKeyError, HeartbeatKeySource};

use crate::access::{ClientOptions, ClusterAccess};
use crate::lease::{LeaseError, LeaseName};

/// The data key of the Secret that holds the heartbeat key.
pub const SECRET_KEY_FIELD: &str = "key";

/// The name of the heartbeat key's Secret for the Lease `lease`.
pub fn secret_name(lease: &LeaseName) -> String {
    format!("{}-heartbeat", lease.name)
}

/// The heartbeat key source of the Lease backend.
#[derive(Debug, Clone)]
pub struct LeaseHeartbeatKeys {
    leases: Api<Lease>,
    secrets: Api<Secret>,
    lease: LeaseName,
    secret: String,
}

impl LeaseHeartbeatKeys {
    /// A source for the Lease `lease`, with its own client from `access`
    /// (requests bounded by `timeout`).
    pub fn new(
        access: &ClusterAccess,
        lease: LeaseName,
        timeout: Duration,
    ) -> Result<Self, LeaseError> {
        let client = access
            .client(&ClientOptions::requests(timeout))
            .map_err(LeaseError::Client)?;
        Ok(Self::with_client(client, lease))
    }

    /// A source on an existing client.
    pub fn with_client(client: Client, lease: LeaseName) -> Self {
        Self {
            leases: Api::namespaced(client.clone(), &lease.namespace),
            secrets: Api::namespaced(client, &lease.namespace),
            secret: secret_name(&lease),
            lease,
        }
    }

    /// `namespace/name` of the key's Secret.
    pub fn secret(&self) -> String {
        format!("{}/{}", self.lease.namespace, self.secret)
    }

    fn key_of(&self, secret: &Secret) -> Result<HeartbeatKey, HeartbeatKeyError> {
        let what = format!("secret {} data {SECRET_KEY_FIELD:?}", self.secret());
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(SECRET_KEY_FIELD))
            .ok_or_else(|| HeartbeatKeyError::Invalid {
                what: what.clone(),
                reason: "missing".into(),
            })?;
        HeartbeatKey::from_slice(&bytes.0, &what)
    }

    fn new_secret(&self, key: &HeartbeatKey) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.secret.clone()),
                namespace: Some(self.lease.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "vip".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                SECRET_KEY_FIELD.to_owned(),
                ByteString(key.bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    /// The stored key, if any node created it; never creates one (for
    /// read-only callers such as `vip status`).
    pub async fn existing_key(&self) -> Result<Option<HeartbeatKey>, HeartbeatKeyError> {
        self.read().await
    }

    async fn read(&self) -> Result<Option<HeartbeatKey>, HeartbeatKeyError> {
        let what = format!("get secret {}", self.secret());
        match self.secrets.get_opt(&self.secret).await {
            Ok(Some(secret)) => self.key_of(&secret).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(key_error(what, e)),
        }
    }
}

/// A kube error as a key error: 401/403 is [`HeartbeatKeyError::Forbidden`]
/// (naming `what`), anything else transient.
fn key_error(what: String, err: kube::Error) -> HeartbeatKeyError {
    match err {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => HeartbeatKeyError::Forbidden {
            what,
            detail: format!(
                "HTTP {}: {}; `vip manifest rbac` has the rule",
                s.code,
                one_line(&s.message)
            ),
        },
        kube::Error::Api(s) => HeartbeatKeyError::Unavailable {
            what,
            detail: format!("HTTP {}: {}", s.code, one_line(&s.message)),
        },
        other => HeartbeatKeyError::Unavailable {
            what,
            detail: one_line(&other.to_string()),
        },
    }
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

#[async_trait]
impl HeartbeatKeySource for LeaseHeartbeatKeys {
    async fn cluster_identity(&self) -> Result<String, HeartbeatKeyError> {
        let what = format!("get lease {}", self.lease);
        match self.leases.get_opt(&self.lease.name).await {
            Ok(Some(lease)) => lease.metadata.uid.filter(|u| !u.is_empty()).ok_or_else(|| {
                HeartbeatKeyError::Unavailable {
                    what,
                    detail: "the Lease has no metadata.uid".into(),
                }
            }),
            Ok(None) => Err(HeartbeatKeyError::Unavailable {
                what,
                detail: "the Lease does not exist yet".into(),
            }),
            Err(e) => Err(key_error(what, e)),
        }
    }

    async fn shared_key(&self) -> Result<HeartbeatKey, HeartbeatKeyError> {
        if let Some(key) = self.read().await? {
            return Ok(key);
        }
        let key = HeartbeatKey::generate()?;
        let created = self
            .secrets
            .create(&PostParams::default(), &self.new_secret(&key))
            .await;
        match created {
            Ok(secret) => self.key_of(&secret),
            // Another node was first: its key is the cluster's.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.read()
                    .await?
                    .ok_or_else(|| HeartbeatKeyError::Unavailable {
                        what: format!("get secret {}", self.secret()),
                        detail: "created by another node, then gone".into(),
                    })
            }
            Err(e) => Err(key_error(format!("create secret {}", self.secret()), e)),
        }
    }
}
