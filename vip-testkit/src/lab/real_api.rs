//! The brief's topology on the lab ([`ApiKind::Real`](super::ApiKind)):
//! every node namespace runs an etcd member and a real `kube-apiserver`
//! (one etcd cluster of three members, as k3s with embedded etcd; see
//! [`crate::apiserver::netns`]), each node's `vip manager` talks to its
//! own server at `127.0.0.1:6443`, and the client reaches the API through
//! the VIP, as users do.
//!
//! - the Node objects are created with `kubectl` (control-plane label,
//!   Ready), as the kubelets would have registered them;
//! - [`Lab::holder`] reads the Lease from the client's namespace: a thread
//!   there GETs it every 100 ms from the first node address that answers;
//! - [`Lab::kubectl`] and [`Lab::client_curl`] run the deployment brief's
//!   commands literally, on a node or from the client through the VIP;
//! - [`Lab::poll_api`] is the client's view of the API: `GET /readyz`
//!   through the VIP on a new TCP and TLS connection every interval,
//!   certificate unverified (`curl -k`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{HolderSource, LEASE, Lab, LabSetupError, Ping, client_host, host_v4, io, other};
use crate::apiserver::netns::PORT;
use crate::apiserver::{RealApi, RealApiConfig};
use crate::netns::{NsShell, NsThread, Segment};
use crate::placement::{Placement, https_url};

/// How long a `kubectl` or `curl` run by the lab may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// How often the client reads the Lease's holder.
const HOLDER_POLL: Duration = Duration::from_millis(100);
/// The bound of one read of the Lease from one server.
const HOLDER_READ: Duration = Duration::from_secs(1);
/// The bound of one `/readyz` probe (connect, handshake, answer).
const PROBE_LIMIT: Duration = Duration::from_secs(2);

/// The real API servers of a lab, and the client's view of the Lease.
pub(super) struct RealBackend {
    pub(super) api: RealApi,
    holder: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    _watcher: NsThread<()>,
    node_kubeconfigs: Vec<PathBuf>,
    admin_kubeconfigs: Vec<PathBuf>,
    client_kubeconfig: PathBuf,
}

impl Drop for RealBackend {
    fn drop(&mut self) {
        // The watcher ends within one poll; the servers die with `api`.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `https://<address>:6443`.
fn url(address: IpAddr) -> String {
    https_url(address, PORT)
}

impl RealBackend {
    /// Start the servers in the node namespaces of `segment` (nodes
    /// `names`), register the Nodes, and start the client's Lease poll.
    pub(super) async fn start(
        segment: &Segment,
        names: &[String],
        vips: &[IpAddr],
        vip_in_certificate: bool,
        dir: &Path,
    ) -> Result<Self, LabSetupError> {
        let places: Vec<Placement> = (0..names.len())
            .map(|i| Placement {
                ns: segment.hosts[i].ns.shell(),
                addr: IpAddr::V4(host_v4(i)),
            })
            .collect();
        let mut config = RealApiConfig::default()
            .tokens(std::iter::once("admin").chain(names.iter().map(String::as_str)));
        if vip_in_certificate {
            config.extra_sans = vips.iter().map(ToString::to_string).collect();
        }
        let started = Instant::now();
        let api = RealApi::start_in(config, &places).await?;
        eprintln!(
            "lab: {} kube-apiservers and etcd members ready in {:.1} s",
            places.len(),
            started.elapsed().as_secs_f64()
        );
        let mut node_kubeconfigs = Vec::new();
        let mut admin_kubeconfigs = Vec::new();
        let mut by_address = Vec::new();
        for (i, name) in names.iter().enumerate() {
            node_kubeconfigs.push(api.kubeconfig_for(i, name)?);
            admin_kubeconfigs.push(api.kubeconfig_for(i, "admin")?);
            let path = dir.join(format!("kubeconfig-{name}-address"));
            api.write_kubeconfig(&path, &url(places[i].addr), "admin")?;
            by_address.push(path);
        }
        let client_kubeconfig = dir.join("kubeconfig-client-vip");
        api.write_kubeconfig(&client_kubeconfig, &url(vips[0]), "admin")?;
        let nodes = dir.join("nodes.json");
        std::fs::write(&nodes, node_list(names).to_string())
            .map_err(io(format!("writing {}", nodes.display())))?;
        let nodes_arg = nodes.display().to_string();
        let (ok, out) = kubectl(
            &places[0].ns,
            &admin_kubeconfigs[0],
            &["create", "-f", &nodes_arg],
        )
        .await?;
        if !ok {
            return Err(other("registering the Nodes with kubectl", out));
        }
        let holder = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let client = &segment.hosts[client_host(names.len())].ns;
        let watcher = {
            let (holder, stop) = (holder.clone(), stop.clone());
            client.spawn(Duration::from_secs(24 * 3600), move || {
                watch_holder(by_address, holder, stop)
            })?
        };
        Ok(Self {
            api,
            holder,
            stop,
            _watcher: watcher,
            node_kubeconfigs,
            admin_kubeconfigs,
            client_kubeconfig,
        })
    }

    /// What the client last read as the Lease's holder.
    pub(super) fn holder_source(&self) -> HolderSource {
        let holder = self.holder.clone();
        Arc::new(move || {
            holder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    }

    /// Each node's own kubeconfig (its token, `127.0.0.1:6443`).
    pub(super) fn node_kubeconfigs(&self) -> &[PathBuf] {
        &self.node_kubeconfigs
    }
}

/// The Nodes as the kubelets of the control plane register them: labelled
/// control-plane, Ready.
fn node_list(names: &[String]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": n, "labels": {
                    "kubernetes.io/hostname": n,
                    "node-role.kubernetes.io/control-plane": "",
                }},
                "status": {"conditions": [{
                    "type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "registered by the lab",
                }]},
            })
        })
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// `ip netns exec <ns> kubectl --kubeconfig <kubeconfig> <args>`, bounded:
/// whether it succeeded, and its output (standard output, then error).
async fn kubectl(
    ns: &NsShell,
    kubeconfig: &Path,
    args: &[&str],
) -> Result<(bool, String), LabSetupError> {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), "kubectl", "--kubeconfig"])
        .arg(kubeconfig)
        .args(args);
    run_bounded(cmd, &format!("kubectl {}", args.join(" "))).await
}

