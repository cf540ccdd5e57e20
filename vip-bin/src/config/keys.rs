//! The settings table: every key `vip manager` reads (kube-vip's
//! environment variables, their flags and kube-vip's flag aliases) and the
//! kube-vip settings `vip` refuses by name. `--help`, the manifest and
//! `docs/configuration.md` are generated from it.

/// One setting: its environment variable, its flag, kube-vip's flag alias
/// and its default, for `--help`, the docs and the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The environment variable (kube-vip's name).
    pub env: &'static str,
    /// The flag, without `--`.
    pub flag: &'static str,
    /// kube-vip's own flag name, accepted as an alias.
    pub kube_vip_flag: Option<&'static str>,
    /// The default, as text (`""`: none).
    pub default: &'static str,
    /// One line of documentation.
    pub help: &'static str,
}

/// Every setting `vip manager` reads, in documentation order.
pub const KEYS: &[Key] = &[
    Key {
        env: "vip_arp",
        flag: "vip-arp",
        kube_vip_flag: Some("arp"),
        default: "true",
        help: "ARP/NDP mode; the only mode vip implements (false is refused)",
    },
    Key {
        env: "cp_enable",
        flag: "cp-enable",
        kube_vip_flag: Some("controlplane"),
        default: "true",
        help: "control-plane VIP; the only use vip implements (false is refused)",
    },
    Key {
        env: "address",
        flag: "address",
        kube_vip_flag: Some("address"),
        default: "",
        help: "the VIP(s): IPv4 and/or IPv6, comma-separated, optionally with /prefix; wins over vip_address",
    },
    Key {
        env: "vip_address",
        flag: "vip-address",
        kube_vip_flag: Some("vip"),
        default: "",
        help: "the VIP (kube-vip's older name for address)",
    },
    Key {
        env: "vip_subnet",
        flag: "vip-subnet",
        kube_vip_flag: Some("vipSubnet"),
        default: "32 / 128",
        help: "prefix length(s) for bare addresses, comma-separated per address (e.g. 32,128)",
    },
    Key {
        env: "vip_interface",
        flag: "vip-interface",
        kube_vip_flag: Some("interface"),
        default: "auto",
        help: "interface for the VIP; empty: the one whose connected prefix contains the VIP, else the default-route one",
    },
    Key {
        env: "port",
        flag: "port",
        kube_vip_flag: Some("port"),
        default: "6443",
        help: "the local API server's port",
    },
    Key {
        env: "vip_nodename",
        flag: "vip-nodename",
        kube_vip_flag: Some("nodeName"),
        default: "hostname",
        help: "this node's name: the Lease holderIdentity (lower-cased)",
    },
    Key {
        env: "cp_namespace",
        flag: "cp-namespace",
        kube_vip_flag: Some("namespace"),
        default: "kube-system",
        help: "namespace of the Lease",
    },
    Key {
        env: "vip_leaderelection",
        flag: "vip-leaderelection",
        kube_vip_flag: Some("leaderElection"),
        default: "true",
        help: "accepted for kube-vip compatibility; control-plane ARP mode always elects",
    },
    Key {
        env: "vip_leaseannotations",
        flag: "vip-leaseannotations",
        kube_vip_flag: None,
        default: "{}",
        help: "annotations put on the Lease on create and on every renewal (others' are kept): a JSON object of strings, e.g. {\"team\":\"infra\"}",
    },
    Key {
        env: "vip_leasename",
        flag: "vip-leasename",
        kube_vip_flag: Some("leaseName"),
        default: "plndr-cp-lock",
        help: "the Lease name, or namespace/name",
    },
    Key {
        env: "vip_leaseduration",
        flag: "vip-leaseduration",
        kube_vip_flag: Some("leaseDuration"),
        default: "5",
        help: "lease duration, whole seconds",
    },
    Key {
        env: "vip_renewdeadline",
        flag: "vip-renewdeadline",
        kube_vip_flag: Some("leaseRenewDuration"),
        default: "3",
        help: "renew deadline, seconds (fractions allowed)",
    },
    Key {
        env: "vip_retryperiod",
        flag: "vip-retryperiod",
        kube_vip_flag: Some("leaseRetry"),
        default: "1",
        help: "retry period, seconds (fractions allowed)",
    },
    Key {
        env: "vip_arpRate",
        flag: "vip-arp-rate",
        kube_vip_flag: None,
        default: "3000",
        help: "announcement refresh period while leading, milliseconds (at least 500)",
    },
    Key {
        env: "vip_heartbeat_ms",
        flag: "vip-heartbeat-ms",
        kube_vip_flag: None,
        default: "10",
        help: "fast failover: the leader's layer-2 heartbeat interval, milliseconds (1 to 1000); 0 turns fast failover off (failover at lease expiry, as kube-vip)",
    },
    Key {
        env: "vip_heartbeat_misses",
        flag: "vip-heartbeat-misses",
        kube_vip_flag: None,
        default: "3",
        help: "fast failover: heartbeats a follower may miss before it probes the VIP (1 to 100)",
    },
    Key {
        env: "vip_heartbeat_key_file",
        flag: "vip-heartbeat-key-file",
        kube_vip_flag: None,
        default: "",
        help: "fast failover: a pre-shared heartbeat key, a file of 64 hex digits (openssl rand -hex 32) others cannot read, the same on every node; unset: the key is kept by the election backend (a Secret <lease>-heartbeat, or etcd)",
    },
    Key {
        env: "vip_probe_ms",
        flag: "vip-probe-ms",
        kube_vip_flag: None,
        default: "10",
        help: "fast failover: how long the probe of the VIP waits for an answer before the lease is taken, milliseconds (1 to 1000)",
    },
    Key {
        env: "k8s_config_file",
        flag: "k8s-config-file",
        kube_vip_flag: Some("k8sConfigPath"),
        default: "",
        help: "kubeconfig path; empty: KUBECONFIG, admin.conf (super-admin.conf on 401/403), k3s, rke2, in-cluster",
    },
    Key {
        env: "kubernetes_addr",
        flag: "kubernetes-addr",
        kube_vip_flag: None,
        default: "",
        help: "the local API server as host:port (a loopback address); default 127.0.0.1:<port>",
    },
    Key {
        env: "vip_loglevel",
        flag: "vip-loglevel",
        kube_vip_flag: Some("log"),
        default: "0",
        help: "kube-vip's slog levels: -4 debug, 0 info, 4 warn, 8 error (or the names)",
    },
    Key {
        env: "vip_logformat",
        flag: "vip-logformat",
        kube_vip_flag: None,
        default: "text",
        help: "log format: text or json",
    },
    Key {
        env: "prometheus_server",
        flag: "prometheus-server",
        kube_vip_flag: Some("prometheusHTTPServer"),
        default: ":2112",
        help: "metrics, /healthz and /readyz listen address; empty disables",
    },
    Key {
        env: "vip_healthcheck",
        flag: "vip-healthcheck",
        kube_vip_flag: None,
        default: "true",
        help: "follow the local API server's /readyz (false: never hand over for health)",
    },
    Key {
        env: "vip_events",
        flag: "vip-events",
        kube_vip_flag: None,
        default: "true",
        help: "record every leadership change as a Kubernetes Event on the Lease and the Node",
    },
    Key {
        env: "vip_leaderelectiontype",
        flag: "vip-leaderelectiontype",
        kube_vip_flag: Some("leaderElectionType"),
        default: "kubernetes",
        help: "election backend: kubernetes (the Lease) or etcd (a key in etcd; needs the four etcd settings below)",
    },
    Key {
        env: "vip_etcdcacert",
        flag: "vip-etcdcacert",
        kube_vip_flag: Some("etcdCACert"),
        default: "",
        help: "etcd election: the CA of the etcd servers (PEM file)",
    },
    Key {
        env: "vip_etcdcert",
        flag: "vip-etcdcert",
        kube_vip_flag: Some("etcdCert"),
        default: "",
        help: "etcd election: this client's certificate (PEM file)",
    },
    Key {
        env: "vip_etcdkey",
        flag: "vip-etcdkey",
        kube_vip_flag: Some("etcdKey"),
        default: "",
        help: "etcd election: this client's private key (PEM file)",
    },
    Key {
        env: "vip_etcdendpoints",
        flag: "vip-etcdendpoints",
        kube_vip_flag: Some("etcdEndpoints"),
        default: "",
        help: "etcd election: the etcd endpoints, comma-separated host:port or https:// URLs (the flag may repeat, as kube-vip's)",
    },
];

