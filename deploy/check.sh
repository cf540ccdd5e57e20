#!/usr/bin/env bash
# deploy/check.sh: the deployment checks, run by CI (.ci/run) as root on a
# fresh Debian 12 machine with Python 3.11, and by hand the same way.
#
# 1. Installs the pinned Python tools of deploy/requirements.txt
#    (ansible-core, ansible-lint, yamllint, kubernetes-validate) into a
#    virtualenv (VIP_DEPLOY_VENV, default /tmp/vip-deploy-venv; reused while
#    requirements.txt is unchanged).
# 2. Builds `vip` and renders `vip manifest pod` for k3s, kubeadm (also the
#    super-admin variant), rke2 and with etcd election (k3s, kubeadm),
#    `vip manifest pod --from` for the kube-vip manifests of
#    vip-bin/tests/golden/from/ (v0.8, v1.0 and v1.2 shapes),
#    `vip manifest rbac` and `vip manifest daemonset` (three variants,
#    one with etcd election); validates them strictly with
#    kubernetes-validate against Kubernetes 1.29, 1.33 and 1.37, after
#    proving the validator rejects a broken pod.
# 3. Runs the Ansible role with a local connection into a temporary
#    directory: the first run changes, the second reports changed=0, check
#    mode reports changed=0; the rendered manifest is validated and is the
#    same pod as `vip manifest pod` for the same settings (seven sets of
#    settings, one with etcd election); the same in DaemonSet mode
#    (kube_vip_deploy: daemonset: idempotence, check mode, validation, the
#    same objects as `vip manifest rbac` + `vip manifest daemonset`, also
#    with etcd election), switching modes removes the other
#    mode's manifest, a bad mode is refused; the TLS-SAN precondition fails
#    early with its message.
# 4. ansible-lint (production profile) and yamllint, clean.
#
# Builds into CARGO_TARGET_DIR (default target/). Needs network access to
# PyPI (and Debian's archive when python3-venv is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export LC_ALL=C.UTF-8 LANG=C.UTF-8
started=$(date +%s)
step() { printf '\n=== deploy: %s (+%ss)\n' "$*" "$(($(date +%s) - started))"; }
fail() {
  echo "deploy/check.sh: FAIL: $*" >&2
  exit 1
}

