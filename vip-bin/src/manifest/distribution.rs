//! The Kubernetes distribution of a control-plane node: where its
//! kubeconfig and etcd client files are, and how `vip manifest` detects it
//! on the host.

use std::path::Path;

use super::OptionError;

/// The Kubernetes distribution, which decides the kubeconfig's host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// k3s: `/etc/rancher/k3s/k3s.yaml`.
    K3s,
    /// kubeadm: `/etc/kubernetes/admin.conf`.
    Kubeadm,
    /// RKE2: `/etc/rancher/rke2/rke2.yaml`.
    Rke2,
}

impl Distribution {
    /// The names `--distribution` accepts.
    pub const NAMES: [&'static str; 3] = ["k3s", "kubeadm", "rke2"];

    /// The distribution of a `--distribution` value.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "k3s" => Some(Self::K3s),
            "kubeadm" => Some(Self::Kubeadm),
            "rke2" => Some(Self::Rke2),
            _ => None,
        }
    }

    /// The etcd client files on a control-plane node of this
    /// distribution, `(CA, certificate, key)`, for
    /// `--leader-election etcd`: the API server's own etcd client
    /// certificate.
    pub fn etcd_files(self) -> [&'static str; 3] {
        match self {
            Self::K3s => [
                "/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt",
                "/var/lib/rancher/k3s/server/tls/etcd/client.crt",
                "/var/lib/rancher/k3s/server/tls/etcd/client.key",
            ],
            Self::Kubeadm => [
                "/etc/kubernetes/pki/etcd/ca.crt",
                "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                "/etc/kubernetes/pki/apiserver-etcd-client.key",
            ],
            Self::Rke2 => [
                "/var/lib/rancher/rke2/server/tls/etcd/server-ca.crt",
                "/var/lib/rancher/rke2/server/tls/etcd/client.crt",
                "/var/lib/rancher/rke2/server/tls/etcd/client.key",
            ],
        }
    }

    /// The name `--distribution` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::K3s => "k3s",
            Self::Kubeadm => "kubeadm",
            Self::Rke2 => "rke2",
        }
    }

    /// The distribution of the host whose file system is at `root`, and
    /// why: k3s when one of [`K3S_MARKERS`] exists, RKE2 for
    /// [`RKE2_MARKERS`], else kubeadm (`/etc/kubernetes/admin.conf`, the
    /// path kube-vip mounts by default). Both k3s and RKE2 found is
    /// refused: the caller must choose.
    pub fn detect(root: &Path) -> Result<(Self, String), OptionError> {
        let found = |markers: &[&'static str]| {
            markers
                .iter()
                .copied()
                .find(|m| root.join(m.trim_start_matches('/')).exists())
        };
        match (found(K3S_MARKERS), found(RKE2_MARKERS)) {
            (Some(k3s), Some(rke2)) => Err(OptionError {
                option: "--distribution",
                value: format!("{k3s} and {rke2} both exist"),
                expected: "k3s, kubeadm or rke2, chosen by hand: this host has files of both k3s and rke2",
            }),
            (Some(marker), None) => Ok((Self::K3s, format!("{marker} exists"))),
            (None, Some(marker)) => Ok((Self::Rke2, format!("{marker} exists"))),
            (None, None) => {
                let admin = Self::Kubeadm.kubeconfig();
                let why = if root.join(admin.trim_start_matches('/')).is_file() {
                    format!("{admin} exists")
                } else {
                    format!("no k3s or rke2 files found; kube-vip's default kubeconfig {admin}")
                };
                Ok((Self::Kubeadm, why))
            }
        }
    }

    /// The kubeconfig on the host.
    pub fn kubeconfig(self) -> &'static str {
        match self {
            Self::K3s => "/etc/rancher/k3s/k3s.yaml",
            Self::Kubeadm => "/etc/kubernetes/admin.conf",
            Self::Rke2 => "/etc/rancher/rke2/rke2.yaml",
        }
    }
}

/// The local etcd member's client URL on every distribution.
pub const DEFAULT_ETCD_ENDPOINT: &str = "https://127.0.0.1:2379";

/// Paths whose presence on the host means k3s.
pub const K3S_MARKERS: &[&str] = &[
    "/etc/rancher/k3s",
    "/var/lib/rancher/k3s",
    "/usr/local/bin/k3s",
    "/usr/bin/k3s",
];

/// Paths whose presence on the host means RKE2.
pub const RKE2_MARKERS: &[&str] = &[
    "/etc/rancher/rke2",
    "/var/lib/rancher/rke2",
    "/usr/local/bin/rke2",
    "/usr/bin/rke2",
];

/// The environment variable naming the root directory `vip manifest pod`
/// probes for the distribution (default `/`), so tests and image builds
/// can point it at another tree.
pub const HOST_ROOT_ENV: &str = "VIP_HOST_ROOT";