const SVC: &str = "the Service load-balancer mode";
const BGP: &str = "the BGP mode";
const TABLE: &str = "the routing-table mode";
const IPVS: &str = "IPVS load balancing";
const EGRESS: &str = "egress SNAT";
const METAL: &str = "the Equinix Metal (Packet) integration";

/// kube-vip settings that select or tune modes or features `vip` does
/// not have: `(key, what it enables)`. Refused when set to a non-empty,
/// non-false value (`0` counts as false).
pub const UNSUPPORTED: &[(&str, &str)] = &[
    ("svc_enable", SVC),
    ("svc_election", "per-Service election"),
    ("bgp_enable", BGP),
    ("bgp_routerid", BGP),
    ("bgp_peers", BGP),
    ("vip_routingtable", TABLE),
    ("vip_wireguard", "the WireGuard mode"),
    ("vip_ddns", "DHCP/DDNS VIPs"),
    ("lb_enable", IPVS),
    ("egress_podcidr", EGRESS),
    ("egress_servicecidr", EGRESS),
    ("enable_upnp", "UPnP forwarding"),
    (
        "cp_detect",
        "API-server address detection from certificate SANs",
    ),
    ("enable_node_labeling", "node labelling"),
    (
        "vip_preserve_on_leadership_loss",
        "keeping the VIP after losing leadership (it would be on two nodes)",
    ),
    ("vip_cidr", "the removed vip_cidr setting (use vip_subnet)"),
    ("vip_servicesinterface", SVC),
    (
        "config_file",
        "a configuration file (vip reads only its environment and flags: move the file's settings into them)",
    ),
    ("annotation", BGP),
    ("bgp_as", BGP),
    ("bgp_attach_ip_to_interface", BGP),
    ("bgp_hold_time", BGP),
    ("bgp_keepalive_interval", BGP),
    ("bgp_multihop", BGP),
    ("bgp_peeraddress", BGP),
    ("bgp_peeras", BGP),
    ("bgp_peerpass", BGP),
    ("bgp_routerinterface", BGP),
    ("bgp_sourceif", BGP),
    ("bgp_sourceip", BGP),
    ("mpbgp_nexthop", BGP),
    ("mpbgp_ipv4", BGP),
    ("mpbgp_ipv6", BGP),
    ("zebra_enable", BGP),
    ("zebra_url", BGP),
    ("zebra_version", BGP),
    ("zebra_software_name", BGP),
    ("vip_routingtableid", TABLE),
    ("vip_routingtabletype", TABLE),
    ("vip_routingprotocol", TABLE),
    ("vip_cleanroutingtable", TABLE),
    ("dhcp_mode", "DHCP/DDNS VIPs"),
    ("dhcp_backoff_attempts", "DHCP/DDNS VIPs"),
    ("svc_namespace", SVC),
    ("svc_leasename", SVC),
    ("lb_class_only", SVC),
    ("lb_class_name", SVC),
    ("lb_class_legacy_handling", SVC),
    ("enable_service_security", SVC),
    ("disable_service_updates", SVC),
    ("enable_endpoints", SVC),
    ("enable_endpointslices", SVC),
    ("mirror_dest_interface", SVC),
    ("per_service_election_on_demand", "per-Service election"),
    ("vip_configmap", SVC),
    ("lb_port", IPVS),
    ("lb_fwdmethod", IPVS),
    ("backend_health_check_interval", IPVS),
    ("egress_withnftables", EGRESS),
    ("egress_enableinternalsnat", EGRESS),
    ("egress_clean", EGRESS),
    ("EGRESS_CLEAN", EGRESS),
    ("iptables_backend", EGRESS),
    (
        "health_check_port",
        "a separate health port (vip serves /healthz on prometheus_server)",
    ),
    ("vip_interfaceloglobal", "a global-scope VIP on lo"),
    ("provider_config", METAL),
    ("vip_packet", METAL),
    ("vip_packetproject", METAL),
    ("vip_packetprojectid", METAL),
];

