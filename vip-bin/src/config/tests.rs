use super::*;

fn env(pairs: &[(&str, &str)]) -> Sources {
    Sources::env_only(pairs)
}

fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::from_sources(&env(pairs), "Alpha-1")
}

/// The deployment brief's env block, unchanged.
const BRIEF: &[(&str, &str)] = &[
    ("vip_arp", "true"),
    ("vip_interface", "end0"),
    ("vip_address", "192.168.20.140"),
    ("vip_leaderelection", "true"),
    ("cp_enable", "true"),
    ("cp_namespace", "kube-system"),
];

#[test]
fn the_briefs_env_block_parses_with_kube_vip_defaults() {
    let s = load(BRIEF).unwrap();
    assert_eq!(s.vips.to_string(), "192.168.20.140/32");
    assert_eq!(s.interface, InterfaceSelector::Name("end0".into()));
    assert_eq!(s.node_name.as_str(), "alpha-1");
    assert_eq!(
        (s.lease_namespace.as_str(), s.lease_name.as_str()),
        ("kube-system", "plndr-cp-lock")
    );
    assert_eq!(s.timings, Timings::default());
    assert_eq!(s.arp_rate, Duration::from_secs(3));
    assert_eq!(s.fast_failover, vip_core::FastFailoverPolicy::default());
    assert_eq!(s.port, 6443);
    assert_eq!(s.metrics, Some("0.0.0.0:2112".parse().unwrap()));
    assert_eq!(s.log_level, LogLevel::Info);
    assert!(s.health_check);
    assert!(s.events);
}

#[test]
fn flags_win_over_the_environment() {
    let mut src = env(BRIEF);
    src.flags.insert("vip_interface", "eth1".into());
    let s = Settings::from_sources(&src, "h").unwrap();
    assert_eq!(s.interface, InterfaceSelector::Name("eth1".into()));
}