async fn run_bounded(
    mut cmd: tokio::process::Command,
    what: &str,
) -> Result<(bool, String), LabSetupError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(io(format!("running {what}")))?;
    let out = tokio::time::timeout(COMMAND_LIMIT, child.wait_with_output())
        .await
        .map_err(|_| other(format!("{what}: no result within {COMMAND_LIMIT:?}"), ""))?
        .map_err(io(format!("running {what}")))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// The client's Lease poll: every [`HOLDER_POLL`] a GET of the Lease from
/// the server that answered last, else the next one (each read bounded by
/// [`HOLDER_READ`]), until `stop`. A read that fails everywhere keeps the
/// last holder; a Lease without holder reads `None`.
async fn watch_holder(
    kubeconfigs: Vec<PathBuf>,
    holder: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
) {
    let mut clients = Vec::new();
    for k in &kubeconfigs {
        if let Ok(c) = client_of(k).await {
            clients.push(c);
        }
    }
    let path = format!(
        "/apis/coordination.k8s.io/v1/namespaces/{}/leases/{}",
        LEASE.0, LEASE.1
    );
    let mut first = 0;
    while !stop.load(Ordering::Relaxed) && !clients.is_empty() {
        for k in 0..clients.len() {
            let c = (first + k) % clients.len();
            let Ok(req) = http::Request::get(&path).body(Vec::new()) else {
                break;
            };
            let Ok(Ok(text)) =
                tokio::time::timeout(HOLDER_READ, clients[c].request_text(req)).await
            else {
                continue;
            };
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let read = value["spec"]["holderIdentity"]
                .as_str()
                .filter(|h| !h.is_empty())
                .map(str::to_owned);
            *holder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = read;
            first = c;
            break;
        }
        tokio::time::sleep(HOLDER_POLL).await;
    }
}

async fn client_of(kubeconfig: &Path) -> Result<kube::Client, String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

impl Lab {
    fn real(&self) -> Result<&RealBackend, LabSetupError> {
        match &self.backend {
            super::Backend::Real(r) => Ok(r),
            super::Backend::StandIn { .. } => Err(other(
                "this needs real API servers",
                "build the lab with LabConfig::real_api",
            )),
        }
    }

