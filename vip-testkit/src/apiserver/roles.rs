//! The stand-in's token roles on the real server. `Admin` is the group
//! `system:masters` and `Forbidden` no group at all (RBAC grants it
//! nothing); `NoSecrets` is the group [`NO_SECRETS_GROUP`], bound after
//! start to a ClusterRole granting every verb on what `vip` uses (Leases,
//! Nodes, Events) and the health endpoints, and nothing on Secrets, as a
//! role without the heartbeat key's rule would.

use serde_json::{Value, json};

use super::{RealApi, RealApiError};
use crate::testapi::Role;

/// The group of [`Role::NoSecrets`] tokens.
pub const NO_SECRETS_GROUP: &str = "vip-testkit:no-secrets";

/// The `--token-auth-file` groups of `role`.
pub(super) fn groups(role: Role) -> &'static str {
    match role {
        Role::Admin => "system:masters",
        Role::Forbidden => "",
        Role::NoSecrets => NO_SECRETS_GROUP,
    }
}

impl RealApi {
    /// Create the ClusterRole and ClusterRoleBinding of [`Role::NoSecrets`]
    /// (when a token has that role), through server `server`.
    pub(super) async fn bind_roles(&self, server: usize) -> Result<(), RealApiError> {
        if !self.tokens.iter().any(|t| t.role == Role::NoSecrets) {
            return Ok(());
        }
        let failed = |what: &str| {
            let what = what.to_owned();
            move |e: String| RealApiError::Io {
                what,
                source: std::io::Error::other(e),
            }
        };
        let admin = crate::api::client_for(&self.admin_kubeconfig(server)?)
            .await
            .map_err(|e| e.to_string())
            .map_err(failed("an admin client"))?;
        let name = "vip-testkit-no-secrets";
        let role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["nodes", "events"], "verbs": ["*"]},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["*"]},
                {"nonResourceURLs": ["/readyz", "/livez", "/healthz", "/version"], "verbs": ["get"]}
            ]
        });
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": NO_SECRETS_GROUP}]
        });
        for (path, object) in [
            ("/apis/rbac.authorization.k8s.io/v1/clusterroles", role),
            (
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                binding,
            ),
        ] {
            let request = http::Request::post(path)
                .header("content-type", "application/json")
                .body(object.to_string().into_bytes())
                .map_err(|e| e.to_string())
                .map_err(failed(path))?;
            match admin.request::<Value>(request).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(failed(&format!("POST {path}"))(e.to_string())),
            }
        }
        Ok(())
    }
}