tmp=$(mktemp -d /tmp/vip-deploy-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

step "python tools"
venv=${VIP_DEPLOY_VENV:-/tmp/vip-deploy-venv}
stamp="$venv/.requirements.sha256"
want=$(sha256sum deploy/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    rm -rf "$venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r deploy/requirements.txt
  echo "$want" >"$stamp"
fi
export PATH="$venv/bin:$PATH"
ansible-playbook --version | sed -n 1p
ansible-lint --nocolor --version | sed -n 1p
yamllint --version
kubernetes-validate --version

# validate FILE...: strict schema validation against every version below;
# every document must pass by name (kubernetes-validate only warns about a
# kind it has no schema for, so a warning is a failure here).
k8s_versions=(1.29.0 1.33.0 1.37.0)
validate() {
  local docs out v
  docs=$(cat "$@" | grep -c '^kind:')
  for v in "${k8s_versions[@]}"; do
    out=$(kubernetes-validate --strict -k "$v" "$@" 2>&1) || {
      echo "$out" >&2
      return 1
    }
    if grep -v ' passed for resource ' <<<"$out" | grep -q .; then
      echo "$out" >&2
      return 1
    fi
    [ "$(grep -c ' passed for resource ' <<<"$out")" = "$docs" ] || {
      echo "$out" >&2
      return 1
    }
  done
  echo "valid against ${k8s_versions[*]}: $*"
}

step "build vip"
cargo build -q -p vip-bin --bin vip --locked
vip="${CARGO_TARGET_DIR:-$root/target}/debug/vip"
"$vip" --version

step "vip manifest: render and validate"
brief=(--vip-address 192.168.20.140 --vip-interface end0 --vip-leasename kube-vip-cp)
"$vip" manifest pod "${brief[@]}" --distribution k3s >"$tmp/pod-k3s.yaml"
"$vip" manifest pod "${brief[@]}" --distribution kubeadm >"$tmp/pod-kubeadm.yaml"
"$vip" manifest pod "${brief[@]}" --distribution kubeadm --kubeadm-super-admin >"$tmp/pod-kubeadm-super-admin.yaml"
"$vip" manifest pod "${brief[@]}" --distribution rke2 >"$tmp/pod-rke2.yaml"
"$vip" manifest pod "${brief[@]}" --distribution kubeadm --leader-election etcd >"$tmp/pod-kubeadm-etcd.yaml"
"$vip" manifest pod "${brief[@]}" --distribution k3s --leader-election etcd >"$tmp/pod-k3s-etcd.yaml"
"$vip" manifest rbac "${brief[@]}" >"$tmp/rbac.yaml"
"$vip" manifest daemonset "${brief[@]}" >"$tmp/ds-brief.yaml"
"$vip" manifest daemonset --interface eth0 --address 198.18.0.10,2001:db8::10 --inCluster --taint \
  --controlplane --arp --leaderElection --image ghcr.io/kube-vip/kube-vip:v1.0.3 --no-liveness-probe \
  --vip-leaseannotations '{"example.com/owner":"platform"}' >"$tmp/ds-kube-vip.yaml"
"$vip" manifest daemonset "${brief[@]}" --distribution k3s --leader-election etcd >"$tmp/ds-k3s-etcd.yaml"
# kube-vip's own static pods (v0.8, v1.0, v1.2 shapes) converted by --from.
for from in vip-bin/tests/golden/from/kube-vip-*.yaml; do
  "$vip" manifest pod --from "$from" >"$tmp/pod-from-$(basename "$from")"
done
# The validator must catch a broken pod, or the checks below prove nothing.
sed 's/^  hostNetwork: true/  hostNetwork: "yes"\n  hostNetwrk: true/' "$tmp/pod-k3s.yaml" >"$tmp/broken.yaml"
if validate "$tmp/broken.yaml" 2>/dev/null; then
  fail "kubernetes-validate accepted a broken pod"
fi
validate "$tmp"/pod-*.yaml
validate "$tmp/rbac.yaml"
validate "$tmp"/ds-*.yaml
# ...and a broken DaemonSet too.
sed 's/^      hostNetwork: true/      hostNetwork: "yes"/' "$tmp/ds-brief.yaml" >"$tmp/broken-ds.yaml"
if validate "$tmp/broken-ds.yaml" 2>/dev/null; then
  fail "kubernetes-validate accepted a broken DaemonSet"
fi

step "ansible role: run, idempotence, check mode"
cd deploy/ansible
# recap PLAYBOOK-OUTPUT: "ok=N changed=N ... failed=N" of the one host.
recap() { grep -E '^localhost +: ' <<<"$1" | sed 's/^localhost *: *//'; }
play() { ansible-playbook tests/test.yml -e "kube_vip_manifest_dir=$1" "${@:2}" 2>&1; }
# idempotent MODE PLAY DIR: PLAY DIR changes 2 things (directory,
# manifest) the first time, nothing the second time nor in check mode.
idempotent() {
  local mode=$1 run=$2 dir=$3
  out=$("$run" "$dir") || {
    echo "$out"
    fail "the first $mode run failed"
  }
  echo "first run:  $(recap "$out")"
  grep -Eq 'changed=2 .*failed=0' <<<"$(recap "$out")" || {
    echo "$out"
    fail "the first $mode run must change 2 things (directory, manifest)"
  }
  out=$("$run" "$dir") || fail "the second $mode run failed: $out"
  echo "second run: $(recap "$out")"
  grep -Eq 'changed=0 .*failed=0' <<<"$(recap "$out")" || {
    echo "$out"
    fail "the second $mode run must report changed=0"
  }
  out=$("$run" "$dir" --check --diff) || fail "$mode check mode failed: $out"
  echo "check mode: $(recap "$out")"
  grep -Eq 'changed=0 .*failed=0' <<<"$(recap "$out")" || {
    echo "$out"
    fail "$mode check mode must report nothing to change"
  }
}
manifests="$tmp/role/pod-manifests"
idempotent static play "$manifests"
[ "$(stat -c %a "$manifests")" = 755 ] && [ "$(stat -c %a "$manifests/kube-vip.yaml")" = 600 ] ||
  fail "unexpected modes on $manifests"
# A change of content is a change, and check mode says so without writing.
before=$(sha256sum "$manifests/kube-vip.yaml")
out=$(play "$manifests" --check -e kube_vip_lease_name=other-lock) || fail "check mode failed: $out"
grep -Eq 'changed=1 .*failed=0' <<<"$(recap "$out")" || {
  echo "$out"
  fail "check mode must report the changed manifest"
}
[ "$before" = "$(sha256sum "$manifests/kube-vip.yaml")" ] || fail "check mode wrote the manifest"

step "ansible role: the rendered manifest"
validate "$manifests/kube-vip.yaml"
# The same pod as vip manifest pod, for the defaults and six other sets of
# settings: (role variables as JSON) | (vip flags).
same() {
  local name=$1 vars=$2 dir="$tmp/same-$1"
  shift 2
  out=$(play "$dir" -e "$vars") || {
    echo "$out"
    fail "role run '$name' failed"
  }
  "$vip" manifest pod "$@" >"$tmp/vip-$name.yaml"
  python "$root/deploy/ansible/tests/same_pod.py" "$dir/kube-vip.yaml" "$tmp/vip-$name.yaml"
}
same defaults '{}' --distribution k3s "${brief[@]}"
same overrides '{"kube_vip_address": "198.18.0.10,2001:db8::10", "kube_vip_subnet": "24,64",
  "kube_vip_interface": "", "kube_vip_port": 6444, "kube_vip_lease_namespace": "vip-system",
  "kube_vip_lease_name": "vip-lock", "kube_vip_lease_duration": 15, "kube_vip_renew_deadline": 10,
  "kube_vip_retry_period": 2.5, "kube_vip_arp_rate": 1500, "kube_vip_prometheus_server": "127.0.0.1:9100",
  "kube_vip_log_level": -4, "kube_vip_name": "vip", "kube_vip_kubeconfig": "/etc/rancher/rke2/rke2.yaml",
  "kube_vip_version": "1.2.3", "kube_vip_image": "registry.example/vip:1.2.3"}' \
  --distribution rke2 --address 198.18.0.10,2001:db8::10 --vip-subnet 24,64 --port 6444 \
  --cp-namespace vip-system --vip-leasename vip-lock --vip-leaseduration 15 --vip-renewdeadline 10 \
  --vip-retryperiod 2.5 --vip-arp-rate 1500 --prometheus-server 127.0.0.1:9100 --vip-loglevel -4 \
  --name vip --image registry.example/vip:1.2.3
same ipv6-metrics '{"kube_vip_prometheus_server": "[::]:2112"}' \
  --distribution k3s "${brief[@]}" --prometheus-server '[::]:2112'
same no-probe '{"kube_vip_liveness_probe": false, "kube_vip_image": "ghcr.io/kube-vip/kube-vip:v1.0.3",
  "kube_vip_version": "v1.0.3"}' \
  --distribution k3s "${brief[@]}" --no-liveness-probe --image ghcr.io/kube-vip/kube-vip:v1.0.3