/// Every key with good and bad values: (key, value, Ok(check) or the
/// text the error must contain).
#[test]
fn every_key_good_and_bad() {
    type Check = fn(&Settings) -> bool;
    let cases: &[(&str, &str, Result<Check, &str>)] = &[
        ("vip_arp", "true", Ok(|_| true)),
        ("vip_arp", "false", Err("unsupported vip_arp=\"false\"")),
        (
            "vip_arp",
            "yes",
            Err("invalid vip_arp=\"yes\": expected true or false"),
        ),
        (
            "vip_leaseannotations",
            r#"{"team":"infra","example.com/owner":"ops"}"#,
            Ok(|s| {
                s.lease_annotations.get("team").map(String::as_str) == Some("infra")
                    && s.lease_annotations.len() == 2
            }),
        ),
        (
            "vip_leaseannotations",
            "{}",
            Ok(|s| s.lease_annotations.is_empty()),
        ),
        (
            "vip_leaseannotations",
            "team=infra",
            Err(
                "invalid vip_leaseannotations=\"team=infra\": expected a JSON object of string values",
            ),
        ),
        (
            "vip_leaseannotations",
            r#"{"replicas":3}"#,
            Err("expected a JSON object of string values"),
        ),
        (
            "vip_leaseannotations",
            r#"{"bad key":"x"}"#,
            Err("\"bad key\" is not"),
        ),
        (
            "vip_leaseannotations",
            r#"{"Bad_Prefix/x":"y"}"#,
            Err("annotation names as Kubernetes accepts them"),
        ),
        ("cp_enable", "1", Ok(|_| true)),
        ("cp_enable", "false", Err("unsupported cp_enable")),
        (
            "address",
            "198.18.0.1,2001:db8::1",
            Ok(|s| s.vips.to_string() == "198.18.0.1/32,2001:db8::1/128"),
        ),
        (
            "address",
            "198.18.0.1/24",
            Ok(|s| s.vips.to_string() == "198.18.0.1/24"),
        ),
        (
            "address",
            "k8s.example.com",
            Err("DNS names are not supported"),
        ),
        (
            "address",
            "198.18.0.1/33",
            Err("invalid address=\"198.18.0.1/33\""),
        ),
        (
            "vip_subnet",
            "24",
            Ok(|s| s.vips.to_string() == "192.168.20.140/24"),
        ),
        ("vip_subnet", "40", Err("invalid vip_subnet=\"40\"")),
        ("vip_subnet", "x", Err("invalid vip_subnet=\"x\"")),
        (
            "vip_subnet",
            "32,128",
            Err("at most one prefix length per address"),
        ),
        (
            "vip_interface",
            "",
            Ok(|s| s.interface == InterfaceSelector::Auto),
        ),
        ("vip_interface", "a/b", Err("invalid vip_interface=\"a/b\"")),
        ("port", "6444", Ok(|s| s.port == 6444)),
        ("port", "0", Err("invalid port=\"0\": expected a TCP port")),
        ("port", "70000", Err("invalid port")),
        (
            "vip_nodename",
            "CP-2",
            Ok(|s| s.node_name.as_str() == "cp-2"),
        ),
        ("vip_nodename", "cp_2", Err("invalid vip_nodename=\"cp_2\"")),
        (
            "cp_namespace",
            "vip-system",
            Ok(|s| s.lease_namespace == "vip-system"),
        ),
        ("cp_namespace", "Kube", Err("invalid cp_namespace=\"Kube\"")),
        ("vip_leaderelection", "false", Ok(|_| true)),
        (
            "vip_leaderelection",
            "maybe",
            Err("invalid vip_leaderelection"),
        ),
        (
            "vip_leasename",
            "kube-vip-cp",
            Ok(|s| s.lease_name == "kube-vip-cp"),
        ),
        (
            "vip_leasename",
            "other/kube-vip-cp",
            Ok(|s| s.lease_namespace == "other" && s.lease_name == "kube-vip-cp"),
        ),
        (
            "vip_leasename",
            "Bad_Name",
            Err("invalid vip_leasename=\"Bad_Name\""),
        ),
        (
            "vip_leaseduration",
            "15",
            Ok(|s| s.timings.lease_duration() == Duration::from_secs(15)),
        ),
        (
            "vip_leaseduration",
            "2.5",
            Err("invalid vip_leaseduration=\"2.5\": expected a whole number"),
        ),
        (
            "vip_leaseduration",
            "3",
            Err("invalid vip_renewdeadline=\"3\": expected less than the lease duration"),
        ),
        (
            "vip_renewdeadline",
            "2.5",
            Ok(|s| s.timings.renew_deadline() == Duration::from_millis(2500)),
        ),
        (
            "vip_renewdeadline",
            "-1",
            Err("invalid vip_renewdeadline=\"-1\""),
        ),
        (
            "vip_renewdeadline",
            "6",
            Err("invalid vip_renewdeadline=\"6\": expected less than the lease duration"),
        ),
        (
            "vip_retryperiod",
            "0.5",
            Ok(|s| s.timings.retry_period() == Duration::from_millis(500)),
        ),
        (
            "vip_retryperiod",
            "3",
            Err("invalid vip_retryperiod=\"3\": expected less than the renew deadline"),
        ),
        (
            "vip_retryperiod",
            "abc",
            Err("invalid vip_retryperiod=\"abc\""),
        ),
        (
            "vip_arpRate",
            "1000",
            Ok(|s| s.arp_rate == Duration::from_secs(1)),
        ),
        (
            "vip_arpRate",
            "100",
            Err("invalid vip_arpRate=\"100\": expected milliseconds, 500 to 3600000"),
        ),
        (
            "vip_heartbeat_ms",
            "5",
            Ok(|s| s.fast_failover.heartbeat == Duration::from_millis(5)),
        ),
        ("vip_heartbeat_ms", "0", Ok(|s| !s.fast_failover.enabled())),
        (
            "vip_heartbeat_ms",
            "1001",
            Err(
                "invalid vip_heartbeat_ms=\"1001\": expected milliseconds, 1 to 1000, or 0 to turn fast failover off",
            ),
        ),
        (
            "vip_heartbeat_ms",
            "ten",
            Err("invalid vip_heartbeat_ms=\"ten\""),
        ),
        (
            "vip_heartbeat_misses",
            "5",
            Ok(|s| s.fast_failover.misses == 5),
        ),
        (
            "vip_heartbeat_misses",
            "0",
            Err("invalid vip_heartbeat_misses=\"0\": expected a whole number, 1 to 100"),
        ),
        (
            "vip_probe_ms",
            "20",
            Ok(|s| s.fast_failover.probe_timeout == Duration::from_millis(20)),
        ),
        (
            "vip_probe_ms",
            "0",
            Err("invalid vip_probe_ms=\"0\": expected milliseconds, 1 to 1000"),
        ),
        (
            "k8s_config_file",
            "/etc/rancher/k3s/k3s.yaml",
            Ok(|s| {
                s.kubeconfig.as_deref() == Some(std::path::Path::new("/etc/rancher/k3s/k3s.yaml"))
            }),
        ),
        (
            "kubernetes_addr",
            "127.0.0.1:6444",
            Ok(|s| s.local_api == Some("127.0.0.1:6444".parse().unwrap())),
        ),
        (
            "kubernetes_addr",
            "192.168.20.140:6443",
            Err("a loopback address"),
        ),
        (
            "kubernetes_addr",
            "nonsense",
            Err("invalid kubernetes_addr"),
        ),
        ("vip_loglevel", "-4", Ok(|s| s.log_level == LogLevel::Debug)),
        ("vip_loglevel", "5", Ok(|s| s.log_level == LogLevel::Warn)),
        (
            "vip_loglevel",
            "error",
            Ok(|s| s.log_level == LogLevel::Error),
        ),
        ("vip_loglevel", "loud", Err("invalid vip_loglevel=\"loud\"")),
        (
            "vip_logformat",
            "json",
            Ok(|s| s.log_format == LogFormat::Json),
        ),
        (
            "vip_logformat",
            "xml",
            Err("invalid vip_logformat=\"xml\": expected text or json"),
        ),
        (
            "prometheus_server",
            ":9100",
            Ok(|s| s.metrics == Some("0.0.0.0:9100".parse().unwrap())),
        ),
        (
            "prometheus_server",
            "127.0.0.1:2112",
            Ok(|s| s.metrics == Some("127.0.0.1:2112".parse().unwrap())),
        ),
        ("prometheus_server", "", Ok(|s| s.metrics.is_none())),
        (
            "prometheus_server",
            "2112",
            Err("invalid prometheus_server=\"2112\""),
        ),
        ("vip_healthcheck", "false", Ok(|s| !s.health_check)),
        ("vip_healthcheck", "no", Err("invalid vip_healthcheck")),
        ("vip_events", "false", Ok(|s| !s.events)),
        ("vip_events", "maybe", Err("invalid vip_events")),
    ];
    for (key, value, want) in cases {
        let mut pairs: Vec<(&str, &str)> =
            BRIEF.iter().filter(|(k, _)| k != key).copied().collect();
        pairs.push((key, value));
        match (load(&pairs), want) {
            (Ok(s), Ok(check)) => assert!(check(&s), "{key}={value}: {s:?}"),
            (Err(e), Err(text)) => {
                let msg = e.to_string();
                assert!(msg.contains(text), "{key}={value}: {msg:?} lacks {text:?}");
                assert!(!msg.contains('\n'), "one line: {msg:?}");
            }
            (got, _) => panic!("{key}={value}: unexpected {got:?}"),
        }
    }
}

