//! One test body, two servers: [`Api`] is either the stand-in
//! ([`crate::testapi::TestApi`]) or the real `kube-apiserver`
//! ([`crate::apiserver::RealApi`]), started from the same
//! [`TestApiConfig`] (servers, users, extra certificate names), so a test
//! written once runs against both ([`Flavor`]).
//!
//! What a test does *to* the server (read, delete or patch an object, put
//! a Node, list Events by field selector) goes through the HTTP API as the
//! first admin user, on both servers alike: the stand-in's store is not
//! reached around its API. What only one of them can do is explicit:
//! request [`crate::testapi::Counters`] and fault injection are
//! the stand-in's ([`Api::stand_in`]); [`Api::cut`] makes a server stop
//! answering on both (the stand-in refuses connections, the real server is
//! killed and [`Api::heal`] restarts it), and [`Api::compact`] drops the
//! watch history on both (the stand-in's history, the real etcd's
//! revisions).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::apiserver::{RealApi, RealApiConfig};
use crate::testapi::{Counters, Fault, Kind, Role, TestApi, TestApiConfig};

/// Which server a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The project's stand-in.
    StandIn,
    /// The real `kube-apiserver` over a real etcd.
    Real,
}

/// Errors of the two-server fixture: one line naming what failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ApiError {
    /// What was being done.
    pub what: String,
    /// What went wrong.
    pub message: String,
}

fn fail(what: impl Into<String>) -> impl FnOnce(String) -> ApiError {
    let what = what.into();
    move |message| ApiError { what, message }
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[derive(Debug)]
enum Server {
    StandIn(TestApi),
    Real(Box<RealApi>),
}

/// The stand-in or the real server; see the [module](self) docs.
pub struct Api {
    server: Server,
    admin_user: String,
    admin: kube::Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("server", &self.server)
            .field("admin_user", &self.admin_user)
            .finish_non_exhaustive()
    }
}

/// The API path of `kind` objects in `namespace` (cluster-scoped kinds
/// ignore it), and of `name` when given.
pub fn object_path(kind: Kind, namespace: Option<&str>, name: Option<&str>) -> String {
    let mut path = match kind.group() {
        "" => "/api/v1".to_owned(),
        group => format!("/apis/{group}/v1"),
    };
    if let (true, Some(ns)) = (kind.namespaced(), namespace) {
        path.push_str(&format!("/namespaces/{ns}"));
    }
    path.push('/');
    path.push_str(kind.plural());
    if let Some(name) = name {
        path.push('/');
        path.push_str(name);
    }
    path
}

