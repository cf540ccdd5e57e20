//! The `vip` command line: exit codes and messages of `manager`,
//! `check-config`, `preflight` and `status` on bad input, before anything
//! touches the host.

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