#[test]
fn unsupported_modes_are_refused_by_name() {
    for (key, _) in UNSUPPORTED {
        let mut pairs = BRIEF.to_vec();
        pairs.push((key, "true"));
        let e = load(&pairs).unwrap_err().to_string();
        assert!(e.starts_with(&format!("unsupported {key}=")), "{e}");
        // false or empty is fine.
        let mut pairs = BRIEF.to_vec();
        pairs.push((key, "false"));
        assert!(load(&pairs).is_ok(), "{key}=false");
    }
}

/// The lease namespace counts as set when `cp_namespace` or a
/// `namespace/name` lease gives it (an in-cluster vip otherwise takes its
/// ServiceAccount's namespace).
#[test]
fn the_lease_namespace_is_explicit_only_when_given() {
    let s = load(&[("address", "198.18.0.1")]).unwrap();
    assert!(!s.lease_namespace_explicit);
    let s = load(&[("address", "198.18.0.1"), ("cp_namespace", "kube-system")]).unwrap();
    assert!(s.lease_namespace_explicit);
    let s = load(&[("address", "198.18.0.1"), ("vip_leasename", "vip/lock")]).unwrap();
    assert!(s.lease_namespace_explicit);
}

#[test]
fn the_vip_is_required() {
    let e = load(&[("vip_arp", "true")]).unwrap_err().to_string();
    assert!(e.starts_with("missing address"), "{e}");
    // address wins over vip_address.
    let s = load(&[("address", "198.18.0.7"), ("vip_address", "198.18.0.8")]).unwrap();
    assert_eq!(s.vips.to_string(), "198.18.0.7/32");
}