/// The settings that are lists, like kube-vip's cobra string-slice flags
/// (`--etcdEndpoints`): each flag may repeat, and its values join the list,
/// so `--etcdEndpoints=a,b` and `--etcdEndpoints a --etcdEndpoints b` are
/// the same (kube-vip reads this one only as a flag, never from its
/// environment; `vip_etcdendpoints` is `vip`'s own).
pub const LISTS: &[&str] = &["vip_etcdendpoints"];

/// The settings that are booleans. On the command line they behave like
/// kube-vip's cobra bool flags: `--arp` alone is true, `--arp=false` is
/// false, and in `--arp false` the `false` is a stray argument (refused).
pub const BOOLEANS: &[&str] = &[
    "vip_arp",
    "cp_enable",
    "vip_leaderelection",
    "vip_healthcheck",
];

/// A kube-vip flag of a mode or feature `vip` does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedFlag {
    /// The flag, with its dashes (`--services`).
    pub flag: &'static str,
    /// A cobra bool flag: refused when true (bare or `=true`), accepted
    /// when `=false`. Otherwise refused when given a non-empty value.
    pub boolean: bool,
    /// What it would enable.
    pub what: &'static str,
}

const fn refused(flag: &'static str, boolean: bool, what: &'static str) -> RefusedFlag {
    RefusedFlag {
        flag,
        boolean,
        what,
    }
}

