//! The `vip` command line: exit codes and messages of `manager`,
//! `check-config`, `preflight` and `status` on bad input, before anything
//! touches the host; kube-vip's documented command lines run verbatim, its
//! bool flags behave as cobra's, and its modes `vip` lacks are refused by
//! name.

mod common;

use std::process::Output;

use common::{BRIEF_ENV as BRIEF, vip};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_config_accepts_the_briefs_env_block_and_prints_the_settings() {
    let o = vip(BRIEF, &["check-config", "--vip-nodename", "alpha-1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for line in [
        "address=192.168.20.140/32",
        "vip_interface=end0",
        "vip_nodename=alpha-1",
        "vip_leasename=plndr-cp-lock",
        "vip_leaseduration=5",
        "vip_renewdeadline=3",
        "vip_retryperiod=1",
        "prometheus_server=0.0.0.0:2112",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
    }
}

#[test]
fn kube_vips_flag_names_are_aliases() {
    let o = vip(
        &[],
        &[
            "check-config",
            "--vip",
            "198.18.0.9",
            "--interface",
            "eth1",
            "--leaseDuration",
            "10",
            "--leaseRenewDuration",
            "6",
            "--nodeName",
            "n1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("vip_interface=eth1")
            && out.contains("vip_leaseduration=10")
            && out.contains("vip_renewdeadline=6"),
        "{out}"
    );
}

/// kube-vip's etcd settings are flags only (its `ParseEnvironment` reads
/// none of them), and `--etcdEndpoints` is a cobra string slice: repeated,
/// its values join the list, as a comma-separated value does.
#[test]
fn kube_vips_etcd_flags_and_repeated_endpoints() {
    let root = FakeRoot::new("etcd-flags");
    let mut files = Vec::new();
    for name in ["ca.crt", "client.crt", "client.key"] {
        let p = root.0.join(name);
        std::fs::write(&p, "test\n").unwrap();
        files.push(p.to_str().unwrap().to_string());
    }
    let base = [
        "check-config".to_string(),
        "--address=198.18.0.9".into(),
        "--interface=eth1".into(),
        "--nodeName=n1".into(),
        "--leaderElectionType=etcd".into(),
        format!("--etcdCACert={}", files[0]),
        format!("--etcdCert={}", files[1]),
        format!("--etcdKey={}", files[2]),
    ];
    let run = |endpoints: &[&str]| {
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend_from_slice(endpoints);
        vip(&[], &args)
    };
    let joined = run(&["--etcdEndpoints=127.0.0.1:2379,198.18.0.2:2379"]);
    let repeated = run(&[
        "--etcdEndpoints",
        "127.0.0.1:2379",
        "--etcdEndpoints=198.18.0.2:2379",
    ]);
    for o in [&joined, &repeated] {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.lines().any(|l| l == "vip_leaderelectiontype=etcd"),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l == "vip_etcdendpoints=https://127.0.0.1:2379,https://198.18.0.2:2379"),
            "{out}"
        );
    }
    refused_in_one_line(
        &run(&[]),
        "no endpoints",
        "vip_etcdendpoints (--etcdEndpoints)",
    );
}

