//! kube-vip's settings that `vip` accepts but honours differently: each
//! set one gives a [`Note`], logged once at start by `vip manager`,
//! printed by `vip check-config` and as a comment by `vip manifest`.
//!
//! Every kube-vip setting is in exactly one class: honoured ([`KEYS`]),
//! honoured differently ([`NOTED`]), or refused by name ([`UNSUPPORTED`],
//! [`REFUSED_FLAGS`]). The guard test below checks the classes against
//! `tests/fixtures/kube-vip-keys.txt`, the names read from kube-vip's
//! source.
//!
//! [`KEYS`]: super::KEYS
//! [`UNSUPPORTED`]: super::UNSUPPORTED
//! [`REFUSED_FLAGS`]: super::REFUSED_FLAGS

use super::{ConfigError, Sources, parse_bool};

/// A kube-vip setting `vip` accepts and honours differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Noted {
    /// kube-vip's environment variable.
    pub env: &'static str,
    /// kube-vip's flag, without `--`, when it has one.
    pub flag: Option<&'static str>,
    /// A boolean (checked with Go's `strconv.ParseBool`, as kube-vip does;
    /// as a flag, a cobra bool flag).
    pub boolean: bool,
    /// How `vip` treats it, and why.
    pub note: &'static str,
}

const fn noted(
    env: &'static str,
    flag: Option<&'static str>,
    boolean: bool,
    note: &'static str,
) -> Noted {
    Noted {
        env,
        flag,
        boolean,
        note,
    }
}

const CP_HEALTH: &str = "not used: kube-vip polls this URL only in BGP mode without leader election; vip follows the local API server's /readyz itself (vip_healthcheck)";

/// kube-vip's settings `vip` accepts and honours differently, with how and
/// why.
pub const NOTED: &[Noted] = &[
    noted(
        "vip_skipdad",
        None,
        true,
        "vip always adds IPv6 VIPs without duplicate address detection (IFA_F_NODAD), whatever the value: the Lease, not DAD, keeps the VIP on one node, and a VIP held back by DAD would be a gap in service (IPv4 has no DAD)",
    ),
    noted(
        "vip_loseleadership",
        Some("loseLeadership"),
        true,
        "vip always gives up leadership when the VIP's interface loses its carrier, whatever the value: at once with fast failover (the VIP withdrawn, followers take over on the missing heartbeats), else after the renew deadline",
    ),
    noted(
        "vip_loseleadership_timeout_seconds",
        Some("loseLeadershiptTimeoutSeconds"),
        false,
        "not used: vip's grace after a carrier loss is the renew deadline (vip_renewdeadline), or none with fast failover",
    ),
    noted(
        "vip_allow_interface_not_up",
        Some("allowInterfaceNotUp"),
        true,
        "vip always starts with the interface down, whatever the value, and stands for election only while its carrier is up",
    ),
    noted(
        "dns_mode",
        Some("dnsMode"),
        false,
        "not used: it says how kube-vip resolves a DNS name in address; vip takes IP addresses only (a name is refused)",
    ),
    noted(
        "instance_name",
        Some("instanceName"),
        false,
        "not used: it names kube-vip's host-global nftables egress tables; vip creates none",
    ),
    noted(
        "INSTANCE_NAME",
        None,
        false,
        "not used: it names kube-vip's host-global nftables egress tables; vip creates none",
    ),
    noted(
        "debounce_time",
        Some("debounceTime"),
        false,
        "not used: it debounces kube-vip's Service watch events; vip watches no Services",
    ),
    noted(
        "vip_singlenode",
        None,
        true,
        "not used: kube-vip v1.x reads it but its control-plane mode does not act on it; vip always elects",
    ),
    noted(
        "vip_startleader",
        None,
        true,
        "not used: kube-vip v1.x reads it but its control-plane mode does not act on it; vip always elects",
    ),
    noted(
        "control_plane_health_check_address",
        Some("controlPlaneHealthCheckAddress"),
        false,
        CP_HEALTH,
    ),
    noted(
        "control_plane_health_check_period_seconds",
        Some("controlPlaneHealthCheckPeriodSeconds"),
        false,
        CP_HEALTH,
    ),
    noted(
        "control_plane_health_check_timeout_seconds",
        Some("controlPlaneHealthCheckTimeoutSeconds"),
        false,
        CP_HEALTH,
    ),
    noted(
        "control_plane_health_check_failure_threshold",
        Some("controlPlaneHealthCheckFailureThreshold"),
        false,
        CP_HEALTH,
    ),
    noted(
        "control_plane_health_check_ca_path",
        Some("controlPlaneHealthCheckCAPath"),
        false,
        CP_HEALTH,
    ),
];

