//! `vip manifest pod --from FILE`: a kube-vip static pod (the shapes
//! `kube-vip manifest pod` writes, v0.8 to v1.2) converted for `vip`.
//!
//! The pod's environment block, arguments, mounts, volumes, host aliases
//! and everything else are kept; the settings are checked exactly as
//! `vip manager` will read them (a refused mode is an error naming the
//! key). What changes is said in a YAML comment, one line each:
//!
//! - the image (to `vip`'s) and `imagePullPolicy: IfNotPresent`;
//! - what `vip manifest pod` adds: the `/healthz` liveness probe, the
//!   `app.kubernetes.io` labels, small resource requests,
//!   `system-node-critical`, capabilities NET_ADMIN and NET_RAW only
//!   (others dropped, `drop: [ALL]`), host network;
//! - kube-vip v0.8's `vip_cidr`, renamed `vip_subnet` (or dropped when
//!   `vip_subnet` is also set); the timeout kube-vip v1.2's generator
//!   writes as a second `vip_loseleadership`, renamed; other duplicates
//!   keep their last value;
//! - the lease timings, written out when the pod relied on kube-vip
//!   v1.1+'s defaults (15/10/2 s), which differ from `vip`'s (5/3/1 s);
//! - every kube-vip setting `vip` honours differently, with how and why.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::ArgMatches;
use clap::parser::ValueSource;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

use super::pod::env as env_var;
use super::{
    ContainerOptions, checked_name, container, default_image, image_version, labels,
    print_or_refuse, yaml_of,
};
use crate::config::{KEYS, NOTED, REFUSED_FLAGS, Settings, Sources};

/// The node name the settings are checked with: the pod takes its real
/// one from the downward API.
const PLACEHOLDER_NODE: &str = "node";

/// The host kubeconfig kubeadm's first node uses while `admin.conf` is
/// not yet authorised (kube-vip's documented workaround mounts it at
/// `/etc/kubernetes/admin.conf`).
const SUPER_ADMIN_HOST: &str = "/etc/kubernetes/super-admin.conf";

/// A manifest that cannot be converted: exit code 2, one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {what}")]
pub struct FromError {
    /// The file given to `--from`.
    pub file: String,
    /// What is wrong with it.
    pub what: String,
}

/// What the conversion takes besides the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromOptions {
    /// `vip`'s image.
    pub image: String,
    /// A new pod name (`--name`); `None` keeps the manifest's.
    pub name: Option<String>,
    /// Add the `/healthz` liveness probe.
    pub liveness_probe: bool,
}

/// `vip manifest pod --from FILE`: print the converted pod and exit 0, or
/// one line and exit 2. `None` when `--from` is not given.
pub fn run_from(matches: &ArgMatches) -> Option<ExitCode> {
    let ("pod", m) = matches.subcommand()? else {
        return None;
    };
    let file = m.get_one::<String>("from")?;
    let out = from_options(m).and_then(|o| {
        let text =
            std::fs::read_to_string(file).map_err(|e| format!("{file}: cannot read it ({e})"))?;
        convert(file, &text, &o).map_err(|e| e.to_string())
    });
    Some(print_or_refuse(out))
}

