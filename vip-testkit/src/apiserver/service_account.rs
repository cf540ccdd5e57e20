//! ServiceAccount credentials on the real server: a token from the
//! `TokenRequest` API in a kubeconfig, so a test runs a client with exactly
//! the permissions RBAC grants that ServiceAccount.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{RealApi, RealApiError, write};
use crate::testapi::{Role, TokenSpec};

fn failed(what: String) -> impl FnOnce(String) -> RealApiError {
    move |e| RealApiError::Io {
        what,
        source: std::io::Error::other(e),
    }
}

impl RealApi {
    /// A kubeconfig for the ServiceAccount `namespace/name` (created, with
    /// no permissions, when it does not exist) on server `server`, holding
    /// a one-hour token from the `TokenRequest` API. Its user is
    /// `system:serviceaccount:<namespace>:<name>`.
    pub async fn service_account_kubeconfig(
        &self,
        server: usize,
        namespace: &str,
        name: &str,
    ) -> Result<PathBuf, RealApiError> {
        let admin = crate::api::client_for(&self.admin_kubeconfig(server)?)
            .await
            .map_err(|e| e.to_string())
            .map_err(failed("an admin client".into()))?;
        let accounts = format!("/api/v1/namespaces/{namespace}/serviceaccounts");
        let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": name, "namespace": namespace}});
        let request = http::Request::post(&accounts)
            .header("content-type", "application/json")
            .body(account.to_string().into_bytes())
            .map_err(|e| e.to_string())
            .map_err(failed(format!("POST {accounts}")))?;
        match admin.request::<Value>(request).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                return Err(failed(format!("create ServiceAccount {namespace}/{name}"))(
                    e.to_string(),
                ));
            }
        }
        let path = format!("{accounts}/{name}/token");
        let token_request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                   "spec": {"expirationSeconds": 3600}});
        let request = http::Request::post(&path)
            .header("content-type", "application/json")
            .body(token_request.to_string().into_bytes())
            .map_err(|e| e.to_string())
            .map_err(failed(format!("POST {path}")))?;
        let answer: Value = admin
            .request(request)
            .await
            .map_err(|e| e.to_string())
            .map_err(failed(format!("request a token for {namespace}/{name}")))?;
        let token = answer["status"]["token"].as_str().ok_or_else(|| {
            failed(format!("POST {path}"))("no status.token in the answer".into())
        })?;
        let spec = TokenSpec {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            token: token.to_owned(),
            role: Role::Forbidden,
        };
        let file = self
            .out_dir()
            .join(format!("kubeconfig-{server}-sa-{namespace}-{name}"));
        let text = crate::testapi::tls::kubeconfig(&self.url(server), self.ca_path(), &spec);
        write(&file, &text)?;
        Ok(file)
    }
}