/// kube-vip's flags (`kube-vip --help`) that select modes or features
/// `vip` does not have; refused by name, as the settings in
/// [`UNSUPPORTED`] are.
pub const REFUSED_FLAGS: &[RefusedFlag] = &[
    refused("--services", true, SVC),
    refused("--servicesElection", true, "per-Service election"),
    refused("--serviceInterface", false, SVC),
    refused("--servicesLeaseName", false, SVC),
    refused("--lbClassOnly", true, SVC),
    refused("--lbClassName", false, SVC),
    refused("--lbClassNameLegacyHandling", true, SVC),
    refused("--onlyAllowTrafficServicePorts", true, SVC),
    refused("--disableServiceUpdates", true, SVC),
    refused("--enableEndpoints", true, SVC),
    refused("--mirrorDestInterface", false, SVC),
    refused("--bgp", true, BGP),
    refused("--bgpRouterID", false, BGP),
    refused("--bgppeers", false, BGP),
    refused("--peerAddress", false, BGP),
    refused("--peerAS", false, BGP),
    refused("--peerPass", false, BGP),
    refused("--localAS", false, BGP),
    refused("--multihop", true, BGP),
    refused("--sourceIF", false, BGP),
    refused("--sourceIP", false, BGP),
    refused("--bgpHoldTimer", false, BGP),
    refused("--bgpKeepAliveInterval", false, BGP),
    refused("--annotations", false, BGP),
    refused("--zebra", true, BGP),
    refused("--table", true, TABLE),
    refused("--tableID", false, TABLE),
    refused("--tableType", false, TABLE),
    refused("--routingProtocol", false, TABLE),
    refused("--cleanRoutingTable", true, TABLE),
    refused("--wireguard", true, "the WireGuard mode"),
    refused("--ddns", true, "DHCP/DDNS VIPs"),
    refused("--enableLoadBalancer", true, IPVS),
    refused("--lbPort", false, IPVS),
    refused("--lbForwardingMethod", false, IPVS),
    refused(
        "--autodetectcp",
        true,
        "API-server address detection from certificate SANs",
    ),
    refused("--enableNodeLabeling", true, "node labelling"),
    refused(
        "--preserveVipOnLeadershipLoss",
        true,
        "keeping the VIP after losing leadership (it would be on two nodes)",
    ),
    refused("--loInterfaceGlobalScope", true, "a global-scope VIP on lo"),
    refused(
        "--healthCheckPort",
        false,
        "a separate health port (vip serves /healthz on prometheus_server)",
    ),
    refused(
        "--config-file",
        false,
        "a configuration file (vip reads only its environment and flags: move the file's settings into them)",
    ),
    refused("--bgpAttachIPToInterface", true, BGP),
    refused("--zebraUrl", false, BGP),
    refused("--zebraVersion", false, BGP),
    refused("--zebraSoftwareName", false, BGP),
    refused("--dhcpMode", false, "DHCP/DDNS VIPs"),
    refused("--dhcpBackoffAttempts", false, "DHCP/DDNS VIPs"),
    refused("--egressWithNftables", true, EGRESS),
    refused("--perServiceElectionOnDemand", true, "per-Service election"),
    refused("--enableEndpointSlices", true, SVC),
    refused(
        "--cidr",
        false,
        "the removed vip_cidr setting (use --vipSubnet)",
    ),
    refused("--metal", true, METAL),
    refused("--metalKey", false, METAL),
    refused("--metalProject", false, METAL),
    refused("--metalProjectID", false, METAL),
    refused("--provider-config", false, METAL),
];

/// The settings of [`KEYS`] that are `vip`'s own: kube-vip (no version up
/// to the one `tests/fixtures/kube-vip-keys.txt` lists) reads no such
/// environment variable. The rest of [`KEYS`] are kube-vip's names
/// (checked by the guard test in `kube_vip.rs`).
#[cfg(test)]
pub const VIP_OWN: &[&str] = &[
    "vip_heartbeat_ms",
    "vip_heartbeat_misses",
    "vip_probe_ms",
    "vip_heartbeat_key_file",
    "vip_logformat",
    "vip_healthcheck",
    "vip_events",
    "vip_leaderelectiontype",
    "vip_etcdcacert",
    "vip_etcdcert",
    "vip_etcdkey",
    "vip_etcdendpoints",
];