/// The options `--from` takes (`--image`, `--name`, `--no-liveness-probe`);
/// the settings come from the file, so a settings flag, a stray argument
/// or an option of the generated pod is refused.
fn from_options(m: &ArgMatches) -> Result<FromOptions, String> {
    let on_command_line = |id: &str| {
        m.try_get_raw(id).is_ok_and(|v| v.is_some())
            && m.value_source(id) == Some(ValueSource::CommandLine)
    };
    // (clap id, how to name it)
    let settings = KEYS
        .iter()
        .map(|k| (k.env, format!("the setting {}", k.env)))
        .chain(
            NOTED
                .iter()
                .filter(|n| n.flag.is_some())
                .map(|n| (n.env, format!("the setting {}", n.env))),
        )
        .chain(
            REFUSED_FLAGS
                .iter()
                .map(|r| (r.flag.trim_start_matches('-'), r.flag.to_string())),
        );
    let pod_options = [
        "distribution",
        "kubeadm-super-admin",
        "leader-election",
        "inCluster",
    ]
    .map(|id| (id, format!("--{id}")));
    if let Some((_, what)) = settings
        .chain(pod_options)
        .find(|(id, _)| on_command_line(id))
    {
        return Err(format!(
            "invalid --from with {what} on the command line: the settings and the mounts come from the file (edit it, or the result); --from takes only --image, --name and --no-liveness-probe"
        ));
    }
    if let Ok(Some(mut stray)) = m.try_get_many::<String>(crate::STRAY) {
        return Err(format!(
            "invalid argument={:?}: expected flags only",
            stray.next().cloned().unwrap_or_default()
        ));
    }
    let image = m
        .get_one::<String>("image")
        .cloned()
        .unwrap_or_else(default_image);
    image_version(&image).map_err(|e| e.to_string())?;
    let name = if on_command_line("name") {
        Some(checked_name(m).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok(FromOptions {
        image,
        name,
        liveness_probe: !m.get_flag("no-liveness-probe"),
    })
}

/// The converted pod, with the comment lines (each starting `# `) saying
/// what changed.
pub fn convert(file: &str, text: &str, o: &FromOptions) -> Result<String, FromError> {
    let fail = |what: String| FromError {
        file: file.to_string(),
        what,
    };
    let value: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| fail(format!("not YAML ({})", first_line(&e.to_string()))))?;
    let kind = value.get("kind").and_then(|k| k.as_str());
    let api = value.get("apiVersion").and_then(|k| k.as_str());
    if (api, kind) != (Some("v1"), Some("Pod")) {
        return Err(fail(format!(
            "not a Pod (apiVersion {}, kind {}): expected kube-vip's static pod, as `kube-vip manifest pod` writes it",
            api.unwrap_or("missing"),
            kind.unwrap_or("missing")
        )));
    }
    let mut pod: Pod = serde_json::from_value(value)
        .map_err(|e| fail(format!("not a valid Pod ({})", first_line(&e.to_string()))))?;
    let mut notes = Vec::new();
    let spec = pod
        .spec
        .as_mut()
        .ok_or_else(|| fail("a Pod without spec".into()))?;
    let found: Vec<usize> = (0..spec.containers.len())
        .filter(|i| is_kube_vip_image(spec.containers[*i].image.as_deref().unwrap_or("")))
        .collect();
    let i = match found[..] {
        [i] => i,
        [] => {
            return Err(fail(
                "no kube-vip container (no container's image is .../kube-vip[:tag])".into(),
            ));
        }
        _ => return Err(fail(format!("{} kube-vip containers", found.len()))),
    };
    let old = spec.containers[i].clone();
    let old_image = old.image.clone().unwrap_or_default();
    let (settings, env) = settings(&old, &old_image, &mut notes).map_err(fail)?;

    let vip = container(
        &settings,
        &ContainerOptions {
            name: &old.name,
            image: &o.image,
            args: Vec::new(),
            liveness_probe: o.liveness_probe,
            k8s_config_file: false,
            mounts: None,
        },
    );
    notes.push(format!("changed: image {old_image} -> {}", o.image));
    if old.image_pull_policy.as_deref() != Some("IfNotPresent") {
        notes.push(format!(
            "changed: imagePullPolicy {} -> IfNotPresent",
            old.image_pull_policy.as_deref().unwrap_or("(unset)")
        ));
    }
    security_notes(&old, &mut notes);
    if let Some(p) = vip
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
    {
        notes.push(format!(
            "added: livenessProbe GET http://{}:{}/healthz (vip serves it on prometheus_server)",
            p.host.as_deref().unwrap_or_default(),
            match &p.port {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
            }
        ));
    }
    let resources = match &old.resources {
        Some(r) if *r != Default::default() => Some(r.clone()),
        _ => {
            notes.push("added: resources.requests cpu 10m, memory 16Mi".into());
            vip.resources.clone()
        }
    };
    spec.containers[i] = Container {
        image: vip.image,
        image_pull_policy: vip.image_pull_policy,
        env: Some(env),
        security_context: vip.security_context,
        liveness_probe: vip.liveness_probe.or_else(|| old.liveness_probe.clone()),
        resources,
        ..old
    };
    if spec.host_network != Some(true) {
        notes.push("changed: hostNetwork true (the VIP lives on the node's interface)".into());
        spec.host_network = Some(true);
    }
    if spec.priority_class_name.is_none() {
        notes.push("added: priorityClassName system-node-critical".into());
        spec.priority_class_name = Some("system-node-critical".into());
    }
    if let Some(v) = spec.volumes.iter().flatten().find(|v| {
        v.host_path
            .as_ref()
            .is_some_and(|h| h.path == SUPER_ADMIN_HOST)
    }) {
        notes.push(format!(
            "kept: volume {} mounts {SUPER_ADMIN_HOST}, kubeadm's first-node workaround: once `kubeadm init` is done, switch it to /etc/kubernetes/admin.conf (or use `vip manifest pod --kubeadm-super-admin`, which mounts both and falls back by itself)",
            v.name
        ));
    }

    let name = o
        .name
        .clone()
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_else(|| super::DEFAULT_NAME.into());
    if pod.metadata.name.as_deref() != Some(name.as_str()) {
        notes.push(format!(
            "changed: metadata.name {} -> {name}",
            pod.metadata.name.as_deref().unwrap_or("(unset)")
        ));
        pod.metadata.name = Some(name.clone());
    }
    let version = image_version(&o.image).unwrap_or_else(|_| env!("CARGO_PKG_VERSION").into());
    let mut all = pod.metadata.labels.take().unwrap_or_default();
    let mut added = Vec::new();
    for (k, v) in labels(&name, Some(&version)) {
        if all.get(&k) != Some(&v) {
            added.push(format!("{k}={v}"));
            all.insert(k, v);
        }
    }
    if !added.is_empty() {
        notes.push(format!("added: labels {}", added.join(", ")));
    }
    pod.metadata.labels = Some(all);
    pod.metadata.creation_timestamp = None;
    pod.status = None;

    let mut out =
        format!("# vip manifest pod --from {file}: kube-vip's static pod converted for vip.\n");
    for n in notes {
        out.push_str(&format!("# {n}\n"));
    }
    out.push_str(
        "# Everything else (env, args, mounts, volumes, hostAliases) is kept as it was.\n",
    );
    out.push_str(&yaml_of(&pod));
    Ok(out)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// An image of kube-vip: `[registry/]…/kube-vip[:tag][@digest]`.
fn is_kube_vip_image(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or_default();
    let last = name.rsplit('/').next().unwrap_or_default();
    last.split(':').next() == Some("kube-vip")
}

/// kube-vip's `(major, minor)` from an image tag such as `v1.2.3`.
fn kube_vip_version(image: &str) -> Option<(u32, u32)> {
    let name = image.split('@').next()?;
    let tag = name.rsplit('/').next()?.split_once(':')?.1;
    let mut parts = tag.strip_prefix('v').unwrap_or(tag).split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

const TIMINGS: [&str; 3] = ["vip_leaseduration", "vip_renewdeadline", "vip_retryperiod"];

/// The container's settings, checked as `vip manager` will read them, and
/// its environment block as the converted pod gets it.
fn settings(
    c: &Container,
    image: &str,
    notes: &mut Vec<String>,
) -> Result<(Settings, Vec<EnvVar>), String> {
    if let Some(cmd) = &c.command {
        return Err(format!(
            "the kube-vip container sets command {cmd:?}; expected kube-vip's args: [manager]"
        ));
    }
    let args = c.args.clone().unwrap_or_default();
    if args.first().map(String::as_str) != Some("manager") {
        return Err(format!(
            "the kube-vip container runs {args:?}, not kube-vip's `manager`"
        ));
    }
    let flags = flags(&args[1..])?;
    let mut env: Vec<EnvVar> = c.env.clone().unwrap_or_default();
    dedupe(&mut env, notes);
    // kube-vip v0.8's `vip_cidr` (its generator always wrote "32") was the
    // VIP's prefix length: vip reads it as `vip_subnet`.
    if let Some(at) = env.iter().position(|e| e.name == "vip_cidr") {
        let cidr = env[at].value.clone().unwrap_or_default();
        if env.iter().any(|e| e.name == "vip_subnet") {
            env.remove(at);
            notes.push(format!(
                "dropped: vip_cidr={cidr:?} (kube-vip v0.8's name; vip_subnet is also set and wins)"
            ));
        } else {
            env[at].name = "vip_subnet".into();
            notes.push(format!(
                "changed: vip_cidr={cidr:?} -> vip_subnet={cidr:?} (kube-vip v0.8's name for the VIP's prefix length)"
            ));
        }
    }
    let given = |env: &[EnvVar], k: &str| env.iter().any(|e| e.name == k) || flags.contains_key(k);
    let elects = given(&env, "vip_leaderelection");
    if !TIMINGS.iter().any(|k| given(&env, k)) && elects {
        match kube_vip_version(image) {
            Some(v) if v >= (1, 1) => {
                for (k, s) in TIMINGS.iter().zip(["15", "10", "2"]) {
                    env.push(env_var(k, s));
                }
                notes.push(
                    "added: vip_leaseduration=15, vip_renewdeadline=10, vip_retryperiod=2: kube-vip v1.1+'s defaults, which this pod ran with (vip's own are 5/3/1)"
                        .into(),
                );
            }
            Some(_) => {}
            None => notes.push(format!(
                "unchanged: no lease timings set, so vip uses its defaults 5/3/1 s; kube-vip v1.1+ (tag of {image} unknown) used 15/10/2: set them if other nodes still run it"
            )),
        }
    }
    if !elects {
        notes.push(
            "unchanged: vip_leaderelection is not set: kube-vip then ran without an election (the VIP on every node); vip always elects"
                .into(),
        );
    }
    kubeconfig_note(c, &env, notes);
    let sources = Sources {
        flags,
        env: env
            .iter()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect(),
    };
    let settings = Settings::from_sources(&sources, PLACEHOLDER_NODE).map_err(|e| e.to_string())?;
    for n in &settings.notes {
        notes.push(format!("honoured differently: {n}"));
    }
    Ok((settings, env))
}

/// kube-vip v1.2's generator writes `--loseLeadership`'s timeout as a
/// second `vip_loseleadership` (a number, which kube-vip itself then fails
/// to parse as a boolean): that one becomes
/// `vip_loseleadership_timeout_seconds`. Any other name set twice keeps its
/// last value, as the container runtime does.
fn dedupe(env: &mut Vec<EnvVar>, notes: &mut Vec<String>) {
    const LOSE: &str = "vip_loseleadership";
    let loses: Vec<usize> = (0..env.len()).filter(|i| env[*i].name == LOSE).collect();
    if let [_, second] = loses[..]
        && let Some(v) = env[second].value.clone()
        && v.parse::<u32>().is_ok()
    {
        env[second].name = "vip_loseleadership_timeout_seconds".into();
        notes.push(format!(
            "changed: the second vip_loseleadership={v:?} -> vip_loseleadership_timeout_seconds={v:?} (kube-vip's generator writes the timeout under the wrong name)"
        ));
    }
    let mut i = 0;
    while i < env.len() {
        if env[i + 1..].iter().any(|e| e.name == env[i].name) {
            let gone = env.remove(i);
            notes.push(format!(
                "dropped: {}={:?}, set again further down (the last one wins, as in the container)",
                gone.name,
                gone.value.unwrap_or_default()
            ));
        } else {
            i += 1;
        }
    }
}

/// A note when `k8s_config_file` names a path no volume mount of the
/// container provides: vip reads it inside the container.
fn kubeconfig_note(c: &Container, env: &[EnvVar], notes: &mut Vec<String>) {
    let Some(path) = env
        .iter()
        .rev()
        .find(|e| e.name == "k8s_config_file")
        .and_then(|e| e.value.as_deref())
        .filter(|p| !p.is_empty())
    else {
        return;
    };
    let mounted = c.volume_mounts.iter().flatten().any(|m| {
        let dir = m.mount_path.trim_end_matches('/');
        path == m.mount_path || path.starts_with(&format!("{dir}/"))
    });
    if !mounted {
        notes.push(format!(
            "check: k8s_config_file={path:?} is not under any volumeMount of this container, and vip reads it inside the container: mount it there, or remove the setting (vip then finds the kubeconfig mounted at /etc/kubernetes/admin.conf)"
        ));
    }
}

/// kube-vip's flags after `manager`, parsed and refused exactly as
/// `vip manager` parses them, by environment name.
fn flags(args: &[String]) -> Result<BTreeMap<&'static str, String>, String> {
    let argv = ["vip", "manager"]
        .into_iter()
        .map(String::from)
        .chain(args.iter().cloned());
    let m = crate::cli()
        .try_get_matches_from(argv)
        .map_err(|e| format!("args: {}", first_line(&e.to_string())))?;
    let m = m
        .subcommand_matches("manager")
        .ok_or("args: not the manager command")?;
    crate::refused_flags(m).map_err(|e| format!("args: {e}"))?;
    Ok(crate::flag_values(m))
}

/// Notes for the capabilities and privileges `vip`'s security context
/// changes: only NET_ADMIN and NET_RAW, everything else dropped.
fn security_notes(old: &Container, notes: &mut Vec<String>) {
    let sc = old.security_context.clone().unwrap_or_default();
    let caps = sc.capabilities.clone().unwrap_or_default();
    let add = caps.add.unwrap_or_default();
    let extra: Vec<&str> = add
        .iter()
        .map(String::as_str)
        .filter(|c| !matches!(*c, "NET_ADMIN" | "NET_RAW"))
        .collect();
    if !extra.is_empty() {
        notes.push(format!(
            "dropped: capabilities {} (vip needs NET_ADMIN and NET_RAW only)",
            extra.join(", ")
        ));
    }
    for need in ["NET_ADMIN", "NET_RAW"] {
        if !add.iter().any(|c| c == need) {
            notes.push(format!("added: capability {need}"));
        }
    }
    if caps.drop.unwrap_or_default() != ["ALL"] {
        notes.push("added: capabilities.drop [ALL]".into());
    }
    if sc.privileged == Some(true) {
        notes.push("dropped: privileged (vip needs NET_ADMIN and NET_RAW only)".into());
    }
    let rest = k8s_openapi::api::core::v1::SecurityContext {
        capabilities: None,
        privileged: None,
        ..sc
    };
    if rest != Default::default() {
        notes.push(
            "dropped: securityContext fields besides capabilities (vip's is NET_ADMIN and NET_RAW, nothing else)"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests;