same no-metrics '{"kube_vip_prometheus_server": ""}' \
  --distribution k3s "${brief[@]}" --prometheus-server ''
same annotations '{"kube_vip_lease_annotations": {"team": "infra", "example.com/owner": "ops"}}' \
  --distribution k3s "${brief[@]}" --vip-leaseannotations '{"team":"infra","example.com/owner":"ops"}'
same etcd '{"kube_vip_leader_election": "etcd"}' \
  --distribution k3s "${brief[@]}" --leader-election etcd
# ...and a different pod is told apart (the comparison can fail).
if python tests/same_pod.py "$tmp/same-defaults/kube-vip.yaml" "$tmp/vip-overrides.yaml" 2>/dev/null; then
  fail "same_pod.py found two different pods equal"
fi

step "ansible role: DaemonSet mode"
# play_ds DIR ARGS...: the role in DaemonSet mode, its auto-deploy directory
# DIR/server-manifests, its static pod directory DIR/pod-manifests.
play_ds() {
  play "$1/pod-manifests" -e kube_vip_deploy=daemonset -e "kube_vip_daemonset_manifest_dir=$1/server-manifests" "${@:2}"
}
ds="$tmp/role-ds"
idempotent DaemonSet play_ds "$ds"
[ "$(stat -c %a "$ds/server-manifests/kube-vip.yaml")" = 600 ] || fail "unexpected mode on the DaemonSet manifest"
[ ! -e "$ds/pod-manifests" ] || fail "DaemonSet mode must not create the static pod directory"
validate "$ds/server-manifests/kube-vip.yaml"
# The same objects as vip manifest rbac + vip manifest daemonset: the
# defaults, and other settings. same_ds NAME VARS SA DS-FLAGS SETTINGS...
# (DS-FLAGS: one word list for daemonset only).
same_ds() {
  local name=$1 vars=$2 sa=$3 dir="$tmp/same-ds-$1"
  local -a ds_flags
  read -r -a ds_flags <<<"$4"
  shift 4
  out=$(play_ds "$dir" -e "$vars") || {
    echo "$out"
    fail "DaemonSet role run '$name' failed"
  }
  {
    "$vip" manifest rbac "$@" --name "$sa"
    echo ---
    "$vip" manifest daemonset "$@" --service-account "$sa" "${ds_flags[@]}"
  } >"$tmp/vip-ds-$name.yaml"
  python "$root/deploy/ansible/tests/same_pod.py" "$dir/server-manifests/kube-vip.yaml" "$tmp/vip-ds-$name.yaml"
}
same_ds defaults '{}' kube-vip "--name kube-vip" "${brief[@]}"
same_ds overrides '{"kube_vip_address": "198.18.0.10,2001:db8::10", "kube_vip_subnet": "24,64",
  "kube_vip_interface": "", "kube_vip_lease_namespace": "vip-system", "kube_vip_lease_name": "vip-lock",
  "kube_vip_lease_duration": 15, "kube_vip_renew_deadline": 10, "kube_vip_retry_period": 2,
  "kube_vip_name": "vip-ds", "kube_vip_service_account": "vip-sa", "kube_vip_liveness_probe": false,
  "kube_vip_lease_annotations": {"team": "infra"},
  "kube_vip_version": "v1.0.3", "kube_vip_image": "ghcr.io/kube-vip/kube-vip:v1.0.3"}' \
  vip-sa "--name vip-ds --no-liveness-probe --image ghcr.io/kube-vip/kube-vip:v1.0.3" \
  --address 198.18.0.10,2001:db8::10 --vip-subnet 24,64 --cp-namespace vip-system --vip-leasename vip-lock \
  --vip-leaseduration 15 --vip-renewdeadline 10 --vip-retryperiod 2 --vip-leaseannotations '{"team":"infra"}'