/// A kube client for a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Result<kube::Client, ApiError> {
    let what = format!("a client for {}", kubeconfig.display());
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(text)
        .map_err(fail(what.clone()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(text)
            .map_err(fail(what.clone()))?;
    kube::Client::try_from(config)
        .map_err(text)
        .map_err(fail(what))
}

impl Api {
    /// Start the `flavor` server from `config` (its listener count is the
    /// real server count; its history size only applies to the stand-in).
    /// `None` when the real server cannot run here (a loud skip, a panic
    /// under `CI=true`: [`RealApi::start_or_skip`]).
    pub async fn start_or_skip(flavor: Flavor, config: TestApiConfig) -> Option<Self> {
        let admin_user = config
            .tokens
            .iter()
            .find(|t| t.role == Role::Admin)
            .map(|t| t.name.clone())
            .expect("the configuration has an admin user");
        let server = match flavor {
            Flavor::StandIn => {
                Server::StandIn(TestApi::start(config).await.expect("the stand-in starts"))
            }
            Flavor::Real => {
                let real = RealApiConfig {
                    servers: config.listen.len().max(1),
                    tokens: config.tokens,
                    extra_sans: config.extra_sans,
                };
                Server::Real(Box::new(RealApi::start_or_skip(real).await?))
            }
        };
        let kubeconfig = match &server {
            Server::StandIn(s) => s.kubeconfig_for(0, &admin_user).map_err(text),
            Server::Real(r) => r.kubeconfig_for(0, &admin_user).map_err(text),
        }
        .expect("the admin kubeconfig");
        let admin = client_for(&kubeconfig).await.expect("the admin client");
        let api = Self {
            server,
            admin_user,
            admin,
        };
        Some(api)
    }

    /// Which server this is.
    pub fn flavor(&self) -> Flavor {
        match self.server {
            Server::StandIn(_) => Flavor::StandIn,
            Server::Real(_) => Flavor::Real,
        }
    }

    /// The stand-in, for what only it can do (counters, faults).
    pub fn stand_in(&self) -> Option<&TestApi> {
        match &self.server {
            Server::StandIn(s) => Some(s),
            Server::Real(_) => None,
        }
    }

    /// The real server.
    pub fn real(&mut self) -> Option<&mut RealApi> {
        match &mut self.server {
            Server::StandIn(_) => None,
            Server::Real(r) => Some(r),
        }
    }

    /// Request counters (the stand-in's only).
    pub fn counters(&self) -> Option<Counters> {
        self.stand_in().map(TestApi::counters)
    }

    /// The admin user's name (the configuration's first admin token).
    pub fn admin_user(&self) -> &str {
        &self.admin_user
    }

    /// A client of the admin user on server 0.
    pub fn admin(&self) -> &kube::Client {
        &self.admin
    }

    /// A kubeconfig for `user` on server `i`.
    pub fn kubeconfig_for(&self, i: usize, user: &str) -> Result<PathBuf, ApiError> {
        let what = format!("kubeconfig for {user} on server {i}");
        match &self.server {
            Server::StandIn(s) => s.kubeconfig_for(i, user).map_err(text),
            Server::Real(r) => r.kubeconfig_for(i, user).map_err(text),
        }
        .map_err(fail(what))
    }

    /// The admin user's kubeconfig on server 0.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.kubeconfig_for(0, &self.admin_user)
            .expect("the admin kubeconfig")
    }

    /// Writes a kubeconfig for `user` naming `server` (any URL).
    pub fn write_kubeconfig(&self, path: &Path, server: &str, user: &str) -> Result<(), ApiError> {
        let what = format!("write a kubeconfig for {user} at {}", path.display());
        match &self.server {
            Server::StandIn(s) => s.write_kubeconfig(path, server, user).map_err(text),
            Server::Real(r) => r.write_kubeconfig(path, server, user).map_err(text),
        }
        .map_err(fail(what))
    }

    /// The URL of server `i`, `https://127.0.0.1:<port>`.
    pub fn url(&self, i: usize) -> String {
        match &self.server {
            Server::StandIn(s) => s.listener(i).url(),
            Server::Real(r) => r.url(i),
        }
    }

    /// The port of server `i`.
    pub fn port(&self, i: usize) -> u16 {
        let url = self.url(i);
        url.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the URL ends with a port")
    }

    /// The CA that signed the serving certificates.
    pub fn ca_path(&self) -> &Path {
        match &self.server {
            Server::StandIn(s) => s.ca_path(),
            Server::Real(r) => r.ca_path(),
        }
    }

    /// The directory holding the fixture's files.
    pub fn out_dir(&self) -> &Path {
        match &self.server {
            Server::StandIn(s) => s.out_dir(),
            Server::Real(r) => r.out_dir(),
        }
    }

    async fn send(
        &self,
        what: String,
        request: http::request::Builder,
        body: Vec<u8>,
    ) -> Result<Option<Value>, ApiError> {
        let request = request.body(body).map_err(text).map_err(fail(&what))?;
        match self.admin.request::<Value>(request).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(fail(what)(e.to_string())),
        }
    }

    /// The object, or `None` when there is none.
    pub async fn get(&self, kind: Kind, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
        let path = object_path(kind, Some(ns), Some(name));
        self.send(format!("GET {path}"), http::Request::get(&path), Vec::new())
            .await
    }

    /// The objects of `kind` in `ns` matching the field selector `fields`
    /// (empty: all), sorted by name.
    pub async fn list(&self, kind: Kind, ns: &str, fields: &str) -> Result<Vec<Value>, ApiError> {
        let mut path = object_path(kind, Some(ns), None);
        if !fields.is_empty() {
            path.push_str("?fieldSelector=");
            path.push_str(&fields.replace('=', "%3D").replace(',', "%2C"));
        }
        let list = self
            .send(format!("GET {path}"), http::Request::get(&path), Vec::new())
            .await?
            .unwrap_or_default();
        let mut items: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
        items.sort_by(|a, b| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        });
        Ok(items)
    }

    /// Deletes the object (absent is fine).
    pub async fn delete(&self, kind: Kind, ns: &str, name: &str) -> Result<(), ApiError> {
        let path = object_path(kind, Some(ns), Some(name));
        self.send(
            format!("DELETE {path}"),
            http::Request::delete(&path),
            Vec::new(),
        )
        .await
        .map(drop)
    }

    /// A JSON merge patch of the object; its new state.
    pub async fn merge_patch(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let path = object_path(kind, Some(ns), Some(name));
        let what = format!("PATCH {path}");
        let request =
            http::Request::patch(&path).header("content-type", "application/merge-patch+json");
        self.send(what.clone(), request, patch.to_string().into_bytes())
            .await?
            .ok_or_else(|| fail(what)("not found".to_owned()))
    }

    /// Creates Node `name` (or replaces its labels, spec and status): the
    /// control-plane label when `control_plane`, a Ready condition with
    /// `ready`, `spec.unschedulable` when `unschedulable`. Its new state.
    pub async fn put_node(
        &self,
        name: &str,
        control_plane: bool,
        ready: bool,
        unschedulable: bool,
    ) -> Result<Value, ApiError> {
        let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .expect("now is a valid time")
            .to_string();
        let mut labels = serde_json::Map::new();
        labels.insert("kubernetes.io/hostname".into(), name.into());
        if control_plane {
            labels.insert("node-role.kubernetes.io/control-plane".into(), "".into());
        }
        let status = serde_json::json!({"conditions": [{
            "type": "Ready",
            "status": if ready { "True" } else { "False" },
            "reason": if ready { "KubeletReady" } else { "KubeletNotReady" },
            "message": if ready { "kubelet is posting ready status" } else { "container runtime is down" },
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }]});
        let node = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"unschedulable": unschedulable},
            "status": status,
        });
        if self.get(Kind::Node, "", name).await?.is_none() {
            let path = object_path(Kind::Node, None, None);
            let request = http::Request::post(&path).header("content-type", "application/json");
            return self
                .send(
                    format!("POST {path}"),
                    request,
                    node.to_string().into_bytes(),
                )
                .await?
                .ok_or_else(|| fail(format!("POST {path}"))("not found".to_owned()));
        }
        let patch = serde_json::json!({"metadata": {"labels": node["metadata"]["labels"]}, "spec": node["spec"]});
        self.merge_patch(Kind::Node, "", name, &patch).await?;
        let path = format!("{}/status", object_path(Kind::Node, None, Some(name)));
        let request =
            http::Request::patch(&path).header("content-type", "application/merge-patch+json");
        let body = serde_json::json!({ "status": status }).to_string();
        self.send(format!("PATCH {path}"), request, body.into_bytes())
            .await?
            .ok_or_else(|| fail(format!("PATCH {path}"))("not found".to_owned()))
    }

    /// Server `i` stops answering: the stand-in's listener refuses
    /// connections (open streams end), the real server is killed.
    pub async fn cut(&mut self, i: usize) -> Result<(), ApiError> {
        match &mut self.server {
            Server::StandIn(s) => {
                s.listener(i).set_fault(Some(Fault::Refuse));
                Ok(())
            }
            Server::Real(r) => r.kill(i).map_err(text).map_err(fail("kill a server")),
        }
    }

    /// Server `i` answers again (the real one restarted and ready).
    pub async fn heal(&mut self, i: usize) -> Result<(), ApiError> {
        match &mut self.server {
            Server::StandIn(s) => {
                s.listener(i).set_fault(None);
                Ok(())
            }
            Server::Real(r) => r
                .restart(i)
                .await
                .map_err(text)
                .map_err(fail("restart a server")),
        }
    }

    /// Drops the watch history: a watch resumed from an older version is
    /// answered `410 Gone` (the stand-in's history is trimmed; the real
    /// server's etcd is compacted, and a real server restarted since then
    /// has only the current state in its watch cache).
    pub async fn compact(&mut self) -> Result<(), ApiError> {
        match &mut self.server {
            Server::StandIn(s) => {
                s.store().compact();
                Ok(())
            }
            Server::Real(r) => r
                .etcd()
                .compact()
                .await
                .map(drop)
                .map_err(text)
                .map_err(fail("compact etcd")),
        }
    }
}