/// `vip_leaderelection=false`: kube-vip then runs without an election
/// (every node adds the VIP); `vip` never does.
pub const NO_ELECTION_NOTE: &str = "vip always elects (the VIP on one node only): without an election kube-vip adds the VIP on every node that runs it";

/// One kube-vip setting given and honoured differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The setting (kube-vip's environment variable).
    pub key: &'static str,
    /// Its value.
    pub value: String,
    /// How `vip` treats it, and why.
    pub note: &'static str,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={:?}: {}", self.key, self.value, self.note)
    }
}

/// The notes for the [`NOTED`] settings that are set (a boolean must
/// parse, as in kube-vip), and for `vip_leaderelection=false`.
pub(super) fn notes(sources: &Sources) -> Result<Vec<Note>, ConfigError> {
    let mut out = Vec::new();
    for n in NOTED {
        let Some(v) = sources.get(n.env) else {
            continue;
        };
        if n.boolean {
            parse_bool(n.env, v)?;
        }
        out.push(Note {
            key: n.env,
            value: v.to_string(),
            note: n.note,
        });
    }
    if let Some(v) = sources.get("vip_leaderelection")
        && !parse_bool("vip_leaderelection", v)?
    {
        out.push(Note {
            key: "vip_leaderelection",
            value: v.to_string(),
            note: NO_ELECTION_NOTE,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The guard: every name of `tests/fixtures/kube-vip-keys.txt` is
    //! classified, and every classified kube-vip name is in it.
    //!
    //! To refresh the list for a newer kube-vip `vX.Y.Z`, read at that tag:
    //! `pkg/kubevip/config_envvar.go` (the constants: every environment
    //! variable), `pkg/kubevip/config_environment.go` (`ParseEnvironment`:
    //! names read besides the constants, such as the upper-case
    //! `INSTANCE_NAME`), `cmd/kube-vip.go` (every `kubeVipCmd` flag, and
    //! `os.Getenv` calls such as `vip_configmap`). Add each new name as a
    //! line `env NAME vX.Y.Z FILE` or `flag NAME vX.Y.Z FILE` (keep the
    //! older names: manifests of older kube-vips still carry them), run
    //! this test, and classify what it names: honoured (`KEYS`), honoured
    //! differently (`NOTED`, with a note), or refused (`UNSUPPORTED`,
    //! `REFUSED_FLAGS`); then `UPDATE_GOLDEN=1 cargo test -p vip-bin
    //! the_configuration_doc` regenerates the tables of
    //! `docs/configuration.md`.

    use std::collections::BTreeSet;

    use super::super::keys::VIP_OWN;
    use super::super::{KEYS, REFUSED_FLAGS, UNSUPPORTED};
    use super::*;

    const FIXTURE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kube-vip-keys.txt"
    ));

    /// `(env names, flag names)` of the fixture; a malformed line fails.
    fn listed() -> (BTreeSet<&'static str>, BTreeSet<&'static str>) {
        let (mut env, mut flags) = (BTreeSet::new(), BTreeSet::new());
        for line in FIXTURE.lines() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(
                f.len() == 4 && f[2].starts_with('v') && f[3].ends_with(".go"),
                "kube-vip-keys.txt: expected `env|flag NAME VERSION FILE`, got {line:?}"
            );
            let fresh = match f[0] {
                "env" => env.insert(f[1]),
                "flag" => flags.insert(f[1]),
                other => panic!("kube-vip-keys.txt: unknown kind {other:?} in {line:?}"),
            };
            assert!(fresh, "kube-vip-keys.txt lists {line:?} twice");
        }
        (env, flags)
    }

    /// The classes of an environment variable: honoured, noted, refused.
    fn env_classes(name: &str) -> Vec<&'static str> {
        let mut c = Vec::new();
        if KEYS.iter().any(|k| k.env == name) && !VIP_OWN.contains(&name) {
            c.push("honoured (KEYS)");
        }
        if NOTED.iter().any(|n| n.env == name) {
            c.push("honoured differently (NOTED)");
        }
        if UNSUPPORTED.iter().any(|(k, _)| *k == name) {
            c.push("refused (UNSUPPORTED)");
        }
        c
    }

    /// The classes of a flag (no dashes).
    fn flag_classes(name: &str) -> Vec<&'static str> {
        let mut c = Vec::new();
        if KEYS.iter().any(|k| k.kube_vip_flag == Some(name)) {
            c.push("honoured (KEYS' kube_vip_flag)");
        }
        if NOTED.iter().any(|n| n.flag == Some(name)) {
            c.push("honoured differently (NOTED)");
        }
        if REFUSED_FLAGS
            .iter()
            .any(|r| r.flag.trim_start_matches('-') == name)
        {
            c.push("refused (REFUSED_FLAGS)");
        }
        c
    }

    #[test]
    fn every_kube_vip_setting_is_classified_once() {
        let (env, flags) = listed();
        assert!(env.len() > 90 && flags.len() > 80, "a truncated list");
        let mut wrong = Vec::new();
        for name in &env {
            let c = env_classes(name);
            if c.len() != 1 {
                wrong.push(format!("env {name}: {c:?}"));
            }
        }
        for name in &flags {
            let c = flag_classes(name);
            if c.len() != 1 {
                wrong.push(format!("flag --{name}: {c:?}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "kube-vip settings classified not exactly once (none: classify it; two: pick one):\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn every_classified_kube_vip_name_is_in_kube_vips_list() {
        let (env, flags) = listed();
        let mut stray = Vec::new();
        for k in KEYS {
            let listed = env.contains(k.env);
            if listed == VIP_OWN.contains(&k.env) {
                stray.push(format!(
                    "KEYS {}: {} (VIP_OWN lists vip's own settings, the rest must be kube-vip's)",
                    k.env,
                    if listed {
                        "kube-vip's, yet in VIP_OWN"
                    } else {
                        "not kube-vip's, and not in VIP_OWN"
                    }
                ));
            }
            if let Some(f) = k.kube_vip_flag
                && !flags.contains(f)
            {
                stray.push(format!("KEYS {}: kube_vip_flag --{f}", k.env));
            }
        }
        for n in NOTED {
            if !env.contains(n.env) {
                stray.push(format!("NOTED {}", n.env));
            }
            if let Some(f) = n.flag
                && !flags.contains(f)
            {
                stray.push(format!("NOTED {}: flag --{f}", n.env));
            }
        }
        for (k, _) in UNSUPPORTED {
            if !env.contains(k) {
                stray.push(format!("UNSUPPORTED {k}"));
            }
        }
        for r in REFUSED_FLAGS {
            if !flags.contains(r.flag.trim_start_matches('-')) {
                stray.push(format!("REFUSED_FLAGS {}", r.flag));
            }
        }
        for v in VIP_OWN {
            if !KEYS.iter().any(|k| k.env == *v) {
                stray.push(format!("VIP_OWN {v}: not in KEYS"));
            }
        }
        assert!(
            stray.is_empty(),
            "classified as kube-vip's, but not in tests/fixtures/kube-vip-keys.txt (a typo, or a name kube-vip never had):\n{}",
            stray.join("\n")
        );
    }

    fn sources(pairs: &[(&str, &str)]) -> Sources {
        Sources::env_only(pairs)
    }

    #[test]
    fn each_noted_setting_gives_its_note_and_a_bad_boolean_is_refused() {
        for n in NOTED {
            let v = if n.boolean { "true" } else { "x" };
            let got = notes(&sources(&[(n.env, v)])).unwrap();
            assert_eq!(
                got,
                [Note {
                    key: n.env,
                    value: v.into(),
                    note: n.note
                }]
            );
            assert!(!got[0].to_string().contains('\n'), "one line");
            if n.boolean {
                let e = notes(&sources(&[(n.env, "maybe")])).unwrap_err();
                assert!(e.to_string().starts_with(&format!("invalid {}=", n.env)));
            }
            // Unset or empty: no note.
            assert!(notes(&sources(&[(n.env, "")])).unwrap().is_empty());
        }
        let off = notes(&sources(&[("vip_leaderelection", "false")])).unwrap();
        assert_eq!(off[0].note, NO_ELECTION_NOTE);
        assert!(
            notes(&sources(&[("vip_leaderelection", "true")]))
                .unwrap()
                .is_empty()
        );
    }
}