    /// `kubectl <args>` in host `i`'s namespace, bounded: on a node with
    /// the admin's kubeconfig for its own server (`127.0.0.1:6443`), on the
    /// client with one for the first VIP (`https://VIP:6443`), as a user's
    /// kubeconfig names the cluster's VIP. Whether it succeeded, and its
    /// output. Needs real API servers.
    pub async fn kubectl(&self, i: usize, args: &[&str]) -> Result<(bool, String), LabSetupError> {
        let real = self.real()?;
        let kubeconfig = if i == client_host(self.nodes.len()) {
            &real.client_kubeconfig
        } else {
            real.admin_kubeconfigs
                .get(i)
                .ok_or_else(|| other("kubectl on a host that is no node nor the client", i))?
        };
        kubectl(&self.segment.hosts[i].ns, kubeconfig, args).await
    }

    /// `curl -ksS https://<first VIP>:6443<path>` from the client's
    /// namespace, bounded: whether it succeeded, and its output.
    pub async fn client_curl(&self, path: &str) -> Result<(bool, String), LabSetupError> {
        let target = format!("{}{path}", url(self.vips[0]));
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", self.client().ns.name()]).args([
            "curl",
            "-ksS",
            "--max-time",
            "5",
            &target,
        ]);
        run_bounded(cmd, &format!("curl -k {target}")).await
    }

    /// Cordon or uncordon node `i` with `kubectl` on that node.
    pub(super) async fn cordon_real(
        &self,
        i: usize,
        unschedulable: bool,
    ) -> Result<(), LabSetupError> {
        let verb = if unschedulable { "cordon" } else { "uncordon" };
        let name = self.nodes[i].name.clone();
        let (ok, out) = self.kubectl(i, &[verb, &name]).await?;
        if ok {
            Ok(())
        } else {
            Err(other(format!("kubectl {verb} {name}"), out))
        }
    }

    /// The client's view of the API: from the client's namespace, every
    /// `interval` (until `stop`, at most `limit`), `GET /readyz` to the
    /// first VIP on port 6443 on a new TCP connection and TLS session, the
    /// certificate not verified (`curl -k`). Each probe is a [`Ping`]
    /// (`answered`: when a `200` came), so [`lost_time`](super::lost_time)
    /// and [`outage`](super::outage) read them; a probe is given
    /// two seconds, and probes overlap when answers are slow.
    pub fn poll_api(
        &self,
        interval: Duration,
        limit: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<NsThread<Vec<Ping>>, LabSetupError> {
        let target = SocketAddr::new(self.vips[0], PORT);
        let tls = tls_without_verification()?;
        Ok(self
            .client()
            .ns
            .spawn(limit + PROBE_LIMIT + Duration::from_secs(1), move || {
                poll_readyz(target, tls, interval, limit, stop)
            })?)
    }
}

async fn poll_readyz(
    target: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    interval: Duration,
    limit: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<Ping> {
    let started = Instant::now();
    let mut probes = Vec::new();
    let mut seq: u16 = 0;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        let sent = Instant::now();
        let tls = tls.clone();
        let task = tokio::spawn(async move {
            tokio::time::timeout(PROBE_LIMIT, readyz_once(target, tls))
                .await
                .unwrap_or(false)
                .then(Instant::now)
        });
        probes.push((seq, sent, task));
        seq = seq.wrapping_add(1);
        tokio::time::sleep_until((sent + interval).into()).await;
    }
    let mut out = Vec::with_capacity(probes.len());
    for (seq, sent, task) in probes {
        out.push(Ping {
            seq,
            sent,
            answered: task.await.ok().flatten(),
        });
    }
    out
}

/// One `GET /readyz` on a new connection: whether it was answered `200`.
async fn readyz_once(target: SocketAddr, tls: Arc<rustls::ClientConfig>) -> bool {
    let Ok(tcp) = tokio::net::TcpStream::connect(target).await else {
        return false;
    };
    let _ = tcp.set_nodelay(true);
    let name = ServerName::IpAddress(target.ip().into());
    let Ok(mut stream) = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
    else {
        return false;
    };
    let request = format!(
        "GET /readyz HTTP/1.1\r\nHost: {target}\r\nUser-Agent: vip-lab\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    // The server closes after its answer (`Connection: close`); an
    // unclean close still leaves the answer read so far.
    let _ = stream.read_to_end(&mut answer).await;
    answer.starts_with(b"HTTP/1.1 200")
}

/// A TLS client that accepts any server certificate (`curl -k`), still
/// checking the handshake's signatures.
fn tls_without_verification() -> Result<Arc<rustls::ClientConfig>, LabSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| other("a TLS client for the /readyz probes", e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
