use k8s_openapi::api::core::v1::{Pod, SecurityContext};

use super::*;
use crate::config::LeaderElection;

fn opts() -> FromOptions {
    FromOptions {
        image: "localhost/vip:9.9.9".into(),
        name: None,
        liveness_probe: true,
    }
}

fn shape(name: &str) -> String {
    let path = format!("{}/tests/golden/from/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const SHAPES: [&str; 3] = [
    "kube-vip-v0.8-kubeadm.yaml",
    "kube-vip-v1.0-kubeadm-super-admin.yaml",
    "kube-vip-v1.2-k3s.yaml",
];

/// The v1.2 shape with `from` replaced by `to` (the edit must apply).
fn edited(from: &str, to: &str) -> String {
    let s = shape("kube-vip-v1.2-k3s.yaml");
    assert!(s.contains(from), "{from:?} not in the v1.2 shape");
    s.replacen(from, to, 1)
}

/// `(comment lines, pod)` of a conversion.
fn converted(text: &str) -> (Vec<String>, Pod) {
    let out = convert("in.yaml", text, &opts()).unwrap();
    let comments = out
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(String::from)
        .collect();
    (comments, serde_saphyr::from_str(&out).unwrap())
}

/// The settings `vip manager` reads from a pod's container, as the
/// kubelet would start it.
fn settings_of(pod: &Pod) -> Settings {
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let env: BTreeMap<String, String> = c
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    let src = Sources {
        flags: flags(&c.args.clone().unwrap()[1..]).unwrap(),
        env,
    };
    Settings::from_sources(&src, PLACEHOLDER_NODE).unwrap()
}

fn has(comments: &[String], text: &str) -> bool {
    comments.iter().any(|c| c.contains(text))
}

fn env_value(pod: &Pod, name: &str) -> Option<String> {
    pod.spec.as_ref().unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

/// Every shape converts into a pod `vip manager` accepts with the same
/// settings kube-vip ran with, vip's image, probe and security context,
/// and the mounts, volumes and host aliases untouched.
#[test]
fn each_shape_keeps_its_settings_and_mounts() {
    for name in SHAPES {
        let text = shape(name);
        let before: Pod = serde_saphyr::from_str(&text).unwrap();
        let (comments, after) = converted(&text);
        let s = settings_of(&after);
        assert_eq!(s.vips.addresses().len(), 1, "{name}");
        let (b, a) = (before.spec.unwrap(), after.spec.clone().unwrap());
        assert_eq!(a.volumes, b.volumes, "{name}");
        assert_eq!(a.host_aliases, b.host_aliases, "{name}");
        assert_eq!(a.host_network, Some(true));
        let (bc, ac) = (&b.containers[0], &a.containers[0]);
        assert_eq!(ac.volume_mounts, bc.volume_mounts, "{name}");
        assert_eq!(ac.args, bc.args, "{name}");
        assert_eq!(ac.image.as_deref(), Some("localhost/vip:9.9.9"));
        assert!(ac.liveness_probe.is_some(), "{name}");
        let caps = ac
            .security_context
            .as_ref()
            .unwrap()
            .capabilities
            .clone()
            .unwrap();
        assert_eq!(caps.add.unwrap(), ["NET_ADMIN", "NET_RAW"]);
        assert_eq!(caps.drop.unwrap(), ["ALL"]);
        assert!(has(&comments, "changed: image ghcr.io/kube-vip/kube-vip:v"));
        assert!(has(&comments, "honoured differently: dns_mode=\"first\""));
        // Every setting kube-vip had is still there, by name and value
        // (v0.8's vip_cidr under its new name).
        let mut loses = 0;
        for e in bc.env.iter().flatten() {
            loses += usize::from(e.name == "vip_loseleadership");
            let name_now = match (e.name.as_str(), loses) {
                ("vip_cidr", _) => "vip_subnet",
                ("vip_loseleadership", 2) => "vip_loseleadership_timeout_seconds",
                (n, _) => n,
            };
            let now = ac.env.iter().flatten().find(|x| x.name == name_now);
            assert_eq!(
                now.map(|x| (&x.value, &x.value_from)),
                Some((&e.value, &e.value_from)),
                "{name}: {}",
                e.name
            );
        }
    }
}

#[test]
fn v0_8s_vip_cidr_becomes_vip_subnet_or_is_dropped_when_both_are_set() {
    let (comments, pod) = converted(&shape("kube-vip-v0.8-kubeadm.yaml"));
    assert_eq!(env_value(&pod, "vip_subnet").as_deref(), Some("32"));
    assert_eq!(env_value(&pod, "vip_cidr"), None);
    assert!(has(
        &comments,
        "changed: vip_cidr=\"32\" -> vip_subnet=\"32\""
    ));
    assert!(has(&comments, "added: capabilities.drop [ALL]"));

    let both = shape("kube-vip-v0.8-kubeadm.yaml").replacen(
        "    - name: dns_mode\n",
        "    - name: vip_subnet\n      value: \"24\"\n    - name: dns_mode\n",
        1,
    );
    let (comments, pod) = converted(&both);
    assert_eq!(env_value(&pod, "vip_subnet").as_deref(), Some("24"));
    assert_eq!(env_value(&pod, "vip_cidr"), None);
    assert!(has(&comments, "dropped: vip_cidr=\"32\""));
    assert_eq!(settings_of(&pod).vips.addresses()[0].prefix(), 24);
}

/// A pod that relied on kube-vip v1.1+'s default timings gets them
/// written out (vip's own defaults differ); older kube-vips' equal vip's.
#[test]
fn kube_vip_v1_1_default_timings_are_written_out() {
    let without = edited(
        "    - name: vip_leaseduration\n      value: \"15\"\n    - name: vip_renewdeadline\n      value: \"10\"\n    - name: vip_retryperiod\n      value: \"2\"\n",
        "",
    );
    assert!(!without.contains("vip_leaseduration"));
    let (comments, pod) = converted(&without);
    let t = settings_of(&pod).timings;
    assert_eq!(
        (
            t.lease_duration().as_secs(),
            t.renew_deadline().as_secs(),
            t.retry_period().as_secs()
        ),
        (15, 10, 2)
    );
    assert!(has(&comments, "added: vip_leaseduration=15"));

    let old = without.replace("kube-vip:v1.2.3", "kube-vip:v1.0.3");
    let (comments, pod) = converted(&old);
    assert_eq!(env_value(&pod, "vip_leaseduration"), None);
    assert!(!has(&comments, "vip_leaseduration"));

    let unknown = without.replace("kube-vip:v1.2.3", "kube-vip:latest");
    let (comments, pod) = converted(&unknown);
    assert_eq!(env_value(&pod, "vip_leaseduration"), None);
    assert!(has(
        &comments,
        "tag of ghcr.io/kube-vip/kube-vip:latest unknown"
    ));

    // Without an election kube-vip put the VIP on every node: said.
    let no_election = edited(
        "    - name: vip_leaderelection\n      value: \"true\"\n",
        "",
    );
    let (comments, _) = converted(&no_election);
    assert!(has(&comments, "vip_leaderelection is not set"));
}

#[test]
fn extra_privileges_are_dropped_and_said() {
    let text = edited(
        "        - NET_RAW\n        drop:\n        - ALL\n",
        "        - NET_RAW\n        - SYS_TIME\n      privileged: true\n",
    );
    let (comments, pod) = converted(&text);
    assert!(has(&comments, "dropped: capabilities SYS_TIME"));
    assert!(has(&comments, "dropped: privileged"));
    let sc = pod.spec.unwrap().containers[0]
        .security_context
        .clone()
        .unwrap();
    assert_eq!(
        sc,
        SecurityContext {
            capabilities: sc.capabilities.clone(),
            ..Default::default()
        }
    );
}

/// kube-vip's etcd flags in args are kept and read as vip reads them.
#[test]
fn kube_vips_flags_in_args_are_kept_and_honoured() {
    let text = edited(
        "    - manager\n",
        "    - manager\n    - --leaderElectionType=etcd\n    - --etcdCACert=/pki/ca.crt\n    - --etcdCert=/pki/c.crt\n    - --etcdKey=/pki/c.key\n    - --etcdEndpoints=https://127.0.0.1:2379\n",
    );
    let (_, pod) = converted(&text);
    let s = settings_of(&pod);
    assert_eq!(s.leader_election, LeaderElection::Etcd);
    assert_eq!(
        pod.spec.unwrap().containers[0].args.as_ref().unwrap().len(),
        6
    );
}

/// Bad input: one line naming the file and what is wrong; a refused mode
/// names its key, never dropped silently.
#[test]
fn refusals_name_the_file_and_what_is_wrong() {
    let err = |text: &str| {
        let e = convert("in.yaml", text, &opts()).unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e:?}");
        assert!(e.starts_with("in.yaml: "), "{e}");
        e
    };
    let svc = edited(
        "    - name: cp_enable\n",
        "    - name: svc_enable\n      value: \"true\"\n    - name: cp_enable\n",
    );
    assert!(err(&svc).contains("unsupported svc_enable=\"true\""));
    let bgp = edited(
        "    - name: cp_enable\n",
        "    - name: bgp_enable\n      value: \"true\"\n    - name: cp_enable\n",
    );
    assert!(err(&bgp).contains("unsupported bgp_enable=\"true\": the BGP mode"));
    let flag = edited("    - manager\n", "    - manager\n    - --services\n");
    assert!(err(&flag).contains("unsupported --services=\"true\""));
    let unknown = edited("    - manager\n", "    - manager\n    - --frobnicate=1\n");
    assert!(err(&unknown).contains("args: "), "{}", err(&unknown));
    let not_manager = edited("    - manager\n", "    - service\n");
    assert!(err(&not_manager).contains("not kube-vip's `manager`"));
    let command = edited("  - args:\n", "  - command:\n    - /kube-vip\n    args:\n");
    assert!(err(&command).contains("sets command"));
    let bad_value = edited("value: \"15\"", "value: \"fifteen\"");
    assert!(err(&bad_value).contains("invalid vip_leaseduration=\"fifteen\""));
    assert!(err("a: [b\n").contains("not YAML"));
    assert!(err("apiVersion: apps/v1\nkind: DaemonSet\n").contains("not a Pod"));
    assert!(err("- 1\n").contains("not a Pod"));
    let nginx = edited("ghcr.io/kube-vip/kube-vip:v1.2.3", "nginx:1.27");
    assert!(err(&nginx).contains("no kube-vip container"));
    let two = edited(
        "  hostAliases:\n",
        "  - name: second\n    image: plndr/kube-vip:v0.8.9\n  hostAliases:\n",
    );
    assert!(err(&two).contains("2 kube-vip containers"));
}

#[test]
fn other_containers_and_labels_are_kept_and_the_name_may_change() {
    let text = edited(
        "  hostAliases:\n",
        "  - name: sidecar\n    image: busybox:1.36\n  hostAliases:\n",
    )
    .replacen(
        "  name: kube-vip\n  namespace",
        "  labels:\n    tier: control-plane\n  name: kube-vip\n  namespace",
        1,
    );
    let o = FromOptions {
        name: Some("vip".into()),
        ..opts()
    };
    let out = convert("in.yaml", &text, &o).unwrap();
    let pod: Pod = serde_saphyr::from_str(&out).unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.containers[1].image.as_deref(), Some("busybox:1.36"));
    let labels = pod.metadata.labels.unwrap();
    assert_eq!(labels["tier"], "control-plane");
    assert_eq!(labels["app.kubernetes.io/name"], "vip");
    assert_eq!(labels["app.kubernetes.io/version"], "9.9.9");
    assert_eq!(pod.metadata.name.as_deref(), Some("vip"));
    assert!(out.contains("# changed: metadata.name kube-vip -> vip\n"));
    assert!(pod.status.is_none());
}