same_ds etcd '{"kube_vip_leader_election": "etcd"}' kube-vip \
  "--name kube-vip --distribution k3s --leader-election etcd" "${brief[@]}"
if python tests/same_pod.py "$tmp/same-ds-defaults/server-manifests/kube-vip.yaml" "$tmp/vip-ds-overrides.yaml" 2>/dev/null; then
  fail "same_pod.py found two different DaemonSets equal"
fi
# Switching modes removes the other mode's manifest first.
sw="$tmp/role-switch"
play "$sw/pod-manifests" -e "kube_vip_daemonset_manifest_dir=$sw/server-manifests" >/dev/null ||
  fail "the static run before the switch failed"
[ -f "$sw/pod-manifests/kube-vip.yaml" ] || fail "no static pod before the switch"
out=$(play_ds "$sw") || fail "the switch to DaemonSet mode failed: $out"
[ ! -e "$sw/pod-manifests/kube-vip.yaml" ] && [ -f "$sw/server-manifests/kube-vip.yaml" ] ||
  fail "switching to DaemonSet mode must remove the static pod manifest"
out=$(play "$sw/pod-manifests" -e "kube_vip_daemonset_manifest_dir=$sw/server-manifests") ||
  fail "the switch back to static failed: $out"
[ -f "$sw/pod-manifests/kube-vip.yaml" ] && [ ! -e "$sw/server-manifests/kube-vip.yaml" ] ||
  fail "switching to static mode must remove the DaemonSet manifest"
echo "switching modes removes the other mode's manifest"
out=$(play "$tmp/bad-mode" -e kube_vip_deploy=helm) && fail "the role must refuse kube_vip_deploy=helm"
grep -q 'kube_vip_deploy must be static or daemonset, not helm' <<<"$out" || {
  echo "$out"
  fail "the mode failure must name the value"
}
[ ! -e "$tmp/bad-mode" ] || fail "a bad mode must fail before anything is written"
echo "refuses kube_vip_deploy=helm, nothing written"

step "ansible role: TLS SAN precondition"
out=$(play "$tmp/san-missing" -e '{"k8s_cluster_sans": ["k8s-cluster.fzymgc.house", "10.255.254.6"]}') &&
  fail "the role must fail when k8s_cluster_sans lacks the VIP"
grep -q 'k8s_cluster_sans lacks 192.168.20.140' <<<"$out" || {
  echo "$out"
  fail "the SAN failure must name the missing VIP"
}
[ ! -e "$tmp/san-missing" ] || fail "the SAN check must fail before anything is written"
echo "refused without the VIP in k8s_cluster_sans, nothing written"
out=$(play "$tmp/san-present" -e '{"k8s_cluster_sans": ["k8s-cluster.fzymgc.house", "192.168.20.140"]}') || {
  echo "$out"
  fail "the role must pass when k8s_cluster_sans has the VIP"
}
echo "passes with the VIP in k8s_cluster_sans"

step "ansible-lint, yamllint"
ansible-lint --profile production --strict
yamllint --strict .
cd "$root"

step "done"