/// Bad input: exit 2, one line on stderr naming the key and the value, for
/// every subcommand that reads the settings, and nothing else happens (the
/// daemon never starts: it would log "starting").
#[test]
fn bad_values_and_unsupported_modes_exit_2_in_one_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "vip_leaseduration",
            "ten",
            "invalid vip_leaseduration=\"ten\"",
        ),
        (
            "vip_retryperiod",
            "5",
            "invalid vip_retryperiod=\"5\": expected less than the renew deadline",
        ),
        ("vip_address", "k8s.example", "DNS names are not supported"),
        ("vip_arpRate", "10", "invalid vip_arpRate=\"10\""),
        (
            "bgp_enable",
            "true",
            "unsupported bgp_enable=\"true\": the BGP mode is not implemented",
        ),
        ("svc_enable", "true", "unsupported svc_enable"),
        ("vip_wireguard", "true", "unsupported vip_wireguard"),
        ("vip_arp", "false", "unsupported vip_arp"),
        (
            "vip_preserve_on_leadership_loss",
            "true",
            "unsupported vip_preserve_on_leadership_loss",
        ),
    ];
    for sub in ["manager", "check-config", "preflight", "status"] {
        for (key, value, text) in cases {
            let mut env: Vec<(&str, &str)> =
                BRIEF.iter().filter(|(k, _)| k != key).copied().collect();
            env.push((key, value));
            let o = vip(&env, &[sub]);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{sub} {key}={value}: {err}");
            assert_eq!(
                err.lines().count(),
                1,
                "{sub} {key}={value}: one line: {err:?}"
            );
            assert!(
                err.contains(text),
                "{sub} {key}={value}: {err:?} lacks {text:?}"
            );
            assert!(
                o.stdout.is_empty(),
                "{sub} {key}={value}: printed {:?}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
}

#[test]
fn a_missing_vip_is_named() {
    let o = vip(&[("vip_arp", "true")], &["manager"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("vip: missing address:"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_missing_kubeconfig_stops_the_manager_before_any_network_change_with_the_paths_tried() {
    let dir = std::env::temp_dir().join(format!("vip-cli-{}", std::process::id()));
    let missing = dir.join("nope.yaml");
    let missing = missing.to_str().unwrap();
    let mut env = BRIEF.to_vec();
    env.push(("k8s_config_file", missing));
    env.push(("vip_logformat", "json"));
    env.push(("prometheus_server", ""));
    let o = vip(&env, &["manager", "--vip-nodename", "alpha-1"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(missing), "names the path tried: {err}");
    // JSON logs on request: every log line is a JSON object.
    let logs: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    assert!(logs.iter().any(|l| l["level"] == "ERROR"), "{err}");
    assert!(
        logs.iter().any(|l| l["message"] == "starting vip manager"),
        "{err}"
    );
}

#[test]
fn usage_errors() {
    let o = vip(&[], &[]);
    assert_eq!(o.status.code(), Some(2));
    let o = vip(&[], &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("frobnicate"));
    let o = vip(&[], &["status", "-o", "yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let o = vip(&[], &["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("vip "));
}

/// A fresh empty directory standing in for the host's root, so
/// `vip manifest pod` detects nothing of this machine; removed on drop.
struct FakeRoot(std::path::PathBuf);

impl FakeRoot {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("vip-cli-root-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Exit 2, nothing on stdout, one stderr line containing `text`.
fn refused_in_one_line(o: &Output, what: &str, text: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{what}: {err}");
    assert!(
        o.stdout.is_empty(),
        "{what}: printed {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: one line: {err:?}"
    );
    assert!(err.contains(text), "{what}: {err:?} lacks {text:?}");
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// kube-vip's documented command lines (its static-pod and k3s install
/// pages, with $INTERFACE=eth0 and $VIP=192.168.0.40), verbatim after the
/// program name: the control-plane ones work, the ones with `--services`
/// are refused by name, before anything happens.
#[test]
fn kube_vips_documented_command_lines_run_verbatim() {
    let root = FakeRoot::new("docs");
    let env = [("VIP_HOST_ROOT", root.path())];
    let pod = "manifest pod --interface eth0 --address 192.168.0.40 --controlplane --arp --leaderElection";
    let o = vip(&env, &words(pod));
    assert_eq!(o.status.code(), Some(0), "{pod}: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("# distribution: kubeadm"), "{out}");
    let doc: serde_json::Value = serde_saphyr::from_str(&out).expect("one YAML pod");
    assert_eq!(doc["kind"], "Pod");
    let env_of = |name: &str| {
        doc["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(env_of("vip_interface"), Some("eth0".into()));
    assert_eq!(env_of("address"), Some("192.168.0.40".into()));
    assert_eq!(env_of("vip_arp"), Some("true".into()));
    assert_eq!(
        doc["spec"]["volumes"][0]["hostPath"]["path"],
        "/etc/kubernetes/admin.conf"
    );

    // kubeadm >= 1.29's first node, as kube-vip's page has it: the
    // kubeconfig named by --k8sConfigPath is the one mounted.
    let first = "manifest pod --interface eth0 --address 192.168.0.40 --controlplane --arp --leaderElection --k8sConfigPath /etc/kubernetes/super-admin.conf";
    let o = vip(&env, &words(first));
    assert_eq!(o.status.code(), Some(0), "{first}: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("# kubeconfig: /etc/kubernetes/super-admin.conf (k8s_config_file)"),
        "{out}"
    );
    let first: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
    assert_eq!(
        first["spec"]["volumes"][0]["hostPath"]["path"],
        "/etc/kubernetes/super-admin.conf"
    );
    assert_eq!(
        first["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        "/etc/kubernetes/admin.conf"
    );

    let ds = "manifest daemonset --interface eth0 --address 192.168.0.40 --inCluster --taint --controlplane --arp --leaderElection";
    let o = vip(&env, &words(ds));
    assert_eq!(o.status.code(), Some(0), "{ds}: {}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("kind: DaemonSet"));

    for line in [
        "manifest pod --interface eth0 --address 192.168.0.40 --controlplane --services --arp --leaderElection",
        "manifest daemonset --interface eth0 --address 192.168.0.40 --inCluster --taint --controlplane --services --arp --leaderElection",
        "manager --interface eth0 --address 192.168.0.40 --controlplane --services --arp --leaderElection",
        "check-config --interface eth0 --address 192.168.0.40 --controlplane --services --arp --leaderElection",
    ] {
        refused_in_one_line(
            &vip(&env, &words(line)),
            line,
            "vip: unsupported --services=\"true\": the Service load-balancer mode is not implemented by vip",
        );
    }

    let check = "check-config --interface eth0 --address 192.168.0.40 --controlplane --arp --leaderElection --nodeName n1";
    let o = vip(&[], &words(check));
    assert_eq!(o.status.code(), Some(0), "{check}: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().any(|l| l == "vip_interface=eth0"), "{out}");
    assert!(out.lines().any(|l| l == "address=192.168.0.40/32"), "{out}");
}

/// `manager` takes the same flags: it gets past the configuration and
/// stops at the missing kubeconfig (exit 1, naming it), before any
/// network change.
#[test]
fn manager_takes_kube_vips_flags_and_stops_at_the_kubeconfig() {
    let o = vip(
        &[],
        &words(
            "manager --interface eth0 --address 192.168.0.40 --controlplane --arp --leaderElection --nodeName n1 --k8sConfigPath /nonexistent/vip-kubeconfig --prometheusHTTPServer=",
        ),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("/nonexistent/vip-kubeconfig"), "{err}");
}

/// Booleans behave like cobra's: bare is true, `=value` parses with Go's
/// ParseBool, and `--flag false` leaves a stray `false`, refused in one
/// line; kube-vip's mode flags are refused by name when on, accepted off.
#[test]
fn booleans_and_refused_flags_behave_like_kube_vips() {
    let base = [
        "check-config",
        "--address",
        "198.18.0.9",
        "--nodeName",
        "n1",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        vip(&[], &args)
    };
    for ok in [
        &["--arp"][..],
        &["--arp=true"],
        &["--arp=1"],
        &["--leaderElection=false"],
        &["--vip-leaderelection"],
        &["--controlplane=T"],
        &["--vip-healthcheck=false"],
        &[
            "--services=false",
            "--bgp=false",
            "--enableLoadBalancer=false",
        ],
        &["-n", "vip-system"],
        &["--serviceInterface="],
    ] {
        let o = run(ok);
        assert_eq!(o.status.code(), Some(0), "{ok:?}: {}", stderr(&o));
    }
    let o = run(&["-n", "vip-system"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("cp_namespace=vip-system"));
    let o = run(&["--vip-healthcheck=false"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("vip_healthcheck=false"));

    let cases: &[(&[&str], &str)] = &[
        (&["--arp=false"], "vip: unsupported vip_arp=\"false\""),
        (
            &["--controlplane=false"],
            "vip: unsupported cp_enable=\"false\"",
        ),
        (
            &["--leaderElection=maybe"],
            "vip: invalid vip_leaderelection=\"maybe\": expected true or false",
        ),
        (
            &["--arp", "false"],
            "vip: invalid argument=\"false\": expected flags only; a boolean flag takes its value after '='",
        ),
        (&["--bgp"], "vip: unsupported --bgp=\"true\": the BGP mode"),
        (
            &["--wireguard=true"],
            "unsupported --wireguard=\"true\": the WireGuard mode",
        ),
        (
            &["--table"],
            "unsupported --table=\"true\": the routing-table mode",
        ),
        (
            &["--enableLoadBalancer"],
            "unsupported --enableLoadBalancer=\"true\": IPVS",
        ),
        (&["--ddns"], "unsupported --ddns=\"true\": DHCP/DDNS"),
        (&["--servicesElection"], "unsupported --servicesElection"),
        (
            &["--enableNodeLabeling"],
            "unsupported --enableNodeLabeling",
        ),
        (
            &["--preserveVipOnLeadershipLoss"],
            "unsupported --preserveVipOnLeadershipLoss",
        ),
        (
            &["--bgpRouterID", "198.18.0.1"],
            "unsupported --bgpRouterID=\"198.18.0.1\": the BGP mode",
        ),
        (&["--localAS=65000"], "unsupported --localAS=\"65000\""),
        (
            &["--serviceInterface", "eth1"],
            "unsupported --serviceInterface=\"eth1\"",
        ),
        (
            &["--bgp=yes"],
            "vip: invalid --bgp=\"yes\": expected true or false",
        ),
    ];
    for (extra, text) in cases {
        refused_in_one_line(&run(extra), &format!("{extra:?}"), text);
    }
}

/// kube-vip settings `vip` honours differently are never taken silently:
/// `check-config` prints a note for each on stderr (exit 0, the settings
/// on stdout), `manager` logs it once at start; a configuration file is
/// refused by name on every command.
#[test]
fn kube_vip_settings_honoured_differently_are_noted_and_config_files_refused() {
    let check = |env: &[(&str, &str)], args: &[&str]| {
        let mut all = BRIEF.to_vec();
        all.extend_from_slice(env);
        let args: Vec<&str> = ["check-config", "--nodeName", "n1"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        vip(&all, &args)
    };
    // (environment, flags, the note)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case<'_>] = &[
        (
            &[("vip_skipdad", "true")],
            &[],
            "vip: note: vip_skipdad=\"true\": vip always adds IPv6 VIPs without duplicate address detection",
        ),
        (
            &[("vip_loseleadership", "true")],
            &[],
            "vip: note: vip_loseleadership=\"true\": vip always gives up leadership when the VIP's interface loses its carrier",
        ),
        (
            &[],
            &["--loseLeadership"],
            "vip: note: vip_loseleadership=\"true\"",
        ),
        (
            &[],
            &["--loseLeadershiptTimeoutSeconds=30"],
            "vip: note: vip_loseleadership_timeout_seconds=\"30\": not used",
        ),
        (
            &[("dns_mode", "first")],
            &[],
            "vip: note: dns_mode=\"first\": not used",
        ),
        (
            &[("vip_leaderelection", "false")],
            &[],
            "vip: note: vip_leaderelection=\"false\": vip always elects",
        ),
    ];
    for (env, args, text) in cases {
        let o = check(env, args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{env:?} {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one note: {err:?}");
        assert!(err.starts_with(text), "{err:?} lacks {text:?}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("address=192.168.20.140/32"));
    }
    // A boolean must still parse, as kube-vip's strconv.ParseBool.
    let o = check(&[("vip_skipdad", "yes")], &[]);
    refused_in_one_line(&o, "vip_skipdad=yes", "vip: invalid vip_skipdad=\"yes\"");
    // Nothing set, nothing noted.
    assert!(stderr(&check(&[], &[])).is_empty());

    for sub in ["manager", "check-config", "preflight", "status"] {
        let mut env = BRIEF.to_vec();
        env.push(("config_file", "/etc/x"));
        refused_in_one_line(
            &vip(&env, &[sub]),
            sub,
            "vip: unsupported config_file=\"/etc/x\": a configuration file (vip reads only its environment and flags",
        );
        refused_in_one_line(
            &vip(BRIEF, &[sub, "--config-file", "/etc/x"]),
            sub,
            "vip: unsupported --config-file=\"/etc/x\"",
        );
    }

    // The manager logs each note once at start (then stops at the
    // missing kubeconfig, before any network change).
    let mut env = BRIEF.to_vec();
    env.push(("vip_skipdad", "true"));
    env.push(("vip_logformat", "json"));
    env.push(("prometheus_server", ""));
    env.push(("k8s_config_file", "/nonexistent/vip-kubeconfig"));
    let o = vip(&env, &["manager", "--nodeName", "n1"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let noted: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON log line"))
        .filter(|l| l["key"] == "vip_skipdad")
        .collect();
    assert_eq!(noted.len(), 1, "{err}");
    assert!(
        noted[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("kube-vip setting honoured differently: vip always adds IPv6 VIPs"),
        "{err}"
    );
}