#[test]
fn kube_vip_images_are_recognised_by_name() {
    for (image, yes) in [
        ("ghcr.io/kube-vip/kube-vip:v1.2.3", true),
        ("plndr/kube-vip:v0.3.1", true),
        ("kube-vip", true),
        ("registry:5000/mirror/kube-vip@sha256:abc", true),
        ("localhost/vip:0.1.0", false),
        ("ghcr.io/kube-vip/kube-vip-cloud-provider:v0.0.10", false),
    ] {
        assert_eq!(is_kube_vip_image(image), yes, "{image}");
    }
    assert_eq!(
        kube_vip_version("ghcr.io/kube-vip/kube-vip:v1.2.3"),
        Some((1, 2))
    );
    assert_eq!(kube_vip_version("registry:5000/kube-vip"), None);
    assert_eq!(kube_vip_version("kube-vip:0.8.9"), Some((0, 8)));
}

/// kube-vip v1.2's generator writes the timeout as a second
/// `vip_loseleadership`: renamed; another name set twice keeps its last
/// value, as the container does; an unmounted `k8s_config_file` is said.
#[test]
fn duplicates_and_an_unmounted_kubeconfig_are_handled_and_said() {
    let (comments, pod) = converted(&shape("kube-vip-v1.2-k3s.yaml"));
    assert_eq!(
        env_value(&pod, "vip_loseleadership").as_deref(),
        Some("true")
    );
    assert_eq!(
        env_value(&pod, "vip_loseleadership_timeout_seconds").as_deref(),
        Some("30")
    );
    assert!(has(
        &comments,
        "changed: the second vip_loseleadership=\"30\""
    ));

    let twice = edited(
        "    - name: address\n",
        "    - name: port\n      value: \"6444\"\n    - name: address\n",
    );
    let (comments, pod) = converted(&twice);
    assert_eq!(settings_of(&pod).port, 6444);
    let ports = pod.spec.as_ref().unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .filter(|e| e.name == "port")
        .count();
    assert_eq!(ports, 1);
    assert!(has(
        &comments,
        "dropped: port=\"6443\", set again further down"
    ));

    for (path, said) in [
        ("/etc/rancher/k3s/k3s.yaml", true),
        ("/etc/kubernetes/admin.conf", false),
    ] {
        let text = edited(
            "    - name: address\n",
            &format!("    - name: k8s_config_file\n      value: {path}\n    - name: address\n"),
        );
        let (comments, _) = converted(&text);
        assert_eq!(
            has(&comments, "is not under any volumeMount"),
            said,
            "{path}"
        );
    }
}