#[test]
fn every_key_is_documented_once() {
    let mut seen = std::collections::BTreeSet::new();
    for k in KEYS {
        assert!(seen.insert(k.env), "{} twice", k.env);
        assert!(!k.help.is_empty());
    }
    for (key, _) in Settings::from_sources(&env(BRIEF), "h").unwrap().describe() {
        assert!(seen.contains(key), "{key} is not in KEYS");
    }
}

#[test]
fn etcd_election_needs_all_four_settings_and_names_the_missing() {
    let base = [("address", "198.18.0.1"), ("vip_nodename", "n")];
    let s = load(&base).unwrap();
    assert_eq!(s.leader_election, LeaderElection::Kubernetes);
    let mut pairs = base.to_vec();
    pairs.push(("vip_leaderelectiontype", "etcd"));
    pairs.push(("vip_etcdcacert", "/pki/ca.crt"));
    assert_eq!(
        load(&pairs).unwrap_err().to_string(),
        "incomplete vip_leaderelectiontype=\"etcd\": also set vip_etcdcert (--etcdCert), vip_etcdkey (--etcdKey), vip_etcdendpoints (--etcdEndpoints)"
    );
    pairs.extend([
        ("vip_etcdcert", "/pki/c.crt"),
        ("vip_etcdkey", "/pki/c.key"),
        ("vip_etcdendpoints", "127.0.0.1:2379,https://10.0.0.2:2379"),
    ]);
    let s = load(&pairs).unwrap();
    assert_eq!(s.leader_election, LeaderElection::Etcd);
    assert_eq!(
        s.etcd.endpoints,
        ["https://127.0.0.1:2379", "https://10.0.0.2:2379"]
    );
    assert_eq!(
        s.etcd.tls().unwrap().key,
        std::path::PathBuf::from("/pki/c.key")
    );
    // Unreadable files are named with their key and path by check_files.
    let e = s.check_files().unwrap_err().to_string();
    assert!(
        e.starts_with("invalid vip_etcdcacert=\"/pki/ca.crt\": expected a readable file"),
        "{e}"
    );
    // The Lease election never looks at the files.
    assert!(load(&base).unwrap().check_files().is_ok());

    let mut bad = base.to_vec();
    bad.push(("vip_leaderelectiontype", "consul"));
    assert_eq!(
        load(&bad).unwrap_err().to_string(),
        "invalid vip_leaderelectiontype=\"consul\": expected kubernetes or etcd"
    );
    let mut bad = base.to_vec();
    bad.push(("vip_etcdendpoints", "http://127.0.0.1:2379"));
    assert!(load(&bad).unwrap_err().to_string().starts_with(
        "invalid vip_etcdendpoints=\"http://127.0.0.1:2379\": expected comma-separated"
    ),);
}

#[test]
fn readable_etcd_files_pass_the_host_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = |n: &str| {
        let p = dir.path().join(n);
        std::fs::write(&p, "pem").unwrap();
        p.display().to_string()
    };
    let (ca, cert, key) = (file("ca.crt"), file("c.crt"), file("c.key"));
    let s = load(&[
        ("address", "198.18.0.1"),
        ("vip_nodename", "n"),
        ("vip_leaderelectiontype", "etcd"),
        ("vip_etcdcacert", &ca),
        ("vip_etcdcert", &cert),
        ("vip_etcdkey", &key),
        ("vip_etcdendpoints", "127.0.0.1:2379"),
    ])
    .unwrap();
    s.check_files().unwrap();
}

#[test]
fn fast_failover_must_beat_the_renew_deadline() {
    let err = Settings::from_sources(
        &env(&[
            ("address", "198.18.0.100"),
            ("vip_heartbeat_ms", "1000"),
            ("vip_heartbeat_misses", "3"),
        ]),
        "h",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("invalid vip_heartbeat_misses=\"3\": expected vip_heartbeat_ms x vip_heartbeat_misses + vip_probe_ms + 10 ms (3020 ms) below the renew deadline (3000 ms)"),
        "{err}"
    );
}
